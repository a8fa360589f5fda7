//! Tests of the whole checker: hand-made histories per model, error positions, and property
//! tests against sequential executions and against a brute-force checker.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn invoke(process: u64, f: &str, value: Value) -> Op {
    Op { process, op_type: OpType::Invoke, f: f.to_string(), value, key: None }
}
fn ok(process: u64, f: &str, value: Value) -> Op {
    Op { process, op_type: OpType::Ok, f: f.to_string(), value, key: None }
}
fn info(process: u64, f: &str) -> Op {
    Op { process, op_type: OpType::Info, f: f.to_string(), value: Value::Null, key: None }
}
fn fail(process: u64, f: &str) -> Op {
    Op { process, op_type: OpType::Fail, f: f.to_string(), value: Value::Null, key: None }
}
fn keyed(mut op: Op, key: &str) -> Op {
    op.key = Some(key.to_string());
    op
}

/// The one helper every hand-made case goes through.
fn check_verdict(model: &str, init: Value, history: &[Op], expect: &str) -> Verdict {
    let verdict = check(model, &init, history, STATES_EXPLORED_MAX).expect("well-formed history");
    assert_eq!(verdict.name(), expect, "{model} history {history:#?}\nverdict {verdict:#?}");
    verdict
}

#[test]
fn register_sequential_and_stale_read() {
    let good = [
        invoke(0, "write", json!(1)),
        ok(0, "write", json!(1)),
        invoke(1, "read", Value::Null),
        ok(1, "read", json!(1)),
    ];
    check_verdict("register", Value::Null, &good, "linearizable");
    let stale = [
        invoke(0, "write", json!(1)),
        ok(0, "write", json!(1)),
        invoke(1, "read", Value::Null),
        ok(1, "read", Value::Null),
    ];
    let verdict = check_verdict("register", Value::Null, &stale, "not-linearizable");
    let Verdict::NotLinearizable { witness } = verdict else { unreachable!() };
    assert_eq!(witness.linearized.len(), 1);
    assert_eq!(witness.linearized[0].call.invoke_index, 0);
    assert_eq!(witness.linearized[0].state_after, json!(1));
    assert_eq!(witness.cannot_place.len(), 1);
    assert_eq!(witness.cannot_place[0].invoke_index, 2);
    let text = witness.to_string();
    assert!(text.contains("history[2] process 1 read null -> null"), "{text}");
    let json = serde_json::to_value(&*witness).unwrap();
    assert_eq!(json["cannot_place"][0]["invoke_index"], json!(2));
}

#[test]
fn register_concurrent_reads_may_see_either_value() {
    // The write overlaps both reads: one sees the old value and one the new, in either order
    // of return, as long as the old-value read is not after the new-value one in real time.
    let history = [
        invoke(0, "write", json!(1)),
        invoke(1, "read", Value::Null),
        invoke(2, "read", Value::Null),
        ok(2, "read", json!(1)),
        ok(1, "read", Value::Null),
        ok(0, "write", json!(1)),
    ];
    check_verdict("register", Value::Null, &history, "linearizable");
    let new_then_old = [
        invoke(0, "write", json!(1)),
        invoke(2, "read", Value::Null),
        ok(2, "read", json!(1)),
        invoke(1, "read", Value::Null),
        ok(1, "read", Value::Null),
        ok(0, "write", json!(1)),
    ];
    check_verdict("register", Value::Null, &new_then_old, "not-linearizable");
}

#[test]
fn info_and_unmatched_writes_may_or_may_not_happen() {
    for completion in [Some(info(0, "write")), None] {
        let mut seen = vec![invoke(0, "write", json!(7))];
        seen.extend(completion.clone());
        seen.extend([invoke(1, "read", Value::Null), ok(1, "read", json!(7))]);
        check_verdict("register", Value::Null, &seen, "linearizable");
        let mut unseen = vec![invoke(0, "write", json!(7))];
        unseen.extend(completion.clone());
        unseen.extend([invoke(1, "read", Value::Null), ok(1, "read", Value::Null)]);
        check_verdict("register", Value::Null, &unseen, "linearizable");
        // Once seen, it cannot be unseen: it happened at one point.
        let mut flicker = unseen.clone();
        flicker.extend([
            invoke(1, "read", Value::Null),
            ok(1, "read", json!(7)),
            invoke(1, "read", Value::Null),
            ok(1, "read", Value::Null),
        ]);
        check_verdict("register", Value::Null, &flicker, "not-linearizable");
    }
    // An info op cannot take effect before its invoke.
    let early = [
        invoke(1, "read", Value::Null),
        ok(1, "read", json!(7)),
        invoke(0, "write", json!(7)),
        info(0, "write"),
    ];
    check_verdict("register", Value::Null, &early, "not-linearizable");
}

#[test]
fn failed_writes_never_happen() {
    let history = [
        invoke(0, "write", json!(3)),
        fail(0, "write"),
        invoke(1, "read", Value::Null),
        ok(1, "read", json!(3)),
    ];
    check_verdict("register", Value::Null, &history, "not-linearizable");
    check_verdict("register", json!(3), &history, "linearizable");
}

#[test]
fn cas_register() {
    let history = [
        invoke(0, "write", json!(1)),
        ok(0, "write", json!(1)),
        invoke(1, "cas", json!([1, 2])),
        invoke(2, "cas", json!([1, 3])),
        ok(1, "cas", json!(true)),
        ok(2, "cas", json!(false)),
        invoke(0, "read", Value::Null),
        ok(0, "read", json!(2)),
    ];
    check_verdict("cas-register", Value::Null, &history, "linearizable");
    let both_swapped = [
        invoke(0, "write", json!(1)),
        ok(0, "write", json!(1)),
        invoke(1, "cas", json!([1, 2])),
        invoke(2, "cas", json!([1, 3])),
        ok(1, "cas", json!(true)),
        ok(2, "cas", json!(true)),
    ];
    check_verdict("cas-register", Value::Null, &both_swapped, "not-linearizable");
    // An unknown cas may have swapped: the read may see 2, or 1.
    for read in [json!(1), json!(2)] {
        let unknown = [
            invoke(0, "write", json!(1)),
            ok(0, "write", json!(1)),
            invoke(1, "cas", json!([1, 2])),
            info(1, "cas"),
            invoke(2, "read", Value::Null),
            ok(2, "read", read),
        ];
        check_verdict("cas-register", Value::Null, &unknown, "linearizable");
    }
}

