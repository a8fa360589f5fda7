//! The value of a key: a counter merged from many writers without loss and without double
//! counting (a state-based CRDT).
//!
//! A [`Counter`] holds one [`Slot`] per writer (an API server's usage shipper): the
//! writer's *cumulative* total for the key and the id of the batch that last changed it.
//! Writers never send increments, only their running totals, so:
//! - a retried or duplicated write carries the same total and changes nothing
//!   (idempotence: a retried flush never counts twice);
//! - concurrent writes by different writers touch different slots (nothing is lost);
//! - a replica that missed a writer's earlier batches catches up from any later one, since
//!   each total includes everything before it.
//!
//! Deletes are *floors*: a delete carries the totals its caller read, and a key's value is
//! the sum over writers of what lies above the floor. Billing deletes what it archived;
//! increments that arrived after its read stay visible. Floors are kept like slots
//! (tombstones): a replica that missed the delete learns it by merging, and no old copy of
//! the slots brings the archived counts back.
//!
//! **Merge** is the per-writer, per-field maximum (slots and floors). It is commutative,
//! associative and idempotent (a join), so replicas may exchange states in any order, any
//! number of times (hinted handoff, read repair, anti-entropy, replays of the write-ahead
//! log over a newer snapshot) and still agree once each has seen every write.
//!
//! **Invariant:** a key's slot totals never decrease, so its counted total
//! ([`Counter::counted`]) is at most the sum of the increments its writers attempted, and at
//! least the sum of those acknowledged to them (the checkers' two promises).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ring::hash64;

/// Writers one key may have; a merge beyond it is refused (a bound on a key's size).
pub const WRITERS_PER_KEY_MAX: usize = 4096;
/// Longest writer id.
pub const WRITER_ID_BYTES_MAX: usize = 128;

/// One writer's share of a key.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Slot {
    /// The writer's batch that last changed `total`. Batches are numbered from 1, in order.
    pub batch: u64,
    /// Everything the writer has counted on this key, up to and including `batch`.
    pub total: u64,
}

impl Slot {
    /// The join of two slots: each field's maximum. For a well-behaved writer (totals grow
    /// with batches) that is simply the later slot.
    pub fn join(self, other: Slot) -> Slot {
        Slot { batch: self.batch.max(other.batch), total: self.total.max(other.total) }
    }
}

/// A key's state: every writer's slot and every floor a delete set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counter {
    pub slots: BTreeMap<String, Slot>,
    /// Per writer, the total a delete archived: counts at or below it are gone.
    pub floors: BTreeMap<String, u64>,
}

impl Counter {
    /// The state one writer sends: its slot alone.
    pub fn from_slot(writer: &str, slot: Slot) -> Counter {
        Counter { slots: BTreeMap::from([(writer.to_string(), slot)]), floors: BTreeMap::new() }
    }

    /// The state a delete sends: floors at the totals `observed` holds, no slots.
    pub fn tombstone_of(observed: &Counter) -> Counter {
        let floors =
            observed.slots.iter().map(|(writer, slot)| (writer.clone(), slot.total)).collect();
        Counter { slots: BTreeMap::new(), floors }
    }

    /// Merges `other` in; returns whether anything changed.
    pub fn merge(&mut self, other: &Counter) -> bool {
        let mut changed = false;
        // A zero slot or floor is the same as none: it is never stored, so equal states have
        // equal digests.
        for (writer, slot) in other.slots.iter().filter(|(_, slot)| **slot != Slot::default()) {
            let mine = self.slots.entry(writer.clone()).or_default();
            let joined = mine.join(*slot);
            changed |= joined != *mine;
            *mine = joined;
        }
        for (writer, floor) in other.floors.iter().filter(|(_, floor)| **floor > 0) {
            let mine = self.floors.entry(writer.clone()).or_default();
            changed |= *floor > *mine;
            *mine = (*mine).max(*floor);
        }
        changed
    }

    /// The two states merged.
    pub fn joined(&self, other: &Counter) -> Counter {
        let mut joined = self.clone();
        joined.merge(other);
        joined
    }

    /// Whether `other` holds nothing this state lacks (merging it would change nothing).
    pub fn covers(&self, other: &Counter) -> bool {
        other.slots.iter().all(|(writer, slot)| {
            let mine = self.slots.get(writer).copied().unwrap_or_default();
            mine.join(*slot) == mine
        }) && other
            .floors
            .iter()
            .all(|(writer, floor)| self.floors.get(writer).copied().unwrap_or(0) >= *floor)
    }

    /// Every count ever recorded, deleted or not: the sum of the writers' totals.
    pub fn counted(&self) -> u64 {
        self.slots.values().map(|slot| slot.total).sum()
    }

