//! A replica: raft-rs driven by an async loop over the node's seams, applying committed
//! commands to a [`StateMachine`].
//!
//! One task owns the `RawNode` and handles, one at a time, the node's events: a tick of its
//! (possibly drifting) clock, a Raft message from a peer, a command from a client. After each
//! event it handles raft-rs's `Ready` in the order raft-rs requires:
//!
//! 1. install a snapshot received from the leader (durably, then in memory);
//! 2. append the new entries and the hard state to the write-ahead log, and **fsync**;
//! 3. only then send the Ready's messages (votes and acknowledgements promise what is on disk);
//! 4. apply committed entries to the state machine and answer the clients waiting for them;
//! 5. advance, and repeat steps 3-4 for the light ready;
//! 6. every `snapshot_every` applied entries, snapshot the state machine and compact the log.
//!
//! **Randomness.** raft-rs draws each election timeout from rand 0.8's `thread_rng`, which is
//! not deterministic under madsim. After every event the driver looks at (term, role, leader)
//! and, when it changed, re-draws the timeout from the node's seeded RNG with
//! `set_randomized_election_timeout`, before the next tick can read it. raft-rs resets the
//! timeout only in `reset`, which every change of term or role calls, so every value raft-rs
//! uses comes from the seed.
//!
//! **Time.** The leader stamps each proposal with its own wall clock ([`Stamped::now_ms`]); the
//! state machine never reads a clock. See [`crate::queue::machine`] for what a skewed leader
//! clock does to leases.
//!
//! **Internal events** recorded for the checkers: `raft_role` (term, role, leader, log
//! position) whenever they change, `raft_applied` (index, term and chain hash of each applied
//! entry), `raft_snapshot_restored`, `raft_snapshot_taken`, `raft_recovered`, and
//! `raft_stopped` when the node stops itself (a disk it cannot trust). Each carries `group`,
//! the role of the group's nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType, Message, Snapshot};
use raft::{Config, RawNode, StateRole, Storage};
use rand::Rng;
use serde_json::json;
use tokio::sync::mpsc;

use super::storage::{Durable, LogStore, RecoverError, SnapshotData};
use super::{
    Answer, Proposal, ProposalOrigin, RaftSettings, ReplicaMessage, Stamped, StateMachine,
};
use crate::history::Recorder;
use crate::node::{exit_on_write_failure, NodeContext};
use crate::seams::clock::Clock;
use crate::seams::disk::DiskError;
use crate::seams::net::{Incoming, Transport};
use crate::seams::rng::SeededRng;

/// Raft messages waiting for one peer before the oldest are dropped (Raft tolerates loss).
const PEER_QUEUE: usize = 1024;

/// Messages of a group replicating `M`.
pub type MessageOf<M> = ReplicaMessage<<M as StateMachine>::Command, <M as StateMachine>::Response>;

/// Runs a replica of the group of `context.role`'s nodes until its disk fails it or the node is
/// killed. `initial` is the state before the first command (a recovered snapshot replaces it).
pub async fn serve<M: StateMachine>(context: NodeContext, settings: RaftSettings, initial: M) {
    let recorder = context.recorder.clone();
    let group = context.role.clone();
    let stop = |reason: String| {
        recorder.record("raft_stopped", json!({ "group": group, "reason": reason }))
    };
    if let Err((field, message)) = settings.validate() {
        return stop(format!("bad settings: {field}: {message}"));
    }
    let peers = context.peers(&context.role);
    let Some(position) = peers.iter().position(|peer| *peer == context.name) else {
        return stop(format!("{} is not a {} node of the cluster", context.name, group));
    };
    let start = Replica::start(context.clone(), settings, initial, peers, position as u64 + 1);
    match start.await {
        Ok((node, events)) => {
            if let Err(reason) = node.run(events).await {
                stop(reason);
            }
        }
        Err(reason) => stop(reason),
    }
}

/// A disk operation of the Raft log failed: a write failure ends the process (see
/// [`exit_on_write_failure`]); anything else stops the replica with this reason.
fn disk_failed(recorder: &Recorder, error: DiskError) -> String {
    exit_on_write_failure(recorder, &error);
    format!("disk: {error}")
}

