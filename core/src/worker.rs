//! The resize workers: lease a job from the queue, decode it under the worker's memory budget,
//! resize, encode, and ack with the thumbnail.
//!
//! **Where results live.** A thumbnail goes back in the ack and lives in the queue's replicated
//! state with its job until the job's retention ends. The job is done exactly when its result
//! is durable on a majority: there is no window in which a job is acked but its result lost,
//! or stored but its job still pending, and no second store to keep consistent. The price is
//! that results (bounded by the queue's `RESULT_BYTES_MAX`; thumbnails are a few KB) go
//! through the Raft log.
//!
//! **Concurrency** per worker equals its `cores`: one lease loop per core. Each loop leases
//! under its own name (`worker-1#<incarnation>/<core>`) with its own request numbers, so a
//! restarted worker never collides with its earlier life.
//!
//! **CPU cost** is charged to simulated time by a cost model (the simulator's CPU is free):
//! each conversion takes the larger of `1 / conversions_per_s_per_core` seconds (the seed's
//! typical upload, which the workload's small images stand for) and the work estimated from
//! its bytes ([`resize::estimate_work`]: scans, blocks, inflated bytes, pixels), calibrated
//! against real decodes. A CPU bomb (a progressive JPEG with thousands of empty scans) costs
//! seconds in the simulation as it does for real.
//!
//! **Work budget.** A job whose estimated work exceeds `decode_budget_ms` is refused before
//! any decoder runs, with the estimate in the reason, and nacked as permanent: the estimate is
//! a pure function of the bytes, so no retry could change it, and the core goes on to the next
//! job. The real build enforces the budget on the estimate only, deliberately: a decode
//! cannot be interrupted mid-call, and the alternatives do not stop the CPU burn they are for.
//! A decode abandoned on a thread of its own keeps its core busy until it finishes (a storm
//! of bombs piles up abandoned threads: the starvation again, hidden); a process per decode
//! (or aborting the worker) does stop it, at a fork and a copy of the input per job, or the
//! loss of every other job on the worker. The estimate covers the mechanisms that make decode
//! time grow faster than the file (scans x blocks, inflated bytes, pixels); for one it does
//! not know, each decode's time is measured on the node's monotonic clock and a decode past
//! the budget is recorded (`decode_over_budget`) so it shows up and the model can learn it.
//!
//! **Suspects run alone.** A job leased for the second time or later (its last lease expired:
//! maybe it crashed a worker) is a suspect: the worker finishes its other jobs, takes no new
//! one, and converts the suspect alone. One suspect at a time: a loop that leases a second
//! suspect meanwhile gives it back unused ([`Command::Release`], no attempt spent) rather
//! than hold it while the first may crash the process. A poison pill then crashes nobody
//! else's job, so an innocent job that shared a worker with a pill loses one attempt at most
//! and is never dead-lettered for a pill's crashes.
//!
//! **Poison pills.** A decode error is permanent: the job is nacked as such and dead-lettered
//! at once. An image carrying the crash trigger models an unknown decoder bug: the worker's
//! process dies ([`crash_process`]), the lease expires, and the queue's `max_attempts` is what
//! stops the pill from crashing the fleet forever. With decode limits off, an image whose
//! decode would exceed the memory budget is an out-of-memory kill of the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::JobSpec;
use crate::history::Recorder;
use crate::node::{KnobSettings, NodeContext};
use crate::queue::machine::{Command, Response};
use crate::queue::{self, QueueClient, QueueMessage};
use crate::replica::client::ClientOptions;
use crate::resize::{self, DecodeBudget, ResizeError, ResizeSpec};
use crate::seams::clock::Clock;
use crate::seams::net::{Transport, TransportOptions};

/// The role name of resize workers.
pub const ROLE: &str = "worker";

