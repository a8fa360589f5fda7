//! The report as one self-contained HTML page: inline CSS, charts drawn by plotters as inline
//! SVG (no fonts are loaded: the SVG names a font family and the browser draws the text), no
//! script and nothing fetched, so the page works offline and from a mail attachment.
//!
//! **Invariant:** the markup comes from maud's `html!`, which escapes every interpolated value
//! by construction; the only text inserted unescaped is SVG that plotters drew (it escapes
//! the text it draws), wrapped in `PreEscaped` at one place, [`svg`].
//!
//! Per scenario: verdicts and figures; one example seed over simulated time; the seeds pooled
//! (charts, then a line per seed); the staleness and delay distributions; the failing seeds
//! with their plans and witnesses.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use plotters::prelude::*;

use crate::distribution::PooledDistribution;
use crate::report::{
    distribution_line, number, seed_cells, witness_table, worst_seeds, Report, ScenarioReport,
    SEED_COLUMNS, WITNESS_COLUMNS,
};
use crate::timeline::{FaultWindow, PooledTimeline, Timeline};
use pessimist_sim::check::{Outcome, Status};

const CHART_SIZE: (u32, u32) = (760, 240);
const HISTOGRAM_SIZE: (u32, u32) = (760, 220);
/// Seed rows shown open; a longer table is folded.
const SEED_ROWS_OPEN_MAX: usize = 20;

/// One series of a chart: its name, colour and points (simulated seconds, value); `partial`
/// points are buckets the workload covered only in part, drawn as hollow dots off the line.
struct Series {
    name: &'static str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
    partial: Vec<(f64, f64)>,
}

impl Series {
    /// Splits `points` by `partial` (the same length, one flag per point).
    fn with_partial(name: &'static str, colour: RGBColor, points: Vec<(f64, f64, bool)>) -> Series {
        let (partial, whole): (Vec<_>, Vec<_>) = points.into_iter().partition(|point| point.2);
        Series {
            name,
            colour,
            points: whole.into_iter().map(|(x, y, _)| (x, y)).collect(),
            partial: partial.into_iter().map(|(x, y, _)| (x, y)).collect(),
        }
    }
}

/// A shaded band of a chart: its name, colour and points (simulated seconds, low, high).
struct Band {
    name: &'static str,
    colour: RGBColor,
    points: Vec<(f64, f64, f64)>,
}

/// A shaded stretch of a chart: from, to (simulated seconds), colour, opacity, and the label
/// written at its top (empty for none).
struct Shade {
    from_s: f64,
    to_s: f64,
    colour: RGBColor,
    opacity: f64,
    label: String,
}

/// What a chart over simulated time shows besides its series: shaded stretches, the heal, and
/// the time axis's end.
struct Backdrop {
    shaded: Vec<Shade>,
    heal_s: Option<f64>,
    x_max_s: f64,
}

/// The colour of a fault kind's band, by what it hits: the network, processes, disks, clocks.
pub fn fault_colour(kind: &str) -> RGBColor {
    match kind {
        "crash" | "pause" => PROCESS_ORANGE,
        "slow_disk" | "disk_stall" | "torn_writes" | "corrupt_disk" => DISK_BROWN,
        "clock_offset" | "clock_drift" | "clock_jump" => CLOCK_TEAL,
        _ => FAULT_RED,
    }
}

/// The legend of the fault bands: (what a colour stands for, the colour).
const FAULT_LEGEND: [(&str, RGBColor); 4] = [
    ("network fault", FAULT_RED),
    ("process crash or pause", PROCESS_ORANGE),
    ("disk fault", DISK_BROWN),
    ("clock fault", CLOCK_TEAL),
];

fn css_colour(colour: RGBColor) -> String {
    format!("rgb({},{},{})", colour.0, colour.1, colour.2)
}

impl Backdrop {
    /// One seed: every fault window shaded in its kind's colour and labelled `#id kind
    /// target` (overlapping ones darker).
    fn of_timeline(timeline: &Timeline) -> Backdrop {
        Backdrop {
            shaded: timeline
                .faults
                .iter()
                .map(|window| Shade {
                    from_s: window.start_ms / 1000.0,
                    to_s: window.end_ms / 1000.0,
                    colour: fault_colour(&window.kind),
                    opacity: FAULT_OPACITY,
                    label: format!("#{} {}", window.fault, window.label()),
                })
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
                    let from_s = bucket.start_ms as f64 / 1000.0;
                    Shade {
                        from_s,
                        to_s: from_s + bucket_s,
                        colour: FAULT_RED,
                        opacity: 1.0 - (1.0 - FAULT_OPACITY).powf(bucket.faults_mean),
                        label: String::new(),
                    }
                })
                .collect(),
            heal_s: pooled.heal_ms.map(|ms| ms / 1000.0),
            x_max_s: (pooled.end_ms / 1000.0).max(1.0),
        }
    }
}

