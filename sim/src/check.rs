//! Checkers: pure functions from a history to a verdict with its figures.
//!
//! A checker sees nothing but the history. Each returns a [`Verdict`]: whether the promise
//! held, the figures behind the answer, the first violations found (bounded, with enough
//! detail to find them in the history), and the samples of any per-event measure it takes (a
//! [`Distribution`]: a staleness, a delay), which reports pool over seeds and chart.
//!
//! The checkers of each service under test live in its folder (`queue/check.rs`,
//! `service/check.rs`, ...); here are what they share: [`Verdict`] and its [`Status`], a
//! seed's [`Outcome`], [`Distribution`], the history's client [`operations`], phase names,
//! `availability` (the share of operations that succeeded, for any workload) and
//! `lincheck_verdict` (the linearizability engine's verdict with its witness named by events).

use std::collections::BTreeMap;

use pessimist_core::history::{Event, EventKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Violations kept per verdict: enough to act on, bounded so a broken run stays readable.
pub const VIOLATIONS_MAX: usize = 20;

/// What a check concluded about its promise in one run.
///
/// Only `passed` and `failed_as_expected` are evidence that a promise held (or broke where
/// the scenario says it must); `unknown` is a check that could not decide within its
/// deterministic budget and never counts as a pass; `figures` is a measure with no threshold
/// in this scenario, which cannot fail and so is not reported as a passed check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    /// The scenario expects this check to fail (`checks.expect_failures`), and it did.
    FailedAsExpected,
    /// The check could not decide (a search ran out of its budget): not a pass.
    Unknown,
    /// Figures only: no threshold in this scenario, so the check cannot fail.
    Figures,
}

impl Status {
    /// The word reports print.
    pub fn word(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "FAILED",
            Status::FailedAsExpected => "failed as expected",
            Status::Unknown => "UNKNOWN",
            Status::Figures => "figures",
        }
    }
}

/// What a seed, a scenario or a sweep concluded: failed when any check failed, else
/// inconclusive when any check could not decide, else passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Inconclusive,
    Failed,
}

impl Outcome {
    /// The outcome of checks with these statuses (no checks: passed).
    pub fn of_statuses(statuses: impl IntoIterator<Item = Status>) -> Outcome {
        let mut outcome = Outcome::Passed;
        for status in statuses {
            let this = match status {
                Status::Failed => Outcome::Failed,
                Status::Unknown => Outcome::Inconclusive,
                Status::Passed | Status::FailedAsExpected | Status::Figures => Outcome::Passed,
            };
            outcome = outcome.max(this);
        }
        outcome
    }

    /// The outcome of a seed's checks.
    pub fn of_checks<'a>(checks: impl IntoIterator<Item = &'a Verdict>) -> Outcome {
        Outcome::of_statuses(checks.into_iter().map(|verdict| verdict.status))
    }

    /// The outcome of many seeds or scenarios: the worst of theirs (none: passed).
    pub fn worst(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        outcomes.into_iter().max().unwrap_or(Outcome::Passed)
    }

    pub fn passed(self) -> bool {
        self == Outcome::Passed
    }

    /// The word reports print.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Inconclusive => "INCONCLUSIVE",
            Outcome::Failed => "FAILED",
        }
    }
}

/// A checker's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub status: Status,
    pub figures: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<String>,
    /// Per-event measures by name (`new_key_delay_ms`): one sample per event measured, so a
    /// report can pool them over seeds and draw their distribution.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub distributions: BTreeMap<String, Distribution>,
}

/// Samples kept per distribution per seed: enough for a histogram and a p99 within half a
/// percent of rank of the truth (and pooling many seeds sharpens it), bounded so a sweep's
/// summary stays small (about 5 KB per full distribution per seed, pretty-printed).
pub const DISTRIBUTION_SAMPLES_MAX: usize = 256;

/// The samples of one per-event measure in one run: a staleness (how long a revoked key kept
/// working), a delay (how long a failover took). The shape reports rely on: `unit` names what
/// a sample counts (`ms`), `count` how many events were measured, and `samples` holds them
/// sorted ascending, all of them or, past [`DISTRIBUTION_SAMPLES_MAX`], that many spread
/// evenly over the sorted measurements (the smallest and the largest always among them), so
/// each stands for `count / samples.len()` events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    pub unit: String,
    /// What one sample measures, for a reader of the report.
    pub description: String,
    pub count: u64,
    pub samples: Vec<f64>,
}

