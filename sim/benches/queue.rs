//! Benchmark: the replicated queue's figures, from simulated runs of the shipped scenarios.
//!
//! - failover: from the loss of the leader (crash or isolation of the node leading at that
//!   moment) to the first commit of a later term, p50 / p99 / max over every loss in
//!   `queue-leader-crash-loop` and `queue-leader-isolated`;
//! - enqueue availability during each kind of fault, over every queue scenario;
//! - committed operations per simulated second, and simulated seconds per wall second, for a
//!   5-node queue with no fault under the load printed beside the figures.
//!
//! Run: `cargo bench -p pessimist-sim --bench queue` (20 seeds a scenario; `cargo test
//! --benches` runs 2).

#[cfg(madsim)]
mod simulated {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use pessimist_core::history::EventKind;
    use pessimist_sim::run::{check_history, run_seed, simulate_seed};
    use pessimist_sim::scenario::{Scenario, Workload};

    fn scenarios_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios")
    }

    fn load(name: &str) -> Scenario {
        let path = scenarios_dir().join(name);
        let text = std::fs::read_to_string(&path).expect("the shipped scenarios exist");
        serde_json::from_str(&text).expect("the shipped scenarios parse")
    }

    fn percentile(sorted: &[u64], fraction: f64) -> u64 {
        if sorted.is_empty() {
            return 0;
        }
        let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn failover(seeds: u64) {
        let mut times = Vec::new();
        let mut unrecovered = 0;
        for name in ["queue-leader-crash-loop.json", "queue-leader-isolated.json"] {
            let scenario = load(name);
            for seed in 1..=seeds {
                let figures = &run_seed(&scenario, seed).checks["failover"].figures;
                times.extend(
                    figures["failover_ms"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()),
                );
                unrecovered += figures["unrecovered"].as_u64().unwrap();
            }
        }
        times.sort_unstable();
        println!(
            "failover (leader lost -> first commit of a later term), {} losses over {seeds} seeds x 2 scenarios:",
            times.len() + unrecovered as usize
        );
        println!(
            "  p50 {} ms   p99 {} ms   max {} ms   unrecovered {unrecovered}",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or(0)
        );
    }

    fn availability(seeds: u64) {
        // fault kind -> (enqueues invoked during it, acknowledged)
        let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut calm = (0u64, 0u64);
        let mut names: Vec<String> = std::fs::read_dir(scenarios_dir())
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("queue-") && name.ends_with(".json"))
            .collect();
        names.sort();
        for name in &names {
            let scenario = load(name);
            for seed in 1..=seeds {
                let figures = &run_seed(&scenario, seed).checks["fault_availability"].figures;
                for window in figures["per_fault"].as_array().unwrap() {
                    let entry =
                        by_kind.entry(window["kind"].as_str().unwrap().to_string()).or_default();
                    entry.0 += window["enqueues"].as_u64().unwrap();
                    entry.1 += window["acknowledged"].as_u64().unwrap();
                }
                calm.0 += figures["no_fault_active"]["enqueues"].as_u64().unwrap();
                calm.1 += figures["no_fault_active"]["acknowledged"].as_u64().unwrap();
            }
        }
        println!(
            "enqueue availability while a fault is active ({} scenarios x {seeds} seeds):",
            names.len()
        );
        let row = |label: &str, (total, ok): (u64, u64)| {
            let share = if total == 0 { 0.0 } else { ok as f64 / total as f64 };
            println!("  {label:<16} {share:>7.4}  ({ok} of {total} enqueues acknowledged)");
        };
        for (kind, counts) in by_kind {
            row(&kind, counts);
        }
        row("no fault", calm);
    }

    fn throughput(seeds: u64) {
        let mut scenario = load("queue-leader-isolated.json");
        scenario.faults = Default::default();
        let Workload::Queue(workload) = &mut scenario.workload else { unreachable!() };
        workload.producers = 10;
        workload.enqueue_per_s = 20.0;
        workload.workers = 10;
        let load = format!(
            "{} producers x {}/s enqueues, {} workers leasing and acking (work {}-{} ms)",
            workload.producers,
            workload.enqueue_per_s,
            workload.workers,
            workload.work_ms_min,
            workload.work_ms_max
        );
        let (mut committed, mut simulated_s, mut client_ok) = (0u64, 0.0, 0u64);
        let (mut wall_s, mut check_s) = (0.0, 0.0);
        for seed in 1..=seeds {
            let started = Instant::now();
            let (events, _) = simulate_seed(&scenario, seed);
            wall_s += started.elapsed().as_secs_f64();
            let started = Instant::now();
            let checks = check_history(&scenario, &events);
            check_s += started.elapsed().as_secs_f64();
            assert!(checks.values().all(|verdict| verdict.passed()), "seed {seed}: {checks:?}");
            let last = events.last().map_or(0, |event| event.time_us);
            simulated_s += last as f64 / 1e6;
            let mut highest = 0;
            for event in &events {
                match &event.kind {
                    EventKind::Internal { what, detail, .. } if what == "raft_applied" => {
                        for entry in detail["entries"].as_array().unwrap() {
                            highest = highest.max(entry[0].as_u64().unwrap());
                        }
                    }
                    EventKind::Ok { .. } => client_ok += 1,
                    _ => {}
                }
            }
            committed += highest;
        }
        println!("5-node queue, no faults, {load}, {seeds} seeds:");
        println!(
            "  committed entries per simulated second {:.0}; client operations acknowledged per simulated second {:.0}",
            committed as f64 / simulated_s,
            client_ok as f64 / simulated_s
        );
        println!(
            "  simulated seconds per wall second {:.1} (simulation alone; checking the histories took {:.1} s more for {:.1} s)",
            simulated_s / wall_s,
            check_s,
            wall_s
        );
    }

    pub fn main() {
        let seeds = if std::env::args().any(|arg| arg == "--bench") { 20 } else { 2 };
        failover(seeds);
        availability(seeds);
        throughput(seeds.min(5));
    }
}

fn main() {
    #[cfg(madsim)]
    simulated::main();
    #[cfg(not(madsim))]
    eprintln!("the queue benchmark runs simulated scenarios: run it in the simulation build (the default)");
}
