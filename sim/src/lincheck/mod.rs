//! Linearizability checker: is there an order of a history's operations, consistent with real
//! time, that a sequential model accepts?
//!
//! Role: the engine behind the queue checker of the simulator and behind
//! `pessimist lincheck FILE...`. Pure CPU code: no I/O except in [`cli`], no async, no clock
//! except the optional deadline.
//!
//! Codemap:
//! - [`history`]: the file format (`data/lincheck/FORMAT.md`), validation, pairing of events
//!   into calls (Jepsen's completions: `fail` is dropped, `info` and never-completed invokes
//!   may take effect at any later point, or never).
//! - [`model`]: the [`Model`] trait and the models `register`, `cas-register`, `kv`,
//!   `fifo-queue`.
//! - `search`: the Wing-Gong/Lowe search with its cache and prunings, one per partition
//!   (P-compositionality: calls on different keys are checked separately; the partitions'
//!   searches take turns, so the first refutation found ends the check).
//! - [`witness`]: the [`Verdict`] and, when a history is not linearizable, the [`Witness`].
//! - [`cli`]: the `pessimist lincheck` command.
//!
//! Invariants:
//! - Bad input is an [`HistoryError`] naming its position, never a panic.
//! - The verdict does not depend on anything but the history: partitions are checked in key
//!   order and the search is deterministic.
//!
//! Example, as the simulator's queue checker uses it:
//!
//! ```
//! use pessimist_sim::lincheck::{check, Op, OpType, Verdict};
//! use serde_json::{json, Value};
//!
//! let op = |process, op_type, f: &str, value| Op {
//!     process, op_type, f: f.to_string(), value, key: None,
//! };
//! let history = vec![
//!     op(0, OpType::Invoke, "enqueue", json!(1)),
//!     op(0, OpType::Ok, "enqueue", Value::Null),
//!     op(0, OpType::Invoke, "enqueue", json!(2)),
//!     op(0, OpType::Ok, "enqueue", Value::Null),
//!     op(1, OpType::Invoke, "dequeue", Value::Null),
//!     op(1, OpType::Ok, "dequeue", json!(2)),
//! ];
//! let verdict = check("fifo-queue", &Value::Null, &history, None).unwrap();
//! assert_eq!(verdict.name(), "not-linearizable");
//! if let Verdict::NotLinearizable { witness } = verdict {
//!     println!("{witness}");
//! }
//! ```
//!
//! And the command line: `std::process::exit(pessimist_sim::lincheck::cli::run(&files,
//! Some(Duration::from_secs(10)), false))`.

pub mod cli;
pub mod history;
pub mod model;
mod search;
pub mod witness;

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

pub use history::{
    load_history, pair_calls, parse_history, Call, Completion, Expect, HistoryError, HistoryFile,
    Op, OpType,
};
pub use model::{FifoQueueModel, KvModel, Model, RegisterModel};
pub use search::GaveUp;
pub use witness::{Verdict, Witness, WitnessCall, WitnessStep};

use search::{Limits, Progress, Search, SearchCall, SearchOutcome};

/// The model names [`check`] knows.
pub const MODEL_NAMES: [&str; 4] = ["register", "cas-register", "kv", "fifo-queue"];

/// Most (set, state) pairs one search may remember: about 1 GiB for histories of a few
/// hundred calls. Past it the verdict is `unknown` rather than the process running out of
/// memory.
pub const CACHE_ENTRIES_MAX: usize = 1 << 24;

/// Checks an in-memory history against the model named `model` (one of [`MODEL_NAMES`]),
/// starting from `init` (`null` = the model's empty state). With a `deadline`, answers
/// [`Verdict::Unknown`] once it passes.
pub fn check(
    model: &str,
    init: &Value,
    history: &[Op],
    deadline: Option<Instant>,
) -> Result<Verdict, HistoryError> {
    match model {
        "register" => check_with(RegisterModel::register(), init, history, deadline),
        "cas-register" => check_with(RegisterModel::cas_register(), init, history, deadline),
        "kv" => check_with(KvModel::new(), init, history, deadline),
        "fifo-queue" => check_with(FifoQueueModel::new(), init, history, deadline),
        _ => Err(HistoryError::invalid(
            "model",
            format!("unknown model {model:?}; known models: {}", MODEL_NAMES.join(", ")),
        )),
    }
}

