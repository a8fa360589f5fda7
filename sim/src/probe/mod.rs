//! The probe: a small durable-log service and its client, a test instrument for the seams.
//!
//! Until the service under test runs in the simulator, scenarios exercise the seams with this
//! probe. Each probe node keeps one log on its disk: `append(v)` appends a record, fsyncs, and
//! only then answers `ok`; `read` reads the log back from disk. The client processes drive
//! appends and reads at seeded random times against random nodes, and record every operation
//! in the history with Jepsen's invoke/ok/fail/info.
//!
//! The probe's promise, which [`crate::check`] verifies: an acknowledged append survives every
//! fault (crash, torn write, partition, pause, clock fault) unless the node *detects and
//! reports* corruption of its disk; and a read never returns a value nobody appended.
//! The knob `probe_ack_before_fsync` breaks the promise on purpose (it answers before the
//! fsync), so the checkers can be seen catching a real durability bug.
//!
//! **Invariant:** the probe server reads its state only from its disk seam, never from memory
//! that a crash would erase.

pub mod check;

use std::time::Duration;

use pessimist_core::history::{EventKind, History};
use pessimist_core::node::NodeContext;
use pessimist_core::seams::disk::DiskError;
use pessimist_core::seams::net::{AddressBook, LinkFaults, NetError, Transport, TransportOptions};
use pessimist_core::seams::rng::SeededRng;
use rand::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The probe's log file.
pub const LOG_FILE: &str = "probe.log";

/// Messages between the probe client and probe nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProbeMessage {
    Append { value: u64 },
    Appended { log_length: u64, node_clock_ms: i64 },
    Read,
    ReadOk { values: Vec<u64>, node_clock_ms: i64 },
    Error { reason: String },
}

/// The probe server: runs on every probe node, once per incarnation.
pub async fn serve(context: NodeContext) {
    let ack_before_fsync =
        context.knobs.get("probe_ack_before_fsync").and_then(|v| v.as_bool()).unwrap_or(false);
    let recorder = context.recorder.clone();
    // Recovery: drop a torn tail left by a crash, so later appends follow whole records.
    match context.disk.read(LOG_FILE).await {
        Ok(log) if log.torn_tail_bytes > 0 => {
            recorder.record(
                "torn_tail_truncated",
                json!({ "bytes": log.torn_tail_bytes, "records": log.records.len() }),
            );
            let rewritten = context.disk.rewrite(LOG_FILE, &log.records).await;
            let synced = match rewritten {
                Ok(()) => context.disk.fsync(LOG_FILE).await,
                Err(error) => Err(error),
            };
            if let Err(error) = synced {
                recorder.record("recovery_failed", json!({ "error": error.to_string() }));
            }
        }
        Ok(_) => {}
        Err(error) => repair(&context, error).await,
    }
    let options = TransportOptions::default();
    let bound = Transport::<ProbeMessage>::bind(
        &context.name,
        context.book.clone(),
        options,
        context.link_faults.clone(),
        context.rng("transport"),
    )
    .await;
    let (transport, mut inbox) = match bound {
        Ok(bound) => bound,
        Err(error) => {
            recorder.record("bind_failed", json!({ "error": error.to_string() }));
            return;
        }
    };
    recorder.record("serving", json!({}));
    while let Some(request) = inbox.recv().await {
        let answer = match &request.body {
            ProbeMessage::Append { value } => {
                let payload = value.to_le_bytes();
                // Appends are idempotent: the network may deliver a request twice (a duplicated
                // frame, a client's retry), and a value must enter the log once.
                let already = match read_log(&context).await {
                    Ok(log) => log.records.iter().any(|record| record.as_slice() == payload),
                    Err(_) => false,
                };
                let appended =
                    if already { Ok(()) } else { context.disk.append(LOG_FILE, &payload).await };
                let durable = match appended {
                    Ok(()) if already => Ok(()),
                    Ok(()) if ack_before_fsync => {
                        // The broken design: answer now, make it durable later (maybe).
                        let disk = context.disk.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let _ = disk.fsync(LOG_FILE).await;
                        });
                        Ok(())
                    }
                    Ok(()) => context.disk.fsync(LOG_FILE).await,
                    Err(error) => Err(error),
                };
                match durable {
                    Ok(()) => match read_log(&context).await {
                        Ok(log) => ProbeMessage::Appended {
                            log_length: log.records.len() as u64,
                            node_clock_ms: context.clock.wall_ms(),
                        },
                        Err(error) => disk_error_answer(&context, error),
                    },
                    Err(error) => disk_error_answer(&context, error),
                }
            }
            ProbeMessage::Read => match read_log(&context).await {
                Ok(log) => {
                    let values = log
                        .records
                        .iter()
                        .filter_map(|record| {
                            record.as_slice().try_into().ok().map(u64::from_le_bytes)
                        })
                        .collect();
                    ProbeMessage::ReadOk { values, node_clock_ms: context.clock.wall_ms() }
                }
                Err(error) => disk_error_answer(&context, error),
            },
            other => ProbeMessage::Error { reason: format!("unexpected request {other:?}") },
        };
        // A reply that cannot be sent is the client's timeout to see; keep serving.
        let _ = transport.reply(&request, &answer).await;
    }
}

