//! Authentication, split in two planes.
//!
//! - The **management plane** ([`machine`], [`serve`]): accounts and API keys, created and
//!   revoked rarely, through admin HTTP endpoints on the plane's own nodes, and stored strongly
//!   consistent: the plane is a Raft group ([`crate::replica`]) of `auth` nodes, the same
//!   replication the queue uses, with its own state machine. Keys are stored hashed.
//! - The **data plane** ([`cache`]): every API server authenticates every request from its own
//!   cache of identities, pulled from the management plane, with a TTL. It favours
//!   availability: with the management plane cut off, cached keys keep working for the TTL.
//!
//! Admin endpoints (on each auth node, at its address's port + [`ADMIN_PORT_OFFSET`]; every
//! request carries `Authorization: Bearer <admin_key>`):
//! - `POST /v1/admin/accounts` with `{"name": "..."}`: 201 `{"account": id}`;
//! - `POST /v1/admin/accounts/{account}/keys`: 201 `{"key": id, "api_key": secret}`; the
//!   secret is shown once, the plane keeps only its hash;
//! - `DELETE /v1/admin/keys/{key}`: 200 `{"key": id, "revoked_ms": t}`.
//!
//! A known path asked with another method is 405 with `Allow`. The endpoints hold the same
//! edge as the API servers ([`crate::http::EdgeLimits`]): at most `admin_connections_max`
//! connections (one more is answered 503 and closed) and `admin_in_flight_max` requests
//! handled at once (more are 429), a request head within `admin_header_read_timeout_ms` and a
//! body within `admin_body_read_timeout_ms` (else the connection is closed, or 408).
//!
//! An `Idempotency-Key` header makes a retried create safe: ids (and a key's secret) are then
//! derived from it and the admin key, so the retry finds what the first try made. Errors: 400
//! bad request, 401 bad admin key, 404 unknown account or key, 409 an id already taken, 503
//! the plane has no quorum (with `"outcome": "unknown"` when the change may still happen).

pub mod cache;
pub mod machine;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::http::{self, HttpRequest, HttpResponse};
use crate::node::{KnobSettings, NodeContext};
use crate::replica::client::{Client, ClientError, ClientOptions};
use crate::replica::{self, RaftSettings, ReplicaMessage};
use crate::seams::net::{Transport, TransportOptions};
use cache::MissPolicy;
use machine::{AuthMachine, Command, Response};

/// The role name of the management plane's nodes.
pub const ROLE: &str = "auth";
/// The admin HTTP port is the node's address port plus this.
pub const ADMIN_PORT_OFFSET: u16 = 1;
/// Largest admin request body.
pub const ADMIN_BODY_BYTES_MAX: usize = 4096;

/// Messages on the management plane's transport.
pub type AuthMessage = ReplicaMessage<Command, Response>;
/// The management plane's client (admin endpoints, API servers' pulls and lookups).
pub type AuthClient = Client<AuthMachine>;

/// Settings under the scenario's `auth` knob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The management plane's Raft tick and election, as for the queue.
    pub tick_ms: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub snapshot_every: u64,
    /// The data plane pulls changes this often.
    pub refresh_ms: u64,
    /// Each try of a pull gives up after this long; a lookup (on an upload's request path)
    /// gives up after this long in all, its tries and their backoff included.
    pub refresh_timeout_ms: u64,
    /// The cache is trusted this long after its last successful pull.
    pub ttl_ms: u64,
    /// What an API server answers for a key it cannot confirm with the plane unreachable.
    pub on_miss_unreachable: MissPolicy,
    /// Lookups of unknown keys an API server has in flight at once; more answer as a miss
    /// with the plane unreachable would (so a flood of bad keys cannot overload the plane).
    pub lookups_in_flight_max: usize,
    /// The admin endpoints' bearer secret.
    pub admin_key: String,
    /// The admin endpoints' edge: connections served at once (more are 503), requests
    /// handled at once (more are 429), and how long a request head and a body may take.
    pub admin_connections_max: usize,
    pub admin_in_flight_max: usize,
    pub admin_header_read_timeout_ms: u64,
    pub admin_body_read_timeout_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_every: 256,
            refresh_ms: 1000,
            refresh_timeout_ms: 1000,
            ttl_ms: 10_000,
            on_miss_unreachable: MissPolicy::Unavailable,
            lookups_in_flight_max: 16,
            admin_key: "pessimist-admin".into(),
            admin_connections_max: 256,
            admin_in_flight_max: 64,
            admin_header_read_timeout_ms: 10_000,
            admin_body_read_timeout_ms: 10_000,
        }
    }
}

