//! A run's history as series over simulated time: throughput, latency percentiles and
//! availability per bucket, and the windows faults were active in.
//!
//! **Invariant:** computed from the history alone; an operation is counted in the bucket it
//! completes in, and an invoke with no completion counts nowhere.

use std::collections::BTreeMap;

use pessimist_core::history::{Event, EventKind};
use serde::Serialize;

/// One bucket of simulated time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub start_ms: u64,
    /// Operations that completed `ok`, `fail` and `info` in the bucket.
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Completed `ok` operations per simulated second.
    pub throughput_per_s: f64,
    /// Latency percentiles of the `ok` operations, in ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// `ok` over all completions; `None` when nothing completed.
    pub availability: Option<f64>,
}

/// A fault's active window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultWindow {
    pub fault: u64,
    pub kind: String,
    pub start_ms: f64,
    pub end_ms: f64,
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
    assert!(bucket_ms > 0, "buckets have a length");
    let end_us = events.last().map_or(0, |event| event.time_us);
    let bucket_count = (end_us / 1000 / bucket_ms + 1) as usize;
    let mut buckets: Vec<Bucket> = (0..bucket_count)
        .map(|index| Bucket {
            start_ms: index as u64 * bucket_ms,
            ok: 0,
            fail: 0,
            info: 0,
            throughput_per_s: 0.0,
            latency_p50_ms: None,
            latency_p99_ms: None,
            availability: None,
        })
        .collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); bucket_count];
    let mut invoked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut open_faults: BTreeMap<u64, (String, u64)> = BTreeMap::new();
    let mut faults = Vec::new();
    let mut phases = BTreeMap::new();
    for event in events {
        let bucket = (event.time_us / 1000 / bucket_ms) as usize;
        match &event.kind {
            EventKind::Invoke { process, .. } => {
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
            EventKind::FaultStart { fault, kind, .. } => {
                open_faults.insert(*fault, (kind.clone(), event.time_us));
            }
            EventKind::FaultEnd { fault, .. } => {
                if let Some((kind, start_us)) = open_faults.remove(fault) {
                    faults.push(FaultWindow {
                        fault: *fault,
                        kind,
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
    for (fault, (kind, start_us)) in open_faults {
        faults.push(FaultWindow {
            fault,
            kind,
            start_ms: start_us as f64 / 1000.0,
            end_ms: heal_ms,
        });
    }
    faults.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms).then(a.fault.cmp(&b.fault)));
    let mut all_latencies = Vec::new();
    for (bucket, mut latencies) in buckets.iter_mut().zip(latencies) {
        latencies.sort_by(f64::total_cmp);
        bucket.throughput_per_s = bucket.ok as f64 * 1000.0 / bucket_ms as f64;
        bucket.latency_p50_ms = quantile(&latencies, 0.5);
        bucket.latency_p99_ms = quantile(&latencies, 0.99);
        let completed = bucket.ok + bucket.fail + bucket.info;
        bucket.availability = (completed > 0).then(|| bucket.ok as f64 / completed as f64);
        all_latencies.extend(latencies);
    }
    all_latencies.sort_by(f64::total_cmp);
    Timeline {
        bucket_ms,
        latency_p50_ms: quantile(&all_latencies, 0.5),
        latency_p99_ms: quantile(&all_latencies, 0.99),
        buckets,
        faults,
        phases,
        end_ms: end_us as f64 / 1000.0,
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
    fn quantiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), Some(50.0));
        assert_eq!(quantile(&values, 0.99), Some(99.0));
        assert_eq!(quantile(&values, 1.0), Some(100.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
