//! The real cluster (real build only: `RUSTFLAGS= cargo test --target-dir target/real -p
//! pessimist-scenarios --test cluster`): processes on loopback, a real workload over HTTP,
//! `kill -9` of nodes mid-run, and the simulator's checkers on what the clients saw (with the
//! usage pipeline, on the final bill too). Every process is stopped at the end, even when the
//! test fails. The clusters run one at a time.
#![cfg(not(madsim))]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PESSIMIST: &str = env!("CARGO_BIN_EXE_pessimist");

/// One cluster at a time: each takes a dozen processes on a small machine.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

/// The clusters' ports lie below Linux's ephemeral range (32768 and up by default), where
/// no outgoing connection of this or any other process can hold one of them.
const PORTS_LOW: u32 = 20_000;
const PORTS_HIGH: u32 = 32_000;
/// Ports one cluster takes: two per node and the auth nodes' admin ports, rounded up.
const PORTS_PER_CLUSTER: u32 = 40;

/// Starts `scenario` as a fresh cluster in `dir`. The first base port is drawn from the
/// process id, so two test runs on one machine start apart; a range someone holds is
/// skipped for the next one, a few times.
fn cluster_up(scenario: &str, dir: &Path) -> Output {
    let ranges = (PORTS_HIGH - PORTS_LOW) / PORTS_PER_CLUSTER;
    let first = std::process::id() % ranges;
    let mut up = None;
    for attempt in 0..5 {
        let base = PORTS_LOW + (first + attempt * 37) % ranges * PORTS_PER_CLUSTER;
        let output = pessimist(
            &["cluster", "up", scenario, "--fresh", "--base-port", &base.to_string()],
            dir,
        );
        let taken = String::from_utf8_lossy(&output.stderr).contains("cannot be bound");
        up = Some(output);
        if !taken {
            break;
        }
    }
    let up = up.expect("at least one attempt");
    assert!(up.status.success(), "cluster up failed");
    up
}

/// Starts `cluster drive` for `seconds` in the background.
fn start_drive(dir: &Path, seconds: &str) -> Child {
    Command::new(PESSIMIST)
        .args(["cluster", "drive", "--seconds", seconds, "--drain-seconds", "40", "--dir"])
        .arg(dir)
        .current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/..")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drive starts")
}

/// Waits for the drive (at most 120 s) and reads its summary and history.
fn finish_drive(drive: Child, dir: &Path) -> (Output, serde_json::Value, String) {
    let output = wait_bounded(drive, Duration::from_secs(120));
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("drive/summary.json"))
            .expect("the drive wrote a summary"),
    )
    .expect("summary is JSON");
    let history = std::fs::read_to_string(dir.join("drive/history.jsonl")).expect("history");
    (output, summary, history)
}

/// Waits until the supervisor restarted every node of `before` (node, pid) with a new pid.
fn wait_restarted(dir: &Path, before: &[(&str, Option<String>)]) -> bool {
    (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        before.iter().all(|(node, pid)| {
            let now = pid_of(dir, node);
            now.is_some() && now != *pid
        })
    })
}

/// Stops the cluster and checks that none of its processes is left.
fn down_and_gone(dir: &Path) {
    let down = pessimist(&["cluster", "down"], dir);
    assert!(down.status.success());
    assert!(String::from_utf8_lossy(&down.stdout).contains("stopped"));
    let ps = Command::new("ps").args(["-eo", "args"]).output().expect("ps runs");
    let dir_text = dir.display().to_string();
    let left: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|line| line.contains("cluster") && line.contains(&dir_text))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
}

/// Stops the cluster when dropped, so a failing assertion leaves no process behind.
struct Cluster {
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(PESSIMIST).args(["cluster", "down", "--dir"]).arg(&self.dir).output();
    }
}

