//! `pessimist`: run scenarios under faults, replay a seed, check histories for
//! linearizability.
//!
//! With no arguments it runs the default suite (every scenario in `scenarios/`, each over its
//! own seeds) and writes its results under `reports/out/`.
//!
//! Exit status: 0 when every check passed, 1 when a check failed, 2 for bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
#[cfg(madsim)]
use pessimist_scenarios::{load_scenario, suite};

#[derive(Parser, Debug)]
#[command(
    name = "pessimist",
    version,
    about = "Deterministic simulation testbed: runs a service under injected faults and checks what happened."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario over seeds and write DIR/summary.json and one history per seed.
    Run {
        /// The scenario file (JSON).
        scenario: PathBuf,
        /// Run this one seed.
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Run seeds 1 to N (default: the seeds the scenario lists).
        #[arg(long)]
        seeds: Option<u64>,
        /// Where to write results (default: reports/out/<scenario name>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Re-run one seed and print its history readably, then its verdicts.
    Replay {
        scenario: PathBuf,
        #[arg(long)]
        seed: u64,
    },
    /// Check histories for linearizability: one line per file with the verdict, the number of
    /// operations and the time; a witness under each non-linearizable one. Exit 1 when a
    /// verdict disagrees with the file's `expect`, 2 for a malformed file.
    Lincheck {
        /// History files (see sim/tests/data/lincheck/README.md for the format).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Give up on a history after this many seconds and answer `unknown`.
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<std::time::Duration>,
        /// One JSON object per file instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 => {
            Ok(std::time::Duration::from_secs_f64(seconds))
        }
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

#[cfg(madsim)]
const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            let code = if error.use_stderr() { EXIT_BAD_INPUT } else { 0 };
            return ExitCode::from(code);
        }
    };
    match cli.command {
        None => run_default_suite(),
        Some(Command::Run { scenario, seed, seeds, out }) => run(&scenario, seed, seeds, out),
        Some(Command::Replay { scenario, seed }) => replay(&scenario, seed),
        Some(Command::Lincheck { files, timeout, json }) => {
            let status = pessimist_sim::lincheck::cli::run(&files, timeout, json);
            ExitCode::from(u8::try_from(status).unwrap_or(EXIT_BAD_INPUT))
        }
    }
}

#[cfg(not(madsim))]
fn simulation_unavailable() -> ExitCode {
    eprintln!("pessimist: this binary was built without --cfg madsim, so it cannot simulate; build it with the default configuration (`cargo run --release`)");
    ExitCode::from(EXIT_BAD_INPUT)
}

#[cfg(not(madsim))]
fn run_default_suite() -> ExitCode {
    simulation_unavailable()
}

#[cfg(not(madsim))]
fn run(_: &Path, _: Option<u64>, _: Option<u64>, _: Option<PathBuf>) -> ExitCode {
    simulation_unavailable()
}

#[cfg(not(madsim))]
fn replay(_: &Path, _: u64) -> ExitCode {
    simulation_unavailable()
}

#[cfg(madsim)]
fn seeds_to_run(
    scenario: &pessimist_sim::scenario::Scenario,
    seed: Option<u64>,
    seeds: Option<u64>,
) -> Result<Vec<u64>, String> {
    match (seed, seeds) {
        (Some(seed), _) => Ok(vec![seed]),
        (None, Some(0)) => Err("--seeds must be at least 1".into()),
        (None, Some(count)) => Ok((1..=count).collect()),
        (None, None) => Ok(scenario.seeds.clone()),
    }
}

#[cfg(madsim)]
fn print_run(run: &pessimist_sim::summary::RunSummary) {
    for seed in &run.seeds {
        let verdict = if seed.passed { "passed" } else { "FAILED" };
        println!(
            "{}  seed {:<6} {verdict}  history {}",
            run.scenario,
            seed.seed,
            &seed.history_hash[..seed.history_hash.len().min(16)]
        );
        if !seed.passed {
            for (name, check) in seed.checks.iter().filter(|(_, check)| !check.passed) {
                for violation in &check.violations {
                    println!("    {name}: {violation}");
                }
            }
            println!("    replay: {}", seed.replay);
        }
    }
}