/// Reads the log, repairing it first when its checksums fail.
async fn read_log(
    context: &NodeContext,
) -> Result<pessimist_core::seams::disk::Records, DiskError> {
    match context.disk.read(LOG_FILE).await {
        Err(error @ DiskError::Corrupt { .. }) => {
            repair(context, error).await;
            context.disk.read(LOG_FILE).await
        }
        other => other,
    }
}

/// Corruption found: report it, keep the whole records before it, and go on serving. The
/// records after it are lost, and the history says so; they are never served.
async fn repair(context: &NodeContext, error: DiskError) {
    context.recorder.record("corruption_detected", json!({ "error": error.to_string() }));
    let salvaged = match context.disk.salvage(LOG_FILE).await {
        Ok((records, _)) => records.records,
        Err(_) => Vec::new(),
    };
    let kept = salvaged.len();
    let rewritten = match context.disk.rewrite(LOG_FILE, &salvaged).await {
        Ok(()) => context.disk.fsync(LOG_FILE).await,
        Err(error) => Err(error),
    };
    match rewritten {
        Ok(()) => context.recorder.record("corruption_repaired", json!({ "records_kept": kept })),
        Err(error) => {
            context.recorder.record("repair_failed", json!({ "error": error.to_string() }))
        }
    }
}

fn disk_error_answer(context: &NodeContext, error: DiskError) -> ProbeMessage {
    context.recorder.record("disk_error", json!({ "error": error.to_string() }));
    ProbeMessage::Error { reason: error.to_string() }
}

/// The probe workload's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeWorkload {
    /// Concurrent client processes.
    pub processes: u64,
    /// Operations each process starts per simulated second, on average (Poisson arrivals).
    pub ops_per_s: f64,
    /// Fraction of operations that are reads.
    pub read_fraction: f64,
    /// How long a client waits for an answer before recording `info`.
    pub timeout_ms: u64,
}

impl Default for ProbeWorkload {
    fn default() -> Self {
        ProbeWorkload { processes: 4, ops_per_s: 20.0, read_fraction: 0.2, timeout_ms: 1_000 }
    }
}

impl ProbeWorkload {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.processes == 0 || self.processes > 1000 {
            return Err(("processes".into(), "must be between 1 and 1000".into()));
        }
        if !(self.ops_per_s > 0.0 && self.ops_per_s <= 10_000.0) {
            return Err(("ops_per_s".into(), "must be in (0, 10000]".into()));
        }
        if !(0.0..=1.0).contains(&self.read_fraction) {
            return Err(("read_fraction".into(), "not a fraction in [0, 1]".into()));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 600_000 {
            return Err(("timeout_ms".into(), "must be between 1 and 600000".into()));
        }
        Ok(())
    }
}

