//! The design review as documents: per claim of the design (seed 003), the claim quoted, the
//! scenarios and designs that test it, the seeds, a table of figures, bar charts, the verdict
//! and what the design should change where it fails. Markdown (`review.md`) and one
//! self-contained HTML page (`index.html`, charts as inline SVG drawn by plotters).
//!
//! The figures and verdicts come in computed (`pessimist review` runs the scenarios and
//! applies each claim's rule); this module only lays them out.
//!
//! **Invariant:** the documents are a pure function of the [`Review`]: no timestamps, no
//! paths of the machine that made them, no wall-clock figures, so the same seeds give the
//! same bytes.

use std::collections::BTreeMap;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// A claim's verdict, computed from the figures by the claim's rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimVerdict {
    Holds,
    Fails,
    /// Holds only under the stated condition.
    HoldsOnlyWhen(String),
}

impl std::fmt::Display for ClaimVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimVerdict::Holds => write!(f, "holds"),
            ClaimVerdict::Fails => write!(f, "fails"),
            ClaimVerdict::HoldsOnlyWhen(condition) => write!(f, "holds only when {condition}"),
        }
    }
}

/// A figure of the table: the key the rule reads it by, what it is, its unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FigureColumn {
    pub key: String,
    pub label: String,
    /// `ms`, `fraction`, `count`...; empty for none.
    pub unit: String,
}

/// One design (a scenario as written, or one of its variants) and its figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DesignFigures {
    /// The scenario's name, or `<scenario>-<variant>`.
    pub design: String,
    /// Short, for chart axes: the scenario's name, or the variant's.
    pub label: String,
    /// The scenario file, relative to the workspace.
    pub file: String,
    pub description: String,
    /// The knobs the variant overlays on the scenario's (empty for the scenario as written).
    pub knobs: String,
    pub seeds: usize,
    /// Seeds on which some check failed (a design that breaks a promise fails checks).
    pub seeds_failing_a_check: usize,
    /// Figure key to value; `None` where no seed reported it.
    pub values: BTreeMap<String, Option<f64>>,
}

/// A bar chart: one group per design, one bar per figure (of one unit).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChartSpec {
    pub title: String,
    pub y_label: String,
    pub figures: Vec<String>,
}

/// One claim's section.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Section {
    /// The claim's number in the review (as in the issue that asked for it).
    pub number: u32,
    /// The name `pessimist review --claim` takes.
    pub name: String,
    pub title: String,
    /// The claim, quoted from the design.
    pub quote: String,
    /// What the scenarios do, in a sentence or two.
    pub scenarios_text: String,
    pub seeds: Vec<u64>,
    pub figures: Vec<FigureColumn>,
    pub designs: Vec<DesignFigures>,
    pub charts: Vec<ChartSpec>,
    /// The verdict rule, in words.
    pub rule: String,
    pub verdict: ClaimVerdict,
    /// The figures that decided the verdict, in words.
    pub reason: String,
    /// What the design should change (or keep) given the verdict.
    pub change: String,
}

/// The whole review.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Review {
    /// The command that regenerates it.
    pub command: String,
    pub sections: Vec<Section>,
}

/// A figure's value for a table: integers without decimals, small numbers with four.
pub fn format_value(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(value) if !value.is_finite() => "-".to_string(),
        Some(value) if value.fract() == 0.0 && value.abs() < 1e15 => format!("{value:.0}"),
        Some(value) if value.abs() < 10.0 => format!("{value:.4}"),
        Some(value) => format!("{value:.1}"),
    }
}

fn anchor(section: &Section) -> String {
    format!("claim-{}", section.number)
}

fn seeds_text(seeds: &[u64]) -> String {
    let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
    format!("{} ({} per design, the same for every design)", list.join(", "), seeds.len())
}

