//! The Wing-Gong/Lowe (WGL) search for a linearization of one partition, as in Lowe's
//! "Testing for linearizability" and Porcupine.
//!
//! Role: given calls with their invoke and return positions, find an order that respects real
//! time (a call that returned before another was invoked comes first) in which the model
//! accepts every `ok` call; `info` calls may be placed anywhere after their invoke, or never.
//!
//! How: the calls' invoke ("call") and return entries form a doubly linked list in history
//! order; `info` returns sit at the end (they return at infinity). The calls that may come
//! next are the call entries before the first return entry. Linearizing one *lifts* its two
//! entries out of the list (dancing links: `unlift` puts them back in O(1) when backtracking).
//! A cache of (set of linearized calls, state) pairs already explored cuts the search from
//! exponential in the history length to, in practice, exponential only in the concurrency.
//!
//! Speed: the set is a bitset with a Zobrist hash kept up to date on every lift (O(1) instead
//! of hashing all words); cache entries live in flat arenas chained from a map keyed by that
//! hash. An entry stores only the *window* of the bitset between its leading all-linearized
//! words and its trailing all-open words (canonical: equal sets have equal windows), so memory
//! grows with the concurrency the search explores, not with the history's length; states are small `Copy` ids hashed with FxHash. Three prunings, all sound:
//! - a *read-only* `ok` call the model accepts right now is linearized at once, with no
//!   alternative tried: any linearization from here can be rearranged to start with it,
//!   because it changes no state and every call that must precede it is already linearized;
//! - an `info` call whose step leaves the state unchanged is not linearized there: leaving it
//!   out keeps strictly more options open, since it constrains nothing and need never happen.
//! - lookahead: a call not yet linearized must come before every call invoked after it
//!   returned, so only the calls whose entries precede its return entry can come before it.
//!   For each read-only `ok` call among the first few return entries, a move is dropped if
//!   the model says ([`Model::can_reach`]) that no sequence of those calls can bring the new
//!   state to one the read accepts (kv: with no put among them, a string only grows, so it
//!   must stay a prefix of the string read). The witness still shows the dropped move, with
//!   the read it dooms as the reason, so it is as long as without the pruning.
//!
//! Searches are resumable (`Search::run` takes a step budget) so that the partitions of one
//! history can take turns; see `check_with`.
//!
//! Budget: a search gives up after computing `Limits::states_max` successor states (new or
//! already cached: each costs a model step and a cache lookup), or once
//! its cache holds `Limits::cache_words_max` words of windows. Both count what the search did,
//! never time, so the same history gets the same verdict on any machine.
//!
//! Invariants (asserted): the stack and the bitset always describe the same set of calls; the
//! success test is "every `ok` call is linearized"; the cache never holds two equal pairs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::model::Model;

/// FxHash, the hasher of rustc (`rustc-hash`), written out here to avoid a dependency: one
/// rotate, xor and multiply per word. It is not resistant to crafted collisions, which is
/// fine for a checker; what matters is that hashing small ids costs almost nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add_word(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add_word(u64::from_le_bytes(chunk.try_into().expect("chunk of 8 bytes")));
        }
        for &byte in chunks.remainder() {
            self.add_word(u64::from(byte));
        }
    }
    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add_word(u64::from(value));
    }
    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add_word(u64::from(value));
    }
    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add_word(value);
    }
    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add_word(value as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Passes an already well-mixed `u64` through: the cache keys are Zobrist hashes.
#[derive(Clone, Copy, Debug, Default)]
struct IdentityHasher {
    hash: u64,
}

impl Hasher for IdentityHasher {
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("IdentityHasher only hashes u64 keys");
    }
    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.hash = value;
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// splitmix64: a fixed, well-spread random word per call index for the Zobrist hash. Fixed,
/// so runs are reproducible.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn state_hash<S: Hash>(state: &S) -> u64 {
    let mut hasher = FxHasher::default();
    state.hash(&mut hasher);
    // Spread the low bits of small ids over the whole word before it meets the Zobrist hash.
    splitmix64(hasher.finish())
}

/// One call as the search sees it.
#[derive(Debug)]
pub(crate) struct SearchCall<I, O> {
    /// Position of the invoke in the history (orders the entries).
    pub invoke_position: usize,
    /// Position of the return in the history; `None` for `info` calls (at infinity).
    pub return_position: Option<usize>,
    /// Decoded argument.
    pub input: I,
    /// Decoded result; `None` for `info` calls.
    pub output: Option<O>,
}