impl Distribution {
    /// The distribution of `values` (any order), bounded to [`DISTRIBUTION_SAMPLES_MAX`].
    pub fn from_values(
        unit: &str,
        description: &str,
        values: impl IntoIterator<Item = f64>,
    ) -> Self {
        let mut values: Vec<f64> = values.into_iter().collect();
        assert!(values.iter().all(|value| value.is_finite()), "samples are finite: {values:?}");
        values.sort_by(f64::total_cmp);
        let count = values.len();
        let samples = if count <= DISTRIBUTION_SAMPLES_MAX {
            values
        } else {
            let last = (DISTRIBUTION_SAMPLES_MAX - 1) as f64;
            (0..DISTRIBUTION_SAMPLES_MAX)
                .map(|kept| values[(kept as f64 * (count - 1) as f64 / last).round() as usize])
                .collect()
        };
        assert!(samples.len() <= DISTRIBUTION_SAMPLES_MAX, "the samples are bounded");
        Distribution {
            unit: unit.to_string(),
            description: description.to_string(),
            count: count as u64,
            samples,
        }
    }
}

impl Verdict {
    /// The verdict of a checker that found `violations`: counted in the figures, the first
    /// [`VIOLATIONS_MAX`] kept.
    pub fn from_violations(violations: Vec<String>, figures: BTreeMap<String, Value>) -> Verdict {
        let mut figures = figures;
        figures.insert("violations".into(), json!(violations.len()));
        let mut kept = violations;
        kept.truncate(VIOLATIONS_MAX);
        Verdict {
            status: if kept.is_empty() { Status::Passed } else { Status::Failed },
            figures,
            violations: kept,
            distributions: BTreeMap::new(),
        }
    }

    /// The verdict of a check that only measures (no threshold in this scenario): it cannot
    /// fail, so it is reported as figures, never as a pass.
    pub fn figures_only(figures: BTreeMap<String, Value>) -> Verdict {
        Verdict {
            status: Status::Figures,
            figures,
            violations: Vec::new(),
            distributions: BTreeMap::new(),
        }
    }

    /// The verdict of a check whose only way to fail is a threshold the scenario may not set:
    /// with `threshold` unset it is figures only.
    pub(crate) fn against_threshold(
        threshold: bool,
        violations: Vec<String>,
        figures: BTreeMap<String, Value>,
    ) -> Verdict {
        if threshold {
            return Verdict::from_violations(violations, figures);
        }
        assert!(violations.is_empty(), "no threshold, no violation: {violations:?}");
        Verdict::figures_only(figures)
    }

    /// The verdict of a check that could not decide: `reason` says why (a budget, a size).
    pub fn unknown(reason: Value, mut figures: BTreeMap<String, Value>) -> Verdict {
        figures.insert("unknown_reason".into(), reason);
        Verdict {
            status: Status::Unknown,
            figures,
            violations: Vec::new(),
            distributions: BTreeMap::new(),
        }
    }

    /// The promise held (strictly: not unknown, not figures only, not an expected failure).
    pub fn passed(&self) -> bool {
        self.status == Status::Passed
    }

    /// The check found its promise broken (and the scenario did not expect it).
    pub fn failed(&self) -> bool {
        self.status == Status::Failed
    }

    /// The kinds of its violations ([`violation_kind`]), in the order found.
    pub fn violation_kinds(&self) -> Vec<String> {
        self.violations.iter().map(|violation| violation_kind(violation)).collect()
    }

    /// Whether this verdict is a failure with a violation of `kind`: the same check failing
    /// the same way, which is what a shrunk fault plan must keep.
    pub fn fails_with_kind(&self, kind: &str) -> bool {
        self.failed() && self.violations.iter().any(|violation| violation_kind(violation) == kind)
    }

    /// The verdict with the distribution `name` attached.
    pub fn with_distribution(mut self, name: &str, distribution: Distribution) -> Verdict {
        let replaced = self.distributions.insert(name.to_string(), distribution);
        assert!(replaced.is_none(), "one distribution per name: {name}");
        self
    }
}

