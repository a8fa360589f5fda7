//! `pessimist`: run scenarios under faults (one seed, many seeds in parallel, a shard of a
//! sweep), merge shards, replay and shrink a failing seed, compare design variants, write
//! reports, check histories for linearizability.
//!
//! With no arguments it runs the default suite (every scenario in the checkout's `scenarios/`,
//! each over its own seeds, in parallel) and writes its results and `reports/out/index.html`
//! in the current directory. Every output defaults to `reports/out/...` in the current
//! directory; printed replay and shrink commands name this binary and the scenario by
//! absolute paths, so they run when pasted anywhere.
//!
//! Exit status: 0 when every check passed, 1 when a check failed, 2 for bad input, 3 when no
//! check failed but one could not decide (inconclusive: a search ran out of its deterministic
//! budget; never a pass).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
#[cfg(madsim)]
use pessimist_scenarios::load_scenario;
use pessimist_scenarios::suite;
use pessimist_sim::check::{Outcome, Status};

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
        /// Worker threads (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Where to write results (default: reports/out/<scenario name> in the current
        /// directory); the results of an earlier run there are removed first.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run scenarios over seeds in parallel (or one shard of such a sweep) and write
    /// DIR/sweep.json, and per scenario DIR/<name>/summary.json and its histories.
    Sweep {
        /// Scenario files (JSON), or directories whose *.json files are scenarios.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Run seeds 1 to N of every scenario (default: the seeds each scenario lists).
        #[arg(long)]
        seeds: Option<u64>,
        /// Worker threads (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only shard K of N of the (scenario, seed) pairs, K counted from 1.
        #[arg(long)]
        shard: Option<pessimist_scenarios::sweep::Shard>,
        /// Where to write results (default: reports/out/sweep in the current directory); the
        /// results of an earlier run there are removed first.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the results as JUnit XML to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Then shrink the first failing seeds of each scenario (at most 5) into
        /// DIR/<name>/shrunk/seed-N.json, which the report shows.
        #[arg(long)]
        shrink: bool,
    },
    /// Join the output directories of a sweep's shards into one, checking that together they
    /// cover the sweep exactly once.
    Merge {
        /// Shard output directories (each holds a sweep.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the merged results (default: reports/out/merged in the current
        /// directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the merged results as JUnit XML to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Shrink a failing seed's fault plan (drop events, shorten windows, weaken faults) while
    /// the same check still fails, and write the minimal plan as a scenario file.
    Shrink {
        /// The scenario file (JSON) the seed failed in.
        scenario: PathBuf,
        /// The failing seed whose fault plan to shrink.
        #[arg(long)]
        seed: u64,
        /// Where to write the shrunk scenario (default:
        /// reports/out/shrunk/<scenario>-seed-<seed>.json in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The check whose failure must persist (default: the first failing one by name).
        #[arg(long)]
        check: Option<String>,
        /// Most simulation runs to spend.
        #[arg(long, default_value_t = pessimist_scenarios::shrink::RUNS_MAX_DEFAULT)]
        runs_max: usize,
    },
    /// Write a report of a results directory (one `run`, `sweep`, `merge` or the default suite
    /// wrote): index.html (self-contained, SVG charts), report.md and report.json.
    Report {
        /// A results directory: one `run`, `sweep` or `merge` wrote (its summary.json, or one
        /// per scenario subdirectory).
        run_dir: PathBuf,
        /// Where to write the report (default: RUN_DIR).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run every design variant a scenario declares, and the scenario as it is, on the same
    /// seeds, and put their figures side by side (Markdown and JSON).
    Compare {
        /// The scenario file (JSON) that declares the design variants.
        scenario: PathBuf,
        /// Run seeds 1 to N (default: the seeds the scenario lists).
        #[arg(long)]
        seeds: Option<u64>,
        /// Worker threads (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Where to write results (default: reports/out/compare/<scenario name> in the current
        /// directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The design review: run each claim of the design (seed 003) as its scenarios' designs
    /// on fixed seeds, apply each claim's verdict rule to the figures, and write
    /// reports/design-review/review.md and index.html (byte-for-byte reproducible).
    Review {
        /// Review only this claim (repeatable; default: every claim).
        #[arg(long = "claim")]
        claims: Vec<String>,
        /// Run seeds 1 to N of every design instead of each claim's own count.
        #[arg(long)]
        seeds: Option<u64>,
        /// Worker threads (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Where to write the review (default: reports/design-review).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run seeds 1, 2, ... of a scenario until the first failing one, shrink it, and check the
    /// shrunk plan fails the same check the same way; write DIR/hunt.json and DIR/shrunk.json.
    /// Exit 1 when a seed failed, 0 when none did.
    Hunt {
        /// The scenario file (JSON).
        scenario: PathBuf,
        /// Try seeds 1 to N.
        #[arg(long, default_value_t = pessimist_scenarios::mutants::SEEDS_DEFAULT)]
        seeds: u64,
        /// Worker threads (default: the number of cores); the answer does not depend on it.
        #[arg(long)]
        jobs: Option<usize>,
        /// The check to shrink toward when it is among those that failed (default: the first
        /// failing one by name).
        #[arg(long)]
        check: Option<String>,
        /// Most simulation runs the shrink may spend (0: do not shrink).
        #[arg(long, default_value_t = pessimist_scenarios::mutants::SHRINK_RUNS_DEFAULT)]
        shrink_runs: usize,
        /// Where to write hunt.json and shrunk.json (default: reports/out/hunt/<scenario name>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The zoo of known bugs: apply each patch of zoo/ to a scratch copy of the source, build
    /// it, hunt on the scenario and the swarm its header names, shrink, then run the unpatched
    /// tree on the same seeds; print and write the table (zoo.md, zoo.json). Exit 0 when every
    /// bug was caught by both, 1 when one got away or the unpatched tree failed, 4 when a
    /// patch does not apply or its mutant does not build.
    Mutants {
        /// Only this bug (its file name without .patch, or its number; repeatable).
        #[arg(long = "bug")]
        bugs: Vec<String>,
        /// The folder of patches (default: SOURCE's zoo/).
        #[arg(long)]
        zoo: Option<PathBuf>,
        /// The source tree the mutants are made from (default: the checkout this binary was
        /// built from).
        #[arg(long)]
        source: Option<PathBuf>,
        /// Try seeds 1 to N of each scenario.
        #[arg(long, default_value_t = pessimist_scenarios::mutants::SEEDS_DEFAULT)]
        seeds: u64,
        /// Worker threads per hunt (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Most simulation runs each shrink may spend (0: do not shrink).
        #[arg(long, default_value_t = pessimist_scenarios::mutants::SHRINK_RUNS_DEFAULT)]
        shrink_runs: usize,
        /// Skip running the unpatched tree (then no catch is proven to be the bug's).
        #[arg(long)]
        no_baseline: bool,
        /// Run the unpatched tree with this `pessimist`, built from it, instead of building
        /// the scratch copy again (CI passes the build it just made).
        #[arg(long, conflicts_with = "no_baseline")]
        baseline_binary: Option<PathBuf>,
        /// The one target directory every mutant builds into.
        #[arg(long, default_value = "target/zoo")]
        target_dir: PathBuf,
        /// The scratch copy of the source tree, outside the checkout (default: a directory
        /// under the system's temporary directory).
        #[arg(long)]
        scratch: Option<PathBuf>,
        /// Where the table, the hunts and the shrunk plans go (default: reports/out/zoo).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the scenario files' JSON Schema (generated from the scenario types), or write it
    /// to FILE (the checked-in copy is scenarios/schema.json).
    Schema {
        /// Write the schema to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A local cluster of real processes on loopback (the real build: `RUSTFLAGS= cargo run
    /// --release --target-dir target/real -- cluster ...`).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Re-run one seed and print its history readably, then its verdicts.
    Replay {
        /// The scenario file (JSON).
        scenario: PathBuf,
        /// The seed to re-run.
        #[arg(long)]
        seed: u64,
    },
    /// Check histories for linearizability: one line per file with the verdict, the number of
    /// operations and the time; a witness under each non-linearizable one. Exit 1 when a
    /// verdict disagrees with the file's `expect`, 2 for a malformed file, 3 when a search spent its
    /// budget (`unknown`).
    Lincheck {
        /// History files (see sim/tests/data/lincheck/README.md for the format).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Give up on a history after exploring this many states and answer `unknown` (the
        /// same verdict on any machine).
        #[arg(long, default_value_t = pessimist_sim::lincheck::STATES_EXPLORED_MAX)]
        budget: u64,
        /// One JSON object per file instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Start the scenario's topology as processes under a supervisor that restarts any that
    /// exits; wait until it is ready; print the API and admin addresses and the admin key.
    Up {
        /// The scenario (default: the one DIR was made from, else
        /// scenarios/service-baseline.json).
        scenario: Option<PathBuf>,
        /// The cluster's directory: its layout, the nodes' data and logs.
        #[arg(long, default_value = "target/cluster")]
        dir: PathBuf,
        /// The first node's port on 127.0.0.1; each node takes two.
        #[arg(long, default_value_t = 17400)]
        base_port: u16,
        /// The seed the nodes' random choices derive from.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Delete DIR's data first and start from nothing.
        #[arg(long)]
        fresh: bool,
    },
    /// Stop every process of the cluster (SIGTERM, then SIGKILL); the data stays.
    Down {
        /// The cluster's directory: its layout, the nodes' data and logs.
        #[arg(long, default_value = "target/cluster")]
        dir: PathBuf,
    },
    /// Each node's role, address, pid (or down) and boots.
    Status {
        /// The cluster's directory: its layout, the nodes' data and logs.
        #[arg(long, default_value = "target/cluster")]
        dir: PathBuf,
    },
    /// Send SIGKILL to nodes (the supervisor restarts them).
    Kill {
        /// The nodes to kill, by name.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// The cluster's directory: its layout, the nodes' data and logs.
        #[arg(long, default_value = "target/cluster")]
        dir: PathBuf,
    },
    /// Run the scenario's service workload against the cluster, drain, and check the history
    /// with the simulator's checkers; write DIR/drive/history.jsonl and summary.json.
    Drive {
        /// The cluster's directory: its layout, the nodes' data and logs.
        #[arg(long, default_value = "target/cluster")]
        dir: PathBuf,
        /// How long uploads go on.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// How long accepted jobs then have to finish.
        #[arg(long, default_value_t = 60)]
        drain_seconds: u64,
        /// Uploaders (default: the scenario's).
        #[arg(long)]
        uploaders: Option<u64>,
        /// Uploads per second per uploader (default: the scenario's).
        #[arg(long)]
        uploads_per_s: Option<f64>,
    },
    /// Uploads per second through a fresh real cluster on loopback, beside the simulated
    /// figure for the same scenario (run by the simulation build of pessimist).
    Bench {
        /// The scenario whose topology and workload to measure.
        #[arg(default_value = "scenarios/bench/service-throughput.json")]
        scenario: PathBuf,
        /// The bench cluster's directory (made fresh).
        #[arg(long, default_value = "target/cluster-bench")]
        dir: PathBuf,
        /// The first node's port on 127.0.0.1; each node takes two.
        #[arg(long, default_value_t = 17600)]
        base_port: u16,
        /// The simulation build of pessimist.
        #[arg(long, default_value = "target/release/pessimist")]
        sim_binary: PathBuf,
    },
    /// The supervisor (started by `up`).
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        dir: PathBuf,
    },
    /// One node's process (started by the supervisor).
    #[command(hide = true)]
    Node {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 0)]
        incarnation: u64,
    },
}

/// Where results go when no `--out` is given: relative to the current directory, like any
/// other output a command writes (never into the source tree the binary was built from).
const OUT_DIR_DEFAULT: &str = "reports/out";

const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_INCONCLUSIVE: u8 = 3;

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
        Some(Command::Run { scenario, seed, seeds, jobs, out }) => {
            run(&scenario, seed, seeds, jobs, out)
        }
        Some(Command::Sweep { scenarios, seeds, jobs, shard, out, junit, shrink }) => {
            sweep(&scenarios, seeds, jobs, shard, out, junit, shrink)
        }
        Some(Command::Merge { dirs, out, junit }) => merge(&dirs, out, junit),
        Some(Command::Replay { scenario, seed }) => replay(&scenario, seed),
        Some(Command::Shrink { scenario, seed, out, check, runs_max }) => {
            shrink(&scenario, seed, out, check, runs_max)
        }
        Some(Command::Report { run_dir, out }) => report(&run_dir, out),
        Some(Command::Compare { scenario, seeds, jobs, out }) => {
            compare(&scenario, seeds, jobs, out)
        }
        Some(Command::Review { claims, seeds, jobs, out }) => review(claims, seeds, jobs, out),
        Some(Command::Schema { out: None }) => {
            print!("{}", pessimist_scenarios::scenario_schema());
            ExitCode::SUCCESS
        }
        Some(Command::Schema { out: Some(out) }) => {
            match std::fs::write(&out, pessimist_scenarios::scenario_schema()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => bad_input(format!("cannot write {}: {error}", out.display())),
            }
        }
        Some(Command::Cluster { command }) => cluster(command),
        Some(Command::Hunt { scenario, seeds, jobs, check, shrink_runs, out }) => {
            hunt(&scenario, seeds, jobs, check, shrink_runs, out)
        }
        Some(Command::Mutants {
            bugs,
            zoo,
            source,
            seeds,
            jobs,
            shrink_runs,
            no_baseline,
            baseline_binary,
            target_dir,
            scratch,
            out,
        }) => {
            let baseline = (!no_baseline).then_some(baseline_binary);
            let target = (target_dir, scratch);
            mutants(bugs, (source, zoo), seeds, jobs, shrink_runs, baseline, target, out)
        }
        Some(Command::Lincheck { files, budget, json }) => {
            let status = pessimist_sim::lincheck::cli::run(&files, budget, json);
            ExitCode::from(u8::try_from(status).unwrap_or(EXIT_BAD_INPUT))
        }
    }
}

#[cfg(madsim)]
fn cluster(_: ClusterCommand) -> ExitCode {
    eprintln!("pessimist: the cluster runs real processes, so it needs the real build: `RUSTFLAGS= cargo run --release --target-dir target/real -- cluster ...`");
    ExitCode::from(EXIT_BAD_INPUT)
}

#[cfg(not(madsim))]
fn cluster(command: ClusterCommand) -> ExitCode {
    use pessimist_scenarios::cluster;
    let outcome = match command {
        ClusterCommand::Up { scenario, dir, base_port, seed, fresh } => {
            cluster::up(&cluster::UpOptions { scenario, dir, base_port, seed, fresh })
                .map(|text| println!("{text}"))
        }
        ClusterCommand::Down { dir } => cluster::down(&dir).map(|text| println!("{text}")),
        ClusterCommand::Status { dir } => cluster::status(&dir).map(|text| println!("{text}")),
        ClusterCommand::Kill { nodes, dir } => {
            cluster::kill_nodes(&dir, &nodes).map(|text| println!("{text}"))
        }
        ClusterCommand::Bench { scenario, dir, base_port, sim_binary } => {
            cluster::bench(&cluster::BenchOptions { scenario, dir, base_port, sim_binary })
                .map(|text| println!("{text}"))
        }
        ClusterCommand::Supervise { dir } => cluster::supervise(&dir),
        ClusterCommand::Node { dir, name, incarnation } => cluster::node(&dir, &name, incarnation),
        ClusterCommand::Drive { dir, seconds, drain_seconds, uploaders, uploads_per_s } => {
            let options =
                cluster::DriveOptions { dir, seconds, drain_seconds, uploaders, uploads_per_s };
            match cluster::drive(&options) {
                Ok(summary) => {
                    for (name, verdict) in &summary.checks {
                        let word = verdict.status.word();
                        println!("{name:<14} {word}");
                        for violation in verdict.violations.iter().take(5) {
                            println!("    {violation}");
                        }
                    }
                    println!(
                        "accepted uploads: {} per second over {} s; history and summary in {}",
                        summary.accepted_per_s,
                        summary.seconds,
                        cluster::Layout::new(&options.dir).drive().display()
                    );
                    return verdict_code(summary.outcome);
                }
                Err(failure) => Err(failure),
            }
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("pessimist cluster: {}", failure.message);
            ExitCode::from(failure.code)
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
fn run(_: &Path, _: Option<u64>, _: Option<u64>, _: Option<usize>, _: Option<PathBuf>) -> ExitCode {
    simulation_unavailable()
}

#[cfg(not(madsim))]
fn replay(_: &Path, _: u64) -> ExitCode {
    simulation_unavailable()
}

#[cfg(not(madsim))]
fn shrink(_: &Path, _: u64, _: Option<PathBuf>, _: Option<String>, _: usize) -> ExitCode {
    simulation_unavailable()
}

#[cfg(not(madsim))]
fn hunt(
    _: &Path,
    _: u64,
    _: Option<usize>,
    _: Option<String>,
    _: usize,
    _: Option<PathBuf>,
) -> ExitCode {
    simulation_unavailable()
}

/// Hunts for the first failing seed and shrinks it (see `pessimist_scenarios::mutants::hunt`).
#[cfg(madsim)]
fn hunt(
    path: &Path,
    seeds: u64,
    jobs: Option<usize>,
    check: Option<String>,
    shrink_runs: usize,
    out: Option<PathBuf>,
) -> ExitCode {
    use pessimist_scenarios::mutants;

    let scenario = match load_scenario(path) {
        Ok(scenario) => scenario,
        Err(error) => return bad_input(error),
    };
    if seeds == 0 {
        return bad_input("--seeds must be at least 1");
    }
    let jobs = match jobs_or_cores(jobs) {
        Ok(jobs) => jobs,
        Err(message) => return bad_input(message),
    };
    let out = out.unwrap_or_else(|| Path::new(OUT_DIR_DEFAULT).join("hunt").join(&scenario.name));
    if let Err(error) = std::fs::create_dir_all(&out) {
        return bad_input(format!("cannot create {}: {error}", out.display()));
    }
    let file = suite::display_path(path);
    let found = mutants::hunt(
        &scenario,
        &file,
        seeds,
        jobs,
        check.as_deref().filter(|check| !check.is_empty()),
        shrink_runs,
        &out.join(mutants::SHRUNK_FILE),
    );
    let found = match found {
        Ok(found) => found,
        Err(message) => return bad_input(message),
    };
    let text = serde_json::to_string_pretty(&found).expect("hunts serialize") + "\n";
    let written = out.join(mutants::HUNT_FILE);
    if let Err(error) = std::fs::write(&written, text) {
        return bad_input(format!("cannot write {}: {error}", written.display()));
    }
    println!("{}: {}", scenario.name, mutants::hunt_line(&found));
    println!("hunt: {}", suite::display_path(&written));
    if found.failure.is_some() {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The threads to use: `jobs`, or the cores; at least 1 and at most 1024.
fn jobs_or_cores(jobs: Option<usize>) -> Result<usize, String> {
    let cores = std::thread::available_parallelism().map(|cores| cores.get()).unwrap_or(1);
    match jobs.unwrap_or(cores) {
        0 => Err("--jobs must be at least 1".into()),
        jobs if jobs > 1024 => Err(format!("--jobs {jobs}: at most 1024")),
        jobs => Ok(jobs),
    }
}

/// Runs the zoo of known bugs (see `pessimist_scenarios::mutants::run_zoo`).
#[allow(clippy::too_many_arguments)]
fn mutants(
    bugs: Vec<String>,
    (source, zoo): (Option<PathBuf>, Option<PathBuf>),
    seeds: u64,
    jobs: Option<usize>,
    shrink_runs: usize,
    baseline: Option<Option<PathBuf>>,
    (target_dir, scratch): (PathBuf, Option<PathBuf>),
    out: Option<PathBuf>,
) -> ExitCode {
    use pessimist_scenarios::mutants;

    if seeds == 0 {
        return bad_input("--seeds must be at least 1");
    }
    let jobs = match jobs_or_cores(jobs) {
        Ok(jobs) => jobs,
        Err(message) => return bad_input(message),
    };
    let root = source.unwrap_or_else(suite::workspace_root);
    if !root.join("Cargo.toml").is_file() || !root.join("core").is_dir() {
        return bad_input(format!("{}: not a pessimist source tree", root.display()));
    }
    // One scratch copy per checkout, so two checkouts' zoos do not share one.
    let scratch = scratch.unwrap_or_else(|| {
        let checkout = root.file_name().map_or("checkout".into(), |name| name.to_string_lossy());
        std::env::temp_dir().join("pessimist-zoo").join(checkout.as_ref())
    });
    let options = mutants::ZooOptions {
        scratch,
        zoo: zoo.unwrap_or_else(|| root.join(mutants::ZOO_DIR)),
        root,
        bugs,
        seeds,
        jobs,
        shrink_runs,
        target_dir,
        out: out.unwrap_or_else(|| Path::new(OUT_DIR_DEFAULT).join("zoo")),
        baseline: baseline.is_some(),
        baseline_binary: baseline.flatten(),
    };
    match mutants::run_zoo(&options, |line| eprintln!("mutants: {line}")) {
        Ok(report) => {
            print!("{}", report.markdown());
            println!("table: {}", suite::display_path(&options.out.join("zoo.md")));
            ExitCode::from(report.exit_code())
        }
        Err(message) => bad_input(message),
    }
}

#[cfg(not(madsim))]
fn review(_: Vec<String>, _: Option<u64>, _: Option<usize>, _: Option<PathBuf>) -> ExitCode {
    simulation_unavailable()
}

#[cfg(not(madsim))]
fn compare(_: &Path, _: Option<u64>, _: Option<usize>, _: Option<PathBuf>) -> ExitCode {
    simulation_unavailable()
}

fn report(run_dir: &Path, out: Option<PathBuf>) -> ExitCode {
    let out = out.unwrap_or_else(|| run_dir.to_path_buf());
    match pessimist_reports::write_report(run_dir, &out) {
        Ok(written) => {
            println!("report: {}", suite::display_path(&written.html));
            println!("        {}", suite::display_path(&written.markdown));
            println!("        {}", suite::display_path(&written.json));
            verdict_code(written.report.outcome)
        }
        Err(message) => bad_input(message),
    }
}

#[cfg(not(madsim))]
fn sweep(
    _: &[PathBuf],
    _: Option<u64>,
    _: Option<usize>,
    _: Option<pessimist_scenarios::sweep::Shard>,
    _: Option<PathBuf>,
    _: Option<PathBuf>,
    _: bool,
) -> ExitCode {
    simulation_unavailable()
}

fn bad_input(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("pessimist: {message}");
    ExitCode::from(EXIT_BAD_INPUT)
}

fn verdict_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Passed => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::from(EXIT_FAILED),
        Outcome::Inconclusive => ExitCode::from(EXIT_INCONCLUSIVE),
    }
}

/// Prints the checks of `seed` that did not pass: violations of failed ones, the reason of
/// undecided ones.
fn print_not_passed(seed: &pessimist_sim::summary::SeedSummary, violations_max: usize) {
    for (name, check) in &seed.checks {
        match check.status {
            Status::Failed => {
                for violation in check.violations.iter().take(violations_max) {
                    println!("    {name}: {violation}");
                }
                if check.violations.len() > violations_max {
                    println!("    {name}: ... {} more", check.violations.len() - violations_max);
                }
            }
            Status::Unknown => {
                let reason = check.figures.get("unknown_reason").cloned().unwrap_or_default();
                println!("    {name}: UNKNOWN (could not decide: {reason})");
            }
            Status::Passed | Status::FailedAsExpected | Status::Figures => {}
        }
    }
}

/// One scenario's seeds that did not pass, in words: `2 FAILED, 1 INCONCLUSIVE`.
fn not_passed_counts(seeds: &[pessimist_sim::summary::SeedSummary]) -> String {
    let count = |outcome| seeds.iter().filter(|seed| seed.outcome == outcome).count();
    let parts: Vec<String> = [Outcome::Failed, Outcome::Inconclusive]
        .into_iter()
        .filter(|&outcome| count(outcome) > 0)
        .map(|outcome| format!("{} {}", count(outcome), outcome.word()))
        .collect();
    if parts.is_empty() {
        "passed".to_string()
    } else {
        parts.join(", ")
    }
}

/// Prints each failing seed (its failed checks, replay and shrink commands) and one line
/// per scenario.
fn print_failures(runs: &[pessimist_sim::summary::RunSummary]) {
    for run in runs {
        for seed in run.seeds.iter().filter(|seed| !seed.outcome.passed()) {
            println!("{}  seed {}  {}", run.scenario, seed.seed, seed.outcome.word());
            print_not_passed(seed, 3);
            println!("    replay: {}", seed.replay);
            if let Some(shrink) = &seed.shrink {
                println!("    shrink: {shrink}");
            }
        }
    }
    for run in runs {
        println!(
            "{:<32} {:>6} seeds  {}",
            run.scenario,
            run.seeds.len(),
            not_passed_counts(&run.seeds)
        );
        for line in run.unreached() {
            println!("    FAILED: {line}");
        }
    }
}

fn write_junit(path: &Path, runs: &[pessimist_sim::summary::RunSummary]) -> Result<(), String> {
    std::fs::write(path, pessimist_scenarios::sweep::junit_xml(runs))
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn merge(dirs: &[PathBuf], out: Option<PathBuf>, junit: Option<PathBuf>) -> ExitCode {
    let out = out.unwrap_or_else(|| Path::new(OUT_DIR_DEFAULT).join("merged"));
    let merged = match pessimist_scenarios::sweep::merge(dirs, &out) {
        Ok(merged) => merged,
        Err(message) => return bad_input(message),
    };
    print_failures(&merged.runs);
    if let Some(junit) = junit {
        if let Err(message) = write_junit(&junit, &merged.runs) {
            return bad_input(message);
        }
    }
    println!(
        "{} shard directories, {} seeds, {} failed, {} inconclusive",
        dirs.len(),
        merged.manifest.seeds_run,
        merged.manifest.seeds_failed,
        merged.manifest.seeds_inconclusive
    );
    println!("results: {}", suite::display_path(&out.join("sweep.json")));
    verdict_code(merged.manifest.outcome)
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
        println!(
            "{}  seed {:<6} {}  history {}",
            run.scenario,
            seed.seed,
            seed.outcome.word(),
            &seed.history_hash[..seed.history_hash.len().min(16)]
        );
        if !seed.outcome.passed() {
            print_not_passed(seed, usize::MAX);
            println!("    replay: {}", seed.replay);
            if let Some(shrink) = &seed.shrink {
                println!("    shrink: {shrink}");
            }
        }
    }
    for situation in &run.must_happen {
        let word = match situation.seeds_reached {
            0 if run.seeds.len() >= pessimist_sim::summary::COVERAGE_SEEDS_MIN => "FAILED",
            0 => "not reached",
            _ => "reached",
        };
        println!(
            "must happen: {:<26} {word} in {} of {} seeds",
            situation.situation, situation.seeds_reached, situation.seeds
        );
    }
}

#[cfg(madsim)]
fn run(
    path: &Path,
    seed: Option<u64>,
    seeds: Option<u64>,
    jobs: Option<usize>,
    out: Option<PathBuf>,
) -> ExitCode {
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
    let jobs = jobs.unwrap_or_else(default_jobs);
    if !(1..=JOBS_MAX).contains(&jobs) {
        return bad_input(format!("--jobs must be between 1 and {JOBS_MAX}"));
    }
    let out = out.unwrap_or_else(|| Path::new(OUT_DIR_DEFAULT).join(&scenario.name));
    if let Err(message) = suite::clear_previous_results(&out) {
        return bad_input(message);
    }
    let file = suite::display_path(path);
    let run = match suite::run_scenario(&scenario, &file, &seeds, Some(&out), jobs.min(seeds.len()))
    {
        Ok(run) => run,
        Err(message) => return bad_input(message),
    };
    print_run(&run);
    println!("results: {}", suite::display_path(&out.join("summary.json")));
    verdict_code(run.outcome)
}

#[cfg(madsim)]
fn run_default_suite() -> ExitCode {
    let files = match suite::default_suite_files() {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            return bad_input(format!(
                "no scenario files in {}",
                suite::workspace_root().join("scenarios").display()
            ));
        }
        Err(error) => return bad_input(format!("cannot list the scenarios: {error}")),
    };
    let scenarios = match load_sweep_scenarios(&files) {
        Ok(scenarios) => scenarios,
        Err(message) => return bad_input(message),
    };
    let out = PathBuf::from(OUT_DIR_DEFAULT);
    let (manifest, runs) = match run_sweep(&scenarios, None, default_jobs(), None, &out) {
        Ok(done) => done,
        Err(message) => return bad_input(message),
    };
    let summary_path = out.join("summary.md");
    if let Err(error) = std::fs::write(&summary_path, pessimist_reports::markdown_summary(&runs)) {
        return bad_input(format!("cannot write {}: {error}", summary_path.display()));
    }
    let written = match pessimist_reports::write_report(&out, &out) {
        Ok(written) => written,
        Err(message) => return bad_input(message),
    };
    println!("results: {}", suite::display_path(&summary_path));
    println!("report: {}", suite::display_path(&written.html));
    verdict_code(manifest.outcome)
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
            return verdict_code(outcome.outcome);
        }
    }
    let mut summary = String::from("\n");
    for (name, check) in &outcome.checks {
        let figures = serde_json::to_string(&check.figures).expect("figures serialize");
        summary.push_str(&format!("{name}: {}  {figures}\n", check.status.word()));
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
    verdict_code(outcome.outcome)
}

/// The scenario files the arguments name: files as given, directories as their `*.json`
/// files (but the schema), sorted.
#[cfg(madsim)]
fn scenario_files(arguments: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for argument in arguments {
        if argument.is_dir() {
            let found = suite::scenario_files_in(argument)
                .map_err(|error| format!("{}: cannot list: {error}", argument.display()))?;
            if found.is_empty() {
                return Err(format!("{}: no scenario files (*.json) in it", argument.display()));
            }
            files.extend(found);
        } else {
            files.push(argument.clone());
        }
    }
    Ok(files)
}

/// Loads scenario files for a sweep: each must load, and names must differ (they name the
/// output directories).
#[cfg(madsim)]
fn load_sweep_scenarios(
    files: &[PathBuf],
) -> Result<Vec<(pessimist_sim::scenario::Scenario, String)>, String> {
    let mut scenarios: Vec<(pessimist_sim::scenario::Scenario, String)> = Vec::new();
    for path in files {
        let scenario = load_scenario(path).map_err(|error| error.to_string())?;
        let file = suite::display_path(path);
        if let Some((_, other)) = scenarios.iter().find(|(known, _)| known.name == scenario.name) {
            return Err(format!(
                "{file}: scenario name {:?} is also the name of {other}; a sweep needs distinct names",
                scenario.name
            ));
        }
        scenarios.push((scenario, file));
    }
    Ok(scenarios)
}

#[cfg(madsim)]
fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|cores| cores.get()).unwrap_or(1)
}

/// Most worker threads a sweep may start.
#[cfg(madsim)]
const JOBS_MAX: usize = 1024;

/// Runs a sweep; returns the manifest and the runs, or a bad-input message.
#[cfg(madsim)]
fn run_sweep(
    scenarios: &[(pessimist_sim::scenario::Scenario, String)],
    seeds: Option<u64>,
    jobs: usize,
    shard: Option<pessimist_scenarios::sweep::Shard>,
    out: &Path,
) -> Result<
    (pessimist_scenarios::sweep::SweepManifest, Vec<pessimist_sim::summary::RunSummary>),
    String,
> {
    use pessimist_scenarios::sweep::{self, PlannedScenario, SEEDS_MAX};

    if !(1..=JOBS_MAX).contains(&jobs) {
        return Err(format!("--jobs must be between 1 and {JOBS_MAX}"));
    }
    if let Some(count) = seeds {
        if !(1..=SEEDS_MAX).contains(&count) {
            return Err(format!("--seeds must be between 1 and {SEEDS_MAX}"));
        }
    }
    let plan: Vec<PlannedScenario> = scenarios
        .iter()
        .map(|(scenario, file)| PlannedScenario {
            name: scenario.name.clone(),
            file: file.clone(),
            description: scenario.description.clone(),
            heal_ok_fraction_min: scenario.checks.heal_ok_fraction_min,
            seeds: match seeds {
                Some(count) => (1..=count).collect(),
                None => scenario.seeds.clone(),
            },
        })
        .collect();
    suite::clear_previous_results(out)?;
    let pairs = sweep::shard_pairs(&sweep::plan_pairs(&plan), shard);
    let started = std::time::Instant::now();
    let results = sweep::run_pairs(scenarios, &pairs, jobs, Some(out))?;
    let wall_s = started.elapsed().as_secs_f64();
    let runs = sweep::group_runs(&plan, results);
    let manifest = sweep::manifest(&plan, shard, &runs);
    sweep::write_sweep(out, &manifest, &runs)
        .map_err(|error| format!("cannot write results to {}: {error}", out.display()))?;
    print_failures(&runs);
    let shard = shard.map(|shard| format!(" (shard {shard})")).unwrap_or_default();
    println!(
        "{} scenarios, {} seeds{shard}: {}; {wall_s:.1} s on {jobs} worker threads, {:.0} seeds per hour",
        runs.len(),
        manifest.seeds_run,
        match manifest.outcome {
            Outcome::Passed => "all checks passed".to_string(),
            _ => format!(
                "{} seeds FAILED, {} INCONCLUSIVE",
                manifest.seeds_failed, manifest.seeds_inconclusive
            ),
        },
        manifest.seeds_run as f64 * 3600.0 / wall_s.max(1e-9),
    );
    Ok((manifest, runs))
}

#[cfg(madsim)]
fn sweep(
    arguments: &[PathBuf],
    seeds: Option<u64>,
    jobs: Option<usize>,
    shard: Option<pessimist_scenarios::sweep::Shard>,
    out: Option<PathBuf>,
    junit: Option<PathBuf>,
    shrink: bool,
) -> ExitCode {
    let scenarios = match scenario_files(arguments).and_then(|files| load_sweep_scenarios(&files)) {
        Ok(scenarios) => scenarios,
        Err(message) => return bad_input(message),
    };
    let out = out.unwrap_or_else(|| Path::new(OUT_DIR_DEFAULT).join("sweep"));
    let jobs = jobs.unwrap_or_else(default_jobs);
    let (manifest, runs) = match run_sweep(&scenarios, seeds, jobs, shard, &out) {
        Ok(done) => done,
        Err(message) => return bad_input(message),
    };
    if let Some(junit) = junit {
        if let Err(message) = write_junit(&junit, &runs) {
            return bad_input(message);
        }
    }
    if shrink {
        if let Err(message) = shrink_failures(&scenarios, &runs, &out) {
            return bad_input(message);
        }
    }
    println!("results: {}", suite::display_path(&out.join("sweep.json")));
    verdict_code(manifest.outcome)
}

/// Failing seeds shrunk per scenario by `sweep --shrink`.
#[cfg(madsim)]
const SHRUNK_SEEDS_MAX: usize = 5;

/// Shrinks the first failing seeds of each run into `out/<name>/shrunk/seed-N.json`.
#[cfg(madsim)]
fn shrink_failures(
    scenarios: &[(pessimist_sim::scenario::Scenario, String)],
    runs: &[pessimist_sim::summary::RunSummary],
    out: &Path,
) -> Result<(), String> {
    for run in runs {
        let (scenario, file) = scenarios
            .iter()
            .find(|(scenario, _)| scenario.name == run.scenario)
            .expect("every run is of a scenario of the sweep");
        // A seed without a shrink command panicked: there is no checker's failure to keep.
        let failing = run.seeds.iter().filter(|seed| seed.shrink.is_some());
        for seed in failing.take(SHRUNK_SEEDS_MAX) {
            let shrunk = pessimist_scenarios::shrink::shrink(
                scenario,
                file,
                seed.seed,
                None,
                pessimist_scenarios::shrink::RUNS_MAX_DEFAULT,
                |_| {},
            );
            let shrunk = match shrunk {
                Ok(shrunk) => shrunk,
                Err(message) => {
                    eprintln!(
                        "pessimist: {} seed {}: not shrunk: {message}",
                        run.scenario, seed.seed
                    );
                    continue;
                }
            };
            let path =
                out.join(&run.scenario).join(pessimist_reports::report::shrunk_path(seed.seed));
            let parent = path.parent().expect("the path has a directory");
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
            let text =
                serde_json::to_string_pretty(&shrunk.scenario).expect("scenarios serialize") + "\n";
            std::fs::write(&path, text)
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            println!(
                "{} seed {}: shrunk to {} of {} fault events: {}",
                run.scenario,
                seed.seed,
                shrunk.scenario.faults.plan.events.len(),
                shrunk.events_before,
                suite::display_path(&path)
            );
        }
    }
    Ok(())
}

/// Shrinks a failing seed and writes the minimal scenario: exit 0 when it is written, 2 when
/// there was nothing to shrink (the seed passes, or bad input).
#[cfg(madsim)]
fn shrink(
    path: &Path,
    seed: u64,
    out: Option<PathBuf>,
    check: Option<String>,
    runs_max: usize,
) -> ExitCode {
    let scenario = match load_scenario(path) {
        Ok(scenario) => scenario,
        Err(error) => return bad_input(error),
    };
    if runs_max < 2 {
        return bad_input("--runs-max must be at least 2");
    }
    let file = suite::display_path(path);
    let shrunk = pessimist_scenarios::shrink::shrink(
        &scenario,
        &file,
        seed,
        check.as_deref(),
        runs_max,
        |step| eprintln!("shrink: {step}"),
    );
    let shrunk = match shrunk {
        Ok(shrunk) => shrunk,
        Err(message) => return bad_input(message),
    };
    let out = out.unwrap_or_else(|| {
        Path::new(OUT_DIR_DEFAULT)
            .join("shrunk")
            .join(format!("{}-seed-{seed}.json", scenario.name))
    });
    let text = serde_json::to_string_pretty(&shrunk.scenario).expect("scenarios serialize") + "\n";
    if let Some(parent) = out.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        if let Err(error) = std::fs::create_dir_all(parent) {
            return bad_input(format!("cannot create {}: {error}", parent.display()));
        }
    }
    if let Err(error) = std::fs::write(&out, text) {
        return bad_input(format!("cannot write {}: {error}", out.display()));
    }
    let written = suite::display_path(&out);
    println!(
        "{} seed {seed}: check {} still fails the same way ({}) with {} of {} fault events ({} runs{})",
        scenario.name,
        shrunk.checker,
        shrunk.kind,
        shrunk.scenario.faults.plan.events.len(),
        shrunk.events_before,
        shrunk.runs,
        if shrunk.budget_spent {
            ", budget spent: a larger --runs-max may shrink further"
        } else {
            ""
        }
    );
    for event in &shrunk.scenario.faults.plan.events {
        println!("    {}", serde_json::to_string(event).expect("events serialize"));
    }
    println!("shrunk scenario: {written}");
    println!("replay: {}", suite::replay_command(&written, seed));
    ExitCode::SUCCESS
}

