//! The image service's workload: real HTTP clients of the API servers and the admin endpoints.
//!
//! - **The admin** (process 0) creates the accounts and their keys, then every
//!   `key_rotation_ms` creates a new key for one account, probes it until it works, revokes
//!   that account's oldest key and probes that until it stops working.
//! - **Uploaders** (processes 1..) upload images at Poisson times to a random API server, with
//!   an `Idempotency-Key` and retries on another server when the answer may be transient. In
//!   open loop each upload is a process of its own (`uploader << 32 | n`), so uploads overlap.
//!   Images are generated from a recorded spec ([`ImageSpec`]): a photo-like JPEG, or a
//!   poison pill with probability `pill_fraction`; a share of uploads use a key that never
//!   existed.
//! - **Pollers** (one per uploader) poll every accepted job until it is done (the thumbnail)
//!   or failed, through the drain that follows the heal.
//! - **The revoker** (process `2 * uploaders + 2`, with `revoke_at_ms`) revokes one key at each
//!   of those times, whatever the faults are doing: it creates the account's next key and
//!   revokes its oldest at once, without waiting for the new key to work, so a revocation can
//!   fall inside a management-plane outage, a clock fault or a restart the plan aims there.
//! - **Server probers** (one per API server, processes `2 * uploaders + 3 + i`, with
//!   `revoked_probe_ms` or `cross_account_read_ms`) probe every revoked key (the admin's and
//!   the revoker's) on their server every `probe_ms` for `revoked_probe_ms` after its
//!   revocation was acknowledged, so a checker sees how long it kept working on each server;
//!   and every `cross_account_read_ms` read a job of one account with a valid key of another.
//!   (Process `2 * uploaders + 1` is the final bill's.)
//!
//! History shapes ([`crate::service::check`] reads them):
//! - `create_account` / `create_key` / `revoke_key`: invoke `{account}` / `{account}` /
//!   `{key}`; ok adds `{account}` / `{key}` / `{key, revoked_ms}`;
//! - `upload`: invoke `{account, key, image, idempotency}` (`key` is `null` for a key that
//!   never existed), ok `{status: 202, job, duplicate}`, fail or info `{status}` (0 when no
//!   HTTP answer came);
//! - `fetch`: invoke `{job, account}`, ok `{job, status: "done", thumbnail, bytes, width,
//!   height, signature}` (the thumbnail's BLAKE3 digest, and its size and mean-colour grid as
//!   the client decoded it, [`crate::service::thumbnail_oracle::Signature`]; `undecodable` instead of the
//!   last three when it is no JPEG) or
//!   `{job, status: "failed" | "queued" | "running", reason?}`;
//! - `probe` (the admin checking a key, or a server prober a revoked key): invoke `{key, want}`
//!   (a prober's adds `node`, the server it asks), ok `{key, status}`;
//! - `read_other` (a prober reading another account's job): invoke `{job, account, key, node}`
//!   (`account` and `key`: the key used, not the job's owner), ok `{job, status}`, fail
//!   `{job, status: 0}` when no HTTP answer came.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pessimist_core::history::{EventKind, History};
use pessimist_core::http::{self, HttpError, HttpResponse};
use pessimist_core::resize::pills::{self, PillKind};
use pessimist_core::seams::rng::{rng_for, SeededRng};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::service::thumbnail_oracle::Signature;

/// The image service workload's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceWorkload {
    pub accounts: u32,
    pub keys_per_account: u32,
    /// Upload processes (each with its poller).
    pub uploaders: u64,
    /// Uploads each uploader starts per simulated second, on average (Poisson arrivals).
    pub uploads_per_s: f64,
    /// Generated images' sides, drawn uniformly.
    pub image_side_min: u32,
    pub image_side_max: u32,
    /// The bounding box asked for.
    pub thumbnail_side: u32,
    /// Share of uploads that are poison pills, of the kinds listed.
    pub pill_fraction: f64,
    /// Kind names: `png_declares_13000`, `png_declares_50000`, `jpeg_lying_header`,
    /// `truncated_jpeg`, `corrupted_image`, `crash_trigger` (these six by default), and
    /// `jpeg_scan_bomb`, `png_decompression_bomb` (CPU bombs), `png_huge_text_chunk`,
    /// `jpeg_no_scan_data` (the service crate has no schema support, so the schema describes
    /// them as strings).
    #[schemars(with = "Vec<String>")]
    pub pill_kinds: Vec<PillKind>,
    /// Share of uploads made with a key that never existed.
    pub unknown_key_fraction: f64,
    /// Every this often the admin rotates one account's key (0: never).
    pub key_rotation_ms: u64,
    /// How often the admin probes a key it waits on.
    pub probe_ms: u64,
    /// One HTTP request's timeout, and tries per upload.
    pub request_timeout_ms: u64,
    pub upload_attempts: u32,
    /// After failing to connect to an API server, a client leaves it out of its choices for
    /// this long, as a load balancer's health check would (0: never; every request picks any
    /// server at random).
    pub avoid_unreachable_ms: u64,
    /// Whether uploads start at their Poisson times whatever the earlier ones are doing (each
    /// in a process of its own), instead of each uploader awaiting one upload before the next:
    /// an overloaded service is then offered the full rate, not the rate it can answer.
    pub open_loop: bool,
    /// How often a poller polls each pending job.
    pub poll_ms: u64,
    /// A burst: from `burst_at_ms` (0: no burst) for `burst_ms`, every uploader uploads
    /// `burst_factor` times as often.
    pub burst_at_ms: u64,
    pub burst_ms: u64,
    pub burst_factor: f64,
    /// Simulated times (ms) at which the revoker revokes one more key, each the oldest of
    /// the next account in turn once its replacement is created, without waiting for the
    /// replacement to work (empty: no revoker).
    pub revoke_at_ms: Vec<u64>,
    /// How long after its revocation was acknowledged every revoked key is probed on every
    /// API server, every `probe_ms` (0: no such probes).
    pub revoked_probe_ms: u64,
    /// How often each server prober reads a job of one account with a valid key of another
    /// (0: never).
    pub cross_account_read_ms: u64,
}