/// The kind of a violation: its text with every value in it (a word holding a digit: a job
/// id, a time, a node's number, a hash, a count) replaced by `#`. Checkers write one sentence
/// per violation with the values filled in, so two violations of the same kind differ only in
/// their values: `job 12 acked twice (leases 3 and 4)` and `job 7 acked twice (leases 1 and
/// 9)` are one kind, `job 12 was accepted (202) but never finished` another. Only the first
/// line counts: what follows it (a linearizability witness's calls) is detail, not kind.
pub fn violation_kind(violation: &str) -> String {
    let violation = violation.lines().next().unwrap_or_default();
    let mut kind = String::with_capacity(violation.len());
    let mut word = String::new();
    let flush = |word: &mut String, kind: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            kind.push('#');
        } else {
            kind.push_str(word);
        }
        word.clear();
    };
    for c in violation.chars() {
        // A value's word: letters, digits, and the dot of a decimal or the underscore of a name.
        if c.is_alphanumeric() || c == '.' || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut kind);
            kind.push(c);
        }
    }
    flush(&mut word, &mut kind);
    assert!(kind.len() <= violation.len(), "a kind is never longer than its violation");
    kind
}

/// Adds `{name}_count`, and with any value `{name}_p50`, `_p99` and `_max` (nearest rank), to
/// `figures`.
pub(crate) fn percentiles(name: &str, mut values: Vec<u64>, figures: &mut BTreeMap<String, Value>) {
    values.sort_unstable();
    figures.insert(format!("{name}_count"), json!(values.len()));
    if let Some(&max) = values.last() {
        let at =
            |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
        figures.insert(format!("{name}_p50"), json!(at(0.5)));
        figures.insert(format!("{name}_p99"), json!(at(0.99)));
        figures.insert(format!("{name}_max"), json!(max));
    }
}

/// Phase names the run records, which checkers rely on.
pub const PHASE_FAULTS: &str = "faults";
pub const PHASE_HEAL: &str = "heal";
pub const PHASE_DRAIN: &str = "drain";
pub const PHASE_FINAL_READS: &str = "final_reads";

pub(crate) fn phase_start_us(events: &[Event], name: &str) -> Option<u64> {
    events.iter().find_map(|event| match &event.kind {
        EventKind::Phase { name: phase, .. } if phase == name => Some(event.time_us),
        _ => None,
    })
}

/// One completed (or unfinished) client operation: its invoke paired with its completion by
/// process.
#[derive(Clone, Debug)]
pub struct Operation {
    pub process: u64,
    pub f: String,
    /// The invoke's `node` field, empty when it has none.
    pub node: String,
    pub invoke_us: u64,
    pub complete_us: Option<u64>,
    /// `ok`, `fail`, `info`, or `open`.
    pub outcome: &'static str,
    pub invoked_value: Value,
    /// The completion's value; `null` while open.
    pub result: Value,
}

/// The history's client operations, in invoke order.
pub fn operations(events: &[Event]) -> Vec<Operation> {
    let mut open: BTreeMap<u64, Operation> = BTreeMap::new();
    let mut done = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::Invoke { process, f, value } => {
                let node =
                    value.get("node").and_then(Value::as_str).unwrap_or_default().to_string();
                let operation = Operation {
                    process: *process,
                    f: f.clone(),
                    node,
                    invoke_us: event.time_us,
                    complete_us: None,
                    outcome: "open",
                    invoked_value: value.clone(),
                    result: Value::Null,
                };
                if let Some(unfinished) = open.insert(*process, operation) {
                    done.push(unfinished);
                }
            }
            EventKind::Ok { process, value, .. }
            | EventKind::Fail { process, value, .. }
            | EventKind::Info { process, value, .. } => {
                if let Some(mut operation) = open.remove(process) {
                    operation.complete_us = Some(event.time_us);
                    operation.outcome = match &event.kind {
                        EventKind::Ok { .. } => "ok",
                        EventKind::Fail { .. } => "fail",
                        _ => "info",
                    };
                    operation.result = value.clone();
                    done.push(operation);
                }
            }
            _ => {}
        }
    }
    done.extend(open.into_values());
    done.sort_by_key(|operation| operation.invoke_us);
    done
}

