//! pessimist-reports: renders what runs recorded into documents people read.
//!
//! - [`timeline`]: a history as series over simulated time (throughput, latency, availability)
//!   and fault windows, and many seeds' series pooled;
//! - [`distribution`]: per-event measures (staleness, delays) pooled over seeds;
//! - [`report`]: a results directory read back, aggregated per scenario and checker, as JSON
//!   and Markdown;
//! - [`html`]: the same as one self-contained HTML page with SVG charts;
//! - [`review`]: the design review (claims, figures per design, verdicts) as Markdown and HTML.
//!
//! **Invariant:** reports read only run summaries, histories and verdicts; they never run
//! anything, so a report can be rebuilt from saved results.

pub mod distribution;
pub mod html;
pub mod report;
pub mod review;
pub mod timeline;

use std::path::{Path, PathBuf};

use pessimist_sim::check::{Outcome, Status};
use pessimist_sim::summary::RunSummary;

/// The files [`write_report`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub report: report::Report,
}

/// Reads the results in `directory` and writes `index.html`, `report.md` and `report.json`
/// into `out`. The error is one line naming the file at fault.
pub fn write_report(directory: &Path, out: &Path) -> Result<Written, String> {
    let runs = report::load_results(directory)?;
    let report = report::build_report(&runs)?;
    let html = html::report_html(&report)?;
    std::fs::create_dir_all(out)
        .map_err(|error| format!("{}: cannot create: {error}", out.display()))?;
    let written = Written {
        html: out.join("index.html"),
        markdown: out.join("report.md"),
        json: out.join("report.json"),
        report,
    };
    for (path, text) in [
        (&written.html, html),
        (&written.markdown, report::report_markdown(&written.report)),
        (&written.json, report::report_json(&written.report)),
    ] {
        std::fs::write(path, text)
            .map_err(|error| format!("{}: cannot write: {error}", path.display()))?;
    }
    Ok(written)
}

/// A Markdown page: per scenario, per seed, the verdict of each check and its figures, and the
/// replay command of every failing seed.
pub fn markdown_summary(runs: &[RunSummary]) -> String {
    let mut page = String::from("# pessimist results\n\n");
    let passed = runs.iter().filter(|run| run.outcome.passed()).count();
    page.push_str(&format!("{passed} of {} scenarios passed.\n\n", runs.len()));
    page.push_str(
        "| scenario | seeds | failed seeds | inconclusive seeds | verdict |\n|---|---|---|---|---|\n",
    );
    for run in runs {
        let count = |outcome| run.seeds.iter().filter(|seed| seed.outcome == outcome).count();
        page.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            run.scenario,
            run.seeds.len(),
            count(Outcome::Failed),
            count(Outcome::Inconclusive),
            run.outcome.word()
        ));
    }
    for run in runs {
        page.push_str(&format!("\n## {}\n\nFile: `{}`\n\n", run.scenario, run.file));
        page.push_str("| seed | verdict | history | checks |\n|---|---|---|---|\n");
        for seed in &run.seeds {
            let checks: Vec<String> = seed
                .checks
                .iter()
                .map(|(name, check)| {
                    let word = match check.status {
                        Status::Passed => "ok",
                        Status::Failed => "**failed**",
                        Status::FailedAsExpected => "failed as expected",
                        Status::Unknown => "**unknown**",
                        Status::Figures => "figures",
                    };
                    format!("{name} {word}")
                })
                .collect();
            let verdict = seed.outcome.word();
            let hash = &seed.history_hash[..seed.history_hash.len().min(16)];
            page.push_str(&format!(
                "| {} | {verdict} | `{hash}` | {} |\n",
                seed.seed,
                checks.join(", ")
            ));
        }
        for seed in run.seeds.iter().filter(|seed| !seed.outcome.passed()) {
            page.push_str(&format!(
                "\n### Seed {} {}\n\nReplay: `{}`\n\n",
                seed.seed,
                seed.outcome.word().to_lowercase(),
                seed.replay
            ));
            for (name, check) in &seed.checks {
                if check.status == Status::Unknown {
                    let reason = check.figures.get("unknown_reason").cloned().unwrap_or_default();
                    page.push_str(&format!("- {name}: could not decide: {reason}\n"));
                }
                if !check.failed() {
                    continue;
                }
                for violation in &check.violations {
                    page.push_str(&format!("- {name}: {violation}\n"));
                }
            }
        }
        if let Some(first) = run.seeds.first() {
            page.push_str(&format!("\nFigures of seed {}:\n\n", first.seed));
            for (name, check) in &first.checks {
                let figures = serde_json::to_string(&check.figures).expect("figures serialize");
                page.push_str(&format!("- {name}: `{figures}`\n"));
            }
        }
    }
    page
}
