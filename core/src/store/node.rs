//! A store node: the async driver around the store's pure parts, over the node's seams.
//!
//! Tasks of one node:
//! - the **storage task** owns the [`StoreData`] and its [`Durable`] log. It takes requests
//!   (from peers, and from this node's own coordinators and timers) off one channel in
//!   batches: applies the whole batch in memory, appends its records, fsyncs once, and only
//!   then answers every request of the batch, reads included, so no answer ever reveals or
//!   acknowledges a state a crash could still take back;
//! - the **inbox** hands replica requests to the storage task and starts a coordinator task
//!   per client request ([`quorum`](super::quorum) decides, this module calls);
//! - the **handoff timer** (every `hinted_handoff_ms` of the node's clock) offers each home
//!   replica the hints held for it, and drops the ones it acknowledged;
//! - the **anti-entropy timer** (every `anti_entropy_ms`) compares Merkle roots, then leaves,
//!   with the next replica peer in turn, and the two exchange the buckets that differ.
//!
//! A coordinator's calls to its own node go straight to the storage task; calls to others go
//! over the network seam. A call that fails makes the node suspect the peer for
//! `suspect_ms` (a failure detector), which a sloppy quorum skips at once.
//!
//! **Internal events** for the checkers and reports: `store_recovered`,
//! `corruption_detected` (fsynced data failed its checksum at recovery: what lay past it was
//! dropped, for the peers to give back), `store_stopped`,
//! `store_snapshot_taken`, `store_handoff` (hints delivered), `store_read_repair`,
//! `store_anti_entropy` (a round that found differences).
//!
//! **Invariant:** a write is acknowledged (to a coordinator, then to a client) only after the
//! replica's log holds it fsynced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rand::Rng;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::counter::Counter;
use super::msg::{ClientReply, ClientRequest, ReplicaReply, ReplicaRequest, StoreMessage};
use super::quorum::{covered, merge_pages, Contact, Progress, Quorum};
use super::ring::Ring;
use super::storage::{Durable, RecoverError, StoreData, EXCHANGE_ENTRIES_MAX, SCAN_KEYS_MAX};
use super::{StoreSettings, ROLE};
use crate::history::Recorder;
use crate::node::{exit_on_write_failure, KnobSettings, NodeContext};
use crate::seams::clock::Clock;
use crate::seams::net::{Incoming, NetError, Transport};

/// Requests the storage task takes in one batch, at most.
const STORAGE_BATCH_MAX: usize = 1024;
/// Requests waiting for the storage task before it refuses more (a slow or stalled disk).
const STORAGE_QUEUE_MAX: usize = 16_384;
/// Client requests a node coordinates at once before it refuses more.
const COORDINATIONS_MAX: usize = 4_096;