/// Share of operations that succeeded, during faults and after the heal. Fails only when a
/// minimum is set and the after-heal share falls below it; without one it is figures only.
pub fn availability(events: &[Event], heal_ok_fraction_min: Option<f64>) -> Verdict {
    let operations = operations(events);
    let heal_us = phase_start_us(events, PHASE_HEAL).unwrap_or(u64::MAX);
    let final_us = phase_start_us(events, PHASE_FINAL_READS).unwrap_or(u64::MAX);
    let share = |from_us: u64, to_us: u64| {
        let in_window: Vec<&Operation> =
            operations.iter().filter(|o| o.invoke_us >= from_us && o.invoke_us < to_us).collect();
        let ok = in_window.iter().filter(|o| o.outcome == "ok").count();
        let (fail, info) = (
            in_window.iter().filter(|o| o.outcome == "fail").count(),
            in_window.iter().filter(|o| o.outcome == "info" || o.outcome == "open").count(),
        );
        let fraction = if in_window.is_empty() { 1.0 } else { ok as f64 / in_window.len() as f64 };
        (
            fraction,
            json!({ "ok": ok, "fail": fail, "info": info, "ok_fraction": (fraction * 10_000.0).round() / 10_000.0 }),
        )
    };
    let (_, during_faults) = share(0, heal_us);
    let (heal_fraction, after_heal) = share(heal_us, final_us);
    let mut violations = Vec::new();
    if let Some(minimum) = heal_ok_fraction_min {
        if heal_fraction < minimum {
            violations.push(format!(
                "after the heal {:.4} of operations succeeded, below the minimum {minimum}",
                heal_fraction
            ));
        }
    }
    let figures = BTreeMap::from([
        ("during_faults".into(), during_faults),
        ("after_heal".into(), after_heal),
    ]);
    Verdict::against_threshold(heal_ok_fraction_min.is_some(), violations, figures)
}

/// The simulated time of the event with `index`; 0 if there is none (events are in index
/// order).
pub(crate) fn event_time_us(events: &[Event], index: u64) -> u64 {
    match events.binary_search_by_key(&index, |event| event.index) {
        Ok(position) => events[position].time_us,
        Err(_) => 0,
    }
}

/// Names a witness's calls as the history does: `origin[i]` is the (event index, client
/// process) that the engine's history entry `i` came from; the events give the times.
fn name_by_events(witness: &mut crate::lincheck::Witness, origin: &[(u64, u64)], events: &[Event]) {
    let calls = witness
        .linearized
        .iter_mut()
        .map(|step| &mut step.call)
        .chain(witness.cannot_place.iter_mut())
        .chain(witness.refuted_by.iter_mut());
    for call in calls {
        let (invoke_at, process) = origin[call.invoke_index];
        call.process = process;
        call.invoke_index = invoke_at as usize;
        call.invoke_time_us = Some(event_time_us(events, invoke_at));
        if let Some(index) = call.completion_index {
            let completed_at = origin[index].0;
            call.completion_index = Some(completed_at as usize);
            call.completion_time_us = Some(event_time_us(events, completed_at));
        }
    }
}

/// The verdict of the linearizability engine on `ops` (a projection of `events`; `origin`
/// maps each op back to its event and client process), with `figures` completed: `verdict`
/// and, when the history is not linearizable, `witness`: the engine's witness narrowed to the
/// shortest failing prefix ([`crate::lincheck::narrow`]), its calls named by event index,
/// process and simulated time, and bounded ([`crate::lincheck::Witness::bounded`]).
///
/// Each search (the verdict's, then each of the narrowing's) gets the budget
/// [`crate::lincheck::STATES_EXPLORED_MAX`] (states explored, the same on any machine); a
/// verdict search that gives up proves nothing either way: the verdict is
/// [`Status::Unknown`], with the figure `unknown_reason`.
pub(crate) fn lincheck_verdict(
    model: &str,
    init: &Value,
    ops: &[crate::lincheck::Op],
    origin: &[(u64, u64)],
    events: &[Event],
    mut figures: BTreeMap<String, Value>,
) -> Verdict {
    use crate::lincheck;

    assert_eq!(ops.len(), origin.len(), "every op has its origin");
    let budget = lincheck::STATES_EXPLORED_MAX;
    let (name, violations) = match lincheck::check(model, init, ops, budget) {
        Ok(lincheck::Verdict::Linearizable) => ("linearizable", Vec::new()),
        Ok(lincheck::Verdict::NotLinearizable { witness }) => {
            let mut witness = lincheck::narrow(model, init, ops, *witness, budget);
            name_by_events(&mut witness, origin, events);
            let witness = witness.bounded();
            figures.insert("witness".into(), serde_json::to_value(&witness).unwrap_or_default());
            ("not-linearizable", vec![format!("not linearizable: {witness}")])
        }
        Ok(lincheck::Verdict::Unknown { reason }) => {
            // A search that gives up proves nothing either way: the check is undecided, which
            // is a verdict of its own, never a pass.
            figures.insert("verdict".into(), json!("unknown"));
            return Verdict::unknown(serde_json::to_value(reason).unwrap_or_default(), figures);
        }
        Err(error) => (
            "invalid",
            vec![format!("the projected history is not a valid lincheck history: {error}")],
        ),
    };
    figures.insert("verdict".into(), json!(name));
    Verdict::from_violations(violations, figures)
}

