//! Linearizability checker: is there an order of a history's operations, consistent with real
//! time, that a sequential model accepts?
//!
//! Role: the engine behind the queue checker of the simulator and behind
//! `pessimist lincheck FILE...`. Pure CPU code: no I/O except in [`cli`], no async, no clock.
//!
//! Codemap:
//! - [`history`]: the file format (`data/lincheck/FORMAT.md`), validation, pairing of events
//!   into calls (Jepsen's completions: `fail` is dropped, `info` and never-completed invokes
//!   may take effect at any later point, or never).
//! - [`model`]: the [`Model`] trait and the models `register`, `cas-register`, `kv`,
//!   `fifo-queue`.
//! - `unique_queue`: the O(n log n) decision procedure for `fifo-queue` histories whose
//!   enqueued values are distinct; it proves either verdict or leaves the history to the search.
//! - `unique_log`: the same for `kv` keys used as append-only logs of distinct tokens (the
//!   probe's nodes).
//! - `search`: the Wing-Gong/Lowe search with its cache and prunings, one per partition
//!   (P-compositionality: calls on different keys are checked separately; the partitions'
//!   searches take turns, so the first refutation found ends the check).
//! - [`witness`]: the [`Verdict`] and, when a history is not linearizable, the [`Witness`].
//! - [`cli`]: the `pessimist lincheck` command.
//!
//! Invariants:
//! - Bad input is an [`HistoryError`] naming its position, never a panic.
//! - The verdict does not depend on anything but the history and the budget: partitions are
//!   checked in key order, the search is deterministic, and its budget counts states explored
//!   ([`STATES_EXPLORED_MAX`] by default), never time. An exhausted budget answers
//!   [`Verdict::Unknown`].
//! - Memory grows with what the search explores: nothing is reserved in proportion to the
//!   square of the history, and the cache is bounded ([`CACHE_WORDS_MAX`]).
//!
//! Example, as the simulator's queue checker uses it:
//!
//! ```
//! use pessimist_sim::lincheck::{check, Op, OpType, Verdict, STATES_EXPLORED_MAX};
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
//! let verdict = check("fifo-queue", &Value::Null, &history, STATES_EXPLORED_MAX).unwrap();
//! assert_eq!(verdict.name(), "not-linearizable");
//! if let Verdict::NotLinearizable { witness } = verdict {
//!     println!("{witness}");
//! }
//! ```
//!
//! And the command line: `std::process::exit(pessimist_sim::lincheck::cli::run(&files,
//! STATES_EXPLORED_MAX, false))`.

pub mod cli;
pub mod generate;
pub mod history;
pub mod model;
mod search;
mod unique_log;
mod unique_queue;
pub mod witness;

use std::collections::{BTreeMap, BTreeSet};

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

/// The default budget of one check: the states its searches may explore (every successor
/// state computed, new or already seen, summed over partitions) before the verdict is
/// `unknown`. Large enough that the shipped queue and probe scenarios decide; small enough
/// that one check stays within seconds and a few hundred MiB (at most one cache entry, of a
/// few dozen bytes plus its window, per state explored).
pub const STATES_EXPLORED_MAX: u64 = 1 << 24;

/// Most words of bitset windows one search's cache may hold (256 MiB), whatever the budget:
/// a history with calls left open from its start has wide windows, and this keeps such a
/// check bounded in memory; past it the verdict is `unknown`.
pub const CACHE_WORDS_MAX: usize = 1 << 25;

/// Checks an in-memory history against the model named `model` (one of [`MODEL_NAMES`]),
/// starting from `init` (`null` = the model's empty state), exploring at most `states_max`
/// states (see [`STATES_EXPLORED_MAX`]); past that, the verdict is [`Verdict::Unknown`].
pub fn check(
    model: &str,
    init: &Value,
    history: &[Op],
    states_max: u64,
) -> Result<Verdict, HistoryError> {
    check_model(model, init, history, states_max, Witnessing::Searched)
}

