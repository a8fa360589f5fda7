//! A run's history as series over simulated time: throughput, latency percentiles and
//! availability per bucket, and the windows faults were active in; and many runs' timelines
//! pooled bucket by bucket ([`Pool`]), so a chart can show every seed of a scenario at once.
//!
//! **Invariant:** computed from the history alone; an operation is counted in the bucket it
//! completes in, and an invoke with no completion counts nowhere.

use std::collections::BTreeMap;

use pessimist_core::history::{Event, EventKind};
use pessimist_sim::check::Outcome;
use serde::Serialize;

/// One bucket of simulated time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub start_ms: u64,
    /// Operations that completed `ok`, `fail` and `info` in the bucket.
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// The part of the bucket the workload ran in, in ms: the whole bucket, or less for the
    /// first and last (clients start after the cluster is up; the run ends mid-bucket).
    pub covered_ms: u64,
    /// Completed `ok` operations per simulated second of the part covered.
    pub throughput_per_s: f64,
    /// Latency percentiles of the `ok` operations, in ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// `ok` over all completions; `None` when nothing completed.
    pub availability: Option<f64>,
}

/// Completions counted over a stretch of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Completions {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl Completions {
    /// `ok` over all completions; `None` when nothing completed.
    pub fn availability(&self) -> Option<f64> {
        let completed = self.ok + self.fail + self.info;
        (completed > 0).then(|| self.ok as f64 / completed as f64)
    }

    fn add(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Ok { .. } => self.ok += 1,
            EventKind::Fail { .. } => self.fail += 1,
            EventKind::Info { .. } => self.info += 1,
            _ => unreachable!("only completions are counted"),
        }
    }
}

/// A fault's active window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultWindow {
    pub fault: u64,
    pub kind: String,
    /// What it hit, in words (`api-1`, `queue-1 -> queue-2`, `[a, b] | [c]`, `rate 0.1`).
    pub target: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

impl FaultWindow {
    /// `crash api-1`: the kind and the target, as a chart's band is labelled.
    pub fn label(&self) -> String {
        if self.target.is_empty() {
            self.kind.clone()
        } else {
            format!("{} {}", self.kind, self.target)
        }
    }
}

/// A fault's target in words, from the fault as the history recorded it (its fields beside
/// `kind`): the node, the link, the groups, else the fault's numbers.
pub fn fault_target(detail: &serde_json::Value) -> String {
    use serde_json::Value;
    let Some(fields) = detail.as_object() else { return String::new() };
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_string))
                .collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    };
    let field = |name: &str| fields.get(name).map(text);
    let mut target = Vec::new();
    if let Some(node) = field("node") {
        target.push(node);
    }
    if let (Some(from), Some(to)) = (field("from"), field("to")) {
        target.push(format!("{from} -> {to}"));
    }
    if let Some(Value::Array(groups)) = fields.get("groups") {
        target.push(groups.iter().map(text).collect::<Vec<_>>().join(" | "));
    }
    if let (Some(bridge), Some(Value::Array(sides))) = (field("bridge"), fields.get("sides")) {
        let sides: Vec<String> = sides.iter().map(text).collect();
        target.push(format!("{} via {bridge}", sides.join(" | ")));
    }
    // The fault's numbers (a rate, an offset), which tell two faults of a kind apart.
    for (name, value) in fields {
        if ["kind", "node", "from", "to", "groups", "bridge", "sides"].contains(&name.as_str()) {
            continue;
        }
        target.push(format!("{name} {}", text(value)));
    }
    target.join(", ")
}

/// A history as series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    pub bucket_ms: u64,
    pub buckets: Vec<Bucket>,
    pub faults: Vec<FaultWindow>,
    /// When each phase began, in ms.
    pub phases: BTreeMap<String, f64>,
    pub end_ms: f64,
    /// Latency percentiles over the whole run, in ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    /// Completions before the heal (the fault phase) and from it on.
    pub before_heal: Completions,
    pub after_heal: Completions,
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The timeline of `events` in buckets of `bucket_ms`.
pub fn timeline(events: &[Event], bucket_ms: u64) -> Timeline {
    timeline_and_latencies(events, bucket_ms).0
}

