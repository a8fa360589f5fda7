//! The usage pipeline's checker: the archive's ledger against what the clients saw. A pure
//! function of the history (shapes in [`pessimist_core::usage`], [`crate::usage::workload`] and
//! [`crate::service::workload`]); it never trusts the service's own count.
//!
//! Each upload a client was answered `202` for, as a new job, is one job to bill to the
//! account whose key the client used, in the window (and period) of its acceptance: some time
//! in the accepting try's [invoke, ok] interval of true simulated time, widened by the most
//! the clock faults begun by then can move a server's clock. A job answered only as a
//! duplicate, or whose every answer was lost, may be billed or not. Per account, every run of
//! consecutive windows (and of periods) must hold a ledger amount between the jobs that must
//! be billed inside it and those that may be, so a wrong account, a wrong window or period, a
//! double bill and a missing bill all fail. Excused, and reported as `lost`: with the usage
//! log off, jobs accepted before an API server crash (their unshipped counts died with it);
//! with it on, only jobs accepted before the restart that finds an API server's log
//! unreadable after a fault corrupted its disk. The ledger's per-period amounts must also add
//! up to its archived totals, and a final billing run must have settled (read every range,
//! billed nothing new) before the ledger was read.
//!
//! Diagnostic figures come from the service's own events (`usage_counted` and friends): they
//! explain a verdict and never decide one (see `diagnostics`).

use std::collections::{BTreeMap, BTreeSet};

use pessimist_core::api::ROLE as API_ROLE;
use pessimist_core::billing::BillingSettings;
use pessimist_core::history::{Event, EventKind};
use pessimist_core::seams::clock::SIMULATED_EPOCH_UNIX_MS;
use pessimist_core::usage::{parse_key, UsageSettings};
use serde_json::{json, Value};

use crate::check::{operations, Operation, Verdict};

fn ratio(part: u64, whole: u64) -> Value {
    if whole == 0 {
        json!(0.0)
    } else {
        json!((part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
    }
}

/// One job the clients know of: its account, the true-time interval (µs) its acceptance lies
/// in, and whether it must be billed.
#[derive(Clone, Debug)]
struct Job {
    account: String,
    from_us: u64,
    to_us: u64,
    must: bool,
}

/// Clock faults by start time (µs) and node, each with the most it can move the clock (ms).
fn clock_moves(events: &[Event]) -> Vec<(u64, String, u64)> {
    let end_us = events.last().map_or(0, |event| event.time_us);
    let mut ends: BTreeMap<u64, u64> = BTreeMap::new();
    for event in events {
        if let EventKind::FaultEnd { fault, .. } = &event.kind {
            ends.insert(*fault, event.time_us);
        }
    }
    let mut moves = Vec::new();
    for event in events {
        let EventKind::FaultStart { fault, kind, detail } = &event.kind else { continue };
        let node = detail["node"].as_str().unwrap_or_default().to_string();
        let span_ms =
            ends.get(fault).copied().unwrap_or(end_us).saturating_sub(event.time_us) / 1000;
        let most_ms = match kind.as_str() {
            "clock_offset" => detail["offset_ms"].as_i64().unwrap_or(0).unsigned_abs(),
            "clock_jump" => detail["delta_ms"].as_i64().unwrap_or(0).unsigned_abs(),
            // Rounded up: a drift of any size moves the clock by at least a millisecond.
            "clock_drift" => (detail["drift_ppm"].as_i64().unwrap_or(0).unsigned_abs() * span_ms)
                .div_ceil(1_000_000),
            _ => continue,
        };
        moves.push((event.time_us, node, most_ms));
    }
    moves
}

/// The most any node's clock can be off true time (ms) by `at_us`: its clock faults that
/// started by then, summed (faults on one node add up).
fn clock_offset_max_ms(moves: &[(u64, String, u64)], at_us: u64) -> u64 {
    let mut by_node: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, node, most_ms) in moves.iter().filter(|(start_us, ..)| *start_us <= at_us) {
        *by_node.entry(node.as_str()).or_default() += most_ms;
    }
    by_node.values().copied().max().unwrap_or(0)
}

/// When `node` first restarted after `after_us` (the world's `restart` event), if it did.
fn first_restart_after(events: &[Event], node: &str, after_us: u64) -> Option<u64> {
    events.iter().find_map(|event| match &event.kind {
        EventKind::Internal { node: restarted, what, .. }
            if what == "restart" && restarted == node && event.time_us > after_us =>
        {
            Some(event.time_us)
        }
        _ => None,
    })
}

/// The jobs the clients know of, one per idempotency key (see the module comment).
fn client_jobs(events: &[Event]) -> Vec<Job> {
    let ops = operations(events);
    let end_us = events.last().map_or(0, |event| event.time_us);
    let mut uploads: BTreeMap<String, Vec<&Operation>> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.f == "upload") {
        let Some(idempotency) = op.invoked_value["idempotency"].as_str() else { continue };
        uploads.entry(idempotency.to_string()).or_default().push(op);
    }
    let mut jobs = Vec::new();
    for tries in uploads.values() {
        let first = tries[0];
        let Some(account) = first.invoked_value["account"].as_str() else { continue };
        // A key that was never issued bills nobody; auth_keys judges its acceptance.
        if first.invoked_value["key"].is_null() {
            continue;
        }
        let accepted = tries.iter().find(|op| op.outcome == "ok");
        let job = match accepted {
            Some(ok) => {
                let new = tries
                    .iter()
                    .any(|op| op.outcome == "ok" && op.result["duplicate"] == json!(false));
                let to_us = ok.complete_us.unwrap_or(end_us);
                // A new job was accepted inside its own try; a duplicate by an earlier one.
                let from_us = if new { ok.invoke_us } else { first.invoke_us };
                Job { account: account.to_string(), from_us, to_us, must: new }
            }
            None => {
                let maybe: Vec<&&Operation> =
                    tries.iter().filter(|op| op.outcome != "fail").collect();
                let (Some(from), Some(to)) = (maybe.first(), maybe.last()) else { continue };
                let to_us = to.complete_us.unwrap_or(end_us);
                Job { account: account.to_string(), from_us: from.invoke_us, to_us, must: false }
            }
        };
        jobs.push(job);
    }
    jobs
}