/// Checks a parsed history file (its `expect` is not looked at).
pub fn check_file(file: &HistoryFile, deadline: Option<Instant>) -> Result<Verdict, HistoryError> {
    check(&file.model, &file.init, &file.history, deadline)
}

/// Checks a history against any [`Model`].
pub fn check_with<M: Model>(
    mut model: M,
    init: &Value,
    history: &[Op],
    deadline: Option<Instant>,
) -> Result<Verdict, HistoryError> {
    let (calls, _invoke_count) = pair_calls(history)?;
    let state_initial =
        model.init(init).map_err(|message| HistoryError::invalid("init", message))?;

    // Decode everything before searching anything: bad input is reported whatever the verdict.
    let mut partitions: Partitions<'_, M::Input, M::Output> = BTreeMap::new();
    for (call_index, call) in calls.iter().enumerate() {
        let at = call.invoke_index;
        if !model.functions().contains(&call.f) {
            return Err(HistoryError::invalid(
                format!("history[{at}].f"),
                format!(
                    "unknown f {:?} for model {}; known: {}",
                    call.f,
                    model.name(),
                    model.functions().join(", ")
                ),
            ));
        }
        let input = model
            .decode_input(call.f, call.input)
            .map_err(|message| HistoryError::invalid(format!("history[{at}].value"), message))?;
        let output = match &call.completion {
            Completion::Ok { index, value } => {
                Some(model.decode_output(&input, value).map_err(|message| {
                    HistoryError::invalid(format!("history[{index}].value"), message)
                })?)
            }
            Completion::Info { .. } => None,
        };
        let partition = model
            .partition(call.key)
            .map_err(|message| HistoryError::invalid(format!("history[{at}].key"), message))?;
        if output.is_none() && model.is_read_only(&input, None) {
            // An info call that changes nothing constrains nothing: drop it.
            continue;
        }
        partitions.entry(partition).or_default().push((
            call_index,
            SearchCall {
                invoke_position: call.invoke_index,
                return_position: call.return_index(),
                input,
                output,
            },
        ));
    }

    let limits = Limits { deadline, cache_entries_max: CACHE_ENTRIES_MAX };
    // Partitions take turns of `STEPS_PER_TURN` steps: a partition that is quick to refute
    // ends the check early, whatever its key, after about (partitions x its steps); and the
    // total work on a linearizable history stays the sum of the partitions' (searches resume).
    struct Pending<'k, S, I, O> {
        key: Option<&'k str>,
        call_indices: Vec<usize>,
        calls: Vec<SearchCall<I, O>>,
        search: Search<S>,
    }
    let mut pending: Vec<Pending<'_, M::State, M::Input, M::Output>> = partitions
        .into_iter()
        .map(|(key, members)| {
            let (call_indices, calls): (Vec<usize>, Vec<_>) = members.into_iter().unzip();
            let search = Search::new(&model, state_initial, &calls);
            Pending { key, call_indices, calls, search }
        })
        .collect();
    let mut gave_up = None;
    while !pending.is_empty() {
        // The last partition left has nobody to give way to.
        let steps_max = if pending.len() == 1 { u64::MAX } else { STEPS_PER_TURN };
        let mut still_pending = Vec::with_capacity(pending.len());
        for mut partition in pending {
            let progress = partition.search.run(&mut model, &partition.calls, limits, steps_max);
            match progress {
                Progress::Paused => still_pending.push(partition),
                Progress::Done(SearchOutcome::Linearizable) => {}
                // Another partition may still prove the history wrong.
                Progress::Done(SearchOutcome::GaveUp(reason)) => {
                    gave_up = gave_up.or(Some(reason));
                }
                Progress::Done(SearchOutcome::NotLinearizable { prefix, candidates }) => {
                    let describe = |search_index: usize| -> WitnessCall {
                        describe_call(&calls[partition.call_indices[search_index]])
                    };
                    let witness = Witness {
                        model: model.name().to_string(),
                        key: partition.key.map(str::to_owned),
                        state_initial: model.describe_state(state_initial),
                        linearized: prefix
                            .iter()
                            .map(|&(search_index, state)| WitnessStep {
                                call: describe(search_index),
                                state_after: model.describe_state(state),
                            })
                            .collect(),
                        linearized_omitted: 0,
                        cannot_place: candidates.iter().map(|&index| describe(index)).collect(),
                        calls_in_partition: partition.calls.len(),
                        refuted_by: None,
                    };
                    return Ok(Verdict::NotLinearizable { witness: Box::new(witness) });
                }
            }
        }
        pending = still_pending;
    }
    Ok(match gave_up {
        Some(reason) => Verdict::Unknown { reason },
        None => Verdict::Linearizable,
    })
}