#[cfg(madsim)]
fn compare(path: &Path, seeds: Option<u64>, jobs: Option<usize>, out: Option<PathBuf>) -> ExitCode {
    use pessimist_scenarios::compare;

    let scenario = match load_scenario(path) {
        Ok(scenario) => scenario,
        Err(error) => return bad_input(error),
    };
    if scenario.variants.is_empty() {
        return bad_input(format!(
            "{}: declares no variants to compare (add \"variants\": [{{\"name\": ..., \"knobs\": {{...}}}}])",
            path.display()
        ));
    }
    let file = suite::display_path(path);
    let designs = compare::designs(&scenario, &file);
    let out =
        out.unwrap_or_else(|| Path::new(OUT_DIR_DEFAULT).join("compare").join(&scenario.name));
    let jobs = jobs.unwrap_or_else(default_jobs);
    let (manifest, runs) = match run_sweep(&designs, seeds, jobs, None, &out) {
        Ok(done) => done,
        Err(message) => return bad_input(message),
    };
    let comparison = compare::comparison(&scenario, &runs);
    let markdown = out.join("compare.md");
    let json = out.join("compare.json");
    for (path, text) in [
        (&markdown, compare::comparison_markdown(&comparison)),
        (&json, serde_json::to_string_pretty(&comparison).expect("comparisons serialize") + "\n"),
    ] {
        if let Err(error) = std::fs::write(path, text) {
            return bad_input(format!("cannot write {}: {error}", path.display()));
        }
    }
    print!("{}", compare::comparison_markdown(&comparison));
    println!("comparison: {}", suite::display_path(&markdown));
    println!("            {}", suite::display_path(&json));
    verdict_code(manifest.outcome)
}

