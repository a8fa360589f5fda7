//! A local cluster of real processes (the real build only): the service's nodes run as OS
//! processes on loopback, on real tokio, real sockets and real files, and a real HTTP client
//! drives them.
//!
//! `pessimist cluster up [SCENARIO]` lays the scenario's topology out on loopback ports and
//! starts a *supervisor*, which starts one process per node (`pessimist cluster node`) and
//! restarts any that exits, after [`RESTART_DELAY`], as a process manager would: a worker that
//! a poison pill aborts, or a node killed with `kill -9`, comes back with its durable state.
//! `down` asks the supervisor to stop every node (SIGTERM, then SIGKILL after
//! [`STOP_GRACE`]). `drive` runs the scenario's service workload against the cluster and
//! checks its history with the simulator's checkers; `kill` sends SIGKILL to nodes.
//!
//! A cluster directory (default [`DIR_DEFAULT`]) holds:
//! - `cluster.json`: each node's name, role and address, the knobs (with a fresh admin key),
//!   the seed; `scenario.json`: the scenario it was made from;
//! - `supervisor.pid`, `pids/<node>`: the running processes;
//! - `logs/<node>.log`: a node's events (one JSON object per line, stamped `unix_ms`) and
//!   errors; `logs/supervisor.log`: starts, exits and restarts;
//! - `actions.jsonl`: kills and starts with their Unix time (a drive turns them into fault
//!   windows in its history);
//! - `data/<node>/`: the node's disk, the disk seam's real files, fsynced;
//! - `drive/`: the last drive's `history.jsonl` and `summary.json`.
//!
//! Processes are told apart from unrelated ones that reuse a pid by their command line
//! (`/proc/<pid>/cmdline`), so this is Linux-only.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pessimist_core::auth::{self, AuthSettings};
use pessimist_core::billing::{self, BillingMessage};
use pessimist_core::history::{self, Event, EventKind, History, Recorder};
use pessimist_core::node::{KnobSettings, NodeContext};
use pessimist_core::seams::clock::Clock;
use pessimist_core::seams::disk::{Disk, RealDisk};
use pessimist_core::seams::net::{AddressBook, LinkFaults, Transport, TransportOptions};
use pessimist_core::seams::rng::rng_for;
use pessimist_core::store::StoreSettings;
use pessimist_core::usage::UsageSettings;
use pessimist_core::worker::WorkerSettings;
use pessimist_sim::check::{Outcome, Verdict, PHASE_DRAIN, PHASE_FAULTS};
use pessimist_sim::scenario::{Scenario, Workload};
use pessimist_sim::service::workload::Endpoints;
use pessimist_sim::usage::workload::{FinalBill, PHASE_BILLING};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::load_scenario;

pub const DIR_DEFAULT: &str = "target/cluster";
pub const SCENARIO_DEFAULT: &str = "scenarios/service-baseline.json";
pub const BASE_PORT_DEFAULT: u16 = 17400;
/// How long the supervisor waits before restarting a node that exited.
pub const RESTART_DELAY: Duration = Duration::from_millis(500);
/// How long a node has to stop after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long `up` waits for every server to listen and every Raft group to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a cluster command failed: one line, and the exit status (1: it ran and something
/// failed; 2: bad input or a state it cannot work from).
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

fn bad(message: impl Into<String>) -> Failure {
    Failure { code: 2, message: message.into() }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure { code: 1, message: message.into() }
}

fn io(what: &str, path: &Path, error: std::io::Error) -> Failure {
    failed(format!("{what} {}: {error}", path.display()))
}

/// What `cluster.json` holds: everything a node process needs to start.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub scenario: String,
    pub seed: u64,
    pub admin_key: String,
    pub knobs: Value,
    pub nodes: Vec<ClusterNode>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNode {
    pub name: String,
    pub role: String,
    pub address: SocketAddr,
}

impl ClusterFile {
    fn book(&self) -> AddressBook {
        AddressBook::new(self.nodes.iter().map(|node| (node.name.clone(), node.address)).collect())
    }

    fn roles(&self) -> BTreeMap<String, String> {
        self.nodes.iter().map(|node| (node.name.clone(), node.role.clone())).collect()
    }

    fn with_role(&self, role: &str) -> Vec<&ClusterNode> {
        self.nodes.iter().filter(|node| node.role == role).collect()
    }

    /// Whether the cluster runs the usage pipeline's billing.
    fn has_billing(&self) -> bool {
        !self.with_role(billing::ROLE).is_empty()
            && !self.with_role(billing::archive::ROLE).is_empty()
    }

    /// Where clients send requests: every API server and every auth node's admin port.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            api: self.with_role(pessimist_core::api::ROLE).iter().map(|n| n.address).collect(),
            api_names: self
                .with_role(pessimist_core::api::ROLE)
                .iter()
                .map(|n| n.name.clone())
                .collect(),
            admin: self
                .with_role(auth::ROLE)
                .iter()
                .map(|n| auth::admin_address(n.address))
                .collect(),
            admin_key: self.admin_key.clone(),
            unreachable: Default::default(),
        }
    }
}

