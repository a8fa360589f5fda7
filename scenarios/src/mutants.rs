//! The zoo of known bugs (`zoo/`) and the runner that proves the suite catches each one.
//!
//! A bug is one patch, `zoo/NN-name.patch`, made with `git diff` against the service code in
//! `core/` and applying with `git apply`. Its header (the text before the first `diff --git`,
//! which `git apply` ignores) names it in production terms and says what should catch it:
//!
//! ```text
//! Bug: the Raft driver sends votes and acknowledgements before their fsync
//! Component: raft persistence order
//! Scenario: scenarios/queue-majority-crash.json
//! Swarm: scenarios/queue-swarm.json
//! Check: queue_durability
//!
//! Free text: why a real engineer writes it, what it breaks.
//! ```
//!
//! `pessimist mutants` ([`run_zoo`]) copies the source tree to a scratch directory outside the
//! checkout, and for
//! each bug restores the copy, applies the patch, builds the mutant's `pessimist` into one
//! shared target directory (so each mutant is an incremental build), and runs the mutant's
//! own `pessimist hunt` ([`hunt`]) on the bug's narrow scenario and on its component's swarm:
//! seeds 1, 2, ... until the first failing one, which it shrinks ([`crate::shrink`]) and
//! replays to confirm the shrunk plan fails the same check with the same kind of violation.
//! Then it builds the unpatched copy and runs the same scenarios over the same seeds, which
//! must all pass: a bug is caught only where the service without it is green.
//!
//! **Invariant:** a patch that no longer applies, or a mutant that does not build, is reported
//! as such (its own exit status), never skipped; a hunt's result depends only on the
//! scenario, the seeds and the shrink budget, never on how many threads ran it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the zoo's patches live, relative to the workspace root.
pub const ZOO_DIR: &str = "zoo";
/// Seeds a hunt tries by default: every bug must be caught within them.
pub const SEEDS_DEFAULT: u64 = 200;
/// Simulation runs one shrink may spend by default in a hunt.
pub const SHRINK_RUNS_DEFAULT: usize = 120;
/// Fault events a shrunk plan may keep for the zoo's target.
pub const SHRUNK_EVENTS_TARGET: usize = 3;
/// Exit status of `mutants` when a patch no longer applies or its mutant does not build.
pub const EXIT_NOT_APPLIED: u8 = 4;

/// One bug of the zoo, as its patch's header describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bug {
    /// The patch's file stem: `01-raft-ack-before-fsync`.
    pub name: String,
    pub file: PathBuf,
    /// The header's `Bug:` line.
    pub summary: String,
    pub component: String,
    /// The narrow scenario, relative to the workspace root.
    pub scenario: String,
    /// The component's swarm, relative to the workspace root.
    pub swarm: String,
    /// The check expected to catch the bug.
    pub check: String,
}

/// Parses a patch's header (the lines before the first `diff --git`). Every field is
/// required; an unknown `Key:` line is an error, so a typo does not silently drop a field.
pub fn parse_bug(name: &str, file: &Path, text: &str) -> Result<Bug, String> {
    let header_end = text
        .find("diff --git ")
        .ok_or_else(|| format!("{}: no `diff --git` in the patch", file.display()))?;
    let mut fields: std::collections::BTreeMap<&str, String> = Default::default();
    // The fields are the header's first lines, up to the first blank one; prose follows.
    for line in text[..header_end].lines().take_while(|line| !line.trim().is_empty()) {
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("{}: `{line}` is not a `Key: value` field", file.display()));
        };
        let key = key.trim();
        match key {
            "Bug" | "Component" | "Scenario" | "Swarm" | "Check" => {
                if fields.insert(key, value.trim().to_string()).is_some() {
                    return Err(format!("{}: field `{key}` given twice", file.display()));
                }
            }
            _ => {
                return Err(format!(
                    "{}: unknown header field `{key}` (Bug, Component, Scenario, Swarm, Check)",
                    file.display()
                ))
            }
        }
    }
    let mut take = |key: &str| {
        fields
            .remove(key)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("{}: the header has no `{key}:` line", file.display()))
    };
    Ok(Bug {
        name: name.to_string(),
        file: file.to_path_buf(),
        summary: take("Bug")?,
        component: take("Component")?,
        scenario: take("Scenario")?,
        swarm: take("Swarm")?,
        check: take("Check")?,
    })
}

