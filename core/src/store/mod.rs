//! The usage store: a leaderless, Dynamo-style key-value store of usage counters, the
//! eventually consistent half of the design (AP where the job queue is CP).
//!
//! API servers aggregate usage locally and ship it in batches; billing reads key ranges
//! (`usage/{account}/{window}`) and deletes what it archived. The store keeps each key on
//! the N home replicas a consistent-hash ring with virtual nodes assigns it ([`ring`]); any
//! node coordinates a request, and a write is acknowledged once W replicas have it on disk, a
//! read answers with the merge of R replicas' states ([`quorum`], driven by [`node`]).
//!
//! - **Sloppy quorum and hinted handoff** (knob `sloppy_quorum`): a home replica that fails
//!   or that the coordinator's failure detector suspects is replaced by the next node on the
//!   ring, which keeps the write as a hint and hands it off every `hinted_handoff_ms` until
//!   the home replica takes it. Writes stay available through partitions and crashes; the
//!   price is that R + W > N no longer promises that a read sees an acknowledged write (the
//!   write may sit on fallbacks the read does not ask).
//! - **Read repair**: once every replica a read asked has answered (or timed out), those whose
//!   state lacks part of the merged one are sent the merge.
//! - **Anti-entropy**: every `anti_entropy_ms` a node compares, with the next of its replica
//!   peers in turn, a Merkle tree per shared ring partition (roots, then leaf buckets) and the
//!   two exchange the states of the buckets that differ ([`storage`]).
//! - **Durability**: every merge goes to a write-ahead log on the disk seam and is fsynced
//!   before the replica acknowledges it; snapshots bound the log ([`storage::Durable`]).
//!
//! ## Why per-writer counters, not vector clocks with siblings
//!
//! A key's value is a state-based CRDT ([`counter`]): one slot per writer (an API server's
//! shipper) holding the writer's *running total* for the key and the batch id that last
//! changed it, merged by taking the maximum per writer. We chose it over vector clocks with
//! siblings because:
//! - the values are counters, whose concurrent updates commute: siblings would only defer
//!   the same per-writer merge to every reader, and a reader that merged siblings by adding
//!   them would count an increment once per sibling that holds it;
//! - retries are idempotent for free: a retried or duplicated flush carries the same total,
//!   and the maximum absorbs it, so no per-request deduplication table has to be replicated
//!   or garbage-collected; a write needs no read before it (no context round trip);
//! - every repair path (hinted handoff, read repair, anti-entropy, replaying the log over a
//!   newer snapshot) is the same merge, safe in any order and any number of times;
//! - no clock is read: a skewed or jumping clock cannot make a newer write lose, as it can
//!   under last-writer-wins.
//!
//! The price: a writer must keep its running totals for the keys it writes (the [`client`]'s
//! [`client::Writer`] does), a writer that loses them must come back under a new id (an API
//! server's incarnation is part of its writer id), and a key carries one slot per writer it
//! ever had (bounded by [`counter::WRITERS_PER_KEY_MAX`]). Deletes are floors kept as
//! tombstones (see [`counter`]); the ring is static (no membership changes yet).
//!
//! **Invariant:** a replica acknowledges nothing it has not fsynced; the store never turns a
//! retry into a second count, and never drops a count a replica acknowledged.

pub mod client;
pub mod counter;
pub mod msg;
pub mod node;
pub mod quorum;
pub mod ring;
pub mod storage;

use serde::{Deserialize, Serialize};

use crate::node::{KnobSettings, NodeContext};
use crate::seams::net::{Transport, TransportOptions};
use client::{ClientOptions, StoreClient};
use msg::StoreMessage;

pub use node::serve;

/// The role name of store nodes in a cluster's topology.
pub const ROLE: &str = "store";
/// Largest replication factor.
pub const N_MAX: usize = 16;

/// A store cluster's settings, read from the scenario's `store` knob. Every node and client
/// must use the same ring settings (`n`, `vnodes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Home replicas per key (N).
    pub n: usize,
    /// Replicas that must answer a read (R).
    pub r: usize,
    /// Replicas that must acknowledge a write, durably (W).
    pub w: usize,
    /// Tokens per node on the ring.
    pub vnodes: usize,
    /// Borrow the next nodes on the ring, with hints, for unreachable home replicas.
    pub sloppy_quorum: bool,
    /// How often a node tries to hand its hints off to their home replicas.
    pub hinted_handoff_ms: u64,
    /// How often a node compares its data with one of its replica peers (0: never).
    pub anti_entropy_ms: u64,
    /// How long a coordinator waits for one replica.
    pub replica_timeout_ms: u64,
    /// How long a client waits for a coordinator; the coordinator answers within three
    /// quarters of it.
    pub request_timeout_ms: u64,
    /// How long the failure detector suspects a node that failed a request (sloppy quorums
    /// go straight to a fallback meanwhile).
    pub suspect_ms: u64,
    /// Log records between snapshots.
    pub snapshot_every: usize,
    /// Home keys a node holds (and as many hints) before it refuses new ones.
    pub keys_max: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            n: 3,
            r: 2,
            w: 2,
            vnodes: 16,
            sloppy_quorum: true,
            hinted_handoff_ms: 1_000,
            anti_entropy_ms: 1_000,
            replica_timeout_ms: 300,
            request_timeout_ms: 1_000,
            suspect_ms: 2_000,
            snapshot_every: 4_096,
            keys_max: 100_000,
        }
    }
}