/// Settings under the scenario's `worker` knob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Conversions at once.
    pub cores: u32,
    /// The seed's figure: conversions per second per core.
    pub conversions_per_s_per_core: f64,
    /// Whether each conversion spends the cost model's time on the clock. On in the
    /// simulation, where decoding takes no simulated time; off in a real cluster, where the
    /// real CPU pays.
    pub charge_cpu: bool,
    /// The memory a decode may use.
    pub memory_bytes_max: u64,
    /// The CPU time one conversion may take by its estimate ([`resize::estimate_work`]);
    /// a job over it is refused as a permanent failure (0: no budget).
    pub decode_budget_ms: u64,
    /// Whether decodes run under `image::Limits` from the budget (off: an over-budget decode
    /// is an out-of-memory kill).
    pub decode_limits: bool,
    /// Whether the crash trigger crashes the process (the modelled decoder bug).
    pub crash_trigger: bool,
    /// The lease's visibility timeout.
    pub visibility_ms: u64,
    /// How long a loop waits after finding the queue empty or unreachable.
    pub poll_ms: u64,
    pub queue_timeout_ms: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            cores: 2,
            conversions_per_s_per_core: 10.0,
            charge_cpu: true,
            memory_bytes_max: 256 << 20,
            decode_budget_ms: DECODE_BUDGET_MS_DEFAULT,
            decode_limits: true,
            crash_trigger: true,
            visibility_ms: 5000,
            poll_ms: 100,
            queue_timeout_ms: 1000,
        }
    }
}

impl KnobSettings for WorkerSettings {
    const KNOB: &'static str = "worker";
    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if !(1..=256).contains(&self.cores) {
            return fail("cores", "must be between 1 and 256");
        }
        if !(self.conversions_per_s_per_core > 0.0 && self.conversions_per_s_per_core <= 100_000.0)
        {
            return fail("conversions_per_s_per_core", "must be above 0 and at most 100000");
        }
        if self.memory_bytes_max < (1 << 20) {
            return fail("memory_bytes_max", "must be at least 1 MiB");
        }
        if self.decode_budget_ms > 3_600_000 {
            return fail("decode_budget_ms", "must be at most 3600000 (0: no budget)");
        }
        if !(1..=3_600_000).contains(&self.visibility_ms) {
            return fail("visibility_ms", "must be between 1 and 3600000");
        }
        if !(1..=60_000).contains(&self.poll_ms) {
            return fail("poll_ms", "must be between 1 and 60000");
        }
        if !(10..=60_000).contains(&self.queue_timeout_ms) {
            return fail("queue_timeout_ms", "must be between 10 and 60000");
        }
        Ok(())
    }
}

/// The default work budget per conversion: five times the seed's typical conversion (100 ms),
/// so any photo within the side limit passes and a scan bomb does not.
pub const DECODE_BUDGET_MS_DEFAULT: u64 = 500;

impl WorkerSettings {
    /// The simulated CPU time of one conversion: the seed's typical conversion, or the work
    /// estimated from the bytes when that is more.
    pub fn conversion_time(&self, estimated: Option<&resize::DecodeWork>) -> Duration {
        let typical = Duration::from_secs_f64(1.0 / self.conversions_per_s_per_core);
        let estimated =
            estimated.map_or(Duration::ZERO, |work| Duration::from_nanos(work.cpu_ns()));
        typical.max(estimated)
    }

    /// The memory budget of one decode.
    pub fn decode_budget(&self) -> DecodeBudget {
        DecodeBudget { memory_bytes_max: self.memory_bytes_max, limits_enabled: self.decode_limits }
    }
}

/// Ends the worker's process now, as a crash would (see [`crate::node::exit_process`]).
pub fn crash_process(why: &str) -> ! {
    crate::node::exit_process(&format!("worker: {why}"))
}

