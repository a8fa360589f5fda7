//! The replicated job queue: a FIFO of resize jobs, replicated with Raft (raft-rs) across the
//! queue nodes, with automatic leader election and failover.
//!
//! - [`machine`]: the queue's state machine, sans-IO, applied identically on every replica.
//! - Replication (the Raft driver, its log storage, the client with leader discovery,
//!   redirects and retries) is [`crate::replica`]'s, shared with the auth management plane.
//!
//! The queue is the CP part of the design: a command is answered only once a majority has it
//! durably, and a node that cannot reach a majority refuses rather than guesses.

pub mod machine;

use serde::{Deserialize, Serialize};

use crate::node::{KnobSettings, NodeContext};
use crate::replica::client::ClientOptions;
use crate::replica::{self, RaftSettings, StateMachine};
use crate::seams::net::{Transport, TransportOptions};
use machine::{Command, QueueConfig, QueueMachine, Response};

/// The role name of queue nodes in a cluster's topology.
pub const ROLE: &str = "queue";

/// Messages on the queue's transport: between queue nodes (Raft) and from clients.
pub type QueueMessage = replica::ReplicaMessage<Command, Response>;
/// What a queue node answers to a submitted command.
pub type Answer = replica::Answer<Response>;
/// The queue's client, for API servers and workers.
pub type QueueClient = replica::client::Client<QueueMachine>;

/// Runs a queue node (settings from the `queue` knob) until its disk fails it or it is killed.
pub async fn serve(context: NodeContext) {
    match QueueSettings::from_knobs_line(&context.knobs) {
        Ok(settings) => {
            let machine = QueueMachine::new(settings.machine());
            replica::node::serve(context, settings.raft(), machine).await
        }
        Err(reason) => context.recorder.record(
            "raft_stopped",
            serde_json::json!({ "group": ROLE, "reason": format!("bad settings: {reason}") }),
        ),
    }
}

/// `count` queue clients of a node that only dials out (an API server, a worker): one
/// transport named `<node>/queue`, shared, and one client per task that needs one.
pub fn clients(context: &NodeContext, options: &ClientOptions, count: usize) -> Vec<QueueClient> {
    let (transport, _) = Transport::<QueueMessage>::unbound(
        &format!("{}/queue", context.name),
        context.book.clone(),
        TransportOptions::default(),
        context.link_faults.clone(),
        context.rng("queue-transport"),
    );
    let nodes = context.peers(ROLE);
    (0..count)
        .map(|slot| {
            QueueClient::new(
                transport.clone(),
                nodes.clone(),
                context.clock.clone(),
                context.rng(&format!("queue-client/{slot}")),
                options.clone(),
            )
        })
        .collect()
}

impl StateMachine for QueueMachine {
    type Command = Command;
    type Response = Response;

    fn apply(&mut self, index: u64, stamped: &machine::Stamped) -> Response {
        QueueMachine::apply(self, index, stamped)
    }

    fn snapshot(&self) -> Vec<u8> {
        QueueMachine::snapshot(self)
    }

    fn restore(bytes: &[u8]) -> Result<QueueMachine, String> {
        QueueMachine::restore(bytes).map_err(|error| error.to_string())
    }
}

/// A queue node's settings, read from the scenario's `queue` knob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// One Raft tick, in the node's own (possibly drifting) clock.
    pub tick_ms: u64,
    /// Election timeout in ticks; each node draws its timeout in `[n, 2n)` from its seeded RNG.
    pub election_ticks: usize,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: usize,
    /// Take a snapshot and compact the log after this many applied entries.
    pub snapshot_every: u64,
    /// Proposals a leader keeps in flight before it answers `Busy`.
    pub max_pending: usize,
    /// Leases a job may have before it is dead-lettered.
    pub max_attempts: u32,
    /// How long a finished job and its idempotency key are remembered.
    pub retention_ms: i64,
    /// Unfinished jobs the queue holds before it refuses enqueues.
    pub max_jobs: usize,
    /// 0: automatic failover. Otherwise failover is manual and an operator promotes a new
    /// leader this long after the old one went silent (see
    /// [`RaftSettings::manual_failover_ticks`]); rounded up to whole ticks.
    pub operator_reaction_ms: u64,
    /// The lossy alternative to the CP queue: acknowledge before replication (see
    /// [`RaftSettings::ack_before_replication`]). Off by default.
    pub ack_before_replication: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        let machine = QueueConfig::default();
        QueueSettings {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_every: 256,
            max_pending: 4096,
            max_attempts: machine.max_attempts,
            retention_ms: machine.retention_ms,
            max_jobs: machine.max_jobs,
            operator_reaction_ms: 0,
            ack_before_replication: false,
        }
    }
}

impl KnobSettings for QueueSettings {
    const KNOB: &'static str = "queue";

    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        self.raft().validate()?;
        if self.max_attempts == 0 {
            return fail("max_attempts", "must be at least 1");
        }
        if self.retention_ms < 0 {
            return fail("retention_ms", "must not be negative");
        }
        if self.max_jobs == 0 {
            return fail("max_jobs", "must be at least 1");
        }
        Ok(())
    }
}

impl QueueSettings {
    /// The Raft part of the settings.
    pub fn raft(&self) -> RaftSettings {
        RaftSettings {
            tick_ms: self.tick_ms,
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            snapshot_every: self.snapshot_every,
            max_pending: self.max_pending,
            manual_failover_ticks: self
                .operator_reaction_ms
                .div_ceil(self.tick_ms.max(1))
                .try_into()
                .unwrap_or(usize::MAX),
            ack_before_replication: self.ack_before_replication,
        }
    }

    /// The state machine's part of the settings.
    pub fn machine(&self) -> QueueConfig {
        QueueConfig {
            max_attempts: self.max_attempts,
            retention_ms: self.retention_ms,
            max_jobs: self.max_jobs,
        }
    }
}