/// The files of a cluster directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout { dir: dir.to_path_buf() }
    }
    fn cluster_file(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }
    fn scenario_file(&self) -> PathBuf {
        self.dir.join("scenario.json")
    }
    fn supervisor_pid(&self) -> PathBuf {
        self.dir.join("supervisor.pid")
    }
    fn pids(&self) -> PathBuf {
        self.dir.join("pids")
    }
    fn pid(&self, node: &str) -> PathBuf {
        self.pids().join(node)
    }
    fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log(&self, node: &str) -> PathBuf {
        self.logs().join(format!("{node}.log"))
    }
    fn data(&self, node: &str) -> PathBuf {
        self.dir.join("data").join(node)
    }
    fn actions(&self) -> PathBuf {
        self.dir.join("actions.jsonl")
    }
    fn boots(&self) -> PathBuf {
        self.dir.join("boots.json")
    }
    pub fn drive(&self) -> PathBuf {
        self.dir.join("drive")
    }

    pub fn load(&self) -> Result<ClusterFile, Failure> {
        let path = self.cluster_file();
        let text = fs::read_to_string(&path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => bad(format!(
                "no cluster in {} (start one with `pessimist cluster up`)",
                self.dir.display()
            )),
            _ => io("cannot read", &path, error),
        })?;
        serde_json::from_str(&text).map_err(|error| bad(format!("{}: {error}", path.display())))
    }

    /// How many times each node has been started (none recorded: none).
    fn read_boots(&self) -> BTreeMap<String, u64> {
        fs::read_to_string(self.boots())
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// The supervisor's pid, when it runs.
    fn running_supervisor(&self) -> Option<i32> {
        read_pid(&self.supervisor_pid()).filter(|&pid| is_ours(pid, "supervise", &self.dir))
    }

    /// The pid of `node`'s process, when it runs.
    fn running_node(&self, node: &str) -> Option<i32> {
        read_pid(&self.pid(node)).filter(|&pid| is_ours(pid, node, &self.dir))
    }

    /// Appends one line to `actions.jsonl`: what happened to which node, and when.
    fn record_action(&self, node: &str, action: &str, detail: Value) {
        let line =
            json!({ "unix_ms": unix_ms(), "node": node, "action": action, "detail": detail });
        let appended = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.actions())
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(error) = appended {
            eprintln!("pessimist: cannot record {action} of {node}: {error}");
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
}

/// Whether `pid` is a live (not zombie) process of this cluster directory whose command line
/// names `what` (a node's name, or `supervise`).
fn is_ours(pid: i32, what: &str, dir: &Path) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the parenthesised command name: `pid (comm) S ...`.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X') | None) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let dir = dir.as_os_str().as_encoded_bytes();
    args.contains(&b"cluster".as_slice()) && args.contains(&what.as_bytes()) && args.contains(&dir)
}

fn send_signal(pid: i32, signal: Signal) {
    // A process that is already gone is what we wanted.
    let _ = kill(Pid::from_raw(pid), signal);
}

/// Waits until `gone` holds or `within` passes; whether it holds.
fn wait_until(within: Duration, mut gone: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if gone() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    gone()
}

/// What `up` is asked to start.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The scenario whose topology and knobs the cluster takes (default: the one a reused
    /// directory was made from, else [`SCENARIO_DEFAULT`]).
    pub scenario: Option<PathBuf>,
    pub dir: PathBuf,
    pub base_port: u16,
    pub seed: u64,
    /// Delete the directory's data first and start from nothing.
    pub fresh: bool,
}

/// Starts a cluster and waits until it is ready; returns what to tell the user.
pub fn up(options: &UpOptions) -> Result<String, Failure> {
    let layout = Layout::new(&options.dir);
    if let Some(pid) = layout.running_supervisor() {
        return Err(bad(format!(
            "a cluster already runs in {} (supervisor pid {pid}); stop it with `pessimist cluster down --dir {}`",
            options.dir.display(),
            options.dir.display()
        )));
    }
    stop_nodes(&layout, false);
    if options.fresh && options.dir.exists() {
        fs::remove_dir_all(&options.dir).map_err(|e| io("cannot remove", &options.dir, e))?;
    }
    let cluster = match layout.cluster_file().exists() {
        true => {
            let cluster = layout.load()?;
            if let Some(path) = &options.scenario {
                let scenario = load_scenario(path).map_err(|error| bad(error.to_string()))?;
                if scenario.name != cluster.scenario {
                    return Err(bad(format!(
                        "{} holds a cluster of scenario {}, not {}: pass --fresh to replace it",
                        options.dir.display(),
                        cluster.scenario,
                        scenario.name
                    )));
                }
            }
            cluster
        }
        false => {
            let path = options.scenario.clone().unwrap_or_else(|| SCENARIO_DEFAULT.into());
            let scenario = load_scenario(&path).map_err(|error| bad(error.to_string()))?;
            let cluster = plan(&scenario, &path, options.base_port, options.seed)?;
            for dir in [layout.logs(), layout.pids(), layout.dir.join("data")] {
                fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
            }
            let text = fs::read_to_string(&path).map_err(|e| io("cannot read", &path, e))?;
            write_file(&layout.scenario_file(), &text)?;
            let json = serde_json::to_string_pretty(&cluster).expect("cluster file serializes");
            write_file(&layout.cluster_file(), &(json + "\n"))?;
            cluster
        }
    };
    for dir in [layout.logs(), layout.pids()] {
        fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
    }
    check_ports_free(&cluster)?;
    let mut supervisor = start_supervisor(&layout)?;
    if let Err(failure) = wait_ready(&layout, &cluster, &mut supervisor) {
        stop_nodes(&layout, true);
        return Err(failure);
    }
    Ok(describe(&layout, &cluster))
}