/// The zoo's bugs in `directory` (`*.patch`, by name), those `wanted` names (a file stem, or
/// its number `07`) when any are given. An unknown name is an error.
pub fn load_zoo(directory: &Path, wanted: &[String]) -> Result<Vec<Bug>, String> {
    let entries = std::fs::read_dir(directory)
        .map_err(|error| format!("{}: cannot list the zoo: {error}", directory.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "patch"))
        .collect();
    files.sort();
    let mut bugs = Vec::new();
    for file in files {
        let name = file.file_stem().expect("a patch file has a name").to_string_lossy().to_string();
        let text = std::fs::read_to_string(&file)
            .map_err(|error| format!("{}: cannot read: {error}", file.display()))?;
        bugs.push(parse_bug(&name, &file, &text)?);
    }
    if bugs.is_empty() {
        return Err(format!("{}: no *.patch in the zoo", directory.display()));
    }
    let picks = |bug: &Bug, want: &str| {
        bug.name == want || bug.name.split('-').next().is_some_and(|number| number == want)
    };
    for want in wanted {
        if !bugs.iter().any(|bug| picks(bug, want)) {
            let names: Vec<&str> = bugs.iter().map(|bug| bug.name.as_str()).collect();
            return Err(format!("no bug {want:?} in the zoo ({})", names.join(", ")));
        }
    }
    if !wanted.is_empty() {
        bugs.retain(|bug| wanted.iter().any(|want| picks(bug, want)));
    }
    Ok(bugs)
}

/// What a hunt found: the first failing seed of a scenario over seeds 1..=`seeds_max`, shrunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hunt {
    /// The scenario file.
    pub file: String,
    pub scenario: String,
    pub seeds_max: u64,
    /// Seeds run: every seed up to the first failing one (all of them when none failed).
    pub seeds_run: u64,
    /// Seeds below the first failure that no check failed but one could not decide.
    pub inconclusive_seeds: Vec<u64>,
    pub failure: Option<Failure>,
}

/// The first failing seed of a hunt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub seed: u64,
    /// The check whose failure counts: the preferred one when it failed, else the first
    /// failing one by name; `simulation` when the run panicked.
    pub check: String,
    /// Every check that failed on this seed.
    pub failed_checks: Vec<String>,
    /// The check's first violation, and its kind.
    pub violation: String,
    pub kind: String,
    /// Fault events in the seed's plan.
    pub fault_events: usize,
    pub shrunk: Option<ShrunkFailure>,
    /// Why it was not shrunk (a panic, a budget of 0, the shrinker's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_shrunk: Option<String>,
}

/// The failure's shrunk plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShrunkFailure {
    pub events_before: usize,
    pub events: usize,
    pub runs: usize,
    pub budget_spent: bool,
    /// Whether the shrunk scenario, run again from its file, fails the same check with a
    /// violation of the same kind.
    pub replays: bool,
    /// The shrunk scenario's file.
    pub file: String,
    pub plan: Vec<pessimist_sim::fault::FaultEvent>,
}

