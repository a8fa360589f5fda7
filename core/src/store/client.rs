//! The store's client, for API servers shipping usage and for billing reading and archiving
//! it.
//!
//! - [`Writer`] (pure) turns increments into a writer's running totals: each flush is a
//!   [`Batch`] with the next batch id, and every key whose last total was not acknowledged
//!   rides along in later batches until it is. A retried flush re-sends totals, never
//!   increments, so it cannot count twice; a flush that failed is not lost while the writer
//!   lives.
//! - [`StoreClient`] sends each request to a coordinator: a home replica of the key drawn at
//!   random (as a load balancer would), then the other home replicas, then the rest of the
//!   ring, but any node that just failed it last (it is suspected for the next
//!   [`SUSPECT_PLANS`] requests: counted in requests, not time, so no clock is read); it
//!   retries with backoff and says honestly whether a failed request may have taken effect
//!   ([`StoreError::Unknown`]) or certainly did not ([`StoreError::Refused`]).
//!
//! Billing's calls: [`StoreClient::scan`] pages through a key range (`usage/acct-7/` to
//! `usage/acct-70`), [`StoreClient::delete`] removes exactly the counts it read (later ones
//! stay).
//!
//! **Invariant:** one writer id, one [`Writer`], used by one task: its totals are the only
//! record of what it counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use super::counter::{Counter, Slot, WRITER_ID_BYTES_MAX};
use super::msg::{ClientReply, ClientRequest, Dump, StoreMessage};
use super::ring::Ring;
use super::StoreSettings;
use crate::seams::clock::Clock;
use crate::seams::net::{NetError, Transport};
use crate::seams::rng::SeededRng;

/// Keys one writer keeps totals for; a writer forgets keys it is done with (closed windows).
pub const WRITER_KEYS_MAX: usize = 100_000;
/// Requests for which a client tries a coordinator that failed it only after the others.
pub const SUSPECT_PLANS: u32 = 32;

/// A usage shipper's side of its counters: its running total per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    id: String,
    next_batch: u64,
    totals: BTreeMap<String, Slot>,
    unacknowledged: BTreeSet<String>,
    /// Per key, what was counted since the last stage (the open batch).
    open: BTreeMap<String, u64>,
}

/// One flush: its id and every key it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub id: u64,
    pub entries: Vec<BatchEntry>,
}

/// One key of a batch: the increment this batch adds (0 for a key riding along until
/// acknowledged) and the writer's slot to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    pub key: String,
    pub increment: u64,
    pub slot: Slot,
}

impl Writer {
    /// A writer whose id must be unique among all writers, ever: an API server that loses
    /// its totals (a crash) comes back with a new id (its incarnation in it).
    pub fn new(id: &str) -> Writer {
        assert!(!id.is_empty() && id.len() <= WRITER_ID_BYTES_MAX, "writer id out of bounds");
        Writer {
            id: id.to_string(),
            next_batch: 1,
            totals: BTreeMap::new(),
            unacknowledged: BTreeSet::new(),
            open: BTreeMap::new(),
        }
    }