enum Event<M: StateMachine> {
    Tick,
    Net(Incoming<MessageOf<M>>),
}

struct Replica<M: StateMachine> {
    id: u64,
    /// The group's name: the role of its nodes.
    group: String,
    incarnation: u64,
    settings: RaftSettings,
    /// Peer id to name; ids are 1-based positions in the sorted list of queue nodes.
    names: BTreeMap<u64, String>,
    raw: RawNode<LogStore>,
    durable: Durable,
    machine: M,
    /// With `ack_before_replication`, while this node leads: the state after every entry of
    /// its log, committed or not, which answers a command the moment it is proposed. Dropped
    /// whenever term, role or leader change.
    speculative: Option<M>,
    /// Chain hash of the applied log: `chain_i = H(chain_{i-1}, i, term_i, data_i)`.
    chain: u64,
    applied: u64,
    transport: Transport<MessageOf<M>>,
    outboxes: BTreeMap<u64, mpsc::Sender<Vec<u8>>>,
    pending: BTreeMap<u64, Incoming<MessageOf<M>>>,
    next_seq: u64,
    clock: Clock,
    rng: SeededRng,
    recorder: Recorder,
    /// (term, role, leader) as of the last event.
    seen: (u64, StateRole, u64),
}

impl<M: StateMachine> Replica<M> {
    async fn start(
        context: NodeContext,
        settings: RaftSettings,
        initial: M,
        peers: Vec<String>,
        id: u64,
    ) -> Result<(Replica<M>, mpsc::UnboundedReceiver<Event<M>>), String> {
        let group = context.role.clone();
        let names: BTreeMap<u64, String> =
            peers.iter().enumerate().map(|(i, name)| (i as u64 + 1, name.clone())).collect();
        let voters: Vec<u64> = names.keys().copied().collect();
        let durable = Durable::new(context.disk.clone());
        let recovered = durable.recover(&voters).await.map_err(|error| {
            if let RecoverError::Disk(error) = &error {
                exit_on_write_failure(&context.recorder, error);
            }
            format!("recovery: {error}")
        })?;
        let store = recovered.store;
        let snapshot = store.latest_snapshot().clone();
        let (machine, chain) = if snapshot.get_metadata().index == 0 {
            (initial, 0)
        } else {
            restore::<M>(&snapshot)?
        };
        let applied = snapshot.get_metadata().index;
        context.recorder.record(
            "raft_recovered",
            json!({
                "group": group,
                "id": id,
                "snapshot_index": applied,
                "last_index": store.last_index().unwrap_or(applied),
                "commit": store.hard_state().commit,
                "term": store.hard_state().term,
                "torn_tail_bytes": recovered.torn_tail_bytes,
                "wal_records": recovered.wal_records,
            }),
        );
        if applied > 0 {
            let recorder = &context.recorder;
            record_snapshot(recorder, "raft_snapshot_restored", &group, id, &snapshot, chain);
        }
        let (min_election_tick, max_election_tick) = settings.election_timeout_bounds();
        let config = Config {
            id,
            election_tick: settings.election_ticks,
            heartbeat_tick: settings.heartbeat_ticks,
            min_election_tick,
            max_election_tick,
            applied,
            // A leader that cannot reach a majority steps down, unless the design under test
            // is the lossy one that keeps answering on a minority side.
            check_quorum: !settings.ack_before_replication,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&config, store, &logger).map_err(|e| format!("raft-rs: {e}"))?;

        let (transport, mut inbox) = context.bind::<MessageOf<M>>().await?;

        // One channel of events: the inbox and the ticker feed it, the loop drains it.
        let (events, receiver) = mpsc::unbounded_channel();
        let from_net = events.clone();
        tokio::spawn(async move {
            while let Some(incoming) = inbox.recv().await {
                if from_net.send(Event::Net(incoming)).is_err() {
                    return;
                }
            }
        });
        let (clock, tick) = (context.clock.clone(), Duration::from_millis(settings.tick_ms));
        tokio::spawn(async move {
            loop {
                clock.sleep(tick).await;
                if events.send(Event::Tick).is_err() {
                    return;
                }
            }
        });

        let mut outboxes = BTreeMap::new();
        for (&peer, name) in &names {
            if peer != id {
                outboxes.insert(peer, spawn_outbox::<M>(transport.clone(), name.clone()));
            }
        }
        let mut node = Replica {
            id,
            group,
            incarnation: context.incarnation,
            settings,
            names,
            raw,
            durable,
            machine,
            speculative: None,
            chain,
            applied,
            transport,
            outboxes,
            pending: BTreeMap::new(),
            next_seq: 0,
            clock: context.clock.clone(),
            rng: context.rng("raft"),
            recorder: context.recorder.clone(),
            seen: (u64::MAX, StateRole::Follower, u64::MAX),
        };
        node.observe();
        Ok((node, receiver))
    }

