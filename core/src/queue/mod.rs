//! The replicated job queue: a FIFO of resize jobs, replicated with Raft (raft-rs) across the
//! queue nodes, with automatic leader election and failover.
//!
//! - [`machine`]: the queue's state machine, sans-IO, applied identically on every replica.
//! - [`storage`]: the Raft log in memory (raft-rs's `Storage`) and on the disk seam (a
//!   write-ahead log and a snapshot file), with recovery after a crash.
//! - [`node`]: the queue node's async driver: the Ready loop, ticks, proposals, snapshots.
//! - [`client`]: what API servers and workers use: leader discovery, redirects, retries.
//!
//! The queue is the CP part of the design: a command is answered only once a majority has it
//! durably, and a node that cannot reach a majority refuses rather than guesses.

pub mod client;
pub mod machine;
pub mod node;
pub mod storage;

use serde::{Deserialize, Serialize};

use machine::{Command, QueueConfig, Response, Stamped};

/// The role name of queue nodes in a cluster's topology.
pub const ROLE: &str = "queue";

/// Messages on the queue's transport: between queue nodes (Raft) and from clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum QueueMessage {
    /// A raft-rs message, protobuf-encoded (raft-rs's own wire format).
    Raft(Vec<u8>),
    /// A client's command, to be replicated and applied.
    Submit(Command),
    /// A queue node's answer to [`QueueMessage::Submit`].
    Answer(Answer),
}

/// What a queue node answers to a submitted command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// Committed and applied; the state machine's response.
    Done(Response),
    /// This node is not the leader; `leader` is the one it knows of, if any. Not proposed.
    NotLeader { leader: Option<String> },
    /// Refused before it was proposed (too many proposals in flight, a proposal dropped by
    /// raft-rs): it certainly did not happen.
    Busy { reason: String },
    /// Proposed, but the node lost its leadership before the command was applied: it may
    /// still commit under the next leader, or never.
    Uncertain { reason: String },
}

/// A proposal as it sits in a Raft entry: who proposed it (so that node can answer its
/// client) and the leader-stamped command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub origin: ProposalOrigin,
    pub stamped: Stamped,
}

/// Identifies a proposal across the cluster: node id, incarnation, and a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProposalOrigin {
    pub node: u64,
    pub incarnation: u64,
    pub seq: u64,
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
        if !(1..=10_000).contains(&self.tick_ms) {
            return fail("tick_ms", "must be between 1 and 10000");
        }
        if self.heartbeat_ticks == 0 {
            return fail("heartbeat_ticks", "must be at least 1");
        }
        if self.election_ticks <= self.heartbeat_ticks || self.election_ticks > 1000 {
            return fail("election_ticks", "must exceed heartbeat_ticks and be at most 1000");
        }
        if self.snapshot_every == 0 {
            return fail("snapshot_every", "must be at least 1");
        }
        if self.max_pending == 0 {
            return fail("max_pending", "must be at least 1");
        }
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

    /// The state machine's part of the settings.
    pub fn machine(&self) -> QueueConfig {
        QueueConfig {
            max_attempts: self.max_attempts,
            retention_ms: self.retention_ms,
            max_jobs: self.max_jobs,
        }
    }
}
