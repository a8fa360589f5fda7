//! A report written from a small results directory has every section a design review reads,
//! with the figures its histories and verdicts imply: the seeds pooled and one line per seed,
//! the distributions pooled over seeds, and the linearizability witness of the failing seed.
//!
//! The run is made by hand (two seeds of a probe-like history, verdicts from the real
//! checkers) so the expected figures can be worked out here; `scenarios/tests/sweep.rs`
//! reports on real simulated runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pessimist_core::history::{to_json_lines, Event, EventKind};
use pessimist_sim::check::{self, Distribution, Outcome, Verdict};
use pessimist_sim::summary::{RunSummary, SeedSummary};
use serde_json::{json, Value};

/// A history of one client after another on node `n1`: an operation every 200 ms from 100 ms,
/// answered in 50 ms; for those invoked during the fault (2 s to 4 s) appends time out
/// (`info`) and reads take 150 ms; the fault ends at 4.1 s, the heal at 6 s, the run at
/// 7.95 s. With `stale_read`, one last read misses acknowledged
/// appends: not linearizable.
fn history(stale_read: bool) -> (Vec<Event>, u64) {
    let mut events = Vec::new();
    let mut push = |time_ms: u64, kind: EventKind| {
        events.push(Event { index: events.len() as u64, time_us: time_ms * 1000, kind });
        events.len() as u64 - 1
    };
    push(0, EventKind::Phase { name: "faults".into(), detail: json!({}) });
    let (mut acknowledged, mut next_value) = (Vec::new(), 1u64);
    let mut faulted = false;
    let mut stale_invoke_ms = 0;
    for step in 0..40u64 {
        let at_ms = 100 + step * 200;
        if at_ms >= 2000 && !faulted {
            push(
                2000,
                EventKind::FaultStart {
                    fault: 0,
                    kind: "crash".into(),
                    detail: json!({"node": "n1"}),
                },
            );
            faulted = true;
        }
        if (4000..4200).contains(&at_ms) {
            // Healed once the last slow read (3.9 s + 150 ms) is answered.
            push(at_ms, EventKind::FaultEnd { fault: 0, kind: "crash".into() });
        }
        if (6000..6200).contains(&at_ms) {
            push(6000, EventKind::Phase { name: "heal".into(), detail: json!({}) });
        }
        let in_fault = (2000..4000).contains(&at_ms);
        let process = step % 3;
        if step % 2 == 0 {
            let value = next_value;
            next_value += 1;
            let input = json!({"node": "n1", "value": value});
            push(at_ms, EventKind::Invoke { process, f: "append".into(), value: input.clone() });
            if in_fault {
                push(
                    at_ms + 150,
                    EventKind::Info {
                        process,
                        f: "append".into(),
                        value: input,
                        error: "timeout".into(),
                    },
                );
            } else {
                push(at_ms + 50, EventKind::Ok { process, f: "append".into(), value: input });
                acknowledged.push(value);
            }
        } else {
            let mut values = acknowledged.clone();
            if stale_read && step == 39 {
                values.truncate(1);
                stale_invoke_ms = at_ms;
            }
            push(
                at_ms,
                EventKind::Invoke { process, f: "read".into(), value: json!({"node": "n1"}) },
            );
            let latency_ms = if in_fault { 150 } else { 50 };
            push(
                at_ms + latency_ms,
                EventKind::Ok {
                    process,
                    f: "read".into(),
                    value: json!({"node": "n1", "values": values}),
                },
            );
        }
    }
    (events, stale_invoke_ms)
}

/// A checker's verdict that only measures: a staleness per event.
fn staleness(samples: &[f64]) -> Verdict {
    Verdict::figures_only(BTreeMap::from([("keys".to_string(), json!(samples.len()))]))
        .with_distribution(
            "new_key_delay_ms",
            Distribution::from_values("ms", "time for a new key to work", samples.iter().copied()),
        )
}