/// The timeline and, per bucket, the sorted latencies (ms) of its `ok` operations.
fn timeline_and_latencies(events: &[Event], bucket_ms: u64) -> (Timeline, Vec<Vec<f64>>) {
    assert!(bucket_ms > 0, "buckets have a length");
    let end_us = events.last().map_or(0, |event| event.time_us);
    let bucket_count = (end_us / 1000 / bucket_ms + 1) as usize;
    let mut buckets: Vec<Bucket> = (0..bucket_count)
        .map(|index| Bucket {
            start_ms: index as u64 * bucket_ms,
            ok: 0,
            fail: 0,
            info: 0,
            covered_ms: bucket_ms,
            throughput_per_s: 0.0,
            latency_p50_ms: None,
            latency_p99_ms: None,
            availability: None,
        })
        .collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); bucket_count];
    let mut invoked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut open_faults: BTreeMap<u64, (String, String, u64)> = BTreeMap::new();
    let mut first_invoke_us = None;
    let mut faults = Vec::new();
    let mut phases = BTreeMap::new();
    let (mut before_heal, mut after_heal) = (Completions::default(), Completions::default());
    for event in events {
        let bucket = (event.time_us / 1000 / bucket_ms) as usize;
        if matches!(
            event.kind,
            EventKind::Ok { .. } | EventKind::Fail { .. } | EventKind::Info { .. }
        ) {
            let healed = phases.contains_key("heal");
            if healed { &mut after_heal } else { &mut before_heal }.add(&event.kind);
        }
        match &event.kind {
            EventKind::Invoke { process, .. } => {
                first_invoke_us.get_or_insert(event.time_us);
                invoked.insert(*process, event.time_us);
            }
            EventKind::Ok { process, .. } => {
                buckets[bucket].ok += 1;
                if let Some(start_us) = invoked.remove(process) {
                    latencies[bucket].push((event.time_us - start_us) as f64 / 1000.0);
                }
            }
            EventKind::Fail { process, .. } => {
                buckets[bucket].fail += 1;
                invoked.remove(process);
            }
            EventKind::Info { process, .. } => {
                buckets[bucket].info += 1;
                invoked.remove(process);
            }
            EventKind::FaultStart { fault, kind, detail } => {
                open_faults.insert(*fault, (kind.clone(), fault_target(detail), event.time_us));
            }
            EventKind::FaultEnd { fault, .. } => {
                if let Some((kind, target, start_us)) = open_faults.remove(fault) {
                    faults.push(FaultWindow {
                        fault: *fault,
                        kind,
                        target,
                        start_ms: start_us as f64 / 1000.0,
                        end_ms: event.time_us as f64 / 1000.0,
                    });
                }
            }
            EventKind::Phase { name, .. } => {
                phases.entry(name.clone()).or_insert(event.time_us as f64 / 1000.0);
            }
            EventKind::Internal { .. } => {}
        }
    }
    // A fault never healed by its own end (the heal phase heals everything) ends at the heal.
    let heal_ms = phases.get("heal").copied().unwrap_or(end_us as f64 / 1000.0);
    for (fault, (kind, target, start_us)) in open_faults {
        faults.push(FaultWindow {
            fault,
            kind,
            target,
            start_ms: start_us as f64 / 1000.0,
            end_ms: heal_ms,
        });
    }
    faults.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms).then(a.fault.cmp(&b.fault)));
    // The workload's span: from the first invoke to the history's end. A bucket outside it
    // in part is partial, and its throughput is over the part covered, so a run that starts
    // or ends mid-bucket does not read as an outage.
    let span_us = (first_invoke_us.unwrap_or(0), end_us);
    let mut all_latencies = Vec::new();
    for (bucket, latencies) in buckets.iter_mut().zip(&mut latencies) {
        latencies.sort_by(f64::total_cmp);
        let (from_us, to_us) = (bucket.start_ms * 1000, (bucket.start_ms + bucket_ms) * 1000);
        let covered_us = to_us.min(span_us.1.max(from_us)).saturating_sub(from_us.max(span_us.0));
        bucket.covered_ms = covered_us.div_ceil(1000).min(bucket_ms);
        assert!(bucket.covered_ms <= bucket_ms, "a bucket covers at most its length");
        bucket.throughput_per_s = match bucket.covered_ms {
            0 => 0.0,
            covered_ms => bucket.ok as f64 * 1000.0 / covered_ms as f64,
        };
        bucket.latency_p50_ms = quantile(latencies, 0.5);
        bucket.latency_p99_ms = quantile(latencies, 0.99);
        let completed = bucket.ok + bucket.fail + bucket.info;
        bucket.availability = (completed > 0).then(|| bucket.ok as f64 / completed as f64);
        all_latencies.extend_from_slice(latencies);
    }
    all_latencies.sort_by(f64::total_cmp);
    let timeline = Timeline {
        bucket_ms,
        latency_p50_ms: quantile(&all_latencies, 0.5),
        latency_p99_ms: quantile(&all_latencies, 0.99),
        latency_max_ms: all_latencies.last().copied(),
        before_heal,
        after_heal,
        buckets,
        faults,
        phases,
        end_ms: end_us as f64 / 1000.0,
    };
    (timeline, latencies)
}

