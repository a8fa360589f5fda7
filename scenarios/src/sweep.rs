//! Sweeps: many seeds of many scenarios, run in parallel on worker threads, optionally one
//! shard of them; merging the shards of a sweep; JUnit XML for CI dashboards.
//!
//! A sweep's *plan* is the list of (scenario, seeds). Its pairs (scenario, seed), in plan
//! order, are dealt to shards round-robin: shard `K/N` runs pairs `K-1`, `K-1+N`, ... so every
//! shard gets a share of every scenario. A sweep's output directory holds `sweep.json` (the
//! whole plan, the shard, the verdict) and per scenario `<name>/summary.json` and
//! `<name>/histories/seed-N.jsonl`, the layout `run` writes; `merge` joins shard directories
//! into one of the same layout.
//!
//! Each seed runs in its own madsim runtime, which is single-threaded and keeps its state in
//! thread-locals of the thread that runs it; worker threads are started outside any runtime.
//!
//! **Invariant:** a sweep's results do not depend on the number of worker threads or on the
//! order seeds finish in: every seed is a pure function of (scenario, seed), and results are
//! put back in plan order before anything is written but the per-seed histories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pessimist_sim::check::{Outcome, Status};
use pessimist_sim::summary::{RunSummary, SeedSummary};
use serde::{Deserialize, Serialize};

/// Most shards a sweep may be split into.
pub const SHARDS_MAX: u64 = 100_000;
/// Most seeds per scenario a sweep may ask for.
pub const SEEDS_MAX: u64 = 10_000_000;

/// One shard of a sweep: `index` of `count`, counted from 1 (`--shard 2/4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let wrong =
            || format!("{text:?} is not a shard K/N with 1 <= K <= N <= {SHARDS_MAX} (e.g. 2/4)");
        let (index, count) = text.split_once('/').ok_or_else(wrong)?;
        let index: u64 = index.trim().parse().map_err(|_| wrong())?;
        let count: u64 = count.trim().parse().map_err(|_| wrong())?;
        if index == 0 || index > count || count > SHARDS_MAX {
            return Err(wrong());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One scenario of a sweep's plan and the seeds the whole sweep runs of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedScenario {
    pub name: String,
    /// The scenario file as given, for replay commands.
    pub file: String,
    /// The scenario's description and SLO, carried into its run summary for the report.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal_ok_fraction_min: Option<f64>,
    pub seeds: Vec<u64>,
}

/// `sweep.json`: what a sweep (or one shard of it, or a merge of shards) set out to do and how
/// it ended. Holds no wall-clock figures, so it depends only on the plan and the seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepManifest {
    /// The whole sweep's plan, the same in every shard.
    pub plan: Vec<PlannedScenario>,
    /// The shard this directory holds; `None` for a whole sweep or a merge of every shard.
    pub shard: Option<Shard>,
    pub seeds_run: usize,
    pub seeds_failed: usize,
    /// Seeds with no failed check but one that could not decide: neither passed nor failed.
    pub seeds_inconclusive: usize,
    pub outcome: Outcome,
}

/// The (scenario index, seed) pairs of a plan, in plan order.
pub fn plan_pairs(plan: &[PlannedScenario]) -> Vec<(usize, u64)> {
    plan.iter()
        .enumerate()
        .flat_map(|(index, scenario)| scenario.seeds.iter().map(move |&seed| (index, seed)))
        .collect()
}

/// The pairs shard `shard` runs: every `count`-th pair, starting from pair `index - 1`.
pub fn shard_pairs(pairs: &[(usize, u64)], shard: Option<Shard>) -> Vec<(usize, u64)> {
    let Some(shard) = shard else { return pairs.to_vec() };
    assert!(1 <= shard.index && shard.index <= shard.count, "shard {shard} was validated");
    pairs.iter().copied().skip((shard.index - 1) as usize).step_by(shard.count as usize).collect()
}

