//! The report of a results directory: per scenario each checker's verdicts and figures over
//! the seeds, series over simulated time with the fault windows, and every failing seed with
//! the commands that replay and shrink it. Written as JSON, Markdown and one self-contained
//! HTML page (inline CSS, charts as inline SVG).
//!
//! **Invariant:** built only from `summary.json` files and the histories they point to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pessimist_sim::summary::RunSummary;
use serde::Serialize;
use serde_json::Value;

use crate::timeline::{timeline, Timeline};

/// Simulated time per bucket of a chart.
pub const BUCKET_MS: u64 = 1000;
/// Failing seeds listed per scenario (all are counted).
pub const FAILING_SEEDS_LISTED_MAX: usize = 50;

/// Where `sweep --shrink` writes a failing seed's shrunk scenario, relative to the directory
/// of the scenario's `summary.json`.
pub fn shrunk_path(seed: u64) -> String {
    format!("shrunk/seed-{seed}.json")
}

/// A results directory read back: the runs and where they are.
#[derive(Clone, Debug)]
pub struct LoadedRun {
    pub run: RunSummary,
    /// The directory of the run's `summary.json`, which its history paths are relative to.
    pub directory: PathBuf,
}

/// Reads a results directory: one written by `run` (a `summary.json`), or by `sweep`, `merge`
/// or the default suite (a `summary.json` in each scenario's subdirectory).
pub fn load_results(directory: &Path) -> Result<Vec<LoadedRun>, String> {
    let read = |path: &Path| -> Result<RunSummary, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
    };
    if !directory.is_dir() {
        return Err(format!("{}: not a directory of results", directory.display()));
    }
    let single = directory.join("summary.json");
    if single.is_file() {
        return Ok(vec![LoadedRun { run: read(&single)?, directory: directory.to_path_buf() }]);
    }
    let mut subdirectories: Vec<PathBuf> = std::fs::read_dir(directory)
        .map_err(|error| format!("{}: cannot list: {error}", directory.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.join("summary.json").is_file())
        .collect();
    subdirectories.sort();
    if subdirectories.is_empty() {
        return Err(format!(
            "{}: no summary.json in it or in its subdirectories; give a directory `run`, `sweep` or `merge` wrote",
            directory.display()
        ));
    }
    subdirectories
        .into_iter()
        .map(|path| Ok(LoadedRun { run: read(&path.join("summary.json"))?, directory: path }))
        .collect()
}

/// A figure over the seeds that reported it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FigureStats {
    pub seeds: usize,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

/// One checker over the seeds of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckerReport {
    pub passed_seeds: usize,
    pub failed_seeds: usize,
    /// Numeric figures, flattened (`per_kind.crash.ok_fraction`), over the seeds.
    pub figures: BTreeMap<String, FigureStats>,
}

/// A failing seed and how to chase it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailingSeed {
    pub seed: u64,
    pub failed_checks: Vec<String>,
    /// Each failed check's violations (the linearizability witness among them).
    pub violations: BTreeMap<String, Vec<String>>,
    pub replay: String,
    pub shrink: Option<String>,
    /// The shrunk scenario file, when `sweep --shrink` wrote one, and its fault plan.
    pub shrunk_file: Option<String>,
    pub shrunk_plan: Option<Vec<Value>>,
}

/// One scenario's report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub file: String,
    pub seeds: usize,
    pub failed_seeds: usize,
    pub passed: bool,
    pub checks: BTreeMap<String, CheckerReport>,
    pub failing: Vec<FailingSeed>,
    /// The seed charted: the first failing one, else the first.
    pub charted_seed: Option<u64>,
    pub timeline: Option<Timeline>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub passed: bool,
    pub seeds: usize,
    pub failed_seeds: usize,
    pub scenarios: Vec<ScenarioReport>,
}

/// Numeric leaves of a figure value, by dotted path.
fn numeric_leaves(prefix: &str, value: &Value, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Number(number) => {
            if let Some(number) = number.as_f64() {
                out.push((prefix.to_string(), number));
            }
        }
        Value::Bool(flag) => out.push((prefix.to_string(), f64::from(u8::from(*flag)))),
        Value::Object(fields) => {
            for (key, value) in fields {
                numeric_leaves(&format!("{prefix}.{key}"), value, out);
            }
        }
        _ => {}
    }
}

