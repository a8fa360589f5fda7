//! Verdicts and the witness of a non-linearizable history.
//!
//! Role: say why a history is not linearizable in terms a person can check by hand: the
//! longest prefix the search managed to linearize (calls in order, with the state after each)
//! and the calls that could come next at that point but that the model rejects; once
//! [`super::narrow`] has run, also the call whose return makes the history unexplainable.
//! Text for people (`Display`), JSON for reports (`Serialize`, read back by `Deserialize`).
//!
//! Invariants: calls are named by the position of their invoke in the history
//! (`history[17]`), the same positions malformed-input errors use; `Display` never prints more
//! than `PREFIX_SHOWN_MAX` prefix steps; JSON carries them all unless [`Witness::bounded`]
//! cut it down, and then says how many it left out.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::search::GaveUp;

/// The answer of the checker.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Some order of the calls respects real time and the model.
    Linearizable,
    /// None does; the witness shows where the search got stuck.
    NotLinearizable {
        /// Why.
        witness: Box<Witness>,
    },
    /// The search gave up before an answer.
    Unknown {
        /// Why it gave up.
        reason: GaveUp,
    },
}

impl Verdict {
    /// The verdict's name as the CLI and the file format spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable { .. } => "not-linearizable",
            Verdict::Unknown { .. } => "unknown",
        }
    }
}

/// One call, as it appears in the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WitnessCall {
    /// Position of the invoke in the history.
    pub invoke_index: usize,
    /// Position of the completion (`ok` or `info`); `None` if the invoke was never completed.
    pub completion_index: Option<usize>,
    /// The client process.
    pub process: u64,
    /// The operation's name.
    pub f: String,
    /// The argument.
    pub input: Value,
    /// `ok` or `info` (`fail` only in [`Witness::refuted_by`]).
    pub outcome: String,
    /// The observed result; `None` for `info` and `fail` calls.
    pub output: Option<Value>,
    /// When the call was invoked and completed, in microseconds, where the history's owner
    /// knows (the lincheck format has positions only; the simulator's checkers fill these in
    /// from the events' simulated time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke_time_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time_us: Option<u64>,
}

/// One linearized call and the model's state after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WitnessStep {
    /// The call.
    pub call: WitnessCall,
    /// The model's state right after it.
    pub state_after: Value,
}

/// Why a history is not linearizable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Witness {
    /// The model.
    pub model: String,
    /// The partition (key) that is not linearizable, if the history has keys.
    pub key: Option<String>,
    /// The state the partition starts in.
    pub state_initial: Value,
    /// The longest linearizable prefix found, in order (its last steps only, after
    /// [`Witness::bounded`]).
    pub linearized: Vec<WitnessStep>,
    /// Steps at the start of `linearized` that [`Witness::bounded`] left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub linearized_omitted: usize,
    /// The `ok` calls that could come next after that prefix: the model rejects each of them,
    /// or accepts it only into a state from which the call returning first (one of these) can
    /// no longer be satisfied.
    pub cannot_place: Vec<WitnessCall>,
    /// Number of calls in the partition (after dropping `fail` calls and `info` reads).
    pub calls_in_partition: usize,
    /// The point where no linearization exists, once [`super::narrow`] found it: the call
    /// whose completion is the last entry of the shortest prefix of the history that is not
    /// linearizable. Some order explains the history up to just before that completion; none
    /// explains it with the value the call returned (or, for a `fail`, with the call taking no
    /// effect). The other fields then describe that prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuted_by: Option<WitnessCall>,
    /// The violation the `fifo-queue` unique-value procedure found (its kind, then the calls
    /// that form it), when that procedure refuted the history. With no `linearized` prefix,
    /// it is the whole witness: the general search found none of its own within its budget
    /// ([`super::witness_states_max`]), or only one naming calls the prefix cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation: Option<String>,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl Witness {
    /// How many prefix steps `Display` shows (the last ones, nearest the failure).
    pub const PREFIX_SHOWN_MAX: usize = 20;

    /// Prefix steps [`Witness::bounded`] keeps by default: the ones nearest the failure.
    pub const STEPS_KEPT_MAX: usize = 20;
    /// Calls that cannot come next kept by [`Witness::bounded`]; there are rarely more than
    /// the clients running at once.
    pub const CANNOT_PLACE_KEPT_MAX: usize = 20;
    /// Characters of one value's JSON kept by [`Witness::bounded`]: kv states grow with the
    /// history, and one per step would make a summary quadratic in the run's length.
    pub const VALUE_KEPT_CHARS_MAX: usize = 2048;

    /// The state after the prefix: the one none of `cannot_place` is accepted in.
    pub fn state_stuck(&self) -> &Value {
        self.linearized.last().map_or(&self.state_initial, |step| &step.state_after)
    }

    /// Total steps of the linearized prefix, including those left out.
    pub fn linearized_len(&self) -> usize {
        self.linearized.len() + self.linearized_omitted
    }

    /// The witness cut to a bounded size for summaries and reports: the last
    /// [`Self::STEPS_KEPT_MAX`] prefix steps (the count of the others kept), at most
    /// [`Self::CANNOT_PLACE_KEPT_MAX`] calls that cannot come next, and every value longer
    /// than [`Self::VALUE_KEPT_CHARS_MAX`] characters of JSON replaced by a string that keeps
    /// its start and its end.
    pub fn bounded(mut self) -> Witness {
        let dropped = self.linearized.len().saturating_sub(Self::STEPS_KEPT_MAX);
        self.linearized.drain(..dropped);
        self.linearized_omitted += dropped;
        self.cannot_place.truncate(Self::CANNOT_PLACE_KEPT_MAX);
        let bound_call = |call: &mut WitnessCall| {
            call.input = bounded_value(&call.input);
            call.output = call.output.as_ref().map(bounded_value);
        };
        for step in &mut self.linearized {
            bound_call(&mut step.call);
            step.state_after = bounded_value(&step.state_after);
        }
        self.cannot_place.iter_mut().for_each(bound_call);
        self.refuted_by.iter_mut().for_each(bound_call);
        if let Some(violation) = &mut self.violation {
            if let Value::String(text) = bounded_value(&Value::String(violation.clone())) {
                *violation = text;
            }
        }
        self.state_initial = bounded_value(&self.state_initial);
        assert!(self.linearized.len() <= Self::STEPS_KEPT_MAX, "the prefix is bounded");
        assert!(self.cannot_place.len() <= Self::CANNOT_PLACE_KEPT_MAX, "candidates are bounded");
        self
    }
}