/// Runs a worker: `cores` lease loops.
pub async fn serve(context: NodeContext) {
    let settings = match WorkerSettings::from_knobs_line(&context.knobs) {
        Ok(settings) => settings,
        Err(reason) => {
            return context.recorder.record("worker_stopped", json!({ "reason": reason }));
        }
    };
    let (transport, _) = Transport::<QueueMessage>::unbound(
        &format!("{}/queue", context.name),
        context.book.clone(),
        TransportOptions::default(),
        context.link_faults.clone(),
        context.rng("queue-transport"),
    );
    let options = ClientOptions {
        attempt_timeout: Duration::from_millis(settings.queue_timeout_ms),
        ..ClientOptions::default()
    };
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let suspect_held = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for core in 0..settings.cores {
        let client = QueueClient::new(
            transport.clone(),
            context.peers(queue::ROLE),
            context.clock.clone(),
            context.rng(&format!("queue-client/{core}")),
            options.clone(),
        );
        let name = format!("{}#{}/{core}", context.name, context.incarnation);
        let lease_loop = LeaseLoop {
            name,
            client,
            settings: settings.clone(),
            clock: context.clock.clone(),
            recorder: context.recorder.clone(),
            gate: gate.clone(),
            suspect_held: suspect_held.clone(),
        };
        loops.push(tokio::spawn(lease_loop.run()));
    }
    for handle in loops {
        let _ = handle.await;
    }
}

struct LeaseLoop {
    name: String,
    client: QueueClient,
    settings: WorkerSettings,
    clock: Clock,
    recorder: Recorder,
    /// Held shared from before a lease to the end of its job; a suspect takes it exclusive.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// Whether a loop of this worker holds a suspect.
    suspect_held: Arc<AtomicBool>,
}

impl LeaseLoop {
    async fn run(mut self) {
        let poll = Duration::from_millis(self.settings.poll_ms);
        let mut request = 0u64;
        loop {
            // Taken before leasing, so no job waits leased while a suspect runs.
            let shared = self.gate.clone().read_owned().await;
            request += 1;
            let lease = Command::Lease {
                worker: self.name.clone(),
                visibility_ms: self.settings.visibility_ms,
                request,
            };
            match self.client.submit(lease).await {
                Ok(reply) => match reply.response {
                    Response::Leased { job, lease, payload, attempt, .. } if attempt > 1 => {
                        drop(shared);
                        if self.suspect_held.swap(true, Ordering::SeqCst) {
                            // Another suspect is ahead: give this one back and go on.
                            let _ = self.client.submit(Command::Release { job, lease }).await;
                            self.clock.sleep(poll).await;
                            continue;
                        }
                        let alone = self.gate.clone().write_owned().await;
                        self.recorder
                            .record("suspect_alone", json!({ "job": job, "attempt": attempt }));
                        self.work(job, lease, attempt, &payload).await;
                        self.suspect_held.store(false, Ordering::SeqCst);
                        drop(alone);
                    }
                    Response::Leased { job, lease, payload, attempt, .. } => {
                        self.work(job, lease, attempt, &payload).await;
                    }
                    _ => self.clock.sleep(poll).await,
                },
                Err(_) => self.clock.sleep(poll).await,
            }
        }
    }

    /// Works one leased job, then writes its line in a real worker's log ([`Recorder::log`]):
    /// job, attempt, account, outcome (`done`, or `failed` with the reason), whether the
    /// queue took the answer, bytes in and out, milliseconds.
    async fn work(&mut self, job: u64, lease: u64, attempt: u32, payload: &[u8]) {
        let started_ms = self.clock.monotonic_ms();
        let (account, outcome, submitted, bytes_out) =
            self.convert(job, lease, attempt, payload).await;
        let (outcome, reason) = match outcome {
            Ok(()) => ("done", None),
            Err(reason) => ("failed", Some(reason)),
        };
        self.recorder.log(
            "job_worked",
            json!({
                "job": job, "attempt": attempt, "account": account, "outcome": outcome,
                "reason": reason, "answer_taken": submitted, "bytes_in": payload.len(),
                "bytes_out": bytes_out,
                "latency_ms": self.clock.monotonic_ms().saturating_sub(started_ms),
            }),
        );
    }

