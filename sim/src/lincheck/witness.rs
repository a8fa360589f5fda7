//! Verdicts and the witness of a non-linearizable history.
//!
//! Role: say why a history is not linearizable in terms a person can check by hand: the
//! longest prefix the search managed to linearize (calls in order, with the state after each)
//! and the calls that could come next at that point but that the model rejects. Text for
//! people (`Display`), JSON for reports (`Serialize`).
//!
//! Invariants: calls are named by the position of their invoke in the history
//! (`history[17]`), the same positions malformed-input errors use; `Display` never prints more
//! than `PREFIX_SHOWN_MAX` prefix steps (JSON carries them all).

use std::fmt;

use serde::Serialize;
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
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    /// `ok` or `info`.
    pub outcome: &'static str,
    /// The observed result; `None` for `info` calls.
    pub output: Option<Value>,
}

/// One linearized call and the model's state after it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WitnessStep {
    /// The call.
    pub call: WitnessCall,
    /// The model's state right after it.
    pub state_after: Value,
}

/// Why a history is not linearizable.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Witness {
    /// The model.
    pub model: String,
    /// The partition (key) that is not linearizable, if the history has keys.
    pub key: Option<String>,
    /// The state the partition starts in.
    pub state_initial: Value,
    /// The longest linearizable prefix found, in order.
    pub linearized: Vec<WitnessStep>,
    /// The `ok` calls that could come next after that prefix: the model rejects each of them,
    /// or accepts it only into a state from which the call returning first (one of these) can
    /// no longer be satisfied.
    pub cannot_place: Vec<WitnessCall>,
    /// Number of calls in the partition (after dropping `fail` calls and `info` reads).
    pub calls_in_partition: usize,
}

impl Witness {
    /// How many prefix steps `Display` shows (the last ones, nearest the failure).
    pub const PREFIX_SHOWN_MAX: usize = 20;

    /// The state after the prefix: the one none of `cannot_place` is accepted in.
    pub fn state_stuck(&self) -> &Value {
        self.linearized.last().map_or(&self.state_initial, |step| &step.state_after)
    }
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
                write!(formatter, " -> {} (ok at history[{index}])", shown(output))
            }
            (_, Some(index)) => write!(formatter, " -> ? (info at history[{index}])"),
            (_, None) => write!(formatter, " -> ? (never completed)"),
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
            self.linearized.len(),
            self.calls_in_partition
        )?;
        writeln!(formatter, "  initial state: {}", shown(&self.state_initial))?;
        let hidden = self.linearized.len().saturating_sub(Witness::PREFIX_SHOWN_MAX);
        if hidden > 0 {
            writeln!(formatter, "  ... {hidden} earlier calls")?;
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
