//! The queue's workload: producers enqueue jobs, workers lease, work and ack them, and after
//! the heal a drain empties the queue and a final status read says where every acknowledged
//! job ended. Every operation goes into the history with Jepsen's invoke/ok/fail/info, in the
//! shapes [`crate::queue::check`] reads:
//!
//! - `enqueue`: invoke `{key, payload}`, ok adds `{job, duplicate}`;
//! - `lease`: invoke `{worker, visibility_ms, request}`, ok `{job, payload, lease, attempt,
//!   deadline_ms}` or `{job: null}` when nothing was available;
//! - `ack` / `nack`: invoke `{job, lease}` (nack's adds `permanent`), ok `{job, lease}` (nack's
//!   adds `dead_lettered`); a refusal by the queue is a `fail` whose error starts with
//!   `rejected:`;
//! - `status`: invoke `{jobs}`, ok `{statuses: [[job, state], ...]}`.
//!
//! A command whose outcome the client cannot know (a timeout, a leader lost before applying
//! it) is `info`; one that certainly did not happen is `fail`. Leases and their `info` carry
//! `uncertain_tries`: the client's tries that may have taken effect unseen. Every try of one
//! lease carries the worker's `request` number, which grows with each new lease: the queue
//! answers a retry with the lease of its earlier try while it is held, and `Spent` once that
//! lease ran out (recorded as `info`), so one lease operation leases at most one job, and an
//! `ok` one exactly the job it answered.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pessimist_core::history::{EventKind, History};
use pessimist_core::queue::machine::{Command, JobId, JobStatus, Response};
use pessimist_core::queue::QueueClient;
use pessimist_core::replica::client::{ClientError, Reply};
use pessimist_core::seams::rng::SeededRng;
use rand::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The queue workload's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QueueWorkload {
    /// Processes that enqueue.
    pub producers: u64,
    /// Enqueues each producer starts per simulated second, on average (Poisson arrivals).
    pub enqueue_per_s: f64,
    /// Processes that lease, work and ack.
    pub workers: u64,
    /// The visibility timeout a worker asks for with each lease.
    pub visibility_ms: u64,
    /// How long a worker works on a job, drawn uniformly from this range (true time).
    pub work_ms_min: u64,
    pub work_ms_max: u64,
    /// Share of leased jobs a worker gives back with a nack (a failed attempt).
    pub nack_fraction: f64,
    /// How long a worker waits after finding the queue empty.
    pub poll_ms: u64,
    /// How long a client waits for one request's answer.
    pub attempt_timeout_ms: u64,
    /// Requests per command before the client gives up (redirects included).
    pub attempts: u32,
}

impl Default for QueueWorkload {
    fn default() -> Self {
        QueueWorkload {
            producers: 3,
            enqueue_per_s: 10.0,
            workers: 3,
            visibility_ms: 2_000,
            work_ms_min: 10,
            work_ms_max: 100,
            nack_fraction: 0.05,
            poll_ms: 100,
            attempt_timeout_ms: 1_000,
            attempts: 6,
        }
    }
}

impl QueueWorkload {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if self.producers == 0 || self.producers > 1000 {
            return fail("producers", "must be between 1 and 1000");
        }
        if !(self.enqueue_per_s > 0.0 && self.enqueue_per_s <= 10_000.0) {
            return fail("enqueue_per_s", "must be in (0, 10000]");
        }
        if self.workers == 0 || self.workers > 1000 {
            return fail("workers", "must be between 1 and 1000");
        }
        if self.visibility_ms == 0 || self.visibility_ms > 3_600_000 {
            return fail("visibility_ms", "must be between 1 and 3600000");
        }
        if self.work_ms_min > self.work_ms_max || self.work_ms_max > 3_600_000 {
            return fail("work_ms_max", "must be at least work_ms_min and at most 3600000");
        }
        if !(0.0..=1.0).contains(&self.nack_fraction) {
            return fail("nack_fraction", "not a fraction in [0, 1]");
        }
        if self.poll_ms == 0 || self.poll_ms > 60_000 {
            return fail("poll_ms", "must be between 1 and 60000");
        }
        if self.attempt_timeout_ms == 0 || self.attempt_timeout_ms > 600_000 {
            return fail("attempt_timeout_ms", "must be between 1 and 600000");
        }
        if self.attempts == 0 || self.attempts > 100 {
            return fail("attempts", "must be between 1 and 100");
        }
        Ok(())
    }
}

