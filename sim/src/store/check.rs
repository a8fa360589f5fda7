//! The usage store's checkers: pure functions of the history (shapes in
//! [`crate::store::workload`]) and of the ring the scenario's knobs describe.
//!
//! - [`no_double_count`]: no writer's count on a key, in the final states or in any read,
//!   exceeds the running total it attempted: a retried or duplicated flush never counts twice
//!   (so a key's final value is at most the sum of the increments attempted on it).
//! - [`no_acknowledged_loss`]: each key's final state holds, for every writer, at least the
//!   total acknowledged to it (so a key's final value is at least the sum of the acknowledged
//!   increments; anything above comes from flushes whose outcome was unknown). The final
//!   dumps come after the writers stopped and every crashed node restarted, so they show
//!   what the nodes' logs gave back: a crash (the history's `crash` internal event) loses a
//!   node's unsynced bytes, its `restart` rebuilds it from the fsynced ones, and a total that
//!   lived only in unsynced bytes (or in an unsynced hint on a fallback) of every node that
//!   held it is missing from them. The checker does not take the store's word for what it
//!   fsynced: it counts, per acknowledged total, whether every home replica of the key
//!   crashed after the acknowledgement, and whether all of them were down at one instant
//!   (then no home kept it in memory: only fsynced state, home or hinted, could give it
//!   back). For a total whose acknowledgement counted hints toward W, the same is counted
//!   over every node that could hold a hint (homes and fallbacks): all down at once, the
//!   total survives only if the hints were fsynced on the fallbacks. Those figures say how
//!   hard the run tested durability; a loss names them.
//! - [`convergence`]: after the heal, every key's home replicas come to agree (same state,
//!   no hint left anywhere), all of them within the liveness bound once the shippers stop;
//!   figures: for the keys that disagreed at the heal, the time each took from the heal
//!   (p50, p99, max).
//! - [`read_your_writes`]: a shipper's read sees, for its own writer slot, every total
//!   acknowledged to it before the read began. It fails only when the settings promise it
//!   (R + W > N with a strict quorum); otherwise the violations are the design's figures.
//! - [`staleness`]: how far behind each read was: the acknowledged counts it missed, and how
//!   long ago the oldest of them had been acknowledged (samples and percentiles).
//! - [`store_availability`]: the share of flushes and reads that succeeded per window of
//!   simulated time, during faults, after the heal and inside each fault's window.
//! - [`replication`]: hinted writes, handoffs, read repairs, anti-entropy, corrupt files
//!   whose data past the damage was left to the peers to give back; fails when a node stopped
//!   itself.
//!
//! **Invariant:** checkers see only the history; a field they need that is missing is a
//! violation naming the operation, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use pessimist_core::history::{Event, EventKind};
use pessimist_core::store::counter::{Counter, Slot};
use pessimist_core::store::ring::Ring;
use serde_json::{json, Value};

use crate::check::{
    operations, percentiles, phase_start_us, Distribution, Operation, Verdict, PHASE_HEAL,
};
use crate::store::workload::DumpView;

/// The phase in which writers have stopped and the monitor waits for convergence.
pub const PHASE_CONVERGE: &str = "converge";

/// Keys whose home replicas do not all hold the same state, or that some node still holds a
/// hint for. A home replica that did not answer disagrees with those that did.
pub fn disagreeing_keys(ring: &Ring, views: &BTreeMap<String, DumpView>) -> BTreeSet<String> {
    let mut keys: BTreeSet<&String> = BTreeSet::new();
    for view in views.values() {
        keys.extend(view.home.keys());
        keys.extend(view.hinted.iter());
    }
    keys.into_iter()
        .filter(|key| {
            let digests: BTreeSet<Option<u64>> = ring
                .home(key)
                .iter()
                .map(|home| views.get(home).and_then(|view| view.home.get(*key).copied()))
                .collect();
            digests.len() > 1 || views.values().any(|view| view.hinted.contains(*key))
        })
        .cloned()
        .collect()
}

/// A state as the history shows it (see [`crate::store::workload::state_json`]).
fn parse_state(value: &Value) -> Option<Counter> {
    let mut counter = Counter::default();
    if let Some(slots) = value.get("slots").and_then(Value::as_object) {
        for (writer, slot) in slots {
            let batch = slot.get(0)?.as_u64()?;
            let total = slot.get(1)?.as_u64()?;
            counter.slots.insert(writer.clone(), Slot { batch, total });
        }
    }
    if let Some(floors) = value.get("floors").and_then(Value::as_object) {
        for (writer, floor) in floors {
            counter.floors.insert(writer.clone(), floor.as_u64()?);
        }
    }
    Some(counter)
}

/// (time, total) pairs of one (writer, key): attempts at invoke time, acknowledgements at
/// completion time.
type Totals = Vec<(u64, u64)>;

/// One key of one flush.
#[derive(Clone, Debug)]
struct FlushEntry {
    writer: String,
    key: String,
    increment: u64,
    total: u64,
}

/// What the flushes say: per (writer, key) the totals attempted (with invoke times) and
/// acknowledged (with completion times), in history order.
#[derive(Default)]
struct Flushes {
    attempted: BTreeMap<(String, String), Totals>,
    acknowledged: BTreeMap<(String, String), Totals>,
    /// Process → writer id.
    writer_of: BTreeMap<u64, String>,
    increments_attempted: u64,
    outcomes: BTreeMap<&'static str, u64>,
    hinted_acks: u64,
    /// Per (writer, key): the completion time of the first acknowledgement of its largest
    /// acknowledged total, and how many of that flush's acknowledgements were hints.
    largest_ack: BTreeMap<(String, String), (u64, u64)>,
    problems: Vec<String>,
}