impl KnobSettings for AuthSettings {
    const KNOB: &'static str = "auth";

    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        self.raft().validate()?;
        if !(10..=3_600_000).contains(&self.refresh_ms) {
            return fail("refresh_ms", "must be between 10 and 3600000");
        }
        if !(10..=60_000).contains(&self.refresh_timeout_ms) {
            return fail("refresh_timeout_ms", "must be between 10 and 60000");
        }
        if self.ttl_ms < self.refresh_ms {
            return fail("ttl_ms", "must be at least refresh_ms (else the cache is never fresh)");
        }
        if self.lookups_in_flight_max == 0 {
            return fail("lookups_in_flight_max", "must be at least 1");
        }
        if self.admin_key.len() < 8 {
            return fail("admin_key", "must have at least 8 bytes");
        }
        if !(1..=10_000).contains(&self.admin_in_flight_max) {
            return fail("admin_in_flight_max", "must be between 1 and 10000");
        }
        let edge = self.admin_edge();
        http::validate_edge(
            edge.connections_max,
            edge.header_bytes_max,
            self.admin_header_read_timeout_ms,
            self.admin_body_read_timeout_ms,
        )
        .map_err(|(field, message)| (format!("admin_{field}"), message))
    }
}

impl AuthSettings {
    /// The admin endpoints' edge.
    pub fn admin_edge(&self) -> http::EdgeLimits {
        http::EdgeLimits {
            connections_max: self.admin_connections_max,
            header_read_timeout: Duration::from_millis(self.admin_header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(self.admin_body_read_timeout_ms),
            in_flight_max: Some(self.admin_in_flight_max),
            ..http::EdgeLimits::new(ADMIN_BODY_BYTES_MAX)
        }
    }
}

impl AuthSettings {
    pub fn raft(&self) -> RaftSettings {
        RaftSettings {
            tick_ms: self.tick_ms,
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            snapshot_every: self.snapshot_every,
            ..RaftSettings::default()
        }
    }

    /// How long after a revocation commits an API server may still accept the key, in true
    /// time: the TTL plus the longest a pull that read the plane before the revocation can
    /// take. The cache counts its TTL on monotonic time from a pull's start, so it keeps
    /// within the TTL alone; the pull's timeout is the promise's margin.
    pub fn revocation_bound_ms(&self) -> u64 {
        self.ttl_ms + self.refresh_timeout_ms
    }
}

/// A client of the management plane for `owner` (its name on the wire): three tries of
/// `timeout_ms` each, all within `budget` when one is given.
pub fn client(
    context: &NodeContext,
    owner: &str,
    timeout_ms: u64,
    budget: Option<Duration>,
) -> AuthClient {
    let (transport, _) = Transport::<AuthMessage>::unbound(
        owner,
        context.book.clone(),
        TransportOptions::default(),
        context.link_faults.clone(),
        context.rng(&format!("{owner}/transport")),
    );
    let options = ClientOptions {
        attempt_timeout: Duration::from_millis(timeout_ms),
        attempts: 3,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        budget,
    };
    let nodes = context.peers(ROLE);
    Client::new(
        transport,
        nodes,
        context.clock.clone(),
        context.rng(&format!("{owner}/client")),
        options,
    )
}

/// The admin HTTP address of an auth node whose transport address is `address`.
pub fn admin_address(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip(), address.port() + ADMIN_PORT_OFFSET)
}

/// Runs a management plane node: its Raft replica and its admin endpoints.
pub async fn serve(context: NodeContext) {
    let settings = match AuthSettings::from_knobs_line(&context.knobs) {
        Ok(settings) => settings,
        Err(reason) => {
            let reason = format!("bad settings: {reason}");
            return context
                .recorder
                .record("raft_stopped", json!({ "group": ROLE, "reason": reason }));
        }
    };
    if let Some(address) = context.book.get(&context.name) {
        match TcpListener::bind(admin_address(address)).await {
            Ok(listener) => {
                let admin = Arc::new(Admin {
                    client: Mutex::new(client(
                        &context,
                        &format!("{}/admin", context.name),
                        1000,
                        None,
                    )),
                    rng: Mutex::new(context.rng("admin")),
                    settings: settings.clone(),
                });
                let handler = move |request| {
                    let admin = admin.clone();
                    async move { admin.handle(request).await }
                };
                let (edge, log) = (settings.admin_edge(), context.recorder.clone());
                tokio::spawn(http::serve(listener, edge, log, handler));
            }
            Err(error) => context
                .recorder
                .record("admin_unavailable", json!({ "reason": format!("bind: {error}") })),
        }
    }
    replica::node::serve(context, settings.raft(), AuthMachine::new()).await
}