/// Runs a store node (settings from the `store` knob) until it is killed, or stops itself on
/// data it cannot trust (`store_stopped`).
pub async fn serve(context: NodeContext) {
    let recorder = context.recorder.clone();
    let stop = |reason: String| recorder.record("store_stopped", json!({ "reason": reason }));
    let settings = match StoreSettings::from_knobs_line(&context.knobs) {
        Ok(settings) => settings,
        Err(reason) => return stop(format!("bad settings: {reason}")),
    };
    let nodes = context.peers(ROLE);
    if !nodes.contains(&context.name) {
        return stop(format!("{} is not a {ROLE} node of the cluster", context.name));
    }
    if let Err((field, message)) = settings.validate_for(nodes.len()) {
        return stop(format!("bad settings: {field}: {message}"));
    }
    let ring = Arc::new(Ring::new(&nodes, settings.vnodes, settings.n));
    let mut durable = Durable::new(context.disk.clone(), settings.snapshot_every);
    let (data, recovered) =
        match durable.recover(&context.name, ring.clone(), settings.keys_max).await {
            Ok(found) => found,
            Err(error) => {
                if let RecoverError::Disk(error) = &error {
                    exit_on_write_failure(&recorder, error);
                }
                return stop(format!("recovery: {error}"));
            }
        };
    for damage in &recovered.corruption {
        // What lay past the damage is dropped; the peers give it back (see `Durable::recover`).
        recorder.record("corruption_detected", json!({ "error": damage }));
    }
    recorder.record(
        "store_recovered",
        json!({
            "home_keys": data.home_keys(),
            "hints": data.hints_pending(),
            "wal_records": recovered.wal_records,
            "refused_records": recovered.refused_records,
            "torn_tail_bytes": recovered.torn_tail_bytes,
        }),
    );
    let (transport, mut inbox) = match context.bind::<StoreMessage>().await {
        Ok(bound) => bound,
        Err(reason) => return stop(reason),
    };
    let (jobs, job_queue) = mpsc::channel(STORAGE_QUEUE_MAX);
    let node = Arc::new(Node {
        me: context.name.clone(),
        ring,
        settings,
        transport: transport.clone(),
        jobs,
        suspects: Suspects::default(),
        coordinating: Arc::new(AtomicUsize::new(0)),
        recorder: recorder.clone(),
        clock: context.clock.clone(),
    });
    let storage_recorder = recorder.clone();
    tokio::spawn(async move {
        let recorder = storage_recorder.clone();
        if let Err(reason) = storage_loop(data, durable, job_queue, transport, recorder).await {
            storage_recorder.record("store_stopped", json!({ "reason": reason }));
        }
    });
    tokio::spawn(node.clone().handoff_loop());
    tokio::spawn(
        node.clone().anti_entropy_loop(context.rng("anti-entropy").random::<u32>() as usize),
    );
    while let Some(mut incoming) = inbox.recv().await {
        // The request moves out of the message; what stays behind is only the reply handle.
        let placeholder = StoreMessage::ReplicaReply(ReplicaReply::Stored);
        match std::mem::replace(&mut incoming.body, placeholder) {
            StoreMessage::Replica(request) => {
                let job =
                    Job { request: LocalRequest::Replica(request), reply: Reply::Remote(incoming) };
                if let Err(refused) = node.jobs.try_send(job) {
                    let (reason, job) = match refused {
                        mpsc::error::TrySendError::Full(job) => ("storage busy", job),
                        mpsc::error::TrySendError::Closed(job) => ("storage stopped", job),
                    };
                    if let Reply::Remote(incoming) = job.reply {
                        let refused = ReplicaReply::Refused { reason: reason.into() };
                        node.answer(incoming, StoreMessage::ReplicaReply(refused));
                    }
                }
            }
            StoreMessage::Client(request) => {
                let Some(slot) = Coordinating::enter(&node.coordinating) else {
                    let reply = ClientReply::Failed {
                        reason: format!("{COORDINATIONS_MAX} requests already coordinated"),
                        may_have_applied: false,
                    };
                    node.answer(incoming, StoreMessage::ClientReply(reply));
                    continue;
                };
                let node = node.clone();
                tokio::spawn(async move {
                    let reply = node.coordinate(request).await;
                    drop(slot);
                    // A lost answer is the client's timeout to see.
                    let _ =
                        node.transport.reply(&incoming, &StoreMessage::ClientReply(reply)).await;
                });
            }
            StoreMessage::ClientReply(_) | StoreMessage::ReplicaReply(_) => {}
        }
    }
}

/// What the storage task is asked: a replica request, or one of the node's own steps.
enum LocalRequest {
    Replica(ReplicaRequest),
    /// Up to `max` hints for each home node hints are held for.
    Hints {
        max: usize,
    },
    Delivered {
        home: String,
        entries: Vec<(String, u64)>,
    },
    Roots {
        partitions: Vec<u32>,
    },
    /// Given a peer's leaves: the buckets that differ, and this node's states in them.
    Differing {
        theirs: Vec<(u32, Vec<u64>)>,
    },
    /// A peer's states from an anti-entropy exchange.
    Merge {
        entries: Vec<(String, Counter)>,
    },
}

enum LocalAnswer {
    Replica(ReplicaReply),
    Hints(Vec<(String, Vec<(String, Counter)>)>),
    Roots(Vec<(u32, u64)>),
    Differing { buckets: Vec<(u32, u32)>, entries: Vec<(String, Counter)> },
    Merged { changed: usize },
}

