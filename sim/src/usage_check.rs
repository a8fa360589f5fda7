//! The usage pipeline's checker: what the API servers counted against what billing billed,
//! job by job. A pure function of the history (shapes in [`pessimist_core::usage`],
//! [`crate::usage_workload`] and [`crate::service_workload`]).
//!
//! Every count an API server made is recorded with its writer, key and the writer's running
//! total it took (`usage_counted`); the archive's final ledger holds each writer's archived
//! total per key. A writer's counts on a key take totals 1, 2, 3... in order, so the counts
//! billed are exactly those whose total is at most the archived total (when a restart
//! reassigns a total whose record never became durable, the later count holds it). That
//! names, for every job, whether it was billed:
//! - **nothing counted twice**: no job billed twice, no archived total beyond every count;
//! - **nothing acknowledged lost**: no archived total below one the store acknowledged;
//! - **billed = served** (the usage log on): every job a client was answered `202` for, new,
//!   is billed. With the log off the same holds for the writers that lived to the end; the
//!   jobs of writers a restart replaced (their unshipped counts died with them) are the
//!   **usage lost per crash**, reported, not failed. With the log on a restart replaces a
//!   writer only when its log could not be read (corruption): those losses are reported too;
//! - the ledger's per-account amounts add up to the archived totals.
//!
//! Figures only: jobs billed whose answer never reached the client (counted, then the
//! answer lost), jobs served but never counted (the first answer lost, the retry answered
//! as a duplicate: a price of counting at the answer), store writes per request counted.

use std::collections::{BTreeMap, BTreeSet};

use pessimist_core::history::{Event, EventKind};
use serde_json::{json, Value};

use crate::check::{operations, Verdict};

/// Everything the checker reads from the history.
#[derive(Default)]
struct Usage {
    /// (writer, key, total) → the job whose count holds that total (the latest recorded).
    counts: BTreeMap<(String, String, u64), u64>,
    /// Writers, per node, in the order they started.
    writers_by_node: BTreeMap<String, Vec<String>>,
    /// (writer, key) → the highest total the store acknowledged.
    acknowledged: BTreeMap<(String, String), u64>,
    store_writes: u64,
    flushes: u64,
    violations: Vec<String>,
}

impl Usage {
    fn read(events: &[Event]) -> Usage {
        let mut usage = Usage::default();
        for event in events {
            let EventKind::Internal { node, what, detail } = &event.kind else { continue };
            let text = |field: &str| detail[field].as_str().map(str::to_string);
            match what.as_str() {
                "usage_started" => match text("writer") {
                    Some(writer) => {
                        let writers = usage.writers_by_node.entry(node.clone()).or_default();
                        if writers.last() != Some(&writer) {
                            writers.push(writer);
                        }
                    }
                    None => usage.violations.push(format!("{node}: usage_started without writer")),
                },
                "usage_counted" => {
                    let fields = (
                        text("writer"),
                        text("key"),
                        detail["total"].as_u64(),
                        detail["job"].as_u64(),
                    );
                    let (Some(writer), Some(key), Some(total), Some(job)) = fields else {
                        usage.violations.push(format!("{node}: malformed usage_counted {detail}"));
                        continue;
                    };
                    usage.counts.insert((writer, key, total), job);
                }
                "usage_flushed" => {
                    usage.flushes += 1;
                    usage.store_writes += detail["keys"].as_u64().unwrap_or(0);
                    let Some(writer) = text("writer") else { continue };
                    for (key, total) in detail["acknowledged"].as_object().into_iter().flatten() {
                        let entry =
                            usage.acknowledged.entry((writer.clone(), key.clone())).or_default();
                        *entry = (*entry).max(total.as_u64().unwrap_or(0));
                    }
                }
                _ => {}
            }
        }
        usage
    }

    /// Writers a later start on the same node replaced: whatever they had not shipped died.
    fn replaced(&self) -> BTreeSet<&str> {
        self.writers_by_node
            .values()
            .flat_map(|writers| writers.iter().rev().skip(1).map(String::as_str))
            .collect()
    }
}