/// Step budget of a partition's turn: small enough that a refutation is not held up, large
/// enough that switching (a function call) costs nothing against it.
const STEPS_PER_TURN: u64 = 1 << 9;

/// Calls by partition key, each with its index in the paired calls.
type Partitions<'k, I, O> = BTreeMap<Option<&'k str>, Vec<(usize, SearchCall<I, O>)>>;

fn describe_call(call: &Call) -> WitnessCall {
    let (outcome, output, completion_index) = match call.completion {
        Completion::Ok { index, value } => ("ok", Some(value.clone()), Some(index)),
        Completion::Info { index } => ("info", None, index),
    };
    WitnessCall {
        invoke_index: call.invoke_index,
        completion_index,
        process: call.process,
        f: call.f.to_owned(),
        input: call.input.clone(),
        outcome: outcome.to_string(),
        output,
        invoke_time_us: None,
        completion_time_us: None,
    }
}

/// Most prefixes [`narrow`] checks: a binary search over a history of up to 2^64 entries.
pub const NARROWING_CHECKS_MAX: u32 = 64;

/// Narrows the witness of a history [`check`] found not linearizable to the shortest prefix
/// of the history that is already not linearizable, and names the point where no
/// linearization exists ([`Witness::refuted_by`]).
///
/// Why a binary search is sound: linearizability is prefix-closed. Take a linearization of a
/// prefix one entry longer. If that entry is an invoke, the new call comes after every call
/// completed before it, so cutting the order just before it drops only calls still open in
/// the shorter prefix, which may take effect or not; if it is a completion, the call is open
/// in the shorter prefix, where any result, or none, is allowed. So once a prefix is not
/// linearizable, no longer one is, and the shortest such prefix ends with the completion no
/// order can explain: an `ok`, or a `fail` (a call that certainly took no effect, where the
/// shorter prefix could still let it have one).
///
/// Each probe is a whole [`check`] under `deadline`; when one gives up (or the history is
/// invalid, which `witness` says it was not), the search stops and the witness of the
/// shortest failing prefix found so far is returned, without `refuted_by`.
pub fn narrow(
    model: &str,
    init: &Value,
    history: &[Op],
    witness: Witness,
    deadline: Option<Instant>,
) -> Witness {
    // The empty prefix is linearizable; the whole history is not.
    let (mut linearizable_len, mut failing_len) = (0usize, history.len());
    let mut narrowest = witness;
    let mut checks = 0u32;
    while failing_len - linearizable_len > 1 {
        checks += 1;
        assert!(checks <= NARROWING_CHECKS_MAX, "a binary search halves the interval each time");
        let middle = linearizable_len + (failing_len - linearizable_len) / 2;
        match check(model, init, &history[..middle], deadline) {
            Ok(Verdict::Linearizable) => linearizable_len = middle,
            Ok(Verdict::NotLinearizable { witness }) => {
                failing_len = middle;
                narrowest = *witness;
            }
            Ok(Verdict::Unknown { .. }) | Err(_) => return narrowest,
        }
    }
    let last = failing_len - 1;
    let completion = &history[last];
    assert!(
        matches!(completion.op_type, OpType::Ok | OpType::Fail),
        "the shortest non-linearizable prefix ends with an ok or fail completion (history[{last}])"
    );
    // Pairing drops failed calls: find the completion's invoke directly.
    let invoke_index = history[..last]
        .iter()
        .rposition(|op| op.process == completion.process && op.op_type == OpType::Invoke)
        .expect("a completion in a valid history has its invoke");
    let refuting = WitnessCall {
        invoke_index,
        completion_index: Some(last),
        process: completion.process,
        f: completion.f.clone(),
        input: history[invoke_index].value.clone(),
        outcome: if completion.op_type == OpType::Ok { "ok" } else { "fail" }.to_string(),
        output: (completion.op_type == OpType::Ok).then(|| completion.value.clone()),
        invoke_time_us: None,
        completion_time_us: None,
    };
    narrowest.refuted_by = Some(refuting);
    narrowest
}

#[cfg(test)]
mod tests;
