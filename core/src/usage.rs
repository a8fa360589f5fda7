//! Usage tracking on the API servers: every new job is counted locally, per account per time
//! window, and shipped in batches to the usage store ([`crate::store`]) for billing.
//!
//! - **Counting.** An API server counts a request when it answers `202` for a new job (a
//!   duplicate upload is not counted again). The count goes to key
//!   `usage/{account}/{window}`, `window` being the start (ms, 13 digits) of the
//!   `window_ms`-long window the server's clock is in. Windows never go back on one server:
//!   a clock that jumps back keeps counting into the latest window, so a key whose window has
//!   closed is never counted into again and can be forgotten once acknowledged.
//! - **Shipping.** Every `flush_interval_ms` the open counts become one batch of a
//!   [`Writer`] (its id names the server and the incarnation that started the writer): the
//!   batch carries each changed key's running total, and keys not yet acknowledged ride along
//!   until they are. A retried or repeated flush carries totals, never increments, so the
//!   store never counts it twice.
//! - **The log** (knob `log`, on by default): each count is appended to `usage.log` on the
//!   disk seam and fsynced (grouped: one fsync covers every count appended before it)
//!   *before* the `202` is answered. A restarted server rebuilds its running totals from the
//!   log and goes on as the same writer, so a crash loses nothing counted. Without the log a
//!   restarted server starts a new writer from zero and the counts it had not shipped are
//!   lost: the checker measures how many per crash. Every `snapshot_every` records the
//!   totals are written to `usage.snapshot` and the log starts over; a crash in between
//!   replays the old log over the new snapshot, harmless because records carry totals, merged
//!   by maximum.
//!
//! History events (internal): `usage_started` (writer, how it recovered), `usage_counted`
//! (account, key, writer, job, whether it was logged), `usage_flushed` (batch, keys written,
//! the totals acknowledged), `usage_log_lost` (unreadable at a restart: a new writer starts)
//! and `usage_log_failed` (the log failed: the server refuses new jobs; a failed append or
//! fsync ends the process, as a database stops on a failed fsync, and the restart recovers
//! what is durable).
//!
//! **Invariant:** with the log on, a count is durable before the request it counts is
//! answered; a writer's totals never decrease, and a writer id is never reused with totals
//! lower than it sent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::history::Recorder;
use crate::node::{exit_on_write_failure, KnobSettings, NodeContext};
use crate::seams::clock::Clock;
use crate::seams::disk::{Disk, DiskError};
use crate::store::client::{ClientOptions, StoreClient, Writer};
use crate::store::counter::Slot;

/// Where usage keys start; billing scans from here.
pub const KEY_PREFIX: &str = "usage/";
/// The first key past every usage key (`'/' + 1`).
pub const KEY_END: &str = "usage0";
/// The usage log and its snapshot on the API server's disk.
pub const LOG_FILE: &str = "usage.log";
pub const SNAPSHOT_FILE: &str = "usage.snapshot";

/// Settings under the scenario's `usage` knob. API servers ship usage when the cluster has
/// store nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageSettings {
    /// How often counts are shipped to the store.
    pub flush_interval_ms: u64,
    /// The length of a usage window: one key per account per window.
    pub window_ms: u64,
    /// Log every count durably before answering (a crash then loses nothing).
    pub log: bool,
    /// Log records between snapshots.
    pub snapshot_every: usize,
    /// Tries per key per flush (over different coordinators).
    pub store_attempts: u32,
}

impl Default for UsageSettings {
    fn default() -> Self {
        UsageSettings {
            flush_interval_ms: 1_000,
            window_ms: 10_000,
            log: true,
            snapshot_every: 1_024,
            store_attempts: 2,
        }
    }
}

impl KnobSettings for UsageSettings {
    const KNOB: &'static str = "usage";

    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if !(10..=3_600_000).contains(&self.flush_interval_ms) {
            return fail("flush_interval_ms", "must be between 10 and 3600000");
        }
        if !(1_000..=86_400_000).contains(&self.window_ms) {
            return fail("window_ms", "must be between 1000 and 86400000");
        }
        if !(1..=1_000_000).contains(&self.snapshot_every) {
            return fail("snapshot_every", "must be between 1 and 1000000");
        }
        if !(1..=10).contains(&self.store_attempts) {
            return fail("store_attempts", "must be between 1 and 10");
        }
        Ok(())
    }
}

/// The usage key of `account` in the window starting at `window_ms`.
pub fn usage_key(account: &str, window_ms: u64) -> String {
    format!("{KEY_PREFIX}{account}/{window_ms:013}")
}

