//! A content cache of thumbnails, for the simulation: making a thumbnail is a pure function
//! of the image's bytes, the box and the decode budget, and a sweep makes the same ones again
//! and again (a job's retries, the same pill in every attempt, a CPU bomb that takes seconds
//! of real CPU each time). Inside one process the simulation keeps the results of the last
//! [`ENTRIES_MAX`] by a BLAKE3 hash of all three; the simulated CPU time a conversion costs is
//! charged by the worker's cost model either way, so a history is byte-identical with and
//! without the cache (`scenarios/tests/determinism.rs` proves it).
//!
//! The real build never caches: a real worker does the work it is given.

use super::{DecodeBudget, ResizeError, ResizeSpec, Thumbnail};

/// Results kept at once: thumbnails are a few KB, so the cache stays under a few MB.
pub const ENTRIES_MAX: usize = 256;

/// [`super::thumbnail`], from the cache when the same bytes were made into the same
/// thumbnail before in this process (simulation build only).
pub fn thumbnail(
    input: &[u8],
    spec: &ResizeSpec,
    budget: &DecodeBudget,
) -> Result<Thumbnail, ResizeError> {
    #[cfg(madsim)]
    {
        cache::thumbnail(input, spec, budget)
    }
    #[cfg(not(madsim))]
    {
        super::thumbnail(input, spec, budget)
    }
}

/// Results served from the cache in this process so far.
#[cfg(madsim)]
pub fn hits() -> u64 {
    cache::HITS.load(std::sync::atomic::Ordering::SeqCst)
}

/// Turns the cache on or off for this process (on by default), for the test that proves it
/// changes no history.
#[cfg(madsim)]
pub fn set_enabled(enabled: bool) {
    cache::ENABLED.store(enabled, std::sync::atomic::Ordering::SeqCst);
}

#[cfg(madsim)]
mod cache {
    use std::collections::{HashMap, VecDeque};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;

    use super::{DecodeBudget, ResizeError, ResizeSpec, Thumbnail, ENTRIES_MAX};

    pub static ENABLED: AtomicBool = AtomicBool::new(true);
    pub static HITS: AtomicU64 = AtomicU64::new(0);

    type Made = Result<Thumbnail, ResizeError>;

    #[derive(Default)]
    struct Cache {
        made: HashMap<[u8; 32], Made>,
        /// Keys in insertion order: the oldest goes first when the cache is full.
        order: VecDeque<[u8; 32]>,
    }

    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

    fn key(input: &[u8], spec: &ResizeSpec, budget: &DecodeBudget) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        let settings = postcard::to_stdvec(&(spec, budget)).expect("settings serialize");
        hasher.update(&(settings.len() as u64).to_le_bytes());
        hasher.update(&settings);
        hasher.update(input);
        *hasher.finalize().as_bytes()
    }

    pub fn thumbnail(input: &[u8], spec: &ResizeSpec, budget: &DecodeBudget) -> Made {
        if !ENABLED.load(Ordering::SeqCst) {
            return super::super::thumbnail(input, spec, budget);
        }
        let key = key(input, spec, budget);
        if let Some(made) =
            CACHE.lock().expect("cache lock").as_ref().and_then(|c| c.made.get(&key))
        {
            HITS.fetch_add(1, Ordering::SeqCst);
            return made.clone();
        }
        // Made outside the lock: other seeds' threads go on meanwhile.
        let made = super::super::thumbnail(input, spec, budget);
        let mut guard = CACHE.lock().expect("cache lock");
        let cache = guard.get_or_insert_with(Cache::default);
        if cache.made.insert(key, made.clone()).is_none() {
            cache.order.push_back(key);
            if cache.order.len() > ENTRIES_MAX {
                let oldest = cache.order.pop_front().expect("not empty");
                cache.made.remove(&oldest);
            }
        }
        made
    }
}