/// Why a search gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GaveUp {
    /// It explored its budget of (set, state) pairs.
    BudgetSpent,
    /// Its cache reached the most words one check may hold.
    CacheFull,
}

/// Bounds on one search: both count work done, never time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Most states explored (successor states computed) before giving up.
    pub states_max: u64,
    /// Most words of windows the cache may hold before giving up.
    pub cache_words_max: usize,
}

/// Result of one search.
#[derive(Debug)]
pub(crate) enum SearchOutcome<S> {
    Linearizable,
    NotLinearizable {
        /// The deepest linearized prefix: (call index, state after it), in order.
        prefix: Vec<(usize, S)>,
        /// Calls that could come next at that point, none of which the model accepted.
        candidates: Vec<usize>,
    },
    GaveUp(GaveUp),
}

/// The explored (set, state) pairs, in flat arenas. A set is stored as its window (see
/// [`CallSet::window`]): the index of its first word that is not all ones, and the words from
/// there to its last word that is not zero.
struct Cache<S> {
    /// The windows' words, back to back.
    words: Vec<u64>,
    /// Where entry i's window starts in `words`; it ends where entry i + 1's starts.
    word_starts: Vec<usize>,
    /// Entry i's first word index in the whole bitset.
    window_firsts: Vec<u32>,
    states: Vec<S>,
    /// Next entry with the same hash, or `NO_ENTRY`.
    chain: Vec<u32>,
    first_by_hash: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
}

const NO_ENTRY: u32 = u32::MAX;

/// Entries reserved up front at most: growing by doubling rehashes and copies the table, but
/// reserving for the worst case is what made memory grow with the square of the history.
const CACHE_ENTRIES_RESERVED_MAX: usize = 1 << 16;

impl<S: Copy + Eq> Cache<S> {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.min(CACHE_ENTRIES_RESERVED_MAX);
        let mut word_starts = Vec::with_capacity(capacity + 1);
        word_starts.push(0);
        Cache {
            words: Vec::with_capacity(capacity),
            word_starts,
            window_firsts: Vec::with_capacity(capacity),
            states: Vec::with_capacity(capacity),
            chain: Vec::with_capacity(capacity),
            first_by_hash: HashMap::with_capacity_and_hasher(capacity, Default::default()),
        }
    }

    fn len(&self) -> usize {
        self.states.len()
    }

    fn words_held(&self) -> usize {
        self.words.len()
    }

    /// Adds the pair; false if it was already there.
    fn insert(&mut self, hash: u64, (window_first, window): (u32, &[u64]), state: S) -> bool {
        let first = self.first_by_hash.get(&hash).copied().unwrap_or(NO_ENTRY);
        let mut entry = first;
        while entry != NO_ENTRY {
            let index = entry as usize;
            if self.states[index] == state
                && self.window_firsts[index] == window_first
                && self.words[self.word_starts[index]..self.word_starts[index + 1]] == *window
            {
                return false;
            }
            entry = self.chain[index];
        }
        let index = u32::try_from(self.states.len()).expect("fewer than 2^32 cache entries");
        assert!(index != NO_ENTRY);
        self.words.extend_from_slice(window);
        self.word_starts.push(self.words.len());
        self.window_firsts.push(window_first);
        self.states.push(state);
        self.chain.push(first);
        self.first_by_hash.insert(hash, index);
        debug_assert_eq!(self.word_starts.len(), self.states.len() + 1);
        true
    }
}

/// The set of linearized calls: a bitset, its Zobrist hash, and the bounds of its window.
struct CallSet {
    bits: Vec<u64>,
    hash: u64,
    /// Index of the first word that is not all ones (every call before it is linearized).
    full_words: usize,
    /// One past the last word that is not zero (no call from there on is linearized).
    nonzero_end: usize,
}

impl CallSet {
    fn new(call_count: usize) -> Self {
        CallSet { bits: vec![0; call_count.div_ceil(64)], hash: 0, full_words: 0, nonzero_end: 0 }
    }

