//! The replicated job queue's state machine: pure logic, no I/O, applied on every Raft replica.
//!
//! The Raft driver proposes [`Command`]s, each [`Stamped`] by the proposing leader with its wall
//! clock, and applies every committed one, in log order, through [`QueueMachine::apply`]. The
//! machine answers a [`Response`]; every replica computes the same answer and the same state.
//!
//! # Rules
//!
//! - **Time comes only from stamps.** The machine's clock ([`QueueMachine::now_ms`]) is
//!   `max(previous now, stamp.now_ms)`: it never runs backwards, even when a new leader's clock
//!   is behind the old one's. Before executing any command, the machine expires every lease whose
//!   deadline is `<= now` (in job id order) and then forgets the finished jobs whose retention has
//!   passed. Status reads ([`QueueMachine::status`]) never advance time.
//! - **Enqueue** is idempotent by key: a key that maps to a remembered job answers
//!   `Enqueued { job: original, duplicate: true }` and changes nothing. Otherwise, when the
//!   unfinished jobs (queued + leased) number `max_jobs` the answer is `Full`; else a new job gets
//!   the next id (ids start at 1 and follow apply order, so FIFO order is job id order) and is
//!   `Queued { attempts: 0 }`.
//! - **Lease** takes the oldest available job (smallest id among the queued ones; a job whose
//!   lease expired or was nacked is queued again and keeps its place by id), counts an attempt,
//!   gives it a new lease id (ids start at 1 and are never reused) and the deadline
//!   `now + visibility_ms` (visibility clamped to [`VISIBILITY_MS_MAX`]). `Empty` when no job is
//!   queued. Each worker numbers its lease requests: the machine keeps each worker's last
//!   request and what it got and answers a retry or duplicate of that request the same
//!   (`Empty` if it found nothing), or `Spent` once its lease is gone; an older request is
//!   `Spent`. A request delivered twice never takes two jobs.
//! - **Ack** with the job's current lease makes it `Done`. **Nack** with the current lease fails
//!   the attempt: with `attempts >= max_attempts` the job is dead-lettered with the nack's reason
//!   (bounded to [`NACK_REASON_BYTES_MAX`]), else it is queued again. An ack or nack that does not
//!   carry the current lease changes nothing and is `Rejected`, with the precise reason:
//!   `AlreadyDone`, `DeadLettered`, `StaleLease { current }` (`current: None` when the job is
//!   queued, i.e. its lease expired and it was not leased again) or `UnknownJob`. This is the
//!   *fencing*: a worker whose lease expired cannot complete or fail the job any more, even if
//!   the job was leased again to someone else.
//! - **Ack and nack are idempotent per lease.** An ack or nack that repeats one that took effect
//!   (the same job, lease and kind: a client retry, or a request the network delivered twice)
//!   changes nothing and answers as the first did (`Acked`, or `Nacked` with the first's
//!   `dead_lettered`), for as long as the job is remembered. Each job keeps how each of its
//!   leases that an ack or nack ended ended: at most `max_attempts` entries. So a worker always
//!   learns whether its ack or nack counted. An ack after a nack of the same lease (or the
//!   reverse), or an ack or nack of a lease that expired, is rejected as above.
//! - **Lease expiry** is a nack with the reason `"lease expired after N attempts"`.
//! - **Retention**: a finished (done or dead-lettered) job is remembered for `retention_ms`
//!   after it finished, then forgotten with its idempotency key: its status is `Unknown`, acks
//!   and nacks on it answer `UnknownJob`, and **an enqueue retried with its key after retention
//!   creates a new job** (idempotency holds only within the retention window). Finished jobs
//!   drop their payload: nothing can read it any more.
//! - **Status** answers in the order asked and changes nothing but the time advance (with its
//!   expiries and forgetting) that every command makes.
//!
//! Every operation is O(log n) in the number of remembered jobs (plus the jobs it expires or
//! forgets, each of which happens once per job): the queued jobs are an ordered set of ids, the
//! leases an ordered set of `(deadline, job)`, the finished jobs an ordered set of
//! `(finished_at, job)`, the dead letters a map from their dead-letter order.
//!
//! # Known hazard: a skewed leader clock
//!
//! Lease deadlines are measured on the stamping leader's wall clock, so a skewed leader bends
//! them. A leader whose clock runs **ahead** expires leases early: the job is delivered again
//! while its first worker still works on it (double processing; fencing by lease id keeps the
//! stale worker's ack from counting, but the work is done twice). A leader whose clock is
//! **behind** cannot move the machine's time back (time is a monotonic max), so after a leader
//! with a fast clock, leases outlive their visibility timeout and a job whose worker died sits
//! stuck until the new leader's real time catches up with the old leader's. The
//! `queue-clock-skew` scenario demonstrates both.
//!
//! # Invariants
//!
//! Checked by [`QueueMachine::check_invariants`] (after every step in the tests, and on every
//! restored snapshot):
//! - **Invariant:** every remembered job is in exactly one state, and is in exactly the index of
//!   that state: queued ⇔ in the available set, leased ⇔ in the deadline index, finished ⇔ in
//!   the retention index, dead-lettered ⇔ also in the dead-letter order; its key maps back to it.
//! - **Invariant:** `attempts <= max_attempts`; a queued job has an attempt left
//!   (`attempts < max_attempts`); a leased or finished job has had at least one.
//! - **Invariant:** a job's leases ended by ack or nack are distinct, assigned, fewer than its
//!   attempts plus one, and never its current lease; at most one ended by ack, and only a done
//!   job's, as its last.
//! - **Invariant:** after an apply, no lease has a deadline before `now` (the time advance
//!   expired those at or before it; a lease given with `visibility_ms: 0` ends at `now`, and so
//!   at the next command) and no job finished before `now` is past its retention (one finished
//!   at `now` with `retention_ms: 0` is forgotten by the next command).
//! - **Invariant:** unfinished jobs (queued + leased) never exceed `max_jobs`.
//! - **Invariant:** the machine is a pure function of the commands applied: no clock, no
//!   randomness, only ordered collections.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A job's id: assigned sequentially from 1 in apply order, so FIFO order is job id order.
pub type JobId = u64;
/// A lease's id: assigned sequentially from 1, unique across the queue's whole life.
pub type LeaseId = u64;

/// Longest visibility timeout a lease may ask for (12 hours, as Amazon SQS). Larger requests are
/// clamped, so that a deadline can never overflow and a lease always ends; the `Leased` answer
/// carries the deadline actually given.
pub const VISIBILITY_MS_MAX: u64 = 12 * 60 * 60 * 1000;
/// Longest dead-letter reason kept, in bytes; a longer nack reason is cut at a char boundary.
pub const NACK_REASON_BYTES_MAX: usize = 1024;
/// The first byte of every snapshot: the format of the bytes that follow.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 3;
/// Largest result an ack may carry, in bytes: a job's result lives in the replicated state
/// until the job is forgotten, so it is bounded like everything else there.
pub const RESULT_BYTES_MAX: usize = 1 << 20;

/// The queue's settings. The same on every replica (they are part of snapshots).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    /// Leases a job may have; after the last one fails (expiry or nack) it is dead-lettered.
    /// At least 1.
    pub max_attempts: u32,
    /// How long a finished (done or dead-lettered) job and its idempotency key are remembered.
    /// At least 0.
    pub retention_ms: i64,
    /// Bound on jobs not yet finished (queued + leased); enqueue beyond it answers `Full`.
    pub max_jobs: usize,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig { max_attempts: 3, retention_ms: 600_000, max_jobs: 100_000 }
    }
}

impl QueueConfig {
    /// Checks the settings: `max_attempts >= 1` and `retention_ms >= 0`.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("queue config: max_attempts must be at least 1".to_string());
        }
        if self.retention_ms < 0 {
            return Err(format!(
                "queue config: retention_ms must not be negative, got {}",
                self.retention_ms
            ));
        }
        Ok(())
    }
}

/// What a client asks of the queue. Payloads and results (job specs, thumbnails) are byte
/// strings to serde (`serde_bytes`), so postcard copies them whole rather than a `u8` at a time;
/// the encoded bytes are the same either way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds a job, once per idempotency `key` (within the retention window).
    Enqueue {
        key: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Leases the oldest available job for `visibility_ms`. `request` numbers the worker's
    /// lease requests and must grow per worker name (a worker that restarts takes a new name
    /// or higher numbers): a retry of the last request gets the same lease back while it is
    /// held, and a stale or duplicated request leases nothing.
    Lease { worker: String, visibility_ms: u64, request: u64 },
    /// Completes a job with its `result` (at most [`RESULT_BYTES_MAX`] bytes, kept for as long
    /// as the job is remembered); takes effect only with the job's current lease.
    Ack {
        job: JobId,
        lease: LeaseId,
        #[serde(with = "serde_bytes")]
        result: Vec<u8>,
    },
    /// Fails an attempt; takes effect only with the job's current lease. A `permanent` failure
    /// (the job can never succeed, such as an image that does not decode) dead-letters the job
    /// at once instead of spending its remaining attempts.
    Nack { job: JobId, lease: LeaseId, reason: String, permanent: bool },
    /// Gives a lease back unused: the job is queued again and this lease's attempt does not
    /// count. A worker that cannot run the job now (it runs suspects one at a time) uses it.
    Release { job: JobId, lease: LeaseId },
    /// Reads the status of some jobs.
    Status { jobs: Vec<JobId> },
    /// Reads one job's idempotency key and status (the key tells an API server whose it is).
    Inspect { job: JobId },
}