/// A horizontal line a series should stay above from a point in time on: the scenario's SLO.
struct Threshold {
    from_s: f64,
    value: f64,
    label: String,
}

const FAULT_RED: RGBColor = RGBColor(220, 50, 47);
const PROCESS_ORANGE: RGBColor = RGBColor(230, 140, 20);
const DISK_BROWN: RGBColor = RGBColor(140, 90, 40);
const CLOCK_TEAL: RGBColor = RGBColor(42, 161, 152);
/// One fault window's shade; overlapping windows compose (two make 1 - 0.88^2).
const FAULT_OPACITY: f64 = 0.12;
const BLUE: RGBColor = RGBColor(38, 139, 210);
const ORANGE: RGBColor = RGBColor(203, 75, 22);
const GREEN: RGBColor = RGBColor(133, 153, 0);
const VIOLET: RGBColor = RGBColor(108, 113, 196);
/// Rows of band labels before they start over at the top: labels of overlapping faults
/// stack instead of printing over each other.
const BAND_LABEL_ROWS: usize = 4;

/// Draws a chart's legend, the same box in the same corner on every chart.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
}

/// A line chart over simulated time with shaded stretches (labelled when `labels`), the heal
/// marked, and an optional threshold line.
fn chart_svg(
    title: &str,
    y_label: &str,
    series: &[Series],
    bands: &[Band],
    backdrop: &Backdrop,
    labels: bool,
    threshold: Option<&Threshold>,
) -> Result<String, String> {
    let x_max = backdrop.x_max_s;
    // Partial buckets do not set the scale: a bucket covered for a few ms can spike.
    let y_top = series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point.1))
        .chain(bands.iter().flat_map(|band| band.points.iter().map(|point| point.2)))
        .chain(threshold.map(|threshold| threshold.value))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    // Room above the data for the band labels.
    let y_max = y_top * if labels { 1.45 } else { 1.1 };
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
            .draw_series(backdrop.shaded.iter().map(|shade| {
                Rectangle::new(
                    [(shade.from_s, 0.0), (shade.to_s, y_max)],
                    shade.colour.mix(shade.opacity).filled(),
                )
            }))
            .map_err(|error| fail(&error))?;
        if labels {
            let labelled = backdrop.shaded.iter().filter(|shade| !shade.label.is_empty());
            for (row, shade) in labelled.enumerate() {
                let y = y_max * (0.97 - 0.065 * (row % BAND_LABEL_ROWS) as f64);
                let colour = shade.colour.mix(1.0);
                let style = TextStyle::from(("sans-serif", 11)).color(&colour);
                chart
                    .draw_series(std::iter::once(Text::new(
                        shade.label.clone(),
                        (shade.from_s, y),
                        style,
                    )))
                    .map_err(|error| fail(&error))?;
            }
        }
        if let Some(x) = backdrop.heal_s {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, y_max)],
                    BLUE.stroke_width(1),
                )))
                .map_err(|error| fail(&error))?;
        }
        if let Some(threshold) = threshold {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(threshold.from_s, threshold.value), (x_max, threshold.value)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(|error| fail(&error))?
                .label(threshold.label.clone())
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(1))
                });
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
            chart
                .draw_series(
                    series
                        .partial
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y.min(y_max)), 3, colour.stroke_width(1))),
                )
                .map_err(|error| fail(&error))?;
        }
        draw_legend(&mut chart).map_err(|error| fail(&error))?;
        root.present().map_err(|error| fail(&error))?;
    }
    Ok(svg)
}

/// The SLO line of an availability chart: the scenario's minimum share of ok operations from
/// the heal on, in percent.
fn slo_threshold(heal_ok_fraction_min: Option<f64>, heal_s: Option<f64>) -> Option<Threshold> {
    let minimum = heal_ok_fraction_min?;
    Some(Threshold {
        from_s: heal_s.unwrap_or(0.0),
        value: minimum * 100.0,
        label: format!("SLO from the heal: >= {}%", number(minimum * 100.0)),
    })
}

