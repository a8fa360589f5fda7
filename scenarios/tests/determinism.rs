//! The same seed gives the same history, in one process and in two; different seeds give
//! different histories.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

use std::path::Path;
use std::process::Command;

use pessimist_scenarios::{load_scenario, suite::workspace_root};
use pessimist_sim::run::run_seed;

/// A shipped scenario: the queue's in `scenarios/`, the seam probe's in `scenarios/seams/`.
fn scenario(name: &str) -> pessimist_sim::scenario::Scenario {
    load_scenario(&workspace_root().join(path(name))).expect("the shipped scenarios load")
}

fn path(name: &str) -> String {
    if name.starts_with("probe-") {
        format!("scenarios/seams/{name}")
    } else {
        format!("scenarios/{name}")
    }
}

#[test]
fn same_seed_same_history_twice_in_one_process() {
    for name in [
        "probe-swarm.json",
        "probe-crashes.json",
        "probe-gray.json",
        "queue-swarm.json",
        "queue-leader-crash-loop.json",
        "service-swarm.json",
        "store-swarm.json",
    ] {
        let scenario = scenario(name);
        let first = run_seed(&scenario, 42);
        // Another seed in between, so any state leaking between runs in one process shows.
        let _ = run_seed(&scenario, 7);
        let second = run_seed(&scenario, 42);
        assert_eq!(
            first.history_hash, second.history_hash,
            "{name}: seed 42 diverged within one process"
        );
        assert_eq!(first.events, second.events);
        assert!(first.events.len() > 100, "{name}: a run should record a real history");
    }
}

#[test]
fn different_seeds_give_different_histories() {
    let scenario = scenario("probe-swarm.json");
    let hashes: std::collections::BTreeSet<String> =
        (1..=5).map(|seed| run_seed(&scenario, seed).history_hash).collect();
    assert_eq!(hashes.len(), 5);
}

fn hash_from_a_new_process(name: &str, out: &Path, seed: u64) -> String {
    let status = Command::new(env!("CARGO_BIN_EXE_pessimist"))
        .args(["run", &path(name), "--seed", &seed.to_string(), "--out"])
        .arg(out)
        .current_dir(workspace_root())
        .output()
        .expect("the pessimist binary runs");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    summary["seeds"][0]["history_hash"].as_str().unwrap().to_string()
}

#[test]
fn same_seed_same_history_in_two_processes() {
    let scratch =
        std::env::temp_dir().join(format!("pessimist-determinism-{}", std::process::id()));
    for name in ["probe-swarm.json", "queue-swarm.json", "service-swarm.json", "store-swarm.json"] {
        let first = hash_from_a_new_process(name, &scratch.join("first"), 9);
        let second = hash_from_a_new_process(name, &scratch.join("second"), 9);
        assert_eq!(first, second, "{name}");
        assert_eq!(
            first,
            run_seed(&scenario(name), 9).history_hash,
            "{name}: the binary and the library agree"
        );
    }
    let _ = std::fs::remove_dir_all(scratch);
}

/// Runs the swarms (the probe's, the queue's, the service's and the store's) on the seeds the environment names
/// (`MADSIM_TEST_SEED`, default 1, and `MADSIM_TEST_NUM`, default 20), and prints the command
/// that replays any failure.
#[test]
fn swarm_seeds_from_the_environment() {
    let first: u64 =
        std::env::var("MADSIM_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let count: u64 =
        std::env::var("MADSIM_TEST_NUM").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut failed = Vec::new();
    for name in ["probe-swarm.json", "queue-swarm.json", "service-swarm.json", "store-swarm.json"] {
        let scenario = scenario(name);
        for outcome in (first..first + count).map(|seed| run_seed(&scenario, seed)) {
            if outcome.outcome.passed() {
                continue;
            }
            let violations: Vec<&String> =
                outcome.checks.values().flat_map(|check| &check.violations).collect();
            failed.push(format!(
                "{name} seed {} failed: {:?}\n  replay: {}",
                outcome.seed,
                violations,
                pessimist_scenarios::suite::replay_command(
                    &format!("scenarios/{name}"),
                    outcome.seed
                )
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// The clock-skew scenario shows the hazard it exists for: a leader clock running ahead cuts
/// leases short (a worker's ack rejected as stale before its visibility timeout passed), and
/// fencing still keeps every job from being acked twice.
#[test]
fn a_skewed_leader_clock_cuts_leases_short() {
    let scenario = scenario("queue-clock-skew.json");
    let mut cut_short = 0;
    for seed in scenario.seeds.clone() {
        let outcome = run_seed(&scenario, seed);
        assert!(outcome.outcome.passed(), "seed {seed}: {:?}", outcome.checks);
        cut_short += outcome.checks["leases"].figures["leases_cut_short"].as_u64().unwrap();
    }
    assert!(cut_short > 0, "no lease was cut short on any seed");
}

/// The simulation's content cache of thumbnails (`resize::memo`) changes nothing a run
/// records: a pill storm (every job's retries and the same pills again) gives the same
/// history with the cache off, on and empty, and on and full.
#[test]
fn the_thumbnail_cache_changes_no_history() {
    let scenario = scenario("service-pill-storm.json");
    pessimist_core::resize::memo::set_enabled(false);
    let uncached = run_seed(&scenario, 3);
    pessimist_core::resize::memo::set_enabled(true);
    let filling = run_seed(&scenario, 3);
    let hits_before = pessimist_core::resize::memo::hits();
    let filled = run_seed(&scenario, 3);
    let hits = pessimist_core::resize::memo::hits() - hits_before;
    assert!(hits > 0, "the second run with the cache on served nothing from it");
    assert!(uncached.events.len() > 100, "a run records a real history");
    assert_eq!(uncached.history_hash, filling.history_hash, "the cache changed a history");
    assert_eq!(uncached.history_hash, filled.history_hash, "a cache hit changed a history");
    assert_eq!(uncached.events, filled.events);
}