enum Reply {
    Local(oneshot::Sender<LocalAnswer>),
    Remote(Incoming<StoreMessage>),
}

struct Job {
    request: LocalRequest,
    reply: Reply,
}

/// The storage task: see the module comment. Returns when the node's other tasks are gone,
/// or with the reason when the disk fails it.
async fn storage_loop(
    mut data: StoreData,
    mut durable: Durable,
    mut queue: mpsc::Receiver<Job>,
    transport: Transport<StoreMessage>,
    recorder: Recorder,
) -> Result<(), String> {
    let disk = |error: crate::seams::disk::DiskError| {
        exit_on_write_failure(&recorder, &error);
        format!("disk: {error}")
    };
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < STORAGE_BATCH_MAX {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut records = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for job in batch {
            let answer = match job.request {
                LocalRequest::Replica(request) => {
                    let (reply, mut written) = data.handle(&request);
                    records.append(&mut written);
                    LocalAnswer::Replica(reply)
                }
                LocalRequest::Hints { max } => LocalAnswer::Hints(
                    data.hinted_homes()
                        .into_iter()
                        .map(|home| {
                            let hints = data.hints_for(&home, max);
                            (home, hints)
                        })
                        .collect(),
                ),
                LocalRequest::Delivered { home, entries } => {
                    let record = super::storage::WalRecord::Delivered { home, entries };
                    let changed = usize::from(data.apply(&record).unwrap_or(false));
                    if changed > 0 {
                        records.push(record);
                    }
                    LocalAnswer::Merged { changed }
                }
                LocalRequest::Roots { partitions } => LocalAnswer::Roots(data.roots(&partitions)),
                LocalRequest::Differing { theirs } => {
                    let buckets = data.differing_buckets(&theirs);
                    let entries = data.entries_in(&buckets);
                    LocalAnswer::Differing { buckets, entries }
                }
                LocalRequest::Merge { entries } => {
                    let before = records.len();
                    // A refusal (a bound reached) keeps what merged before it.
                    let _ = data.merge_entries(&entries, &mut records);
                    LocalAnswer::Merged { changed: records.len() - before }
                }
            };
            answers.push((job.reply, answer));
        }
        if !records.is_empty() {
            durable.append(&records).await.map_err(disk)?;
            durable.sync().await.map_err(disk)?;
            if durable.maybe_snapshot(&data).await.map_err(disk)? {
                recorder.record(
                    "store_snapshot_taken",
                    json!({ "home_keys": data.home_keys(), "hints": data.hints_pending() }),
                );
            }
        }
        for (reply, answer) in answers {
            match reply {
                Reply::Local(sender) => drop(sender.send(answer)),
                Reply::Remote(incoming) => {
                    let LocalAnswer::Replica(reply) = answer else { continue };
                    let transport = transport.clone();
                    tokio::spawn(async move {
                        let _ =
                            transport.reply(&incoming, &StoreMessage::ReplicaReply(reply)).await;
                    });
                }
            }
        }
    }
    Ok(())
}

/// A failed call to a replica.
#[derive(Clone, Debug)]
struct CallError {
    reason: String,
    /// The request may have reached the replica (a timeout, a lost connection, a refusal
    /// cannot be one).
    may_have_arrived: bool,
}

/// The failure detector: nodes that failed a call recently. A suspicion lasts `suspect_ms`
/// of the node's clock.
#[derive(Clone, Default)]
struct Suspects {
    suspected: Arc<Mutex<BTreeMap<String, u64>>>,
    generation: Arc<AtomicU64>,
}

impl Suspects {
    fn suspect(&self, node: &str, clock: &Clock, suspect_ms: u64) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        {
            let mut suspected = self.suspected.lock().expect("suspects lock poisoned");
            if suspected.contains_key(node) || suspect_ms == 0 {
                return;
            }
            suspected.insert(node.to_string(), generation);
        }
        let (suspects, clock, node) = (self.suspected.clone(), clock.clone(), node.to_string());
        tokio::spawn(async move {
            clock.sleep(Duration::from_millis(suspect_ms)).await;
            let mut suspected = suspects.lock().expect("suspects lock poisoned");
            if suspected.get(&node) == Some(&generation) {
                suspected.remove(&node);
            }
        });
    }

    fn clear(&self, node: &str) {
        self.suspected.lock().expect("suspects lock poisoned").remove(node);
    }

    fn snapshot(&self) -> BTreeSet<String> {
        self.suspected.lock().expect("suspects lock poisoned").keys().cloned().collect()
    }
}

