//! Randomness seam: every random draw in a run descends from the run's one seed.
//!
//! A component asks for its own stream with [`rng_for`] and a stable label such as
//! `"node/queue-1/transport"`. Streams are independent of each other, so adding a draw in one
//! component does not shift the numbers another component sees, and a seed replays exactly.
//!
//! **Invariant:** nothing in pessimist draws from `thread_rng`, `rand::random` or an OS source
//! (rand 0.8's `thread_rng` is not deterministic under madsim). The one exception is outside
//! every simulation: the real cluster's admin key (`pessimist cluster up`, real build only),
//! which must not be guessable from the seed.

use rand::SeedableRng;

/// The RNG every component uses: small, fast, and identical on every platform.
pub type SeededRng = rand_chacha::ChaCha8Rng;

/// Derives a sub-seed for `label` from the run's seed. Stable across platforms and releases
/// of pessimist, because recorded sub-seeds must keep replaying.
pub fn derive_seed(run_seed: u64, label: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&run_seed.to_le_bytes());
    hasher.update(label.as_bytes());
    let digest = hasher.finalize();
    let mut first_eight = [0u8; 8];
    first_eight.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(first_eight)
}

/// An RNG for the component named `label`, seeded from the run's seed.
pub fn rng_for(run_seed: u64, label: &str) -> SeededRng {
    SeededRng::seed_from_u64(derive_seed(run_seed, label))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_label_same_stream_and_labels_differ() {
        let a: Vec<u64> = rng_for(7, "node/a").random_iter().take(4).collect();
        let a_again: Vec<u64> = rng_for(7, "node/a").random_iter().take(4).collect();
        let b: Vec<u64> = rng_for(7, "node/b").random_iter().take(4).collect();
        let a_other_seed: Vec<u64> = rng_for(8, "node/a").random_iter().take(4).collect();
        assert_eq!(a, a_again);
        assert_ne!(a, b);
        assert_ne!(a, a_other_seed);
    }

    #[test]
    fn derived_seed_is_pinned() {
        // Recorded sub-seeds must replay across releases: this value may never change.
        assert_eq!(derive_seed(1, "swarm"), 17_689_180_734_935_295_773);
        assert_ne!(derive_seed(0, "a"), derive_seed(1, "a"));
    }
}
