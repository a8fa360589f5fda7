//! Per-event measures (a staleness, a delay) pooled over the seeds of a scenario: the
//! percentiles a reviewer quotes and a histogram to draw.
//!
//! Input is the [`Distribution`] shape checkers attach to their verdicts (see
//! `pessimist_sim::check`): sorted samples, each standing for `count / samples.len()` events.
//! Any distribution any checker attaches is pooled and charted; nothing here names one.
//!
//! **Invariant:** pooling weighs every seed by the events it measured, not by the samples it
//! kept, so a seed whose samples were thinned counts as much as it measured.

use pessimist_sim::check::Distribution;
use serde::Serialize;

/// Bins of a histogram.
pub const HISTOGRAM_BINS: usize = 24;

/// One bin of a histogram: values in `[start, end)` (the last bin includes its end).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bin {
    pub start: f64,
    pub end: f64,
    /// Share of the events in the bin, 0 to 1.
    pub share: f64,
}

/// One measure over the seeds of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PooledDistribution {
    /// The checker and the measure's name: `auth_keys`, `new_key_delay_ms`.
    pub check: String,
    pub name: String,
    pub unit: String,
    pub description: String,
    /// Seeds that reported the measure, and those of them that measured at least one event.
    pub seeds: usize,
    pub seeds_with_events: usize,
    /// Events measured over all seeds.
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// Over `[0, max]` (or `[min, max]` when a value is negative); empty without events.
    pub histogram: Vec<Bin>,
}

/// The `q` quantile (0..=1) of weighted, sorted samples, nearest rank: the smallest value
/// whose cumulative weight reaches `q` of the total. With unit weights this is
/// [`crate::timeline::quantile`].
fn weighted_quantile(sorted: &[(f64, f64)], total: f64, q: f64) -> Option<f64> {
    let target = (q * total).max(f64::MIN_POSITIVE);
    let mut cumulative = 0.0;
    for &(value, weight) in sorted {
        cumulative += weight;
        // A relative tolerance: weights like 1000/256 do not add up exactly.
        if cumulative >= target * (1.0 - 1e-12) {
            return Some(value);
        }
    }
    sorted.last().map(|&(value, _)| value)
}