#[test]
fn kv_is_checked_per_key() {
    let history = [
        keyed(invoke(0, "append", json!("a")), "x"),
        keyed(invoke(1, "append", json!("b")), "y"),
        keyed(ok(0, "append", Value::Null), "x"),
        keyed(ok(1, "append", Value::Null), "y"),
        keyed(invoke(0, "append", json!("c")), "x"),
        keyed(ok(0, "append", Value::Null), "x"),
        keyed(invoke(1, "get", Value::Null), "x"),
        keyed(ok(1, "get", json!("ac")), "x"),
        keyed(invoke(1, "get", Value::Null), "y"),
        keyed(ok(1, "get", json!("b")), "y"),
        keyed(invoke(1, "put", json!("z")), "y"),
        keyed(ok(1, "put", Value::Null), "y"),
    ];
    check_verdict("kv", json!(""), &history, "linearizable");
    let mut wrong = history.to_vec();
    wrong[9] = keyed(ok(1, "get", json!("ab")), "y");
    let Verdict::NotLinearizable { witness } =
        check_verdict("kv", json!(""), &wrong, "not-linearizable")
    else {
        unreachable!()
    };
    assert_eq!(witness.key.as_deref(), Some("y"));
    let missing_key = [invoke(0, "get", Value::Null), ok(0, "get", json!(""))];
    let error = check("kv", &json!(""), &missing_key, STATES_EXPLORED_MAX).unwrap_err().to_string();
    assert!(error.starts_with("history[0].key:"), "{error}");
}

#[test]
fn fifo_queue() {
    let in_order = [
        invoke(0, "enqueue", json!(1)),
        ok(0, "enqueue", Value::Null),
        invoke(0, "enqueue", json!(2)),
        ok(0, "enqueue", Value::Null),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", json!(1)),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", json!(2)),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", Value::Null),
    ];
    check_verdict("fifo-queue", Value::Null, &in_order, "linearizable");
    let mut reversed = in_order.to_vec();
    reversed[5] = ok(1, "dequeue", json!(2));
    reversed[7] = ok(1, "dequeue", json!(1));
    let Verdict::NotLinearizable { witness } =
        check_verdict("fifo-queue", Value::Null, &reversed, "not-linearizable")
    else {
        unreachable!()
    };
    assert_eq!(witness.state_stuck(), &json!([1, 2]));
    assert_eq!(witness.cannot_place[0].invoke_index, 4);
    // Concurrent enqueues may land in either order.
    let concurrent = [
        invoke(0, "enqueue", json!(1)),
        invoke(2, "enqueue", json!(2)),
        ok(0, "enqueue", Value::Null),
        ok(2, "enqueue", Value::Null),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", json!(2)),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", json!(1)),
    ];
    check_verdict("fifo-queue", Value::Null, &concurrent, "linearizable");
    // An enqueue that timed out may be delivered later; a dequeue that timed out may have
    // taken the head.
    let unknowns = [
        invoke(0, "enqueue", json!(1)),
        info(0, "enqueue"),
        invoke(2, "enqueue", json!(2)),
        ok(2, "enqueue", Value::Null),
        invoke(3, "dequeue", Value::Null),
        info(3, "dequeue"),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", json!(2)),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", Value::Null),
    ];
    check_verdict("fifo-queue", Value::Null, &unknowns, "linearizable");
    // A dequeue of an element never enqueued.
    let invented = [invoke(1, "dequeue", Value::Null), ok(1, "dequeue", json!(9))];
    check_verdict("fifo-queue", Value::Null, &invented, "not-linearizable");
}

/// A register history that goes wrong at history[5] (a read of a value already overwritten)
/// and goes on for a while.
fn stale_read_then_more() -> Vec<Op> {
    let mut history = vec![
        invoke(0, "write", json!(1)),
        ok(0, "write", json!(1)),
        invoke(0, "write", json!(2)),
        ok(0, "write", json!(2)),
        invoke(1, "read", Value::Null),
        ok(1, "read", json!(1)),
    ];
    for value in 3..40 {
        history.push(invoke(0, "write", json!(value)));
        history.push(ok(0, "write", json!(value)));
        history.push(invoke(1, "read", Value::Null));
        history.push(ok(1, "read", json!(value)));
    }
    history
}

#[test]
fn narrowing_finds_the_completion_no_order_explains() {
    let history = stale_read_then_more();
    let Verdict::NotLinearizable { witness } =
        check_verdict("register", Value::Null, &history, "not-linearizable")
    else {
        unreachable!()
    };
    let narrowed = narrow("register", &Value::Null, &history, *witness, STATES_EXPLORED_MAX);
    let refuted = narrowed.refuted_by.as_ref().expect("narrowing finished");
    assert_eq!((refuted.invoke_index, refuted.completion_index), (4, Some(5)));
    assert_eq!((refuted.process, refuted.f.as_str()), (1, "read"));
    assert_eq!(refuted.output, Some(json!(1)));
    // The witness is the six-entry prefix's: both writes placed, the read cannot come next.
    assert_eq!(narrowed.linearized.len(), 2);
    assert_eq!(narrowed.state_stuck(), &json!(2));
    assert_eq!(narrowed.cannot_place[0].invoke_index, 4);
    let text = narrowed.to_string();
    assert!(
        text.contains("no order of the calls explains this return: history[4] process 1 read"),
        "{text}"
    );
}

#[test]
fn narrowing_finds_a_fail_that_contradicts_a_read() {
    // The read saw the write, which later failed: certainly never applied.
    let history = [
        invoke(0, "write", json!(1)),
        invoke(1, "read", Value::Null),
        ok(1, "read", json!(1)),
        fail(0, "write"),
    ];
    let Verdict::NotLinearizable { witness } =
        check_verdict("register", Value::Null, &history, "not-linearizable")
    else {
        unreachable!()
    };
    let narrowed = narrow("register", &Value::Null, &history, *witness, STATES_EXPLORED_MAX);
    let refuted = narrowed.refuted_by.expect("narrowing finished");
    assert_eq!((refuted.outcome.as_str(), refuted.completion_index), ("fail", Some(3)));
    assert_eq!((refuted.invoke_index, refuted.input.clone(), refuted.output), (0, json!(1), None));
}