    fn insert(&mut self, call_index: usize, zobrist: &[u64]) {
        let word = call_index / 64;
        let mask = 1u64 << (call_index % 64);
        debug_assert!(self.bits[word] & mask == 0, "a call is linearized once");
        self.bits[word] |= mask;
        self.hash ^= zobrist[call_index];
        while self.full_words < self.bits.len() && self.bits[self.full_words] == u64::MAX {
            self.full_words += 1;
        }
        self.nonzero_end = self.nonzero_end.max(word + 1);
    }

    fn remove(&mut self, call_index: usize, zobrist: &[u64]) {
        let word = call_index / 64;
        let mask = 1u64 << (call_index % 64);
        debug_assert!(self.bits[word] & mask != 0, "only a linearized call is taken back");
        self.bits[word] &= !mask;
        self.hash ^= zobrist[call_index];
        self.full_words = self.full_words.min(word);
        while self.nonzero_end > 0 && self.bits[self.nonzero_end - 1] == 0 {
            self.nonzero_end -= 1;
        }
    }

    /// The canonical short form of the set: the first word that is not all ones, and the words
    /// from it to the last that is not zero (empty when there are none). The words outside are
    /// implied, so two sets are equal exactly when their windows are.
    fn window(&self) -> (u32, &[u64]) {
        let end = self.nonzero_end.max(self.full_words);
        let first = u32::try_from(self.full_words).expect("fewer than 2^32 words of calls");
        (first, &self.bits[self.full_words..end])
    }

    fn len(&self) -> usize {
        self.bits.iter().map(|word| word.count_ones() as usize).sum()
    }
}

/// A linearized call on the search stack.
struct Frame<S> {
    /// The call entry lifted.
    node: u32,
    /// State before the call.
    state_before: S,
    /// Which successor of the step was taken (models may be non-deterministic).
    successor: u32,
    /// Taken by the read-only pruning: no alternative is tried at this level.
    forced: bool,
}

const HEAD: u32 = 0;

#[inline]
fn is_call_node(node: u32) -> bool {
    node % 2 == 1
}

#[inline]
fn call_of_node(node: u32) -> usize {
    debug_assert!(node != HEAD);
    ((node - 1) / 2) as usize
}

/// How many return entries, from the first, the lookahead looks at: each costs a walk over
/// the list up to it, and the first few are where a wrong move shows soonest.
const LOOKAHEAD_RETURNS_MAX: usize = 4;

/// Lookahead pruning (see the module comment): once `taken_node`'s call has moved the state
/// to `after`, returns a read-only `ok` call among the first return entries that could no
/// longer be satisfied by the calls that may still precede it (those invoked before it
/// returned, that is, the call entries before its return entry); `None` if there is none.
fn lookahead_blocker<M: Model>(
    model: &mut M,
    calls: &[SearchCall<M::Input, M::Output>],
    next: &[u32],
    read_only_ok: &[bool],
    taken_node: u32,
    after: M::State,
) -> Option<usize> {
    let tail = (next.len() - 1) as u32;
    let taken_call = call_of_node(taken_node);
    let mut returns_seen = 0;
    let mut entry = next[HEAD as usize];
    while entry != tail && returns_seen < LOOKAHEAD_RETURNS_MAX {
        if !is_call_node(entry) {
            returns_seen += 1;
            let observer = ((entry - 2) / 2) as usize;
            if observer != taken_call && read_only_ok[observer] {
                let observer_return = entry;
                let others = std::iter::successors(Some(next[HEAD as usize]), |&other| {
                    Some(next[other as usize])
                })
                .take_while(|&other| other != observer_return)
                .filter(|&other| is_call_node(other) && other != taken_node)
                .map(|other| &calls[call_of_node(other)].input);
                let call = &calls[observer];
                let observed = call.output.as_ref().expect("read_only_ok calls are ok calls");
                if !model.can_reach(after, &call.input, observed, others) {
                    return Some(observer);
                }
            }
        }
        entry = next[entry as usize];
    }
    None
}

/// The deepest point reached, before it is written down (at the next backtrack: most points
/// never need it, and writing one down costs its depth).
#[derive(Clone, Copy, Debug)]
enum PendingSnapshot<S> {
    /// The current point.
    Here,
    /// The current point plus a move the lookahead dropped: `node`'s call, giving `after`,
    /// then `blocker` (a read-only ok call) can no longer be satisfied. Recording it keeps
    /// the witness as long as without the lookahead, with the blocker as the reason.
    Pruned { node: u32, after: S, blocker: usize },
}