/// A usage key's account and window start, or `None` for a key of another shape.
pub fn parse_key(key: &str) -> Option<(&str, u64)> {
    let (account, window) = key.strip_prefix(KEY_PREFIX)?.rsplit_once('/')?;
    if account.is_empty() || window.len() != 13 || !window.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((account, window.parse().ok()?))
}

/// One record of the usage log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum LogRecord {
    /// The writer the log belongs to: the first record of a log started afresh.
    Writer { id: String },
    /// `key`'s running total became `slot`.
    Counted { key: String, slot: Slot },
}

/// The totals at one moment; the log after it holds only later counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    writer: String,
    latest_window: u64,
    slots: Vec<(String, Slot)>,
}

/// What the log held.
#[derive(Debug, Default)]
struct Recovered {
    writer: Option<String>,
    latest_window: u64,
    slots: BTreeMap<String, Slot>,
    records: usize,
    torn_tail_bytes: usize,
}

/// Reads the snapshot and the log. `Ok(writer: None)` when there is neither.
async fn recover(disk: &Disk, recorder: &Recorder) -> Result<Recovered, String> {
    let write_failed = |error: DiskError| {
        exit_on_write_failure(recorder, &error);
        error.to_string()
    };
    let decode_error = |file: &str, error: postcard::Error| format!("{file}: {error}");
    let mut found = Recovered::default();
    let snapshots = disk.read(SNAPSHOT_FILE).await.map_err(|e| e.to_string())?;
    if let Some(bytes) = snapshots.records.last() {
        let snapshot: Snapshot =
            postcard::from_bytes(bytes).map_err(|e| decode_error(SNAPSHOT_FILE, e))?;
        found.writer = Some(snapshot.writer);
        found.latest_window = snapshot.latest_window;
        found.slots = snapshot.slots.into_iter().collect();
    }
    let log = disk.read(LOG_FILE).await.map_err(|e| e.to_string())?;
    for bytes in &log.records {
        match postcard::from_bytes(bytes).map_err(|e| decode_error(LOG_FILE, e))? {
            LogRecord::Writer { id } => match &found.writer {
                Some(known) if *known != id => {
                    return Err(format!("{LOG_FILE} belongs to {id}, the snapshot to {known}"))
                }
                _ => found.writer = Some(id),
            },
            LogRecord::Counted { key, slot } => {
                if let Some((_, window)) = parse_key(&key) {
                    found.latest_window = found.latest_window.max(window);
                }
                let mine = found.slots.entry(key).or_default();
                *mine = mine.join(slot);
            }
        }
    }
    if found.writer.is_none() && !found.slots.is_empty() {
        return Err(format!("{LOG_FILE} counts with no writer record"));
    }
    found.records = log.records.len();
    found.torn_tail_bytes = log.torn_tail_bytes;
    if log.torn_tail_bytes > 0 {
        // A torn record was never fsynced, so never answered: cut it off before appending.
        disk.rewrite(LOG_FILE, &log.records).await.map_err(write_failed)?;
        disk.fsync(LOG_FILE).await.map_err(write_failed)?;
    }
    Ok(found)
}

fn encode(record: &LogRecord) -> Vec<u8> {
    postcard::to_stdvec(record).expect("postcard encoding of a usage log record")
}

/// The writer's totals and the latest window counted into.
struct State {
    /// Totals of the counts made durable (all counts, with the log off): what is shipped.
    writer: Writer,
    /// With the log on, per key the total the last appended record took (durable or not).
    logged: BTreeMap<String, u64>,
    latest_window: u64,
}

impl State {
    /// The key of a count for `account` now: in the latest window, never an earlier one.
    fn key_for(&mut self, account: &str, now_window: u64) -> String {
        self.latest_window = self.latest_window.max(now_window);
        usage_key(account, self.latest_window)
    }
}

/// The log's appends since the last snapshot.
struct Tail {
    records: usize,
}

/// One API server's usage: its counts, its log, its shipper.
pub struct Usage {
    settings: UsageSettings,
    writer_id: String,
    clock: Clock,
    recorder: Recorder,
    /// The log's disk, `None` with the log off.
    log: Option<Disk>,
    /// Set once an append or an fsync of the log failed.
    failed: std::sync::atomic::AtomicBool,
    state: std::sync::Mutex<State>,
    /// Held while appending (and snapshotting): records reach the log in count order.
    appending: tokio::sync::Mutex<Tail>,
    /// Held while fsyncing: one fsync at a time, and whoever waits finds it done (a group
    /// commit).
    syncing: tokio::sync::Mutex<()>,
    /// Records appended, and made durable, since the server started.
    appended: AtomicU64,
    synced: AtomicU64,
}

