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
    format!("{} replay {} --seed {seed}", program(), shell_word(&absolute(file)))
}

/// The command that shrinks the fault plan of failing `seed` of the scenario in `file`.
pub fn shrink_command(file: &str, seed: u64) -> String {
    format!("{} shrink {} --seed {seed}", program(), shell_word(&absolute(file)))
}

/// The name of the command-line binary (`[[bin]]` of this crate).
pub const BINARY_NAME: &str = "pessimist";

/// The program printed commands name: the `pessimist` binary that is running, by its
/// absolute path, so a command pasted in any directory runs the same build without a
/// checkout; `pessimist` (the installed name) when the caller is another program (a test).
pub fn program() -> String {
    match std::env::current_exe() {
        Ok(path) if path.file_stem().is_some_and(|stem| stem.to_string_lossy() == BINARY_NAME) => {
            shell_word(&path.display().to_string())
        }
        _ => BINARY_NAME.to_string(),
    }
}

/// `file` made absolute against the current directory (unchanged if that fails).
fn absolute(file: &str) -> String {
    std::path::absolute(file).map_or_else(|_| file.to_string(), |path| path.display().to_string())
}

/// A path as one shell word: quoted when it holds anything a shell would split or expand.
pub fn shell_word(text: &str) -> String {
    let plain = text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c));
    if plain && !text.is_empty() {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
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

/// What `run` and `sweep` write into their output directory, besides one subdirectory per
/// scenario (with a `summary.json`): removed before a new run so that no history of an
/// earlier run is left beside the new ones.
const RESULT_ENTRIES: [&str; 7] = [
    "summary.json",
    "sweep.json",
    "summary.md",
    "histories",
    "index.html",
    "report.md",
    "report.json",
];

/// Removes an earlier run's results from `out` (see [`RESULT_ENTRIES`]) and, when a sweep
/// wrote it (a `sweep.json`), its subdirectories that hold a `summary.json`; anything else in
/// it stays, so a mistaken `--out` loses no file pessimist did not write. The error is one
/// line.
pub fn clear_previous_results(out: &Path) -> Result<(), String> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(format!("{}: not a directory; give --out a directory", out.display()));
    }
    let swept = out.join("sweep.json").is_file();
    let entries = std::fs::read_dir(out)
        .map_err(|error| format!("{}: cannot list: {error}", out.display()))?;
    let mut stale: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            let name = path.file_name().map(|name| name.to_string_lossy().to_string());
            name.is_some_and(|name| RESULT_ENTRIES.contains(&name.as_str()))
                || (swept && path.is_dir() && path.join("summary.json").is_file())
        })
        .collect();
    stale.sort();
    for path in stale {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|error| {
            format!("{}: cannot remove an earlier run's results: {error}", path.display())
        })?;
    }
    Ok(())
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

/// Runs `scenario` (loaded from `file`) over `seeds` on `jobs` worker threads with the
/// sweep's progress bar, writing histories under `out` when given. The summary lists the
/// seeds in the order given, however they ran.
#[cfg(madsim)]
pub fn run_scenario(
    scenario: &Scenario,
    file: &str,
    seeds: &[u64],
    out: Option<&Path>,
    jobs: usize,
) -> Result<RunSummary, String> {
    let pairs: Vec<(usize, u64)> = seeds.iter().map(|&seed| (0, seed)).collect();
    let scenarios = [(scenario.clone(), file.to_string())];
    let summaries: Vec<SeedSummary> =
        crate::sweep::run_pairs_into(&scenarios, &pairs, jobs, &|_| out.map(Path::to_path_buf))?
            .into_iter()
            .map(|(_, summary)| summary)
            .collect();
    assert_eq!(summaries.len(), seeds.len(), "one summary per seed");
    let run = RunSummary::new(
        scenario.name.clone(),
        file.to_string(),
        scenario.description.clone(),
        scenario.checks.heal_ok_fraction_min,
        summaries,
    );
    if let Some(out) = out {
        write_run_summary(&run, out)
            .map_err(|error| format!("cannot write results to {}: {error}", out.display()))?;
    }
    Ok(run)
}
