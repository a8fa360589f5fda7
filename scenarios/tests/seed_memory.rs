//! A seed leaves nothing behind in the process that ran it: a sweep runs thousands of seeds in
//! one process, and a seed's world (history, disks, image buffers, connections, the nodes'
//! tasks) must be freed when the seed ends, or the sweep grows without bound.
//!
//! The test counts the bytes the process holds with a counting global allocator (this test
//! binary's alone), not its resident set: the allocations of a seed are a pure function of the
//! seed, so the count is the same on every machine, and a leak shows as the seed's world.

//! It runs without libtest (`harness = false` in `Cargo.toml`): libtest captures a test's
//! output in a buffer that grows with every line the simulator prints (madsim prints a
//! `context:` line for every modelled process exit), and the count would read that as a leak.

// The simulator exists only in the simulation build.
#[cfg(not(madsim))]
fn main() {}

#[cfg(madsim)]
fn main() {
    sim::a_seed_frees_its_world_when_it_ends();
    println!("test a_seed_frees_its_world_when_it_ends ... ok");
}

#[cfg(madsim)]
mod sim {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicI64, Ordering};

    use pessimist_scenarios::{parse_scenario, suite::workspace_root};
    use pessimist_sim::run::run_seed;
    use pessimist_sim::scenario::Scenario;

    /// The system allocator, counting the bytes allocated and not yet freed.
    struct Counting;

    static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

    // SAFETY: every call is forwarded to `System` unchanged; the counter only watches.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let pointer = unsafe { System.alloc(layout) };
            if !pointer.is_null() {
                LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            }
            pointer
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let pointer = unsafe { System.alloc_zeroed(layout) };
            if !pointer.is_null() {
                LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            }
            pointer
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            unsafe { System.dealloc(pointer, layout) };
            LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }

        unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let moved = unsafe { System.realloc(pointer, layout, new_size) };
            if !moved.is_null() {
                LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
            }
            moved
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    fn live_bytes() -> i64 {
        LIVE_BYTES.load(Ordering::Relaxed)
    }

    /// A shipped scenario with its phases cut short: a leak does not need a long run to show, and
    /// a short one keeps the test cheap. The shortened phases must still leave tasks waiting at
    /// the end (servers, pollers, connections), which is what used to leak.
    fn shortened(name: &str, faults_ms: u64) -> Scenario {
        let file = format!("scenarios/{name}.json");
        let text = std::fs::read_to_string(workspace_root().join(&file)).expect("shipped file");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("shipped JSON");
        json["phases"]["faults_ms"] = faults_ms.into();
        if let Some(plan) = json["faults"].get_mut("plan").and_then(|plan| plan.as_array_mut()) {
            plan.retain(|event| event["at_ms"].as_u64().is_some_and(|at_ms| at_ms < faults_ms));
        }
        parse_scenario(&file, &json.to_string()).expect("the shortened scenario loads")
    }

    pub fn a_seed_frees_its_world_when_it_ends() {
        for (name, faults_ms) in [("service-swarm", 5_000), ("store-swarm", 5_000)] {
            let scenario = shortened(name, faults_ms);
            // The first run fills what a process fills once (tracing's call sites, lazy statics).
            let first = run_seed(&scenario, 1);
            assert!(first.events.len() > 100, "{name}: a run records a real history");
            drop(first);
            let mut growths = Vec::with_capacity(2);
            for _ in 0..2 {
                let start = live_bytes();
                let outcome = run_seed(&scenario, 1);
                drop(outcome);
                growths.push(live_bytes() - start);
            }
            // Summed per run, so that this vector's own bytes are not counted.
            let growth: i64 = growths.iter().sum();
            eprintln!("{name}: bytes left per run {growths:?}");
            // Exactly none: the runs repeat the first run's seed, so anything filled once per
            // process was filled by it, and a run's allocations are a pure function of its seed.
            assert!(
                growth == 0,
                "{name}: two more runs of seed 1 left {growth} bytes allocated ({growths:?}): \
                 a seed's world outlives its run"
            );
        }
    }
}