/// Jobs whose enqueue was acknowledged, shared by the producers and the drain.
pub type Acknowledged = Arc<Mutex<BTreeSet<JobId>>>;

/// One producer: enqueues at Poisson times until `until_us` of history time.
pub async fn producer(
    process: u64,
    workload: QueueWorkload,
    mut client: QueueClient,
    history: History,
    mut rng: SeededRng,
    until_us: u64,
    acknowledged: Acknowledged,
) {
    let mut counter = 0u64;
    loop {
        let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
        let wait_us = (-uniform.ln() / workload.enqueue_per_s * 1e6) as u64;
        tokio::time::sleep(Duration::from_micros(wait_us.max(1000))).await;
        if history.now_us() >= until_us {
            return;
        }
        counter += 1;
        let key = format!("p{process}-{counter}");
        let payload = process * 1_000_000_000 + counter;
        let invoked = json!({ "key": key, "payload": payload });
        let f = "enqueue";
        history.record(EventKind::Invoke { process, f: f.into(), value: invoked.clone() });
        let command = Command::Enqueue { key: key.clone(), payload: payload.to_le_bytes().into() };
        match client.submit(command).await {
            Ok(Reply { response: Response::Enqueued { job, duplicate }, .. }) => {
                acknowledged.lock().expect("acknowledged lock").insert(job);
                let value =
                    json!({ "key": key, "payload": payload, "job": job, "duplicate": duplicate });
                history.record(EventKind::Ok { process, f: f.into(), value });
            }
            Ok(Reply { response: Response::Full { limit }, .. }) => {
                let error = format!("queue full ({limit} unfinished jobs)");
                history.record(EventKind::Fail { process, f: f.into(), value: invoked, error });
            }
            outcome => record_failure(&history, process, f, invoked, outcome),
        }
    }
}