    async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event<M>>) -> Result<(), String> {
        while let Some(event) = events.recv().await {
            self.handle(event);
            // Take whatever else is already waiting before writing to disk, so one fsync
            // covers many messages.
            while let Ok(event) = events.try_recv() {
                self.handle(event);
            }
            if self.raw.has_ready() {
                self.handle_ready().await?;
                self.observe();
            }
        }
        Ok(())
    }

    fn handle(&mut self, event: Event<M>) {
        match event {
            Event::Tick => {
                self.raw.tick();
            }
            Event::Net(incoming) => match &incoming.body {
                ReplicaMessage::Raft(bytes) => match Message::parse_from_bytes(bytes) {
                    // Errors here are messages raft-rs ignores by design (from an unknown
                    // peer, a stale term); they change nothing.
                    Ok(message) => drop(self.raw.step(message)),
                    Err(error) => self.recorder.record(
                        "raft_bad_message",
                        json!({
                            "group": self.group,
                            "from": &**incoming.from(),
                            "error": error.to_string(),
                        }),
                    ),
                },
                ReplicaMessage::Submit(_) => self.submit(incoming),
                ReplicaMessage::Answer(_) => {}
            },
        }
        self.observe();
    }

    /// After every step: re-draw the election timeout when term, role or leader changed,
    /// record the change, and give up on proposals a former leader can no longer answer.
    fn observe(&mut self) {
        let raft = &self.raw.raft;
        let now = (raft.term, raft.state, raft.leader_id);
        if now == self.seen {
            return;
        }
        self.seen = now;
        self.speculative = None;
        let (min_ticks, max_ticks) = self.settings.election_timeout_range(now.0);
        let timeout = self.rng.random_range(min_ticks..max_ticks);
        self.raw.raft.set_randomized_election_timeout(timeout);
        let raft = &self.raw.raft;
        self.recorder.record(
            "raft_role",
            json!({
                "group": self.group,
                "id": self.id,
                "term": raft.term,
                "role": role_name(raft.state),
                "leader": raft.leader_id,
                "last_index": raft.raft_log.last_index(),
                "last_term": raft.raft_log.last_term(),
                "commit": raft.raft_log.committed,
                "election_timeout_ticks": timeout,
            }),
        );
        if raft.state != StateRole::Leader && !self.pending.is_empty() {
            let reason = format!("leadership lost in term {}", raft.term);
            for (_, request) in std::mem::take(&mut self.pending) {
                self.answer(request, Answer::Uncertain { reason: reason.clone() });
            }
        }
    }

    fn submit(&mut self, request: Incoming<MessageOf<M>>) {
        let ReplicaMessage::Submit(command) = &request.body else { return };
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            let leader = self.names.get(&raft.leader_id).cloned();
            return self.answer(request, Answer::NotLeader { leader });
        }
        if self.pending.len() >= self.settings.max_pending {
            let reason = format!("{} proposals already in flight", self.pending.len());
            return self.answer(request, Answer::Busy { reason });
        }
        self.next_seq += 1;
        let proposal = Proposal {
            origin: ProposalOrigin {
                node: self.id,
                incarnation: self.incarnation,
                seq: self.next_seq,
            },
            stamped: Stamped { now_ms: self.clock.wall_ms(), command: command.clone() },
        };
        let data = postcard::to_stdvec(&proposal).expect("postcard encoding of a proposal");
        match self.raw.propose(Vec::new(), data) {
            Ok(()) if self.settings.ack_before_replication => {
                let index = self.raw.raft.raft_log.last_index();
                match self.speculate(index, &proposal.stamped) {
                    Ok(response) => self.answer(request, Answer::Done(response)),
                    Err(reason) => self.answer(request, Answer::Uncertain { reason }),
                }
            }
            Ok(()) => {
                self.pending.insert(self.next_seq, request);
            }
            Err(error) => self.answer(request, Answer::Busy { reason: error.to_string() }),
        }
    }

    /// The response the command just proposed at `index` will have if it commits: applied to
    /// the speculative state, built on first use from the applied state and every entry of the
    /// log after it (the leader's own, committed or not).
    fn speculate(
        &mut self,
        index: u64,
        stamped: &Stamped<M::Command>,
    ) -> Result<M::Response, String> {
        if self.speculative.is_none() {
            let mut machine = M::restore(&self.machine.snapshot())?;
            let log = &self.raw.raft.raft_log;
            let entries = log
                .entries(self.applied + 1, None, raft::GetEntriesContext::empty(false))
                .map_err(|error| format!("raft log: {error}"))?;
            for entry in entries.iter().filter(|entry| entry.index < index) {
                if entry.get_entry_type() != EntryType::EntryNormal || entry.get_data().is_empty() {
                    continue;
                }
                if let Ok(proposal) = postcard::from_bytes::<Proposal<M::Command>>(entry.get_data())
                {
                    machine.apply(entry.index, &proposal.stamped);
                }
            }
            self.speculative = Some(machine);
        }
        let machine = self.speculative.as_mut().expect("built above");
        Ok(machine.apply(index, stamped))
    }

    /// Answers a client without holding up the loop.
    fn answer(&self, request: Incoming<MessageOf<M>>, answer: Answer<M::Response>) {
        let transport = self.transport.clone();
        tokio::spawn(async move {
            // A lost answer is the client's timeout to see.
            let _ = transport.reply(&request, &ReplicaMessage::Answer(answer)).await;
        });
    }

    async fn handle_ready(&mut self) -> Result<(), String> {
        let mut ready = self.raw.ready();
        let recorder = self.recorder.clone();
        let disk = |error: DiskError| disk_failed(&recorder, error);
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(snapshot).await?;
        }
        let mut wrote = false;
        if !ready.entries().is_empty() {
            let entries = ready.take_entries();
            self.durable.append_entries(&entries).await.map_err(disk)?;
            self.raw.mut_store().append(&entries).map_err(|(last, found)| {
                format!("raft-rs gave entry {found} after last index {last}")
            })?;
            wrote = true;
        }
        if let Some(hard_state) = ready.hs() {
            let hard_state = hard_state.clone();
            self.durable.append_hard_state(&hard_state).await.map_err(disk)?;
            self.raw.mut_store().set_hard_state(hard_state);
            wrote = true;
        }
        if wrote {
            self.durable.sync().await.map_err(disk)?;
        }
        self.send(ready.take_messages());
        self.send(ready.take_persisted_messages());
        self.apply(ready.take_committed_entries());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
        self.maybe_snapshot().await
    }

    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            let Some(outbox) = self.outboxes.get(&message.to) else { continue };
            let bytes = message.write_to_bytes().expect("protobuf encoding of a message");
            // A full outbox means the peer is unreachable or slow: drop, Raft retries.
            let _ = outbox.try_send(bytes);
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let mut applied = Vec::with_capacity(entries.len());
        for entry in entries {
            self.chain = chain_step(self.chain, entry.index, entry.term, entry.get_data());
            applied.push(json!([entry.index, entry.term, format!("{:016x}", self.chain)]));
            self.applied = entry.index;
            if entry.get_entry_type() != EntryType::EntryNormal || entry.get_data().is_empty() {
                continue; // A new leader's empty entry, or a configuration change (none yet).
            }
            let proposal: Proposal<M::Command> = match postcard::from_bytes(entry.get_data()) {
                Ok(proposal) => proposal,
                Err(error) => {
                    self.recorder.record(
                        "raft_bad_entry",
                        json!({
                            "group": self.group,
                            "index": entry.index,
                            "error": error.to_string(),
                        }),
                    );
                    continue;
                }
            };
            let response = self.machine.apply(entry.index, &proposal.stamped);
            let origin = proposal.origin;
            if origin.node == self.id && origin.incarnation == self.incarnation {
                if let Some(request) = self.pending.remove(&origin.seq) {
                    self.answer(request, Answer::Done(response));
                }
            }
        }
        self.recorder.record(
            "raft_applied",
            json!({ "group": self.group, "id": self.id, "entries": applied }),
        );
    }

    async fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), String> {
        let (machine, chain) = restore::<M>(&snapshot)?;
        let store = self.raw.store();
        let hard_state = store.hard_state().clone();
        self.durable
            .save_snapshot(&snapshot, &hard_state, &[])
            .await
            .map_err(|error| disk_failed(&self.recorder, error))?;
        self.raw.mut_store().install_snapshot(snapshot.clone());
        self.machine = machine;
        self.chain = chain;
        self.applied = snapshot.get_metadata().index;
        let (recorder, group) = (&self.recorder, &self.group);
        record_snapshot(recorder, "raft_snapshot_restored", group, self.id, &snapshot, chain);
        Ok(())
    }

    async fn maybe_snapshot(&mut self) -> Result<(), String> {
        let store = self.raw.store();
        if self.applied < store.snapshot_index() + self.settings.snapshot_every {
            return Ok(());
        }
        let index = self.applied;
        let term = store.term(index).map_err(|error| format!("raft log: {error}"))?;
        let data = SnapshotData { machine: self.machine.snapshot(), chain: self.chain };
        let mut snapshot = Snapshot::default();
        snapshot.set_data(postcard::to_stdvec(&data).expect("postcard snapshot").into());
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = term;
        metadata.set_conf_state(store.conf_state().clone());
        let after: Vec<Entry> =
            store.entries_after_snapshot().iter().filter(|e| e.index > index).cloned().collect();
        let hard_state = store.hard_state().clone();
        self.durable
            .save_snapshot(&snapshot, &hard_state, &after)
            .await
            .map_err(|error| disk_failed(&self.recorder, error))?;
        self.raw.mut_store().compact_to(snapshot);
        self.recorder.record(
            "raft_snapshot_taken",
            json!({
                "group": self.group,
                "id": self.id,
                "index": index,
                "term": term,
                "log_entries": after.len(),
            }),
        );
        Ok(())
    }
}

