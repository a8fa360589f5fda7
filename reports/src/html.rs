//! The report as one self-contained HTML page: inline CSS, charts drawn by plotters as inline
//! SVG (no fonts are loaded: the SVG names a font family and the browser draws the text).
//!
//! Per scenario: verdicts and figures; one example seed over simulated time; the seeds pooled
//! (charts, then a line per seed); the staleness and delay distributions; the failing seeds
//! with their plans and witnesses.

use plotters::prelude::*;

use crate::distribution::PooledDistribution;
use crate::report::{
    distribution_line, seed_cells, witness_table, worst_seeds, Report, ScenarioReport,
    SEED_COLUMNS, WITNESS_COLUMNS,
};
use crate::timeline::{PooledTimeline, Timeline};
use pessimist_sim::check::{Outcome, Status};

const CHART_SIZE: (u32, u32) = (760, 240);
const HISTOGRAM_SIZE: (u32, u32) = (760, 220);
/// Seed rows shown open; a longer table is folded.
const SEED_ROWS_OPEN_MAX: usize = 20;

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// One series of a chart: its name, colour and points (simulated seconds, value).
struct Series {
    name: &'static str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A shaded band of a chart: its name, colour and points (simulated seconds, low, high).
struct Band {
    name: &'static str,
    colour: RGBColor,
    points: Vec<(f64, f64, f64)>,
}

/// What a chart over simulated time shows besides its series: shaded stretches (from, to,
/// opacity, in simulated seconds), the heal, and the time axis's end.
struct Backdrop {
    shaded: Vec<(f64, f64, f64)>,
    heal_s: Option<f64>,
    x_max_s: f64,
}

impl Backdrop {
    /// One seed: every fault window shaded (overlapping ones darker).
    fn of_timeline(timeline: &Timeline) -> Backdrop {
        Backdrop {
            shaded: timeline
                .faults
                .iter()
                .map(|window| (window.start_ms / 1000.0, window.end_ms / 1000.0, FAULT_OPACITY))
                .collect(),
            heal_s: timeline.phases.get("heal").map(|ms| ms / 1000.0),
            x_max_s: (timeline.end_ms / 1000.0).max(1.0),
        }
    }

    /// Many seeds: each bucket shaded by the faults active in it, averaged over the seeds: as
    /// dark as one seed's chart where every seed has the same faults, lighter where few do.
    fn of_pool(pooled: &PooledTimeline) -> Backdrop {
        let bucket_s = pooled.bucket_ms as f64 / 1000.0;
        Backdrop {
            shaded: pooled
                .buckets
                .iter()
                .filter(|bucket| bucket.faults_mean > 0.0)
                .map(|bucket| {
                    let from = bucket.start_ms as f64 / 1000.0;
                    let opacity = 1.0 - (1.0 - FAULT_OPACITY).powf(bucket.faults_mean);
                    (from, from + bucket_s, opacity)
                })
                .collect(),
            heal_s: pooled.heal_ms.map(|ms| ms / 1000.0),
            x_max_s: (pooled.end_ms / 1000.0).max(1.0),
        }
    }
}

const FAULT_RED: RGBColor = RGBColor(220, 50, 47);
/// One fault window's shade; overlapping windows compose (two make 1 - 0.88^2).
const FAULT_OPACITY: f64 = 0.12;
const BLUE: RGBColor = RGBColor(38, 139, 210);
const ORANGE: RGBColor = RGBColor(203, 75, 22);
const GREEN: RGBColor = RGBColor(133, 153, 0);
const VIOLET: RGBColor = RGBColor(108, 113, 196);

/// Draws a chart's legend, the same box in the same corner on every chart.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
}

