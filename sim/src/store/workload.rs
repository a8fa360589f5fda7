//! The usage store's workload: usage shippers flush counter increments in batches (each with
//! its batch id, unacknowledged keys riding along until acknowledged) and read back what they
//! wrote; readers read recent keys. From the heal a monitor dumps every node, round after
//! round, until (once the shippers have stopped) every key's replicas agree; then it takes a
//! final dump of every node's states. Every operation goes
//! into the history in the shapes [`crate::store::check`] reads:
//!
//! - `flush`: invoke `{writer, batch, entries: [[key, increment, slot_batch, total], ...]}`;
//!   ok adds `{hinted}` (acknowledgements from fallbacks); when some key was not
//!   acknowledged, `info` (or `fail` when no key was and every try was refused) with
//!   `{acked: [keys]}`;
//! - `read`: invoke `{key}`, ok `{key, value, slots: {writer: [batch, total]}, floors,
//!   answers, hinted}` (`slots` null when no replica had the key);
//! - `dump`: invoke `{node, round}`, ok `{node, round, home: {key: digest}, hinted: [key]}`;
//! - `final_dump`: invoke `{node}`, ok `{node, home: {key: state}, hinted: [[home, key,
//!   state]]}` with states as in `read`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pessimist_core::history::{EventKind, History};
use pessimist_core::seams::rng::SeededRng;
use pessimist_core::store::client::{Batch, StoreClient, StoreError, Writer, Written};
use pessimist_core::store::counter::Counter;
use pessimist_core::store::msg::Dump;
use rand::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The store workload's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreWorkload {
    /// Usage shippers, each with its own writer id (an API server's).
    pub writers: u64,
    /// Flushes each shipper starts per simulated second, on average (Poisson arrivals).
    pub flushes_per_s: f64,
    /// Accounts usage is counted for.
    pub accounts: u64,
    /// Length of a usage window: keys are `usage/acct-{account}/{window}`.
    pub window_ms: u64,
    /// Accounts one flush counts usage for, at most.
    pub keys_per_flush_max: u64,
    /// Largest increment of one key in one flush.
    pub increment_max: u64,
    /// Chance that a shipper reads back, right after a flush, a key it holds an acknowledged
    /// total for (half the time one the flush just wrote).
    pub read_after_write: f64,
    /// Processes that read recent keys at random.
    pub readers: u64,
    /// Reads each reader starts per simulated second, on average.
    pub reads_per_s: f64,
    /// Requests per operation, over different coordinators.
    pub attempts: u32,
    /// How often the monitor dumps every node while waiting for convergence.
    pub convergence_poll_ms: u64,
}

impl Default for StoreWorkload {
    fn default() -> Self {
        StoreWorkload {
            writers: 4,
            flushes_per_s: 5.0,
            accounts: 8,
            window_ms: 5_000,
            keys_per_flush_max: 3,
            increment_max: 100,
            read_after_write: 0.5,
            readers: 2,
            reads_per_s: 5.0,
            attempts: 3,
            convergence_poll_ms: 200,
        }
    }
}

impl StoreWorkload {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if self.writers == 0 || self.writers > 1000 {
            return fail("writers", "must be between 1 and 1000");
        }
        if !(self.flushes_per_s > 0.0 && self.flushes_per_s <= 1000.0) {
            return fail("flushes_per_s", "must be in (0, 1000]");
        }
        if self.accounts == 0 || self.accounts > 100_000 {
            return fail("accounts", "must be between 1 and 100000");
        }
        if !(100..=86_400_000).contains(&self.window_ms) {
            return fail("window_ms", "must be between 100 and 86400000");
        }
        if self.keys_per_flush_max == 0 || self.keys_per_flush_max > 1000 {
            return fail("keys_per_flush_max", "must be between 1 and 1000");
        }
        if self.increment_max == 0 || self.increment_max > 1_000_000_000 {
            return fail("increment_max", "must be between 1 and 1000000000");
        }
        if !(0.0..=1.0).contains(&self.read_after_write) {
            return fail("read_after_write", "not a fraction in [0, 1]");
        }
        if self.readers > 1000 {
            return fail("readers", "must be at most 1000");
        }
        if !(self.reads_per_s > 0.0 && self.reads_per_s <= 1000.0) {
            return fail("reads_per_s", "must be in (0, 1000]");
        }
        if self.attempts == 0 || self.attempts > 100 {
            return fail("attempts", "must be between 1 and 100");
        }
        if !(10..=60_000).contains(&self.convergence_poll_ms) {
            return fail("convergence_poll_ms", "must be between 10 and 60000");
        }
        Ok(())
    }
}