/// A command as replicated: stamped by the leader that proposed it with the leader's wall clock.
pub type Stamped = crate::replica::Stamped<Command>;

/// The machine's answer to a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `duplicate`: the key was seen before, and `job` is the original job's id.
    Enqueued {
        job: JobId,
        duplicate: bool,
    },
    /// The unfinished jobs number `limit` (`max_jobs`) already.
    Full {
        limit: usize,
    },
    /// `attempt` counts this lease (1 for the first).
    Leased {
        job: JobId,
        lease: LeaseId,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        attempt: u32,
        deadline_ms: i64,
    },
    /// Nothing available to lease.
    Empty,
    /// A lease request already answered whose lease is no longer held, or older than the
    /// worker's last: it leases nothing. Its job, if it had one, went back to the queue.
    Spent {
        request: u64,
    },
    Acked {
        job: JobId,
    },
    Nacked {
        job: JobId,
        dead_lettered: bool,
    },
    Released {
        job: JobId,
    },
    /// An ack or nack that did not take effect.
    Rejected {
        job: JobId,
        reason: Rejection,
    },
    /// One status per job asked, in the order asked.
    Statuses(Vec<(JobId, JobStatus)>),
    /// `key`: `None` when the job is not remembered (and then its status is `Unknown`).
    Inspected {
        job: JobId,
        key: Option<String>,
        status: JobStatus,
    },
}

/// Why an ack or nack did not take effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// Never enqueued, or forgotten after retention.
    UnknownJob,
    /// The lease is not the job's current one; `current: None` when the job is queued.
    StaleLease {
        current: Option<LeaseId>,
    },
    AlreadyDone,
    DeadLettered,
    /// An ack whose result is larger than [`RESULT_BYTES_MAX`].
    ResultTooLarge {
        bytes: usize,
        max: usize,
    },
}

/// A job's state as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    Queued {
        attempts: u32,
    },
    Leased {
        lease: LeaseId,
        deadline_ms: i64,
        attempts: u32,
    },
    Done {
        attempts: u32,
        #[serde(with = "serde_bytes")]
        result: Vec<u8>,
    },
    DeadLettered {
        attempts: u32,
        reason: String,
    },
    /// Never enqueued, or forgotten after retention.
    Unknown,
}

/// How many remembered jobs are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    pub queued: usize,
    pub leased: usize,
    pub done: usize,
    pub dead_lettered: usize,
}

/// Why a snapshot could not be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("queue snapshot is empty")]
    Empty,
    #[error("queue snapshot format {found} is not supported (expected {expected})")]
    UnsupportedVersion { found: u8, expected: u8 },
    #[error("queue snapshot does not decode: {0}")]
    Decode(String),
    #[error("queue snapshot has {0} trailing bytes")]
    TrailingBytes(usize),
    /// The bytes decode, but to a machine that breaks an invariant.
    #[error("queue snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