/// One client request being coordinated; counted until dropped.
struct Coordinating(Arc<AtomicUsize>);

impl Coordinating {
    /// A slot, unless [`COORDINATIONS_MAX`] requests are already coordinated.
    fn enter(count: &Arc<AtomicUsize>) -> Option<Coordinating> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        if before >= COORDINATIONS_MAX {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Coordinating(count.clone()))
    }
}

impl Drop for Coordinating {
    fn drop(&mut self) {
        let before = self.0.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "coordinations counted below zero");
    }
}

/// What a node's coordinators and timers share.
struct Node {
    me: String,
    ring: Arc<Ring>,
    settings: StoreSettings,
    transport: Transport<StoreMessage>,
    jobs: mpsc::Sender<Job>,
    suspects: Suspects,
    /// Client requests being coordinated.
    coordinating: Arc<AtomicUsize>,
    recorder: Recorder,
    clock: Clock,
}

impl Node {
    /// `ms` of this node's clock, in true time.
    fn within(&self, ms: u64) -> Duration {
        self.clock.true_duration(Duration::from_millis(ms))
    }

    fn answer(&self, incoming: Incoming<StoreMessage>, message: StoreMessage) {
        let transport = self.transport.clone();
        tokio::spawn(async move {
            let _ = transport.reply(&incoming, &message).await;
        });
    }