/// Per checker: passed and failed seeds and each numeric figure's min, mean and max.
pub fn checker_reports(run: &RunSummary) -> BTreeMap<String, CheckerReport> {
    let mut values: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut reports: BTreeMap<String, CheckerReport> = BTreeMap::new();
    for seed in &run.seeds {
        for (name, check) in &seed.checks {
            let report = reports.entry(name.clone()).or_insert_with(|| CheckerReport {
                passed_seeds: 0,
                failed_seeds: 0,
                figures: BTreeMap::new(),
            });
            if check.passed {
                report.passed_seeds += 1;
            } else {
                report.failed_seeds += 1;
            }
            let mut leaves = Vec::new();
            for (key, value) in &check.figures {
                numeric_leaves(key, value, &mut leaves);
            }
            let figures = values.entry(name.clone()).or_default();
            for (key, value) in leaves {
                figures.entry(key).or_default().push(value);
            }
        }
    }
    for (name, figures) in values {
        let report = reports.get_mut(&name).expect("made above");
        for (key, values) in figures {
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            report.figures.insert(key, FigureStats { seeds: values.len(), min, mean, max });
        }
    }
    reports
}

/// Builds the report of loaded runs, reading the charted seed's history of each.
pub fn build_report(runs: &[LoadedRun]) -> Result<Report, String> {
    let mut scenarios = Vec::new();
    for loaded in runs {
        let run = &loaded.run;
        let failing: Vec<FailingSeed> = run
            .seeds
            .iter()
            .filter(|seed| !seed.passed)
            .map(|seed| FailingSeed {
                seed: seed.seed,
                failed_checks: seed
                    .checks
                    .iter()
                    .filter(|(_, check)| !check.passed)
                    .map(|(name, _)| name.clone())
                    .collect(),
                violations: seed
                    .checks
                    .iter()
                    .filter(|(_, check)| !check.passed)
                    .map(|(name, check)| (name.clone(), check.violations.clone()))
                    .collect(),
                replay: seed.replay.clone(),
                shrink: seed.shrink.clone(),
                shrunk_file: None,
                shrunk_plan: None,
            })
            .collect::<Vec<_>>();
        let mut failing = failing;
        for failing in &mut failing {
            let path = loaded.directory.join(shrunk_path(failing.seed));
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
            let scenario: Value = serde_json::from_str(&text)
                .map_err(|error| format!("{}: {error}", path.display()))?;
            let plan = scenario["faults"]["plan"].as_array().cloned().ok_or_else(|| {
                format!("{}: a shrunk scenario without faults.plan", path.display())
            })?;
            failing.shrunk_file = Some(path.display().to_string());
            failing.shrunk_plan = Some(plan);
        }
        let charted = run
            .seeds
            .iter()
            .find(|seed| !seed.passed && seed.history.is_some())
            .or_else(|| run.seeds.iter().find(|seed| seed.history.is_some()));
        let timeline = match charted.and_then(|seed| seed.history.as_ref()) {
            Some(history) => {
                let path = loaded.directory.join(history);
                let text = std::fs::read_to_string(&path)
                    .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
                let events = pessimist_core::history::from_json_lines(&text)
                    .map_err(|error| format!("{}: {error}", path.display()))?;
                Some(timeline(&events, BUCKET_MS))
            }
            None => None,
        };
        scenarios.push(ScenarioReport {
            scenario: run.scenario.clone(),
            file: run.file.clone(),
            seeds: run.seeds.len(),
            failed_seeds: failing.len(),
            passed: run.passed,
            checks: checker_reports(run),
            failing,
            charted_seed: charted.map(|seed| seed.seed),
            timeline,
        });
    }
    Ok(Report {
        passed: scenarios.iter().all(|scenario| scenario.passed),
        seeds: scenarios.iter().map(|scenario| scenario.seeds).sum(),
        failed_seeds: scenarios.iter().map(|scenario| scenario.failed_seeds).sum(),
        scenarios,
    })
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn optional_ms(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |value| format!("{} ms", number(value)))
}

