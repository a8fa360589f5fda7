//! Raft safety: a pure function from a history to a verdict, for any replicated group (the
//! job queue's, the auth management plane's).
//!
//! The nodes of a group record Raft internals (`raft_role`, `raft_applied`,
//! `raft_snapshot_restored`, `raft_recovered`, each with the group's name in `group`).
//! [`raft_safety`] checks, from those alone:
//! - **election safety**: one leader per term;
//! - **log matching**: every node applies the same entry at each index (through the chain
//!   hash each applied entry carries);
//! - **apply order**: each node applies in order, from where it recovered or restored;
//! - **leader completeness**: a new leader holds every entry already committed in an earlier
//!   term;
//! - **no needless stop**: a node stops itself (`raft_stopped`) only when a fault corrupted its
//!   disk. A node refuses a log whose fsynced records fail their checksums; if it refuses one
//!   that no fault damaged (a torn tail recovery left in place, then wrote after), its own
//!   persistence broke it, and a group can lose its quorum that way for good.
//! - **a stopped node stays silent**: a node that stopped itself (its log cannot be trusted)
//!   records no role, vote or applied entry until it recovers again from its disk: it never
//!   votes or acknowledges from a damaged log. A replica with corrupt fsynced data stops for
//!   good rather than being rebuilt from its peers: one that forgot an entry or a vote it had
//!   acknowledged could let a later leader lose a committed entry.
//!
//! **Invariant:** it sees only the history. A field it needs that is missing or mistyped is a
//! violation naming the event, never a panic and never skipped in silence.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use pessimist_core::history::{Event, EventKind};
use serde_json::{json, Value};

use crate::check::{need_str, need_u64, Verdict};

/// A log entry as one node applied it (or restored it as a snapshot's last entry).
#[derive(Clone, Copy, Debug)]
struct AppliedEntry<'a> {
    term: u64,
    chain: &'a str,
    node: &'a str,
    at: u64,
}

/// How far one node has applied.
#[derive(Clone, Copy, Debug, Default)]
struct ApplyPosition {
    applied_last: Option<u64>,
    /// A `raft_recovered` since the last apply: the next one may start anywhere.
    restarted: bool,
}

/// How an applied index was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reached {
    /// An entry applied from the log: the next index, or anywhere after a restart.
    Entry,
    /// A snapshot installed: any index not behind the last applied one.
    Snapshot,
}

