//! Running one seed of a scenario inside madsim: build the world, start the workload, let the
//! nemesis play the fault plan, heal, demand liveness, then check the history.
//!
//! Timeline of a run (simulated time):
//! `0 .. faults_ms` faults start and end as planned while the workload runs;
//! `faults_ms` every fault is healed (phase `heal`);
//! `faults_ms + heal_ms` the workload stops and every node must answer a final read within
//! `liveness_bound_ms` (phase `final_reads`).
//!
//! **Invariant:** everything a run does follows from its seed: madsim's scheduler and network,
//! and every RNG of pessimist through [`pessimist_core::seams::rng::rng_for`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pessimist_core::history::{fingerprint, Event, EventKind, History};
use pessimist_core::seams::rng::{derive_seed, rng_for};
use serde_json::json;

use crate::check::{self, Verdict, PHASE_FAULTS, PHASE_FINAL_READS, PHASE_HEAL};
use crate::fault::{swarm_plan, FaultPlan};
use crate::probe::{self, ProbeMessage};
use crate::scenario::{Scenario, Workload};
use crate::world::{NodeSpec, Program, World};

/// What one seed of a scenario produced.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    pub seed: u64,
    pub events: Vec<Event>,
    pub history_hash: String,
    pub checks: BTreeMap<String, Verdict>,
    pub passed: bool,
    /// The fault plan actually played (the scenario's plan plus the swarm's draw).
    pub plan: FaultPlan,
}

/// The fault plan a seed plays: the scenario's fixed events, plus the swarm's draw.
pub fn plan_for_seed(scenario: &Scenario, seed: u64) -> FaultPlan {
    let mut events = scenario.faults.plan.events.clone();
    if let Some(swarm) = &scenario.faults.swarm {
        let targets =
            if swarm.targets.is_empty() { scenario.server_names() } else { swarm.targets.clone() };
        let mut rng = rng_for(seed, "swarm");
        events.extend(swarm_plan(swarm, &targets, scenario.phases.faults_ms, &mut rng).events);
    }
    events.sort_by_key(|event| event.at_ms);
    FaultPlan { events }
}

/// Runs `scenario` under `seed` in a fresh madsim runtime on this thread.
pub fn run_seed(scenario: &Scenario, seed: u64) -> SeedOutcome {
    scenario.validate().expect("scenarios are validated before they run");
    let plan = plan_for_seed(scenario, seed);
    let mut runtime =
        madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let phases = &scenario.phases;
    // A guard against a run that never ends; every wait in a run is bounded well below it.
    let run_ms = phases.faults_ms + phases.heal_ms + 2 * phases.liveness_bound_ms + 60_000;
    runtime.set_time_limit(Duration::from_millis(run_ms));
    let events = runtime.block_on(simulate(scenario.clone(), plan.clone(), seed));
    let checks = check_history(scenario, &events);
    let passed = checks.values().all(|verdict| verdict.passed);
    SeedOutcome { seed, history_hash: fingerprint(&events), events, checks, passed, plan }
}

/// Runs every enabled checker of the scenario over a history.
pub fn check_history(scenario: &Scenario, events: &[Event]) -> BTreeMap<String, Verdict> {
    let mut checks = BTreeMap::new();
    let wanted = &scenario.checks;
    if wanted.durability {
        checks.insert("durability".to_string(), check::durability(events));
    }
    if wanted.integrity {
        checks.insert("integrity".to_string(), check::integrity(events));
    }
    if wanted.linearizability {
        checks.insert("linearizability".to_string(), check::linearizability(events));
    }
    if wanted.liveness {
        checks.insert(
            "liveness".to_string(),
            check::liveness(events, &scenario.server_names(), scenario.phases.liveness_bound_ms),
        );
    }
    checks.insert(
        "availability".to_string(),
        check::availability(events, wanted.heal_ok_fraction_min),
    );
    checks
}

/// A nemesis step: at `time_ms`, start or end fault `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Step {
    time_ms: u64,
    /// Ends sort before starts at the same instant, so a fault ending as another begins does
    /// not overlap it.
    is_start: bool,
    id: u64,
}

