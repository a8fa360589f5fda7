//! Raft replication of a deterministic state machine, shared by the job queue and the auth
//! management plane: raft-rs driven by one async loop per node over the node's seams.
//!
//! - [`StateMachine`]: what a replicated service provides: pure `apply`, `snapshot`,
//!   `restore`. The machine never reads a clock: every command is stamped by the proposing
//!   leader ([`Stamped`]).
//! - [`storage`]: the Raft log in memory (raft-rs's `Storage`) and on the disk seam (a
//!   write-ahead log and a snapshot file), with recovery after a crash.
//! - [`node`]: the async driver: the Ready loop, ticks, proposals, snapshots.
//! - [`client`]: leader discovery, redirects, retries, and an honest "unknown" when a command
//!   may or may not have happened.
//!
//! A group is the set of nodes of one role (`queue`, `auth`). Its internal events carry the
//! group's name, so the Raft safety checker reads each group apart.
//!
//! **Invariant:** a command is answered `Done` only once a majority has it durably and it was
//! applied; a node that cannot reach a majority refuses (`NotLeader`, `Busy`) or says
//! `Uncertain`, never guesses. The one exception is a knob that exists to be compared
//! against: [`RaftSettings::ack_before_replication`], the lossy alternative the design review
//! measures.

pub mod client;
pub mod node;
pub mod storage;

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A deterministic state machine replicated by Raft: every replica applies the same commands
/// in the same order and computes the same responses and state.
pub trait StateMachine: Sized + Send + 'static {
    type Command: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    type Response: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Applies the committed command at log `index`. Pure: no clock (time is the stamp's), no
    /// randomness, no I/O.
    fn apply(&mut self, index: u64, stamped: &Stamped<Self::Command>) -> Self::Response;
    /// The whole state, for a Raft snapshot.
    fn snapshot(&self) -> Vec<u8>;
    /// The state a snapshot holds; an error names what is wrong with the bytes.
    fn restore(bytes: &[u8]) -> Result<Self, String>;
}

/// A command as replicated: stamped by the leader that proposed it with the leader's wall clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped<C> {
    pub now_ms: i64,
    pub command: C,
}

/// Messages on a replicated group's transport: between its nodes (Raft) and from clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicaMessage<C, R> {
    /// A raft-rs message, protobuf-encoded (raft-rs's own wire format). Carried as one byte
    /// string (`serde_bytes`): postcard copies it whole instead of one `u8` at a time, on
    /// the same wire bytes.
    Raft(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A client's command, to be replicated and applied.
    Submit(C),
    /// A node's answer to [`ReplicaMessage::Submit`].
    Answer(Answer<R>),
}

/// What a node answers to a submitted command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer<R> {
    /// Committed and applied; the state machine's response.
    Done(R),
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
pub struct Proposal<C> {
    pub origin: ProposalOrigin,
    pub stamped: Stamped<C>,
}

/// Identifies a proposal across the cluster: node id, incarnation, and a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProposalOrigin {
    pub node: u64,
    pub incarnation: u64,
    pub seq: u64,
}

/// The Raft part of a group's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RaftSettings {
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
    /// 0: automatic failover (a follower campaigns after `election_ticks` to
    /// `2 * election_ticks` without a leader). Otherwise failover is manual: an operator,
    /// paged when the leader goes silent, promotes a node after this many ticks. It is
    /// modelled as a follower that campaigns only after `manual_failover_ticks` to
    /// `manual_failover_ticks + election_ticks` ticks without hearing from a leader (the spread
    /// keeps two promotions from colliding); everything else, a leader stepping down when it
    /// loses its majority included, stays automatic, and so does the group's first election
    /// (term 0: the operator who bootstraps a cluster is at the console).
    pub manual_failover_ticks: usize,
    /// The alternative to the CP design, for comparison: the leader answers a command as soon
    /// as it is in its own log, before any replica has it and before its own fsync (its
    /// response computed on a speculative copy of the state machine), and keeps leading while
    /// it cannot reach a majority (no check-quorum step-down). Available on a minority side,
    /// and lossy: what it acknowledged there is overwritten when a majority's leader takes
    /// over. Breaks the group's invariant on purpose; off by default.
    pub ack_before_replication: bool,
}