/// Runs one client process until `until_us` of history time.
pub async fn client_process(
    process: u64,
    workload: ProbeWorkload,
    targets: Vec<String>,
    transport: Transport<ProbeMessage>,
    history: History,
    mut rng: SeededRng,
    until_us: u64,
) {
    let timeout = Duration::from_millis(workload.timeout_ms);
    let mut counter = 0u64;
    loop {
        // Exponential inter-arrival times: a Poisson process per client.
        let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
        let wait_us = (-uniform.ln() / workload.ops_per_s * 1e6) as u64;
        tokio::time::sleep(Duration::from_micros(wait_us.max(1000))).await;
        if history.now_us() >= until_us {
            return;
        }
        let node = targets[rng.random_range(0..targets.len())].clone();
        if rng.random_bool(workload.read_fraction) {
            read(process, &node, &transport, &history, timeout).await;
        } else {
            counter += 1;
            let value = process * 1_000_000_000 + counter;
            append(process, &node, value, &transport, &history, timeout).await;
        }
    }
}

/// One append, recorded invoke then ok/fail/info.
pub async fn append(
    process: u64,
    node: &str,
    value: u64,
    transport: &Transport<ProbeMessage>,
    history: &History,
    timeout: Duration,
) -> bool {
    let f = "append".to_string();
    let invoked = json!({ "node": node, "value": value });
    history.record(EventKind::Invoke { process, f: f.clone(), value: invoked.clone() });
    let outcome = transport.call(node, &ProbeMessage::Append { value }, timeout).await;
    match outcome {
        Ok(ProbeMessage::Appended { log_length, node_clock_ms }) => {
            let value = json!({ "node": node, "value": value, "log_length": log_length, "node_clock_ms": node_clock_ms });
            history.record(EventKind::Ok { process, f, value });
            true
        }
        Ok(ProbeMessage::Error { reason }) => {
            // The node answered that the append failed before it was acknowledged; it may still
            // have reached the log, so this is not a certain failure.
            history.record(EventKind::Info { process, f, value: invoked, error: reason });
            false
        }
        Ok(other) => {
            history.record(EventKind::Info {
                process,
                f,
                value: invoked,
                error: format!("unexpected answer {other:?}"),
            });
            false
        }
        Err(error) => {
            record_net_error(history, process, f, invoked, error);
            false
        }
    }
}

/// One read, recorded invoke then ok/fail/info. Returns the values on success.
pub async fn read(
    process: u64,
    node: &str,
    transport: &Transport<ProbeMessage>,
    history: &History,
    timeout: Duration,
) -> Option<Vec<u64>> {
    let f = "read".to_string();
    let invoked = json!({ "node": node });
    history.record(EventKind::Invoke { process, f: f.clone(), value: invoked.clone() });
    match transport.call(node, &ProbeMessage::Read, timeout).await {
        Ok(ProbeMessage::ReadOk { values, node_clock_ms }) => {
            let value = json!({ "node": node, "values": values, "node_clock_ms": node_clock_ms });
            history.record(EventKind::Ok { process, f, value });
            Some(values)
        }
        Ok(ProbeMessage::Error { reason }) => {
            history.record(EventKind::Fail { process, f, value: invoked, error: reason });
            None
        }
        Ok(other) => {
            history.record(EventKind::Fail {
                process,
                f,
                value: invoked,
                error: format!("unexpected answer {other:?}"),
            });
            None
        }
        Err(error) => {
            record_net_error(history, process, f, invoked, error);
            None
        }
    }
}

/// A request that never left is a certain failure; one that left and got no answer is unknown.
fn record_net_error(
    history: &History,
    process: u64,
    f: String,
    value: serde_json::Value,
    error: NetError,
) {
    let error_text = error.to_string();
    match error {
        NetError::UnknownPeer(_) | NetError::Unreachable { .. } | NetError::Encode(_) => {
            history.record(EventKind::Fail { process, f, value, error: error_text });
        }
        NetError::Timeout { .. } | NetError::ConnectionLost { .. } => {
            history.record(EventKind::Info { process, f, value, error: error_text });
        }
    }
}

/// A client transport for the probe.
pub fn client_transport(
    name: &str,
    book: AddressBook,
    link_faults: LinkFaults,
    rng: SeededRng,
) -> Transport<ProbeMessage> {
    Transport::unbound(name, book, TransportOptions::default(), link_faults, rng).0
}