/// The review as Markdown.
pub fn review_markdown(review: &Review) -> String {
    let mut page = String::from("# Design review: seed 003's claims, tested\n\n");
    page.push_str(&format!(
        "Each claim of the design is run as scenarios under faults, every design on the same \
         seeds; its verdict follows from the figures by the rule stated with it. Regenerate \
         with `{}` (the charts are in `index.html`).\n\n",
        review.command
    ));
    page.push_str("| claim | verdict |\n|---|---|\n");
    for section in &review.sections {
        page.push_str(&format!(
            "| [{}. {}](#{}) | {} |\n",
            section.number,
            section.title,
            anchor(section),
            section.verdict
        ));
    }
    for section in &review.sections {
        page.push_str(&format!(
            "\n<a id=\"{}\"></a>\n## {}. {}\n\n",
            anchor(section),
            section.number,
            section.title
        ));
        page.push_str(&format!("> {}\n\n", section.quote));
        page.push_str(&format!("{}\n\n", section.scenarios_text));
        page.push_str(&format!("Seeds: {}.\n\n", seeds_text(&section.seeds)));
        page.push_str("Designs:\n\n");
        for design in &section.designs {
            page.push_str(&format!("- **{}** (`{}`", design.design, design.file));
            if !design.knobs.is_empty() {
                page.push_str(&format!(", knobs `{}`", design.knobs));
            }
            page.push(')');
            if !design.description.is_empty() {
                page.push_str(&format!(": {}", design.description));
            }
            page.push('\n');
        }
        page.push_str(
            "\nFigures (means over the seeds unless the figure says otherwise):\n\n| figure |",
        );
        for design in &section.designs {
            page.push_str(&format!(" {} |", design.label));
        }
        page.push_str("\n|---|");
        page.push_str(&"---|".repeat(section.designs.len()));
        page.push('\n');
        page.push_str("| seeds failing a check |");
        for design in &section.designs {
            page.push_str(&format!(" {} of {} |", design.seeds_failing_a_check, design.seeds));
        }
        page.push('\n');
        for figure in &section.figures {
            let unit =
                if figure.unit.is_empty() { String::new() } else { format!(" ({})", figure.unit) };
            page.push_str(&format!("| {}{unit} |", figure.label));
            for design in &section.designs {
                let value = design.values.get(&figure.key).copied().flatten();
                page.push_str(&format!(" {} |", format_value(value)));
            }
            page.push('\n');
        }
        page.push_str(&format!(
            "\n**Verdict: {}.** {}\n\nRule: {}\n\nWhat the design should change: {}\n",
            section.verdict, section.reason, section.rule, section.change
        ));
    }
    page
}

const CHART_SIZE: (u32, u32) = (760, 260);
const STYLE: &str = "body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
td.number{text-align:right}blockquote{border-left:4px solid #ccc;margin:1em 0;padding:0.2em 1em;color:#444}\
.holds{color:#2a7a2a;font-weight:bold}.fails{color:#b02020;font-weight:bold}.only{color:#a06000;font-weight:bold}\
code{background:#f4f4f4;padding:1px 4px}svg{display:block;margin:0.5em 0}.note{color:#666;font-size:90%}";

/// Largest over smallest bar from which a chart's axis is logarithmic.
const LOG_AXIS_RATIO_MIN: f64 = 100.0;
const COLOURS: [RGBColor; 5] = [
    RGBColor(38, 139, 210),
    RGBColor(203, 75, 22),
    RGBColor(133, 153, 0),
    RGBColor(108, 113, 196),
    RGBColor(181, 137, 0),
];

fn verdict_html(verdict: &ClaimVerdict) -> Markup {
    let class = match verdict {
        ClaimVerdict::Holds => "holds",
        ClaimVerdict::Fails => "fails",
        ClaimVerdict::HoldsOnlyWhen(_) => "only",
    };
    html! { span class=(class) { (verdict.to_string()) } }
}

/// Quoted text with its `$x$` spans (the design document's LaTeX for a symbol) set in
/// italics, so no raw `$` markup reaches the reader.
fn with_symbols(text: &str) -> Markup {
    let parts: Vec<&str> = text.split('$').collect();
    // An odd count of `$` leaves the text as it is: it is no symbol markup.
    let symbols = parts.len() % 2 == 1;
    html! {
        @for (index, part) in parts.iter().enumerate() {
            @if !symbols { @if index > 0 { "$" } (part) }
            @else if index % 2 == 1 { i { (part) } }
            @else { (part) }
        }
    }
}

/// A grouped bar chart: designs along the x axis, one bar per figure.
fn bar_chart_svg(section: &Section, chart: &ChartSpec) -> Result<String, String> {
    let designs = &section.designs;
    let label_of = |key: &str| {
        section
            .figures
            .iter()
            .find(|figure| figure.key == key)
            .map_or(key.to_string(), |figure| figure.label.clone())
    };
    let value = |design: &DesignFigures, key: &str| design.values.get(key).copied().flatten();
    let values: Vec<f64> = designs
        .iter()
        .flat_map(|design| chart.figures.iter().filter_map(move |key| value(design, key)))
        .filter(|value| value.is_finite())
        .collect();
    let y_top = values.iter().copied().fold(0.0f64, f64::max).max(1e-9);
    let y_low = values.iter().copied().filter(|value| *value > 0.0).fold(f64::INFINITY, f64::min);
    // Bars a hundred times apart or more go on a logarithmic axis: on a linear one the
    // smaller design's bar is a line of no height (a failover of 1.2e6 ms beside one of 900).
    let logarithmic = y_low.is_finite() && y_top / y_low >= LOG_AXIS_RATIO_MIN;
    // Room above the tallest bar for the legend, one line per figure.
    let headroom = 1.15 + 0.12 * chart.figures.len() as f64;
    let y_max = if logarithmic { y_top * headroom.powi(4) } else { y_top * headroom };
    let y_floor = if logarithmic { y_low / 2.0 } else { 0.0 };
    // Plotted values: their logarithm on a logarithmic axis (one drawing path for both).
    let scale = |value: f64| if logarithmic { value.max(y_floor).log10() } else { value };
    let groups = designs.len().max(1) as f64;
    let bars = chart.figures.len().max(1) as f64;
    let width = 0.8 / bars;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        let title = &chart.title;
        let fail = |error: &dyn std::fmt::Display| format!("drawing the chart {title:?}: {error}");
        root.fill(&WHITE).map_err(|error| fail(&error))?;
        let mut plot = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..groups - 0.5, scale(y_floor)..scale(y_max))
            .map_err(|error| fail(&error))?;
        // The designs are named under their bars below, not by the mesh: its labels land
        // where plotters finds round numbers, not on the groups.
        let y_desc = match logarithmic {
            true => format!("{} (log scale)", chart.y_label),
            false => chart.y_label.clone(),
        };
        let y_tick = |y: &f64| match logarithmic {
            true => format_value(Some(10f64.powf(*y))),
            false => crate::report::number(*y),
        };
        plot.configure_mesh()
            .y_desc(y_desc)
            .y_label_formatter(&y_tick)
            .x_labels(0)
            .disable_x_mesh()
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|error| fail(&error))?;
        for (bar, key) in chart.figures.iter().enumerate() {
            let colour = COLOURS[bar % COLOURS.len()];
            let offset = -0.4 + width * bar as f64;
            let rectangles: Vec<Rectangle<(f64, f64)>> = designs
                .iter()
                .enumerate()
                .filter_map(|(group, design)| {
                    let value = value(design, key)?;
                    let x = group as f64 + offset;
                    Some(Rectangle::new(
                        [(x, scale(y_floor)), (x + width * 0.9, scale(value))],
                        colour.filled(),
                    ))
                })
                .collect();
            plot.draw_series(rectangles)
                .map_err(|error| fail(&error))?
                .label(label_of(key))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.filled())
                });
        }
        let label_style = TextStyle::from(("sans-serif", 12))
            .pos(Pos::new(HPos::Center, VPos::Top))
            .color(&BLACK);
        for (group, design) in designs.iter().enumerate() {
            let (x, y) = plot.backend_coord(&(group as f64, scale(y_floor)));
            root.draw(&Text::new(design.label.clone(), (x, y + 6), label_style.clone()))
                .map_err(|error| fail(&error))?;
        }
        crate::html::draw_legend(&mut plot).map_err(|error| fail(&error))?;
        root.present().map_err(|error| fail(&error))?;
    }
    Ok(svg)
}

