//! The API servers: HTTP/1.1 ([`crate::http`]) in front of the job queue, authenticating every
//! request at the edge from the data plane's identity cache ([`crate::auth::cache`]).
//!
//! - `POST /v1/images?width=W&height=H` with `Authorization: Bearer <api key>` and the image as
//!   the body: 202 `{"job": id, "duplicate": bool}` once the job is committed in the queue. An
//!   `Idempotency-Key` header makes a retried upload safe: it maps to the same job.
//! - `GET /v1/jobs/{id}`: 200 with the thumbnail (`image/jpeg`) when the job is done; else 200
//!   JSON `{"job", "status": "queued" | "running" | "failed", "attempts", "reason"?}`. A job
//!   of another account is 404, as an unknown one.
//!
//! Errors (JSON `{"error", "message"}`): 400 bad parameters, 401 unknown key, 403 revoked key,
//! 404 unknown job or route, 413 body too large, 429 too many requests in flight, 503 when the
//! queue cannot accept (no quorum, full) or the key cannot be checked: the CP choice, refuse
//! rather than accept and lose. A 503 whose `outcome` is `unknown` may have enqueued the job:
//! retry with the same `Idempotency-Key`.
//!
//! Each new job is counted for its account ([`crate::usage`]) before the `202`, and shipped
//! to the usage store in batches, when the cluster has one.
//!
//! **Bounds.** Body size (`body_bytes_max`), requests in flight (`in_flight_max`: each holds
//! one of a fixed pool of queue clients; none free is 429), and pending work (the queue's
//! `max_jobs`: a full queue is 503). At the edge ([`crate::http::EdgeLimits`]): connections
//! (`connections_max`; one more is answered 503 before anything is read, and closed), the
//! request head's size (`header_bytes_max`; larger is 431) and time (`header_read_timeout_ms`;
//! later, the connection is closed), the body's time (`body_read_timeout_ms`; later is 408).
//! A known path asked with another method is 405 with `Allow`.
//!
//! **CPU cost model.** With `uploads_per_s_per_core` above 0, an upload first holds one of the
//! server's `cores` for `1 / uploads_per_s_per_core` s of its clock (reading and checking the
//! body), waiting its turn in arrival order when every core is busy; the waiting uploads stay
//! in flight, so a server offered more than `cores * uploads_per_s_per_core` uploads a second
//! queues them until `in_flight_max` turns the rest away with 429. Status polls cost nothing
//! modelled. The default, 0, models no CPU: the server is never CPU-bound. A real cluster sets
//! it to 0, so the real CPU pays.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

use crate::auth::cache::{Decision, IdentityCache, MissPolicy};
use crate::auth::machine::{self as auth_machine, hash_secret};
use crate::auth::{self, AuthClient, AuthSettings};
use crate::history::Recorder;
use crate::http::{self, HttpRequest, HttpResponse};
use crate::node::{KnobSettings, NodeContext};
use crate::queue::machine::{Command, JobStatus, Response};
use crate::queue::{self, QueueClient};
use crate::replica::client::{ClientError, ClientOptions};
use crate::resize::SPEC_SIDE_MAX;
use crate::seams::clock::Clock;
use crate::usage::Usage;

/// The role name of API servers.
pub const ROLE: &str = "api";
/// The account a request accepted without a confirmed key is charged to (only with
/// `on_miss_unreachable: allow`).
pub const UNAUTHENTICATED_ACCOUNT: &str = "unauthenticated";

/// Settings under the scenario's `api` knob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Largest upload; larger is 413.
    pub body_bytes_max: usize,
    /// Requests handled at once; more are 429.
    pub in_flight_max: usize,
    /// Connections served at once; more are answered 503 and closed.
    pub connections_max: usize,
    /// Largest request head (request line and headers); larger is 431.
    pub header_bytes_max: usize,
    /// A request head must arrive within this long (an idle connection's too), or the
    /// connection is closed.
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this long of its head, or it is answered 408.
    pub body_read_timeout_ms: u64,
    /// One queue request's timeout, and tries per command.
    pub queue_timeout_ms: u64,
    pub queue_attempts: u32,
    /// The CPU cost model (see the module comment): cores, and uploads one core handles per
    /// second (0: no cost modelled).
    pub cores: u32,
    pub uploads_per_s_per_core: f64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            body_bytes_max: 1 << 20,
            in_flight_max: 64,
            connections_max: 1024,
            header_bytes_max: 16 << 10,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            queue_timeout_ms: 1000,
            queue_attempts: 3,
            cores: 4,
            uploads_per_s_per_core: 0.0,
        }
    }
}