impl Usage {
    /// The usage of the API server `context`: with the log on, its writer recovered from the
    /// disk (or started afresh when there is nothing to recover, or the log cannot be read).
    pub async fn start(context: &NodeContext, settings: UsageSettings) -> Arc<Usage> {
        let recorder = context.recorder.clone();
        let fresh_id = crate::store::writer_id(context, 0);
        let mut recovered = Recovered::default();
        let mut log_ready = false;
        let mut how = "fresh";
        if settings.log {
            match recover(&context.disk, &recorder).await {
                Ok(found) if found.writer.is_some() => {
                    how = "recovered";
                    recovered = found;
                    log_ready = true;
                }
                outcome => {
                    if let Err(reason) = &outcome {
                        how = "log_lost";
                        recorder.record("usage_log_lost", json!({ "reason": reason }));
                    }
                    match start_log(&context.disk, &fresh_id, &recorder).await {
                        Ok(()) => log_ready = true,
                        Err(reason) => {
                            recorder.record("usage_log_failed", json!({ "reason": reason }))
                        }
                    }
                }
            }
        }
        let writer_id = recovered.writer.clone().unwrap_or(fresh_id);
        recorder.record(
            "usage_started",
            json!({
                "writer": writer_id,
                "incarnation": context.incarnation,
                "log": settings.log,
                "how": how,
                "keys": recovered.slots.len(),
                "records": recovered.records,
                "torn_tail_bytes": recovered.torn_tail_bytes,
            }),
        );
        let logged = recovered.slots.iter().map(|(key, slot)| (key.clone(), slot.total)).collect();
        let writer = Writer::restore(&writer_id, recovered.slots);
        Arc::new(Usage {
            state: std::sync::Mutex::new(State {
                writer,
                logged,
                latest_window: recovered.latest_window,
            }),
            appending: tokio::sync::Mutex::new(Tail { records: recovered.records }),
            syncing: tokio::sync::Mutex::new(()),
            appended: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            // A log that could not even be started has failed.
            failed: std::sync::atomic::AtomicBool::new(settings.log && !log_ready),
            log: settings.log.then(|| context.disk.clone()),
            settings,
            writer_id,
            clock: context.clock.clone(),
            recorder,
        })
    }

    pub fn settings(&self) -> &UsageSettings {
        &self.settings
    }

    /// Whether the log failed: the server then refuses new jobs (it cannot count them
    /// durably) until a restart recovers from what the log holds.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Counts one new job of `account`. With the log on, the count is appended, and it
    /// returns once an fsync covered it; only then does the count join the totals shipped,
    /// so the store never holds a total a restart could not recover. An error: the log
    /// failed, the count may or may not be durable.
    ///
    /// The count runs in a task of its own: a request abandoned half-way (its client gone)
    /// must not leave a total taken in the log but never applied, or every later total of
    /// the key would be shipped one short.
    pub async fn count(self: &Arc<Self>, account: &str, job: u64) -> Result<(), String> {
        let (usage, account) = (self.clone(), account.to_string());
        match tokio::spawn(async move { usage.count_to_the_end(&account, job).await }).await {
            Ok(outcome) => outcome,
            Err(error) => Err(format!("the count did not finish: {error}")),
        }
    }

    async fn count_to_the_end(&self, account: &str, job: u64) -> Result<(), String> {
        let window_ms = self.settings.window_ms;
        let now_window = (self.clock.wall_ms().max(0) as u64 / window_ms) * window_ms;
        let Some(disk) = &self.log else {
            let (key, slot) = {
                let mut state = self.state.lock().expect("usage state lock");
                let key = state.key_for(account, now_window);
                let slot = state.writer.count(&key, 1);
                (key, slot)
            };
            self.counted(account, &key, slot.total, job, false);
            return Ok(());
        };
        if self.failed() {
            return Err("the usage log failed".into());
        }
        let (key, seq) = {
            let mut tail = self.appending.lock().await;
            let (key, slot) = {
                let mut state = self.state.lock().expect("usage state lock");
                let key = state.key_for(account, now_window);
                let total = state.logged.get(&key).copied().unwrap_or(0) + 1;
                state.logged.insert(key.clone(), total);
                (key, Slot { batch: state.writer.next_batch(), total })
            };
            let record = encode(&LogRecord::Counted { key: key.clone(), slot });
            if let Err(error) = disk.append(LOG_FILE, &record).await {
                return Err(self.fail(&error));
            }
            tail.records += 1;
            self.counted(account, &key, slot.total, job, true);
            (key, self.appended.fetch_add(1, Ordering::AcqRel) + 1)
        };
        self.sync_through(disk, seq).await?;
        self.state.lock().expect("usage state lock").writer.count(&key, 1);
        Ok(())
    }