/// One seed's run in a line: what a reviewer compares across seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeedRow {
    pub seed: u64,
    pub outcome: Outcome,
    pub completed: u64,
    pub ok: u64,
    /// `ok` over all completions: over the run, before the heal, from the heal on.
    pub availability: Option<f64>,
    pub availability_before_heal: Option<f64>,
    pub availability_after_heal: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub fault_windows: usize,
}

impl SeedRow {
    /// The row of `seed`'s timeline.
    pub fn new(seed: u64, outcome: Outcome, timeline: &Timeline) -> SeedRow {
        let (before, after) = (timeline.before_heal, timeline.after_heal);
        let whole = Completions {
            ok: before.ok + after.ok,
            fail: before.fail + after.fail,
            info: before.info + after.info,
        };
        SeedRow {
            seed,
            outcome,
            completed: whole.ok + whole.fail + whole.info,
            ok: whole.ok,
            availability: whole.availability(),
            availability_before_heal: before.availability(),
            availability_after_heal: after.availability(),
            latency_p50_ms: timeline.latency_p50_ms,
            latency_p99_ms: timeline.latency_p99_ms,
            latency_max_ms: timeline.latency_max_ms,
            fault_windows: timeline.faults.len(),
        }
    }
}

/// One bucket of simulated time over many seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PooledBucket {
    pub start_ms: u64,
    /// Seeds whose run reached this bucket.
    pub seeds: usize,
    /// Some seed's workload covered only part of it (see [`Bucket::covered_ms`]).
    pub partial: bool,
    /// Share of those seeds with a fault active at some point of the bucket, and the mean
    /// number of faults active in it per seed (overlapping faults count each).
    pub fault_fraction: f64,
    pub faults_mean: f64,
    /// Completed `ok` operations per simulated second: the mean over the seeds, the lowest
    /// and the highest seed.
    pub throughput_mean_per_s: f64,
    pub throughput_min_per_s: f64,
    pub throughput_max_per_s: f64,
    /// Latency percentiles of every seed's `ok` operations taken together, in ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// `ok` over all completions of every seed taken together, and of the worst seed.
    pub availability: Option<f64>,
    pub availability_min: Option<f64>,
}

/// Many seeds' timelines pooled bucket by bucket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PooledTimeline {
    pub bucket_ms: u64,
    pub seeds: usize,
    pub buckets: Vec<PooledBucket>,
    /// The latest end of a run and the earliest heal, in ms.
    pub end_ms: f64,
    pub heal_ms: Option<f64>,
    /// Latency percentiles of every `ok` operation of every seed, in ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// One seed's bucket as a pool keeps it: throughput, ok, completed, faults active, partial.
type SeedBucket = (f64, u64, u64, usize, bool);

/// Accumulates seeds' histories into a [`PooledTimeline`]. Memory grows with the operations
/// added (their latencies are kept for exact pooled percentiles): callers bound the seeds.
#[derive(Debug)]
pub struct Pool {
    bucket_ms: u64,
    seeds: usize,
    /// Per bucket: per seed (throughput, ok, completed, faults active, partial), and every
    /// latency.
    per_seed: Vec<Vec<SeedBucket>>,
    latencies: Vec<Vec<f64>>,
    end_ms: f64,
    heal_ms: Option<f64>,
}

impl Pool {
    /// An empty pool of buckets of `bucket_ms`.
    pub fn new(bucket_ms: u64) -> Pool {
        assert!(bucket_ms > 0, "buckets have a length");
        Pool {
            bucket_ms,
            seeds: 0,
            per_seed: Vec::new(),
            latencies: Vec::new(),
            end_ms: 0.0,
            heal_ms: None,
        }
    }