impl ApiSettings {
    /// The HTTP edge's bounds. The handler bounds requests in flight itself (its pool of queue
    /// clients), with the same 429.
    pub fn edge(&self) -> http::EdgeLimits {
        http::EdgeLimits {
            body_bytes_max: self.body_bytes_max,
            header_bytes_max: self.header_bytes_max,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            connections_max: self.connections_max,
            in_flight_max: None,
        }
    }

    /// The simulated CPU time one upload holds a core, when the cost model is on.
    pub fn upload_cpu_time(&self) -> Option<Duration> {
        (self.uploads_per_s_per_core > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / self.uploads_per_s_per_core))
    }
}

impl KnobSettings for ApiSettings {
    const KNOB: &'static str = "api";

    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if !(1..=(64 << 20)).contains(&self.body_bytes_max) {
            return fail("body_bytes_max", "must be between 1 and 64 MiB");
        }
        if !(1..=10_000).contains(&self.in_flight_max) {
            return fail("in_flight_max", "must be between 1 and 10000");
        }
        http::validate_edge(
            self.connections_max,
            self.header_bytes_max,
            self.header_read_timeout_ms,
            self.body_read_timeout_ms,
        )
        .map_err(|(field, message)| (field.to_string(), message))?;
        if !(10..=60_000).contains(&self.queue_timeout_ms) {
            return fail("queue_timeout_ms", "must be between 10 and 60000");
        }
        if !(1..=20).contains(&self.queue_attempts) {
            return fail("queue_attempts", "must be between 1 and 20");
        }
        if !(1..=256).contains(&self.cores) {
            return fail("cores", "must be between 1 and 256");
        }
        if !(0.0..=1_000_000.0).contains(&self.uploads_per_s_per_core) {
            return fail(
                "uploads_per_s_per_core",
                "must be from 0 (no CPU cost modelled) to 1000000",
            );
        }
        Ok(())
    }
}

/// What a queued job carries: whose it is, the target size, the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub account: String,
    pub max_width: u32,
    pub max_height: u32,
    pub image: Vec<u8>,
}

impl JobSpec {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard encoding of a job spec")
    }

    pub fn decode(bytes: &[u8]) -> Result<JobSpec, String> {
        postcard::from_bytes(bytes).map_err(|error| format!("job spec: {error}"))
    }
}

/// Runs an API server: its HTTP listener at its address, its cache refresher.
pub async fn serve(context: NodeContext) {
    let settings = ApiSettings::from_knobs_line(&context.knobs);
    let auth_settings = AuthSettings::from_knobs_line(&context.knobs);
    let queue_settings = queue::QueueSettings::from_knobs_line(&context.knobs);
    let (settings, auth_settings) = match (settings, auth_settings, queue_settings) {
        (Ok(settings), Ok(auth_settings), Ok(_)) => (settings, auth_settings),
        (a, b, c) => {
            let reason = [a.err(), b.err(), c.err()].into_iter().flatten().collect::<Vec<_>>();
            return context.recorder.record("api_stopped", json!({ "reason": reason.join("; ") }));
        }
    };
    let Some(address) = context.book.get(&context.name) else {
        return context
            .recorder
            .record("api_stopped", json!({ "reason": "not in the address book" }));
    };
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            let reason = format!("bind {address}: {error}");
            return context.recorder.record("api_stopped", json!({ "reason": reason }));
        }
    };
    let usage = match crate::usage::start(&context).await {
        Ok(usage) => usage,
        Err(reason) => {
            return context.recorder.record("api_stopped", json!({ "reason": reason }));
        }
    };
    let server = Arc::new(ApiServer::new(&context, settings.clone(), auth_settings, usage));
    tokio::spawn(refresh_loop(
        server.clone(),
        auth::client(
            &context,
            &format!("{}/refresh", context.name),
            server.auth.refresh_timeout_ms,
            None,
        ),
    ));
    let handler = move |request| {
        let server = server.clone();
        async move { server.handle(request).await }
    };
    http::serve(listener, settings.edge(), context.recorder.clone(), handler).await
}