#[cfg(madsim)]
fn review(
    claims: Vec<String>,
    seeds: Option<u64>,
    jobs: Option<usize>,
    out: Option<PathBuf>,
) -> ExitCode {
    use pessimist_scenarios::review;

    let jobs = jobs.unwrap_or_else(default_jobs);
    if !(1..=JOBS_MAX).contains(&jobs) {
        return bad_input(format!("--jobs must be between 1 and {JOBS_MAX}"));
    }
    let root = suite::workspace_root();
    let out = out.unwrap_or_else(|| root.join(review::OUT_DIR));
    let options = review::ReviewOptions { claims, seeds, jobs };
    let started = std::time::Instant::now();
    let built = match review::run_review(&options, &root) {
        Ok(built) => built,
        Err(message) => return bad_input(message),
    };
    if let Err(message) = review::write_review(&built, &out) {
        return bad_input(message);
    }
    for section in &built.sections {
        println!("claim {} ({}): {}", section.number, section.name, section.verdict);
    }
    // The time goes to the terminal only: the review itself holds no wall-clock figure.
    println!(
        "review: {} ({:.1} s on {jobs} worker threads)",
        suite::display_path(&out.join("index.html")),
        started.elapsed().as_secs_f64()
    );
    println!("        {}", suite::display_path(&out.join("review.md")));
    ExitCode::SUCCESS
}