/// What `Search::run` ended with.
#[derive(Debug)]
pub(crate) enum Progress<S> {
    /// An answer.
    Done(SearchOutcome<S>),
    /// The step budget ran out; `run` again to go on.
    Paused,
}

/// The deepest point reached: (call, state after it) for each linearized call, in order, and
/// the ok calls that could have come next.
type Deepest<S> = (Vec<(usize, S)>, Vec<usize>);

/// One partition's search, resumable: the checker runs the searches of all partitions by
/// turns with growing step budgets, so a non-linearizable partition that is quick to refute
/// ends the check without first exhausting a slow one (Porcupine gets the same effect by
/// racing partitions on threads; turns keep the answer deterministic).
pub(crate) struct Search<S> {
    /// Doubly linked list of entries: HEAD = 0, call entry of call i = 2i + 1, its return
    /// entry = 2i + 2, tail = 2n + 1.
    next: Vec<u32>,
    prev: Vec<u32>,
    zobrist: Vec<u64>,
    read_only_ok: Vec<bool>,
    linearized: CallSet,
    cache: Cache<S>,
    state: S,
    stack: Vec<Frame<S>>,
    ok_remaining: usize,
    successors: Vec<S>,
    deepest_len: usize,
    snapshot_pending: Option<PendingSnapshot<S>>,
    deepest: Option<Deepest<S>>,
    /// A new search point was just reached: run the read-only pre-pass.
    fresh: bool,
    /// Where the scan resumes: an entry, and the first successor of its step to try.
    node: u32,
    successor_start: u32,
    /// Steps taken so far, over all turns.
    pub(crate) steps_taken: u64,
    /// States explored so far, over all turns: every successor state computed, new or not
    /// (the unit of the budget: it bounds the time, which the cache's size alone does not
    /// when many calls are open at once and each step tries them all).
    states_computed: u64,
}

impl<S: Copy + Eq + Hash + std::fmt::Debug> Search<S> {
    /// Prepares the search of `calls` from `init`.
    pub(crate) fn new<M: Model<State = S>>(
        model: &M,
        init: S,
        calls: &[SearchCall<M::Input, M::Output>],
    ) -> Self {
        let call_count = calls.len();
        assert!(call_count < (u32::MAX as usize) / 2 - 2, "too many calls in one partition");
        let ok_total = calls.iter().filter(|call| call.output.is_some()).count();
        let read_only_ok: Vec<bool> = calls
            .iter()
            .map(|call| {
                call.output.is_some() && model.is_read_only(&call.input, call.output.as_ref())
            })
            .collect();

        let tail = (2 * call_count + 1) as u32;
        let mut order: Vec<(usize, u32)> = Vec::with_capacity(2 * call_count);
        for (index, call) in calls.iter().enumerate() {
            let node = (2 * index + 1) as u32;
            assert!(
                call.return_position.is_none_or(|position| position > call.invoke_position),
                "a call returns after its invoke"
            );
            order.push((call.invoke_position, node));
            order.push((call.return_position.unwrap_or(usize::MAX), node + 1));
        }
        // Info returns share the position "infinity"; the node breaks ties, and their relative
        // order does not matter since nothing comes after them.
        order.sort_unstable();
        let node_count = 2 * call_count + 2;
        let mut next = vec![0u32; node_count];
        let mut prev = vec![0u32; node_count];
        let mut previous_node = HEAD;
        for &(_, node) in &order {
            next[previous_node as usize] = node;
            prev[node as usize] = previous_node;
            previous_node = node;
        }
        next[previous_node as usize] = tail;
        prev[tail as usize] = previous_node;

        let zobrist: Vec<u64> =
            (0..call_count).map(|index| splitmix64(0x6c69_6e63_6865_636b ^ index as u64)).collect();
        let linearized = CallSet::new(call_count);
        // A few entries per call covers most histories; `Cache::new` caps what it reserves.
        let mut cache: Cache<S> = Cache::new(8 * call_count + 16);
        cache.insert(state_hash(&init), linearized.window(), init);
        let node = next[HEAD as usize];
        Search {
            next,
            prev,
            zobrist,
            read_only_ok,
            linearized,
            cache,
            state: init,
            stack: Vec::new(),
            ok_remaining: ok_total,
            successors: Vec::new(),
            deepest_len: 0,
            snapshot_pending: Some(PendingSnapshot::Here),
            deepest: None,
            fresh: true,
            node,
            successor_start: 0,
            steps_taken: 0,
            states_computed: 0,
        }
    }