/// The three charts of a timeline: throughput, latency percentiles, availability.
fn timeline_charts(
    timeline: &Timeline,
    heal_ok_fraction_min: Option<f64>,
) -> Result<String, String> {
    let seconds = |start_ms: u64| (start_ms as f64 + timeline.bucket_ms as f64 / 2.0) / 1000.0;
    let pick = |value: &dyn Fn(&crate::timeline::Bucket) -> Option<f64>| -> Vec<(f64, f64, bool)> {
        timeline
            .buckets
            .iter()
            // A bucket before the clients started is no measurement at all.
            .filter(|bucket| bucket.covered_ms > 0)
            .filter_map(|bucket| {
                let partial = bucket.covered_ms < timeline.bucket_ms;
                Some((seconds(bucket.start_ms), value(bucket)?, partial))
            })
            .collect()
    };
    let backdrop = Backdrop::of_timeline(timeline);
    let slo = slo_threshold(heal_ok_fraction_min, backdrop.heal_s);
    let mut html = String::new();
    html.push_str(&chart_svg(
        "Throughput",
        "ok operations / s",
        &[Series::with_partial("ok / s", BLUE, pick(&|bucket| Some(bucket.throughput_per_s)))],
        &[],
        &backdrop,
        true,
        None,
    )?);
    html.push_str(&chart_svg(
        "Latency",
        "ms",
        &[
            Series::with_partial("p50", BLUE, pick(&|bucket| bucket.latency_p50_ms)),
            Series::with_partial("p99", ORANGE, pick(&|bucket| bucket.latency_p99_ms)),
        ],
        &[],
        &backdrop,
        true,
        None,
    )?);
    html.push_str(&chart_svg(
        "Availability",
        "% of completed operations ok",
        &[Series::with_partial(
            "availability",
            GREEN,
            pick(&|bucket| bucket.availability.map(|value| value * 100.0)),
        )],
        &[],
        &backdrop,
        true,
        slo.as_ref(),
    )?);
    Ok(html)
}