impl KnobSettings for StoreSettings {
    const KNOB: &'static str = "store";

    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        if !(1..=N_MAX).contains(&self.n) {
            return fail("n", format!("must be between 1 and {N_MAX}"));
        }
        if !(1..=self.n).contains(&self.r) {
            return fail("r", format!("must be between 1 and n ({})", self.n));
        }
        if !(1..=self.n).contains(&self.w) {
            return fail("w", format!("must be between 1 and n ({})", self.n));
        }
        if !(1..=ring::VNODES_MAX).contains(&self.vnodes) {
            return fail("vnodes", format!("must be between 1 and {}", ring::VNODES_MAX));
        }
        if !(10..=600_000).contains(&self.hinted_handoff_ms) {
            return fail("hinted_handoff_ms", "must be between 10 and 600000".into());
        }
        if self.anti_entropy_ms != 0 && !(10..=3_600_000).contains(&self.anti_entropy_ms) {
            return fail("anti_entropy_ms", "must be 0 (off) or between 10 and 3600000".into());
        }
        if !(1..=60_000).contains(&self.replica_timeout_ms) {
            return fail("replica_timeout_ms", "must be between 1 and 60000".into());
        }
        if self.request_timeout_ms < 2 * self.replica_timeout_ms
            || self.request_timeout_ms > 600_000
        {
            return fail(
                "request_timeout_ms",
                format!(
                    "must be at least twice replica_timeout_ms ({}) and at most 600000",
                    self.replica_timeout_ms
                ),
            );
        }
        if self.suspect_ms > 600_000 {
            return fail("suspect_ms", "must be at most 600000".into());
        }
        if !(1..=1_000_000).contains(&self.snapshot_every) {
            return fail("snapshot_every", "must be between 1 and 1000000".into());
        }
        if !(1..=10_000_000).contains(&self.keys_max) {
            return fail("keys_max", "must be between 1 and 10000000".into());
        }
        Ok(())
    }
}

impl StoreSettings {
    /// Whether the settings promise that a read sees every write acknowledged before it
    /// began: read and write quorums of home replicas overlap (R + W > N) and no fallback
    /// ever stands in for a home replica (a strict quorum).
    pub fn promises_read_your_writes(&self) -> bool {
        self.r + self.w > self.n && !self.sloppy_quorum
    }

    /// Checks the settings against the cluster: N cannot exceed the store nodes.
    pub fn validate_for(&self, store_nodes: usize) -> Result<(), (String, String)> {
        self.validate()?;
        if self.n > store_nodes {
            let message = format!("exceeds the {store_nodes} store nodes of the topology");
            return Err(("n".to_string(), message));
        }
        Ok(())
    }

    /// How long a coordinator keeps trying before it answers: three quarters of the client's
    /// timeout, so its answer arrives before the client gives up.
    pub fn coordinator_budget_ms(&self) -> u64 {
        self.request_timeout_ms * 3 / 4
    }
}

/// `count` store clients of a node that only dials out (an API server shipping usage, a
/// billing job): one transport named `<node>/store`, shared, and one client per task that
/// needs one. The settings come from the node's `store` knob.
pub fn clients(
    context: &NodeContext,
    options: &ClientOptions,
    count: usize,
) -> Result<Vec<StoreClient>, String> {
    let settings = StoreSettings::from_knobs_line(&context.knobs)?;
    let nodes = context.peers(ROLE);
    settings.validate_for(nodes.len()).map_err(|(field, message)| format!("{field}: {message}"))?;
    let (transport, _) = Transport::<StoreMessage>::unbound(
        &format!("{}/store", context.name),
        context.book.clone(),
        TransportOptions::default(),
        context.link_faults.clone(),
        context.rng("store-transport"),
    );
    Ok((0..count)
        .map(|slot| {
            StoreClient::new(
                transport.clone(),
                &nodes,
                settings.clone(),
                options.clone(),
                context.clock.clone(),
                context.rng(&format!("store-client/{slot}")),
            )
        })
        .collect())
}

/// The writer id of usage shipper `shipper` on this node: unique across the node's restarts
/// (the incarnation is part of it), because a restarted node has lost its running totals and
/// must count from zero under a new id.
pub fn writer_id(context: &NodeContext, shipper: usize) -> String {
    format!("{}#{}/{shipper}", context.name, context.incarnation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(knob: serde_json::Value, expect: Result<(), &str>) {
        let got = StoreSettings::from_knobs_line(&json!({ "store": knob })).map(drop);
        assert_eq!(got.as_ref().map(|_| ()).map_err(String::as_str), expect, "{knob}");
    }

    #[test]
    fn settings_are_validated_with_the_field_named() {
        check(json!({}), Ok(()));
        check(json!({"n": 3, "r": 1, "w": 3, "sloppy_quorum": false}), Ok(()));
        check(json!({"n": 3, "r": 4}), Err("r: must be between 1 and n (3)"));
        check(json!({"w": 0}), Err("w: must be between 1 and n (3)"));
        check(json!({"vnodes": 0}), Err("vnodes: must be between 1 and 256"));
        check(
            json!({"replica_timeout_ms": 600, "request_timeout_ms": 1000}),
            Err("request_timeout_ms: must be at least twice replica_timeout_ms (600) and at most 600000"),
        );
        let unknown = StoreSettings::from_knobs_line(&json!({"store": {"quorum": 2}}));
        assert!(unknown.unwrap_err().contains("unknown field `quorum`"));
        let settings = StoreSettings { sloppy_quorum: false, ..StoreSettings::default() };
        assert!(settings.promises_read_your_writes());
        assert!(!StoreSettings::default().promises_read_your_writes(), "sloppy");
        assert_eq!(settings.validate_for(2).unwrap_err().0, "n");
    }
}