fn ratio(part: u64, whole: u64) -> Value {
    if whole == 0 {
        json!(0.0)
    } else {
        json!((part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
    }
}

/// Billed against served: see the module comment. `log`: the API servers' usage log is on.
pub fn billing(events: &[Event], log: bool) -> Verdict {
    let ops = operations(events);
    let mut usage = Usage::read(events);
    let mut violations = std::mem::take(&mut usage.violations);
    let mut figures = BTreeMap::from([("log".to_string(), json!(log))]);
    // Jobs clients were answered 202 for: new, and only ever as duplicates.
    let mut answered_new = BTreeMap::new();
    let mut answered_any = BTreeMap::new();
    for op in ops.iter().filter(|op| op.f == "upload" && op.outcome == "ok") {
        let (Some(job), Some(account)) =
            (op.result["job"].as_u64(), op.invoked_value["account"].as_str())
        else {
            continue;
        };
        answered_any.insert(job, account.to_string());
        if op.result["duplicate"] == json!(false) {
            answered_new.insert(job, account.to_string());
        }
    }
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
    let mut archived: BTreeMap<(String, String), u64> = BTreeMap::new();
    for entry in ledger.result["archived"].as_array().into_iter().flatten() {
        match (entry[0].as_str(), entry[1].as_str(), entry[2].as_u64()) {
            (Some(key), Some(writer), Some(total)) => {
                archived.insert((writer.to_string(), key.to_string()), total);
            }
            _ => violations.push(format!("malformed ledger entry {entry}")),
        }
    }
    // The counts billed, job by job.
    let mut highest: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut billed_jobs: BTreeMap<u64, u32> = BTreeMap::new();
    let mut counted_jobs: BTreeMap<u64, &str> = BTreeMap::new();
    for ((writer, key, total), job) in &usage.counts {
        let top = highest.entry((writer.as_str(), key.as_str())).or_default();
        *top = (*top).max(*total);
        counted_jobs.insert(*job, writer.as_str());
        let billed_total = archived.get(&(writer.clone(), key.clone())).copied().unwrap_or(0);
        if *total <= billed_total {
            *billed_jobs.entry(*job).or_default() += 1;
        }
    }
    for (job, times) in &billed_jobs {
        if *times > 1 {
            violations.push(format!("job {job} billed {times} times"));
        }
    }
    for ((writer, key), total) in &archived {
        let top = highest.get(&(writer.as_str(), key.as_str())).copied().unwrap_or(0);
        if *total > top {
            violations
                .push(format!("{key}: {writer}'s archived total {total} exceeds its {top} counts"));
        }
    }
    for ((writer, key), total) in &usage.acknowledged {
        let kept = archived.get(&(writer.clone(), key.clone())).copied().unwrap_or(0);
        if kept < *total {
            violations.push(format!(
                "{key}: the store acknowledged {writer}'s total {total}, {kept} were billed"
            ));
        }
    }
    // Served against billed.
    let replaced = usage.replaced();
    let mut lost_by_writer: BTreeMap<&str, u64> = BTreeMap::new();
    let mut served_uncounted = 0u64;
    for (job, account) in &answered_new {
        if billed_jobs.contains_key(job) {
            continue;
        }
        match counted_jobs.get(job) {
            Some(writer) if replaced.contains(writer) => {
                *lost_by_writer.entry(writer).or_default() += 1;
            }
            Some(writer) => violations.push(format!(
                "job {job} of {account}, served and counted by {writer}, was not billed"
            )),
            None => {
                served_uncounted += 1;
                violations.push(format!("job {job} of {account} was served but never counted"));
            }
        }
    }
    let never_counted = answered_any
        .keys()
        .filter(|job| !answered_new.contains_key(job) && !counted_jobs.contains_key(job))
        .count();
    let billed_unanswered =
        billed_jobs.keys().filter(|job| !answered_new.contains_key(job)).count();
    // The ledger adds up.
    let mut by_account: BTreeMap<&str, u64> = BTreeMap::new();
    for ((_, key), total) in &archived {
        let account = pessimist_core::usage::parse_key(key).map_or("", |(account, _)| account);
        *by_account.entry(account).or_default() += total;
    }
    let mut ledger_billed: BTreeMap<String, u64> = BTreeMap::new();
    for (account, periods) in ledger.result["billed"].as_object().into_iter().flatten() {
        let sum = periods.as_object().into_iter().flatten().filter_map(|(_, v)| v.as_u64()).sum();
        ledger_billed.insert(account.clone(), sum);
    }
    for (account, total) in &by_account {
        let billed = ledger_billed.get(*account).copied().unwrap_or(0);
        if billed != *total {
            violations.push(format!(
                "{account}: the ledger bills {billed}, its archived totals add up to {total}"
            ));
        }
    }
    let served = answered_new.len() as u64;
    let counted = usage.counts.len() as u64;
    let lost: u64 = lost_by_writer.values().sum();
    let crashes = replaced.len() as u64;
    figures.insert("served".into(), json!(served));
    figures.insert("counted".into(), json!(counted));
    figures.insert("billed".into(), json!(billed_jobs.len()));
    figures.insert("billed_by_account".into(), json!(ledger_billed));
    figures.insert("lost".into(), json!(lost));
    figures.insert("writers_replaced".into(), json!(crashes));
    figures.insert(
        "lost_per_crash".into(),
        if crashes == 0 { json!(0.0) } else { json!(lost as f64 / crashes as f64) },
    );
    figures.insert(
        "lost_per_crash_max".into(),
        json!(lost_by_writer.values().max().copied().unwrap_or(0)),
    );
    figures.insert("lost_fraction".into(), ratio(lost, served));
    figures.insert("served_uncounted".into(), json!(served_uncounted));
    figures.insert("duplicates_never_counted".into(), json!(never_counted));
    figures.insert("billed_unanswered".into(), json!(billed_unanswered));
    figures.insert("flushes".into(), json!(usage.flushes));
    figures.insert("store_writes".into(), json!(usage.store_writes));
    figures.insert("store_writes_per_request".into(), ratio(usage.store_writes, counted));
    figures.insert("ledger_records".into(), ledger.result["records"].clone());
    Verdict::from_violations(violations, figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history: jobs 1..=3 served to `acct` and counted by writer `w` (totals 1..=3), the
    /// store acknowledging total `acked`, and a ledger archiving `archived` for `w`.
    fn history(acked: u64, archived: u64, billed: u64) -> Vec<Event> {
        let key = pessimist_core::usage::usage_key("acct", 0);
        let mut kinds = vec![EventKind::Internal {
            node: "api-1".into(),
            what: "usage_started".into(),
            detail: json!({ "writer": "w" }),
        }];
        for job in 1..=3u64 {
            kinds.push(EventKind::Invoke {
                process: job,
                f: "upload".into(),
                value: json!({ "account": "acct" }),
            });
            kinds.push(EventKind::Internal {
                node: "api-1".into(),
                what: "usage_counted".into(),
                detail: json!({ "account": "acct", "key": key, "writer": "w", "total": job,
                                "job": job, "logged": true }),
            });
            kinds.push(EventKind::Ok {
                process: job,
                f: "upload".into(),
                value: json!({ "status": 202, "job": job, "duplicate": false }),
            });
        }
        kinds.push(EventKind::Internal {
            node: "api-1".into(),
            what: "usage_flushed".into(),
            detail: json!({ "writer": "w", "keys": 1, "acknowledged": { key.clone(): acked } }),
        });
        kinds.push(EventKind::Invoke { process: 9, f: "bill".into(), value: json!({}) });
        kinds.push(EventKind::Ok {
            process: 9,
            f: "bill".into(),
            value: json!({ "run": 1, "complete": true, "billed": {}, "errors": [] }),
        });
        kinds.push(EventKind::Invoke { process: 9, f: "ledger".into(), value: json!({}) });
        kinds.push(EventKind::Ok {
            process: 9,
            f: "ledger".into(),
            value: json!({ "records": 1, "billed": { "acct": { "0": billed } },
                           "archived": [[key, "w", archived]] }),
        });
        kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| Event { index: index as u64, time_us: index as u64, kind })
            .collect()
    }

    #[test]
    fn the_bill_matches_the_counts_job_by_job() {
        let verdict = billing(&history(3, 3, 3), true);
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["billed"], json!(3));
        assert_eq!(verdict.figures["store_writes_per_request"], json!(0.3333));
    }

    #[test]
    fn a_ledger_read_before_any_final_run_settled_is_not_final() {
        let unsettled: Vec<Event> = history(3, 3, 3)
            .into_iter()
            .filter(|event| match &event.kind {
                EventKind::Invoke { f, .. } | EventKind::Ok { f, .. } => f != "bill",
                _ => true,
            })
            .collect();
        let verdict = billing(&unsettled, true);
        assert_eq!(
            verdict.violations,
            ["no final billing run settled (read every range, billed nothing new) before the \
              ledger was read"]
        );
    }

    #[test]
    fn a_total_beyond_the_counts_is_a_double_count() {
        let verdict = billing(&history(3, 4, 4), true);
        assert!(!verdict.passed());
        assert_eq!(
            verdict.violations,
            ["usage/acct/0000000000000: w's archived total 4 exceeds its 3 counts"]
        );
    }

    #[test]
    fn losses_name_the_job_and_what_the_store_acknowledged() {
        let verdict = billing(&history(3, 2, 2), true);
        assert_eq!(
            verdict.violations,
            [
                "usage/acct/0000000000000: the store acknowledged w's total 3, 2 were billed",
                "job 3 of acct, served and counted by w, was not billed",
            ]
        );
        let verdict = billing(&history(2, 2, 3), false);
        assert_eq!(
            verdict.violations,
            [
                "job 3 of acct, served and counted by w, was not billed",
                "acct: the ledger bills 3, its archived totals add up to 2",
            ]
        );
    }

    #[test]
    fn without_a_final_ledger_nothing_can_be_said() {
        let mut events = history(3, 3, 3);
        events.truncate(events.len() - 2);
        let verdict = billing(&events, true);
        assert_eq!(
            verdict.violations,
            ["the archive's ledger was never read at the end of the run"]
        );
    }
}
