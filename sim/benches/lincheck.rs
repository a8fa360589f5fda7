//! Times the checker on the published histories and prints each figure beside Porcupine's.
//!
//! Run with `cargo bench -p pessimist-sim --bench lincheck`. What is timed: `check_file` on a
//! parsed history (pairing, decoding, partitioning, search), not the JSON parsing, as
//! Porcupine's figures time its checker on parsed operations. Porcupine 1.x (Go) figures were
//! measured on the same machine; where they are a range, the speed-up is computed against the
//! low end (the fastest Porcupine run), so it is conservative.
//!
//! Targets: at least 2x Porcupine on every group; a missed target is printed as such.
//!
//! The `fifo-queue` rows time generated queue histories (`lincheck::generate`: distinct
//! values, concurrent clients) through `check` (the unique-value procedure) beside the general
//! search alone on the same history, with the same 2x target; Porcupine publishes no queue
//! histories or figures, and none was measured here, so the search is the reference. The last
//! row checks a history of 1,000,000 operations.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pessimist_sim::lincheck::generate::{self, Shape};
use pessimist_sim::lincheck::{
    check, check_file, check_with, load_history, Expect, FifoQueueModel, HistoryFile, Verdict,
    STATES_EXPLORED_MAX,
};

const RUNS: usize = 5;
/// Histories faster than this get more runs, for a stable median.
const QUICK_MEDIAN: Duration = Duration::from_millis(10);
const RUNS_QUICK: usize = 51;
const SPEEDUP_TARGET: f64 = 2.0;

/// Porcupine's time in seconds: (low, high) of its runs on this machine.
struct Porcupine {
    low_s: f64,
    high_s: f64,
}