/// The key of an account's usage in a window.
pub fn usage_key(account: u64, window: u64) -> String {
    format!("usage/acct-{account}/{window:06}")
}

/// A state as the history shows it: `{slots: {writer: [batch, total]}, floors: {writer: n}}`.
pub fn state_json(counter: &Counter) -> Value {
    let slots: Map<String, Value> = counter
        .slots
        .iter()
        .map(|(writer, slot)| (writer.clone(), json!([slot.batch, slot.total])))
        .collect();
    json!({ "slots": slots, "floors": counter.floors })
}

fn poisson_wait(rng: &mut SeededRng, per_s: f64) -> Duration {
    let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
    Duration::from_micros(((-uniform.ln() / per_s * 1e6) as u64).max(1000))
}

fn record_error(history: &History, process: u64, f: &str, value: Value, error: StoreError) {
    let f = f.to_string();
    match error {
        StoreError::Refused(error) => history.record(EventKind::Fail { process, f, value, error }),
        StoreError::Unknown { reason, .. } => {
            history.record(EventKind::Info { process, f, value, error: reason })
        }
    };
}

/// One usage shipper: flushes at Poisson times until `until_us` of history time, and reads
/// back a key it just flushed with probability `read_after_write`.
pub async fn writer(
    process: u64,
    writer_id: String,
    workload: StoreWorkload,
    mut client: StoreClient,
    history: History,
    mut rng: SeededRng,
    until_us: u64,
) {
    let mut writer = Writer::new(&writer_id);
    loop {
        tokio::time::sleep(poisson_wait(&mut rng, workload.flushes_per_s)).await;
        let now_us = history.now_us();
        if now_us >= until_us {
            return;
        }
        let window = now_us / 1000 / workload.window_ms;
        let keys = rng.random_range(1..=workload.keys_per_flush_max);
        let increments: Vec<(String, u64)> = (0..keys)
            .map(|_| {
                let account = rng.random_range(0..workload.accounts);
                (usage_key(account, window), rng.random_range(1..=workload.increment_max))
            })
            .collect();
        let batch = writer.stage(&increments);
        let outcomes = flush(process, &writer_id, &mut client, &mut writer, &batch, &history).await;
        // Closed windows (two behind) are done with once acknowledged.
        for entry in &batch.entries {
            let entry_window: u64 =
                entry.key.rsplit('/').next().and_then(|w| w.parse().ok()).unwrap_or(window);
            if entry_window + 2 <= window {
                writer.forget(&entry.key);
            }
        }
        if rng.random_bool(workload.read_after_write) {
            // Half the time a key this flush just wrote, else any key the shipper has an
            // acknowledged total for (one written on the other side of a healed partition).
            let candidates: Vec<String> = if rng.random_bool(0.5) {
                batch
                    .entries
                    .iter()
                    .zip(&outcomes)
                    .filter(|(entry, outcome)| entry.increment > 0 && outcome.is_ok())
                    .map(|(entry, _)| entry.key.clone())
                    .collect()
            } else {
                writer.acknowledged_keys().map(str::to_string).collect()
            };
            if !candidates.is_empty() {
                let key = candidates[rng.random_range(0..candidates.len())].clone();
                read(process, &key, &mut client, &history).await;
            }
        }
    }
}