    /// Records a count: its key and the writer's running total it took.
    fn counted(&self, account: &str, key: &str, total: u64, job: u64, logged: bool) {
        self.recorder.record(
            "usage_counted",
            json!({ "account": account, "key": key, "writer": self.writer_id, "total": total,
                    "job": job, "logged": logged }),
        );
    }

    /// The log failed: new jobs are refused from now on. A failed write or fsync ends the
    /// process instead (see [`exit_on_write_failure`]): the counts the failed fsync covered
    /// may be gone while later records' running totals would include them.
    fn fail(&self, error: &DiskError) -> String {
        if !self.failed.swap(true, Ordering::AcqRel) {
            self.recorder.record("usage_log_failed", json!({ "reason": error.to_string() }));
        }
        exit_on_write_failure(&self.recorder, error);
        format!("the usage log failed: {error}")
    }

    /// Makes the log durable through append number `seq`: one fsync serves every append
    /// made before it began (a group commit).
    async fn sync_through(&self, disk: &Disk, seq: u64) -> Result<(), String> {
        let _syncing = self.syncing.lock().await;
        if self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        if self.failed() {
            return Err("the usage log failed".into());
        }
        let upto = self.appended.load(Ordering::Acquire);
        match disk.fsync(LOG_FILE).await {
            Ok(()) => {
                self.synced.fetch_max(upto, Ordering::AcqRel);
                Ok(())
            }
            Err(error) => Err(self.fail(&error)),
        }
    }

    /// Ships the open batch and every unacknowledged key; forgets acknowledged keys of
    /// closed windows; snapshots a long log.
    pub async fn flush(&self, client: &mut StoreClient) {
        let batch = {
            let mut state = self.state.lock().expect("usage state lock");
            if state.writer.open_keys() == 0 && state.writer.unacknowledged() == 0 {
                return;
            }
            state.writer.stage(&[])
        };
        let outcomes = client.send_as(&self.writer_id, &batch).await;
        let mut acknowledged = BTreeMap::new();
        let mut failed = 0usize;
        {
            let mut state = self.state.lock().expect("usage state lock");
            for (entry, outcome) in batch.entries.iter().zip(&outcomes) {
                match outcome {
                    Ok(_) => {
                        state.writer.acknowledge(&entry.key, entry.slot);
                        acknowledged.insert(entry.key.clone(), entry.slot.total);
                    }
                    Err(_) => failed += 1,
                }
            }
            let latest = state.latest_window;
            let closed: Vec<String> = state
                .writer
                .acknowledged_keys()
                .filter(|key| parse_key(key).is_some_and(|(_, window)| window < latest))
                .map(str::to_string)
                .collect();
            for key in closed {
                // A count appended but not yet durable keeps its key.
                let in_flight = state
                    .logged
                    .get(&key)
                    .is_some_and(|total| Some(*total) != state.writer.slot(&key).map(|s| s.total));
                if !in_flight && state.writer.forget(&key) {
                    state.logged.remove(&key);
                }
            }
        }
        self.recorder.record(
            "usage_flushed",
            json!({
                "writer": self.writer_id,
                "batch": batch.id,
                "keys": batch.entries.len(),
                "increments": batch.entries.iter().map(|e| e.increment).sum::<u64>(),
                "failed": failed,
                "acknowledged": acknowledged,
            }),
        );
        if let Err(error) = self.maybe_snapshot().await {
            self.fail(&error);
        }
    }

