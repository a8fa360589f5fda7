//! Scenarios: what to run, described as data.
//!
//! A scenario gives the topology, the design knobs, the workload, the phases (faults, heal,
//! liveness bound), the fault plan or swarm settings, the checks with their thresholds, and
//! the seeds. Unknown fields are rejected at every level. Parsing with positions is the
//! scenario runner's job; [`Scenario::validate`] adds the checks types cannot express (names
//! that must exist, ranges) and names the offending field by its path.

use std::collections::BTreeSet;

use pessimist_core::billing::BillingSettings;
use pessimist_core::node::KnobSettings;
use pessimist_core::queue::QueueSettings;
use pessimist_core::store::StoreSettings;
use pessimist_core::usage::UsageSettings;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fault::{Fault, FaultPlan, SwarmSettings};
use crate::probe::ProbeWorkload;
use crate::queue::workload::QueueWorkload;
use crate::service::workload::ServiceWorkload;
use crate::store::workload::StoreWorkload;
use crate::variant::Variant;

/// Server nodes a scenario may declare.
pub const SERVER_NODES_MAX: usize = 64;
/// Client nodes a scenario may declare.
pub const CLIENT_NODES_MAX: usize = 16;
/// Longest simulated run, in ms (a day): a bound so a typo cannot run forever.
pub const RUN_MS_MAX: u64 = 86_400_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The JSON Schema the file follows (for editors; the loader ignores it).
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub topology: Topology,
    /// Design knobs handed to every node (the service reads its settings there).
    #[serde(default)]
    pub knobs: serde_json::Map<String, serde_json::Value>,
    pub workload: Workload,
    pub phases: Phases,
    #[serde(default)]
    pub faults: Faults,
    #[serde(default)]
    pub checks: Checks,
    /// Situations the scenario exists for, which some seed must reach: a built-in
    /// (`leader_change`, `dead_letter`, `lease_expired`, `hinted_handoff`, `read_repair`,
    /// `anti_entropy_repair`, `revocation_during_outage`, `torn_tail_recovered`,
    /// `corruption_detected`, `worker_oom_kill`, `api_server_shed_load`, `fault_bit`; see
    /// `sim/src/coverage.rs`) or the name of any internal event (`worker_crash`). A run or
    /// sweep in which no seed reached one fails the scenario.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_happen: Vec<String>,
    /// The seeds `run` uses when none is given.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Design variants `pessimist compare` runs side by side on the same seeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
}

fn default_seeds() -> Vec<u64> {
    vec![1, 2, 3]
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub nodes: Vec<NodeDeclaration>,
    /// Client nodes that run the workload (named `client-1`...).
    #[serde(default = "one")]
    pub clients: usize,
}

fn one() -> usize {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeDeclaration {
    pub name: String,
    pub role: String,
}

/// The workload, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Workload {
    /// The seam probe (see [`crate::probe`]); every node has role `probe`.
    Probe(ProbeWorkload),
    /// Producers and workers of the replicated job queue (see [`crate::queue::workload`]);
    /// every node has role `queue`.
    Queue(QueueWorkload),
    /// HTTP clients of the whole image service (see [`crate::service::workload`]); nodes have
    /// the roles `queue`, `auth`, `api` and `worker`, at least one of each.
    Service(ServiceWorkload),
    /// Usage shippers and readers of the usage store (see [`crate::store::workload`]); every
    /// node has role `store`.
    Store(StoreWorkload),
}

/// The roles the image service's usage pipeline adds, all or none: the usage store's nodes,
/// one billing node and one archive.
pub const USAGE_ROLES: [&str; 3] = [
    pessimist_core::store::ROLE,
    pessimist_core::billing::ROLE,
    pessimist_core::billing::archive::ROLE,
];

/// The roles of the image service's nodes.
pub const SERVICE_ROLES: [&str; 4] = [
    pessimist_core::queue::ROLE,
    pessimist_core::auth::ROLE,
    pessimist_core::api::ROLE,
    pessimist_core::worker::ROLE,
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Phases {
    /// Length of the fault phase: faults start inside it, and all end when it ends.
    pub faults_ms: u64,
    /// How long the workload goes on after the heal.
    pub heal_ms: u64,
    /// After the heal phase, every node must answer within this bound.
    pub liveness_bound_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Faults at fixed times.
    #[serde(default)]
    pub plan: FaultPlan,
    /// Faults drawn from the seed, added to the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmSettings>,
}

/// Which checkers run, and their thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    pub durability: bool,
    pub integrity: bool,
    pub liveness: bool,
    /// Off by default: the search can take long on histories with many operations of
    /// unknown outcome (its budget: `lincheck::STATES_EXPLORED_MAX` states).
    pub linearizability: bool,
    /// Minimum share of operations that succeed after the heal (none: figures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heal_ok_fraction_min: Option<f64>,
    /// Checks this scenario expects to fail: it demonstrates a broken design (a fleet without
    /// quarantine). Such a check passes the run when it fails, and fails it when it passes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expect_failures: Vec<String>,
    /// Every fault the plan injects must have an effect (`faults_bite` fails on a vacuous
    /// one: a partition nobody sent across, a crash of a node already down, an `@leader` with
    /// no leader). Off: the vacuous faults are counted as figures.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub faults_bite: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            durability: true,
            integrity: true,
            liveness: true,
            linearizability: false,
            heal_ok_fraction_min: None,
            expect_failures: Vec::new(),
            faults_bite: false,
        }
    }
}

