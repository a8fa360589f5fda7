//! The report of a results directory: per scenario each checker's verdicts and figures over
//! the seeds; series over simulated time with the fault windows, for one example seed and
//! pooled over the seeds, and one line per seed; every per-event measure (staleness, delay)
//! pooled over the seeds; and every failing seed with the commands that replay and shrink it
//! and, when linearizability failed, its witness. Written as JSON, Markdown and one
//! self-contained HTML page (inline CSS, charts as inline SVG).
//!
//! **Invariant:** built only from `summary.json` files and the histories they point to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pessimist_core::history::Event;
use pessimist_sim::check::{Distribution, Outcome, Status, Verdict};
use pessimist_sim::lincheck::{Witness, WitnessCall};
use pessimist_sim::summary::RunSummary;
use serde::Serialize;
use serde_json::Value;

use crate::distribution::{pool, PooledDistribution};
use crate::timeline::{timeline, FaultWindow, Pool, PooledTimeline, SeedRow, Timeline};

/// Simulated time per bucket of a chart.
pub const BUCKET_MS: u64 = 1000;
/// Failing seeds listed per scenario (all are counted).
pub const FAILING_SEEDS_LISTED_MAX: usize = 50;
/// Histories read per scenario for the charts and the table across seeds (the first seeds in
/// the summary's order; the charted seed's always): bounds the report's time and memory on a
/// sweep of thousands of seeds. Figures and distributions come from the summaries and cover
/// every seed.
pub const SEEDS_POOLED_MAX: usize = 200;
/// Figure keys that hold structures for people, not numbers to aggregate over seeds.
const FIGURES_NOT_AGGREGATED: [&str; 1] = ["witness"];

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
    pub failed_as_expected_seeds: usize,
    /// Seeds on which the check could not decide (never counted as passed).
    pub unknown_seeds: usize,
    /// Seeds on which the check only measured (no threshold: it could not fail).
    pub figures_seeds: usize,
    /// Numeric figures, flattened (`per_kind.crash.ok_fraction`), over the seeds.
    pub figures: BTreeMap<String, FigureStats>,
}

impl FailingSeed {
    /// `Seed 3 failed: linearizability`, or `Seed 3 inconclusive: linearizability could not
    /// decide`.
    pub fn heading(&self) -> String {
        let mut parts = Vec::new();
        if !self.failed_checks.is_empty() {
            parts.push(self.failed_checks.join(", "));
        }
        if !self.undecided_checks.is_empty() {
            parts.push(format!("{} could not decide", self.undecided_checks.join(", ")));
        }
        let word = match self.outcome {
            Outcome::Inconclusive => "inconclusive",
            _ => "failed",
        };
        format!("Seed {} {word}: {}", self.seed, parts.join("; "))
    }
}

impl CheckerReport {
    /// The check's verdict over the seeds: failed if it failed on any, else unknown if it
    /// could not decide on any, else failed as expected if it did so on any, else figures
    /// when it only measured on every seed, else passed.
    pub fn status(&self) -> Status {
        if self.failed_seeds > 0 {
            Status::Failed
        } else if self.unknown_seeds > 0 {
            Status::Unknown
        } else if self.failed_as_expected_seeds > 0 {
            Status::FailedAsExpected
        } else if self.passed_seeds == 0 && self.figures_seeds > 0 {
            Status::Figures
        } else {
            Status::Passed
        }
    }
}

/// A seed that did not pass (it failed, or a check could not decide) and how to chase it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailingSeed {
    pub seed: u64,
    pub outcome: Outcome,
    pub failed_checks: Vec<String>,
    /// Checks that could not decide on this seed.
    pub undecided_checks: Vec<String>,
    /// Each failed check's violations (the linearizability witness among them), and each
    /// undecided check's reason.
    pub violations: BTreeMap<String, Vec<String>>,
    pub replay: String,
    pub shrink: Option<String>,
    /// The shrunk scenario file, when `sweep --shrink` wrote one, and its fault plan.
    pub shrunk_file: Option<String>,
    pub shrunk_plan: Option<Vec<Value>>,
    /// Per failed check that has one, the linearizability witness (the figure `witness`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub witnesses: BTreeMap<String, Witness>,
    /// The faults the seed's history records, as injected (empty when its history was not
    /// read: see [`SEEDS_POOLED_MAX`]).
    pub faults: Vec<FaultWindow>,
}