    /// Adds one seed's history; returns its timeline.
    pub fn add(&mut self, events: &[Event]) -> Timeline {
        let (timeline, latencies) = timeline_and_latencies(events, self.bucket_ms);
        assert_eq!(timeline.bucket_ms, self.bucket_ms, "one bucket length per pool");
        self.seeds += 1;
        if self.per_seed.len() < timeline.buckets.len() {
            self.per_seed.resize(timeline.buckets.len(), Vec::new());
            self.latencies.resize(timeline.buckets.len(), Vec::new());
        }
        for ((index, bucket), latencies) in timeline.buckets.iter().enumerate().zip(latencies) {
            let (from_ms, to_ms) =
                (bucket.start_ms as f64, (bucket.start_ms + self.bucket_ms) as f64);
            let faulted = timeline
                .faults
                .iter()
                .filter(|window| window.start_ms < to_ms && window.end_ms > from_ms)
                .count();
            let completed = bucket.ok + bucket.fail + bucket.info;
            let partial = bucket.covered_ms < self.bucket_ms;
            self.per_seed[index].push((
                bucket.throughput_per_s,
                bucket.ok,
                completed,
                faulted,
                partial,
            ));
            self.latencies[index].extend(latencies);
        }
        self.end_ms = self.end_ms.max(timeline.end_ms);
        if let Some(&heal_ms) = timeline.phases.get("heal") {
            self.heal_ms = Some(self.heal_ms.map_or(heal_ms, |known: f64| known.min(heal_ms)));
        }
        timeline
    }