#[test]
fn narrowing_out_of_budget_keeps_the_witness_it_has() {
    let history = stale_read_then_more();
    let Verdict::NotLinearizable { witness } =
        check("register", &Value::Null, &history, STATES_EXPLORED_MAX).expect("well-formed")
    else {
        unreachable!()
    };
    let whole = (*witness).clone();
    // No states: every probe gives up at once.
    let narrowed = narrow("register", &Value::Null, &history, *witness, 0);
    assert_eq!(narrowed, whole, "no probe could answer: the witness is unchanged");
}

#[test]
fn a_bounded_witness_keeps_the_end_of_the_prefix_and_shortens_long_values() {
    // A kv key whose value grows past the kept length, then a read that loses an append.
    let mut history = Vec::new();
    for value in 0..60u64 {
        let text = format!("{value:0>60},");
        history.push(keyed(invoke(0, "append", json!(text)), "k"));
        history.push(keyed(ok(0, "append", Value::Null), "k"));
    }
    history.push(keyed(invoke(1, "get", Value::Null), "k"));
    history.push(keyed(ok(1, "get", json!("")), "k"));
    let Verdict::NotLinearizable { witness } =
        check_verdict("kv", json!(""), &history, "not-linearizable")
    else {
        unreachable!()
    };
    // The search stops a little short of the last append (its lookahead sees the read fail).
    let steps = witness.linearized.len();
    assert!(steps > Witness::STEPS_KEPT_MAX + 30, "{steps}");
    let last_call = witness.linearized.last().unwrap().call.invoke_index;
    let stuck_chars = witness.state_stuck().to_string().chars().count();
    assert!(stuck_chars > Witness::VALUE_KEPT_CHARS_MAX, "{stuck_chars}");
    let bounded = witness.bounded();
    assert_eq!(bounded.linearized.len(), Witness::STEPS_KEPT_MAX);
    assert_eq!(bounded.linearized_omitted, steps - Witness::STEPS_KEPT_MAX);
    assert_eq!(bounded.linearized_len(), steps);
    // The steps kept are the last ones; the long states are shortened, their length said.
    assert_eq!(bounded.linearized.last().unwrap().call.invoke_index, last_call);
    let state = bounded.state_stuck().as_str().unwrap();
    assert!(state.len() < 1400 && state.ends_with(&format!("({stuck_chars} chars)")), "{state}");
    let text = bounded.to_string();
    let hidden = format!("... {} earlier calls", steps - Witness::STEPS_KEPT_MAX);
    assert!(text.contains(&hidden), "{text}");
    // Bounded twice is bounded once.
    assert_eq!(bounded.clone().bounded(), bounded);
}

#[test]
fn bad_input_names_its_position() {
    let history = [invoke(0, "read", Value::Null), ok(0, "read", Value::Null)];
    let error = check("set", &Value::Null, &history, STATES_EXPLORED_MAX).unwrap_err().to_string();
    assert!(error.starts_with("model: unknown model \"set\""), "{error}");
    let error =
        check("fifo-queue", &Value::Null, &history, STATES_EXPLORED_MAX).unwrap_err().to_string();
    assert!(error.starts_with("history[0].f: unknown f \"read\""), "{error}");
    let bad_cas = [invoke(0, "cas", json!(1)), ok(0, "cas", json!(true))];
    let error =
        check("cas-register", &Value::Null, &bad_cas, STATES_EXPLORED_MAX).unwrap_err().to_string();
    assert!(error.starts_with("history[0].value:"), "{error}");
    let bad_output = [invoke(0, "cas", json!([1, 2])), ok(0, "cas", json!("yes"))];
    let error = check("cas-register", &Value::Null, &bad_output, STATES_EXPLORED_MAX)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("history[1].value:"), "{error}");
    let error = check("kv", &json!(5), &[], STATES_EXPLORED_MAX).unwrap_err().to_string();
    assert!(error.starts_with("init:"), "{error}");
}

#[test]
fn a_spent_budget_answers_unknown() {
    let history = [invoke(0, "write", json!(1)), ok(0, "write", json!(1))];
    let verdict = check("register", &Value::Null, &history, 0).unwrap();
    assert_eq!(verdict, Verdict::Unknown { reason: GaveUp::BudgetSpent });
}

// ---- Property tests ----

/// A sequential reference implementation, independent of the models under test.
#[derive(Clone, Debug, Default)]
struct Reference {
    register: Value,
    queue: VecDeque<Value>,
    kv: BTreeMap<String, String>,
}

const MODELS: [&str; 4] = ["register", "cas-register", "kv", "fifo-queue"];

/// Picks an operation for `model` from a random byte: (f, invoke value, key).
fn pick_op(model: &str, choice: u8, serial: u64) -> (&'static str, Value, Option<String>) {
    let small = i64::from(choice / 8 % 3);
    match model {
        "register" => {
            if choice & 1 == 0 {
                ("read", Value::Null, None)
            } else {
                ("write", json!(small), None)
            }
        }
        "cas-register" => match choice % 3 {
            0 => ("read", Value::Null, None),
            1 => ("write", json!(small), None),
            _ => ("cas", json!([small, i64::from(choice / 32 % 3)]), None),
        },
        "kv" => {
            let key = Some(if (choice >> 6) & 1 == 0 { "a" } else { "b" }.to_string());
            match choice % 3 {
                0 => ("get", Value::Null, key),
                1 => ("put", json!(format!("p{small}")), key),
                _ => ("append", json!(format!("{small}")), key),
            }
        }
        _ => {
            if choice & 1 == 0 {
                ("dequeue", Value::Null, None)
            } else {
                // Distinct elements mostly, some repeats.
                ("enqueue", json!(serial % 5), None)
            }
        }
    }
}

/// Applies one op to the reference and returns the `ok` value the client would see.
fn apply(reference: &mut Reference, f: &str, value: &Value, key: &Option<String>) -> Value {
    match f {
        "read" => reference.register.clone(),
        "write" => {
            reference.register = value.clone();
            value.clone()
        }
        "cas" => {
            if reference.register == value[0] {
                reference.register = value[1].clone();
                json!(true)
            } else {
                json!(false)
            }
        }
        "get" => json!(reference.kv.get(key.as_ref().unwrap()).cloned().unwrap_or_default()),
        "put" => {
            reference.kv.insert(key.clone().unwrap(), value.as_str().unwrap().to_string());
            Value::Null
        }
        "append" => {
            reference.kv.entry(key.clone().unwrap()).or_default().push_str(value.as_str().unwrap());
            Value::Null
        }
        "enqueue" => {
            reference.queue.push_back(value.clone());
            Value::Null
        }
        "dequeue" => reference.queue.pop_front().unwrap_or(Value::Null),
        _ => unreachable!("pick_op only picks known f"),
    }
}