/// One scenario's report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub file: String,
    /// What the scenario tests, in its own words.
    pub description: String,
    /// The scenario's SLO: the least share of ok operations from the heal on.
    pub heal_ok_fraction_min: Option<f64>,
    pub seeds: usize,
    pub failed_seeds: usize,
    pub inconclusive_seeds: usize,
    pub outcome: Outcome,
    pub checks: BTreeMap<String, CheckerReport>,
    pub failing: Vec<FailingSeed>,
    /// The seed charted: the first failing one, else the first.
    pub charted_seed: Option<u64>,
    pub timeline: Option<Timeline>,
    /// Every seed read (at most [`SEEDS_POOLED_MAX`]) in one line each, and their timelines
    /// pooled bucket by bucket.
    pub seed_rows: Vec<SeedRow>,
    pub pooled: Option<PooledTimeline>,
    /// Every per-event measure the checkers reported, pooled over all seeds.
    pub distributions: Vec<PooledDistribution>,
    /// Per situation the scenario must reach, the seeds that reached it.
    pub must_happen: Vec<pessimist_sim::summary::Coverage>,
    /// Per fault kind, the faults injected over every seed and the vacuous ones among them.
    pub fault_bite: Vec<FaultBite>,
}

/// How often faults of one kind had an effect, over a scenario's seeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultBite {
    pub kind: String,
    pub faults: u64,
    /// Faults that did nothing (see `sim/src/fault_effect.rs`).
    pub vacuous: u64,
}