    /// The writer `id` again after a restart, from the slots it had recorded durably (an API
    /// server's usage log): every key rides along in the next batch, since nobody knows
    /// which were acknowledged, and batches go on after the highest recorded.
    pub fn restore(id: &str, slots: BTreeMap<String, Slot>) -> Writer {
        let mut writer = Writer::new(id);
        writer.next_batch = slots.values().map(|slot| slot.batch).max().unwrap_or(0) + 1;
        writer.unacknowledged = slots.keys().cloned().collect();
        writer.totals = slots;
        writer
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Counts `increment` on `key` in the open batch (the one the next [`Writer::stage`]
    /// closes), and returns the key's new slot: what a usage log records so the count
    /// survives a crash.
    pub fn count(&mut self, key: &str, increment: u64) -> Slot {
        assert!(
            self.totals.len() < WRITER_KEYS_MAX || self.totals.contains_key(key),
            "writer {} keeps totals for {WRITER_KEYS_MAX} keys: forget closed ones",
            self.id
        );
        let slot = self.totals.entry(key.to_string()).or_default();
        if increment > 0 {
            slot.total += increment;
            slot.batch = self.next_batch;
            *self.open.entry(key.to_string()).or_default() += increment;
            self.unacknowledged.insert(key.to_string());
        }
        *slot
    }

    /// Adds `increments` to the open batch, closes it, and returns it with every
    /// unacknowledged key.
    pub fn stage(&mut self, increments: &[(String, u64)]) -> Batch {
        for (key, increment) in increments {
            self.count(key, *increment);
        }
        let id = self.next_batch;
        self.next_batch += 1;
        let added = std::mem::take(&mut self.open);
        let entries = self
            .unacknowledged
            .iter()
            .map(|key| BatchEntry {
                key: key.clone(),
                increment: added.get(key.as_str()).copied().unwrap_or(0),
                slot: self.totals[key],
            })
            .collect();
        Batch { id, entries }
    }

    /// The id of the open batch, the one the next [`Writer::stage`] closes.
    pub fn next_batch(&self) -> u64 {
        self.next_batch
    }

    /// Keys in the open batch, counted since the last stage.
    pub fn open_keys(&self) -> usize {
        self.open.len()
    }

    /// The store acknowledged `slot` for `key`: the key rides along no more, unless a later
    /// batch changed it since.
    pub fn acknowledge(&mut self, key: &str, slot: Slot) {
        if self.totals.get(key) == Some(&slot) {
            self.unacknowledged.remove(key);
        }
    }

    /// The writer's slot for `key`.
    pub fn slot(&self, key: &str) -> Option<Slot> {
        self.totals.get(key).copied()
    }

    /// Every key the writer keeps a total for, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.totals.keys().map(String::as_str)
    }

    /// Keys whose latest total is acknowledged, in key order.
    pub fn acknowledged_keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.totals.keys().filter(|key| !self.unacknowledged.contains(*key)).map(String::as_str)
    }

    /// Keys whose latest total is not acknowledged yet.
    pub fn unacknowledged(&self) -> usize {
        self.unacknowledged.len()
    }

    /// Forgets an acknowledged key (a closed window); returns whether it did. A key not yet
    /// acknowledged is kept: forgetting it would lose its counts.
    pub fn forget(&mut self, key: &str) -> bool {
        if self.unacknowledged.contains(key) {
            return false;
        }
        self.totals.remove(key).is_some()
    }
}

/// How hard a client tries. The wait for one answer is the store's `request_timeout_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOptions {
    /// Requests per operation, over different coordinators.
    pub attempts: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attempts: 3,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
        }
    }
}

/// Why an operation has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No try could have taken effect.
    #[error("refused: {0}")]
    Refused(String),
    /// Some try may have taken effect (for a write: some replica may hold it, and it will
    /// spread); nobody knows.
    #[error("unknown after {uncertain_tries} uncertain tries: {reason}")]
    Unknown { reason: String, uncertain_tries: u32 },
}

/// What a read returned.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadAnswer {
    pub counter: Option<Counter>,
    /// Replicas that answered in time, and how many of them were fallbacks.
    pub answers: u32,
    pub hinted: u32,
}

/// A write acknowledged by `acks` replicas, `hinted` of them fallbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub acks: u32,
    pub hinted: u32,
}

/// A page of a scan, and where the next one starts.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanPage {
    pub entries: Vec<(String, Counter)>,
    pub resume: Option<String>,
}

/// What a flush did: its batch, and per key the outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Flushed {
    pub batch: Batch,
    pub outcomes: Vec<Result<Written, StoreError>>,
}

/// Coordinators to try in order, and the waits between tries.
struct Plan {
    coordinators: Vec<String>,
    /// Waits before the second, third... try; one try per wait plus one.
    backoffs: Vec<Duration>,
}

/// A client of the store. Not shared: one per task.
pub struct StoreClient {
    transport: Transport<StoreMessage>,
    ring: Arc<Ring>,
    settings: StoreSettings,
    options: ClientOptions,
    clock: Clock,
    rng: SeededRng,
    /// Coordinators that failed a request, and for how many more plans they go last.
    suspects: Mutex<BTreeMap<String, u32>>,
}