/// Groups seed summaries (in plan order) into one run summary per scenario that has any.
pub fn group_runs(plan: &[PlannedScenario], results: Vec<(usize, SeedSummary)>) -> Vec<RunSummary> {
    let mut by_scenario: BTreeMap<usize, Vec<SeedSummary>> = BTreeMap::new();
    for (index, summary) in results {
        by_scenario.entry(index).or_default().push(summary);
    }
    by_scenario
        .into_iter()
        .map(|(index, seeds)| {
            let planned = &plan[index];
            RunSummary::new(
                planned.name.clone(),
                planned.file.clone(),
                planned.description.clone(),
                planned.heal_ok_fraction_min,
                seeds,
            )
        })
        .collect()
}

/// The manifest of runs that cover `plan` (or the shard of it).
pub fn manifest(
    plan: &[PlannedScenario],
    shard: Option<Shard>,
    runs: &[RunSummary],
) -> SweepManifest {
    let seeds_run = runs.iter().map(|run| run.seeds.len()).sum();
    let seeds = || runs.iter().flat_map(|run| &run.seeds);
    let count = |outcome| seeds().filter(|seed| seed.outcome == outcome).count();
    SweepManifest {
        plan: plan.to_vec(),
        shard,
        seeds_run,
        seeds_failed: count(Outcome::Failed),
        seeds_inconclusive: count(Outcome::Inconclusive),
        outcome: Outcome::worst(runs.iter().map(|run| run.outcome)),
    }
}

/// Writes `sweep.json` and each run's `summary.json` under `out` (histories are written as
/// seeds finish).
pub fn write_sweep(
    out: &Path,
    manifest: &SweepManifest,
    runs: &[RunSummary],
) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    for run in runs {
        let directory = out.join(&run.scenario);
        std::fs::create_dir_all(&directory)?;
        crate::suite::write_run_summary(run, &directory)?;
    }
    let text = serde_json::to_string_pretty(manifest).expect("manifests serialize");
    std::fs::write(out.join("sweep.json"), text + "\n")
}

/// Reads a JSON file into `T`, the error one line naming the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

/// Runs the given pairs of `scenarios` on `jobs` worker threads, showing progress on stderr
/// when it is a terminal, writing histories under `out/<name>/histories/` when `out` is given.
/// Returns the seed summaries in the order of `pairs`.
#[cfg(madsim)]
pub fn run_pairs(
    scenarios: &[(pessimist_sim::scenario::Scenario, String)],
    pairs: &[(usize, u64)],
    jobs: usize,
    out: Option<&Path>,
) -> Result<Vec<(usize, SeedSummary)>, String> {
    run_pairs_into(scenarios, pairs, jobs, &|name| out.map(|out| out.join(name)))
}

