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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pessimist_core::history::{fingerprint, Event, EventKind, History};
use pessimist_core::seams::rng::{derive_seed, rng_for};
use serde_json::json;

use pessimist_core::billing::BillingMessage;
use pessimist_core::node::{KnobSettings, NodeContext};
use pessimist_core::queue::machine::JobId;
use pessimist_core::queue::{self, QueueClient, QueueMessage, QueueSettings};
use pessimist_core::replica::client::ClientOptions;
use pessimist_core::seams::clock::Clock;
use pessimist_core::seams::net::{Transport, TransportOptions};
use pessimist_core::store::client::{ClientOptions as StoreClientOptions, StoreClient};
use pessimist_core::store::msg::StoreMessage;
use pessimist_core::store::ring::Ring;
use pessimist_core::store::StoreSettings;
use pessimist_core::usage::UsageSettings;

use crate::check::{
    self, Outcome, Status, Verdict, PHASE_DRAIN, PHASE_FAULTS, PHASE_FINAL_READS, PHASE_HEAL,
};
use crate::fault::{swarm_plan, Fault, FaultPlan, LEADER};
use crate::probe::{self, ProbeMessage, ProbeWorkload};
use crate::queue::workload::{Acknowledged, QueueWorkload};
use crate::scenario::{Phases, Scenario, Workload};
use crate::service::workload::{Endpoints, ServiceWorkload};
use crate::store::check::PHASE_CONVERGE;
use crate::store::workload::StoreWorkload;
use crate::usage::workload::{FinalBill, PHASE_BILLING};
use crate::world::{NodeSpec, Program, World};

/// What one seed of a scenario produced.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    pub seed: u64,
    pub events: Vec<Event>,
    pub history_hash: String,
    pub checks: BTreeMap<String, Verdict>,
    pub outcome: Outcome,
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
    let (events, plan) = simulate_seed(scenario, seed);
    let checks = check_history(scenario, &events);
    let outcome = Outcome::of_checks(checks.values());
    SeedOutcome { seed, history_hash: fingerprint(&events), events, checks, outcome, plan }
}

/// Simulates `scenario` under `seed` without checking: the history and the plan played.
pub fn simulate_seed(scenario: &Scenario, seed: u64) -> (Vec<Event>, FaultPlan) {
    quiet_modelled_crashes();
    scenario.validate().expect("scenarios are validated before they run");
    let plan = plan_for_seed(scenario, seed);
    let mut runtime =
        madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let phases = &scenario.phases;
    // A guard against a run that never ends; every wait in a run is bounded well below it.
    let run_ms = phases.faults_ms + phases.heal_ms + 2 * phases.liveness_bound_ms + 60_000;
    runtime.set_time_limit(Duration::from_millis(run_ms));
    let events = runtime.block_on(simulate(scenario.clone(), plan.clone(), seed));
    (events, plan)
}

/// Keeps the panics that model a process's exit (a worker's poison pill or out-of-memory
/// kill, a failed write to a durable log) out of the output: they are the run's expected events, recorded in its history. Every other panic
/// goes to the hook that was installed before.
fn quiet_modelled_crashes() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with(pessimist_core::node::EXIT_PANIC_PREFIX) {
                previous(info);
            }
        }));
    });
}

