//! The real cluster (real build only: `RUSTFLAGS= cargo test --target-dir target/real -p
//! pessimist-scenarios --test cluster`): processes on loopback, a real workload over HTTP,
//! `kill -9` of a queue node and a worker mid-run, and the simulator's checkers on what the
//! clients saw. Every process is stopped at the end, even when the test fails.
#![cfg(not(madsim))]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PESSIMIST: &str = env!("CARGO_BIN_EXE_pessimist");

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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cluster-kill-9");
    let cluster = Cluster { dir: dir.clone() };
    // Ports from the process id, so two runs on one machine do not collide.
    let base_port = (20_000 + (std::process::id() % 1000) * 40).to_string();
    let up = pessimist(
        &["cluster", "up", "scenarios/service-baseline.json", "--fresh", "--base-port", &base_port],
        &cluster.dir,
    );
    assert!(up.status.success(), "cluster up failed");
    assert!(String::from_utf8_lossy(&up.stdout).contains("admin key: adm-"));

    let drive = Command::new(PESSIMIST)
        .args(["cluster", "drive", "--seconds", "12", "--drain-seconds", "40", "--dir"])
        .arg(&dir)
        .current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/..")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drive starts");
    std::thread::sleep(Duration::from_secs(4));
    let before = (pid_of(&dir, "queue-1"), pid_of(&dir, "worker-1"));
    let kill = pessimist(&["cluster", "kill", "queue-1", "worker-1"], &dir);
    assert!(kill.status.success());
    assert_eq!(String::from_utf8_lossy(&kill.stdout).matches("with SIGKILL").count(), 2);
    // The supervisor restarts both, with new processes.
    let restarted = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let now = (pid_of(&dir, "queue-1"), pid_of(&dir, "worker-1"));
        now.0.is_some() && now.1.is_some() && now.0 != before.0 && now.1 != before.1
    });
    assert!(restarted, "the supervisor did not restart the killed nodes");

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
    for check in ["jobs_complete", "thumbnails", "auth_keys"] {
        assert_eq!(
            summary["checks"][check]["passed"], true,
            "{check}: {}",
            summary["checks"][check]
        );
    }
    let complete = &summary["checks"]["jobs_complete"]["figures"];
    assert!(complete["accepted"].as_u64().unwrap_or(0) > 20, "too few accepted jobs: {complete}");
    assert!(summary["accepted_per_s"].as_f64().unwrap_or(0.0) > 1.0);
    // The kills are fault windows in the history.
    let history = std::fs::read_to_string(dir.join("drive/history.jsonl")).expect("history");
    assert_eq!(history.matches("\"type\":\"fault_start\"").count(), 2);
    assert!(output.status.success(), "the drive's checks failed");

    let status = pessimist(&["cluster", "status"], &dir);
    assert!(String::from_utf8_lossy(&status.stdout).contains("queue-1"));
    let down = pessimist(&["cluster", "down"], &dir);
    assert!(down.status.success());
    assert!(String::from_utf8_lossy(&down.stdout).contains("stopped"));
    // Nothing of the cluster runs any more.
    let ps = Command::new("ps").args(["-eo", "args"]).output().expect("ps runs");
    let dir_text = dir.display().to_string();
    let left: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|line| line.contains("cluster") && line.contains(&dir_text))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
}