/// The cluster file for `scenario`: each node on loopback, two ports apart (an auth node's
/// admin endpoint takes the second), a fresh admin key, and workers and API servers whose real
/// CPU pays for their work (the simulation's CPU cost models are off).
fn plan(
    scenario: &Scenario,
    path: &Path,
    base_port: u16,
    seed: u64,
) -> Result<ClusterFile, Failure> {
    let file = path.display();
    for node in &scenario.topology.nodes {
        if !pessimist_core::ROLES.contains(&node.role.as_str()) {
            return Err(bad(format!(
                "{file}: node {} has role {:?}, which has no real program (roles: {})",
                node.name,
                node.role,
                pessimist_core::ROLES.join(", ")
            )));
        }
    }
    let mut nodes = Vec::new();
    for (index, node) in scenario.topology.nodes.iter().enumerate() {
        let port = u16::try_from(base_port as usize + 2 * index)
            .ok()
            .filter(|port| port.checked_add(1).is_some())
            .ok_or_else(|| {
                bad(format!("--base-port {base_port} leaves no room for {} nodes", index + 1))
            })?;
        nodes.push(ClusterNode {
            name: node.name.clone(),
            role: node.role.clone(),
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        });
    }
    let admin_key = format!("adm-{:032x}", rand::random::<u128>());
    let mut knobs = Value::Object(scenario.knobs.clone());
    knobs["auth"] = merged(&knobs["auth"], json!({ "admin_key": admin_key }));
    knobs["worker"] = merged(&knobs["worker"], json!({ "charge_cpu": false }));
    knobs["api"] = merged(&knobs["api"], json!({ "uploads_per_s_per_core": 0.0 }));
    AuthSettings::from_knobs_line(&knobs)
        .map_err(|error| bad(format!("{file}: knobs.auth: {error}")))?;
    WorkerSettings::from_knobs_line(&knobs)
        .map_err(|error| bad(format!("{file}: knobs.worker: {error}")))?;
    Ok(ClusterFile { scenario: scenario.name.clone(), seed, admin_key, knobs, nodes })
}

/// `base` (an object or null) with the fields of `over` set.
fn merged(base: &Value, over: Value) -> Value {
    let mut object = base.as_object().cloned().unwrap_or_default();
    if let Value::Object(fields) = over {
        object.extend(fields);
    }
    Value::Object(object)
}

fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    fs::write(path, text).map_err(|error| io("cannot write", path, error))
}

fn check_ports_free(cluster: &ClusterFile) -> Result<(), Failure> {
    for node in &cluster.nodes {
        let mut ports = vec![node.address];
        if node.role == auth::ROLE {
            ports.push(auth::admin_address(node.address));
        }
        for address in ports {
            if let Err(error) = TcpListener::bind(address) {
                return Err(bad(format!(
                    "{address} (for {}) cannot be bound: {error}; start the cluster elsewhere with --fresh --base-port",
                    node.name
                )));
            }
        }
    }
    Ok(())
}

fn start_supervisor(layout: &Layout) -> Result<Child, Failure> {
    let mut command = Command::new(this_program()?);
    command.arg("cluster").arg("supervise").arg("--dir").arg(&layout.dir);
    // Its own process group: a Ctrl-C in the terminal that ran `up` does not reach it.
    command.process_group(0);
    let child = spawn_logged(command, &layout.log("supervisor"), "the supervisor")?;
    write_file(&layout.supervisor_pid(), &format!("{}\n", child.id()))?;
    Ok(child)
}

fn this_program() -> Result<PathBuf, Failure> {
    std::env::current_exe().map_err(|error| failed(format!("cannot find this program: {error}")))
}

/// Starts `command` with no input and its output and errors appended to `log`.
fn spawn_logged(mut command: Command, log: &Path, what: &str) -> Result<Child, Failure> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| io("cannot open", log, e))?;
    let errors = file.try_clone().map_err(|e| io("cannot open", log, e))?;
    command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(errors)
        .spawn()
        .map_err(|error| failed(format!("cannot start {what}: {error}")))
}

/// Waits until every server listens and every Raft group (queue, auth) has a leader.
fn wait_ready(
    layout: &Layout,
    cluster: &ClusterFile,
    supervisor: &mut Child,
) -> Result<(), Failure> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let listening: Vec<&ClusterNode> =
        cluster.nodes.iter().filter(|node| node.role != pessimist_core::worker::ROLE).collect();
    let groups: Vec<&str> = [pessimist_core::queue::ROLE, auth::ROLE]
        .into_iter()
        .filter(|role| !cluster.with_role(role).is_empty())
        .collect();
    loop {
        if let Ok(Some(status)) = supervisor.try_wait() {
            return Err(failed(format!(
                "the supervisor exited ({status}); see {}",
                layout.log("supervisor").display()
            )));
        }
        let deaf: Vec<&str> = listening
            .iter()
            .filter(|node| {
                TcpStream::connect_timeout(&node.address, Duration::from_millis(200)).is_err()
            })
            .map(|node| node.name.as_str())
            .collect();
        let leaderless: Vec<&str> =
            groups.iter().copied().filter(|group| !has_leader(layout, cluster, group)).collect();
        if deaf.is_empty() && leaderless.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "the cluster was not ready within {} s: not listening: [{}]; no leader: [{}]; see the logs in {}",
                READY_TIMEOUT.as_secs(),
                deaf.join(", "),
                leaderless.join(", "),
                layout.logs().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether some node of `group` logged that it became the group's leader.
fn has_leader(layout: &Layout, cluster: &ClusterFile, group: &str) -> bool {
    cluster.with_role(group).iter().any(|node| {
        let Ok(text) = fs::read_to_string(layout.log(&node.name)) else { return false };
        text.lines().filter(|line| line.contains("\"raft_role\"")).any(|line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|event| event["detail"]["role"] == "leader")
        })
    })
}