    /// Converts one job and answers the queue: the job's account (when its spec decodes),
    /// the outcome, whether the queue took the answer, the thumbnail's size.
    async fn convert(
        &mut self,
        job: u64,
        lease: u64,
        attempt: u32,
        payload: &[u8],
    ) -> (Option<String>, Result<(), String>, bool, usize) {
        let spec = match JobSpec::decode(payload) {
            Ok(spec) => spec,
            Err(reason) => return self.refuse(job, lease, None, reason).await,
        };
        let account = Some(spec.account.clone());
        if self.settings.crash_trigger && resize::contains_crash_trigger(&spec.image) {
            self.recorder.record(
                "worker_crash",
                json!({ "job": job, "attempt": attempt, "cause": "crash_trigger" }),
            );
            crash_process("the decoder hit the crash trigger");
        }
        let target = match ResizeSpec::new(spec.max_width, spec.max_height) {
            Ok(target) => target,
            Err(error) => return self.refuse(job, lease, account, error.to_string()).await,
        };
        // The work budget, before any decoder runs: a refusal costs the probe, not the decode.
        let work = match resize::check_work(&spec.image, &target, self.settings.decode_budget_ms) {
            Ok(work) => Some(work),
            Err(error @ ResizeError::WorkOverBudget { .. }) => {
                self.recorder.record(
                    "work_over_budget",
                    json!({ "job": job, "attempt": attempt, "reason": error.to_string() }),
                );
                return self.refuse(job, lease, account, error.to_string()).await;
            }
            // The decode reports what is wrong with the file in its own words.
            Err(_) => None,
        };
        // The CPU time is spent whether the conversion succeeds or not.
        if self.settings.charge_cpu {
            self.clock.sleep(self.settings.conversion_time(work.as_ref())).await;
        }
        let started_ms = self.clock.monotonic_ms();
        let outcome = resize::memo::thumbnail(&spec.image, &target, &self.settings.decode_budget());
        let took_ms = self.clock.monotonic_ms().saturating_sub(started_ms);
        let budget_ms = self.settings.decode_budget_ms;
        if budget_ms > 0 && took_ms > budget_ms {
            self.recorder.record(
                "decode_over_budget",
                json!({
                    "job": job,
                    "took_ms": took_ms,
                    "budget_ms": budget_ms,
                    "estimated_ms": work.map(|work| work.cpu_ms()),
                }),
            );
        }
        match outcome {
            Ok(thumbnail) => {
                let bytes_out = thumbnail.jpeg.len();
                let ack = Command::Ack { job, lease, result: thumbnail.jpeg };
                // A lost ack is the lease's expiry to fix: the job is done again.
                let taken = self.client.submit(ack).await.is_ok();
                (account, Ok(()), taken, bytes_out)
            }
            Err(ResizeError::WouldExhaustMemory { needed }) => {
                self.recorder.record(
                    "worker_crash",
                    json!({ "job": job, "attempt": attempt, "cause": "out_of_memory", "needed_bytes": needed }),
                );
                crash_process("out of memory: killed");
            }
            Err(error) => self.refuse(job, lease, account, error.to_string()).await,
        }
    }

    /// A conversion that failed for `reason`: the job nacked for good, and what `convert`
    /// reports of it.
    async fn refuse(
        &mut self,
        job: u64,
        lease: u64,
        account: Option<String>,
        reason: String,
    ) -> (Option<String>, Result<(), String>, bool, usize) {
        let taken = self.fail(job, lease, reason.clone()).await;
        (account, Err(reason), taken, 0)
    }

    /// Nacks the job for good; whether the queue took it.
    async fn fail(&mut self, job: u64, lease: u64, reason: String) -> bool {
        let nack = Command::Nack { job, lease, reason, permanent: true };
        self.client.submit(nack).await.is_ok()
    }
}
