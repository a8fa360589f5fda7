//! Billing: a batch job that turns the usage store's counts into per-account totals per
//! billing period, archives the records it billed to cold storage and removes them from the
//! store.
//!
//! One run of the job ([`Job::run`]), every `interval_ms` or when asked (`Run`):
//! - **map**: the usage key space (`usage/` to `usage0`) is cut into `map_tasks` key ranges
//!   by the first byte of the account; each task pages through its range with its own store
//!   client (`scan`, every key merged from R replicas), keeps the keys whose window has
//!   closed (ended `grace_ms` ago on the billing node's clock; every key with `close_all`),
//!   and sends them to the archive, which answers what each newly bills;
//! - **reduce**: the amounts are summed per account per billing period (`period_ms`, a
//!   multiple of the usage window);
//! - **clean up**: every archived key is deleted from the store with the state read (a floor:
//!   counts that arrived after the read stay and are billed by a later run).
//!
//! A run that fails part way (the store or the archive unreachable) is simply run again:
//! the archive bills each writer's total only beyond what it already archived
//! ([`archive`]), so re-archiving a key bills nothing twice, and a delete repeated is the
//! same floor. A count reaches the bill exactly once, however often runs fail.
//!
//! History events: `billing_run` (run, keys read, archived, deleted, the amounts per account
//! per period, complete or why not).
//!
//! **Invariant:** billing writes nothing to the store but floors of states it read, and only
//! after the archive made those states durable.

pub mod archive;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::history::Recorder;
use crate::node::{KnobSettings, NodeContext};
use crate::seams::clock::Clock;
use crate::seams::net::{Incoming, Transport};
use crate::store::client::{ClientOptions, StoreClient};
use crate::store::counter::Counter;
use crate::usage::{self, UsageSettings};

/// The role name of the billing node.
pub const ROLE: &str = "billing";
/// Keys one scan page asks for.
pub const PAGE_KEYS: u32 = 256;
/// Most map tasks.
pub const MAP_TASKS_MAX: usize = 64;

/// Settings under the scenario's `billing` knob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingSettings {
    /// How often the job runs.
    pub interval_ms: u64,
    /// The billing period: totals are per account per period. A multiple of the usage
    /// window.
    pub period_ms: u64,
    /// How long after its end a window is billed (late flushes still arrive meanwhile).
    pub grace_ms: u64,
    /// Key ranges scanned at once.
    pub map_tasks: usize,
    /// How long billing waits for the archive.
    pub archive_timeout_ms: u64,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            interval_ms: 10_000,
            period_ms: 60_000,
            grace_ms: 5_000,
            map_tasks: 4,
            archive_timeout_ms: 2_000,
        }
    }
}

impl KnobSettings for BillingSettings {
    const KNOB: &'static str = "billing";

    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if !(100..=86_400_000).contains(&self.interval_ms) {
            return fail("interval_ms", "must be between 100 and 86400000");
        }
        if !(1_000..=31_622_400_000).contains(&self.period_ms) {
            return fail("period_ms", "must be between 1000 and 31622400000 (a year)");
        }
        if self.grace_ms > 86_400_000 {
            return fail("grace_ms", "must be at most 86400000");
        }
        if !(1..=MAP_TASKS_MAX).contains(&self.map_tasks) {
            return fail("map_tasks", &format!("must be between 1 and {MAP_TASKS_MAX}"));
        }
        if !(10..=600_000).contains(&self.archive_timeout_ms) {
            return fail("archive_timeout_ms", "must be between 10 and 600000");
        }
        Ok(())
    }
}

impl BillingSettings {
    /// Checks the settings against the usage window: a period holds whole windows.
    pub fn validate_with(&self, usage: &UsageSettings) -> Result<(), (String, String)> {
        self.validate()?;
        if !self.period_ms.is_multiple_of(usage.window_ms) {
            let message = format!("must be a multiple of usage.window_ms ({})", usage.window_ms);
            return Err(("period_ms".to_string(), message));
        }
        Ok(())
    }