fn section_html(section: &Section) -> Result<Markup, String> {
    let mut charts = Vec::new();
    for chart in &section.charts {
        charts.push(bar_chart_svg(section, chart)?);
    }
    Ok(html! {
        h2 id=(anchor(section)) { (section.number) ". " (section.title) }
        blockquote { (with_symbols(&section.quote)) }
        p { (section.scenarios_text) }
        p { "Seeds: " (seeds_text(&section.seeds)) "." }
        ul {
            @for design in &section.designs {
                li {
                    b { (design.design) } " (" code { (design.file) }
                    @if !design.knobs.is_empty() { ", knobs " code { (design.knobs) } }
                    ")"
                    @if !design.description.is_empty() { ": " (design.description) }
                }
            }
        }
        table {
            tr { th { "figure" } @for design in &section.designs { th { (design.label) } } }
            tr {
                td { "seeds failing a check" }
                @for design in &section.designs {
                    td.number { (design.seeds_failing_a_check) " of " (design.seeds) }
                }
            }
            @for figure in &section.figures {
                tr {
                    td { (figure.label) @if !figure.unit.is_empty() { " (" (figure.unit) ")" } }
                    @for design in &section.designs {
                        td.number { (format_value(design.values.get(&figure.key).copied().flatten())) }
                    }
                }
            }
        }
        p.note { "Means over the seeds unless the figure says otherwise." }
        // SVG drawn by plotters, which escapes the text it draws.
        @for chart in charts { (PreEscaped(chart)) }
        p { b { "Verdict: " (verdict_html(&section.verdict)) "." } " " (section.reason) }
        p { "Rule: " (section.rule) }
        p { "What the design should change: " (section.change) }
    })
}

/// The review as a self-contained HTML page.
pub fn review_html(review: &Review) -> Result<String, String> {
    let mut sections = Vec::new();
    for section in &review.sections {
        sections.push(section_html(section)?);
    }
    let title = "Design review: seed 003's claims, tested";
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (title) } style { (PreEscaped(STYLE)) } }
            body {
                h1 { (title) }
                p {
                    "Each claim of the design is run as scenarios under faults, every design on \
                     the same seeds; its verdict follows from the figures by the rule stated with \
                     it. Regenerate with " code { (review.command) } "."
                }
                table {
                    tr { th { "claim" } th { "verdict" } }
                    @for section in &review.sections {
                        tr {
                            td { a href={ "#" (anchor(section)) } { (section.number) ". " (section.title) } }
                            td { (verdict_html(&section.verdict)) }
                        }
                    }
                }
                @for section in sections { (section) }
            }
        }
    };
    Ok(page.into_string() + "\n")
}
