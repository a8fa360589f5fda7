//! The job queue's checkers: pure functions from a history to a [`Verdict`].
//!
//! The queue's clients record Jepsen operations (`enqueue`, `lease`, `ack`, `nack`, `status`);
//! its nodes record Raft internals (`raft_role`, `raft_applied`, `raft_snapshot_restored`,
//! `raft_recovered`). The checkers, named by the keys reports use:
//! - Raft safety of the queue's group: [`crate::raft_check::raft_safety`] with [`QUEUE_GROUP`];
//! - [`queue_durability`]: every acknowledged enqueue ends `done` or `dead_lettered`, and a
//!   dead letter is earned by `max_attempts` leases the history can account for;
//! - [`no_double_ack`]: a job is acknowledged under one lease at most;
//! - [`lease_fencing`]: no ack or nack under a lease succeeds after a newer lease of its job
//!   was granted, and none is refused while true clocks prove its lease current;
//! - [`status_reads`]: a job known `done` or `dead_lettered` reads so ever after;
//! - [`fifo_order`]: job ids follow enqueue order, first deliveries follow job ids, a job is
//!   first delivered once, and keys and jobs correspond one to one;
//! - [`queue_linearizability`]: enqueues and first deliveries form a linearizable FIFO queue
//!   (checked by [`crate::lincheck`] with the `fifo-queue` model).
//!
//! Leases whose answer was lost are the checks' hard part. The queue answers every try of a
//! worker's lease request alike, so **one lease operation leases at most one job**: an ok one
//! exactly the job it answered, an uncertain one (`info`, or open at the end) one job or
//! nothing, unseen. The checks give each such operation no more than that one job, at the
//! times it could have taken it (`UncertainLease`); what the history shows of each job's
//! leases is `JobEvidence`.
//!
//! **Invariant:** checkers see only the history. Fields they do not know are ignored; a
//! field they need that is missing or mistyped is a violation naming the event, never a
//! panic and never skipped in silence (a checker that skips what it cannot read passes what
//! it should not). Positions in messages (`event 17`, `history[17]`) are event indexes.

use std::collections::{BTreeMap, BTreeSet};

use pessimist_core::history::{Event, EventKind};
use serde_json::{json, Value};

use crate::check::{
    event_time_us, need_str, need_u64, phase_start_us, Distribution, Verdict, PHASE_DRAIN,
    PHASE_HEAL,
};
use crate::raft_check::group_event;

/// How a client operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    Info,
    /// Never completed: the run ended first.
    Open,
}

/// A client operation: an invoke paired with the next completion of the same process.
#[derive(Clone, Debug)]
struct Operation<'a> {
    process: u64,
    f: &'a str,
    invoke_index: u64,
    complete_index: Option<u64>,
    outcome: Outcome,
    input: &'a Value,
    /// The completion's value; `null` while open.
    output: &'a Value,
    /// The completion's error; empty for `ok` and open operations.
    error: &'a str,
}

impl Operation<'_> {
    fn is(&self, f: &str, outcome: Outcome) -> bool {
        self.f == f && self.outcome == outcome
    }

    /// Where the operation completed, or was invoked if it never did: the event to name.
    fn at(&self) -> u64 {
        self.complete_index.unwrap_or(self.invoke_index)
    }
}

static NULL: Value = Value::Null;

/// Pairs invokes with completions, in invoke order. An invoke while the same process still
/// has one open leaves the older one open; a completion with no open invoke is dropped (it
/// says nothing a checker could place).
fn operations(events: &[Event]) -> Vec<Operation<'_>> {
    let mut open: BTreeMap<u64, Operation<'_>> = BTreeMap::new();
    let mut paired = Vec::new();
    for event in events {
        let (process, outcome, value, error) = match &event.kind {
            EventKind::Invoke { process, f, value } => {
                let operation = Operation {
                    process: *process,
                    f,
                    invoke_index: event.index,
                    complete_index: None,
                    outcome: Outcome::Open,
                    input: value,
                    output: &NULL,
                    error: "",
                };
                paired.extend(open.insert(*process, operation));
                continue;
            }
            EventKind::Ok { process, value, .. } => (process, Outcome::Ok, value, ""),
            EventKind::Fail { process, value, error, .. } => {
                (process, Outcome::Fail, value, error.as_str())
            }
            EventKind::Info { process, value, error, .. } => {
                (process, Outcome::Info, value, error.as_str())
            }
            _ => continue,
        };
        if let Some(mut operation) = open.remove(process) {
            debug_assert!(operation.invoke_index < event.index, "a completion follows its invoke");
            operation.complete_index = Some(event.index);
            operation.outcome = outcome;
            operation.output = value;
            operation.error = error;
            paired.push(operation);
        }
    }
    paired.extend(open.into_values());
    paired.sort_by_key(|operation| operation.invoke_index);
    paired
}

/// An acknowledged enqueue.
#[derive(Clone, Debug)]
struct Enqueued<'a> {
    /// The client's idempotency key, as invoked.
    key: &'a str,
    job: u64,
    /// The queue recognised the key and returned the job it already had.
    duplicate: bool,
    invoke_index: u64,
    ok_index: u64,
}

/// The ok enqueues, in invoke order; malformed ones become violations.
fn acknowledged_enqueues<'a>(
    operations: &[Operation<'a>],
    violations: &mut Vec<String>,
) -> Vec<Enqueued<'a>> {
    let parse = |operation: &Operation<'a>| -> Result<Enqueued<'a>, String> {
        let at = operation.at();
        Ok(Enqueued {
            key: need_str(operation.input, "key", operation.invoke_index, "enqueue")?,
            job: need_u64(operation.output, "job", at, "ok enqueue")?,
            duplicate: operation.output.get("duplicate").and_then(Value::as_bool) == Some(true),
            invoke_index: operation.invoke_index,
            ok_index: at,
        })
    };
    let mut enqueued = Vec::new();
    for operation in operations.iter().filter(|o| o.is("enqueue", Outcome::Ok)) {
        match parse(operation) {
            Ok(one) => enqueued.push(one),
            Err(malformed) => violations.push(malformed),
        }
    }
    enqueued
}

/// An ok lease that returned a job.
#[derive(Clone, Debug)]
struct Leased<'a> {
    job: u64,
    lease: u64,
    /// 1 for a first delivery, more for a redelivery.
    attempt: u64,
    payload: &'a Value,
    invoke_index: u64,
    ok_index: u64,
}

/// The job an ok lease returned, `None` when nothing was available (`"job": null`).
fn leased<'a>(operation: &Operation<'a>) -> Result<Option<Leased<'a>>, String> {
    let (output, at) = (operation.output, operation.at());
    if output.get("job").is_some_and(Value::is_null) {
        return Ok(None);
    }
    Ok(Some(Leased {
        job: need_u64(output, "job", at, "ok lease")?,
        lease: need_u64(output, "lease", at, "ok lease")?,
        attempt: need_u64(output, "attempt", at, "ok lease")?,
        payload: output.get("payload").unwrap_or(&NULL),
        invoke_index: operation.invoke_index,
        ok_index: at,
    }))
}

/// The ok leases that returned a job, in invoke order; malformed ones become violations.
fn ok_leases<'a>(operations: &[Operation<'a>], violations: &mut Vec<String>) -> Vec<Leased<'a>> {
    let mut leases = Vec::new();
    for operation in operations.iter().filter(|o| o.is("lease", Outcome::Ok)) {
        match leased(operation) {
            Ok(one) => leases.extend(one),
            Err(malformed) => violations.push(malformed),
        }
    }
    leases
}

// ---------------------------------------------------------------------------------------------
// What the history proves about leases nobody saw

/// A lease operation whose answer the client never got (`info`, or still open when the run
/// ended). Its tries carried one request number, and the queue answers every try of a
/// worker's request with the same lease (or `Spent`): **one request leases at most one
/// job**, however many of its tries arrived. So such an operation may have leased one job
/// unseen, or nothing; an operation that ended `ok` leased exactly what it answered.
#[derive(Clone, Copy, Debug)]
struct UncertainLease {
    process: u64,
    invoke_index: u64,
    /// Its request took effect, if at all, before this event: the completion of the same
    /// worker's next `ok` lease with a higher request number (that request was applied by
    /// then, and the queue answers an older request `Spent` after a newer one). `u64::MAX`
    /// when the history gives no such bound: an answer lost in a partition may be applied
    /// long after the client gave up.
    effect_before: u64,
}

impl UncertainLease {
    /// Whether its request could have leased a job created no earlier than `created_after`
    /// (an event index) before `proven_by` (the completion of an event that proves the lease
    /// happened).
    fn could_lease(&self, created_after: u64, proven_by: u64) -> bool {
        self.invoke_index < proven_by && self.effect_before > created_after
    }
}

/// The uncertain lease operations, in invoke order.
fn uncertain_leases(operations: &[Operation<'_>]) -> Vec<UncertainLease> {
    // worker -> its lease operations: (position in `operations`, request number), in invoke
    // order. A worker's operations never overlap: it waits for each answer.
    let mut by_worker: BTreeMap<String, Vec<(usize, Option<u64>)>> = BTreeMap::new();
    for (position, operation) in operations.iter().enumerate().filter(|(_, o)| o.f == "lease") {
        let worker = match operation.input.get("worker").and_then(Value::as_str) {
            Some(worker) => worker.to_string(),
            None => format!("process {}", operation.process),
        };
        let request = operation.input.get("request").and_then(Value::as_u64);
        by_worker.entry(worker).or_default().push((position, request));
    }
    let mut uncertain = Vec::new();
    for leases in by_worker.values() {
        for (at, &(position, request)) in leases.iter().enumerate() {
            let operation = &operations[position];
            if !matches!(operation.outcome, Outcome::Info | Outcome::Open) {
                continue;
            }
            // Without request numbers on both sides nothing bounds the effect.
            let effect_before = request
                .and_then(|request| {
                    leases[at + 1..].iter().find_map(|&(later, later_request)| {
                        let later_op = &operations[later];
                        let newer = later_request.is_some_and(|r| r > request);
                        (newer && later_op.outcome == Outcome::Ok)
                            .then_some(later_op.complete_index)
                            .flatten()
                    })
                })
                .unwrap_or(u64::MAX);
            debug_assert!(effect_before > operation.invoke_index, "a bound follows the invoke");
            uncertain.push(UncertainLease {
                process: operation.process,
                invoke_index: operation.invoke_index,
                effect_before,
            });
        }
    }
    uncertain.sort_by_key(|lease| lease.invoke_index);
    uncertain
}

/// What the history shows of one job's deliveries.
#[derive(Clone, Debug, Default)]
struct JobEvidence<'a> {
    /// Its payload, from an ok enqueue or an ok lease.
    payload: Option<&'a Value>,
    /// The invoke of the earliest enqueue (not failed) with its key: it was created no
    /// earlier. 0 when its key is unknown.
    created_after: u64,
    /// Whether an ok enqueue returned it.
    acknowledged: bool,
    /// Whether an ok lease with attempt 1 returned it.
    first_delivery_seen: bool,
    /// The earliest completion that proves it had been leased: an ok lease with attempt 2 or
    /// more, an ok ack or nack, a status read of `leased`, `done` or `dead_lettered`.
    leased_by: Option<u64>,
    /// Its observed leases: lease id -> the ok lease's (invoke, completion).
    leases: BTreeMap<u64, (u64, u64)>,
}