    /// After `snapshot_every` log records: the totals to the snapshot, fsynced, then a new
    /// log. Appends wait meanwhile, so the snapshot holds every record of the old log.
    async fn maybe_snapshot(&self) -> Result<(), DiskError> {
        let Some(disk) = &self.log else { return Ok(()) };
        if self.failed() {
            return Ok(());
        }
        let mut tail = self.appending.lock().await;
        if tail.records < self.settings.snapshot_every {
            return Ok(());
        }
        let _syncing = self.syncing.lock().await;
        let snapshot = {
            let state = self.state.lock().expect("usage state lock");
            Snapshot {
                writer: self.writer_id.clone(),
                latest_window: state.latest_window,
                slots: state
                    .writer
                    .keys()
                    .filter_map(|key| state.writer.slot(key).map(|slot| (key.to_string(), slot)))
                    .collect(),
            }
        };
        let bytes = postcard::to_stdvec(&snapshot).expect("postcard encoding of a usage snapshot");
        disk.write(SNAPSHOT_FILE, &bytes).await?;
        disk.fsync(SNAPSHOT_FILE).await?;
        disk.remove(LOG_FILE).await?;
        tail.records = 0;
        // Everything appended is in the fsynced snapshot.
        self.synced.fetch_max(self.appended.load(Ordering::Acquire), Ordering::AcqRel);
        Ok(())
    }

    /// Ships every `flush_interval_ms`, for as long as the server runs.
    pub async fn ship_loop(self: Arc<Self>, mut client: StoreClient) {
        let period = Duration::from_millis(self.settings.flush_interval_ms);
        loop {
            self.clock.sleep(period).await;
            self.flush(&mut client).await;
        }
    }
}

/// Starts a new log for writer `id`: the old snapshot and log removed, the writer record
/// fsynced.
async fn start_log(disk: &Disk, id: &str, recorder: &Recorder) -> Result<(), String> {
    let step = |error: DiskError| {
        exit_on_write_failure(recorder, &error);
        error.to_string()
    };
    disk.remove(SNAPSHOT_FILE).await.map_err(step)?;
    disk.remove(LOG_FILE).await.map_err(step)?;
    disk.append(LOG_FILE, &encode(&LogRecord::Writer { id: id.to_string() }))
        .await
        .map_err(step)?;
    disk.fsync(LOG_FILE).await.map_err(step)
}