/// How a refutation found by the fast queue procedure is explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Witnessing {
    /// By the general search on the shortest prefix the violation needs, within the witness
    /// budget ([`witness_states_max`]); by the violation alone if that search gives up.
    Searched,
    /// By the violation alone (for [`narrow`]'s probes, which need only the verdict).
    ViolationOnly,
}

fn check_model(
    model: &str,
    init: &Value,
    history: &[Op],
    states_max: u64,
    witnessing: Witnessing,
) -> Result<Verdict, HistoryError> {
    match model {
        "register" => check_with(RegisterModel::register(), init, history, states_max),
        "cas-register" => check_with(RegisterModel::cas_register(), init, history, states_max),
        "kv" => check_kv(init, history, states_max, witnessing),
        "fifo-queue" => check_queue(init, history, states_max, witnessing),
        _ => Err(HistoryError::invalid(
            "model",
            format!("unknown model {model:?}; known models: {}", MODEL_NAMES.join(", ")),
        )),
    }
}

/// Checks a parsed history file (its `expect` is not looked at).
pub fn check_file(file: &HistoryFile, states_max: u64) -> Result<Verdict, HistoryError> {
    check(&file.model, &file.init, &file.history, states_max)
}

/// A `fifo-queue` history: the unique-value procedure first, the general search when it
/// cannot decide.
fn check_queue(
    init: &Value,
    history: &[Op],
    states_max: u64,
    witnessing: Witnessing,
) -> Result<Verdict, HistoryError> {
    let mut model = FifoQueueModel::new();
    let (calls, state_initial, partitions) = decode(&mut model, init, history)?;
    // The queue has no keys: one partition (none at all for an empty history).
    let qualifies = state_initial == FifoQueueModel::EMPTY && partitions.len() <= 1;
    let members = partitions.into_values().next().unwrap_or_default();
    let (call_indices, search_calls): (Vec<usize>, Vec<_>) = members.into_iter().unzip();
    let decision = if qualifies {
        unique_queue::decide(&search_calls)
    } else {
        unique_queue::Decision::Undecided
    };
    let violation = match decision {
        unique_queue::Decision::Linearizable => return Ok(Verdict::Linearizable),
        unique_queue::Decision::Undecided => {
            return check_with(FifoQueueModel::new(), init, history, states_max)
        }
        unique_queue::Decision::Violation(violation) => violation,
    };
    let refuted = Refuted { calls: &calls, call_indices: &call_indices, violation, key: None };
    let state = model.describe_state(state_initial);
    Ok(refuted.verdict(FifoQueueModel::new, init, history, states_max, witnessing, state))
}

/// A `kv` history: the append-only log procedure for each key first, the general search when
/// a key does not qualify.
fn check_kv(
    init: &Value,
    history: &[Op],
    states_max: u64,
    witnessing: Witnessing,
) -> Result<Verdict, HistoryError> {
    let mut model = KvModel::new();
    let (calls, state_initial, partitions) = decode(&mut model, init, history)?;
    if state_initial != 0 {
        return check_with(KvModel::new(), init, history, states_max);
    }
    for (key, members) in partitions {
        let (call_indices, search_calls): (Vec<usize>, Vec<_>) = members.into_iter().unzip();
        match unique_log::decide(&search_calls, |id| model.text(id).into_bytes()) {
            unique_queue::Decision::Linearizable => {}
            unique_queue::Decision::Undecided => {
                return check_with(KvModel::new(), init, history, states_max)
            }
            unique_queue::Decision::Violation(violation) => {
                let refuted =
                    Refuted { calls: &calls, call_indices: &call_indices, violation, key };
                let state = model.describe_state(state_initial);
                return Ok(refuted.verdict(
                    KvModel::new,
                    init,
                    history,
                    states_max,
                    witnessing,
                    state,
                ));
            }
        }
    }
    Ok(Verdict::Linearizable)
}

/// A violation a fast procedure proved, on one partition's calls.
struct Refuted<'c, 'h> {
    /// Every paired call of the history.
    calls: &'c [Call<'h>],
    /// The partition's calls, as indexes into `calls`.
    call_indices: &'c [usize],
    violation: unique_queue::Violation,
    key: Option<&'h str>,
}