/// A line chart over simulated time with shaded stretches and the heal marked.
fn chart_svg(
    title: &str,
    y_label: &str,
    series: &[Series],
    bands: &[Band],
    backdrop: &Backdrop,
) -> Result<String, String> {
    let x_max = backdrop.x_max_s;
    let y_max = series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point.1))
        .chain(bands.iter().flat_map(|band| band.points.iter().map(|point| point.2)))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        let fail = |error: &dyn std::fmt::Display| format!("drawing the chart {title:?}: {error}");
        root.fill(&WHITE).map_err(|error| fail(&error))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|error| fail(&error))?;
        chart
            .configure_mesh()
            .x_desc("simulated time (s)")
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|error| fail(&error))?;
        chart
            .draw_series(backdrop.shaded.iter().map(|&(from, to, opacity)| {
                Rectangle::new([(from, 0.0), (to, y_max)], FAULT_RED.mix(opacity).filled())
            }))
            .map_err(|error| fail(&error))?;
        if let Some(x) = backdrop.heal_s {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, y_max)],
                    BLUE.stroke_width(1),
                )))
                .map_err(|error| fail(&error))?;
        }
        for band in bands {
            let colour = band.colour;
            let outline: Vec<(f64, f64)> = band
                .points
                .iter()
                .map(|&(x, _, high)| (x, high))
                .chain(band.points.iter().rev().map(|&(x, low, _)| (x, low)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.2).filled())))
                .map_err(|error| fail(&error))?
                .label(band.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.mix(0.2).filled())
                });
        }
        for series in series {
            let colour = series.colour;
            chart
                .draw_series(LineSeries::new(series.points.clone(), colour.stroke_width(2)))
                .map_err(|error| fail(&error))?
                .label(series.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        draw_legend(&mut chart).map_err(|error| fail(&error))?;
        root.present().map_err(|error| fail(&error))?;
    }
    Ok(svg)
}

/// The three charts of a timeline: throughput, latency percentiles, availability.
fn timeline_charts(timeline: &Timeline) -> Result<String, String> {
    let seconds = |start_ms: u64| (start_ms as f64 + timeline.bucket_ms as f64 / 2.0) / 1000.0;
    let throughput: Vec<(f64, f64)> = timeline
        .buckets
        .iter()
        .map(|bucket| (seconds(bucket.start_ms), bucket.throughput_per_s))
        .collect();
    let p50: Vec<(f64, f64)> = timeline
        .buckets
        .iter()
        .filter_map(|bucket| bucket.latency_p50_ms.map(|value| (seconds(bucket.start_ms), value)))
        .collect();
    let p99: Vec<(f64, f64)> = timeline
        .buckets
        .iter()
        .filter_map(|bucket| bucket.latency_p99_ms.map(|value| (seconds(bucket.start_ms), value)))
        .collect();
    let availability: Vec<(f64, f64)> = timeline
        .buckets
        .iter()
        .filter_map(|bucket| {
            bucket.availability.map(|value| (seconds(bucket.start_ms), value * 100.0))
        })
        .collect();
    let backdrop = Backdrop::of_timeline(timeline);
    let mut html = String::new();
    html.push_str(&chart_svg(
        "Throughput",
        "ok operations / s",
        &[Series { name: "ok / s", colour: BLUE, points: throughput }],
        &[],
        &backdrop,
    )?);
    html.push_str(&chart_svg(
        "Latency",
        "ms",
        &[
            Series { name: "p50", colour: BLUE, points: p50 },
            Series { name: "p99", colour: ORANGE, points: p99 },
        ],
        &[],
        &backdrop,
    )?);
    html.push_str(&chart_svg(
        "Availability",
        "% of completed operations ok",
        &[Series { name: "availability", colour: GREEN, points: availability }],
        &[],
        &backdrop,
    )?);
    Ok(html)
}

/// The three charts of the seeds pooled: throughput (mean, and the band from the lowest seed
/// to the highest), latency percentiles of all seeds' operations together, availability of
/// all together and of the worst seed.
fn pooled_charts(pooled: &PooledTimeline) -> Result<String, String> {
    let seconds = |start_ms: u64| (start_ms as f64 + pooled.bucket_ms as f64 / 2.0) / 1000.0;
    let buckets = || pooled.buckets.iter().filter(|bucket| bucket.seeds > 0);
    let pick = |value: &dyn Fn(&crate::timeline::PooledBucket) -> Option<f64>| -> Vec<(f64, f64)> {
        buckets().filter_map(|bucket| Some((seconds(bucket.start_ms), value(bucket)?))).collect()
    };
    let backdrop = Backdrop::of_pool(pooled);
    let seeds = pooled.seeds;
    let mut html = String::new();
    html.push_str(&chart_svg(
        &format!("Throughput, {seeds} seeds"),
        "ok operations / s",
        &[Series {
            name: "mean",
            colour: BLUE,
            points: pick(&|bucket| Some(bucket.throughput_mean_per_s)),
        }],
        &[Band {
            name: "lowest to highest seed",
            colour: BLUE,
            points: buckets()
                .map(|bucket| {
                    (
                        seconds(bucket.start_ms),
                        bucket.throughput_min_per_s,
                        bucket.throughput_max_per_s,
                    )
                })
                .collect(),
        }],
        &backdrop,
    )?);
    html.push_str(&chart_svg(
        &format!("Latency, {seeds} seeds together"),
        "ms",
        &[
            Series { name: "p50", colour: BLUE, points: pick(&|bucket| bucket.latency_p50_ms) },
            Series { name: "p99", colour: ORANGE, points: pick(&|bucket| bucket.latency_p99_ms) },
        ],
        &[],
        &backdrop,
    )?);
    html.push_str(&chart_svg(
        &format!("Availability, {seeds} seeds"),
        "% of completed operations ok",
        &[
            Series {
                name: "all seeds together",
                colour: GREEN,
                points: pick(&|bucket| bucket.availability.map(|value| value * 100.0)),
            },
            Series {
                name: "worst seed",
                colour: VIOLET,
                points: pick(&|bucket| bucket.availability_min.map(|value| value * 100.0)),
            },
        ],
        &[],
        &backdrop,
    )?);
    Ok(html)
}