impl StoreClient {
    /// A client of the store `nodes` (configured with `settings`) over `transport`.
    pub fn new(
        transport: Transport<StoreMessage>,
        nodes: &[String],
        settings: StoreSettings,
        options: ClientOptions,
        clock: Clock,
        rng: SeededRng,
    ) -> StoreClient {
        assert!(options.attempts >= 1, "a client tries at least once");
        assert!(options.backoff_min <= options.backoff_max, "backoff bounds reversed");
        let ring = Arc::new(Ring::new(nodes, settings.vnodes, settings.n));
        StoreClient { transport, ring, settings, options, clock, rng, suspects: Mutex::default() }
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    fn plan(&mut self, key: Option<&str>) -> Plan {
        let mut coordinators = match key {
            Some(key) => {
                let mut homes = self.ring.home(key);
                homes.shuffle(&mut self.rng);
                homes.extend(self.ring.fallbacks(key));
                homes
            }
            None => {
                let mut all = self.ring.nodes().to_vec();
                all.shuffle(&mut self.rng);
                all
            }
        };
        {
            let mut suspects = self.suspects.lock().expect("suspects lock poisoned");
            // Suspected coordinators go last, in their order (a stable sort).
            coordinators.sort_by_key(|node| suspects.contains_key(node));
            suspects.retain(|_, plans| {
                *plans -= 1;
                *plans > 0
            });
        }
        let (min, max) = (self.options.backoff_min, self.options.backoff_max);
        let backoffs = (1..self.options.attempts)
            .map(|failures| {
                let ceiling = min.saturating_mul(1 << failures.min(16)).min(max).max(min);
                let wait =
                    self.rng.random_range(min.as_micros() as u64..=ceiling.as_micros() as u64);
                Duration::from_micros(wait)
            })
            .collect();
        Plan { coordinators, backoffs }
    }

    async fn execute(&self, plan: Plan, request: ClientRequest) -> Result<ClientReply, StoreError> {
        let timeout = Duration::from_millis(self.settings.request_timeout_ms);
        let mut uncertain = 0u32;
        let mut last_error = String::from("no try made");
        // One message for every try: the transport encodes it without taking it.
        let message = StoreMessage::Client(request);
        let tries = plan.coordinators.iter().cycle().take(plan.backoffs.len() + 1);
        for (attempt, coordinator) in tries.enumerate() {
            if attempt > 0 {
                self.clock.sleep(plan.backoffs[attempt - 1]).await;
            }
            match self.transport.call(coordinator, &message, timeout).await {
                Ok(StoreMessage::ClientReply(ClientReply::Failed { reason, may_have_applied })) => {
                    uncertain += u32::from(may_have_applied);
                    last_error = format!("{coordinator}: {reason}");
                }
                Ok(StoreMessage::ClientReply(reply)) => {
                    self.suspects.lock().expect("suspects lock poisoned").remove(coordinator);
                    return Ok(reply);
                }
                Ok(other) => {
                    uncertain += 1;
                    last_error = format!("{coordinator} answered {other:?}");
                }
                Err(error) => {
                    let may_have_arrived =
                        matches!(error, NetError::Timeout { .. } | NetError::ConnectionLost { .. });
                    uncertain += u32::from(may_have_arrived);
                    last_error = error.to_string();
                    let mut suspects = self.suspects.lock().expect("suspects lock poisoned");
                    suspects.insert(coordinator.clone(), SUSPECT_PLANS);
                }
            }
        }
        match uncertain {
            0 => Err(StoreError::Refused(last_error)),
            tries => Err(StoreError::Unknown { reason: last_error, uncertain_tries: tries }),
        }
    }

    /// The merged state of `key` from R replicas.
    pub async fn read(&mut self, key: &str) -> Result<ReadAnswer, StoreError> {
        let plan = self.plan(Some(key));
        match self.execute(plan, ClientRequest::Read { key: key.to_string() }).await? {
            ClientReply::Read { counter, answers, hinted } => {
                Ok(ReadAnswer { counter, answers, hinted })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Merges `update` into `key` on W replicas.
    pub async fn write(&mut self, key: &str, update: Counter) -> Result<Written, StoreError> {
        let plan = self.plan(Some(key));
        self.write_planned(plan, key, update).await
    }

    async fn write_planned(
        &self,
        plan: Plan,
        key: &str,
        update: Counter,
    ) -> Result<Written, StoreError> {
        let request = ClientRequest::Write { key: key.to_string(), update };
        match self.execute(plan, request).await? {
            ClientReply::Written { acks, hinted } => Ok(Written { acks, hinted }),
            other => Err(unexpected(other)),
        }
    }

    /// Removes from `key` exactly the counts `observed` (a state read before) holds; counts
    /// that arrived after that read stay.
    pub async fn delete(&mut self, key: &str, observed: &Counter) -> Result<Written, StoreError> {
        self.write(key, Counter::tombstone_of(observed)).await
    }

    /// Live keys in `[start, end)`, at most `limit`, each merged from at least R replicas.
    pub async fn scan(
        &mut self,
        start: &str,
        end: Option<&str>,
        limit: u32,
    ) -> Result<ScanPage, StoreError> {
        let plan = self.plan(None);
        let request =
            ClientRequest::Scan { start: start.to_string(), end: end.map(str::to_string), limit };
        match self.execute(plan, request).await? {
            ClientReply::Scanned { entries, resume } => Ok(ScanPage { entries, resume }),
            other => Err(unexpected(other)),
        }
    }

    /// One node's own data (no quorum, one try), for monitors.
    pub async fn dump(&self, node: &str, full: bool) -> Result<Dump, StoreError> {
        let plan = Plan { coordinators: vec![node.to_string()], backoffs: Vec::new() };
        match self.execute(plan, ClientRequest::Dump { full }).await? {
            ClientReply::Dumped(dump) => Ok(dump),
            other => Err(unexpected(other)),
        }
    }

    /// Stages `increments` as the writer's next batch and sends it ([`StoreClient::send`]).
    pub async fn flush(&mut self, writer: &mut Writer, increments: &[(String, u64)]) -> Flushed {
        let batch = writer.stage(increments);
        let outcomes = self.send(writer, &batch).await;
        Flushed { batch, outcomes }
    }

    /// Writes every key `batch` carries, all at once, and tells the writer which were
    /// acknowledged (they ride along no more). One outcome per entry, in order.
    pub async fn send(
        &mut self,
        writer: &mut Writer,
        batch: &Batch,
    ) -> Vec<Result<Written, StoreError>> {
        let outcomes = self.send_as(writer.id(), batch).await;
        for (entry, outcome) in batch.entries.iter().zip(&outcomes) {
            if outcome.is_ok() {
                writer.acknowledge(&entry.key, entry.slot);
            }
        }
        outcomes
    }

    /// Writes every key `batch` carries as writer `writer_id`, all at once; the caller
    /// acknowledges the successes to its [`Writer`] (which it need not lend out meanwhile, so
    /// counting goes on during a flush). One outcome per entry, in order.
    pub async fn send_as(
        &mut self,
        writer_id: &str,
        batch: &Batch,
    ) -> Vec<Result<Written, StoreError>> {
        let plans: Vec<Plan> =
            batch.entries.iter().map(|entry| self.plan(Some(&entry.key))).collect();
        let writes = batch.entries.iter().zip(plans).map(|(entry, plan)| {
            self.write_planned(plan, &entry.key, Counter::from_slot(writer_id, entry.slot))
        });
        futures::future::join_all(writes).await
    }
}

fn unexpected(reply: ClientReply) -> StoreError {
    StoreError::Unknown { reason: format!("unexpected answer {reply:?}"), uncertain_tries: 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn increments(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(key, n)| (key.to_string(), *n)).collect()
    }

    #[test]
    fn unacknowledged_keys_ride_along_with_their_totals() {
        let mut writer = Writer::new("api-1#0");
        let first = writer.stage(&increments(&[("a", 3), ("b", 2), ("a", 1)]));
        assert_eq!(first.id, 1);
        assert_eq!(first.entries.len(), 2);
        assert_eq!(
            first.entries[0],
            BatchEntry { key: "a".into(), increment: 4, slot: Slot { batch: 1, total: 4 } }
        );
        writer.acknowledge("a", first.entries[0].slot);
        // "b" failed: it rides along in batch 2, unchanged, beside the new "c".
        let second = writer.stage(&increments(&[("c", 5)]));
        let keys: Vec<(&str, u64, Slot)> =
            second.entries.iter().map(|e| (e.key.as_str(), e.increment, e.slot)).collect();
        assert_eq!(
            keys,
            [("b", 0, Slot { batch: 1, total: 2 }), ("c", 5, Slot { batch: 2, total: 5 })]
        );
        // An acknowledgement of an older slot does not clear a key changed since.
        let third = writer.stage(&increments(&[("b", 1)]));
        writer.acknowledge("b", Slot { batch: 1, total: 2 });
        assert_eq!(writer.unacknowledged(), 2);
        assert!(!writer.forget("b"), "an unacknowledged key is kept");
        writer.acknowledge("b", third.entries[0].slot);
        assert!(writer.forget("b"));
        assert!(writer.forget("a"));
        assert_eq!(writer.slot("c"), Some(Slot { batch: 2, total: 5 }));
    }
}