impl Default for ServiceWorkload {
    fn default() -> Self {
        ServiceWorkload {
            accounts: 3,
            keys_per_account: 2,
            uploaders: 3,
            uploads_per_s: 3.0,
            image_side_min: 48,
            image_side_max: 160,
            thumbnail_side: 32,
            pill_fraction: 0.0,
            pill_kinds: PillKind::DEFAULT_MIX.to_vec(),
            unknown_key_fraction: 0.02,
            key_rotation_ms: 5000,
            probe_ms: 100,
            request_timeout_ms: 3000,
            upload_attempts: 3,
            avoid_unreachable_ms: 0,
            open_loop: false,
            poll_ms: 500,
            burst_at_ms: 0,
            burst_ms: 0,
            burst_factor: 1.0,
            revoke_at_ms: Vec::new(),
            revoked_probe_ms: 0,
            cross_account_read_ms: 0,
        }
    }
}

impl ServiceWorkload {
    /// Uploads per second of one uploader at simulated time `now_us`: the burst's inside it.
    pub fn uploads_per_s_at(&self, now_us: u64) -> f64 {
        let (from_us, to_us) = (self.burst_at_ms * 1000, (self.burst_at_ms + self.burst_ms) * 1000);
        if self.burst_at_ms > 0 && (from_us..to_us).contains(&now_us) {
            self.uploads_per_s * self.burst_factor
        } else {
            self.uploads_per_s
        }
    }

    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if !(1..=1000).contains(&self.accounts) {
            return fail("accounts", "must be between 1 and 1000");
        }
        if !(1..=100).contains(&self.keys_per_account) {
            return fail("keys_per_account", "must be between 1 and 100");
        }
        if !(1..=100).contains(&self.uploaders) {
            return fail("uploaders", "must be between 1 and 100");
        }
        if !(self.uploads_per_s > 0.0 && self.uploads_per_s <= 10_000.0) {
            return fail("uploads_per_s", "must be above 0 and at most 10000");
        }
        if self.image_side_min < 8
            || self.image_side_min > self.image_side_max
            || self.image_side_max > 2048
        {
            return fail("image_side_min", "sides must satisfy 8 <= min <= max <= 2048");
        }
        if !(1..=4096).contains(&self.thumbnail_side) {
            return fail("thumbnail_side", "must be between 1 and 4096");
        }
        for (field, fraction) in [
            ("pill_fraction", self.pill_fraction),
            ("unknown_key_fraction", self.unknown_key_fraction),
        ] {
            if !(0.0..=1.0).contains(&fraction) {
                return fail(field, "not a fraction in [0, 1]");
            }
        }
        if self.pill_fraction > 0.0 && self.pill_kinds.is_empty() {
            return fail("pill_kinds", "must name at least one kind when pill_fraction > 0");
        }
        if !(1.0..=100.0).contains(&self.burst_factor) {
            return fail("burst_factor", "must be between 1 and 100");
        }
        if self.burst_ms > 3_600_000 {
            return fail("burst_ms", "must be at most 3600000");
        }
        if self.key_rotation_ms != 0 && self.key_rotation_ms < 100 {
            return fail("key_rotation_ms", "must be 0 (off) or at least 100");
        }
        for (field, value) in [
            ("probe_ms", self.probe_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("poll_ms", self.poll_ms),
        ] {
            if !(1..=600_000).contains(&value) {
                return fail(field, "must be between 1 and 600000");
            }
        }
        if !(1..=20).contains(&self.upload_attempts) {
            return fail("upload_attempts", "must be between 1 and 20");
        }
        if self.avoid_unreachable_ms > 600_000 {
            return fail("avoid_unreachable_ms", "must be at most 600000");
        }
        if self.revoke_at_ms.len() > REVOCATIONS_MAX {
            return fail("revoke_at_ms", &format!("at most {REVOCATIONS_MAX} revocations"));
        }
        if self.revoke_at_ms.iter().any(|&at_ms| at_ms > 3_600_000) {
            return fail("revoke_at_ms", "every time must be at most 3600000");
        }
        for (field, value) in [
            ("revoked_probe_ms", self.revoked_probe_ms),
            ("cross_account_read_ms", self.cross_account_read_ms),
        ] {
            if value > 600_000 {
                return fail(field, "must be at most 600000");
            }
        }
        Ok(())
    }
}