/// A histogram of a pooled measure, its p50 and p99 marked.
fn distribution_svg(distribution: &PooledDistribution) -> Result<String, String> {
    let title = format!("{}.{}", distribution.check, distribution.name);
    let (Some(first), Some(last)) = (distribution.histogram.first(), distribution.histogram.last())
    else {
        return Ok(String::new());
    };
    let x_min = first.start;
    let x_max = (last.end * 1.02).max(x_min + 1.0);
    let y_max =
        distribution.histogram.iter().map(|bin| bin.share * 100.0).fold(0.0f64, f64::max).max(1e-9)
            * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, HISTOGRAM_SIZE).into_drawing_area();
        let fail = |error: &dyn std::fmt::Display| format!("drawing the chart {title:?}: {error}");
        root.fill(&WHITE).map_err(|error| fail(&error))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)
            .map_err(|error| fail(&error))?;
        chart
            .configure_mesh()
            .x_desc(distribution.unit.as_str())
            .y_desc("% of events")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|error| fail(&error))?;
        chart
            .draw_series(distribution.histogram.iter().map(|bin| {
                Rectangle::new(
                    [(bin.start, 0.0), (bin.end, bin.share * 100.0)],
                    BLUE.mix(0.6).filled(),
                )
            }))
            .map_err(|error| fail(&error))?;
        for (name, value, colour) in
            [("p50", distribution.p50, GREEN), ("p99", distribution.p99, ORANGE)]
        {
            let Some(x) = value else { continue };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, y_max)],
                    colour.stroke_width(2),
                )))
                .map_err(|error| fail(&error))?
                .label(format!("{name} {}", crate::report::with_unit(value, &distribution.unit)))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        draw_legend(&mut chart).map_err(|error| fail(&error))?;
        root.present().map_err(|error| fail(&error))?;
    }
    Ok(svg)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