/// The Raft checks' state as the history goes by.
#[derive(Debug, Default)]
struct RaftWatch<'a> {
    violations: Vec<String>,
    terms: BTreeSet<u64>,
    /// (term, id) of every leader seen: the elections.
    elections: BTreeSet<(u64, u64)>,
    /// term -> its first leader: (id, node, event).
    leader_by_term: BTreeMap<u64, (u64, &'a str, u64)>,
    /// index -> the entry first seen applied there: the one every node must agree with.
    entry_by_index: BTreeMap<u64, AppliedEntry<'a>>,
    /// (reference node, node) pairs already reported as diverging: the chain covers the
    /// prefix, so every later index would repeat the same news.
    diverged: BTreeSet<(&'a str, &'a str)>,
    positions: BTreeMap<&'a str, ApplyPosition>,
    snapshots_restored: u64,
    restarts: u64,
    /// Highest term of a leader seen so far.
    leader_term_max: u64,
    /// The highest index applied anywhere so far.
    applied_index_max: u64,
    /// `leader_term_max` when the highest applied index grew -> (that index, its entry).
    /// An entry is committed by a leader, which records its `raft_role` before anything it
    /// commits can be applied; so an entry applied while no leader of term >= T had been
    /// seen was committed in a term below T, and every leader of term T must hold it.
    applied_max_by_leader_term: BTreeMap<u64, (u64, AppliedEntry<'a>)>,
}

impl<'a> RaftWatch<'a> {
    fn role(&mut self, node: &'a str, detail: &Value, at: u64) -> Result<(), String> {
        let id = need_u64(detail, "id", at, "raft_role")?;
        let term = need_u64(detail, "term", at, "raft_role")?;
        let role = need_str(detail, "role", at, "raft_role")?;
        self.positions.entry(node).or_default();
        self.terms.insert(term);
        if role != "leader" {
            return Ok(());
        }
        let last_index = need_u64(detail, "last_index", at, "raft_role")?;
        self.check_one_leader(node, id, term, at);
        self.check_leader_complete(node, term, last_index, at);
        self.leader_term_max = self.leader_term_max.max(term);
        Ok(())
    }

    fn check_one_leader(&mut self, node: &'a str, id: u64, term: u64, at: u64) {
        if !self.elections.insert((term, id)) {
            return; // The same leader again (its commit index or peers changed).
        }
        match self.leader_by_term.entry(term) {
            Entry::Vacant(vacant) => {
                vacant.insert((id, node, at));
            }
            Entry::Occupied(first) => {
                let (first_id, first_node, first_at) = *first.get();
                self.violations.push(format!(
                    "term {term} has two leaders: {first_node} (id {first_id}, event {first_at}) \
                     and {node} (id {id}, event {at})"
                ));
            }
        }
    }

    fn check_leader_complete(&mut self, node: &str, term: u64, last_index: u64, at: u64) {
        // Only entries committed in a term below `term` are owed to this leader: a leader of
        // an old term (elected by votes delayed in the network) may lawfully lack entries
        // that a newer term committed.
        let Some((_, &(index, entry))) = self.applied_max_by_leader_term.range(..term).next_back()
        else {
            return;
        };
        if last_index < index {
            self.violations.push(format!(
                "{node} became leader of term {term} at event {at} with last index {last_index}, \
                 but {} had applied index {index} at event {}, committed before term {term}",
                entry.node, entry.at
            ));
        }
    }

    fn applied(&mut self, node: &'a str, detail: &'a Value, at: u64) -> Result<(), String> {
        let entries = detail
            .get("entries")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("event {at}: raft_applied without an array \"entries\""))?;
        for entry in entries {
            let parsed = match entry.as_array().map(Vec::as_slice) {
                Some([index, term, chain]) => index.as_u64().zip(term.as_u64()).zip(chain.as_str()),
                _ => None,
            };
            let Some(((index, term), chain)) = parsed else {
                return Err(format!(
                    "event {at}: raft_applied entry is not [index, term, \"chain\"]: {entry}"
                ));
            };
            self.reach(node, index, AppliedEntry { term, chain, node, at }, Reached::Entry);
        }
        Ok(())
    }

    fn snapshot_restored(
        &mut self,
        node: &'a str,
        detail: &'a Value,
        at: u64,
    ) -> Result<(), String> {
        let what = "raft_snapshot_restored";
        let index = need_u64(detail, "index", at, what)?;
        let term = need_u64(detail, "term", at, what)?;
        let chain = need_str(detail, "chain", at, what)?;
        self.snapshots_restored += 1;
        self.reach(node, index, AppliedEntry { term, chain, node, at }, Reached::Snapshot);
        Ok(())
    }

    fn recovered(&mut self, node: &'a str) {
        self.restarts += 1;
        self.positions.entry(node).or_default().restarted = true;
    }

    /// `node` has applied `index`, holding `entry` there.
    fn reach(&mut self, node: &'a str, index: u64, entry: AppliedEntry<'a>, reached: Reached) {
        self.check_agreement(index, entry);
        self.check_apply_order(node, index, entry.at, reached);
        if index > self.applied_index_max {
            self.applied_index_max = index;
            self.applied_max_by_leader_term.insert(self.leader_term_max, (index, entry));
        }
    }

    fn check_agreement(&mut self, index: u64, entry: AppliedEntry<'a>) {
        let first = *self.entry_by_index.entry(index).or_insert(entry);
        let agrees = (first.term, first.chain) == (entry.term, entry.chain);
        if !agrees && self.diverged.insert((first.node, entry.node)) {
            self.violations.push(format!(
                "index {index}: {} applied term {} chain {} at event {}, but {} applied term {} \
                 chain {} at event {} (logs differ at or before this index)",
                entry.node,
                entry.term,
                entry.chain,
                entry.at,
                first.node,
                first.term,
                first.chain,
                first.at
            ));
        }
    }

    fn check_apply_order(&mut self, node: &'a str, index: u64, at: u64, reached: Reached) {
        let position = self.positions.entry(node).or_default();
        let restarted = std::mem::take(&mut position.restarted);
        let previous = position.applied_last.replace(index);
        let Some(last) = previous.filter(|_| !restarted) else {
            return; // The first apply, or the first after a restart: it may start anywhere.
        };
        let problem = match reached {
            Reached::Entry if index <= last => "went back",
            Reached::Entry if index > last + 1 => "skipped ahead without a snapshot",
            Reached::Snapshot if index < last => "went back by installing a snapshot",
            _ => return,
        };
        self.violations.push(format!(
            "{node} {problem}: applied index {index} at event {at} after index {last}, with no \
             restart in between"
        ));
    }

    fn verdict(self) -> Verdict {
        let figures = BTreeMap::from([
            ("terms_seen".into(), json!(self.terms.len())),
            ("term_max".into(), json!(self.terms.last().copied().unwrap_or(0))),
            ("leader_elections".into(), json!(self.elections.len())),
            ("applied_index_max".into(), json!(self.applied_index_max)),
            ("nodes".into(), json!(self.positions.len())),
            ("snapshots_restored".into(), json!(self.snapshots_restored)),
            ("restarts".into(), json!(self.restarts)),
        ]);
        Verdict::from_violations(self.violations, figures)
    }
}

