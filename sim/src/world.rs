//! The simulated world: a cluster of named nodes on madsim, and the nemesis that injects and
//! heals faults on it.
//!
//! Each server node gets a simulated disk and clock that outlive its process, so a crash loses
//! exactly what a crash loses (pending writes) and keeps the rest. A node runs a [`Program`]:
//! madsim calls it again on every restart, with the next incarnation number.
//!
//! Faults arrive as [`Fault`] values with an id. Network faults are never applied one by one:
//! the world recomputes the whole network from the active set (see [`crate::nemesis`]) and
//! applies the difference to madsim's clogs, its global loss and latency, and the transport's
//! link rules. Disk, clock and process faults go to the node's controls.
//!
//! Every fault's effect is measured (see [`crate::fault_effect`]): the world reads the seams'
//! counters when it injects a fault and when the fault ends, and records a `fault_effect`
//! event (node `nemesis`) saying what the fault did and whether it bit.
//!
//! **Invariant:** after [`World::heal_all`] every fault is gone: no clog, no link rule, no loss,
//! every node running and unpaused, disks healthy, clocks true.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use pessimist_core::history::{EventKind, History, Recorder};
use pessimist_core::node::NodeContext;
use pessimist_core::seams::clock::{Clock, ClockControl};
use pessimist_core::seams::disk::{DiskControl, DiskTiming, FsyncTrap, SimDisk};
use pessimist_core::seams::net::{AddressBook, LinkFaults};
use pessimist_core::seams::rng::rng_for;
use serde_json::json;

use crate::fault::Fault;
use crate::fault_effect::{effect, Reading, Struck};
use crate::nemesis::{is_network_fault, network_state, NetworkState};

/// The port every server node listens on.
pub const SERVER_PORT: u16 = 7000;

/// What a node runs. Called once per incarnation.
pub type Program =
    Arc<dyn Fn(NodeContext) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The longest madsim 0.2.34 waits before restarting a node that panicked
/// (`src/sim/task/mod.rs:303`: a delay drawn from 1 to 10 s).
const PANIC_RESTART_DELAY_MAX: Duration = Duration::from_secs(10);

/// A node of the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub role: String,
}

struct ServerNode {
    handle: NodeHandle,
    disk: DiskControl,
    clock: ClockControl,
    /// Set while a crash fault holds the node down: a restart madsim schedules for a node that
    /// exited by itself then starts nothing.
    held_down: Arc<AtomicBool>,
    crashed: bool,
    paused: bool,
}

/// A cluster running inside the current madsim runtime.
pub struct World {
    seed: u64,
    history: History,
    link_faults: LinkFaults,
    book: AddressBook,
    servers: BTreeMap<String, ServerNode>,
    clients: BTreeMap<String, NodeHandle>,
    /// Every node name, servers and clients, sorted: the universe partitions split.
    all_names: Vec<String>,
    active: BTreeMap<u64, Fault>,
    applied: NetworkState,
    /// Each fault whose effect is not recorded yet: the fault, what the world saw as it
    /// struck, and the seams' counters then.
    watched: BTreeMap<u64, (Fault, Struck, Reading)>,
}

fn server_ip(index: usize) -> IpAddr {
    assert!(index < 250, "at most 250 server nodes");
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1))
}

fn client_ip(index: usize) -> IpAddr {
    assert!(index < 250, "at most 250 client nodes");
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, index as u8 + 1))
}