    /// The pooled timeline; `None` if no seed was added.
    pub fn finish(self) -> Option<PooledTimeline> {
        if self.seeds == 0 {
            return None;
        }
        let mut all_latencies = Vec::new();
        let buckets = self
            .per_seed
            .iter()
            .zip(self.latencies)
            .enumerate()
            .map(|(index, (seeds, mut latencies))| {
                latencies.sort_by(f64::total_cmp);
                let count = seeds.len().max(1) as f64;
                let throughputs = seeds.iter().map(|seed| seed.0);
                let ok: u64 = seeds.iter().map(|seed| seed.1).sum();
                let completed: u64 = seeds.iter().map(|seed| seed.2).sum();
                let bucket = PooledBucket {
                    start_ms: index as u64 * self.bucket_ms,
                    seeds: seeds.len(),
                    partial: seeds.iter().any(|seed| seed.4),
                    fault_fraction: seeds.iter().filter(|seed| seed.3 > 0).count() as f64 / count,
                    faults_mean: seeds.iter().map(|seed| seed.3 as f64).sum::<f64>() / count,
                    throughput_mean_per_s: throughputs.clone().sum::<f64>() / count,
                    throughput_min_per_s: throughputs.clone().fold(f64::INFINITY, f64::min),
                    throughput_max_per_s: throughputs.fold(0.0, f64::max),
                    latency_p50_ms: quantile(&latencies, 0.5),
                    latency_p99_ms: quantile(&latencies, 0.99),
                    availability: (completed > 0).then(|| ok as f64 / completed as f64),
                    availability_min: seeds
                        .iter()
                        .filter(|seed| seed.2 > 0)
                        .map(|seed| seed.1 as f64 / seed.2 as f64)
                        .reduce(f64::min),
                };
                all_latencies.extend(latencies);
                bucket
            })
            .collect();
        all_latencies.sort_by(f64::total_cmp);
        Some(PooledTimeline {
            bucket_ms: self.bucket_ms,
            seeds: self.seeds,
            buckets,
            end_ms: self.end_ms,
            heal_ms: self.heal_ms,
            latency_p50_ms: quantile(&all_latencies, 0.5),
            latency_p99_ms: quantile(&all_latencies, 0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(index: u64, time_ms: u64, kind: EventKind) -> Event {
        Event { index, time_us: time_ms * 1000, kind }
    }

    fn invoke(process: u64) -> EventKind {
        EventKind::Invoke { process, f: "write".into(), value: json!(1) }
    }

    #[test]
    fn operations_count_where_they_complete_and_faults_make_windows() {
        let events = vec![
            event(0, 0, invoke(0)),
            event(
                1,
                100,
                EventKind::FaultStart { fault: 0, kind: "crash".into(), detail: json!({}) },
            ),
            event(2, 300, EventKind::Ok { process: 0, f: "write".into(), value: json!(1) }),
            event(3, 400, invoke(1)),
            event(
                4,
                1200,
                EventKind::Info {
                    process: 1,
                    f: "write".into(),
                    value: json!(1),
                    error: "timeout".into(),
                },
            ),
            event(5, 1500, EventKind::FaultEnd { fault: 0, kind: "crash".into() }),
            event(
                6,
                1600,
                EventKind::FaultStart { fault: 1, kind: "pause".into(), detail: json!({}) },
            ),
            event(7, 1700, EventKind::Phase { name: "heal".into(), detail: json!({}) }),
            event(8, 2100, invoke(0)),
            event(9, 2150, EventKind::Ok { process: 0, f: "read".into(), value: json!(1) }),
        ];
        let timeline = timeline(&events, 1000);
        assert_eq!(timeline.buckets.len(), 3);
        let first = &timeline.buckets[0];
        assert_eq!((first.ok, first.fail, first.info), (1, 0, 0));
        assert_eq!(first.latency_p50_ms, Some(300.0));
        assert_eq!(first.availability, Some(1.0));
        let second = &timeline.buckets[1];
        assert_eq!((second.ok, second.info), (0, 1));
        assert_eq!(second.availability, Some(0.0));
        assert_eq!(second.latency_p99_ms, None);
        assert_eq!(timeline.buckets[2].latency_p50_ms, Some(50.0));
        assert_eq!(timeline.faults.len(), 2);
        assert_eq!((timeline.faults[0].start_ms, timeline.faults[0].end_ms), (100.0, 1500.0));
        // The pause was never healed on its own: it ends at the heal.
        assert_eq!(timeline.faults[1].end_ms, 1700.0);
        assert_eq!(timeline.latency_p50_ms, Some(50.0));
        assert_eq!(timeline.latency_p99_ms, Some(300.0));
    }

    #[test]
    fn buckets_the_workload_covers_in_part_are_partial_not_outages() {
        // Clients start at 1.5 s; the run ends at 3.25 s: the second and fourth buckets are
        // partial, and their throughput is over the part covered.
        let mut events =
            vec![event(0, 0, EventKind::Phase { name: "faults".into(), detail: json!({}) })];
        for (index, time_ms) in [1500u64, 1700, 2100, 3100].into_iter().enumerate() {
            let index = 1 + 2 * index as u64;
            events.push(event(index, time_ms, invoke(0)));
            events.push(event(
                index + 1,
                time_ms + 100,
                EventKind::Ok { process: 0, f: "write".into(), value: json!(1) },
            ));
        }
        events.push(event(9, 3250, EventKind::Phase { name: "end".into(), detail: json!({}) }));
        let timeline = timeline(&events, 1000);
        let covered: Vec<u64> = timeline.buckets.iter().map(|bucket| bucket.covered_ms).collect();
        assert_eq!(covered, [0, 500, 1000, 250]);
        assert_eq!(timeline.buckets[1].throughput_per_s, 4.0, "2 ok in 500 ms");
        assert_eq!(timeline.buckets[2].throughput_per_s, 1.0);
        assert_eq!(timeline.buckets[3].throughput_per_s, 4.0, "1 ok in 250 ms");
    }

    #[test]
    fn a_fault_names_its_target() {
        let check = |detail: serde_json::Value, expected: &str| {
            assert_eq!(fault_target(&detail), expected, "{detail}");
        };
        check(json!({"kind": "crash", "node": "api-1"}), "api-1");
        check(json!({"kind": "one_way", "from": "a", "to": "b"}), "a -> b");
        check(json!({"kind": "partition", "groups": [["a"], ["b", "c"]]}), "[a] | [b, c]");
        check(json!({"kind": "clock_jump", "node": "q1", "delta_ms": -500}), "q1, delta_ms -500");
        check(json!({"kind": "packet_loss", "rate": 0.1}), "rate 0.1");
        check(json!("not an object"), "");
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), Some(50.0));
        assert_eq!(quantile(&values, 0.99), Some(99.0));
        assert_eq!(quantile(&values, 1.0), Some(100.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