/// The report as Markdown.
pub fn report_markdown(report: &Report) -> String {
    let mut page = String::from("# pessimist report\n\n");
    page.push_str(&format!(
        "{} scenarios, {} seeds, {} failed: **{}**.\n\n",
        report.scenarios.len(),
        report.seeds,
        report.failed_seeds,
        if report.passed { "passed" } else { "FAILED" }
    ));
    page.push_str("| scenario | seeds | failed seeds | verdict |\n|---|---|---|---|\n");
    for scenario in &report.scenarios {
        page.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            scenario.scenario,
            scenario.seeds,
            scenario.failed_seeds,
            if scenario.passed { "passed" } else { "FAILED" }
        ));
    }
    for scenario in &report.scenarios {
        page.push_str(&format!("\n## {}\n\nFile: `{}`\n\n", scenario.scenario, scenario.file));
        page.push_str("| check | passed seeds | failed seeds |\n|---|---|---|\n");
        for (name, check) in &scenario.checks {
            page.push_str(&format!(
                "| {name} | {} | {} |\n",
                check.passed_seeds, check.failed_seeds
            ));
        }
        page.push_str("\n| figure | seeds | min | mean | max |\n|---|---|---|---|---|\n");
        for (name, check) in &scenario.checks {
            for (key, stats) in &check.figures {
                page.push_str(&format!(
                    "| {name}.{key} | {} | {} | {} | {} |\n",
                    stats.seeds,
                    number(stats.min),
                    number(stats.mean),
                    number(stats.max)
                ));
            }
        }
        if let (Some(seed), Some(timeline)) = (scenario.charted_seed, &scenario.timeline) {
            page.push_str(&format!(
                "\nSeed {seed}: latency p50 {}, p99 {}; {} fault windows.\n",
                optional_ms(timeline.latency_p50_ms),
                optional_ms(timeline.latency_p99_ms),
                timeline.faults.len()
            ));
        }
        for failing in scenario.failing.iter().take(FAILING_SEEDS_LISTED_MAX) {
            page.push_str(&format!(
                "\n### Seed {} failed: {}\n\n- replay: `{}`\n",
                failing.seed,
                failing.failed_checks.join(", "),
                failing.replay
            ));
            if let Some(shrink) = &failing.shrink {
                page.push_str(&format!("- shrink: `{shrink}`\n"));
            }
            if let (Some(file), Some(plan)) = (&failing.shrunk_file, &failing.shrunk_plan) {
                page.push_str(&format!("- shrunk plan (`{file}`), {} events:\n", plan.len()));
                for event in plan {
                    page.push_str(&format!("  - `{event}`\n"));
                }
            }
            for (name, violations) in &failing.violations {
                for violation in violations {
                    page.push_str(&format!("- {name}: {violation}\n"));
                }
            }
        }
        if scenario.failing.len() > FAILING_SEEDS_LISTED_MAX {
            page.push_str(&format!(
                "\n... and {} more failing seeds (see report.json).\n",
                scenario.failing.len() - FAILING_SEEDS_LISTED_MAX
            ));
        }
    }
    page
}

/// The report as JSON.
pub fn report_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("reports serialize") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use pessimist_sim::check::Verdict;
    use pessimist_sim::summary::SeedSummary;
    use serde_json::json;

    fn seed(seed: u64, passed: bool, figures: Value) -> SeedSummary {
        let figures = figures.as_object().unwrap().clone().into_iter().collect();
        let verdict =
            Verdict { passed, figures, violations: Vec::new(), distributions: BTreeMap::new() };
        SeedSummary {
            seed,
            history_hash: String::new(),
            passed,
            checks: BTreeMap::from([("failover".to_string(), verdict)]),
            replay: format!("replay {seed}"),
            shrink: (!passed).then(|| format!("shrink {seed}")),
            history: None,
            fault_events: 0,
            history_events: 0,
        }
    }

    #[test]
    fn figures_flatten_and_aggregate_over_the_seeds() {
        let run = RunSummary {
            scenario: "s".into(),
            file: "s.json".into(),
            passed: false,
            seeds: vec![
                seed(
                    1,
                    true,
                    json!({"failover_ms_max": 1000, "per_kind": {"crash": {"ok_fraction": 0.5}}, "note": "text"}),
                ),
                seed(
                    2,
                    false,
                    json!({"failover_ms_max": 3000, "per_kind": {"crash": {"ok_fraction": 1.0}}}),
                ),
                seed(3, true, json!({"failover_ms_max": 2000})),
            ],
        };
        let reports = checker_reports(&run);
        let failover = &reports["failover"];
        assert_eq!((failover.passed_seeds, failover.failed_seeds), (2, 1));
        assert_eq!(
            failover.figures["failover_ms_max"],
            FigureStats { seeds: 3, min: 1000.0, mean: 2000.0, max: 3000.0 }
        );
        assert_eq!(
            failover.figures["per_kind.crash.ok_fraction"],
            FigureStats { seeds: 2, min: 0.5, mean: 0.75, max: 1.0 }
        );
        assert!(!failover.figures.contains_key("note"), "text is no figure");
        let report = build_report(&[LoadedRun { run, directory: PathBuf::from("/nonexistent") }])
            .expect("no history to read");
        assert_eq!(report.failed_seeds, 1);
        assert_eq!(report.scenarios[0].failing[0].shrink.as_deref(), Some("shrink 2"));
        let markdown = report_markdown(&report);
        assert!(
            markdown.contains("| failover.failover_ms_max | 3 | 1000 | 2000 | 3000 |"),
            "{markdown}"
        );
        assert!(markdown.contains("- shrink: `shrink 2`"), "{markdown}");
    }
}