/// The queue's replicated state. See the module documentation for its rules and invariants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMachine {
    config: QueueConfig,
    now_ms: i64,
    last_applied: u64,
    job_id_next: JobId,
    lease_id_next: LeaseId,
    dead_letter_order_next: u64,
    /// Every remembered job: unfinished, or finished within retention.
    jobs: BTreeMap<JobId, Job>,
    job_by_key: BTreeMap<String, JobId>,
    /// The queued jobs: leasing takes the first.
    available: BTreeSet<JobId>,
    /// The leased jobs by deadline: expiry takes a prefix.
    lease_deadlines: BTreeSet<(i64, JobId)>,
    /// The finished jobs by the time they finished: forgetting takes a prefix.
    finished: BTreeSet<(i64, JobId)>,
    /// The remembered dead-lettered jobs, by the order they were dead-lettered in.
    dead_letters: BTreeMap<u64, JobId>,
    /// Each worker's last lease request and what it got: `(request, Some((job, lease)))`, or
    /// `None` when it found the queue empty.
    last_lease: BTreeMap<String, (u64, Option<(JobId, LeaseId)>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Job {
    key: String,
    /// Emptied when the job finishes.
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    /// What the ack brought; empty until the job is done.
    #[serde(with = "serde_bytes")]
    result: Vec<u8>,
    attempts: u32,
    state: JobState,
    /// The leases an ack or nack ended, in the order they ended, and how: a repeat of that ack
    /// or nack answers the same. At most `max_attempts` entries.
    ended: Vec<(LeaseId, Ended)>,
}

/// How an ack or nack ended a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Ended {
    Acked,
    Nacked { dead_lettered: bool },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum JobState {
    Queued,
    Leased { lease: LeaseId, deadline_ms: i64 },
    Done { finished_at_ms: i64 },
    DeadLettered { finished_at_ms: i64, reason: String, dead_letter_order: u64 },
}

impl QueueMachine {
    /// An empty queue at time 0.
    ///
    /// # Panics
    /// If the config is invalid (see [`QueueConfig::validate`]).
    pub fn new(config: QueueConfig) -> QueueMachine {
        if let Err(problem) = config.validate() {
            panic!("{problem}");
        }
        QueueMachine {
            config,
            now_ms: 0,
            last_applied: 0,
            job_id_next: 1,
            lease_id_next: 1,
            dead_letter_order_next: 0,
            jobs: BTreeMap::new(),
            job_by_key: BTreeMap::new(),
            available: BTreeSet::new(),
            lease_deadlines: BTreeSet::new(),
            finished: BTreeSet::new(),
            dead_letters: BTreeMap::new(),
            last_lease: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Applies one committed command. `index` is its Raft log index, recorded as
    /// [`QueueMachine::last_applied`].
    ///
    /// # Panics
    /// If `index` is not greater than the last applied index: applying an entry twice, or out of
    /// order, would make this replica diverge.
    pub fn apply(&mut self, index: u64, stamped: &Stamped) -> Response {
        assert!(
            index > self.last_applied,
            "queue: log index {index} applied after index {}: indexes must strictly increase",
            self.last_applied
        );
        self.last_applied = index;
        self.now_ms = self.now_ms.max(stamped.now_ms);
        self.expire_leases();
        self.forget_finished();

        let response = match &stamped.command {
            Command::Enqueue { key, payload } => self.enqueue(key, payload),
            Command::Lease { worker, visibility_ms, request } => {
                self.lease_for(worker, *request, *visibility_ms)
            }
            Command::Ack { job, lease, result } => self.ack(*job, *lease, result),
            Command::Nack { job, lease, reason, permanent } => {
                self.nack(*job, *lease, reason, *permanent)
            }
            Command::Release { job, lease } => self.release(*job, *lease),
            Command::Status { jobs } => {
                Response::Statuses(jobs.iter().map(|&job| (job, self.status(job))).collect())
            }
            Command::Inspect { job } => Response::Inspected {
                job: *job,
                key: self.jobs.get(job).map(|remembered| remembered.key.clone()),
                status: self.status(*job),
            },
        };

        debug_assert_eq!(
            self.available.len() + self.lease_deadlines.len() + self.finished.len(),
            self.jobs.len(),
            "queue: every job is queued, leased or finished"
        );
        debug_assert!(self.available.len() + self.lease_deadlines.len() <= self.config.max_jobs);
        response
    }

    /// A job's status, as of the last applied command (reading does not advance time).
    pub fn status(&self, job_id: JobId) -> JobStatus {
        let Some(job) = self.jobs.get(&job_id) else {
            return JobStatus::Unknown;
        };
        let attempts = job.attempts;
        match &job.state {
            JobState::Queued => JobStatus::Queued { attempts },
            JobState::Leased { lease, deadline_ms } => {
                JobStatus::Leased { lease: *lease, deadline_ms: *deadline_ms, attempts }
            }
            JobState::Done { .. } => JobStatus::Done { attempts, result: job.result.clone() },
            JobState::DeadLettered { reason, .. } => {
                JobStatus::DeadLettered { attempts, reason: reason.clone() }
            }
        }
    }

    /// The log index of the last applied command (0 before any).
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    /// The machine's time: the largest stamp applied so far (0 before any).
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub fn depth(&self) -> QueueDepth {
        QueueDepth {
            queued: self.available.len(),
            leased: self.lease_deadlines.len(),
            done: self.finished.len() - self.dead_letters.len(),
            dead_lettered: self.dead_letters.len(),
        }
    }

    /// The remembered dead-lettered jobs, in the order they were dead-lettered.
    pub fn dead_letters(&self) -> Vec<JobId> {
        self.dead_letters.values().copied().collect()
    }

    /// The whole machine as bytes: [`SNAPSHOT_FORMAT_VERSION`], then its postcard encoding.
    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![SNAPSHOT_FORMAT_VERSION])
            .expect("queue: encoding a machine into a Vec cannot fail")
    }

    /// The machine a [`QueueMachine::snapshot`] was taken of. Bytes that do not decode, or that
    /// decode to a machine breaking an invariant, are an error, never a panic.
    pub fn restore(bytes: &[u8]) -> Result<QueueMachine, SnapshotError> {
        let (&version, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                expected: SNAPSHOT_FORMAT_VERSION,
            });
        }
        let (machine, rest): (QueueMachine, &[u8]) =
            postcard::take_from_bytes(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SnapshotError::TrailingBytes(rest.len()));
        }
        machine.check_invariants().map_err(SnapshotError::Inconsistent)?;
        Ok(machine)
    }

    /// Checks every invariant of the module documentation, in O(n log n); the error names the
    /// first one broken. Holds after every apply; [`QueueMachine::restore`] runs it.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.config.validate()?;
        let max_attempts = self.config.max_attempts;
        let now_ms = self.now_ms;
        let mut depth = QueueDepth::default();
        let mut leases = BTreeSet::new();
        for (&job_id, job) in &self.jobs {
            let fail = |what: &str| Err(format!("job {job_id} ({:?}): {what}", job.state));
            if job_id == 0 || job_id >= self.job_id_next {
                return fail("id outside the ids assigned so far");
            }
            if self.job_by_key.get(&job.key) != Some(&job_id) {
                return fail("its idempotency key does not map to it");
            }
            if job.attempts > max_attempts {
                return fail("more attempts than max_attempts");
            }
            let current = match job.state {
                JobState::Leased { lease, .. } => Some(lease),
                _ => None,
            };
            let ended: BTreeSet<LeaseId> = job.ended.iter().map(|&(lease, _)| lease).collect();
            let acks = job.ended.iter().filter(|(_, how)| *how == Ended::Acked).count();
            let acked_last = job.ended.last().is_some_and(|(_, how)| *how == Ended::Acked);
            if ended.len() != job.ended.len()
                || ended.len() > job.attempts as usize
                || ended.iter().any(|&lease| lease == 0 || lease >= self.lease_id_next)
                || current.is_some_and(|lease| ended.contains(&lease))
            {
                return fail("leases ended by ack or nack repeat, exceed attempts, or are current");
            }
            let done = matches!(job.state, JobState::Done { .. });
            if acks > 1 || (acks == 1 && !(done && acked_last)) {
                return fail("a lease ended by ack, but the job is not done by it");
            }
            match &job.state {
                JobState::Queued => {
                    depth.queued += 1;
                    if !self.available.contains(&job_id) {
                        return fail("queued but not available");
                    }
                    if job.attempts >= max_attempts {
                        return fail("queued with no attempt left");
                    }
                }
                JobState::Leased { lease, deadline_ms } => {
                    depth.leased += 1;
                    if !self.lease_deadlines.contains(&(*deadline_ms, job_id)) {
                        return fail("leased but not in the deadline index");
                    }
                    if *deadline_ms < now_ms {
                        return fail("lease past its deadline not expired");
                    }
                    if *lease == 0 || *lease >= self.lease_id_next || !leases.insert(*lease) {
                        return fail("lease id not assigned, or held by two jobs");
                    }
                    if job.attempts == 0 {
                        return fail("leased without an attempt counted");
                    }
                }
                JobState::Done { finished_at_ms }
                | JobState::DeadLettered { finished_at_ms, .. } => {
                    if !self.finished.contains(&(*finished_at_ms, job_id)) {
                        return fail("finished but not in the retention index");
                    }
                    let past_retention = *finished_at_ms < now_ms
                        && finished_at_ms.saturating_add(self.config.retention_ms) <= now_ms;
                    if *finished_at_ms > now_ms || past_retention {
                        return fail("finished in the future, or past retention");
                    }
                    if job.attempts == 0 || !job.payload.is_empty() {
                        return fail("finished without an attempt, or still holding its payload");
                    }
                    match &job.state {
                        JobState::DeadLettered { dead_letter_order, .. } => {
                            depth.dead_lettered += 1;
                            if self.dead_letters.get(dead_letter_order) != Some(&job_id)
                                || *dead_letter_order >= self.dead_letter_order_next
                            {
                                return fail("dead-lettered but not in the dead-letter order");
                            }
                        }
                        _ => depth.done += 1,
                    }
                }
            }
        }
        // Each job is in the index of its state (above); equal sizes mean the indexes hold
        // nothing else.
        if depth != self.depth() || self.job_by_key.len() != self.jobs.len() {
            return Err(format!(
                "indexes hold other entries than the jobs: jobs say {depth:?}, indexes say \
                 {:?}; {} keys for {} jobs",
                self.depth(),
                self.job_by_key.len(),
                self.jobs.len()
            ));
        }
        if depth.queued + depth.leased > self.config.max_jobs {
            return Err(format!(
                "{} unfinished jobs, more than max_jobs {}",
                depth.queued + depth.leased,
                self.config.max_jobs
            ));
        }
        Ok(())
    }

    fn enqueue(&mut self, key: &str, payload: &[u8]) -> Response {
        if let Some(&job) = self.job_by_key.get(key) {
            return Response::Enqueued { job, duplicate: true };
        }
        let unfinished = self.available.len() + self.lease_deadlines.len();
        assert!(unfinished <= self.config.max_jobs, "queue: unfinished jobs exceed max_jobs");
        if unfinished >= self.config.max_jobs {
            return Response::Full { limit: self.config.max_jobs };
        }
        let job_id = self.job_id_next;
        self.job_id_next += 1;
        let job = Job {
            key: key.to_string(),
            payload: payload.to_vec(),
            result: Vec::new(),
            attempts: 0,
            state: JobState::Queued,
            ended: Vec::new(),
        };
        let previous = self.jobs.insert(job_id, job);
        assert!(previous.is_none(), "queue: job id {job_id} assigned twice");
        self.job_by_key.insert(key.to_string(), job_id);
        self.available.insert(job_id);
        Response::Enqueued { job: job_id, duplicate: false }
    }

    /// A lease for `worker`'s request `request`. Request numbers grow per worker: a request
    /// newer than the worker's last one leases afresh; the last one again (a client retry
    /// after a lost answer, a frame the network delivered twice) gets the same answer: its
    /// lease while held, `Empty` if it found the queue empty, `Spent` once its lease is gone;
    /// an older one is `Spent`. One request never takes two jobs.
    fn lease_for(&mut self, worker: &str, request: u64, visibility_ms: u64) -> Response {
        if let Some(&(answered, granted)) = self.last_lease.get(worker) {
            if request < answered {
                return Response::Spent { request };
            }
            if request == answered {
                let Some((job_id, lease)) = granted else { return Response::Empty };
                let held = self.jobs.get(&job_id).and_then(|job| match job.state {
                    JobState::Leased { lease: current, deadline_ms } if current == lease => {
                        Some(Response::Leased {
                            job: job_id,
                            lease,
                            payload: job.payload.clone(),
                            attempt: job.attempts,
                            deadline_ms,
                        })
                    }
                    _ => None,
                });
                return held.unwrap_or(Response::Spent { request });
            }
        }
        let response = self.lease(visibility_ms);
        let granted = match &response {
            Response::Leased { job, lease, .. } => Some((*job, *lease)),
            _ => None,
        };
        self.last_lease.insert(worker.to_string(), (request, granted));
        response
    }

    fn lease(&mut self, visibility_ms: u64) -> Response {
        let Some(job_id) = self.available.pop_first() else {
            return Response::Empty;
        };
        let job = self.jobs.get_mut(&job_id).expect("queue: an available job is remembered");
        assert_eq!(job.state, JobState::Queued, "queue: available job {job_id} is queued");
        assert!(job.attempts < self.config.max_attempts, "queue: a queued job has an attempt left");
        job.attempts += 1;
        let lease = self.lease_id_next;
        self.lease_id_next += 1;
        let visibility_ms = visibility_ms.min(VISIBILITY_MS_MAX) as i64;
        let deadline_ms = self.now_ms.saturating_add(visibility_ms);
        job.state = JobState::Leased { lease, deadline_ms };
        self.lease_deadlines.insert((deadline_ms, job_id));
        Response::Leased {
            job: job_id,
            lease,
            payload: job.payload.clone(),
            attempt: job.attempts,
            deadline_ms,
        }
    }

    fn ack(&mut self, job_id: JobId, lease: LeaseId, result: &[u8]) -> Response {
        if let Err(reason) = self.check_current_lease(job_id, lease) {
            if self.ended(job_id, lease) == Some(Ended::Acked) {
                return Response::Acked { job: job_id };
            }
            return Response::Rejected { job: job_id, reason };
        }
        if result.len() > RESULT_BYTES_MAX {
            let reason = Rejection::ResultTooLarge { bytes: result.len(), max: RESULT_BYTES_MAX };
            return Response::Rejected { job: job_id, reason };
        }
        let now_ms = self.now_ms;
        let job = self.jobs.get_mut(&job_id).expect("queue: a job with a current lease exists");
        let JobState::Leased { deadline_ms, .. } = job.state else {
            unreachable!("queue: a job with a current lease is leased");
        };
        let removed = self.lease_deadlines.remove(&(deadline_ms, job_id));
        assert!(removed, "queue: leased job {job_id} is in the deadline index");
        job.state = JobState::Done { finished_at_ms: now_ms };
        job.payload = Vec::new();
        job.result = result.to_vec();
        job.ended.push((lease, Ended::Acked));
        self.finished.insert((now_ms, job_id));
        Response::Acked { job: job_id }
    }

    fn nack(&mut self, job_id: JobId, lease: LeaseId, reason: &str, permanent: bool) -> Response {
        if let Err(rejection) = self.check_current_lease(job_id, lease) {
            if let Some(Ended::Nacked { dead_lettered }) = self.ended(job_id, lease) {
                return Response::Nacked { job: job_id, dead_lettered };
            }
            return Response::Rejected { job: job_id, reason: rejection };
        }
        let dead_lettered = self.fail_attempt(job_id, reason, permanent);
        let job = self.jobs.get_mut(&job_id).expect("queue: a nacked job is remembered");
        job.ended.push((lease, Ended::Nacked { dead_lettered }));
        Response::Nacked { job: job_id, dead_lettered }
    }

    /// How an ack or nack ended `job_id`'s `lease`, if one did.
    fn ended(&self, job_id: JobId, lease: LeaseId) -> Option<Ended> {
        let job = self.jobs.get(&job_id)?;
        job.ended.iter().find(|(ended, _)| *ended == lease).map(|&(_, how)| how)
    }

    fn release(&mut self, job_id: JobId, lease: LeaseId) -> Response {
        if let Err(reason) = self.check_current_lease(job_id, lease) {
            return Response::Rejected { job: job_id, reason };
        }
        let job = self.jobs.get_mut(&job_id).expect("queue: a job with a current lease exists");
        let JobState::Leased { deadline_ms, .. } = job.state else {
            unreachable!("queue: a job with a current lease is leased");
        };
        let removed = self.lease_deadlines.remove(&(deadline_ms, job_id));
        assert!(removed, "queue: leased job {job_id} is in the deadline index");
        assert!(job.attempts >= 1, "queue: a leased job has had an attempt");
        job.attempts -= 1;
        job.state = JobState::Queued;
        self.available.insert(job_id);
        Response::Released { job: job_id }
    }

    /// Whether `lease` is `job_id`'s current lease, and if not, why.
    fn check_current_lease(&self, job_id: JobId, lease: LeaseId) -> Result<(), Rejection> {
        let Some(job) = self.jobs.get(&job_id) else {
            return Err(Rejection::UnknownJob);
        };
        match job.state {
            JobState::Leased { lease: current, .. } if current == lease => Ok(()),
            JobState::Leased { lease: current, .. } => {
                Err(Rejection::StaleLease { current: Some(current) })
            }
            JobState::Queued => Err(Rejection::StaleLease { current: None }),
            JobState::Done { .. } => Err(Rejection::AlreadyDone),
            JobState::DeadLettered { .. } => Err(Rejection::DeadLettered),
        }
    }

    /// Ends a leased job's attempt as failed: dead-lettered when it was its last attempt or the
    /// failure is `permanent`, else queued again. Returns whether it was dead-lettered.
    fn fail_attempt(&mut self, job_id: JobId, reason: &str, permanent: bool) -> bool {
        let now_ms = self.now_ms;
        let job = self.jobs.get_mut(&job_id).expect("queue: a failing job is remembered");
        let JobState::Leased { deadline_ms, .. } = job.state else {
            panic!("queue: only a leased job can fail an attempt, job {job_id} is {:?}", job.state);
        };
        let removed = self.lease_deadlines.remove(&(deadline_ms, job_id));
        assert!(removed, "queue: leased job {job_id} is in the deadline index");
        assert!(
            (1..=self.config.max_attempts).contains(&job.attempts),
            "queue: a leased job has had between 1 and max_attempts attempts"
        );
        if permanent || job.attempts >= self.config.max_attempts {
            let dead_letter_order = self.dead_letter_order_next;
            self.dead_letter_order_next += 1;
            job.state = JobState::DeadLettered {
                finished_at_ms: now_ms,
                reason: bounded_reason(reason),
                dead_letter_order,
            };
            job.payload = Vec::new();
            self.finished.insert((now_ms, job_id));
            self.dead_letters.insert(dead_letter_order, job_id);
            true
        } else {
            job.state = JobState::Queued;
            self.available.insert(job_id);
            false
        }
    }

    /// Expires every lease whose deadline is `<= now`, in job id order.
    fn expire_leases(&mut self) {
        let mut expired: Vec<JobId> = self
            .lease_deadlines
            .range(..=(self.now_ms, JobId::MAX))
            .map(|&(_deadline_ms, job_id)| job_id)
            .collect();
        expired.sort_unstable();
        for job_id in expired {
            let attempts = self.jobs[&job_id].attempts;
            self.fail_attempt(job_id, &format!("lease expired after {attempts} attempts"), false);
        }
        debug_assert!(self.lease_deadlines.first().is_none_or(|&(d, _)| d > self.now_ms));
    }

    /// Forgets every finished job (and its key) whose retention has passed.
    fn forget_finished(&mut self) {
        while let Some(&(finished_at_ms, job_id)) = self.finished.first() {
            if finished_at_ms.saturating_add(self.config.retention_ms) > self.now_ms {
                break;
            }
            self.finished.pop_first();
            let job = self.jobs.remove(&job_id).expect("queue: a finished job is remembered");
            let key_job = self.job_by_key.remove(&job.key);
            assert_eq!(key_job, Some(job_id), "queue: a job's key maps to it");
            match job.state {
                JobState::Done { .. } => {}
                JobState::DeadLettered { dead_letter_order, .. } => {
                    let removed = self.dead_letters.remove(&dead_letter_order);
                    assert_eq!(removed, Some(job_id), "queue: dead letter {job_id} is in order");
                }
                state => panic!("queue: job {job_id} in the retention index is {state:?}"),
            }
        }
    }
}

