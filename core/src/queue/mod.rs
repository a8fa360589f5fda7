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

use crate::node::NodeContext;
use crate::replica::{self, RaftSettings, StateMachine};
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
    match QueueSettings::from_knobs(&context.knobs) {
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
        }
    }
}

impl QueueSettings {
    /// The settings under `knobs.queue`, or the defaults when absent.
    pub fn from_knobs(knobs: &serde_json::Value) -> Result<QueueSettings, String> {
        let settings = match knobs.get("queue") {
            None => QueueSettings::default(),
            Some(value) => serde_json::from_value(value.clone()).map_err(|e| e.to_string())?,
        };
        settings.validate().map_err(|(field, message)| format!("{field}: {message}"))?;
        Ok(settings)
    }

    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
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

    /// The Raft part of the settings.
    pub fn raft(&self) -> RaftSettings {
        RaftSettings {
            tick_ms: self.tick_ms,
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            snapshot_every: self.snapshot_every,
            max_pending: self.max_pending,
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
