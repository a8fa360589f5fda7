//! The report as one self-contained HTML page: inline CSS, charts drawn by plotters as inline
//! SVG (no fonts are loaded: the SVG names a font family and the browser draws the text).

use plotters::prelude::*;

use crate::report::{Report, ScenarioReport};
use crate::timeline::Timeline;

const CHART_SIZE: (u32, u32) = (760, 240);

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

/// A line chart over simulated time with the fault windows shaded and the heal marked.
fn chart_svg(
    title: &str,
    y_label: &str,
    series: &[Series],
    timeline: &Timeline,
) -> Result<String, String> {
    let x_max = (timeline.end_ms / 1000.0).max(1.0);
    let y_max = series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point.1))
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
        let shade = RGBColor(220, 50, 47).mix(0.12).filled();
        chart
            .draw_series(timeline.faults.iter().map(|window| {
                Rectangle::new(
                    [(window.start_ms / 1000.0, 0.0), (window.end_ms / 1000.0, y_max)],
                    shade,
                )
            }))
            .map_err(|error| fail(&error))?;
        if let Some(heal_ms) = timeline.phases.get("heal") {
            let x = heal_ms / 1000.0;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, y_max)],
                    RGBColor(38, 139, 210).stroke_width(1),
                )))
                .map_err(|error| fail(&error))?;
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
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|error| fail(&error))?;
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
    let blue = RGBColor(38, 139, 210);
    let orange = RGBColor(203, 75, 22);
    let green = RGBColor(133, 153, 0);
    let mut html = String::new();
    html.push_str(&chart_svg(
        "Throughput",
        "ok operations / s",
        &[Series { name: "ok / s", colour: blue, points: throughput }],
        timeline,
    )?);
    html.push_str(&chart_svg(
        "Latency",
        "ms",
        &[
            Series { name: "p50", colour: blue, points: p50 },
            Series { name: "p99", colour: orange, points: p99 },
        ],
        timeline,
    )?);
    html.push_str(&chart_svg(
        "Availability",
        "% of completed operations ok",
        &[Series { name: "availability", colour: green, points: availability }],
        timeline,
    )?);
    Ok(html)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
.passed{color:#2a7a2a}.failed{color:#b02020;font-weight:bold}code{background:#f4f4f4;padding:1px 4px}\
svg{display:block;margin:0.5em 0}.note{color:#666;font-size:90%}";

fn verdict(passed: bool) -> &'static str {
    if passed {
        "<span class=\"passed\">passed</span>"
    } else {
        "<span class=\"failed\">FAILED</span>"
    }
}

fn scenario_section(scenario: &ScenarioReport, html: &mut String) -> Result<(), String> {
    let name = escape(&scenario.scenario);
    html.push_str(&format!(
        "<h2 id=\"{name}\">{name} {}</h2>\n<p>File <code>{}</code>: {} seeds, {} failed.</p>\n",
        verdict(scenario.passed),
        escape(&scenario.file),
        scenario.seeds,
        scenario.failed_seeds
    ));
    html.push_str("<table><tr><th>check</th><th>verdict</th><th>passed seeds</th><th>failed seeds</th></tr>\n");
    for (check, report) in &scenario.checks {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(check),
            verdict(report.failed_seeds == 0),
            report.passed_seeds,
            report.failed_seeds
        ));
    }
    html.push_str("</table>\n<details><summary>Figures over the seeds</summary>\n<table><tr><th>figure</th><th>seeds</th><th>min</th><th>mean</th><th>max</th></tr>\n");
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
    for failing in scenario.failing.iter().take(crate::report::FAILING_SEEDS_LISTED_MAX) {
        html.push_str(&format!(
            "<h3>Seed {} failed: {}</h3>\n<p>replay: <code>{}</code>",
            failing.seed,
            escape(&failing.failed_checks.join(", ")),
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
            for violation in violations {
                html.push_str(&format!(
                    "<li>{}: <pre>{}</pre></li>\n",
                    escape(check),
                    escape(violation)
                ));
            }
        }
        html.push_str("</ul>\n");
    }
    if scenario.failing.len() > crate::report::FAILING_SEEDS_LISTED_MAX {
        html.push_str(&format!(
            "<p class=\"note\">... and {} more failing seeds (see report.json).</p>\n",
            scenario.failing.len() - crate::report::FAILING_SEEDS_LISTED_MAX
        ));
    }
    Ok(())
}

/// The report as a self-contained HTML page.
pub fn report_html(report: &Report) -> Result<String, String> {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pessimist report</title><style>{STYLE}</style></head><body>\n<h1>pessimist report</h1>\n<p>{} scenarios, {} seeds, {} failed: {}.</p>\n<table><tr><th>scenario</th><th>seeds</th><th>failed</th><th>verdict</th></tr>\n",
        report.scenarios.len(),
        report.seeds,
        report.failed_seeds,
        verdict(report.passed)
    );
    for scenario in &report.scenarios {
        let name = escape(&scenario.scenario);
        html.push_str(&format!(
            "<tr><td><a href=\"#{name}\">{name}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            scenario.seeds,
            scenario.failed_seeds,
            verdict(scenario.passed)
        ));
    }
    html.push_str("</table>\n");
    for scenario in &report.scenarios {
        scenario_section(scenario, &mut html)?;
    }
    html.push_str("</body></html>\n");
    Ok(html)
}