/// Pools the distributions one measure of one checker reported over the seeds.
pub fn pool(check: &str, name: &str, seeds: &[&Distribution]) -> PooledDistribution {
    let first = seeds.first().expect("a pooled measure was reported by some seed");
    let mut weighted: Vec<(f64, f64)> = Vec::new();
    for distribution in seeds {
        assert!(
            distribution.samples.len() as u64 <= distribution.count,
            "{check}.{name}: more samples than events measured"
        );
        if distribution.samples.is_empty() {
            continue;
        }
        let weight = distribution.count as f64 / distribution.samples.len() as f64;
        weighted.extend(distribution.samples.iter().map(|&value| (value, weight)));
    }
    weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = weighted.iter().map(|&(_, weight)| weight).sum();
    let histogram = match (weighted.first(), weighted.last()) {
        (Some(&(min, _)), Some(&(max, _))) => {
            let start = min.min(0.0);
            let width = ((max - start) / HISTOGRAM_BINS as f64).max(f64::MIN_POSITIVE);
            let mut bins: Vec<Bin> = (0..HISTOGRAM_BINS)
                .map(|index| Bin {
                    start: start + index as f64 * width,
                    // The last bin ends at the largest value exactly, whatever the rounding.
                    end: if index + 1 == HISTOGRAM_BINS {
                        max.max(start)
                    } else {
                        start + (index + 1) as f64 * width
                    },
                    share: 0.0,
                })
                .collect();
            for &(value, weight) in &weighted {
                let index = (((value - start) / width) as usize).min(HISTOGRAM_BINS - 1);
                bins[index].share += weight / total;
            }
            bins
        }
        _ => Vec::new(),
    };
    PooledDistribution {
        check: check.to_string(),
        name: name.to_string(),
        unit: first.unit.clone(),
        description: first.description.clone(),
        seeds: seeds.len(),
        seeds_with_events: seeds.iter().filter(|distribution| distribution.count > 0).count(),
        count: seeds.iter().map(|distribution| distribution.count).sum(),
        p50: weighted_quantile(&weighted, total, 0.5),
        p90: weighted_quantile(&weighted, total, 0.9),
        p99: weighted_quantile(&weighted, total, 0.99),
        max: weighted.last().map(|&(value, _)| value),
        histogram,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pessimist_sim::check::DISTRIBUTION_SAMPLES_MAX;

    fn distribution(values: &[f64]) -> Distribution {
        Distribution::from_values("ms", "test", values.iter().copied())
    }

    #[test]
    fn pooling_takes_every_seed_and_agrees_with_nearest_rank() {
        let first = distribution(&(1..=50).map(f64::from).collect::<Vec<_>>());
        let second = distribution(&(51..=100).map(f64::from).collect::<Vec<_>>());
        let empty = distribution(&[]);
        let pooled = pool("auth_keys", "new_key_delay_ms", &[&first, &second, &empty]);
        assert_eq!((pooled.seeds, pooled.seeds_with_events, pooled.count), (3, 2, 100));
        assert_eq!(pooled.p50, Some(50.0));
        assert_eq!(pooled.p90, Some(90.0));
        assert_eq!(pooled.p99, Some(99.0));
        assert_eq!(pooled.max, Some(100.0));
        assert_eq!(pooled.histogram.len(), HISTOGRAM_BINS);
        let shares: f64 = pooled.histogram.iter().map(|bin| bin.share).sum();
        assert!((shares - 1.0).abs() < 1e-9, "the bins hold every event: {shares}");
        assert_eq!(pooled.histogram[0].start, 0.0);
        assert_eq!(pooled.histogram[HISTOGRAM_BINS - 1].end, 100.0);
    }

    #[test]
    fn thinned_seeds_weigh_what_they_measured() {
        // 10,000 events of 1 ms thinned, against 100 events of 1000 ms.
        let many = distribution(&vec![1.0; 10_000]);
        assert_eq!((many.count, many.samples.len()), (10_000, DISTRIBUTION_SAMPLES_MAX));
        let few = distribution(&[1000.0; 100]);
        let pooled = pool("c", "m", &[&many, &few]);
        assert_eq!(pooled.count, 10_100);
        // 100 of 10,100 events are slow: under 1%, so p99 is still fast.
        assert_eq!(pooled.p99, Some(1.0));
        assert_eq!(pooled.max, Some(1000.0));
        let slow_share = pooled.histogram.last().unwrap().share;
        assert!((slow_share - 100.0 / 10_100.0).abs() < 1e-9, "{slow_share}");
    }

    #[test]
    fn a_measure_without_events_has_no_figures() {
        let pooled = pool("c", "m", &[&distribution(&[])]);
        assert_eq!((pooled.count, pooled.p50, pooled.max), (0, None, None));
        assert!(pooled.histogram.is_empty());
    }

    #[test]
    fn thinning_keeps_the_extremes_and_the_shape() {
        let values: Vec<f64> = (0..100_000).map(f64::from).collect();
        let thinned = distribution(&values);
        assert_eq!(thinned.samples.len(), DISTRIBUTION_SAMPLES_MAX);
        assert_eq!(thinned.samples.first(), Some(&0.0));
        assert_eq!(thinned.samples.last(), Some(&99_999.0));
        let pooled = pool("c", "m", &[&thinned]);
        let p50 = pooled.p50.unwrap();
        let spacing = 100_000.0 / (DISTRIBUTION_SAMPLES_MAX - 1) as f64;
        assert!((p50 - 50_000.0).abs() <= spacing, "within one sample's spacing: {p50}");
    }
}