    /// The start of the billing period a window starting at `window_ms` belongs to.
    pub fn period_of(&self, window_ms: u64) -> u64 {
        window_ms / self.period_ms * self.period_ms
    }
}

/// One record billing hands the archive: a usage key, its billing period and the state read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawRecord {
    pub key: String,
    pub period: u64,
    pub counter: Counter,
}

/// Per account, per period start: an amount.
pub type Amounts = BTreeMap<String, BTreeMap<u64, u64>>;

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run: u64,
    /// Keys the scans returned, and those billed (their window closed).
    pub keys_read: u64,
    pub keys_archived: u64,
    pub keys_deleted: u64,
    /// What this run newly billed.
    pub billed: Amounts,
    /// Every range scanned and archived, every archived key deleted.
    pub complete: bool,
    /// Always written, even empty: postcard, which carries this report, is not
    /// self-describing, so a field left out cannot be read back.
    pub errors: Vec<String>,
}

/// The archive's ledger: what it has billed, and each writer's archived total per key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub records: u64,
    pub billed: Amounts,
    /// (key, writer, total archived).
    pub archived: Vec<(String, String, u64)>,
}

/// Messages of the billing node and the archive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BillingMessage {
    /// To the archive: bill and keep these records.
    Archive {
        run: u64,
        records: Vec<RawRecord>,
    },
    /// Per record, the amount it newly billed; all of them durable.
    Archived {
        amounts: Vec<u64>,
    },
    /// To the archive: its ledger.
    Ledger,
    LedgerIs(Ledger),
    /// To the billing node: run now (`close_all`: bill open windows too, for a final bill).
    Run {
        close_all: bool,
    },
    Ran(RunReport),
    Failed {
        reason: String,
    },
}

/// The first key of each of `tasks` ranges that cover the usage keys, in order; range `i`
/// ends where range `i + 1` starts, the last at [`usage::KEY_END`]. Cut by the account's
/// first byte, evenly over the printable ASCII characters.
pub fn range_starts(tasks: usize) -> Vec<String> {
    assert!((1..=MAP_TASKS_MAX).contains(&tasks), "map tasks out of bounds");
    let (first, last) = (b'!' as usize, b'~' as usize + 1);
    let mut starts = vec![usage::KEY_PREFIX.to_string()];
    for task in 1..tasks {
        let byte = first + task * (last - first) / tasks;
        starts.push(format!("{}{}", usage::KEY_PREFIX, byte as u8 as char));
    }
    starts.dedup();
    starts
}

/// The billing job and what it needs.
pub struct Job {
    settings: BillingSettings,
    window_ms: u64,
    archive: String,
    transport: Transport<BillingMessage>,
    stores: tokio::sync::Mutex<Vec<StoreClient>>,
    clock: Clock,
    recorder: Recorder,
    runs: std::sync::atomic::AtomicU64,
    /// One run at a time.
    running: tokio::sync::Mutex<()>,
}