fn describe(layout: &Layout, cluster: &ClusterFile) -> String {
    let endpoints = cluster.endpoints();
    let list = |role: &str, address: &dyn Fn(SocketAddr) -> SocketAddr| {
        cluster
            .with_role(role)
            .iter()
            .map(|node| format!("http://{} ({})", address(node.address), node.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let dir = layout.dir.display();
    let mut text = format!(
        "cluster up: {} nodes of scenario {} in {dir}\n",
        cluster.nodes.len(),
        cluster.scenario
    );
    text += &format!("  API:       {}\n", list(pessimist_core::api::ROLE, &|a| a));
    text += &format!("  admin:     {}\n", list(auth::ROLE, &auth::admin_address));
    text += &format!("  admin key: {}\n", cluster.admin_key);
    text += &format!("  logs:      {}\n", layout.logs().display());
    if let (Some(api), Some(admin)) = (endpoints.api.first(), endpoints.admin.first()) {
        text += &format!(
            "try (README.md, \"A real cluster\"):\n  curl -s -X POST -H 'Authorization: Bearer {}' -d '{{\"name\":\"me\"}}' http://{admin}/v1/admin/accounts\n  then a key, and an upload to http://{api}/v1/images\n",
            cluster.admin_key
        );
    }
    text += &format!("stop it with: pessimist cluster down --dir {dir}");
    text
}

/// The supervisor: starts every node, restarts one that exits, stops them all on SIGTERM or
/// SIGINT. Runs until told to stop.
pub fn supervise(dir: &Path) -> Result<(), Failure> {
    let layout = Layout::new(dir);
    let cluster = layout.load()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| failed(format!("cannot start a runtime: {error}")))?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|error| failed(format!("cannot catch SIGTERM: {error}")))?;
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|error| failed(format!("cannot catch SIGINT: {error}")))?;
        write_file(&layout.supervisor_pid(), &format!("{}\n", std::process::id()))?;
        let mut boots = layout.read_boots();
        let mut nodes: BTreeMap<String, Supervised> = BTreeMap::new();
        for node in &cluster.nodes {
            nodes.insert(node.name.clone(), Supervised::Waiting(Instant::now()));
        }
        log(&format!("supervising {} nodes", nodes.len()));
        loop {
            for (name, state) in nodes.iter_mut() {
                match state {
                    Supervised::Running(child) => {
                        if let Ok(Some(status)) = child.try_wait() {
                            log(&format!(
                                "{name} (pid {}) exited: {status}; restarting in {} ms",
                                child.id(),
                                RESTART_DELAY.as_millis()
                            ));
                            layout.record_action(
                                name,
                                "exited",
                                json!({ "status": status.to_string() }),
                            );
                            let _ = fs::remove_file(layout.pid(name));
                            *state = Supervised::Waiting(Instant::now() + RESTART_DELAY);
                        }
                    }
                    Supervised::Waiting(at) if Instant::now() >= *at => {
                        let incarnation = boots.get(name).copied().unwrap_or(0);
                        match start_node(&layout, name, incarnation) {
                            Ok(child) => {
                                log(&format!(
                                    "{name} started (pid {}, boot {incarnation})",
                                    child.id()
                                ));
                                layout.record_action(
                                    name,
                                    "started",
                                    json!({ "pid": child.id(), "incarnation": incarnation }),
                                );
                                boots.insert(name.clone(), incarnation + 1);
                                let text = serde_json::to_string(&boots).expect("boots serialize");
                                if let Err(failure) = write_file(&layout.boots(), &text) {
                                    log(&failure.message);
                                }
                                *state = Supervised::Running(child);
                            }
                            Err(failure) => {
                                log(&format!("{name}: {}; retrying in 1 s", failure.message));
                                *state =
                                    Supervised::Waiting(Instant::now() + Duration::from_secs(1));
                            }
                        }
                    }
                    Supervised::Waiting(_) => {}
                }
            }
            tokio::select! {
                biased;
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        log("stopping every node");
        let mut children: Vec<(String, Child)> = nodes
            .into_iter()
            .filter_map(|(name, state)| match state {
                Supervised::Running(child) => Some((name, child)),
                Supervised::Waiting(_) => None,
            })
            .collect();
        for (_, child) in &children {
            send_signal(child.id() as i32, Signal::SIGTERM);
        }
        let stopped = wait_until(STOP_GRACE, || {
            children.iter_mut().all(|(_, child)| matches!(child.try_wait(), Ok(Some(_))))
        });
        if !stopped {
            for (name, child) in &mut children {
                if matches!(child.try_wait(), Ok(None)) {
                    log(&format!("{name} ignored SIGTERM for {} s: SIGKILL", STOP_GRACE.as_secs()));
                    let _ = child.kill();
                }
            }
        }
        for (name, child) in &mut children {
            let _ = child.wait();
            let _ = fs::remove_file(layout.pid(name));
        }
        let _ = fs::remove_file(layout.supervisor_pid());
        log("stopped");
        Ok(())
    })
}

enum Supervised {
    Running(Child),
    /// Down; start it at this instant.
    Waiting(Instant),
}

fn log(message: &str) {
    println!("{} supervisor: {message}", unix_ms());
}

