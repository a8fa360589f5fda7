//! The design review: two generations write the same bytes; each claim's verdict follows its
//! rule from given figures; bad input is one line and exit 2; the knobs the review compares
//! (acknowledge before replication, manual failover) do what they say.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

mod common;
use common::{pessimist, scratch};

use std::collections::BTreeMap;

use pessimist_reports::review::{ClaimVerdict, DesignFigures};
use pessimist_scenarios::review::{claim_designs, select_claims, CLAIMS};
use pessimist_scenarios::suite::workspace_root;
use pessimist_sim::run::run_seed;

/// The claim the reproducibility test generates: the lightest to simulate.
const LIGHT_CLAIM: &str = "queue-consistency";

#[test]
fn two_generations_write_the_same_bytes() {
    let directory = scratch("twice");
    let mut written = Vec::new();
    // Different worker counts too: the review must not depend on how it ran.
    for (run, jobs) in [("first", "1"), ("second", "2")] {
        let out = directory.join(run);
        let output = pessimist(&[
            "review",
            "--claim",
            LIGHT_CLAIM,
            "--seeds",
            "1",
            "--jobs",
            jobs,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let markdown = std::fs::read(out.join("review.md")).unwrap();
        let html = std::fs::read(out.join("index.html")).unwrap();
        written.push((markdown, html));
    }
    assert!(written[0].0 == written[1].0, "review.md differs between two generations");
    assert!(written[0].1 == written[1].1, "index.html differs between two generations");
    let markdown = String::from_utf8(written[0].0.clone()).unwrap();
    assert!(markdown.contains("--claim queue-consistency --seeds 1"), "{markdown}");
    assert!(markdown.contains("**Verdict: "), "{markdown}");
    let html = String::from_utf8(written[0].1.clone()).unwrap();
    assert!(html.contains("<svg"), "the charts are inline SVG");
    let root = workspace_root().display().to_string();
    assert!(!markdown.contains(&root) && !html.contains(&root), "no absolute paths");
}

#[test]
fn an_unknown_claim_is_one_line_and_exit_2() {
    let output = pessimist(&["review", "--claim", "no-such-claim", "--out", "/nonexistent/x"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknown claim \"no-such-claim\""), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_missing_scenario_is_a_one_line_error() {
    let claim = select_claims(&["queue-consistency".to_string()]).unwrap()[0];
    let error = claim_designs(claim, std::path::Path::new("/nonexistent")).unwrap_err();
    assert!(error.contains("scenarios/review/queue-partition.json"), "{error}");
    assert!(error.contains("cannot read"), "{error}");
    assert_eq!(error.lines().count(), 1, "{error}");
}

#[test]
fn every_claim_loads_and_names_its_designs() {
    for claim in CLAIMS {
        let designs = claim_designs(claim, &workspace_root()).unwrap();
        assert!(designs.len() >= 2, "{}: a claim compares designs", claim.name);
        for chart in claim.charts {
            for key in chart.figures {
                assert!(
                    claim.figures.iter().any(|figure| figure.key == *key),
                    "{}: chart figure {key} is not among the claim's figures",
                    claim.name
                );
            }
        }
    }
}

fn design(label: &str, values: &[(&str, f64)]) -> DesignFigures {
    DesignFigures {
        design: label.to_string(),
        label: label.to_string(),
        file: String::new(),
        description: String::new(),
        knobs: String::new(),
        seeds: 1,
        seeds_failing_a_check: 0,
        values: values.iter().map(|(key, value)| (key.to_string(), Some(*value))).collect(),
    }
}

/// Applies the rule of claim `name` to `designs` and checks the verdict.
fn check(name: &str, designs: &[DesignFigures], expect: ClaimVerdict) {
    let claim = CLAIMS.iter().find(|claim| claim.name == name).expect("a known claim");
    let finding = (claim.verdict)(designs);
    assert_eq!(finding.verdict, expect, "{name}: {}", finding.reason);
    assert!(!finding.reason.is_empty() && !finding.change.is_empty());
}

#[test]
fn verdicts_follow_their_rules() {
    // Leader faults a 99.9% month rides out, per design; the rule asks for one a day.
    let failover = |automatic: f64, manual: f64| {
        vec![
            design("automatic", &[("leader_faults_per_30_days", automatic)]),
            design("manual-5min", &[("leader_faults_per_30_days", manual)]),
        ]
    };
    check("failover", &failover(1792.0, 8.0), ClaimVerdict::Holds);
    check("failover", &failover(20.0, 8.0), ClaimVerdict::Fails);
    let claim = |name: &str| CLAIMS.iter().find(|claim| claim.name == name).unwrap();
    let finding = (claim("failover").verdict)(&failover(1792.0, 40.0));
    assert!(
        matches!(finding.verdict, ClaimVerdict::HoldsOnlyWhen(_)),
        "a manual design meeting the SLA makes the claim conditional: {:?}",
        finding.verdict
    );

    // Usage: the logged design's worst loss, no-log's loss, and the two write rates.
    let usage = |logged_lost: f64, unlogged_lost: f64, batched: f64, per_request: f64| {
        vec![
            design("log", &[("lost_max", logged_lost), ("store_writes_per_request", batched)]),
            design("no-log", &[("lost", unlogged_lost), ("store_writes_per_request", batched)]),
            design("flush-10ms", &[("lost_max", 0.0), ("store_writes_per_request", per_request)]),
        ]
    };
    check("usage-batching", &usage(0.0, 0.0, 0.3, 1.0), ClaimVerdict::Holds);
    check("usage-batching", &usage(1.0, 9.0, 0.3, 1.0), ClaimVerdict::Fails);
    check("usage-batching", &usage(0.0, 9.0, 0.8, 1.0), ClaimVerdict::Fails);
    let finding = (claim("usage-batching").verdict)(&usage(0.0, 9.0, 0.3, 1.0));
    assert!(
        matches!(finding.verdict, ClaimVerdict::HoldsOnlyWhen(_)),
        "losses without the log make the claim conditional on it: {:?}",
        finding.verdict
    );

    let partition = |cp_lost: f64, lossy_lost: f64| {
        vec![
            design(
                "cp",
                &[("acknowledged_lost_max", cp_lost), ("partition_refused_fraction", 0.5)],
            ),
            design(
                "ack-before-replication",
                &[("acknowledged_lost_max", lossy_lost), ("partition_refused_fraction", 0.0)],
            ),
        ]
    };
    check("queue-consistency", &partition(0.0, 12.0), ClaimVerdict::Holds);
    check("queue-consistency", &partition(1.0, 12.0), ClaimVerdict::Fails);
    check("queue-consistency", &partition(0.0, 0.0), ClaimVerdict::Fails);

    let pill = |pill_fleet: f64, predicted: f64, independent_fleet: f64| {
        vec![
            design(
                "quarantine",
                &[
                    ("crashes_per_job_max", 3.0),
                    ("max_attempts", 3.0),
                    ("fleet_down_fraction", 0.07),
                ],
            ),
            design(
                "no-quarantine",
                &[
                    ("workers", 3.0),
                    ("crashes_per_job_max", 40.0),
                    ("fleet_down_fraction", pill_fleet),
                ],
            ),
            design(
                "independent-crashes",
                &[
                    ("worker_down_fraction", 0.12),
                    ("fleet_down_fraction", independent_fleet),
                    ("fleet_down_predicted", predicted),
                ],
            ),
        ]
    };
    check("poison-pill", &pill(0.3, 0.0017, 0.0), ClaimVerdict::Holds);
    // Not correlated enough: the pill's fleet-down time is within 10x of P^N.
    check("poison-pill", &pill(0.01, 0.0017, 0.0), ClaimVerdict::Fails);
    // Independent crashes far above P^N: the control contradicts the model's premise.
    check("poison-pill", &pill(0.3, 0.0017, 0.5), ClaimVerdict::Fails);

    let capacity = |rows: &[(f64, f64)]| -> Vec<DesignFigures> {
        rows.iter()
            .map(|&(cores, p99)| {
                design(
                    &format!("{cores}-cores"),
                    &[
                        ("cores", cores),
                        ("cores_needed", 10.0),
                        ("job_latency_ms_p99", p99),
                        ("backlog_max", 100.0),
                    ],
                )
            })
            .collect()
    };
    check(
        "capacity",
        &capacity(&[(5.0, 60_000.0), (10.0, 3000.0), (15.0, 2000.0)]),
        ClaimVerdict::Holds,
    );
    check("capacity", &capacity(&[(5.0, 60_000.0), (10.0, 40_000.0)]), ClaimVerdict::Fails);
    let finding = (claim("capacity").verdict)(&capacity(&[
        (15.0, 4000.0),
        (5.0, 60_000.0),
        (10.0, 40_000.0),
    ]));
    let ClaimVerdict::HoldsOnlyWhen(condition) = finding.verdict else {
        panic!("only the larger fleet kept up: {:?}", finding.verdict)
    };
    assert!(condition.contains("15 cores (50% more)"), "{condition}");

    let ttl = |ttl_ms: f64, available: f64| {
        design(
            &format!("ttl-{ttl_ms}"),
            &[
                ("ttl_ms", ttl_ms),
                ("cut_ok_fraction", available),
                ("revocation_bound_ms", ttl_ms + 1000.0),
            ],
        )
    };
    check("edge-identity", &[ttl(2000.0, 0.999), ttl(30000.0, 1.0)], ClaimVerdict::Holds);
    check("edge-identity", &[ttl(2000.0, 0.5), ttl(30000.0, 0.9)], ClaimVerdict::Fails);
    let finding =
        (claim("edge-identity").verdict)(&[ttl(30000.0, 1.0), ttl(2000.0, 0.4), ttl(10000.0, 0.7)]);
    let ClaimVerdict::HoldsOnlyWhen(condition) = finding.verdict else {
        panic!("some TTLs held: {:?}", finding.verdict)
    };
    assert!(condition.contains("30 s or more"), "{condition}");

    // API servers: (servers, cores each, share accepted during the outage, p99 ms); 25
    // uploads per second per core, 100 offered. The derived figures come from the claim's own
    // derive step.
    let api = |rows: &[(f64, f64, f64, f64)]| {
        let mut designs: Vec<DesignFigures> = rows
            .iter()
            .map(|&(servers, cores, accepted, p99)| {
                design(
                    &format!("{servers}x{cores}"),
                    &[
                        ("api_servers", servers),
                        ("api_cores", cores),
                        ("uploads_per_s_per_core", 25.0),
                        ("uploaders", 20.0),
                        ("uploads_per_s", 5.0),
                        ("outage_accepted_fraction", accepted),
                        ("outage_latency_ms_p99", p99),
                    ],
                )
            })
            .collect();
        (claim("api-servers").derive)(&mut designs);
        designs
    };
    assert_eq!(
        pessimist_scenarios::review::value(
            &api(&[(3.0, 2.0, 1.0, 100.0)]),
            "3x2",
            "utilization_after"
        ),
        Some(1.0),
        "two survivors of 50 a second carry 100 at full utilization"
    );
    check(
        "api-servers",
        &api(&[(3.0, 2.0, 1.0, 300.0), (2.0, 2.0, 0.5, 1500.0), (4.0, 2.0, 1.0, 200.0)]),
        ClaimVerdict::Holds,
    );
    check(
        "api-servers",
        &api(&[(3.0, 2.0, 1.0, 300.0), (2.0, 2.0, 0.9995, 400.0)]),
        ClaimVerdict::Fails,
    );
    check(
        "api-servers",
        &api(&[(3.0, 2.0, 0.99, 1200.0), (2.0, 2.0, 0.5, 1500.0), (4.0, 2.0, 0.998, 200.0)]),
        ClaimVerdict::Fails,
    );
    let finding = (claim("api-servers").verdict)(&api(&[
        (3.0, 2.0, 1.0, 1180.0),
        (3.0, 3.0, 1.0, 170.0),
        (2.0, 2.0, 0.51, 1530.0),
        (4.0, 2.0, 1.0, 210.0),
    ]));
    let ClaimVerdict::HoldsOnlyWhen(condition) = finding.verdict else {
        panic!("only the designs with headroom met the SLA: {:?}", finding.verdict)
    };
    assert!(condition.contains("3x3 and 4x2"), "{condition}");
    assert!(condition.contains("100% of capacity"), "{condition}");
}

/// The lossy alternative the review measures loses acknowledged enqueues under the partition;
/// the CP queue, under the same seed, loses none.
#[test]
fn acknowledging_before_replication_loses_what_the_cp_queue_keeps() {
    let claim = select_claims(&["queue-consistency".to_string()]).unwrap()[0];
    let designs = claim_designs(claim, &workspace_root()).unwrap();
    let lost = |index: usize| {
        let outcome = run_seed(&designs[index].scenario, 1);
        let verdict = &outcome.checks["durability"];
        (verdict.passed(), verdict.figures["acknowledged_lost"].as_u64().unwrap())
    };
    assert_eq!(lost(0), (true, 0), "the CP queue keeps every acknowledged enqueue");
    let (passed, lossy) = lost(1);
    assert!(!passed && lossy > 0, "acknowledging before replication loses some: {lossy}");
}

/// With manual failover nobody campaigns before the operator's reaction time: the failover
/// takes at least that long, where an election takes a second or two.
#[test]
fn manual_failover_waits_for_the_operator() {
    let text = r#"{
      "name": "manual-failover",
      "topology": {"nodes": [{"name": "queue-1", "role": "queue"}, {"name": "queue-2", "role": "queue"}, {"name": "queue-3", "role": "queue"}], "clients": 1},
      "workload": {"kind": "queue", "producers": 1, "enqueue_per_s": 2, "workers": 1, "visibility_ms": 2000, "work_ms_min": 10, "work_ms_max": 50, "nack_fraction": 0.0, "poll_ms": 200, "attempt_timeout_ms": 1000, "attempts": 3},
      "phases": {"faults_ms": 40000, "heal_ms": 2000, "liveness_bound_ms": 30000},
      "faults": {"plan": [{"at_ms": 5000, "duration_ms": 30000, "fault": {"kind": "crash", "node": "@leader"}}]},
      "variants": [{"name": "manual", "knobs": {"queue": {"operator_reaction_ms": 20000}}}]
    }"#;
    let scenario = pessimist_scenarios::parse_scenario("manual-failover.json", text).unwrap();
    let failover_ms = |scenario: &pessimist_sim::scenario::Scenario| {
        let outcome = run_seed(scenario, 1);
        let figures: BTreeMap<String, serde_json::Value> =
            outcome.checks["failover"].figures.clone();
        figures["failover_ms_max"].as_u64().expect("one failover measured")
    };
    let automatic = failover_ms(&scenario);
    let manual = failover_ms(&scenario.with_variant(0));
    assert!(automatic < 5000, "an election takes seconds: {automatic} ms");
    // The operator's 20 s run from the last heartbeat the followers heard, a tick or two
    // before the crash.
    assert!((19_500..25_000).contains(&manual), "the operator reacts after 20 s: {manual} ms");
}

#[test]
fn the_review_knobs_are_validated() {
    let text = |knobs: &str| {
        format!(
            r#"{{"name": "x", "topology": {{"nodes": [{{"name": "queue-1", "role": "queue"}}]}},
              "knobs": {knobs},
              "workload": {{"kind": "queue", "producers": 1, "enqueue_per_s": 1, "workers": 1, "visibility_ms": 1000, "work_ms_min": 1, "work_ms_max": 2, "nack_fraction": 0.0, "poll_ms": 100, "attempt_timeout_ms": 500, "attempts": 2}},
              "phases": {{"faults_ms": 1000, "heal_ms": 1000, "liveness_bound_ms": 1000}}}}"#
        )
    };
    let error = pessimist_scenarios::parse_scenario(
        "x.json",
        &text(r#"{"queue": {"operator_reaction_ms": 50}}"#),
    )
    .unwrap_err();
    assert_eq!(error.field, "knobs.queue.operator_reaction_ms", "{error}");
    pessimist_scenarios::parse_scenario(
        "x.json",
        &text(r#"{"queue": {"operator_reaction_ms": 300000, "ack_before_replication": true}}"#),
    )
    .unwrap();
}