/// Every job the history names, with its evidence; malformed events become violations.
fn job_evidence<'a>(
    operations: &[Operation<'a>],
    violations: &mut Vec<String>,
) -> BTreeMap<u64, JobEvidence<'a>> {
    let mut jobs: BTreeMap<u64, JobEvidence<'a>> = BTreeMap::new();
    let prove = |evidence: &mut JobEvidence<'a>, at: u64| {
        evidence.leased_by = Some(evidence.leased_by.map_or(at, |known| known.min(at)));
    };
    // key -> the invoke of its earliest enqueue that did not fail.
    let mut first_enqueue_by_key: BTreeMap<&str, u64> = BTreeMap::new();
    for operation in operations.iter().filter(|o| o.f == "enqueue" && o.outcome != Outcome::Fail) {
        if let Some(key) = operation.input.get("key").and_then(Value::as_str) {
            first_enqueue_by_key.entry(key).or_insert(operation.invoke_index);
        }
    }
    for enqueued in acknowledged_enqueues(operations, violations) {
        let evidence = jobs.entry(enqueued.job).or_default();
        let created_after = first_enqueue_by_key[enqueued.key];
        // Two keys for one job is `queue_durability`'s violation; the earlier bound is safe.
        if !evidence.acknowledged || created_after < evidence.created_after {
            evidence.created_after = created_after;
        }
        evidence.acknowledged = true;
    }
    for operation in operations.iter().filter(|o| o.is("enqueue", Outcome::Ok)) {
        let (Some(job), Some(payload)) =
            (operation.output.get("job").and_then(Value::as_u64), operation.input.get("payload"))
        else {
            continue; // Reported by `acknowledged_enqueues`.
        };
        jobs.entry(job).or_default().payload.get_or_insert(payload);
    }
    for lease in ok_leases(operations, violations) {
        let evidence = jobs.entry(lease.job).or_default();
        if !lease.payload.is_null() {
            evidence.payload.get_or_insert(lease.payload);
        }
        evidence.leases.entry(lease.lease).or_insert((lease.invoke_index, lease.ok_index));
        if lease.attempt == 1 {
            evidence.first_delivery_seen = true;
        } else {
            prove(evidence, lease.ok_index);
        }
    }
    for operation in operations.iter().filter(|o| o.outcome == Outcome::Ok) {
        let at = operation.at();
        match operation.f {
            "ack" | "nack" => match need_u64(operation.output, "job", at, "ok ack or nack") {
                Ok(job) => prove(jobs.entry(job).or_default(), at),
                Err(malformed) => violations.push(malformed),
            },
            "status" => {
                for (job, status) in status_pairs(operation, violations) {
                    if matches!(status, "leased" | "done" | "dead_lettered") {
                        prove(jobs.entry(job).or_default(), at);
                    }
                }
            }
            _ => {}
        }
    }
    jobs
}

/// The `[job, status]` pairs of an ok status read; malformed ones become violations.
fn status_pairs<'a>(read: &Operation<'a>, violations: &mut Vec<String>) -> Vec<(u64, &'a str)> {
    let at = read.at();
    let Some(pairs) = read.output.get("statuses").and_then(Value::as_array) else {
        violations.push(format!("event {at}: ok status without an array \"statuses\""));
        return Vec::new();
    };
    let mut parsed = Vec::with_capacity(pairs.len());
    for pair in pairs {
        match pair.as_array().map(Vec::as_slice) {
            Some([job, status]) if job.is_u64() && status.is_string() => {
                parsed.push((job.as_u64().expect("checked"), status.as_str().expect("checked")));
            }
            _ => violations
                .push(format!("event {at}: status entry is not [job, \"status\"]: {pair}")),
        }
    }
    parsed
}

/// A job whose first delivery nobody saw, though the history proves it was leased.
#[derive(Clone, Copy, Debug)]
struct UnseenFirstDelivery {
    job: u64,
    created_after: u64,
    proven_by: u64,
}

/// Gives each unseen first delivery its own uncertain lease (one request leases at most one
/// job), as many as possible: a maximum bipartite matching (Kuhn's augmenting paths, in job
/// order, deterministic). Returns, per uncertain lease, the job it explains; the jobs left
/// unexplained are those no assignment can cover.
fn explain_unseen(
    unseen: &[UnseenFirstDelivery],
    uncertain: &[UncertainLease],
) -> Vec<Option<usize>> {
    let candidates: Vec<Vec<usize>> = unseen
        .iter()
        .map(|job| {
            (0..uncertain.len())
                .filter(|&lease| uncertain[lease].could_lease(job.created_after, job.proven_by))
                .collect()
        })
        .collect();
    fn augment(
        job: usize,
        candidates: &[Vec<usize>],
        visited: &mut [bool],
        explains: &mut [Option<usize>],
    ) -> bool {
        for &lease in &candidates[job] {
            if std::mem::replace(&mut visited[lease], true) {
                continue;
            }
            let free = match explains[lease] {
                None => true,
                Some(other) => augment(other, candidates, visited, explains),
            };
            if free {
                explains[lease] = Some(job);
                return true;
            }
        }
        false
    }
    let mut explains = vec![None; uncertain.len()];
    for job in 0..unseen.len() {
        let mut visited = vec![false; uncertain.len()];
        augment(job, &candidates, &mut visited, &mut explains);
    }
    explains
}

/// The group every queue node's Raft events name.
pub const QUEUE_GROUP: &str = pessimist_core::queue::ROLE;

// ---------------------------------------------------------------------------------------------
// Durability