/// A task that sends one peer's Raft messages in order, so a slow or cut-off peer never holds
/// up the loop.
fn spawn_outbox<M: StateMachine>(
    transport: Transport<MessageOf<M>>,
    peer: String,
) -> mpsc::Sender<Vec<u8>> {
    let (sender, mut receiver) = mpsc::channel::<Vec<u8>>(PEER_QUEUE);
    tokio::spawn(async move {
        while let Some(bytes) = receiver.recv().await {
            // An unreachable peer loses the message; Raft resends what matters.
            let _ = transport.send(&peer, &ReplicaMessage::Raft(bytes)).await;
        }
    });
    sender
}

fn restore<M: StateMachine>(snapshot: &Snapshot) -> Result<(M, u64), String> {
    let data: SnapshotData = postcard::from_bytes(snapshot.get_data())
        .map_err(|error| format!("snapshot data: {error}"))?;
    let machine =
        M::restore(&data.machine).map_err(|error| format!("snapshot state machine: {error}"))?;
    Ok((machine, data.chain))
}

fn record_snapshot(
    recorder: &Recorder,
    what: &str,
    group: &str,
    id: u64,
    snapshot: &Snapshot,
    chain: u64,
) {
    let metadata = snapshot.get_metadata();
    recorder.record(
        what,
        json!({
            "group": group,
            "id": id,
            "index": metadata.index,
            "term": metadata.term,
            "chain": format!("{chain:016x}"),
        }),
    );
}

/// One step of the applied log's chain hash.
pub fn chain_step(chain: u64, index: u64, term: u64, data: &[u8]) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&chain.to_le_bytes());
    hasher.update(&index.to_le_bytes());
    hasher.update(&term.to_le_bytes());
    hasher.update(data);
    let digest = hasher.finalize();
    u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"))
}

fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre_candidate",
    }
}
