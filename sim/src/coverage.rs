//! What a run covered: whether its faults bit, and which situations it reached.
//!
//! A green run is evidence only if the faults it planned hit the system and the situations
//! the scenario exists for happened. Two checks say so:
//!
//! - [`faults_bite`] counts the `fault_effect` events the world records (see
//!   [`crate::fault_effect`]): planned faults that bit, and the *vacuous* ones per kind (a
//!   fault that did nothing, or an `@leader` fault that found no leader). Figures only, unless
//!   the scenario demands every fault bite (`checks.faults_bite`): then a vacuous fault fails.
//! - [`must_happen`] says which of the scenario's `must_happen` situations the seed reached:
//!   figures for one seed, since a situation may need several seeds to arise. Over a run or a
//!   sweep, a situation no seed reached fails the scenario ([`crate::summary::RunSummary`]).
//!
//! A situation is a built-in predicate over the history ([`SITUATIONS`]) or, for any other
//! name, an internal event of that name (`worker_crash`, `store_handoff`, ...).

use std::collections::{BTreeMap, BTreeSet};

use pessimist_core::history::{Event, EventKind};
use serde_json::{json, Value};

use crate::check::{Status, Verdict, VIOLATIONS_MAX};

/// The built-in situations, with what each means.
pub const SITUATIONS: &[(&str, &str)] = &[
    ("leader_change", "a Raft group had leaders in two terms or more"),
    ("dead_letter", "a job was dead-lettered (a nack or a read said so)"),
    ("lease_expired", "a job was leased again after a lease that no nack or release ended"),
    ("hinted_handoff", "a store node handed a hinted write to its home replica"),
    ("read_repair", "a store read repaired a stale replica"),
    ("anti_entropy_repair", "anti-entropy changed a store replica"),
    ("revocation_during_outage", "a key was revoked while an API server could not refresh"),
    ("torn_tail_recovered", "a node recovered a log with a torn tail"),
    ("corruption_detected", "a node found corrupt fsynced data"),
    ("worker_oom_kill", "a worker was killed for running out of memory"),
    ("api_server_shed_load", "an API server refused an upload as overloaded (429)"),
    ("fault_bit", "at least one planned fault had an effect"),
];

/// The faults' effects in a history: planned faults, those that bit, and the vacuous ones.
/// Fails on a vacuous fault only when `demanded` (`checks.faults_bite`).
pub fn faults_bite(events: &[Event], demanded: bool) -> Verdict {
    let mut planned: BTreeMap<String, u64> = BTreeMap::new();
    let mut vacuous: BTreeMap<String, u64> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut measured = 0u64;
    for event in events {
        let EventKind::Internal { node, what, detail } = &event.kind else { continue };
        if node != "nemesis" || what != "fault_effect" {
            continue;
        }
        measured += 1;
        let kind = detail["kind"].as_str().unwrap_or("unknown").to_string();
        *planned.entry(kind.clone()).or_default() += 1;
        if detail["bit"] != json!(true) {
            *vacuous.entry(kind.clone()).or_default() += 1;
            if violations.len() < VIOLATIONS_MAX {
                violations.push(format!(
                    "fault {} ({kind}) at {:.3} s was vacuous: {}",
                    detail["fault"],
                    event.time_us as f64 / 1e6,
                    describe(detail)
                ));
            }
        }
    }
    let vacuous_total: u64 = vacuous.values().sum();
    let status = match (demanded, vacuous_total) {
        (true, 0) => Status::Passed,
        (true, _) => Status::Failed,
        (false, _) => Status::Figures,
    };
    let figures = BTreeMap::from([
        ("faults".to_string(), json!(measured)),
        ("bit".to_string(), json!(measured - vacuous_total)),
        ("vacuous".to_string(), json!(vacuous_total)),
        ("vacuous_by_kind".to_string(), json!(vacuous)),
        ("faults_by_kind".to_string(), json!(planned)),
        ("demanded".to_string(), json!(demanded)),
    ]);
    Verdict { status, figures, violations, distributions: BTreeMap::new() }
}

/// The counts of a `fault_effect` event, for a violation line.
fn describe(detail: &Value) -> String {
    let Some(fields) = detail.as_object() else { return String::new() };
    let counts: Vec<String> = fields
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "fault" | "kind" | "bit"))
        .map(|(name, value)| format!("{name} {value}"))
        .collect();
    counts.join(", ")
}