/// A random output for `f`: for histories that are linearizable only by luck.
fn random_output(f: &str, choice: u8) -> Value {
    let small = i64::from(choice % 3);
    match f {
        "read" if choice & 3 == 0 => Value::Null,
        "read" => json!(small),
        "cas" => json!(choice & 1 == 0),
        "get" => json!(["", "0", "p1", "01"][usize::from(choice % 4)]),
        "dequeue" if choice & 3 == 0 => Value::Null,
        "dequeue" => json!(small),
        _ => Value::Null,
    }
}

#[derive(Clone, Debug)]
enum Phase {
    Idle,
    Invoked { f: &'static str, value: Value, key: Option<String> },
    Applied { f: &'static str, output: Value, key: Option<String> },
    Crashed,
}

/// Interprets random actions as concurrent clients. With `random_outputs` false, each op
/// takes effect at one instant between its invoke and its completion (so the history is
/// linearizable by construction); with it true, outputs are random.
fn build_history(
    model: &str,
    actions: &[(u8, u8, u8)],
    processes: u8,
    random_outputs: bool,
) -> Vec<Op> {
    let mut reference = Reference::default();
    let mut phases = vec![Phase::Idle; usize::from(processes)];
    let mut history = Vec::new();
    for (serial, &(selector, choice, kind)) in actions.iter().enumerate() {
        let process = usize::from(selector % processes);
        let op = |op_type, f: &str, value, key: &Option<String>| Op {
            process: process as u64,
            op_type,
            f: f.to_string(),
            value,
            key: key.clone(),
        };
        phases[process] = match std::mem::replace(&mut phases[process], Phase::Idle) {
            Phase::Idle => {
                let (f, value, key) = pick_op(model, choice, serial as u64);
                history.push(op(OpType::Invoke, f, value.clone(), &key));
                Phase::Invoked { f, value, key }
            }
            Phase::Invoked { f, value, key } => {
                if kind % 6 == 0 {
                    history.push(op(OpType::Fail, f, Value::Null, &key));
                    Phase::Idle
                } else {
                    let output = if random_outputs {
                        random_output(f, choice)
                    } else {
                        apply(&mut reference, f, &value, &key)
                    };
                    let output = if f == "write" { value } else { output };
                    Phase::Applied { f, output, key }
                }
            }
            Phase::Applied { f, output, key } => match kind % 8 {
                0 => {
                    history.push(op(OpType::Info, f, Value::Null, &key));
                    Phase::Idle
                }
                1 => Phase::Crashed,
                _ => {
                    history.push(op(OpType::Ok, f, output, &key));
                    Phase::Idle
                }
            },
            Phase::Crashed => Phase::Crashed,
        };
    }
    history
}

/// Brute force: tries every order of every subset of calls that keeps all `ok` ones.
fn brute_force<M: Model>(mut model: M, history: &[Op]) -> bool {
    let (calls, _) = pair_calls(history).unwrap();
    let init = model.init(&Value::Null).unwrap();
    let decoded: Vec<_> = calls
        .iter()
        .map(|call| {
            let input = model.decode_input(call.f, call.input).unwrap();
            let output = match &call.completion {
                Completion::Ok { value, .. } => Some(model.decode_output(&input, value).unwrap()),
                Completion::Info { .. } => None,
            };
            (input, output)
        })
        .collect();
    fn extend<M: Model>(
        model: &mut M,
        calls: &[Call],
        decoded: &[(M::Input, Option<M::Output>)],
        used: &mut Vec<bool>,
        state: M::State,
    ) -> bool {
        let all_ok_used = (0..calls.len()).all(|i| used[i] || decoded[i].1.is_none());
        if all_ok_used {
            return true;
        }
        for candidate in 0..calls.len() {
            if used[candidate] {
                continue;
            }
            let must_precede = (0..calls.len()).any(|other| {
                !used[other]
                    && calls[other]
                        .return_index()
                        .is_some_and(|returned| returned < calls[candidate].invoke_index)
            });
            if must_precede {
                continue;
            }
            let mut successors = Vec::new();
            model.step(
                state,
                &decoded[candidate].0,
                decoded[candidate].1.as_ref(),
                &mut successors,
            );
            for after in successors {
                used[candidate] = true;
                let found = extend(model, calls, decoded, used, after);
                used[candidate] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    let mut used = vec![false; calls.len()];
    extend(&mut model, &calls, &decoded, &mut used, init)
}

/// True if the witness prefix is a sequence the model accepts, from the initial state, with
/// the states it shows, and in an order real time allows (no call after one that was invoked
/// after it returned).
fn witness_replays<M: Model>(mut model: M, history: &[Op], witness: &Witness) -> bool {
    let (calls, _) = pair_calls(history).unwrap();
    let mut state = model.init(&Value::Null).unwrap();
    let mut placed: Vec<&Call> = Vec::new();
    for step in &witness.linearized {
        let Some(call) = calls.iter().find(|call| call.invoke_index == step.call.invoke_index)
        else {
            return false;
        };
        let returned_before_earlier = placed.iter().any(|earlier| {
            call.return_index().is_some_and(|returned| returned < earlier.invoke_index)
        });
        if returned_before_earlier {
            return false;
        }
        let input = model.decode_input(call.f, call.input).unwrap();
        let output = match call.completion {
            Completion::Ok { value, .. } => Some(model.decode_output(&input, value).unwrap()),
            Completion::Info { .. } => None,
        };
        let mut successors = Vec::new();
        model.step(state, &input, output.as_ref(), &mut successors);
        let Some(&next) =
            successors.iter().find(|&&next| model.describe_state(next) == step.state_after)
        else {
            return false;
        };
        state = next;
        placed.push(call);
    }
    true
}

fn witness_replays_by_name(model: &str, history: &[Op], witness: &Witness) -> bool {
    match model {
        "register" => witness_replays(RegisterModel::register(), history, witness),
        "cas-register" => witness_replays(RegisterModel::cas_register(), history, witness),
        "fifo-queue" => witness_replays(FifoQueueModel::new(), history, witness),
        // The witness holds one key's calls only; positions refer to the whole history.
        "kv" => witness_replays(KvModel::new(), history, witness),
        _ => unreachable!("no replay for {model}"),
    }
}

fn brute_force_by_name(model: &str, history: &[Op]) -> bool {
    match model {
        "register" => brute_force(RegisterModel::register(), history),
        "cas-register" => brute_force(RegisterModel::cas_register(), history),
        "fifo-queue" => brute_force(FifoQueueModel::new(), history),
        "kv" => {
            // Keys are independent objects: the brute force runs on each key's events alone.
            let mut by_key: BTreeMap<Option<String>, Vec<Op>> = BTreeMap::new();
            for op in history {
                by_key.entry(op.key.clone()).or_default().push(op.clone());
            }
            by_key.values().all(|events| brute_force(KvModel::new(), events))
        }
        _ => unreachable!("no brute force for {model}"),
    }
}

proptest! {
    #[test]
    fn sequential_executions_are_linearizable(
        model_index in 0usize..4,
        processes in 1u8..6,
        actions in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..120),
    ) {
        let model = MODELS[model_index];
        let history = build_history(model, &actions, processes, false);
        let init = if model == "kv" { json!("") } else { Value::Null };
        let verdict = check(model, &init, &history, STATES_EXPLORED_MAX).unwrap();
        prop_assert_eq!(verdict.name(), "linearizable", "{:#?}", verdict);
    }

    #[test]
    fn agrees_with_brute_force_on_tiny_histories(
        model_index in 0usize..4,
        processes in 1u8..4,
        actions in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..18),
    ) {
        let model = MODELS[model_index];
        let history = build_history(model, &actions, processes, true);
        let verdict = check(model, &Value::Null, &history, STATES_EXPLORED_MAX).unwrap();
        let expected = brute_force_by_name(model, &history);
        prop_assert_eq!(verdict.name() == "linearizable", expected, "{:#?}", history);
        if let Verdict::NotLinearizable { witness } = verdict {
            // The witness prefix is itself a linearizable sequence of distinct calls.
            let mut seen = std::collections::BTreeSet::new();
            for step in &witness.linearized {
                prop_assert!(seen.insert(step.call.invoke_index));
            }
            prop_assert!(witness_replays_by_name(model, &history, &witness), "{}", witness);
            prop_assert!(!witness.cannot_place.is_empty());
            // Narrowed: the history is linearizable just before the refuting completion and
            // not with it, and the narrowed witness is a witness of that prefix.
            let narrowed = narrow(model, &Value::Null, &history, *witness, STATES_EXPLORED_MAX);
            let refuted = narrowed.refuted_by.clone().expect("no deadline: narrowing finishes");
            let last = refuted.completion_index.expect("a completion refutes");
            prop_assert!(brute_force_by_name(model, &history[..last]), "{:#?}", history);
            prop_assert!(!brute_force_by_name(model, &history[..=last]), "{:#?}", history);
            prop_assert!(
                witness_replays_by_name(model, &history[..=last], &narrowed),
                "{}",
                narrowed
            );
        }
    }
}

#[test]
fn the_interner_gives_one_id_per_json_text() {
    let mut interner = model::ValueInterner::default();
    // Distinct texts: an integer, the same as a float, as a string, negative, in an array,
    // in an object, a boolean, the largest u64 and a float zero of either sign.
    let values = [
        json!(1),
        json!(1.0),
        json!("1"),
        json!(-1),
        json!([1]),
        json!({"a": 1}),
        json!(true),
        json!(u64::MAX),
        json!(0.0),
        json!(-0.0),
        json!(""),
    ];
    let ids: Vec<u32> = values.iter().map(|value| interner.intern(value)).collect();
    let distinct: std::collections::BTreeSet<u32> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), values.len(), "{ids:?}");
    assert!(!distinct.contains(&model::ValueInterner::NULL));
    assert_eq!(interner.intern(&Value::Null), model::ValueInterner::NULL);
    for (value, &id) in values.iter().zip(&ids) {
        assert_eq!(interner.intern(&value.clone()), id, "{value}");
        assert_eq!(interner.value(id), value);
    }
}

// ---- The unique-value queue procedure ----

/// What the unique-value procedure alone says of a `fifo-queue` history: `Some(true)`
/// linearizable, `Some(false)` a violation (with its kind), `None` undecided.
fn unique_queue_decision(history: &[Op]) -> (Option<bool>, Option<&'static str>) {
    let mut model = FifoQueueModel::new();
    let (_calls, _state, partitions) = decode(&mut model, &Value::Null, history).unwrap();
    let members = partitions.into_values().next().unwrap_or_default();
    let search_calls: Vec<_> = members.into_iter().map(|(_, call)| call).collect();
    match unique_queue::decide(&search_calls) {
        unique_queue::Decision::Linearizable => (Some(true), None),
        unique_queue::Decision::Violation(violation) => (Some(false), Some(violation.kind)),
        unique_queue::Decision::Undecided => (None, None),
    }
}

/// The general search alone.
fn general_search_linearizable(history: &[Op]) -> bool {
    let verdict =
        check_with(FifoQueueModel::new(), &Value::Null, history, STATES_EXPLORED_MAX).unwrap();
    assert!(!matches!(verdict, Verdict::Unknown { .. }), "tiny histories decide");
    verdict == Verdict::Linearizable
}

/// Checks one hand-written queue history through the unique-value procedure: its decision,
/// the violation kind it names, and the general search's agreement.
fn check_unique(history: &[Op], expect: (Option<bool>, Option<&str>)) {
    let (decision, kind) = unique_queue_decision(history);
    assert_eq!((decision, kind), expect, "{history:#?}");
    if let Some(linearizable) = decision {
        assert_eq!(general_search_linearizable(history), linearizable, "{history:#?}");
        let verdict = check("fifo-queue", &Value::Null, history, STATES_EXPLORED_MAX).unwrap();
        assert_eq!(verdict == Verdict::Linearizable, linearizable);
        if let Verdict::NotLinearizable { witness } = verdict {
            let violation = witness.violation.clone().expect("the procedure's violation is named");
            assert!(violation.starts_with(kind.unwrap()), "{violation}");
            assert!(witness.to_string().contains(&violation), "{witness}");
        }
    }
}

#[test]
fn unique_queue_proves_clean_histories() {
    let enq = |p, v: u64| [invoke(p, "enqueue", json!(v)), ok(p, "enqueue", Value::Null)];
    let deq = |p, v: Value| [invoke(p, "dequeue", Value::Null), ok(p, "dequeue", v)];
    // Sequential, with an empty dequeue before and after.
    let sequential: Vec<Op> = [deq(1, Value::Null), enq(0, 1), enq(0, 2), deq(1, json!(1))]
        .into_iter()
        .chain([deq(1, json!(2)), deq(1, Value::Null)])
        .flatten()
        .collect();
    check_unique(&sequential, (Some(true), None));
    // Concurrent enqueues dequeued in the order opposite to their invokes.
    let concurrent = vec![
        invoke(0, "enqueue", json!(1)),
        invoke(2, "enqueue", json!(2)),
        ok(0, "enqueue", Value::Null),
        ok(2, "enqueue", Value::Null),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", json!(2)),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", json!(1)),
    ];
    check_unique(&concurrent, (Some(true), None));
    // An enqueue that timed out and was delivered; another that timed out and never was; a
    // dequeue that failed.
    let pending = vec![
        invoke(0, "enqueue", json!(1)),
        info(0, "enqueue"),
        invoke(2, "enqueue", json!(2)),
        invoke(1, "dequeue", Value::Null),
        fail(1, "dequeue"),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", json!(1)),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", Value::Null),
    ];
    check_unique(&pending, (Some(true), None));
}