impl World {
    /// Builds and starts the cluster. Must run inside a madsim runtime.
    pub fn build(
        seed: u64,
        history: History,
        servers: &[NodeSpec],
        client_names: &[String],
        knobs: serde_json::Value,
        program: Program,
    ) -> World {
        let handle = Handle::current();
        let link_faults = LinkFaults::default();
        let addresses: BTreeMap<String, SocketAddr> = servers
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                (spec.name.clone(), SocketAddr::new(server_ip(index), SERVER_PORT))
            })
            .collect();
        assert_eq!(addresses.len(), servers.len(), "node names must be unique");
        let book = AddressBook::new(addresses);
        let cluster: BTreeMap<String, String> =
            servers.iter().map(|spec| (spec.name.clone(), spec.role.clone())).collect();
        let mut server_nodes = BTreeMap::new();
        for (index, spec) in servers.iter().enumerate() {
            let (_, disk_control) =
                SimDisk::new(DiskTiming::default(), rng_for(seed, &format!("disk/{}", spec.name)));
            let (clock, clock_control) = Clock::simulated();
            let incarnations = Arc::new(AtomicU64::new(0));
            let held_down = Arc::new(AtomicBool::new(false));
            let held_down_at_init = held_down.clone();
            let node_id: Arc<OnceLock<madsim::task::NodeId>> = Arc::new(OnceLock::new());
            let node_id_at_init = node_id.clone();
            let (name, role) = (spec.name.clone(), spec.role.clone());
            let (book, link_faults, history) = (book.clone(), link_faults.clone(), history.clone());
            let cluster = cluster.clone();
            let (program, knobs, disk_for_init) =
                (program.clone(), knobs.clone(), disk_control.clone());
            let node = handle
                .create_node()
                .name(&spec.name)
                .ip(server_ip(index))
                .restart_on_panic()
                .init(move || {
                    if let Some(id) = node_id_at_init.get() {
                        // A restart madsim scheduled for a node that exited by itself may come
                        // after the world restarted the node (a crash fault began and ended in
                        // between): the node then restarts once more, an extra crash the world
                        // does not see. madsim's `restart` stops the old incarnation's tasks
                        // but not its sockets, which only a kill closes: close them here.
                        NetSim::current().reset_node(*id);
                    }
                    if held_down_at_init.load(Ordering::Acquire) {
                        // madsim restarts a node that exited by a panic (a modelled process
                        // exit) after a delay, as a supervisor would; a node the nemesis holds
                        // crashed stays down until the fault ends.
                        return Box::pin(std::future::pending::<()>())
                            as Pin<Box<dyn Future<Output = ()> + Send>>;
                    }
                    let incarnation = incarnations.fetch_add(1, Ordering::Relaxed);
                    let recorder = Recorder::new(&name, history.clone());
                    if incarnation > 0 {
                        // Whatever ended the last incarnation (a kill by the nemesis, a panic),
                        // its un-fsynced writes are gone now.
                        disk_for_init.crash();
                        recorder.record("restart", json!({ "incarnation": incarnation }));
                    }
                    let context = NodeContext {
                        name: name.clone(),
                        role: role.clone(),
                        book: book.clone(),
                        cluster: cluster.clone(),
                        disk: disk_for_init.disk(),
                        clock: clock.clone(),
                        link_faults: link_faults.clone(),
                        recorder,
                        run_seed: seed,
                        incarnation,
                        knobs: knobs.clone(),
                    };
                    program(context)
                })
                .build();
            node_id.set(node.id()).expect("set once, here");
            let server = ServerNode {
                handle: node,
                disk: disk_control,
                clock: clock_control,
                held_down,
                crashed: false,
                paused: false,
            };
            server_nodes.insert(spec.name.clone(), server);
        }
        let mut clients = BTreeMap::new();
        for (index, name) in client_names.iter().enumerate() {
            let node = handle.create_node().name(name).ip(client_ip(index)).build();
            clients.insert(name.clone(), node);
        }
        let mut all_names: Vec<String> =
            server_nodes.keys().chain(clients.keys()).cloned().collect();
        all_names.sort();
        World {
            seed,
            history,
            link_faults,
            book,
            servers: server_nodes,
            clients,
            all_names,
            active: BTreeMap::new(),
            applied: NetworkState::default(),
            watched: BTreeMap::new(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn book(&self) -> &AddressBook {
        &self.book
    }

    pub fn link_faults(&self) -> &LinkFaults {
        &self.link_faults
    }

    /// The client node called `name`, to spawn workload tasks on.
    pub fn client(&self, name: &str) -> &NodeHandle {
        &self.clients[name]
    }

    /// Spawns a task on server `name` (its current incarnation): it sends from that node's
    /// address and dies with it.
    pub fn spawn_on_server<F>(&self, name: &str, task: F) -> madsim::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // madsim hands out a new node handle after a restart: fetch it each time.
        let node = Handle::current()
            .get_node(self.servers[name].handle.id())
            .expect("server nodes are never removed");
        node.spawn(task)
    }

    /// The disk control of server `name` (for checkers and tests).
    pub fn disk(&self, name: &str) -> &DiskControl {
        &self.servers[name].disk
    }

    /// The clock control of server `name`.
    pub fn clock(&self, name: &str) -> &ClockControl {
        &self.servers[name].clock
    }

    /// Server node names, sorted.
    pub fn server_names(&self) -> Vec<String> {
        self.servers.keys().cloned().collect()
    }

    /// Injects `fault` under id `fault_id`, and records it.
    pub fn inject(&mut self, fault_id: u64, fault: &Fault) {
        let detail = serde_json::to_value(fault).expect("faults serialize");
        self.history.record(EventKind::FaultStart {
            fault: fault_id,
            kind: fault.kind().into(),
            detail,
        });
        if !fault.is_instant() {
            self.active.insert(fault_id, fault.clone());
        }
        let before = self.reading(fault);
        let mut struck = Struck::default();
        let struck_nodes: &[String] = match fault {
            Fault::Crash { node } | Fault::Pause { node } => std::slice::from_ref(node),
            Fault::PowerLoss { nodes } => nodes,
            _ => &[],
        };
        for node in struck_nodes {
            let server = &self.servers[node];
            let running = !server.crashed && !server.paused;
            struck.was_running |= running;
            struck.nodes_running += usize::from(running);
            struck.pending_bytes += if server.crashed { 0 } else { server.disk.pending_bytes() };
        }
        match fault {
            fault if is_network_fault(fault) => self.apply_network(),
            Fault::Crash { node } => self.crash(node),
            Fault::PowerLoss { nodes } => {
                for node in nodes {
                    self.crash(node);
                }
            }
            Fault::DiskErrors { .. } | Fault::DiskFull { .. } => self.apply_disks(),
            Fault::CrashInFsync { node } => self.arm_fsync_crash(node),
            Fault::Pause { node } => {
                let server = self.servers.get_mut(node).expect("validated node");
                if !server.paused {
                    Handle::current().pause(server.handle.id());
                    server.paused = true;
                }
            }
            Fault::SlowDisk { .. } | Fault::TornWrites { .. } => self.apply_disks(),
            Fault::DiskStall { node } => {
                self.servers[node].disk.stall();
            }
            Fault::CorruptDisk { node, file } => {
                let hit = self.servers[node].disk.corrupt(file.as_deref());
                self.history.internal(node, "disk_corrupted", json!({ "hit": hit }));
                struck.corrupted = hit;
            }
            Fault::ClockOffset { node, offset_ms } => {
                self.servers[node].clock.set_offset_ms(*offset_ms)
            }
            Fault::ClockDrift { node, drift_ppm } => {
                self.servers[node].clock.set_drift_ppm(*drift_ppm)
            }
            Fault::ClockJump { node, delta_ms } => self.servers[node].clock.jump_ms(*delta_ms),
            other => unreachable!("fault kind {} has no injector", other.kind()),
        }
        self.watched.insert(fault_id, (fault.clone(), struck, before));
        if let Fault::CorruptDisk { .. } = fault {
            self.record_effect(fault_id); // Done at once: nothing more can come of it.
        }
    }

    /// The seams' counters that `fault`'s effect is measured on.
    fn reading(&self, fault: &Fault) -> Reading {
        let mut reading = Reading::default();
        if is_network_fault(fault) {
            reading.links = self.link_faults.tallies();
        }
        if let Some(node) = fault.clone().single_target_mut() {
            if let Some(server) = self.servers.get(node.as_str()) {
                reading.disk = Some(server.disk.stats());
                reading.clock = Some(server.clock.stats());
            }
        }
        reading
    }

    /// Records what the watched fault `fault_id` did, measured from its start to now.
    fn record_effect(&mut self, fault_id: u64) {
        let Some((fault, struck, before)) = self.watched.remove(&fault_id) else {
            return;
        };
        let after = self.reading(&fault);
        let effect = effect(&fault, &struck, &before, &after, &self.all_names);
        let mut detail = json!({ "fault": fault_id, "kind": fault.kind(), "bit": effect.bit });
        if let (Some(detail), Some(counts)) = (detail.as_object_mut(), effect.detail.as_object()) {
            detail.extend(counts.clone());
        }
        self.history.internal("nemesis", "fault_effect", detail);
    }

    /// Heals the fault with id `fault_id`, and records it. Unknown ids (instant faults) are
    /// ignored.
    pub fn heal(&mut self, fault_id: u64) {
        let Some(fault) = self.active.remove(&fault_id) else {
            return;
        };
        match &fault {
            fault if is_network_fault(fault) => self.apply_network(),
            Fault::Crash { node } => self.restart_unless_still_crashed(node),
            Fault::PowerLoss { nodes } => {
                for node in nodes {
                    self.restart_unless_still_crashed(node);
                }
            }
            Fault::DiskErrors { .. } | Fault::DiskFull { .. } => self.apply_disks(),
            Fault::CrashInFsync { node } => {
                let server = self.servers.get_mut(node).expect("validated node");
                if server.disk.set_fsync_trap(None).is_none() {
                    // The trap sprang: the node died in an fsync and is restarted now.
                    server.crashed = true;
                    self.restart_unless_still_crashed(node);
                }
            }
            Fault::Pause { node } => {
                let still_paused = self
                    .active
                    .values()
                    .any(|f| matches!(f, Fault::Pause { node: n } if n == node));
                let server = self.servers.get_mut(node).expect("validated node");
                if !still_paused && server.paused {
                    Handle::current().resume(server.handle.id());
                    server.paused = false;
                }
            }
            Fault::SlowDisk { .. } | Fault::TornWrites { .. } => self.apply_disks(),
            Fault::DiskStall { node } => {
                if !self
                    .active
                    .values()
                    .any(|f| matches!(f, Fault::DiskStall { node: n } if n == node))
                {
                    self.servers[node].disk.unstall();
                }
            }
            Fault::ClockOffset { node, .. } | Fault::ClockDrift { node, .. } => {
                // Clock faults on one node are healed together: the clock reads true time.
                self.servers[node].clock.heal();
            }
            other => unreachable!("fault kind {} is instant", other.kind()),
        }
        self.history.record(EventKind::FaultEnd { fault: fault_id, kind: fault.kind().into() });
        self.record_effect(fault_id);
    }

    /// Heals every active fault, newest first, and makes sure every node runs.
    pub fn heal_all(&mut self) {
        let ids: Vec<u64> = self.active.keys().rev().copied().collect();
        for id in ids {
            self.heal(id);
        }
        // Instant faults (clock jumps) end with the fault phase.
        let instant: Vec<u64> = self.watched.keys().copied().collect();
        for id in instant {
            self.record_effect(id);
        }
        let names: Vec<String> = self.servers.keys().cloned().collect();
        for name in names {
            self.servers[&name].clock.heal();
            if self.servers[&name].crashed {
                self.restart(&name);
            }
        }
        assert!(self.active.is_empty(), "heal_all left a fault active");
    }

    /// Arms `node`'s disk to kill the node as its next fsync begins: the kill comes from the
    /// node's own task, inside the fsync, its writes pending. The node stays down (held, as a
    /// crash holds it) until the fault ends.
    fn arm_fsync_crash(&mut self, node: &str) {
        let server = &self.servers[node];
        let (id, held_down) = (server.handle.id(), server.held_down.clone());
        let (history, name) = (self.history.clone(), node.to_string());
        let trap: FsyncTrap = Box::new(move || {
            held_down.store(true, Ordering::Release);
            history.internal(&name, "crash", json!({ "in": "fsync" }));
            Handle::current().kill(id);
        });
        server.disk.set_fsync_trap(Some(trap));
    }

    /// Restarts `node` after a crash or power loss ended, unless another one still holds it
    /// down.
    fn restart_unless_still_crashed(&mut self, node: &str) {
        let still_crashed = self.active.values().any(|fault| match fault {
            Fault::Crash { node: n } => n == node,
            Fault::PowerLoss { nodes } => nodes.iter().any(|n| n == node),
            _ => false,
        });
        if !still_crashed {
            self.restart(node);
        }
    }

    /// Kills server `node` now. Its pending writes are lost when it restarts.
    pub fn crash(&mut self, node: &str) {
        let server = self.servers.get_mut(node).expect("validated node");
        if server.crashed {
            return;
        }
        if server.paused {
            Handle::current().resume(server.handle.id());
            server.paused = false;
        }
        Handle::current().kill(server.handle.id());
        server.crashed = true;
        server.held_down.store(true, Ordering::Release);
        self.history.internal(node, "crash", json!({}));
    }

    /// Restarts a crashed server `node`.
    pub fn restart(&mut self, node: &str) {
        let server = self.servers.get_mut(node).expect("validated node");
        if !server.crashed {
            return;
        }
        // madsim needs a kill before a restart. The crash killed the node, but madsim may have
        // started it since (a restart it scheduled when the node exited by itself, which ran
        // the held-down no-op): kill whatever runs, so exactly one incarnation follows.
        server.held_down.store(false, Ordering::Release);
        Handle::current().kill(server.handle.id());
        Handle::current().restart(server.handle.id());
        server.crashed = false;
    }

    /// Ends the world: kills every node, servers and clients, so that madsim drops their
    /// tasks before the run's runtime goes away. Call it last, once the history is taken.
    ///
    /// Why: in madsim 0.2.34 a task that has not finished owns itself. Its future holds its
    /// `TaskInfo` (`src/sim/task/mod.rs:644`), which holds the task's own waker (`:650`), and
    /// `Runtime` has no `Drop` that cancels what is left (madsim-rs/madsim#242). Every task
    /// still waiting when `block_on` returns (servers, pollers, connections) is never freed,
    /// nor anything it holds: the history, the disks, image buffers, the node's
    /// `init` closure. A sweep kept every seed's world in memory. A kill wakes every task of
    /// the node (`:133`), and the executor drops the future of a task whose node is killed
    /// instead of polling it (`:272`), which breaks the cycle.
    ///
    /// A node that exited by itself shortly before the end has a restart pending in madsim's
    /// timers (1 to 10 s after its exit), and that timer's closure holds the runtime's handle:
    /// another cycle, which keeps the world alive. So the world holds every node down, kills
    /// it, lets simulated time run past every such restart (each then starts the held-down
    /// no-op), and kills again. The history was taken before: nothing here is recorded.
    pub async fn shutdown(&mut self) {
        let handle = Handle::current();
        for server in self.servers.values_mut() {
            server.held_down.store(true, Ordering::Release);
        }
        let kill_all = |world: &mut World| {
            for server in world.servers.values_mut() {
                // A crashed server was killed already: a second kill finds no task to wake. A
                // paused one's parked tasks are dropped by the kill.
                handle.kill(server.handle.id());
                server.crashed = true;
            }
            for client in world.clients.values() {
                handle.kill(client.id());
            }
        };
        kill_all(self);
        tokio::time::sleep(PANIC_RESTART_DELAY_MAX + Duration::from_millis(1)).await;
        kill_all(self);
    }

    fn apply_disks(&mut self) {
        let mut slow: BTreeMap<&str, u64> = BTreeMap::new();
        let mut torn: BTreeSet<&str> = BTreeSet::new();
        let mut errors: BTreeMap<&str, f64> = BTreeMap::new();
        let mut full: BTreeSet<&str> = BTreeSet::new();
        for fault in self.active.values() {
            match fault {
                Fault::DiskErrors { node, probability } => {
                    let entry = errors.entry(node).or_insert(0.0);
                    *entry = entry.max(*probability);
                }
                Fault::DiskFull { node } => {
                    full.insert(node);
                }
                Fault::SlowDisk { node, factor } => {
                    let entry = slow.entry(node).or_insert(1);
                    *entry = (*entry).max(*factor);
                }
                Fault::TornWrites { node } => {
                    torn.insert(node);
                }
                _ => {}
            }
        }
        for (name, server) in &self.servers {
            server.disk.set_slow_factor(slow.get(name.as_str()).copied().unwrap_or(1));
            server.disk.set_torn_writes(torn.contains(name.as_str()));
            server.disk.set_io_errors(errors.get(name.as_str()).copied().unwrap_or(0.0));
            server.disk.set_full(full.contains(name.as_str()));
        }
    }

    fn apply_network(&mut self) {
        let wanted = network_state(self.active.values(), &self.all_names);
        let net = NetSim::current();
        let id_of = |name: &str| -> madsim::task::NodeId {
            if let Some(server) = self.servers.get(name) {
                server.handle.id()
            } else {
                self.clients[name].id()
            }
        };
        for (from, to) in self.applied.blocked.difference(&wanted.blocked) {
            net.unclog_link(id_of(from), id_of(to));
        }
        for (from, to) in wanted.blocked.difference(&self.applied.blocked) {
            net.clog_link(id_of(from), id_of(to));
        }
        if (wanted.packet_loss_rate, wanted.latency_ms)
            != (self.applied.packet_loss_rate, self.applied.latency_ms)
        {
            net.update_config(|config| {
                config.packet_loss_rate = wanted.packet_loss_rate;
                config.send_latency = match wanted.latency_ms {
                    Some((low, high)) => Duration::from_millis(low)..Duration::from_millis(high),
                    None => Duration::from_millis(1)..Duration::from_millis(10),
                };
            });
        }
        self.link_faults.heal();
        if let Some(rule) = wanted.every_link {
            self.link_faults.set_every_link(rule);
        }
        for ((from, to), rule) in &wanted.link_rules {
            self.link_faults.set_link(from, to, *rule);
        }
        self.applied = wanted;
    }
}
