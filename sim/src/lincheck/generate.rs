//! Large synthetic histories, for the benchmark, the size tests and
//! `cargo run --release --example lincheck_generate`.
//!
//! Role: make a `fifo-queue` or `register` history of any number of operations, concurrent
//! and linearizable by construction (each operation takes effect at one instant between its
//! invoke and its completion, on a reference object), optionally broken by one wrong result
//! near its end. Deterministic: the same arguments give the same history.
//!
//! Invariants: enqueued values are distinct (the queue's job ids are); every process has at
//! most one operation outstanding; the history ends with every operation completed.

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::history::{HistoryFile, Op, OpType};
use super::witness::Verdict;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// `fifo-queue` or `register`.
    pub model: &'static str,
    /// Operations (invokes) in the history.
    pub operations: usize,
    /// Client processes.
    pub processes: u64,
    /// Seeds the interleaving.
    pub seed: u64,
    /// Break the history: the last dequeue (or read) that returned a value returns one it
    /// could not have.
    pub broken: bool,
}

/// splitmix64, a fixed generator: no dependency, the same stream everywhere.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut x = *state;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The history of `shape`, as a file with its expected verdict.
pub fn history(shape: Shape) -> HistoryFile {
    assert!(shape.processes > 0, "at least one process");
    assert!(matches!(shape.model, "fifo-queue" | "register"), "fifo-queue or register");
    let mut random = shape.seed;
    // Per process: the operation in flight, as (f, invoke value, result once applied).
    let mut in_flight: Vec<Option<(&'static str, Value, Option<Value>)>> =
        vec![None; shape.processes as usize];
    let mut queue: VecDeque<u64> = VecDeque::new();
    let mut register = Value::Null;
    let mut history = Vec::with_capacity(2 * shape.operations);
    let mut invoked = 0usize;
    let mut next_value = 0u64;
    loop {
        let open = in_flight.iter().filter(|slot| slot.is_some()).count();
        if invoked == shape.operations && open == 0 {
            break;
        }
        let process = (next_random(&mut random) % shape.processes) as usize;
        let event = |op_type, f: &str, value| Op {
            process: process as u64,
            op_type,
            f: f.to_string(),
            value,
            key: None,
        };
        match in_flight[process].take() {
            None if invoked < shape.operations => {
                invoked += 1;
                // As many enqueues as dequeues: the queue stays short (a random walk), as a
                // queue that keeps up does, and some dequeues find it empty.
                let (f, value) = match (shape.model, next_random(&mut random) % 8) {
                    ("fifo-queue", 0..=3) => {
                        next_value += 1;
                        ("enqueue", json!(next_value))
                    }
                    ("fifo-queue", _) => ("dequeue", Value::Null),
                    (_, 0..=3) => {
                        next_value += 1;
                        ("write", json!(next_value))
                    }
                    _ => ("read", Value::Null),
                };
                history.push(event(OpType::Invoke, f, value.clone()));
                in_flight[process] = Some((f, value, None));
            }
            None => {}
            Some((f, value, None)) => {
                let result = match f {
                    "enqueue" => {
                        queue.push_back(value.as_u64().expect("enqueued values are numbers"));
                        Value::Null
                    }
                    "dequeue" => queue.pop_front().map_or(Value::Null, Value::from),
                    "write" => {
                        register = value.clone();
                        value.clone()
                    }
                    _ => register.clone(),
                };
                in_flight[process] = Some((f, value, Some(result)));
            }
            Some((f, _, Some(result))) => history.push(event(OpType::Ok, f, result)),
        }
    }
    if shape.broken {
        // A value nobody wrote (a fresh dequeue, or a read of a value never written).
        let last = history
            .iter()
            .rposition(|op| op.op_type == OpType::Ok && matches!(op.f.as_str(), "dequeue" | "read"))
            .expect("a history of a few operations has a dequeue or a read");
        history[last].value = json!(next_value + 1);
    }
    HistoryFile {
        model: shape.model.to_string(),
        init: Value::Null,
        expect: Some(if shape.broken {
            super::Expect::NotLinearizable
        } else {
            super::Expect::Linearizable
        }),
        source: Some(format!("{shape:?}")),
        history,
    }
}

/// Whether `verdict` is the one `file` expects.
pub fn agrees(file: &HistoryFile, verdict: &Verdict) -> bool {
    matches!(
        (verdict, file.expect),
        (Verdict::Linearizable, Some(super::Expect::Linearizable))
            | (Verdict::NotLinearizable { .. }, Some(super::Expect::NotLinearizable))
    )
}