/// An internal event of one Raft group's nodes: (node, what, detail).
pub fn group_event<'a>(event: &'a Event, group: &str) -> Option<(&'a str, &'a str, &'a Value)> {
    match &event.kind {
        EventKind::Internal { node, what, detail } if detail["group"] == group => {
            Some((node.as_str(), what.as_str(), detail))
        }
        _ => None,
    }
}

/// Raft's safety as the nodes of one group (`queue`, `auth`) report it: (a) at most one leader per term; (b) every node
/// applies the same entry (term and chain hash) at each index, which through the chain is
/// log matching; (c) each node applies indexes in order without gaps, except across a
/// snapshot or a restart (`raft_recovered`); (d) a node that becomes leader of term T holds
/// (by its `last_index`) every entry applied anywhere before it that was committed in a
/// term below T; (e) no node stops itself unless a fault corrupted its disk; (f) a node that
/// stopped itself records no Raft event until it recovers again.
pub fn raft_safety(events: &[Event], group: &str) -> Verdict {
    let mut watch = RaftWatch::default();
    // Nodes whose disk a fault corrupted: they may stop, and should.
    let mut corrupted: BTreeSet<&str> = BTreeSet::new();
    // Nodes that stopped themselves and have not recovered since.
    let mut stopped: BTreeSet<&str> = BTreeSet::new();
    for event in events {
        if let EventKind::FaultStart { kind, detail, .. } = &event.kind {
            if kind == "corrupt_disk" {
                corrupted.extend(detail["node"].as_str());
            }
        }
        let Some((node, what, detail)) = group_event(event, group) else { continue };
        let at = event.index;
        match what {
            "raft_recovered" => {
                stopped.remove(node);
            }
            "raft_stopped" => {
                stopped.insert(node);
            }
            _ if stopped.contains(node) => watch.violations.push(format!(
                "{node} recorded {what} at event {at} after it stopped itself, before recovering"
            )),
            _ => {}
        }
        let read = match what {
            "raft_role" => watch.role(node, detail, at),
            "raft_applied" => watch.applied(node, detail, at),
            "raft_snapshot_restored" => watch.snapshot_restored(node, detail, at),
            "raft_recovered" => {
                watch.recovered(node);
                Ok(())
            }
            "raft_stopped" if !corrupted.contains(node) => {
                let reason = detail["reason"].as_str().unwrap_or("no reason given");
                watch.violations.push(format!(
                    "{node} stopped itself at event {at} though no fault corrupted its disk: {reason}"
                ));
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(malformed) = read {
            watch.violations.push(malformed);
        }
    }
    watch.verdict()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::check::QUEUE_GROUP;
    use crate::queue::test_history::{chain, check, History};

    #[test]
    fn a_stopped_node_stays_silent_until_it_recovers() {
        let internal = |what: &str, detail: Value| EventKind::Internal {
            node: "queue-2".into(),
            what: what.into(),
            detail,
        };
        let corrupt = EventKind::FaultStart {
            fault: 0,
            kind: "corrupt_disk".into(),
            detail: json!({ "kind": "corrupt_disk", "node": "queue-2" }),
        };
        let role = json!({ "group": QUEUE_GROUP, "term": 3, "role": "follower", "leader": 1,
                           "id": 2, "last_index": 0, "commit": 0 });
        let events: Vec<Event> = [
            corrupt,
            internal("raft_stopped", json!({ "group": QUEUE_GROUP, "reason": "corrupt" })),
            internal("raft_role", role.clone()),
            internal("raft_recovered", json!({ "group": QUEUE_GROUP })),
            internal("raft_role", role),
        ]
        .into_iter()
        .enumerate()
        .map(|(index, kind)| Event { index: index as u64, time_us: index as u64, kind })
        .collect();
        let verdict = raft_safety(&events, QUEUE_GROUP);
        assert_eq!(
            verdict.violations,
            vec![
                "queue-2 recorded raft_role at event 2 after it stopped itself, before recovering"
            ]
        );
    }

    #[test]
    fn a_node_may_stop_itself_only_when_a_fault_corrupted_its_disk() {
        let stopped = |node: &str| EventKind::Internal {
            node: node.into(),
            what: "raft_stopped".into(),
            detail: json!({ "group": QUEUE_GROUP, "reason": "disk: corrupt record" }),
        };
        let corrupt = EventKind::FaultStart {
            fault: 0,
            kind: "corrupt_disk".into(),
            detail: json!({ "kind": "corrupt_disk", "node": "queue-2" }),
        };
        let events: Vec<Event> = [corrupt, stopped("queue-2"), stopped("queue-3")]
            .into_iter()
            .enumerate()
            .map(|(index, kind)| Event { index: index as u64, time_us: index as u64, kind })
            .collect();
        let verdict = raft_safety(&events, QUEUE_GROUP);
        assert_eq!(
            verdict.violations,
            vec!["queue-3 stopped itself at event 2 though no fault corrupted its disk: disk: corrupt record"]
        );
    }

    #[test]
    fn raft_safety_passes_elections_snapshots_and_restarts() {
        let mut history = History::default();
        history
            .role(1, 1, "leader", 0)
            .role(2, 1, "follower", 0)
            .applied(1, &[(1, 1), (2, 1)])
            .applied(2, &[(1, 1)])
            .applied(2, &[(2, 1)])
            .role(1, 1, "leader", 2) // Recorded again: not a second election.
            .role(2, 2, "candidate", 2)
            .role(2, 2, "leader", 2)
            .applied(2, &[(3, 2), (4, 2)])
            .snapshot(3, 4, 2)
            .recovered(1)
            .applied(1, &[(1, 1), (2, 1), (3, 2), (4, 2)])
            .node(3, "crashed", json!({}));
        let verdict = raft_safety(&history.events, QUEUE_GROUP);
        check(&verdict, None);
        assert_eq!(verdict.figures["terms_seen"], json!(2));
        assert_eq!(verdict.figures["leader_elections"], json!(2));
        assert_eq!(verdict.figures["applied_index_max"], json!(4));
        assert_eq!(verdict.figures["nodes"], json!(3));
    }

    #[test]
    fn raft_safety_catches_two_leaders_in_one_term() {
        let mut history = History::default();
        history.role(1, 3, "leader", 0).role(2, 3, "leader", 0);
        let verdict = raft_safety(&history.events, QUEUE_GROUP);
        check(&verdict, Some("term 3 has two leaders: queue-1 (id 1, event 0) and queue-2 (id 2"));
    }

    #[test]
    fn raft_safety_catches_logs_that_differ_once_per_pair_of_nodes() {
        let mut history = History::default();
        history.applied(1, &[(1, 1), (2, 1)]);
        let forked = json!({ "id": 2, "entries": [[1, 1, chain(1)], [2, 2, "00000000deadbeef"]] });
        history.node(2, "raft_applied", forked);
        let forked_again = json!({ "id": 2, "entries": [[3, 2, "00000000feedface"]] });
        history.applied(1, &[(3, 1)]).node(2, "raft_applied", forked_again);
        let verdict = raft_safety(&history.events, QUEUE_GROUP);
        check(&verdict, Some("index 2: queue-2 applied term 2 chain 00000000deadbeef at event 1"));
        assert_eq!(verdict.figures["violations"], json!(1), "{:#?}", verdict.violations);
    }

    #[test]
    fn raft_safety_catches_applies_out_of_order_without_a_restart() {
        let backwards = |history: &mut History| {
            history.applied(1, &[(1, 1), (2, 1)]).applied(1, &[(2, 1)]);
        };
        let mut history = History::default();
        backwards(&mut history);
        check(
            &raft_safety(&history.events, QUEUE_GROUP),
            Some("queue-1 went back: applied index 2 at event 1"),
        );

        let mut history = History::default();
        history.applied(1, &[(1, 1), (3, 1)]);
        check(
            &raft_safety(&history.events, QUEUE_GROUP),
            Some("queue-1 skipped ahead without a snapshot"),
        );

        let mut history = History::default();
        history.applied(1, &[(1, 1), (2, 1), (3, 1)]).snapshot(1, 2, 1);
        check(
            &raft_safety(&history.events, QUEUE_GROUP),
            Some("went back by installing a snapshot"),
        );

        // The same replay after a restart is fine; so is a snapshot that jumps ahead.
        let mut history = History::default();
        history.applied(1, &[(1, 1), (2, 1)]).recovered(1).applied(1, &[(1, 1)]).snapshot(1, 9, 1);
        check(&raft_safety(&history.events, QUEUE_GROUP), None);
    }

    #[test]
    fn raft_safety_catches_a_leader_missing_a_committed_entry() {
        let mut history = History::default();
        history
            .role(1, 2, "leader", 0)
            .applied(1, &[(1, 2), (2, 2)])
            .applied(2, &[(1, 2)])
            // Votes of term 1 delayed in the network: a stale leader may lack term 2's entries.
            .role(3, 1, "leader", 0);
        check(&raft_safety(&history.events, QUEUE_GROUP), None);
        history.role(2, 3, "leader", 1);
        check(
            &raft_safety(&history.events, QUEUE_GROUP),
            Some(
                "queue-2 became leader of term 3 at event 4 with last index 1, but queue-1 had \
                 applied index 2 at event 1",
            ),
        );
    }

    #[test]
    fn raft_safety_reports_malformed_events() {
        let mut history = History::default();
        history.node(1, "raft_applied", json!({ "id": 1, "entries": [[1, 1]] }));
        history.node(1, "raft_role", json!({ "id": 1, "role": "leader" }));
        let verdict = raft_safety(&history.events, QUEUE_GROUP);
        check(&verdict, Some("event 0: raft_applied entry is not [index, term, \"chain\"]"));
        check(&verdict, Some("event 1: raft_role without a number \"term\""));
    }
}