    /// (set, state) pairs explored so far: the unit of the budget.
    pub(crate) fn states_explored(&self) -> u64 {
        self.states_computed
    }

    /// Searches for at most `steps_max` steps (a step: one move or one backtrack).
    pub(crate) fn run<M: Model<State = S>>(
        &mut self,
        model: &mut M,
        calls: &[SearchCall<M::Input, M::Output>],
        limits: Limits,
        steps_max: u64,
    ) -> Progress<S> {
        if self.ok_remaining == 0 {
            return Progress::Done(SearchOutcome::Linearizable);
        }
        let Search {
            next,
            prev,
            zobrist,
            read_only_ok,
            linearized,
            cache,
            state,
            stack,
            ok_remaining,
            successors,
            deepest_len,
            snapshot_pending,
            deepest,
            fresh,
            node,
            successor_start,
            steps_taken,
            states_computed,
        } = self;

        macro_rules! lift {
            ($call_node:expr) => {{
                let call_node = $call_node as usize;
                let return_node = call_node + 1;
                next[prev[call_node] as usize] = next[call_node];
                prev[next[call_node] as usize] = prev[call_node];
                next[prev[return_node] as usize] = next[return_node];
                prev[next[return_node] as usize] = prev[return_node];
            }};
        }
        macro_rules! unlift {
            ($call_node:expr) => {{
                let call_node = $call_node as usize;
                let return_node = call_node + 1;
                prev[next[return_node] as usize] = return_node as u32;
                next[prev[return_node] as usize] = return_node as u32;
                prev[next[call_node] as usize] = call_node as u32;
                next[prev[call_node] as usize] = call_node as u32;
            }};
        }

        for _ in 0..steps_max {
            *steps_taken += 1;
            // Checked every step: two comparisons, and the answer then depends on nothing
            // but the history and the limits.
            debug_assert!(
                cache.len() as u64 <= *states_computed + 1,
                "at most one cache entry per state computed, besides the initial one"
            );
            if *states_computed >= limits.states_max {
                return Progress::Done(SearchOutcome::GaveUp(GaveUp::BudgetSpent));
            }
            if cache.words_held() >= limits.cache_words_max {
                return Progress::Done(SearchOutcome::GaveUp(GaveUp::CacheFull));
            }

            // The next move: linearize `take = Some((node, successor index, new state,
            // forced))`, or backtrack.
            let mut take: Option<(u32, u32, S, bool)> = None;
            let mut backtrack = false;

            if *fresh {
                *fresh = false;
                // Read-only pruning: an accepted read-only ok call is taken, alone.
                let mut candidate = next[HEAD as usize];
                while is_call_node(candidate) {
                    let call_index = call_of_node(candidate);
                    if read_only_ok[call_index] {
                        let call = &calls[call_index];
                        successors.clear();
                        model.step(*state, &call.input, call.output.as_ref(), successors);
                        *states_computed += 1;
                        if let Some(&after) = successors.first() {
                            debug_assert!(after == *state, "read-only calls keep the state");
                            take = Some((candidate, 0, after, true));
                            break;
                        }
                    }
                    candidate = next[candidate as usize];
                }
                if take.is_none() {
                    *node = next[HEAD as usize];
                    *successor_start = 0;
                }
            }

            if take.is_none() {
                // Scan on from `node` for a call the model accepts and the cache has not seen.
                'scan: while is_call_node(*node) {
                    let call_index = call_of_node(*node);
                    if read_only_ok[call_index] {
                        // The pre-pass at this point found it not accepted.
                        *node = next[*node as usize];
                        *successor_start = 0;
                        continue;
                    }
                    let call = &calls[call_index];
                    successors.clear();
                    model.step(*state, &call.input, call.output.as_ref(), successors);
                    *states_computed += 1;
                    let is_info = call.output.is_none();
                    let first_successor = *successor_start as usize;
                    for (successor, &after) in successors.iter().enumerate().skip(first_successor) {
                        if is_info && after == *state {
                            continue;
                        }
                        if after != *state {
                            let blocker =
                                lookahead_blocker(model, calls, next, read_only_ok, *node, after);
                            if let Some(blocker) = blocker {
                                if stack.len() + 1 > *deepest_len {
                                    *deepest_len = stack.len() + 1;
                                    *snapshot_pending = Some(PendingSnapshot::Pruned {
                                        node: *node,
                                        after,
                                        blocker,
                                    });
                                }
                                continue;
                            }
                        }
                        linearized.insert(call_index, zobrist);
                        let hash = linearized.hash ^ state_hash(&after);
                        let inserted = cache.insert(hash, linearized.window(), after);
                        linearized.remove(call_index, zobrist);
                        if inserted {
                            take = Some((*node, successor as u32, after, false));
                            break 'scan;
                        }
                    }
                    *node = next[*node as usize];
                    *successor_start = 0;
                }
                if take.is_none() {
                    backtrack = true;
                }
            } else {
                // The forced read-only call: new unless this point was explored already.
                let (forced_node, _, after, _) = take.expect("set above");
                let call_index = call_of_node(forced_node);
                linearized.insert(call_index, zobrist);
                let hash = linearized.hash ^ state_hash(&after);
                let inserted = cache.insert(hash, linearized.window(), after);
                linearized.remove(call_index, zobrist);
                if !inserted {
                    // Seen, and failed (success ends the search): so does this point.
                    take = None;
                    backtrack = true;
                }
            }

            if let Some((call_node, successor, after, forced)) = take {
                let call_index = call_of_node(call_node);
                linearized.insert(call_index, zobrist);
                lift!(call_node);
                stack.push(Frame { node: call_node, state_before: *state, successor, forced });
                *state = after;
                if calls[call_index].output.is_some() {
                    *ok_remaining -= 1;
                    if *ok_remaining == 0 {
                        return Progress::Done(SearchOutcome::Linearizable);
                    }
                }
                // At equal depth a real point replaces a pruned one: the stack it refers to is
                // about to change.
                let replaces_pruned =
                    matches!(*snapshot_pending, Some(PendingSnapshot::Pruned { .. }));
                if stack.len() > *deepest_len || (stack.len() == *deepest_len && replaces_pruned) {
                    *deepest_len = stack.len();
                    *snapshot_pending = Some(PendingSnapshot::Here);
                }
                *fresh = true;
                continue;
            }

            assert!(backtrack, "no move means backtrack");
            if let Some(pending) = snapshot_pending.take() {
                // The stack has not changed since it reached its deepest: record that point.
                let mut prefix = Vec::with_capacity(stack.len() + 1);
                for (position, frame) in stack.iter().enumerate() {
                    let after = stack.get(position + 1).map_or(*state, |next| next.state_before);
                    prefix.push((call_of_node(frame.node), after));
                }
                // Info calls are left out: they constrain nothing, so they are never the
                // reason; an ok call is always among the candidates (the one returning first).
                let mut candidates = Vec::new();
                if let PendingSnapshot::Pruned { node, after, blocker } = pending {
                    prefix.push((call_of_node(node), after));
                    candidates.push(blocker);
                } else {
                    let mut candidate = next[HEAD as usize];
                    while is_call_node(candidate) {
                        let call_index = call_of_node(candidate);
                        if calls[call_index].output.is_some() {
                            candidates.push(call_index);
                        }
                        candidate = next[candidate as usize];
                    }
                }
                assert!(!candidates.is_empty(), "an ok call is left, so one is a candidate");
                *deepest = Some((prefix, candidates));
            }
            // Pop until a frame with alternatives left.
            loop {
                let Some(frame) = stack.pop() else {
                    let (prefix, candidates) =
                        deepest.take().expect("the first backtrack takes a snapshot");
                    return Progress::Done(SearchOutcome::NotLinearizable { prefix, candidates });
                };
                let call_index = call_of_node(frame.node);
                unlift!(frame.node);
                linearized.remove(call_index, zobrist);
                *state = frame.state_before;
                if calls[call_index].output.is_some() {
                    *ok_remaining += 1;
                }
                if !frame.forced {
                    *node = frame.node;
                    *successor_start = frame.successor + 1;
                    break;
                }
            }
            debug_assert_eq!(
                linearized.len(),
                stack.len(),
                "the bitset holds exactly the calls on the stack"
            );
        }
        Progress::Paused
    }
}