/// [`run_pairs`], each scenario's results in `directory(name)` (`None`: no histories written):
/// `run` writes one scenario's straight into its `--out`.
#[cfg(madsim)]
pub fn run_pairs_into(
    scenarios: &[(pessimist_sim::scenario::Scenario, String)],
    pairs: &[(usize, u64)],
    jobs: usize,
    directory: &(dyn Fn(&str) -> Option<PathBuf> + Sync),
) -> Result<Vec<(usize, SeedSummary)>, String> {
    use std::collections::BTreeSet;

    use indicatif::{ProgressBar, ProgressStyle};
    use rayon::prelude::*;

    assert!(jobs >= 1, "at least one worker thread");
    let used: BTreeSet<usize> = pairs.iter().map(|&(index, _)| index).collect();
    for index in used {
        if let Some(directory) = directory(&scenarios[index].0.name) {
            let histories = directory.join("histories");
            std::fs::create_dir_all(&histories)
                .map_err(|error| format!("cannot create {}: {error}", histories.display()))?;
        }
    }
    // A simulation runs the whole cluster on its thread's stack: give workers the main
    // thread's usual 8 MiB rather than the 2 MiB default.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .stack_size(8 << 20)
        .thread_name(|index| format!("sweep-{index}"))
        .build()
        .map_err(|error| format!("cannot start {jobs} worker threads: {error}"))?;
    let bar = ProgressBar::new(pairs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} seeds  {per_sec}  ETA {eta}  {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let inconclusive = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<(usize, SeedSummary), String>> = pool.install(|| {
        pairs
            .par_iter()
            .map(|&(index, seed)| {
                let (scenario, file) = &scenarios[index];
                let directory = directory(&scenario.name);
                let summary =
                    crate::suite::seed_summary(scenario, file, seed, directory.as_deref())
                        .map_err(|error| format!("cannot write a history: {error}"))?;
                if !summary.outcome.passed() {
                    let counter = match summary.outcome {
                        Outcome::Failed => &failed,
                        _ => &inconclusive,
                    };
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    bar.set_message(not_passed_message(&failed, &inconclusive));
                    let word = summary.outcome.word();
                    bar.suspend(|| eprintln!("{word:<12} {} seed {seed}", scenario.name));
                }
                bar.inc(1);
                Ok((index, summary))
            })
            .collect()
    });
    bar.finish_and_clear();
    results.into_iter().collect()
}

/// What merging shard directories produced.
#[derive(Debug)]
pub struct Merged {
    pub manifest: SweepManifest,
    pub runs: Vec<RunSummary>,
}

/// Joins the shard directories `inputs` (each written by `sweep --shard`, or by a whole
/// sweep) into `out`: the summaries merged in plan order, histories and shrunk plans copied. Fails when the
/// inputs come from different plans, when two hold the same seed, or when together they do
/// not cover the plan (a shard is missing).
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<Merged, String> {
    if inputs.is_empty() {
        return Err("merge needs at least one directory".into());
    }
    let out_canonical = out.canonicalize().ok();
    let mut plan: Option<(Vec<PlannedScenario>, &Path)> = None;
    // Per (scenario index, seed): the summary and the directory its history is in.
    let mut found: BTreeMap<(usize, u64), (SeedSummary, PathBuf)> = BTreeMap::new();
    for input in inputs {
        if out_canonical.is_some() && input.canonicalize().ok() == out_canonical {
            return Err(format!(
                "{}: the output directory cannot also be an input",
                input.display()
            ));
        }
        let manifest: SweepManifest = read_json(&input.join("sweep.json"))?;
        match &plan {
            None => plan = Some((manifest.plan.clone(), input)),
            Some((first, first_dir)) if *first != manifest.plan => {
                return Err(format!(
                    "{}: its sweep plan differs from that of {}: not shards of one sweep",
                    input.display(),
                    first_dir.display()
                ));
            }
            Some(_) => {}
        }
        let planned = &plan.as_ref().expect("set above").0;
        for (index, scenario) in planned.iter().enumerate() {
            let directory = input.join(&scenario.name);
            let path = directory.join("summary.json");
            if !path.exists() {
                continue; // This shard ran no seed of the scenario.
            }
            let run: RunSummary = read_json(&path)?;
            if run.scenario != scenario.name {
                return Err(format!(
                    "{}: holds scenario {:?}, the plan says {:?}",
                    path.display(),
                    run.scenario,
                    scenario.name
                ));
            }
            for seed in run.seeds {
                if !scenario.seeds.contains(&seed.seed) {
                    return Err(format!(
                        "{}: seed {} is not in the sweep's plan",
                        path.display(),
                        seed.seed
                    ));
                }
                if let Some((_, other)) = found.get(&(index, seed.seed)) {
                    return Err(format!(
                        "seed {} of {} is in both {} and {}: overlapping shards",
                        seed.seed,
                        scenario.name,
                        other.display(),
                        input.display()
                    ));
                }
                found.insert((index, seed.seed), (seed, directory.clone()));
            }
        }
    }
    let plan = plan.expect("at least one input").0;
    let pairs = plan_pairs(&plan);
    let missing: Vec<&(usize, u64)> =
        pairs.iter().filter(|pair| !found.contains_key(pair)).collect();
    if let Some(&&(index, seed)) = missing.first() {
        return Err(format!(
            "{} of the plan's {} seeds are in no input (the first: {} seed {seed}); is a shard missing?",
            missing.len(),
            pairs.len(),
            plan[index].name
        ));
    }
    let mut results = Vec::with_capacity(pairs.len());
    for pair in &pairs {
        let (summary, directory) = found.remove(pair).expect("every pair was found");
        if let Some(history) = &summary.history {
            let target = out.join(&plan[pair.0].name).join(history);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
            }
            let source = directory.join(history);
            std::fs::copy(&source, &target).map_err(|error| {
                format!("cannot copy {} to {}: {error}", source.display(), target.display())
            })?;
        }
        let shrunk = pessimist_reports::report::shrunk_path(pair.1);
        if directory.join(&shrunk).is_file() {
            let target = out.join(&plan[pair.0].name).join(&shrunk);
            let parent = target.parent().expect("the path has a directory");
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
            std::fs::copy(directory.join(&shrunk), &target)
                .map_err(|error| format!("cannot copy to {}: {error}", target.display()))?;
        }
        results.push((pair.0, summary));
    }
    let runs = group_runs(&plan, results);
    let manifest = manifest(&plan, None, &runs);
    write_sweep(out, &manifest, &runs)
        .map_err(|error| format!("cannot write to {}: {error}", out.display()))?;
    Ok(Merged { manifest, runs })
}