/// Runs seeds 1..=`seeds_max` of `scenario` on `jobs` threads, lowest first, until the first
/// failing seed (every lower seed has run by then, so the answer does not depend on `jobs`);
/// shrinks that seed with at most `shrink_runs_max` runs (0: not at all), writes the shrunk
/// scenario to `shrunk_out`, and replays it from that file.
#[cfg(madsim)]
pub fn hunt(
    scenario: &pessimist_sim::scenario::Scenario,
    file: &str,
    seeds_max: u64,
    jobs: usize,
    prefer_check: Option<&str>,
    shrink_runs_max: usize,
    shrunk_out: &Path,
) -> Result<Hunt, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use pessimist_sim::check::{violation_kind, Outcome};

    assert!(jobs >= 1, "at least one thread");
    // The next seed to claim, and the lowest failing seed found (u64::MAX: none yet).
    let next = AtomicU64::new(1);
    let lowest_failing = AtomicU64::new(u64::MAX);
    let results: Mutex<Vec<(u64, Result<pessimist_sim::run::SeedOutcome, String>)>> =
        Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for index in 0..jobs {
            let (next, lowest_failing, results) = (&next, &lowest_failing, &results);
            std::thread::Builder::new()
                .name(format!("hunt-{index}"))
                // A simulation runs the whole cluster on its thread's stack.
                .stack_size(8 << 20)
                .spawn_scoped(scope, move || loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed > seeds_max || seed > lowest_failing.load(Ordering::SeqCst) {
                        break;
                    }
                    let outcome = crate::suite::run_one_seed(scenario, seed);
                    let failed = outcome.as_ref().map_or(true, |o| o.outcome == Outcome::Failed);
                    if failed {
                        lowest_failing.fetch_min(seed, Ordering::SeqCst);
                        eprintln!("hunt: {} seed {seed} fails", scenario.name);
                    }
                    // Keep only what the verdict needs: failures whole, the rest as outcomes.
                    let kept = outcome.map(|mut outcome| {
                        if !failed {
                            outcome.events = Vec::new();
                        }
                        outcome
                    });
                    results.lock().expect("no thread panics holding it").push((seed, kept));
                })
                .expect("a hunt thread starts");
        }
    });
    let mut results = results.into_inner().expect("no thread panicked holding it");
    results.sort_by_key(|(seed, _)| *seed);
    let lowest = lowest_failing.load(Ordering::SeqCst);
    results.retain(|(seed, _)| *seed <= lowest);
    let seeds_run = results.len() as u64;
    assert!(
        results.iter().enumerate().all(|(index, (seed, _))| *seed == index as u64 + 1),
        "every seed below the first failure ran"
    );
    let inconclusive_seeds = results
        .iter()
        .filter(|(_, outcome)| {
            outcome.as_ref().is_ok_and(|outcome| outcome.outcome == Outcome::Inconclusive)
        })
        .map(|(seed, _)| *seed)
        .collect();
    let mut found = Hunt {
        file: file.to_string(),
        scenario: scenario.name.clone(),
        seeds_max,
        seeds_run,
        inconclusive_seeds,
        failure: None,
    };
    let Some((seed, outcome)) = results.pop().filter(|(seed, _)| *seed == lowest) else {
        return Ok(found);
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(panic) => {
            found.failure = Some(Failure {
                seed,
                check: "simulation".into(),
                failed_checks: vec!["simulation".into()],
                kind: violation_kind(&panic),
                violation: panic,
                fault_events: pessimist_sim::run::plan_for_seed(scenario, seed).events.len(),
                shrunk: None,
                not_shrunk: Some(
                    "the simulation panicked: there is no checker's failure to keep".into(),
                ),
            });
            return Ok(found);
        }
    };
    let failed_checks: Vec<String> = outcome
        .checks
        .iter()
        .filter(|(_, verdict)| verdict.failed())
        .map(|(name, _)| name.clone())
        .collect();
    let check = match prefer_check.filter(|name| failed_checks.iter().any(|failed| failed == name))
    {
        Some(name) => name.to_string(),
        None => failed_checks.first().expect("a failed seed has a failed check").clone(),
    };
    let violation = outcome.checks[&check].violations.first().cloned().unwrap_or_default();
    let mut failure = Failure {
        seed,
        check: check.clone(),
        failed_checks,
        kind: violation_kind(&violation),
        violation,
        fault_events: outcome.plan.events.len(),
        shrunk: None,
        not_shrunk: None,
    };
    drop(outcome);
    if shrink_runs_max < 2 {
        failure.not_shrunk = Some("not asked to shrink".into());
        found.failure = Some(failure);
        return Ok(found);
    }
    match crate::shrink::shrink(scenario, file, seed, Some(&check), shrink_runs_max, |step| {
        eprintln!("hunt: {} seed {seed}: {step}", scenario.name)
    }) {
        Err(message) => failure.not_shrunk = Some(message),
        Ok(shrunk) => {
            assert_eq!(shrunk.kind, failure.kind, "the shrinker keeps the failure's kind");
            let text =
                serde_json::to_string_pretty(&shrunk.scenario).expect("scenarios serialize") + "\n";
            if let Some(parent) = shrunk_out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
            }
            std::fs::write(shrunk_out, text)
                .map_err(|error| format!("cannot write {}: {error}", shrunk_out.display()))?;
            // Replay from the file, as a user would: the same check, the same kind.
            let replays = crate::load_scenario(shrunk_out)
                .map_err(|error| format!("the shrunk scenario does not load: {error}"))
                .map(|again| {
                    crate::suite::run_one_seed(&again, seed).is_ok_and(|outcome| {
                        outcome.checks.get(&check).is_some_and(|v| v.fails_with_kind(&failure.kind))
                    })
                })?;
            failure.shrunk = Some(ShrunkFailure {
                events_before: shrunk.events_before,
                events: shrunk.scenario.faults.plan.events.len(),
                runs: shrunk.runs,
                budget_spent: shrunk.budget_spent,
                replays,
                file: shrunk_out.display().to_string(),
                plan: shrunk.scenario.faults.plan.events.clone(),
            });
        }
    }
    found.failure = Some(failure);
    Ok(found)
}

/// How `mutants` runs.
#[derive(Clone, Debug)]
pub struct ZooOptions {
    /// The source tree to copy (the workspace root).
    pub root: PathBuf,
    /// The zoo's patches.
    pub zoo: PathBuf,
    /// Bugs to run (names or numbers; empty: all).
    pub bugs: Vec<String>,
    pub seeds: u64,
    /// Threads per hunt.
    pub jobs: usize,
    pub shrink_runs: usize,
    /// The one target directory every mutant builds into.
    pub target_dir: PathBuf,
    /// The scratch copy of the source tree. Outside the checkout: cargo would also read the
    /// checkout's `.cargo/config.toml` above it and join its flags twice, which rebuilds
    /// every dependency.
    pub scratch: PathBuf,
    /// Where the table, the hunts and the shrunk plans go.
    pub out: PathBuf,
    /// Whether to run the unpatched tree on the same scenarios and seeds.
    pub baseline: bool,
    /// A `pessimist` already built from the unpatched tree, to run the baseline with instead
    /// of building the scratch copy once more.
    pub baseline_binary: Option<PathBuf>,
}

