//! What a run reports: per scenario, per seed, the verdicts and how to replay. This is the
//! shape of `summary.json`, read back by the report renderer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::{Outcome, Verdict};

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
    /// The worst of its seeds' outcomes.
    pub outcome: Outcome,
    pub seeds: Vec<SeedSummary>,
}