/// The progress bar's note of seeds that did not pass.
#[cfg(madsim)]
fn not_passed_message(
    failed: &std::sync::atomic::AtomicUsize,
    inconclusive: &std::sync::atomic::AtomicUsize,
) -> String {
    let load = |counter: &std::sync::atomic::AtomicUsize| {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    };
    let (failed, inconclusive) = (load(failed), load(inconclusive));
    match (failed, inconclusive) {
        (_, 0) => format!("{failed} FAILED"),
        (0, _) => format!("{inconclusive} INCONCLUSIVE"),
        _ => format!("{failed} FAILED, {inconclusive} INCONCLUSIVE"),
    }
}

/// JUnit XML: one test suite per scenario, one test case per seed; a failing seed's failure
/// names its failed checks, an inconclusive seed is an error (JUnit counts errors apart from
/// failures) naming its undecided checks, and a seed's output holds the replay and shrink
/// commands.
pub fn junit_xml(runs: &[RunSummary]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

    let mut report = Report::new("pessimist");
    for run in runs {
        let mut suite = TestSuite::new(run.scenario.as_str());
        for seed in &run.seeds {
            let status = match seed.outcome {
                Outcome::Passed => TestCaseStatus::success(),
                Outcome::Failed => {
                    let failed: Vec<&str> = seed
                        .checks
                        .iter()
                        .filter(|(_, check)| check.failed())
                        .map(|(name, _)| name.as_str())
                        .collect();
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(format!("failed checks: {}", failed.join(", ")));
                    status.set_type("check failed");
                    let mut description = String::new();
                    for (name, check) in seed.checks.iter().filter(|(_, check)| check.failed()) {
                        for violation in &check.violations {
                            description.push_str(&format!("{name}: {violation}\n"));
                        }
                    }
                    status.set_description(description);
                    status
                }
                Outcome::Inconclusive => {
                    let undecided: Vec<String> = seed
                        .checks
                        .iter()
                        .filter(|(_, check)| check.status == Status::Unknown)
                        .map(|(name, check)| {
                            let reason = check
                                .figures
                                .get("unknown_reason")
                                .unwrap_or(&serde_json::Value::Null);
                            format!("{name} ({reason})")
                        })
                        .collect();
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                    status.set_message(format!("undecided checks: {}", undecided.join(", ")));
                    status.set_type("inconclusive");
                    status
                }
            };
            let mut case = TestCase::new(format!("seed {}", seed.seed), status);
            case.set_classname(format!("{}.{}", "pessimist", run.scenario));
            let mut output = format!("replay: {}\n", seed.replay);
            if let Some(shrink) = &seed.shrink {
                output.push_str(&format!("shrink: {shrink}\n"));
            }
            case.set_system_out(output);
            suite.add_test_case(case);
        }
        // One case per situation the scenario must reach: failed when no seed reached it.
        for situation in &run.must_happen {
            let judged = run.seeds.len() >= pessimist_sim::summary::COVERAGE_SEEDS_MIN;
            let status = if judged && situation.seeds_reached == 0 {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(situation.unreached_line());
                status.set_type("situation never reached");
                status
            } else {
                TestCaseStatus::success()
            };
            let mut case = TestCase::new(format!("must happen: {}", situation.situation), status);
            case.set_classname(format!("{}.{}", "pessimist", run.scenario));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().expect("a JUnit report serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Vec<PlannedScenario> {
        vec![
            PlannedScenario {
                name: "a".into(),
                file: "a.json".into(),
                description: String::new(),
                heal_ok_fraction_min: None,
                seeds: vec![1, 2, 3, 4, 5],
            },
            PlannedScenario {
                name: "b".into(),
                file: "b.json".into(),
                description: String::new(),
                heal_ok_fraction_min: None,
                seeds: vec![1, 2],
            },
        ]
    }

    /// A seed of scenario "a" whose one check has `status`.
    fn seed_with(seed: u64, status: Status) -> SeedSummary {
        use pessimist_sim::check::Verdict;
        let verdict = match status {
            Status::Passed => Verdict::from_violations(Vec::new(), BTreeMap::new()),
            Status::Failed => Verdict::from_violations(vec!["lost".into()], BTreeMap::new()),
            Status::Unknown => Verdict::unknown("budget".into(), BTreeMap::new()),
            _ => Verdict::figures_only(BTreeMap::new()),
        };
        let checks = BTreeMap::from([("durability".to_string(), verdict)]);
        SeedSummary {
            seed,
            history_hash: String::new(),
            outcome: Outcome::of_checks(checks.values()),
            checks,
            replay: format!("replay {seed}"),
            shrink: None,
            history: None,
            fault_events: 0,
            history_events: 0,
        }
    }

    #[test]
    fn an_inconclusive_seed_is_counted_apart_and_is_a_junit_error_not_a_failure() {
        let results = vec![
            (0, seed_with(1, Status::Passed)),
            (0, seed_with(2, Status::Unknown)),
            (0, seed_with(3, Status::Figures)),
        ];
        let runs = group_runs(&plan(), results);
        let undecided = manifest(&plan(), None, &runs);
        assert_eq!(
            (undecided.seeds_run, undecided.seeds_failed, undecided.seeds_inconclusive),
            (3, 0, 1)
        );
        assert_eq!(undecided.outcome, Outcome::Inconclusive);
        let xml = junit_xml(&runs);
        assert!(xml.contains("errors=\"1\""), "{xml}");
        assert!(xml.contains("failures=\"0\""), "{xml}");
        assert!(xml.contains("undecided checks: durability"), "{xml}");

        let runs = group_runs(
            &plan(),
            vec![(0, seed_with(2, Status::Unknown)), (0, seed_with(4, Status::Failed))],
        );
        let failed = manifest(&plan(), None, &runs);
        assert_eq!((failed.seeds_failed, failed.seeds_inconclusive), (1, 1));
        assert_eq!(failed.outcome, Outcome::Failed, "a failure outweighs an undecided seed");
    }

    #[test]
    fn shards_parse_and_reject_what_is_not_a_shard() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("1/1".parse::<Shard>(), Ok(Shard { index: 1, count: 1 }));
        for bad in ["0/4", "5/4", "4", "a/b", "1/0", "-1/2", "1/100001", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn shards_partition_the_pairs() {
        let pairs = plan_pairs(&plan());
        assert_eq!(pairs.len(), 7);
        for count in 1..=9 {
            let mut union = Vec::new();
            for index in 1..=count {
                let shard = shard_pairs(&pairs, Some(Shard { index, count }));
                // Round-robin: shard sizes differ by at most one.
                assert!(
                    shard.len() == pairs.len() / count as usize
                        || shard.len() == pairs.len() / count as usize + 1
                );
                union.extend(shard);
            }
            union.sort();
            let mut expected = pairs.clone();
            expected.sort();
            assert_eq!(union, expected, "shards of {count} lose or repeat a pair");
        }
        assert_eq!(shard_pairs(&pairs, None), pairs);
        assert_eq!(shard_pairs(&pairs, Some(Shard { index: 3, count: 3 })), vec![(0, 3), (1, 1)]);
    }
}