/// Sends a staged batch and records it as one `flush` operation.
async fn flush(
    process: u64,
    writer_id: &str,
    client: &mut StoreClient,
    writer: &mut Writer,
    batch: &Batch,
    history: &History,
) -> Vec<Result<Written, StoreError>> {
    let entries: Vec<Value> = batch
        .entries
        .iter()
        .map(|entry| json!([entry.key, entry.increment, entry.slot.batch, entry.slot.total]))
        .collect();
    let invoked = json!({ "writer": writer_id, "batch": batch.id, "entries": entries });
    history.record(EventKind::Invoke { process, f: "flush".into(), value: invoked.clone() });
    let outcomes = client.send(writer, batch).await;
    let acked: Vec<&String> = batch
        .entries
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(entry, _)| &entry.key)
        .collect();
    let hinted: u32 = outcomes.iter().flatten().map(|written| written.hinted).sum();
    // Per key, so the durability check knows which acknowledged totals leaned on hints.
    let hinted_keys: BTreeMap<&String, u32> = batch
        .entries
        .iter()
        .zip(&outcomes)
        .filter_map(|(entry, outcome)| Some((&entry.key, outcome.as_ref().ok()?.hinted)))
        .filter(|(_, hinted)| *hinted > 0)
        .collect();
    let mut value = invoked;
    value["hinted_keys"] = json!(hinted_keys);
    if acked.len() == batch.entries.len() {
        value["hinted"] = json!(hinted);
        history.record(EventKind::Ok { process, f: "flush".into(), value });
        return outcomes;
    }
    value["acked"] = json!(acked);
    value["hinted"] = json!(hinted);
    let errors: Vec<String> = outcomes
        .iter()
        .filter_map(|outcome| outcome.as_ref().err())
        .map(|e| e.to_string())
        .collect();
    let refused_only = acked.is_empty()
        && outcomes.iter().all(|outcome| matches!(outcome, Err(StoreError::Refused(_))));
    let error = errors.first().cloned().unwrap_or_default();
    let f = "flush".to_string();
    if refused_only {
        history.record(EventKind::Fail { process, f, value, error });
    } else {
        history.record(EventKind::Info { process, f, value, error });
    }
    outcomes
}

/// Reads `key` and records it.
async fn read(process: u64, key: &str, client: &mut StoreClient, history: &History) {
    let invoked = json!({ "key": key });
    history.record(EventKind::Invoke { process, f: "read".into(), value: invoked.clone() });
    match client.read(key).await {
        Ok(answer) => {
            let (value, state) = match &answer.counter {
                Some(counter) => (counter.value(), state_json(counter)),
                None => (0, json!({ "slots": null, "floors": {} })),
            };
            let value = json!({
                "key": key,
                "value": value,
                "slots": state["slots"],
                "floors": state["floors"],
                "answers": answer.answers,
                "hinted": answer.hinted,
            });
            history.record(EventKind::Ok { process, f: "read".into(), value });
        }
        Err(error) => record_error(history, process, "read", invoked, error),
    }
}

/// One reader: reads a key of the current or the previous window at Poisson times.
pub async fn reader(
    process: u64,
    workload: StoreWorkload,
    mut client: StoreClient,
    history: History,
    mut rng: SeededRng,
    until_us: u64,
) {
    loop {
        tokio::time::sleep(poisson_wait(&mut rng, workload.reads_per_s)).await;
        let now_us = history.now_us();
        if now_us >= until_us {
            return;
        }
        let window = (now_us / 1000 / workload.window_ms).saturating_sub(rng.random_range(0..=1));
        let key = usage_key(rng.random_range(0..workload.accounts), window);
        read(process, &key, &mut client, &history).await;
    }
}

/// One node's dump as the monitor sees it: home key → digest, and hinted keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DumpView {
    pub home: BTreeMap<String, u64>,
    pub hinted: BTreeSet<String>,
}