impl Job {
    /// Runs the job once: see the module comment.
    pub async fn run(&self, close_all: bool) -> RunReport {
        let _running = self.running.lock().await;
        let run = self.runs.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        let mut clients = std::mem::take(&mut *self.stores.lock().await);
        let now_ms = self.clock.wall_ms().max(0) as u64;
        let starts = range_starts(self.settings.map_tasks);
        let ends: Vec<&str> =
            starts.iter().skip(1).map(String::as_str).chain([usage::KEY_END]).collect();
        let maps = clients
            .iter_mut()
            .zip(starts.iter().zip(ends))
            .map(|(client, (start, end))| self.map(run, client, start, end, now_ms, close_all));
        let outcomes = futures::future::join_all(maps).await;
        let mut report = RunReport { run, complete: true, ..RunReport::default() };
        let mut archived = Vec::new();
        for outcome in outcomes {
            report.keys_read += outcome.keys_read;
            if let Some(error) = outcome.error {
                report.complete = false;
                report.errors.push(error);
            }
            // Reduce: per account per period.
            for (record, amount) in &outcome.archived {
                if let (Some((account, _)), true) = (usage::parse_key(&record.key), *amount > 0) {
                    *report
                        .billed
                        .entry(account.to_string())
                        .or_default()
                        .entry(record.period)
                        .or_default() += amount;
                }
            }
            archived.extend(outcome.archived.into_iter().map(|(record, _)| record));
        }
        report.keys_archived = archived.len() as u64;
        // Clean up: the archive holds them now.
        let client = &mut clients[0];
        for record in &archived {
            match client.delete(&record.key, &record.counter).await {
                Ok(_) => report.keys_deleted += 1,
                Err(error) => {
                    report.complete = false;
                    report.errors.push(format!("delete {}: {error}", record.key));
                }
            }
        }
        report.errors.truncate(8);
        *self.stores.lock().await = clients;
        self.recorder.record(
            "billing_run",
            json!({
                "run": run,
                "close_all": close_all,
                "keys_read": report.keys_read,
                "keys_archived": report.keys_archived,
                "keys_deleted": report.keys_deleted,
                "billed": report.billed,
                "complete": report.complete,
                "errors": report.errors,
            }),
        );
        report
    }

    /// One map task: the closed keys of `[start, end)`, archived page by page, with the
    /// amount each newly billed.
    async fn map(
        &self,
        run: u64,
        client: &mut StoreClient,
        start: &str,
        end: &str,
        now_ms: u64,
        close_all: bool,
    ) -> MapOutcome {
        let mut outcome = MapOutcome::default();
        let mut from = start.to_string();
        loop {
            let page = match client.scan(&from, Some(end), PAGE_KEYS).await {
                Ok(page) => page,
                Err(error) => {
                    outcome.error = Some(format!("scan from {from:?}: {error}"));
                    return outcome;
                }
            };
            outcome.keys_read += page.entries.len() as u64;
            let records: Vec<RawRecord> = page
                .entries
                .into_iter()
                .filter_map(|(key, counter)| {
                    let (_, window) = usage::parse_key(&key)?;
                    let closed = window + self.window_ms + self.settings.grace_ms <= now_ms;
                    (close_all || closed).then(|| RawRecord {
                        key,
                        period: self.settings.period_of(window),
                        counter,
                    })
                })
                .collect();
            if !records.is_empty() {
                let timeout = Duration::from_millis(self.settings.archive_timeout_ms);
                let request = BillingMessage::Archive { run, records: records.clone() };
                match self.transport.call(&self.archive, &request, timeout).await {
                    Ok(BillingMessage::Archived { amounts }) if amounts.len() == records.len() => {
                        outcome.archived.extend(records.into_iter().zip(amounts));
                    }
                    Ok(other) => {
                        outcome.error = Some(format!("archive answered {other:?}"));
                        return outcome;
                    }
                    Err(error) => {
                        outcome.error = Some(format!("archive: {error}"));
                        return outcome;
                    }
                }
            }
            match page.resume {
                Some(resume) => from = resume,
                None => return outcome,
            }
        }
    }
}

#[derive(Default)]
struct MapOutcome {
    keys_read: u64,
    archived: Vec<(RawRecord, u64)>,
    error: Option<String>,
}

