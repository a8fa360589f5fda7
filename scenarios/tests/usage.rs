//! The usage pipeline's scenarios show what the usage log buys: with it, a crashed API server
//! loses no usage and the bill equals the jobs served; without it, the unshipped counts of
//! each crash are lost, measured, and still nothing is billed twice.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

use pessimist_scenarios::{load_scenario, suite::workspace_root};
use pessimist_sim::run::{run_seed, SeedOutcome};
use serde_json::Value;

fn run(name: &str, seed: u64) -> SeedOutcome {
    let path = workspace_root().join(format!("scenarios/{name}.json"));
    let scenario = load_scenario(&path).expect("the shipped scenarios load");
    run_seed(&scenario, seed)
}

fn figure(outcome: &SeedOutcome, name: &str) -> u64 {
    let value = outcome.checks["billing"].figures.get(name).cloned().unwrap_or(Value::Null);
    value.as_u64().unwrap_or_else(|| panic!("billing figure {name} is a count: {value}"))
}

#[test]
fn with_the_log_a_crash_loses_nothing_and_the_bill_is_the_jobs_served() {
    let outcome = run("usage-api-crash-log-on", 1);
    assert!(outcome.outcome.passed(), "{:?}", outcome.checks);
    let served = figure(&outcome, "served");
    assert!(served > 100, "real traffic was served: {served}");
    assert_eq!(figure(&outcome, "lost"), 0);
    // Every job clients were answered 202 for is billed; a job whose answers were all lost
    // may be billed too (its count was taken).
    let billed = figure(&outcome, "billed");
    assert!(served <= billed && billed <= served + figure(&outcome, "possibly_served"));
    assert!(figure(&outcome, "store_writes") < served, "batching writes less than a request");
}

#[test]
fn without_the_log_each_crash_loses_its_unshipped_usage_and_the_checker_measures_it() {
    let outcome = run("usage-api-crash-log-off", 1);
    assert!(outcome.outcome.passed(), "losses without the log are figures: {:?}", outcome.checks);
    assert_eq!(figure(&outcome, "losing_faults"), 2, "two API servers crashed");
    let (served, billed, lost) =
        (figure(&outcome, "served"), figure(&outcome, "billed"), figure(&outcome, "lost"));
    assert!(lost > 0, "a crash between flushes loses the counts it held");
    assert!(served <= billed + lost && billed <= served + figure(&outcome, "possibly_served"));
}