    /// Asks this node's storage task, within the replica timeout.
    async fn local(&self, request: LocalRequest) -> Result<LocalAnswer, CallError> {
        let (sender, receiver) = oneshot::channel();
        let job = Job { request, reply: Reply::Local(sender) };
        if let Err(refused) = self.jobs.try_send(job) {
            let reason = match refused {
                mpsc::error::TrySendError::Full(_) => "storage busy",
                mpsc::error::TrySendError::Closed(_) => "storage stopped",
            };
            return Err(CallError { reason: reason.into(), may_have_arrived: false });
        }
        match tokio::time::timeout(self.within(self.settings.replica_timeout_ms), receiver).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => {
                Err(CallError { reason: "storage stopped".into(), may_have_arrived: true })
            }
            // The job stays queued and will be applied: it may well happen.
            Err(_) => Err(CallError { reason: "own disk too slow".into(), may_have_arrived: true }),
        }
    }

    /// Sends a replica request to `node` (this node: its storage task) and waits for the
    /// answer; a refusal is a failure that certainly changed nothing.
    async fn call(&self, node: &str, request: ReplicaRequest) -> Result<ReplicaReply, CallError> {
        let reply = if node == self.me {
            match self.local(LocalRequest::Replica(request)).await? {
                LocalAnswer::Replica(reply) => reply,
                _ => unreachable!("a replica request is answered with a replica reply"),
            }
        } else {
            let timeout = self.within(self.settings.replica_timeout_ms);
            match self.transport.call(node, &StoreMessage::Replica(request), timeout).await {
                Ok(StoreMessage::ReplicaReply(reply)) => {
                    self.suspects.clear(node);
                    reply
                }
                Ok(other) => {
                    let reason = format!("{node} answered {other:?}");
                    return Err(CallError { reason, may_have_arrived: true });
                }
                Err(error) => {
                    self.suspects.suspect(node, &self.clock, self.settings.suspect_ms);
                    let may_have_arrived =
                        matches!(error, NetError::Timeout { .. } | NetError::ConnectionLost { .. });
                    return Err(CallError { reason: error.to_string(), may_have_arrived });
                }
            }
        };
        match reply {
            ReplicaReply::Refused { reason } => Err(CallError {
                reason: format!("{node} refused: {reason}"),
                may_have_arrived: false,
            }),
            reply => Ok(reply),
        }
    }

    async fn coordinate(self: &Arc<Self>, request: ClientRequest) -> ClientReply {
        match request {
            ClientRequest::Write { key, update } => self.coordinate_write(key, update).await,
            ClientRequest::Read { key } => self.coordinate_read(key).await,
            ClientRequest::Scan { start, end, limit } => {
                self.coordinate_scan(start, end, limit).await
            }
            ClientRequest::Dump { full } => {
                match self.local(LocalRequest::Replica(ReplicaRequest::Dump { full })).await {
                    Ok(LocalAnswer::Replica(ReplicaReply::Dumped(dump))) => {
                        ClientReply::Dumped(dump)
                    }
                    Ok(_) => unreachable!("a dump is answered with a dump"),
                    Err(error) => {
                        ClientReply::Failed { reason: error.reason, may_have_applied: false }
                    }
                }
            }
        }
    }

    /// Waits for a quorum driver's decision, within the coordinator's budget.
    async fn decision(&self, decided: oneshot::Receiver<ClientReply>, what: &str) -> ClientReply {
        match tokio::time::timeout(self.within(self.settings.coordinator_budget_ms()), decided)
            .await
        {
            Ok(Ok(reply)) => reply,
            _ => ClientReply::Failed {
                reason: format!("no {what} quorum within the coordinator's budget"),
                may_have_applied: what == "write",
            },
        }
    }

    async fn coordinate_write(self: &Arc<Self>, key: String, update: Counter) -> ClientReply {
        let (quorum, contacts) = Quorum::start(
            self.settings.w,
            self.settings.sloppy_quorum,
            self.ring.home(&key),
            self.ring.fallbacks(&key),
            &self.suspects.snapshot(),
        );
        let (decide, decided) = oneshot::channel();
        tokio::spawn(self.clone().drive_write(quorum, contacts, key, update, decide));
        self.decision(decided, "write").await
    }

    /// Drives a write until every contacted replica settled; decides as soon as it can.
    async fn drive_write(
        self: Arc<Self>,
        mut quorum: Quorum,
        contacts: Vec<Contact>,
        key: String,
        update: Counter,
        decide: oneshot::Sender<ClientReply>,
    ) {
        let mut decide = Some(decide);
        let mut uncertain = false;
        let put = |contact: Contact| {
            let node = self.clone();
            let request = ReplicaRequest::Put {
                key: key.clone(),
                update: update.clone(),
                hint_for: contact.hint_for.clone(),
            };
            async move {
                let outcome = node.call(&contact.node, request).await;
                (contact, outcome)
            }
        };
        let mut calls: FuturesUnordered<_> = contacts.into_iter().map(&put).collect();
        while let Some((contact, outcome)) = calls.next().await {
            let progress = match outcome {
                Ok(ReplicaReply::Stored) => quorum.succeeded(&contact.node),
                outcome => {
                    uncertain |= outcome.err().is_none_or(|error| error.may_have_arrived);
                    let (borrowed, progress) =
                        quorum.failed(&contact.node, &self.suspects.snapshot());
                    calls.extend(borrowed.into_iter().map(&put));
                    progress
                }
            };
            if progress != Progress::Waiting {
                if let Some(decide) = decide.take() {
                    let _ = decide.send(write_reply(&quorum, self.settings.w, uncertain));
                }
            }
        }
        if let Some(decide) = decide.take() {
            let _ = decide.send(write_reply(&quorum, self.settings.w, uncertain));
        }
    }

    async fn coordinate_read(self: &Arc<Self>, key: String) -> ClientReply {
        let (quorum, contacts) = Quorum::start(
            self.settings.r,
            self.settings.sloppy_quorum,
            self.ring.home(&key),
            self.ring.fallbacks(&key),
            &self.suspects.snapshot(),
        );
        let (decide, decided) = oneshot::channel();
        tokio::spawn(self.clone().drive_read(quorum, contacts, key, decide));
        self.decision(decided, "read").await
    }

    /// Drives a read: answers with the merge of the first R answers, then waits for the
    /// rest and repairs the home replicas whose state lacks part of the merge of them all.
    async fn drive_read(
        self: Arc<Self>,
        mut quorum: Quorum,
        contacts: Vec<Contact>,
        key: String,
        decide: oneshot::Sender<ClientReply>,
    ) {
        let mut decide = Some(decide);
        let get = |contact: Contact| {
            let node = self.clone();
            let request = ReplicaRequest::Get { key: key.clone() };
            async move {
                let outcome = node.call(&contact.node, request).await;
                (contact, outcome)
            }
        };
        let mut calls: FuturesUnordered<_> = contacts.into_iter().map(&get).collect();
        // Node → its state and whether it answered as a home replica.
        let mut answers: BTreeMap<String, (Option<Counter>, bool)> = BTreeMap::new();
        while let Some((contact, outcome)) = calls.next().await {
            let progress = match outcome {
                Ok(ReplicaReply::Got { counter }) => {
                    answers.insert(contact.node.clone(), (counter, contact.hint_for.is_none()));
                    quorum.succeeded(&contact.node)
                }
                _ => {
                    let (borrowed, progress) =
                        quorum.failed(&contact.node, &self.suspects.snapshot());
                    calls.extend(borrowed.into_iter().map(&get));
                    progress
                }
            };
            if progress != Progress::Waiting {
                if let Some(decide) = decide.take() {
                    let _ = decide.send(read_reply(&quorum, &answers, self.settings.r));
                }
            }
        }
        if let Some(decide) = decide.take() {
            let _ = decide.send(read_reply(&quorum, &answers, self.settings.r));
        }
        // Read repair: every home replica that answered without part of what the others hold.
        let Some(merged) = merge_answers(&answers) else { return };
        let stale: Vec<String> = answers
            .iter()
            .filter(|(_, (state, as_home))| {
                *as_home && !state.as_ref().is_some_and(|state| state.covers(&merged))
            })
            .map(|(node, _)| node.clone())
            .collect();
        if stale.is_empty() {
            return;
        }
        let repairs = stale.iter().map(|node| {
            let request =
                ReplicaRequest::Put { key: key.clone(), update: merged.clone(), hint_for: None };
            self.call(node, request)
        });
        let outcomes = futures::future::join_all(repairs).await;
        let repaired = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        self.recorder.record(
            "store_read_repair",
            json!({ "key": key, "nodes": stale, "repaired": repaired }),
        );
    }

    async fn coordinate_scan(
        self: &Arc<Self>,
        start: String,
        end: Option<String>,
        limit: u32,
    ) -> ClientReply {
        let limit = (limit as usize).clamp(1, SCAN_KEYS_MAX);
        let request = ReplicaRequest::Scan { start, end, limit: limit as u32 };
        let calls = self.ring.nodes().iter().map(|node| {
            let request = request.clone();
            async move { (node.clone(), self.call(node, request).await) }
        });
        let mut answered = BTreeSet::new();
        let mut pages = Vec::new();
        for (node, outcome) in futures::future::join_all(calls).await {
            if let Ok(ReplicaReply::Scanned { entries, truncated }) = outcome {
                answered.insert(node);
                pages.push((entries, truncated));
            }
        }
        if !covered(&self.ring, &answered, self.settings.r) {
            return ClientReply::Failed {
                reason: format!(
                    "only {} of {} nodes answered: some keys have fewer than R replicas heard",
                    answered.len(),
                    self.ring.nodes().len()
                ),
                may_have_applied: false,
            };
        }
        let (entries, resume) = merge_pages(pages, limit);
        ClientReply::Scanned { entries, resume }
    }

    /// Every `hinted_handoff_ms`: offers each home node its hints, and drops those it took.
    async fn handoff_loop(self: Arc<Self>) {
        loop {
            self.clock.sleep(Duration::from_millis(self.settings.hinted_handoff_ms)).await;
            let Ok(LocalAnswer::Hints(per_home)) =
                self.local(LocalRequest::Hints { max: EXCHANGE_ENTRIES_MAX }).await
            else {
                continue;
            };
            for (home, entries) in per_home {
                let digests: Vec<(String, u64)> =
                    entries.iter().map(|(key, state)| (key.clone(), state.digest())).collect();
                let keys = entries.len();
                if let Ok(ReplicaReply::Stored) =
                    self.call(&home, ReplicaRequest::Handoff { entries }).await
                {
                    let delivered =
                        LocalRequest::Delivered { home: home.clone(), entries: digests };
                    let dropped = match self.local(delivered).await {
                        Ok(LocalAnswer::Merged { changed }) => changed,
                        _ => 0,
                    };
                    self.recorder.record(
                        "store_handoff",
                        json!({ "home": home, "keys": keys, "dropped": dropped > 0 }),
                    );
                }
            }
        }
    }

    /// Every `anti_entropy_ms`: one anti-entropy round with the next replica peer in turn
    /// (starting at a seeded position, so nodes do not all pick the same peer).
    async fn anti_entropy_loop(self: Arc<Self>, first_turn: usize) {
        let peers = self.ring.replica_peers(&self.me);
        if peers.is_empty() || self.settings.anti_entropy_ms == 0 {
            return;
        }
        let mut turn = first_turn % peers.len();
        loop {
            self.clock.sleep(Duration::from_millis(self.settings.anti_entropy_ms)).await;
            let peer = &peers[turn];
            turn = (turn + 1) % peers.len();
            self.anti_entropy_round(peer).await;
        }
    }

    async fn anti_entropy_round(&self, peer: &str) {
        let partitions = self.ring.shared_partitions(&self.me, peer);
        let Ok(LocalAnswer::Roots(roots)) = self.local(LocalRequest::Roots { partitions }).await
        else {
            return;
        };
        let Ok(ReplicaReply::Leaves { differing }) =
            self.call(peer, ReplicaRequest::Roots { roots }).await
        else {
            return;
        };
        if differing.is_empty() {
            return;
        }
        let partitions = differing.len();
        let Ok(LocalAnswer::Differing { buckets, entries }) =
            self.local(LocalRequest::Differing { theirs: differing }).await
        else {
            return;
        };
        let (bucket_count, sent) = (buckets.len(), entries.len());
        let exchange = ReplicaRequest::Exchange { buckets, entries };
        let Ok(ReplicaReply::Entries { entries }) = self.call(peer, exchange).await else { return };
        let received = entries.len();
        let changed = match self.local(LocalRequest::Merge { entries }).await {
            Ok(LocalAnswer::Merged { changed }) => changed,
            _ => 0,
        };
        self.recorder.record(
            "store_anti_entropy",
            json!({
                "peer": peer,
                "partitions": partitions,
                "buckets": bucket_count,
                "sent": sent,
                "received": received,
                "changed_here": changed,
            }),
        );
    }
}