/// The usage of an API server, shipping to the cluster's store: `None` when the cluster has
/// no store nodes. Bad settings are an error naming the field.
pub async fn start(context: &NodeContext) -> Result<Option<Arc<Usage>>, String> {
    if context.peers(crate::store::ROLE).is_empty() {
        return Ok(None);
    }
    let settings = UsageSettings::from_knobs_line(&context.knobs)?;
    let options = ClientOptions { attempts: settings.store_attempts, ..ClientOptions::default() };
    let mut clients = crate::store::clients(context, &options, 1)?;
    let usage = Usage::start(context, settings).await;
    let client = clients.pop().expect("one client asked for");
    tokio::spawn(usage.clone().ship_loop(client));
    Ok(Some(usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;
    use crate::seams::disk::{DiskControl, DiskTiming, SimDisk};
    use crate::seams::net::{AddressBook, LinkFaults};
    use crate::seams::rng::rng_for;

    fn context(disk: &Disk, history: &History, incarnation: u64, log: bool) -> NodeContext {
        NodeContext {
            name: "api-1".into(),
            role: crate::api::ROLE.into(),
            book: AddressBook::default(),
            cluster: BTreeMap::new(),
            disk: disk.clone(),
            clock: Clock::system(),
            link_faults: LinkFaults::default(),
            recorder: Recorder::new("api-1", history.clone()),
            run_seed: 7,
            incarnation,
            knobs: json!({ "usage": { "log": log, "snapshot_every": 3 } }),
        }
    }

    fn sim_disk() -> (Disk, DiskControl) {
        let (disk, control) = SimDisk::new(DiskTiming::default(), rng_for(7, "usage-disk"));
        (Disk::Sim(disk), control)
    }

    /// The `usage_counted` totals recorded for `account`, in order.
    fn totals(history: &History, account: &str) -> Vec<u64> {
        history.scan(|events| {
            events
                .iter()
                .filter_map(|event| match &event.kind {
                    crate::history::EventKind::Internal { what, detail, .. }
                        if what == "usage_counted" && detail["account"] == account =>
                    {
                        detail["total"].as_u64()
                    }
                    _ => None,
                })
                .collect()
        })
    }

    fn started(history: &History) -> Vec<serde_json::Value> {
        history.scan(|events| {
            events
                .iter()
                .filter_map(|event| match &event.kind {
                    crate::history::EventKind::Internal { what, detail, .. }
                        if what == "usage_started" =>
                    {
                        Some(detail.clone())
                    }
                    _ => None,
                })
                .collect()
        })
    }

    #[madsim::test]
    async fn with_the_log_a_restart_goes_on_as_the_same_writer_from_its_totals() {
        let (disk, control) = sim_disk();
        let history = History::new();
        let settings = |context: &NodeContext| UsageSettings::from_knobs_line(&context.knobs);
        let first = context(&disk, &history, 0, true);
        let usage = Usage::start(&first, settings(&first).unwrap()).await;
        for job in 1..=4 {
            usage.count("acct-a", job).await.unwrap();
        }
        usage.count("acct-b", 5).await.unwrap();
        // Four records: a snapshot (every 3) happens at the next flush; force one directly.
        usage.maybe_snapshot().await.unwrap();
        assert!(disk.list().await.unwrap().contains(&SNAPSHOT_FILE.to_string()));
        usage.count("acct-a", 6).await.unwrap();
        drop(usage);
        control.crash();
        let second = context(&disk, &history, 1, true);
        let usage = Usage::start(&second, settings(&second).unwrap()).await;
        usage.count("acct-a", 7).await.unwrap();
        usage.count("acct-b", 8).await.unwrap();
        assert_eq!(totals(&history, "acct-a"), [1, 2, 3, 4, 5, 6]);
        assert_eq!(totals(&history, "acct-b"), [1, 2]);
        let started = started(&history);
        assert_eq!(started[0]["writer"], "api-1#0/0");
        assert_eq!(started[1]["writer"], "api-1#0/0", "the same writer: {started:?}");
        assert_eq!(started[1]["how"], "recovered");
        assert_eq!(started[1]["keys"], 2);
    }

    #[madsim::test]
    async fn without_the_log_a_restart_is_a_new_writer_from_zero() {
        let (disk, control) = sim_disk();
        let history = History::new();
        for incarnation in 0..2 {
            let context = context(&disk, &history, incarnation, false);
            let settings = UsageSettings::from_knobs_line(&context.knobs).unwrap();
            let usage = Usage::start(&context, settings).await;
            usage.count("acct-a", incarnation + 1).await.unwrap();
            control.crash();
        }
        assert_eq!(totals(&history, "acct-a"), [1, 1]);
        let writers: Vec<_> = started(&history).iter().map(|s| s["writer"].clone()).collect();
        assert_eq!(writers, [json!("api-1#0/0"), json!("api-1#1/0")]);
        assert!(disk.list().await.unwrap().is_empty(), "nothing written without the log");
    }

    #[madsim::test]
    async fn an_unreadable_log_starts_a_new_writer_and_says_so() {
        let (disk, control) = sim_disk();
        let history = History::new();
        let first = context(&disk, &history, 0, true);
        let usage =
            Usage::start(&first, UsageSettings::from_knobs_line(&first.knobs).unwrap()).await;
        usage.count("acct-a", 1).await.unwrap();
        assert!(control.corrupt(Some(LOG_FILE)).is_some());
        let second = context(&disk, &history, 1, true);
        let usage =
            Usage::start(&second, UsageSettings::from_knobs_line(&second.knobs).unwrap()).await;
        usage.count("acct-a", 2).await.unwrap();
        let started = started(&history);
        assert_eq!(started[1]["how"], "log_lost");
        assert_eq!(started[1]["writer"], "api-1#1/0");
        assert_eq!(totals(&history, "acct-a"), [1, 1]);
    }

    #[test]
    fn keys_name_the_account_and_the_window() {
        let key = usage_key("account-1", 1_700_000_000_000);
        assert_eq!(key, "usage/account-1/1700000000000");
        assert_eq!(parse_key(&key), Some(("account-1", 1_700_000_000_000)));
        assert_eq!(parse_key(&usage_key("a/b", 20_000)), Some(("a/b", 20_000)));
        assert_eq!(parse_key("usage/x/12"), None);
        assert_eq!(parse_key("usage//0000000000000"), None);
        assert_eq!(parse_key("other/x/0000000000000"), None);
        assert!(usage_key("zzz", u64::MAX / 2).as_str() < KEY_END);
    }

    #[test]
    fn settings_are_validated_with_the_field_named() {
        let read = |knob| UsageSettings::from_knobs_line(&json!({ "usage": knob }));
        assert_eq!(read(json!({})), Ok(UsageSettings::default()));
        assert_eq!(
            read(json!({"flush_interval_ms": 1})).unwrap_err(),
            "flush_interval_ms: must be between 10 and 3600000"
        );
        assert!(read(json!({"wal": true})).unwrap_err().contains("unknown field `wal`"));
    }
}