/// Checks that only measure, in every scenario: they have no threshold, so they cannot fail
/// and a scenario cannot expect them to.
pub const FIGURES_ONLY_CHECKS: [&str; 4] =
    ["leases", "failover", "fault_availability", "staleness"];

/// A validation error: the field's path (`faults.plan[2].fault.node`) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

/// Checks the settings of one service's knob, if the scenario sets it.
fn check_knob<T: KnobSettings>(knobs: &serde_json::Value) -> Result<(), Invalid> {
    T::from_knobs(knobs).map(drop).map_err(|(field, message)| match field.is_empty() {
        true => invalid(format!("knobs.{}", T::KNOB), message),
        false => invalid(format!("knobs.{}.{field}", T::KNOB), message),
    })
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { path: path.into(), message: message.into() }
}

impl Scenario {
    /// Server node names, sorted.
    pub fn server_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.topology.nodes.iter().map(|node| node.name.clone()).collect();
        names.sort();
        names
    }

    /// The names of the nodes with `role`, sorted.
    pub fn names_with_role(&self, role: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .topology
            .nodes
            .iter()
            .filter(|node| node.role == role)
            .map(|node| node.name.clone())
            .collect();
        names.sort();
        names
    }

    /// The roles the scenario's workload allows its nodes.
    pub fn workload_roles(&self) -> &'static [&'static str] {
        match &self.workload {
            Workload::Probe(_) => &["probe"],
            Workload::Queue(_) => &[pessimist_core::queue::ROLE],
            Workload::Service(_) => &SERVICE_ROLES,
            Workload::Store(_) => &[pessimist_core::store::ROLE],
        }
    }

    /// The roles the scenario's workload also allows, none of them required.
    pub fn optional_roles(&self) -> &'static [&'static str] {
        match &self.workload {
            Workload::Service(_) => &USAGE_ROLES,
            _ => &[],
        }
    }

    /// Client node names.
    pub fn client_names(&self) -> Vec<String> {
        (1..=self.topology.clients).map(|i| format!("client-{i}")).collect()
    }

    /// Checks what the types cannot: sizes, names, references, ranges.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.name.is_empty()
            || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("name", "must be non-empty letters, digits, '-' or '_'"));
        }
        for (index, name) in self.must_happen.iter().enumerate() {
            if !crate::coverage::is_situation_name(name) {
                return Err(invalid(
                    format!("must_happen[{index}]"),
                    format!(
                        "{name:?} is not a situation: a built-in ({}) or an event name \
                         (lower-case letters, digits, '_')",
                        crate::coverage::builtin_names().join(", ")
                    ),
                ));
            }
        }
        for (index, name) in self.checks.expect_failures.iter().enumerate() {
            let figures_only = FIGURES_ONLY_CHECKS.contains(&name.as_str())
                || (name == "faults_bite" && !self.checks.faults_bite)
                || (name == "availability" && self.checks.heal_ok_fraction_min.is_none());
            if figures_only {
                return Err(invalid(
                    format!("checks.expect_failures[{index}]"),
                    format!("{name:?} only measures in this scenario (it cannot fail)"),
                ));
            }
        }
        let nodes = &self.topology.nodes;
        if nodes.is_empty() || nodes.len() > SERVER_NODES_MAX {
            return Err(invalid(
                "topology.nodes",
                format!("must hold 1 to {SERVER_NODES_MAX} nodes"),
            ));
        }
        if self.topology.clients == 0 || self.topology.clients > CLIENT_NODES_MAX {
            return Err(invalid("topology.clients", format!("must be 1 to {CLIENT_NODES_MAX}")));
        }
        let mut names = BTreeSet::new();
        for (index, node) in nodes.iter().enumerate() {
            let valid = !node.name.is_empty()
                && node.name.len() <= 64
                && node.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid || node.name.starts_with("client-") {
                return Err(invalid(
                    format!("topology.nodes[{index}].name"),
                    "must be 1 to 64 letters, digits, '-' or '_', not starting with 'client-'",
                ));
            }
            if !names.insert(node.name.clone()) {
                return Err(invalid(
                    format!("topology.nodes[{index}].name"),
                    format!("duplicate node name {:?}", node.name),
                ));
            }
            let roles: Vec<&str> =
                self.workload_roles().iter().chain(self.optional_roles()).copied().collect();
            if !roles.contains(&node.role.as_str()) {
                return Err(invalid(
                    format!("topology.nodes[{index}].role"),
                    format!(
                        "role {:?} does not serve this workload (expected one of {roles:?})",
                        node.role
                    ),
                ));
            }
        }
        for role in self.workload_roles() {
            if !nodes.iter().any(|node| node.role == *role) {
                return Err(invalid("topology.nodes", format!("needs at least one {role:?} node")));
            }
        }
        let usage_roles: Vec<usize> =
            USAGE_ROLES.iter().map(|role| self.names_with_role(role).len()).collect();
        let pipeline_complete = usage_roles[0] > 0 && usage_roles[1] == 1 && usage_roles[2] == 1;
        let service = matches!(self.workload, Workload::Service(_));
        if service && usage_roles.iter().any(|count| *count > 0) && !pipeline_complete {
            return Err(invalid(
                "topology.nodes",
                format!(
                    "the usage pipeline needs store nodes, one billing node and one archive \
                     node (found {} store, {} billing, {} archive)",
                    usage_roles[0], usage_roles[1], usage_roles[2]
                ),
            ));
        }
        let workload = match &self.workload {
            Workload::Probe(probe) => probe.validate(),
            Workload::Queue(queue) => queue.validate(),
            Workload::Service(service) => service.validate(),
            Workload::Store(store) => store.validate(),
        };
        workload.map_err(|(field, message)| invalid(format!("workload.{field}"), message))?;
        let knobs = serde_json::Value::Object(self.knobs.clone());
        check_knob::<QueueSettings>(&knobs)?;
        check_knob::<pessimist_core::auth::AuthSettings>(&knobs)?;
        check_knob::<pessimist_core::api::ApiSettings>(&knobs)?;
        check_knob::<pessimist_core::worker::WorkerSettings>(&knobs)?;
        check_knob::<StoreSettings>(&knobs)?;
        check_knob::<UsageSettings>(&knobs)?;
        check_knob::<BillingSettings>(&knobs)?;
        let usage = UsageSettings::from_knobs(&knobs).expect("checked just above");
        BillingSettings::from_knobs(&knobs)
            .expect("checked just above")
            .validate_with(&usage)
            .map_err(|(field, message)| invalid(format!("knobs.billing.{field}"), message))?;
        let store_nodes = self.names_with_role(pessimist_core::store::ROLE).len();
        if store_nodes > 0 {
            let settings = StoreSettings::from_knobs(&knobs).expect("checked just above");
            settings
                .validate_for(store_nodes)
                .map_err(|(field, message)| invalid(format!("knobs.store.{field}"), message))?;
        }
        let phases = &self.phases;
        if phases.faults_ms == 0 {
            return Err(invalid("phases.faults_ms", "must be positive"));
        }
        if phases.liveness_bound_ms == 0 {
            return Err(invalid("phases.liveness_bound_ms", "must be positive"));
        }
        if phases.faults_ms.saturating_add(phases.heal_ms).saturating_add(phases.liveness_bound_ms)
            > RUN_MS_MAX
        {
            return Err(invalid("phases", format!("the run would last beyond {RUN_MS_MAX} ms")));
        }
        let clients: BTreeSet<String> = self.client_names().into_iter().collect();
        self.faults
            .plan
            .validate(&names, &clients, phases.faults_ms)
            .map_err(|(path, message)| invalid(format!("faults.plan{path}"), message))?;
        // `@leader` can only bite where a Raft group elects one.
        let has_leader = matches!(self.workload, Workload::Queue(_) | Workload::Service(_));
        if !has_leader {
            let aims = |fault: &Fault| fault.nodes().contains(&crate::fault::LEADER);
            if let Some(index) = self.faults.plan.events.iter().position(|event| aims(&event.fault))
            {
                return Err(invalid(
                    format!("faults.plan[{index}].fault"),
                    format!(
                        "{} names no node here: this workload has no leader",
                        crate::fault::LEADER
                    ),
                ));
            }
            if self.faults.swarm.as_ref().is_some_and(|swarm| swarm.leader_probability > 0.0) {
                return Err(invalid(
                    "faults.swarm.leader_probability",
                    "must be 0: this workload has no leader to aim at",
                ));
            }
        }
        if let Some(swarm) = &self.faults.swarm {
            swarm
                .validate()
                .map_err(|(path, message)| invalid(format!("faults.swarm.{path}"), message))?;
            for (index, target) in swarm.targets.iter().enumerate() {
                if !names.contains(target) {
                    return Err(invalid(
                        format!("faults.swarm.targets[{index}]"),
                        format!("unknown node {target:?}"),
                    ));
                }
            }
        }
        if let Some(minimum) = self.checks.heal_ok_fraction_min {
            if !(0.0..=1.0).contains(&minimum) {
                return Err(invalid("checks.heal_ok_fraction_min", "not a fraction in [0, 1]"));
            }
        }
        if self.seeds.is_empty() {
            return Err(invalid("seeds", "must name at least one seed"));
        }
        crate::variant::validate(self).map_err(|(path, message)| invalid(path, message))
    }
}