fn seed(directory: &Path, seed: u64, events: &[Event], delays_ms: &[f64]) -> SeedSummary {
    let relative = format!("histories/seed-{seed}.jsonl");
    std::fs::write(directory.join(&relative), to_json_lines(events)).unwrap();
    let checks = BTreeMap::from([
        ("linearizability".to_string(), pessimist_sim::probe::check::linearizability(events)),
        ("availability".to_string(), check::availability(events, None)),
        ("auth_keys".to_string(), staleness(delays_ms)),
    ]);
    SeedSummary {
        seed,
        history_hash: format!("hash-{seed}"),
        outcome: Outcome::of_checks(checks.values()),
        checks,
        replay: format!("cargo run --release -- replay small.json --seed {seed}"),
        shrink: None,
        history: Some(relative),
        fault_events: 1,
        history_events: events.len(),
    }
}

fn scratch() -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("pessimist-report-sections-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(directory.join("histories")).unwrap();
    directory
}

#[test]
fn a_report_has_the_seeds_the_distributions_and_the_witness() {
    let directory = scratch();
    let (passing, _) = history(false);
    let (failing, stale_invoke_ms) = history(true);
    let seeds = vec![
        seed(&directory, 1, &passing, &[100.0, 200.0, 300.0]),
        seed(&directory, 2, &failing, &[400.0, 5000.0]),
    ];
    assert!(
        seeds[0].outcome == Outcome::Passed && seeds[1].outcome == Outcome::Failed,
        "seed 2 reads stale: {:?}",
        seeds[1].checks
    );
    let run = RunSummary {
        must_happen: Vec::new(),
        scenario: "small".into(),
        file: "small.json".into(),
        description: String::new(),
        heal_ok_fraction_min: None,
        outcome: Outcome::Failed,
        seeds,
    };
    std::fs::write(directory.join("summary.json"), serde_json::to_string_pretty(&run).unwrap())
        .unwrap();

    let written = pessimist_reports::write_report(&directory, &directory).expect("report");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&written.json).unwrap()).unwrap();
    let scenario = &json["scenarios"][0];

    // One line per seed: 40 operations, 5 appends timed out (2 s to 4 s), all ok after the heal.
    let rows = scenario["seed_rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["seed"].clone(), rows[0]["outcome"].clone()), (json!(1), json!("passed")));
    assert_eq!((rows[1]["seed"].clone(), rows[1]["outcome"].clone()), (json!(2), json!("failed")));
    assert_eq!(rows[0]["completed"], json!(40));
    assert_eq!(rows[0]["availability"], json!(35.0 / 40.0));
    assert_eq!(rows[0]["availability_after_heal"], json!(1.0));
    assert_eq!(rows[0]["availability_before_heal"], json!(25.0 / 30.0));
    assert_eq!(rows[0]["latency_max_ms"], json!(150.0));
    assert_eq!(rows[0]["fault_windows"], json!(1));

    // The seeds pooled: both reach every bucket; the fault touches the buckets of 2, 3 and 4 s.
    let pooled = &scenario["pooled"];
    assert_eq!(pooled["seeds"], json!(2));
    let buckets = pooled["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 8, "{pooled}");
    let faulted: Vec<f64> =
        buckets.iter().map(|bucket| bucket["fault_fraction"].as_f64().unwrap()).collect();
    assert_eq!(faulted, [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(buckets[2]["faults_mean"], json!(1.0));
    assert_eq!(buckets[3]["availability"], json!(0.4), "3 s to 4 s: 2 of 5 ok, in both seeds");
    assert_eq!(buckets[3]["availability_min"], json!(0.4));
    assert_eq!(pooled["latency_p99_ms"], json!(150.0));

    // The distribution pooled over both seeds' five events.
    let distributions = scenario["distributions"].as_array().unwrap();
    assert_eq!(distributions.len(), 1);
    let delays = &distributions[0];
    assert_eq!(
        (delays["check"].clone(), delays["name"].clone()),
        (json!("auth_keys"), json!("new_key_delay_ms"))
    );
    assert_eq!((delays["seeds"].clone(), delays["count"].clone()), (json!(2), json!(5)));
    assert_eq!(
        (delays["p50"].clone(), delays["p99"].clone(), delays["max"].clone()),
        (json!(300.0), json!(5000.0), json!(5000.0))
    );

    // The witness of the failing seed: the stale read, at its simulated time.
    let failing_seed = &scenario["failing"][0];
    assert_eq!(failing_seed["failed_checks"], json!(["linearizability"]));
    let witness = &failing_seed["witnesses"]["linearizability"];
    assert_eq!(witness["key"], json!("n1"));
    assert_eq!(witness["refuted_by"]["invoke_time_us"], json!(stale_invoke_ms * 1000));
    assert_eq!(witness["refuted_by"]["output"], json!("1,"));
    assert!(witness["linearized"].as_array().unwrap().len() <= 20, "the witness is bounded");
    assert!(
        !scenario["checks"]["linearizability"]["figures"]
            .as_object()
            .unwrap()
            .keys()
            .any(|key| key.starts_with("witness")),
        "a witness is shown, not averaged"
    );

    let markdown = std::fs::read_to_string(&written.markdown).unwrap();
    for expected in [
        "### Across seeds",
        "| seed | verdict | completed | availability | before heal | after heal |",
        "| 1 | passed | 40 | 87.50% | 83.33% | 100.00% | 50 ms | 150 ms | 150 ms | 1 |",
        "| 2 | FAILED | 40 |",
        "lowest availability: seed 1 (87.50%)",
        "### Staleness and delay distributions",
        "- auth_keys.new_key_delay_ms (time for a new key to work): 5 events over 2 seeds (2 with events): p50 300 ms, p90 5000 ms, p99 5000 ms, max 5000 ms",
        "linearizability witness. Not linearizable as kv for key \"n1\"",
        &format!(
            "No linearization exists from history[{}] at 7950 ms on: process 0's get null returned \"1,\"",
            failing.len() - 1
        ),
        "| history | process | call | returned | invoked | completed | state after |",
        &format!("| [{}] | 0 | get null | \"1,\" | 7900 ms | 7950 ms | - |", failing.len() - 2),
        "Where the search for an order got stuck, its last steps:",
        "None of these can come next in state",
    ] {
        assert!(markdown.contains(expected), "report.md lacks {expected:?}:\n{markdown}");
    }
    assert!(
        !markdown.contains("- linearizability: not linearizable"),
        "the table replaces the text"
    );

    let html = std::fs::read_to_string(&written.html).unwrap();
    // The example seed's three charts, the pooled three, one histogram, the witness's bars.
    assert_eq!(html.matches("<svg").count(), 8, "{html}");
    // The stale read's bar, named by its invoke's position.
    let stale_bar = format!("<title>[{}] get null -&gt; &quot;1,&quot;</title>", failing.len() - 2);
    for expected in [
        "<h3>Across seeds</h3>",
        "2 of 2 seeds read",
        "Throughput, 2 seeds",
        "Latency, 2 seeds together",
        "Availability, 2 seeds",
        "Every seed read (2)",
        "<tr class=\"failed\"><td>2</td>",
        "<h3>Staleness and delay distributions</h3>",
        "<h4>auth_keys.new_key_delay_ms</h4>",
        "p99 5000 ms",
        "<b>linearizability witness.</b>",
        "<tr class=\"stuck\">",
        "<td><code>7900 ms</code></td><td><code>7950 ms</code></td>",
        stale_bar.as_str(),
        "process 0</text>",
        " earlier steps</td></tr>",
    ] {
        assert!(html.contains(expected), "index.html lacks {expected:?}");
    }
    let _ = std::fs::remove_dir_all(directory);
}
