//! Benchmark: how fast the image service simulates. Runs seeds of `service-baseline` (the whole
//! service: three queue nodes, three auth nodes, three API servers, two resize workers, HTTP
//! clients, no faults) and prints simulated seconds per wall second, for the simulation alone
//! and with its checks (which recompute every thumbnail), with the work done per simulated
//! second beside it.
//!
//! The run is one thread, like each seed of a sweep. The workers decode, resize and encode
//! real images, so the resize path's speed shows here too.
//!
//! Run: `cargo bench -p pessimist-sim --bench service` (5 seeds; `cargo test --benches`
//! runs 1).

#[cfg(madsim)]
mod simulated {
    use std::path::Path;
    use std::time::Instant;

    use pessimist_sim::run::{check_history, simulate_seed};
    use pessimist_sim::scenario::Scenario;

    const SCENARIO: &str = "service-baseline.json";

    fn load(name: &str) -> Scenario {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
        let text = std::fs::read_to_string(&path).expect("the shipped scenarios exist");
        serde_json::from_str(&text).expect("the shipped scenarios parse")
    }

    pub fn main() {
        let seeds: u64 = if std::env::args().any(|arg| arg == "--bench") { 5 } else { 1 };
        let scenario = load(SCENARIO);
        let (mut simulated_s, mut simulate_wall_s, mut check_wall_s) = (0.0, 0.0, 0.0);
        let (mut events_total, mut accepted, mut thumbnails) = (0usize, 0u64, 0u64);
        println!("{SCENARIO}, {seeds} seeds, one thread:");
        println!(
            "{:>6} {:>12} {:>12} {:>10} {:>14} {:>14}",
            "seed", "simulated s", "wall s", "sim s/s", "with checks", "jobs accepted"
        );
        for seed in 1..=seeds {
            let started = Instant::now();
            let (events, _) = simulate_seed(&scenario, seed);
            let simulate_s = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let checks = check_history(&scenario, &events);
            let check_s = started.elapsed().as_secs_f64();
            assert!(checks.values().all(|verdict| verdict.passed()), "seed {seed}: {checks:?}");
            let seed_simulated_s = events.last().map_or(0, |event| event.time_us) as f64 / 1e6;
            let figure = |check: &str, name: &str| {
                checks[check].figures[name].as_u64().expect("the service checks report it")
            };
            let seed_accepted = figure("jobs_complete", "accepted");
            println!(
                "{seed:>6} {seed_simulated_s:>12.1} {simulate_s:>12.2} {:>10.1} {:>14.1} {seed_accepted:>14}",
                seed_simulated_s / simulate_s,
                seed_simulated_s / (simulate_s + check_s),
            );
            simulated_s += seed_simulated_s;
            simulate_wall_s += simulate_s;
            check_wall_s += check_s;
            events_total += events.len();
            accepted += seed_accepted;
            thumbnails += figure("thumbnails", "thumbnails_matched");
        }
        println!(
            "simulated seconds per wall second: {:.1} (simulation alone), {:.1} (with the checks, \
             {:.1} s of {:.1} s)",
            simulated_s / simulate_wall_s,
            simulated_s / (simulate_wall_s + check_wall_s),
            check_wall_s,
            simulate_wall_s + check_wall_s,
        );
        println!(
            "per simulated second: {:.0} history events, {:.1} jobs accepted, {:.1} thumbnails \
             made and matched",
            events_total as f64 / simulated_s,
            accepted as f64 / simulated_s,
            thumbnails as f64 / simulated_s,
        );
    }
}

fn main() {
    #[cfg(madsim)]
    simulated::main();
    #[cfg(not(madsim))]
    eprintln!("the service benchmark runs a simulated scenario: run it in the simulation build (the default)");
}