#[test]
fn unique_queue_names_each_violation() {
    let enq = |p, v: u64| [invoke(p, "enqueue", json!(v)), ok(p, "enqueue", Value::Null)];
    let deq = |p, v: Value| [invoke(p, "dequeue", Value::Null), ok(p, "dequeue", v)];
    // fresh: a value never enqueued; and one dequeued before its enqueue began.
    let never: Vec<Op> = [enq(0, 1), deq(1, json!(7))].into_iter().flatten().collect();
    check_unique(&never, (Some(false), Some("fresh")));
    let early: Vec<Op> = [deq(1, json!(1)), enq(0, 1)].into_iter().flatten().collect();
    check_unique(&early, (Some(false), Some("fresh")));
    // repeated: one value dequeued twice.
    let twice: Vec<Op> =
        [enq(0, 1), deq(1, json!(1)), deq(1, json!(1))].into_iter().flatten().collect();
    check_unique(&twice, (Some(false), Some("repeated")));
    // order: 1 enqueued before 2, 2 dequeued before 1; and 2 dequeued, 1 never.
    let swapped: Vec<Op> =
        [enq(0, 1), enq(0, 2), deq(1, json!(2)), deq(1, json!(1))].into_iter().flatten().collect();
    check_unique(&swapped, (Some(false), Some("order")));
    let overtaken: Vec<Op> =
        [enq(0, 1), enq(0, 2), deq(1, json!(2))].into_iter().flatten().collect();
    check_unique(&overtaken, (Some(false), Some("order")));
    // empty: 1 surely in the queue while a dequeue returned empty.
    let missed: Vec<Op> =
        [enq(0, 1), deq(1, Value::Null), deq(1, json!(1))].into_iter().flatten().collect();
    check_unique(&missed, (Some(false), Some("empty")));
    let lost: Vec<Op> = [enq(0, 1), deq(1, Value::Null)].into_iter().flatten().collect();
    check_unique(&lost, (Some(false), Some("empty")));
}