/// The admin endpoints of one node. Requests share one client (one at a time): admin traffic
/// is rare by design.
struct Admin {
    client: Mutex<AuthClient>,
    rng: Mutex<crate::seams::rng::SeededRng>,
    settings: AuthSettings,
}

impl Admin {
    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        let expected = format!("Bearer {}", self.settings.admin_key);
        if request.header("authorization") != Some(expected.as_str()) {
            return HttpResponse::error(401, "unauthorized", "a valid admin key is required");
        }
        let idempotency = request.header("idempotency-key").map(str::to_string);
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "admin", "accounts"]) => {
                let Some(name) = serde_json::from_slice::<serde_json::Value>(&request.body)
                    .ok()
                    .and_then(|body| body["name"].as_str().map(str::to_string))
                else {
                    return HttpResponse::error(
                        400,
                        "bad_request",
                        "body must be {\"name\": string}",
                    );
                };
                let account = self.new_id("acct", idempotency.as_deref(), &name).await;
                let command = Command::CreateAccount { account, name };
                self.submit(command, 201).await
            }
            ("POST", ["v1", "admin", "accounts", account, "keys"]) => {
                let account = account.to_string();
                let key = self.new_id("key", idempotency.as_deref(), &account).await;
                let secret =
                    self.new_id("sk", idempotency.as_deref(), &format!("{account}/secret")).await;
                let secret_hash = machine::hash_secret(&secret);
                let command = Command::CreateKey { key, account, secret_hash };
                let mut response = self.submit(command, 201).await;
                if response.status == 201 {
                    if let Some(mut body) = response.body_json() {
                        body["api_key"] = json!(secret);
                        response = HttpResponse::json(201, &body);
                    }
                }
                response
            }
            ("DELETE", ["v1", "admin", "keys", key]) => {
                self.submit(Command::RevokeKey { key: key.to_string() }, 200).await
            }
            (method, ["v1", "admin", "accounts"] | ["v1", "admin", "accounts", _, "keys"]) => {
                HttpResponse::method_not_allowed(method, &request.path, &["POST"])
            }
            (method, ["v1", "admin", "keys", _]) => {
                HttpResponse::method_not_allowed(method, &request.path, &["DELETE"])
            }
            _ => HttpResponse::error(
                404,
                "not_found",
                format!("no route {} {}", request.method, request.path),
            ),
        }
    }

    /// A fresh id, or one derived from the idempotency key (and the admin key, so nobody can
    /// compute another's secret from an idempotency key).
    async fn new_id(&self, prefix: &str, idempotency: Option<&str>, scope: &str) -> String {
        let body = match idempotency {
            Some(idempotency) => {
                let material = format!("{}\n{scope}\n{idempotency}", self.settings.admin_key);
                blake3::hash(material.as_bytes()).to_hex()[..24].to_string()
            }
            None => {
                let value: u128 = self.rng.lock().await.random();
                format!("{:024x}", value & ((1u128 << 96) - 1))
            }
        };
        format!("{prefix}_{body}")
    }

    async fn submit(&self, command: Command, created: u16) -> HttpResponse {
        let outcome = self.client.lock().await.submit(command).await;
        match outcome {
            Ok(reply) => match reply.response {
                Response::AccountCreated { account } => {
                    HttpResponse::json(created, &json!({ "account": account }))
                }
                Response::KeyCreated { key } => HttpResponse::json(created, &json!({ "key": key })),
                Response::KeyRevoked { key, revoked_ms } => {
                    HttpResponse::json(200, &json!({ "key": key, "revoked_ms": revoked_ms }))
                }
                Response::Refused { reason } if reason.starts_with("no ") => {
                    HttpResponse::error(404, "not_found", reason)
                }
                Response::Refused { reason }
                    if reason.contains("taken") || reason.contains("exists") =>
                {
                    HttpResponse::error(409, "conflict", reason)
                }
                Response::Refused { reason } => HttpResponse::error(400, "bad_request", reason),
                other => {
                    HttpResponse::error(500, "internal", format!("unexpected answer {other:?}"))
                }
            },
            Err(ClientError::Refused(reason)) => HttpResponse::json(
                503,
                &json!({ "error": "unavailable", "outcome": "not_applied", "message": reason }),
            ),
            Err(error @ ClientError::Unknown { .. }) => HttpResponse::json(
                503,
                &json!({ "error": "unavailable", "outcome": "unknown", "message": error.to_string() }),
            ),
        }
    }
}