/// A number field of an event's value, or a violation naming the event.
pub(crate) fn need_u64(value: &Value, field: &str, at: u64, what: &str) -> Result<u64, String> {
    value
        .get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("event {at}: {what} without a number {field:?}: {value}"))
}

/// A string field of an event's value, or a violation naming the event.
pub(crate) fn need_str<'a>(
    value: &'a Value,
    field: &str,
    at: u64,
    what: &str,
) -> Result<&'a str, String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("event {at}: {what} without a string {field:?}: {value}"))
}

#[cfg(test)]
pub(crate) mod tests {

    #[test]
    fn a_violation_kind_keeps_the_sentence_and_drops_the_values() {
        let check = |violation: &str, expect: &str| assert_eq!(violation_kind(violation), expect);
        check("job 12 acked twice (leases 3 and 4)", "job # acked twice (leases # and #)");
        check(
            "job 7 was accepted (202) but never finished",
            "job # was accepted (#) but never finished",
        );
        check(
            "usage/acct-3/120000: writer api-1.2 counted 41 in the final state, but attempted only 40",
            "usage/acct-#/#: writer api-# counted # in the final state, but attempted only #",
        );
        check(
            "after the heal 0.9412 of uploads were accepted, below 0.95",
            "after the heal # of uploads were accepted, below #",
        );
        check("not linearizable: not linearizable as fifo-queue: prefix has 3 of 9 calls\n  history[4] process 2", "not linearizable: not linearizable as fifo-queue: prefix has # of # calls");
        check("the run never reached its final dumps", "the run never reached its final dumps");
        check("", "");
        // Two violations of one kind, and two of different kinds.
        assert_eq!(
            violation_kind("job 1 acked twice (leases 1 and 2)"),
            violation_kind("job 90 acked twice (leases 17 and 31)")
        );
        assert_ne!(
            violation_kind("job 1 was accepted (202) but never finished"),
            violation_kind("job 1 crashed workers 4 times, more than max_attempts 3")
        );
    }

    #[test]
    fn a_verdict_fails_with_a_kind_only_when_failed_with_such_a_violation() {
        let failed = Verdict::from_violations(
            vec!["job 3 was accepted (202) but never finished".into()],
            BTreeMap::new(),
        );
        assert!(failed.fails_with_kind("job # was accepted (#) but never finished"));
        assert!(!failed.fails_with_kind("job # acked twice (leases # and #)"));
        assert_eq!(failed.violation_kinds(), vec!["job # was accepted (#) but never finished"]);
        let passed = Verdict::from_violations(Vec::new(), BTreeMap::new());
        assert!(!passed.fails_with_kind(""));
    }

    use super::*;

    /// A probe history built event by event, each a millisecond after the last.
    pub(crate) struct Builder {
        pub(crate) events: Vec<Event>,
        time_us: u64,
    }