struct ApiServer {
    auth: AuthSettings,
    clock: Clock,
    recorder: Recorder,
    cache: std::sync::Mutex<IdentityCache>,
    /// One queue client per request in flight; empty means the server is at its bound.
    queue_clients: std::sync::Mutex<Vec<QueueClient>>,
    lookup_clients: std::sync::Mutex<Vec<AuthClient>>,
    rng: Mutex<crate::seams::rng::SeededRng>,
    /// Usage counting and shipping, when the cluster has a usage store.
    usage: Option<Arc<Usage>>,
    /// The CPU cost model's cores and an upload's CPU time, when it is on.
    cpu: Option<(Semaphore, Duration)>,
}

impl ApiServer {
    fn new(
        context: &NodeContext,
        settings: ApiSettings,
        auth_settings: AuthSettings,
        usage: Option<Arc<Usage>>,
    ) -> ApiServer {
        let options = ClientOptions {
            attempt_timeout: Duration::from_millis(settings.queue_timeout_ms),
            attempts: settings.queue_attempts,
            ..ClientOptions::default()
        };
        let queue_clients = queue::clients(context, &options, settings.in_flight_max);
        let lookup_clients = (0..auth_settings.lookups_in_flight_max)
            .map(|slot| {
                let owner = format!("{}/lookup-{slot}", context.name);
                // A lookup holds an upload: it answers within the one timeout, so the
                // client hears 503 rather than its own timeout while the plane is away.
                let timeout_ms = auth_settings.refresh_timeout_ms;
                auth::client(context, &owner, timeout_ms, Some(Duration::from_millis(timeout_ms)))
            })
            .collect();
        ApiServer {
            cache: std::sync::Mutex::new(IdentityCache::new(auth_settings.ttl_ms)),
            auth: auth_settings,
            clock: context.clock.clone(),
            recorder: context.recorder.clone(),
            queue_clients: std::sync::Mutex::new(queue_clients),
            lookup_clients: std::sync::Mutex::new(lookup_clients),
            rng: Mutex::new(context.rng("api")),
            usage,
            cpu: settings
                .upload_cpu_time()
                .map(|cost| (Semaphore::new(settings.cores as usize), cost)),
        }
    }

    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        let Some(mut client) = self.queue_clients.lock().expect("pool").pop() else {
            return HttpResponse::error(429, "overloaded", "too many requests in flight");
        };
        let response = self.route(request, &mut client).await;
        self.queue_clients.lock().expect("pool").push(client);
        response
    }

    async fn route(&self, request: HttpRequest, queue: &mut QueueClient) -> HttpResponse {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "images"]) => self.upload(&request, queue).await,
            ("GET", ["v1", "jobs", job]) => {
                let Ok(job) = job.parse::<u64>() else {
                    return HttpResponse::error(
                        400,
                        "bad_job_id",
                        format!("job id {job:?} is not a number"),
                    );
                };
                self.job(&request, job, queue).await
            }
            (_, ["v1", "images"]) => {
                HttpResponse::method_not_allowed(&request.method, &request.path, &["POST"])
            }
            (_, ["v1", "jobs", _]) => {
                HttpResponse::method_not_allowed(&request.method, &request.path, &["GET"])
            }
            _ => HttpResponse::error(
                404,
                "not_found",
                format!("no route {} {}", request.method, request.path),
            ),
        }
    }

    /// Holds a core for an upload's CPU time, after every upload that came first (the
    /// semaphore is fair). A no-op without the cost model.
    async fn spend_cpu(&self) {
        if let Some((cores, cost)) = &self.cpu {
            // The semaphore is never closed, so the permit always comes.
            if let Ok(_core) = cores.acquire().await {
                self.clock.sleep(*cost).await;
            }
        }
    }

    async fn upload(&self, request: &HttpRequest, queue: &mut QueueClient) -> HttpResponse {
        self.spend_cpu().await;
        let side = |name: &str| -> Result<u32, HttpResponse> {
            let value = request.query.get(name).ok_or_else(|| {
                HttpResponse::error(
                    400,
                    "bad_parameters",
                    format!("query parameter {name} is required"),
                )
            })?;
            match value.parse::<u32>() {
                Ok(side) if (1..=SPEC_SIDE_MAX).contains(&side) => Ok(side),
                _ => Err(HttpResponse::error(
                    400,
                    "bad_parameters",
                    format!("{name} must be an integer from 1 to {SPEC_SIDE_MAX}, not {value:?}"),
                )),
            }
        };
        let (max_width, max_height) = match (side("width"), side("height")) {
            (Ok(width), Ok(height)) => (width, height),
            (Err(response), _) | (_, Err(response)) => return response,
        };
        if request.body.is_empty() {
            return HttpResponse::error(400, "bad_parameters", "the body must hold the image");
        }
        let account = match self.authenticate(request).await {
            Ok(account) => account,
            Err(response) => return response,
        };
        self.enqueue(request, &account, max_width, max_height, queue).await.for_account(&account)
    }

    /// An authenticated upload of `account`, from the usage check on.
    async fn enqueue(
        &self,
        request: &HttpRequest,
        account: &str,
        max_width: u32,
        max_height: u32,
        queue: &mut QueueClient,
    ) -> HttpResponse {
        if self.usage.as_ref().is_some_and(|usage| usage.failed()) {
            return HttpResponse::error(
                503,
                "usage_log_failed",
                "this server cannot count usage durably; use another",
            );
        }
        let idempotency = match request.header("idempotency-key") {
            Some(key) if key.is_empty() || key.len() > 128 => {
                return HttpResponse::error(
                    400,
                    "bad_parameters",
                    "Idempotency-Key has 1 to 128 bytes",
                )
            }
            Some(key) => key.to_string(),
            None => format!("auto-{:032x}", self.rng.lock().await.random::<u128>()),
        };
        let spec = JobSpec {
            account: account.to_string(),
            max_width,
            max_height,
            image: request.body.to_vec(),
        };
        let command =
            Command::Enqueue { key: format!("{account}/{idempotency}"), payload: spec.encode() };
        match queue.submit(command).await {
            Ok(reply) => match reply.response {
                Response::Enqueued { job, duplicate } => {
                    if let (Some(usage), false) = (&self.usage, duplicate) {
                        if let Err(reason) = usage.count(account, job).await {
                            // Enqueued, but maybe not counted: the usage log must be mended.
                            return HttpResponse::json(
                                503,
                                &json!({ "error": "usage_log_failed", "outcome": "applied",
                                         "job": job, "message": reason }),
                            );
                        }
                    }
                    HttpResponse::json(202, &json!({ "job": job, "duplicate": duplicate }))
                }
                Response::Full { limit } => HttpResponse::json(
                    503,
                    &json!({ "error": "queue_full", "outcome": "not_applied",
                             "message": format!("the queue holds {limit} unfinished jobs") }),
                ),
                other => {
                    HttpResponse::error(500, "internal", format!("unexpected answer {other:?}"))
                }
            },
            Err(error) => unavailable(error),
        }
    }

    async fn job(&self, request: &HttpRequest, job: u64, queue: &mut QueueClient) -> HttpResponse {
        let account = match self.authenticate(request).await {
            Ok(account) => account,
            Err(response) => return response,
        };
        self.inspect(job, &account, queue).await.for_account(&account)
    }

    /// An authenticated status poll of `account`.
    async fn inspect(&self, job: u64, account: &str, queue: &mut QueueClient) -> HttpResponse {
        let not_found = || HttpResponse::error(404, "not_found", format!("no job {job}"));
        let (key, status) = match queue.submit(Command::Inspect { job }).await {
            Ok(reply) => match reply.response {
                Response::Inspected { key: Some(key), status, .. } => (key, status),
                Response::Inspected { key: None, .. } => return not_found(),
                other => {
                    return HttpResponse::error(
                        500,
                        "internal",
                        format!("unexpected answer {other:?}"),
                    )
                }
            },
            Err(error) => return unavailable(error),
        };
        if !key.starts_with(&format!("{account}/")) {
            return not_found();
        }
        match status {
            JobStatus::Done { result, .. } => HttpResponse::new(200, "image/jpeg", result.into()),
            JobStatus::Queued { attempts } => HttpResponse::json(
                200,
                &json!({ "job": job, "status": "queued", "attempts": attempts }),
            ),
            JobStatus::Leased { attempts, .. } => HttpResponse::json(
                200,
                &json!({ "job": job, "status": "running", "attempts": attempts }),
            ),
            JobStatus::DeadLettered { attempts, reason } => HttpResponse::json(
                200,
                &json!({ "job": job, "status": "failed", "attempts": attempts, "reason": reason }),
            ),
            JobStatus::Unknown => not_found(),
        }
    }

    /// The account the request's key belongs to, or the error response.
    async fn authenticate(&self, request: &HttpRequest) -> Result<String, HttpResponse> {
        let Some(secret) = request.header("authorization").and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(HttpResponse::error(
                401,
                "unauthorized",
                "Authorization: Bearer <api key> is required",
            ));
        };
        let secret_hash = hash_secret(secret);
        // The cache's age on monotonic time: no wall-clock fault may extend its trust.
        let now_ms = self.clock.monotonic_ms();
        let decision = self.cache.lock().expect("cache").decide(&secret_hash, now_ms);
        let decision = match decision {
            Decision::Miss => self.lookup(&secret_hash).await,
            decided => Some(decided),
        };
        match decision {
            Some(Decision::Accept { account, .. }) => Ok(account),
            Some(Decision::Revoked { key }) => {
                Err(HttpResponse::error(403, "revoked", format!("key {key} was revoked")))
            }
            Some(Decision::Unknown) | Some(Decision::Miss) => {
                Err(HttpResponse::error(401, "unauthorized", "unknown API key"))
            }
            None => match self.auth.on_miss_unreachable {
                MissPolicy::Deny => Err(HttpResponse::error(
                    401,
                    "unauthorized",
                    "unknown API key (the key service is unreachable)",
                )),
                MissPolicy::Unavailable => Err(HttpResponse::error(
                    503,
                    "auth_unavailable",
                    "the key cannot be checked now; retry",
                )),
                MissPolicy::Allow => Ok(UNAUTHENTICATED_ACCOUNT.to_string()),
            },
        }
    }

    /// Asks the management plane about a key the cache cannot answer for; `None` when the plane
    /// did not answer (or too many lookups are in flight).
    async fn lookup(&self, secret_hash: &str) -> Option<Decision> {
        let mut client = self.lookup_clients.lock().expect("pool").pop()?;
        let outcome = client
            .submit(auth_machine::Command::Lookup { secret_hash: secret_hash.to_string() })
            .await;
        self.lookup_clients.lock().expect("pool").push(client);
        match outcome.ok()?.response {
            auth_machine::Response::Found(found) => {
                if let Some(record) = &found {
                    self.cache.lock().expect("cache").insert(record.clone());
                }
                Some(IdentityCache::decide_found(found.as_ref()))
            }
            _ => None,
        }
    }
}

