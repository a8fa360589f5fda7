//! The image service's scenarios show what they exist for: the figures behind each verdict.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

use pessimist_core::history::EventKind;
use pessimist_scenarios::{load_scenario, parse_scenario, suite::workspace_root};
use pessimist_sim::run::{run_seed, SeedOutcome};
use serde_json::Value;

fn run(name: &str, seed: u64) -> SeedOutcome {
    let path = workspace_root().join(format!("scenarios/{name}.json"));
    let scenario = load_scenario(&path).expect("the shipped scenarios load");
    run_seed(&scenario, seed)
}

fn figure(outcome: &SeedOutcome, check: &str, name: &str) -> Value {
    outcome.checks[check].figures.get(name).cloned().unwrap_or(Value::Null)
}

#[test]
fn the_baseline_completes_every_job_with_a_thumbnail_near_the_reference() {
    let outcome = run("service-baseline", 1);
    assert!(outcome.outcome.passed(), "{:?}", outcome.checks);
    let accepted = figure(&outcome, "jobs_complete", "accepted").as_u64().unwrap();
    assert!(accepted > 50, "a baseline run accepts real work: {accepted}");
    assert_eq!(figure(&outcome, "thumbnails", "thumbnails_compared").as_u64(), Some(accepted));
    assert!(figure(&outcome, "auth_keys", "keys_revoked").as_u64().unwrap() >= 1);
    assert!(figure(&outcome, "auth_keys", "never_issued_refused").as_u64().unwrap() >= 1);
    assert!(figure(&outcome, "auth_keys", "revocation_lag_ms_max").as_u64().is_some());
}

#[test]
fn a_pill_storm_is_quarantined_and_without_quarantine_the_fleet_goes_down() {
    let storm = run("service-pill-storm", 1);
    assert!(storm.outcome.passed(), "{:?}", storm.checks);
    assert!(figure(&storm, "pill_quarantine", "worker_crashes").as_u64().unwrap() > 0);
    assert!(figure(&storm, "pill_quarantine", "crashes_per_job_max").as_u64().unwrap() <= 3);
    assert!(figure(&storm, "thumbnails", "failed_as_expected").as_u64().unwrap() > 0);

    let unguarded = run("service-pill-storm-no-quarantine", 1);
    assert!(unguarded.outcome.passed(), "the scenario's expectations hold: {:?}", unguarded.checks);
    for check in ["pill_quarantine", "jobs_complete"] {
        assert_eq!(figure(&unguarded, check, "expected_to_fail"), Value::Bool(true));
        assert!(!unguarded.checks[check].violations.is_empty(), "{check} reports what failed");
    }
    assert!(figure(&unguarded, "pill_quarantine", "fleet_down_ms").as_u64().unwrap() > 0);
    assert!(figure(&unguarded, "jobs_complete", "unfinished").as_u64().unwrap() > 0);
}

#[test]
fn the_data_plane_authenticates_from_its_cache_while_the_management_plane_is_cut_off() {
    let outcome = run("service-auth-partition", 1);
    assert!(outcome.outcome.passed(), "{:?}", outcome.checks);
    let per_fault = figure(&outcome, "availability", "per_fault");
    let partition = &per_fault.as_array().unwrap()[0];
    assert_eq!(partition["kind"], "partition");
    assert!(partition["uploads"].as_u64().unwrap() > 10);
    assert!(partition["ok_fraction"].as_f64().unwrap() >= 0.99, "{partition}");
}

/// Claim 1's scenarios, shortened (a 10 s loss): API servers of 50 uploads a second against
/// 100 offered in open loop. With two, the one left takes half the uploads, queues the rest up
/// to its in-flight bound and turns the others away with 429; with four, the three left carry
/// the load at two thirds of their capacity, fast, and the shared health check keeps clients
/// off the dead one after their first refused connection.
#[test]
fn losing_one_of_two_api_servers_halves_what_is_accepted_and_one_of_four_costs_nothing() {
    let outage = |servers: u32| {
        let file = match servers {
            2 => "scenarios/review/api-servers-2.json",
            _ => "scenarios/review/api-servers-4.json",
        };
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        let mut json: Value = serde_json::from_str(&text).unwrap();
        json["phases"] = serde_json::json!({ "faults_ms": 15000, "heal_ms": 3000,
                                             "liveness_bound_ms": 60000 });
        json["faults"]["plan"][0]["at_ms"] = 5000.into();
        json["faults"]["plan"][0]["duration_ms"] = 10000.into();
        let scenario = parse_scenario(file, &json.to_string()).expect("the shortened file loads");
        let outcome = run_seed(&scenario, 1);
        assert!(outcome.outcome.passed(), "{servers} servers: {:?}", outcome.checks);
        figure(&outcome, "availability", "per_fault")[0].clone()
    };
    let two = outage(2);
    let accepted = two["user_accepted_fraction"].as_f64().unwrap();
    assert!((0.3..0.8).contains(&accepted), "one server of 50/s takes about half of 100/s: {two}");
    assert!(two["user_latency_ms_p50"].as_u64().unwrap() > 1000, "queued to the bound: {two}");
    let four = outage(4);
    assert!(four["user_accepted_fraction"].as_f64().unwrap() >= 0.999, "{four}");
    assert!(four["user_latency_ms_p99"].as_u64().unwrap() < 500, "{four}");
    let refused =
        four["uploads"].as_u64().unwrap() - four["accepted_latency_ms_count"].as_u64().unwrap();
    assert!(refused <= 10, "the health check keeps clients off the dead server: {four}");
}

/// Claim 5's scenario (the management plane cut off from the API servers from 5 s to 20 s,
/// a TTL of 2 s): once the cache is stale, an upload waits at most one refresh timeout for its
/// key lookup and is answered 503 `auth_unavailable`, well within the client's own timeout,
/// rather than held until the client gives up.
#[test]
fn a_key_lookup_with_the_management_plane_away_answers_within_its_budget() {
    let path = workspace_root().join("scenarios/review/auth-ttl.json");
    let scenario = load_scenario(&path).expect("the review's scenarios load");
    let outcome = run_seed(&scenario, 1);
    let (cut_from_us, cut_until_us) = (5_000_000, 20_000_000);
    let mut invoked: std::collections::BTreeMap<u64, u64> = Default::default();
    let (mut refused, mut timed_out) = (Vec::new(), 0);
    for event in &outcome.events {
        match &event.kind {
            EventKind::Invoke { process, f, .. } if f == "upload" => {
                invoked.insert(*process, event.time_us);
            }
            EventKind::Fail { process, f, error, .. } if f == "upload" => {
                let began = invoked[process];
                if (cut_from_us..cut_until_us).contains(&began)
                    && error.contains("auth_unavailable")
                {
                    refused.push(event.time_us - began);
                }
            }
            EventKind::Info { process, f, .. } if f == "upload" => {
                timed_out += u32::from((cut_from_us..cut_until_us).contains(&invoked[process]));
            }
            _ => {}
        }
    }
    assert!(refused.len() >= 10, "uploads refused for want of auth: {refused:?}");
    // The lookup's budget is the refresh timeout (1 s), plus the request's own round trip.
    let slowest = refused.iter().max().copied().unwrap_or(0);
    assert!(slowest <= 1_200_000, "the slowest refusal took {slowest} µs");
    assert_eq!(timed_out, 0, "uploads begun during the cut that ended unknown");
}