    /// The live value: what lies above the floors.
    pub fn value(&self) -> u64 {
        self.slots
            .iter()
            .map(|(writer, slot)| {
                slot.total.saturating_sub(self.floors.get(writer).copied().unwrap_or(0))
            })
            .sum()
    }

    /// Whether a delete removed everything the key holds (a tombstone to keep, not a value
    /// to show).
    pub fn is_deleted(&self) -> bool {
        !self.floors.is_empty() && self.value() == 0
    }

    /// Writers with a slot or a floor.
    pub fn writers(&self) -> usize {
        let floor_only = self.floors.keys().filter(|w| !self.slots.contains_key(*w)).count();
        self.slots.len() + floor_only
    }

    /// A 64-bit digest of the state: equal states, equal digests.
    pub fn digest(&self) -> u64 {
        hash64(&postcard::to_stdvec(self).expect("postcard encoding of a counter"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slot(batch: u64, total: u64) -> Slot {
        Slot { batch, total }
    }

    #[test]
    fn a_retried_write_counts_once_and_writers_add_up() {
        let mut key = Counter::default();
        assert!(key.merge(&Counter::from_slot("api-1", slot(1, 5))));
        assert!(!key.merge(&Counter::from_slot("api-1", slot(1, 5))), "a retry changes nothing");
        key.merge(&Counter::from_slot("api-2", slot(1, 7)));
        key.merge(&Counter::from_slot("api-1", slot(3, 9)));
        assert!(!key.merge(&Counter::from_slot("api-1", slot(2, 6))), "an old batch is covered");
        assert_eq!(key.value(), 16);
        assert_eq!(key.counted(), 16);
        assert!(!key.merge(&Counter::from_slot("api-9", Slot::default())), "zero is no slot");
        assert!(!key.slots.contains_key("api-9"));
    }

    #[test]
    fn a_delete_removes_what_was_read_and_keeps_what_came_after() {
        let mut key = Counter::from_slot("api-1", slot(1, 10));
        let read = key.clone();
        key.merge(&Counter::from_slot("api-2", slot(1, 4))); // after the read
        key.merge(&Counter::tombstone_of(&read));
        assert_eq!(key.value(), 4);
        assert!(!key.is_deleted());
        key.merge(&Counter::tombstone_of(&key.clone()));
        assert!(key.is_deleted());
        assert_eq!(key.counted(), 14, "the counts stay recorded under the floors");
        // A replica that never saw the delete brings nothing back once it merges the floor.
        let mut stale = Counter::from_slot("api-1", slot(1, 10));
        stale.merge(&key);
        assert!(stale.is_deleted());
    }

    fn counters() -> impl Strategy<Value = Counter> {
        let writers = prop_oneof![Just("a"), Just("b"), Just("c")];
        let slots = proptest::collection::btree_map(
            writers.clone().prop_map(str::to_string),
            (1u64..6, 1u64..50).prop_map(|(batch, total)| slot(batch, total)),
            0..3,
        );
        let floors =
            proptest::collection::btree_map(writers.prop_map(str::to_string), 1u64..50, 0..2);
        (slots, floors).prop_map(|(slots, floors)| Counter { slots, floors })
    }

    proptest! {
        /// Merge is a join: commutative, associative, idempotent; the join covers both sides
        /// and `covers` agrees with "merging changes nothing".
        #[test]
        fn merge_is_a_join(a in counters(), b in counters(), c in counters()) {
            prop_assert_eq!(a.joined(&b), b.joined(&a));
            prop_assert_eq!(a.joined(&b).joined(&c), a.joined(&b.joined(&c)));
            prop_assert_eq!(a.joined(&a), a.clone());
            let ab = a.joined(&b);
            prop_assert!(ab.covers(&a) && ab.covers(&b));
            let mut probe = a.clone();
            prop_assert_eq!(!probe.merge(&b), a.covers(&b));
            prop_assert_eq!(a.digest() == b.digest(), a == b);
        }

        /// A writer's running totals, delivered in any order and any number of times, end at
        /// its last total: never more (no double count), never less (no loss).
        #[test]
        fn totals_in_any_order_count_each_increment_once(
            increments in proptest::collection::vec(1u64..20, 1..10),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 1..30),
        ) {
            let mut sent = Vec::new();
            let mut total = 0;
            for (index, increment) in increments.iter().enumerate() {
                total += increment;
                sent.push(Counter::from_slot("w", slot(index as u64 + 1, total)));
            }
            let mut replica = Counter::default();
            for pick in &order {
                replica.merge(&sent[pick.index(sent.len())]);
            }
            replica.merge(sent.last().unwrap());
            prop_assert_eq!(replica.value(), increments.iter().sum::<u64>());
        }
    }
}