fn unavailable(error: ClientError) -> HttpResponse {
    let outcome = match error {
        ClientError::Refused(_) => "not_applied",
        ClientError::Unknown { .. } => "unknown",
    };
    HttpResponse::json(
        503,
        &json!({ "error": "unavailable", "outcome": outcome, "message": error.to_string() }),
    )
}

/// Pulls the management plane's changes every `refresh_ms`, for as long as the server runs.
async fn refresh_loop(server: Arc<ApiServer>, mut client: AuthClient) {
    let period = Duration::from_millis(server.auth.refresh_ms);
    let mut failing = false;
    loop {
        let since = server.cache.lock().expect("cache").version();
        // Read before the request leaves: the answer is at least this new, however long
        // its tries take, so the cache's trust counts from here.
        let pulled_at_ms = server.clock.monotonic_ms();
        match client.submit(auth_machine::Command::Changes { since }).await {
            Ok(reply) => {
                if let auth_machine::Response::Changes { records, version } = reply.response {
                    let complete = records.len() < auth_machine::CHANGES_MAX;
                    let changed = records.len();
                    server.cache.lock().expect("cache").apply_changes(
                        records,
                        version,
                        pulled_at_ms,
                        complete,
                    );
                    if changed > 0 || failing {
                        server.recorder.record(
                            "auth_refreshed",
                            json!({ "version": version, "records": changed }),
                        );
                    }
                    failing = false;
                    if !complete {
                        continue; // More pages wait.
                    }
                }
            }
            Err(error) => {
                if !failing {
                    server
                        .recorder
                        .record("auth_refresh_failed", json!({ "reason": error.to_string() }));
                }
                failing = true;
            }
        }
        server.clock.sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_cost_model_is_off_by_default_and_validated() {
        let settings = ApiSettings::default();
        assert_eq!(settings.upload_cpu_time(), None);
        let modelled = ApiSettings { cores: 2, uploads_per_s_per_core: 25.0, ..settings.clone() };
        assert_eq!(modelled.upload_cpu_time(), Some(Duration::from_millis(40)));
        assert!(modelled.validate().is_ok());
        let no_cores = ApiSettings { cores: 0, ..settings.clone() };
        assert_eq!(no_cores.validate().unwrap_err().0, "cores");
        let negative = ApiSettings { uploads_per_s_per_core: -1.0, ..settings };
        assert_eq!(negative.validate().unwrap_err().0, "uploads_per_s_per_core");
    }
}