impl Refuted<'_, '_> {
    /// The verdict: the general search's witness on the shortest prefix the violation needs
    /// (when `witnessing` asks for it and that search decides within [`witness_states_max`]),
    /// else the violation alone.
    fn verdict<M: Model>(
        self,
        new_model: impl Fn() -> M,
        init: &Value,
        history: &[Op],
        states_max: u64,
        witnessing: Witnessing,
        state_initial: Value,
    ) -> Verdict {
        let Refuted { calls, call_indices, violation, key } = self;
        let describe = |search_index: usize| describe_call(&calls[call_indices[search_index]]);
        let mut text = violation.description.clone();
        for (position, &search_index) in violation.calls.iter().enumerate() {
            let call = describe(search_index);
            text = text.replace(
                &format!("{{{position}}}"),
                &format!("history[{}] ({} {})", call.invoke_index, call.f, call.input),
            );
        }
        let violation_text = format!("{}: {text}", violation.kind);
        let end = violation.end_position.min(history.len() - 1);
        // The prefix the violation needs is already not linearizable (linearizability is
        // prefix-closed): searching it alone is cheaper, and its witness is as good. A state
        // costs the search memory in proportion to its size (a queue's length, a log's), so
        // a long prefix gets the violation alone rather than a search whose memory the
        // budget does not bound. The verdict is already proved: the search only explains it,
        // so it gets a budget in proportion to the prefix, not the check's.
        if witnessing == Witnessing::Searched && end < WITNESS_SEARCH_EVENTS_MAX {
            let budget = witness_states_max(end + 1, states_max);
            if let Ok(Verdict::NotLinearizable { mut witness }) =
                check_with(new_model(), init, &history[..=end], budget)
            {
                // The prefix cuts the completions of calls still running at its end; a
                // witness that names one of them as never completed would misdescribe the
                // history, so it is kept only when it names none.
                let cut: BTreeSet<usize> = calls
                    .iter()
                    .filter(|call| call.invoke_index <= end)
                    .filter(|call| call.return_index().is_some_and(|returned| returned > end))
                    .map(|call| call.invoke_index)
                    .collect();
                let named = witness.linearized.iter().map(|step| step.call.invoke_index);
                let mut named =
                    named.chain(witness.cannot_place.iter().map(|call| call.invoke_index));
                if !named.any(|index| cut.contains(&index)) {
                    witness.violation = Some(violation_text);
                    return Verdict::NotLinearizable { witness };
                }
            }
        }
        let witness = Witness {
            model: new_model().name().to_string(),
            key: key.map(str::to_string),
            state_initial,
            linearized: Vec::new(),
            linearized_omitted: 0,
            cannot_place: violation.calls.iter().map(|&index| describe(index)).collect(),
            calls_in_partition: call_indices.len(),
            refuted_by: None,
            violation: Some(violation_text),
        };
        Verdict::NotLinearizable { witness: Box::new(witness) }
    }
}

/// Longest prefix (in events) of a history a fast procedure refuted that the general search
/// is run on for a witness.
pub const WITNESS_SEARCH_EVENTS_MAX: usize = 1 << 16;

/// States the general search may explore per event of the prefix a violation needs, when it
/// builds a witness for a refutation a fast procedure already proved. Refuting a prefix means
/// exploring every order of it, exponential in its concurrency: a search that needs more than
/// a few states per event would cost many times the decision, and the violation alone already
/// names the calls that form it.
pub const WITNESS_STATES_PER_EVENT: u64 = 4;

/// States the witness search may explore however short the prefix: a short history, where a
/// witness is easiest to read, gets more room than its length alone would give it.
pub const WITNESS_STATES_MIN: u64 = 1 << 10;