/// Most scheduled revocations (`revoke_at_ms`): each is probed on every server, so they bound
/// the probers' work.
pub const REVOCATIONS_MAX: usize = 100;

/// The revoker's process number.
pub fn revoker_process(workload: &ServiceWorkload) -> u64 {
    2 * workload.uploaders + 2
}

/// The process number of the prober of the `server`-th API server.
pub fn prober_process(workload: &ServiceWorkload, server: usize) -> u64 {
    2 * workload.uploaders + 3 + server as u64
}

/// What an uploaded image is: enough to generate it again, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// `photo`, or a pill kind's name.
    pub kind: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
}

impl ImageSpec {
    /// The image's bytes. A spec that names no known kind is `None`.
    pub fn generate(&self) -> Option<Vec<u8>> {
        let mut rng = rng_for(self.seed, "image");
        if self.kind == "photo" {
            return Some(pills::photo_like_jpeg(&mut rng, self.width, self.height, 85));
        }
        let kind = PillKind::ALL.into_iter().find(|kind| kind.name() == self.kind)?;
        Some(pills::generate(kind, &mut rng))
    }

    pub fn is_pill(&self) -> bool {
        self.kind != "photo"
    }
}

/// Where the workload sends its requests.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub api: Vec<SocketAddr>,
    /// The API servers' names, in the order of `api`: probes name the server they ask.
    pub api_names: Vec<String>,
    pub admin: Vec<SocketAddr>,
    pub admin_key: String,
    /// The load balancer's passive health check, shared by every client: API servers some
    /// client failed to connect to, left out until the simulated time (µs) given.
    pub unreachable: Unreachable,
}

pub type Unreachable = Arc<Mutex<BTreeMap<SocketAddr, u64>>>;

/// Keys the admin made, by account: (key id, secret), oldest first. Uploaders take keys from
/// here; a key leaves it before it is revoked.
#[derive(Debug, Default)]
pub struct Keyring {
    pub accounts: Vec<String>,
    pub keys: BTreeMap<String, VecDeque<(String, String)>>,
}

impl Keyring {
    /// Adds `account`'s newest key and hands back its oldest, the one a rotation revokes.
    fn rotate(&mut self, account: &str, key: String, secret: String) -> Option<(String, String)> {
        let keys = self.keys.entry(account.to_string()).or_default();
        keys.push_back((key, secret));
        keys.pop_front()
    }
}

pub type SharedKeyring = Arc<Mutex<Keyring>>;

/// A key whose revocation the admin or the revoker saw acknowledged, for the server probers.
#[derive(Clone, Debug)]
pub struct RevokedKey {
    pub key: String,
    pub secret: String,
    /// When the revocation's acknowledgement came (simulated µs).
    pub acknowledged_us: u64,
}

pub type RevokedKeys = Arc<Mutex<Vec<RevokedKey>>>;

/// An accepted job a poller follows.
#[derive(Clone, Debug)]
pub struct Pending {
    pub job: u64,
    pub account: String,
}

/// An uploader's accepted jobs its poller has yet to see finished, and whether the uploader
/// is done (its last upload answered): until then more may come, whatever the time.
#[derive(Debug, Default)]
pub struct PendingState {
    pub jobs: VecDeque<Pending>,
    pub uploads_done: bool,
}

pub type PendingJobs = Arc<Mutex<PendingState>>;

struct Client {
    process: u64,
    history: History,
    rng: SeededRng,
    timeout: Duration,
    /// How long a server some client failed to connect to is left out (0: never).
    avoid_us: u64,
    unreachable: Unreachable,
}

impl Client {
    /// Process `process`'s client, its RNG drawn from the run's seed under `label`.
    fn new(
        process: u64,
        history: &History,
        seed: u64,
        label: &str,
        workload: &ServiceWorkload,
        endpoints: &Endpoints,
    ) -> Client {
        Client {
            process,
            history: history.clone(),
            rng: rng_for(seed, label),
            timeout: Duration::from_millis(workload.request_timeout_ms),
            avoid_us: workload.avoid_unreachable_ms * 1000,
            unreachable: endpoints.unreachable.clone(),
        }
    }

    /// A server at random among those the health check has not left out (among all when it
    /// left out every one).
    fn pick(&mut self, servers: &[SocketAddr]) -> SocketAddr {
        let healthy: Vec<SocketAddr> = {
            let now_us = self.history.now_us();
            let mut unreachable = self.unreachable.lock().expect("unreachable");
            unreachable.retain(|_, until_us| *until_us > now_us);
            servers.iter().copied().filter(|server| !unreachable.contains_key(server)).collect()
        };
        let choices = if healthy.is_empty() { servers } else { &healthy };
        choices[self.rng.random_range(0..choices.len())]
    }

    fn invoke(&self, f: &str, value: Value) {
        self.history.record(EventKind::Invoke { process: self.process, f: f.into(), value });
    }
    fn ok(&self, f: &str, value: Value) {
        self.history.record(EventKind::Ok { process: self.process, f: f.into(), value });
    }
    fn fail(&self, f: &str, value: Value, error: String) {
        self.history.record(EventKind::Fail { process: self.process, f: f.into(), value, error });
    }
    fn info(&self, f: &str, value: Value, error: String) {
        self.history.record(EventKind::Info { process: self.process, f: f.into(), value, error });
    }

