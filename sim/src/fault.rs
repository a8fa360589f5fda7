//! Fault plans: faults as data.
//!
//! A [`FaultPlan`] is a list of [`FaultEvent`]s: a fault, when it starts (simulated ms into the
//! run) and how long it lasts. Plans are written in scenario files or generated from the seed
//! by [`swarm_plan`] (swarm testing: each seed switches whole fault kinds on or off and draws
//! intensities from ranges), and because a plan is data a failing run can be shrunk by
//! dropping and shortening events.
//!
//! Faults are verbs on named nodes. Network partitions are expressed as sets of blocked
//! directed links, so overlapping partitions compose (see [`crate::nemesis`]).
//!
//! **Invariant:** a plan only names nodes of its topology, and every event starts inside the
//! fault phase (checked by [`FaultPlan::validate`]).

use std::collections::BTreeSet;

use pessimist_core::seams::rng::SeededRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest number of events one plan may hold.
pub const PLAN_EVENTS_MAX: usize = 1000;

/// One fault. Node fields name nodes of the topology.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Cut one node off from every other node, both directions.
    Isolate { node: String },
    /// Split the nodes into groups that cannot reach each other. Nodes named in no group form
    /// one more group together. A majority/minority split is two groups.
    Partition { groups: Vec<Vec<String>> },
    /// Block frames from `from` to `to` only: `to` still reaches `from`.
    OneWay { from: String, to: String },
    /// Two sides that cannot reach each other, and one bridge node that reaches both.
    Bridge { bridge: String, sides: [Vec<String>; 2] },
    /// Lose this fraction of packets everywhere (TCP retransmits, so frames arrive late).
    PacketLoss { rate: f64 },
    /// Every packet takes between `min_ms` and `max_ms` (the healthy range is 1 to 10 ms).
    LatencySpike { min_ms: u64, max_ms: u64 },
    /// Delay frames from `from` to `to` by `delay_ms` plus up to `jitter_ms`.
    LinkDelay { from: String, to: String, delay_ms: u64, jitter_ms: u64 },
    /// Send this fraction of frames twice, on every link.
    Duplicate { probability: f64 },
    /// Hold back this fraction of frames up to `window_ms`, so later ones overtake them.
    Reorder { probability: f64, window_ms: u64 },
    /// Lose this fraction of frames on every link, as a connection reset loses them.
    FrameLoss { probability: f64 },
    /// Kill the node's process; it restarts when the fault ends. Un-fsynced writes are lost.
    Crash { node: String },
    /// Kill the node as its next fsync (from the fault's start) begins, its writes still
    /// pending: the crash lands in the window a persistence-order bug needs. It restarts when
    /// the fault ends; a node that makes no fsync in the window is not killed (vacuous).
    CrashInFsync { node: String },
    /// Stop scheduling the node (a long GC pause or a VM migration); it resumes at the end.
    Pause { node: String },
    /// Multiply the node's disk latencies by `factor` (10 to 1000: a gray failure).
    SlowDisk { node: String, factor: u64 },
    /// Block every disk operation of the node for the fault's duration.
    DiskStall { node: String },
    /// While active, a crash of the node leaves a torn prefix of its pending writes.
    TornWrites { node: String },
    /// Fail each of the node's disk writes and fsyncs with this chance (an I/O error). A
    /// failed fsync drops the writes it covered, as Linux's page cache does.
    DiskErrors { node: String, probability: f64 },
    /// Refuse every disk write of the node for want of space.
    DiskFull { node: String },
    /// Kill every node named at the same instant (a power loss of a rack or a data centre);
    /// they restart when the fault ends. Un-fsynced writes are lost on each.
    PowerLoss { nodes: Vec<String> },
    /// Flip one bit in the node's durable data (in `file`, or a file at random).
    CorruptDisk {
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// Set the node's clock `offset_ms` away from true time.
    ClockOffset { node: String, offset_ms: i64 },
    /// Make the node's clock gain (positive) or lose `drift_ppm` microseconds a second.
    ClockDrift { node: String, drift_ppm: i64 },
    /// Move the node's clock by `delta_ms` at once, forward or back. It stays moved.
    ClockJump { node: String, delta_ms: i64 },
}