fn start_node(layout: &Layout, name: &str, incarnation: u64) -> Result<Child, Failure> {
    let mut command = Command::new(this_program()?);
    command.args(["cluster", "node", "--dir"]).arg(&layout.dir);
    command.args(["--name", name, "--incarnation", &incarnation.to_string()]);
    let child = spawn_logged(command, &layout.log(name), name)?;
    write_file(&layout.pid(name), &format!("{}\n", child.id()))?;
    Ok(child)
}

/// One node's process: the service role's program on real seams, until SIGTERM.
pub fn node(dir: &Path, name: &str, incarnation: u64) -> Result<(), Failure> {
    let layout = Layout::new(dir);
    let cluster = layout.load()?;
    let spec =
        cluster.nodes.iter().find(|node| node.name == name).ok_or_else(|| {
            bad(format!("{} has no node {name}", layout.cluster_file().display()))
        })?;
    let disk = RealDisk::open(layout.data(name))
        .map_err(|error| failed(format!("{name}'s disk: {error}")))?;
    let context = NodeContext {
        name: name.to_string(),
        role: spec.role.clone(),
        book: cluster.book(),
        cluster: cluster.roles(),
        disk: Disk::Real(disk),
        clock: Clock::system(),
        link_faults: LinkFaults::default(),
        recorder: Recorder::stdout(name),
        run_seed: cluster.seed,
        incarnation,
        knobs: cluster.knobs.clone(),
    };
    let recorder = context.recorder.clone();
    let program = pessimist_core::serve_role(context)
        .ok_or_else(|| bad(format!("role {:?} has no real program", spec.role)))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| failed(format!("cannot start a runtime: {error}")))?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|error| failed(format!("cannot catch SIGTERM: {error}")))?;
        recorder.record(
            "process_started",
            json!({ "pid": std::process::id(), "incarnation": incarnation }),
        );
        tokio::select! {
            biased;
            _ = terminate.recv() => {
                // Everything acknowledged is already fsynced: stopping needs no flush.
                recorder.record("process_stopped", json!({ "signal": "SIGTERM" }));
                Ok(())
            }
            _ = program => Err(failed(format!("{name}'s program ended"))),
        }
    })
}

/// Sends SIGKILL to each named node; the supervisor restarts them.
pub fn kill_nodes(dir: &Path, names: &[String]) -> Result<String, Failure> {
    let layout = Layout::new(dir);
    let cluster = layout.load()?;
    let mut text = Vec::new();
    for name in names {
        if !cluster.nodes.iter().any(|node| &node.name == name) {
            return Err(bad(format!("the cluster in {} has no node {name}", dir.display())));
        }
        let Some(pid) = layout.running_node(name) else {
            text.push(format!("{name} is not running"));
            continue;
        };
        send_signal(pid, Signal::SIGKILL);
        layout.record_action(name, "killed", json!({ "pid": pid, "signal": "SIGKILL" }));
        text.push(format!(
            "killed {name} (pid {pid}) with SIGKILL; the supervisor restarts it in {} ms",
            RESTART_DELAY.as_millis()
        ));
    }
    Ok(text.join("\n"))
}

/// One line per node: name, role, address, pid or `down`, boots so far.
pub fn status(dir: &Path) -> Result<String, Failure> {
    let layout = Layout::new(dir);
    let cluster = layout.load()?;
    let boots = layout.read_boots();
    let supervisor = match layout.running_supervisor() {
        Some(pid) => format!("supervisor: pid {pid}"),
        None => "supervisor: not running".to_string(),
    };
    let mut lines =
        vec![format!("cluster of {} in {}; {supervisor}", cluster.scenario, dir.display())];
    lines.push(format!("{:<12} {:<8} {:<21} {:<10} {}", "node", "role", "address", "pid", "boots"));
    for node in &cluster.nodes {
        let pid = layout.running_node(&node.name).map_or("down".to_string(), |pid| pid.to_string());
        lines.push(format!(
            "{:<12} {:<8} {:<21} {:<10} {}",
            node.name,
            node.role,
            node.address,
            pid,
            boots.get(&node.name).copied().unwrap_or(0)
        ));
    }
    Ok(lines.join("\n"))
}

/// Stops the cluster: SIGTERM to the supervisor (which stops the nodes), then any node left
/// (a supervisor killed earlier leaves its nodes running). Its data stays.
pub fn down(dir: &Path) -> Result<String, Failure> {
    let layout = Layout::new(dir);
    layout.load()?;
    let supervisor = layout.running_supervisor();
    if let Some(pid) = supervisor {
        send_signal(pid, Signal::SIGTERM);
        let grace = STOP_GRACE + Duration::from_secs(2);
        if !wait_until(grace, || !is_ours(pid, "supervise", dir)) {
            send_signal(pid, Signal::SIGKILL);
        }
    }
    let stray = stop_nodes(&layout, true);
    let _ = fs::remove_file(layout.supervisor_pid());
    Ok(match (supervisor, stray) {
        (None, 0) => format!("no cluster was running in {}", dir.display()),
        _ => format!(
            "cluster in {} stopped; its data stays in {} (`cluster up --dir {}` restarts it, with --fresh it starts over)",
            dir.display(),
            layout.dir.join("data").display(),
            dir.display()
        ),
    })
}

