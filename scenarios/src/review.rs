//! The design review (`pessimist review`): each claim of the design (seed 003) tested by
//! running its scenarios' designs on fixed seeds, its figures read from the checkers'
//! verdicts, its verdict computed from those figures by a stated rule.
//!
//! A claim is one [`Claim`] entry in [`CLAIMS`]: the quote, the scenario files (each with its
//! variants: the designs put side by side), the seed count, the figures to read, the charts,
//! and the rule. Adding a claim is adding an entry; the runner and the documents
//! ([`pessimist_reports::review`]) need nothing else.
//!
//! **Invariant:** the review is a pure function of the claims, their scenario files and the
//! seed count: every design runs seeds `1..=seeds` in its own runtime, results are put back in
//! plan order, and nothing wall-clock, absolute or machine-dependent reaches the documents, so
//! two generations write the same bytes whatever `--jobs` is.

use std::collections::BTreeMap;
use std::path::Path;

use pessimist_reports::review::{
    ChartSpec, ClaimVerdict, DesignFigures, FigureColumn, Review, Section,
};
use pessimist_sim::check::Outcome;
use pessimist_sim::scenario::Scenario;
use pessimist_sim::summary::RunSummary;
use serde_json::Value;

/// The SLA the design names (99.9%), as a fraction.
pub const SLA: f64 = 0.999;
/// The error budget of a 99.9% SLA over 30 days, in ms (43.2 minutes).
pub const SLA_BUDGET_30_DAYS_MS: f64 = (1.0 - SLA) * 30.0 * 86_400_000.0;
/// Most seeds per design `--seeds` may ask for.
pub const SEEDS_MAX: u64 = 1000;

/// Where the review is written, relative to the workspace.
pub const OUT_DIR: &str = "reports/design-review";

/// How a figure is combined over the seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Mean,
    Max,
    Min,
}

/// Where a figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A checker's figure: `pointer` is a JSON pointer into its figures
    /// (`/per_fault/0/ok_fraction`), combined over the seeds by `stat`.
    Check { check: &'static str, pointer: &'static str, stat: Stat },
    /// A knob of the design (a JSON pointer into its knobs, `/auth/ttl_ms`).
    Knob(&'static str),
    /// The simulated time the workload runs: the fault phase plus the heal phase, in ms.
    WorkloadMs,
    /// How many nodes of the topology have this role.
    NodesWithRole(&'static str),
    /// A workload setting (a JSON pointer into the workload, `/uploads_per_s`).
    Workload(&'static str),
    /// Computed from the other figures by the claim's `derive`.
    Derived,
}

/// A figure of a claim's table.
#[derive(Clone, Copy, Debug)]
pub struct Figure {
    /// The key the rule and the charts read it by.
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub source: Source,
}

/// A bar chart of some figures (of one unit), one group of bars per design.
#[derive(Clone, Copy, Debug)]
pub struct Chart {
    pub title: &'static str,
    pub y_label: &'static str,
    pub figures: &'static [&'static str],
}

/// A scenario file of a claim; its variants are further designs.
#[derive(Clone, Copy, Debug)]
pub struct ScenarioRef {
    /// Relative to the workspace.
    pub file: &'static str,
    /// The short name of the scenario as written (its variants are named by their names).
    pub label: &'static str,
}

/// A design's figures, by key.
pub type Values = BTreeMap<String, Option<f64>>;

/// What a claim's rule found.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub verdict: ClaimVerdict,
    /// The figures that decided it, in words.
    pub reason: String,
    /// What the design should change (or keep).
    pub change: String,
}

/// One claim of the design and how the review tests it.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    /// Its number in the review.
    pub number: u32,
    /// What `--claim` takes.
    pub name: &'static str,
    pub title: &'static str,
    /// Quoted from seed 003.
    pub quote: &'static str,
    /// What the scenarios do.
    pub scenarios_text: &'static str,
    pub scenarios: &'static [ScenarioRef],
    /// Seeds `1..=seeds` of every design.
    pub seeds: u64,
    pub figures: &'static [Figure],
    /// Adds the [`Source::Derived`] figures of every design from the figures read (a derived
    /// figure may need another design's, as a prediction from a control does).
    pub derive: fn(&mut [DesignFigures]),
    pub charts: &'static [Chart],
    /// The verdict rule, in words; [`Claim::verdict`] is the same rule in code.
    pub rule: &'static str,
    pub verdict: fn(&[DesignFigures]) -> Finding,
}

/// A figure of the design labelled `label`.
pub fn value(designs: &[DesignFigures], label: &str, key: &str) -> Option<f64> {
    designs.iter().find(|design| design.label == label)?.values.get(key).copied().flatten()
}

fn percent(value: f64) -> String {
    format!("{:.3}%", value * 100.0)
}

fn no_derived(_: &mut [DesignFigures]) {}

/// Applies `derive` to each design's figures alone.
fn each(designs: &mut [DesignFigures], derive: fn(&mut Values)) {
    for design in designs {
        derive(&mut design.values);
    }
}

fn get(values: &Values, key: &str) -> Option<f64> {
    values.get(key).copied().flatten()
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(numerator), Some(denominator)) if denominator > 0.0 => Some(numerator / denominator),
        _ => None,
    }
}

fn product(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? * b?)
}

// ---------------------------------------------------------------------------------------------
// Claim 1: at least three API servers, plus headroom.

/// The p99 time, first try to acceptance, an upload may take while a server is down for a
/// design to count as meeting its SLA: five times the ~100 ms an upload takes on a healthy
/// fleet here. "The system must remain fast": a server loss must not turn into minutes of
/// slow answers.
pub const API_LATENCY_P99_MS_MAX: f64 = 500.0;

fn api_derive(designs: &mut [DesignFigures]) {
    each(designs, |values| {
        let capacity = product(get(values, "api_cores"), get(values, "uploads_per_s_per_core"));
        let rate = product(get(values, "uploaders"), get(values, "uploads_per_s"));
        let survivors = get(values, "api_servers").map(|servers| servers - 1.0);
        let left = product(survivors, capacity);
        values.insert("capacity_per_server".into(), capacity);
        values.insert("rate_per_s".into(), rate);
        values.insert(
            "utilization_before".into(),
            ratio(rate, product(get(values, "api_servers"), capacity)),
        );
        values.insert("utilization_after".into(), ratio(rate, left));
    });
}

/// Whether a design met the SLA while one server was down: 99.9% of the uploads begun then
/// accepted on every seed, their p99 latency within [`API_LATENCY_P99_MS_MAX`].
fn api_meets(values: &Values) -> Option<bool> {
    Some(
        get(values, "outage_accepted_fraction")? >= SLA
            && get(values, "outage_latency_ms_p99")? <= API_LATENCY_P99_MS_MAX,
    )
}