#[test]
fn unique_queue_leaves_what_does_not_qualify_to_the_search() {
    // A repeated enqueue value, and a dequeue of unknown outcome.
    let repeated = vec![
        invoke(0, "enqueue", json!(1)),
        ok(0, "enqueue", Value::Null),
        invoke(0, "enqueue", json!(1)),
        ok(0, "enqueue", Value::Null),
    ];
    assert_eq!(unique_queue_decision(&repeated), (None, None));
    let unknown = vec![
        invoke(0, "enqueue", json!(1)),
        ok(0, "enqueue", Value::Null),
        invoke(1, "dequeue", Value::Null),
        info(1, "dequeue"),
    ];
    assert_eq!(unique_queue_decision(&unknown), (None, None));
    check_verdict("fifo-queue", Value::Null, &repeated, "linearizable");
    check_verdict("fifo-queue", Value::Null, &unknown, "linearizable");
}

#[test]
fn a_refutation_by_the_procedure_gets_a_searched_witness_and_narrows() {
    // 1 then 2 enqueued, 2 dequeued first, then unrelated calls.
    let mut history = vec![
        invoke(0, "enqueue", json!(1)),
        ok(0, "enqueue", Value::Null),
        invoke(0, "enqueue", json!(2)),
        ok(0, "enqueue", Value::Null),
        invoke(1, "dequeue", Value::Null),
        ok(1, "dequeue", json!(2)),
    ];
    for value in 3..40u64 {
        history.push(invoke(0, "enqueue", json!(value)));
        history.push(ok(0, "enqueue", Value::Null));
    }
    let Verdict::NotLinearizable { witness } =
        check_verdict("fifo-queue", Value::Null, &history, "not-linearizable")
    else {
        unreachable!()
    };
    assert!(witness.violation.as_deref().unwrap().starts_with("order:"), "{witness}");
    // The searched witness of the prefix the violation needs: the calls up to history[5].
    assert!(!witness.cannot_place.is_empty());
    assert!(witness.calls_in_partition <= 3, "{witness}");
    let narrowed = narrow("fifo-queue", &Value::Null, &history, *witness, STATES_EXPLORED_MAX);
    assert_eq!(narrowed.refuted_by.expect("narrowing finishes").completion_index, Some(5));
    // With a budget too small for any search, the violation alone is the witness.
    let Verdict::NotLinearizable { witness } =
        check("fifo-queue", &Value::Null, &history, 0).unwrap()
    else {
        panic!("the procedure needs no budget")
    };
    assert!(witness.linearized.is_empty() && witness.violation.is_some());
    let text = witness.to_string();
    assert!(text.contains("the calls that form it") && text.contains("history[4]"), "{text}");
}

