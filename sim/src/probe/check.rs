//! The probe's checkers: pure functions from a probe history to a verdict.
//!
//! - `durability`: every acknowledged append is in the node's final read, and in every read
//!   invoked after the acknowledgement (a node that detected corruption is exempt, and
//!   counted);
//! - `integrity`: a read never returns a value that was not appended to that node;
//! - `liveness`: after the heal, every node answers within the bound;
//! - `linearizability`: each node's log, seen through its appends and reads, behaves as one
//!   atomic append-only register (checked by [`crate::lincheck`] with the `kv` model, one key
//!   per node); a refutation carries the witness of the shortest failing prefix, named by
//!   events and simulated times.

use std::collections::{BTreeMap, BTreeSet};

use pessimist_core::history::{Event, EventKind};
use serde_json::{json, Value};

use crate::check::{
    lincheck_verdict, operations, phase_start_us, Operation, Verdict, PHASE_FINAL_READS, PHASE_HEAL,
};

fn nodes_with_internal(events: &[Event], what: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Internal { node, what: happened, .. } if happened == what => {
                Some(node.clone())
            }
            _ => None,
        })
        .collect()
}

fn read_values(operation: &Operation) -> BTreeSet<u64> {
    operation
        .result
        .get("values")
        .and_then(Value::as_array)
        .map(|values| values.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Acknowledged appends survive: see the module comment.
pub fn durability(events: &[Event]) -> Verdict {
    let operations = operations(events);
    let corrupted = nodes_with_internal(events, "corruption_detected");
    let final_reads_us = phase_start_us(events, PHASE_FINAL_READS);
    let mut violations = Vec::new();
    let mut acked: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new(); // node -> (ack time, value)
    for operation in operations.iter().filter(|o| o.f == "append" && o.outcome == "ok") {
        let value =
            operation.invoked_value.get("value").and_then(Value::as_u64).unwrap_or_default();
        acked
            .entry(&operation.node)
            .or_default()
            .push((operation.complete_us.unwrap_or_default(), value));
    }
    let mut reads_checked = 0u64;
    let mut lost_acked_appends = BTreeSet::new();
    for read in operations.iter().filter(|o| o.f == "read" && o.outcome == "ok") {
        if corrupted.contains(&read.node) {
            continue;
        }
        reads_checked += 1;
        let seen = read_values(read);
        let is_final = final_reads_us.is_some_and(|start| read.invoke_us >= start);
        for (ack_us, value) in acked.get(read.node.as_str()).into_iter().flatten() {
            // One violation per lost append: the first read that misses it.
            if *ack_us < read.invoke_us
                && !seen.contains(value)
                && lost_acked_appends.insert((read.node.clone(), *value))
            {
                violations.push(format!(
                    "{} read of {} at {} us misses append {} acknowledged at {} us",
                    if is_final { "final" } else { "a" },
                    read.node,
                    read.invoke_us,
                    value,
                    ack_us
                ));
            }
        }
    }
    let acked_total: usize = acked.values().map(Vec::len).sum();
    let figures = BTreeMap::from([
        ("acknowledged_appends".into(), json!(acked_total)),
        ("reads_checked".into(), json!(reads_checked)),
        ("lost_acknowledged_appends".into(), json!(lost_acked_appends.len())),
        ("nodes_with_detected_corruption".into(), json!(corrupted.len())),
    ]);
    Verdict::from_violations(violations, figures)
}

/// Reads return only appended values: see the module comment.
pub fn integrity(events: &[Event]) -> Verdict {
    let operations = operations(events);
    let mut appended: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for operation in operations.iter().filter(|o| o.f == "append") {
        if let Some(value) = operation.invoked_value.get("value").and_then(Value::as_u64) {
            appended.entry(&operation.node).or_default().insert(value);
        }
    }
    let mut violations = Vec::new();
    let mut values_checked = 0u64;
    for read in operations.iter().filter(|o| o.f == "read" && o.outcome == "ok") {
        for value in read_values(read) {
            values_checked += 1;
            if !appended.get(read.node.as_str()).is_some_and(|values| values.contains(&value)) {
                violations.push(format!(
                    "read of {} at {} us returned {value}, never appended there",
                    read.node, read.invoke_us
                ));
            }
        }
    }
    Verdict::from_violations(
        violations,
        BTreeMap::from([("values_checked".into(), json!(values_checked))]),
    )
}

/// Every node answers a final read within `bound_ms` of the final-read phase.
pub fn liveness(events: &[Event], nodes: &[String], bound_ms: u64) -> Verdict {
    let operations = operations(events);
    let Some(start_us) = phase_start_us(events, PHASE_FINAL_READS) else {
        return Verdict::from_violations(
            vec!["the run never reached its final reads".into()],
            BTreeMap::new(),
        );
    };
    let heal_us = phase_start_us(events, PHASE_HEAL).unwrap_or(start_us);
    let mut violations = Vec::new();
    let mut recovery_ms_max = 0u64;
    let mut recovery_ms = BTreeMap::new();
    for node in nodes {
        let first_ok_after_heal = operations
            .iter()
            .filter(|o| &o.node == node && o.outcome == "ok" && o.invoke_us >= heal_us)
            .filter_map(|o| o.complete_us)
            .min();
        let final_ok = operations
            .iter()
            .filter(|o| {
                &o.node == node && o.f == "read" && o.outcome == "ok" && o.invoke_us >= start_us
            })
            .filter_map(|o| o.complete_us)
            .min();
        match final_ok {
            Some(done_us) if done_us - start_us <= bound_ms * 1000 => {}
            Some(done_us) => violations.push(format!(
                "{node} answered {} ms after the final reads began, beyond the {bound_ms} ms bound",
                (done_us - start_us) / 1000
            )),
            None => violations.push(format!("{node} never answered a final read")),
        }
        if let Some(done_us) = first_ok_after_heal {
            let ms = (done_us - heal_us) / 1000;
            recovery_ms_max = recovery_ms_max.max(ms);
            recovery_ms.insert(node.clone(), json!(ms));
        }
    }
    let figures = BTreeMap::from([
        ("bound_ms".into(), json!(bound_ms)),
        ("recovery_ms_max".into(), json!(recovery_ms_max)),
        ("recovery_ms".into(), Value::Object(recovery_ms.into_iter().collect())),
    ]);
    Verdict::from_violations(violations, figures)
}

/// Each probe node's log is an append-only register: a read must return every append that
/// took effect before it, in one order consistent with real time. The probe history maps onto
/// the `kv` model (append a value's text, get the whole text), one key per node. Nodes that
/// detected and repaired corruption are left out: repair truncates their log on purpose.
pub fn linearizability(events: &[Event]) -> Verdict {
    use crate::lincheck::{Op, OpType};

    let corrupted = nodes_with_internal(events, "corruption_detected");
    let text_of =
        |values: &[u64]| values.iter().map(|value| format!("{value},")).collect::<String>();
    let mut ops = Vec::new();
    let mut origin = Vec::new();
    let mut open: BTreeMap<u64, (String, String)> = BTreeMap::new(); // process -> (node, f)
    for event in events {
        let (process, op_type, value) = match &event.kind {
            EventKind::Invoke { process, value, .. } => (*process, OpType::Invoke, value),
            EventKind::Ok { process, value, .. } => (*process, OpType::Ok, value),
            EventKind::Fail { process, value, .. } => (*process, OpType::Fail, value),
            EventKind::Info { process, value, .. } => (*process, OpType::Info, value),
            _ => continue,
        };
        let (node, f) = match (&event.kind, op_type) {
            (EventKind::Invoke { f, .. }, _) => {
                let node =
                    value.get("node").and_then(Value::as_str).unwrap_or_default().to_string();
                open.insert(process, (node.clone(), f.clone()));
                (node, f.clone())
            }
            _ => match open.remove(&process) {
                Some(opened) => opened,
                None => continue,
            },
        };
        if corrupted.contains(&node) {
            continue;
        }
        let (f, value) = match (f.as_str(), op_type) {
            ("append", OpType::Invoke) => (
                "append",
                json!(text_of(&[value.get("value").and_then(Value::as_u64).unwrap_or_default()])),
            ),
            ("append", _) => ("append", Value::Null),
            ("read", OpType::Ok) => {
                let values: Vec<u64> = value
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|values| values.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                ("get", json!(text_of(&values)))
            }
            ("read", _) => ("get", Value::Null),
            _ => continue,
        };
        ops.push(Op { process, op_type, f: f.to_string(), value, key: Some(node) });
        origin.push((event.index, process));
    }
    let figures = BTreeMap::from([
        ("operations".to_string(), json!(ops.len())),
        ("nodes_left_out_for_corruption".to_string(), json!(corrupted.len())),
    ]);
    lincheck_verdict("kv", &json!(""), &ops, &origin, events, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests::Builder;

    #[test]
    fn durability_passes_when_acked_appends_survive_and_unknown_ones_may_vanish() {
        let mut history = Builder::new();
        history
            .append(1, "n1", 10, "ok")
            .append(1, "n1", 11, "info")
            .phase(PHASE_FINAL_READS)
            .read(1, "n1", &[10]);
        let verdict = durability(&history.events);
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["acknowledged_appends"], json!(1));
    }

    #[test]
    fn durability_catches_a_lost_acknowledged_append() {
        let mut history = Builder::new();
        history.append(1, "n1", 10, "ok").append(2, "n1", 12, "ok").phase(PHASE_FINAL_READS).read(
            1,
            "n1",
            &[10],
        );
        let verdict = durability(&history.events);
        assert!(!verdict.passed());
        assert_eq!(verdict.figures["lost_acknowledged_appends"], json!(1));
        assert!(verdict.violations[0].contains("misses append 12"), "{:?}", verdict.violations);
    }

    #[test]
    fn durability_exempts_a_node_that_detected_corruption() {
        let mut history = Builder::new();
        history.append(1, "n1", 10, "ok");
        history.push(EventKind::Internal {
            node: "n1".into(),
            what: "corruption_detected".into(),
            detail: Value::Null,
        });
        history.phase(PHASE_FINAL_READS).read(1, "n1", &[]);
        assert!(durability(&history.events).passed());
    }

    #[test]
    fn integrity_catches_a_phantom_value() {
        let mut history = Builder::new();
        history.append(1, "n1", 10, "info").read(1, "n1", &[10]);
        assert!(integrity(&history.events).passed());
        history.read(2, "n1", &[99]);
        let verdict = integrity(&history.events);
        assert!(!verdict.passed());
        assert!(verdict.violations[0].contains("returned 99"));
    }

    #[test]
    fn liveness_needs_every_node_to_answer_within_the_bound() {
        let mut history = Builder::new();
        history.phase(PHASE_HEAL).phase(PHASE_FINAL_READS).read(1, "n1", &[]);
        let nodes = vec!["n1".to_string(), "n2".to_string()];
        let verdict = liveness(&history.events, &nodes, 10_000);
        assert!(!verdict.passed());
        assert_eq!(verdict.violations, vec!["n2 never answered a final read".to_string()]);
        history.read(1, "n2", &[]);
        assert!(liveness(&history.events, &nodes, 10_000).passed());
        assert!(!liveness(&history.events, &nodes, 1).passed(), "4 ms is beyond a 1 ms bound");
    }

    #[test]
    fn linearizability_accepts_a_log_and_catches_a_read_that_goes_back() {
        let mut history = Builder::new();
        history.append(1, "n1", 10, "ok").append(2, "n1", 11, "info").read(1, "n1", &[10]).read(
            2,
            "n1",
            &[10, 11],
        );
        let verdict = linearizability(&history.events);
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["verdict"], json!("linearizable"));
        // A read that loses an append another read already saw: not a register.
        history.read(3, "n1", &[10]);
        let verdict = linearizability(&history.events);
        assert!(!verdict.passed());
        assert_eq!(verdict.figures["verdict"], json!("not-linearizable"));
        // The witness names the read no order explains by its events and simulated times.
        let witness = &verdict.figures["witness"];
        assert_eq!(witness["key"], json!("n1"));
        let refuted = &witness["refuted_by"];
        assert_eq!(
            (refuted["invoke_index"].clone(), refuted["process"].clone()),
            (json!(8), json!(3))
        );
        assert_eq!(refuted["completion_index"], json!(9));
        assert_eq!(refuted["output"], json!("10,"));
        assert_eq!(
            (refuted["invoke_time_us"].clone(), refuted["completion_time_us"].clone()),
            (json!(9000), json!(10_000))
        );
        assert!(
            verdict.violations[0].contains(
                "history[8] process 3 get null -> \"10,\" (ok at history[9]) from 0.009 s to 0.010 s"
            ),
            "{}",
            verdict.violations[0]
        );
    }
}