async fn simulate(scenario: Scenario, plan: FaultPlan, seed: u64) -> Vec<Event> {
    let history = History::new();
    let phases = scenario.phases.clone();
    history.record(EventKind::Phase {
        name: "run".into(),
        detail: json!({
            "scenario": scenario.name,
            "seed": seed,
            "swarm_seed": derive_seed(seed, "swarm"),
            "fault_events": plan.events.len(),
        }),
    });
    let servers: Vec<NodeSpec> = scenario
        .topology
        .nodes
        .iter()
        .map(|node| NodeSpec { name: node.name.clone(), role: node.role.clone() })
        .collect();
    let clients = scenario.client_names();
    let program: Program = Arc::new(|context| Box::pin(probe::serve(context)));
    let knobs = serde_json::Value::Object(scenario.knobs.clone());
    let mut world = World::build(seed, history.clone(), &servers, &clients, knobs, program);
    let start = tokio::time::Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    history.record(EventKind::Phase {
        name: PHASE_FAULTS.into(),
        detail: json!({ "until_ms": phases.faults_ms }),
    });

    let Workload::Probe(workload) = scenario.workload.clone();
    let targets = scenario.server_names();
    let until_us = (phases.faults_ms + phases.heal_ms) * 1000;
    let mut processes = Vec::new();
    for process in 0..workload.processes {
        let client = &clients[process as usize % clients.len()];
        let transport = probe::client_transport(
            client,
            world.book().clone(),
            world.link_faults().clone(),
            rng_for(seed, &format!("client/{process}/transport")),
        );
        let rng = rng_for(seed, &format!("client/{process}/workload"));
        let task = probe::client_process(
            process,
            workload.clone(),
            targets.clone(),
            transport,
            history.clone(),
            rng,
            until_us,
        );
        processes.push(world.client(client).spawn(task));
    }

    let events = plan.events.clone();
    let mut steps: Vec<Step> = Vec::new();
    for (id, event) in events.iter().enumerate() {
        steps.push(Step { time_ms: event.at_ms, is_start: true, id: id as u64 });
        if !event.fault.is_instant() {
            steps.push(Step {
                time_ms: event.end_ms(phases.faults_ms),
                is_start: false,
                id: id as u64,
            });
        }
    }
    steps.sort();
    for step in steps {
        if step.time_ms >= phases.faults_ms {
            break; // Ends at the phase's end are the heal's work.
        }
        tokio::time::sleep_until(at(step.time_ms)).await;
        if step.is_start {
            world.inject(step.id, &events[step.id as usize].fault);
        } else {
            world.heal(step.id);
        }
    }
    tokio::time::sleep_until(at(phases.faults_ms)).await;
    world.heal_all();
    history.record(EventKind::Phase {
        name: PHASE_HEAL.into(),
        detail: json!({ "until_ms": phases.faults_ms + phases.heal_ms }),
    });
    for process in processes {
        // A process ends by itself at the end of the heal phase; a panic in it is a bug.
        process.await.expect("a client process panicked");
    }

    history.record(EventKind::Phase {
        name: PHASE_FINAL_READS.into(),
        detail: json!({ "bound_ms": phases.liveness_bound_ms }),
    });
    let final_process = workload.processes;
    let transport = probe::client_transport(
        &clients[0],
        world.book().clone(),
        world.link_faults().clone(),
        rng_for(seed, "client/final/transport"),
    );
    let final_reads = final_reads(
        final_process,
        targets,
        transport,
        history.clone(),
        phases.liveness_bound_ms,
        workload.timeout_ms,
    );
    world.client(&clients[0]).spawn(final_reads).await.expect("final reads panicked");
    history.events()
}

/// After the heal: read every node until it answers, for at most the liveness bound.
async fn final_reads(
    process: u64,
    nodes: Vec<String>,
    transport: pessimist_core::seams::net::Transport<ProbeMessage>,
    history: History,
    bound_ms: u64,
    timeout_ms: u64,
) {
    let deadline_us = history.now_us() + bound_ms * 1000;
    let timeout = Duration::from_millis(timeout_ms.min(bound_ms).max(1));
    for node in nodes {
        while history.now_us() < deadline_us {
            if probe::read(process, &node, &transport, &history, timeout).await.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