/// Per fault kind, the faults and vacuous faults the seeds' `faults_bite` figures count.
pub fn fault_bite(run: &RunSummary) -> Vec<FaultBite> {
    let mut kinds: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for seed in &run.seeds {
        let Some(check) = seed.checks.get("faults_bite") else { continue };
        let count = |figure: &str, kind: &str| check.figures[figure][kind].as_u64().unwrap_or(0);
        let Some(by_kind) = check.figures.get("faults_by_kind").and_then(Value::as_object) else {
            continue;
        };
        for kind in by_kind.keys() {
            let entry = kinds.entry(kind.clone()).or_default();
            entry.0 += count("faults_by_kind", kind);
            entry.1 += count("vacuous_by_kind", kind);
        }
    }
    let kinds = kinds.into_iter();
    kinds.map(|(kind, (faults, vacuous))| FaultBite { kind, faults, vacuous }).collect()
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub outcome: Outcome,
    pub seeds: usize,
    pub failed_seeds: usize,
    pub inconclusive_seeds: usize,
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
                failed_as_expected_seeds: 0,
                unknown_seeds: 0,
                figures_seeds: 0,
                figures: BTreeMap::new(),
            });
            *match check.status {
                Status::Passed => &mut report.passed_seeds,
                Status::Failed => &mut report.failed_seeds,
                Status::FailedAsExpected => &mut report.failed_as_expected_seeds,
                Status::Unknown => &mut report.unknown_seeds,
                Status::Figures => &mut report.figures_seeds,
            } += 1;
            let mut leaves = Vec::new();
            for (key, value) in &check.figures {
                if !FIGURES_NOT_AGGREGATED.contains(&key.as_str()) {
                    numeric_leaves(key, value, &mut leaves);
                }
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

/// Per checker and measure, every seed's distribution, pooled.
pub fn pooled_distributions(run: &RunSummary) -> Vec<PooledDistribution> {
    let mut measures: BTreeMap<(&str, &str), Vec<&Distribution>> = BTreeMap::new();
    for seed in &run.seeds {
        for (check, verdict) in &seed.checks {
            for (name, distribution) in &verdict.distributions {
                measures.entry((check, name)).or_default().push(distribution);
            }
        }
    }
    measures.into_iter().map(|((check, name), seeds)| pool(check, name, &seeds)).collect()
}

fn read_history(directory: &Path, relative: &str) -> Result<Vec<Event>, String> {
    let path = directory.join(relative);
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
    pessimist_core::history::from_json_lines(&text)
        .map_err(|error| format!("{}: {error}", path.display()))
}

fn count_seeds(run: &RunSummary, outcome: Outcome) -> usize {
    run.seeds.iter().filter(|seed| seed.outcome == outcome).count()
}

/// What a report lists of a check that did not pass: its violations, or why it could not
/// decide.
fn not_passed_lines(check: &Verdict) -> Vec<String> {
    match check.status {
        Status::Unknown => {
            let reason = check.figures.get("unknown_reason").cloned().unwrap_or_default();
            vec![format!("could not decide: {reason}")]
        }
        _ => check.violations.clone(),
    }
}

/// Builds the report of loaded runs, reading the histories of each (see
/// [`SEEDS_POOLED_MAX`]).
pub fn build_report(runs: &[LoadedRun]) -> Result<Report, String> {
    let mut scenarios = Vec::new();
    for loaded in runs {
        let run = &loaded.run;
        let failing: Vec<FailingSeed> = run
            .seeds
            .iter()
            .filter(|seed| !seed.outcome.passed())
            .map(|seed| FailingSeed {
                seed: seed.seed,
                outcome: seed.outcome,
                failed_checks: seed
                    .checks
                    .iter()
                    .filter(|(_, check)| check.failed())
                    .map(|(name, _)| name.clone())
                    .collect(),
                undecided_checks: seed
                    .checks
                    .iter()
                    .filter(|(_, check)| check.status == Status::Unknown)
                    .map(|(name, _)| name.clone())
                    .collect(),
                violations: seed
                    .checks
                    .iter()
                    .filter(|(_, check)| check.failed() || check.status == Status::Unknown)
                    .map(|(name, check)| (name.clone(), not_passed_lines(check)))
                    .collect(),
                replay: seed.replay.clone(),
                shrink: seed.shrink.clone(),
                shrunk_file: None,
                shrunk_plan: None,
                // A witness a report cannot read (an older shape) still shows as its
                // violation's text.
                witnesses: seed
                    .checks
                    .iter()
                    .filter(|(_, check)| check.failed())
                    .filter_map(|(name, check)| {
                        let witness = check.figures.get("witness")?;
                        Some((name.clone(), serde_json::from_value(witness.clone()).ok()?))
                    })
                    .collect(),
                faults: Vec::new(),
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
            .find(|seed| !seed.outcome.passed() && seed.history.is_some())
            .or_else(|| run.seeds.iter().find(|seed| seed.history.is_some()));
        let mut timeline_charted = None;
        let mut pool_of_seeds = Pool::new(BUCKET_MS);
        let mut seed_rows = Vec::new();
        for seed in run.seeds.iter().filter(|seed| seed.history.is_some()).take(SEEDS_POOLED_MAX) {
            let events =
                read_history(&loaded.directory, seed.history.as_deref().unwrap_or_default())?;
            let seed_timeline = pool_of_seeds.add(&events);
            seed_rows.push(SeedRow::new(seed.seed, seed.outcome, &seed_timeline));
            if let Some(failing) = failing.iter_mut().find(|failing| failing.seed == seed.seed) {
                failing.faults = seed_timeline.faults.clone();
            }
            if charted.is_some_and(|charted| charted.seed == seed.seed) {
                timeline_charted = Some(seed_timeline);
            }
        }
        if let (None, Some(history)) =
            (&timeline_charted, charted.and_then(|seed| seed.history.as_deref()))
        {
            timeline_charted =
                Some(timeline(&read_history(&loaded.directory, history)?, BUCKET_MS));
        }
        assert!(seed_rows.len() <= SEEDS_POOLED_MAX, "the seeds read are bounded");
        scenarios.push(ScenarioReport {
            scenario: run.scenario.clone(),
            file: run.file.clone(),
            description: run.description.clone(),
            heal_ok_fraction_min: run.heal_ok_fraction_min,
            seeds: run.seeds.len(),
            failed_seeds: count_seeds(run, Outcome::Failed),
            inconclusive_seeds: count_seeds(run, Outcome::Inconclusive),
            outcome: run.outcome,
            checks: checker_reports(run),
            failing,
            charted_seed: charted.map(|seed| seed.seed),
            timeline: timeline_charted,
            seed_rows,
            pooled: pool_of_seeds.finish(),
            distributions: pooled_distributions(run),
            must_happen: run.must_happen.clone(),
            fault_bite: fault_bite(run),
        });
    }
    Ok(Report {
        outcome: Outcome::worst(scenarios.iter().map(|scenario| scenario.outcome)),
        seeds: scenarios.iter().map(|scenario| scenario.seeds).sum(),
        failed_seeds: scenarios.iter().map(|scenario| scenario.failed_seeds).sum(),
        inconclusive_seeds: scenarios.iter().map(|scenario| scenario.inconclusive_seeds).sum(),
        scenarios,
    })
}

pub fn number(value: f64) -> String {
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

/// A share as a percentage, or `-`.
pub fn percent(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |value| format!("{:.2}%", value * 100.0))
}

/// A measure's value with its unit, or `-`.
pub fn with_unit(value: Option<f64>, unit: &str) -> String {
    value.map_or("-".to_string(), |value| format!("{} {unit}", number(value)))
}

/// Simulated time in milliseconds (to the microsecond when it has a fraction), or `-`.
pub fn millis(time_us: Option<u64>) -> String {
    time_us.map_or("-".to_string(), |time_us| match time_us % 1000 {
        0 => format!("{} ms", time_us / 1000),
        fraction => format!("{}.{fraction:03} ms", time_us / 1000),
    })
}

/// A value as compact JSON, whole: a witness's point is often at a value's end (the missing
/// appends), so none is cut; the page scrolls a long one in its cell.
pub fn whole_value(value: &Value) -> String {
    value.to_string()
}

/// A linearizability witness laid out for a table, the same in Markdown and HTML.
#[derive(Clone, Debug, PartialEq)]
pub struct WitnessTable {
    /// What failed and, when known, the point where no linearization exists.
    pub headline: String,
    /// That point's call, when known.
    pub refuted_by: Option<[String; WITNESS_COLUMNS.len()]>,
    /// Earlier prefix steps not in the table.
    pub steps_omitted: usize,
    /// The linearized prefix's last steps, then the state none of `cannot_place` fits.
    pub steps: Vec<[String; WITNESS_COLUMNS.len()]>,
    pub state_stuck: String,
    pub cannot_place: Vec<[String; WITNESS_COLUMNS.len()]>,
}

/// The columns of a witness table.
pub const WITNESS_COLUMNS: [&str; 7] =
    ["history", "process", "call", "returned", "invoked", "completed", "state after"];

fn call_row(call: &WitnessCall, state_after: Option<&Value>) -> [String; WITNESS_COLUMNS.len()] {
    // JSON cannot tell `Some(null)` from `None`: the outcome says which it was.
    let returned = match call.outcome.as_str() {
        "ok" => whole_value(call.output.as_ref().unwrap_or(&Value::Null)),
        "fail" => "failed".to_string(),
        _ if call.completion_index.is_some() => "? (info)".to_string(),
        _ => "? (never completed)".to_string(),
    };
    [
        format!("[{}]", call.invoke_index),
        call.process.to_string(),
        format!("{} {}", call.f, whole_value(&call.input)),
        returned,
        millis(call.invoke_time_us),
        millis(call.completion_time_us),
        state_after.map_or("-".to_string(), whole_value),
    ]
}

/// The table of `witness`.
pub fn witness_table(witness: &Witness) -> WitnessTable {
    let key = witness.key.as_ref().map_or(String::new(), |key| format!(" for key {key:?}"));
    let mut headline = format!(
        "Not linearizable as {}{key}: the longest linearizable prefix has {} of {} calls.",
        witness.model,
        witness.linearized_len(),
        witness.calls_in_partition
    );
    if let Some(call) = &witness.refuted_by {
        let returned = match call.outcome.as_str() {
            "fail" => "failed".to_string(),
            _ => format!("returned {}", whole_value(call.output.as_ref().unwrap_or(&Value::Null))),
        };
        headline.push_str(&format!(
            " No linearization exists from history[{}] at {} on: process {}'s {} {} {returned}, \
             and no order of the calls before it explains that.",
            call.completion_index.unwrap_or(call.invoke_index),
            millis(call.completion_time_us),
            call.process,
            call.f,
            whole_value(&call.input),
        ));
    }
    WitnessTable {
        headline,
        refuted_by: witness.refuted_by.as_ref().map(|call| call_row(call, None)),
        steps_omitted: witness.linearized_omitted,
        steps: witness
            .linearized
            .iter()
            .map(|step| call_row(&step.call, Some(&step.state_after)))
            .collect(),
        state_stuck: whole_value(witness.state_stuck()),
        cannot_place: witness.cannot_place.iter().map(|call| call_row(call, None)).collect(),
    }
}

fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn markdown_row(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|cell| markdown_cell(cell)).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// The seeds in a table: completions, availability and latency per seed.
pub const SEED_COLUMNS: [&str; 10] = [
    "seed",
    "verdict",
    "completed",
    "availability",
    "before heal",
    "after heal",
    "latency p50",
    "latency p99",
    "latency max",
    "fault windows",
];

/// One seed's cells under [`SEED_COLUMNS`].
pub fn seed_cells(row: &SeedRow) -> [String; SEED_COLUMNS.len()] {
    [
        row.seed.to_string(),
        row.outcome.word().to_string(),
        row.completed.to_string(),
        percent(row.availability),
        percent(row.availability_before_heal),
        percent(row.availability_after_heal),
        optional_ms(row.latency_p50_ms),
        optional_ms(row.latency_p99_ms),
        optional_ms(row.latency_max_ms),
        row.fault_windows.to_string(),
    ]
}

/// The seeds worth a look first: the lowest availability and the highest p99 latency.
pub fn worst_seeds(rows: &[SeedRow]) -> String {
    let lowest = rows
        .iter()
        .filter_map(|row| Some((row.availability?, row.seed)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let slowest = rows
        .iter()
        .filter_map(|row| Some((row.latency_p99_ms?, row.seed)))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut text = Vec::new();
    if let Some((availability, seed)) = lowest {
        text.push(format!("lowest availability: seed {seed} ({})", percent(Some(availability))));
    }
    if let Some((latency, seed)) = slowest {
        text.push(format!("highest latency p99: seed {seed} ({})", optional_ms(Some(latency))));
    }
    text.join("; ")
}

/// A pooled measure's one-line summary.
pub fn distribution_line(distribution: &PooledDistribution) -> String {
    let unit = &distribution.unit;
    format!(
        "{} events over {} seeds ({} with events): p50 {}, p90 {}, p99 {}, max {}",
        distribution.count,
        distribution.seeds,
        distribution.seeds_with_events,
        with_unit(distribution.p50, unit),
        with_unit(distribution.p90, unit),
        with_unit(distribution.p99, unit),
        with_unit(distribution.max, unit)
    )
}

/// The checks of `scenario` that only measured on every seed: figures, not verdicts.
pub fn figures_only_checks(scenario: &ScenarioReport) -> Vec<&str> {
    scenario
        .checks
        .iter()
        .filter(|(_, check)| check.status() == Status::Figures)
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The report as Markdown.
pub fn report_markdown(report: &Report) -> String {
    let mut page = String::from("# pessimist report\n\n");
    page.push_str(&format!(
        "{} scenarios, {} seeds, {} failed, {} inconclusive: **{}**.\n\n",
        report.scenarios.len(),
        report.seeds,
        report.failed_seeds,
        report.inconclusive_seeds,
        report.outcome.word()
    ));
    page.push_str(
        "| scenario | seeds | failed seeds | inconclusive seeds | verdict |\n|---|---|---|---|---|\n",
    );
    for scenario in &report.scenarios {
        page.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            scenario.scenario,
            scenario.seeds,
            scenario.failed_seeds,
            scenario.inconclusive_seeds,
            scenario.outcome.word()
        ));
    }
    for scenario in &report.scenarios {
        page.push_str(&format!("\n## {}\n\nFile: `{}`\n\n", scenario.scenario, scenario.file));
        page.push_str(
            "| check | verdict | passed seeds | failed seeds | failed as expected | undecided seeds |\n|---|---|---|---|---|---|\n",
        );
        for (name, check) in
            scenario.checks.iter().filter(|(_, check)| check.status() != Status::Figures)
        {
            page.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} |\n",
                check.status().word(),
                check.passed_seeds,
                check.failed_seeds,
                check.failed_as_expected_seeds,
                check.unknown_seeds
            ));
        }
        let measures = figures_only_checks(scenario);
        if !scenario.must_happen.is_empty() {
            page.push_str("\n| must happen | seeds that reached it |\n|---|---|\n");
            for situation in &scenario.must_happen {
                let failed = if situation.seeds_reached == 0 { " **FAILED**" } else { "" };
                page.push_str(&format!(
                    "| {} | {} of {}{failed} |\n",
                    situation.situation, situation.seeds_reached, situation.seeds
                ));
            }
        }
        if !scenario.fault_bite.is_empty() {
            page.push_str("\n| fault kind | injected | vacuous |\n|---|---|---|\n");
            for kind in &scenario.fault_bite {
                page.push_str(&format!("| {} | {} | {} |\n", kind.kind, kind.faults, kind.vacuous));
            }
        }
        if !measures.is_empty() {
            page.push_str(&format!(
                "\nFigures only (no threshold in this scenario, so they cannot fail): {}.\n",
                measures.join(", ")
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
        if let Some(pooled) = &scenario.pooled {
            page.push_str(&format!(
                "\n### Across seeds\n\n{} of {} seeds read: latency p50 {}, p99 {} over all of \
                 them; {}.\n\n",
                pooled.seeds,
                scenario.seeds,
                optional_ms(pooled.latency_p50_ms),
                optional_ms(pooled.latency_p99_ms),
                worst_seeds(&scenario.seed_rows)
            ));
            let columns: Vec<String> = SEED_COLUMNS.iter().map(|c| c.to_string()).collect();
            page.push_str(&markdown_row(&columns));
            page.push_str(&format!("|{}\n", "---|".repeat(SEED_COLUMNS.len())));
            for row in &scenario.seed_rows {
                page.push_str(&markdown_row(&seed_cells(row)));
            }
        }
        if !scenario.distributions.is_empty() {
            page.push_str("\n### Staleness and delay distributions\n\n");
            for distribution in &scenario.distributions {
                page.push_str(&format!(
                    "- {}.{} ({}): {}\n",
                    distribution.check,
                    distribution.name,
                    distribution.description,
                    distribution_line(distribution)
                ));
            }
        }
        for failing in scenario.failing.iter().take(FAILING_SEEDS_LISTED_MAX) {
            page.push_str(&format!(
                "\n### {}\n\n- replay: `{}`\n",
                failing.heading(),
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
                if failing.witnesses.contains_key(name) {
                    continue; // Its witness follows, as a table.
                }
                for violation in violations {
                    page.push_str(&format!("- {name}: {violation}\n"));
                }
            }
            for (name, witness) in &failing.witnesses {
                let table = witness_table(witness);
                page.push_str(&format!("\n{name} witness. {}\n\n", table.headline));
                let columns: Vec<String> = WITNESS_COLUMNS.iter().map(|c| c.to_string()).collect();
                if let Some(row) = &table.refuted_by {
                    page.push_str("The return no order explains:\n\n");
                    page.push_str(&markdown_row(&columns));
                    page.push_str(&format!("|{}\n", "---|".repeat(WITNESS_COLUMNS.len())));
                    page.push_str(&markdown_row(row));
                    page.push_str("\nWhere the search for an order got stuck, its last steps:\n\n");
                }
                page.push_str(&markdown_row(&columns));
                page.push_str(&format!("|{}\n", "---|".repeat(WITNESS_COLUMNS.len())));
                if table.steps_omitted > 0 {
                    page.push_str(&format!(
                        "| ... | {} earlier steps |{}\n",
                        table.steps_omitted,
                        " |".repeat(WITNESS_COLUMNS.len() - 2)
                    ));
                }
                for row in &table.steps {
                    page.push_str(&markdown_row(row));
                }
                page.push_str(&format!(
                    "\nNone of these can come next in state `{}`:\n\n",
                    markdown_cell(&table.state_stuck)
                ));
                page.push_str(&markdown_row(&columns));
                page.push_str(&format!("|{}\n", "---|".repeat(WITNESS_COLUMNS.len())));
                for row in &table.cannot_place {
                    page.push_str(&markdown_row(row));
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
    use pessimist_sim::summary::SeedSummary;
    use serde_json::json;

    fn seed(seed: u64, passed: bool, figures: Value) -> SeedSummary {
        let figures = figures.as_object().unwrap().clone().into_iter().collect();
        let violations = if passed { Vec::new() } else { vec!["broken".to_string()] };
        let verdict = Verdict::from_violations(violations, figures);
        SeedSummary {
            seed,
            history_hash: String::new(),
            outcome: if passed { Outcome::Passed } else { Outcome::Failed },
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
            must_happen: Vec::new(),
            scenario: "s".into(),
            file: "s.json".into(),
            description: String::new(),
            heal_ok_fraction_min: None,
            outcome: Outcome::Failed,
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