    async fn call(
        &mut self,
        address: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpResponse, HttpError> {
        let answer = http::request(address, method, path, headers, body, self.timeout).await;
        if let (Err(HttpError::Connect(..)), true) = (&answer, self.avoid_us > 0) {
            let until_us = self.history.now_us() + self.avoid_us;
            self.unreachable.lock().expect("unreachable").insert(address, until_us);
        }
        answer
    }
}

/// One client process of the workload, to spawn where its caller puts client processes.
pub struct ClientProcess {
    /// Its turn among the client nodes: 0 for the admin, the uploader's process number for an
    /// uploader and for its poller (which has a process number of its own in the history), so
    /// the two run side by side.
    pub slot: u64,
    pub run: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Every client process of the workload, in the order they are to be spawned: the admin, then
/// each uploader followed by its poller (the two share the uploader's pending jobs). The
/// uploaders stop at `until_us`, the pollers at `drain_until_us`. The simulated run and the
/// real cluster's driver both spawn these, so the two run the same workload.
pub fn client_processes(
    workload: &ServiceWorkload,
    endpoints: &Endpoints,
    history: &History,
    seed: u64,
    until_us: u64,
    drain_until_us: u64,
) -> Vec<ClientProcess> {
    let keyring = SharedKeyring::default();
    let revoked = RevokedKeys::default();
    let admin = admin(
        workload.clone(),
        endpoints.clone(),
        keyring.clone(),
        revoked.clone(),
        history.clone(),
        seed,
        until_us,
    );
    let mut processes = vec![ClientProcess { slot: 0, run: Box::pin(admin) }];
    let mut pending_lists = Vec::new();
    for process in 1..=workload.uploaders {
        let pending = PendingJobs::default();
        pending_lists.push(pending.clone());
        let uploader = uploader(
            process,
            workload.clone(),
            endpoints.clone(),
            keyring.clone(),
            pending.clone(),
            history.clone(),
            seed,
            until_us,
        );
        processes.push(ClientProcess { slot: process, run: Box::pin(uploader) });
        let poller = poller(
            workload.uploaders + process,
            workload.clone(),
            endpoints.clone(),
            keyring.clone(),
            pending,
            history.clone(),
            seed,
            until_us,
            drain_until_us,
        );
        processes.push(ClientProcess { slot: process, run: Box::pin(poller) });
    }
    if !workload.revoke_at_ms.is_empty() {
        let run = revoker(
            workload.clone(),
            endpoints.clone(),
            keyring.clone(),
            revoked.clone(),
            history.clone(),
            seed,
            until_us,
        );
        processes.push(ClientProcess { slot: 0, run: Box::pin(run) });
    }
    if workload.revoked_probe_ms > 0 || workload.cross_account_read_ms > 0 {
        for server in 0..endpoints.api.len() {
            let prober = ServerProber {
                client: Client::new(
                    prober_process(workload, server),
                    history,
                    seed,
                    &format!("client/prober-{server}"),
                    workload,
                    endpoints,
                ),
                workload: workload.clone(),
                address: endpoints.api[server],
                name: endpoints.api_names.get(server).cloned().unwrap_or_default(),
                keyring: keyring.clone(),
                revoked: revoked.clone(),
                pending: pending_lists.clone(),
                jobs: BTreeMap::new(),
            };
            processes.push(ClientProcess { slot: 0, run: Box::pin(prober.run(until_us)) });
        }
    }
    processes
}

/// The admin: accounts and keys, then key rotation until `until_us`; each key it revokes goes
/// to `revoked` for the server probers.
pub async fn admin(
    workload: ServiceWorkload,
    endpoints: Endpoints,
    keyring: SharedKeyring,
    revoked: RevokedKeys,
    history: History,
    seed: u64,
    until_us: u64,
) {
    let client = Client::new(0, &history, seed, "client/admin", &workload, &endpoints);
    let mut admin =
        Admin { client, endpoints, workload, keyring, revoked, name: "admin", serial: 0 };
    for index in 0..admin.workload.accounts {
        let account = admin.create_account(&format!("account-{index}")).await;
        admin.keyring.lock().expect("keyring").accounts.push(account.clone());
        for _ in 0..admin.workload.keys_per_account {
            let key = admin.create_key(&account).await;
            admin
                .keyring
                .lock()
                .expect("keyring")
                .keys
                .entry(account.clone())
                .or_default()
                .push_back(key);
        }
    }
    if admin.workload.key_rotation_ms == 0 {
        return;
    }
    let mut turn = 0usize;
    loop {
        tokio::time::sleep(Duration::from_millis(admin.workload.key_rotation_ms)).await;
        if history.now_us() >= until_us {
            return;
        }
        let account = {
            let keyring = admin.keyring.lock().expect("keyring");
            keyring.accounts[turn % keyring.accounts.len()].clone()
        };
        turn += 1;
        let (key, secret) = admin.create_key(&account).await;
        admin.probe_until(&key, &secret, "accept", until_us).await;
        let oldest = admin.keyring.lock().expect("keyring").rotate(&account, key, secret);
        if let Some((old_key, old_secret)) = oldest {
            admin.revoke_key(&old_key, &old_secret).await;
            admin.probe_until(&old_key, &old_secret, "refuse", until_us).await;
        }
    }
}

/// The revoker: once the admin has made every account's keys, at each of `revoke_at_ms`
/// creates the next account's new key and revokes its oldest at once, until `until_us`.
pub async fn revoker(
    workload: ServiceWorkload,
    endpoints: Endpoints,
    keyring: SharedKeyring,
    revoked: RevokedKeys,
    history: History,
    seed: u64,
    until_us: u64,
) {
    let process = revoker_process(&workload);
    let client = Client::new(process, &history, seed, "client/revoker", &workload, &endpoints);
    let mut times = workload.revoke_at_ms.clone();
    times.sort_unstable();
    let mut revoker =
        Admin { client, endpoints, workload, keyring, revoked, name: "revoker", serial: 0 };
    // The accounts and their first keys are the admin's to make; revoking before it finished
    // could leave an account without a key.
    loop {
        if history.now_us() >= until_us {
            return;
        }
        let ready = {
            let keyring = revoker.keyring.lock().expect("keyring");
            keyring.accounts.len() == revoker.workload.accounts as usize
                && keyring.accounts.iter().all(|account| {
                    keyring.keys.get(account).map_or(0, VecDeque::len)
                        >= revoker.workload.keys_per_account as usize
                })
        };
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (turn, at_ms) in times.into_iter().enumerate() {
        let at_us = at_ms * 1000;
        let now_us = history.now_us();
        if at_us > now_us {
            tokio::time::sleep(Duration::from_micros(at_us - now_us)).await;
        }
        if history.now_us() >= until_us {
            return;
        }
        let account = {
            let keyring = revoker.keyring.lock().expect("keyring");
            keyring.accounts[turn % keyring.accounts.len()].clone()
        };
        let (key, secret) = revoker.create_key(&account).await;
        let oldest = revoker.keyring.lock().expect("keyring").rotate(&account, key, secret);
        if let Some((old_key, old_secret)) = oldest {
            revoker.revoke_key(&old_key, &old_secret).await;
        }
    }
}

/// The admin endpoints' client, for the admin and the revoker.
struct Admin {
    client: Client,
    endpoints: Endpoints,
    workload: ServiceWorkload,
    keyring: SharedKeyring,
    revoked: RevokedKeys,
    /// Prefix of its idempotency keys: the admin's and the revoker's must differ, or the
    /// plane would take one's create for a retry of the other's.
    name: &'static str,
    serial: u64,
}

impl Admin {
    /// Sends an admin request until it answers 2xx (retrying with the same idempotency key);
    /// every try is one operation in the history.
    async fn until_done(
        &mut self,
        f: &str,
        method: &str,
        path: &str,
        body: Value,
        invoke: Value,
    ) -> Value {
        self.serial += 1;
        let idempotency = format!("{}-{}", self.name, self.serial);
        let bearer = format!("Bearer {}", self.endpoints.admin_key);
        loop {
            let target =
                self.endpoints.admin[self.client.rng.random_range(0..self.endpoints.admin.len())];
            self.client.invoke(f, invoke.clone());
            let headers =
                [("authorization", bearer.as_str()), ("idempotency-key", idempotency.as_str())];
            let answer = self
                .client
                .call(target, method, path, &headers, Bytes::from(body.to_string()))
                .await;
            match answer {
                Ok(response) if (200..300).contains(&response.status) => {
                    let value = response.body_json().unwrap_or(Value::Null);
                    let mut done = invoke.clone();
                    if let (Some(done), Some(got)) = (done.as_object_mut(), value.as_object()) {
                        done.extend(
                            got.iter()
                                .filter(|(k, _)| *k != "api_key")
                                .map(|(k, v)| (k.clone(), v.clone())),
                        );
                    }
                    self.client.ok(f, done);
                    return value;
                }
                Ok(response) => {
                    let maybe = response.body_json().is_some_and(|b| b["outcome"] == "unknown");
                    let error = format!(
                        "HTTP {}: {}",
                        response.status,
                        String::from_utf8_lossy(&response.body)
                    );
                    let value = json!({ "status": response.status });
                    if maybe {
                        self.client.info(f, value, error);
                    } else {
                        self.client.fail(f, value, error);
                    }
                }
                Err(error) => {
                    let value = json!({ "status": 0 });
                    if error.may_have_arrived() {
                        self.client.info(f, value, error.to_string());
                    } else {
                        self.client.fail(f, value, error.to_string());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn create_account(&mut self, name: &str) -> String {
        let answer = self
            .until_done(
                "create_account",
                "POST",
                "/v1/admin/accounts",
                json!({ "name": name }),
                json!({ "name": name }),
            )
            .await;
        answer["account"].as_str().unwrap_or_default().to_string()
    }

    async fn create_key(&mut self, account: &str) -> (String, String) {
        let path = format!("/v1/admin/accounts/{account}/keys");
        let answer = self
            .until_done("create_key", "POST", &path, json!({}), json!({ "account": account }))
            .await;
        let key = answer["key"].as_str().unwrap_or_default().to_string();
        let secret = answer["api_key"].as_str().unwrap_or_default().to_string();
        (key, secret)
    }

    /// Revokes `key` and hands it, acknowledged, to the server probers.
    async fn revoke_key(&mut self, key: &str, secret: &str) {
        let path = format!("/v1/admin/keys/{key}");
        self.until_done("revoke_key", "DELETE", &path, json!({}), json!({ "key": key })).await;
        let acknowledged_us = self.client.history.now_us();
        let revoked = RevokedKey { key: key.into(), secret: secret.into(), acknowledged_us };
        self.revoked.lock().expect("revoked keys").push(revoked);
    }

    /// Probes `key` on the API servers (a read of a job that does not exist: 404 once the key
    /// is accepted, 401 or 403 when refused) until it is accepted (`want: accept`) or refused
    /// (`want: refuse`), or the run ends.
    async fn probe_until(&mut self, key: &str, secret: &str, want: &str, until_us: u64) {
        let bearer = format!("Bearer {secret}");
        loop {
            if self.client.history.now_us() >= until_us {
                return;
            }
            let target = self.client.pick(&self.endpoints.api);
            self.client.invoke("probe", json!({ "key": key, "want": want }));
            let answer = self
                .client
                .call(
                    target,
                    "GET",
                    "/v1/jobs/0",
                    &[("authorization", bearer.as_str())],
                    Bytes::new(),
                )
                .await;
            let status = match &answer {
                Ok(response) => response.status,
                Err(_) => 0,
            };
            match answer {
                Ok(_) => self.client.ok("probe", json!({ "key": key, "status": status })),
                Err(error) => {
                    self.client.fail("probe", json!({ "key": key, "status": 0 }), error.to_string())
                }
            }
            let done = match want {
                "accept" => status == 404,
                _ => status == 401 || status == 403,
            };
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(self.workload.probe_ms)).await;
        }
    }
}

/// One API server's prober: revoked keys and other accounts' jobs, on that server only.
struct ServerProber {
    client: Client,
    workload: ServiceWorkload,
    address: SocketAddr,
    name: String,
    keyring: SharedKeyring,
    revoked: RevokedKeys,
    /// Every uploader's pending jobs, where accepted jobs first show up.
    pending: Vec<PendingJobs>,
    /// Every accepted job seen pending so far, to its account: finished jobs stay readable.
    jobs: BTreeMap<u64, String>,
}

impl ServerProber {
    /// Every `probe_ms` until `until_us`: each revoked key still within `revoked_probe_ms` of
    /// its acknowledgement, then, when due, one read of another account's job.
    async fn run(mut self, until_us: u64) {
        let window_us = self.workload.revoked_probe_ms * 1000;
        let cross_us = self.workload.cross_account_read_ms * 1000;
        let mut next_cross_us = cross_us;
        loop {
            tokio::time::sleep(Duration::from_millis(self.workload.probe_ms)).await;
            let now_us = self.client.history.now_us();
            if now_us >= until_us {
                return;
            }
            let due: Vec<RevokedKey> = self
                .revoked
                .lock()
                .expect("revoked keys")
                .iter()
                .filter(|revoked| now_us < revoked.acknowledged_us + window_us)
                .cloned()
                .collect();
            for revoked in due {
                self.probe(&revoked).await;
            }
            if cross_us > 0 && now_us >= next_cross_us {
                next_cross_us = now_us + cross_us;
                self.read_other().await;
            }
        }
    }

    async fn probe(&mut self, revoked: &RevokedKey) {
        let bearer = format!("Bearer {}", revoked.secret);
        let key = revoked.key.as_str();
        self.client.invoke("probe", json!({ "key": key, "want": "refuse", "node": self.name }));
        let answer = self
            .client
            .call(self.address, "GET", "/v1/jobs/0", &[("authorization", &bearer)], Bytes::new())
            .await;
        match answer {
            Ok(response) => {
                self.client.ok("probe", json!({ "key": key, "status": response.status }))
            }
            Err(error) => {
                self.client.fail("probe", json!({ "key": key, "status": 0 }), error.to_string())
            }
        }
    }

    /// Reads a job accepted for one account with a valid key of another: the answer must not
    /// tell whether the job exists. Nothing to read before two accounts have keys and some
    /// job was accepted.
    async fn read_other(&mut self) {
        for pending in &self.pending {
            let pending = pending.lock().expect("pending");
            for job in &pending.jobs {
                self.jobs.entry(job.job).or_insert_with(|| job.account.clone());
            }
        }
        if self.jobs.is_empty() {
            return;
        }
        let (job, owner) = {
            let index = self.client.rng.random_range(0..self.jobs.len());
            let (job, owner) = self.jobs.iter().nth(index).expect("an index below the length");
            (*job, owner.clone())
        };
        let others: Vec<(String, (String, String))> = {
            let keyring = self.keyring.lock().expect("keyring");
            keyring
                .keys
                .iter()
                .filter(|(account, _)| **account != owner)
                .filter_map(|(account, keys)| Some((account.clone(), keys.back()?.clone())))
                .collect()
        };
        if others.is_empty() {
            return;
        }
        let (account, (key, secret)) = &others[self.client.rng.random_range(0..others.len())];
        let bearer = format!("Bearer {secret}");
        let invoke = json!({ "job": job, "account": account, "key": key, "node": self.name });
        self.client.invoke("read_other", invoke);
        let path = format!("/v1/jobs/{job}");
        let answer = self
            .client
            .call(self.address, "GET", &path, &[("authorization", &bearer)], Bytes::new())
            .await;
        match answer {
            Ok(response) => {
                self.client.ok("read_other", json!({ "job": job, "status": response.status }))
            }
            Err(error) => self.client.fail(
                "read_other",
                json!({ "job": job, "status": 0 }),
                error.to_string(),
            ),
        }
    }
}

/// One uploader: uploads at Poisson times until `until_us`. Closed loop (the default), each
/// upload is awaited before the next is drawn, so a slow service slows the uploader too; open
/// loop (`open_loop`), each upload runs in a task of its own, started on time whatever the
/// earlier ones are doing, as independent users would.
#[allow(clippy::too_many_arguments)]
pub async fn uploader(
    process: u64,
    workload: ServiceWorkload,
    endpoints: Endpoints,
    keyring: SharedKeyring,
    pending: PendingJobs,
    history: History,
    seed: u64,
    until_us: u64,
) {
    let label = format!("client/{process}/uploads");
    let mut client = Client::new(process, &history, seed, &label, &workload, &endpoints);
    let mut counter = 0u64;
    let mut in_flight = Vec::new();
    loop {
        let uniform: f64 = client.rng.random_range(f64::EPSILON..1.0);
        let rate = workload.uploads_per_s_at(history.now_us());
        let wait_us = (-uniform.ln() / rate * 1e6) as u64;
        tokio::time::sleep(Duration::from_micros(wait_us.max(1000))).await;
        if history.now_us() >= until_us {
            break;
        }
        let Some(upload) = Upload::draw(&mut client, &workload, &keyring, &mut counter) else {
            continue;
        };
        if workload.open_loop {
            let id = open_loop_process(process, counter);
            let label = format!("client/{id}/upload");
            let mut client = Client::new(id, &history, seed, &label, &workload, &endpoints);
            let (workload, endpoints, pending) =
                (workload.clone(), endpoints.clone(), pending.clone());
            in_flight.push(tokio::spawn(async move {
                upload.send(&mut client, &workload, &endpoints, &pending).await
            }));
        } else {
            upload.send(&mut client, &workload, &endpoints, &pending).await;
        }
    }
    for upload in in_flight {
        // An upload task ends on its own: its tries are bounded by timeouts.
        let _ = upload.await;
    }
    pending.lock().expect("pending").uploads_done = true;
}

/// The process id of uploader `uploader`'s `counter`-th upload in open loop: each upload is a
/// process of its own, as each has its own invoke and completion, numbered above every
/// closed-loop process.
fn open_loop_process(uploader: u64, counter: u64) -> u64 {
    (uploader << 32) | counter
}

/// One upload, drawn: whose, with which key, which image, under which idempotency key.
struct Upload {
    account: String,
    bearer: String,
    invoke: Value,
    image: Bytes,
    idempotency: String,
}

impl Upload {
    /// Draws the next upload from `client`'s RNG; `None` while the admin has made no key.
    fn draw(
        client: &mut Client,
        workload: &ServiceWorkload,
        keyring: &SharedKeyring,
        counter: &mut u64,
    ) -> Option<Upload> {
        let (account, (key, secret)) = {
            let keyring = keyring.lock().expect("keyring");
            if keyring.accounts.is_empty() {
                None
            } else {
                let account =
                    keyring.accounts[client.rng.random_range(0..keyring.accounts.len())].clone();
                let keys = keyring.keys.get(&account).cloned().unwrap_or_default();
                (!keys.is_empty())
                    .then(|| (account, keys[client.rng.random_range(0..keys.len())].clone()))
            }
        }?;
        *counter += 1;
        let (key, secret) = if client.rng.random_bool(workload.unknown_key_fraction) {
            (Value::Null, format!("sk_never_issued_{}_{counter}", client.process))
        } else {
            (json!(key), secret)
        };
        let kind = if client.rng.random_bool(workload.pill_fraction) {
            workload.pill_kinds[client.rng.random_range(0..workload.pill_kinds.len())]
                .name()
                .to_string()
        } else {
            "photo".to_string()
        };
        let spec = ImageSpec {
            kind,
            seed: client.rng.random(),
            width: client.rng.random_range(workload.image_side_min..=workload.image_side_max),
            height: client.rng.random_range(workload.image_side_min..=workload.image_side_max),
        };
        let image = Bytes::from(spec.generate().expect("the workload names only known kinds"));
        let idempotency = format!("u{}-{counter}", client.process);
        let invoke =
            json!({ "account": account, "key": key, "image": spec, "idempotency": idempotency });
        Some(Upload { account, bearer: format!("Bearer {secret}"), invoke, image, idempotency })
    }

    /// Tries the upload up to `upload_attempts` times, each on a server `client` picks; an
    /// accepted job goes to `pending` for the poller.
    async fn send(
        self,
        client: &mut Client,
        workload: &ServiceWorkload,
        endpoints: &Endpoints,
        pending: &PendingJobs,
    ) {
        let side = workload.thumbnail_side;
        let path = format!("/v1/images?width={side}&height={side}");
        for attempt in 0..workload.upload_attempts {
            let target = client.pick(&endpoints.api);
            client.invoke("upload", self.invoke.clone());
            let headers = [
                ("authorization", self.bearer.as_str()),
                ("idempotency-key", self.idempotency.as_str()),
            ];
            let answer = client.call(target, "POST", &path, &headers, self.image.clone()).await;
            let last = attempt + 1 == workload.upload_attempts;
            match answer {
                Ok(response) if response.status == 202 => {
                    let body = response.body_json().unwrap_or(Value::Null);
                    let job = body["job"].as_u64().unwrap_or(0);
                    client.ok(
                        "upload",
                        json!({ "status": 202, "job": job, "duplicate": body["duplicate"] }),
                    );
                    let account = self.account.clone();
                    pending.lock().expect("pending").jobs.push_back(Pending { job, account });
                    break;
                }
                Ok(response) => {
                    let body = response.body_json().unwrap_or(Value::Null);
                    let error = format!(
                        "HTTP {}: {}",
                        response.status,
                        body["error"].as_str().unwrap_or("")
                    );
                    let value = json!({ "status": response.status });
                    let transient = matches!(response.status, 429 | 503);
                    if body["outcome"] == "unknown" {
                        client.info("upload", value, error);
                    } else {
                        client.fail("upload", value, error);
                    }
                    if !transient || last {
                        break;
                    }
                }
                Err(error) => {
                    let value = json!({ "status": 0 });
                    if error.may_have_arrived() {
                        client.info("upload", value, error.to_string());
                    } else {
                        client.fail("upload", value, error.to_string());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One poller: polls its uploader's accepted jobs, round-robin, until each is finished, and
/// after `until_us` only until `drain_until_us`.
#[allow(clippy::too_many_arguments)]
pub async fn poller(
    process: u64,
    workload: ServiceWorkload,
    endpoints: Endpoints,
    keyring: SharedKeyring,
    pending: PendingJobs,
    history: History,
    seed: u64,
    until_us: u64,
    drain_until_us: u64,
) {
    let label = format!("client/{process}/polls");
    let mut client = Client::new(process, &history, seed, &label, &workload, &endpoints);
    loop {
        tokio::time::sleep(Duration::from_millis(workload.poll_ms)).await;
        let now_us = history.now_us();
        let (waiting, uploads_done) = {
            let pending = pending.lock().expect("pending");
            (pending.jobs.len(), pending.uploads_done)
        };
        if now_us >= drain_until_us || (now_us >= until_us && uploads_done && waiting == 0) {
            return;
        }
        for _ in 0..waiting {
            let Some(job) = pending.lock().expect("pending").jobs.pop_front() else { break };
            let secret = {
                let keyring = keyring.lock().expect("keyring");
                keyring.keys.get(&job.account).and_then(|keys| keys.back().cloned())
            };
            let Some((_, secret)) = secret else {
                pending.lock().expect("pending").jobs.push_back(job);
                continue;
            };
            let target = client.pick(&endpoints.api);
            let bearer = format!("Bearer {secret}");
            client.invoke("fetch", json!({ "job": job.job, "account": job.account }));
            let path = format!("/v1/jobs/{}", job.job);
            let answer = client
                .call(target, "GET", &path, &[("authorization", bearer.as_str())], Bytes::new())
                .await;
            let finished = match answer {
                Ok(response) if response.status == 200 && response.content_type == "image/jpeg" => {
                    let thumbnail = blake3::hash(&response.body).to_hex().to_string();
                    let mut value = json!({ "job": job.job, "status": "done",
                                            "thumbnail": thumbnail, "bytes": response.body.len() });
                    // What the thumbnails oracle compares: the client's own decode of the bytes.
                    match Signature::of_jpeg(&response.body) {
                        Ok(signature) => {
                            value["width"] = json!(signature.width);
                            value["height"] = json!(signature.height);
                            value["signature"] = json!(signature.means_hex());
                        }
                        Err(error) => value["undecodable"] = json!(error),
                    }
                    client.ok("fetch", value);
                    true
                }
                Ok(response) if response.status == 200 => {
                    let body = response.body_json().unwrap_or(Value::Null);
                    let status = body["status"].as_str().unwrap_or("").to_string();
                    let mut value = json!({ "job": job.job, "status": status });
                    if let Some(reason) = body.get("reason") {
                        value["reason"] = reason.clone();
                    }
                    client.ok("fetch", value);
                    status == "failed"
                }
                Ok(response) => {
                    let error = format!(
                        "HTTP {}: {}",
                        response.status,
                        String::from_utf8_lossy(&response.body)
                    );
                    client.fail(
                        "fetch",
                        json!({ "job": job.job, "status": response.status }),
                        error,
                    );
                    false
                }
                Err(error) => {
                    client.fail("fetch", json!({ "job": job.job, "status": 0 }), error.to_string());
                    false
                }
            };
            if !finished {
                pending.lock().expect("pending").jobs.push_back(job);
            }
        }
    }
}