/// `value`, or when its JSON is longer than [`Witness::VALUE_KEPT_CHARS_MAX`] characters, a
/// string of its start, `...`, its end and its length.
fn bounded_value(value: &Value) -> Value {
    let text = value.to_string();
    let char_count = text.chars().count();
    if char_count <= Witness::VALUE_KEPT_CHARS_MAX {
        return value.clone();
    }
    let head: String = text.chars().take(256).collect();
    let tail: String = text.chars().skip(char_count - 1024).collect();
    Value::String(format!("{head}...{tail} ({char_count} chars)"))
}

/// Simulated time in seconds, to the millisecond.
fn seconds(time_us: u64) -> String {
    format!("{}.{:03} s", time_us / 1_000_000, time_us / 1000 % 1000)
}

/// Values longer than this many characters are shortened in text (JSON keeps them whole).
const VALUE_SHOWN_CHARS_MAX: usize = 96;

/// A value as compact JSON, its middle elided if long: kv strings grow to kilobytes, and
/// what tells two of them apart is usually their end (the latest appends).
fn shown(value: &Value) -> String {
    let text = value.to_string();
    let char_count = text.chars().count();
    if char_count <= VALUE_SHOWN_CHARS_MAX {
        return text;
    }
    let head: String = text.chars().take(24).collect();
    let tail: String = text.chars().skip(char_count - 64).collect();
    format!("{head}...{tail} ({char_count} chars)")
}

impl fmt::Display for WitnessCall {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "history[{}] process {} {} {}",
            self.invoke_index,
            self.process,
            self.f,
            shown(&self.input)
        )?;
        match (&self.output, self.completion_index) {
            (Some(output), Some(index)) => {
                write!(formatter, " -> {} (ok at history[{index}])", shown(output))?
            }
            (_, Some(index)) if self.outcome == "fail" => {
                write!(formatter, " -> failed (fail at history[{index}])")?
            }
            (_, Some(index)) => write!(formatter, " -> ? (info at history[{index}])")?,
            (_, None) => write!(formatter, " -> ? (never completed)")?,
        }
        match (self.invoke_time_us, self.completion_time_us) {
            (Some(invoked), Some(completed)) => {
                write!(formatter, " from {} to {}", seconds(invoked), seconds(completed))
            }
            (Some(invoked), None) => write!(formatter, " from {}", seconds(invoked)),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Witness {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match &self.key {
            Some(key) => format!(" for key {key:?}"),
            None => String::new(),
        };
        writeln!(
            formatter,
            "not linearizable as {}{key}: longest linearizable prefix has {} of {} calls",
            self.model,
            self.linearized_len(),
            self.calls_in_partition
        )?;
        if let Some(call) = &self.refuted_by {
            writeln!(formatter, "  no order of the calls explains this return: {call}")?;
        }
        if let Some(violation) = &self.violation {
            writeln!(formatter, "  violation {violation}")?;
            if self.linearized.is_empty() {
                writeln!(formatter, "  the calls that form it:")?;
                for call in &self.cannot_place {
                    writeln!(formatter, "    {call}")?;
                }
                return Ok(());
            }
        }
        writeln!(formatter, "  initial state: {}", shown(&self.state_initial))?;
        let hidden = self.linearized.len().saturating_sub(Witness::PREFIX_SHOWN_MAX);
        if hidden + self.linearized_omitted > 0 {
            writeln!(formatter, "  ... {} earlier calls", hidden + self.linearized_omitted)?;
        }
        for step in &self.linearized[hidden..] {
            writeln!(formatter, "  {}  => state {}", step.call, shown(&step.state_after))?;
        }
        writeln!(
            formatter,
            "  none of these can come next in state {} without a dead end:",
            shown(self.state_stuck())
        )?;
        for call in &self.cannot_place {
            writeln!(formatter, "    {call}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_elided_in_text_only() {
        assert_eq!(shown(&Value::from(3)), "3");
        let long = Value::String(format!("{}tail-end", "a".repeat(200)));
        let text = shown(&long);
        assert!(
            text.starts_with("\"aaa")
                && text.contains("...")
                && text.ends_with("tail-end\" (210 chars)"),
            "{text}"
        );
        assert!(text.chars().count() < 120);
    }
}
