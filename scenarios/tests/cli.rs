//! The `pessimist` command's contract: exit 0 when every check passed, 1 when one failed, 2
//! for bad input with one clear line, 3 when a check could not decide, and never a panic.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

mod common;
use common::{pessimist, scratch};

use pessimist_scenarios::suite::workspace_root;

/// Writes `text` as a scenario file and runs it; returns (exit code, stderr).
fn run_text(name: &str, text: &str) -> (i32, String) {
    let directory = scratch(name);
    let file = directory.join("scenario.json");
    std::fs::write(&file, text).unwrap();
    let output = pessimist(&[
        "run",
        file.to_str().unwrap(),
        "--seed",
        "1",
        "--out",
        directory.join("out").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code().unwrap(), stderr)
}

fn valid_text() -> String {
    std::fs::read_to_string(workspace_root().join("scenarios/seams/probe-crashes.json")).unwrap()
}

#[test]
fn a_passing_run_exits_0_and_writes_the_summary() {
    let out = scratch("pass").join("out");
    let output = pessimist(&[
        "run",
        "scenarios/seams/probe-gray.json",
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "passed");
    let seed = &summary["seeds"][0];
    assert_eq!(seed["seed"], 5);
    assert_eq!(seed["outcome"], "passed");
    assert_eq!(seed["history_hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        seed["replay"],
        common::printed_command("replay", "scenarios/seams/probe-gray.json", Some(5))
    );
    for check in ["durability", "integrity", "liveness"] {
        assert_eq!(seed["checks"][check]["status"], "passed", "{check}");
    }
    // No minimum in this scenario: availability only measures, and says so.
    assert_eq!(seed["checks"]["availability"]["status"], "figures");
    let history = std::fs::read_to_string(out.join(seed["history"].as_str().unwrap())).unwrap();
    let events = pessimist_core::history::from_json_lines(&history).unwrap();
    assert_eq!(
        pessimist_core::history::fingerprint(&events),
        seed["history_hash"].as_str().unwrap()
    );
}

#[test]
fn a_failing_check_exits_1_and_prints_the_replay_command() {
    let out = scratch("fail").join("out");
    let output = pessimist(&[
        "run",
        "scenarios/examples/ack-before-fsync.json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("durability: "), "{stdout}");
    for verb in ["replay", "shrink"] {
        let command =
            common::printed_command(verb, "scenarios/examples/ack-before-fsync.json", Some(1));
        assert!(stdout.contains(&format!("{verb}: {command}")), "{stdout}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "failed");
    assert!(
        summary["seeds"][0]["checks"]["durability"]["figures"]["lost_acknowledged_appends"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn replay_prints_the_history_and_the_same_hash() {
    let out = scratch("replay").join("out");
    let run = pessimist(&[
        "run",
        "scenarios/seams/probe-crashes.json",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let replay = pessimist(&["replay", "scenarios/seams/probe-crashes.json", "--seed", "3"]);
    assert_eq!(replay.status.code(), Some(0));
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(text.contains("nemesis injects #1 crash"), "{text}");
    assert!(text.contains("probe-1: restart"));
    assert!(text
        .contains(&format!("history {}", summary["seeds"][0]["history_hash"].as_str().unwrap())));
}

/// Each bad input, the exit code 2, and what the one line must say.
#[test]
fn bad_input_exits_2_with_file_line_column_and_field() {
    let valid = valid_text();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "syntax",
            valid.replacen("\"topology\": {", "\"topology\": {,", 1),
            vec!["scenario.json:4:16: field `topology`: key must be a string"],
        ),
        (
            "unknown-field",
            valid.replacen("\"seeds\"", "\"seedz\"", 1),
            vec!["scenario.json:", "unknown field `seedz`"],
        ),
        (
            "unknown-fault-field",
            valid.replacen("\"node\": \"probe-2\" }", "\"node\": \"probe-2\", \"nod\": 1 }", 1),
            vec!["field `faults.plan", "unknown field `nod`"],
        ),
        (
            "unknown-kind",
            valid.replacen("\"kind\": \"pause\"", "\"kind\": \"paws\"", 1),
            vec!["field `faults.plan", "unknown variant `paws`"],
        ),
        (
            "wrong-type",
            valid.replacen("\"faults_ms\": 20000", "\"faults_ms\": \"soon\"", 1),
            vec!["field `phases.faults_ms`", "invalid type"],
        ),
        (
            "unknown-node",
            valid.replacen("\"node\": \"probe-3\" } }", "\"node\": \"probe-9\" } }", 1),
            vec!["scenario.json:18:54: field `faults.plan[3].fault`", "probe-9"],
        ),
        (
            "late-fault",
            valid.replacen("\"at_ms\": 16000", "\"at_ms\": 26000", 1),
            vec!["scenario.json:20:18: field `faults.plan[5].at_ms`", "after the fault phase"],
        ),
        (
            "missing-field",
            valid.replacen("\"liveness_bound_ms\": 15000", "\"liveness_ms\": 15000", 1),
            vec!["unknown field `liveness_ms`"],
        ),
        (
            "expect-a-measure-to-fail",
            valid.replacen(
                "\"checks\": { \"linearizability\": true }",
                "\"checks\": { \"linearizability\": true, \"expect_failures\": [\"availability\"] }",
                1,
            ),
            vec!["checks.expect_failures[0]", "\"availability\" only measures in this scenario"],
        ),
        ("empty", String::new(), vec!["scenario.json:1:0", "EOF"]),
        ("trailing", format!("{valid} {{}}"), vec!["trailing characters"]),
    ];
    for (name, text, wanted) in cases {
        assert_ne!(text, valid, "case {name} must change the text");
        let (code, stderr) = run_text(name, &text);
        assert_eq!(code, 2, "case {name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "case {name}: one line, got {stderr}");
        for fragment in wanted {
            assert!(stderr.contains(fragment), "case {name}: {stderr:?} lacks {fragment:?}");
        }
    }
}

/// The usage pipeline's topology and knobs: each mistake named, exit 2.
#[test]
fn a_bad_usage_pipeline_exits_2_naming_what_is_wrong() {
    let path =
        pessimist_scenarios::suite::workspace_root().join("scenarios/usage-api-crash-log-on.json");
    let valid = std::fs::read_to_string(path).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no-archive",
            valid.replacen("\"role\": \"archive\"", "\"role\": \"store\"", 1),
            "field `topology.nodes`: the usage pipeline needs store nodes, one billing node and \
             one archive node (found 4 store, 1 billing, 0 archive)",
        ),
        (
            "period",
            valid.replacen("\"period_ms\": 60000", "\"period_ms\": 65000", 1),
            "field `knobs.billing.period_ms`: must be a multiple of usage.window_ms (10000)",
        ),
        ("usage-knob", valid.replacen("\"log\": true", "\"wal\": true", 1), "unknown field `wal`"),
    ];
    for (name, text, wanted) in cases {
        assert_ne!(text, valid, "case {name} must change the text");
        let (code, stderr) = run_text(name, &text);
        assert_eq!(code, 2, "case {name}: {stderr}");
        assert!(stderr.contains(wanted), "case {name}: {stderr:?} lacks {wanted:?}");
    }
}

#[test]
fn a_missing_file_or_bad_flags_exit_2() {
    let missing = pessimist(&["run", "scenarios/no-such-file.json"]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.starts_with("pessimist: scenarios/no-such-file.json: cannot read:"), "{stderr}");
    let conflicting =
        pessimist(&["run", "scenarios/seams/probe-gray.json", "--seed", "1", "--seeds", "3"]);
    assert_eq!(conflicting.status.code(), Some(2));
    let unknown = pessimist(&["frobnicate"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn lincheck_checks_published_histories_and_refuses_malformed_ones() {
    let data = "sim/tests/data/lincheck/porcupine";
    let agree = pessimist(&[
        "lincheck",
        &format!("{data}/etcd/etcd_000.json"),
        &format!("{data}/kv/c10-bad.json"),
    ]);
    let stdout = String::from_utf8_lossy(&agree.stdout);
    assert_eq!(agree.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("not-linearizable"), "{stdout}");
    let (code, stderr) = {
        let directory = scratch("lincheck-bad");
        let file = directory.join("history.json");
        std::fs::write(&file, r#"{"model": "cas-register", "init": null, "history": [{"process": 0, "type": "ok", "f": "read", "value": 1}]}"#).unwrap();
        let output = pessimist(&["lincheck", file.to_str().unwrap()]);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("history[0]"), "{stderr}");
    let bad_timeout =
        pessimist(&["lincheck", "--timeout", "soon", &format!("{data}/etcd/etcd_000.json")]);
    assert_eq!(bad_timeout.status.code(), Some(2));
}

/// A check that could not decide makes its seed inconclusive: never a pass, never a failure.
/// The report says so in its own words and the command exits 3.
#[test]
fn an_undecided_check_is_inconclusive_and_exits_3() {
    use pessimist_sim::check::{Outcome, Verdict};
    use pessimist_sim::summary::{RunSummary, SeedSummary};
    use std::collections::BTreeMap;

    let directory = scratch("inconclusive");
    let undecided = Verdict::unknown(serde_json::json!("budget"), BTreeMap::new());
    let passed = Verdict::from_violations(Vec::new(), BTreeMap::new());
    let checks = BTreeMap::from([
        ("linearizability".to_string(), undecided),
        ("durability".to_string(), passed),
    ]);
    let seed = SeedSummary {
        seed: 4,
        history_hash: String::new(),
        outcome: Outcome::of_checks(checks.values()),
        checks,
        replay: "pessimist replay small.json --seed 4".into(),
        shrink: None,
        history: None,
        fault_events: 0,
        history_events: 0,
    };
    assert_eq!(seed.outcome, Outcome::Inconclusive);
    let run = RunSummary {
        must_happen: Vec::new(),
        scenario: "small".into(),
        file: "small.json".into(),
        description: String::new(),
        heal_ok_fraction_min: None,
        outcome: seed.outcome,
        seeds: vec![seed],
    };
    std::fs::write(directory.join("summary.json"), serde_json::to_string(&run).unwrap()).unwrap();
    let output = pessimist(&["report", directory.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
    let markdown = std::fs::read_to_string(directory.join("report.md")).unwrap();
    assert!(markdown.contains("0 failed, 1 inconclusive: **INCONCLUSIVE**"), "{markdown}");
    assert!(
        markdown.contains("Seed 4 inconclusive: linearizability could not decide"),
        "{markdown}"
    );
    assert!(markdown.contains("| linearizability | UNKNOWN | 0 | 0 | 0 | 1 |"), "{markdown}");
}