/// The budget of the search for the witness of a refuted prefix of `prefix_events` events:
/// [`WITNESS_STATES_PER_EVENT`] per event, at least [`WITNESS_STATES_MIN`], at most the
/// check's `states_max`. States explored, like every budget: the same witness on any machine.
pub fn witness_states_max(prefix_events: usize, states_max: u64) -> u64 {
    let events = u64::try_from(prefix_events).unwrap_or(u64::MAX);
    events.saturating_mul(WITNESS_STATES_PER_EVENT).max(WITNESS_STATES_MIN).min(states_max)
}

/// Calls of a history, decoded and partitioned: the paired calls, the initial state, and the
/// search calls of each partition with their index among the paired calls.
type Decoded<'h, M> =
    (Vec<Call<'h>>, <M as Model>::State, Partitions<'h, <M as Model>::Input, <M as Model>::Output>);

/// Pairs and decodes every call before anything is searched: bad input is reported whatever
/// the verdict.
fn decode<'h, M: Model>(
    model: &mut M,
    init: &Value,
    history: &'h [Op],
) -> Result<Decoded<'h, M>, HistoryError> {
    let (calls, _invoke_count) = pair_calls(history)?;
    let state_initial =
        model.init(init).map_err(|message| HistoryError::invalid("init", message))?;

    let mut partitions: Partitions<'h, M::Input, M::Output> = BTreeMap::new();
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
    Ok((calls, state_initial, partitions))
}

/// Checks a history against any [`Model`] with the general search, exploring at most
/// `states_max` states over all partitions.
pub fn check_with<M: Model>(
    mut model: M,
    init: &Value,
    history: &[Op],
    states_max: u64,
) -> Result<Verdict, HistoryError> {
    let (calls, state_initial, partitions) = decode(&mut model, init, history)?;
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
    let mut states_explored: u64 = pending.iter().map(|p| p.search.states_explored()).sum();
    while !pending.is_empty() {
        // The last partition left has nobody to give way to.
        let steps_max = if pending.len() == 1 { u64::MAX } else { STEPS_PER_TURN };
        let mut still_pending = Vec::with_capacity(pending.len());
        for mut partition in pending {
            // The budget is the check's: what the other partitions explored is spent.
            let states_elsewhere = states_explored - partition.search.states_explored();
            let limits = Limits {
                states_max: states_max.saturating_sub(states_elsewhere),
                cache_words_max: CACHE_WORDS_MAX,
            };
            let before = partition.search.states_explored();
            let progress = partition.search.run(&mut model, &partition.calls, limits, steps_max);
            states_explored += partition.search.states_explored() - before;
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
                        violation: None,
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
/// Each probe is a whole check within `states_max`; when one gives up (or the history is
/// invalid, which `witness` says it was not), the search stops and the witness of the
/// shortest failing prefix found so far is returned, without `refuted_by`. Probes of a
/// history a fast procedure refutes skip the witness search; the shortest prefix then gets
/// one, within [`witness_states_max`].
pub fn narrow(
    model: &str,
    init: &Value,
    history: &[Op],
    witness: Witness,
    states_max: u64,
) -> Witness {
    // The empty prefix is linearizable; the whole history is not.
    let (mut linearizable_len, mut failing_len) = (0usize, history.len());
    let mut narrowest = witness;
    let mut checks = 0u32;
    while failing_len - linearizable_len > 1 {
        checks += 1;
        assert!(checks <= NARROWING_CHECKS_MAX, "a binary search halves the interval each time");
        let middle = linearizable_len + (failing_len - linearizable_len) / 2;
        match check_model(model, init, &history[..middle], states_max, Witnessing::ViolationOnly) {
            Ok(Verdict::Linearizable) => linearizable_len = middle,
            Ok(Verdict::NotLinearizable { witness }) => {
                failing_len = middle;
                narrowest = *witness;
            }
            Ok(Verdict::Unknown { .. }) | Err(_) => return narrowest,
        }
    }
    if narrowest.violation.is_some() && narrowest.linearized.is_empty() {
        // A probe's violation-only witness: give the shortest prefix a searched one.
        if let Ok(Verdict::NotLinearizable { witness }) =
            check(model, init, &history[..failing_len], states_max)
        {
            narrowest = *witness;
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