impl DumpView {
    fn of(dump: &Dump) -> DumpView {
        DumpView {
            home: dump.home.iter().map(|(key, digest, _)| (key.clone(), *digest)).collect(),
            hinted: dump.hinted.iter().map(|(_, key, _)| key.clone()).collect(),
        }
    }
}

/// From the heal on: dumps every node every `convergence_poll_ms`; once `writers_done` is
/// set, stops at the first round (begun after that) in which every key's home replicas agree
/// and no hint is left, or when the bound has passed since.
pub async fn monitor(
    process: u64,
    workload: StoreWorkload,
    client: StoreClient,
    nodes: Vec<String>,
    history: History,
    bound_ms: u64,
    writers_done: Arc<AtomicBool>,
) -> StoreClient {
    let poll = Duration::from_millis(workload.convergence_poll_ms);
    let mut done_at_us: Option<u64> = None;
    let mut round = 0u64;
    loop {
        if done_at_us.is_none() && writers_done.load(Ordering::Acquire) {
            done_at_us = Some(history.now_us());
        }
        round += 1;
        let mut views = BTreeMap::new();
        for node in &nodes {
            let invoked = json!({ "node": node, "round": round });
            history.record(EventKind::Invoke { process, f: "dump".into(), value: invoked.clone() });
            match client.dump(node, false).await {
                Ok(dump) => {
                    let view = DumpView::of(&dump);
                    let home: Map<String, Value> = view
                        .home
                        .iter()
                        .map(|(key, digest)| (key.clone(), json!(format!("{digest:016x}"))))
                        .collect();
                    let value = json!({ "node": node, "round": round, "home": home, "hinted": view.hinted });
                    history.record(EventKind::Ok { process, f: "dump".into(), value });
                    views.insert(node.clone(), view);
                }
                Err(error) => record_error(&history, process, "dump", invoked, error),
            }
        }
        if let Some(done_at_us) = done_at_us {
            let agreed = views.len() == nodes.len()
                && crate::store::check::disagreeing_keys(client.ring(), &views).is_empty();
            if agreed || history.now_us() >= done_at_us + bound_ms * 1000 {
                return client;
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// Each node's final dump with full states. Every node not yet dumped is asked once per
/// round, until all have answered or the bound passes: a node that never answers (one that
/// stopped itself on a corrupt disk) does not keep the others from being dumped.
pub async fn final_dumps(
    process: u64,
    workload: StoreWorkload,
    client: StoreClient,
    nodes: Vec<String>,
    history: History,
    bound_ms: u64,
) {
    let poll = Duration::from_millis(workload.convergence_poll_ms);
    let final_deadline_us = history.now_us() + bound_ms * 1000;
    let mut pending: Vec<&String> = nodes.iter().collect();
    while !pending.is_empty() && history.now_us() < final_deadline_us {
        let mut unanswered = Vec::new();
        for node in pending {
            let invoked = json!({ "node": node });
            history.record(EventKind::Invoke {
                process,
                f: "final_dump".into(),
                value: invoked.clone(),
            });
            match client.dump(node, true).await {
                Ok(dump) => {
                    let home: Map<String, Value> = dump
                        .home
                        .iter()
                        .filter_map(|(key, _, state)| {
                            Some((key.clone(), state_json(state.as_ref()?)))
                        })
                        .collect();
                    let hinted: Vec<Value> = dump
                        .hinted
                        .iter()
                        .filter_map(|(home, key, state)| {
                            Some(json!([home, key, state_json(state.as_ref()?)]))
                        })
                        .collect();
                    let value = json!({ "node": node, "home": home, "hinted": hinted });
                    history.record(EventKind::Ok { process, f: "final_dump".into(), value });
                }
                Err(error) => {
                    record_error(&history, process, "final_dump", invoked, error);
                    unanswered.push(node);
                }
            }
        }
        pending = unanswered;
        if !pending.is_empty() {
            tokio::time::sleep(poll).await;
        }
    }
}