impl Flushes {
    fn read(ops: &[Operation]) -> Flushes {
        let mut flushes = Flushes::default();
        for op in ops.iter().filter(|op| op.f == "flush") {
            *flushes.outcomes.entry(op.outcome).or_default() += 1;
            flushes.hinted_acks += op.result["hinted"].as_u64().unwrap_or(0);
            let Some(writer) = op.invoked_value["writer"].as_str() else {
                flushes.problems.push(format!("flush at {} us without a writer", op.invoke_us));
                continue;
            };
            flushes.writer_of.insert(op.process, writer.to_string());
            let Some(entries) = op.invoked_value["entries"].as_array() else {
                flushes.problems.push(format!("flush at {} us without entries", op.invoke_us));
                continue;
            };
            let acked: BTreeSet<&str> = match op.outcome {
                "ok" => entries.iter().filter_map(|e| e.get(0)?.as_str()).collect(),
                _ => op.result["acked"]
                    .as_array()
                    .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
            };
            for entry in entries {
                let parsed = (|| {
                    Some(FlushEntry {
                        writer: writer.to_string(),
                        key: entry.get(0)?.as_str()?.to_string(),
                        increment: entry.get(1)?.as_u64()?,
                        total: entry.get(3)?.as_u64()?,
                    })
                })();
                let Some(entry) = parsed else {
                    flushes
                        .problems
                        .push(format!("flush at {} us: bad entry {entry}", op.invoke_us));
                    continue;
                };
                flushes.increments_attempted += entry.increment;
                let id = (entry.writer.clone(), entry.key.clone());
                flushes.attempted.entry(id.clone()).or_default().push((op.invoke_us, entry.total));
                if acked.contains(entry.key.as_str()) {
                    if let Some(done_us) = op.complete_us {
                        let before = flushes.acknowledged_max(&entry.writer, &entry.key);
                        if entry.total > before || !flushes.largest_ack.contains_key(&id) {
                            // Per key where the workload recorded it, else the flush's.
                            let hinted = op.result["hinted_keys"]
                                .get(&entry.key)
                                .and_then(Value::as_u64)
                                .or_else(|| {
                                    let per_key = op.result.get("hinted_keys").is_some();
                                    (!per_key).then(|| op.result["hinted"].as_u64().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            flushes.largest_ack.insert(id.clone(), (done_us, hinted));
                        }
                        flushes.acknowledged.entry(id).or_default().push((done_us, entry.total));
                    }
                }
            }
        }
        flushes
    }

    fn attempted_max(&self, writer: &str, key: &str) -> u64 {
        let id = (writer.to_string(), key.to_string());
        self.attempted
            .get(&id)
            .map_or(0, |totals| totals.iter().map(|(_, t)| *t).max().unwrap_or(0))
    }

    /// The largest total attempted by a flush invoked before `before_us`.
    fn attempted_before(&self, writer: &str, key: &str, before_us: u64) -> u64 {
        let id = (writer.to_string(), key.to_string());
        self.attempted.get(&id).map_or(0, |totals| {
            totals.iter().filter(|(at, _)| *at <= before_us).map(|(_, t)| *t).max().unwrap_or(0)
        })
    }

    fn acknowledged_max(&self, writer: &str, key: &str) -> u64 {
        let id = (writer.to_string(), key.to_string());
        self.acknowledged.get(&id).map_or(0, |acks| acks.iter().map(|(_, t)| *t).max().unwrap_or(0))
    }
}

/// The final state of each key: the merge of every node's final dump, home and hinted; and
/// how many nodes answered one.
fn final_states(
    ops: &[Operation],
    problems: &mut Vec<String>,
) -> (BTreeMap<String, Counter>, usize) {
    let mut states: BTreeMap<String, Counter> = BTreeMap::new();
    let mut nodes = BTreeSet::new();
    for op in ops.iter().filter(|op| op.f == "final_dump" && op.outcome == "ok") {
        nodes.insert(op.result["node"].as_str().unwrap_or_default().to_string());
        let home =
            op.result["home"].as_object().into_iter().flatten().map(|(k, v)| (k.as_str(), v));
        let hinted = op.result["hinted"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| Some((entry.get(1)?.as_str()?, entry.get(2)?)));
        for (key, state) in home.chain(hinted) {
            match parse_state(state) {
                Some(state) => {
                    states.entry(key.to_string()).or_default().merge(&state);
                }
                None => problems
                    .push(format!("final dump of {}: bad state of {key}", op.result["node"])),
            }
        }
    }
    (states, nodes.len())
}

/// Per node, the intervals (crash, restart) it was down, from the `crash` and `restart`
/// internal events; a node still down at the end has `u64::MAX` as its restart.
fn down_intervals(events: &[Event]) -> BTreeMap<&str, Vec<(u64, u64)>> {
    let mut down: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for event in events {
        let EventKind::Internal { node, what, .. } = &event.kind else { continue };
        let intervals = down.entry(node.as_str()).or_default();
        match what.as_str() {
            "crash" => intervals.push((event.time_us, u64::MAX)),
            "restart" => {
                if let Some(last) = intervals.last_mut().filter(|last| last.1 == u64::MAX) {
                    last.1 = event.time_us;
                }
            }
            _ => {}
        }
    }
    down
}

/// How crashes after an acknowledgement at `ack_us` tested it, for the replicas `homes`:
/// (every home crashed after it, all homes were down at one instant after it).
fn crash_test(
    down: &BTreeMap<&str, Vec<(u64, u64)>>,
    homes: &[String],
    ack_us: u64,
) -> (bool, bool) {
    let after = |home: &String| -> Vec<(u64, u64)> {
        down.get(home.as_str())
            .map(|intervals| intervals.iter().filter(|(_, up)| *up > ack_us).copied().collect())
            .unwrap_or_default()
    };
    let per_home: Vec<Vec<(u64, u64)>> = homes.iter().map(after).collect();
    let all_crashed = !homes.is_empty()
        && per_home.iter().all(|intervals| intervals.iter().any(|(c, _)| *c > ack_us));
    // All down at once: some home's crash instant (after the ack) lies inside a down
    // interval of every other home. The latest crash of an overlap is such an instant.
    let together = all_crashed
        && per_home.iter().flatten().any(|&(crash, _)| {
            crash > ack_us
                && per_home
                    .iter()
                    .all(|intervals| intervals.iter().any(|&(c, up)| c <= crash && crash < up))
        });
    (all_crashed, together)
}

fn reached_final_dump(ops: &[Operation]) -> bool {
    ops.iter().any(|op| op.f == "final_dump")
}

/// No count beyond what was attempted: see the module comment.
pub fn no_double_count(events: &[Event]) -> Verdict {
    let ops = operations(events);
    let flushes = Flushes::read(&ops);
    let mut violations = flushes.problems.clone();
    let (finals, _) = final_states(&ops, &mut violations);
    let mut counted_total = 0u64;
    for (key, state) in &finals {
        for (writer, slot) in &state.slots {
            counted_total += slot.total;
            let attempted = flushes.attempted_max(writer, key);
            if slot.total > attempted {
                violations.push(format!(
                    "{key}: writer {writer} counted {} in the final state, but attempted only {attempted}",
                    slot.total
                ));
            }
        }
    }
    let mut reads_checked = 0u64;
    for read in ops.iter().filter(|op| op.f == "read" && op.outcome == "ok") {
        reads_checked += 1;
        let key = read.result["key"].as_str().unwrap_or_default();
        let Some(state) = parse_state(&read.result) else {
            violations.push(format!("read at {} us: bad state {}", read.invoke_us, read.result));
            continue;
        };
        let done_us = read.complete_us.unwrap_or(u64::MAX);
        for (writer, slot) in &state.slots {
            let attempted = flushes.attempted_before(writer, key, done_us);
            if slot.total > attempted {
                violations.push(format!(
                    "{key}: a read at {} us saw writer {writer} count {}, beyond the {attempted} attempted",
                    read.invoke_us, slot.total
                ));
            }
        }
    }
    if !reached_final_dump(&ops) {
        violations.push("the run never reached its final dumps".into());
    }
    let figures = BTreeMap::from([
        ("keys".to_string(), json!(finals.len())),
        ("increments_attempted".to_string(), json!(flushes.increments_attempted)),
        ("counted_final".to_string(), json!(counted_total)),
        ("reads_checked".to_string(), json!(reads_checked)),
    ]);
    Verdict::from_violations(violations, figures)
}

/// Nothing acknowledged is lost, crashes of its replicas included: see the module comment.
/// `ring` names each key's home replicas.
pub fn no_acknowledged_loss(events: &[Event], ring: &Ring) -> Verdict {
    let ops = operations(events);
    let flushes = Flushes::read(&ops);
    let mut violations = flushes.problems.clone();
    let (finals, nodes_answered) = final_states(&ops, &mut violations);
    let down = down_intervals(events);
    let (mut acknowledged_total, mut lost_total, mut beyond_total) = (0u64, 0u64, 0u64);
    let (mut acks, mut homes_crashed_after, mut homes_down_together) = (0u64, 0u64, 0u64);
    let (mut hinted_acks, mut hinted_holders_down_together) = (0u64, 0u64);
    let mut keys_exact = 0u64;
    let keys: BTreeSet<&String> = flushes.attempted.keys().map(|(_, key)| key).collect();
    for key in &keys {
        let state = finals.get(*key).cloned().unwrap_or_default();
        let mut exact = true;
        let writers: BTreeSet<&String> =
            flushes.attempted.keys().filter(|(_, k)| k == *key).map(|(writer, _)| writer).collect();
        for writer in writers {
            let acknowledged = flushes.acknowledged_max(writer, key);
            let held = state.slots.get(writer.as_str()).map_or(0, |slot| slot.total);
            acknowledged_total += acknowledged;
            let largest = flushes.largest_ack.get(&(writer.to_string(), key.to_string()));
            let (crashed, together) = largest
                .map_or((false, false), |&(ack_us, _)| crash_test(&down, &ring.home(key), ack_us));
            if let Some(&(ack_us, hinted)) = largest {
                acks += 1;
                homes_crashed_after += u64::from(crashed);
                homes_down_together += u64::from(together);
                if hinted > 0 {
                    // Hints counted toward W: every node that could hold one (homes and
                    // fallbacks) down at once after the ack leaves only fsynced hints.
                    let holders: Vec<String> =
                        ring.home(key).into_iter().chain(ring.fallbacks(key)).collect();
                    hinted_acks += 1;
                    hinted_holders_down_together +=
                        u64::from(crash_test(&down, &holders, ack_us).1);
                }
                if held < acknowledged {
                    violations.push(format!(
                        "{key}: writer {writer} was acknowledged a total of {acknowledged} at {ack_us} us \
                         ({hinted} of its acknowledgements hints; every home replica crashed after it: \
                         {crashed}, all down at once: {together}), the final state holds {held}"
                    ));
                }
            }
            if held < acknowledged {
                lost_total += acknowledged - held;
            } else {
                beyond_total += held - acknowledged;
            }
            exact &= held == acknowledged;
        }
        keys_exact += u64::from(exact);
    }
    if !reached_final_dump(&ops) {
        violations.push("the run never reached its final dumps".into());
    }
    let figures = BTreeMap::from([
        ("keys".to_string(), json!(keys.len())),
        ("keys_final_equals_acknowledged".to_string(), json!(keys_exact)),
        ("acknowledged_increments".to_string(), json!(acknowledged_total)),
        ("lost_increments".to_string(), json!(lost_total)),
        ("counted_from_unacknowledged_flushes".to_string(), json!(beyond_total)),
        ("flushes".to_string(), json!(flushes.outcomes)),
        ("nodes_with_final_dump".to_string(), json!(nodes_answered)),
        ("acknowledged_totals".to_string(), json!(acks)),
        ("acknowledged_totals_all_homes_crashed_after".to_string(), json!(homes_crashed_after)),
        ("acknowledged_totals_all_homes_down_at_once".to_string(), json!(homes_down_together)),
        ("acknowledged_totals_with_hints".to_string(), json!(hinted_acks)),
        (
            "acknowledged_totals_with_hints_all_holders_down_at_once".to_string(),
            json!(hinted_holders_down_together),
        ),
        ("node_crashes".to_string(), json!(down.values().map(Vec::len).sum::<usize>())),
    ]);
    Verdict::from_violations(violations, figures)
}

/// Every key's home replicas agree after the heal, within the bound once the shippers
/// stopped: see the module comment. Figures: the keys that disagreed at the heal and how long
/// each took to agree (p50, p99, max, from the heal), and how long after the shippers stopped
/// every key agreed.
pub fn convergence(events: &[Event], ring: &Ring, bound_ms: u64) -> Verdict {
    let ops = operations(events);
    let mut figures = BTreeMap::from([("bound_ms".to_string(), json!(bound_ms))]);
    let (Some(heal_us), Some(stopped_us)) =
        (phase_start_us(events, PHASE_HEAL), phase_start_us(events, PHASE_CONVERGE))
    else {
        return Verdict::from_violations(
            vec!["the run never reached its convergence phase".into()],
            figures,
        );
    };
    // Round → (node → view, first invoke, last completion).
    let mut rounds: BTreeMap<u64, (BTreeMap<String, DumpView>, u64, u64)> = BTreeMap::new();
    let mut violations = Vec::new();
    for op in ops.iter().filter(|op| op.f == "dump") {
        let Some(round) = op.invoked_value["round"].as_u64() else {
            violations.push(format!("dump at {} us without a round", op.invoke_us));
            continue;
        };
        let entry = rounds.entry(round).or_insert((BTreeMap::new(), op.invoke_us, 0));
        entry.1 = entry.1.min(op.invoke_us);
        entry.2 = entry.2.max(op.complete_us.unwrap_or(op.invoke_us));
        if op.outcome != "ok" {
            continue;
        }
        let node = op.result["node"].as_str().unwrap_or_default().to_string();
        let mut view = DumpView::default();
        for (key, digest) in op.result["home"].as_object().into_iter().flatten() {
            match digest.as_str().and_then(|hex| u64::from_str_radix(hex, 16).ok()) {
                Some(digest) => {
                    view.home.insert(key.clone(), digest);
                }
                None => violations.push(format!("dump of {node}: bad digest of {key}")),
            }
        }
        view.hinted = op.result["hinted"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        entry.0.insert(node, view);
    }
    // (begun, done, keys that disagree) per round, in order.
    let disagreeing: Vec<(u64, u64, BTreeSet<String>)> = rounds
        .values()
        .map(|(views, begun_us, done_us)| (*begun_us, *done_us, disagreeing_keys(ring, views)))
        .collect();
    let Some((last_begun_us, last_done_us, last)) = disagreeing.last() else {
        violations.push("the monitor never dumped the nodes".into());
        return Verdict::from_violations(violations, figures);
    };
    let at_heal = &disagreeing[0].2;
    let mut heal_ms = Vec::new();
    for key in at_heal {
        if let Some((_, done_us, _)) = disagreeing.iter().find(|(_, _, keys)| !keys.contains(key)) {
            heal_ms.push(done_us.saturating_sub(heal_us) / 1000);
        }
    }
    let all_agree_ms = (last_done_us.saturating_sub(stopped_us)) / 1000;
    if *last_begun_us < stopped_us || !last.is_empty() {
        let first: Vec<&String> = last.iter().take(5).collect();
        violations.push(format!(
            "{} keys still disagreed {all_agree_ms} ms after the shippers stopped (bound \
             {bound_ms} ms; first: {first:?})",
            last.len()
        ));
    } else if all_agree_ms > bound_ms {
        violations.push(format!(
            "every key agreed only {all_agree_ms} ms after the shippers stopped, beyond the \
             {bound_ms} ms bound"
        ));
    }
    figures.insert("rounds".into(), json!(rounds.len()));
    figures.insert("keys_disagreeing_at_heal".into(), json!(at_heal.len()));
    figures.insert("unconverged_keys".into(), json!(last.len()));
    figures.insert("all_agree_after_writes_stopped_ms".into(), json!(all_agree_ms));
    let distribution = Distribution::from_values(
        "ms",
        "convergence: from the heal to the first dump round where a key's home replicas agree",
        heal_ms.iter().map(|&ms| ms as f64),
    );
    percentiles("converge_ms", heal_ms, &mut figures);
    Verdict::from_violations(violations, figures).with_distribution("converge_ms", distribution)
}

/// Per acknowledged (writer, key): the acknowledgements in completion order.
fn acknowledgements_by_time(flushes: &Flushes) -> BTreeMap<(String, String), Totals> {
    let mut sorted = flushes.acknowledged.clone();
    for acks in sorted.values_mut() {
        acks.sort_unstable();
    }
    sorted
}

/// A shipper reads its own acknowledged writes: see the module comment. `promised`: the
/// settings promise it (a violation fails the check).
pub fn read_your_writes(events: &[Event], promised: bool) -> Verdict {
    let ops = operations(events);
    let flushes = Flushes::read(&ops);
    let acks = acknowledgements_by_time(&flushes);
    let mut violations = Vec::new();
    let mut reads_checked = 0u64;
    for op in ops.iter().filter(|op| op.f == "read" && op.outcome == "ok") {
        let Some(writer) = flushes.writer_of.get(&op.process) else { continue };
        let key = op.result["key"].as_str().unwrap_or_default().to_string();
        let required = acks.get(&(writer.clone(), key.clone())).map_or(0, |acks| {
            acks.iter().filter(|(at, _)| *at < op.invoke_us).map(|(_, t)| *t).max().unwrap_or(0)
        });
        if required == 0 {
            continue;
        }
        reads_checked += 1;
        let seen = parse_state(&op.result)
            .and_then(|state| state.slots.get(writer).map(|slot| slot.total))
            .unwrap_or(0);
        if seen < required {
            violations.push(format!(
                "{key}: {writer}'s read at {} us saw its total {seen}, {required} having been acknowledged",
                op.invoke_us
            ));
        }
    }
    let count = violations.len();
    let mut figures = BTreeMap::from([
        ("promised".to_string(), json!(promised)),
        ("reads_checked".to_string(), json!(reads_checked)),
        ("stale_own_reads".to_string(), json!(count)),
    ]);
    if promised {
        return Verdict::from_violations(violations, figures);
    }
    figures.insert("violations".into(), json!(count));
    violations.truncate(crate::check::VIOLATIONS_MAX);
    figures.insert("examples".into(), json!(violations));
    Verdict::figures_only(figures)
}

/// How far behind reads were: see the module comment. Figures only.
pub fn staleness(events: &[Event]) -> Verdict {
    let ops = operations(events);
    let flushes = Flushes::read(&ops);
    let acks = acknowledgements_by_time(&flushes);
    let mut by_key: BTreeMap<&str, Vec<(&String, &Totals)>> = BTreeMap::new();
    for ((writer, key), list) in &acks {
        by_key.entry(key.as_str()).or_default().push((writer, list));
    }
    let (mut reads, mut stale) = (0u64, 0u64);
    let mut lag_ms = Vec::new();
    let mut missing = Vec::new();
    for op in ops.iter().filter(|op| op.f == "read" && op.outcome == "ok") {
        reads += 1;
        let key = op.result["key"].as_str().unwrap_or_default();
        let state = parse_state(&op.result).unwrap_or_default();
        let (mut missed, mut oldest_us) = (0u64, None::<u64>);
        for (writer, list) in by_key.get(key).into_iter().flatten() {
            let seen = state.slots.get(writer.as_str()).map_or(0, |slot| slot.total);
            let expected = list
                .iter()
                .filter(|(at, _)| *at < op.invoke_us)
                .map(|(_, t)| *t)
                .max()
                .unwrap_or(0);
            if expected > seen {
                missed += expected - seen;
                // The first acknowledgement this read should have reflected.
                if let Some((at, _)) =
                    list.iter().find(|(at, total)| *at < op.invoke_us && *total > seen)
                {
                    oldest_us = Some(oldest_us.map_or(*at, |o: u64| o.min(*at)));
                }
            }
        }
        if missed > 0 {
            stale += 1;
            missing.push(missed);
            lag_ms.push((op.invoke_us - oldest_us.unwrap_or(op.invoke_us)) / 1000);
        }
    }
    let mut figures = BTreeMap::from([
        ("reads".to_string(), json!(reads)),
        ("stale_reads".to_string(), json!(stale)),
        (
            "stale_fraction".to_string(),
            json!(if reads == 0 {
                0.0
            } else {
                (stale as f64 / reads as f64 * 10_000.0).round() / 10_000.0
            }),
        ),
    ]);
    let distribution = Distribution::from_values(
        "ms",
        "read staleness: from the first acknowledged flush a read missed to the read",
        lag_ms.iter().map(|&ms| ms as f64),
    );
    percentiles("staleness_ms", lag_ms, &mut figures);
    percentiles("missed_increments", missing, &mut figures);
    Verdict::figures_only(figures).with_distribution("staleness_ms", distribution)
}

/// Flushes and reads that succeeded, per window and around faults: see the module comment.
/// With a minimum set, the share after the heal must reach it.
pub fn store_availability(
    events: &[Event],
    window_ms: u64,
    heal_ok_fraction_min: Option<f64>,
) -> Verdict {
    let ops = operations(events);
    let end_us = events.last().map_or(0, |event| event.time_us);
    let heal_us = phase_start_us(events, PHASE_HEAL).unwrap_or(u64::MAX);
    let converge_us = phase_start_us(events, PHASE_CONVERGE).unwrap_or(u64::MAX);
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    let of = |f: &str| -> Vec<&Operation> { ops.iter().filter(|op| op.f == f).collect() };
    let (flushes, reads) = (of("flush"), of("read"));
    let share = |list: &[&Operation], from_us: u64, to_us: u64| -> (usize, usize) {
        let inside: Vec<&&Operation> =
            list.iter().filter(|op| op.invoke_us >= from_us && op.invoke_us < to_us).collect();
        (inside.iter().filter(|op| op.outcome == "ok").count(), inside.len())
    };
    let fraction = |(good, all): (usize, usize)| {
        if all == 0 {
            Value::Null
        } else {
            json!(round(good as f64 / all as f64))
        }
    };
    let mut figures = BTreeMap::new();
    let mut violations = Vec::new();
    for (name, plural, list) in [("flush", "flushes", &flushes), ("read", "reads", &reads)] {
        figures.insert(plural.to_string(), json!(list.len()));
        figures
            .insert(format!("{name}_ok_fraction_during_faults"), fraction(share(list, 0, heal_us)));
        figures.insert(
            format!("{name}_ok_fraction_after_heal"),
            fraction(share(list, heal_us, converge_us)),
        );
        let window_us = window_ms.max(1) * 1000;
        let mut windows = Vec::new();
        let mut start = 0;
        while start < end_us.min(converge_us) {
            let (good, all) = share(list, start, start + window_us);
            windows.push(if all == 0 {
                Value::Null
            } else {
                json!(round(good as f64 / all as f64))
            });
            start += window_us;
        }
        let lowest = windows.iter().filter_map(Value::as_f64).fold(1.0, f64::min);
        figures.insert(format!("{name}_window_ok_fraction_min"), json!(lowest));
        figures.insert(format!("{name}_windows"), json!(windows));
        let latencies: Vec<u64> = list
            .iter()
            .filter(|op| op.outcome == "ok")
            .filter_map(|op| Some((op.complete_us? - op.invoke_us) / 1000))
            .collect();
        percentiles(&format!("{name}_latency_ms"), latencies, &mut figures);
    }
    let mut per_fault = Vec::new();
    let mut started: BTreeMap<u64, (u64, &str, &Value)> = BTreeMap::new();
    for event in events {
        match &event.kind {
            EventKind::FaultStart { fault, kind, detail } => {
                started.insert(*fault, (event.time_us, kind, detail));
            }
            EventKind::FaultEnd { fault, .. } => {
                if let Some((from, kind, detail)) = started.remove(fault) {
                    per_fault.push(json!({
                        "fault": fault, "kind": kind, "detail": detail,
                        "window_ms": (event.time_us - from) / 1000,
                        "flush_ok_fraction": fraction(share(&flushes, from, event.time_us)),
                        "read_ok_fraction": fraction(share(&reads, from, event.time_us)),
                    }));
                }
            }
            _ => {}
        }
    }
    figures.insert("window_ms".into(), json!(window_ms));
    figures.insert("per_fault".into(), json!(per_fault));
    let both: Vec<&Operation> = flushes.iter().chain(&reads).copied().collect();
    let (good, all) = share(&both, heal_us, converge_us);
    if let Some(minimum) = heal_ok_fraction_min {
        let after = if all == 0 { 1.0 } else { good as f64 / all as f64 };
        if after < minimum {
            violations.push(format!(
                "after the heal {after:.4} of flushes and reads succeeded, below {minimum}"
            ));
        }
    }
    Verdict::against_threshold(heal_ok_fraction_min.is_some(), violations, figures)
}

/// Replication at work, from the nodes' internal events and the flushes' answers. Fails when
/// a node stopped itself (it found data it could not trust, or bad settings).
pub fn replication(events: &[Event]) -> Verdict {
    let ops = operations(events);
    let flushes = Flushes::read(&ops);
    let mut violations = Vec::new();
    let (mut handoffs, mut handed_off_keys, mut repairs, mut rounds, mut exchanged, mut torn) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut snapshots, mut recoveries, mut restarts, mut repaired) = (0u64, 0u64, 0u64, 0u64);
    for event in events {
        let EventKind::Internal { node, what, detail } = &event.kind else { continue };
        match what.as_str() {
            "store_handoff" => {
                handoffs += 1;
                handed_off_keys += detail["keys"].as_u64().unwrap_or(0);
            }
            "store_read_repair" => repairs += 1,
            "store_anti_entropy" => {
                rounds += 1;
                exchanged +=
                    detail["sent"].as_u64().unwrap_or(0) + detail["received"].as_u64().unwrap_or(0);
            }
            "store_snapshot_taken" => snapshots += 1,
            "restart" => restarts += 1,
            "store_recovered" => {
                recoveries += 1;
                torn += u64::from(detail["torn_tail_bytes"].as_u64().unwrap_or(0) > 0);
            }
            "store_stopped" => violations.push(format!("{node} stopped: {}", detail["reason"])),
            "corruption_detected" => repaired += 1,
            _ => {}
        }
    }
    let figures = BTreeMap::from([
        ("hinted_acknowledgements".to_string(), json!(flushes.hinted_acks)),
        ("handoffs".to_string(), json!(handoffs)),
        ("handed_off_keys".to_string(), json!(handed_off_keys)),
        ("read_repairs".to_string(), json!(repairs)),
        ("anti_entropy_rounds_with_differences".to_string(), json!(rounds)),
        ("anti_entropy_states_exchanged".to_string(), json!(exchanged)),
        ("snapshots".to_string(), json!(snapshots)),
        ("restarts".to_string(), json!(restarts)),
        ("recoveries".to_string(), json!(recoveries)),
        ("recoveries_with_torn_tail".to_string(), json!(torn)),
        ("corrupt_files_left_to_peers".to_string(), json!(repaired)),
    ]);
    Verdict::from_violations(violations, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{PHASE_FINAL_READS, PHASE_HEAL};

    const W1: &str = "client-1/w0";

    /// A history built event by event, one millisecond apart.
    #[derive(Default)]
    struct History {
        events: Vec<Event>,
    }

    fn state(total: u64) -> Value {
        json!({ "slots": { W1: [1, total] }, "floors": {} })
    }

    impl History {
        fn push(&mut self, kind: EventKind) -> &mut History {
            let index = self.events.len() as u64;
            self.events.push(Event { index, time_us: (index + 1) * 1000, kind });
            self
        }
        fn phase(&mut self, name: &str) -> &mut History {
            self.push(EventKind::Phase { name: name.into(), detail: Value::Null })
        }
        /// A flush of `key` to `total` (by `increment`); `outcome` ok, info (nothing acked) or
        /// fail.
        fn flush(&mut self, key: &str, increment: u64, total: u64, outcome: &str) -> &mut History {
            let invoked =
                json!({ "writer": W1, "batch": 1, "entries": [[key, increment, 1, total]] });
            self.push(EventKind::Invoke { process: 0, f: "flush".into(), value: invoked.clone() });
            let mut value = invoked;
            let (f, error) = ("flush".to_string(), "timeout".to_string());
            match outcome {
                "ok" => self.push(EventKind::Ok { process: 0, f, value }),
                _ => {
                    value["acked"] = json!([]);
                    self.push(EventKind::Info { process: 0, f, value, error })
                }
            }
        }
        fn read(&mut self, process: u64, key: &str, seen: Option<u64>) -> &mut History {
            self.push(EventKind::Invoke {
                process,
                f: "read".into(),
                value: json!({ "key": key }),
            });
            let slots = seen.map_or(Value::Null, |total| state(total)["slots"].clone());
            let value =
                json!({ "key": key, "value": seen.unwrap_or(0), "slots": slots, "floors": {} });
            self.push(EventKind::Ok { process, f: "read".into(), value })
        }
        fn dump(
            &mut self,
            node: &str,
            round: u64,
            home: &[(&str, u64)],
            hinted: &[&str],
        ) -> &mut History {
            let invoked = json!({ "node": node, "round": round });
            self.push(EventKind::Invoke { process: 9, f: "dump".into(), value: invoked });
            let home: serde_json::Map<String, Value> = home
                .iter()
                .map(|(key, digest)| (key.to_string(), json!(format!("{digest:016x}"))))
                .collect();
            let value = json!({ "node": node, "round": round, "home": home, "hinted": hinted });
            self.push(EventKind::Ok { process: 9, f: "dump".into(), value })
        }
        fn internal(&mut self, node: &str, what: &str) -> &mut History {
            self.push(EventKind::Internal {
                node: node.into(),
                what: what.into(),
                detail: json!({}),
            })
        }
        fn final_dump(&mut self, node: &str, key: &str, total: u64) -> &mut History {
            self.push(EventKind::Invoke {
                process: 9,
                f: "final_dump".into(),
                value: json!({ "node": node }),
            });
            let value = json!({ "node": node, "home": { key: state(total) }, "hinted": [] });
            self.push(EventKind::Ok { process: 9, f: "final_dump".into(), value })
        }
    }

    fn ring() -> Ring {
        let nodes: Vec<String> = (1..=3).map(|i| format!("store-{i}")).collect();
        Ring::new(&nodes, 4, 3)
    }

    #[test]
    fn counts_between_acknowledged_and_attempted_pass() {
        let mut history = History::default();
        history.flush("k", 10, 10, "ok").read(0, "k", Some(10)).flush("k", 5, 15, "info");
        history
            .phase(PHASE_FINAL_READS)
            .final_dump("store-1", "k", 15)
            .final_dump("store-2", "k", 10);
        let verdict = no_acknowledged_loss(&history.events, &ring());
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["counted_from_unacknowledged_flushes"], json!(5));
        assert!(no_double_count(&history.events).passed());
    }

    #[test]
    fn a_double_count_is_caught_in_reads_and_in_the_final_state() {
        let mut history = History::default();
        history.flush("k", 10, 10, "ok").read(1, "k", Some(20));
        history.phase(PHASE_FINAL_READS).final_dump("store-1", "k", 20);
        let verdict = no_double_count(&history.events);
        assert!(!verdict.passed());
        assert_eq!(verdict.figures["violations"], json!(2), "{:?}", verdict.violations);
        assert!(verdict.violations[0].contains("counted 20"), "{:?}", verdict.violations);
    }

    #[test]
    fn an_acknowledged_loss_is_caught_and_an_unacknowledged_one_is_not() {
        let mut history = History::default();
        history.flush("k", 10, 10, "ok").flush("j", 3, 3, "info");
        history.phase(PHASE_FINAL_READS).final_dump("store-1", "k", 6);
        let verdict = no_acknowledged_loss(&history.events, &ring());
        assert!(!verdict.passed());
        assert_eq!(verdict.figures["lost_increments"], json!(4));
        assert_eq!(
            verdict.violations.len(),
            1,
            "j was never acknowledged: {:?}",
            verdict.violations
        );
        let mut unfinished = History::default();
        unfinished.flush("k", 1, 1, "ok");
        assert!(
            !no_acknowledged_loss(&unfinished.events, &ring()).passed(),
            "no final dumps, no verdict"
        );
    }

    #[test]
    fn an_acknowledged_total_lost_to_crashes_of_all_its_homes_is_caught() {
        let homes = ["store-1", "store-2", "store-3"];
        let mut history = History::default();
        history.flush("k", 10, 10, "ok").flush("k", 5, 15, "ok");
        // Every home crashes right after the second acknowledgement, in short succession,
        // and all are down at once before they restart.
        for node in homes {
            history.internal(node, "crash");
        }
        for node in homes {
            history.internal(node, "restart");
        }
        history.phase(PHASE_FINAL_READS);
        let mut survived = History { events: history.events.clone() };
        for node in homes {
            survived.final_dump(node, "k", 15);
        }
        let verdict = no_acknowledged_loss(&survived.events, &ring());
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["acknowledged_totals_all_homes_down_at_once"], json!(1));
        assert_eq!(verdict.figures["node_crashes"], json!(3));
        // The restarted replicas gave back only the first total: the second lived only in
        // bytes the crashes took.
        for node in homes {
            history.final_dump(node, "k", 10);
        }
        let verdict = no_acknowledged_loss(&history.events, &ring());
        assert!(!verdict.passed());
        assert_eq!(verdict.figures["lost_increments"], json!(5));
        assert!(
            verdict.violations[0].contains("all down at once: true"),
            "{:?}",
            verdict.violations
        );
    }

    #[test]
    fn a_hinted_acknowledgement_lost_with_its_fallbacks_is_caught() {
        let mut history = History::default();
        history.flush("k", 7, 7, "ok");
        let last = history.events.len() - 1;
        if let EventKind::Ok { value, .. } = &mut history.events[last].kind {
            value["hinted"] = json!(2);
        }
        for node in ["store-1", "store-2", "store-3"] {
            history.internal(node, "crash");
        }
        history.phase(PHASE_FINAL_READS).final_dump("store-1", "k", 0);
        let verdict = no_acknowledged_loss(&history.events, &ring());
        assert!(!verdict.passed());
        assert_eq!(verdict.figures["acknowledged_totals_with_hints"], json!(1));
        assert_eq!(
            verdict.figures["acknowledged_totals_with_hints_all_holders_down_at_once"],
            json!(1)
        );
        assert!(
            verdict.violations[0].contains("2 of its acknowledgements hints"),
            "{:?}",
            verdict.violations
        );
    }

    #[test]
    fn homes_crashing_one_after_another_are_not_down_at_once() {
        let ring = ring();
        let mut history = History::default();
        history.flush("k", 1, 1, "ok");
        for node in ["store-1", "store-2", "store-3"] {
            history.internal(node, "crash").internal(node, "restart");
        }
        let down = down_intervals(&history.events);
        assert_eq!(crash_test(&down, &ring.home("k"), 2_000), (true, false));
        assert_eq!(crash_test(&down, &ring.home("k"), 4_000), (false, false), "after store-1's");
        history.internal("store-1", "crash").internal("store-2", "crash");
        history.internal("store-3", "crash");
        let down = down_intervals(&history.events);
        assert_eq!(
            crash_test(&down, &ring.home("k"), 4_000),
            (true, true),
            "still down at the end"
        );
    }

    #[test]
    fn read_your_writes_fails_only_where_promised_and_staleness_measures_the_miss() {
        let mut history = History::default();
        history.flush("k", 10, 10, "ok").read(0, "k", None).read(1, "k", Some(10));
        let promised = read_your_writes(&history.events, true);
        assert!(!promised.passed());
        assert!(promised.violations[0].contains("saw its total 0, 10 having been acknowledged"));
        let unpromised = read_your_writes(&history.events, false);
        assert_eq!(unpromised.status, crate::check::Status::Figures, "{unpromised:?}");
        assert_eq!(unpromised.figures["stale_own_reads"], json!(1));
        let stale = staleness(&history.events);
        assert_eq!(stale.figures["stale_reads"], json!(1));
        assert_eq!(stale.figures["missed_increments_max"], json!(10));
        assert_eq!(stale.figures["reads"], json!(2), "another process's read counts too");
    }

    #[test]
    fn convergence_times_keys_from_the_heal_and_demands_agreement_at_the_end() {
        let nodes = ["store-1", "store-2", "store-3"];
        let mut history = History::default();
        history.flush("k", 1, 1, "ok").phase(PHASE_HEAL);
        for node in nodes {
            let digest = if node == "store-3" { 2 } else { 1 };
            history.dump(node, 1, &[("k", digest)], &[]);
        }
        for node in nodes {
            history.dump(node, 2, &[("k", 1)], &[]);
        }
        history.phase(PHASE_CONVERGE);
        let mut converged = History { events: history.events.clone() };
        for node in nodes {
            converged.dump(node, 3, &[("k", 1)], &[]);
        }
        let verdict = convergence(&converged.events, &ring(), 10_000);
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["keys_disagreeing_at_heal"], json!(1));
        assert_eq!(
            verdict.figures["converge_ms_max"],
            json!(12),
            "round 2 ends 12 ms after the heal"
        );
        // A hint still held at the end is not convergence.
        for node in nodes {
            let hinted: &[&str] = if node == "store-1" { &["k"] } else { &[] };
            history.dump(node, 3, &[("k", 1)], hinted);
        }
        let verdict = convergence(&history.events, &ring(), 10_000);
        assert!(!verdict.passed());
        assert!(
            verdict.violations[0].starts_with("1 keys still disagreed"),
            "{:?}",
            verdict.violations
        );
    }
}
