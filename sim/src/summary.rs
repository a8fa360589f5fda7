//! What a run reports: per scenario, per seed, the verdicts and how to replay. This is the
//! shape of `summary.json`, read back by the report renderer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::{Outcome, Verdict};

/// The fewest seeds over which a situation no seed reached fails the scenario.
pub const COVERAGE_SEEDS_MIN: usize = 2;

/// How many of a run's seeds reached one situation the scenario says must happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    pub situation: String,
    pub seeds_reached: usize,
    pub seeds: usize,
}

impl Coverage {
    /// The line a report prints for a situation no seed reached.
    pub fn unreached_line(&self) -> String {
        format!("no seed of {} reached `{}`", self.seeds, self.situation)
    }
}

/// One seed's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSummary {
    pub seed: u64,
    pub history_hash: String,
    /// Failed when a check failed, else inconclusive when a check could not decide.
    pub outcome: Outcome,
    pub checks: BTreeMap<String, Verdict>,
    /// The one command that replays this seed.
    pub replay: String,
    /// The command that shrinks this seed's fault plan (failing seeds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink: Option<String>,
    /// The history file, relative to the summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    pub fault_events: usize,
    pub history_events: usize,
}

/// One scenario's result over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSummary {
    pub scenario: String,
    pub file: String,
    /// The scenario's description, so a report can say what it tests.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The scenario's availability threshold from the heal on (`checks.heal_ok_fraction_min`),
    /// so a report can draw it as the SLO line; `None` when the scenario sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal_ok_fraction_min: Option<f64>,
    /// The worst of its seeds' outcomes; failed also when no seed reached a situation the
    /// scenario must reach.
    pub outcome: Outcome,
    /// Per situation of the scenario's `must_happen`, the seeds that reached it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_happen: Vec<Coverage>,
    pub seeds: Vec<SeedSummary>,
}

impl RunSummary {
    /// A scenario's summary over `seeds`: its outcome, and its `must_happen` coverage from the
    /// seeds' `must_happen` figures. Coverage decides only over [`COVERAGE_SEEDS_MIN`] seeds or
    /// more: one seed (a replay, `run --seed`) cannot show what must happen in *some* seed.
    pub fn new(
        scenario: String,
        file: String,
        description: String,
        heal_ok_fraction_min: Option<f64>,
        seeds: Vec<SeedSummary>,
    ) -> RunSummary {
        let must_happen = coverage(&seeds);
        let unreached = seeds.len() >= COVERAGE_SEEDS_MIN
            && must_happen.iter().any(|situation| situation.seeds_reached == 0);
        let coverage_outcome = if unreached { Outcome::Failed } else { Outcome::Passed };
        let outcome =
            Outcome::worst(seeds.iter().map(|seed| seed.outcome).chain([coverage_outcome]));
        RunSummary {
            scenario,
            file,
            description,
            heal_ok_fraction_min,
            outcome,
            must_happen,
            seeds,
        }
    }

    /// The situations no seed reached, one line each, where they fail the scenario.
    pub fn unreached(&self) -> Vec<String> {
        if self.seeds.len() < COVERAGE_SEEDS_MIN {
            return Vec::new();
        }
        let unreached = self.must_happen.iter().filter(|situation| situation.seeds_reached == 0);
        unreached.map(Coverage::unreached_line).collect()
    }
}

/// Per situation named in the seeds' `must_happen` figures, how many seeds reached it.
fn coverage(seeds: &[SeedSummary]) -> Vec<Coverage> {
    let mut reached: BTreeMap<String, usize> = BTreeMap::new();
    for seed in seeds {
        let Some(verdict) = seed.checks.get("must_happen") else { continue };
        let Some(situations) = verdict.figures.get("reached").and_then(|r| r.as_object()) else {
            continue;
        };
        for (situation, hit) in situations {
            *reached.entry(situation.clone()).or_default() +=
                usize::from(hit.as_bool() == Some(true));
        }
    }
    let seeds = seeds.len();
    reached
        .into_iter()
        .map(|(situation, seeds_reached)| Coverage { situation, seeds_reached, seeds })
        .collect()
}