/// How the history's times map onto the servers' wall clocks: history time 0 is
/// `epoch_unix_ms` on them, give or take `slack_ms` (how precisely the origin is known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    pub epoch_unix_ms: u64,
    pub slack_ms: u64,
}

impl WallClock {
    /// The simulation's: its clocks start at the simulated epoch, exactly.
    pub const SIMULATED: WallClock =
        WallClock { epoch_unix_ms: SIMULATED_EPOCH_UNIX_MS as u64, slack_ms: 0 };
}

/// The windows of a server's clock reading at true time `us` moved by up to `offset_ms`.
fn window_range(
    from_us: u64,
    to_us: u64,
    offset_ms: u64,
    window_ms: u64,
    clock: WallClock,
) -> (u64, u64) {
    let offset_ms = offset_ms + clock.slack_ms;
    let wall = |us: u64| clock.epoch_unix_ms + us / 1000;
    let low = wall(from_us).saturating_sub(offset_ms) / window_ms * window_ms;
    let high = (wall(to_us) + offset_ms) / window_ms * window_ms;
    (low, high)
}

/// Per account, every run of consecutive buckets (windows or periods, `step` apart) against
/// the jobs' bucket ranges: what must be billed inside it <= the ledger there <= what may be
/// billed there. Pushes the shortest failing runs, at most `VIOLATIONS_MAX` in all.
fn check_ranges(
    what: &str,
    step: u64,
    jobs: &[(String, u64, u64, bool)],
    ledger: &BTreeMap<(String, u64), u64>,
    violations: &mut Vec<String>,
) {
    const VIOLATIONS_MAX: usize = 10;
    let accounts: BTreeSet<&str> = jobs
        .iter()
        .map(|job| job.0.as_str())
        .chain(ledger.keys().map(|key| key.0.as_str()))
        .collect();
    for account in accounts {
        let mine: Vec<_> = jobs.iter().filter(|job| job.0 == account).collect();
        let billed: BTreeMap<u64, u64> = ledger
            .iter()
            .filter(|((owner, _), _)| owner == account)
            .map(|((_, bucket), amount)| (*bucket, *amount))
            .collect();
        let buckets: Vec<u64> =
            mine.iter().flat_map(|job| [job.1, job.2]).chain(billed.keys().copied()).collect();
        let (Some(&first), Some(&last)) = (buckets.iter().min(), buckets.iter().max()) else {
            continue;
        };
        let count = ((last - first) / step + 1) as usize;
        if count > 100_000 {
            // A history whose times do not map onto the servers' clocks: say so, do not
            // search a range that large.
            violations.push(format!(
                "{account}: jobs and ledger span {count} {what}s: the history's times do not \
                 match the servers' clocks"
            ));
            continue;
        }
        let mut reported: Vec<(u64, u64)> = Vec::new();
        for width in 0..count as u64 {
            for start in 0..count as u64 - width {
                let (low, high) = (first + start * step, first + (start + width) * step);
                if reported.iter().any(|&(a, b)| a >= low && b <= high) {
                    continue;
                }
                let must =
                    mine.iter().filter(|job| job.3 && job.1 >= low && job.2 <= high).count() as u64;
                let may = mine.iter().filter(|job| job.1 <= high && job.2 >= low).count() as u64;
                let amount: u64 = billed.range(low..=high).map(|(_, amount)| amount).sum();
                if (must..=may).contains(&amount) {
                    continue;
                }
                reported.push((low, high));
                if violations.len() < VIOLATIONS_MAX {
                    let run = if low == high {
                        format!("{what} {low}")
                    } else {
                        format!("{what}s {low}..={high}")
                    };
                    violations.push(format!(
                        "{account}, {run}: the ledger bills {amount}, the clients saw {must} jobs \
                         that must be billed there and {may} that may"
                    ));
                }
            }
        }
    }
}