/// Runs every enabled checker of the scenario over a history.
pub fn check_history(scenario: &Scenario, events: &[Event]) -> BTreeMap<String, Verdict> {
    let mut checks = BTreeMap::new();
    let wanted = &scenario.checks;
    let bound_ms = scenario.phases.liveness_bound_ms;
    match &scenario.workload {
        Workload::Probe(_) => {
            if wanted.durability {
                checks.insert("durability".to_string(), probe::check::durability(events));
            }
            if wanted.integrity {
                checks.insert("integrity".to_string(), probe::check::integrity(events));
            }
            if wanted.linearizability {
                checks.insert("linearizability".to_string(), probe::check::linearizability(events));
            }
            if wanted.liveness {
                let nodes = scenario.server_names();
                checks.insert(
                    "liveness".to_string(),
                    probe::check::liveness(events, &nodes, bound_ms),
                );
            }
        }
        Workload::Queue(_) => {
            checks.insert(
                "raft_safety".to_string(),
                crate::raft_check::raft_safety(events, crate::queue::check::QUEUE_GROUP),
            );
            checks.insert("no_double_ack".to_string(), crate::queue::check::no_double_ack(events));
            checks.insert("fifo_order".to_string(), crate::queue::check::fifo_order(events));
            checks.insert("leases".to_string(), crate::queue::check::leases(events));
            checks.insert("failover".to_string(), crate::queue::check::failover(events));
            checks.insert(
                "fault_availability".to_string(),
                crate::queue::check::fault_availability(events),
            );
            checks.insert("lease_fencing".to_string(), crate::queue::check::lease_fencing(events));
            checks.insert("status_reads".to_string(), crate::queue::check::status_reads(events));
            if wanted.durability {
                let knobs = serde_json::Value::Object(scenario.knobs.clone());
                let settings = QueueSettings::from_knobs(&knobs).expect("validated knobs");
                checks.insert(
                    "durability".to_string(),
                    crate::queue::check::queue_durability(events, settings.max_attempts),
                );
            }
            if wanted.linearizability {
                checks.insert(
                    "linearizability".to_string(),
                    crate::queue::check::queue_linearizability(events),
                );
            }
            if wanted.liveness {
                checks.insert(
                    "liveness".to_string(),
                    crate::queue::check::queue_liveness(events, bound_ms),
                );
            }
        }
        Workload::Service(_) => {} // Its checks follow.
        Workload::Store(_) => {
            let knobs = serde_json::Value::Object(scenario.knobs.clone());
            let settings = StoreSettings::from_knobs(&knobs).expect("validated knobs");
            let nodes = scenario.names_with_role(pessimist_core::store::ROLE);
            let ring = Ring::new(&nodes, settings.vnodes, settings.n);
            checks.insert(
                "no_double_count".to_string(),
                crate::store::check::no_double_count(events),
            );
            if wanted.durability {
                checks.insert(
                    "no_acknowledged_loss".to_string(),
                    crate::store::check::no_acknowledged_loss(events, &ring),
                );
            }
            if wanted.liveness {
                checks.insert(
                    "convergence".to_string(),
                    crate::store::check::convergence(events, &ring, bound_ms),
                );
            }
            checks.insert(
                "read_your_writes".to_string(),
                crate::store::check::read_your_writes(events, settings.promises_read_your_writes()),
            );
            checks.insert("staleness".to_string(), crate::store::check::staleness(events));
            checks.insert("replication".to_string(), crate::store::check::replication(events));
        }
    }
    if let Workload::Service(workload) = &scenario.workload {
        let knobs = serde_json::Value::Object(scenario.knobs.clone());
        let groups = [
            ("raft_safety", crate::queue::check::QUEUE_GROUP),
            ("auth_raft_safety", pessimist_core::auth::ROLE),
        ];
        for (name, group) in groups {
            checks.insert(name.to_string(), crate::raft_check::raft_safety(events, group));
        }
        checks.insert("jobs_complete".to_string(), crate::service::check::jobs_complete(events));
        checks.insert(
            "thumbnails".to_string(),
            crate::service::check::thumbnails(events, &knobs, workload.thumbnail_side),
        );
        let workers = scenario.names_with_role(pessimist_core::worker::ROLE);
        checks.insert(
            "pill_quarantine".to_string(),
            crate::service::check::pill_quarantine(events, &knobs, &workers),
        );
        checks.insert("auth_keys".to_string(), crate::service::check::auth_keys(events, &knobs));
        checks.insert(
            "availability".to_string(),
            crate::service::check::service_availability(events, 1000, wanted.heal_ok_fraction_min),
        );
        if !scenario.names_with_role(pessimist_core::billing::ROLE).is_empty() {
            let usage = UsageSettings::from_knobs(&knobs).expect("validated knobs");
            checks.insert(
                "billing".to_string(),
                crate::usage::check::billing(
                    events,
                    &usage,
                    &pessimist_core::billing::BillingSettings::from_knobs(&knobs)
                        .expect("validated knobs"),
                    crate::usage::check::WallClock::SIMULATED,
                ),
            );
        }
    } else if let Workload::Store(_) = &scenario.workload {
        checks.insert(
            "availability".to_string(),
            crate::store::check::store_availability(events, 1000, wanted.heal_ok_fraction_min),
        );
    } else {
        checks.insert(
            "availability".to_string(),
            check::availability(events, wanted.heal_ok_fraction_min),
        );
    }
    checks.insert(
        "faults_bite".to_string(),
        crate::coverage::faults_bite(events, wanted.faults_bite),
    );
    if !scenario.must_happen.is_empty() {
        checks.insert(
            "must_happen".to_string(),
            crate::coverage::must_happen(events, &scenario.must_happen),
        );
    }
    for expected in &wanted.expect_failures {
        let Some(verdict) = checks.get_mut(expected) else { continue };
        verdict.figures.insert("expected_to_fail".into(), json!(true));
        match verdict.status {
            Status::Passed => {
                verdict.status = Status::Failed;
                verdict
                    .violations
                    .push(format!("the scenario expects {expected} to fail, and it passed"));
            }
            Status::Failed => verdict.status = Status::FailedAsExpected,
            // Undecided stays undecided; a figures-only check is refused by validation.
            Status::Unknown | Status::Figures | Status::FailedAsExpected => {}
        }
    }
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
    let program: Program =
        Arc::new(|context: NodeContext| match pessimist_core::serve_role(context.clone()) {
            Some(program) => program,
            None => Box::pin(probe::serve(context)),
        });
    let knobs = serde_json::Value::Object(scenario.knobs.clone());
    let mut world = World::build(seed, history.clone(), &servers, &clients, knobs, program);
    history.record(EventKind::Phase {
        name: PHASE_FAULTS.into(),
        detail: json!({ "until_ms": scenario.phases.faults_ms }),
    });
    match scenario.workload.clone() {
        Workload::Probe(workload) => {
            run_probe(&scenario, workload, &plan, &mut world, &history, seed).await
        }
        Workload::Queue(workload) => {
            run_queue(&scenario, workload, &plan, &mut world, &history, seed).await
        }
        Workload::Service(workload) => {
            run_service(&scenario, workload, &plan, &mut world, &history, seed).await
        }
        Workload::Store(workload) => {
            run_store(&scenario, workload, &plan, &mut world, &history, seed).await
        }
    }
    let events = history.events();
    world.shutdown().await;
    events
}