/// Stops node processes still running (SIGTERM, then SIGKILL) when `stop`, and forgets the
/// pid files of those gone; how many were running.
fn stop_nodes(layout: &Layout, stop: bool) -> usize {
    let Ok(entries) = fs::read_dir(layout.pids()) else { return 0 };
    let mut running = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        match layout.running_node(&name) {
            Some(pid) if stop => running.push((name, pid)),
            Some(_) => {}
            None => {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    for (_, pid) in &running {
        send_signal(*pid, Signal::SIGTERM);
    }
    for (name, pid) in &running {
        if !wait_until(STOP_GRACE, || !is_ours(*pid, name, &layout.dir)) {
            send_signal(*pid, Signal::SIGKILL);
        }
        let _ = fs::remove_file(layout.pid(name));
    }
    running.len()
}

/// What `drive` is asked to do.
#[derive(Clone, Debug)]
pub struct DriveOptions {
    pub dir: PathBuf,
    /// How long uploads go on.
    pub seconds: u64,
    /// How long, after the uploads, every accepted job has to finish.
    pub drain_seconds: u64,
    /// Uploaders, when not the scenario's.
    pub uploaders: Option<u64>,
    /// Uploads per second per uploader, when not the scenario's.
    pub uploads_per_s: Option<f64>,
}

/// A drive's outcome: its verdicts and its throughput.
#[derive(Clone, Debug, Serialize)]
pub struct DriveSummary {
    pub scenario: String,
    pub seed: u64,
    pub seconds: u64,
    pub outcome: Outcome,
    /// Uploads answered 202 per second of the upload phase.
    pub accepted_per_s: f64,
    pub checks: BTreeMap<String, Verdict>,
}

/// Runs the cluster scenario's service workload for `seconds` against the running cluster,
/// drains, and checks the history with the simulator's service checkers. Kills and restarts
/// recorded in `actions.jsonl` meanwhile become fault windows in the history.
pub fn drive(options: &DriveOptions) -> Result<DriveSummary, Failure> {
    let layout = Layout::new(&options.dir);
    let cluster = layout.load()?;
    if layout.running_supervisor().is_none() {
        return Err(bad(format!(
            "no cluster runs in {}: `pessimist cluster up` first",
            options.dir.display()
        )));
    }
    let scenario =
        load_scenario(&layout.scenario_file()).map_err(|error| bad(error.to_string()))?;
    let Workload::Service(mut workload) = scenario.workload.clone() else {
        return Err(bad(format!("scenario {} has no service workload to drive", scenario.name)));
    };
    if let Some(uploaders) = options.uploaders {
        workload.uploaders = uploaders;
    }
    if let Some(rate) = options.uploads_per_s {
        workload.uploads_per_s = rate;
    }
    workload.validate().map_err(|(field, message)| bad(format!("workload.{field}: {message}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| failed(format!("cannot start a runtime: {error}")))?;
    let seed = cluster.seed;
    let endpoints = cluster.endpoints();
    let (events, started_unix_ms) = runtime.block_on(async {
        let history = History::new();
        let started_unix_ms = unix_ms();
        history.record(EventKind::Phase {
            name: "run".into(),
            detail: json!({ "scenario": scenario.name, "seed": seed, "mode": "real",
                            "cluster": options.dir.display().to_string() }),
        });
        history.record(EventKind::Phase {
            name: PHASE_FAULTS.into(),
            detail: json!({ "until_ms": options.seconds * 1000 }),
        });
        let until_us = options.seconds * 1_000_000;
        let drain_until_us = until_us + options.drain_seconds * 1_000_000;
        let processes = pessimist_sim::service::workload::client_processes(
            &workload,
            &endpoints,
            &history,
            seed,
            until_us,
            drain_until_us,
        );
        let tasks: Vec<_> =
            processes.into_iter().map(|client| tokio::spawn(client.run)).collect();
        tokio::time::sleep(Duration::from_micros(until_us)).await;
        history.record(EventKind::Phase {
            name: PHASE_DRAIN.into(),
            detail: json!({ "bound_ms": options.drain_seconds * 1000 }),
        });
        // The pollers stop at the drain's bound; a little more for requests in flight.
        let grace = Duration::from_micros(drain_until_us - until_us) + Duration::from_secs(30);
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            history.internal("driver", "drive_cut_short", json!({ "after_s": grace.as_secs() }));
        }
        if let Some((bill, settle_ms)) = final_bill(&cluster, workload.uploaders, seed) {
            history.record(EventKind::Phase {
                name: PHASE_BILLING.into(),
                detail: json!({ "bound_ms": BILL_BOUND.as_millis() as u64, "settle_ms": settle_ms }),
            });
            pessimist_sim::usage::workload::final_bill(bill, history.clone()).await;
        }
        (history.events(), started_unix_ms)
    });
    let events = merge_timed(events, actions_as_faults(&layout, started_unix_ms));
    let events = merge_timed(events, usage_events(&layout, &cluster, started_unix_ms));
    let knobs = cluster.knobs.clone();
    let mut checks = BTreeMap::new();
    checks
        .insert("jobs_complete".to_string(), pessimist_sim::service::check::jobs_complete(&events));
    checks.insert(
        "thumbnails".to_string(),
        pessimist_sim::service::check::thumbnails(&events, &knobs, workload.thumbnail_side),
    );
    checks
        .insert("auth_keys".to_string(), pessimist_sim::service::check::auth_keys(&events, &knobs));
    checks.insert(
        "availability".to_string(),
        pessimist_sim::service::check::service_availability(&events, 1000, None),
    );
    if let (true, Ok(usage)) = (cluster.has_billing(), UsageSettings::from_knobs(&knobs)) {
        checks.insert(
            "billing".to_string(),
            pessimist_sim::usage::check::billing(
                &events,
                &usage,
                &pessimist_core::billing::BillingSettings::from_knobs(&knobs).unwrap_or_default(),
                // History time 0 is the drive's start on this machine's clock, which every
                // node reads; a second of slack covers reading the two a moment apart.
                pessimist_sim::usage::check::WallClock {
                    epoch_unix_ms: started_unix_ms,
                    slack_ms: 1000,
                },
            ),
        );
    }
    let accepted = pessimist_sim::check::operations(&events)
        .iter()
        .filter(|op| op.f == "upload" && op.result["status"] == 202)
        .count();
    let summary = DriveSummary {
        scenario: scenario.name.clone(),
        seed,
        seconds: options.seconds,
        outcome: Outcome::of_checks(checks.values()),
        accepted_per_s: (accepted as f64 / options.seconds.max(1) as f64 * 100.0).round() / 100.0,
        checks,
    };
    let out = layout.drive();
    fs::create_dir_all(&out).map_err(|e| io("cannot create", &out, e))?;
    write_file(&out.join("history.jsonl"), &history::to_json_lines(&events))?;
    let json = serde_json::to_string_pretty(&summary).expect("summary serializes");
    write_file(&out.join("summary.json"), &(json + "\n"))?;
    Ok(summary)
}

/// How long the final bill may take, its settling included.
const BILL_BOUND: Duration = Duration::from_secs(60);

/// The final bill of a cluster with a usage pipeline (a billing and an archive node), asked
/// over real TCP, and how long it first waits for the API servers' last flush.
fn final_bill(cluster: &ClusterFile, uploaders: u64, seed: u64) -> Option<(FinalBill, u64)> {
    let billing = cluster.with_role(billing::ROLE).first()?.name.clone();
    let archive = cluster.with_role(billing::archive::ROLE).first()?.name.clone();
    let usage = UsageSettings::from_knobs(&cluster.knobs).ok()?;
    let store = StoreSettings::from_knobs(&cluster.knobs).ok()?;
    let settle_ms = pessimist_sim::usage::workload::settle_ms(&usage, &store);
    // The process after the admin, the uploaders and the pollers, as in a simulated run.
    let process = 2 * uploaders + 1;
    let (transport, _) = Transport::<BillingMessage>::unbound(
        "driver",
        cluster.book(),
        TransportOptions::default(),
        LinkFaults::default(),
        rng_for(seed, &format!("client/{process}/transport")),
    );
    let bill = FinalBill {
        process,
        transport,
        billing,
        archive,
        settle: Duration::from_millis(settle_ms),
        pause: Duration::from_millis(usage.flush_interval_ms),
        bound: BILL_BOUND,
    };
    Some((bill, settle_ms))
}

/// The API servers' usage events (`usage_*`), read from their logs, at their times relative
/// to the drive's start: the billing check pairs them with the uploads and the ledger. Every
/// line of a log counts, those of earlier drives too, as the archive bills those counts as
/// well; lines from before this drive are placed at its start.
fn usage_events(
    layout: &Layout,
    cluster: &ClusterFile,
    started_unix_ms: u64,
) -> Vec<(u64, EventKind)> {
    let mut found = Vec::new();
    for node in cluster.with_role(pessimist_core::api::ROLE) {
        let Ok(text) = fs::read_to_string(layout.log(&node.name)) else { continue };
        for line in text.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()) {
            let (Some(what), Some(unix_ms)) = (line["what"].as_str(), line["unix_ms"].as_u64())
            else {
                continue;
            };
            if what.starts_with("usage_") {
                let at_us = unix_ms.saturating_sub(started_unix_ms) * 1000;
                let kind = EventKind::Internal {
                    node: node.name.clone(),
                    what: what.to_string(),
                    detail: line["detail"].clone(),
                };
                found.push((at_us, kind));
            }
        }
    }
    found.sort_by_key(|(at_us, _)| *at_us);
    found
}

/// Each kill recorded in `actions.jsonl` during the drive, until the node's next start, as a
/// fault window.
fn actions_as_faults(layout: &Layout, started_unix_ms: u64) -> Vec<(u64, EventKind)> {
    let Ok(text) = fs::read_to_string(layout.actions()) else { return Vec::new() };
    let at_us = |unix_ms: u64| unix_ms.saturating_sub(started_unix_ms) * 1000;
    let mut faults: Vec<(u64, EventKind)> = Vec::new();
    let mut open: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_fault = 1u64;
    for action in text.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()) {
        let (Some(node), Some(what), Some(unix_ms)) =
            (action["node"].as_str(), action["action"].as_str(), action["unix_ms"].as_u64())
        else {
            continue;
        };
        if unix_ms < started_unix_ms {
            continue;
        }
        match what {
            "killed" => {
                let fault = next_fault;
                next_fault += 1;
                open.insert(node.to_string(), fault);
                faults.push((
                    at_us(unix_ms),
                    EventKind::FaultStart {
                        fault,
                        kind: "kill".into(),
                        detail: json!({ "node": node, "signal": "SIGKILL" }),
                    },
                ));
            }
            "started" => {
                if let Some(fault) = open.remove(node) {
                    faults
                        .push((at_us(unix_ms), EventKind::FaultEnd { fault, kind: "kill".into() }));
                }
            }
            _ => {}
        }
    }
    faults
}

/// `events` with `extra` (time-ordered) merged in by time, each after the events of its
/// time, renumbered; extra events after the history's end are left out.
fn merge_timed(events: Vec<Event>, extra: Vec<(u64, EventKind)>) -> Vec<Event> {
    let end_us = events.last().map_or(0, |event| event.time_us);
    let mut merged: Vec<(u64, EventKind)> =
        events.into_iter().map(|event| (event.time_us, event.kind)).collect();
    for (time_us, kind) in extra.into_iter().filter(|(time_us, _)| *time_us <= end_us) {
        let at = merged.partition_point(|(time, _)| *time <= time_us);
        merged.insert(at, (time_us, kind));
    }
    merged
        .into_iter()
        .enumerate()
        .map(|(index, (time_us, kind))| Event { index: index as u64, time_us, kind })
        .collect()
}

/// What `bench` is asked to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub scenario: PathBuf,
    pub dir: PathBuf,
    pub base_port: u16,
    /// The simulation build of `pessimist`, for the simulated figure.
    pub sim_binary: PathBuf,
}

/// Uploads accepted per second, and their latency, for one way of running the scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub accepted: u64,
    pub seconds: f64,
    pub accepted_per_s: f64,
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
}