/// The three charts of the seeds pooled: throughput (mean, and the band from the lowest seed
/// to the highest), latency percentiles of every seed's operations together, and availability
/// (all seeds together, and the worst seed).
fn pooled_charts(
    pooled: &PooledTimeline,
    heal_ok_fraction_min: Option<f64>,
) -> Result<String, String> {
    let seconds = |start_ms: u64| (start_ms as f64 + pooled.bucket_ms as f64 / 2.0) / 1000.0;
    let buckets = || pooled.buckets.iter().filter(|bucket| bucket.seeds > 0);
    let pick =
        |value: &dyn Fn(&crate::timeline::PooledBucket) -> Option<f64>| -> Vec<(f64, f64, bool)> {
            buckets()
                .filter_map(|bucket| {
                    Some((seconds(bucket.start_ms), value(bucket)?, bucket.partial))
                })
                .collect()
        };
    let backdrop = Backdrop::of_pool(pooled);
    let slo = slo_threshold(heal_ok_fraction_min, backdrop.heal_s);
    let seeds = pooled.seeds;
    let mut html = String::new();
    html.push_str(&chart_svg(
        &format!("Throughput, {seeds} seeds"),
        "ok operations / s",
        &[Series::with_partial("mean", BLUE, pick(&|bucket| Some(bucket.throughput_mean_per_s)))],
        &[Band {
            name: "lowest to highest seed",
            colour: BLUE,
            points: buckets()
                .filter(|bucket| !bucket.partial)
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
        false,
        None,
    )?);
    html.push_str(&chart_svg(
        &format!("Latency, {seeds} seeds together"),
        "ms",
        &[
            Series::with_partial("p50", BLUE, pick(&|bucket| bucket.latency_p50_ms)),
            Series::with_partial("p99", ORANGE, pick(&|bucket| bucket.latency_p99_ms)),
        ],
        &[],
        &backdrop,
        false,
        None,
    )?);
    html.push_str(&chart_svg(
        &format!("Availability, {seeds} seeds"),
        "% of completed operations ok",
        &[
            Series::with_partial(
                "all seeds together",
                GREEN,
                pick(&|bucket| bucket.availability.map(|value| value * 100.0)),
            ),
            Series::with_partial(
                "worst seed",
                VIOLET,
                pick(&|bucket| bucket.availability_min.map(|value| value * 100.0)),
            ),
        ],
        &[],
        &backdrop,
        false,
        slo.as_ref(),
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

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
td.n{text-align:right}\
.passed{color:#2a7a2a}.failed{color:#b02020;font-weight:bold}.inconclusive{color:#a05a00;font-weight:bold}\
.expected{color:#6a4a9a;font-weight:bold}.figures{color:#666}code{background:#f4f4f4;padding:1px 4px}\
svg{display:block;margin:0.5em 0}.note{color:#666;font-size:90%}.description{font-style:italic}\
tr.failed td{color:#b02020}tr.inconclusive td{color:#a05a00}tr.stuck td{background:#fbe9e7}\
.glance{display:flex;flex-wrap:wrap;gap:1em}.box{border:2px solid;border-radius:6px;padding:0.3em 1em;flex:1 1 280px}\
.box.failed{border-color:#b02020}.box.expected{border-color:#6a4a9a}.box.inconclusive{border-color:#a05a00}.box.passed{border-color:#2a7a2a}\
.box h3{margin:0.3em 0}.box ul{padding-left:1.2em;margin:0.3em 0}.box li{font-weight:normal;color:#222}\
.swatch{display:inline-block;width:1em;height:0.8em;margin-right:0.3em;vertical-align:middle}\
.witness{overflow-x:auto}.witness p{overflow-wrap:anywhere}\
.witness td code{display:block;max-height:9em;overflow:auto;word-break:break-all;font-size:85%}\
.witness td:nth-child(-n+3) code,.witness td:nth-child(5) code,.witness td:nth-child(6) code{word-break:normal;white-space:nowrap}\
details.check summary{cursor:pointer}details.check{margin:0.2em 0}";

/// Chart SVG drawn by plotters, inserted as markup: the one unescaped insertion of the page
/// (plotters escapes the text it draws).
fn svg(drawn: String) -> PreEscaped<String> {
    debug_assert!(drawn.is_empty() || drawn.starts_with("<svg"), "only SVG goes in unescaped");
    PreEscaped(drawn)
}

/// The CSS class of an outcome: green, red, or amber for a run that could not decide.
fn outcome_class(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::Inconclusive => "inconclusive",
    }
}

fn verdict(outcome: Outcome) -> Markup {
    html! { span class=(outcome_class(outcome)) { (outcome.word()) } }
}

/// A scenario's verdict in a word and its colour: a passing scenario whose checks failed as
/// it expected says so in violet, not in green.
fn scenario_verdict(scenario: &ScenarioReport) -> Markup {
    let expected = scenario.checks.values().any(|check| check.failed_as_expected_seeds > 0);
    match scenario.outcome {
        Outcome::Passed if expected => html! {
            span.expected { (Status::FailedAsExpected.word()) }
        },
        outcome => verdict(outcome),
    }
}

/// The CSS class of a check's status: each in its own colour.
fn status_class(status: Status) -> &'static str {
    match status {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Unknown => "inconclusive",
        Status::FailedAsExpected => "expected",
        Status::Figures => "figures",
    }
}

/// A check's verdict over the seeds, each status in its own colour.
fn check_verdict(status: Status) -> Markup {
    html! { span class=(status_class(status)) { (status.word()) } }
}

fn optional_ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |value| format!("{value:.1} ms"))
}

/// The checks of `scenario` whose verdict over the seeds is `status`, with the seeds it took.
fn checks_with(scenario: &ScenarioReport, status: Status) -> Vec<String> {
    scenario
        .checks
        .iter()
        .filter(|(_, check)| check.status() == status)
        .map(|(name, check)| {
            let seeds = match status {
                Status::Failed => check.failed_seeds,
                Status::Unknown => check.unknown_seeds,
                Status::FailedAsExpected => check.failed_as_expected_seeds,
                _ => check.passed_seeds,
            };
            format!("{name} ({seeds} of {} seeds)", scenario.seeds)
        })
        .collect()
}

/// A plain-language line of what a scenario tests: the promises it holds the run to, what
/// it only measures, and the faults of its example seed.
pub fn tests_line(scenario: &ScenarioReport) -> String {
    let promises: Vec<&str> = scenario
        .checks
        .iter()
        .filter(|(_, check)| check.status() != Status::Figures)
        .map(|(name, _)| name.as_str())
        .collect();
    let mut line = format!("Holds the run to {}", promises.join(", "));
    let measures = crate::report::figures_only_checks(scenario);
    if !measures.is_empty() {
        line.push_str(&format!("; measures {}", measures.join(", ")));
    }
    if let Some(minimum) = scenario.heal_ok_fraction_min {
        line.push_str(&format!(
            "; SLO: at least {}% of operations ok from the heal on",
            number(minimum * 100.0)
        ));
    }
    match (&scenario.timeline, scenario.charted_seed) {
        (Some(timeline), Some(seed)) if !timeline.faults.is_empty() => {
            let mut kinds: Vec<&str> =
                timeline.faults.iter().map(|window| window.kind.as_str()).collect();
            kinds.dedup();
            let mut unique = Vec::new();
            for kind in kinds {
                if !unique.contains(&kind) {
                    unique.push(kind);
                }
            }
            line.push_str(&format!(
                "; under {} faults in seed {seed} ({})",
                timeline.faults.len(),
                unique.join(", ")
            ));
        }
        (Some(_), Some(seed)) => line.push_str(&format!("; seed {seed} injected no fault")),
        _ => {}
    }
    line + "."
}

/// The first screen: what failed, what failed as expected, what could not decide, what
/// passed, each scenario linked to its section.
fn glance(report: &Report) -> Markup {
    let with = |status| -> Vec<(&ScenarioReport, Vec<String>)> {
        report
            .scenarios
            .iter()
            .map(|scenario| (scenario, checks_with(scenario, status)))
            .filter(|(_, checks)| !checks.is_empty())
            .collect()
    };
    let boxes = [
        ("failed", "Failed", "a promise broke: replay the seed below", with(Status::Failed)),
        (
            "expected",
            "Failed as expected",
            "the scenario demonstrates a broken design, and it broke",
            with(Status::FailedAsExpected),
        ),
        (
            "inconclusive",
            "Inconclusive",
            "a check could not decide within its budget: never a pass",
            with(Status::Unknown),
        ),
    ];
    let passed: Vec<&ScenarioReport> = report
        .scenarios
        .iter()
        .filter(|scenario| scenario.outcome == Outcome::Passed)
        .filter(|scenario| checks_with(scenario, Status::FailedAsExpected).is_empty())
        .collect();
    // Vacuous faults (a fault with no effect) and unmet `must_happen` situations belong on
    // this screen as boxes of their own once summaries record them (DESIGN.md section 5);
    // nothing records them yet, so nothing is shown for them.
    html! {
        section id="glance" {
            h2 { "At a glance" }
            div.glance {
                @for (class, title, meaning, scenarios) in &boxes {
                    @if !scenarios.is_empty() {
                        div class={ "box " (class) } {
                            h3 class=(class) { (title) " (" (scenarios.len()) ")" }
                            p.note { (meaning) }
                            ul {
                                @for (scenario, checks) in scenarios {
                                    li {
                                        a href={ "#" (scenario.scenario) } { (scenario.scenario) }
                                        ": " (checks.join(", "))
                                    }
                                }
                            }
                        }
                    }
                }
                div.box.passed {
                    h3.passed { "Passed (" (passed.len()) ")" }
                    p {
                        @for (index, scenario) in passed.iter().enumerate() {
                            @if index > 0 { ", " }
                            a href={ "#" (scenario.scenario) } { (scenario.scenario) }
                        }
                    }
                }
            }
        }
    }
}

/// A fault plan as it ran: per fault, its id, kind, target and window.
fn fault_plan(faults: &[FaultWindow]) -> Markup {
    html! {
        @if faults.is_empty() {
            p.note { "No fault was injected." }
        } @else {
            table.plan {
                tr { th { "#" } th { "fault" } th { "target" } th { "from" } th { "to" } th { "for" } }
                @for window in faults {
                    tr {
                        td.n { (window.fault) }
                        td {
                            span.swatch style={ "background:" (css_colour(fault_colour(&window.kind))) } {}
                            (window.kind)
                        }
                        td { (window.target) }
                        td.n { (number(window.start_ms / 1000.0)) " s" }
                        td.n { (number(window.end_ms / 1000.0)) " s" }
                        td.n { (number((window.end_ms - window.start_ms) / 1000.0)) " s" }
                    }
                }
            }
        }
    }
}

/// The legend of a timeline's charts.
fn chart_legend(pooled: bool) -> Markup {
    html! {
        p.note {
            @if pooled {
                "Red shade: the share of seeds with a fault active in the bucket (darker where more faults overlap). "
            } @else {
                "Bands: fault windows, labelled #id kind target: "
                @for (meaning, colour) in FAULT_LEGEND {
                    span.swatch style={ "background:" (css_colour(colour)) } {} (meaning) " "
                }
            }
            "Blue line: the heal. Dashed line: the scenario's SLO, where it sets one. Hollow dots: \
             buckets the workload covered only in part (its start and end), off the line."
        }
    }
}

/// One checker's figures over the seeds, folded; open when the check failed or could not
/// decide. Counts print as integers.
fn figures_html(scenario: &ScenarioReport) -> Markup {
    html! {
        h3 { "Figures per check" }
        @for (check, report) in scenario.checks.iter().filter(|(_, report)| !report.figures.is_empty()) {
            @let status = report.status();
            details.check open[matches!(status, Status::Failed | Status::Unknown)] {
                summary {
                    (check) " " (check_verdict(status)) " "
                    span.note { "(" (report.figures.len()) " figures)" }
                }
                table {
                    tr { th { "figure" } th { "seeds" } th { "min" } th { "mean" } th { "max" } }
                    @for (key, stats) in &report.figures {
                        tr {
                            td { (key) } td.n { (stats.seeds) }
                            td.n { (number(stats.min)) } td.n { (number(stats.mean)) }
                            td.n { (number(stats.max)) }
                        }
                    }
                }
            }
        }
    }
}

/// What the scenario covered: per situation it must reach, the seeds that reached it; per
/// fault kind, the faults injected and the vacuous ones (they hit nothing).
fn coverage_html(scenario: &ScenarioReport) -> Markup {
    html! {
        @if !scenario.must_happen.is_empty() {
            h3 { "Must happen" }
            table {
                tr { th { "situation" } th { "seeds that reached it" } }
                @for situation in &scenario.must_happen {
                    tr class=[(situation.seeds_reached == 0).then_some("failed")] {
                        td { (situation.situation) }
                        td.n { (situation.seeds_reached) " of " (situation.seeds) }
                    }
                }
            }
        }
        @if !scenario.fault_bite.is_empty() {
            h3 { "Faults that bit" }
            p.note {
                "A vacuous fault hit nothing: a cut no frame crossed, a rule no frame met, a crash \
                 of a node already down, a disk or clock nobody used while it was faulty."
            }
            table {
                tr { th { "fault kind" } th { "injected" } th { "vacuous" } }
                @for kind in &scenario.fault_bite {
                    tr class=[(kind.vacuous > 0).then_some("inconclusive")] {
                        td { (kind.kind) } td.n { (kind.faults) } td.n { (kind.vacuous) }
                    }
                }
            }
        }
    }
}

fn scenario_section(scenario: &ScenarioReport) -> Result<Markup, String> {
    let measures = crate::report::figures_only_checks(scenario);
    let timeline_charts = match &scenario.timeline {
        Some(timeline) => timeline_charts(timeline, scenario.heal_ok_fraction_min)?,
        None => String::new(),
    };
    let pooled_charts = match &scenario.pooled {
        Some(pooled) => pooled_charts(pooled, scenario.heal_ok_fraction_min)?,
        None => String::new(),
    };
    let mut histograms = Vec::new();
    for distribution in &scenario.distributions {
        histograms.push(distribution_svg(distribution)?);
    }
    let listed = scenario.failing.iter().take(crate::report::FAILING_SEEDS_LISTED_MAX);
    let more_failing =
        scenario.failing.len().saturating_sub(crate::report::FAILING_SEEDS_LISTED_MAX);
    Ok(html! {
        h2 id=(scenario.scenario) { (scenario.scenario) " " (scenario_verdict(scenario)) }
        @if !scenario.description.is_empty() {
            p.description { (scenario.description) }
        }
        p { (tests_line(scenario)) }
        p {
            "File " code { (scenario.file) } ": " (scenario.seeds) " seeds, "
            (scenario.failed_seeds) " failed, " (scenario.inconclusive_seeds) " inconclusive."
        }
        table {
            tr {
                th { "check" } th { "verdict" } th { "passed seeds" } th { "failed seeds" }
                th { "failed as expected" } th { "undecided seeds" }
            }
            @for (check, report) in scenario.checks.iter().filter(|(_, report)| report.status() != Status::Figures) {
                tr {
                    td { (check) } td { (check_verdict(report.status())) }
                    td.n { (report.passed_seeds) } td.n { (report.failed_seeds) }
                    td.n { (report.failed_as_expected_seeds) } td.n { (report.unknown_seeds) }
                }
            }
        }
        @if !measures.is_empty() {
            p.note {
                "Figures only (no threshold in this scenario, so they cannot fail): "
                (measures.join(", ")) "."
            }
        }
        (coverage_html(scenario))
        (figures_html(scenario))
        @if let (Some(seed), Some(timeline)) = (scenario.charted_seed, &scenario.timeline) {
            h3 { "Seed " (seed) " over simulated time" }
            p {
                "Buckets of " (timeline.bucket_ms) " ms. Latency p50 "
                (optional_ms(timeline.latency_p50_ms)) ", p99 " (optional_ms(timeline.latency_p99_ms)) "."
            }
            (chart_legend(false))
            (svg(timeline_charts))
            details open {
                summary { "Seed " (seed) "'s fault plan, as injected (" (timeline.faults.len()) " faults)" }
                (fault_plan(&timeline.faults))
            }
        }
        @if let Some(pooled) = &scenario.pooled {
            h3 { "Across seeds" }
            p {
                (pooled.seeds) " of " (scenario.seeds) " seeds read (buckets of " (pooled.bucket_ms)
                " ms). Latency p50 "
                (optional_ms(pooled.latency_p50_ms)) ", p99 " (optional_ms(pooled.latency_p99_ms))
                " over every seed's operations; " (worst_seeds(&scenario.seed_rows)) "."
            }
            (chart_legend(true))
            (svg(pooled_charts))
            details open[scenario.seed_rows.len() <= SEED_ROWS_OPEN_MAX] {
                summary { "Every seed read (" (scenario.seed_rows.len()) ")" }
                table.seeds {
                    tr { @for column in SEED_COLUMNS { th { (column) } } }
                    @for row in &scenario.seed_rows {
                        tr class=[(!row.outcome.passed()).then(|| outcome_class(row.outcome))] {
                            @for cell in seed_cells(row) { td { (cell) } }
                        }
                    }
                }
            }
        }
        @if !scenario.distributions.is_empty() {
            h3 { "Staleness and delay distributions" }
            p.note { "Each pooled over every seed, every event weighted alike." }
            @for (distribution, histogram) in scenario.distributions.iter().zip(histograms) {
                h4 { (distribution.check) "." (distribution.name) }
                p { (distribution.description) ": " (distribution_line(distribution)) "." }
                (svg(histogram))
            }
        }
        @for failing in listed {
            h3 class=(outcome_class(failing.outcome)) { (failing.heading()) }
            p {
                "replay: " code { (failing.replay) }
                @if let Some(shrink) = &failing.shrink { br; "shrink: " code { (shrink) } }
                @if let (Some(file), Some(plan)) = (&failing.shrunk_file, &failing.shrunk_plan) {
                    br; "shrunk plan (" code { (file) } "), " (plan.len()) " events:"
                    pre { @for event in plan { (event.to_string()) "\n" } }
                }
            }
            @if scenario.charted_seed != Some(failing.seed) && !failing.faults.is_empty() {
                details {
                    summary { "Seed " (failing.seed) "'s fault plan, as injected (" (failing.faults.len()) " faults)" }
                    (fault_plan(&failing.faults))
                }
            }
            ul {
                // A check with a witness is shown by its chart and table below.
                @for (check, violations) in failing.violations.iter().filter(|(check, _)| !failing.witnesses.contains_key(*check)) {
                    @for violation in violations { li { (check) ": " pre { (violation) } } }
                }
            }
            @for (check, witness) in &failing.witnesses { (witness_html(check, witness)) }
        }
        @if more_failing > 0 {
            p.note { "... and " (more_failing) " more failing seeds (see report.json)." }
        }
    })
}

/// One table row of code cells.
fn code_row(cells: &[String], stuck: bool) -> Markup {
    html! { tr class=[stuck.then_some("stuck")] { @for cell in cells { td { code { (cell) } } } } }
}

/// A call of a witness as its chart draws it: which lane, from and to (ms, or history
/// positions when the witness has no times), and its role.
struct WitnessBar {
    process: u64,
    from: f64,
    to: Option<f64>,
    role: BarRole,
    label: String,
}

#[derive(Clone, Copy, PartialEq)]
enum BarRole {
    /// In the longest linearizable prefix.
    Linearized,
    /// Can not come next after that prefix.
    CannotPlace,
    /// The completion no order explains.
    RefutedBy,
}

const WITNESS_WIDTH: f64 = 900.0;
const WITNESS_LANE: f64 = 24.0;
const WITNESS_LEFT: f64 = 60.0;

/// A witness as Porcupine draws one: a lane per process, each call a bar from its invoke to
/// its completion on simulated time (ms); the linearized prefix green, the calls that
/// cannot come next red, the completion no order explains outlined. Hand-drawn SVG, not
/// plotters: bars with text and hover titles per call are what a chart library adds nothing
/// to, and maud escapes every label.
fn witness_chart(witness: &pessimist_sim::lincheck::Witness) -> Markup {
    use pessimist_sim::lincheck::WitnessCall;
    let timed = witness.linearized.iter().all(|step| step.call.invoke_time_us.is_some());
    let at = |call: &WitnessCall| -> (f64, Option<f64>) {
        if timed {
            let ms = |us: u64| us as f64 / 1000.0;
            (call.invoke_time_us.map_or(0.0, ms), call.completion_time_us.map(ms))
        } else {
            (call.invoke_index as f64, call.completion_index.map(|index| index as f64))
        }
    };
    let bar = |call: &WitnessCall, role| {
        let (from, to) = at(call);
        let returned = match (&call.outcome[..], &call.output) {
            ("ok", Some(output)) => format!(" -> {output}"),
            ("fail", _) => " -> failed".to_string(),
            _ => " -> ?".to_string(),
        };
        WitnessBar {
            process: call.process,
            from,
            to,
            role,
            label: format!("[{}] {} {}{returned}", call.invoke_index, call.f, call.input),
        }
    };
    let mut bars: Vec<WitnessBar> =
        witness.linearized.iter().map(|step| bar(&step.call, BarRole::Linearized)).collect();
    bars.extend(witness.cannot_place.iter().map(|call| bar(call, BarRole::CannotPlace)));
    if let Some(call) = &witness.refuted_by {
        bars.push(bar(call, BarRole::RefutedBy));
    }
    let mut processes: Vec<u64> = bars.iter().map(|bar| bar.process).collect();
    processes.sort_unstable();
    processes.dedup();
    let start = bars.iter().map(|bar| bar.from).fold(f64::INFINITY, f64::min);
    let end = bars.iter().map(|bar| bar.to.unwrap_or(bar.from)).fold(f64::NEG_INFINITY, f64::max);
    if bars.is_empty() || !start.is_finite() {
        return html! {};
    }
    let span = (end - start).max(1.0);
    // Open calls (never completed) run to the axis's end, a tenth past the last completion.
    let axis_end = end + span * 0.1;
    let x = |value: f64| {
        WITNESS_LEFT + (value - start) / (axis_end - start) * (WITNESS_WIDTH - WITNESS_LEFT - 10.0)
    };
    let lane = |process: u64| {
        let index = processes.iter().position(|known| *known == process).expect("listed above");
        20.0 + index as f64 * WITNESS_LANE
    };
    let height = 20.0 + processes.len() as f64 * WITNESS_LANE + 30.0;
    let unit = if timed { "ms" } else { "history position" };
    let ticks: Vec<f64> =
        (0..=5).map(|tick| start + (axis_end - start) * tick as f64 / 5.0).collect();
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WITNESS_WIDTH) height=(height)
            viewBox={ "0 0 " (WITNESS_WIDTH) " " (height) } font-family="sans-serif" font-size="11" {
            @for process in &processes {
                text x="4" y=(lane(*process) + 15.0) { "process " (process) }
                line x1=(WITNESS_LEFT) x2=(WITNESS_WIDTH - 10.0) y1=(lane(*process) + WITNESS_LANE - 2.0)
                    y2=(lane(*process) + WITNESS_LANE - 2.0) stroke="#eee" {}
            }
            @for bar in &bars {
                @let (fill, stroke, width) = match bar.role {
                    BarRole::Linearized => ("#b5d99c", "#6a9a3a", 1),
                    BarRole::CannotPlace => ("#f4a9a0", "#b02020", 1),
                    BarRole::RefutedBy => ("#f4a9a0", "#000", 3),
                };
                @let left = x(bar.from);
                @let right = x(bar.to.unwrap_or(axis_end)).max(left + 3.0);
                g {
                    title { (bar.label) }
                    rect x=(left) y=(lane(bar.process) + 2.0) width=(right - left) height=(WITNESS_LANE - 6.0)
                        fill=(fill) stroke=(stroke) stroke-width=(width)
                        stroke-dasharray=[bar.to.is_none().then_some("4 2")] {}
                }
            }
            @let axis_y = 20.0 + processes.len() as f64 * WITNESS_LANE + 4.0;
            line x1=(WITNESS_LEFT) x2=(WITNESS_WIDTH - 10.0) y1=(axis_y) y2=(axis_y) stroke="#888" {}
            @for tick in &ticks {
                text x=(x(*tick)) y=(axis_y + 14.0) text-anchor="middle" { (number(tick.round())) }
            }
            text x=(WITNESS_WIDTH - 10.0) y=(axis_y + 26.0) text-anchor="end" { "simulated time (" (unit) ")" }
        }
    }
}

/// A linearizability witness: per-process bars on a time axis, then a table of the prefix's
/// last steps and the calls that cannot come next, values whole.
fn witness_html(check: &str, witness: &pessimist_sim::lincheck::Witness) -> Markup {
    let table = witness_table(witness);
    let span = WITNESS_COLUMNS.len();
    html! {
        div.witness {
            p { b { (check) " witness." } " " (table.headline) }
            p.note {
                span.swatch style="background:#b5d99c" {} "the longest linearizable prefix (its last "
                (witness.linearized.len()) " calls) "
                span.swatch style="background:#f4a9a0" {} "calls that cannot come next "
                span.swatch style="background:#f4a9a0;outline:2px solid #000" {} "the completion no order explains; "
                "dashed: never completed. Hover a bar for its call."
            }
            (witness_chart(witness))
            table {
                tr { @for column in WITNESS_COLUMNS { th { (column) } } }
                @if let Some(cells) = &table.refuted_by {
                    tr { td colspan=(span) { "The return no order explains:" } }
                    (code_row(cells, true))
                    tr { td colspan=(span) { "Where the search for an order got stuck, its last steps:" } }
                }
                @if table.steps_omitted > 0 {
                    tr { td.note colspan=(span) { "... " (table.steps_omitted) " earlier steps" } }
                }
                @for cells in &table.steps { (code_row(cells, false)) }
                tr { td colspan=(span) { "None of these can come next in state " code { (table.state_stuck) } ":" } }
                @for cells in &table.cannot_place { (code_row(cells, true)) }
            }
        }
    }
}

/// The report as a self-contained HTML page: the glance first, then a section per scenario.
pub fn report_html(report: &Report) -> Result<String, String> {
    let mut sections = Vec::new();
    for scenario in &report.scenarios {
        sections.push(scenario_section(scenario)?);
    }
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "pessimist report" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "pessimist report" }
                p {
                    (report.scenarios.len()) " scenarios, " (report.seeds) " seeds, "
                    (report.failed_seeds) " failed, " (report.inconclusive_seeds) " inconclusive: "
                    (verdict(report.outcome)) "."
                }
                (glance(report))
                table {
                    tr {
                        th { "scenario" } th { "verdict" } th { "seeds" } th { "failed" }
                        th { "inconclusive" } th { "what it tests" }
                    }
                    @for scenario in &report.scenarios {
                        tr {
                            td { a href={ "#" (scenario.scenario) } { (scenario.scenario) } }
                            td { (scenario_verdict(scenario)) }
                            td.n { (scenario.seeds) } td.n { (scenario.failed_seeds) }
                            td.n { (scenario.inconclusive_seeds) }
                            td { (scenario.description) }
                        }
                    }
                }
                @for section in sections { (section) }
            }
        }
    };
    Ok(page.into_string())
}