fn api_verdict(designs: &[DesignFigures]) -> Finding {
    struct Row<'a> {
        label: &'a str,
        servers: f64,
        capacity: f64,
        after: f64,
        accepted: f64,
        p99: f64,
        meets: bool,
    }
    let mut rows: Vec<Row> = designs
        .iter()
        .filter_map(|design| {
            let values = &design.values;
            Some(Row {
                label: &design.label,
                servers: get(values, "api_servers")?,
                capacity: get(values, "capacity_per_server")?,
                after: get(values, "utilization_after")?,
                accepted: get(values, "outage_accepted_fraction")?,
                p99: get(values, "outage_latency_ms_p99")?,
                meets: api_meets(values)?,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.servers.total_cmp(&b.servers).then(a.capacity.total_cmp(&b.capacity)));
    let listing = rows
        .iter()
        .map(|row| {
            format!(
                "{} ({:.0} servers of {:.0} uploads/s; the survivors at {:.0}% of capacity): {} \
                 of the uploads begun during the outage accepted, p99 {:.2} s",
                row.label,
                row.servers,
                row.capacity,
                row.after * 100.0,
                percent(row.accepted),
                row.p99 / 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let reason = format!("With one API server killed at full load for 30 s: {listing}.");
    // The design as written: three servers with no more capacity than the load needs of two.
    let design = rows.iter().find(|row| row.servers == 3.0 && row.after >= 1.0);
    let two = rows.iter().find(|row| row.servers == 2.0);
    let with_headroom: Vec<&Row> = rows.iter().filter(|row| row.after < 1.0 && row.meets).collect();
    let (verdict, change) = match (design, two) {
        (_, Some(two)) if two.meets => (
            ClaimVerdict::Fails,
            format!(
                "Two servers ({}) carried the load through a loss: the third is not needed at this \
                 load; check the capacity per server the claim assumes.",
                two.label
            ),
        ),
        (Some(design), _) if design.meets => (
            ClaimVerdict::Holds,
            "Three servers carry the load with one lost; keep the headroom the survivors need \
             as the load grows."
                .to_string(),
        ),
        (Some(design), _) if !with_headroom.is_empty() => {
            let names = with_headroom.iter().map(|row| row.label).collect::<Vec<_>>().join(" and ");
            (
                ClaimVerdict::HoldsOnlyWhen(format!(
                    "the servers have headroom beyond the load: three servers of exactly half the \
                     load leave the two survivors of a loss at {:.0}% of capacity, and their p99 \
                     upload latency grew to {:.2} s; {names} kept it within {:.1} s",
                    design.after * 100.0,
                    design.p99 / 1000.0,
                    API_LATENCY_P99_MS_MAX / 1000.0
                )),
                "Size the API fleet so that the servers left after a loss run well below their \
                 capacity: at 10,000 requests per second and 5,000 per server, four servers (or \
                 three of 7,500). A survivor at 100% has no slack for the load's variance, so \
                 its queue and latency grow for as long as the loss lasts; shed load with 429 \
                 (in_flight_max) before the queue grows past the latency the SLA allows, and \
                 take a dead server out of the load balancer within seconds."
                    .to_string(),
            )
        }
        _ => (
            ClaimVerdict::Fails,
            "No design tried met the SLA through the loss of one server: more servers, or faster \
             ones, than tried here are needed."
                .to_string(),
        ),
    };
    Finding { verdict, reason, change }
}

const fn outage(
    key: &'static str,
    pointer: &'static str,
    label: &'static str,
    unit: &'static str,
    stat: Stat,
) -> Figure {
    Figure { key, label, unit, source: Source::Check { check: "availability", pointer, stat } }
}

const API_FIGURES: &[Figure] = &[
    Figure { key: "api_servers", label: "API servers", unit: "", source: Source::NodesWithRole("api") },
    Figure { key: "api_cores", label: "cores per API server", unit: "", source: Source::Knob("/api/cores") },
    Figure {
        key: "uploads_per_s_per_core",
        label: "uploads per second per core",
        unit: "",
        source: Source::Knob("/api/uploads_per_s_per_core"),
    },
    Figure { key: "capacity_per_server", label: "uploads per second one server takes", unit: "", source: Source::Derived },
    Figure { key: "uploaders", label: "uploaders", unit: "", source: Source::Workload("/uploaders") },
    Figure {
        key: "uploads_per_s",
        label: "uploads per second per uploader",
        unit: "",
        source: Source::Workload("/uploads_per_s"),
    },
    Figure { key: "rate_per_s", label: "uploads per second offered", unit: "", source: Source::Derived },
    Figure {
        key: "utilization_before",
        label: "utilization of the servers, all up",
        unit: "fraction",
        source: Source::Derived,
    },
    Figure {
        key: "utilization_after",
        label: "utilization of the servers left after a loss",
        unit: "fraction",
        source: Source::Derived,
    },
    outage("outage_uploads", "/per_fault/0/user_uploads", "uploads begun during the outage", "", Stat::Mean),
    outage(
        "outage_accepted_fraction",
        "/per_fault/0/user_accepted_fraction",
        "uploads begun during the outage and accepted, retries included (the SLA figure; min over seeds)",
        "fraction",
        Stat::Min,
    ),
    outage(
        "outage_tries_ok_fraction",
        "/per_fault/0/ok_fraction",
        "tries answered 202 during the outage (each retry counts)",
        "fraction",
        Stat::Mean,
    ),
    outage(
        "outage_latency_ms_p50",
        "/per_fault/0/user_latency_ms_p50",
        "upload latency during the outage, first try to 202, median",
        "ms",
        Stat::Mean,
    ),
    outage(
        "outage_latency_ms_p99",
        "/per_fault/0/user_latency_ms_p99",
        "upload latency during the outage, p99 (max over seeds)",
        "ms",
        Stat::Max,
    ),
    outage(
        "outage_latency_ms_max",
        "/per_fault/0/user_latency_ms_max",
        "upload latency during the outage, max over seeds",
        "ms",
        Stat::Max,
    ),
];

// ---------------------------------------------------------------------------------------------
// Claim 2: automatic failover meets a 99.9% SLA; manual failover is too slow.

/// The leader faults a month is assumed to bring: one a day (a deploy, a kernel patch, a
/// crashed or replaced machine). The verdict asks which designs ride that many out within
/// the 99.9% budget.
pub const LEADER_FAULTS_PER_30_DAYS_ASSUMED: f64 = 30.0;

fn failover_derive(designs: &mut [DesignFigures]) {
    each(designs, |values| {
        // What one leader fault costs: in the SLA's own measure, the share of enqueues refused
        // spread over the time the workload ran, per leader loss; but at least the median
        // failover, since closed-loop producers waiting out timeouts start fewer enqueues
        // while the queue is down, and the share alone would understate a long outage.
        let refused_share = match (
            get(values, "availability"),
            get(values, "workload_ms"),
            get(values, "leader_losses"),
        ) {
            (Some(availability), Some(workload), Some(losses)) if losses > 0.0 => {
                Some((1.0 - availability) * workload / losses)
            }
            _ => None,
        };
        let downtime_per_fault = match (refused_share, get(values, "failover_ms_p50")) {
            (Some(share), Some(failover)) => Some(share.max(failover)),
            (share, failover) => share.or(failover),
        };
        values.insert("downtime_per_fault_ms".into(), downtime_per_fault);
        values.insert(
            "leader_faults_per_30_days".into(),
            downtime_per_fault
                .filter(|ms| *ms > 0.0)
                .map(|ms| (SLA_BUDGET_30_DAYS_MS / ms).floor()),
        );
    });
}

fn failover_verdict(designs: &[DesignFigures]) -> Finding {
    let budget =
        |design: &DesignFigures| design.values.get("leader_faults_per_30_days").copied().flatten();
    let meets = |design: &DesignFigures| {
        budget(design).is_some_and(|faults| faults >= LEADER_FAULTS_PER_30_DAYS_ASSUMED)
    };
    let describe = |design: &DesignFigures| {
        format!(
            "{} acknowledged {} of enqueues, {} of downtime per leader fault, so a 99.9% month \
             rides out {} leader faults",
            design.label,
            design.values.get("availability").copied().flatten().map_or("-".to_string(), percent),
            design
                .values
                .get("downtime_per_fault_ms")
                .copied()
                .flatten()
                .map_or("-".to_string(), |ms| format!("{:.1} s", ms / 1000.0)),
            budget(design).map_or("-".to_string(), |faults| format!("{faults:.0}")),
        )
    };
    let Some(automatic) = designs.iter().find(|design| design.label == "automatic") else {
        return Finding {
            verdict: ClaimVerdict::Fails,
            reason: "No automatic design was run.".into(),
            change: "-".into(),
        };
    };
    let manual: Vec<&DesignFigures> =
        designs.iter().filter(|design| design.label != "automatic").collect();
    let reason = format!(
        "Two simulated hours with a leader crash every 20 minutes, far more often than the one a \
         day assumed for a month: {}.",
        std::iter::once(automatic)
            .chain(manual.iter().copied())
            .map(describe)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let manual_meeting: Vec<&str> =
        manual.iter().filter(|design| meets(design)).map(|design| design.label.as_str()).collect();
    let (verdict, change) = if !meets(automatic) {
        (
            ClaimVerdict::Fails,
            "Automatic failover alone cannot ride out a leader fault a day within 99.9%: shorten \
             the election timeout or make clients retry across a failover."
                .to_string(),
        )
    } else if manual_meeting.is_empty() {
        (
            ClaimVerdict::Holds,
            "Keep automatic failover. Page an operator for what elections cannot fix (a lost \
             majority), never for routine failover. Clients should retry an enqueue across a \
             failover (the idempotency key makes that safe): a retry that outlasts the election \
             turns a leader fault into latency instead of an error."
                .to_string(),
        )
    } else {
        (
            ClaimVerdict::HoldsOnlyWhen(format!(
                "operators react slower than the manual designs that rode out a fault a day here \
                 ({})",
                manual_meeting.join(", ")
            )),
            "Keep automatic failover; manual failover meets the SLA only with an operator faster \
             than any pager."
                .to_string(),
        )
    };
    Finding { verdict, reason, change }
}

const FAILOVER_FIGURES: &[Figure] = &[
    Figure {
        key: "workload_ms",
        label: "simulated time with enqueues",
        unit: "ms",
        source: Source::WorkloadMs,
    },
    Figure {
        key: "operator_reaction_ms",
        label: "operator reaction (0: automatic)",
        unit: "ms",
        source: Source::Knob("/queue/operator_reaction_ms"),
    },
    Figure {
        key: "enqueues",
        label: "enqueues",
        unit: "",
        source: Source::Check {
            check: "fault_availability",
            pointer: "/all/enqueues",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "availability",
        label: "enqueues acknowledged (the SLA figure)",
        unit: "fraction",
        source: Source::Check {
            check: "fault_availability",
            pointer: "/all/fraction",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "leader_losses",
        label: "leader losses",
        unit: "",
        source: Source::Check { check: "failover", pointer: "/leader_losses", stat: Stat::Mean },
    },
    Figure {
        key: "failover_ms_p50",
        label: "failover, median",
        unit: "ms",
        source: Source::Check { check: "failover", pointer: "/failover_ms_p50", stat: Stat::Mean },
    },
    Figure {
        key: "failover_ms_max",
        label: "failover, max over seeds",
        unit: "ms",
        source: Source::Check { check: "failover", pointer: "/failover_ms_max", stat: Stat::Max },
    },
    Figure {
        key: "downtime_per_fault_ms",
        label: "downtime per leader fault: the larger of the median failover and enqueues \
                refused x time / leader losses",
        unit: "ms",
        source: Source::Derived,
    },
    Figure {
        key: "leader_faults_per_30_days",
        label: "leader faults a 99.9% month rides out (43.2 min / downtime per fault)",
        unit: "",
        source: Source::Derived,
    },
];

// ---------------------------------------------------------------------------------------------
// Claim 3: the queue prioritizes consistency.

fn partition_derive(designs: &mut [DesignFigures]) {
    each(designs, |values| {
        let refused = get(values, "partition_acknowledged_fraction").map(|fraction| 1.0 - fraction);
        let refused_count = match (refused, get(values, "partition_enqueues")) {
            (Some(refused), Some(enqueues)) => Some((refused * enqueues).round()),
            _ => None,
        };
        values.insert("partition_refused_fraction".into(), refused);
        values.insert("partition_refused".into(), refused_count);
    });
}

fn partition_verdict(designs: &[DesignFigures]) -> Finding {
    let cp_lost = value(designs, "cp", "acknowledged_lost_max").unwrap_or(0.0);
    let lossy_lost =
        value(designs, "ack-before-replication", "acknowledged_lost_max").unwrap_or(0.0);
    let cp_refused = value(designs, "cp", "partition_refused_fraction");
    let lossy_refused = value(designs, "ack-before-replication", "partition_refused_fraction");
    let lossy_lost_mean =
        value(designs, "ack-before-replication", "acknowledged_lost").unwrap_or(0.0);
    let reason = format!(
        "During the partition the CP queue refused {} of enqueues and lost {cp_lost:.0} \
         acknowledged ones; acknowledging before replication refused {} and lost up to \
         {lossy_lost:.0} acknowledged enqueues in a run ({lossy_lost_mean:.1} on average).",
        cp_refused.map_or("-".to_string(), percent),
        lossy_refused.map_or("-".to_string(), percent),
    );
    let (verdict, change) = if cp_lost > 0.0 {
        (
            ClaimVerdict::Fails,
            "The CP queue lost acknowledged jobs: it does not deliver the consistency it pays \
             for. Find the lost acknowledgements in the failing seeds' histories."
                .to_string(),
        )
    } else if lossy_lost == 0.0 {
        (
            ClaimVerdict::Fails,
            "Acknowledging before replication lost nothing here, so these faults do not show \
             what consistency buys; test it under longer or more frequent partitions."
                .to_string(),
        )
    } else {
        (
            ClaimVerdict::Holds,
            "Keep the CP queue. The availability the lossy design adds is acknowledgements it \
             later breaks: a customer told \"accepted\" whose job never runs. Make the refusals \
             cheap instead: API servers answer 503 with Retry-After and clients retry with the \
             same idempotency key, so a refused upload is retried, never lost."
                .to_string(),
        )
    };
    Finding { verdict, reason, change }
}

const PARTITION_FIGURES: &[Figure] = &[
    Figure {
        key: "partition_enqueues",
        label: "enqueues started during the partition",
        unit: "",
        source: Source::Check {
            check: "fault_availability",
            pointer: "/per_fault/0/enqueues",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "partition_acknowledged_fraction",
        label: "acknowledged during the partition",
        unit: "fraction",
        source: Source::Check {
            check: "fault_availability",
            pointer: "/per_fault/0/fraction",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "partition_refused_fraction",
        label: "refused during the partition",
        unit: "fraction",
        source: Source::Derived,
    },
    Figure {
        key: "partition_refused",
        label: "enqueues refused during the partition",
        unit: "",
        source: Source::Derived,
    },
    Figure {
        key: "enqueues",
        label: "enqueues started, whole run (producers wait out timeouts)",
        unit: "",
        source: Source::Check {
            check: "fault_availability",
            pointer: "/all/enqueues",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "acknowledged_enqueues",
        label: "enqueues acknowledged, whole run",
        unit: "",
        source: Source::Check {
            check: "durability",
            pointer: "/acknowledged_enqueues",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "acknowledged_lost",
        label: "acknowledged enqueues lost (job id reused, or never finished)",
        unit: "",
        source: Source::Check {
            check: "durability",
            pointer: "/acknowledged_lost",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "acknowledged_lost_max",
        label: "acknowledged enqueues lost, max over seeds",
        unit: "",
        source: Source::Check {
            check: "durability",
            pointer: "/acknowledged_lost",
            stat: Stat::Max,
        },
    },
];

// ---------------------------------------------------------------------------------------------
// Claim 4: a poison pill crashes every replica; P^N is not the availability of N replicas.

/// The design whose workers crash independently: its per-worker down fraction is the P of
/// the P^N argument, a node's failure rate without a common cause.
const CONTROL: &str = "independent-crashes";

fn pill_derive(designs: &mut [DesignFigures]) {
    each(designs, |values| {
        let observed = get(values, "observed_ms");
        values.insert(
            "worker_down_fraction".into(),
            ratio(get(values, "worker_down_ms_mean"), observed),
        );
        values.insert("fleet_down_fraction".into(), ratio(get(values, "fleet_down_ms"), observed));
    });
    let control = designs.iter().find(|design| design.label == CONTROL);
    let p = control.and_then(|design| design.values.get("worker_down_fraction").copied().flatten());
    for design in designs.iter_mut() {
        let predicted = match (p, get(&design.values, "workers")) {
            (Some(p), Some(workers)) => Some(p.powf(workers)),
            _ => None,
        };
        let fleet = get(&design.values, "fleet_down_fraction");
        design.values.insert("fleet_down_predicted".into(), predicted);
        design.values.insert("fleet_down_over_predicted".into(), ratio(fleet, predicted));
    }
}

/// How many times P^N the measured fleet-down time must be for crashes to count as
/// correlated, and within how many times of it independent ones must stay.
pub const CORRELATION_FACTOR: f64 = 10.0;

fn pill_verdict(designs: &[DesignFigures]) -> Finding {
    let workers = value(designs, "no-quarantine", "workers").unwrap_or(0.0);
    let crashes_per_pill = value(designs, "no-quarantine", "crashes_per_job_max").unwrap_or(0.0);
    let predicted = value(designs, CONTROL, "fleet_down_predicted").unwrap_or(0.0);
    let p = value(designs, CONTROL, "worker_down_fraction").unwrap_or(0.0);
    let pill_fleet = value(designs, "no-quarantine", "fleet_down_fraction").unwrap_or(0.0);
    let quarantine_fleet = value(designs, "quarantine", "fleet_down_fraction").unwrap_or(0.0);
    let independent_fleet = value(designs, CONTROL, "fleet_down_fraction").unwrap_or(0.0);
    let quarantine_crashes = value(designs, "quarantine", "crashes_per_job_max").unwrap_or(0.0);
    let max_attempts = value(designs, "quarantine", "max_attempts").unwrap_or(0.0);
    let crashes_all = workers > 0.0 && crashes_per_pill >= workers;
    let floor = predicted.max(1e-6);
    let correlated = pill_fleet >= CORRELATION_FACTOR * floor;
    let independent_near = independent_fleet <= CORRELATION_FACTOR * floor;
    let times = |fleet: f64| format!("{:.0}x", fleet / floor);
    let reason = format!(
        "Crashed independently, a worker was down P = {} of the time and all {workers:.0} at once \
         {}, against P^N = {}. Without quarantine one pill crashed workers up to \
         {crashes_per_pill:.0} times and the fleet was down {} of the time, {} P^N; with \
         quarantine after {max_attempts:.0} attempts a pill crashed up to \
         {quarantine_crashes:.0} workers and the fleet was still down {}, {} P^N.",
        percent(p),
        percent(independent_fleet),
        percent(predicted),
        percent(pill_fleet),
        times(pill_fleet),
        percent(quarantine_fleet),
        times(quarantine_fleet),
    );
    let verdict = if crashes_all && correlated && independent_near {
        ClaimVerdict::Holds
    } else {
        ClaimVerdict::Fails
    };
    let change = format!(
        "Keep the quarantine, and do not count on replicas against a pill: every worker runs the \
         same decoder on the same input, so {max_attempts:.0} attempts are {max_attempts:.0} \
         crashes on {workers:.0} workers and the fleet still goes down. Decode in a sandbox (a \
         child process with its own memory limit) so a pill kills the sandbox, not the worker; \
         quarantine a job after its first crash (max_attempts below the number of workers); and \
         state fleet availability from measured correlated failures, never as P^N."
    );
    Finding { verdict, reason, change }
}

const PILL_FIGURES: &[Figure] = &[
    Figure {
        key: "workers",
        label: "workers",
        unit: "",
        source: Source::Check { check: "pill_quarantine", pointer: "/workers", stat: Stat::Max },
    },
    Figure {
        key: "max_attempts",
        label: "max_attempts (quarantine after)",
        unit: "",
        source: Source::Check {
            check: "pill_quarantine",
            pointer: "/max_attempts",
            stat: Stat::Max,
        },
    },
    Figure {
        key: "worker_crashes",
        label: "worker crashes a job caused",
        unit: "",
        source: Source::Check {
            check: "pill_quarantine",
            pointer: "/worker_crashes",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "crashes_per_job_max",
        label: "most crashes one job caused (max over seeds)",
        unit: "",
        source: Source::Check {
            check: "pill_quarantine",
            pointer: "/crashes_per_job_max",
            stat: Stat::Max,
        },
    },
    Figure {
        key: "observed_ms",
        label: "time observed",
        unit: "ms",
        source: Source::Check {
            check: "pill_quarantine",
            pointer: "/observed_ms",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "worker_down_ms_mean",
        label: "one worker down",
        unit: "ms",
        source: Source::Check {
            check: "pill_quarantine",
            pointer: "/worker_down_ms_mean",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "fleet_down_ms",
        label: "every worker down at once",
        unit: "ms",
        source: Source::Check {
            check: "pill_quarantine",
            pointer: "/fleet_down_ms",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "worker_down_fraction",
        label: "P: one worker down",
        unit: "fraction",
        source: Source::Derived,
    },
    Figure {
        key: "fleet_down_predicted",
        label: "P^N, with P one worker's down fraction under independent crashes",
        unit: "fraction",
        source: Source::Derived,
    },
    Figure {
        key: "fleet_down_fraction",
        label: "fleet down, measured",
        unit: "fraction",
        source: Source::Derived,
    },
    Figure {
        key: "fleet_down_over_predicted",
        label: "measured / P^N",
        unit: "",
        source: Source::Derived,
    },
    Figure {
        key: "upload_ok_fraction",
        label: "uploads accepted",
        unit: "fraction",
        source: Source::Check { check: "availability", pointer: "/ok_fraction", stat: Stat::Mean },
    },
    Figure {
        key: "jobs_unfinished",
        label: "accepted jobs never finished",
        unit: "",
        source: Source::Check { check: "jobs_complete", pointer: "/unfinished", stat: Stat::Mean },
    },
];

// ---------------------------------------------------------------------------------------------
// Claim 5: edge-cached identity favours availability; its price as a function of the TTL.

/// The management plane's outage in the claim's scenario (a fault window of the file).
pub const AUTH_OUTAGE_MS: u64 = 15_000;

fn auth_verdict(designs: &[DesignFigures]) -> Finding {
    let mut rows: Vec<(f64, f64, Option<f64>, Option<f64>)> = designs
        .iter()
        .filter_map(|design| {
            let ttl = design.values.get("ttl_ms").copied().flatten()?;
            let available = design.values.get("cut_ok_fraction").copied().flatten()?;
            let bound = design.values.get("revocation_bound_ms").copied().flatten();
            let working = design.values.get("revoked_key_working_ms_max").copied().flatten();
            Some((ttl, available, bound, working))
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let meeting: Vec<&(f64, f64, Option<f64>, Option<f64>)> =
        rows.iter().filter(|row| row.1 >= SLA).collect();
    let listing = rows
        .iter()
        .map(|(ttl, available, bound, _)| {
            format!(
                "TTL {:.0} s: {} accepted, revocation bound {}",
                ttl / 1000.0,
                percent(*available),
                bound.map_or("-".to_string(), |bound| format!("{:.0} s", bound / 1000.0))
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let reason = format!(
        "With the management plane cut off from every API server for {:.0} s, the uploads \
         begun during the cut (retries included, on the worst seed): {listing}.",
        AUTH_OUTAGE_MS as f64 / 1000.0
    );
    let (verdict, change) = match (meeting.first(), meeting.len() == rows.len()) {
        (None, _) => (
            ClaimVerdict::Fails,
            "No TTL tried keeps the data plane up through the outage: a longer TTL, or serving \
             known keys past the TTL while the plane is unreachable, is needed for the availability \
             the design claims."
                .to_string(),
        ),
        (Some(_), true) => (
            ClaimVerdict::Holds,
            "Nothing for availability; state the price in the design: a revoked key keeps working \
             up to TTL plus one refresh timeout while the plane is unreachable."
                .to_string(),
        ),
        (Some(first), false) => (
            ClaimVerdict::HoldsOnlyWhen(format!(
                "the cache's TTL outlasts the management plane's outage (here a TTL of {:.0} s or more \
                 for a {:.0} s outage)",
                first.0 / 1000.0,
                AUTH_OUTAGE_MS as f64 / 1000.0
            )),
            format!(
                "Choose the TTL from the longest management-plane outage to ride out, not from \
                 freshness, and state its price: a revoked key keeps working for up to the TTL plus \
                 one refresh timeout ({} at the smallest TTL that held). Brand-new keys wait for the \
                 plane whatever the TTL. If that revocation window is too long, keep the TTL short \
                 for revocations but let the cache go on accepting known, unrevoked keys while the \
                 plane is unreachable (a separate, longer stale-serving bound).",
                first.2.map_or("-".to_string(), |bound| format!("{:.0} s", bound / 1000.0))
            ),
        ),
    };
    Finding { verdict, reason, change }
}

const AUTH_FIGURES: &[Figure] = &[
    Figure { key: "ttl_ms", label: "cache TTL", unit: "ms", source: Source::Knob("/auth/ttl_ms") },
    Figure {
        key: "cut_ok_fraction",
        label: "uploads begun during the cut and accepted, retries included (the SLA figure; min \
                over seeds)",
        unit: "fraction",
        source: Source::Check {
            check: "availability",
            pointer: "/per_fault/0/user_accepted_fraction",
            stat: Stat::Min,
        },
    },
    Figure {
        key: "cut_tries_ok_fraction",
        label: "tries answered 202 during the cut (each retry counts)",
        unit: "fraction",
        source: Source::Check {
            check: "availability",
            pointer: "/per_fault/0/ok_fraction",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "ok_fraction",
        label: "uploads accepted, retries included, whole run",
        unit: "fraction",
        source: Source::Check {
            check: "availability",
            pointer: "/user_accepted_fraction",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "new_key_delay_ms_max",
        label: "new-key delay, max over seeds",
        unit: "ms",
        source: Source::Check {
            check: "auth_keys",
            pointer: "/new_key_delay_ms_max",
            stat: Stat::Max,
        },
    },
    Figure {
        key: "revocation_bound_ms",
        label: "revocation bound (TTL + refresh timeout)",
        unit: "ms",
        source: Source::Check {
            check: "auth_keys",
            pointer: "/revocation_bound_ms",
            stat: Stat::Max,
        },
    },
    Figure {
        key: "revoked_key_working_ms_max",
        label: "a revoked key kept working, max over seeds",
        unit: "ms",
        source: Source::Check {
            check: "auth_keys",
            pointer: "/revoked_key_working_ms_max",
            stat: Stat::Max,
        },
    },
    Figure {
        key: "revocation_lag_ms_max",
        label: "revocation lag until refused (401/403), max over seeds",
        unit: "ms",
        source: Source::Check {
            check: "auth_keys",
            pointer: "/revocation_lag_ms_max",
            stat: Stat::Max,
        },
    },
];

// ---------------------------------------------------------------------------------------------
// Claim 6: usage aggregated locally and shipped in batches.

const USAGE_FIGURES: &[Figure] = &[
    Figure {
        key: "flush_interval_ms",
        label: "shipped every",
        unit: "ms",
        source: Source::Knob("/usage/flush_interval_ms"),
    },
    billing_mean("served", "/served", "jobs served (answered 202, new)"),
    billing_mean("billed", "/billed", "jobs billed"),
    billing_mean(
        "store_writes_per_request",
        "/store_writes_per_request",
        "store writes per request counted",
    ),
    billing_mean(
        "writers_replaced",
        "/writers_replaced",
        "API crashes that lost a writer's totals",
    ),
    billing_mean("lost", "/lost", "jobs served, never billed (lost at a crash)"),
    billing_mean("lost_per_crash", "/lost_per_crash", "jobs lost per such crash"),
    Figure {
        key: "lost_per_crash_max",
        label: "most jobs one crash lost, max over seeds",
        unit: "",
        source: Source::Check { check: "billing", pointer: "/lost_per_crash_max", stat: Stat::Max },
    },
    Figure {
        key: "lost_max",
        label: "jobs lost in a run, max over seeds",
        unit: "",
        source: Source::Check { check: "billing", pointer: "/lost", stat: Stat::Max },
    },
    billing_mean(
        "duplicates_never_counted",
        "/duplicates_never_counted",
        "jobs served whose first answer was lost and whose retry, a duplicate, was never counted",
    ),
];

/// A figure of the `billing` check at `pointer`, combined by its mean.
const fn billing_mean(key: &'static str, pointer: &'static str, label: &'static str) -> Figure {
    Figure {
        key,
        label,
        unit: "",
        source: Source::Check { check: "billing", pointer, stat: Stat::Mean },
    }
}

fn usage_verdict(designs: &[DesignFigures]) -> Finding {
    let figure = |label: &str, key: &str| value(designs, label, key);
    let writes = |label: &str| figure(label, "store_writes_per_request");
    let (logged_lost, unlogged_lost) =
        (figure("log", "lost_max").unwrap_or(0.0), figure("no-log", "lost").unwrap_or(0.0));
    let unanswered = designs
        .iter()
        .filter_map(|design| get(&design.values, "duplicates_never_counted"))
        .fold(0.0, f64::max);
    let reason = format!(
        "Two API servers crash between flushes. Shipping every 2 s took {} store writes per \
         request counted, against {} shipping every 10 ms (about a write per request). With \
         the log the bill missed {logged_lost:.0} jobs on any seed; without it each crash lost \
         {} jobs on average ({} at most), {unlogged_lost:.1} per run.",
        writes("log").map_or("-".into(), |w| format!("{w:.3}")),
        writes("flush-10ms").map_or("-".into(), |w| format!("{w:.3}")),
        figure("no-log", "lost_per_crash").map_or("-".into(), |l| format!("{l:.1}")),
        figure("no-log", "lost_per_crash_max").map_or("-".into(), |l| format!("{l:.0}")),
    );
    let batching_pays = matches!(
        (writes("log"), writes("flush-10ms")),
        (Some(batched), Some(per_request)) if batched * 2.0 <= per_request
    );
    let counting_gap = if unanswered > 0.0 {
        format!(
            " Also, whatever the log: up to {unanswered:.1} jobs a run (mean over seeds) were \
             served but never billed, because the first answer to the upload was lost, the \
             retry was answered as a duplicate, and servers count only new jobs. Count where a \
             job is created exactly once (the queue's enqueue, or the worker's acknowledged \
             completion) to close that gap."
        )
    } else {
        String::new()
    };
    let (verdict, change) = if logged_lost > 0.0 {
        (
            ClaimVerdict::Fails,
            "The logged design lost usage: find the unbilled jobs in the failing seeds.".into(),
        )
    } else if !batching_pays {
        (
            ClaimVerdict::Fails,
            "Batching saved less than half the store writes here: at this load a write per \
             request costs little more; revisit the flush interval."
                .to_string(),
        )
    } else if unlogged_lost > 0.0 {
        (
            ClaimVerdict::HoldsOnlyWhen(
                "each API server logs its counts durably before answering".into(),
            ),
            format!(
                "Keep local aggregation, and keep the usage log on: without it every crash \
                 loses what the server had not shipped, up to a flush interval of its traffic \
                 (a lower interval loses less and writes more).{counting_gap}"
            ),
        )
    } else {
        (ClaimVerdict::Holds, format!("Keep local aggregation.{counting_gap}"))
    };
    Finding { verdict, reason, change }
}

// ---------------------------------------------------------------------------------------------
// Claim 7: capacity: cores = requests per second / conversions per second per core.

/// The job latency (acceptance to thumbnail, p99) a design must stay within, burst included,
/// to count as keeping up.
pub const CAPACITY_LATENCY_P99_MS_MAX: f64 = 10_000.0;

fn capacity_derive(designs: &mut [DesignFigures]) {
    each(designs, |values| {
        let cores = product(get(values, "cores_per_worker"), get(values, "workers"));
        // The steady rate the uploaders offer, the burst apart.
        let rate = product(get(values, "uploaders"), get(values, "uploads_per_s"));
        let needed = ratio(rate, get(values, "conversions_per_s_per_core"));
        values.insert("cores".into(), cores);
        values.insert("rate_per_s".into(), rate);
        values.insert("cores_needed".into(), needed.map(f64::ceil));
    });
}

fn capacity_verdict(designs: &[DesignFigures]) -> Finding {
    let mut rows: Vec<(f64, f64, f64, f64)> = designs
        .iter()
        .filter_map(|design| {
            let values = &design.values;
            Some((
                get(values, "cores")?,
                get(values, "cores_needed")?,
                get(values, "job_latency_ms_p99")?,
                get(values, "backlog_max")?,
            ))
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let keeps_up = |row: &&(f64, f64, f64, f64)| row.2 <= CAPACITY_LATENCY_P99_MS_MAX;
    let listing = rows
        .iter()
        .map(|(cores, needed, p99, backlog)| {
            format!(
                "{cores:.0} cores (rate / conversions asks {needed:.0}): p99 job latency {:.1} s, \
                 backlog up to {backlog:.0} jobs",
                p99 / 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let reason = format!("Through a 5 s burst at twice the rate: {listing}.");
    let exact = rows.iter().find(|row| row.0 >= row.1);
    let first_keeping_up = rows.iter().find(keeps_up);
    let (verdict, change) = match (exact, first_keeping_up) {
        (_, None) => (
            ClaimVerdict::Fails,
            "No core count tried kept up: the cost model or the pipeline around it is slower than \
             rate / conversions says; measure the workers' real throughput."
                .to_string(),
        ),
        (Some(exact), Some(first)) if first.0 <= exact.0 => (
            ClaimVerdict::Holds,
            "rate / conversions cores suffice, burst included; keep a margin for a worker lost."
                .to_string(),
        ),
        (_, Some(first)) => {
            let needed = exact.map_or(first.1, |row| row.1);
            (
                ClaimVerdict::HoldsOnlyWhen(format!(
                    "the fleet has headroom over rate / conversions: {needed:.0} cores fall behind \
                     a burst and never catch up while the load lasts, {:.0} cores ({:.0}% more) \
                     kept the p99 job latency within {:.0} s",
                    first.0,
                    (first.0 / needed - 1.0) * 100.0,
                    CAPACITY_LATENCY_P99_MS_MAX / 1000.0
                )),
                format!(
                    "Size the workers for the bursts, not the mean: at 10,000 requests per second, \
                     1,000 cores carry the mean and no more; with {:.0}% more the backlog of a \
                     doubled rate drains in seconds. Scale on queue depth, and bound the queue \
                     (max_jobs) so a burst past the headroom is refused at the API, not queued \
                     for minutes.",
                    (first.0 / needed - 1.0) * 100.0
                ),
            )
        }
    };
    Finding { verdict, reason, change }
}

const CAPACITY_FIGURES: &[Figure] = &[
    Figure { key: "workers", label: "workers", unit: "", source: Source::NodesWithRole("worker") },
    Figure {
        key: "cores_per_worker",
        label: "cores per worker",
        unit: "",
        source: Source::Knob("/worker/cores"),
    },
    Figure {
        key: "conversions_per_s_per_core",
        label: "conversions per second per core",
        unit: "",
        source: Source::Knob("/worker/conversions_per_s_per_core"),
    },
    Figure { key: "cores", label: "cores", unit: "", source: Source::Derived },
    Figure {
        key: "uploaders",
        label: "uploaders",
        unit: "",
        source: Source::Workload("/uploaders"),
    },
    Figure {
        key: "uploads_per_s",
        label: "uploads per second per uploader, outside the burst",
        unit: "",
        source: Source::Workload("/uploads_per_s"),
    },
    Figure {
        key: "rate_per_s",
        label: "uploads per second offered",
        unit: "",
        source: Source::Derived,
    },
    Figure {
        key: "cores_needed",
        label: "cores needed: rate / conversions per core",
        unit: "",
        source: Source::Derived,
    },
    Figure {
        key: "accepted",
        label: "uploads accepted",
        unit: "",
        source: Source::Check { check: "jobs_complete", pointer: "/accepted", stat: Stat::Mean },
    },
    Figure {
        key: "backlog_max",
        label: "backlog: jobs accepted, not yet finished, at most (max over seeds)",
        unit: "",
        source: Source::Check { check: "jobs_complete", pointer: "/backlog_max", stat: Stat::Max },
    },
    Figure {
        key: "job_latency_ms_p50",
        label: "job latency, acceptance to thumbnail, median",
        unit: "ms",
        source: Source::Check {
            check: "jobs_complete",
            pointer: "/job_latency_ms_p50",
            stat: Stat::Mean,
        },
    },
    Figure {
        key: "job_latency_ms_p99",
        label: "job latency, p99 (max over seeds)",
        unit: "ms",
        source: Source::Check {
            check: "jobs_complete",
            pointer: "/job_latency_ms_p99",
            stat: Stat::Max,
        },
    },
    Figure {
        key: "job_latency_ms_max",
        label: "job latency, max over seeds",
        unit: "ms",
        source: Source::Check {
            check: "jobs_complete",
            pointer: "/job_latency_ms_max",
            stat: Stat::Max,
        },
    },
    Figure {
        key: "upload_ok_fraction",
        label: "share of uploads answered 202",
        unit: "fraction",
        source: Source::Check { check: "availability", pointer: "/ok_fraction", stat: Stat::Mean },
    },
];

/// Every claim the review tests, in order.
pub const CLAIMS: &[Claim] = &[
    Claim {
        number: 1,
        name: "api-servers",
        title: "At least three API servers, plus headroom",
        quote: "We need at least three servers [plus headroom]. They handle the 10k RPS load with \
                5k RPS per server.",
        scenarios_text: "The whole service at a hundredth of the scale: 100 uploads per second, \
                         open loop (each upload starts on time whatever the earlier ones are \
                         doing), where the design has 10,000; API servers of 50 uploads per second \
                         each (2 cores, an upload holding one for 40 ms; the `api` knobs `cores` \
                         and `uploads_per_s_per_core`), where the design has 5,000. One API server \
                         is killed at 10 s, at full load, and stays down for 30 s; clients leave a \
                         server they could not connect to out of their choices for 5 s, as a load \
                         balancer's passive health check would. Three servers, the design, against \
                         two, and against two forms of headroom: three servers of 75 uploads per \
                         second, and a fourth server.",
        scenarios: &[
            ScenarioRef { file: "scenarios/review/api-servers.json", label: "3-servers" },
            ScenarioRef { file: "scenarios/review/api-servers-2.json", label: "2-servers" },
            ScenarioRef { file: "scenarios/review/api-servers-4.json", label: "4-servers" },
        ],
        seeds: 2,
        figures: API_FIGURES,
        derive: api_derive,
        charts: &[
            Chart {
                title: "Uploads begun while a server was down, accepted (retries included)",
                y_label: "fraction",
                figures: &["outage_accepted_fraction"],
            },
            Chart {
                title: "Upload latency while a server was down",
                y_label: "ms",
                figures: &["outage_latency_ms_p50", "outage_latency_ms_p99"],
            },
        ],
        rule: "A design meets the SLA through the loss of a server when, of the uploads begun \
               while it is down, at least 99.9% are accepted (the client's retries included) on \
               every seed and their p99 latency, first try to 202, stays within 0.5 s. Holds when \
               three servers of exactly half the load meet it and two servers do not; holds only \
               when some design with headroom (the servers left after a loss below 100% \
               utilization) meets it if three servers of half the load do not; fails when two \
               servers meet it (the third is not needed) or no design does.",
        verdict: api_verdict,
    },
    Claim {
        number: 2,
        name: "failover",
        title: "Automatic failover meets a 99.9% SLA; manual failover is too slow",
        quote: "We must automate leader election and failover using Paxos or Raft to meet high \
                availability. Manual failover is too slow to meet a 99.9% SLA.",
        scenarios_text: "A three-node Raft queue under a steady trickle of enqueues (2 per second, \
                         each retried up to 3 times with a 1 s timeout) for two simulated hours, its \
                         leader crashed for a minute every 20 minutes: six leader faults. Automatic \
                         failover (Raft elections) against manual failover, an operator promoting a \
                         node 5 or 15 minutes after the leader went silent (the `queue` knob \
                         `operator_reaction_ms`).",
        scenarios: &[ScenarioRef { file: "scenarios/review/failover.json", label: "automatic" }],
        seeds: 2,
        figures: FAILOVER_FIGURES,
        derive: failover_derive,
        charts: &[
            Chart {
                title: "Enqueues acknowledged over two hours with six leader crashes",
                y_label: "fraction",
                figures: &["availability"],
            },
            Chart {
                title: "Failover time per leader fault",
                y_label: "ms",
                figures: &["failover_ms_p50", "failover_ms_max"],
            },
        ],
        rule: "A design meets a 99.9% SLA when the 30-day error budget (43.2 minutes) divided by \
               its measured downtime per leader fault (the larger of the median failover and the \
               share of enqueues refused times the time over the leader losses) covers at least 30 leader faults, one a day. Holds \
               when automatic failover meets it and no manual design does; fails when automatic \
               failover does not; holds only when operators are slower than a manual design that \
               met it otherwise.",
        verdict: failover_verdict,
    },
    Claim {
        number: 3,
        name: "queue-consistency",
        title: "The queue prioritizes consistency",
        quote: "We must choose between consistency and availability according to the CAP theorem. \
                Most queues prioritize consistency [FIFO ordering].",
        scenarios_text: "A three-node queue with producers and workers on two client nodes; for 10 s \
                         the leader and one client node are cut off from the rest. The CP queue \
                         (acknowledge once a majority has it, step down without a majority) against \
                         the available-but-lossy alternative (the `queue` knob \
                         `ack_before_replication`: acknowledge once in the leader's own log, keep \
                         leading on the minority side).",
        scenarios: &[ScenarioRef { file: "scenarios/review/queue-partition.json", label: "cp" }],
        seeds: 3,
        figures: PARTITION_FIGURES,
        derive: partition_derive,
        charts: &[Chart {
            title: "During the partition: refused against acknowledged",
            y_label: "fraction of enqueues",
            figures: &["partition_refused_fraction", "partition_acknowledged_fraction"],
        },
        Chart {
            title: "Acknowledged enqueues lost",
            y_label: "enqueues",
            figures: &["acknowledged_lost", "acknowledged_lost_max"],
        }],
        rule: "Holds when the CP queue loses no acknowledged enqueue on any seed while the \
               lossy alternative loses at least one: what CP refuses is then the price of never \
               breaking an acknowledgement. Fails when the CP queue loses one, or when the \
               alternative loses none (the faults then show no reason to pay for consistency).",
        verdict: partition_verdict,
    },
    Claim {
        number: 4,
        name: "poison-pill",
        title: "A poison pill crashes them all; P^N is not the availability of N replicas",
        quote: "There's a common mathematical argument for reliability. If a node has a probability \
                $P$ of failure, and you have $N$ replicas, the probability of total failure is $P^N$. \
                [...] A specific poison pill request crashes one kernel. It'll likely crash them all.",
        scenarios_text: "Three resize workers under a steady stream of uploads, about one in a \
                         hundred a pill that crashes any worker that decodes it: the queue \
                         quarantining a job after 3 attempts (dead letter) against no quarantine. \
                         The control: the same workers and load with no pill, each worker crashed at \
                         independent random times (a swarm of crash faults). P, one worker's down \
                         fraction in the control, gives P^N, the fleet-down fraction independence \
                         predicts; each design's measured fleet-down fraction is set against it.",
        scenarios: &[
            ScenarioRef { file: "scenarios/review/pill.json", label: "quarantine" },
            ScenarioRef {
                file: "scenarios/review/independent-crashes.json",
                label: "independent-crashes",
            },
        ],
        seeds: 3,
        figures: PILL_FIGURES,
        derive: pill_derive,
        charts: &[
            Chart {
                title: "Fleet down: measured against P^N",
                y_label: "fraction of the run",
                figures: &["fleet_down_fraction", "fleet_down_predicted"],
            },
            Chart {
                title: "Uploads accepted",
                y_label: "fraction",
                figures: &["upload_ok_fraction"],
            },
        ],
        rule: "P is one worker's down fraction when workers crash independently (the control). \
               Holds when, without quarantine, one pill crashes at least as many workers as there \
               are (most crashes one job caused >= workers) and keeps the whole fleet down at \
               least 10x P^N of the time, while the independently crashed fleet stays within 10x \
               P^N. Otherwise it fails.",
        verdict: pill_verdict,
    },
    Claim {
        number: 5,
        name: "edge-identity",
        title: "Edge-cached identity favours availability; its price is a function of the TTL",
        quote: "We decouple the management plane from the data plane. We cache identity data at the \
                edge. This favors availability over consistency, but the system must remain fast. \
                [a new user might have to wait a few seconds before his credentials work]",
        scenarios_text: "The whole service (3 API servers, the auth management plane, the queue, 2 \
                         workers) with key rotation every 4 s; from 5 s to 20 s the management plane \
                         is cut off from every API server (it still reaches the admin). The same run \
                         with the identity cache's TTL at 2, 5, 10 and 30 s. A key created during the \
                         cut waits for its end whatever the TTL. The admin's rotation waits for its \
                         new key to work before it revokes, so no revocation falls inside the cut: \
                         the price in revocations is the bound the auth_keys check enforces (TTL plus \
                         one refresh timeout; no seed accepted a revoked key beyond it), not a \
                         measured lag.",
        scenarios: &[ScenarioRef { file: "scenarios/review/auth-ttl.json", label: "ttl-2s" }],
        seeds: 3,
        figures: AUTH_FIGURES,
        derive: no_derived,
        charts: &[
            Chart {
                title: "Uploads begun during the 15 s cut and accepted, by TTL (min over seeds)",
                y_label: "fraction",
                figures: &["cut_ok_fraction"],
            },
            Chart {
                title: "The price: how long a revoked key may work, by TTL",
                y_label: "ms",
                figures: &["revocation_bound_ms", "revoked_key_working_ms_max", "new_key_delay_ms_max"],
            },
        ],
        rule: "Per TTL, the data plane is available when at least 99.9% of uploads started during \
               the cut are accepted. Holds when every TTL tried is available, fails when none is, \
               and otherwise holds only when the TTL is at least the smallest available one.",
        verdict: auth_verdict,
    },
    Claim {
        number: 6,
        name: "usage-batching",
        title: "Usage aggregated locally and shipped in batches",
        quote: "Perform local aggregation of logs on the API servers, then ship them in batches to \
                an eventually consistent store. Use a MapReduce or batch-processing system to \
                aggregate this data for billing and move raw records to cold storage.",
        scenarios_text: "The whole service with its usage pipeline (three store nodes, N=3, R=W=2, \
                         sloppy quorum; a billing job mapping over key ranges into a cold-storage \
                         archive); api-1 crashes for 8 s and api-2 for 3 s, between flushes. The \
                         design (counts logged and fsynced before each 202, shipped every 2 s) \
                         against no log, and against shipping every 10 ms, about a store write per \
                         request. The billing check names, job by job, what was billed against \
                         what was served.",
        scenarios: &[ScenarioRef { file: "scenarios/usage-api-crash-log-on.json", label: "log" }],
        seeds: 3,
        figures: USAGE_FIGURES,
        derive: no_derived,
        charts: &[
            Chart {
                title: "Store writes per request counted",
                y_label: "writes per request",
                figures: &["store_writes_per_request"],
            },
            Chart {
                title: "Jobs served but never billed, per run",
                y_label: "jobs",
                figures: &["lost", "duplicates_never_counted"],
            },
        ],
        rule: "Holds when shipping in batches takes at most half the store writes of shipping \
               about once per request, and the logged design bills every job served on every \
               seed; holds only with the log when the unlogged design loses jobs at its crashes. \
               Fails when the logged design loses a job, or batching saves less than half.",
        verdict: usage_verdict,
    },
    Claim {
        number: 7,
        name: "capacity",
        title: "Capacity: cores = requests per second / conversions per second per core",
        quote: "100,000 users; 10,000 requests per second (RPS) per region -> an average image is \
                256KB. A single CPU core handles 10 conversions per second. [...] We need a buffer \
                because there's a scale discrepancy between the fast API servers and the slower \
                processing cores.",
        scenarios_text: "The whole service at a hundredth of the scale: 100 uploads per second \
                         where the design has 10,000, five workers at 10 conversions per second per \
                         core (the design's figure for a 256 KB image; the cost model charges it \
                         whatever the image's size), the queue as the buffer; from 10 s to 15 s a \
                         burst doubles the rate. Five, ten (exactly rate / conversions) and fifteen \
                         cores.",
        scenarios: &[ScenarioRef { file: "scenarios/review/capacity.json", label: "10-cores" }],
        seeds: 2,
        figures: CAPACITY_FIGURES,
        derive: capacity_derive,
        charts: &[
            Chart {
                title: "Job latency, acceptance to thumbnail, by cores",
                y_label: "ms",
                figures: &["job_latency_ms_p50", "job_latency_ms_p99"],
            },
            Chart {
                title: "Backlog at its largest, by cores",
                y_label: "jobs",
                figures: &["backlog_max"],
            },
        ],
        rule: "A design keeps up when the p99 job latency (acceptance to thumbnail), the burst \
               included, stays within 10 s. Holds when the design with rate / conversions cores \
               keeps up; holds only when the fleet has more cores than that if only a larger one \
               keeps up; fails when none does.",
        verdict: capacity_verdict,
    },
];

/// The claims `names` selects (all when empty), in review order; an unknown name is an error
/// naming the known ones.
pub fn select_claims(names: &[String]) -> Result<Vec<&'static Claim>, String> {
    if names.is_empty() {
        return Ok(CLAIMS.iter().collect());
    }
    for name in names {
        if !CLAIMS.iter().any(|claim| claim.name == name) {
            let known: Vec<&str> = CLAIMS.iter().map(|claim| claim.name).collect();
            return Err(format!("unknown claim {name:?}; the claims are {}", known.join(", ")));
        }
    }
    Ok(CLAIMS.iter().filter(|claim| names.iter().any(|name| name == claim.name)).collect())
}

/// The command that regenerates the review with these options.
pub fn command(names: &[String], seeds: Option<u64>) -> String {
    let mut command = "cargo run --release -- review".to_string();
    for claim in select_claims(names).unwrap_or_default() {
        if !names.is_empty() {
            command.push_str(&format!(" --claim {}", claim.name));
        }
    }
    if let Some(seeds) = seeds {
        command.push_str(&format!(" --seeds {seeds}"));
    }
    command
}

/// One design of a claim: the scenario (a variant applied), its file, label, description and
/// the knobs its variant overlays.
#[derive(Clone, Debug)]
pub struct Design {
    pub scenario: Scenario,
    pub file: String,
    pub label: String,
    pub description: String,
    pub knobs: String,
}

/// Loads a claim's scenario files (relative to `root`) and expands their variants.
pub fn claim_designs(claim: &Claim, root: &Path) -> Result<Vec<Design>, String> {
    let mut designs = Vec::new();
    for reference in claim.scenarios {
        let scenario =
            crate::load_scenario(&root.join(reference.file)).map_err(|error| error.to_string())?;
        let mut base = scenario.clone();
        base.variants = Vec::new();
        designs.push(Design {
            description: scenario.description.clone(),
            scenario: base,
            file: reference.file.to_string(),
            label: reference.label.to_string(),
            knobs: String::new(),
        });
        for (index, variant) in scenario.variants.iter().enumerate() {
            designs.push(Design {
                scenario: scenario.with_variant(index),
                file: reference.file.to_string(),
                label: variant.name.clone(),
                description: variant.description.clone(),
                knobs: serde_json::to_string(&variant.knobs).expect("knobs serialize"),
            });
        }
    }
    Ok(designs)
}

/// A figure of one run: from every seed's checks (or the knobs), combined over the seeds.
fn read_figure(figure: &Figure, design: &Design, run: &RunSummary) -> Option<f64> {
    match figure.source {
        Source::Derived => None,
        Source::Knob(pointer) => {
            Value::Object(design.scenario.knobs.clone()).pointer(pointer).and_then(Value::as_f64)
        }
        Source::NodesWithRole(role) => Some(design.scenario.names_with_role(role).len() as f64),
        Source::Workload(pointer) => serde_json::to_value(&design.scenario.workload)
            .ok()?
            .pointer(pointer)
            .and_then(Value::as_f64),
        Source::WorkloadMs => {
            let phases = &design.scenario.phases;
            Some((phases.faults_ms + phases.heal_ms) as f64)
        }
        Source::Check { check, pointer, stat } => {
            let values: Vec<f64> = run
                .seeds
                .iter()
                .filter_map(|seed| {
                    let verdict = seed.checks.get(check)?;
                    let figures = serde_json::to_value(&verdict.figures).ok()?;
                    figures.pointer(pointer).and_then(Value::as_f64)
                })
                .collect();
            if values.is_empty() {
                return None;
            }
            Some(match stat {
                Stat::Mean => values.iter().sum::<f64>() / values.len() as f64,
                Stat::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Stat::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            })
        }
    }
}

/// A design's figures from its run (the derived ones follow in [`section`]).
pub fn design_figures(claim: &Claim, design: &Design, run: &RunSummary) -> DesignFigures {
    let values: Values = claim
        .figures
        .iter()
        .filter(|figure| figure.source != Source::Derived)
        .map(|figure| (figure.key.to_string(), read_figure(figure, design, run)))
        .collect();
    DesignFigures {
        design: design.scenario.name.clone(),
        label: design.label.clone(),
        file: design.file.clone(),
        description: design.description.clone(),
        knobs: design.knobs.clone(),
        seeds: run.seeds.len(),
        seeds_failing_a_check: run
            .seeds
            .iter()
            .filter(|seed| seed.outcome == Outcome::Failed)
            .count(),
        values,
    }
}

/// A claim's section from its designs' figures: the rule applied.
pub fn section(claim: &Claim, seeds: &[u64], mut designs: Vec<DesignFigures>) -> Section {
    (claim.derive)(&mut designs);
    let finding = (claim.verdict)(&designs);
    Section {
        number: claim.number,
        name: claim.name.to_string(),
        title: claim.title.to_string(),
        quote: claim.quote.to_string(),
        scenarios_text: claim.scenarios_text.to_string(),
        seeds: seeds.to_vec(),
        figures: claim
            .figures
            .iter()
            .map(|figure| FigureColumn {
                key: figure.key.to_string(),
                label: figure.label.to_string(),
                unit: figure.unit.to_string(),
            })
            .collect(),
        designs,
        charts: claim
            .charts
            .iter()
            .map(|chart| ChartSpec {
                title: chart.title.to_string(),
                y_label: chart.y_label.to_string(),
                figures: chart.figures.iter().map(|key| key.to_string()).collect(),
            })
            .collect(),
        rule: claim.rule.to_string(),
        verdict: finding.verdict,
        reason: finding.reason,
        change: finding.change,
    }
}

/// What `pessimist review` was asked.
#[derive(Clone, Debug, Default)]
pub struct ReviewOptions {
    /// Claim names (all when empty).
    pub claims: Vec<String>,
    /// Seeds per design instead of each claim's own count.
    pub seeds: Option<u64>,
    pub jobs: usize,
}

/// Runs the selected claims' designs and builds the review. Errors are one line (an unknown
/// claim, a scenario file that does not load).
#[cfg(madsim)]
pub fn run_review(options: &ReviewOptions, root: &Path) -> Result<Review, String> {
    if let Some(seeds) = options.seeds {
        if !(1..=SEEDS_MAX).contains(&seeds) {
            return Err(format!("--seeds must be between 1 and {SEEDS_MAX}"));
        }
    }
    let claims = select_claims(&options.claims)?;
    // Every design of every claim, loaded before anything runs, so bad input fails at once.
    let mut plan: Vec<(&Claim, Vec<Design>, Vec<u64>)> = Vec::new();
    for claim in claims {
        let designs = claim_designs(claim, root)?;
        let seeds: Vec<u64> = (1..=options.seeds.unwrap_or(claim.seeds)).collect();
        plan.push((claim, designs, seeds));
    }
    let scenarios: Vec<(Scenario, String)> = plan
        .iter()
        .flat_map(|(_, designs, _)| {
            designs.iter().map(|design| (design.scenario.clone(), design.file.clone()))
        })
        .collect();
    let mut pairs = Vec::new();
    let mut index = 0;
    for (_, designs, seeds) in &plan {
        for _ in designs {
            pairs.extend(seeds.iter().map(|&seed| (index, seed)));
            index += 1;
        }
    }
    let results = crate::sweep::run_pairs(&scenarios, &pairs, options.jobs.max(1), None)?;
    let mut by_design: BTreeMap<usize, Vec<pessimist_sim::summary::SeedSummary>> = BTreeMap::new();
    for (index, summary) in results {
        by_design.entry(index).or_default().push(summary);
    }
    let mut sections = Vec::new();
    let mut index = 0;
    for (claim, designs, seeds) in &plan {
        let mut figures = Vec::new();
        for design in designs {
            let summaries = by_design.remove(&index).unwrap_or_default();
            index += 1;
            let run = RunSummary::new(
                design.scenario.name.clone(),
                design.file.clone(),
                design.scenario.description.clone(),
                design.scenario.checks.heal_ok_fraction_min,
                summaries,
            );
            figures.push(design_figures(claim, design, &run));
        }
        sections.push(section(claim, seeds, figures));
    }
    Ok(Review { command: command(&options.claims, options.seeds), sections })
}

/// Writes `review.md` and `index.html` into `out`.
pub fn write_review(review: &Review, out: &Path) -> Result<(), String> {
    let html = pessimist_reports::review::review_html(review)?;
    std::fs::create_dir_all(out)
        .map_err(|error| format!("{}: cannot create: {error}", out.display()))?;
    for (name, text) in
        [("review.md", pessimist_reports::review::review_markdown(review)), ("index.html", html)]
    {
        let path = out.join(name);
        std::fs::write(&path, text)
            .map_err(|error| format!("{}: cannot write: {error}", path.display()))?;
    }
    Ok(())
}