impl Throughput {
    fn from_checks(checks: &Value, seconds: f64) -> Throughput {
        let accepted = checks["jobs_complete"]["figures"]["accepted"].as_u64().unwrap_or(0);
        let latency = &checks["availability"]["figures"];
        Throughput {
            accepted,
            seconds,
            accepted_per_s: (accepted as f64 / seconds.max(0.001) * 10.0).round() / 10.0,
            latency_p50_ms: latency["accepted_latency_ms_p50"].as_u64().unwrap_or(0),
            latency_p99_ms: latency["accepted_latency_ms_p99"].as_u64().unwrap_or(0),
        }
    }

    fn line(&self) -> String {
        format!(
            "{:>8.1} accepted/s ({} in {} s), latency p50 {} ms, p99 {} ms",
            self.accepted_per_s,
            self.accepted,
            self.seconds,
            self.latency_p50_ms,
            self.latency_p99_ms
        )
    }
}

/// Requests per second through a real cluster on loopback, beside the simulated figure for
/// the same scenario (topology and workload): starts a fresh cluster, drives it for the
/// scenario's fault and heal phases, stops it, then runs seed 1 of the scenario in the
/// simulation build. Returns the report.
pub fn bench(options: &BenchOptions) -> Result<String, Failure> {
    let scenario = load_scenario(&options.scenario).map_err(|error| bad(error.to_string()))?;
    let Workload::Service(workload) = &scenario.workload else {
        return Err(bad(format!("scenario {} has no service workload to drive", scenario.name)));
    };
    let seconds = (scenario.phases.faults_ms + scenario.phases.heal_ms).div_ceil(1000).max(1);
    let up_options = UpOptions {
        scenario: Some(options.scenario.clone()),
        dir: options.dir.clone(),
        base_port: options.base_port,
        seed: 1,
        fresh: true,
    };
    up(&up_options)?;
    let drive_options = DriveOptions {
        dir: options.dir.clone(),
        seconds,
        drain_seconds: scenario.phases.liveness_bound_ms.div_ceil(1000),
        uploaders: None,
        uploads_per_s: None,
    };
    let driven = drive(&drive_options);
    down(&options.dir)?;
    let driven = driven?;
    let checks = serde_json::to_value(&driven.checks).expect("verdicts serialize");
    let real = Throughput::from_checks(&checks, seconds as f64);
    let simulated = simulated_throughput(options, seconds as f64);
    let mut text = format!(
        "{}: {} nodes, {} uploaders offering {} uploads/s in all, images {}-{} px\n",
        scenario.name,
        scenario.topology.nodes.len(),
        workload.uploaders,
        workload.uploaders as f64 * workload.uploads_per_s,
        workload.image_side_min,
        workload.image_side_max
    );
    text += &format!("  real cluster on loopback: {}\n", real.line());
    if !driven.outcome.passed() {
        text += "    (the real run's checks failed: see the drive's summary)\n";
    }
    text += &match &simulated {
        Ok(simulated) => {
            format!("  simulation, seed 1:       {} (simulated time)", simulated.line())
        }
        Err(why) => format!("  simulation: not measured: {why}"),
    };
    let report = json!({
        "scenario": scenario.name,
        "real": real,
        "simulated": simulated.as_ref().ok(),
    });
    let out = options.dir.join("bench.json");
    write_file(&out, &(serde_json::to_string_pretty(&report).expect("serializes") + "\n"))?;
    Ok(text)
}

/// Seed 1 of the scenario in the simulation build: accepted uploads per simulated second.
fn simulated_throughput(options: &BenchOptions, seconds: f64) -> Result<Throughput, String> {
    if !options.sim_binary.exists() {
        return Err(format!(
            "{} does not exist (build the simulation with `cargo build --release`)",
            options.sim_binary.display()
        ));
    }
    let out = options.dir.join("sim");
    let output = Command::new(&options.sim_binary)
        .arg("run")
        .arg(&options.scenario)
        .args(["--seed", "1", "--out"])
        .arg(&out)
        .output()
        .map_err(|error| format!("cannot run {}: {error}", options.sim_binary.display()))?;
    let path = out.join("summary.json");
    let text = fs::read_to_string(&path).map_err(|error| {
        format!("{}: {error} ({})", path.display(), String::from_utf8_lossy(&output.stderr).trim())
    })?;
    let summary: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let seed = summary["seeds"]
        .as_array()
        .and_then(|seeds| seeds.first())
        .ok_or_else(|| format!("{} has no seed", path.display()))?;
    Ok(Throughput::from_checks(&seed["checks"], seconds))
}