/// Most ticks an operator may take to fail over (a day at the default 100 ms tick).
pub const MANUAL_FAILOVER_TICKS_MAX: usize = 864_000;

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_every: 256,
            max_pending: 4096,
            manual_failover_ticks: 0,
            ack_before_replication: false,
        }
    }
}

impl RaftSettings {
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
        if self.manual_failover_ticks != 0
            && !(self.election_ticks..=MANUAL_FAILOVER_TICKS_MAX)
                .contains(&self.manual_failover_ticks)
        {
            return fail(
                "operator_reaction_ms",
                "must be 0 (automatic failover) or from one election timeout to a day",
            );
        }
        Ok(())
    }

    /// The range a follower's election timeout is drawn from in `term`, in ticks:
    /// `[min, max)`.
    pub fn election_timeout_range(&self, term: u64) -> (usize, usize) {
        match self.manual_failover_ticks {
            ticks if ticks > 0 && term > 0 => (ticks, ticks + self.election_ticks),
            _ => (self.election_ticks, 2 * self.election_ticks),
        }
    }

    /// The bounds raft-rs is configured with: every range [`Self::election_timeout_range`]
    /// gives lies within them.
    pub fn election_timeout_bounds(&self) -> (usize, usize) {
        let (min, max) = self.election_timeout_range(0);
        (min, max.max(self.election_timeout_range(1).1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_failover_draws_its_timeout_from_the_operators_reaction() {
        let automatic = RaftSettings::default();
        assert_eq!(automatic.election_timeout_range(0), (10, 20));
        assert_eq!(automatic.election_timeout_range(7), (10, 20));
        assert_eq!(automatic.election_timeout_bounds(), (10, 20));
        let manual = RaftSettings { manual_failover_ticks: 3000, ..RaftSettings::default() };
        assert_eq!(manual.election_timeout_range(0), (10, 20), "the first election is automatic");
        assert_eq!(manual.election_timeout_range(1), (3000, 3010));
        assert_eq!(manual.election_timeout_bounds(), (10, 3010));
        assert!(manual.validate().is_ok());
        let too_quick = RaftSettings { manual_failover_ticks: 5, ..RaftSettings::default() };
        assert_eq!(too_quick.validate().unwrap_err().0, "operator_reaction_ms");
        let too_slow = RaftSettings {
            manual_failover_ticks: MANUAL_FAILOVER_TICKS_MAX + 1,
            ..RaftSettings::default()
        };
        assert!(too_slow.validate().is_err());
    }

    #[test]
    fn the_queue_knob_rounds_the_reaction_up_to_whole_ticks() {
        let settings = crate::queue::QueueSettings {
            operator_reaction_ms: 300_050,
            ..crate::queue::QueueSettings::default()
        };
        assert_eq!(settings.raft().manual_failover_ticks, 3001);
        assert_eq!(crate::queue::QueueSettings::default().raft().manual_failover_ticks, 0);
    }

    #[test]
    fn a_raft_payload_travels_as_one_byte_string_on_the_same_wire_bytes() {
        let payload: Vec<u8> = (0..=255).collect();
        let message = ReplicaMessage::<(), ()>::Raft(payload.clone());
        let encoded = postcard::to_stdvec(&message).unwrap();
        // As a plain `Vec<u8>` encodes it: the variant index, the length, the bytes. Logs and
        // snapshots written before the payload was a byte string read back the same.
        assert_eq!(encoded, postcard::to_stdvec(&(0u32, &payload)).unwrap());
        let decoded: ReplicaMessage<(), ()> = postcard::from_bytes(&encoded).unwrap();
        assert_eq!(decoded, message);
    }
}