fn pessimist(args: &[&str], dir: &Path) -> Output {
    let output = Command::new(PESSIMIST)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/..")
        .output()
        .expect("pessimist runs");
    eprintln!(
        "$ pessimist {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Waits for `child` at most `within`; kills it past that.
fn wait_bounded(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the drive ran past {} s", within.as_secs());
}

fn pid_of(dir: &Path, node: &str) -> Option<String> {
    std::fs::read_to_string(dir.join("pids").join(node)).ok().map(|s| s.trim().to_string())
}

#[test]
fn a_real_cluster_loses_no_accepted_job_when_a_queue_node_and_a_worker_are_killed() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cluster-kill-9");
    let cluster = Cluster { dir: dir.clone() };
    let up = cluster_up("scenarios/service-baseline.json", &cluster.dir);
    assert!(String::from_utf8_lossy(&up.stdout).contains("admin key: adm-"));

    let drive = start_drive(&dir, "12");
    std::thread::sleep(Duration::from_secs(4));
    let before = [("queue-1", pid_of(&dir, "queue-1")), ("worker-1", pid_of(&dir, "worker-1"))];
    let kill = pessimist(&["cluster", "kill", "queue-1", "worker-1"], &dir);
    assert!(kill.status.success());
    assert_eq!(String::from_utf8_lossy(&kill.stdout).matches("with SIGKILL").count(), 2);
    assert!(wait_restarted(&dir, &before), "the supervisor did not restart the killed nodes");

    let (output, summary, history) = finish_drive(drive, &dir);
    for check in ["jobs_complete", "thumbnails", "auth_keys"] {
        assert_eq!(
            summary["checks"][check]["status"], "passed",
            "{check}: {}",
            summary["checks"][check]
        );
    }
    let complete = &summary["checks"]["jobs_complete"]["figures"];
    assert!(complete["accepted"].as_u64().unwrap_or(0) > 20, "too few accepted jobs: {complete}");
    assert!(summary["accepted_per_s"].as_f64().unwrap_or(0.0) > 1.0);
    // The kills are fault windows in the history.
    assert_eq!(history.matches("\"type\":\"fault_start\"").count(), 2);
    assert!(output.status.success(), "the drive's checks failed");

    let status = pessimist(&["cluster", "status"], &dir);
    assert!(String::from_utf8_lossy(&status.stdout).contains("queue-1"));
    down_and_gone(&dir);
}

/// The usage pipeline on real processes: an API server killed mid-run recovers its counts
/// from its usage log, and the final bill, drawn over real TCP, bills every job answered 202
/// exactly once.
#[test]
fn a_real_cluster_bills_every_accepted_job_once_when_an_api_server_is_killed() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cluster-billing");
    let cluster = Cluster { dir: dir.clone() };
    cluster_up("scenarios/usage-api-crash-log-on.json", &cluster.dir);

    let drive = start_drive(&dir, "10");
    std::thread::sleep(Duration::from_secs(4));
    let before = [("api-1", pid_of(&dir, "api-1"))];
    assert!(pessimist(&["cluster", "kill", "api-1"], &dir).status.success());
    assert!(wait_restarted(&dir, &before), "the supervisor did not restart api-1");

    let (output, summary, history) = finish_drive(drive, &dir);
    let billing = &summary["checks"]["billing"];
    assert_eq!(billing["status"], "passed", "billing: {billing}");
    let figures = &billing["figures"];
    let served = figures["served"].as_u64().unwrap_or(0);
    assert!(served > 20, "too few jobs served: {figures}");
    // A job whose count was durable but whose 202 died with the server is billed too.
    assert!(figures["billed"].as_u64().unwrap_or(0) >= served, "{figures}");
    assert!(figures["final_runs_answered"].as_u64().unwrap_or(0) >= 1, "{figures}");
    assert!(
        history.contains("\"what\":\"usage_counted\""),
        "the API servers' counts are merged in"
    );
    assert_eq!(history.matches("\"type\":\"fault_start\"").count(), 1);
    assert!(output.status.success(), "the drive's checks failed");
    down_and_gone(&dir);
}