#[cfg(madsim)]
fn run(path: &Path, seed: Option<u64>, seeds: Option<u64>, out: Option<PathBuf>) -> ExitCode {
    let scenario = match load_scenario(path) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("pessimist: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let seeds = match seeds_to_run(&scenario, seed, seeds) {
        Ok(seeds) => seeds,
        Err(message) => {
            eprintln!("pessimist: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let out =
        out.unwrap_or_else(|| suite::workspace_root().join("reports/out").join(&scenario.name));
    let file = suite::display_path(path);
    let run = match suite::run_scenario(&scenario, &file, &seeds, Some(&out)) {
        Ok(run) => run,
        Err(error) => {
            eprintln!("pessimist: cannot write results to {}: {error}", out.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    print_run(&run);
    println!("results: {}", suite::display_path(&out.join("summary.json")));
    if run.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

#[cfg(madsim)]
fn run_default_suite() -> ExitCode {
    let files = match suite::default_suite_files() {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            eprintln!(
                "pessimist: no scenario files in {}",
                suite::workspace_root().join("scenarios").display()
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        Err(error) => {
            eprintln!("pessimist: cannot list the scenarios: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let out = suite::workspace_root().join("reports/out");
    let mut runs = Vec::new();
    for path in &files {
        let scenario = match load_scenario(path) {
            Ok(scenario) => scenario,
            Err(error) => {
                eprintln!("pessimist: {error}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        };
        let file = suite::display_path(path);
        let seeds = scenario.seeds.clone();
        match suite::run_scenario(&scenario, &file, &seeds, Some(&out.join(&scenario.name))) {
            Ok(run) => {
                print_run(&run);
                runs.push(run);
            }
            Err(error) => {
                eprintln!("pessimist: cannot write results to {}: {error}", out.display());
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        }
    }
    let summary_path = out.join("summary.md");
    if let Err(error) = std::fs::write(&summary_path, pessimist_reports::markdown_summary(&runs)) {
        eprintln!("pessimist: cannot write {}: {error}", summary_path.display());
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let passed = runs.iter().all(|run| run.passed);
    let seeds: usize = runs.iter().map(|run| run.seeds.len()).sum();
    println!(
        "{} scenarios, {seeds} seeds: {}",
        runs.len(),
        if passed { "all checks passed" } else { "some checks FAILED" }
    );
    println!("results: {}", suite::display_path(&summary_path));
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

#[cfg(madsim)]
fn replay(path: &Path, seed: u64) -> ExitCode {
    use pessimist_core::history::EventKind;

    let scenario = match load_scenario(path) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("pessimist: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let outcome = match suite::run_one_seed(&scenario, seed) {
        Ok(outcome) => outcome,
        Err(message) => {
            println!("seed {seed}: the simulation panicked: {message}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    use std::io::Write;
    // Written through a lock with errors checked: a closed pipe (`| head`) ends the listing
    // quietly instead of panicking.
    let mut out = std::io::stdout().lock();
    for event in &outcome.events {
        let time = format!("{:>4}.{:06}s", event.time_us / 1_000_000, event.time_us % 1_000_000);
        let line = match &event.kind {
            EventKind::Invoke { process, f, value } => format!("p{process:<3} invoke  {f} {value}"),
            EventKind::Ok { process, f, value } => format!("p{process:<3} ok      {f} {value}"),
            EventKind::Fail { process, f, value, error } => {
                format!("p{process:<3} fail    {f} {value}: {error}")
            }
            EventKind::Info { process, f, value, error } => {
                format!("p{process:<3} info    {f} {value}: {error}")
            }
            EventKind::FaultStart { fault, kind, detail } => {
                format!("nemesis injects #{fault} {kind} {detail}")
            }
            EventKind::FaultEnd { fault, kind } => format!("nemesis heals   #{fault} {kind}"),
            EventKind::Internal { node, what, detail } => format!("{node}: {what} {detail}"),
            EventKind::Phase { name, detail } => format!("=== phase {name} {detail}"),
        };
        if writeln!(out, "{time}  {line}").is_err() {
            return ExitCode::from(if outcome.passed { 0 } else { EXIT_FAILED });
        }
    }
    let mut summary = String::from("\n");
    for (name, check) in &outcome.checks {
        let figures = serde_json::to_string(&check.figures).expect("figures serialize");
        summary.push_str(&format!(
            "{name}: {}  {figures}\n",
            if check.passed { "passed" } else { "FAILED" }
        ));
        for violation in &check.violations {
            summary.push_str(&format!("    {violation}\n"));
        }
    }
    summary.push_str(&format!(
        "history {} ({} events)\n",
        outcome.history_hash,
        outcome.events.len()
    ));
    let _ = out.write_all(summary.as_bytes());
    if outcome.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}
