//! What a run covered: a fault that cannot bite is reported vacuous (and fails a scenario that
//! demands every fault bite), and a situation no seed reaches fails the scenario.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

mod common;
use common::{pessimist, scratch};

use pessimist_scenarios::suite::workspace_root;
use serde_json::{json, Value};

/// The seam probe's gray-failure scenario with `change` applied, run on seeds 1 and 2: (exit
/// code, stdout, summary.json).
fn run_changed(name: &str, change: impl FnOnce(&mut Value)) -> (i32, String, Value) {
    run_seeds(name, &["--seeds", "2"], change)
}

fn run_seeds(name: &str, seeds: &[&str], change: impl FnOnce(&mut Value)) -> (i32, String, Value) {
    let text =
        std::fs::read_to_string(workspace_root().join("scenarios/seams/probe-gray.json")).unwrap();
    let mut scenario: Value = serde_json::from_str(&text).unwrap();
    change(&mut scenario);
    let directory = scratch(name);
    let file = directory.join("scenario.json");
    std::fs::write(&file, serde_json::to_string_pretty(&scenario).unwrap()).unwrap();
    let out = directory.join("out");
    let mut args = vec!["run", file.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(seeds);
    let output = pessimist(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let summary = std::fs::read(out.join("summary.json"))
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
        .unwrap_or(Value::Null);
    (output.status.code().unwrap(), format!("{stdout}{stderr}"), summary)
}

/// Two crashes of one node, the second while the first still holds it down: the second can
/// hit nothing.
fn crash_twice(scenario: &mut Value) {
    scenario["faults"]["plan"] = json!([
        { "at_ms": 1000, "duration_ms": 6000, "fault": { "kind": "crash", "node": "probe-1" } },
        { "at_ms": 3000, "duration_ms": 2000, "fault": { "kind": "crash", "node": "probe-1" } }
    ]);
}

#[test]
fn a_fault_that_cannot_bite_is_vacuous_and_fails_where_bite_is_demanded() {
    let (code, output, summary) = run_changed("vacuous-counted", |scenario| {
        crash_twice(scenario);
        scenario["checks"] = json!({ "faults_bite": false });
    });
    assert_eq!(code, 0, "vacuous faults are figures unless demanded: {output}");
    let figures = &summary["seeds"][0]["checks"]["faults_bite"];
    assert_eq!(figures["status"], "figures");
    assert_eq!(figures["figures"]["faults"], 2);
    assert_eq!(figures["figures"]["vacuous_by_kind"]["crash"], 1, "{figures}");

    let (code, output, summary) = run_changed("vacuous-demanded", |scenario| {
        crash_twice(scenario);
        scenario["checks"] = json!({ "faults_bite": true });
    });
    assert_eq!(code, 1, "{output}");
    let verdict = &summary["seeds"][0]["checks"]["faults_bite"];
    assert_eq!(verdict["status"], "failed");
    let violations = verdict["violations"].as_array().unwrap();
    assert!(
        violations.iter().any(|line| line.as_str().unwrap().starts_with("fault 1 (crash)")),
        "{violations:?}"
    );
    assert!(output.contains("faults_bite"), "{output}");
}

#[test]
fn a_situation_no_seed_reaches_fails_the_scenario() {
    let (code, output, summary) = run_changed("unreached", |scenario| {
        scenario["must_happen"] = json!(["fault_bit", "worker_oom_kill"]);
    });
    assert_eq!(code, 1, "{output}");
    assert_eq!(summary["outcome"], "failed");
    assert_eq!(summary["seeds"][0]["outcome"], "passed", "every check of the seed passed");
    assert_eq!(
        summary["must_happen"],
        json!([
            { "situation": "fault_bit", "seeds_reached": 2, "seeds": 2 },
            { "situation": "worker_oom_kill", "seeds_reached": 0, "seeds": 2 },
        ])
    );
    assert!(output.contains("worker_oom_kill"), "{output}");
    // One seed cannot show what must happen in some seed: it reports, and does not fail.
    let (code, output, summary) = run_seeds("unreached-one-seed", &["--seed", "1"], |scenario| {
        scenario["must_happen"] = json!(["worker_oom_kill"]);
    });
    assert_eq!(code, 0, "{output}");
    assert_eq!(summary["must_happen"][0]["seeds_reached"], 0);
    assert!(output.contains("not reached"), "{output}");

    let (code, output, _) = run_changed("reached", |scenario| {
        scenario["must_happen"] = json!(["fault_bit"]);
    });
    assert_eq!(code, 0, "{output}");
}

#[test]
fn what_can_never_bite_or_happen_is_refused() {
    let (code, output, _) = run_changed("leader-without-raft", |scenario| {
        scenario["faults"]["plan"] = json!([{ "at_ms": 1000, "duration_ms": 1000, "fault": { "kind": "crash", "node": "@leader" } }]);
    });
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("faults.plan[0].fault") && output.contains("no leader"), "{output}");
    let (code, output, _) = run_changed("bad-situation", |scenario| {
        scenario["must_happen"] = json!(["Leader Change"]);
    });
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("must_happen[0]"), "{output}");
}
