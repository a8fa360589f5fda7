//! Shrinking a failing seed: the smallest fault plan under which the same checker still
//! fails, written as a scenario file that replays the failure.
//!
//! The seed's plan is first *materialized*: a swarm's draw becomes an explicit plan, so the
//! shrinker works on data (the run under the materialized plan is the same run). Then passes
//! repeat until none makes progress or the budget of runs is spent: drop chunks of events
//! (halves, quarters, ... single events, as delta debugging does), shorten each window by
//! halves, and weaken each fault's intensity step by step. Then the load and the phases
//! shrink ([`smaller`]): fewer clients, lower rates, a shorter fault phase (never cutting an
//! event off) and a shorter heal. A candidate is kept only when the
//! same seed still fails the same way: the target checker fails with a violation of the same
//! kind as the original's first ([`violation_kind`]: the sentence with its values left out),
//! so a smaller plan that breaks the check differently (another job lost the other way, a
//! liveness bound missed instead of a duplicate) does not stand in for the failure found.
//!
//! The topology is not shrunk: node names are what plans and checks refer to, and dropping a
//! node changes every seed's draws, so a smaller cluster rarely replays the failure found.
//! The shrunk file keeps the scenario's description and says what the shrinker removed.
//!
//! **Invariant:** every candidate is a valid scenario (it is validated before it runs), and
//! the result is a pure function of the scenario, the seed, the target and the budget.

#[cfg(madsim)]
use pessimist_sim::check::violation_kind;
use pessimist_sim::fault::{Fault, FaultEvent};
use pessimist_sim::scenario::Scenario;

/// The shortest window the shrinker cuts a fault down to, in ms.
pub const WINDOW_MS_MIN: u64 = 100;
/// The default budget of simulation runs for one shrink.
pub const RUNS_MAX_DEFAULT: usize = 300;

/// The scenario that replays `seed` of `scenario` with the plan the seed played written out:
/// no swarm, the fixed events plus the swarm's draw, only this seed, no variants.
#[cfg(madsim)]
pub fn materialize(scenario: &Scenario, seed: u64) -> Scenario {
    let mut materialized = scenario.clone();
    materialized.faults.plan = pessimist_sim::run::plan_for_seed(scenario, seed);
    materialized.faults.swarm = None;
    materialized.seeds = vec![seed];
    materialized.variants = Vec::new();
    materialized
}

/// A fault one step weaker, or `None` when it is as weak as the shrinker makes it (or has no
/// intensity: an isolation, a crash).
pub fn weaker(fault: &Fault) -> Option<Fault> {
    let halve_probability = |p: f64| (p >= 0.002).then_some(p / 2.0);
    let halve_signed = |value: i64, floor: i64| (value.abs() >= 2 * floor).then_some(value / 2);
    let mut weaker = fault.clone();
    match &mut weaker {
        Fault::PacketLoss { rate } => *rate = halve_probability(*rate)?,
        Fault::Duplicate { probability }
        | Fault::FrameLoss { probability }
        | Fault::DiskErrors { probability, .. } => *probability = halve_probability(*probability)?,
        Fault::PowerLoss { nodes } => {
            if nodes.len() < 2 {
                return None;
            }
            nodes.pop();
        }
        Fault::Reorder { probability, window_ms } => {
            if *window_ms >= 2 {
                *window_ms /= 2;
            } else {
                *probability = halve_probability(*probability)?;
            }
        }
        Fault::LatencySpike { min_ms, max_ms } => {
            if *max_ms <= 2 {
                return None;
            }
            *min_ms /= 2;
            *max_ms = (*max_ms / 2).max(*min_ms + 1);
        }
        Fault::LinkDelay { delay_ms, jitter_ms, .. } => {
            if *delay_ms == 0 && *jitter_ms == 0 {
                return None;
            }
            *delay_ms /= 2;
            *jitter_ms /= 2;
        }
        Fault::SlowDisk { factor, .. } => {
            if *factor <= 10 {
                return None;
            }
            *factor = (*factor / 10).max(10);
        }
        Fault::ClockOffset { offset_ms, .. } => *offset_ms = halve_signed(*offset_ms, 10)?,
        Fault::ClockDrift { drift_ppm, .. } => *drift_ppm = halve_signed(*drift_ppm, 100)?,
        Fault::ClockJump { delta_ms, .. } => *delta_ms = halve_signed(*delta_ms, 10)?,
        _ => return None,
    }
    assert!(weaker.validate().is_ok(), "a weaker fault stays valid: {weaker:?}");
    Some(weaker)
}