/// Runs the billing node: the job every `interval_ms`, and on request.
pub async fn serve(context: NodeContext) {
    let recorder = context.recorder.clone();
    let stop = |reason: String| recorder.record("billing_stopped", json!({ "reason": reason }));
    let settings = match (
        BillingSettings::from_knobs_line(&context.knobs),
        UsageSettings::from_knobs_line(&context.knobs),
    ) {
        (Ok(settings), Ok(usage)) => match settings.validate_with(&usage) {
            Ok(()) => (settings, usage),
            Err((field, message)) => return stop(format!("billing.{field}: {message}")),
        },
        (Err(reason), _) | (_, Err(reason)) => return stop(reason),
    };
    let (settings, usage) = settings;
    let Some(archive) = context.peers(archive::ROLE).into_iter().next() else {
        return stop("the cluster has no archive node".into());
    };
    let stores =
        match crate::store::clients(&context, &ClientOptions::default(), settings.map_tasks) {
            Ok(stores) => stores,
            Err(reason) => return stop(reason),
        };
    let (transport, mut inbox) = match context.bind::<BillingMessage>().await {
        Ok(bound) => bound,
        Err(reason) => return stop(reason),
    };
    let job = Arc::new(Job {
        window_ms: usage.window_ms,
        archive,
        transport: transport.clone(),
        stores: tokio::sync::Mutex::new(stores),
        clock: context.clock.clone(),
        recorder: recorder.clone(),
        runs: std::sync::atomic::AtomicU64::new(0),
        running: tokio::sync::Mutex::new(()),
        settings,
    });
    let periodic = job.clone();
    tokio::spawn(async move {
        let period = Duration::from_millis(periodic.settings.interval_ms);
        loop {
            periodic.clock.sleep(period).await;
            periodic.run(false).await;
        }
    });
    while let Some(incoming) = inbox.recv().await {
        let (job, transport) = (job.clone(), transport.clone());
        tokio::spawn(async move { answer(&job, &transport, incoming).await });
    }
}

async fn answer(
    job: &Job,
    transport: &Transport<BillingMessage>,
    incoming: Incoming<BillingMessage>,
) {
    let reply = match &incoming.body {
        BillingMessage::Run { close_all } => BillingMessage::Ran(job.run(*close_all).await),
        other => {
            BillingMessage::Failed { reason: format!("the billing node does not take {other:?}") }
        }
    };
    if incoming.wants_reply() {
        let _ = transport.reply(&incoming, &reply).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the billing node answers crosses the transport in postcard: a report with no
    /// errors, and one with some, read back as written.
    #[test]
    fn run_reports_cross_the_wire() {
        for errors in [vec![], vec!["range 2: timeout".to_string()]] {
            let report =
                RunReport { run: 3, complete: errors.is_empty(), errors, ..RunReport::default() };
            let message = BillingMessage::Ran(report);
            let bytes = postcard::to_stdvec(&message).unwrap();
            assert_eq!(postcard::from_bytes::<BillingMessage>(&bytes).unwrap(), message);
        }
    }

    #[test]
    fn ranges_cover_the_usage_keys_in_order() {
        assert_eq!(range_starts(1), ["usage/"]);
        let starts = range_starts(4);
        assert_eq!(starts.len(), 4);
        assert!(starts.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(starts.iter().all(|start| start.as_str() < usage::KEY_END));
        let key = usage::usage_key("account-1", 0);
        let owner = starts.iter().rposition(|start| start.as_str() <= key.as_str()).unwrap();
        assert_eq!(owner, 2, "{starts:?}");
        assert_eq!(range_starts(MAP_TASKS_MAX).len(), MAP_TASKS_MAX);
    }

    #[test]
    fn settings_check_the_period_against_the_window() {
        let usage = UsageSettings { window_ms: 10_000, ..UsageSettings::default() };
        let settings = BillingSettings { period_ms: 25_000, ..BillingSettings::default() };
        assert_eq!(
            settings.validate_with(&usage).unwrap_err(),
            ("period_ms".to_string(), "must be a multiple of usage.window_ms (10000)".to_string())
        );
        let settings = BillingSettings::default();
        assert_eq!(settings.validate_with(&usage), Ok(()));
        assert_eq!(settings.period_of(125_000), 120_000);
    }
}