fn median_time(file: &HistoryFile, runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let verdict = check_file(file, STATES_EXPLORED_MAX).expect("fixtures are well formed");
            let elapsed = started.elapsed();
            let agrees = matches!(
                (&verdict, file.expect),
                (Verdict::Linearizable, Some(Expect::Linearizable))
                    | (Verdict::NotLinearizable { .. }, Some(Expect::NotLinearizable))
            );
            assert!(agrees, "wrong verdict {} on {:?}", verdict.name(), file.source);
            elapsed
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn timed(file: &HistoryFile) -> Duration {
    let median = median_time(file, RUNS);
    if median < QUICK_MEDIAN {
        median_time(file, RUNS_QUICK)
    } else {
        median
    }
}

/// Prints one figure beside Porcupine's; returns false if the target is missed.
fn report(label: &str, ours: Duration, porcupine: Option<Porcupine>) -> bool {
    let ours_s = ours.as_secs_f64();
    let ours_text =
        if ours_s >= 0.1 { format!("{ours_s:.3} s") } else { format!("{:.3} ms", ours_s * 1e3) };
    let Some(porcupine) = porcupine else {
        println!("{label}: {ours_text} (no porcupine figure)");
        return true;
    };
    let porcupine_text = if porcupine.low_s == porcupine.high_s {
        format_seconds(porcupine.low_s)
    } else {
        format!("{}-{}", format_seconds(porcupine.low_s), format_seconds(porcupine.high_s))
    };
    let speedup = porcupine.low_s / ours_s.max(1e-9);
    let met = speedup >= SPEEDUP_TARGET;
    println!(
        "{label}: {ours_text} (porcupine {porcupine_text}, {speedup:.1}x){}",
        if met { "" } else { "  TARGET MISSED (2x)" }
    );
    met
}

fn format_seconds(seconds: f64) -> String {
    if seconds >= 0.1 {
        format!("{seconds:.2} s")
    } else {
        format!("{:.1} ms", seconds * 1e3)
    }
}

fn files_in(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    files.sort();
    files
}

fn main() {
    // `cargo bench` passes `--bench`; a plain argument keeps only the kv histories whose
    // name contains it (and skips etcd), for profiling one history.
    let filter: Option<String> =
        std::env::args().skip(1).find(|argument| !argument.starts_with("--"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lincheck/porcupine");
    let mut all_met = true;

    let etcd_files = if filter.is_some() { Vec::new() } else { files_in(&root.join("etcd")) };
    assert!(filter.is_some() || etcd_files.len() == 102, "the 102 etcd histories");
    let mut etcd_total = Duration::ZERO;
    let mut slowest: Option<(Duration, String)> = None;
    for path in &etcd_files {
        let file = load_history(path).expect("fixture parses");
        let median = timed(&file);
        etcd_total += median;
        let name = path.file_stem().expect("file name").to_string_lossy().into_owned();
        if slowest.as_ref().is_none_or(|(time, _)| median > *time) {
            slowest = Some((median, name));
        }
    }
    if filter.is_none() {
        all_met &= report("etcd total", etcd_total, Some(Porcupine { low_s: 0.77, high_s: 0.77 }));
        let (slowest_time, slowest_name) = slowest.clone().expect("102 histories");
        all_met &= report(
            &format!("etcd slowest ({slowest_name})"),
            slowest_time,
            Some(Porcupine { low_s: 0.17, high_s: 0.26 }),
        );
    }
    for name in ["c01-ok", "c01-bad", "c10-ok", "c10-bad", "c50-ok", "c50-bad"] {
        if filter.as_ref().is_some_and(|filter| !name.contains(filter.as_str())) {
            continue;
        }
        let file =
            load_history(&root.join("kv").join(format!("{name}.json"))).expect("fixture parses");
        let porcupine = match name {
            "c50-ok" => Some(Porcupine { low_s: 0.26, high_s: 0.55 }),
            "c50-bad" => Some(Porcupine { low_s: 0.005, high_s: 0.076 }),
            "c10-ok" | "c10-bad" => Some(Porcupine { low_s: 0.0006, high_s: 0.0006 }),
            _ => None,
        };
        all_met &= report(&format!("kv {name}"), timed(&file), porcupine);
    }

    if filter.is_none() {
        all_met &= queue_figures();
    }

    if all_met {
        println!("all targets met (2x porcupine)");
    } else {
        println!("some targets missed");
    }
}

/// Median time of `run` over `runs` runs; each run's verdict must agree with `file`.
fn median_of(file: &HistoryFile, runs: usize, run: impl Fn(&HistoryFile) -> Verdict) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let verdict = run(file);
            let elapsed = started.elapsed();
            assert!(generate::agrees(file, &verdict), "wrong verdict {}", verdict.name());
            elapsed
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// The `fifo-queue` rows; false if a target is missed.
fn queue_figures() -> bool {
    let fast = |file: &HistoryFile| {
        check(&file.model, &file.init, &file.history, STATES_EXPLORED_MAX).expect("well formed")
    };
    let searched = |file: &HistoryFile| {
        check_with(FifoQueueModel::new(), &file.init, &file.history, STATES_EXPLORED_MAX)
            .expect("well formed")
    };
    let mut all_met = true;
    for (operations, processes, broken) in
        [(1_000, 8, false), (1_000, 8, true), (10_000, 16, false), (10_000, 16, true)]
    {
        let shape = Shape { model: "fifo-queue", operations, processes, seed: 7, broken };
        let file = generate::history(shape);
        let label = format!(
            "fifo-queue {operations} ops, {processes} clients, {}",
            if broken { "bad" } else { "ok" }
        );
        let ours = median_of(&file, RUNS, fast);
        let search = median_of(&file, RUNS, searched);
        let speedup = search.as_secs_f64() / ours.as_secs_f64().max(1e-9);
        let met = speedup >= SPEEDUP_TARGET;
        all_met &= met;
        println!(
            "{label}: {:.3} ms (general search {:.3} ms, {speedup:.1}x){}",
            ours.as_secs_f64() * 1e3,
            search.as_secs_f64() * 1e3,
            if met { "" } else { "  TARGET MISSED (2x)" }
        );
    }
    for broken in [false, true] {
        let shape =
            Shape { model: "fifo-queue", operations: 1_000_000, processes: 32, seed: 7, broken };
        let file = generate::history(shape);
        let time = median_of(&file, 3, fast);
        println!(
            "fifo-queue 1000000 ops, 32 clients, {}: {:.3} s",
            if broken { "bad" } else { "ok" },
            time.as_secs_f64()
        );
    }
    all_met
}
