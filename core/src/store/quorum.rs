//! A coordinator's quorum, sans-IO: which replicas to contact, which to borrow when one
//! fails, and when the operation has its answer.
//!
//! A coordinator contacts the N home replicas of a key. With a *sloppy* quorum, a home
//! replica that fails (an error, a timeout, a refusal) or that the failure detector already
//! suspects is replaced by the next fallback on the ring, which takes the request with a
//! *hint* naming the home replica it stands in for: it keeps the state apart and hands it
//! off when the home replica answers again. A fallback that fails passes its hint on to the
//! next. With a *strict* quorum only home replicas count.
//!
//! The operation has its answer once `needed` replicas (W for a write, R for a read)
//! succeeded. The driver answers the client then, but keeps driving the quorum until every
//! contacted replica settled, so a write still reaches (or is hinted for) all N homes.
//!
//! **Invariant:** each home replica is stood in for by at most one node at a time: the
//! hints among the replicas that succeeded name distinct home replicas, none of which
//! succeeded itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::counter::Counter;
use super::ring::Ring;

/// A replica to contact, and the home replica it stands in for when it is a fallback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub node: String,
    pub hint_for: Option<String>,
}

/// Where a quorum stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Enough replicas succeeded.
    Reached,
    /// Not yet, but replicas are pending or can still be borrowed.
    Waiting,
    /// It can no longer be reached.
    Impossible,
}

/// One quorum operation's state.
#[derive(Clone, Debug)]
pub struct Quorum {
    needed: usize,
    sloppy: bool,
    /// Fallbacks not yet borrowed, in ring order.
    fallbacks: VecDeque<String>,
    /// Node → the home it stands in for (`None`: it is a home replica).
    pending: BTreeMap<String, Option<String>>,
    succeeded: BTreeMap<String, Option<String>>,
    failed: BTreeSet<String>,
}

impl Quorum {
    /// A quorum needing `needed` of the key's `homes` (sloppy: or of the `fallbacks` standing
    /// in for them), and the replicas to contact first. Under a sloppy quorum a home in
    /// `suspected` is replaced at once by a healthy fallback, if one is left.
    pub fn start(
        needed: usize,
        sloppy: bool,
        homes: Vec<String>,
        fallbacks: Vec<String>,
        suspected: &BTreeSet<String>,
    ) -> (Quorum, Vec<Contact>) {
        assert!((1..=homes.len()).contains(&needed), "a quorum needs 1 to N replicas");
        let mut quorum = Quorum {
            needed,
            sloppy,
            fallbacks: fallbacks.into(),
            pending: BTreeMap::new(),
            succeeded: BTreeMap::new(),
            failed: BTreeSet::new(),
        };
        let mut contacts = Vec::with_capacity(homes.len());
        for home in homes {
            if sloppy && suspected.contains(&home) {
                if let Some(contact) = quorum.borrow(&home, suspected) {
                    contacts.push(contact);
                    continue;
                }
                // No fallback left: the suspected home may have recovered; try it.
            }
            quorum.pending.insert(home.clone(), None);
            contacts.push(Contact { node: home, hint_for: None });
        }
        (quorum, contacts)
    }

    /// The next fallback to stand in for `home`: the first healthy one left, or else the
    /// first one left.
    fn borrow(&mut self, home: &str, suspected: &BTreeSet<String>) -> Option<Contact> {
        let position = self
            .fallbacks
            .iter()
            .position(|node| !suspected.contains(node))
            .or((!self.fallbacks.is_empty()).then_some(0))?;
        let node = self.fallbacks.remove(position).expect("position is in range");
        self.pending.insert(node.clone(), Some(home.to_string()));
        Some(Contact { node, hint_for: Some(home.to_string()) })
    }

    /// `node` succeeded.
    pub fn succeeded(&mut self, node: &str) -> Progress {
        if let Some(hint_for) = self.pending.remove(node) {
            self.succeeded.insert(node.to_string(), hint_for);
        }
        self.progress()
    }

    /// `node` failed; under a sloppy quorum, the replica borrowed to stand in for it.
    pub fn failed(&mut self, node: &str, suspected: &BTreeSet<String>) -> (Vec<Contact>, Progress) {
        let Some(hint_for) = self.pending.remove(node) else {
            return (Vec::new(), self.progress());
        };
        self.failed.insert(node.to_string());
        let mut contacts = Vec::new();
        if self.sloppy {
            let home = hint_for.unwrap_or_else(|| node.to_string());
            contacts.extend(self.borrow(&home, suspected));
        }
        (contacts, self.progress())
    }