/// Which of `names` this seed reached. Figures only: the run or sweep decides.
pub fn must_happen(events: &[Event], names: &[String]) -> Verdict {
    let reached: BTreeMap<&str, bool> =
        names.iter().map(|name| (name.as_str(), reached(name, events))).collect();
    let count = reached.values().filter(|&&hit| hit).count();
    let figures = BTreeMap::from([
        ("reached".to_string(), json!(reached)),
        ("situations".to_string(), json!(names.len())),
        ("situations_reached".to_string(), json!(count)),
    ]);
    Verdict {
        status: Status::Figures,
        figures,
        violations: Vec::new(),
        distributions: BTreeMap::new(),
    }
}

/// Whether the situation `name` happened in the history.
pub fn reached(name: &str, events: &[Event]) -> bool {
    match name {
        "leader_change" => leader_change(events),
        "dead_letter" => events.iter().any(|event| match &event.kind {
            EventKind::Ok { f, value, .. } => {
                value["dead_lettered"] == json!(true)
                    || (f == "fetch" && value["status"] == json!("failed"))
                    || (f == "status" && value.to_string().contains("\"dead_lettered\""))
            }
            _ => false,
        }),
        "lease_expired" => lease_expired(events),
        "hinted_handoff" => internal(events, "store_handoff", |_| true),
        "read_repair" => internal(events, "store_read_repair", |_| true),
        "anti_entropy_repair" => internal(events, "store_anti_entropy", |detail| {
            detail["changed_here"].as_u64().unwrap_or(0) > 0
        }),
        "revocation_during_outage" => revocation_during_outage(events),
        "torn_tail_recovered" => events.iter().any(|event| match &event.kind {
            EventKind::Internal { what, detail, .. } => {
                what.ends_with("_recovered") && detail["torn_tail_bytes"].as_u64().unwrap_or(0) > 0
            }
            _ => false,
        }),
        "worker_oom_kill" => {
            internal(events, "worker_crash", |detail| detail["cause"] == json!("out_of_memory"))
        }
        "api_server_shed_load" => events.iter().any(|event| match &event.kind {
            EventKind::Fail { f, value, .. } => f == "upload" && value["status"] == json!(429),
            _ => false,
        }),
        "fault_bit" => internal(events, "fault_effect", |detail| detail["bit"] == json!(true)),
        other => internal(events, other, |_| true),
    }
}

fn internal(events: &[Event], name: &str, holds: impl Fn(&Value) -> bool) -> bool {
    events.iter().any(|event| match &event.kind {
        EventKind::Internal { what, detail, .. } => what == name && holds(detail),
        _ => false,
    })
}

/// Leaders of one Raft group in two different terms.
fn leader_change(events: &[Event]) -> bool {
    let mut terms: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for event in events {
        let EventKind::Internal { what, detail, .. } = &event.kind else { continue };
        if what == "raft_role" && detail["role"] == json!("leader") {
            let group = detail["group"].as_str().unwrap_or_default().to_string();
            let term = detail["term"].as_u64().unwrap_or_default();
            let group_terms = terms.entry(group).or_default();
            group_terms.insert(term);
            if group_terms.len() >= 2 {
                return true;
            }
        }
    }
    false
}

/// A job leased again (attempt 2 or more) after a lease of it that the history saw, which no
/// acknowledged nack or release ended: that lease expired.
fn lease_expired(events: &[Event]) -> bool {
    let mut last_lease: BTreeMap<u64, u64> = BTreeMap::new(); // job -> its latest lease seen
    let mut ended: BTreeSet<(u64, u64)> = BTreeSet::new(); // (job, lease) nacked or released
    for event in events {
        let EventKind::Ok { f, value, .. } = &event.kind else { continue };
        let (Some(job), Some(lease)) = (value["job"].as_u64(), value["lease"].as_u64()) else {
            continue;
        };
        match f.as_str() {
            "lease" => {
                let again = value["attempt"].as_u64().unwrap_or(1) >= 2;
                if let Some(previous) = last_lease.insert(job, lease) {
                    if again && previous != lease && !ended.contains(&(job, previous)) {
                        return true;
                    }
                }
            }
            "nack" | "release" => {
                ended.insert((job, lease));
            }
            _ => {}
        }
    }
    false
}