fn write_reply(quorum: &Quorum, w: usize, uncertain: bool) -> ClientReply {
    if quorum.successes() >= w {
        return ClientReply::Written {
            acks: quorum.successes() as u32,
            hinted: quorum.hinted_successes() as u32,
        };
    }
    ClientReply::Failed {
        reason: format!("{} of the {w} acknowledgements a write needs", quorum.successes()),
        may_have_applied: quorum.successes() > 0 || uncertain || !quorum.settled(),
    }
}

fn merge_answers(answers: &BTreeMap<String, (Option<Counter>, bool)>) -> Option<Counter> {
    answers.values().filter_map(|(state, _)| state.as_ref()).fold(None, |merged, state| {
        Some(merged.map_or_else(|| state.clone(), |merged: Counter| merged.joined(state)))
    })
}

fn read_reply(
    quorum: &Quorum,
    answers: &BTreeMap<String, (Option<Counter>, bool)>,
    r: usize,
) -> ClientReply {
    if quorum.successes() >= r {
        return ClientReply::Read {
            counter: merge_answers(answers),
            answers: quorum.successes() as u32,
            hinted: quorum.hinted_successes() as u32,
        };
    }
    ClientReply::Failed {
        reason: format!("{} of the {r} answers a read needs", quorum.successes()),
        may_have_applied: false,
    }
}
