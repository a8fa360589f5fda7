//! The store's wire messages: from clients to a coordinating node, and between nodes.
//!
//! Every write is a merge of a [`Counter`] state (a writer's slot, or a delete's floors), so
//! one message kind serves increments, deletes, hinted handoff, read repair and
//! anti-entropy, and every one of them is safe to deliver twice.

use serde::{Deserialize, Serialize};

use super::counter::Counter;

/// Messages on a store transport.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreMessage {
    /// A client's request to the node it picked as coordinator.
    Client(ClientRequest),
    /// A coordinator's answer to a client.
    ClientReply(ClientReply),
    /// One node asking another (or itself) to store, read or compare.
    Replica(ReplicaRequest),
    ReplicaReply(ReplicaReply),
}

/// What a client asks a coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Merge `update` into `key` on W replicas.
    Write { key: String, update: Counter },
    /// The merge of R replicas' states of `key`.
    Read { key: String },
    /// Live keys in `[start, end)` (no end: to the last key), at most `limit`, each the merge
    /// of at least R replicas' states.
    Scan { start: String, end: Option<String>, limit: u32 },
    /// The coordinator's own data, not a quorum: the digest of every key it holds as a home
    /// replica and the keys it holds hints for; with `full`, the states themselves. For
    /// monitors measuring convergence.
    Dump { full: bool },
}

/// A coordinator's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientReply {
    /// W replicas have the write durably; `hinted` of them hold it for a home replica that
    /// could not be reached (a sloppy quorum).
    Written {
        acks: u32,
        hinted: u32,
    },
    /// The merged state (`None`: no replica that answered has the key); `answers` replicas
    /// answered in time, `hinted` of them fallbacks.
    Read {
        counter: Option<Counter>,
        answers: u32,
        hinted: u32,
    },
    /// A page of a scan; `resume` is where the next page starts, `None` after the last.
    Scanned {
        entries: Vec<(String, Counter)>,
        resume: Option<String>,
    },
    Dumped(Dump),
    /// The quorum was not reached. `may_have_applied`: some replica may have the write (it
    /// stays there and spreads), so the client cannot call it refused.
    Failed {
        reason: String,
        may_have_applied: bool,
    },
}

/// One node's own data, as [`ClientRequest::Dump`] returns it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    /// Keys held as a home replica: digest, and with `full` the state.
    pub home: Vec<(String, u64, Option<Counter>)>,
    /// Keys held as hints for another node: (home node, key, state with `full`).
    pub hinted: Vec<(String, String, Option<Counter>)>,
}

/// What a node asks a replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicaRequest {
    /// Merge `update` into `key`, durably; `hint_for` names the home replica this node stands
    /// in for (a sloppy quorum), so the state is kept as a hint and handed off later.
    Put { key: String, update: Counter, hint_for: Option<String> },
    /// This node's state of `key`: as a home replica, or from the hints it holds for it.
    Get { key: String },
    /// This node's states of the keys in `[start, end)`, at most `limit` (hints included).
    Scan { start: String, end: Option<String>, limit: u32 },
    /// Hinted states for this node (their home), delivered back; merged durably.
    Handoff { entries: Vec<(String, Counter)> },
    /// Anti-entropy, first step: the sender's Merkle roots of the partitions both replicate.
    Roots { roots: Vec<(u32, u64)> },
    /// Anti-entropy, second step: the sender's states in the leaf buckets that differ;
    /// merged durably, answered with the receiver's states in those buckets.
    Exchange { buckets: Vec<(u32, u32)>, entries: Vec<(String, Counter)> },
    /// This node's data (see [`ClientRequest::Dump`]).
    Dump { full: bool },
}

/// A replica's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplicaReply {
    /// Durably merged.
    Stored,
    Got {
        counter: Option<Counter>,
    },
    /// `truncated`: more keys in the range follow the last one.
    Scanned {
        entries: Vec<(String, Counter)>,
        truncated: bool,
    },
    /// Per partition whose root differs: the receiver's leaf digests.
    Leaves {
        differing: Vec<(u32, Vec<u64>)>,
    },
    Entries {
        entries: Vec<(String, Counter)>,
    },
    Dumped(Dump),
    /// Refused before anything changed (a key beyond a bound, a key this node is not home
    /// for, a node that stopped).
    Refused {
        reason: String,
    },
}
