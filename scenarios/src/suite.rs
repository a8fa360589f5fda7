//! Running scenarios over seeds and writing their results: `summary.json` and one JSON Lines
//! history per seed.

use std::path::{Path, PathBuf};

#[cfg(madsim)]
use pessimist_sim::check::Outcome;
#[cfg(madsim)]
use pessimist_sim::scenario::Scenario;
use pessimist_sim::summary::RunSummary;
#[cfg(madsim)]
use pessimist_sim::summary::SeedSummary;

/// The command that replays `seed` of the scenario in `file`.
pub fn replay_command(file: &str, seed: u64) -> String {
    format!("cargo run --release -- replay {file} --seed {seed}")
}

/// The command that shrinks the fault plan of failing `seed` of the scenario in `file`.
pub fn shrink_command(file: &str, seed: u64) -> String {
    format!("cargo run --release -- shrink {file} --seed {seed}")
}

/// The workspace root: where `scenarios/` and `reports/` are.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the scenarios crate sits in the workspace")
        .to_path_buf()
}

/// The name of the scenario files' JSON Schema, which sits among them but is no scenario.
pub const SCHEMA_FILE: &str = "schema.json";

/// The scenario files in `directory`: its `*.json` files but the schema, sorted.
pub fn scenario_files_in(directory: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .filter(|path| path.file_name().is_some_and(|name| name != SCHEMA_FILE))
        .collect();
    files.sort();
    Ok(files)
}

/// The scenario files of the default suite: `scenarios/*.json`, sorted.
pub fn default_suite_files() -> std::io::Result<Vec<PathBuf>> {
    scenario_files_in(&workspace_root().join("scenarios"))
}

/// Shows a path relative to the current directory when it is below it.
pub fn display_path(path: &Path) -> String {
    let current = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&current).unwrap_or(path).display().to_string()
}

/// Runs one seed, turning a panic of the simulation into a failed seed rather than an abort
/// of the whole sweep.
#[cfg(madsim)]
pub fn run_one_seed(
    scenario: &Scenario,
    seed: u64,
) -> Result<pessimist_sim::run::SeedOutcome, String> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pessimist_sim::run::run_seed(scenario, seed)
    }));
    outcome.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_else(|| "the simulation panicked".to_string())
    })
}

/// One seed's summary: runs it and, with `out`, writes its history to
/// `out/histories/seed-N.jsonl`. A panic of the simulation is a failed seed whose
/// `simulation` check carries the panic's message.
#[cfg(madsim)]
pub fn seed_summary(
    scenario: &Scenario,
    file: &str,
    seed: u64,
    out: Option<&Path>,
) -> std::io::Result<SeedSummary> {
    use pessimist_sim::check::Verdict;

    let summary = match run_one_seed(scenario, seed) {
        Ok(outcome) => {
            let history = match out {
                Some(out) => {
                    let relative = format!("histories/seed-{seed}.jsonl");
                    std::fs::write(
                        out.join(&relative),
                        pessimist_core::history::to_json_lines(&outcome.events),
                    )?;
                    Some(relative)
                }
                None => None,
            };
            SeedSummary {
                seed,
                history_hash: outcome.history_hash,
                outcome: outcome.outcome,
                checks: outcome.checks,
                replay: replay_command(file, seed),
                shrink: (outcome.outcome == Outcome::Failed).then(|| shrink_command(file, seed)),
                history,
                fault_events: outcome.plan.events.len(),
                history_events: outcome.events.len(),
            }
        }
        Err(message) => {
            let verdict =
                Verdict::from_violations(vec![message], std::collections::BTreeMap::new());
            SeedSummary {
                seed,
                history_hash: String::new(),
                outcome: Outcome::Failed,
                checks: std::collections::BTreeMap::from([("simulation".to_string(), verdict)]),
                replay: replay_command(file, seed),
                // A panic is no checker's verdict: there is nothing for the shrinker to keep.
                shrink: None,
                history: None,
                fault_events: 0,
                history_events: 0,
            }
        }
    };
    Ok(summary)
}

/// Writes `run` as `out/summary.json`.
pub fn write_run_summary(run: &RunSummary, out: &Path) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(run).expect("summaries serialize");
    std::fs::write(out.join("summary.json"), text + "\n")
}

/// Runs `scenario` (loaded from `file`) over `seeds`, writing histories under `out` when given.
#[cfg(madsim)]
pub fn run_scenario(
    scenario: &Scenario,
    file: &str,
    seeds: &[u64],
    out: Option<&Path>,
) -> std::io::Result<RunSummary> {
    if let Some(out) = out {
        std::fs::create_dir_all(out.join("histories"))?;
    }
    let mut summaries = Vec::new();
    for &seed in seeds {
        summaries.push(seed_summary(scenario, file, seed, out)?);
    }
    let run = RunSummary {
        scenario: scenario.name.clone(),
        file: file.to_string(),
        description: scenario.description.clone(),
        heal_ok_fraction_min: scenario.checks.heal_ok_fraction_min,
        outcome: Outcome::worst(summaries.iter().map(|seed| seed.outcome)),
        seeds: summaries,
    };
    if let Some(out) = out {
        write_run_summary(&run, out)?;
    }
    Ok(run)
}