    /// Where the quorum stands.
    pub fn progress(&self) -> Progress {
        if self.succeeded.len() >= self.needed {
            return Progress::Reached;
        }
        // Each pending replica can still bring one success (itself, or the fallback borrowed
        // when it fails); nothing else can.
        if self.succeeded.len() + self.pending.len() < self.needed {
            return Progress::Impossible;
        }
        Progress::Waiting
    }

    /// Whether replicas are still pending.
    pub fn settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// Replicas that succeeded.
    pub fn successes(&self) -> usize {
        self.succeeded.len()
    }

    /// Replicas that failed.
    pub fn failures(&self) -> usize {
        self.failed.len()
    }

    /// Replicas that succeeded as stand-ins for a home replica.
    pub fn hinted_successes(&self) -> usize {
        self.succeeded.values().filter(|hint| hint.is_some()).count()
    }

    /// Whether `node` answered as a home replica (not as a stand-in).
    pub fn succeeded_as_home(&self, node: &str) -> bool {
        matches!(self.succeeded.get(node), Some(None))
    }

    /// The stand-ins that succeeded: (node, home it stands in for).
    pub fn stand_ins(&self) -> Vec<(String, String)> {
        self.succeeded
            .iter()
            .filter_map(|(node, hint)| hint.as_ref().map(|home| (node.clone(), home.clone())))
            .collect()
    }
}

/// Whether the nodes that `answered` cover every key of the ring with at least `r` home
/// replicas each (a scan's quorum).
pub fn covered(ring: &Ring, answered: &BTreeSet<String>, r: usize) -> bool {
    ring.home_sets().iter().all(|homes| homes.iter().filter(|h| answered.contains(*h)).count() >= r)
}