/// Largest clock offset or jump a fault may set, in ms: a year, past any skew a real clock
/// shows and far from overflowing the wall clock's i64 milliseconds however many jumps a plan
/// of bounded length adds up.
pub const CLOCK_SHIFT_MS_MAX: i64 = 365 * 86_400_000;

/// The fault kinds by name, for swarm settings and reports.
pub const FAULT_KINDS: &[&str] = &[
    "isolate",
    "partition",
    "one_way",
    "bridge",
    "packet_loss",
    "latency_spike",
    "link_delay",
    "duplicate",
    "reorder",
    "frame_loss",
    "crash",
    "crash_in_fsync",
    "pause",
    "slow_disk",
    "disk_stall",
    "torn_writes",
    "corrupt_disk",
    "disk_errors",
    "disk_full",
    "power_loss",
    "clock_offset",
    "clock_drift",
    "clock_jump",
];

impl Fault {
    /// The kind's name, as in scenario files.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Isolate { .. } => "isolate",
            Fault::Partition { .. } => "partition",
            Fault::OneWay { .. } => "one_way",
            Fault::Bridge { .. } => "bridge",
            Fault::PacketLoss { .. } => "packet_loss",
            Fault::LatencySpike { .. } => "latency_spike",
            Fault::LinkDelay { .. } => "link_delay",
            Fault::Duplicate { .. } => "duplicate",
            Fault::Reorder { .. } => "reorder",
            Fault::FrameLoss { .. } => "frame_loss",
            Fault::Crash { .. } => "crash",
            Fault::CrashInFsync { .. } => "crash_in_fsync",
            Fault::Pause { .. } => "pause",
            Fault::SlowDisk { .. } => "slow_disk",
            Fault::DiskStall { .. } => "disk_stall",
            Fault::TornWrites { .. } => "torn_writes",
            Fault::CorruptDisk { .. } => "corrupt_disk",
            Fault::DiskErrors { .. } => "disk_errors",
            Fault::DiskFull { .. } => "disk_full",
            Fault::PowerLoss { .. } => "power_loss",
            Fault::ClockOffset { .. } => "clock_offset",
            Fault::ClockDrift { .. } => "clock_drift",
            Fault::ClockJump { .. } => "clock_jump",
        }
    }

    /// Whether the fault acts once, at its start, with nothing to heal at its end.
    pub fn is_instant(&self) -> bool {
        matches!(self, Fault::CorruptDisk { .. } | Fault::ClockJump { .. })
    }

    /// Every node the fault names.
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            Fault::Isolate { node }
            | Fault::Crash { node }
            | Fault::CrashInFsync { node }
            | Fault::Pause { node }
            | Fault::SlowDisk { node, .. }
            | Fault::DiskStall { node }
            | Fault::TornWrites { node }
            | Fault::CorruptDisk { node, .. }
            | Fault::DiskErrors { node, .. }
            | Fault::DiskFull { node }
            | Fault::ClockOffset { node, .. }
            | Fault::ClockDrift { node, .. }
            | Fault::ClockJump { node, .. } => vec![node],
            Fault::PowerLoss { nodes } => nodes.iter().map(String::as_str).collect(),
            Fault::Partition { groups } => groups.iter().flatten().map(String::as_str).collect(),
            Fault::OneWay { from, to } | Fault::LinkDelay { from, to, .. } => vec![from, to],
            Fault::Bridge { bridge, sides } => std::iter::once(bridge.as_str())
                .chain(sides.iter().flatten().map(String::as_str))
                .collect(),
            Fault::PacketLoss { .. }
            | Fault::LatencySpike { .. }
            | Fault::Duplicate { .. }
            | Fault::Reorder { .. }
            | Fault::FrameLoss { .. } => vec![],
        }
    }

    /// The target of a fault aimed at one node (the node of a crash, a pause, a slow disk, a
    /// clock fault, an isolation), to read or rewrite; `None` for faults on links or groups.
    pub fn single_target_mut(&mut self) -> Option<&mut String> {
        match self {
            Fault::Isolate { node }
            | Fault::Crash { node }
            | Fault::CrashInFsync { node }
            | Fault::Pause { node }
            | Fault::SlowDisk { node, .. }
            | Fault::DiskStall { node }
            | Fault::TornWrites { node }
            | Fault::CorruptDisk { node, .. }
            | Fault::DiskErrors { node, .. }
            | Fault::DiskFull { node }
            | Fault::ClockOffset { node, .. }
            | Fault::ClockDrift { node, .. }
            | Fault::ClockJump { node, .. } => Some(node),
            _ => None,
        }
    }

    /// Checks the fault's own numbers. The error names the offending field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let probability = |field: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err((field.to_string(), format!("{value} is not a probability in [0, 1]")))
            }
        };
        match self {
            Fault::PacketLoss { rate } => probability("rate", *rate),
            Fault::DiskErrors { probability: p, .. } => probability("probability", *p),
            Fault::PowerLoss { nodes } => {
                let distinct: BTreeSet<&String> = nodes.iter().collect();
                if nodes.is_empty() || distinct.len() < nodes.len() {
                    return Err(("nodes".into(), "must name at least one node, each once".into()));
                }
                Ok(())
            }
            Fault::Duplicate { probability: p } | Fault::FrameLoss { probability: p } => {
                probability("probability", *p)
            }
            Fault::Reorder { probability: p, window_ms } => {
                probability("probability", *p)?;
                if *window_ms == 0 || *window_ms > 60_000 {
                    return Err(("window_ms".into(), "must be between 1 and 60000".into()));
                }
                Ok(())
            }
            Fault::LatencySpike { min_ms, max_ms } => {
                if min_ms >= max_ms || *max_ms > 60_000 {
                    return Err(("max_ms".into(), "need min_ms < max_ms <= 60000".into()));
                }
                Ok(())
            }
            Fault::LinkDelay { delay_ms, jitter_ms, .. } if delay_ms + jitter_ms > 60_000 => {
                Err(("delay_ms".into(), "delay plus jitter beyond 60000 ms".into()))
            }
            Fault::SlowDisk { factor, .. } if !(10..=1000).contains(factor) => {
                Err(("factor".into(), format!("{factor} is outside 10..=1000")))
            }
            Fault::ClockDrift { drift_ppm, .. }
                if drift_ppm.unsigned_abs()
                    > pessimist_core::seams::clock::DRIFT_PPM_MAX.unsigned_abs() =>
            {
                Err(("drift_ppm".into(), format!("{drift_ppm} is beyond +-100000 ppm")))
            }
            Fault::ClockOffset { offset_ms, .. }
                if offset_ms.unsigned_abs() > CLOCK_SHIFT_MS_MAX as u64 =>
            {
                Err((
                    "offset_ms".into(),
                    format!("{offset_ms} is beyond +-{CLOCK_SHIFT_MS_MAX} ms (a year)"),
                ))
            }
            Fault::ClockJump { delta_ms, .. }
                if delta_ms.unsigned_abs() > CLOCK_SHIFT_MS_MAX as u64 =>
            {
                Err((
                    "delta_ms".into(),
                    format!("{delta_ms} is beyond +-{CLOCK_SHIFT_MS_MAX} ms (a year)"),
                ))
            }
            Fault::Partition { groups } => {
                let mut seen = BTreeSet::new();
                for node in groups.iter().flatten() {
                    if !seen.insert(node) {
                        return Err(("groups".into(), format!("{node} is in two groups")));
                    }
                }
                Ok(())
            }
            Fault::Bridge { bridge, sides } => {
                if sides[0].iter().any(|n| sides[1].contains(n) || n == bridge)
                    || sides[1].contains(bridge)
                {
                    return Err((
                        "sides".into(),
                        "the sides and the bridge must not overlap".into(),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A fault and its window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultEvent {
    /// When the fault starts, in simulated milliseconds from the run's start.
    pub at_ms: u64,
    /// How long it lasts. `None`: until the heal phase. Ignored by instant faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub fault: Fault,
}

impl FaultEvent {
    /// When the fault ends, given when the fault phase ends.
    pub fn end_ms(&self, faults_end_ms: u64) -> u64 {
        match self.duration_ms {
            Some(duration_ms) => (self.at_ms + duration_ms).min(faults_end_ms),
            None => faults_end_ms,
        }
    }
}

/// An ordered list of fault events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct FaultPlan {
    pub events: Vec<FaultEvent>,
}

impl FaultPlan {
    /// Checks every event against the topology and the fault phase. The error is
    /// `(path, message)`, the path relative to the plan (`[2].fault.node`).
    /// Network faults may name any node, clients included; process, disk and clock faults
    /// only `servers`.
    pub fn validate(
        &self,
        servers: &BTreeSet<String>,
        clients: &BTreeSet<String>,
        faults_ms: u64,
    ) -> Result<(), (String, String)> {
        if self.events.len() > PLAN_EVENTS_MAX {
            return Err((String::new(), format!("more than {PLAN_EVENTS_MAX} events")));
        }
        for (index, event) in self.events.iter().enumerate() {
            if event.at_ms >= faults_ms {
                let message = format!(
                    "starts at {} ms, after the fault phase ends ({faults_ms} ms)",
                    event.at_ms
                );
                return Err((format!("[{index}].at_ms"), message));
            }
            if event.duration_ms == Some(0) {
                return Err((format!("[{index}].duration_ms"), "must be positive".into()));
            }
            let network = crate::nemesis::is_network_fault(&event.fault);
            let single = event.fault.clone().single_target_mut().is_some();
            let partition = matches!(event.fault, Fault::Partition { .. });
            for node in event.fault.nodes() {
                if node == LEADER {
                    if single || partition {
                        continue;
                    }
                    let message = format!(
                        "{LEADER} can only be the target of a one-node fault or in a partition's groups"
                    );
                    return Err((format!("[{index}].fault"), message));
                }
                if network && clients.contains(node) {
                    continue;
                }
                if !servers.contains(node) {
                    let known = if clients.contains(node) {
                        "a client node, which this fault cannot target"
                    } else {
                        "not in the topology"
                    };
                    return Err((format!("[{index}].fault"), format!("node {node:?} is {known}")));
                }
            }
            event
                .fault
                .validate()
                .map_err(|(field, message)| (format!("[{index}].fault.{field}"), message))?;
        }
        Ok(())
    }

    /// The events in start order (stable for equal starts).
    pub fn sorted(&self) -> Vec<FaultEvent> {
        let mut events = self.events.clone();
        events.sort_by_key(|event| event.at_ms);
        events
    }
}

/// A target a one-node fault (or a partition's group) may name instead of a node: the leader
/// of the moment, as the history's latest `raft_role` events tell it when the fault starts. A
/// fault plan can then say "isolate the leader", or "cut the leader and client-1 off from the
/// rest", without knowing who will lead.
pub const LEADER: &str = "@leader";

/// Swarm testing: which fault kinds a seed may switch on, and the ranges intensities are
/// drawn from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SwarmSettings {
    /// Kinds that may be drawn (default: every kind).
    pub kinds: Vec<String>,
    /// Chance that each kind is switched on for a seed.
    pub kind_probability: f64,
    /// How many events to draw, at most.
    pub events_max: usize,
    /// Range of a fault's duration, in ms.
    pub duration_ms: [u64; 2],
    /// Nodes faults may target (default: every server node of the topology).
    pub targets: Vec<String>,
    /// Chance that a one-node fault targets the leader of the moment ([`LEADER`]) instead of
    /// a drawn node.
    pub leader_probability: f64,
}

impl Default for SwarmSettings {
    fn default() -> Self {
        SwarmSettings {
            kinds: FAULT_KINDS.iter().map(|kind| kind.to_string()).collect(),
            kind_probability: 0.5,
            events_max: 12,
            duration_ms: [500, 5_000],
            targets: Vec::new(),
            leader_probability: 0.0,
        }
    }
}

impl SwarmSettings {
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (index, kind) in self.kinds.iter().enumerate() {
            if !FAULT_KINDS.contains(&kind.as_str()) {
                return Err((format!("kinds[{index}]"), format!("unknown fault kind {kind:?}")));
            }
        }
        if !(0.0..=1.0).contains(&self.kind_probability) {
            return Err(("kind_probability".into(), "not a probability in [0, 1]".into()));
        }
        if self.events_max == 0 || self.events_max > PLAN_EVENTS_MAX {
            return Err(("events_max".into(), format!("must be between 1 and {PLAN_EVENTS_MAX}")));
        }
        if !(0.0..=1.0).contains(&self.leader_probability) {
            return Err(("leader_probability".into(), "not a probability in [0, 1]".into()));
        }
        if self.duration_ms[0] == 0 || self.duration_ms[0] > self.duration_ms[1] {
            return Err(("duration_ms".into(), "need 0 < min <= max".into()));
        }
        Ok(())
    }
}

/// Draws a fault plan from `rng`: first the kinds switched on for this seed, then events of
/// those kinds at uniform times in the fault phase. `nodes` are the targets (sorted).
pub fn swarm_plan(
    settings: &SwarmSettings,
    nodes: &[String],
    faults_ms: u64,
    rng: &mut SeededRng,
) -> FaultPlan {
    assert!(!nodes.is_empty(), "a swarm needs target nodes");
    assert!(faults_ms > 0, "a swarm needs a fault phase");
    let enabled: Vec<&str> = settings
        .kinds
        .iter()
        .filter(|_| rng.random_bool(settings.kind_probability))
        .map(String::as_str)
        .collect();
    if enabled.is_empty() {
        return FaultPlan::default();
    }
    let count = rng.random_range(1..=settings.events_max);
    let mut events = Vec::with_capacity(count);
    // A node whose fsynced data is corrupt stops for good: one such node per role, so every
    // group keeps a majority and the run stays within the faults its design tolerates.
    let mut corrupted_roles: BTreeSet<&str> = BTreeSet::new();
    for _ in 0..count {
        let kind = *enabled.choose(rng).expect("enabled is not empty");
        let at_ms = rng.random_range(0..faults_ms);
        let duration_ms = rng.random_range(settings.duration_ms[0]..=settings.duration_ms[1]);
        let mut fault = draw_fault(kind, nodes, rng);
        if let Fault::CorruptDisk { node, .. } = &fault {
            let role = role_of(nodes.iter().find(|n| *n == node).expect("drawn from nodes"));
            if !corrupted_roles.insert(role) {
                continue;
            }
        } else if settings.leader_probability > 0.0
            && !matches!(fault, Fault::TornWrites { .. })
            && rng.random_bool(settings.leader_probability)
        {
            if let Some(node) = fault.single_target_mut() {
                *node = LEADER.to_string();
            }
        }
        let duration_ms = (!fault.is_instant()).then_some(duration_ms);
        if let Some(crash) = crash_to_reveal(&fault, at_ms, duration_ms, faults_ms, rng) {
            events.push(crash);
        }
        events.push(FaultEvent { at_ms, duration_ms, fault });
    }
    events.sort_by_key(|event| event.at_ms);
    FaultPlan { events }
}

fn draw_fault(kind: &str, nodes: &[String], rng: &mut SeededRng) -> Fault {
    let pick = |rng: &mut SeededRng| nodes.choose(rng).expect("nodes not empty").clone();
    let pick_two = |rng: &mut SeededRng| {
        let a = pick(rng);
        let others: Vec<&String> = nodes.iter().filter(|n| **n != a).collect();
        let b = others.choose(rng).map(|n| (*n).clone()).unwrap_or_else(|| a.clone());
        (a, b)
    };
    match kind {
        "isolate" => Fault::Isolate { node: pick(rng) },
        "partition" => {
            let mut shuffled = nodes.to_vec();
            shuffled.shuffle(rng);
            // A minority strictly smaller than half: the rest keeps a majority.
            let minority = rng.random_range(1..=(nodes.len().saturating_sub(1) / 2).max(1));
            Fault::Partition { groups: vec![shuffled[..minority].to_vec()] }
        }
        "one_way" => {
            let (from, to) = pick_two(rng);
            Fault::OneWay { from, to }
        }
        "bridge" => {
            let mut shuffled = nodes.to_vec();
            shuffled.shuffle(rng);
            let bridge = shuffled.remove(0);
            let half = shuffled.len() / 2;
            let right = shuffled.split_off(half);
            Fault::Bridge { bridge, sides: [shuffled, right] }
        }
        "packet_loss" => Fault::PacketLoss { rate: rng.random_range(0.01..0.3) },
        "latency_spike" => {
            let min_ms = rng.random_range(10..200);
            Fault::LatencySpike { min_ms, max_ms: min_ms + rng.random_range(1..500) }
        }
        "link_delay" => {
            let (from, to) = pick_two(rng);
            Fault::LinkDelay {
                from,
                to,
                delay_ms: rng.random_range(10..500),
                jitter_ms: rng.random_range(0..100),
            }
        }
        "duplicate" => Fault::Duplicate { probability: rng.random_range(0.01..0.2) },
        "reorder" => Fault::Reorder {
            probability: rng.random_range(0.01..0.3),
            window_ms: rng.random_range(1..100),
        },
        "frame_loss" => Fault::FrameLoss { probability: rng.random_range(0.001..0.05) },
        "crash" => Fault::Crash { node: pick(rng) },
        "crash_in_fsync" => Fault::CrashInFsync { node: pick(rng) },
        "pause" => Fault::Pause { node: pick(rng) },
        "slow_disk" => {
            Fault::SlowDisk { node: pick(rng), factor: [10, 100, 1000][rng.random_range(0..3)] }
        }
        "disk_stall" => Fault::DiskStall { node: pick(rng) },
        "torn_writes" => Fault::TornWrites { node: pick(rng) },
        "corrupt_disk" => Fault::CorruptDisk { node: pick(rng), file: None },
        "disk_errors" => {
            Fault::DiskErrors { node: pick(rng), probability: rng.random_range(0.01..0.3) }
        }
        "disk_full" => Fault::DiskFull { node: pick(rng) },
        "power_loss" => Fault::PowerLoss { nodes: draw_power_loss(nodes, rng) },
        "clock_offset" => {
            Fault::ClockOffset { node: pick(rng), offset_ms: rng.random_range(-30_000..30_000) }
        }
        "clock_drift" => {
            Fault::ClockDrift { node: pick(rng), drift_ppm: rng.random_range(-50_000..50_000) }
        }
        "clock_jump" => {
            Fault::ClockJump { node: pick(rng), delta_ms: rng.random_range(-60_000..60_000) }
        }
        other => panic!("swarm settings were validated, yet name fault kind {other:?}"),
    }
}

/// Torn writes and corruption show only when the node next restarts: torn writes need a crash
/// while writes are pending, damaged durable data is read only by recovery. A swarm that drew
/// them at a random time would rarely see either, so each comes with a crash of its node: in
/// its next fsync inside the torn-write window, or shortly after the corruption. `None` for other faults, or when no
/// crash fits in the fault phase.
fn crash_to_reveal(
    fault: &Fault,
    at_ms: u64,
    duration_ms: Option<u64>,
    faults_ms: u64,
    rng: &mut SeededRng,
) -> Option<FaultEvent> {
    let (crash, crash_at_ms) = match fault {
        // In an fsync: the moment the node has appended and not yet made durable.
        Fault::TornWrites { node } => (
            Fault::CrashInFsync { node: node.clone() },
            at_ms + rng.random_range(0..duration_ms.unwrap_or(1).max(1)),
        ),
        Fault::CorruptDisk { node, .. } => {
            (Fault::Crash { node: node.clone() }, at_ms + rng.random_range(100..2_000))
        }
        _ => return None,
    };
    (crash_at_ms < faults_ms).then(|| FaultEvent {
        at_ms: crash_at_ms,
        duration_ms: Some(rng.random_range(500..3_000)),
        fault: crash,
    })
}

/// A node's role as its name tells it: the name without its trailing `-N` (`queue-2` is a
/// `queue`).
fn role_of(node: &str) -> &str {
    node.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('-')
}

/// The nodes a correlated power loss takes down: a majority or all of the nodes of one role
/// (a node's role is its name without the trailing `-N`), since a group that loses a majority
/// at once is where persistence-order and recovery bugs show.
fn draw_power_loss(nodes: &[String], rng: &mut SeededRng) -> Vec<String> {
    let roles: BTreeSet<&str> = nodes.iter().map(|node| role_of(node)).collect();
    let roles: Vec<&str> = roles.into_iter().collect();
    let role = *roles.choose(rng).expect("nodes not empty");
    let mut group: Vec<String> =
        nodes.iter().filter(|node| role_of(node) == role).cloned().collect();
    let majority = group.len() / 2 + 1;
    let size = if rng.random_bool(0.5) { majority } else { group.len() };
    group.shuffle(rng);
    group.truncate(size);
    group.sort();
    group
}

#[cfg(test)]
mod tests {
    use super::*;
    use pessimist_core::seams::rng::rng_for;

    fn nodes() -> Vec<String> {
        (1..=5).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn clock_shifts_are_bounded() {
        let node = "n1".to_string();
        for (fault, field) in [
            (Fault::ClockJump { node: node.clone(), delta_ms: CLOCK_SHIFT_MS_MAX + 1 }, "delta_ms"),
            (Fault::ClockOffset { node: node.clone(), offset_ms: i64::MIN }, "offset_ms"),
        ] {
            assert_eq!(fault.validate().unwrap_err().0, field, "{fault:?}");
        }
        for fault in [
            Fault::ClockJump { node: node.clone(), delta_ms: -CLOCK_SHIFT_MS_MAX },
            Fault::ClockOffset { node, offset_ms: CLOCK_SHIFT_MS_MAX },
        ] {
            fault.validate().unwrap();
        }
    }

    #[test]
    fn every_kind_draws_a_valid_fault_of_that_kind() {
        let mut rng = rng_for(1, "test");
        let topology: BTreeSet<String> = nodes().into_iter().collect();
        for kind in FAULT_KINDS {
            for _ in 0..20 {
                let fault = draw_fault(kind, &nodes(), &mut rng);
                assert_eq!(fault.kind(), *kind);
                fault.validate().unwrap();
                let plan = FaultPlan {
                    events: vec![FaultEvent { at_ms: 0, duration_ms: Some(1), fault }],
                };
                plan.validate(&topology, &BTreeSet::new(), 10).unwrap();
            }
        }
    }

    #[test]
    fn swarm_plans_follow_the_seed_and_switch_kinds() {
        let settings = SwarmSettings::default();
        let plan = |seed| swarm_plan(&settings, &nodes(), 10_000, &mut rng_for(seed, "swarm"));
        assert_eq!(plan(3), plan(3));
        let kinds_per_seed: BTreeSet<Vec<&str>> = (0..20u64)
            .map(|seed| {
                let mut kinds: Vec<&str> =
                    plan(seed).events.iter().map(|e| e.fault.kind()).collect();
                kinds.sort();
                kinds.dedup();
                kinds
            })
            .collect();
        assert!(kinds_per_seed.len() > 10, "seeds should switch different kinds on");
    }

    #[test]
    fn power_loss_takes_a_majority_or_all_of_one_role() {
        let nodes: Vec<String> = ["api-1", "api-2", "queue-1", "queue-2", "queue-3", "queue-4"]
            .iter()
            .map(|n| n.to_string())
            .collect();
        let mut sizes = BTreeSet::new();
        for seed in 0..200 {
            let drawn = draw_power_loss(&nodes, &mut rng_for(seed, "power"));
            let roles: BTreeSet<&str> = drawn.iter().map(|n| role_of(n)).collect();
            assert_eq!(roles.len(), 1, "{drawn:?}");
            let of_role = nodes.iter().filter(|n| role_of(n) == role_of(&drawn[0])).count();
            assert!(drawn.len() == of_role || drawn.len() == of_role / 2 + 1, "{drawn:?}");
            sizes.insert((role_of(&drawn[0]).to_string(), drawn.len()));
        }
        let expected = [("api", 2), ("queue", 3), ("queue", 4)];
        let expected = expected.iter().map(|(r, n)| (r.to_string(), *n)).collect();
        assert_eq!(sizes, expected);
    }

    #[test]
    fn a_swarm_corrupts_at_most_one_node_per_role() {
        let settings = SwarmSettings {
            kinds: vec!["corrupt_disk".into()],
            kind_probability: 1.0,
            events_max: 30,
            ..SwarmSettings::default()
        };
        let nodes: Vec<String> =
            ["a-1", "a-2", "a-3", "b-1", "b-2"].iter().map(|n| n.to_string()).collect();
        let mut most = 0;
        for seed in 0..50 {
            let plan = swarm_plan(&settings, &nodes, 10_000, &mut rng_for(seed, "swarm"));
            let roles: Vec<&str> = plan
                .events
                .iter()
                .filter_map(|e| match &e.fault {
                    Fault::CorruptDisk { node, .. } => Some(role_of(node)),
                    Fault::Crash { .. } => None,
                    other => panic!("{other:?}"),
                })
                .collect();
            let distinct: BTreeSet<&str> = roles.iter().copied().collect();
            assert_eq!(distinct.len(), roles.len(), "seed {seed}: {roles:?}");
            most = most.max(roles.len());
        }
        assert_eq!(most, 2, "some seed should corrupt one node of each role");
    }

    #[test]
    fn torn_writes_and_corruption_come_with_a_crash_that_reveals_them() {
        for kind in ["torn_writes", "corrupt_disk"] {
            let settings = SwarmSettings {
                kinds: vec![kind.into()],
                kind_probability: 1.0,
                events_max: 1,
                ..SwarmSettings::default()
            };
            let mut paired = 0;
            for seed in 0..50 {
                let plan = swarm_plan(&settings, &nodes(), 60_000, &mut rng_for(seed, "swarm"));
                let fault = plan.events.iter().find(|e| e.fault.kind() == kind).unwrap();
                let crash_kind = if kind == "torn_writes" { "crash_in_fsync" } else { "crash" };
                let Some(crash) = plan.events.iter().find(|e| e.fault.kind() == crash_kind) else {
                    continue;
                };
                paired += 1;
                assert_eq!(crash.fault.nodes(), fault.fault.nodes(), "seed {seed}");
                assert!(crash.at_ms >= fault.at_ms, "seed {seed}");
                if let Some(duration_ms) = fault.duration_ms {
                    assert!(crash.at_ms < fault.at_ms + duration_ms, "seed {seed}");
                }
            }
            assert!(paired >= 45, "{kind}: only {paired} of 50 plans paired a crash");
        }
    }

    #[test]
    fn fault_json_rejects_unknown_fields() {
        let good: Fault = serde_json::from_str(r#"{"kind":"isolate","node":"n1"}"#).unwrap();
        assert_eq!(good, Fault::Isolate { node: "n1".into() });
        let bad = serde_json::from_str::<Fault>(r#"{"kind":"isolate","node":"n1","nod":"x"}"#);
        assert!(bad.unwrap_err().to_string().contains("unknown field `nod`"));
    }

    #[test]
    fn plan_validation_names_the_field() {
        let topology: BTreeSet<String> = nodes().into_iter().collect();
        let plan = FaultPlan {
            events: vec![FaultEvent {
                at_ms: 5,
                duration_ms: None,
                fault: Fault::Crash { node: "zz".into() },
            }],
        };
        assert_eq!(plan.validate(&topology, &BTreeSet::new(), 10).unwrap_err().0, "[0].fault");
        let late = FaultPlan {
            events: vec![FaultEvent {
                at_ms: 50,
                duration_ms: None,
                fault: Fault::Crash { node: "n1".into() },
            }],
        };
        assert_eq!(late.validate(&topology, &BTreeSet::new(), 10).unwrap_err().0, "[0].at_ms");
    }
}
