//! Design comparison: a scenario and each of its variants run on the same seeds, their
//! verdicts and figures side by side.
//!
//! **Invariant:** every design runs the same seeds under the same workload and faults; only
//! the knobs differ (see [`pessimist_sim::variant`]).

use std::collections::{BTreeMap, BTreeSet};

use pessimist_reports::report::{checker_reports, CheckerReport};
use pessimist_sim::check::Outcome;
use pessimist_sim::scenario::Scenario;
use pessimist_sim::summary::RunSummary;
use serde::Serialize;

/// The designs to run: the scenario as written (named as it is), then each variant (named
/// `<scenario>-<variant>`), each with the file it came from.
pub fn designs(scenario: &Scenario, file: &str) -> Vec<(Scenario, String)> {
    let mut base = scenario.clone();
    base.variants = Vec::new();
    let mut designs = vec![(base, file.to_string())];
    for index in 0..scenario.variants.len() {
        designs.push((scenario.with_variant(index), file.to_string()));
    }
    designs
}

/// One design's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DesignResult {
    /// `base`, or the variant's name.
    pub design: String,
    pub description: String,
    /// The knobs the design ran with.
    pub knobs: serde_json::Map<String, serde_json::Value>,
    pub seeds: usize,
    pub failed_seeds: usize,
    /// Seeds with no failed check but an undecided one.
    pub inconclusive_seeds: usize,
    pub checks: BTreeMap<String, CheckerReport>,
}

/// The designs side by side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub scenario: String,
    pub seeds: Vec<u64>,
    pub designs: Vec<DesignResult>,
}

/// The comparison of `runs`, one per design in the order of [`designs`].
pub fn comparison(scenario: &Scenario, runs: &[RunSummary]) -> Comparison {
    let designs = designs(scenario, "");
    assert_eq!(runs.len(), designs.len(), "one run per design");
    let names = std::iter::once(("base".to_string(), String::new())).chain(
        scenario.variants.iter().map(|variant| (variant.name.clone(), variant.description.clone())),
    );
    let results = names
        .zip(designs)
        .zip(runs)
        .map(|(((design, description), (designed, _)), run)| {
            assert_eq!(designed.name, run.scenario, "runs follow the designs' order");
            let count = |outcome| run.seeds.iter().filter(|seed| seed.outcome == outcome).count();
            DesignResult {
                design,
                description,
                knobs: designed.knobs.clone(),
                seeds: run.seeds.len(),
                failed_seeds: count(Outcome::Failed),
                inconclusive_seeds: count(Outcome::Inconclusive),
                checks: checker_reports(run),
            }
        })
        .collect();
    Comparison {
        scenario: scenario.name.clone(),
        seeds: runs
            .first()
            .map(|run| run.seeds.iter().map(|seed| seed.seed).collect())
            .unwrap_or_default(),
        designs: results,
    }
}

fn cell(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(value) if value.fract() == 0.0 && value.abs() < 1e15 => format!("{value:.0}"),
        Some(value) => format!("{value:.3}"),
    }
}

/// The comparison as Markdown: one column per design; rows for failed seeds, each check's
/// failed seeds and each figure's mean over the seeds.
pub fn comparison_markdown(comparison: &Comparison) -> String {
    let mut page = format!(
        "# {}: designs side by side\n\nSeeds: {} ({} each). Figures are means over the seeds.\n\n",
        comparison.scenario,
        comparison.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        comparison.seeds.len()
    );
    for design in &comparison.designs {
        let knobs = serde_json::to_string(&design.knobs).expect("knobs serialize");
        page.push_str(&format!("- **{}**: `{knobs}`", design.design));
        if !design.description.is_empty() {
            page.push_str(&format!(" ({})", design.description));
        }
        page.push('\n');
    }
    page.push_str("\n| | ");
    page.push_str(
        &comparison
            .designs
            .iter()
            .map(|design| design.design.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    page.push_str(" |\n|---|");
    page.push_str(&"---|".repeat(comparison.designs.len()));
    page.push('\n');
    let row = |label: &str, values: Vec<String>| format!("| {label} | {} |\n", values.join(" | "));
    page.push_str(&row(
        "failed seeds",
        comparison.designs.iter().map(|design| design.failed_seeds.to_string()).collect(),
    ));
    page.push_str(&row(
        "inconclusive seeds",
        comparison.designs.iter().map(|design| design.inconclusive_seeds.to_string()).collect(),
    ));
    let checks: BTreeSet<&String> =
        comparison.designs.iter().flat_map(|design| design.checks.keys()).collect();
    for check in checks {
        page.push_str(&row(
            &format!("{check}: failed seeds"),
            comparison
                .designs
                .iter()
                .map(|design| {
                    cell(design.checks.get(check).map(|report| report.failed_seeds as f64))
                })
                .collect(),
        ));
        let figures: BTreeSet<&String> = comparison
            .designs
            .iter()
            .filter_map(|design| design.checks.get(check))
            .flat_map(|report| report.figures.keys())
            .collect();
        for figure in figures {
            page.push_str(&row(
                &format!("{check}.{figure}"),
                comparison
                    .designs
                    .iter()
                    .map(|design| {
                        cell(
                            design
                                .checks
                                .get(check)
                                .and_then(|report| report.figures.get(figure))
                                .map(|stats| stats.mean),
                        )
                    })
                    .collect(),
            ));
        }
    }
    page
}