/// What became of one bug.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BugResult {
    pub bug: Bug,
    /// `tested`, `does_not_apply` or `does_not_build`.
    pub state: String,
    /// Why it was not tested: `git apply`'s or cargo's last lines, and where the log is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub narrow: Option<Hunt>,
    pub swarm: Option<Hunt>,
}

impl BugResult {
    fn caught(hunt: &Option<Hunt>) -> bool {
        hunt.as_ref().is_some_and(|hunt| hunt.failure.is_some())
    }

    /// Caught by its narrow scenario and by its component's swarm.
    pub fn caught_by_both(&self) -> bool {
        Self::caught(&self.narrow) && Self::caught(&self.swarm)
    }

    /// Every hunt that caught it shrank to at most [`SHRUNK_EVENTS_TARGET`] events that
    /// replay the failure.
    pub fn shrunk_on_target(&self) -> bool {
        [&self.narrow, &self.swarm]
            .into_iter()
            .flatten()
            .filter_map(|hunt| hunt.failure.as_ref())
            .all(|failure| {
                failure
                    .shrunk
                    .as_ref()
                    .is_some_and(|shrunk| shrunk.replays && shrunk.events <= SHRUNK_EVENTS_TARGET)
            })
    }
}

/// The unpatched tree on one scenario, over the most seeds any bug's hunt ran on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineResult {
    pub scenario: String,
    pub hunt: Hunt,
}

/// A whole run of the zoo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZooReport {
    pub seeds: u64,
    pub shrink_runs: usize,
    pub bugs: Vec<BugResult>,
    /// Empty when the baseline was not asked for (`baseline_checked` false).
    pub baseline: Vec<BaselineResult>,
    pub baseline_checked: bool,
}

impl ZooReport {
    pub fn not_applied(&self) -> usize {
        self.bugs.iter().filter(|bug| bug.state != "tested").count()
    }

    pub fn baseline_green(&self) -> bool {
        self.baseline.iter().all(|base| base.hunt.failure.is_none())
    }

    /// The exit status: [`EXIT_NOT_APPLIED`] when a patch did not apply or build, else 1
    /// when a bug got away (from its scenario or its swarm) or the baseline failed, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.not_applied() > 0 {
            EXIT_NOT_APPLIED
        } else if !self.baseline_green() || self.bugs.iter().any(|bug| !bug.caught_by_both()) {
            1
        } else {
            0
        }
    }

    /// The table: one row per bug, its narrow scenario and its swarm side by side.
    pub fn markdown(&self) -> String {
        let mut text = format!(
            "# The zoo of known bugs\n\nSeeds 1..={} per scenario, shrink budget {} runs. `caught by`: the check that \
             failed on the first failing seed; `seeds`: that seed, so the seeds it took; `events`: the shrunk plan's \
             fault events (of the seed's), and whether the shrunk file replays the same check failing with the same \
             kind of violation.\n\n",
            self.seeds, self.shrink_runs
        );
        text.push_str("| bug | component | scenario | caught by | seeds | events | swarm | caught by | seeds | events |\n");
        text.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        let cells = |hunt: &Option<Hunt>, expected: &str| -> [String; 3] {
            let Some(hunt) = hunt else { return ["-".into(), "-".into(), "-".into()] };
            match &hunt.failure {
                None => [format!("**missed** ({} seeds)", hunt.seeds_run), "-".into(), "-".into()],
                Some(failure) => {
                    let check = if failure.check == expected {
                        format!("`{}`", failure.check)
                    } else {
                        format!("`{}` (not `{expected}`)", failure.check)
                    };
                    let events = match &failure.shrunk {
                        Some(shrunk) => format!(
                            "{} of {}{}{}",
                            shrunk.events,
                            shrunk.events_before,
                            if shrunk.replays { ", replays" } else { ", **does not replay**" },
                            if shrunk.budget_spent { ", budget spent" } else { "" }
                        ),
                        None => format!(
                            "not shrunk ({})",
                            failure
                                .not_shrunk
                                .as_deref()
                                .unwrap_or("?")
                                .lines()
                                .next()
                                .unwrap_or("")
                        ),
                    };
                    [check, failure.seed.to_string(), events]
                }
            }
        };
        for result in &self.bugs {
            let bug = &result.bug;
            let scenario = file_stem(&bug.scenario);
            let swarm = file_stem(&bug.swarm);
            if result.state != "tested" {
                text.push_str(&format!(
                    "| {} | {} | {scenario} | **{}** | | | {swarm} | | | |\n",
                    bug.name,
                    bug.component,
                    result.state.replace('_', " ")
                ));
                continue;
            }
            let [narrow_check, narrow_seeds, narrow_events] = cells(&result.narrow, &bug.check);
            let [swarm_check, swarm_seeds, swarm_events] = cells(&result.swarm, &bug.check);
            text.push_str(&format!(
                "| {} | {} | {scenario} | {narrow_check} | {narrow_seeds} | {narrow_events} | {swarm} | {swarm_check} | {swarm_seeds} | {swarm_events} |\n",
                bug.name, bug.component
            ));
        }
        let caught = self.bugs.iter().filter(|bug| bug.caught_by_both()).count();
        let on_target =
            self.bugs.iter().filter(|bug| bug.caught_by_both() && bug.shrunk_on_target()).count();
        text.push_str(&format!(
            "\n{caught} of {} bugs caught by their scenario and their swarm; {on_target} also shrunk to at most {SHRUNK_EVENTS_TARGET} fault events that replay; {} did not apply or build.\n",
            self.bugs.len(),
            self.not_applied()
        ));
        if self.baseline_checked {
            text.push_str("\nThe unpatched tree on the same scenarios and seeds:\n\n");
            for base in &self.baseline {
                let verdict = match &base.hunt.failure {
                    None => format!("passed seeds 1..={}", base.hunt.seeds_run),
                    Some(failure) => format!(
                        "**FAILED** seed {} (`{}`: {})",
                        failure.seed,
                        failure.check,
                        failure.violation.lines().next().unwrap_or("")
                    ),
                };
                let inconclusive = if base.hunt.inconclusive_seeds.is_empty() {
                    String::new()
                } else {
                    format!(", inconclusive seeds {:?}", base.hunt.inconclusive_seeds)
                };
                text.push_str(&format!(
                    "- {}: {verdict}{inconclusive}\n",
                    file_stem(&base.scenario)
                ));
            }
        } else {
            text.push_str("\nThe unpatched tree was not run (`--no-baseline`): a catch above is not proven to be the bug's.\n");
        }
        text
    }
}