/// `reason`, cut to at most [`NACK_REASON_BYTES_MAX`] bytes at a char boundary.
fn bounded_reason(reason: &str) -> String {
    let mut end = reason.len().min(NACK_REASON_BYTES_MAX);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Applies a script of `(stamp, command, expected response)` to a new machine, checking the
    /// invariants after every step; returns the machine for further checks.
    fn check(config: QueueConfig, script: &[(i64, Command, Response)]) -> QueueMachine {
        let mut machine = QueueMachine::new(config);
        for (step, (now_ms, command, expected)) in script.iter().enumerate() {
            let stamped = Stamped { now_ms: *now_ms, command: command.clone() };
            let response = machine.apply(step as u64 + 1, &stamped);
            assert_eq!(&response, expected, "step {step}, stamped {now_ms} ms: {command:?}");
            if let Err(problem) = machine.check_invariants() {
                panic!("step {step}: {problem}");
            }
        }
        machine
    }

    fn config(max_attempts: u32, retention_ms: i64, max_jobs: usize) -> QueueConfig {
        QueueConfig { max_attempts, retention_ms, max_jobs }
    }

    fn enqueue(key: &str, payload: &str) -> Command {
        Command::Enqueue { key: key.to_string(), payload: payload.as_bytes().to_vec() }
    }
    /// A fresh lease request (never a retry).
    fn lease(visibility_ms: u64) -> Command {
        static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let request = REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Command::Lease { worker: "w".to_string(), visibility_ms, request }
    }
    fn lease_request(worker: &str, request: u64, visibility_ms: u64) -> Command {
        Command::Lease { worker: worker.to_string(), visibility_ms, request }
    }
    fn ack(job: JobId, lease: LeaseId) -> Command {
        Command::Ack { job, lease, result: result_of(job, lease) }
    }
    /// What the tests' acks carry: different for every job and lease.
    fn result_of(job: JobId, lease: LeaseId) -> Vec<u8> {
        format!("result of job {job} under lease {lease}").into_bytes()
    }
    fn nack(job: JobId, lease: LeaseId, reason: &str) -> Command {
        Command::Nack { job, lease, reason: reason.to_string(), permanent: false }
    }
    fn fail_permanently(job: JobId, lease: LeaseId, reason: &str) -> Command {
        Command::Nack { job, lease, reason: reason.to_string(), permanent: true }
    }
    fn status(jobs: &[JobId]) -> Command {
        Command::Status { jobs: jobs.to_vec() }
    }

    fn enqueued(job: JobId) -> Response {
        Response::Enqueued { job, duplicate: false }
    }
    fn duplicate(job: JobId) -> Response {
        Response::Enqueued { job, duplicate: true }
    }
    fn leased(
        job: JobId,
        lease: LeaseId,
        payload: &str,
        attempt: u32,
        deadline_ms: i64,
    ) -> Response {
        let payload = payload.as_bytes().to_vec();
        Response::Leased { job, lease, payload, attempt, deadline_ms }
    }
    fn rejected(job: JobId, reason: Rejection) -> Response {
        Response::Rejected { job, reason }
    }
    fn stale(job: JobId, current: Option<LeaseId>) -> Response {
        rejected(job, Rejection::StaleLease { current })
    }
    fn statuses(pairs: &[(JobId, JobStatus)]) -> Response {
        Response::Statuses(pairs.to_vec())
    }
    fn dead(attempts: u32, reason: &str) -> JobStatus {
        JobStatus::DeadLettered { attempts, reason: reason.to_string() }
    }

    #[test]
    fn a_retried_lease_request_gets_the_same_lease_while_it_is_held() {
        check(
            QueueConfig::default(),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (1, enqueue("b", "pb"), enqueued(2)),
                (2, lease_request("w1", 7, 100), leased(1, 1, "pa", 1, 102)),
                // The answer was lost; the retry must not lease job 2 as well.
                (3, lease_request("w1", 7, 100), leased(1, 1, "pa", 1, 102)),
                // Another worker with the same request number is another request.
                (4, lease_request("w2", 7, 100), leased(2, 2, "pb", 1, 104)),
                (5, lease_request("w1", 8, 100), Response::Empty),
                (6, enqueue("c", "pc"), enqueued(3)),
                // A duplicate of request 8, which found the queue empty, takes nothing.
                (7, lease_request("w1", 8, 100), Response::Empty),
                (8, lease_request("w1", 9, 100), leased(3, 3, "pc", 1, 108)),
                (9, ack(3, 3), Response::Acked { job: 3 }),
                // An older request leases nothing: one request never takes two jobs.
                (200, lease_request("w1", 7, 100), Response::Spent { request: 7 }),
                (201, lease_request("w1", 10, 100), leased(1, 4, "pa", 2, 301)),
                // A late duplicate of request 7 after request 10 was granted is stale.
                (202, lease_request("w1", 7, 100), Response::Spent { request: 7 }),
                (203, ack(1, 4), Response::Acked { job: 1 }),
                // And so is a duplicate of request 10 once its lease is acked.
                (204, lease_request("w1", 10, 100), Response::Spent { request: 10 }),
            ],
        );
    }

    #[test]
    fn a_permanent_failure_dead_letters_at_once_and_results_are_bounded() {
        let too_large = vec![0u8; RESULT_BYTES_MAX + 1];
        check(
            QueueConfig { max_attempts: 5, ..QueueConfig::default() },
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, enqueue("b", "pb"), enqueued(2)),
                (0, lease(100), leased(1, 1, "pa", 1, 100)),
                (
                    1,
                    fail_permanently(1, 1, "not an image"),
                    Response::Nacked { job: 1, dead_lettered: true },
                ),
                (2, lease(100), leased(2, 2, "pb", 1, 102)),
                (
                    3,
                    Command::Ack { job: 2, lease: 2, result: too_large },
                    rejected(
                        2,
                        Rejection::ResultTooLarge {
                            bytes: RESULT_BYTES_MAX + 1,
                            max: RESULT_BYTES_MAX,
                        },
                    ),
                ),
                (4, ack(2, 2), Response::Acked { job: 2 }),
                (
                    5,
                    Command::Inspect { job: 1 },
                    Response::Inspected {
                        job: 1,
                        key: Some("a".into()),
                        status: dead(1, "not an image"),
                    },
                ),
                (
                    5,
                    Command::Inspect { job: 2 },
                    Response::Inspected {
                        job: 2,
                        key: Some("b".into()),
                        status: JobStatus::Done { attempts: 1, result: result_of(2, 2) },
                    },
                ),
                (
                    5,
                    Command::Inspect { job: 3 },
                    Response::Inspected { job: 3, key: None, status: JobStatus::Unknown },
                ),
            ],
        );
    }

    #[test]
    fn enqueue_is_idempotent_by_key() {
        use JobStatus::*;
        check(
            QueueConfig::default(),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (1, enqueue("b", "pb"), enqueued(2)),
                (2, enqueue("a", "other"), duplicate(1)),
                (3, lease(100), leased(1, 1, "pa", 1, 103)),
                (4, ack(1, 1), Response::Acked { job: 1 }),
                (5, enqueue("a", "again"), duplicate(1)),
                (
                    6,
                    status(&[1, 2, 3]),
                    statuses(&[
                        (1, Done { attempts: 1, result: result_of(1, 1) }),
                        (2, Queued { attempts: 0 }),
                        (3, Unknown),
                    ]),
                ),
            ],
        );
    }

    #[test]
    fn lease_takes_the_oldest_available_job() {
        check(
            QueueConfig::default(),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, enqueue("b", "pb"), enqueued(2)),
                (0, enqueue("c", "pc"), enqueued(3)),
                (0, lease(100), leased(1, 1, "pa", 1, 100)),
                (0, lease(100), leased(2, 2, "pb", 1, 100)),
                (1, nack(1, 1, "try again"), Response::Nacked { job: 1, dead_lettered: false }),
                // Queued again, job 1 keeps its place ahead of job 3.
                (2, lease(100), leased(1, 3, "pa", 2, 102)),
                (3, lease(100), leased(3, 4, "pc", 1, 103)),
                (4, lease(100), Response::Empty),
            ],
        );
    }

    #[test]
    fn a_stale_lease_is_fenced_after_expiry_and_a_new_lease() {
        use JobStatus::*;
        check(
            QueueConfig::default(),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, lease(100), leased(1, 1, "pa", 1, 100)),
                (
                    99,
                    status(&[1]),
                    statuses(&[(1, Leased { lease: 1, deadline_ms: 100, attempts: 1 })]),
                ),
                // A lease ends at its deadline, inclusive.
                (100, status(&[1]), statuses(&[(1, Queued { attempts: 1 })])),
                (100, ack(1, 1), stale(1, None)),
                (101, lease(100), leased(1, 2, "pa", 2, 201)),
                (102, ack(1, 1), stale(1, Some(2))),
                (102, nack(1, 1, "late"), stale(1, Some(2))),
                (103, ack(1, 2), Response::Acked { job: 1 }),
                // A repeated ack answers as the first did; a nack of the acked lease is refused.
                (104, ack(1, 2), Response::Acked { job: 1 }),
                (104, nack(1, 2, "late"), rejected(1, Rejection::AlreadyDone)),
                (105, ack(2, 1), rejected(2, Rejection::UnknownJob)),
                (105, ack(0, 1), rejected(0, Rejection::UnknownJob)),
            ],
        );
    }

    #[test]
    fn nacks_count_attempts_and_dead_letter_at_max_attempts() {
        let machine = check(
            config(2, 600_000, 10),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, lease(100), leased(1, 1, "pa", 1, 100)),
                (1, nack(1, 1, "boom"), Response::Nacked { job: 1, dead_lettered: false }),
                (2, lease(100), leased(1, 2, "pa", 2, 102)),
                (3, nack(1, 2, "boom again"), Response::Nacked { job: 1, dead_lettered: true }),
                (4, status(&[1]), statuses(&[(1, dead(2, "boom again"))])),
                (5, lease(100), Response::Empty),
                (6, ack(1, 2), rejected(1, Rejection::DeadLettered)),
                // A repeated nack (a retry, or a request delivered twice) answers as the first.
                (6, nack(1, 2, "again"), Response::Nacked { job: 1, dead_lettered: true }),
                (6, nack(1, 1, "boom"), Response::Nacked { job: 1, dead_lettered: false }),
                (6, ack(1, 1), rejected(1, Rejection::DeadLettered)),
            ],
        );
        assert_eq!(machine.dead_letters(), vec![1]);
        let depth = QueueDepth { queued: 0, leased: 0, done: 0, dead_lettered: 1 };
        assert_eq!(machine.depth(), depth);
    }

    #[test]
    fn expiries_count_attempts_and_dead_letter_at_max_attempts() {
        check(
            QueueConfig::default(),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, lease(10), leased(1, 1, "pa", 1, 10)),
                (10, lease(10), leased(1, 2, "pa", 2, 20)),
                (20, lease(10), leased(1, 3, "pa", 3, 30)),
                (
                    29,
                    status(&[1]),
                    statuses(&[(1, JobStatus::Leased { lease: 3, deadline_ms: 30, attempts: 3 })]),
                ),
                (30, status(&[1]), statuses(&[(1, dead(3, "lease expired after 3 attempts"))])),
                (31, lease(10), Response::Empty),
                (31, ack(1, 3), rejected(1, Rejection::DeadLettered)),
            ],
        );
    }

    #[test]
    fn dead_letters_keep_the_order_they_were_dead_lettered_in() {
        let machine = check(
            config(1, 600_000, 10),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, enqueue("b", "pb"), enqueued(2)),
                (0, lease(50), leased(1, 1, "pa", 1, 50)),
                (0, lease(10), leased(2, 2, "pb", 1, 10)),
                (0, enqueue("c", "pc"), enqueued(3)),
                (0, enqueue("d", "pd"), enqueued(4)),
                (0, lease(500), leased(3, 3, "pc", 1, 500)),
                (0, lease(500), leased(4, 4, "pd", 1, 500)),
                // Both expire before this command, in job id order (not deadline order).
                (100, nack(4, 4, "d failed"), Response::Nacked { job: 4, dead_lettered: true }),
                (101, nack(3, 3, "c failed"), Response::Nacked { job: 3, dead_lettered: true }),
            ],
        );
        assert_eq!(machine.dead_letters(), vec![1, 2, 4, 3]);
        assert_eq!(machine.status(2), dead(1, "lease expired after 1 attempts"));
    }

    #[test]
    fn enqueue_is_full_at_max_jobs_until_a_job_finishes() {
        check(
            config(3, 600_000, 2),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, enqueue("b", "pb"), enqueued(2)),
                (0, enqueue("c", "pc"), Response::Full { limit: 2 }),
                // A duplicate is answered even when full: it adds nothing.
                (0, enqueue("a", "pa"), duplicate(1)),
                (0, lease(100), leased(1, 1, "pa", 1, 100)),
                (1, enqueue("c", "pc"), Response::Full { limit: 2 }),
                (2, ack(1, 1), Response::Acked { job: 1 }),
                (3, enqueue("c", "pc"), enqueued(3)),
                (3, enqueue("d", "pd"), Response::Full { limit: 2 }),
            ],
        );
    }

    #[test]
    fn time_never_runs_backwards() {
        use JobStatus::*;
        let machine = check(
            QueueConfig::default(),
            &[
                (1_000, enqueue("a", "pa"), enqueued(1)),
                (1_000, lease(100), leased(1, 1, "pa", 1, 1_100)),
                // A new leader whose clock is behind: its stamps do not move time back.
                (500, enqueue("b", "pb"), enqueued(2)),
                (500, lease(100), leased(2, 2, "pb", 1, 1_100)),
                (
                    1_099,
                    status(&[1, 2]),
                    statuses(&[
                        (1, Leased { lease: 1, deadline_ms: 1_100, attempts: 1 }),
                        (2, Leased { lease: 2, deadline_ms: 1_100, attempts: 1 }),
                    ]),
                ),
                (
                    600,
                    status(&[1]),
                    statuses(&[(1, Leased { lease: 1, deadline_ms: 1_100, attempts: 1 })]),
                ),
                (
                    1_100,
                    status(&[1, 2]),
                    statuses(&[(1, Queued { attempts: 1 }), (2, Queued { attempts: 1 })]),
                ),
            ],
        );
        assert_eq!(machine.now_ms(), 1_100);
        assert_eq!(machine.last_applied(), 7);
    }

    #[test]
    fn retention_forgets_finished_jobs_and_their_keys() {
        use JobStatus::*;
        let machine = check(
            config(1, 1_000, 10),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, lease(100), leased(1, 1, "pa", 1, 100)),
                (10, ack(1, 1), Response::Acked { job: 1 }),
                (20, enqueue("b", "pb"), enqueued(2)),
                (20, lease(100), leased(2, 2, "pb", 1, 120)),
                (30, nack(2, 2, "bad image"), Response::Nacked { job: 2, dead_lettered: true }),
                (1_009, enqueue("a", "pa"), duplicate(1)),
                (
                    1_009,
                    status(&[1, 2]),
                    statuses(&[
                        (1, Done { attempts: 1, result: result_of(1, 1) }),
                        (2, dead(1, "bad image")),
                    ]),
                ),
                (1_010, status(&[1, 2]), statuses(&[(1, Unknown), (2, dead(1, "bad image"))])),
                (1_010, ack(1, 1), rejected(1, Rejection::UnknownJob)),
                // The key was forgotten with the job: a retry after retention is a new job.
                (1_010, enqueue("a", "pa"), enqueued(3)),
                (1_030, status(&[2, 3]), statuses(&[(2, Unknown), (3, Queued { attempts: 0 })])),
            ],
        );
        assert_eq!(machine.dead_letters(), Vec::<JobId>::new());
        assert_eq!(machine.depth(), QueueDepth { queued: 1, leased: 0, done: 0, dead_lettered: 0 });
    }

    #[test]
    fn status_answers_in_the_order_asked() {
        use JobStatus::*;
        check(
            config(1, 600_000, 10),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, enqueue("b", "pb"), enqueued(2)),
                (0, enqueue("c", "pc"), enqueued(3)),
                (0, enqueue("d", "pd"), enqueued(4)),
                (0, lease(100), leased(1, 1, "pa", 1, 100)),
                (0, lease(100), leased(2, 2, "pb", 1, 100)),
                (0, lease(100), leased(3, 3, "pc", 1, 100)),
                (1, ack(1, 1), Response::Acked { job: 1 }),
                (2, nack(2, 2, "no"), Response::Nacked { job: 2, dead_lettered: true }),
                (3, status(&[]), statuses(&[])),
                (
                    3,
                    status(&[4, 3, 2, 1, 0, 9, 4]),
                    statuses(&[
                        (4, Queued { attempts: 0 }),
                        (3, Leased { lease: 3, deadline_ms: 100, attempts: 1 }),
                        (2, dead(1, "no")),
                        (1, Done { attempts: 1, result: result_of(1, 1) }),
                        (0, Unknown),
                        (9, Unknown),
                        (4, Queued { attempts: 0 }),
                    ]),
                ),
            ],
        );
    }

    #[test]
    fn visibility_is_clamped_and_reasons_are_bounded() {
        let long_reason = "é".repeat(NACK_REASON_BYTES_MAX); // two bytes per char
        let machine = check(
            config(1, 600_000, 10),
            &[
                (5, enqueue("a", "pa"), enqueued(1)),
                (5, lease(u64::MAX), leased(1, 1, "pa", 1, 5 + VISIBILITY_MS_MAX as i64)),
                (6, nack(1, 1, &long_reason), Response::Nacked { job: 1, dead_lettered: true }),
            ],
        );
        let kept = "é".repeat(NACK_REASON_BYTES_MAX / 2);
        assert_eq!(machine.status(1), dead(1, &kept));
    }

    #[test]
    #[should_panic(expected = "indexes must strictly increase")]
    fn applying_an_index_twice_panics() {
        let mut machine = QueueMachine::new(QueueConfig::default());
        let stamped = Stamped { now_ms: 0, command: enqueue("a", "pa") };
        machine.apply(7, &stamped);
        machine.apply(7, &stamped);
    }

    #[test]
    #[should_panic(expected = "max_attempts must be at least 1")]
    fn a_config_without_attempts_panics() {
        QueueMachine::new(config(0, 0, 1));
    }

    /// A machine with a job in every state.
    fn busy_machine() -> QueueMachine {
        check(
            config(1, 600_000, 10),
            &[
                (0, enqueue("a", "pa"), enqueued(1)),
                (0, enqueue("b", "pb"), enqueued(2)),
                (0, enqueue("c", "pc"), enqueued(3)),
                (0, enqueue("d", "pd"), enqueued(4)),
                (0, lease(100), leased(1, 1, "pa", 1, 100)),
                (0, lease(100), leased(2, 2, "pb", 1, 100)),
                (0, lease(100), leased(3, 3, "pc", 1, 100)),
                (1, ack(1, 1), Response::Acked { job: 1 }),
                (2, nack(2, 2, "no"), Response::Nacked { job: 2, dead_lettered: true }),
            ],
        )
    }

    #[test]
    fn snapshot_restores_an_equal_machine() {
        let mut machine = busy_machine();
        let mut restored = QueueMachine::restore(&machine.snapshot()).unwrap();
        assert_eq!(restored, machine);
        for (index, now_ms, command) in [(20, 50, lease(10)), (21, 100, status(&[1, 2, 3, 4]))] {
            let stamped = Stamped { now_ms, command };
            assert_eq!(restored.apply(index, &stamped), machine.apply(index, &stamped));
        }
        assert_eq!(restored, machine);
        assert_eq!(restored.snapshot(), machine.snapshot());
    }

    #[test]
    fn restore_refuses_bad_bytes() {
        let snapshot = busy_machine().snapshot();
        assert_eq!(QueueMachine::restore(&[]), Err(SnapshotError::Empty));
        assert_eq!(
            QueueMachine::restore(&[9, 1, 2, 3]),
            Err(SnapshotError::UnsupportedVersion { found: 9, expected: SNAPSHOT_FORMAT_VERSION })
        );
        for garbage in
            [&[SNAPSHOT_FORMAT_VERSION][..], &[SNAPSHOT_FORMAT_VERSION, 0xff, 0xff, 0xff]]
        {
            assert!(matches!(QueueMachine::restore(garbage), Err(SnapshotError::Decode(_))));
        }
        let truncated = &snapshot[..snapshot.len() - 1];
        assert!(matches!(QueueMachine::restore(truncated), Err(SnapshotError::Decode(_))));
        let mut trailing = snapshot.clone();
        trailing.push(0);
        assert_eq!(QueueMachine::restore(&trailing), Err(SnapshotError::TrailingBytes(1)));

        let mut inconsistent = busy_machine();
        inconsistent.available.insert(3); // job 3 is leased
        let result = QueueMachine::restore(&inconsistent.snapshot());
        assert!(matches!(result, Err(SnapshotError::Inconsistent(_))), "{result:?}");
    }

    proptest! {
        /// Bytes that are not a snapshot, or a snapshot with one byte changed, restore to an
        /// error or to a machine that keeps every invariant: never a panic.
        #[test]
        fn restore_never_panics(
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
            flip_at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            if let Ok(machine) = QueueMachine::restore(&garbage) {
                prop_assert_eq!(machine.check_invariants(), Ok(()));
            }
            let mut snapshot = busy_machine().snapshot();
            let at = flip_at.index(snapshot.len());
            snapshot[at] ^= flip;
            if let Ok(machine) = QueueMachine::restore(&snapshot) {
                prop_assert_eq!(machine.check_invariants(), Ok(()));
            }
        }
    }

    /// The rules of the module documentation, written the naive way: linear scans over every job
    /// ever enqueued, forgotten ones flagged rather than removed.
    struct Model {
        config: QueueConfig,
        now_ms: i64,
        /// Job `id` is at `id - 1`.
        jobs: Vec<ModelJob>,
        leases_given: u64,
        dead_letters_made: u64,
    }

    struct ModelJob {
        key: String,
        payload: Vec<u8>,
        attempts: u32,
        state: ModelState,
        forgotten: bool,
        /// Each ack or nack that took effect: its lease, whether an ack, and its answer.
        ended: Vec<(LeaseId, bool, Response)>,
    }

    enum ModelState {
        Queued,
        Leased { lease: LeaseId, deadline_ms: i64 },
        Done { finished_at_ms: i64, result: Vec<u8> },
        DeadLettered { finished_at_ms: i64, reason: String, order: u64 },
    }

    impl Model {
        fn new(config: QueueConfig) -> Model {
            Model { config, now_ms: 0, jobs: Vec::new(), leases_given: 0, dead_letters_made: 0 }
        }

        fn remembered(&self, job: JobId) -> Option<usize> {
            let at = (job as usize).checked_sub(1)?;
            self.jobs.get(at).filter(|j| !j.forgotten).map(|_| at)
        }

        fn apply(&mut self, stamped: &Stamped) -> Response {
            self.now_ms = self.now_ms.max(stamped.now_ms);
            for at in 0..self.jobs.len() {
                if let ModelState::Leased { deadline_ms, .. } = self.jobs[at].state {
                    if deadline_ms <= self.now_ms {
                        let attempts = self.jobs[at].attempts;
                        self.fail(at, format!("lease expired after {attempts} attempts"), false);
                    }
                }
            }
            for job in &mut self.jobs {
                if let ModelState::Done { finished_at_ms, .. }
                | ModelState::DeadLettered { finished_at_ms, .. } = job.state
                {
                    if finished_at_ms + self.config.retention_ms <= self.now_ms {
                        job.forgotten = true;
                    }
                }
            }
            match &stamped.command {
                Command::Enqueue { key, payload } => {
                    if let Some(at) = self.jobs.iter().position(|j| !j.forgotten && j.key == *key) {
                        return duplicate(at as JobId + 1);
                    }
                    let unfinished = self
                        .jobs
                        .iter()
                        .filter(|j| {
                            matches!(j.state, ModelState::Queued | ModelState::Leased { .. })
                        })
                        .count();
                    if unfinished >= self.config.max_jobs {
                        return Response::Full { limit: self.config.max_jobs };
                    }
                    self.jobs.push(ModelJob {
                        key: key.clone(),
                        payload: payload.clone(),
                        attempts: 0,
                        state: ModelState::Queued,
                        forgotten: false,
                        ended: Vec::new(),
                    });
                    enqueued(self.jobs.len() as JobId)
                }
                Command::Lease { visibility_ms, .. } => {
                    let Some(at) =
                        self.jobs.iter().position(|j| matches!(j.state, ModelState::Queued))
                    else {
                        return Response::Empty;
                    };
                    self.leases_given += 1;
                    let deadline_ms = self.now_ms + (*visibility_ms).min(VISIBILITY_MS_MAX) as i64;
                    let job = &mut self.jobs[at];
                    job.attempts += 1;
                    job.state = ModelState::Leased { lease: self.leases_given, deadline_ms };
                    Response::Leased {
                        job: at as JobId + 1,
                        lease: self.leases_given,
                        payload: job.payload.clone(),
                        attempt: job.attempts,
                        deadline_ms,
                    }
                }
                Command::Ack { job, lease, result } => match self.current_lease(*job, *lease) {
                    Err(reason) => {
                        self.repeat(*job, *lease, true).unwrap_or(rejected(*job, reason))
                    }
                    Ok(_) if result.len() > RESULT_BYTES_MAX => rejected(
                        *job,
                        Rejection::ResultTooLarge { bytes: result.len(), max: RESULT_BYTES_MAX },
                    ),
                    Ok(at) => {
                        let finished_at_ms = self.now_ms;
                        let result = result.clone();
                        self.jobs[at].state = ModelState::Done { finished_at_ms, result };
                        self.jobs[at].ended.push((*lease, true, Response::Acked { job: *job }));
                        Response::Acked { job: *job }
                    }
                },
                Command::Nack { job, lease, reason, permanent } => {
                    match self.current_lease(*job, *lease) {
                        Err(rejection) => {
                            self.repeat(*job, *lease, false).unwrap_or(rejected(*job, rejection))
                        }
                        Ok(at) => {
                            let dead_lettered = self.fail(at, reason.clone(), *permanent);
                            let response = Response::Nacked { job: *job, dead_lettered };
                            self.jobs[at].ended.push((*lease, false, response.clone()));
                            response
                        }
                    }
                }
                Command::Release { job, lease } => match self.current_lease(*job, *lease) {
                    Err(rejection) => rejected(*job, rejection),
                    Ok(at) => {
                        self.jobs[at].attempts -= 1;
                        self.jobs[at].state = ModelState::Queued;
                        Response::Released { job: *job }
                    }
                },
                Command::Status { jobs } => {
                    Response::Statuses(jobs.iter().map(|&job| (job, self.status(job))).collect())
                }
                Command::Inspect { job } => Response::Inspected {
                    job: *job,
                    key: self.remembered(*job).map(|at| self.jobs[at].key.clone()),
                    status: self.status(*job),
                },
            }
        }

        /// The answer an ack (`ack`) or nack of `lease` got when it took effect, if one did.
        fn repeat(&self, job: JobId, lease: LeaseId, ack: bool) -> Option<Response> {
            let at = self.remembered(job)?;
            let ended = self.jobs[at].ended.iter();
            ended.filter(|(l, a, _)| *l == lease && *a == ack).map(|(_, _, r)| r.clone()).next()
        }

        fn current_lease(&self, job: JobId, lease: LeaseId) -> Result<usize, Rejection> {
            let at = self.remembered(job).ok_or(Rejection::UnknownJob)?;
            match self.jobs[at].state {
                ModelState::Leased { lease: current, .. } if current == lease => Ok(at),
                ModelState::Leased { lease: current, .. } => {
                    Err(Rejection::StaleLease { current: Some(current) })
                }
                ModelState::Queued => Err(Rejection::StaleLease { current: None }),
                ModelState::Done { .. } => Err(Rejection::AlreadyDone),
                ModelState::DeadLettered { .. } => Err(Rejection::DeadLettered),
            }
        }

        fn fail(&mut self, at: usize, reason: String, permanent: bool) -> bool {
            let finished_at_ms = self.now_ms;
            let job = &mut self.jobs[at];
            if permanent || job.attempts >= self.config.max_attempts {
                self.dead_letters_made += 1;
                let order = self.dead_letters_made;
                job.state = ModelState::DeadLettered { finished_at_ms, reason, order };
                true
            } else {
                job.state = ModelState::Queued;
                false
            }
        }

        fn status(&self, job: JobId) -> JobStatus {
            let Some(at) = self.remembered(job) else {
                return JobStatus::Unknown;
            };
            let attempts = self.jobs[at].attempts;
            match &self.jobs[at].state {
                ModelState::Queued => JobStatus::Queued { attempts },
                ModelState::Leased { lease, deadline_ms } => {
                    JobStatus::Leased { lease: *lease, deadline_ms: *deadline_ms, attempts }
                }
                ModelState::Done { result, .. } => {
                    JobStatus::Done { attempts, result: result.clone() }
                }
                ModelState::DeadLettered { reason, .. } => dead(attempts, reason),
            }
        }

        fn dead_letters(&self) -> Vec<JobId> {
            let mut dead: Vec<(u64, JobId)> = (1..=self.jobs.len() as JobId)
                .filter_map(|job| match &self.jobs[job as usize - 1] {
                    ModelJob {
                        forgotten: false,
                        state: ModelState::DeadLettered { order, .. },
                        ..
                    } => Some((*order, job)),
                    _ => None,
                })
                .collect();
            dead.sort();
            dead.into_iter().map(|(_order, job)| job).collect()
        }
    }

    /// A client operation; `*Recent` ones ack or nack one of the last leases handed out, so that
    /// acks and nacks often carry a current lease.
    #[derive(Clone, Debug)]
    enum Op {
        Enqueue { key: u8, payload: u8 },
        Lease { visibility_ms: u64 },
        Ack { job: JobId, lease: LeaseId },
        Nack { job: JobId, lease: LeaseId },
        AckRecent { back: usize },
        NackRecent { back: usize },
        FailRecent { back: usize },
        ReleaseRecent { back: usize },
        Status { jobs: Vec<JobId> },
        Inspect { job: JobId },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..6, any::<u8>()).prop_map(|(key, payload)| Op::Enqueue { key, payload }),
            3 => (0u64..300).prop_map(|visibility_ms| Op::Lease { visibility_ms }),
            1 => (0u64..10, 0u64..14).prop_map(|(job, lease)| Op::Ack { job, lease }),
            1 => (0u64..10, 0u64..14).prop_map(|(job, lease)| Op::Nack { job, lease }),
            2 => (0usize..3).prop_map(|back| Op::AckRecent { back }),
            2 => (0usize..3).prop_map(|back| Op::NackRecent { back }),
            1 => (0usize..3).prop_map(|back| Op::FailRecent { back }),
            1 => (0usize..3).prop_map(|back| Op::ReleaseRecent { back }),
            1 => proptest::collection::vec(0u64..10, 0..4).prop_map(|jobs| Op::Status { jobs }),
            1 => (0u64..10).prop_map(|job| Op::Inspect { job }),
        ]
    }

    fn command(op: &Op, leases_given: &[(JobId, LeaseId)]) -> Command {
        let recent = |back: usize| {
            leases_given.len().checked_sub(1 + back).map_or((1, 1), |at| leases_given[at])
        };
        match op {
            Op::Enqueue { key, payload } => {
                Command::Enqueue { key: format!("key-{key}"), payload: vec![*payload] }
            }
            Op::Lease { visibility_ms } => lease(*visibility_ms),
            Op::Ack { job, lease } => ack(*job, *lease),
            Op::Nack { job, lease } => nack(*job, *lease, "failed"),
            Op::AckRecent { back } => {
                let (job, lease) = recent(*back);
                ack(job, lease)
            }
            Op::NackRecent { back } => {
                let (job, lease) = recent(*back);
                nack(job, lease, "failed")
            }
            Op::FailRecent { back } => {
                let (job, lease) = recent(*back);
                fail_permanently(job, lease, "cannot succeed")
            }
            Op::ReleaseRecent { back } => {
                let (job, lease) = recent(*back);
                Command::Release { job, lease }
            }
            Op::Status { jobs } => status(jobs),
            Op::Inspect { job } => Command::Inspect { job: *job },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Random commands, with stamps that sometimes run backwards, applied to the machine,
        /// to a second machine snapshotted and restored at a random step, and to the model:
        /// all three answer alike, the machines end equal, and the invariants hold throughout.
        #[test]
        fn machine_matches_the_model_across_a_snapshot(
            (max_attempts, retention_ms, max_jobs) in (1u32..=3, 0i64..400, 1usize..=5),
            steps in proptest::collection::vec((-100i64..200, op()), 0..150),
            snapshot_at in any::<prop::sample::Index>(),
        ) {
            let config = QueueConfig { max_attempts, retention_ms, max_jobs };
            let mut machine = QueueMachine::new(config.clone());
            let mut twin = QueueMachine::new(config.clone());
            let mut model = Model::new(config);
            let snapshot_step = snapshot_at.index(steps.len() + 1);
            let mut now_ms = 1_000;
            let mut leases_given: Vec<(JobId, LeaseId)> = Vec::new();
            let mut first_leased_last: JobId = 0;
            let mut released: std::collections::BTreeSet<JobId> = std::collections::BTreeSet::new();

            for (step, (stamp_delta_ms, op)) in steps.iter().enumerate() {
                if step == snapshot_step {
                    twin = QueueMachine::restore(&twin.snapshot()).unwrap();
                    prop_assert_eq!(&twin, &machine);
                }
                now_ms += stamp_delta_ms;
                let stamped = Stamped { now_ms, command: command(op, &leases_given) };
                let job_ids = 0..=model.jobs.len() as JobId + 1;
                let before: Vec<JobStatus> = job_ids.clone().map(|job| machine.status(job)).collect();

                let index = step as u64 + 1;
                let response = machine.apply(index, &stamped);
                prop_assert_eq!(&twin.apply(index, &stamped), &response);
                prop_assert_eq!(&model.apply(&stamped), &response, "step {}: {:?}", step, stamped);
                if let Err(problem) = machine.check_invariants() {
                    return Err(TestCaseError::fail(format!("step {step}: {problem}")));
                }

                prop_assert_eq!(machine.now_ms(), model.now_ms);
                prop_assert_eq!(machine.dead_letters(), model.dead_letters());
                let mut depth = QueueDepth::default();
                for (job, before) in job_ids.zip(&before) {
                    let after = machine.status(job);
                    prop_assert_eq!(&after, &model.status(job), "job {}", job);
                    match &after {
                        JobStatus::Queued { attempts } => {
                            depth.queued += 1;
                            prop_assert!(*attempts < max_attempts);
                        }
                        JobStatus::Leased { attempts, .. } => {
                            depth.leased += 1;
                            prop_assert!(*attempts <= max_attempts);
                        }
                        JobStatus::Done { attempts, .. } => {
                            depth.done += 1;
                            prop_assert!(*attempts <= max_attempts);
                        }
                        JobStatus::DeadLettered { attempts, .. } => {
                            depth.dead_lettered += 1;
                            prop_assert!(*attempts <= max_attempts);
                        }
                        JobStatus::Unknown => {}
                    }
                    // No job is done without an ack of the lease it held.
                    if matches!(after, JobStatus::Done { .. })
                        && !matches!(before, JobStatus::Done { .. })
                    {
                        let acked = match (&stamped.command, before) {
                            (
                                Command::Ack { job: acked, lease, .. },
                                JobStatus::Leased { lease: held, .. },
                            ) => {
                                *acked == job && lease == held
                            }
                            _ => false,
                        };
                        prop_assert!(acked, "job {} done by {:?} from {:?}", job, stamped, before);
                        prop_assert_eq!(&response, &Response::Acked { job });
                    }
                }
                prop_assert_eq!(machine.depth(), depth);
                if let Response::Released { job } = response {
                    released.insert(job);
                }

                if let Response::Leased { job, lease, attempt, .. } = response {
                    // A released job is leased again with attempt 1: only its first lease counts.
                    if attempt == 1 && job > first_leased_last {
                        first_leased_last = job;
                    } else if attempt == 1 {
                        prop_assert!(released.contains(&job), "first leases in job id order");
                    }
                    leases_given.push((job, lease));
                }
            }
            if snapshot_step == steps.len() {
                twin = QueueMachine::restore(&twin.snapshot()).unwrap();
            }
            prop_assert_eq!(&twin, &machine);
        }
    }
}
