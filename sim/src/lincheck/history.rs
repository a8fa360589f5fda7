//! Histories: the file format of `data/lincheck/FORMAT.md`, its validation, and the pairing of
//! events into calls.
//!
//! Role: turn untrusted input (a JSON file, or events built in memory by the simulator) into a
//! list of [`Call`]s, or a [`HistoryError`] naming the exact position that is wrong.
//!
//! Invariants:
//! - Nothing here panics on bad input: every malformed shape becomes a typed error whose
//!   position reads like a path into the file (`history[17].type`).
//! - A process has at most one operation outstanding; a completion always closes the invoke
//!   of the same process, with the same `f` and the same `key`.
//! - `fail` calls are dropped here (they certainly did not happen and constrain nothing);
//!   `info` completions and invokes never completed become [`Completion::Info`].

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::search::FxHasher;

/// What an event says about its operation (Jepsen's event types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The operation starts.
    Invoke,
    /// The operation took effect; `value` is what the client observed.
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// Unknown: it may have taken effect at any point after its invoke, or never.
    Info,
}

/// One event of a history, as in the file format (the simulator builds these in memory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// The client process; it has at most one operation outstanding.
    pub process: u64,
    /// Invoke or one of the completions.
    #[serde(rename = "type")]
    pub op_type: OpType,
    /// The operation's name, e.g. `read`, `cas`, `enqueue`.
    pub f: String,
    /// Argument on an invoke, observed result on an `ok`.
    #[serde(default)]
    pub value: Value,
    /// Names an independent object: ops on different keys are checked separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The verdict a fixture file says its history has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// The history has a linearization.
    Linearizable,
    /// The history has none.
    NotLinearizable,
}

/// A whole history file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryFile {
    /// Model name: `register`, `cas-register`, `kv` or `fifo-queue`.
    pub model: String,
    /// The model's initial state; `null` means the model's empty state.
    #[serde(default)]
    pub init: Value,
    /// The known verdict, for fixtures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// Where the history comes from, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Events in real-time order.
    pub history: Vec<Op>,
}

/// Malformed input: where it is and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read (the message leaves the path to the caller, who prints it
    /// first for every kind of error).
    #[error("cannot read: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The JSON does not have the documented shape (syntax, unknown field, wrong type).
    #[error("{position}: {message}")]
    Shape {
        /// Path into the document, e.g. `history[17].type`.
        position: String,
        /// What serde found wrong.
        message: String,
    },
    /// The shape is right but the content is not (unpaired events, unknown `f`, bad values).
    #[error("{position}: {message}")]
    Invalid {
        /// Path into the document, e.g. `history[17].value`.
        position: String,
        /// What is wrong.
        message: String,
    },
}

impl HistoryError {
    pub(crate) fn invalid(position: impl Into<String>, message: impl Into<String>) -> Self {
        HistoryError::Invalid { position: position.into(), message: message.into() }
    }
}

/// Parses a history file from JSON text; errors carry the path of the offending value.
pub fn parse_history(text: &str) -> Result<HistoryFile, HistoryError> {
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    let file: HistoryFile = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let position = error.path().to_string();
        let inner = error.into_inner();
        // serde_json appends "at line L column C", which locates the error in the text.
        HistoryError::Shape {
            position: if position == "." { "(document)".to_string() } else { position },
            message: inner.to_string(),
        }
    })?;
    Ok(file)
}

/// Reads and parses a history file.
pub fn load_history(path: &Path) -> Result<HistoryFile, HistoryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| HistoryError::Io { path: path.display().to_string(), source })?;
    parse_history(&text)
}

/// How a call ended, as far as the checker cares (`fail` calls are gone by now).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Completion<'a> {
    /// It took effect and returned this value, at this history position.
    Ok {
        /// Position of the `ok` event in the history.
        index: usize,
        /// The observed value.
        value: &'a Value,
    },
    /// It may have taken effect at any point after its invoke, or never; `index` is the
    /// position of the `info` event, `None` when the invoke was never completed.
    Info {
        /// Position of the `info` event, if any.
        index: Option<usize>,
    },
}

/// An operation with its invoke and its completion: the unit the checker linearizes. It
/// borrows from the history's events (a check copies no values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Call<'a> {
    /// Position of the invoke event in the history: the call's name in messages.
    pub invoke_index: usize,
    /// The client process.
    pub process: u64,
    /// The operation's name.
    pub f: &'a str,
    /// The argument given at invoke.
    pub input: &'a Value,
    /// The independent object the call acts on.
    pub key: Option<&'a str>,
    /// How it ended.
    pub completion: Completion<'a>,
}

impl Call<'_> {
    /// Position where the call returned, `None` for `info` calls (they return at infinity).
    pub fn return_index(&self) -> Option<usize> {
        match self.completion {
            Completion::Ok { index, .. } => Some(index),
            Completion::Info { .. } => None,
        }
    }
}