/// The statuses the final reads saw: job -> (status, event of the last ok read covering it).
fn final_statuses<'a>(
    operations: &[Operation<'a>],
    violations: &mut Vec<String>,
) -> (BTreeMap<u64, (&'a str, u64)>, usize) {
    let mut reads: Vec<&Operation<'a>> =
        operations.iter().filter(|o| o.is("status", Outcome::Ok)).collect();
    // "Last" is in completion order: the read that returned last saw the latest state.
    reads.sort_by_key(|read| read.at());
    let mut statuses = BTreeMap::new();
    for read in &reads {
        let at = read.at();
        let Some(pairs) = read.output.get("statuses").and_then(Value::as_array) else {
            violations.push(format!("event {at}: ok status without an array \"statuses\""));
            continue;
        };
        for pair in pairs {
            let parsed = match pair.as_array().map(Vec::as_slice) {
                Some([job, status]) => job.as_u64().zip(status.as_str()),
                _ => None,
            };
            match parsed {
                Some((job, status)) => {
                    statuses.insert(job, (status, at));
                }
                None => violations
                    .push(format!("event {at}: status entry is not [job, \"status\"]: {pair}")),
            }
        }
    }
    (statuses, reads.len())
}

/// No acknowledged enqueue is lost: every job an ok enqueue returned is `done` or
/// `dead_lettered` in the last status read covering it, and no job id was acknowledged to two
/// keys. A job no completed status read covers is a violation too: not lost, but not verified.
/// And a dead letter must be earned: `max_attempts` (the `queue` knob's) leases of the job
/// ended badly, as far as the history can show (see `unearned_dead_letters`).
pub fn queue_durability(events: &[Event], max_attempts: u32) -> Verdict {
    let operations = operations(events);
    let mut violations = Vec::new();
    let enqueued = acknowledged_enqueues(&operations, &mut violations);
    let (statuses, status_reads) = final_statuses(&operations, &mut violations);
    // job -> its first acknowledgement (duplicates acknowledge the same job again).
    let mut jobs: BTreeMap<u64, &Enqueued<'_>> = BTreeMap::new();
    // job -> the keys whose enqueues were acknowledged with it: more than one means a job id
    // was handed out twice, so every acknowledgement but the one that stuck was lost (only a
    // queue that acknowledges before replicating does that).
    let mut keys_of_job: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for one in &enqueued {
        jobs.entry(one.job).or_insert(one);
        keys_of_job.entry(one.job).or_default().insert(one.key);
    }
    let mut acknowledged_lost = 0u64;
    for (job, keys) in keys_of_job.iter().filter(|(_, keys)| keys.len() > 1) {
        acknowledged_lost += keys.len() as u64 - 1;
        let keys: Vec<&str> = keys.iter().copied().collect();
        violations.push(format!(
            "job {job} was acknowledged to the enqueues of {} different keys ({}): all but one \
             were lost",
            keys.len(),
            keys.join(", ")
        ));
    }
    let mut count = BTreeMap::from([("done", 0u64), ("dead_lettered", 0), ("other", 0)]);
    let mut unread = 0u64;
    if status_reads == 0 && !jobs.is_empty() {
        violations.push(format!(
            "not verified: the final status read never completed ({} acknowledged jobs unchecked)",
            jobs.len()
        ));
        unread = jobs.len() as u64;
    } else {
        for (job, acknowledged) in &jobs {
            let (key, ok_at) = (acknowledged.key, acknowledged.ok_index);
            match statuses.get(job) {
                Some((status @ ("done" | "dead_lettered"), _)) => {
                    *count.get_mut(status).expect("both counted") += 1;
                }
                Some((status, read_at)) => {
                    *count.get_mut("other").expect("counted") += 1;
                    violations.push(format!(
                        "job {job} (key {key}, enqueue acknowledged at event {ok_at}) ends \
                         {status} in the status read at event {read_at}"
                    ));
                }
                None => {
                    unread += 1;
                    violations.push(format!(
                        "job {job} (key {key}, enqueue acknowledged at event {ok_at}) is in no \
                         completed status read"
                    ));
                }
            }
        }
    }
    let (dead_letters_checked, dead_letters_unearned) =
        unearned_dead_letters(&operations, max_attempts, &mut violations);
    let figures = BTreeMap::from([
        ("dead_letters_checked".into(), json!(dead_letters_checked)),
        ("dead_letters_unearned".into(), json!(dead_letters_unearned)),
        ("acknowledged_enqueues".into(), json!(enqueued.len())),
        ("acknowledged_jobs".into(), json!(jobs.len())),
        ("done".into(), json!(count["done"])),
        ("dead_lettered".into(), json!(count["dead_lettered"])),
        ("not_finished".into(), json!(count["other"])),
        ("not_read".into(), json!(unread)),
        ("status_reads".into(), json!(status_reads)),
        // Acknowledged enqueues known lost: their job id went to another key, or their job
        // does not end done or dead-lettered.
        ("acknowledged_lost".into(), json!(acknowledged_lost + count["other"])),
    ]);
    Verdict::from_violations(violations, figures)
}

/// Dead letters are earned: a job is dead-lettered only after `max_attempts` leases ended
/// badly (expired, nacked, or held by a worker that crashed), unless a nack said the failure
/// was permanent. The history's evidence for a job dead-lettered at `d` (the first ok nack
/// that answered `dead_lettered`, or status read of it, completed at `d`): its observed
/// leases granted before `d`, by distinct lease id, none acknowledged; plus the uncertain
/// lease operations that could have leased it unseen before `d` (at most one lease each, as
/// one request leases at most one job). That is an upper bound on the leases it really had,
/// so a shortfall is a violation and never a false alarm. Returns (dead letters checked,
/// unearned ones).
fn unearned_dead_letters(
    operations: &[Operation<'_>],
    max_attempts: u32,
    violations: &mut Vec<String>,
) -> (u64, u64) {
    // Malformed events are reported where they are read: here they only go unused.
    let mut ignored = Vec::new();
    let jobs = job_evidence(operations, &mut ignored);
    let uncertain = uncertain_leases(operations);
    // job -> the earliest completion that shows it dead-lettered.
    let mut dead_at: BTreeMap<u64, u64> = BTreeMap::new();
    let mut dead = |job: u64, at: u64| {
        let first = dead_at.entry(job).or_insert(at);
        *first = (*first).min(at);
    };
    let mut permanent: BTreeSet<u64> = BTreeSet::new();
    let mut acked: BTreeSet<(u64, u64)> = BTreeSet::new();
    for operation in operations.iter().filter(|o| o.outcome == Outcome::Ok) {
        let (job, lease) = (operation.output["job"].as_u64(), operation.output["lease"].as_u64());
        match operation.f {
            "ack" => acked.extend(job.zip(lease)),
            "nack" => {
                let Some(job) = job else { continue };
                if operation.input["permanent"].as_bool() == Some(true) {
                    permanent.insert(job);
                }
                if operation.output["dead_lettered"].as_bool() == Some(true) {
                    dead(job, operation.at());
                }
            }
            "status" => {
                for (job, status) in status_pairs(operation, &mut ignored) {
                    if status == "dead_lettered" {
                        dead(job, operation.at());
                    }
                }
            }
            _ => {}
        }
    }
    let mut unearned = 0u64;
    for (&job, &dead_at) in dead_at.iter().filter(|(job, _)| !permanent.contains(job)) {
        let Some(evidence) = jobs.get(&job) else { continue };
        let seen: Vec<u64> = evidence
            .leases
            .iter()
            .filter(|(&lease, &(invoke_at, _))| {
                invoke_at < dead_at && !acked.contains(&(job, lease))
            })
            .map(|(&lease, _)| lease)
            .collect();
        let unseen = uncertain
            .iter()
            .filter(|lease| lease.could_lease(evidence.created_after, dead_at))
            .count();
        let leases_max = seen.len() + unseen;
        if leases_max < max_attempts as usize {
            unearned += 1;
            violations.push(format!(
                "job {job} dead-lettered (event {dead_at} shows it) after at most {leases_max} \
                 leases, below max_attempts {max_attempts}: {} seen (lease ids {seen:?}) and {unseen} \
                 uncertain lease requests that could have leased it unseen",
                seen.len()
            ));
        }
    }
    (dead_at.len() as u64, unearned)
}

// ---------------------------------------------------------------------------------------------
// No double acknowledgement

/// Error text of an ack the queue refused (a stale lease, an unknown job).
pub const ACK_REJECTED_PREFIX: &str = "rejected:";

/// A job is completed once: its ok acks all carry one lease id. (Acks repeated under the
/// same lease, a client retrying after a timeout, are fine: the queue makes them idempotent.)
pub fn no_double_ack(events: &[Event]) -> Verdict {
    let operations = operations(events);
    let mut violations = Vec::new();
    let (mut acks_ok, mut acks_rejected) = (0u64, 0u64);
    // job -> lease -> first event that acknowledged the job under it.
    let mut leases_by_job: BTreeMap<u64, BTreeMap<u64, u64>> = BTreeMap::new();
    for ack in operations.iter().filter(|o| o.f == "ack") {
        match ack.outcome {
            Outcome::Ok => {}
            Outcome::Fail if ack.error.starts_with(ACK_REJECTED_PREFIX) => {
                acks_rejected += 1;
                continue;
            }
            _ => continue,
        }
        acks_ok += 1;
        let at = ack.at();
        let parsed = need_u64(ack.output, "job", at, "ok ack")
            .and_then(|job| Ok((job, need_u64(ack.output, "lease", at, "ok ack")?)));
        let (job, lease) = match parsed {
            Ok(parsed) => parsed,
            Err(malformed) => {
                violations.push(malformed);
                continue;
            }
        };
        let leases = leases_by_job.entry(job).or_default();
        if let Some((&first_lease, &first_at)) = leases.first_key_value() {
            if !leases.contains_key(&lease) {
                violations.push(format!(
                    "job {job} acknowledged under two leases: {first_lease} (event {first_at}) \
                     and {lease} (event {at})"
                ));
            }
        }
        leases.entry(lease).or_insert(at);
    }
    let figures = BTreeMap::from([
        ("acks_ok".into(), json!(acks_ok)),
        ("acks_rejected".into(), json!(acks_rejected)),
        ("jobs_acked".into(), json!(leases_by_job.len())),
    ]);
    Verdict::from_violations(violations, figures)
}

// ---------------------------------------------------------------------------------------------
// Lease fencing

/// Error text of an ack or nack refused because it did not carry the job's current lease.
pub const STALE_LEASE_PREFIX: &str = "rejected: StaleLease";

/// Fault kinds that bend a node's wall clock, on which lease deadlines are measured.
const CLOCK_FAULT_KINDS: [&str; 3] = ["clock_offset", "clock_drift", "clock_jump"];

/// Acks and nacks are judged against the lease that made them. (a) One that succeeded under
/// lease L of job J after a newer lease L' > L of J had been granted (its ok lease completed
/// before the ack was invoked) is a violation: once L' exists L is not current, so the queue
/// let a stale holder through (fencing broken). (b) One the queue refused as a stale lease
/// while the history proves L was still current is a violation too. The proof needs true
/// clocks: leases expire on the leader's wall clock, which a clock fault bends. With no clock
/// fault in the history every node's clock reads true time plus one common base, so L's
/// deadline is at least (L's lease invoked) + visibility, and the queue's time when it
/// refused is at most the refusal's completion, both in true milliseconds: a refusal that
/// completed before the deadline came while L was current (only its holder can end it
/// earlier, and a holder acks or nacks once). Otherwise the refusal is only counted
/// (`stale_refusals_unproven`), as is every refusal in a run with clock faults.
pub fn lease_fencing(events: &[Event]) -> Verdict {
    let operations = operations(events);
    let mut violations = Vec::new();
    let clocks_true = !events.iter().any(|event| {
        matches!(&event.kind, EventKind::FaultStart { kind, .. }
            if CLOCK_FAULT_KINDS.contains(&kind.as_str()))
    });
    let leases = ok_leases(&operations, &mut violations);
    // job -> lease -> the ok lease that granted it.
    let mut granted: BTreeMap<u64, BTreeMap<u64, &Leased<'_>>> = BTreeMap::new();
    for lease in &leases {
        granted.entry(lease.job).or_default().entry(lease.lease).or_insert(lease);
    }
    let invoked_of_lease: BTreeMap<u64, &Operation<'_>> = operations
        .iter()
        .filter(|o| o.is("lease", Outcome::Ok))
        .map(|o| (o.invoke_index, o))
        .collect();
    let (mut finishes_ok, mut refusals, mut proven, mut unproven) = (0u64, 0u64, 0u64, 0u64);
    for finish in operations.iter().filter(|o| matches!(o.f, "ack" | "nack")) {
        let at = finish.at();
        match finish.outcome {
            Outcome::Ok => {
                finishes_ok += 1;
                let parsed = need_u64(finish.input, "job", finish.invoke_index, finish.f)
                    .and_then(|job| Ok((job, need_u64(finish.input, "lease", at, finish.f)?)));
                let (job, lease) = match parsed {
                    Ok(parsed) => parsed,
                    Err(malformed) => {
                        violations.push(malformed);
                        continue;
                    }
                };
                let newer = granted.get(&job).and_then(|by_lease| {
                    by_lease
                        .range(lease + 1..)
                        .map(|(_, granted)| *granted)
                        .filter(|granted| granted.ok_index < finish.invoke_index)
                        .min_by_key(|granted| granted.ok_index)
                });
                if let Some(newer) = newer {
                    violations.push(format!(
                        "{} of job {job} under lease {lease} invoked at event {} succeeded (event \
                         {at}), though the newer lease {} had been granted at event {}",
                        finish.f, finish.invoke_index, newer.lease, newer.ok_index
                    ));
                }
            }
            Outcome::Fail if finish.error.starts_with(STALE_LEASE_PREFIX) => {
                refusals += 1;
                let (job, lease) = (finish.input["job"].as_u64(), finish.input["lease"].as_u64());
                let lease = job.zip(lease).and_then(|(job, lease)| granted.get(&job)?.get(&lease));
                let still_current = lease.filter(|_| clocks_true).and_then(|lease| {
                    let visibility_ms = invoked_of_lease
                        .get(&lease.invoke_index)?
                        .input
                        .get("visibility_ms")?
                        .as_u64()?
                        .min(pessimist_core::queue::machine::VISIBILITY_MS_MAX);
                    let asked_ms = event_time_us(events, lease.invoke_index) / 1000;
                    let refused_ms = event_time_us(events, at) / 1000;
                    // A millisecond of margin: the clocks and the history floor true time to ms from
                    // bases that may differ.
                    (refused_ms + 1 < asked_ms + visibility_ms).then_some((
                        lease,
                        refused_ms - asked_ms,
                        visibility_ms,
                    ))
                });
                match still_current {
                    Some((lease, after_ms, visibility_ms)) => {
                        proven += 1;
                        violations.push(format!(
                            "{} of job {} under lease {} refused as stale (event {at}) {after_ms} \
                             ms after the lease was asked for (event {}) with a visibility of \
                             {visibility_ms} ms, with every clock true: the lease was current",
                            finish.f, lease.job, lease.lease, lease.invoke_index
                        ));
                    }
                    None => unproven += 1,
                }
            }
            _ => {}
        }
    }
    let figures = BTreeMap::from([
        ("acks_and_nacks_ok".into(), json!(finishes_ok)),
        ("stale_refusals".into(), json!(refusals)),
        ("stale_refusals_of_current_leases".into(), json!(proven)),
        ("stale_refusals_unproven".into(), json!(unproven)),
        ("clocks_true".into(), json!(clocks_true)),
    ]);
    Verdict::from_violations(violations, figures)
}

// ---------------------------------------------------------------------------------------------
// Status reads

/// A finished job stays finished: once a job is known `done` (an ok ack, or a status read of
/// `done`, completed), no status read invoked afterwards sees it `queued`, `leased` or
/// `dead_lettered`; once known `dead_lettered` (an ok nack that answered so, or a status read
/// of it), none sees anything but `dead_lettered`. Status reads go through the Raft log, so
/// a read invoked after a completion sees its effect. `unknown` after either is counted
/// (`forgotten_after_finish`), not judged: retention forgets finished jobs on the queue's
/// clock, which clock faults bend.
pub fn status_reads(events: &[Event]) -> Verdict {
    let operations = operations(events);
    let mut violations = Vec::new();
    // job -> (earliest completion that shows it done / dead-lettered).
    let mut done_at: BTreeMap<u64, u64> = BTreeMap::new();
    let mut dead_at: BTreeMap<u64, u64> = BTreeMap::new();
    let earliest = |known: &mut BTreeMap<u64, u64>, job: u64, at: u64| {
        let first = known.entry(job).or_insert(at);
        *first = (*first).min(at);
    };
    let reads: Vec<(&Operation<'_>, Vec<(u64, &str)>)> = operations
        .iter()
        .filter(|o| o.is("status", Outcome::Ok))
        .map(|read| (read, status_pairs(read, &mut violations)))
        .collect();
    for operation in operations.iter().filter(|o| o.outcome == Outcome::Ok) {
        let job = operation.input["job"].as_u64();
        match (operation.f, job) {
            ("ack", Some(job)) => earliest(&mut done_at, job, operation.at()),
            ("nack", Some(job)) if operation.output["dead_lettered"] == json!(true) => {
                earliest(&mut dead_at, job, operation.at())
            }
            _ => {}
        }
    }
    for (read, pairs) in &reads {
        for &(job, status) in pairs {
            match status {
                "done" => earliest(&mut done_at, job, read.at()),
                "dead_lettered" => earliest(&mut dead_at, job, read.at()),
                _ => {}
            }
        }
    }
    let (mut checked, mut forgotten) = (0u64, 0u64);
    for (read, pairs) in &reads {
        for &(job, status) in pairs {
            let done = done_at.get(&job).filter(|&&at| at < read.invoke_index);
            let dead = dead_at.get(&job).filter(|&&at| at < read.invoke_index);
            let (known, since) = match (done, dead) {
                (Some(&at), _) => ("done", at),
                (None, Some(&at)) => ("dead_lettered", at),
                (None, None) => continue,
            };
            checked += 1;
            if status == "unknown" {
                forgotten += 1;
            } else if status != known {
                violations.push(format!(
                    "job {job} known {known} at event {since}, but the status read invoked at \
                     event {} reads {status} (event {})",
                    read.invoke_index,
                    read.at()
                ));
            }
        }
    }
    for (job, done) in &done_at {
        if let Some(dead) = dead_at.get(job) {
            violations.push(format!(
                "job {job} is both done (event {done}) and dead-lettered (event {dead})"
            ));
        }
    }
    let figures = BTreeMap::from([
        ("reads_after_finish".into(), json!(checked)),
        ("forgotten_after_finish".into(), json!(forgotten)),
        ("jobs_done".into(), json!(done_at.len())),
        ("jobs_dead_lettered".into(), json!(dead_at.len())),
    ]);
    Verdict::from_violations(violations, figures)
}

// ---------------------------------------------------------------------------------------------
// FIFO order

/// A completed operation's place in real time and the job it returned.
#[derive(Clone, Copy, Debug)]
struct Timed {
    invoke_index: u64,
    ok_index: u64,
    job: u64,
}

/// Real-time inversions: each `checked` operation must return a greater job than every
/// operation of `completed` that finished before it was invoked. Returns (operation, the
/// greatest job completed before it) for each that does not. O(n log n): two sorts and one
/// sweep that keeps the greatest job completed so far.
fn real_time_inversions(completed: &[Timed], checked: &[Timed]) -> Vec<(Timed, Timed)> {
    let mut by_completion = completed.to_vec();
    by_completion.sort_by_key(|done| done.ok_index);
    let mut by_invoke = checked.to_vec();
    by_invoke.sort_by_key(|item| item.invoke_index);
    let mut inversions = Vec::new();
    let mut greatest: Option<Timed> = None;
    let mut next = 0;
    for item in by_invoke {
        while let Some(done) = by_completion.get(next).filter(|d| d.ok_index < item.invoke_index) {
            if greatest.is_none_or(|g| done.job > g.job) {
                greatest = Some(*done);
            }
            next += 1;
        }
        if let Some(before) = greatest.filter(|g| g.job >= item.job) {
            inversions.push((item, before));
        }
    }
    inversions
}

/// (iv): keys and jobs correspond one to one.
fn key_job_violations(enqueued: &[Enqueued<'_>]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut job_by_key: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut key_by_job: BTreeMap<u64, (&str, u64)> = BTreeMap::new();
    for one in enqueued {
        let (key, job, at) = (one.key, one.job, one.ok_index);
        let (first_job, first_at) = *job_by_key.entry(key).or_insert((job, at));
        if first_job != job {
            violations.push(format!(
                "key {key} enqueued as job {first_job} (event {first_at}) and as job {job} \
                 (event {at})"
            ));
        }
        let (first_key, first_at) = *key_by_job.entry(job).or_insert((key, at));
        if first_key != key {
            violations.push(format!(
                "job {job} returned for key {first_key} (event {first_at}) and for key {key} \
                 (event {at})"
            ));
        }
    }
    violations
}

/// First deliveries in enqueue order: (i) an enqueue invoked after another's ok gets a
/// greater job (unless it is a duplicate, which returns the job its key already has); (ii)
/// among first deliveries (ok leases with attempt 1), one invoked after another's ok gets a
/// greater job; (iii) a job is first delivered once; (iv) different keys never share a job
/// and one key always gets the same job.
pub fn fifo_order(events: &[Event]) -> Verdict {
    let operations = operations(events);
    let mut violations = Vec::new();
    let enqueued = acknowledged_enqueues(&operations, &mut violations);
    let leases = ok_leases(&operations, &mut violations);
    let timed = |invoke_index, ok_index, job| Timed { invoke_index, ok_index, job };

    // A duplicate's job existed before its ok: later enqueues must come after it too.
    let all_enqueues: Vec<Timed> =
        enqueued.iter().map(|e| timed(e.invoke_index, e.ok_index, e.job)).collect();
    let new_enqueues: Vec<Timed> = enqueued
        .iter()
        .filter(|e| !e.duplicate)
        .map(|e| timed(e.invoke_index, e.ok_index, e.job))
        .collect();
    for (late, early) in real_time_inversions(&all_enqueues, &new_enqueues) {
        violations.push(format!(
            "enqueue invoked at event {} got job {}, not above job {} of the enqueue that \
             completed at event {}",
            late.invoke_index, late.job, early.job, early.ok_index
        ));
    }

    let first_deliveries: Vec<&Leased<'_>> = leases.iter().filter(|l| l.attempt == 1).collect();
    let first_timed: Vec<Timed> =
        first_deliveries.iter().map(|l| timed(l.invoke_index, l.ok_index, l.job)).collect();
    for (late, early) in real_time_inversions(&first_timed, &first_timed) {
        violations.push(format!(
            "first delivery invoked at event {} got job {}, not above job {} first delivered at \
             event {}",
            late.invoke_index, late.job, early.job, early.ok_index
        ));
    }

    let mut first_delivered: BTreeMap<u64, &Leased<'_>> = BTreeMap::new();
    for lease in &first_deliveries {
        let first = *first_delivered.entry(lease.job).or_insert(lease);
        if first.ok_index != lease.ok_index {
            violations.push(format!(
                "job {} first delivered twice: leases {} (event {}) and {} (event {}) both say \
                 attempt 1",
                lease.job, first.lease, first.ok_index, lease.lease, lease.ok_index
            ));
        }
    }

    violations.extend(key_job_violations(&enqueued));
    let figures = BTreeMap::from([
        ("enqueues_checked".into(), json!(new_enqueues.len())),
        ("first_deliveries".into(), json!(first_deliveries.len())),
        ("redeliveries".into(), json!(leases.len() - first_deliveries.len())),
    ]);
    Verdict::from_violations(violations, figures)
}

// ---------------------------------------------------------------------------------------------
// Linearizability

/// The history projected onto the `fifo-queue` model.
#[derive(Debug, Default)]
struct Projection {
    ops: Vec<crate::lincheck::Op>,
    /// Per op: (its event index, its client process), to name calls in the witness.
    origin: Vec<(u64, u64)>,
    redeliveries_dropped: u64,
    duplicates_dropped: u64,
    /// Jobs first delivered unseen, projected as dequeues of their payload.
    unseen_first_deliveries: u64,
    /// Uncertain lease operations: those not needed to explain a job vanish.
    uncertain_leases: u64,
    /// Acknowledged jobs with no sign of a delivery that an uncertain lease may still have
    /// taken unseen: each is a dequeue of unknown outcome.
    unknown_dequeues: u64,
    /// Unknown enqueues left out: no dequeue returns their payload.
    unknown_enqueues_dropped: u64,
    /// Jobs first delivered unseen that no uncertain lease left over could have delivered.
    unexplained: Vec<String>,
    /// Idempotency keys of the enqueues projected so far.
    keys: BTreeSet<String>,
}

/// Whether `operation` (an enqueue that did not fail) is the first with its key; records it.
fn first_with_key(operation: &Operation<'_>, projection: &mut Projection) -> bool {
    match operation.input.get("key").and_then(Value::as_str) {
        Some(key) => projection.keys.insert(key.to_string()),
        None => true,
    }
}

/// What one operation becomes in the model: (f, argument, completion), or nothing.
type Projected = Option<(&'static str, Value, Option<(crate::lincheck::OpType, Value)>)>;

fn project_one(
    operation: &Operation<'_>,
    projection: &mut Projection,
) -> Result<Projected, String> {
    use crate::lincheck::OpType;

    Ok(match (operation.f, operation.outcome) {
        (_, Outcome::Fail) => None,
        ("enqueue", _) if !first_with_key(operation, projection) => {
            // An earlier enqueue with this key (ok or info) is the one that took effect; a
            // duplicate answer with no earlier one means this operation's own earlier try
            // did, within its interval.
            projection.duplicates_dropped += 1;
            None
        }
        ("enqueue", outcome) => {
            let payload =
                operation.input.get("payload").filter(|p| !p.is_null()).ok_or_else(|| {
                    format!("event {}: enqueue without a payload", operation.invoke_index)
                })?;
            // An info or open enqueue is unknown: it may take effect at any time after its
            // invoke, or never.
            let completion = match outcome {
                Outcome::Ok => Some((OpType::Ok, Value::Null)),
                _ => Some((OpType::Info, Value::Null)),
            };
            Some(("enqueue", payload.clone(), completion))
        }
        ("lease", Outcome::Ok) => match leased(operation)? {
            None => Some(("dequeue", Value::Null, Some((OpType::Ok, Value::Null)))),
            Some(lease) if lease.attempt == 1 => {
                if lease.payload.is_null() {
                    return Err(format!("event {}: ok lease without a payload", lease.ok_index));
                }
                Some(("dequeue", Value::Null, Some((OpType::Ok, lease.payload.clone()))))
            }
            Some(_) => {
                projection.redeliveries_dropped += 1;
                None
            }
        },
        // Uncertain leases are placed by what they must have done: see `project`.
        _ => None,
    })
}

/// Enqueues and first deliveries as `fifo-queue` calls, in history order, and the unseen
/// first deliveries as dequeues over the span the uncertain leases that could have made them
/// cover (see [`queue_linearizability`] for why this is sound). Each call gets its own
/// lincheck process: pairing is done already, and a process that left an invoke open must not
/// make the projected history invalid.
fn project(operations: &[Operation<'_>]) -> Result<Projection, String> {
    use crate::lincheck::{Op, OpType};

    let mut projection = Projection::default();
    // (event index, op, client process)
    let mut placed: Vec<(u64, Op, u64)> = Vec::new();
    let mut calls = 0u64;
    let mut place = |f: &str,
                     argument: Value,
                     (invoke_at, process): (u64, u64),
                     completion: Option<(OpType, Value, u64)>| {
        let call = calls;
        calls += 1;
        let op = |op_type, value| Op { process: call, op_type, f: f.into(), value, key: None };
        placed.push((invoke_at, op(OpType::Invoke, argument), process));
        if let Some((op_type, value, at)) = completion {
            debug_assert!(at > invoke_at, "a call completes after its invoke");
            placed.push((at, op(op_type, value), process));
        }
    };
    // Keys some enqueue was acknowledged with: their first enqueue must stay.
    let acknowledged_keys: BTreeSet<&str> = operations
        .iter()
        .filter(|o| o.is("enqueue", Outcome::Ok))
        .filter_map(|o| o.input.get("key").and_then(Value::as_str))
        .collect();
    // Payloads some projected dequeue returns (as text: `Value` has no order).
    let mut dequeued: BTreeSet<String> = BTreeSet::new();
    // Unknown enqueues, placed once `dequeued` is complete.
    let mut unknown_enqueues = Vec::new();
    for operation in operations {
        let Some((f, argument, completion)) = project_one(operation, &mut projection)? else {
            continue;
        };
        if let Some((OpType::Ok, value)) = &completion {
            if f == "dequeue" && !value.is_null() {
                dequeued.insert(value.to_string());
            }
        }
        let completion = completion.map(|(op_type, value)| (op_type, value, operation.at()));
        if f == "enqueue" && operation.outcome != Outcome::Ok {
            unknown_enqueues.push((operation, argument, completion));
            continue;
        }
        place(f, argument, (operation.invoke_index, operation.process), completion);
    }

    let mut malformed = Vec::new();
    let jobs = job_evidence(operations, &mut malformed);
    if let Some(first) = malformed.into_iter().next() {
        return Err(first);
    }
    let uncertain = uncertain_leases(operations);
    projection.uncertain_leases = uncertain.len() as u64;
    let unseen: Vec<UnseenFirstDelivery> = jobs
        .iter()
        .filter(|(_, evidence)| !evidence.first_delivery_seen)
        .filter_map(|(&job, evidence)| {
            let (created_after, proven_by) = (evidence.created_after, evidence.leased_by?);
            Some(UnseenFirstDelivery { job, created_after, proven_by })
        })
        .collect();
    let explains = explain_unseen(&unseen, &uncertain);
    let explained: BTreeSet<usize> = explains.iter().flatten().copied().collect();
    for (index, one) in unseen.iter().enumerate() {
        let UnseenFirstDelivery { job, created_after, proven_by } = *one;
        if !explained.contains(&index) {
            projection.unexplained.push(format!(
                "job {job} was leased (event {proven_by} shows it) but its first delivery was \
                 never seen, and no uncertain lease request left over could have made it \
                 ({} unseen first deliveries, {} uncertain lease requests)",
                unseen.len(),
                uncertain.len()
            ));
            continue;
        }
        // Every uncertain lease that could have made it, not only the one the matching
        // chose: the span must cover the truth, and a wider span can only hide a violation.
        let could: Vec<&UncertainLease> =
            uncertain.iter().filter(|l| l.could_lease(created_after, proven_by)).collect();
        let from = could.iter().map(|l| l.invoke_index).min().expect("explained: one could");
        let until = could.iter().map(|l| l.effect_before).max().expect("one could");
        let (from, until) = (from.max(created_after), until.min(proven_by));
        if from >= until {
            projection.unexplained.push(format!(
                "job {job} was leased (event {proven_by} shows it) before any enqueue with its \
                 key was invoked (event {created_after})"
            ));
            continue;
        }
        let Some(payload) = jobs[&job].payload else {
            // Its enqueue was unknown (an ok one gives the payload): leaving both out keeps
            // every other result the same, so nothing is hidden by it that matters here.
            continue;
        };
        projection.unseen_first_deliveries += 1;
        dequeued.insert(payload.to_string());
        let process = could[0].process;
        place("dequeue", Value::Null, (from, process), Some((OpType::Ok, payload.clone(), until)));
    }
    // An unknown enqueue whose payload no dequeue returns is left out: if it took effect, its
    // job was never first delivered in a way the history shows. Keeping it would make the
    // search try it at every point (each a state of its own), which is what made histories
    // with many timed-out enqueues undecidable. Leaving it out can only hide a violation,
    // never raise one: the one hidden is an empty lease while that job sat queued unseen.
    for (operation, argument, completion) in unknown_enqueues {
        let key = operation.input.get("key").and_then(Value::as_str);
        let needed = dequeued.contains(&argument.to_string())
            || key.is_some_and(|key| acknowledged_keys.contains(key));
        if !needed {
            projection.unknown_enqueues_dropped += 1;
            continue;
        }
        place("enqueue", argument, (operation.invoke_index, operation.process), completion);
    }
    // An acknowledged job with no sign of any delivery may still have been taken unseen by
    // an uncertain lease whose job left no trace (only a run whose final read failed ends
    // so): a dequeue of unknown outcome, from the earliest such lease.
    for evidence in jobs.values() {
        if !evidence.acknowledged || evidence.first_delivery_seen || evidence.leased_by.is_some() {
            continue;
        }
        let created_after = evidence.created_after;
        let Some(could) = uncertain.iter().find(|l| l.effect_before > created_after) else {
            continue;
        };
        projection.unknown_dequeues += 1;
        let from = could.invoke_index.max(created_after);
        place("dequeue", Value::Null, (from, could.process), None);
    }

    placed.sort_by_key(|(at, _, _)| *at);
    for (at, op, process) in placed {
        projection.ops.push(op);
        projection.origin.push((at, process));
    }
    Ok(projection)
}

/// The queue is linearizable as a FIFO queue, seen through enqueues and first deliveries.
///
/// Mapping: an ok or info enqueue is `enqueue(payload)` (a fail is dropped; an ok duplicate
/// is dropped, its key's first attempt being the one that took effect; an info one whose
/// payload no dequeue returns, and whose key no ok enqueue has, is dropped); an ok lease with
/// attempt 1 is a `dequeue` returning the payload, an ok lease with `"job": null` one
/// returning empty; an ok lease with attempt above 1 is dropped, and so are failed leases,
/// acks, nacks and status reads. Uncertain leases (info, or open at the end) are not calls
/// of their own: each job first delivered unseen is a `dequeue` returning its payload.
///
/// Why dropping redeliveries is sound: the queue leases the smallest available job id, job
/// ids grow in commit order, and a job never delivered is always available. So when a lease
/// first delivers a job, that job is the oldest never-delivered one: restricted to jobs not
/// yet delivered, the queue is a FIFO queue whose dequeues are the first deliveries, and an
/// empty lease means no never-delivered job was left. A redelivery only returns a job that
/// already left this projected queue.
///
/// Why placing unseen first deliveries is sound. The queue answers every try of a worker's
/// lease request alike (the same lease, `Empty`, or `Spent`), so one lease operation leases
/// at most one job, and an ok one exactly the job it answered: only uncertain operations can
/// have leased unseen, one job each. Such an operation's request took effect, if at all, at
/// some time `t` after its invoke and before the completion of the same worker's next ok
/// lease with a higher request number (`effect_before`; none: unbounded), since the queue
/// answers a request older than the worker's last `Spent`. A job `j` that is known leased
/// (an ok redelivery, ack or nack, a status read of leased, done or dead-lettered, completed
/// at `p`) with no ok first delivery was first delivered by some uncertain operation `u`
/// at `t` with `invoke(u) <= t < effect_before(u)`, `t < p`, and `t` after `j`'s creation,
/// hence after the invoke `c` of the earliest enqueue with its key. The projected dequeue
/// spans from `max(c, min invoke)` to `min(p, max effect_before)`, taken over *every*
/// uncertain operation that satisfies those bounds, so it contains `t` whichever `u` it was:
/// never narrower than the truth. An uncertain operation that first delivered no job either
/// leased nothing (a no-op), redelivered a job (outside the projected queue), or first
/// delivered a job that left no trace: one of an unknown enqueue (leaving out both the
/// enqueue and its dequeue changes no other result in a FIFO queue, and the unknown enqueue
/// may be left out) or an acknowledged job whose final read never completed (kept as a
/// dequeue of unknown outcome). And since one operation explains one job, the unseen first
/// deliveries must be matched to distinct uncertain operations that could have made them:
/// a job left over is a violation (its delivery came from nowhere).
///
/// Like [`crate::check::linearizability`], a search that runs out of its budget
/// ([`crate::lincheck::STATES_EXPLORED_MAX`], states explored) proves nothing either way: the verdict passes
/// with the figure `verdict: unknown` and the reason. A refutation comes with the figure `witness`:
/// the shortest failing prefix's witness, its calls named by event, client and time.
pub fn queue_linearizability(events: &[Event]) -> Verdict {
    let operations = operations(events);
    let projection = match project(&operations) {
        Ok(projection) => projection,
        Err(malformed) => return Verdict::from_violations(vec![malformed], BTreeMap::new()),
    };
    let figures = BTreeMap::from([
        ("operations".to_string(), json!(projection.ops.len())),
        ("redeliveries_dropped".to_string(), json!(projection.redeliveries_dropped)),
        ("duplicate_enqueues_dropped".to_string(), json!(projection.duplicates_dropped)),
        ("uncertain_leases".to_string(), json!(projection.uncertain_leases)),
        ("unseen_first_deliveries".to_string(), json!(projection.unseen_first_deliveries)),
        ("unknown_dequeues".to_string(), json!(projection.unknown_dequeues)),
        ("unknown_enqueues_dropped".to_string(), json!(projection.unknown_enqueues_dropped)),
    ]);
    if !projection.unexplained.is_empty() {
        return Verdict::from_violations(projection.unexplained, figures);
    }
    crate::check::lincheck_verdict(
        "fifo-queue",
        &Value::Null,
        &projection.ops,
        &projection.origin,
        events,
        figures,
    )
}

/// The history [`queue_linearizability`] searches, as a `fifo-queue` history file for
/// `pessimist lincheck` or any other checker of the format (no `expect`: the verdict is the
/// checker's to find). An error names why there is nothing to search: a malformed history,
/// or first deliveries no uncertain lease explains (the check fails those before searching).
pub fn queue_projection(events: &[Event]) -> Result<crate::lincheck::HistoryFile, String> {
    let projection = project(&operations(events))?;
    if let Some(first) = projection.unexplained.into_iter().next() {
        return Err(first);
    }
    Ok(crate::lincheck::HistoryFile {
        model: "fifo-queue".to_string(),
        init: Value::Null,
        expect: None,
        source: Some("queue_linearizability's projection of a queue history".to_string()),
        history: projection.ops,
    })
}

/// The queue recovers after the heal: the drain finishes every acknowledged job within the
/// bound. Figures: the first commit and the first successful client operation after the heal,
/// and how long the drain took.
pub fn queue_liveness(events: &[Event], bound_ms: u64) -> Verdict {
    let mut figures = BTreeMap::from([("bound_ms".to_string(), json!(bound_ms))]);
    let heal = phase_start_us(events, PHASE_HEAL);
    let (Some(heal_us), Some(drain_us)) = (heal, phase_start_us(events, PHASE_DRAIN)) else {
        return Verdict::from_violations(vec!["the run never reached its drain".into()], figures);
    };
    let first_commit = events.iter().find(|event| {
        event.time_us >= heal_us
            && matches!(group_event(event, QUEUE_GROUP), Some((_, "raft_applied", _)))
    });
    if let Some(event) = first_commit {
        figures
            .insert("first_commit_after_heal_ms".into(), json!((event.time_us - heal_us) / 1000));
    }
    let mut invoked_after_heal = BTreeSet::new();
    let mut first_ok = None;
    let mut drained_us = None;
    for event in events {
        match &event.kind {
            EventKind::Invoke { process, .. } if event.time_us >= heal_us => {
                invoked_after_heal.insert(*process);
            }
            EventKind::Ok { process, f, value } => {
                if first_ok.is_none() && invoked_after_heal.contains(process) {
                    first_ok = Some(event.time_us);
                }
                if f == "status" && event.time_us >= drain_us && drained_us.is_none() {
                    let all_finished = value["statuses"].as_array().is_some_and(|statuses| {
                        statuses.iter().all(|pair| {
                            matches!(pair[1].as_str(), Some("done") | Some("dead_lettered"))
                        })
                    });
                    if all_finished {
                        drained_us = Some(event.time_us);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(ok_us) = first_ok {
        figures.insert("first_ok_after_heal_ms".into(), json!((ok_us - heal_us) / 1000));
    }
    let acknowledged = events
        .iter()
        .filter(|event| matches!(&event.kind, EventKind::Ok { f, .. } if f == "enqueue"))
        .count();
    let mut violations = Vec::new();
    match drained_us {
        Some(done_us) => {
            let ms = (done_us - drain_us) / 1000;
            figures.insert("drain_ms".into(), json!(ms));
            if ms > bound_ms {
                violations.push(format!("the drain took {ms} ms, beyond the {bound_ms} ms bound"));
            }
        }
        None if acknowledged == 0 => {
            figures.insert("drain_ms".into(), json!(0));
        }
        None => violations.push(format!(
            "{acknowledged} acknowledged enqueues, and no status read after the heal found \
             them all finished within the {bound_ms} ms bound"
        )),
    }
    Verdict::from_violations(violations, figures)
}

/// Figures on leases, and the clock hazard made visible: a lease *cut short* is one whose ack
/// the queue rejected as stale although the worker acked before its visibility timeout had
/// passed in true time. With true clocks that cannot happen (the lease's deadline is stamped
/// no earlier than the lease was asked for); a leader whose clock runs ahead makes it happen.
/// Figures only (it cannot fail): the scenario that shows the hazard asserts on the figure.
///
/// Distributions: `first_delivery_wait_ms`, how old a job was when first delivered (from its
/// enqueue acknowledged to its first lease granted, 0 if the lease came first), the queue's
/// staleness; `redelivery_after_ms`, how long a job whose lease was lost waited to be leased
/// again (from its previous lease granted to the next).
pub fn leases(events: &[Event]) -> Verdict {
    let operations = operations(events);
    // job -> when its enqueue was first acknowledged
    let mut enqueued_us: BTreeMap<u64, u64> = BTreeMap::new();
    for operation in operations.iter().filter(|operation| operation.is("enqueue", Outcome::Ok)) {
        if let Some(job) = operation.output["job"].as_u64() {
            let acknowledged_us = event_time_us(events, operation.at());
            let first = enqueued_us.entry(job).or_insert(acknowledged_us);
            *first = (*first).min(acknowledged_us);
        }
    }
    // (job, lease) -> (when the lease was asked for, its visibility timeout)
    let mut granted: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    // job -> when its latest lease was granted
    let mut last_granted_us: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut first_wait_ms, mut redelivery_ms) = (Vec::new(), Vec::new());
    let (mut leases, mut redeliveries, mut stale, mut cut_short) = (0u64, 0u64, 0u64, 0u64);
    // In invoke order: a worker's lease is granted before it acks.
    for operation in &operations {
        let invoked_us = event_time_us(events, operation.invoke_index);
        match (operation.f, operation.outcome) {
            ("lease", Outcome::Ok) => {
                let output = operation.output;
                let (Some(job), Some(lease)) = (output["job"].as_u64(), output["lease"].as_u64())
                else {
                    continue;
                };
                leases += 1;
                let granted_us = event_time_us(events, operation.at());
                if output["attempt"].as_u64().unwrap_or(1) > 1 {
                    redeliveries += 1;
                    if let Some(previous_us) = last_granted_us.get(&job) {
                        redelivery_ms.push(granted_us.saturating_sub(*previous_us) as f64 / 1000.0);
                    }
                } else if let Some(enqueued_us) = enqueued_us.get(&job) {
                    first_wait_ms.push(granted_us.saturating_sub(*enqueued_us) as f64 / 1000.0);
                }
                last_granted_us.insert(job, granted_us);
                let visibility_ms = operation.input["visibility_ms"].as_u64().unwrap_or(0);
                granted.insert((job, lease), (invoked_us, visibility_ms));
            }
            ("ack" | "nack", Outcome::Fail)
                if operation.error.starts_with("rejected: StaleLease") =>
            {
                stale += 1;
                let input = operation.input;
                let key =
                    (input["job"].as_u64().unwrap_or(0), input["lease"].as_u64().unwrap_or(0));
                if let Some(&(asked_us, visibility_ms)) = granted.get(&key) {
                    if invoked_us < asked_us + visibility_ms * 1000 {
                        cut_short += 1;
                    }
                }
            }
            _ => {}
        }
    }
    let figures = BTreeMap::from([
        ("leases".to_string(), json!(leases)),
        ("redeliveries".to_string(), json!(redeliveries)),
        ("stale_rejections".to_string(), json!(stale)),
        ("leases_cut_short".to_string(), json!(cut_short)),
    ]);
    Verdict::figures_only(figures)
        .with_distribution(
            "first_delivery_wait_ms",
            Distribution::from_values(
                "ms",
                "queue staleness: from a job's enqueue acknowledged to its first lease granted",
                first_wait_ms,
            ),
        )
        .with_distribution(
            "redelivery_after_ms",
            Distribution::from_values(
                "ms",
                "redelivery: from a job's previous lease granted to the lease that redelivered it",
                redelivery_ms,
            ),
        )
}

/// When `event` records a node becoming leader in a term at least as high as `latest`'s:
/// that term and node. The latest leader a history knows is the one of the highest term.
pub fn newer_leader<'a>(
    event: &'a Event,
    latest: &Option<(u64, String)>,
) -> Option<(u64, &'a str)> {
    let (node, what, detail) = group_event(event, QUEUE_GROUP)?;
    if what != "raft_role" || detail["role"] != "leader" {
        return None;
    }
    let term = detail["term"].as_u64().unwrap_or(0);
    latest.as_ref().is_none_or(|(best, _)| term >= *best).then_some((term, node))
}

/// The latest leader the history knows: the node leading the highest term.
pub fn latest_leader(events: &[Event]) -> Option<(u64, String)> {
    let mut leader = None;
    for event in events {
        if let Some((term, node)) = newer_leader(event, &leader) {
            leader = Some((term, node.to_string()));
        }
    }
    leader
}

/// Failover, measured: for each fault that took the leader away (a crash, isolation or pause
/// aimed at the node leading at that moment), the time from the fault's start to the first
/// entry of a later term applied anywhere: the first commit under the new leader. A loss
/// that no later term followed before the run ended counts as `unrecovered`. Figures only,
/// and the times as the distribution `failover_ms`.
pub fn failover(events: &[Event]) -> Verdict {
    let mut leader: Option<(u64, String)> = None; // (term, node) of the latest leader
    let mut waiting: Vec<(u64, u64)> = Vec::new(); // (fault start us, lost leader's term)
    let mut times_ms: Vec<u64> = Vec::new();
    for event in events {
        if let Some((term, node)) = newer_leader(event, &leader) {
            leader = Some((term, node.to_string()));
            continue;
        }
        match &event.kind {
            EventKind::FaultStart { kind, detail, .. }
                if matches!(kind.as_str(), "crash" | "isolate" | "pause") =>
            {
                if let Some((term, node)) = &leader {
                    if detail["node"].as_str() == Some(node) {
                        waiting.push((event.time_us, *term));
                    }
                }
            }
            EventKind::Internal { what, detail, .. }
                if what == "raft_applied" && detail["group"] == QUEUE_GROUP =>
            {
                let newest = detail["entries"]
                    .as_array()
                    .and_then(|entries| entries.iter().filter_map(|e| e[1].as_u64()).max())
                    .unwrap_or(0);
                waiting.retain(|&(start_us, lost_term)| {
                    if newest > lost_term {
                        times_ms.push((event.time_us - start_us) / 1000);
                        false
                    } else {
                        true
                    }
                });
            }
            _ => {}
        }
    }
    let mut figures = BTreeMap::from([
        ("leader_losses".to_string(), json!(times_ms.len() + waiting.len())),
        ("unrecovered".to_string(), json!(waiting.len())),
        ("failover_ms".to_string(), json!(times_ms)),
    ]);
    let distribution = Distribution::from_values(
        "ms",
        "failover: from a fault taking the leader away to the first commit of a later term",
        times_ms.iter().map(|&ms| ms as f64),
    );
    times_ms.sort_unstable();
    if let Some(&max) = times_ms.last() {
        figures.insert("failover_ms_p50".into(), json!(times_ms[times_ms.len() / 2]));
        figures.insert("failover_ms_max".into(), json!(max));
    }
    Verdict::figures_only(figures).with_distribution("failover_ms", distribution)
}

/// Availability of enqueues around each fault: for every fault window (start to end, or to
/// the heal), the enqueues invoked inside it and how many were acknowledged; the same for the
/// time with no fault active, and for the whole run (`all`: an SLA's figure). Figures only: the CP queue is expected to refuse while it
/// has no majority.
pub fn fault_availability(events: &[Event]) -> Verdict {
    let heal_us = phase_start_us(events, PHASE_HEAL).unwrap_or(u64::MAX);
    // fault id -> (kind, start, end)
    let mut windows: BTreeMap<u64, (String, u64, u64)> = BTreeMap::new();
    // (invoke time, acknowledged) of every enqueue that completed
    let enqueues: Vec<(u64, bool)> = operations(events)
        .into_iter()
        .filter(|operation| operation.f == "enqueue" && operation.outcome != Outcome::Open)
        .map(|operation| {
            (event_time_us(events, operation.invoke_index), operation.outcome == Outcome::Ok)
        })
        .collect();
    for event in events {
        match &event.kind {
            EventKind::FaultStart { fault, kind, .. } => {
                windows.insert(*fault, (kind.clone(), event.time_us, heal_us));
            }
            EventKind::FaultEnd { fault, .. } => {
                if let Some(window) = windows.get_mut(fault) {
                    window.2 = window.2.min(event.time_us);
                }
            }
            _ => {}
        }
    }
    let share = |inside: &dyn Fn(u64) -> bool| {
        let chosen: Vec<bool> =
            enqueues.iter().filter(|(at, _)| inside(*at)).map(|(_, ok)| *ok).collect();
        let ok = chosen.iter().filter(|ok| **ok).count();
        let fraction =
            if chosen.is_empty() { Value::Null } else { json!(ok as f64 / chosen.len() as f64) };
        json!({ "enqueues": chosen.len(), "acknowledged": ok, "fraction": fraction })
    };
    let per_fault: Vec<Value> = windows
        .iter()
        .map(|(id, (kind, start, end))| {
            let mut figure = share(&|at| at >= *start && at < *end);
            figure["fault"] = json!(id);
            figure["kind"] = json!(kind);
            figure["window_ms"] = json!((end.saturating_sub(*start)) / 1000);
            figure
        })
        .collect();
    let calm = share(&|at| !windows.values().any(|(_, start, end)| at >= *start && at < *end));
    let figures = BTreeMap::from([
        ("per_fault".to_string(), json!(per_fault)),
        ("no_fault_active".to_string(), calm),
        ("all".to_string(), share(&|_| true)),
    ]);
    Verdict::figures_only(figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::test_history::*;

    // --- queue_durability

    #[test]
    fn queue_durability_passes_when_every_acknowledged_job_finishes() {
        let mut history = History::default();
        history
            .enqueue(1, 1)
            .enqueue(1, 2)
            .enqueue_as(2, "k1", 1, true)
            .invoke(3, "enqueue", enqueue_in(3))
            .info(3, "enqueue", enqueue_in(3))
            .invoke(4, "enqueue", enqueue_in(4))
            .fail(4, "enqueue", enqueue_in(4), "no leader")
            // Job 1's three leases all ran out: its dead letter is earned.
            .lease(5, 1, 10, 1)
            .lease(5, 1, 11, 2)
            .lease(5, 1, 12, 3)
            .push(EventKind::Phase { name: "final_reads".into(), detail: Value::Null })
            .status(1, &[(1, "leased"), (2, "done")])
            // The last read covering a job decides.
            .status(1, &[(1, "dead_lettered")]);
        let verdict = queue_durability(&history.events, 3);
        check(&verdict, None);
        assert_eq!(verdict.figures["acknowledged_enqueues"], json!(3));
        assert_eq!(verdict.figures["acknowledged_jobs"], json!(2));
        assert_eq!(verdict.figures["done"], json!(1));
        assert_eq!(verdict.figures["dead_lettered"], json!(1));
        assert_eq!(verdict.figures["not_finished"], json!(0));
        assert_eq!(verdict.figures["dead_letters_checked"], json!(1));
        assert_eq!(verdict.figures["dead_letters_unearned"], json!(0));
    }

    #[test]
    fn queue_durability_catches_lost_and_unverified_jobs() {
        let mut history = History::default();
        history.enqueue(1, 1).enqueue(1, 2).enqueue(1, 3).enqueue(1, 4);
        history.status(1, &[(1, "done"), (2, "queued"), (3, "unknown")]);
        let verdict = queue_durability(&history.events, 3);
        check(&verdict, Some("job 2 (key k2, enqueue acknowledged at event 3) ends queued"));
        check(&verdict, Some("job 3 (key k3, enqueue acknowledged at event 5) ends unknown"));
        check(&verdict, Some("job 4 (key k4, enqueue acknowledged at event 7) is in no completed"));
        assert_eq!(verdict.figures["not_finished"], json!(2));
        assert_eq!(verdict.figures["not_read"], json!(1));
    }

    #[test]
    fn queue_durability_fails_when_no_status_read_completed() {
        let mut history = History::default();
        history.enqueue(1, 1).invoke(1, "status", json!({ "jobs": [1] }));
        history.info(1, "status", json!({ "jobs": [1] }));
        check(
            &queue_durability(&history.events, 3),
            Some("not verified: the final status read never completed"),
        );
        // Nothing acknowledged, nothing to verify.
        check(&queue_durability(&History::default().events, 3), None);
    }

    // --- no_double_ack

    #[test]
    fn no_double_ack_passes_retries_under_one_lease_and_counts_rejections() {
        let mut history = History::default();
        history.lease(1, 5, 40, 1).ack(1, 5, 40).ack(1, 5, 40);
        let stale = json!({ "job": 5, "lease": 39 });
        history.invoke(2, "ack", stale.clone()).fail(2, "ack", stale, "rejected: stale lease");
        let lost = json!({ "job": 6, "lease": 41 });
        history.invoke(2, "ack", lost.clone()).info(2, "ack", lost);
        let verdict = no_double_ack(&history.events);
        check(&verdict, None);
        assert_eq!(verdict.figures["acks_ok"], json!(2));
        assert_eq!(verdict.figures["acks_rejected"], json!(1));
        assert_eq!(verdict.figures["jobs_acked"], json!(1));
    }

    #[test]
    fn no_double_ack_catches_a_job_acked_under_two_leases() {
        let mut history = History::default();
        history.ack(1, 5, 40).ack(2, 5, 41);
        check(
            &no_double_ack(&history.events),
            Some("job 5 acknowledged under two leases: 40 (event 1) and 41 (event 3)"),
        );
    }

    // --- fifo_order

    #[test]
    fn fifo_order_passes_concurrent_enqueues_duplicates_and_redeliveries() {
        let mut history = History::default();
        // Overlapping enqueues may commit in either order.
        history
            .invoke(1, "enqueue", enqueue_in(2))
            .invoke(2, "enqueue", enqueue_in(1))
            .ok(2, "enqueue", enqueue_out("k1", 1, false))
            .ok(1, "enqueue", enqueue_out("k2", 2, false))
            .enqueue(1, 3)
            .enqueue_as(2, "k1", 1, true)
            .lease(1, 1, 10, 1)
            .lease(2, 2, 11, 1)
            .lease(2, 1, 12, 2)
            .lease(1, 3, 13, 1)
            .lease_nothing(1);
        let verdict = fifo_order(&history.events);
        check(&verdict, None);
        assert_eq!(verdict.figures["first_deliveries"], json!(3));
        assert_eq!(verdict.figures["redeliveries"], json!(1));
    }

    #[test]
    fn fifo_order_catches_job_ids_against_enqueue_order() {
        let mut history = History::default();
        history.enqueue(1, 5).enqueue(2, 4);
        check(
            &fifo_order(&history.events),
            Some("enqueue invoked at event 2 got job 4, not above job 5 of the enqueue that completed at event 1"),
        );
        // A duplicate reveals a job that existed: later enqueues come after it too.
        let mut history = History::default();
        history.enqueue_as(1, "k9", 9, true).enqueue(2, 7);
        check(&fifo_order(&history.events), Some("got job 7, not above job 9"));
    }

    #[test]
    fn fifo_order_catches_first_deliveries_out_of_order_and_twice() {
        let mut history = History::default();
        history.enqueue(1, 1).enqueue(1, 2).lease(1, 2, 10, 1).lease(1, 1, 11, 1);
        check(
            &fifo_order(&history.events),
            Some("first delivery invoked at event 6 got job 1, not above job 2 first delivered at event 5"),
        );
        let mut history = History::default();
        history.enqueue(1, 1).lease(1, 1, 10, 1).lease(2, 1, 11, 1);
        check(
            &fifo_order(&history.events),
            Some("job 1 first delivered twice: leases 10 (event 3) and 11 (event 5) both say attempt 1"),
        );
    }

    #[test]
    fn fifo_order_catches_keys_and_jobs_that_do_not_correspond() {
        let mut history = History::default();
        history.enqueue_as(1, "k1", 1, false).enqueue_as(1, "k1", 2, false);
        check(
            &fifo_order(&history.events),
            Some("key k1 enqueued as job 1 (event 1) and as job 2"),
        );
        let mut history = History::default();
        history.enqueue_as(1, "k2", 3, false).enqueue_as(1, "k3", 3, true);
        check(
            &fifo_order(&history.events),
            Some("job 3 returned for key k2 (event 1) and for key k3 (event 3)"),
        );
    }

    #[test]
    fn fifo_order_reports_an_ok_enqueue_without_a_job() {
        let mut history = History::default();
        history.invoke(1, "enqueue", enqueue_in(1)).ok(1, "enqueue", json!({ "key": "k1" }));
        check(&fifo_order(&history.events), Some("event 1: ok enqueue without a number \"job\""));
        check(&queue_durability(&history.events, 3), Some("event 1: ok enqueue without"));
    }

    // --- queue_linearizability

    #[test]
    fn queue_linearizability_passes_unknowns_duplicates_and_redeliveries() {
        let mut history = History::default();
        history
            .enqueue(1, 1)
            .invoke(1, "enqueue", enqueue_in(2))
            .info(1, "enqueue", enqueue_in(2))
            .enqueue_as(2, "k1", 1, true)
            .invoke(2, "enqueue", enqueue_in(3))
            .fail(2, "enqueue", enqueue_in(3), "not leader")
            .lease(3, 1, 10, 1)
            .lease(3, 1, 11, 2)
            // A lease that timed out may have taken job 2: the queue may now be empty.
            .invoke(4, "lease", worker(4))
            .info(4, "lease", worker(4))
            .lease_nothing(3)
            .ack(3, 1, 11);
        let verdict = queue_linearizability(&history.events);
        check(&verdict, None);
        assert_eq!(verdict.figures["verdict"], json!("linearizable"));
        assert_eq!(verdict.figures["redeliveries_dropped"], json!(1));
        assert_eq!(verdict.figures["duplicate_enqueues_dropped"], json!(1));
        // Job 2's enqueue timed out and nothing returned its payload: left out.
        assert_eq!(verdict.figures["unknown_enqueues_dropped"], json!(1));
    }

    #[test]
    fn queue_projection_is_the_history_the_check_searches() {
        use crate::lincheck::{check_file, parse_history, Verdict, STATES_EXPLORED_MAX};
        let verdict_of = |history: &History| {
            let file = queue_projection(&history.events).expect("a projection");
            assert_eq!(file.model, "fifo-queue");
            // Written and read back as `pessimist lincheck` reads it.
            let text = serde_json::to_string(&file).expect("serializes");
            let file = parse_history(&text).expect("parses");
            let verdict = check_file(&file, STATES_EXPLORED_MAX).expect("well formed");
            (file.history.len(), verdict)
        };
        let mut history = History::default();
        history
            .enqueue(1, 1)
            .invoke(1, "enqueue", enqueue_in(2))
            .info(1, "enqueue", enqueue_in(2))
            .enqueue_as(2, "k1", 1, true)
            .lease(3, 1, 10, 1)
            .lease(3, 1, 11, 2)
            .invoke(4, "lease", worker(4))
            .info(4, "lease", worker(4))
            .lease_nothing(3);
        let (events, verdict) = verdict_of(&history);
        let checked = queue_linearizability(&history.events);
        assert_eq!(json!(events), checked.figures["operations"]);
        assert!(matches!(verdict, Verdict::Linearizable), "{}", verdict.name());
        assert_eq!(checked.figures["verdict"], json!("linearizable"));

        let mut history = History::default();
        history.enqueue(1, 1).enqueue(1, 2).lease(3, 2, 10, 1);
        let (events, verdict) = verdict_of(&history);
        // Three calls, each an invoke and its completion.
        assert_eq!(events, 6);
        assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "{}", verdict.name());

        let mut history = History::default();
        history.enqueue(1, 1).invoke(2, "lease", worker(2));
        history.ok(2, "lease", json!({ "job": 1, "lease": 10, "attempt": 1 }));
        assert_eq!(
            queue_projection(&history.events).map(|file| file.history.len()),
            Err("event 3: ok lease without a payload".to_string())
        );
    }

    #[test]
    fn queue_linearizability_catches_a_first_delivery_out_of_order() {
        let mut history = History::default();
        history.enqueue(1, 1).enqueue(1, 2).lease(3, 2, 10, 1);
        let verdict = queue_linearizability(&history.events);
        assert_eq!(verdict.figures["verdict"], json!("not-linearizable"));
        // The witness names calls by event index, client process and simulated time.
        check(
            &verdict,
            Some("history[4] process 3 dequeue null -> 1002 (ok at history[5]) from 0.005 s"),
        );
        // The history is explainable until the lease returns job 2 while job 1 waits.
        let refuted = &verdict.figures["witness"]["refuted_by"];
        assert_eq!(refuted["invoke_index"], json!(4), "{refuted}");
        assert_eq!(refuted["completion_index"], json!(5));
        assert_eq!(
            (refuted["process"].clone(), refuted["output"].clone()),
            (json!(3), json!(1002))
        );
        assert_eq!(refuted["invoke_time_us"], json!(5000));
        assert_eq!(refuted["completion_time_us"], json!(6000));
    }

    #[test]
    fn queue_linearizability_catches_an_empty_lease_over_an_undelivered_job() {
        let mut history = History::default();
        history.enqueue(1, 1).enqueue(1, 2).lease(2, 1, 10, 1).lease(2, 1, 11, 2).lease_nothing(2);
        check(
            &queue_linearizability(&history.events),
            Some("dequeue null -> null (ok at history[9])"),
        );
    }

    #[test]
    fn queue_linearizability_reports_a_lease_without_a_payload() {
        let mut history = History::default();
        history.enqueue(1, 1).invoke(2, "lease", worker(2));
        history.ok(2, "lease", json!({ "job": 1, "lease": 10, "attempt": 1 }));
        check(&queue_linearizability(&history.events), Some("event 3: ok lease without a payload"));
    }

    #[test]
    fn real_time_inversions_compare_with_operations_completed_before_the_invoke() {
        let t = |invoke_index, ok_index, job| Timed { invoke_index, ok_index, job };
        // Job 9 completes at 3; the op invoked at 2 overlaps it, the one invoked at 4 does not.
        let all = [t(0, 3, 9), t(2, 5, 1), t(4, 6, 8), t(7, 8, 10)];
        let inversions = real_time_inversions(&all, &all);
        let found: Vec<(u64, u64)> = inversions.iter().map(|(a, b)| (a.job, b.job)).collect();
        assert_eq!(found, vec![(8, 9)]);
    }

    // --- unseen lease tries and duplicate-first enqueues

    /// An uncertain lease of worker `w{process}` with request number `request`.
    fn lease_lost(history: &mut History, process: u64, request: u64) {
        let invoked = json!({ "worker": format!("w{process}"), "request": request });
        history.invoke(process, "lease", invoked.clone()).info(process, "lease", invoked);
    }

    /// An ok lease of worker `w{process}` with request number `request`: `None` leased nothing.
    fn lease_request(
        history: &mut History,
        process: u64,
        request: u64,
        got: Option<(u64, u64, u64)>,
    ) {
        let invoked = json!({ "worker": format!("w{process}"), "request": request });
        let out = match got {
            Some((job, lease, attempt)) => lease_out(job, lease, attempt),
            None => json!({ "job": null }),
        };
        history.invoke(process, "lease", invoked).ok(process, "lease", out);
    }

    #[test]
    fn an_unseen_first_delivery_is_a_dequeue_of_its_payload() {
        // Job 1's first delivery went to a lease whose answer was lost; it is redelivered
        // later, and job 2 is first delivered in between.
        let mut history = History::default();
        history.enqueue(1, 1).enqueue(1, 2);
        lease_lost(&mut history, 3, 1);
        history.lease(4, 2, 11, 1).lease(4, 1, 12, 2).ack(4, 1, 12);
        let verdict = queue_linearizability(&history.events);
        check(&verdict, None);
        assert_eq!(verdict.figures["verdict"], json!("linearizable"));
        assert_eq!(verdict.figures["unseen_first_deliveries"], json!(1));
        assert_eq!(verdict.figures["unknown_dequeues"], json!(0));
        // 2 enqueues, job 2's first delivery and job 1's unseen one: 4 calls, 8 entries.
        assert_eq!(verdict.figures["operations"], json!(8));

        // An empty lease that completed before the lost lease was invoked leaves job 1 in
        // the queue where it cannot be: not linearizable.
        let mut history = History::default();
        history.enqueue(1, 1).lease_nothing(4);
        lease_lost(&mut history, 3, 1);
        history.lease(4, 1, 12, 2);
        check(&queue_linearizability(&history.events), Some("not linearizable"));
    }

    #[test]
    fn an_unseen_first_delivery_needs_an_uncertain_lease_of_its_own() {
        // Job 1 is redelivered, but no lease could have delivered it first.
        let mut history = History::default();
        history.enqueue(1, 1).lease(4, 1, 12, 2);
        check(
            &queue_linearizability(&history.events),
            Some("job 1 was leased (event 3 shows it) but its first delivery was never seen"),
        );
        // Two jobs first delivered unseen, one lost lease: one request leases one job.
        let two_jobs = |lost: u64| {
            let mut history = History::default();
            history.enqueue(1, 1).enqueue(1, 2);
            for process in 0..lost {
                lease_lost(&mut history, 5 + process, 1);
            }
            history.lease(4, 1, 12, 2).lease(4, 2, 13, 2);
            queue_linearizability(&history.events)
        };
        check(&two_jobs(1), Some("(2 unseen first deliveries, 1 uncertain lease requests)"));
        check(&two_jobs(2), None);
    }

    #[test]
    fn a_lost_lease_took_effect_before_its_worker_next_lease_completed() {
        // Worker 3 lost the answer to request 1, then request 2 found the queue empty: request
        // 1 was applied (if at all) before that answer, so before job 1 existed.
        let build = |numbered: bool| {
            let mut history = History::default();
            lease_lost(&mut history, 3, 1);
            lease_request(&mut history, 3, 2, None);
            history.enqueue(1, 1).lease(4, 1, 12, 2);
            if !numbered {
                for event in &mut history.events {
                    if let EventKind::Invoke { value, .. } = &mut event.kind {
                        value.as_object_mut().expect("an object").remove("request");
                    }
                }
            }
            queue_linearizability(&history.events)
        };
        check(&build(true), Some("job 1 was leased (event 7 shows it)"));
        // Without request numbers nothing bounds the lost lease: it may have taken job 1.
        check(&build(false), None);
    }

    #[test]
    fn an_acknowledged_job_with_no_trace_may_have_gone_to_a_lost_lease() {
        // The final read never completed: job 1 may have been taken unseen, and job 2 is
        // first delivered after it.
        let mut history = History::default();
        history.enqueue(1, 1).enqueue(1, 2);
        lease_lost(&mut history, 3, 1);
        history.lease(4, 2, 11, 1);
        let verdict = queue_linearizability(&history.events);
        check(&verdict, None);
        assert_eq!(verdict.figures["unknown_dequeues"], json!(1));
        // No lost lease: job 1 was skipped.
        let mut history = History::default();
        history.enqueue(1, 1).enqueue(1, 2).lease(4, 2, 11, 1);
        check(&queue_linearizability(&history.events), Some("not linearizable"));
    }

    // --- dead letters

    #[test]
    fn a_dead_letter_is_earned_by_max_attempts_leases() {
        let dead_after = |leases: &[(u64, u64)], lost: u64| {
            let mut history = History::default();
            history.enqueue(1, 1);
            for request in 0..lost {
                lease_lost(&mut history, 3, request + 1);
            }
            for &(lease, attempt) in leases {
                history.lease(4, 1, lease, attempt);
            }
            history.status(9, &[(1, "dead_lettered")]);
            queue_durability(&history.events, 3)
        };
        check(&dead_after(&[(10, 1), (11, 2), (12, 3)], 0), None);
        // Two leases seen, one lost lease that may have been the third.
        check(&dead_after(&[(10, 1), (11, 2)], 1), None);
        let verdict = dead_after(&[(10, 1), (11, 2)], 0);
        check(
            &verdict,
            Some("job 1 dead-lettered (event 7 shows it) after at most 2 leases, below max_attempts 3"),
        );
        assert_eq!(verdict.figures["dead_letters_unearned"], json!(1));
        // The same lease twice is one lease (a retry got it back).
        check(&dead_after(&[(10, 1), (10, 1), (11, 2)], 0), Some("after at most 2 leases"));
        // A nack that dead-letters is evidence too, and an acknowledged lease ended well.
        let mut history = History::default();
        history.enqueue(1, 1).lease(4, 1, 10, 1).ack(4, 1, 10).lease(4, 1, 11, 2);
        let nacked = json!({ "job": 1, "lease": 11, "permanent": false });
        history.invoke(4, "nack", nacked.clone()).ok(
            4,
            "nack",
            json!({ "job": 1, "lease": 11, "dead_lettered": true }),
        );
        check(&queue_durability(&history.events, 2), Some("after at most 1 leases"));
        // A permanent failure dead-letters at once.
        let mut history = History::default();
        history.enqueue(1, 1).lease(4, 1, 10, 1);
        let nacked = json!({ "job": 1, "lease": 10, "permanent": true });
        history.invoke(4, "nack", nacked.clone()).ok(
            4,
            "nack",
            json!({ "job": 1, "lease": 10, "dead_lettered": true }),
        );
        let unread = queue_durability(&history.events, 3);
        check(&unread, Some("not verified: the final status read never completed"));
        assert_eq!(unread.figures["dead_letters_unearned"], json!(0));
        history.status(9, &[(1, "dead_lettered")]);
        check(&queue_durability(&history.events, 3), None);
    }

    // --- lease_fencing

    fn lease_for(history: &mut History, process: u64, job: u64, lease: u64, attempt: u64) {
        let invoked = json!({ "worker": format!("w{process}"), "visibility_ms": 2000 });
        history.invoke(process, "lease", invoked).ok(
            process,
            "lease",
            lease_out(job, lease, attempt),
        );
    }

    fn refused(history: &mut History, process: u64, job: u64, lease: u64, current: &str) {
        let value = json!({ "job": job, "lease": lease });
        let error = format!("rejected: StaleLease {{ current: {current} }}");
        history.invoke(process, "ack", value.clone()).fail(process, "ack", value, &error);
    }

    #[test]
    fn lease_fencing_passes_acks_of_current_leases_and_refusals_of_expired_ones() {
        let mut history = History::default();
        history.enqueue(1, 1);
        lease_for(&mut history, 3, 1, 10, 1);
        // Worker 4's lease is newer; worker 3's ack, after it, is refused.
        lease_for(&mut history, 4, 1, 11, 2);
        refused(&mut history, 3, 1, 10, "Some(11)");
        history.ack(4, 1, 11);
        // A clock ran ahead in this run: nothing proves lease 10 was still current.
        history.push(EventKind::FaultStart {
            fault: 1,
            kind: "clock_offset".into(),
            detail: json!({ "node": "queue-1" }),
        });
        let verdict = lease_fencing(&history.events);
        check(&verdict, None);
        assert_eq!(verdict.figures["stale_refusals"], json!(1));
        assert_eq!(verdict.figures["stale_refusals_unproven"], json!(1));
        assert_eq!(verdict.figures["acks_and_nacks_ok"], json!(1));
    }

    #[test]
    fn lease_fencing_catches_a_stale_holder_let_through() {
        let mut history = History::default();
        history.enqueue(1, 1);
        lease_for(&mut history, 3, 1, 10, 1);
        lease_for(&mut history, 4, 1, 11, 2);
        history.ack(3, 1, 10);
        check(
            &lease_fencing(&history.events),
            Some("ack of job 1 under lease 10 invoked at event 6 succeeded (event 7), though the newer lease 11 had been granted at event 5"),
        );
    }

    #[test]
    fn lease_fencing_catches_a_current_lease_refused_with_true_clocks() {
        // Lease 10 was asked for at 3 ms with 2 s of visibility; refused at 5 ms.
        let mut history = History::default();
        history.enqueue(1, 1);
        lease_for(&mut history, 3, 1, 10, 1);
        refused(&mut history, 3, 1, 10, "None");
        check(
            &lease_fencing(&history.events),
            Some("ack of job 1 under lease 10 refused as stale (event 5) 3 ms after the lease was asked for (event 2)"),
        );
        // Long after its visibility ran out, the same refusal proves nothing.
        let mut late = History::default();
        late.enqueue(1, 1);
        lease_for(&mut late, 3, 1, 10, 1);
        for _ in 0..2000 {
            late.push(EventKind::Phase { name: "waiting".into(), detail: Value::Null });
        }
        refused(&mut late, 3, 1, 10, "None");
        let verdict = lease_fencing(&late.events);
        check(&verdict, None);
        assert_eq!(verdict.figures["stale_refusals_unproven"], json!(1));
    }

    // --- status_reads

    #[test]
    fn status_reads_pass_a_job_that_stays_finished() {
        let mut history = History::default();
        history.enqueue(1, 1).enqueue(1, 2).status(9, &[(1, "queued"), (2, "queued")]);
        history.lease(4, 1, 10, 1).status(9, &[(1, "leased")]).ack(4, 1, 10);
        let dead = json!({ "job": 2, "lease": 11, "permanent": true });
        history.lease(4, 2, 11, 1).invoke(4, "nack", dead.clone());
        history.ok(4, "nack", json!({ "job": 2, "lease": 11, "dead_lettered": true }));
        history.status(9, &[(1, "done"), (2, "dead_lettered")]).status(9, &[(1, "unknown")]);
        let verdict = status_reads(&history.events);
        check(&verdict, None);
        assert_eq!(verdict.figures["reads_after_finish"], json!(3));
        assert_eq!(verdict.figures["forgotten_after_finish"], json!(1));
    }

    #[test]
    fn status_reads_catch_a_finished_job_read_unfinished() {
        let mut history = History::default();
        history.enqueue(1, 1).lease(4, 1, 10, 1).ack(4, 1, 10).status(9, &[(1, "leased")]);
        check(
            &status_reads(&history.events),
            Some(
                "job 1 known done at event 5, but the status read invoked at event 6 reads leased",
            ),
        );
        let mut history = History::default();
        history.enqueue(1, 1).status(9, &[(1, "dead_lettered")]).status(9, &[(1, "queued")]);
        check(&status_reads(&history.events), Some("known dead_lettered at event 3"));
        let mut history = History::default();
        history.enqueue(1, 1).status(9, &[(1, "done")]).status(9, &[(1, "dead_lettered")]);
        check(
            &status_reads(&history.events),
            Some("job 1 is both done (event 3) and dead-lettered"),
        );
    }

    #[test]
    fn a_duplicate_answer_with_no_earlier_key_is_the_enqueue_itself() {
        let mut history = History::default();
        // The first try took effect unseen; the retry was answered `duplicate`.
        history.enqueue_as(1, "k1", 1, true).lease(3, 1, 10, 1);
        let verdict = queue_linearizability(&history.events);
        check(&verdict, None);
        assert_eq!(verdict.figures["duplicate_enqueues_dropped"], json!(0));
    }

    // --- leases

    #[test]
    fn leases_counts_a_lease_cut_short_by_a_clock_ahead() {
        let lease_in = json!({ "worker": "w3", "visibility_ms": 2000 });
        let acked = json!({ "job": 1, "lease": 10 });
        let mut history = History::default();
        history
            .enqueue(1, 1)
            .invoke(3, "lease", lease_in.clone())
            .ok(3, "lease", lease_out(1, 10, 1))
            // Redelivered while worker 3 still holds it (a few ms later, not 2 s).
            .invoke(4, "lease", json!({ "worker": "w4", "visibility_ms": 2000 }))
            .ok(4, "lease", lease_out(1, 11, 2))
            .invoke(3, "ack", acked.clone())
            .fail(3, "ack", acked, "rejected: StaleLease { current: Some(11) }")
            .ack(4, 1, 11);
        let verdict = leases(&history.events);
        assert_eq!(verdict.status, crate::check::Status::Figures, "{verdict:#?}");
        assert_eq!(verdict.figures["leases_cut_short"], json!(1));
        assert_eq!(verdict.figures["stale_rejections"], json!(1));
        assert_eq!(verdict.figures["redeliveries"], json!(1));
        // Acknowledged at 2 ms, first leased at 4 ms, redelivered at 6 ms.
        let waits = &verdict.distributions["first_delivery_wait_ms"];
        assert_eq!((waits.unit.as_str(), waits.count, waits.samples.clone()), ("ms", 1, vec![2.0]));
        assert_eq!(verdict.distributions["redelivery_after_ms"].samples, vec![2.0]);
    }

    // --- queue_liveness

    fn phase(history: &mut History, name: &str) {
        history.push(EventKind::Phase { name: name.into(), detail: json!({}) });
    }

    #[test]
    fn queue_liveness_passes_a_drain_within_the_bound() {
        let mut history = History::default();
        history.enqueue(1, 1);
        phase(&mut history, PHASE_HEAL);
        history.applied(1, &[(1, 1)]);
        phase(&mut history, PHASE_DRAIN);
        history.status(9, &[(1, "queued")]).status(9, &[(1, "done")]);
        let verdict = queue_liveness(&history.events, 1_000);
        check(&verdict, None);
        assert!(verdict.figures.contains_key("drain_ms"));
    }

    #[test]
    fn queue_liveness_fails_when_the_drain_never_finishes() {
        let mut history = History::default();
        history.enqueue(1, 1);
        phase(&mut history, PHASE_HEAL);
        phase(&mut history, PHASE_DRAIN);
        history.status(9, &[(1, "leased")]);
        check(&queue_liveness(&history.events, 1_000), Some("no status read after the heal"));
        let mut slow = History::default();
        slow.enqueue(1, 1);
        phase(&mut slow, PHASE_HEAL);
        phase(&mut slow, PHASE_DRAIN);
        slow.status(9, &[(1, "done")]);
        // Each event is 1 ms apart: a 0 ms bound is already exceeded.
        check(&queue_liveness(&slow.events, 0), Some("beyond the 0 ms bound"));
    }
}