/// The ledger against what the clients saw: see the module comment.
pub fn billing(
    events: &[Event],
    usage: &UsageSettings,
    settings: &BillingSettings,
    clock: WallClock,
) -> Verdict {
    let ops = operations(events);
    let mut violations = Vec::new();
    let mut figures = BTreeMap::from([("log".to_string(), json!(usage.log))]);
    // The final bill stops at a run that read everything and billed nothing new: only then is
    // the ledger known to hold every count the store had.
    let final_runs: Vec<_> = ops.iter().filter(|op| op.f == "bill" && op.outcome == "ok").collect();
    let settled = final_runs.iter().any(|run| {
        run.result["complete"] == json!(true)
            && run.result["billed"].as_object().is_some_and(|billed| billed.is_empty())
    });
    figures.insert("final_runs_answered".into(), json!(final_runs.len()));
    if !settled {
        violations.push(
            "no final billing run settled (read every range, billed nothing new) before the \
             ledger was read"
                .into(),
        );
    }
    let Some(ledger) = ops.iter().rev().find(|op| op.f == "ledger" && op.outcome == "ok") else {
        violations.push("the archive's ledger was never read at the end of the run".into());
        return Verdict::from_violations(violations, figures);
    };
    // The ledger's two views: archived totals per key (account, window) and amounts per
    // account per period.
    let mut by_window: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for entry in ledger.result["archived"].as_array().into_iter().flatten() {
        let parsed = entry[0].as_str().and_then(parse_key);
        match (parsed, entry[1].as_str(), entry[2].as_u64()) {
            (Some((account, window)), Some(_writer), Some(total)) => {
                *by_window.entry((account.to_string(), window)).or_default() += total;
            }
            _ => violations.push(format!("malformed ledger entry {entry}")),
        }
    }
    let mut by_period: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for (account, periods) in ledger.result["billed"].as_object().into_iter().flatten() {
        for (period, amount) in periods.as_object().into_iter().flatten() {
            match (period.parse::<u64>(), amount.as_u64()) {
                (Ok(period), Some(amount)) => {
                    *by_period.entry((account.clone(), period)).or_default() += amount
                }
                _ => {
                    violations.push(format!("malformed ledger amount {account} {period} {amount}"))
                }
            }
        }
    }
    let mut archived_by_period: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for ((account, window), total) in &by_window {
        *archived_by_period.entry((account.clone(), settings.period_of(*window))).or_default() +=
            total;
    }
    for key in archived_by_period.keys().chain(by_period.keys()).collect::<BTreeSet<_>>() {
        let (archived, billed) = (
            archived_by_period.get(key).copied().unwrap_or(0),
            by_period.get(key).copied().unwrap_or(0),
        );
        if archived != billed {
            violations.push(format!(
                "{}, period {}: the ledger bills {billed}, its archived totals add up to {archived}",
                key.0, key.1
            ));
        }
    }
    // What the clients saw, widened by the clock bound.
    let moves = clock_moves(events);
    // When a count the server answered 202 for may have been lost: with the log off, at a
    // crash of an API server; with it on, at the first restart of one after a fault corrupted
    // its disk (recovery then finds the log unreadable, and every count not yet shipped, the
    // ones appended after the damage included, is gone with it).
    let losses_us: Vec<u64> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::FaultStart { kind, detail, .. } => {
                let node = detail["node"].as_str().filter(|node| node.starts_with(API_ROLE))?;
                match kind.as_str() {
                    "crash" if !usage.log => Some(event.time_us),
                    "corrupt_disk" if usage.log => first_restart_after(events, node, event.time_us),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    let last_loss_us = losses_us.iter().max().copied();
    let jobs = client_jobs(events);
    let (mut straddling, mut exposed) = (0u64, 0u64);
    let mut in_windows = Vec::new();
    let mut in_periods = Vec::new();
    for job in &jobs {
        let offset_ms = clock_offset_max_ms(&moves, job.to_us);
        let (low, high) = window_range(job.from_us, job.to_us, offset_ms, usage.window_ms, clock);
        let (period_low, period_high) = (settings.period_of(low), settings.period_of(high));
        straddling += u64::from(low != high);
        // Accepted before a losing fault began: the count may have died with the server.
        let lossy = job.must && last_loss_us.is_some_and(|loss_us| job.from_us <= loss_us);
        exposed += u64::from(lossy);
        let must = job.must && !lossy;
        in_windows.push((job.account.clone(), low, high, must));
        in_periods.push((job.account.clone(), period_low, period_high, must));
    }
    check_ranges("window", usage.window_ms, &in_windows, &by_window, &mut violations);
    check_ranges("period", settings.period_ms, &in_periods, &by_period, &mut violations);
    let must_total = jobs.iter().filter(|job| job.must).count() as u64;
    let billed_total: u64 = by_period.values().sum();
    let lost = must_total.saturating_sub(billed_total);
    let mut billed_by_account: BTreeMap<&str, u64> = BTreeMap::new();
    for ((account, _), amount) in &by_period {
        *billed_by_account.entry(account.as_str()).or_default() += amount;
    }
    figures.insert("served".into(), json!(must_total));
    figures.insert("possibly_served".into(), json!(jobs.len() as u64 - must_total));
    figures.insert("billed".into(), json!(billed_total));
    figures.insert("billed_by_account".into(), json!(billed_by_account));
    figures.insert("straddling_jobs".into(), json!(straddling));
    figures.insert("clock_offset_max_ms".into(), json!(clock_offset_max_ms(&moves, u64::MAX)));
    figures.insert("jobs_exposed_to_loss".into(), json!(exposed));
    figures.insert("losing_faults".into(), json!(losses_us.len()));
    figures.insert("lost".into(), json!(lost));
    figures.insert("lost_fraction".into(), ratio(lost, must_total));
    figures.insert(
        "lost_per_crash".into(),
        if losses_us.is_empty() { json!(0.0) } else { json!(lost as f64 / losses_us.len() as f64) },
    );
    figures.extend(diagnostics(events, &ops, &ledger.result["archived"]));
    figures.insert("ledger_records".into(), ledger.result["records"].clone());
    Verdict::from_violations(violations, figures)
}

/// Figures from the service's own events (`usage_started`, `usage_counted`, `usage_flushed`):
/// they explain a verdict and never decide one, since the service could misreport them.
///
/// - `writers_replaced`: writers a later start on the same API server replaced (with the log
///   off, every crash; with it on, only an unreadable log);
/// - `lost_per_crash_max`: the most jobs, answered `202` as new, that one replaced writer had
///   counted and the ledger never archived;
/// - `duplicates_never_counted`: jobs clients were answered `202` for only as duplicates (the
///   first answer lost) that no server ever counted: a price of counting at the answer;
/// - `counted`, `flushes`, `store_writes`, `store_writes_per_request`.
fn diagnostics(events: &[Event], ops: &[Operation], archived: &Value) -> BTreeMap<String, Value> {
    let (mut flushes, mut store_writes) = (0u64, 0u64);
    let mut writers_by_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    // (writer, key, the writer's running total) -> job.
    let mut counts: BTreeMap<(&str, &str, u64), u64> = BTreeMap::new();
    for event in events {
        let EventKind::Internal { node, what, detail } = &event.kind else { continue };
        match what.as_str() {
            "usage_started" => {
                let Some(writer) = detail["writer"].as_str() else { continue };
                let writers = writers_by_node.entry(node.as_str()).or_default();
                if writers.last() != Some(&writer) {
                    writers.push(writer);
                }
            }
            "usage_counted" => {
                let fields = (
                    detail["writer"].as_str(),
                    detail["key"].as_str(),
                    detail["total"].as_u64(),
                    detail["job"].as_u64(),
                );
                if let (Some(writer), Some(key), Some(total), Some(job)) = fields {
                    counts.insert((writer, key, total), job);
                }
            }
            "usage_flushed" => {
                flushes += 1;
                store_writes += detail["keys"].as_u64().unwrap_or(0);
            }
            _ => {}
        }
    }
    let replaced: BTreeSet<&str> = writers_by_node
        .values()
        .flat_map(|writers| writers.iter().rev().skip(1).copied())
        .collect();
    let mut archived_totals: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for entry in archived.as_array().into_iter().flatten() {
        if let (Some(key), Some(writer), Some(total)) =
            (entry[0].as_str(), entry[1].as_str(), entry[2].as_u64())
        {
            archived_totals.insert((writer, key), total);
        }
    }
    let (mut answered_new, mut answered_any) = (BTreeSet::new(), BTreeSet::new());
    for op in ops.iter().filter(|op| op.f == "upload" && op.outcome == "ok") {
        let Some(job) = op.result["job"].as_u64() else { continue };
        answered_any.insert(job);
        if op.result["duplicate"] == json!(false) {
            answered_new.insert(job);
        }
    }
    let counted_jobs: BTreeSet<u64> = counts.values().copied().collect();
    let mut lost_by_writer: BTreeMap<&str, u64> = BTreeMap::new();
    for ((writer, key, total), job) in &counts {
        let kept = archived_totals.get(&(*writer, *key)).copied().unwrap_or(0);
        if replaced.contains(writer) && *total > kept && answered_new.contains(job) {
            *lost_by_writer.entry(writer).or_default() += 1;
        }
    }
    let never_counted = answered_any
        .iter()
        .filter(|job| !answered_new.contains(*job) && !counted_jobs.contains(*job))
        .count();
    let counted = counts.len() as u64;
    BTreeMap::from([
        ("writers_replaced".to_string(), json!(replaced.len())),
        ("lost_per_crash_max".to_string(), json!(lost_by_writer.values().max().unwrap_or(&0))),
        ("duplicates_never_counted".to_string(), json!(never_counted)),
        ("counted".to_string(), json!(counted)),
        ("flushes".to_string(), json!(flushes)),
        ("store_writes".to_string(), json!(store_writes)),
        ("store_writes_per_request".to_string(), ratio(store_writes, counted)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW_MS: u64 = 10_000;

    /// The wall-clock window (its start) of true time `ms`.
    fn window_at(ms: u64) -> u64 {
        (SIMULATED_EPOCH_UNIX_MS as u64 + ms) / WINDOW_MS * WINDOW_MS
    }

    /// Uploads (account, accepted at ms, answer: 202 new / duplicate / lost), a settled final
    /// run, then the ledger archiving `archived` (account, window, total).
    fn history(
        uploads: &[(&str, u64, &str)],
        faults: &[(u64, &str, &str)],
        archived: &[(&str, u64, u64)],
    ) -> Vec<Event> {
        let mut kinds: Vec<(u64, EventKind)> = Vec::new();
        for (fault, (ms, kind, node)) in (0u64..).zip(faults) {
            let detail = json!({ "kind": kind, "node": node });
            kinds.push((*ms, EventKind::FaultStart { fault, kind: kind.to_string(), detail }));
        }
        for (process, (account, ms, answer)) in (1u64..).zip(uploads) {
            let value =
                json!({ "account": account, "key": "k", "idempotency": format!("u{process}") });
            kinds.push((*ms, EventKind::Invoke { process, f: "upload".into(), value }));
            let completion = match *answer {
                "new" | "duplicate" => EventKind::Ok {
                    process,
                    f: "upload".into(),
                    value: json!({ "status": 202, "job": process, "duplicate": *answer == "duplicate" }),
                },
                _ => EventKind::Info {
                    process,
                    f: "upload".into(),
                    value: json!({ "status": 0 }),
                    error: "lost".into(),
                },
            };
            kinds.push((ms + 50, completion));
        }
        let mut billed: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let settings = BillingSettings::default();
        for (account, window, total) in archived {
            *billed
                .entry(account.to_string())
                .or_default()
                .entry(settings.period_of(*window).to_string())
                .or_default() += total;
        }
        let archived: Vec<Value> = archived
            .iter()
            .map(|(account, window, total)| {
                json!([pessimist_core::usage::usage_key(account, *window), "w", total])
            })
            .collect();
        kinds
            .push((100_000, EventKind::Invoke { process: 99, f: "bill".into(), value: json!({}) }));
        kinds.push((
            100_001,
            EventKind::Ok {
                process: 99,
                f: "bill".into(),
                value: json!({ "complete": true, "billed": {} }),
            },
        ));
        kinds.push((
            100_002,
            EventKind::Invoke { process: 99, f: "ledger".into(), value: json!({}) },
        ));
        kinds.push((
            100_003,
            EventKind::Ok {
                process: 99,
                f: "ledger".into(),
                value: json!({ "records": 1, "billed": billed, "archived": archived }),
            },
        ));
        kinds.sort_by_key(|(ms, _)| *ms);
        kinds
            .into_iter()
            .enumerate()
            .map(|(index, (ms, kind))| Event { index: index as u64, time_us: ms * 1000, kind })
            .collect()
    }

    fn check(
        log: bool,
        uploads: &[(&str, u64, &str)],
        faults: &[(u64, &str, &str)],
        archived: &[(&str, u64, u64)],
    ) -> Verdict {
        let usage = UsageSettings { log, window_ms: WINDOW_MS, ..UsageSettings::default() };
        billing(
            &history(uploads, faults, archived),
            &usage,
            &BillingSettings::default(),
            WallClock::SIMULATED,
        )
    }

    /// a: two jobs in the first window, one in the second; b: one in the first. A job only
    /// answered as a duplicate and one whose answer was lost may be billed or not.
    const UPLOADS: [(&str, u64, &str); 6] = [
        ("a", 1_000, "new"),
        ("a", 2_000, "new"),
        ("a", 12_000, "new"),
        ("b", 3_000, "new"),
        ("b", 4_000, "duplicate"),
        ("b", 5_000, "lost"),
    ];

    fn right() -> Vec<(&'static str, u64, u64)> {
        vec![("a", window_at(0), 2), ("a", window_at(10_000), 1), ("b", window_at(0), 1)]
    }

    /// The diagnostics read the service's events: a writer a restart replaced, the jobs it
    /// counted that never reached the ledger, and a duplicate-only job no server counted.
    #[test]
    fn diagnostics_name_replaced_writers_and_their_losses() {
        let mut events = history(&UPLOADS, &[], &[("a", window_at(0), 1)]);
        let key = pessimist_core::usage::usage_key("a", window_at(0));
        let internal = |what: &str, detail: Value| EventKind::Internal {
            node: "api-1".into(),
            what: what.into(),
            detail,
        };
        let extra = [
            internal("usage_started", json!({ "writer": "w" })),
            internal("usage_counted", json!({ "writer": "w", "key": key, "total": 1, "job": 1 })),
            internal("usage_counted", json!({ "writer": "w", "key": key, "total": 2, "job": 2 })),
            internal("usage_flushed", json!({ "keys": 1 })),
            internal("usage_started", json!({ "writer": "w2" })),
        ];
        for kind in extra {
            let index = events.len() as u64;
            events.push(Event { index, time_us: 99_000_000, kind });
        }
        let archived = json!([[key, "w", 1]]);
        let figures = diagnostics(&events, &operations(&events), &archived);
        assert_eq!(figures["writers_replaced"], json!(1));
        assert_eq!(figures["lost_per_crash_max"], json!(1), "job 2 was counted, never archived");
        // Job 5 was answered only as a duplicate and counted by no one.
        assert_eq!(figures["duplicates_never_counted"], json!(1));
        assert_eq!(figures["counted"], json!(2));
        assert_eq!(figures["store_writes_per_request"], json!(0.5));
        // Archived in full: nothing lost.
        let figures = diagnostics(&events, &operations(&events), &json!([[key, "w", 2]]));
        assert_eq!(figures["lost_per_crash_max"], json!(0));
    }

    #[test]
    fn the_bill_matches_what_clients_saw() {
        let verdict = check(true, &UPLOADS, &[], &right());
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["served"], json!(4));
        assert_eq!(verdict.figures["possibly_served"], json!(2));
        // The maybe-jobs billed too: still right.
        let mut more = right();
        more[2].2 = 3;
        assert!(check(true, &UPLOADS, &[], &more).passed());
    }

    #[test]
    fn wrong_account_window_double_and_missing_fail() {
        type Archived = Vec<(&'static str, u64, u64)>;
        let cases: Vec<(&str, Archived)> = vec![
            (
                "wrong account",
                vec![("a", window_at(0), 2), ("a", window_at(10_000), 1), ("c", window_at(0), 1)],
            ),
            (
                "wrong window",
                vec![("a", window_at(0), 1), ("a", window_at(10_000), 2), ("b", window_at(0), 1)],
            ),
            (
                "double billed",
                vec![("a", window_at(0), 3), ("a", window_at(10_000), 1), ("b", window_at(0), 1)],
            ),
            ("missing", vec![("a", window_at(0), 2), ("b", window_at(0), 1)]),
        ];
        for (what, archived) in cases {
            let verdict = check(true, &UPLOADS, &[], &archived);
            assert!(!verdict.passed(), "{what} passed: {verdict:?}");
        }
    }

    #[test]
    fn a_clock_fault_lets_a_job_near_a_boundary_go_either_way() {
        let uploads = [("a", 9_900, "new")];
        let offset = [(0, "clock_offset", "api-1")];
        let late = [("a", window_at(10_000), 1)];
        assert!(!check(true, &uploads, &[], &late).passed());
        let mut events = history(&uploads, &offset, &late);
        if let EventKind::FaultStart { detail, .. } = &mut events[0].kind {
            detail["offset_ms"] = json!(500);
        }
        let usage = UsageSettings { window_ms: WINDOW_MS, ..UsageSettings::default() };
        let verdict = billing(&events, &usage, &BillingSettings::default(), WallClock::SIMULATED);
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["straddling_jobs"], json!(1));
    }

    #[test]
    fn with_the_log_off_only_a_crash_excuses_a_missing_job() {
        let missing = vec![("a", window_at(0), 2), ("b", window_at(0), 1)];
        // api-1 crashed after the job of 12 s was accepted: its count may have died.
        let crash = [(20_000, "crash", "api-1")];
        let verdict = check(false, &UPLOADS, &crash, &missing);
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["lost"], json!(1));
        // The crash came before that job: nothing excuses it.
        let early = [(11_000, "crash", "api-1")];
        assert!(!check(false, &UPLOADS, &early, &missing).passed());
        // No crash at all; and with the log on a crash excuses nothing.
        assert!(!check(false, &UPLOADS, &[], &missing).passed());
        assert!(!check(true, &UPLOADS, &crash, &missing).passed());
    }

    #[test]
    fn a_ledger_read_before_any_final_run_settled_is_not_final() {
        let unsettled: Vec<Event> = history(&UPLOADS, &[], &right())
            .into_iter()
            .filter(|event| match &event.kind {
                EventKind::Invoke { f, .. } | EventKind::Ok { f, .. } => f != "bill",
                _ => true,
            })
            .collect();
        let usage = UsageSettings { window_ms: WINDOW_MS, ..UsageSettings::default() };
        let verdict =
            billing(&unsettled, &usage, &BillingSettings::default(), WallClock::SIMULATED);
        assert_eq!(
            verdict.violations,
            ["no final billing run settled (read every range, billed nothing new) before the \
              ledger was read"]
        );
    }
}
