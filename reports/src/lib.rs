//! pessimist-reports: renders what runs recorded into documents people read.
//!
//! **Invariant:** reports read only run summaries, histories and verdicts; they never run
//! anything, so a report can be rebuilt from saved results.

use pessimist_sim::summary::RunSummary;

/// A Markdown page: per scenario, per seed, the verdict of each check and its figures, and the
/// replay command of every failing seed.
pub fn markdown_summary(runs: &[RunSummary]) -> String {
    let mut page = String::from("# pessimist results\n\n");
    let passed = runs.iter().filter(|run| run.passed).count();
    page.push_str(&format!("{passed} of {} scenarios passed.\n\n", runs.len()));
    page.push_str("| scenario | seeds | failed seeds | verdict |\n|---|---|---|---|\n");
    for run in runs {
        let failed = run.seeds.iter().filter(|seed| !seed.passed).count();
        let verdict = if run.passed { "passed" } else { "FAILED" };
        page.push_str(&format!(
            "| {} | {} | {failed} | {verdict} |\n",
            run.scenario,
            run.seeds.len()
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
                    format!("{name} {}", if check.passed { "ok" } else { "**failed**" })
                })
                .collect();
            let verdict = if seed.passed { "passed" } else { "FAILED" };
            let hash = &seed.history_hash[..seed.history_hash.len().min(16)];
            page.push_str(&format!(
                "| {} | {verdict} | `{hash}` | {} |\n",
                seed.seed,
                checks.join(", ")
            ));
        }
        for seed in run.seeds.iter().filter(|seed| !seed.passed) {
            page.push_str(&format!(
                "\n### Seed {} failed\n\nReplay: `{}`\n\n",
                seed.seed, seed.replay
            ));
            for (name, check) in seed.checks.iter().filter(|(_, check)| !check.passed) {
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
