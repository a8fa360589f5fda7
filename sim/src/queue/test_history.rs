//! A history builder for the queue's and the Raft watcher's checker tests.

use pessimist_core::history::{Event, EventKind};
use serde_json::{json, Value};

use crate::check::Verdict;
use crate::queue::check::QUEUE_GROUP;

/// A history built event by event, each one millisecond after the last. In the client
/// helpers job `n` has key `kn` and payload `1000 + n`; node `n` is `queue-n`.
#[derive(Default)]
pub(crate) struct History {
    pub(crate) events: Vec<Event>,
}

pub(crate) fn payload_of(job: u64) -> u64 {
    1000 + job
}
pub(crate) fn enqueue_in(job: u64) -> Value {
    json!({ "key": format!("k{job}"), "payload": payload_of(job) })
}
pub(crate) fn enqueue_out(key: &str, job: u64, duplicate: bool) -> Value {
    json!({ "key": key, "payload": payload_of(job), "job": job, "duplicate": duplicate })
}
pub(crate) fn lease_out(job: u64, lease: u64, attempt: u64) -> Value {
    json!({ "job": job, "payload": payload_of(job), "lease": lease, "attempt": attempt,
            "deadline_ms": 5000 })
}
pub(crate) fn worker(process: u64) -> Value {
    json!({ "worker": format!("p{process}") })
}

impl History {
    pub(crate) fn push(&mut self, kind: EventKind) -> &mut History {
        let index = self.events.len() as u64;
        self.events.push(Event { index, time_us: (index + 1) * 1000, kind });
        self
    }
    pub(crate) fn invoke(&mut self, process: u64, f: &str, value: Value) -> &mut History {
        self.push(EventKind::Invoke { process, f: f.into(), value })
    }
    pub(crate) fn ok(&mut self, process: u64, f: &str, value: Value) -> &mut History {
        self.push(EventKind::Ok { process, f: f.into(), value })
    }
    pub(crate) fn fail(
        &mut self,
        process: u64,
        f: &str,
        value: Value,
        error: &str,
    ) -> &mut History {
        self.push(EventKind::Fail { process, f: f.into(), value, error: error.into() })
    }
    pub(crate) fn info(&mut self, process: u64, f: &str, value: Value) -> &mut History {
        self.push(EventKind::Info { process, f: f.into(), value, error: "timeout".into() })
    }
    pub(crate) fn node(&mut self, id: u64, what: &str, mut detail: Value) -> &mut History {
        let node = format!("queue-{id}");
        detail["group"] = json!(QUEUE_GROUP);
        self.push(EventKind::Internal { node, what: what.into(), detail })
    }

    pub(crate) fn enqueue(&mut self, process: u64, job: u64) -> &mut History {
        self.enqueue_as(process, &format!("k{job}"), job, false)
    }
    pub(crate) fn enqueue_as(
        &mut self,
        process: u64,
        key: &str,
        job: u64,
        duplicate: bool,
    ) -> &mut Self {
        let invoked = json!({ "key": key, "payload": payload_of(job) });
        self.invoke(process, "enqueue", invoked).ok(
            process,
            "enqueue",
            enqueue_out(key, job, duplicate),
        )
    }
    pub(crate) fn lease(
        &mut self,
        process: u64,
        job: u64,
        lease: u64,
        attempt: u64,
    ) -> &mut History {
        let invoked = worker(process);
        self.invoke(process, "lease", invoked).ok(process, "lease", lease_out(job, lease, attempt))
    }
    pub(crate) fn lease_nothing(&mut self, process: u64) -> &mut History {
        self.invoke(process, "lease", worker(process)).ok(process, "lease", json!({"job": null}))
    }
    pub(crate) fn ack(&mut self, process: u64, job: u64, lease: u64) -> &mut History {
        let value = json!({ "job": job, "lease": lease });
        self.invoke(process, "ack", value.clone()).ok(process, "ack", value)
    }
    pub(crate) fn status(&mut self, process: u64, statuses: &[(u64, &str)]) -> &mut History {
        let jobs: Vec<u64> = statuses.iter().map(|(job, _)| *job).collect();
        self.invoke(process, "status", json!({ "jobs": jobs })).ok(
            process,
            "status",
            json!({ "statuses": statuses }),
        )
    }

    pub(crate) fn role(&mut self, id: u64, term: u64, role: &str, last_index: u64) -> &mut History {
        let leader = if role == "leader" { id } else { 0 };
        let detail = json!({ "id": id, "term": term, "role": role, "leader": leader,
                             "last_index": last_index, "last_term": term, "commit": 0 });
        self.node(id, "raft_role", detail)
    }
    /// Entries as (index, term), each with the chain an agreeing log would have.
    pub(crate) fn applied(&mut self, id: u64, entries: &[(u64, u64)]) -> &mut History {
        let entries: Vec<Value> =
            entries.iter().map(|&(index, term)| json!([index, term, chain(index)])).collect();
        self.node(id, "raft_applied", json!({ "id": id, "entries": entries }))
    }
    pub(crate) fn snapshot(&mut self, id: u64, index: u64, term: u64) -> &mut History {
        let detail = json!({ "id": id, "index": index, "term": term, "chain": chain(index) });
        self.node(id, "raft_snapshot_restored", detail)
    }
    pub(crate) fn recovered(&mut self, id: u64) -> &mut History {
        self.node(id, "raft_recovered", json!({ "id": id }))
    }
}

pub(crate) fn chain(index: u64) -> String {
    format!("{:016x}", 0xc0ffee_u64.wrapping_mul(index + 1))
}

/// The one check every case goes through: passes, or fails with a violation containing
/// `expect_violation`.
pub(crate) fn check(verdict: &Verdict, expect_violation: Option<&str>) {
    match expect_violation {
        None => assert!(verdict.passed(), "expected a pass: {verdict:#?}"),
        Some(needle) => {
            assert!(!verdict.passed(), "expected a violation {needle:?}: {verdict:#?}");
            assert!(
                verdict.violations.iter().any(|violation| violation.contains(needle)),
                "no violation contains {needle:?}: {:#?}",
                verdict.violations
            );
        }
    }
}
