//! The history: one append-only record of everything that happened in a run.
//!
//! Events are stamped with true simulated time (microseconds since the run started, never a
//! node's skewed clock) and a sequence number. Client operations follow Jepsen's convention:
//! an `invoke`, then exactly one of `ok` (it happened), `fail` (it certainly did not) or
//! `info` (unknown, for example a timeout). Faults have a start and an end; internal events
//! (a leader elected, a crash, corruption detected) carry the node and a detail.
//!
//! The history is the only input of checkers and reports. Written as JSON Lines, its BLAKE3
//! hash is the run's fingerprint: the same seed must give the same hash.
//!
//! **Invariant:** events are appended in time order and never changed or removed.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One entry of the history.
// No `deny_unknown_fields`: serde does not support it together with `flatten`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, from 0.
    pub index: u64,
    /// True simulated time since the run started, in microseconds.
    pub time_us: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A client operation begins.
    Invoke { process: u64, f: String, value: Value },
    /// The operation took effect; `value` is what the client observed.
    Ok { process: u64, f: String, value: Value },
    /// The operation certainly did not take effect.
    Fail { process: u64, f: String, value: Value, error: String },
    /// Unknown whether the operation took effect.
    Info { process: u64, f: String, value: Value, error: String },
    /// The nemesis injects a fault.
    FaultStart { fault: u64, kind: String, detail: Value },
    /// The nemesis heals a fault.
    FaultEnd { fault: u64, kind: String },
    /// Something inside the system worth checking (a leader elected, a crash, a recovery).
    Internal { node: String, what: String, detail: Value },
    /// The run enters a phase (`faults`, `heal`, `check`), or records its seeds and settings.
    Phase { name: String, detail: Value },
}

impl EventKind {
    /// The client process of an operation event.
    pub fn process(&self) -> Option<u64> {
        match self {
            EventKind::Invoke { process, .. }
            | EventKind::Ok { process, .. }
            | EventKind::Fail { process, .. }
            | EventKind::Info { process, .. } => Some(*process),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Log {
    start: tokio::time::Instant,
    events: Vec<Event>,
}

/// The run's history, shared by everything that records into it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct History {
    log: Arc<Mutex<Log>>,
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> History {
        let log = Log { start: tokio::time::Instant::now(), events: Vec::new() };
        History { log: Arc::new(Mutex::new(log)) }
    }

    /// Appends an event stamped with the current simulated time; returns its index.
    pub fn record(&self, kind: EventKind) -> u64 {
        let mut log = self.log.lock().expect("history lock poisoned");
        let time_us = log.start.elapsed().as_micros() as u64;
        let index = log.events.len() as u64;
        if let Some(last) = log.events.last() {
            assert!(last.time_us <= time_us, "history time went backwards");
        }
        log.events.push(Event { index, time_us, kind });
        index
    }

    /// Records an internal event of `node`.
    pub fn internal(&self, node: &str, what: &str, detail: Value) {
        self.record(EventKind::Internal { node: node.to_string(), what: what.to_string(), detail });
    }

    /// Microseconds since the history started.
    pub fn now_us(&self) -> u64 {
        self.log.lock().expect("history lock poisoned").start.elapsed().as_micros() as u64
    }

    /// Runs `look` over the events so far, without copying them.
    pub fn scan<T>(&self, look: impl FnOnce(&[Event]) -> T) -> T {
        look(&self.log.lock().expect("history lock poisoned").events)
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.log.lock().expect("history lock poisoned").events.clone()
    }

    /// Number of events so far.
    pub fn len(&self) -> usize {
        self.log.lock().expect("history lock poisoned").events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

/// The history as JSON Lines: one event per line, each line ending in `\n`.
pub fn to_json_lines(events: &[Event]) -> String {
    let mut text = String::new();
    for event in events {
        text.push_str(&serde_json::to_string(event).expect("events always serialize"));
        text.push('\n');
    }
    text
}

/// Reads JSON Lines back; the error names the line and what is wrong with it.
pub fn from_json_lines(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", number + 1))
        })
        .collect()
}

/// The run's fingerprint: BLAKE3 of the JSON Lines, in hex.
pub fn fingerprint(events: &[Event]) -> String {
    blake3::hash(to_json_lines(events).as_bytes()).to_hex().to_string()
}

/// A node's handle for recording internal events; a no-op when the node runs outside a
/// simulated run (the real build logs to its own files instead).
#[derive(Clone, Debug)]
pub struct Recorder {
    node: String,
    sink: Sink,
}

#[derive(Clone, Debug)]
enum Sink {
    Nowhere,
    History(History),
    /// One JSON object per line on standard output, stamped with the Unix time in
    /// milliseconds: a real node's log.
    Stdout,
}

impl Recorder {
    pub fn new(node: &str, history: History) -> Recorder {
        Recorder { node: node.to_string(), sink: Sink::History(history) }
    }

    pub fn disabled(node: &str) -> Recorder {
        Recorder { node: node.to_string(), sink: Sink::Nowhere }
    }

    /// A recorder that logs each event as a JSON line on standard output (a real node).
    pub fn stdout(node: &str) -> Recorder {
        Recorder { node: node.to_string(), sink: Sink::Stdout }
    }

    /// Records that `what` happened on this node.
    pub fn record(&self, what: &str, detail: Value) {
        match &self.sink {
            Sink::Nowhere => {}
            Sink::History(history) => history.internal(&self.node, what, detail),
            Sink::Stdout => {
                use std::io::Write;
                let unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis() as u64);
                let line = serde_json::json!({
                    "unix_ms": unix_ms, "node": self.node, "what": what, "detail": detail,
                });
                // A log line that cannot be written (a closed pipe) is dropped, never fatal.
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        }
    }

    /// Writes a line to a real node's log only (an access-log line, a worker's job): a no-op
    /// in a simulated run, whose history holds what the clients saw of the same requests, so
    /// its fingerprint and size stay those of the service's events.
    pub fn log(&self, what: &str, detail: Value) {
        if let Sink::Stdout = self.sink {
            self.record(what, detail);
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_through_json_lines() {
        let events = vec![
            Event {
                index: 0,
                time_us: 5,
                kind: EventKind::Invoke { process: 1, f: "append".into(), value: json!(3) },
            },
            Event {
                index: 1,
                time_us: 9,
                kind: EventKind::Info {
                    process: 1,
                    f: "append".into(),
                    value: json!(3),
                    error: "timeout".into(),
                },
            },
        ];
        let text = to_json_lines(&events);
        assert!(
            text.starts_with(r#"{"index":0,"time_us":5,"type":"invoke","process":1"#),
            "{text}"
        );
        assert_eq!(from_json_lines(&text).unwrap(), events);
        assert_eq!(fingerprint(&events), fingerprint(&from_json_lines(&text).unwrap()));
        assert!(from_json_lines("{\"index\":0}\n").unwrap_err().starts_with("line 1:"));
    }
}