    impl Builder {
        pub(crate) fn new() -> Builder {
            Builder { events: Vec::new(), time_us: 0 }
        }
        pub(crate) fn push(&mut self, kind: EventKind) -> &mut Builder {
            self.time_us += 1000;
            self.events.push(Event {
                index: self.events.len() as u64,
                time_us: self.time_us,
                kind,
            });
            self
        }
        pub(crate) fn append(
            &mut self,
            process: u64,
            node: &str,
            value: u64,
            outcome: &str,
        ) -> &mut Builder {
            let invoked = json!({ "node": node, "value": value });
            self.push(EventKind::Invoke { process, f: "append".into(), value: invoked.clone() });
            match outcome {
                "ok" => self.push(EventKind::Ok { process, f: "append".into(), value: invoked }),
                _ => self.push(EventKind::Info {
                    process,
                    f: "append".into(),
                    value: invoked,
                    error: "timeout".into(),
                }),
            }
        }
        pub(crate) fn read(&mut self, process: u64, node: &str, values: &[u64]) -> &mut Builder {
            self.push(EventKind::Invoke {
                process,
                f: "read".into(),
                value: json!({ "node": node }),
            });
            self.push(EventKind::Ok {
                process,
                f: "read".into(),
                value: json!({ "node": node, "values": values }),
            })
        }
        pub(crate) fn phase(&mut self, name: &str) -> &mut Builder {
            self.push(EventKind::Phase { name: name.into(), detail: Value::Null })
        }
    }

    #[test]
    fn distributions_keep_every_sample_up_to_their_bound_and_then_an_even_spread() {
        let small = Distribution::from_values("ms", "d", [3.0, 1.0, 2.0]);
        assert_eq!((small.count, small.samples.clone()), (3, vec![1.0, 2.0, 3.0]));
        let values = (0..10 * DISTRIBUTION_SAMPLES_MAX).map(|value| value as f64);
        let large = Distribution::from_values("ms", "d", values);
        assert_eq!(large.count, 10 * DISTRIBUTION_SAMPLES_MAX as u64);
        assert_eq!(large.samples.len(), DISTRIBUTION_SAMPLES_MAX);
        assert_eq!(large.samples[0], 0.0);
        assert_eq!(*large.samples.last().unwrap(), (10 * DISTRIBUTION_SAMPLES_MAX - 1) as f64);
        assert!(large.samples.windows(2).all(|pair| pair[0] < pair[1]), "sorted, spread");
        // A verdict without distributions reads and writes as before they existed.
        let verdict = Verdict::from_violations(Vec::new(), BTreeMap::new());
        let text = serde_json::to_string(&verdict).unwrap();
        assert!(!text.contains("distributions"), "{text}");
        let with = verdict.with_distribution("lag_ms", small);
        let back: Verdict = serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with);
    }

    #[test]
    fn a_seed_fails_on_any_failed_check_else_is_inconclusive_on_any_undecided_one() {
        use Status::*;
        let outcome = |statuses: &[Status]| Outcome::of_statuses(statuses.iter().copied());
        assert_eq!(outcome(&[]), Outcome::Passed);
        assert_eq!(outcome(&[Passed, Figures, FailedAsExpected]), Outcome::Passed);
        assert_eq!(outcome(&[Passed, Unknown, Figures]), Outcome::Inconclusive);
        assert_eq!(outcome(&[Unknown, Failed, Passed]), Outcome::Failed);
        assert_eq!(
            Outcome::worst([Outcome::Passed, Outcome::Inconclusive, Outcome::Passed]),
            Outcome::Inconclusive
        );
        let undecided = Verdict::unknown(json!("budget"), BTreeMap::new());
        assert!(!undecided.passed() && !undecided.failed(), "unknown is neither");
        assert_eq!(Outcome::of_checks([&undecided]), Outcome::Inconclusive);
        let measured = Verdict::figures_only(BTreeMap::new());
        assert!(!measured.passed() && !measured.failed(), "figures are no verdict");
    }

    #[test]
    fn availability_applies_its_minimum_after_the_heal() {
        let mut history = Builder::new();
        history
            .append(1, "n1", 1, "info")
            .phase(PHASE_HEAL)
            .append(1, "n1", 2, "ok")
            .append(1, "n1", 3, "info")
            .phase(PHASE_FINAL_READS);
        let verdict = availability(&history.events, Some(0.9));
        assert!(!verdict.passed());
        assert_eq!(verdict.figures["after_heal"]["ok_fraction"], json!(0.5));
        assert!(availability(&history.events, Some(0.5)).passed());
        assert_eq!(availability(&history.events, None).status, Status::Figures);
    }
}