fn file_stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map_or_else(|| path.to_string(), |stem| stem.to_string_lossy().to_string())
}

/// Top-level entries of the source tree never copied: version control, build outputs,
/// results.
const NOT_COPIED: [&str; 3] = [".git", "target", "reports/out"];

/// Makes `scratch` a copy of `root`'s source files (not [`NOT_COPIED`], nor `skip`): a file
/// whose bytes already match keeps its modification time, so cargo rebuilds only what a
/// patch (or its undoing) changed; files the source lacks are removed.
pub fn sync_tree(root: &Path, scratch: &Path, skip: &[PathBuf]) -> Result<(), String> {
    use std::collections::BTreeSet;

    fn walk(
        root: &Path,
        directory: &Path,
        skip: &[PathBuf],
        found: &mut BTreeSet<PathBuf>,
    ) -> Result<(), String> {
        let entries = std::fs::read_dir(directory)
            .map_err(|error| format!("{}: cannot list: {error}", directory.display()))?;
        for entry in entries {
            let path = entry.map_err(|error| format!("{}: {error}", directory.display()))?.path();
            let relative = path.strip_prefix(root).expect("below the root").to_path_buf();
            if NOT_COPIED.iter().any(|entry| relative == Path::new(entry))
                || skip.iter().any(|skipped| path.starts_with(skipped))
            {
                continue;
            }
            let kind = std::fs::symlink_metadata(&path)
                .map_err(|error| format!("{}: {error}", path.display()))?
                .file_type();
            if kind.is_dir() {
                walk(root, &path, skip, found)?;
            } else if kind.is_file() {
                found.insert(relative);
            }
        }
        Ok(())
    }
    let mut source = BTreeSet::new();
    walk(root, root, skip, &mut source)?;
    for relative in &source {
        let (from, to) = (root.join(relative), scratch.join(relative));
        let bytes = std::fs::read(&from)
            .map_err(|error| format!("{}: cannot read: {error}", from.display()))?;
        if std::fs::read(&to).is_ok_and(|existing| existing == bytes) {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        std::fs::write(&to, &bytes)
            .map_err(|error| format!("cannot write {}: {error}", to.display()))?;
    }
    let mut copied = BTreeSet::new();
    if scratch.exists() {
        walk(scratch, scratch, &[], &mut copied)?;
    }
    for stale in copied.difference(&source) {
        let path = scratch.join(stale);
        std::fs::remove_file(&path)
            .map_err(|error| format!("cannot remove {}: {error}", path.display()))?;
    }
    Ok(())
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Applies `patch` to the scratch copy with `git apply`, which outside a repository is a plain
/// patch tool: repository discovery is stopped at the copy's parent, so that a scratch
/// directory inside some other repository does not make git apply paths relative to it.
fn git_apply(scratch: &Path, patch: &Path) -> Result<(), String> {
    let ceiling = scratch.parent().expect("the scratch copy has a parent");
    for check in [true, false] {
        let mut command = std::process::Command::new("git");
        command.arg("apply");
        if check {
            command.arg("--check");
        }
        let output = command
            .arg(patch)
            .current_dir(scratch)
            .env("GIT_CEILING_DIRECTORIES", ceiling)
            .output()
            .map_err(|error| format!("cannot run git apply: {error}"))?;
        if !output.status.success() {
            return Err(tail(&String::from_utf8_lossy(&output.stderr), 6));
        }
    }
    Ok(())
}

/// Builds the scratch copy's `pessimist` (release) into `target_dir`; the log goes to `log`.
fn build(scratch: &Path, target_dir: &Path, log: &Path) -> Result<PathBuf, String> {
    let output =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", crate::suite::BINARY_NAME, "--target-dir"])
            .arg(target_dir)
            // A patch changes a few lines of one crate: incremental compilation makes each
            // mutant's build a fraction of a full one (`CARGO_INCREMENTAL=0` still wins).
            .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "true")
            .current_dir(scratch)
            .output()
            .map_err(|error| format!("cannot run cargo: {error}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(log, &text)
        .map_err(|error| format!("cannot write {}: {error}", log.display()))?;
    if !output.status.success() {
        return Err(format!("{}\n(the whole log: {})", tail(&text, 12), log.display()));
    }
    Ok(target_dir.join("release").join(crate::suite::BINARY_NAME))
}

/// Runs `binary hunt` (a mutant's or the baseline's own build) and reads its result.
#[allow(clippy::too_many_arguments)]
fn run_hunt(
    binary: &Path,
    scratch: &Path,
    scenario: &str,
    seeds: u64,
    jobs: usize,
    check: &str,
    shrink_runs: usize,
    out: &Path,
) -> Result<Hunt, String> {
    std::fs::create_dir_all(out)
        .map_err(|error| format!("cannot create {}: {error}", out.display()))?;
    let status = std::process::Command::new(binary)
        .arg("hunt")
        .arg(scratch.join(scenario))
        .args(["--seeds", &seeds.to_string(), "--jobs", &jobs.to_string()])
        .args(["--check", check, "--shrink-runs", &shrink_runs.to_string(), "--out"])
        .arg(out)
        .status()
        .map_err(|error| format!("cannot run {}: {error}", binary.display()))?;
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(format!("{} hunt {scenario} exited with {status}", binary.display()));
    }
    crate::sweep::read_json(&out.join(HUNT_FILE))
}

/// What `pessimist hunt --out DIR` writes: the result, and the shrunk scenario beside it.
pub const HUNT_FILE: &str = "hunt.json";
pub const SHRUNK_FILE: &str = "shrunk.json";

/// Runs the zoo (see the module's documentation); `note` hears its progress. The report is
/// also written to `out/zoo.md` and `out/zoo.json`.
pub fn run_zoo(options: &ZooOptions, mut note: impl FnMut(&str)) -> Result<ZooReport, String> {
    let bugs = load_zoo(&options.zoo, &options.bugs)?;
    for bug in &bugs {
        for scenario in [&bug.scenario, &bug.swarm] {
            crate::load_scenario(&options.root.join(scenario))
                .map_err(|error| format!("{}: {error}", bug.file.display()))?;
        }
    }
    let scratch = &options.scratch;
    if scratch.starts_with(&options.root) {
        return Err(format!(
            "{}: the scratch copy must lie outside the checkout {}",
            scratch.display(),
            options.root.display()
        ));
    }
    std::fs::create_dir_all(scratch)
        .map_err(|error| format!("cannot create {}: {error}", scratch.display()))?;
    std::fs::create_dir_all(&options.out)
        .map_err(|error| format!("cannot create {}: {error}", options.out.display()))?;
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // The build runs in the scratch copy: every path handed to it is absolute.
    let target_dir = absolute(&options.target_dir);
    let skip = vec![target_dir.clone(), absolute(&options.out)];
    let root = absolute(&options.root);
    let mut results = Vec::new();
    for bug in &bugs {
        note(&format!("== {}: {}", bug.name, bug.summary));
        let directory = options.out.join(&bug.name);
        std::fs::create_dir_all(&directory)
            .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
        sync_tree(&root, scratch, &skip)?;
        let mut result = BugResult {
            bug: bug.clone(),
            state: "tested".into(),
            error: None,
            narrow: None,
            swarm: None,
        };
        if let Err(error) = git_apply(scratch, &absolute(&bug.file)) {
            note(&format!("{}: the patch does not apply:\n{error}", bug.name));
            result.state = "does_not_apply".into();
            result.error = Some(error);
            results.push(result);
            continue;
        }
        note(&format!("{}: building the mutant", bug.name));
        let binary = match build(scratch, &target_dir, &directory.join("build.log")) {
            Ok(binary) => binary,
            Err(error) => {
                note(&format!("{}: the mutant does not build:\n{error}", bug.name));
                result.state = "does_not_build".into();
                result.error = Some(error);
                results.push(result);
                continue;
            }
        };
        for (role, scenario) in [("narrow", &bug.scenario), ("swarm", &bug.swarm)] {
            note(&format!("{}: hunting on {scenario}", bug.name));
            let hunt = run_hunt(
                &binary,
                scratch,
                scenario,
                options.seeds,
                options.jobs,
                &bug.check,
                options.shrink_runs,
                &directory.join(role),
            )?;
            note(&format!("{}: {role}: {}", bug.name, hunt_line(&hunt)));
            match role {
                "narrow" => result.narrow = Some(hunt),
                _ => result.swarm = Some(hunt),
            }
        }
        results.push(result);
    }
    let mut report = ZooReport {
        seeds: options.seeds,
        shrink_runs: options.shrink_runs,
        bugs: results,
        baseline: Vec::new(),
        baseline_checked: options.baseline,
    };
    let tested = report.bugs.iter().any(|result| result.state == "tested");
    if options.baseline && tested {
        note("== baseline: the unpatched tree on the same scenarios and seeds");
        sync_tree(&root, scratch, &skip)?;
        let directory = options.out.join("baseline");
        std::fs::create_dir_all(&directory)
            .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
        let binary = match &options.baseline_binary {
            Some(binary) => absolute(binary),
            None => build(scratch, &target_dir, &directory.join("build.log"))
                .map_err(|error| format!("the unpatched tree does not build:\n{error}"))?,
        };
        // Per scenario, the most seeds any hunt ran on it.
        let mut seeds: std::collections::BTreeMap<String, u64> = Default::default();
        for result in &report.bugs {
            let hunts =
                [(&result.bug.scenario, &result.narrow), (&result.bug.swarm, &result.swarm)];
            for (scenario, hunt) in hunts {
                if let Some(hunt) = hunt {
                    let most = seeds.entry(scenario.clone()).or_default();
                    *most = (*most).max(hunt.seeds_run);
                }
            }
        }
        for (scenario, seeds) in seeds {
            let hunt = run_hunt(
                &binary,
                scratch,
                &scenario,
                seeds,
                options.jobs,
                "",
                0,
                &directory.join(file_stem(&scenario)),
            )?;
            note(&format!("baseline: {scenario}: {}", hunt_line(&hunt)));
            report.baseline.push(BaselineResult { scenario, hunt });
        }
    }
    let markdown = report.markdown();
    let json = serde_json::to_string_pretty(&report).expect("reports serialize") + "\n";
    for (name, text) in [("zoo.md", &markdown), ("zoo.json", &json)] {
        let path = options.out.join(name);
        std::fs::write(&path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    Ok(report)
}

/// A hunt in one line.
pub fn hunt_line(hunt: &Hunt) -> String {
    match &hunt.failure {
        None => format!("no failure in {} seeds", hunt.seeds_run),
        Some(failure) => {
            let shrunk = match &failure.shrunk {
                Some(shrunk) => format!(
                    "shrunk to {} of {} fault events{}",
                    shrunk.events,
                    shrunk.events_before,
                    if shrunk.replays { ", replays" } else { ", DOES NOT REPLAY" }
                ),
                None => format!("not shrunk: {}", failure.not_shrunk.as_deref().unwrap_or("?")),
            };
            format!(
                "seed {} fails {} ({}); {shrunk}",
                failure.seed,
                failure.check,
                failure.violation.lines().next().unwrap_or("")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "Bug: an fsync moved after the answer\nComponent: store fsync\n\
        Scenario: scenarios/store-crash-after-ack.json\nSwarm: scenarios/store-swarm.json\n\
        Check: no_acknowledged_loss\n\nWhy: a prose line with a colon is not a field.\n\
        diff --git a/core/src/x.rs b/core/src/x.rs\n";

    #[test]
    fn a_header_gives_every_field() {
        let bug = parse_bug("09-store", Path::new("zoo/09-store.patch"), PATCH).unwrap();
        assert_eq!(bug.summary, "an fsync moved after the answer");
        assert_eq!(bug.component, "store fsync");
        assert_eq!(bug.scenario, "scenarios/store-crash-after-ack.json");
        assert_eq!(bug.swarm, "scenarios/store-swarm.json");
        assert_eq!(bug.check, "no_acknowledged_loss");
    }

    #[test]
    fn a_header_missing_a_field_or_with_an_unknown_one_is_an_error() {
        let file = Path::new("zoo/x.patch");
        let missing = PATCH.replace("Check: no_acknowledged_loss\n", "");
        assert!(parse_bug("x", file, &missing).unwrap_err().contains("no `Check:` line"));
        let unknown = PATCH.replace("Check:", "Checks:");
        assert!(parse_bug("x", file, &unknown)
            .unwrap_err()
            .contains("unknown header field `Checks`"));
        assert!(parse_bug("x", file, "Bug: b\n").unwrap_err().contains("no `diff --git`"));
        let twice = PATCH.replace("Swarm:", "Scenario:");
        assert!(parse_bug("x", file, &twice).unwrap_err().contains("given twice"));
    }

    #[test]
    fn the_zoo_in_the_checkout_is_complete_and_every_patch_names_real_scenarios() {
        let root = crate::suite::workspace_root();
        let bugs = load_zoo(&root.join(ZOO_DIR), &[]).unwrap();
        assert!(bugs.len() >= 12, "at least twelve bugs: {}", bugs.len());
        for bug in &bugs {
            for scenario in [&bug.scenario, &bug.swarm] {
                let loaded = crate::load_scenario(&root.join(scenario));
                assert!(loaded.is_ok(), "{}: {scenario}: {:?}", bug.name, loaded.err());
            }
            assert!(bug.swarm.contains("swarm"), "{}: {} is no swarm", bug.name, bug.swarm);
            let text = std::fs::read_to_string(&bug.file).unwrap();
            assert!(text.contains("diff --git a/core/"), "{}: patches the service code", bug.name);
        }
        let picked = load_zoo(&root.join(ZOO_DIR), &["01".to_string()]).unwrap();
        assert_eq!(picked.len(), 1);
        let unknown = load_zoo(&root.join(ZOO_DIR), &["no-such-bug".to_string()]).unwrap_err();
        assert!(unknown.contains("no bug \"no-such-bug\""), "{unknown}");
    }

    #[test]
    fn the_exit_code_tells_a_patch_that_does_not_apply_from_a_miss() {
        let bug = parse_bug("01-x", Path::new("zoo/01-x.patch"), PATCH).unwrap();
        let hunt = |failure: Option<Failure>| Hunt {
            file: "f".into(),
            scenario: "s".into(),
            seeds_max: 5,
            seeds_run: 5,
            inconclusive_seeds: Vec::new(),
            failure,
        };
        let failure = Failure {
            seed: 3,
            check: "no_acknowledged_loss".into(),
            failed_checks: vec!["no_acknowledged_loss".into()],
            violation: "k: lost 4".into(),
            kind: "k: lost #".into(),
            fault_events: 6,
            shrunk: None,
            not_shrunk: Some("not asked to shrink".into()),
        };
        let result = |state: &str, narrow: Option<Hunt>, swarm: Option<Hunt>| BugResult {
            bug: bug.clone(),
            state: state.into(),
            error: None,
            narrow,
            swarm,
        };
        let report = |bugs: Vec<BugResult>| ZooReport {
            seeds: 5,
            shrink_runs: 0,
            bugs,
            baseline: Vec::new(),
            baseline_checked: false,
        };
        let caught = result("tested", Some(hunt(Some(failure.clone()))), Some(hunt(Some(failure))));
        assert_eq!(report(vec![caught.clone()]).exit_code(), 0);
        let missed = result("tested", caught.narrow.clone(), Some(hunt(None)));
        assert_eq!(report(vec![caught.clone(), missed]).exit_code(), 1);
        let stale = result("does_not_apply", None, None);
        let all = report(vec![caught, stale]);
        assert_eq!(all.exit_code(), EXIT_NOT_APPLIED);
        let table = all.markdown();
        assert!(table.contains("**does not apply**"), "{table}");
        assert!(table.contains("| `no_acknowledged_loss` | 3 | not shrunk"), "{table}");
    }

    #[test]
    fn a_scratch_copy_follows_the_source_and_keeps_unchanged_files_untouched() {
        let base = std::env::temp_dir().join(format!("pessimist-zoo-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (root, scratch) = (base.join("root"), base.join("scratch"));
        std::fs::create_dir_all(root.join("core/src")).unwrap();
        std::fs::create_dir_all(root.join("target/release")).unwrap();
        std::fs::write(root.join("core/src/a.rs"), "a").unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]").unwrap();
        std::fs::write(root.join("target/release/big"), "built").unwrap();
        sync_tree(&root, &scratch, &[]).unwrap();
        assert_eq!(std::fs::read_to_string(scratch.join("core/src/a.rs")).unwrap(), "a");
        assert!(!scratch.join("target").exists(), "build outputs are not copied");
        let modified = |path: &Path| std::fs::metadata(path).unwrap().modified().unwrap();
        let before = modified(&scratch.join("Cargo.toml"));
        // A patch changed a file and added one: the next sync undoes both.
        std::fs::write(scratch.join("core/src/a.rs"), "patched").unwrap();
        std::fs::write(scratch.join("core/src/new.rs"), "new").unwrap();
        sync_tree(&root, &scratch, &[]).unwrap();
        assert_eq!(std::fs::read_to_string(scratch.join("core/src/a.rs")).unwrap(), "a");
        assert!(!scratch.join("core/src/new.rs").exists());
        assert_eq!(
            modified(&scratch.join("Cargo.toml")),
            before,
            "unchanged files keep their time"
        );
        let _ = std::fs::remove_dir_all(&base);
    }
}