/// A `revoke_key` acknowledged while some API server's last identity refresh had failed (its
/// cache cut off from the management plane).
fn revocation_during_outage(events: &[Event]) -> bool {
    let mut cut_off: BTreeSet<&str> = BTreeSet::new();
    for event in events {
        match &event.kind {
            EventKind::Internal { node, what, .. } if what == "auth_refresh_failed" => {
                cut_off.insert(node);
            }
            EventKind::Internal { node, what, .. } if what == "auth_refreshed" => {
                cut_off.remove(node.as_str());
            }
            EventKind::Ok { f, .. } if f == "revoke_key" && !cut_off.is_empty() => return true,
            _ => {}
        }
    }
    false
}

/// Whether `name` can name a situation: a built-in, or an event name (lower-case letters,
/// digits and underscores).
pub fn is_situation_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

/// The built-in situations' names, for messages.
pub fn builtin_names() -> Vec<&'static str> {
    SITUATIONS.iter().map(|(name, _)| *name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(index: u64, time_us: u64, kind: EventKind) -> Event {
        Event { index, time_us, kind }
    }

    fn internal_event(index: u64, node: &str, what: &str, detail: Value) -> Event {
        event(
            index,
            index * 1000,
            EventKind::Internal { node: node.into(), what: what.into(), detail },
        )
    }

    fn effect(index: u64, kind: &str, bit: bool) -> Event {
        let detail = json!({ "fault": index, "kind": kind, "bit": bit, "frames_into_cut": 0 });
        internal_event(index, "nemesis", "fault_effect", detail)
    }

    #[test]
    fn a_vacuous_fault_fails_only_where_the_scenario_demands_bite() {
        let events = vec![effect(0, "partition", true), effect(1, "crash", false)];
        let figures = faults_bite(&events, false);
        assert_eq!(figures.status, Status::Figures);
        assert_eq!(figures.figures["vacuous"], json!(1));
        assert_eq!(figures.figures["vacuous_by_kind"], json!({ "crash": 1 }));
        let demanded = faults_bite(&events, true);
        assert_eq!(demanded.status, Status::Failed);
        assert!(demanded.violations[0].contains("fault 1 (crash)"), "{:?}", demanded.violations);
        let all_bit = faults_bite(&events[..1], true);
        assert_eq!(all_bit.status, Status::Passed);
    }

    #[test]
    fn situations_are_reached_only_by_their_events() {
        let role = |index, term| {
            internal_event(
                index,
                "q1",
                "raft_role",
                json!({ "role": "leader", "group": "queue", "term": term }),
            )
        };
        assert!(!reached("leader_change", &[role(0, 1), role(1, 1)]));
        assert!(reached("leader_change", &[role(0, 1), role(1, 2)]));
        let ok = |index, f: &str, value: Value| {
            event(index, index, EventKind::Ok { process: 1, f: f.into(), value })
        };
        // Leased, nacked, leased again: not an expiry. Leased again with no nack: one.
        let nacked = [
            ok(0, "lease", json!({ "job": 1, "lease": 1, "attempt": 1 })),
            ok(1, "nack", json!({ "job": 1, "lease": 1, "dead_lettered": false })),
            ok(2, "lease", json!({ "job": 1, "lease": 2, "attempt": 2 })),
        ];
        assert!(!reached("lease_expired", &nacked));
        assert!(!reached("dead_letter", &nacked));
        let expired =
            [nacked[2].clone(), ok(3, "lease", json!({ "job": 1, "lease": 3, "attempt": 3 }))];
        assert!(reached("lease_expired", &expired));
        let dead = [ok(0, "nack", json!({ "job": 1, "lease": 1, "dead_lettered": true }))];
        assert!(reached("dead_letter", &dead));
        // A revocation while an API server's refresh failed, and not after it recovered.
        let revoke = ok(2, "revoke_key", json!({ "key": "k" }));
        let failed = internal_event(1, "api-1", "auth_refresh_failed", json!({}));
        let refreshed = internal_event(1, "api-1", "auth_refreshed", json!({}));
        assert!(reached("revocation_during_outage", &[failed.clone(), revoke.clone()]));
        assert!(!reached("revocation_during_outage", &[failed, refreshed, revoke]));
        // Any other name is an internal event of that name.
        assert!(reached("store_handoff", &[internal_event(0, "s1", "store_handoff", json!({}))]));
        assert!(!reached("store_handoff", &[]));
    }

    #[test]
    fn must_happen_reports_each_situation() {
        let events = vec![effect(0, "crash", true)];
        let names = vec!["fault_bit".to_string(), "leader_change".to_string()];
        let verdict = must_happen(&events, &names);
        assert_eq!(verdict.status, Status::Figures);
        assert_eq!(
            verdict.figures["reached"],
            json!({ "fault_bit": true, "leader_change": false })
        );
    }
}