/// One worker: leases, works, acks (or nacks), until `stop` is set.
pub async fn worker(
    process: u64,
    workload: QueueWorkload,
    mut client: QueueClient,
    history: History,
    mut rng: SeededRng,
    stop: Arc<AtomicBool>,
) {
    let name = format!("w{process}");
    let poll = Duration::from_millis(workload.poll_ms);
    let mut request = 0u64;
    while !stop.load(Ordering::Relaxed) {
        request += 1;
        let invoked =
            json!({ "worker": name, "visibility_ms": workload.visibility_ms, "request": request });
        history.record(EventKind::Invoke { process, f: "lease".into(), value: invoked.clone() });
        let visibility_ms = workload.visibility_ms;
        let command = Command::Lease { worker: name.clone(), visibility_ms, request };
        let (job, lease) = match client.submit(command).await {
            Ok(Reply {
                response: Response::Leased { job, lease, payload, attempt, deadline_ms },
                uncertain_tries,
            }) => {
                let value = json!({
                    "job": job,
                    "payload": decode_payload(&payload),
                    "lease": lease,
                    "attempt": attempt,
                    "deadline_ms": deadline_ms,
                    "uncertain_tries": uncertain_tries,
                });
                history.record(EventKind::Ok { process, f: "lease".into(), value });
                (job, lease)
            }
            Ok(Reply { response: Response::Empty, uncertain_tries }) => {
                let value = json!({ "job": null, "uncertain_tries": uncertain_tries });
                history.record(EventKind::Ok { process, f: "lease".into(), value });
                tokio::time::sleep(poll).await;
                continue;
            }
            Ok(Reply { response: Response::Spent { .. }, uncertain_tries }) => {
                // An earlier try of this request leased a job whose lease then ran out: the
                // request took effect, unseen.
                let mut value = invoked;
                value["uncertain_tries"] = json!(uncertain_tries);
                let error = "spent: an earlier try's lease ran out unseen".to_string();
                history.record(EventKind::Info { process, f: "lease".into(), value, error });
                tokio::time::sleep(poll).await;
                continue;
            }
            outcome => {
                record_failure(&history, process, "lease", invoked, outcome);
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        let work_ms = rng.random_range(workload.work_ms_min..=workload.work_ms_max);
        tokio::time::sleep(Duration::from_millis(work_ms)).await;
        let nack = rng.random_bool(workload.nack_fraction);
        finish(process, &mut client, &history, job, lease, nack).await;
    }
}

/// Acks or nacks a leased job, recording the outcome.
async fn finish(
    process: u64,
    client: &mut QueueClient,
    history: &History,
    job: JobId,
    lease: u64,
    nack: bool,
) {
    let f = if nack { "nack" } else { "ack" };
    // A permanent nack dead-letters at once: the checkers must know which kind it was.
    let permanent = false;
    let invoked = match nack {
        true => json!({ "job": job, "lease": lease, "permanent": permanent }),
        false => json!({ "job": job, "lease": lease }),
    };
    history.record(EventKind::Invoke { process, f: f.into(), value: invoked.clone() });
    let command = if nack {
        Command::Nack { job, lease, reason: "the worker failed the job".into(), permanent }
    } else {
        Command::Ack { job, lease, result: Vec::new() }
    };
    match client.submit(command).await {
        Ok(Reply { response: Response::Acked { .. }, .. }) => {
            history.record(EventKind::Ok { process, f: f.into(), value: invoked });
        }
        Ok(Reply { response: Response::Nacked { dead_lettered, .. }, .. }) => {
            let value = json!({ "job": job, "lease": lease, "dead_lettered": dead_lettered });
            history.record(EventKind::Ok { process, f: f.into(), value });
        }
        Ok(Reply { response: Response::Rejected { reason, .. }, uncertain_tries: 0 }) => {
            let error = format!("rejected: {reason:?}");
            history.record(EventKind::Fail { process, f: f.into(), value: invoked, error });
        }
        outcome => record_failure(history, process, f, invoked, outcome),
    }
}

/// Reads the status of `jobs` once; returns the jobs not yet finished, or `None` when the
/// read got no answer.
pub async fn read_statuses(
    process: u64,
    client: &mut QueueClient,
    history: &History,
    jobs: &[JobId],
) -> Option<Vec<JobId>> {
    let invoked = json!({ "jobs": jobs });
    history.record(EventKind::Invoke { process, f: "status".into(), value: invoked.clone() });
    match client.submit(Command::Status { jobs: jobs.to_vec() }).await {
        Ok(Reply { response: Response::Statuses(statuses), .. }) => {
            let listed: Vec<Value> =
                statuses.iter().map(|(job, status)| json!([job, status_name(status)])).collect();
            let unfinished = statuses
                .iter()
                .filter(|(_, status)| {
                    !matches!(status, JobStatus::Done { .. } | JobStatus::DeadLettered { .. })
                })
                .map(|(job, _)| *job)
                .collect();
            history.record(EventKind::Ok {
                process,
                f: "status".into(),
                value: json!({ "statuses": listed }),
            });
            Some(unfinished)
        }
        outcome => {
            record_failure(history, process, "status", invoked, outcome);
            None
        }
    }
}

fn status_name(status: &JobStatus) -> &'static str {
    match status {
        JobStatus::Queued { .. } => "queued",
        JobStatus::Leased { .. } => "leased",
        JobStatus::Done { .. } => "done",
        JobStatus::DeadLettered { .. } => "dead_lettered",
        JobStatus::Unknown => "unknown",
    }
}

/// Records a command that got no usable answer: `fail` when it certainly did not happen,
/// `info` otherwise.
fn record_failure(
    history: &History,
    process: u64,
    f: &str,
    value: Value,
    outcome: Result<Reply<Response>, ClientError>,
) {
    let f = f.to_string();
    match outcome {
        Err(ClientError::Refused(error)) => {
            history.record(EventKind::Fail { process, f, value, error });
        }
        Err(ClientError::Unknown { reason, uncertain_tries }) => {
            let mut value = value;
            value["uncertain_tries"] = json!(uncertain_tries);
            history.record(EventKind::Info { process, f, value, error: reason });
        }
        Ok(reply) => {
            // A rejection after a try that may have taken effect, or an answer of the wrong
            // kind: nobody can say what happened.
            let error = format!("unexpected answer {:?}", reply.response);
            history.record(EventKind::Info { process, f, value, error });
        }
    }
}

fn decode_payload(payload: &[u8]) -> Value {
    match <[u8; 8]>::try_from(payload) {
        Ok(bytes) => json!(u64::from_le_bytes(bytes)),
        Err(_) => json!(null),
    }
}