.passed{color:#2a7a2a}.failed{color:#b02020;font-weight:bold}.inconclusive{color:#a05a00;font-weight:bold}\
.expected{color:#6a4a9a}.figures{color:#666}code{background:#f4f4f4;padding:1px 4px}\
svg{display:block;margin:0.5em 0}.note{color:#666;font-size:90%}\
tr.failed td{color:#b02020}tr.inconclusive td{color:#a05a00}tr.stuck td{background:#fbe9e7}.witness table{font-size:90%}";

/// The CSS class of an outcome: green, red, or amber for a run that could not decide.
fn outcome_class(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::Inconclusive => "inconclusive",
    }
}

fn verdict(outcome: Outcome) -> String {
    format!("<span class=\"{}\">{}</span>", outcome_class(outcome), outcome.word())
}

/// A check's verdict over the seeds, each status in its own colour.
fn check_verdict(status: Status) -> String {
    let class = match status {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Unknown => "inconclusive",
        Status::FailedAsExpected => "expected",
        Status::Figures => "figures",
    };
    format!("<span class=\"{class}\">{}</span>", status.word())
}

fn scenario_section(scenario: &ScenarioReport, html: &mut String) -> Result<(), String> {
    let name = escape(&scenario.scenario);
    html.push_str(&format!(
        "<h2 id=\"{name}\">{name} {}</h2>\n<p>File <code>{}</code>: {} seeds, {} failed, {} inconclusive.</p>\n",
        verdict(scenario.outcome),
        escape(&scenario.file),
        scenario.seeds,
        scenario.failed_seeds,
        scenario.inconclusive_seeds
    ));
    html.push_str("<table><tr><th>check</th><th>verdict</th><th>passed seeds</th><th>failed seeds</th><th>failed as expected</th><th>undecided seeds</th></tr>\n");
    for (check, report) in &scenario.checks {
        if report.status() == Status::Figures {
            continue;
        }
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(check),
            check_verdict(report.status()),
            report.passed_seeds,
            report.failed_seeds,
            report.failed_as_expected_seeds,
            report.unknown_seeds
        ));
    }
    html.push_str("</table>\n");
    let measures = crate::report::figures_only_checks(scenario);
    if !measures.is_empty() {
        html.push_str(&format!(
            "<p class=\"note\">Figures only (no threshold in this scenario, so they cannot fail): {}.</p>\n",
            escape(&measures.join(", "))
        ));
    }
    html.push_str("\n<details><summary>Figures over the seeds</summary>\n<table><tr><th>figure</th><th>seeds</th><th>min</th><th>mean</th><th>max</th></tr>\n");
    for (check, report) in &scenario.checks {
        for (key, stats) in &report.figures {
            html.push_str(&format!(
                "<tr><td>{}.{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>\n",
                escape(check),
                escape(key),
                stats.seeds,
                stats.min,
                stats.mean,
                stats.max
            ));
        }
    }
    html.push_str("</table></details>\n");
    if let (Some(seed), Some(timeline)) = (scenario.charted_seed, &scenario.timeline) {
        html.push_str(&format!(
            "<p>Seed {seed} over simulated time (buckets of {} ms; fault windows shaded red, the heal marked blue). Latency p50 {}, p99 {}.</p>\n",
            timeline.bucket_ms,
            timeline.latency_p50_ms.map_or("-".into(), |value| format!("{value:.1} ms")),
            timeline.latency_p99_ms.map_or("-".into(), |value| format!("{value:.1} ms")),
        ));
        html.push_str(&timeline_charts(timeline)?);
    }
    if let Some(pooled) = &scenario.pooled {
        html.push_str(&format!(
            "<h3>Across seeds</h3>\n<p>{} of {} seeds read (buckets of {} ms; a bucket is shaded by the faults active in it, averaged over the seeds: as dark as in one seed's chart where every seed has the same faults). Latency p50 {}, p99 {} over every seed's operations; {}.</p>\n",
            pooled.seeds,
            scenario.seeds,
            pooled.bucket_ms,
            pooled.latency_p50_ms.map_or("-".into(), |value| format!("{value:.1} ms")),
            pooled.latency_p99_ms.map_or("-".into(), |value| format!("{value:.1} ms")),
            escape(&worst_seeds(&scenario.seed_rows))
        ));
        html.push_str(&pooled_charts(pooled)?);
        let open = if scenario.seed_rows.len() <= SEED_ROWS_OPEN_MAX { " open" } else { "" };
        html.push_str(&format!(
            "<details{open}><summary>Every seed read ({})</summary>\n<table class=\"seeds\"><tr>",
            scenario.seed_rows.len()
        ));
        for column in SEED_COLUMNS {
            html.push_str(&format!("<th>{column}</th>"));
        }
        html.push_str("</tr>\n");
        for row in &scenario.seed_rows {
            let class = match row.outcome {
                Outcome::Passed => "",
                Outcome::Failed => " class=\"failed\"",
                Outcome::Inconclusive => " class=\"inconclusive\"",
            };
            html.push_str(&format!("<tr{class}>"));
            for cell in seed_cells(row) {
                html.push_str(&format!("<td>{}</td>", escape(&cell)));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table></details>\n");
    }
    if !scenario.distributions.is_empty() {
        html.push_str("<h3>Staleness and delay distributions</h3>\n<p class=\"note\">Each pooled over every seed, every event weighted alike.</p>\n");
        for distribution in &scenario.distributions {
            html.push_str(&format!(
                "<h4>{}.{}</h4>\n<p>{}: {}.</p>\n",
                escape(&distribution.check),
                escape(&distribution.name),
                escape(&distribution.description),
                escape(&distribution_line(distribution))
            ));
            html.push_str(&distribution_svg(distribution)?);
        }
    }
    for failing in scenario.failing.iter().take(crate::report::FAILING_SEEDS_LISTED_MAX) {
        html.push_str(&format!(
            "<h3 class=\"{}\">{}</h3>\n<p>replay: <code>{}</code>",
            outcome_class(failing.outcome),
            escape(&failing.heading()),
            escape(&failing.replay)
        ));
        if let Some(shrink) = &failing.shrink {
            html.push_str(&format!("<br>shrink: <code>{}</code>", escape(shrink)));
        }
        if let (Some(file), Some(plan)) = (&failing.shrunk_file, &failing.shrunk_plan) {
            html.push_str(&format!(
                "<br>shrunk plan (<code>{}</code>), {} events:<pre>",
                escape(file),
                plan.len()
            ));
            for event in plan {
                html.push_str(&escape(&event.to_string()));
                html.push('\n');
            }
            html.push_str("</pre>");
        }
        html.push_str("</p>\n<ul>\n");
        for (check, violations) in &failing.violations {
            if failing.witnesses.contains_key(check) {
                continue; // Its witness follows, as a table.
            }
            for violation in violations {
                html.push_str(&format!(
                    "<li>{}: <pre>{}</pre></li>\n",
                    escape(check),
                    escape(violation)
                ));
            }
        }
        html.push_str("</ul>\n");
        for (check, witness) in &failing.witnesses {
            witness_html(check, witness, html);
        }
    }
    if scenario.failing.len() > crate::report::FAILING_SEEDS_LISTED_MAX {
        html.push_str(&format!(
            "<p class=\"note\">... and {} more failing seeds (see report.json).</p>\n",
            scenario.failing.len() - crate::report::FAILING_SEEDS_LISTED_MAX
        ));
    }
    Ok(())
}

/// One table row of code cells.
fn code_row(html: &mut String, cells: &[String], class: &str) {
    html.push_str(&format!("<tr{class}>"));
    for cell in cells {
        html.push_str(&format!("<td><code>{}</code></td>", escape(cell)));
    }
    html.push_str("</tr>\n");
}

/// A linearizability witness as a table: the prefix's last steps, then the calls that cannot
/// come next.
fn witness_html(check: &str, witness: &pessimist_sim::lincheck::Witness, html: &mut String) {
    let table = witness_table(witness);
    let span = WITNESS_COLUMNS.len();
    html.push_str(&format!(
        "<div class=\"witness\"><p><b>{} witness.</b> {}</p>\n<table><tr>",
        escape(check),
        escape(&table.headline)
    ));
    for column in WITNESS_COLUMNS {
        html.push_str(&format!("<th>{column}</th>"));
    }
    html.push_str("</tr>\n");
    if let Some(cells) = &table.refuted_by {
        html.push_str(&format!(
            "<tr><td colspan=\"{span}\">The return no order explains:</td></tr>\n"
        ));
        code_row(html, cells, " class=\"stuck\"");
        html.push_str(&format!(
            "<tr><td colspan=\"{span}\">Where the search for an order got stuck, its last steps:</td></tr>\n"
        ));
    }
    if table.steps_omitted > 0 {
        html.push_str(&format!(
            "<tr><td colspan=\"{span}\" class=\"note\">... {} earlier steps</td></tr>\n",
            table.steps_omitted
        ));
    }
    for cells in &table.steps {
        code_row(html, cells, "");
    }
    html.push_str(&format!(
        "<tr><td colspan=\"{span}\">None of these can come next in state <code>{}</code>:</td></tr>\n",
        escape(&table.state_stuck)
    ));
    for cells in &table.cannot_place {
        code_row(html, cells, " class=\"stuck\"");
    }
    html.push_str("</table></div>\n");
}

/// The report as a self-contained HTML page.
pub fn report_html(report: &Report) -> Result<String, String> {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pessimist report</title><style>{STYLE}</style></head><body>\n<h1>pessimist report</h1>\n<p>{} scenarios, {} seeds, {} failed, {} inconclusive: {}.</p>\n<table><tr><th>scenario</th><th>seeds</th><th>failed</th><th>inconclusive</th><th>verdict</th></tr>\n",
        report.scenarios.len(),
        report.seeds,
        report.failed_seeds,
        report.inconclusive_seeds,
        verdict(report.outcome)
    );
    for scenario in &report.scenarios {
        let name = escape(&scenario.scenario);
        html.push_str(&format!(
            "<tr><td><a href=\"#{name}\">{name}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            scenario.seeds,
            scenario.failed_seeds,
            scenario.inconclusive_seeds,
            verdict(scenario.outcome)
        ));
    }
    html.push_str("</table>\n");
    for scenario in &report.scenarios {
        scenario_section(scenario, &mut html)?;
    }
    html.push_str("</body></html>\n");
    Ok(html)
}
