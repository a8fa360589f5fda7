//! The command line of sweeps, shards, merges, reports, shrinking and design comparison.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

mod common;
use common::{pessimist, scratch};

use std::path::{Path, PathBuf};
use std::process::Output;

use pessimist_scenarios::suite::workspace_root;

/// Two cheap scenarios: one that passes and one that fails on purpose.
const SCENARIOS: [&str; 2] =
    ["scenarios/seams/probe-crashes.json", "scenarios/examples/ack-before-fsync.json"];

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn sweep(out: &Path, extra: &[&str]) -> Output {
    let mut args =
        vec!["sweep", SCENARIOS[0], SCENARIOS[1], "--seeds", "4", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    pessimist(&args)
}

/// Every file under `directory`, by relative path, with its bytes.
fn tree(directory: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, directory: &Path, found: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                found.push((
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    let mut found = Vec::new();
    walk(directory, directory, &mut found);
    found.sort();
    found
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display())),
    )
    .unwrap()
}

#[test]
fn sweep_results_do_not_depend_on_the_number_of_worker_threads() {
    let one = scratch("jobs-1");
    let two = scratch("jobs-2");
    let junit = scratch("junit").with_extension("xml");
    let first = sweep(&one, &["--jobs", "1", "--junit", junit.to_str().unwrap()]);
    let second = sweep(&two, &["--jobs", "2"]);
    // ack-before-fsync fails on purpose: exit 1, and each failing seed says how to chase it.
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let output = text(&first);
    for verb in ["replay", "shrink"] {
        let command =
            common::printed_command(verb, "scenarios/examples/ack-before-fsync.json", None);
        assert!(output.contains(&format!("{verb}: {command}")), "{output}");
    }
    let (one_tree, two_tree) = (tree(&one), tree(&two));
    // sweep.json, two summaries, eight histories.
    assert_eq!(
        one_tree.len(),
        11,
        "{:?}",
        one_tree.iter().map(|(path, _)| path).collect::<Vec<_>>()
    );
    assert!(one_tree == two_tree, "--jobs 1 and --jobs 2 wrote different results");
    let manifest = read_json(&one.join("sweep.json"));
    assert_eq!(manifest["seeds_run"], 8);
    assert!(manifest["seeds_failed"].as_u64().unwrap() >= 1);
    assert_eq!(manifest["outcome"], "failed");

    let xml = std::fs::read_to_string(&junit).unwrap();
    // Eight seeds, and probe-crashes' two situations that must happen, each a case.
    assert!(xml.contains("<testsuites name=\"pessimist\" tests=\"10\""), "{xml}");
    assert!(xml.contains("<testsuite name=\"probe-crashes\" tests=\"6\" skipped=\"0\" errors=\"0\" failures=\"0\""), "{xml}");
    assert!(xml.contains("must happen: corruption_detected"), "{xml}");
    let failures = manifest["seeds_failed"].as_u64().unwrap();
    assert_eq!(xml.matches("<failure ").count() as u64, failures, "{xml}");
    assert!(xml.contains("failed checks: durability"), "{xml}");

    // The report of the sweep: a self-contained page with charts, Markdown and JSON.
    let report = pessimist(&["report", one.to_str().unwrap()]);
    assert_eq!(report.status.code(), Some(1), "{}", text(&report));
    let html = std::fs::read_to_string(one.join("index.html")).unwrap();
    // Witness charts are drawn by the page itself, charts by plotters.
    let witnesses = html.matches("<svg xmlns=").count();
    assert_eq!(
        html.matches("<svg").count() - witnesses,
        12,
        "two scenarios, three charts of an example seed and three of the seeds pooled each"
    );
    assert!(witnesses >= 1, "ack-before-fsync's failing seeds show their witness");
    for expected in ["<h3>Across seeds</h3>", "Every seed read (4)", "Availability, 4 seeds"] {
        assert!(html.contains(expected), "the page lacks {expected:?}");
    }
    assert!(!html.contains("<script") && !html.contains("<link"), "the page loads nothing");
    assert!(
        html.contains("fill=\"#DC322F\"") || html.contains("fill-opacity"),
        "fault windows are shaded"
    );
    let shrink =
        common::printed_command("shrink", "scenarios/examples/ack-before-fsync.json", None);
    assert!(html.contains(&format!("shrink: <code>{shrink}")), "{shrink}");
    let markdown = std::fs::read_to_string(one.join("report.md")).unwrap();
    assert!(markdown.contains("| durability | "), "{markdown}");
    let json = read_json(&one.join("report.json"));
    let scenarios = json["scenarios"].as_array().unwrap();
    let failing =
        scenarios.iter().find(|scenario| scenario["scenario"] == "ack-before-fsync").unwrap();
    assert_eq!(failing["failed_seeds"], manifest["seeds_failed"]);
    assert!(failing["checks"]["durability"]["failed_seeds"].as_u64().unwrap() >= 1);
    assert!(!failing["timeline"]["buckets"].as_array().unwrap().is_empty());
    assert!(!failing["timeline"]["faults"].as_array().unwrap().is_empty());
    // Every seed in a line and pooled; three crashes in every seed's plan.
    let rows = failing["seed_rows"].as_array().unwrap();
    assert_eq!(
        rows.iter().map(|row| row["seed"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(rows
        .iter()
        .all(|row| row["fault_windows"] == 3 && row["completed"].as_u64().unwrap() > 100));
    assert!(rows.iter().all(|row| row["availability_after_heal"].as_f64().unwrap() > 0.9));
    assert_eq!(failing["pooled"]["seeds"], 4);
    // Acknowledged appends lost in a crash: the witness names the read no order explains.
    let witnesses: Vec<&serde_json::Value> = failing["failing"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|seed| seed["witnesses"].get("linearizability"))
        .collect();
    assert!(!witnesses.is_empty(), "{failing}");
    for witness in &witnesses {
        let refuted = &witness["refuted_by"];
        assert_eq!(refuted["f"], "get", "{witness}");
        assert!(refuted["completion_time_us"].as_u64().unwrap() > 0, "{witness}");
        assert!(witness["linearized"].as_array().unwrap().len() <= 20, "bounded");
    }
    assert!(html.contains("<b>linearizability witness.</b>"));
    assert!(html.contains("The return no order explains:"));
    for directory in [one, two] {
        let _ = std::fs::remove_dir_all(directory);
    }
    let _ = std::fs::remove_file(junit);
}

#[test]
fn report_pools_a_queue_scenarios_distributions_over_its_seeds() {
    let out = scratch("queue-report");
    let output = pessimist(&[
        "run",
        "scenarios/queue-leader-isolated.json",
        "--seeds",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let report = pessimist(&["report", out.to_str().unwrap()]);
    assert_eq!(report.status.code(), Some(0), "{}", text(&report));
    let json = read_json(&out.join("report.json"));
    let scenario = &json["scenarios"][0];
    let measures: Vec<(String, &serde_json::Value)> = scenario["distributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|measure| {
            (
                format!(
                    "{}.{}",
                    measure["check"].as_str().unwrap(),
                    measure["name"].as_str().unwrap()
                ),
                measure,
            )
        })
        .collect();
    let names: Vec<&str> = measures.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["failover.failover_ms", "leases.first_delivery_wait_ms", "leases.redelivery_after_ms"]
    );
    for (name, measure) in &measures {
        assert_eq!(measure["seeds"], 2, "{name}");
        let (p50, p99, max) = (
            measure["p50"].as_f64().unwrap(),
            measure["p99"].as_f64().unwrap(),
            measure["max"].as_f64().unwrap(),
        );
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{name}: {measure}");
    }
    // The leader is isolated twice per seed: two failovers each, of a few seconds at most.
    let failover = measures[0].1;
    assert_eq!(failover["count"], 4, "{failover}");
    assert!(failover["max"].as_f64().unwrap() < 10_000.0, "{failover}");
    assert!(measures[1].1["count"].as_u64().unwrap() > 100, "every job is delivered once");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 9, "three charts, three pooled, three histograms");
    for expected in [
        "<h3>Staleness and delay distributions</h3>",
        "<h4>failover.failover_ms</h4>",
        "<h4>leases.first_delivery_wait_ms</h4>",
        "Every seed read (2)",
    ] {
        assert!(html.contains(expected), "the page lacks {expected:?}");
    }
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("- failover.failover_ms (failover: "), "{markdown}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn shards_merge_into_the_unsharded_sweep() {
    let whole = scratch("whole");
    assert_eq!(sweep(&whole, &["--jobs", "2"]).status.code(), Some(1));
    let shards: Vec<PathBuf> = (1..=3).map(|index| scratch(&format!("shard-{index}"))).collect();
    for (index, shard) in shards.iter().enumerate() {
        let output = sweep(shard, &["--jobs", "1", "--shard", &format!("{}/3", index + 1)]);
        assert!(matches!(output.status.code(), Some(0 | 1)), "{}", text(&output));
        let manifest = read_json(&shard.join("sweep.json"));
        assert_eq!(manifest["shard"]["count"], 3);
        assert!(manifest["seeds_run"].as_u64().unwrap() < 8, "a shard runs part of the sweep");
    }
    let merged = scratch("merged");
    let mut args = vec!["merge"];
    args.extend(shards.iter().map(|shard| shard.to_str().unwrap()));
    args.extend(["--out", merged.to_str().unwrap()]);
    let output = pessimist(&args);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(tree(&merged) == tree(&whole), "the merged shards differ from the unsharded sweep");

    // A missing shard, an overlap and shards of another sweep are refused.
    let missing = pessimist(&[
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("is a shard missing?"), "{}", text(&missing));
    let overlap = pessimist(&[
        "merge",
        shards[0].to_str().unwrap(),
        whole.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(overlap.status.code(), Some(2));
    assert!(text(&overlap).contains("overlapping shards"), "{}", text(&overlap));
    let other = scratch("other");
    let output =
        pessimist(&["sweep", SCENARIOS[0], "--seeds", "1", "--out", other.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let foreign = pessimist(&[
        "merge",
        shards[0].to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(foreign.status.code(), Some(2));
    assert!(text(&foreign).contains("not shards of one sweep"), "{}", text(&foreign));
    for directory in shards.into_iter().chain([whole, merged, other]) {
        let _ = std::fs::remove_dir_all(directory);
    }
}

#[test]
fn bad_sweep_merge_and_report_input_exits_2_with_one_line() {
    let out = scratch("bad");
    let out = out.to_str().unwrap();
    for (args, expected) in [
        (vec!["sweep", SCENARIOS[0], "--shard", "0/2", "--out", out], "is not a shard K/N"),
        (vec!["sweep", SCENARIOS[0], "--shard", "3/2", "--out", out], "is not a shard K/N"),
        (vec!["sweep", SCENARIOS[0], "--seeds", "0", "--out", out], "--seeds must be between"),
        (vec!["sweep", SCENARIOS[0], "--jobs", "0", "--out", out], "--jobs must be between"),
        (vec!["sweep", "scenarios/no-such.json", "--out", out], "no-such.json: cannot read"),
        (vec!["sweep", SCENARIOS[0], SCENARIOS[0], "--out", out], "a sweep needs distinct names"),
        (
            vec!["merge", "/nonexistent/shard", "--out", out],
            "/nonexistent/shard/sweep.json: cannot read",
        ),
        (vec!["report", "/nonexistent/run"], "not a directory of results"),
        (vec!["report", "scenarios"], "no summary.json"),
        (
            vec!["shrink", SCENARIOS[0], "--seed", "1", "--out", out],
            "passes every check: nothing to shrink",
        ),
        (vec!["compare", SCENARIOS[0], "--out", out], "declares no variants"),
    ] {
        let output = pessimist(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn shrink_writes_a_smaller_plan_that_still_fails_the_same_check() {
    let out = scratch("shrink").with_extension("json");
    let output =
        pessimist(&["shrink", SCENARIOS[1], "--seed", "1", "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("check durability still fails the same way"),
        "{}",
        text(&output)
    );
    let original =
        pessimist_scenarios::load_scenario(&workspace_root().join(SCENARIOS[1])).unwrap();
    let shrunk = pessimist_scenarios::load_scenario(&out).expect("the shrunk scenario loads");
    assert_eq!(shrunk.seeds, vec![1]);
    assert!(shrunk.faults.swarm.is_none());
    // Smaller: fewer events, or as many with less fault time in all.
    let fault_ms = |scenario: &pessimist_sim::scenario::Scenario| -> u64 {
        let faults_ms = scenario.phases.faults_ms;
        scenario.faults.plan.events.iter().map(|event| event.end_ms(faults_ms) - event.at_ms).sum()
    };
    let (before, after) = (&original.faults.plan.events, &shrunk.faults.plan.events);
    assert!(!after.is_empty() && after.len() <= before.len());
    assert!(
        after.len() < before.len() || fault_ms(&shrunk) < fault_ms(&original),
        "nothing was shrunk: {after:?}"
    );
    // The shrunk file replays the failure: the same check fails with the same kind of
    // violation as the original seed's first.
    let outcome = pessimist_sim::run::run_seed(&shrunk, 1);
    let first =
        pessimist_sim::run::run_seed(&original, 1).checks["durability"].violations[0].clone();
    let kind = pessimist_sim::check::violation_kind(&first);
    assert!(outcome.checks["durability"].fails_with_kind(&kind), "{kind}: {:?}", outcome.checks);
    let replay = pessimist(&[
        "run",
        out.to_str().unwrap(),
        "--out",
        scratch("shrunk-run").to_str().unwrap(),
    ]);
    assert_eq!(replay.status.code(), Some(1), "{}", text(&replay));
    let _ = std::fs::remove_file(out);
}

#[test]
fn a_swarm_plan_written_out_replays_the_same_run() {
    let path = workspace_root().join("scenarios/seams/probe-swarm.json");
    let scenario = pessimist_scenarios::load_scenario(&path).unwrap();
    let seed = 3;
    let materialized = pessimist_scenarios::shrink::materialize(&scenario, seed);
    assert!(materialized.faults.swarm.is_none());
    assert!(!materialized.faults.plan.events.is_empty(), "seed {seed} draws no fault");
    assert!(materialized.validate().is_ok());
    let original = pessimist_sim::run::run_seed(&scenario, seed);
    let written_out = pessimist_sim::run::run_seed(&materialized, seed);
    assert_eq!(original.history_hash, written_out.history_hash);
}

#[test]
fn compare_runs_every_design_on_the_same_seeds() {
    let out = scratch("compare");
    let output = pessimist(&[
        "compare",
        SCENARIOS[1],
        "--seeds",
        "3",
        "--jobs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    // The base design loses acknowledged appends: exit 1.
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let comparison = read_json(&out.join("compare.json"));
    let designs = comparison["designs"].as_array().unwrap();
    assert_eq!(designs.len(), 2);
    assert_eq!(designs[0]["design"], "base");
    assert_eq!(designs[1]["design"], "fsync-first");
    assert_eq!(comparison["seeds"], serde_json::json!([1, 2, 3]));
    assert!(designs[0]["checks"]["durability"]["failed_seeds"].as_u64().unwrap() >= 1);
    assert_eq!(designs[1]["checks"]["durability"]["failed_seeds"], 0);
    assert_eq!(designs[1]["knobs"]["probe_ack_before_fsync"], false);
    let markdown = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(markdown.contains("| | base | fsync-first |"), "{markdown}");
    assert!(markdown.contains("| durability: failed seeds | "), "{markdown}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn sweep_shrink_puts_the_shrunk_plan_in_the_report() {
    let out = scratch("sweep-shrink");
    let output = pessimist(&[
        "sweep",
        SCENARIOS[1],
        "--seeds",
        "1",
        "--shrink",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("ack-before-fsync seed 1: shrunk to 1 of 3 fault events"),
        "{}",
        text(&output)
    );
    let shrunk = out.join("ack-before-fsync/shrunk/seed-1.json");
    let scenario = pessimist_scenarios::load_scenario(&shrunk).expect("the shrunk scenario loads");
    assert_eq!(scenario.faults.plan.events.len(), 1);
    let report = pessimist(&["report", out.to_str().unwrap()]);
    assert_eq!(report.status.code(), Some(1), "{}", text(&report));
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("- shrunk plan ("), "{markdown}");
    assert!(markdown.contains("\"kind\":\"crash\""), "{markdown}");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("shrunk plan (<code>"), "the page shows the shrunk plan");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn hunt_stops_at_the_first_failing_seed_and_shrinks_it_to_a_plan_that_replays() {
    let out = scratch("hunt");
    let output = pessimist(&[
        "hunt",
        SCENARIOS[1],
        "--seeds",
        "50",
        "--jobs",
        "2",
        "--shrink-runs",
        "40",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let hunt = read_json(&out.join("hunt.json"));
    let failure = &hunt["failure"];
    // Seed 1 already loses an acknowledged append: the hunt runs nothing past it.
    assert_eq!(failure["seed"], 1, "{hunt}");
    assert_eq!(hunt["seeds_run"], 1, "{hunt}");
    assert_eq!(failure["check"], "durability");
    let kind = pessimist_sim::check::violation_kind(failure["violation"].as_str().unwrap());
    assert_eq!(failure["kind"], kind.as_str());
    let shrunk = &failure["shrunk"];
    assert_eq!(shrunk["replays"], true, "{hunt}");
    assert!(shrunk["events"].as_u64().unwrap() <= shrunk["events_before"].as_u64().unwrap());
    let scenario = pessimist_scenarios::load_scenario(&out.join("shrunk.json")).unwrap();
    let again = pessimist_sim::run::run_seed(&scenario, 1);
    assert!(again.checks["durability"].fails_with_kind(&kind), "{:?}", again.checks);
    // A scenario that passes: every seed runs, and nothing is found.
    let passing = pessimist(&[
        "hunt",
        SCENARIOS[0],
        "--seeds",
        "3",
        "--out",
        out.join("passing").to_str().unwrap(),
    ]);
    assert_eq!(passing.status.code(), Some(0), "{}", text(&passing));
    let hunt = read_json(&out.join("passing/hunt.json"));
    assert_eq!(hunt["seeds_run"], 3);
    assert!(hunt["failure"].is_null(), "{hunt}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn mutants_reports_a_patch_that_does_not_apply_with_its_own_exit_status() {
    let base = scratch("mutants-stale");
    let zoo = base.join("zoo");
    std::fs::create_dir_all(&zoo).unwrap();
    // A patch whose context the service code no longer has.
    std::fs::write(
        zoo.join("01-stale.patch"),
        "Bug: a bug in code that was rewritten\nComponent: store\n\
         Scenario: scenarios/store-partition.json\nSwarm: scenarios/store-swarm.json\n\
         Check: no_double_count\n\nThe prose.\n\n\
         diff --git a/core/src/lib.rs b/core/src/lib.rs\n--- a/core/src/lib.rs\n+++ b/core/src/lib.rs\n\
         @@ -1,3 +1,3 @@\n-this line is in no version of the file\n+a bug\n context\n context\n",
    )
    .unwrap();
    let scratch_copy = base.join("scratch");
    let run = |extra: &[&str]| {
        let mut args = vec!["mutants", "--zoo", zoo.to_str().unwrap(), "--out"];
        args.extend_from_slice(&[base.to_str().unwrap(), "--scratch"]);
        args.push(scratch_copy.to_str().unwrap());
        args.extend_from_slice(extra);
        pessimist(&args)
    };
    let output = run(&["--no-baseline"]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output));
    let table = std::fs::read_to_string(base.join("zoo.md")).unwrap();
    assert!(
        table.contains("| 01-stale | store | store-partition | **does not apply** |"),
        "{table}"
    );
    let report = read_json(&base.join("zoo.json"));
    assert_eq!(report["bugs"][0]["state"], "does_not_apply");
    // Bad input: an unknown bug is refused before anything is copied or built.
    let unknown = run(&["--bug", "no-such-bug"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(text(&unknown).contains("no bug \"no-such-bug\""), "{}", text(&unknown));
    let _ = std::fs::remove_dir_all(base);
}