/// What a shrink found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The minimal scenario (named `<name>-shrunk-<seed>`), which fails `checker` on `seed`
    /// with a violation of `kind`.
    pub scenario: Scenario,
    pub seed: u64,
    pub checker: String,
    /// The kind of violation every kept candidate repeated ([`violation_kind`]).
    pub kind: String,
    /// The original failure's first violation of `checker`, whole.
    pub violation: String,
    /// Events of the materialized plan, before shrinking.
    pub events_before: usize,
    /// Simulation runs spent.
    pub runs: usize,
    /// Whether the budget ran out before a pass made no progress.
    pub budget_spent: bool,
}

/// Shrinks `seed` of `scenario`, which must fail. `checker` picks the checker whose failure
/// must persist (default: the first failing one by name). `note` hears every kept step.
#[cfg(madsim)]
pub fn shrink(
    scenario: &Scenario,
    file: &str,
    seed: u64,
    checker: Option<&str>,
    runs_max: usize,
    mut note: impl FnMut(&str),
) -> Result<Shrunk, String> {
    let original = crate::suite::run_one_seed(scenario, seed)
        .map_err(|message| format!("seed {seed}: the simulation panicked ({message}); a panic is not a checker's failure, so there is nothing to shrink toward"))?;
    let failing: Vec<&String> =
        original.checks.iter().filter(|(_, check)| check.failed()).map(|(name, _)| name).collect();
    let checker = match checker {
        None => match failing.first() {
            Some(name) => name.to_string(),
            None => return Err(format!("seed {seed} passes every check: nothing to shrink")),
        },
        Some(name) if failing.iter().any(|failed| *failed == name) => name.to_string(),
        Some(name) => {
            return Err(format!(
                "check {name:?} does not fail on seed {seed} (failing: {})",
                failing.iter().map(|name| name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        }
    };
    let violation = original.checks[&checker].violations.first().cloned().unwrap_or_default();
    let kind = violation_kind(&violation);
    let mut current = materialize(scenario, seed);
    current.name = format!("{}-shrunk-{seed}", scenario.name);
    let events_before = current.faults.plan.events.len();
    let mut runs = 1;
    let mut budget_spent = false;
    // Whether `candidate` still fails the checker; `None` once the budget is spent.
    let fails = |candidate: &Scenario, runs: &mut usize| -> Option<bool> {
        if *runs >= runs_max {
            return None;
        }
        if candidate.validate().is_err() {
            return Some(false);
        }
        *runs += 1;
        // A candidate that panics the simulation fails differently: not kept.
        let outcome = crate::suite::run_one_seed(candidate, seed);
        Some(outcome.is_ok_and(|outcome| {
            outcome.checks.get(&checker).is_some_and(|check| check.fails_with_kind(&kind))
        }))
    };
    match fails(&current, &mut runs) {
        Some(true) => {}
        Some(false) => {
            return Err(format!(
                "seed {seed} no longer fails {checker} with `{kind}` once its plan is written out; this is a bug of the shrinker"
            ))
        }
        None => return Err("the budget of runs is spent before shrinking began".into()),
    }
    let faults_ms = current.phases.faults_ms;
    // What the load and phase passes took away, in the order they did.
    let mut removed: Vec<String> = Vec::new();
    'passes: loop {
        let mut progress = false;

        // Drop chunks of events: halves first, then smaller chunks, down to single events.
        let mut chunk = current.faults.plan.events.len().div_ceil(2).max(1);
        while !current.faults.plan.events.is_empty() {
            let mut start = 0;
            while start < current.faults.plan.events.len() {
                let mut candidate = current.clone();
                let end = (start + chunk).min(candidate.faults.plan.events.len());
                candidate.faults.plan.events.drain(start..end);
                match fails(&candidate, &mut runs) {
                    None => {
                        budget_spent = true;
                        break 'passes;
                    }
                    Some(true) => {
                        note(&format!(
                            "dropped {} event(s): {} left",
                            end - start,
                            candidate.faults.plan.events.len()
                        ));
                        current = candidate;
                        progress = true;
                    }
                    Some(false) => start += chunk,
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }

        // Shorten windows by halves, and weaken intensities step by step.
        for index in 0..current.faults.plan.events.len() {
            loop {
                let event = &current.faults.plan.events[index];
                let Some(shorter) = shorter(event, faults_ms) else { break };
                let mut candidate = current.clone();
                candidate.faults.plan.events[index] = shorter;
                match fails(&candidate, &mut runs) {
                    None => {
                        budget_spent = true;
                        break 'passes;
                    }
                    Some(true) => {
                        let event = &candidate.faults.plan.events[index];
                        note(&format!(
                            "event {index} ({}) lasts {} ms",
                            event.fault.kind(),
                            event.duration_ms.unwrap_or(0)
                        ));
                        current = candidate;
                        progress = true;
                    }
                    Some(false) => break,
                }
            }
            while let Some(weaker) = weaker(&current.faults.plan.events[index].fault) {
                let mut candidate = current.clone();
                candidate.faults.plan.events[index].fault = weaker;
                match fails(&candidate, &mut runs) {
                    None => {
                        budget_spent = true;
                        break 'passes;
                    }
                    Some(true) => {
                        note(&format!(
                            "event {index} weakened: {}",
                            serde_json::to_string(&candidate.faults.plan.events[index].fault)
                                .expect("faults serialize")
                        ));
                        current = candidate;
                        progress = true;
                    }
                    Some(false) => break,
                }
            }
        }
        // Less load, shorter phases: one step at a time, the first that keeps the failure.
        for (candidate, step) in smaller(&current) {
            match fails(&candidate, &mut runs) {
                None => {
                    budget_spent = true;
                    break 'passes;
                }
                Some(true) => {
                    note(&step);
                    removed.push(step);
                    current = candidate;
                    progress = true;
                    break;
                }
                Some(false) => {}
            }
        }
        if !progress {
            break;
        }
    }
    let load = if removed.is_empty() {
        "the load and phases as they were".to_string()
    } else {
        format!("then {}", removed.join(", "))
    };
    current.description = format!(
        "Shrunk from {file} seed {seed}: a minimal fault plan ({} of {events_before} events, windows and intensities cut; {load}) under which the check `{checker}` still fails the same way (`{kind}`). Replay: pessimist replay <this file> --seed {seed}. The original: {}",
        current.faults.plan.events.len(),
        scenario.description,
    );
    Ok(Shrunk {
        scenario: current,
        seed,
        checker,
        kind,
        violation,
        events_before,
        runs,
        budget_spent,
    })
}

/// Workload fields that count clients or set a rate, which the shrinker halves (a count down
/// to 1): fewer producers, uploaders, writers or readers, and fewer requests each.
const LOAD_FIELDS: &[&str] = &[
    "producers",
    "enqueue_per_s",
    "workers",
    "uploaders",
    "uploads_per_s",
    "writers",
    "flushes_per_s",
    "readers",
    "reads_per_s",
];

/// The shortest heal phase the shrinker leaves, in ms: the workload's end (drain, final reads,
/// convergence) needs some time after the heal.
pub const HEAL_MS_MIN: u64 = 1_000;

/// One-step-smaller versions of `scenario`'s load and phases, each with what it removed:
/// every [`LOAD_FIELDS`] field halved (counts to at least 1, rates as they halve), the fault
/// phase halved but never before its last event's start, and the heal halved down to
/// [`HEAL_MS_MIN`]. Candidates that do not validate are left out. Pure.
pub fn smaller(scenario: &Scenario) -> Vec<(Scenario, String)> {
    let mut candidates = Vec::new();
    let workload = serde_json::to_value(&scenario.workload).expect("workloads serialize");
    for field in LOAD_FIELDS {
        let Some(value) = workload.get(field) else { continue };
        let halved = match (value.as_u64(), value.as_f64()) {
            (Some(count), _) if count > 1 => serde_json::json!(count / 2),
            (None, Some(rate)) if rate > 0.1 => serde_json::json!(rate / 2.0),
            _ => continue,
        };
        let mut changed = workload.clone();
        changed[*field] = halved.clone();
        let Ok(workload) = serde_json::from_value(changed) else { continue };
        let mut candidate = scenario.clone();
        candidate.workload = workload;
        candidates.push((candidate, format!("{field} {value} to {halved}")));
    }
    let phases = &scenario.phases;
    let last_start_ms = scenario.faults.plan.events.iter().map(|e| e.at_ms).max();
    let floor_ms = last_start_ms.map_or(WINDOW_MS_MIN, |at_ms| at_ms + 1);
    let faults_ms = (phases.faults_ms / 2).max(floor_ms);
    if faults_ms < phases.faults_ms {
        let mut candidate = scenario.clone();
        candidate.phases.faults_ms = faults_ms;
        candidates.push((candidate, format!("faults_ms {} to {faults_ms}", phases.faults_ms)));
    }
    let heal_ms = (phases.heal_ms / 2).max(HEAL_MS_MIN);
    if heal_ms < phases.heal_ms {
        let mut candidate = scenario.clone();
        candidate.phases.heal_ms = heal_ms;
        candidates.push((candidate, format!("heal_ms {} to {heal_ms}", phases.heal_ms)));
    }
    candidates.retain(|(candidate, _)| candidate.validate().is_ok());
    candidates
}

/// The event with its window halved, or `None` when it is instant or already at
/// [`WINDOW_MS_MIN`]. A window "until the heal" becomes an explicit one first.
pub fn shorter(event: &FaultEvent, faults_ms: u64) -> Option<FaultEvent> {
    if event.fault.is_instant() {
        return None;
    }
    let duration_ms = event.end_ms(faults_ms).saturating_sub(event.at_ms);
    if duration_ms < 2 * WINDOW_MS_MIN {
        return None;
    }
    Some(FaultEvent { duration_ms: Some(duration_ms / 2), ..event.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaller_halves_the_load_and_phases_and_ends() {
        let text = include_str!("../queue-majority-crash.json");
        let scenario = crate::parse_scenario("queue-majority-crash.json", text).unwrap();
        let candidates = smaller(&scenario);
        let steps: Vec<&str> = candidates.iter().map(|(_, step)| step.as_str()).collect();
        assert!(steps.iter().any(|step| step.starts_with("producers ")), "{steps:?}");
        assert!(steps.iter().any(|step| step.starts_with("faults_ms ")), "{steps:?}");
        let last_start_ms = scenario.faults.plan.events.iter().map(|e| e.at_ms).max().unwrap();
        for (candidate, step) in &candidates {
            candidate.validate().unwrap_or_else(|e| panic!("{step}: {e:?}"));
            assert!(candidate.phases.faults_ms > last_start_ms, "{step} cut an event off");
            assert_eq!(candidate.faults, scenario.faults, "{step} touched the plan");
        }
        // Always taking the first step reaches a scenario nothing makes smaller.
        let mut current = scenario;
        for steps in 0.. {
            assert!(steps < 100, "shrinking the load never ends");
            match smaller(&current).into_iter().next() {
                Some((next, _)) => current = next,
                None => break,
            }
        }
        assert_eq!(current.phases.heal_ms, HEAL_MS_MIN);
        assert_eq!(current.phases.faults_ms, last_start_ms + 1);
    }

    #[test]
    fn weakening_ends_and_every_step_is_valid() {
        let faults = [
            Fault::PacketLoss { rate: 0.3 },
            Fault::Duplicate { probability: 0.2 },
            Fault::FrameLoss { probability: 0.05 },
            Fault::Reorder { probability: 0.3, window_ms: 100 },
            Fault::LatencySpike { min_ms: 100, max_ms: 600 },
            Fault::LinkDelay { from: "a".into(), to: "b".into(), delay_ms: 400, jitter_ms: 90 },
            Fault::SlowDisk { node: "a".into(), factor: 1000 },
            Fault::DiskErrors { node: "a".into(), probability: 0.2 },
            Fault::PowerLoss { nodes: vec!["a".into(), "b".into(), "c".into()] },
            Fault::ClockOffset { node: "a".into(), offset_ms: -30_000 },
            Fault::ClockDrift { node: "a".into(), drift_ppm: 50_000 },
            Fault::ClockJump { node: "a".into(), delta_ms: 60_000 },
        ];
        for fault in faults {
            let mut steps = 0;
            let mut current = fault.clone();
            while let Some(next) = weaker(&current) {
                assert_eq!(next.kind(), fault.kind());
                assert_ne!(next, current, "a step must change the fault");
                current = next;
                steps += 1;
                assert!(steps < 64, "{fault:?} weakens forever");
            }
            assert!(steps >= 1, "{fault:?} cannot be weakened at all");
        }
        assert_eq!(weaker(&Fault::Crash { node: "a".into() }), None);
        assert_eq!(
            weaker(&Fault::SlowDisk { node: "a".into(), factor: 1000 }),
            Some(Fault::SlowDisk { node: "a".into(), factor: 100 })
        );
    }

    #[test]
    fn windows_halve_down_to_the_minimum() {
        let event =
            FaultEvent { at_ms: 1000, duration_ms: None, fault: Fault::Pause { node: "a".into() } };
        let half = shorter(&event, 9000).unwrap();
        assert_eq!(half.duration_ms, Some(4000));
        let tiny = FaultEvent { duration_ms: Some(150), ..event.clone() };
        assert_eq!(shorter(&tiny, 9000), None);
        let instant = FaultEvent {
            at_ms: 1,
            duration_ms: None,
            fault: Fault::ClockJump { node: "a".into(), delta_ms: 5 },
        };
        assert_eq!(shorter(&instant, 9000), None);
    }
}