#[test]
fn the_witness_search_of_a_refuted_queue_history_has_a_budget_in_proportion_to_its_prefix() {
    assert_eq!(witness_states_max(10, STATES_EXPLORED_MAX), WITNESS_STATES_MIN);
    assert_eq!(witness_states_max(100_000, STATES_EXPLORED_MAX), 400_000);
    assert_eq!(witness_states_max(usize::MAX, STATES_EXPLORED_MAX), STATES_EXPLORED_MAX);
    assert_eq!(witness_states_max(100_000, 5), 5, "never more than the check's budget");
    // Generated histories broken near their end, so the prefix the violation needs is about
    // the whole history: (operations, clients, seed, whether the witness is searched). With 2
    // clients the search refutes the prefix within the witness budget; 100 operations by 4
    // clients need 3,618 states, 1,000 by 8 clients more than the whole check's budget.
    for (operations, processes, seed, searched) in
        [(100, 2, 7, true), (100, 4, 7, false), (1_000, 8, 7, false)]
    {
        let shape =
            generate::Shape { model: "fifo-queue", operations, processes, seed, broken: true };
        let history = generate::history(shape).history;
        let verdict = check("fifo-queue", &Value::Null, &history, STATES_EXPLORED_MAX).unwrap();
        let Verdict::NotLinearizable { witness } = &verdict else {
            panic!("{shape:?}: {}", verdict.name())
        };
        // The violation is the procedure's, whatever the witness search did.
        let alone = check_model(
            "fifo-queue",
            &Value::Null,
            &history,
            STATES_EXPLORED_MAX,
            Witnessing::ViolationOnly,
        )
        .unwrap();
        let Verdict::NotLinearizable { witness: alone } = alone else { unreachable!() };
        assert!(alone.linearized.is_empty());
        assert_eq!(witness.violation, alone.violation, "{shape:?}");
        assert_eq!(!witness.linearized.is_empty(), searched, "{shape:?}: {witness}");
        if searched {
            assert!(witness_replays(FifoQueueModel::new(), &history, witness), "{witness}");
        } else {
            assert_eq!(witness, &alone, "{shape:?}: the violation alone");
        }
        // Deterministic: the budget counts states.
        let again = check("fifo-queue", &Value::Null, &history, STATES_EXPLORED_MAX).unwrap();
        assert_eq!(again, verdict, "{shape:?}");
    }
}

/// Random concurrent queue clients with distinct enqueued values: each op takes effect at one
/// instant between its invoke and completion (on a reference queue), then some outputs are
/// corrupted (`corrupt_one_in`: one dequeue result in that many, 0 for none). Completions:
/// `ok`, `fail` (the op did not take effect), `info` (it did) or none (crashed).
fn unique_queue_history(actions: &[(u8, u8, u8)], processes: u8, corrupt_one_in: u8) -> Vec<Op> {
    #[derive(Clone)]
    enum Client {
        Idle,
        Invoked(&'static str, Value),
        Applied(&'static str, Value),
        Crashed,
    }
    let mut queue: VecDeque<u64> = VecDeque::new();
    let mut clients = vec![Client::Idle; usize::from(processes)];
    let mut history = Vec::new();
    for (serial, &(selector, choice, kind)) in actions.iter().enumerate() {
        let process = usize::from(selector % processes);
        let event = |op_type, f: &str, value| Op {
            process: process as u64,
            op_type,
            f: f.to_string(),
            value,
            key: None,
        };
        clients[process] = match std::mem::replace(&mut clients[process], Client::Idle) {
            Client::Idle if choice % 5 < 2 => {
                history.push(event(OpType::Invoke, "dequeue", Value::Null));
                Client::Invoked("dequeue", Value::Null)
            }
            Client::Idle => {
                history.push(event(OpType::Invoke, "enqueue", json!(serial)));
                Client::Invoked("enqueue", json!(serial))
            }
            Client::Invoked(f, value) if kind % 7 == 0 => {
                history.push(event(OpType::Fail, f, Value::Null));
                let _ = value;
                Client::Idle
            }
            Client::Invoked("enqueue", value) => {
                queue.push_back(value.as_u64().unwrap());
                Client::Applied("enqueue", Value::Null)
            }
            Client::Invoked(_, _) => {
                let mut output = queue.pop_front().map_or(Value::Null, |value| json!(value));
                if corrupt_one_in > 0 && choice % corrupt_one_in == 0 {
                    output = if kind & 1 == 0 { Value::Null } else { json!(serial / 2) };
                }
                Client::Applied("dequeue", output)
            }
            Client::Applied(f, output) => match kind % 9 {
                // Mostly info enqueues: a dequeue of unknown outcome makes the history
                // not qualify, which is tested, but is not the point here.
                0 if f == "enqueue" || choice % 4 == 0 => {
                    history.push(event(OpType::Info, f, Value::Null));
                    Client::Idle
                }
                1 if f == "enqueue" => Client::Crashed,
                _ => {
                    history.push(event(OpType::Ok, f, output));
                    Client::Idle
                }
            },
            Client::Crashed => Client::Crashed,
        };
    }
    history
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The procedure agrees with the general search whenever it decides, and `check` (the
    /// procedure, then the search) agrees with the search alone always.
    #[test]
    fn unique_queue_agrees_with_the_general_search(
        processes in 1u8..5,
        corrupt_one_in in prop::sample::select(vec![0u8, 2, 3, 7]),
        actions in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..40),
    ) {
        let history = unique_queue_history(&actions, processes, corrupt_one_in);
        let searched = general_search_linearizable(&history);
        let (decision, _kind) = unique_queue_decision(&history);
        if let Some(decided) = decision {
            prop_assert_eq!(decided, searched, "{:#?}", history);
        }
        if corrupt_one_in == 0 {
            prop_assert!(searched, "linearizable by construction: {:#?}", history);
        }
        let verdict = check("fifo-queue", &Value::Null, &history, STATES_EXPLORED_MAX).unwrap();
        prop_assert_eq!(verdict == Verdict::Linearizable, searched, "{:#?}", history);
    }
}

/// How often the procedure decides on its own, on the generator above's qualifying clean
/// histories: speed, not correctness, so this only asserts it decides most of them (a
/// regression to "always undecided" would pass the agreement test while losing its point).
#[test]
fn unique_queue_decides_most_clean_histories() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (1u8..5, prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..60));
    let (mut decided, mut total) = (0, 0);
    for _ in 0..500 {
        let (processes, actions) =
            proptest::strategy::ValueTree::current(&strategy.new_tree(&mut runner).unwrap());
        let history = unique_queue_history(&actions, processes, 0);
        // Dequeues of unknown outcome do not qualify.
        let qualifies =
            pair_calls(&history).unwrap().0.iter().all(|call| {
                call.f == "enqueue" || matches!(call.completion, Completion::Ok { .. })
            });
        if !qualifies {
            continue;
        }
        total += 1;
        if unique_queue_decision(&history).0 == Some(true) {
            decided += 1;
        }
    }
    assert!(decided * 10 >= total * 9, "decided {decided} of {total}");
}