/// Pairs invokes with completions. Also returns the number of invokes (operations), counting
/// the `fail` ones that are dropped.
pub fn pair_calls(history: &[Op]) -> Result<(Vec<Call<'_>>, usize), HistoryError> {
    // process -> (position of its open invoke, its slot in `calls`).
    // Only looked up, never iterated: a hash map is fine, FxHash is fast on integers.
    let mut outstanding_by_process: HashMap<u64, (usize, usize), BuildHasherDefault<FxHasher>> =
        HashMap::default();
    // Slot per invoke; `None` once it failed. Kept in invoke order so calls come out in it.
    let mut calls: Vec<Option<Call<'_>>> = Vec::new();
    for (index, op) in history.iter().enumerate() {
        match op.op_type {
            OpType::Invoke => {
                if let Some((open, _)) = outstanding_by_process.get(&op.process) {
                    return Err(HistoryError::invalid(
                        format!("history[{index}].type"),
                        format!(
                            "invoke by process {} while its invoke at history[{open}] is still \
                             outstanding (a process has at most one operation at a time)",
                            op.process
                        ),
                    ));
                }
                outstanding_by_process.insert(op.process, (index, calls.len()));
                calls.push(Some(Call {
                    invoke_index: index,
                    process: op.process,
                    f: &op.f,
                    input: &op.value,
                    key: op.key.as_deref(),
                    completion: Completion::Info { index: None },
                }));
            }
            OpType::Ok | OpType::Fail | OpType::Info => {
                let Some((open, slot)) = outstanding_by_process.remove(&op.process) else {
                    return Err(HistoryError::invalid(
                        format!("history[{index}].type"),
                        format!(
                            "{} by process {} with no outstanding invoke",
                            type_name(op.op_type),
                            op.process
                        ),
                    ));
                };
                let invoke = &history[open];
                if invoke.f != op.f {
                    return Err(HistoryError::invalid(
                        format!("history[{index}].f"),
                        format!(
                            "completion has f {:?} but its invoke at history[{open}] has f {:?}",
                            op.f, invoke.f
                        ),
                    ));
                }
                if invoke.key != op.key {
                    return Err(HistoryError::invalid(
                        format!("history[{index}].key"),
                        format!(
                            "completion has key {:?} but its invoke at history[{open}] has key {:?}",
                            op.key, invoke.key
                        ),
                    ));
                }
                match op.op_type {
                    OpType::Ok => {
                        let call = calls[slot].as_mut().expect("an open invoke has a live slot");
                        call.completion = Completion::Ok { index, value: &op.value };
                    }
                    OpType::Info => {
                        let call = calls[slot].as_mut().expect("an open invoke has a live slot");
                        call.completion = Completion::Info { index: Some(index) };
                    }
                    OpType::Fail => calls[slot] = None,
                    OpType::Invoke => unreachable!("handled by the outer match"),
                }
            }
        }
    }
    let invoke_count = calls.len();
    Ok((calls.into_iter().flatten().collect(), invoke_count))
}

fn type_name(op_type: OpType) -> &'static str {
    match op_type {
        OpType::Invoke => "invoke",
        OpType::Ok => "ok",
        OpType::Fail => "fail",
        OpType::Info => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: u64, op_type: OpType, f: &str, value: Value) -> Op {
        Op { process, op_type, f: f.to_string(), value, key: None }
    }

    #[test]
    fn pairs_and_drops_fail() {
        let history = vec![
            op(0, OpType::Invoke, "write", Value::from(1)),
            op(1, OpType::Invoke, "write", Value::from(2)),
            op(0, OpType::Ok, "write", Value::from(1)),
            op(1, OpType::Fail, "write", Value::from(2)),
            op(1, OpType::Invoke, "read", Value::Null),
            op(2, OpType::Invoke, "read", Value::Null),
            op(2, OpType::Info, "read", Value::Null),
        ];
        let (calls, invokes) = pair_calls(&history).unwrap();
        assert_eq!(invokes, 4);
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].completion, Completion::Ok { index: 2, value: &Value::from(1) });
        assert_eq!(calls[1].invoke_index, 4);
        assert_eq!(calls[1].completion, Completion::Info { index: None });
        assert_eq!(calls[2].completion, Completion::Info { index: Some(6) });
    }

    #[test]
    fn rejects_unpaired_events() {
        let orphan = vec![op(0, OpType::Ok, "read", Value::Null)];
        let error = pair_calls(&orphan).unwrap_err().to_string();
        assert!(
            error.starts_with("history[0].type: ok by process 0 with no outstanding"),
            "{error}"
        );
        let double = vec![
            op(0, OpType::Invoke, "read", Value::Null),
            op(0, OpType::Invoke, "read", Value::Null),
        ];
        let error = pair_calls(&double).unwrap_err().to_string();
        assert!(error.starts_with("history[1].type: invoke by process 0 while"), "{error}");
        let mismatch = vec![
            op(0, OpType::Invoke, "read", Value::Null),
            op(0, OpType::Ok, "write", Value::Null),
        ];
        let error = pair_calls(&mismatch).unwrap_err().to_string();
        assert!(error.starts_with("history[1].f:"), "{error}");
    }

    #[test]
    fn parse_errors_name_the_position() {
        let unknown_field = r#"{"model":"register","history":[{"process":0,"type":"invoke","f":"read","value":null,"colour":1}]}"#;
        let error = parse_history(unknown_field).unwrap_err().to_string();
        assert!(error.contains("history[0]") && error.contains("colour"), "{error}");
        let wrong_type =
            r#"{"model":"register","history":[{"process":0,"type":"begin","f":"read"}]}"#;
        let error = parse_history(wrong_type).unwrap_err().to_string();
        assert!(error.starts_with("history[0].type:"), "{error}");
        let wrong_process =
            r#"{"model":"register","history":[{"process":"a","type":"ok","f":"read"}]}"#;
        let error = parse_history(wrong_process).unwrap_err().to_string();
        assert!(error.starts_with("history[0].process:"), "{error}");
        let not_json = "{";
        assert!(parse_history(not_json).is_err());
        let top_unknown = r#"{"model":"register","history":[],"extra":1}"#;
        let error = parse_history(top_unknown).unwrap_err().to_string();
        assert!(error.contains("extra"), "{error}");
    }
}