/// Merges the pages replicas answered to one scan into one page of at most `limit` live
/// keys, and where the next page starts. A replica that stopped early (`truncated`) knows
/// nothing past its last key, so the merged page stops there too.
pub fn merge_pages(
    pages: Vec<(Vec<(String, Counter)>, bool)>,
    limit: usize,
) -> (Vec<(String, Counter)>, Option<String>) {
    assert!(limit > 0, "a page holds at least one key");
    let cutoff: Option<String> = pages
        .iter()
        .filter(|(entries, truncated)| *truncated && !entries.is_empty())
        .filter_map(|(entries, _)| entries.last().map(|(key, _)| key.clone()))
        .min();
    let mut merged: BTreeMap<String, Counter> = BTreeMap::new();
    for (entries, _) in pages {
        for (key, state) in entries {
            if cutoff.as_ref().is_none_or(|cutoff| key <= *cutoff) {
                merged.entry(key).or_default().merge(&state);
            }
        }
    }
    // Tombstones take no room in a page, and resuming after the cutoff skips nothing.
    let mut page = Vec::new();
    let mut last_seen: Option<String> = None;
    for (key, state) in merged {
        if page.len() == limit {
            return (page, last_seen.map(|key| key + "\0"));
        }
        last_seen = Some(key.clone());
        if !state.is_deleted() {
            page.push((key, state));
        }
    }
    (page, cutoff.map(|key| key + "\0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::counter::Slot;
    use proptest::prelude::*;

    fn names(prefix: &str, count: usize) -> Vec<String> {
        (1..=count).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn a_sloppy_write_borrows_a_fallback_with_a_hint() {
        let none = BTreeSet::new();
        let (mut quorum, contacts) = Quorum::start(2, true, names("h", 3), names("f", 2), &none);
        assert_eq!(contacts.len(), 3);
        assert_eq!(quorum.succeeded("h1"), Progress::Waiting);
        let (borrowed, progress) = quorum.failed("h2", &none);
        assert_eq!(borrowed, vec![Contact { node: "f1".into(), hint_for: Some("h2".into()) }]);
        assert_eq!(progress, Progress::Waiting);
        // The stand-in fails too: the hint passes on.
        let (borrowed, _) = quorum.failed("f1", &none);
        assert_eq!(borrowed, vec![Contact { node: "f2".into(), hint_for: Some("h2".into()) }]);
        assert_eq!(quorum.succeeded("f2"), Progress::Reached);
        assert_eq!(quorum.hinted_successes(), 1);
        assert!(!quorum.settled(), "h3 is still pending");
    }

    #[test]
    fn a_strict_write_fails_without_enough_homes_and_a_suspect_is_skipped_only_when_sloppy() {
        let none = BTreeSet::new();
        let (mut strict, _) = Quorum::start(2, false, names("h", 3), names("f", 2), &none);
        strict.succeeded("h1");
        assert!(strict.failed("h2", &none).0.is_empty());
        assert_eq!(strict.failed("h3", &none).1, Progress::Impossible);
        let suspected: BTreeSet<String> = ["h1".to_string(), "f1".to_string()].into();
        let (_, contacts) = Quorum::start(2, false, names("h", 3), names("f", 2), &suspected);
        assert_eq!(contacts[0].node, "h1");
        let (_, contacts) = Quorum::start(2, true, names("h", 3), names("f", 2), &suspected);
        assert_eq!(contacts[0], Contact { node: "f2".into(), hint_for: Some("h1".into()) });
    }

    #[test]
    fn pages_stop_where_a_truncated_replica_stopped_and_skip_tombstones() {
        let state = |total| Counter::from_slot("w", Slot { batch: 1, total });
        let deleted = {
            let mut c = state(3);
            c.merge(&Counter::tombstone_of(&state(3)));
            c
        };
        let a = (vec![("a".to_string(), state(1)), ("c".to_string(), state(3))], true);
        let b = (vec![("b".to_string(), deleted), ("d".to_string(), state(4))], false);
        let (page, resume) = merge_pages(vec![a, b], 10);
        let keys: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(resume.as_deref(), Some("c\0"));
        let (page, resume) =
            merge_pages(vec![(vec![("x".into(), state(1)), ("y".into(), state(2))], false)], 1);
        assert_eq!(page.len(), 1);
        assert_eq!(resume.as_deref(), Some("x\0"));
    }

    proptest! {
        /// Against a model: a strict quorum is reached iff `needed` homes succeed; a sloppy one
        /// iff `needed` nodes among homes and fallbacks succeed (every failure borrows the
        /// next fallback). Hints name distinct homes that did not succeed themselves.
        #[test]
        fn the_quorum_agrees_with_its_model(
            homes in 1usize..5,
            fallbacks in 0usize..4,
            needed_pick in any::<prop::sample::Index>(),
            sloppy in any::<bool>(),
            good in proptest::collection::vec(any::<bool>(), 9),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 20),
        ) {
            let needed = needed_pick.index(homes) + 1;
            let home_names = names("h", homes);
            let fallback_names = names("f", fallbacks);
            let is_good = |node: &str| {
                let index: usize = node[1..].parse::<usize>().unwrap() - 1;
                let offset = if node.starts_with('h') { 0 } else { 5 };
                good[(index + offset) % good.len()]
            };
            let none = BTreeSet::new();
            let (mut quorum, first) = Quorum::start(needed, sloppy, home_names.clone(), fallback_names.clone(), &none);
            let mut outstanding: Vec<Contact> = first;
            let mut picks = order.iter().cycle();
            while !outstanding.is_empty() {
                let contact = outstanding.remove(picks.next().unwrap().index(outstanding.len()));
                if is_good(&contact.node) {
                    quorum.succeeded(&contact.node);
                } else {
                    outstanding.extend(quorum.failed(&contact.node, &none).0);
                }
            }
            prop_assert!(quorum.settled());
            let good_homes = home_names.iter().filter(|n| is_good(n)).count();
            let failed_homes = homes - good_homes;
            let reachable = if sloppy {
                // Each failure borrows one more fallback, while any are left.
                let mut standing = good_homes;
                let mut tried = 0;
                let mut failures = failed_homes;
                while failures > 0 && tried < fallbacks {
                    let node = &fallback_names[tried];
                    tried += 1;
                    if is_good(node) { standing += 1; failures -= 1; }
                }
                standing
            } else {
                good_homes
            };
            prop_assert_eq!(quorum.progress() == Progress::Reached, reachable >= needed,
                "reachable {} needed {}", reachable, needed);
            let stand_ins = quorum.stand_ins();
            let homes_stood_for: BTreeSet<&String> = stand_ins.iter().map(|(_, h)| h).collect();
            prop_assert_eq!(homes_stood_for.len(), stand_ins.len());
            for home in homes_stood_for {
                prop_assert!(!quorum.succeeded_as_home(home));
            }
        }
    }
}