#[test]
fn the_budget_decides_the_same_way_twice() {
    // A history whose search needs some states: the verdict at each budget is the same on
    // every run, and grows from unknown to the answer as the budget does.
    let history = stale_read_then_more();
    let mut answered_at = None;
    for budget in [0, 1, 2, 4, 8, 16, 64, 1 << 10] {
        let first = check("register", &Value::Null, &history, budget).unwrap();
        let second = check("register", &Value::Null, &history, budget).unwrap();
        assert_eq!(first, second, "budget {budget}");
        if first.name() != "unknown" && answered_at.is_none() {
            answered_at = Some(budget);
        }
        if answered_at.is_some() {
            assert_eq!(first.name(), "not-linearizable", "budget {budget}");
        }
    }
    assert!(answered_at.is_some_and(|budget| budget > 0), "{answered_at:?}");
}

// ---- The append-only log procedure ----

/// What the log procedure alone says of a `kv` history: `Some(true)` linearizable,
/// `Some(false)` a violation (with its kind), `None` undecided (some key does not qualify).
fn unique_log_decision(history: &[Op]) -> (Option<bool>, Option<&'static str>) {
    let mut model = KvModel::new();
    let (_calls, _state, partitions) = decode(&mut model, &json!(""), history).unwrap();
    for members in partitions.into_values() {
        let search_calls: Vec<_> = members.into_iter().map(|(_, call)| call).collect();
        match unique_log::decide(&search_calls, |id| model.text(id).into_bytes()) {
            unique_queue::Decision::Linearizable => {}
            unique_queue::Decision::Violation(violation) => {
                return (Some(false), Some(violation.kind))
            }
            unique_queue::Decision::Undecided => return (None, None),
        }
    }
    (Some(true), None)
}

/// Random concurrent clients of two append-only logs (keys `a` and `b`), appending distinct
/// tokens and reading whole logs: each op takes effect at one instant between its invoke and
/// completion, then some reads are corrupted (`corrupt_one_in`: one in that many, 0 for none:
/// a token dropped, or two swapped). Completions: `ok`, `fail` (no effect), `info` (took
/// effect, for appends) or none (crashed, after taking effect).
fn unique_log_history(actions: &[(u8, u8, u8)], processes: u8, corrupt_one_in: u8) -> Vec<Op> {
    #[derive(Clone)]
    enum Client {
        Idle,
        Invoked(&'static str, String, Value),
        Applied(&'static str, String, Value),
        Crashed,
    }
    let mut logs: BTreeMap<String, String> = BTreeMap::new();
    let mut clients = vec![Client::Idle; usize::from(processes)];
    let mut history = Vec::new();
    for (serial, &(selector, choice, kind)) in actions.iter().enumerate() {
        let process = usize::from(selector % processes);
        let event = |op_type, f: &str, key: &str, value| Op {
            process: process as u64,
            op_type,
            f: f.to_string(),
            value,
            key: Some(key.to_string()),
        };
        clients[process] = match std::mem::replace(&mut clients[process], Client::Idle) {
            Client::Idle => {
                let key = if choice & 8 == 0 { "a" } else { "b" }.to_string();
                let (f, value) = if choice % 5 < 2 {
                    ("get", Value::Null)
                } else {
                    ("append", json!(format!("{serial},")))
                };
                history.push(event(OpType::Invoke, f, &key, value.clone()));
                Client::Invoked(f, key, value)
            }
            Client::Invoked(f, key, _) if kind % 7 == 0 => {
                history.push(event(OpType::Fail, f, &key, Value::Null));
                Client::Idle
            }
            Client::Invoked("append", key, value) => {
                logs.entry(key.clone()).or_default().push_str(value.as_str().unwrap());
                Client::Applied("append", key, Value::Null)
            }
            Client::Invoked(_, key, _) => {
                let mut read = logs.get(&key).cloned().unwrap_or_default();
                if corrupt_one_in > 0 && choice % corrupt_one_in == 0 {
                    let mut tokens: Vec<&str> = read.split_inclusive(',').collect();
                    if kind & 1 == 0 {
                        tokens.pop();
                    } else if tokens.len() >= 2 {
                        tokens.swap(0, 1);
                    }
                    read = tokens.concat();
                }
                Client::Applied("get", key, json!(read))
            }
            Client::Applied(f, key, output) => match kind % 9 {
                0 if f == "append" => {
                    history.push(event(OpType::Info, f, &key, Value::Null));
                    Client::Idle
                }
                1 if f == "append" => Client::Crashed,
                _ => {
                    history.push(event(OpType::Ok, f, &key, output));
                    Client::Idle
                }
            },
            Client::Crashed => Client::Crashed,
        };
    }
    history
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The log procedure decides every history of distinct tokens, and agrees with the
    /// general search; `check` (the procedure, then the search) agrees with the search alone.
    #[test]
    fn unique_log_agrees_with_the_general_search(
        processes in 1u8..5,
        corrupt_one_in in prop::sample::select(vec![0u8, 2, 3, 7]),
        actions in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..40),
    ) {
        let history = unique_log_history(&actions, processes, corrupt_one_in);
        let searched =
            check_with(KvModel::new(), &json!(""), &history, STATES_EXPLORED_MAX).unwrap();
        prop_assert!(!matches!(searched, Verdict::Unknown { .. }), "tiny histories decide");
        let searched = searched == Verdict::Linearizable;
        let (decision, _kind) = unique_log_decision(&history);
        prop_assert_eq!(decision, Some(searched), "{:#?}", history);
        if corrupt_one_in == 0 {
            prop_assert!(searched, "linearizable by construction: {:#?}", history);
        }
        let verdict = check("kv", &json!(""), &history, STATES_EXPLORED_MAX).unwrap();
        prop_assert_eq!(verdict == Verdict::Linearizable, searched, "{:#?}", history);
    }
}