/// How often a fault aimed at `@leader` looks again for a leader when none is known yet.
const LEADER_RETRY_MS: u64 = 50;
/// How long an instant fault (a clock jump, a corruption) aimed at `@leader` waits for one.
const LEADER_WAIT_INSTANT_MS: u64 = 2_000;

/// Plays the fault plan from the start of the run, then heals everything at the end of the
/// fault phase and records the heal.
///
/// A fault aimed at [`LEADER`] strikes the leader known when it starts; when none is known
/// yet (an election still running), it waits for one, looking again every
/// [`LEADER_RETRY_MS`] ms, and strikes the first one known before its window ends. A fault
/// that found no leader in its whole window (an instant one: in [`LEADER_WAIT_INSTANT_MS`]) is
/// recorded as vacuous.
async fn play_faults(world: &mut World, plan: &FaultPlan, phases: &Phases, history: &History) {
    let start = tokio::time::Instant::now() - Duration::from_micros(history.now_us());
    let at = |ms: u64| start + Duration::from_millis(ms);
    let events = &plan.events;
    let mut steps: BTreeSet<Step> = BTreeSet::new();
    for (id, event) in events.iter().enumerate() {
        steps.insert(Step { time_ms: event.at_ms, is_start: true, id: id as u64 });
        if !event.fault.is_instant() {
            steps.insert(Step {
                time_ms: event.end_ms(phases.faults_ms),
                is_start: false,
                id: id as u64,
            });
        }
    }
    while let Some(step) = steps.pop_first() {
        if step.time_ms >= phases.faults_ms {
            break; // Ends at the phase's end are the heal's work.
        }
        tokio::time::sleep_until(at(step.time_ms)).await;
        if step.is_start {
            let event = &events[step.id as usize];
            let Some(fault) = resolve_leader(&event.fault, history) else {
                let again_ms = step.time_ms + LEADER_RETRY_MS;
                let give_up_ms = match event.fault.is_instant() {
                    true => event.at_ms + LEADER_WAIT_INSTANT_MS,
                    false => event.end_ms(phases.faults_ms),
                };
                if again_ms < give_up_ms.min(phases.faults_ms) {
                    steps.insert(Step { time_ms: again_ms, ..step });
                    continue;
                }
                // A fault that found no target did nothing: it is vacuous, and counted so.
                let kind = events[step.id as usize].fault.kind();
                history.record(EventKind::Internal {
                    node: "nemesis".into(),
                    what: "fault_effect".into(),
                    detail: json!({
                        "fault": step.id,
                        "kind": kind,
                        "bit": false,
                        "reason": "no leader known to target",
                    }),
                });
                continue;
            };
            world.inject(step.id, &fault);
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
}

/// The fault with [`LEADER`] replaced by the latest leader the history knows (the leader of
/// the highest term); `None` when it names the leader and none is known yet.
fn resolve_leader(fault: &Fault, history: &History) -> Option<Fault> {
    let mut fault = fault.clone();
    if let Fault::Partition { groups } = &mut fault {
        if groups.iter().flatten().any(|node| node == LEADER) {
            let leader = history.scan(crate::queue::check::latest_leader)?.1;
            for node in groups.iter_mut().flatten().filter(|node| *node == LEADER) {
                node.clone_from(&leader);
            }
        }
        return Some(fault);
    }
    let Some(target) = fault.single_target_mut() else { return Some(fault) };
    if target != LEADER {
        return Some(fault);
    }
    let leader = history.scan(crate::queue::check::latest_leader);
    *target = leader?.1;
    Some(fault)
}

async fn run_probe(
    scenario: &Scenario,
    workload: ProbeWorkload,
    plan: &FaultPlan,
    world: &mut World,
    history: &History,
    seed: u64,
) {
    let phases = &scenario.phases;
    let clients = scenario.client_names();
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
    play_faults(world, plan, phases, history).await;
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
}

/// The queue's run: producers until the end of the heal phase, workers until the drain ends;
/// then a final status read of every acknowledged job.
async fn run_queue(
    scenario: &Scenario,
    workload: QueueWorkload,
    plan: &FaultPlan,
    world: &mut World,
    history: &History,
    seed: u64,
) {
    let phases = &scenario.phases;
    let clients = scenario.client_names();
    let queue_nodes = scenario.names_with_role(queue::ROLE);
    let options = ClientOptions {
        attempt_timeout: Duration::from_millis(workload.attempt_timeout_ms),
        attempts: workload.attempts,
        ..ClientOptions::default()
    };
    let (book, link_faults) = (world.book().clone(), world.link_faults().clone());
    let client_for = |process: u64, name: &str| {
        let (transport, _) = Transport::<QueueMessage>::unbound(
            name,
            book.clone(),
            TransportOptions::default(),
            link_faults.clone(),
            rng_for(seed, &format!("client/{process}/transport")),
        );
        QueueClient::new(
            transport,
            queue_nodes.clone(),
            Clock::system(),
            rng_for(seed, &format!("client/{process}/queue")),
            options.clone(),
        )
    };
    let until_us = (phases.faults_ms + phases.heal_ms) * 1000;
    let acknowledged = Acknowledged::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for process in 0..workload.producers {
        let node = &clients[process as usize % clients.len()];
        let task = crate::queue::workload::producer(
            process,
            workload.clone(),
            client_for(process, node),
            history.clone(),
            rng_for(seed, &format!("client/{process}/workload")),
            until_us,
            acknowledged.clone(),
        );
        producers.push(world.client(node).spawn(task));
    }
    let mut workers = Vec::new();
    for index in 0..workload.workers {
        let process = workload.producers + index;
        let node = &clients[process as usize % clients.len()];
        let task = crate::queue::workload::worker(
            process,
            workload.clone(),
            client_for(process, node),
            history.clone(),
            rng_for(seed, &format!("client/{process}/workload")),
            stop.clone(),
        );
        workers.push(world.client(node).spawn(task));
    }
    play_faults(world, plan, phases, history).await;
    for producer in producers {
        producer.await.expect("a producer panicked");
    }

    // The drain: workers go on until every acknowledged job is finished, within the bound.
    history.record(EventKind::Phase {
        name: PHASE_DRAIN.into(),
        detail: json!({ "bound_ms": phases.liveness_bound_ms }),
    });
    let monitor = workload.producers + workload.workers;
    let mut client = client_for(monitor, &clients[0]);
    let bound_us = phases.liveness_bound_ms * 1000;
    let drain = {
        let (history, acknowledged) = (history.clone(), acknowledged.clone());
        async move {
            let deadline_us = history.now_us() + bound_us;
            while history.now_us() < deadline_us {
                let jobs: Vec<JobId> =
                    acknowledged.lock().expect("acknowledged lock").iter().copied().collect();
                if jobs.is_empty() {
                    break;
                }
                let unfinished =
                    crate::queue::workload::read_statuses(monitor, &mut client, &history, &jobs)
                        .await;
                if unfinished.is_some_and(|unfinished| unfinished.is_empty()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            client
        }
    };
    let mut client = world.client(&clients[0]).spawn(drain).await.expect("the drain panicked");
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a worker panicked");
    }

    history.record(EventKind::Phase {
        name: PHASE_FINAL_READS.into(),
        detail: json!({ "bound_ms": phases.liveness_bound_ms }),
    });
    let jobs: Vec<JobId> =
        acknowledged.lock().expect("acknowledged lock").iter().copied().collect();
    if jobs.is_empty() {
        return;
    }
    let history = history.clone();
    let final_read = async move {
        let deadline_us = history.now_us() + bound_us;
        while history.now_us() < deadline_us {
            if crate::queue::workload::read_statuses(monitor, &mut client, &history, &jobs)
                .await
                .is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    world.client(&clients[0]).spawn(final_read).await.expect("the final read panicked");
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

/// The image service's run: the admin makes accounts and keys, uploaders and their pollers run
/// until the end of the heal phase; then the pollers drain (follow every accepted job to its
/// end) within the liveness bound.
async fn run_service(
    scenario: &Scenario,
    workload: ServiceWorkload,
    plan: &FaultPlan,
    world: &mut World,
    history: &History,
    seed: u64,
) {
    let phases = &scenario.phases;
    let clients = scenario.client_names();
    let knobs = serde_json::Value::Object(scenario.knobs.clone());
    let admin_key =
        pessimist_core::auth::AuthSettings::from_knobs(&knobs).expect("validated knobs").admin_key;
    let address = |name: &String| world.book().get(name).expect("every server has an address");
    let endpoints = Endpoints {
        api: scenario.names_with_role(pessimist_core::api::ROLE).iter().map(address).collect(),
        api_names: scenario.names_with_role(pessimist_core::api::ROLE),
        admin: scenario
            .names_with_role(pessimist_core::auth::ROLE)
            .iter()
            .map(|name| pessimist_core::auth::admin_address(address(name)))
            .collect(),
        admin_key,
        unreachable: Default::default(),
    };
    let until_us = (phases.faults_ms + phases.heal_ms) * 1000;
    let drain_until_us = until_us + phases.liveness_bound_ms * 1000;
    // The admin runs on the first client node; each uploader and its poller on the next in
    // turn.
    let processes = crate::service::workload::client_processes(
        &workload,
        &endpoints,
        history,
        seed,
        until_us,
        drain_until_us,
    );
    let tasks: Vec<_> = processes
        .into_iter()
        .map(|client| {
            let node = &clients[client.slot as usize % clients.len()];
            world.client(node).spawn(client.run)
        })
        .collect();
    play_faults(world, plan, phases, history).await;
    tokio::time::sleep(Duration::from_millis(phases.heal_ms)).await;
    history.record(EventKind::Phase {
        name: PHASE_DRAIN.into(),
        detail: json!({ "bound_ms": phases.liveness_bound_ms }),
    });
    for task in tasks {
        task.await.expect("a client process panicked");
    }
    let (billing, archive) = (
        scenario.names_with_role(pessimist_core::billing::ROLE),
        scenario.names_with_role(pessimist_core::billing::archive::ROLE),
    );
    if let (Some(billing), Some(archive)) = (billing.first(), archive.first()) {
        let usage = UsageSettings::from_knobs(&knobs).expect("validated knobs");
        let store = StoreSettings::from_knobs(&knobs).expect("validated knobs");
        let settle_ms = crate::usage::workload::settle_ms(&usage, &store);
        history.record(EventKind::Phase {
            name: PHASE_BILLING.into(),
            detail: json!({ "bound_ms": phases.liveness_bound_ms, "settle_ms": settle_ms }),
        });
        let process = 2 * workload.uploaders + 1;
        let (transport, _) = Transport::<BillingMessage>::unbound(
            &clients[0],
            world.book().clone(),
            TransportOptions::default(),
            world.link_faults().clone(),
            rng_for(seed, &format!("client/{process}/transport")),
        );
        let bill = FinalBill {
            process,
            transport,
            billing: billing.clone(),
            archive: archive.clone(),
            settle: Duration::from_millis(settle_ms),
            pause: Duration::from_millis(usage.flush_interval_ms),
            bound: Duration::from_millis(phases.liveness_bound_ms),
        };
        let task = world
            .client(&clients[0])
            .spawn(crate::usage::workload::final_bill(bill, history.clone()));
        task.await.expect("the billing client panicked");
    }
}

/// The usage store's run: shippers and readers until the end of the heal phase; from the
/// heal, the monitor dumps every node round after round, and once the shippers stopped
/// (phase `converge`) until every key's replicas agree, within the liveness bound; then every
/// node's final dump (phase `final_reads`).
async fn run_store(
    scenario: &Scenario,
    workload: StoreWorkload,
    plan: &FaultPlan,
    world: &mut World,
    history: &History,
    seed: u64,
) {
    let phases = &scenario.phases;
    let clients = scenario.client_names();
    let knobs = serde_json::Value::Object(scenario.knobs.clone());
    let settings = StoreSettings::from_knobs(&knobs).expect("validated knobs");
    let nodes = scenario.names_with_role(pessimist_core::store::ROLE);
    let options =
        StoreClientOptions { attempts: workload.attempts, ..StoreClientOptions::default() };
    let (book, link_faults) = (world.book().clone(), world.link_faults().clone());
    let client_for = |process: u64, name: &str| {
        let (transport, _) = Transport::<StoreMessage>::unbound(
            name,
            book.clone(),
            TransportOptions::default(),
            link_faults.clone(),
            rng_for(seed, &format!("client/{process}/transport")),
        );
        StoreClient::new(
            transport,
            &nodes,
            settings.clone(),
            options.clone(),
            Clock::system(),
            rng_for(seed, &format!("client/{process}/store")),
        )
    };
    let until_us = (phases.faults_ms + phases.heal_ms) * 1000;
    let mut tasks = Vec::new();
    for process in 0..workload.writers {
        let node = &clients[process as usize % clients.len()];
        let task = crate::store::workload::writer(
            process,
            format!("{node}/w{process}"),
            workload.clone(),
            client_for(process, node),
            history.clone(),
            rng_for(seed, &format!("client/{process}/workload")),
            until_us,
        );
        tasks.push(world.client(node).spawn(task));
    }
    for index in 0..workload.readers {
        let process = workload.writers + index;
        let node = &clients[process as usize % clients.len()];
        let task = crate::store::workload::reader(
            process,
            workload.clone(),
            client_for(process, node),
            history.clone(),
            rng_for(seed, &format!("client/{process}/workload")),
            until_us,
        );
        tasks.push(world.client(node).spawn(task));
    }
    play_faults(world, plan, phases, history).await;
    let monitor = workload.writers + workload.readers;
    let writers_done = Arc::new(AtomicBool::new(false));
    let watch = crate::store::workload::monitor(
        monitor,
        workload.clone(),
        client_for(monitor, &clients[0]),
        nodes.clone(),
        history.clone(),
        phases.liveness_bound_ms,
        writers_done.clone(),
    );
    let watch = world.client(&clients[0]).spawn(watch);
    for task in tasks {
        task.await.expect("a store client process panicked");
    }
    history.record(EventKind::Phase {
        name: PHASE_CONVERGE.into(),
        detail: json!({ "bound_ms": phases.liveness_bound_ms }),
    });
    writers_done.store(true, Ordering::Release);
    let client = watch.await.expect("the monitor panicked");
    history.record(EventKind::Phase {
        name: PHASE_FINAL_READS.into(),
        detail: json!({ "bound_ms": phases.liveness_bound_ms }),
    });
    let dumps = crate::store::workload::final_dumps(
        monitor,
        workload,
        client,
        nodes,
        history.clone(),
        phases.liveness_bound_ms,
    );
    world.client(&clients[0]).spawn(dumps).await.expect("the final dumps panicked");
}
