//! Checkers of the image service, pure functions of the history (shapes in
//! [`crate::service::workload`]).
//!
//! - [`jobs_complete`]: every upload answered 202 ends completed or failed (dead-lettered);
//!   figures: a job's latency to its thumbnail, the largest backlog.
//! - [`thumbnails`]: every finished job ends as a reference computed another way says
//!   ([`crate::service::thumbnail_oracle`]: `image`'s decode and Lanczos3 resize): a thumbnail of the
//!   contract's exact size whose mean-colour grid, as the poller recorded it, is within a
//!   measured tolerance of the reference's; or a failure where the pill's documented nature
//!   or the worker's knobs (memory budget, crash trigger) say it must fail. A damaged image
//!   (`corrupted_image`) may end either way. Figure: thumbnails compared, the largest error.
//! - [`pill_quarantine`]: no job crashes workers more than `max_attempts` times, every job
//!   that crashed a worker ends failed (where a client knows the job: one whose every upload
//!   answer was lost is never fetched), and with decode limits on no worker is killed out of
//!   memory; figures: crashes, time with the whole fleet down.
//! - [`auth_keys`]: no request is accepted with a key that was never issued, before its
//!   creation began, or later than the revocation bound (`ttl_ms + refresh_timeout_ms`, in
//!   true simulated time) after its revocation was acknowledged, naming the key and the
//!   server; no read of another account's job is answered but 404; figures: time for a new
//!   key to work, for a revoked key to be refused, and how long a revoked key kept being
//!   accepted (p50, p99, max; the largest per server), also as distributions
//!   (`new_key_delay_ms`, `revocation_lag_ms`, `revoked_key_working_ms`), one sample per key.
//! - [`service_availability`]: per-window availability and latency of uploads, and the
//!   availability inside each fault's window, per try and per upload with its retries.

use std::collections::{BTreeMap, BTreeSet};

use pessimist_core::auth::AuthSettings;
use pessimist_core::history::{Event, EventKind};
use pessimist_core::node::KnobSettings;
use pessimist_core::queue::QueueSettings;
use pessimist_core::worker::WorkerSettings;
use serde_json::{json, Value};

use crate::check::{
    operations, percentiles, phase_start_us, Distribution, Operation, Verdict, PHASE_HEAL,
};
use crate::service::thumbnail_oracle::{self, Expected, Signature, SIGNATURE_MAE_MAX};
use crate::service::workload::ImageSpec;

/// Accepted jobs: job id to the upload's input (account, key, image spec).
fn accepted_jobs(ops: &[Operation]) -> BTreeMap<u64, &Value> {
    ops.iter()
        .filter(|op| op.f == "upload" && op.outcome == "ok")
        .filter_map(|op| Some((op.result["job"].as_u64()?, &op.invoked_value)))
        .collect()
}

/// The last terminal state a fetch saw per job: (`done` with the thumbnail hash, or `failed`).
fn finished_jobs(ops: &[Operation]) -> BTreeMap<u64, &Value> {
    ops.iter()
        .filter(|op| op.f == "fetch" && op.outcome == "ok")
        .filter(|op| matches!(op.result["status"].as_str(), Some("done" | "failed")))
        .filter_map(|op| Some((op.result["job"].as_u64()?, &op.result)))
        .collect()
}

/// Every upload answered 202 ends done or failed, as a fetch saw it. Figures: how long a job
/// took from its acceptance to the first fetch that saw it finished (p50, p99, max; a poll
/// interval coarse), and the most jobs accepted and not yet seen finished at once (the
/// backlog: the queue's depth plus the jobs being worked on).
pub fn jobs_complete(events: &[Event]) -> Verdict {
    let ops = operations(events);
    let accepted = accepted_jobs(&ops);
    let finished = finished_jobs(&ops);
    let mut violations = Vec::new();
    let (mut done, mut failed) = (0, 0);
    for job in accepted.keys() {
        match finished.get(job).and_then(|v| v["status"].as_str()) {
            Some("done") => done += 1,
            Some(_) => failed += 1,
            None => violations.push(format!("job {job} was accepted (202) but never finished")),
        }
    }
    // job -> (accepted at, first seen finished at)
    let mut spans: BTreeMap<u64, (u64, Option<u64>)> = BTreeMap::new();
    for op in &ops {
        let (Some(job), Some(at)) = (op.result["job"].as_u64(), op.complete_us) else { continue };
        match (op.f.as_str(), op.outcome, op.result["status"].as_str()) {
            ("upload", "ok", _) => {
                spans.entry(job).or_insert((at, None));
            }
            ("fetch", "ok", Some("done" | "failed")) => {
                if let Some(span) = spans.get_mut(&job) {
                    span.1.get_or_insert(at);
                }
            }
            _ => {}
        }
    }
    let latencies: Vec<u64> =
        spans.values().filter_map(|&(from, to)| Some(to?.saturating_sub(from) / 1000)).collect();
    // The backlog: +1 at each acceptance, -1 at each first sight of the end, in time order.
    let mut steps: Vec<(u64, i64)> = spans
        .values()
        .flat_map(|&(from, to)| std::iter::once((from, 1)).chain(to.map(|to| (to, -1))))
        .collect();
    steps.sort_unstable();
    let (mut backlog, mut backlog_max) = (0i64, 0i64);
    for (_, step) in steps {
        backlog += step;
        backlog_max = backlog_max.max(backlog);
    }
    let mut figures = BTreeMap::from([
        ("accepted".to_string(), json!(accepted.len())),
        ("done".to_string(), json!(done)),
        ("failed".to_string(), json!(failed)),
        ("unfinished".to_string(), json!(violations.len())),
        ("backlog_max".to_string(), json!(backlog_max)),
    ]);
    percentiles("job_latency_ms", latencies, &mut figures);
    Verdict::from_violations(violations, figures)
}

/// What a job of `spec` must end as, by the workload's documented pills, the worker's knobs
/// and the reference (never the service's resize code).
fn expected_outcome(spec: &ImageSpec, side: u32, worker: &WorkerSettings) -> Expected {
    // The least a decode of a `width` x `height` picture holds: its RGB pixels.
    let over_budget = |width: u64, height: u64| width * height * 3 > worker.memory_bytes_max;
    match spec.kind.as_str() {
        // A header that declares a size its data cannot fill is a corrupt file to any decoder,
        // and the declared sizes (13000 and 50000 a side, and the lying JPEG's) are also over
        // any budget and (but 13000) over the documented side limit.
        "png_declares_13000" | "png_declares_50000" | "jpeg_lying_header" => Expected::Failure(
            format!("{}: the header declares what the data cannot fill", spec.kind),
        ),
        "truncated_jpeg" => Expected::Failure("a truncated JPEG is corrupt".into()),
        // Ten bytes of scan data for an 8000x8000 frame: no picture is in the file.
        "jpeg_no_scan_data" => {
            Expected::Failure("a JPEG without the scan data its header declares is corrupt".into())
        }
        // A CPU bomb is refused by a work budget or decoded (slowly) into a flat picture;
        // which one depends on the budget against the worker's own estimate, which this
        // checker does not compute (and the reference would spend the same CPU).
        "jpeg_scan_bomb" | "png_decompression_bomb" => Expected::Either,
        // Random bytes overwritten: a decoder may fail or conceal the damage, and two
        // decoders conceal it differently, so any typed outcome is right.
        "corrupted_image" => Expected::Either,
        "crash_trigger" if worker.crash_trigger => {
            Expected::Failure("the crash trigger crashes every attempt".into())
        }
        "photo" if over_budget(u64::from(spec.width), u64::from(spec.height)) => {
            Expected::Failure(format!("{}x{} is over the decode budget", spec.width, spec.height))
        }
        "photo" | "crash_trigger" | "png_huge_text_chunk" => {
            match thumbnail_oracle::reference_of(spec, side) {
                Some(Ok(signature)) => Expected::Thumbnail(signature),
                Some(Err(error)) => {
                    Expected::Failure(format!("the reference cannot decode it: {error}"))
                }
                None => Expected::Failure(format!("unknown image kind {:?}", spec.kind)),
            }
        }
        other => Expected::Failure(format!("unknown image kind {other:?}")),
    }
}

/// The signature the poller recorded for a fetched thumbnail.
fn fetched_signature(output: &Value) -> Result<Signature, String> {
    if let Some(error) = output["undecodable"].as_str() {
        return Err(error.to_string());
    }
    let side = |field: &str| {
        output[field]
            .as_u64()
            .and_then(|side| u32::try_from(side).ok())
            .ok_or(format!("no {field}"))
    };
    let means = output["signature"].as_str().ok_or("no signature")?;
    Signature::from_parts(side("width")?, side("height")?, means)
}

/// Every finished job ends as the reference says: a thumbnail of the contract's size within
/// the tolerance of `image`'s own decode and Lanczos3 resize, or a failure where the input must
/// fail. See [`service::thumbnail_oracle`] for what the tolerance cannot tell apart.
pub fn thumbnails(events: &[Event], knobs: &Value, side: u32) -> Verdict {
    let worker = WorkerSettings::from_knobs(knobs).unwrap_or_default();
    let ops = operations(events);
    let accepted = accepted_jobs(&ops);
    let finished = finished_jobs(&ops);
    let mut violations = Vec::new();
    let (mut compared, mut failed_as_expected, mut either, mut pills) = (0, 0, 0, 0);
    let mut error_max = 0.0f64;
    for (job, output) in &finished {
        let Some(input) = accepted.get(job) else { continue };
        let spec: ImageSpec = match serde_json::from_value(input["image"].clone()) {
            Ok(spec) => spec,
            Err(error) => {
                violations.push(format!("job {job}: unreadable image spec: {error}"));
                continue;
            }
        };
        pills += usize::from(spec.is_pill());
        let status = output["status"].as_str();
        match (expected_outcome(&spec, side, &worker), status) {
            (Expected::Thumbnail(reference), Some("done")) => {
                let fetched = match fetched_signature(output) {
                    Ok(fetched) => fetched,
                    Err(why) => {
                        violations.push(format!("job {job}: the fetched thumbnail: {why}"));
                        continue;
                    }
                };
                compared += 1;
                let (want, got) =
                    ((reference.width, reference.height), (fetched.width, fetched.height));
                if want != got {
                    violations.push(format!(
                        "job {job} ({}x{}): the thumbnail is {}x{}, the contract says {}x{}",
                        spec.width, spec.height, got.0, got.1, want.0, want.1
                    ));
                    continue;
                }
                let error = fetched.mean_absolute_error(&reference);
                error_max = error_max.max(error);
                if error > SIGNATURE_MAE_MAX {
                    violations.push(format!(
                        "job {job}: the thumbnail is {error:.2} levels off the reference per cell \
                         and channel (bound {SIGNATURE_MAE_MAX})"
                    ));
                }
            }
            (Expected::Thumbnail(_), _) => violations.push(format!(
                "job {job} ({}) failed ({}) but the reference converts it",
                spec.kind, output["reason"]
            )),
            (Expected::Failure(_), Some("failed")) => failed_as_expected += 1,
            (Expected::Failure(why), _) => {
                violations.push(format!("job {job} ({}) completed but must fail: {why}", spec.kind))
            }
            (Expected::Either, _) => either += 1,
        }
    }
    let figures = BTreeMap::from([
        ("thumbnails_compared".to_string(), json!(compared)),
        ("thumbnail_error_max".to_string(), json!((error_max * 100.0).round() / 100.0)),
        ("thumbnail_error_bound".to_string(), json!(SIGNATURE_MAE_MAX)),
        ("failed_as_expected".to_string(), json!(failed_as_expected)),
        ("either_outcome".to_string(), json!(either)),
        ("pills_finished".to_string(), json!(pills)),
    ]);
    Verdict::from_violations(violations, figures)
}

/// No job crashes workers more than `max_attempts` times, and each that crashed one, and
/// that a client knows, ends failed. Figures: crashes by cause, the most crashes one job
/// caused, how long every worker was down at once, how long one worker was down on average,
/// and the time observed.
pub fn pill_quarantine(events: &[Event], knobs: &Value, workers: &[String]) -> Verdict {
    let max_attempts = QueueSettings::from_knobs(knobs).map(|s| s.max_attempts).unwrap_or(1);
    // With decode limits on, an image over the memory budget is refused before any decoder
    // runs: no upload may kill a worker out of memory.
    let decode_limits = WorkerSettings::from_knobs(knobs).unwrap_or_default().decode_limits;
    let mut out_of_memory = Vec::new();
    let ops = operations(events);
    let finished = finished_jobs(&ops);
    let mut crashes: BTreeMap<u64, u64> = BTreeMap::new();
    let mut causes: BTreeMap<String, u64> = BTreeMap::new();
    let workers: BTreeSet<&str> = workers.iter().map(String::as_str).collect();
    // Worker -> since when it has been down.
    let mut down: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut all_down_since, mut all_down_us) = (None, 0u64);
    let mut worker_down_us = 0u64;
    for event in events {
        let EventKind::Internal { node, what, detail } = &event.kind else { continue };
        if !workers.contains(node.as_str()) {
            continue;
        }
        match what.as_str() {
            "worker_crash" => {
                if let Some(job) = detail["job"].as_u64() {
                    *crashes.entry(job).or_default() += 1;
                }
                let cause = detail["cause"].as_str().unwrap_or("?");
                if decode_limits && cause == "out_of_memory" {
                    out_of_memory.push(format!(
                        "job {} killed {node} out of memory at {} ms with decode limits on",
                        detail["job"],
                        event.time_us / 1000
                    ));
                }
                *causes.entry(cause.to_string()).or_default() += 1;
                down.entry(node).or_insert(event.time_us);
            }
            "crash" => {
                down.entry(node).or_insert(event.time_us);
            }
            "restart" => {
                if let Some(since) = down.remove(node.as_str()) {
                    worker_down_us += event.time_us - since;
                }
            }
            _ => continue,
        }
        let all_down = !workers.is_empty() && down.len() == workers.len();
        match (all_down, all_down_since) {
            (true, None) => all_down_since = Some(event.time_us),
            (false, Some(since)) => {
                all_down_us += event.time_us - since;
                all_down_since = None;
            }
            _ => {}
        }
    }
    let end_us = events.last().map_or(0, |last| last.time_us);
    if let Some(since) = all_down_since {
        all_down_us += end_us - since;
    }
    worker_down_us += down.values().map(|since| end_us - since).sum::<u64>();
    let mut violations = out_of_memory;
    // A job no client learned the id of (every answer to its upload lost) is never fetched:
    // its end cannot be seen, only its crash count.
    let accepted = accepted_jobs(&ops);
    let mut unobserved = 0u64;
    for (job, count) in &crashes {
        if *count > u64::from(max_attempts) {
            violations.push(format!(
                "job {job} crashed workers {count} times, more than max_attempts {max_attempts}"
            ));
        } else if !accepted.contains_key(job) {
            unobserved += 1;
        } else if finished.get(job).and_then(|v| v["status"].as_str()) != Some("failed") {
            violations
                .push(format!("job {job} crashed workers {count} times and was never quarantined"));
        }
    }
    let figures = BTreeMap::from([
        ("worker_crashes".to_string(), json!(crashes.values().sum::<u64>())),
        ("crashes_by_cause".to_string(), json!(causes)),
        ("jobs_that_crashed_workers".to_string(), json!(crashes.len())),
        ("crashes_per_job_max".to_string(), json!(crashes.values().max().copied().unwrap_or(0))),
        ("max_attempts".to_string(), json!(max_attempts)),
        ("crashing_jobs_no_client_knew".to_string(), json!(unobserved)),
        ("fleet_down_ms".to_string(), json!(all_down_us / 1000)),
        // With the run's length, what an availability model needs: how long one worker is
        // down on average (P = worker_down_ms_mean / observed_ms) against how long all are.
        ("workers".to_string(), json!(workers.len())),
        (
            "worker_down_ms_mean".to_string(),
            json!(worker_down_us / 1000 / (workers.len().max(1) as u64)),
        ),
        ("observed_ms".to_string(), json!(end_us / 1000)),
    ]);
    Verdict::from_violations(violations, figures)
}

/// No request accepted with a key never issued, before its creation began, or later than the
/// revocation bound after its revocation was acknowledged; no read of another account's job
/// answered but 404.
///
/// **The revocation bound** is the auth knob's promise, `ttl_ms + refresh_timeout_ms`
/// ([`AuthSettings::revocation_bound_ms`]), measured in true simulated time: from the
/// completion of the first acknowledged `revoke_key` of a key (the revocation committed by
/// then) to the invoke of a request that was accepted with it (the server decided after
/// that), both the history's stamps, never a node's clock. So a request whose answer was
/// merely slow is never blamed, and a key that worked on some server later than the bound
/// fails the check, named with that server (probes name it; uploads do not) and the times.
///
/// **Cross-account reads** (`read_other`): a job accepted for one account (the history's
/// `202`s say whose) read with a key of another must be answered 404, as a job that does not
/// exist. Answers given before or without looking at the job (no answer, 401 or 403 for the
/// key, 429, 503) say nothing about it and are counted apart; any other answer fails.
///
/// Figures: new-key delay (creation acknowledged to the first accepted request) and revocation
/// lag (revocation acknowledged to the first refused probe), as percentiles and as the
/// distributions `new_key_delay_ms` and `revocation_lag_ms`; how long each revoked key kept
/// working (its last accepted request's invoke after the acknowledgement; 0 when none), as
/// percentiles, the distribution `revoked_key_working_ms` and the largest per server; the
/// probes invoked past the bound (those that could catch a key working too long).
pub fn auth_keys(events: &[Event], knobs: &Value) -> Verdict {
    let settings = match AuthSettings::from_knobs(knobs) {
        Ok(settings) => settings,
        Err((field, message)) => {
            let violation = format!("the auth knob cannot be read (auth.{field}: {message})");
            return Verdict::from_violations(vec![violation], BTreeMap::new());
        }
    };
    let bound_ms = settings.revocation_bound_ms();
    let bound_us = bound_ms * 1000;
    let ops = operations(events);
    // Key id -> (the first try of its creation began, its creation acknowledged).
    let mut created: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut revoked: BTreeMap<String, u64> = BTreeMap::new();
    // Per process: the first try of the create_key call in progress.
    let mut call_start: BTreeMap<u64, u64> = BTreeMap::new();
    for op in &ops {
        if op.f != "create_key" {
            continue;
        }
        let start = *call_start.entry(op.process).or_insert(op.invoke_us);
        if op.outcome == "ok" {
            if let (Some(key), Some(done)) = (op.result["key"].as_str(), op.complete_us) {
                created.entry(key.to_string()).or_insert((start, done));
            }
            call_start.remove(&op.process);
        }
    }
    for op in ops.iter().filter(|op| op.f == "revoke_key" && op.outcome == "ok") {
        if let (Some(key), Some(done)) = (op.invoked_value["key"].as_str(), op.complete_us) {
            let first = revoked.entry(key.to_string()).or_insert(done);
            *first = (*first).min(done);
        }
    }
    let mut violations = Vec::new();
    let (mut accepted, mut unknown_refused) = (0u64, 0u64);
    let (mut probes_past_bound, mut probes_after_revocation) = (0u64, 0u64);
    let mut first_accept: BTreeMap<&str, u64> = BTreeMap::new();
    // (revoked key, server) -> the invoke of the last request accepted with it after its
    // revocation; the server is "" where the history does not name it (uploads).
    let mut last_accept_after_revocation: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    // (revoked key, server) -> requests accepted past the bound, and the latest of them.
    let mut late_accepts: BTreeMap<(&str, &str), (u64, &Operation)> = BTreeMap::new();
    for op in &ops {
        if op.f != "upload" && op.f != "probe" {
            continue;
        }
        let key = op.invoked_value["key"].as_str();
        let (Some(status), Some(done_us)) = (op.result["status"].as_u64(), op.complete_us) else {
            continue;
        };
        let was_accepted = match op.f.as_str() {
            "upload" => status == 202,
            _ => status == 404,
        };
        let refused = status == 401 || status == 403;
        let Some(key) = key else {
            // A key that was never issued.
            if was_accepted {
                violations.push(format!(
                    "an upload with a never-issued key was accepted at {} ms",
                    done_us / 1000
                ));
            } else if refused {
                unknown_refused += 1;
            }
            continue;
        };
        let revoked_us = revoked.get(key).copied();
        if let Some(revoked_us) = revoked_us.filter(|&at| op.f == "probe" && op.invoke_us > at) {
            probes_after_revocation += 1;
            probes_past_bound += u64::from(op.invoke_us > revoked_us + bound_us);
        }
        if !was_accepted {
            continue;
        }
        accepted += 1;
        first_accept.entry(key).or_insert(done_us);
        match created.get(key) {
            None => {
                violations.push(format!("key {key} was accepted but its creation never completed"))
            }
            Some(&(start, _)) if done_us < start => violations.push(format!(
                "key {key} was accepted at {} ms, before its creation began at {} ms",
                done_us / 1000,
                start / 1000
            )),
            _ => {}
        }
        let Some(revoked_us) = revoked_us else { continue };
        if op.invoke_us <= revoked_us {
            continue;
        }
        let last = last_accept_after_revocation.entry((key, op.node.as_str())).or_default();
        *last = (*last).max(op.invoke_us);
        if op.invoke_us > revoked_us + bound_us {
            let late = late_accepts.entry((key, op.node.as_str())).or_insert((0, op));
            late.0 += 1;
            late.1 = op; // Operations come in invoke order: the latest so far.
        }
    }
    // One violation per key and server, with the latest request: a key kept too long is
    // usually accepted many times over.
    for (&(key, node), &(count, op)) in &late_accepts {
        let revoked_us = revoked[key];
        let server = if node.is_empty() { "an API server" } else { node };
        let requests =
            if count == 1 { "1 request".to_string() } else { format!("{count} requests") };
        violations.push(format!(
            "key {key} was accepted by {server} in {requests} past the bound; the latest: {} \
             invoked at {} ms, answered {} at {} ms, {} ms after its revocation was acknowledged \
             at {} ms: beyond the bound of {bound_ms} ms (ttl_ms {} + refresh_timeout_ms {})",
            op.f,
            op.invoke_us / 1000,
            op.result["status"],
            op.complete_us.unwrap_or(op.invoke_us) / 1000,
            (op.invoke_us - revoked_us) / 1000,
            revoked_us / 1000,
            settings.ttl_ms,
            settings.refresh_timeout_ms,
        ));
    }
    let cross = cross_account_reads(&ops, &mut violations);
    let new_key_ms: Vec<u64> = created
        .iter()
        .filter_map(|(key, &(_, done))| {
            Some(first_accept.get(key.as_str())?.saturating_sub(done) / 1000)
        })
        .collect();
    let revocation_ms: Vec<u64> = revoked
        .iter()
        .filter_map(|(key, &done)| {
            let refused = ops
                .iter()
                .filter(|op| {
                    op.f == "probe"
                        && op.invoked_value["key"] == key.as_str()
                        && op.invoke_us >= done
                })
                .find(|op| matches!(op.result["status"].as_u64(), Some(401 | 403)))?;
            Some(refused.complete_us?.saturating_sub(done) / 1000)
        })
        .collect();
    // How long a revoked key kept working, on the server that kept it longest: 0 when nothing
    // was accepted with it after its revocation. Unlike the revocation lag it does not wait
    // for a refusal (401/403): a key answered 503 while the plane is unreachable has stopped
    // working too.
    let working_ms = |key: &str, &done: &u64| -> u64 {
        last_accept_after_revocation
            .range((key, "")..)
            .take_while(|((revoked_key, _), _)| *revoked_key == key)
            .map(|(_, &last)| (last - done) / 1000)
            .max()
            .unwrap_or(0)
    };
    let revoked_working_ms: Vec<u64> =
        revoked.iter().map(|(key, done)| working_ms(key, done)).collect();
    let mut working_by_server: BTreeMap<&str, u64> = BTreeMap::new();
    for (&(key, node), &last) in &last_accept_after_revocation {
        let ms = (last - revoked[key]) / 1000;
        let server = working_by_server.entry(if node.is_empty() { "unnamed" } else { node });
        let max = server.or_default();
        *max = (*max).max(ms);
    }
    let mut figures = BTreeMap::from([
        ("keys_created".to_string(), json!(created.len())),
        ("keys_revoked".to_string(), json!(revoked.len())),
        ("accepted_requests".to_string(), json!(accepted)),
        ("never_issued_refused".to_string(), json!(unknown_refused)),
        ("revocation_bound_ms".to_string(), json!(bound_ms)),
        ("revoked_probes".to_string(), json!(probes_after_revocation)),
        ("revoked_probes_past_bound".to_string(), json!(probes_past_bound)),
        ("revoked_key_working_ms_max_by_server".to_string(), json!(working_by_server)),
    ]);
    figures.extend(cross);
    let new_key = Distribution::from_values(
        "ms",
        "new-key delay: from a key's creation acknowledged to the first request it authenticated",
        new_key_ms.iter().map(|&ms| ms as f64),
    );
    let revocation = Distribution::from_values(
        "ms",
        "revocation lag: from a key's revocation acknowledged to the first probe refused with it",
        revocation_ms.iter().map(|&ms| ms as f64),
    );
    let working = Distribution::from_values(
        "ms",
        "revoked key working: from a key's revocation acknowledged to the invoke of the last \
         request accepted with it, on the server that kept it longest (0: none accepted)",
        revoked_working_ms.iter().map(|&ms| ms as f64),
    );
    percentiles("new_key_delay_ms", new_key_ms, &mut figures);
    percentiles("revocation_lag_ms", revocation_ms, &mut figures);
    percentiles("revoked_key_working_ms", revoked_working_ms, &mut figures);
    Verdict::from_violations(violations, figures)
        .with_distribution("new_key_delay_ms", new_key)
        .with_distribution("revocation_lag_ms", revocation)
        .with_distribution("revoked_key_working_ms", working)
}

/// Statuses a read of a job can get without the server having looked at the job: no answer
/// (0), the key refused (401, 403), too many requests (429), the key or the queue unavailable
/// (503). They are the same for a job that exists and one that does not.
const ANSWERS_BLIND_TO_THE_JOB: [u64; 5] = [0, 401, 403, 429, 503];

/// The `read_other` operations: each read of a job accepted for one account, with a key of
/// another, answered 404 or blind to the job; violations for the rest. Returns the figures.
fn cross_account_reads(ops: &[Operation], violations: &mut Vec<String>) -> Vec<(String, Value)> {
    let owners: BTreeMap<u64, &str> = accepted_jobs(ops)
        .into_iter()
        .filter_map(|(job, invoked)| Some((job, invoked["account"].as_str()?)))
        .collect();
    let (mut reads, mut not_found, mut blind, mut owner_unknown) = (0u64, 0u64, 0u64, 0u64);
    for op in ops.iter().filter(|op| op.f == "read_other") {
        let (Some(job), Some(reader), Some(status)) = (
            op.invoked_value["job"].as_u64(),
            op.invoked_value["account"].as_str(),
            op.result["status"].as_u64(),
        ) else {
            continue;
        };
        let Some(&owner) = owners.get(&job) else {
            owner_unknown += 1; // No 202 says whose it is (an upload whose answer was lost).
            continue;
        };
        if owner == reader {
            continue;
        }
        reads += 1;
        if status == 404 {
            not_found += 1;
        } else if ANSWERS_BLIND_TO_THE_JOB.contains(&status) {
            blind += 1;
        } else {
            violations.push(format!(
                "job {job} of account {owner} was read by {} with key {} of account {reader} \
                 (invoked at {} ms): answered {status}, not 404",
                if op.node.is_empty() { "an API server" } else { op.node.as_str() },
                op.invoked_value["key"].as_str().unwrap_or("?"),
                op.invoke_us / 1000,
            ));
        }
    }
    vec![
        ("cross_account_reads".to_string(), json!(reads)),
        ("cross_account_not_found".to_string(), json!(not_found)),
        ("cross_account_blind_answers".to_string(), json!(blind)),
        ("cross_account_owner_unknown".to_string(), json!(owner_unknown)),
    ]
}

/// Uploads per window of `window_ms`: the share answered 202 among those the service could
/// have served (client errors, 4xx other than 429, do not count against it, nor do uploads
/// with a key that was never issued, whatever their answer: no answer serves them), and the
/// latency of the accepted ones; the availability inside every fault's window. Those shares
/// count every try. What a user sees is counted too, per fault and for the run: of the uploads
/// (an idempotency key, all its tries) whose first try began in the window, the share
/// accepted by some try (`user_accepted_fraction`) and the time from the first try to the
/// 202 (`user_latency_ms`). With a minimum set, the share of tries after the heal must reach
/// it; without one the check is figures only.
pub fn service_availability(
    events: &[Event],
    window_ms: u64,
    heal_ok_fraction_min: Option<f64>,
) -> Verdict {
    let ops = operations(events);
    let served = |op: &&Operation| {
        op.f == "upload"
            && !op.invoked_value["key"].is_null()
            && !matches!(op.result["status"].as_u64(), Some(400..=428 | 430..=499))
    };
    let uploads: Vec<&Operation> = ops.iter().filter(served).collect();
    let ok = |op: &&Operation| op.outcome == "ok";
    let share = |from_us: u64, to_us: u64| -> (usize, usize) {
        let inside: Vec<&&Operation> =
            uploads.iter().filter(|op| op.invoke_us >= from_us && op.invoke_us < to_us).collect();
        (inside.iter().filter(|op| ok(op)).count(), inside.len())
    };
    let fraction =
        |(good, all): (usize, usize)| if all == 0 { 1.0 } else { good as f64 / all as f64 };
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    let end_us = events.last().map_or(0, |e| e.time_us);
    let window_us = window_ms.max(1) * 1000;
    let mut windows = Vec::new();
    let mut start = 0;
    while start < end_us {
        let (good, all) = share(start, start + window_us);
        if all > 0 {
            windows.push(good as f64 / all as f64);
        }
        start += window_us;
    }
    let latencies = |from_us: u64, to_us: u64| -> Vec<u64> {
        uploads
            .iter()
            .filter(|op| ok(op) && op.invoke_us >= from_us && op.invoke_us < to_us)
            .filter_map(|op| Some((op.complete_us? - op.invoke_us) / 1000))
            .collect()
    };
    // Per upload (idempotency key): its first try's start, and when a try was accepted.
    let mut per_upload: BTreeMap<&str, (u64, Option<u64>)> = BTreeMap::new();
    for op in &uploads {
        let Some(key) = op.invoked_value["idempotency"].as_str() else { continue };
        let entry = per_upload.entry(key).or_insert((op.invoke_us, None));
        entry.0 = entry.0.min(op.invoke_us);
        if ok(op) {
            entry.1 = entry.1.or(op.complete_us);
        }
    }
    let user_figures = |from_us: u64, to_us: u64, figures: &mut BTreeMap<String, Value>| {
        let started: Vec<&(u64, Option<u64>)> = per_upload
            .values()
            .filter(|(first_us, _)| (from_us..to_us).contains(first_us))
            .collect();
        let accepted: Vec<u64> = started
            .iter()
            .filter_map(|(first_us, done_us)| Some((done_us.as_ref()? - first_us) / 1000))
            .collect();
        figures.insert("user_uploads".to_string(), json!(started.len()));
        figures.insert(
            "user_accepted_fraction".to_string(),
            json!(round(fraction((accepted.len(), started.len())))),
        );
        percentiles("user_latency_ms", accepted, figures);
    };
    let heal_us = phase_start_us(events, PHASE_HEAL).unwrap_or(u64::MAX);
    let mut faults = Vec::new();
    let mut started: BTreeMap<u64, (u64, &str, &Value)> = BTreeMap::new();
    for event in events {
        match &event.kind {
            EventKind::FaultStart { fault, kind, detail } => {
                started.insert(*fault, (event.time_us, kind, detail));
            }
            EventKind::FaultEnd { fault, .. } => {
                if let Some((from, kind, detail)) = started.remove(fault) {
                    let counts = share(from, event.time_us);
                    let mut entry = BTreeMap::from([
                        ("fault".to_string(), json!(fault)),
                        ("kind".to_string(), json!(kind)),
                        ("detail".to_string(), (*detail).clone()),
                        ("uploads".to_string(), json!(counts.1)),
                        ("ok_fraction".to_string(), json!(round(fraction(counts)))),
                    ]);
                    percentiles("accepted_latency_ms", latencies(from, event.time_us), &mut entry);
                    user_figures(from, event.time_us, &mut entry);
                    faults.push(Value::Object(entry.into_iter().collect()));
                }
            }
            _ => {}
        }
    }
    let after_heal = fraction(share(heal_us, u64::MAX));
    let mut violations = Vec::new();
    if let Some(minimum) = heal_ok_fraction_min {
        if after_heal < minimum {
            violations.push(format!(
                "after the heal {after_heal:.4} of uploads were accepted, below {minimum}"
            ));
        }
    }
    let mut figures = BTreeMap::from([
        ("uploads".to_string(), json!(uploads.len())),
        ("ok_fraction".to_string(), json!(round(fraction(share(0, u64::MAX))))),
        ("ok_fraction_during_faults".to_string(), json!(round(fraction(share(0, heal_us))))),
        ("ok_fraction_after_heal".to_string(), json!(round(after_heal))),
        ("window_ms".to_string(), json!(window_ms)),
        ("windows".to_string(), json!(windows.len())),
        ("windows_below_99_9".to_string(), json!(windows.iter().filter(|&&w| w < 0.999).count())),
        (
            "window_ok_fraction_min".to_string(),
            json!(round(windows.iter().copied().fold(1.0, f64::min))),
        ),
        ("per_fault".to_string(), json!(faults)),
    ]);
    percentiles("accepted_latency_ms", latencies(0, u64::MAX), &mut figures);
    user_figures(0, u64::MAX, &mut figures);
    Verdict::against_threshold(heal_ok_fraction_min.is_some(), violations, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::FilterType;

    /// Events at the given times (ms).
    fn at(kinds: Vec<(u64, EventKind)>) -> Vec<Event> {
        kinds
            .into_iter()
            .enumerate()
            .map(|(index, (ms, kind))| Event { index: index as u64, time_us: ms * 1000, kind })
            .collect()
    }

    fn upload(process: u64, idempotency: &str) -> EventKind {
        let value = json!({ "account": "a", "key": "k", "idempotency": idempotency });
        EventKind::Invoke { process, f: "upload".into(), value }
    }

    fn answered(process: u64, status: u64) -> EventKind {
        let value = json!({ "status": status, "job": 1, "duplicate": false });
        match status {
            202 => EventKind::Ok { process, f: "upload".into(), value },
            _ => EventKind::Fail { process, f: "upload".into(), value, error: "HTTP".into() },
        }
    }

    /// An operation of `process`: invoked at `from_ms` with `invoke`, answered ok at `to_ms`
    /// with `answer`.
    fn call(
        process: u64,
        f: &str,
        (from_ms, invoke): (u64, Value),
        (to_ms, answer): (u64, Value),
    ) -> Vec<(u64, EventKind)> {
        vec![
            (from_ms, EventKind::Invoke { process, f: f.into(), value: invoke }),
            (to_ms, EventKind::Ok { process, f: f.into(), value: answer }),
        ]
    }

    /// A probe of key `k1` on `node` invoked at `from_ms`, answered `status` 5 ms later.
    fn probe(process: u64, node: &str, from_ms: u64, status: u64) -> Vec<(u64, EventKind)> {
        let invoke = json!({ "key": "k1", "want": "refuse", "node": node });
        call(
            process,
            "probe",
            (from_ms, invoke),
            (from_ms + 5, json!({ "key": "k1", "status": status })),
        )
    }

    /// A read by account `b` (key `k2`) on `api-1` of job 7, which account `a` uploaded.
    fn read_other(from_ms: u64, status: u64) -> Vec<(u64, EventKind)> {
        let invoke = json!({ "job": 7, "account": "b", "key": "k2", "node": "api-1" });
        call(
            20,
            "read_other",
            (from_ms, invoke),
            (from_ms + 5, json!({ "job": 7, "status": status })),
        )
    }

    /// Key `k1` of account `a` created by 100 ms and revoked (acknowledged) at 1000 ms; job 7
    /// accepted for `a`; then `tail`. The knobs' bound is 2000 + 500 ms.
    fn keys_history(tail: Vec<Vec<(u64, EventKind)>>) -> Verdict {
        let mut kinds = Vec::new();
        kinds.extend(call(
            0,
            "create_key",
            (10, json!({ "account": "a" })),
            (100, json!({ "account": "a", "key": "k1" })),
        ));
        let upload = json!({ "account": "a", "key": "k1", "idempotency": "u1" });
        kinds.extend(call(
            1,
            "upload",
            (200, upload),
            (210, json!({ "status": 202, "job": 7, "duplicate": false })),
        ));
        kinds.extend(call(
            0,
            "revoke_key",
            (900, json!({ "key": "k1" })),
            (1000, json!({ "key": "k1", "revoked_ms": 950 })),
        ));
        let mut tail: Vec<(u64, EventKind)> = tail.into_iter().flatten().collect();
        tail.sort_by_key(|(ms, _)| *ms);
        kinds.extend(tail);
        let knobs =
            json!({ "auth": { "ttl_ms": 2000, "refresh_ms": 1000, "refresh_timeout_ms": 500 } });
        auth_keys(&at(kinds), &knobs)
    }

    #[test]
    fn a_revoked_key_working_within_the_bound_and_cross_reads_answered_404_pass() {
        let verdict = keys_history(vec![
            probe(10, "api-1", 1200, 404),
            // Invoked exactly at the bound (1000 + 2500 ms): still within the promise, and
            // its answer may come later.
            probe(11, "api-2", 3500, 404),
            probe(11, "api-2", 3600, 403),
            probe(10, "api-1", 3700, 403),
            read_other(1500, 404),
            read_other(1600, 503),
        ]);
        assert!(verdict.passed(), "{:?}", verdict.violations);
        assert_eq!(verdict.figures["revocation_bound_ms"], json!(2500));
        assert_eq!(verdict.figures["revoked_key_working_ms_max"], json!(2500));
        assert_eq!(
            verdict.figures["revoked_key_working_ms_max_by_server"],
            json!({ "api-1": 200, "api-2": 2500 })
        );
        assert_eq!(verdict.figures["revoked_probes_past_bound"], json!(2));
        assert_eq!(verdict.figures["revocation_lag_ms_max"], json!(2605));
        assert_eq!(verdict.figures["cross_account_not_found"], json!(1));
        assert_eq!(verdict.figures["cross_account_blind_answers"], json!(1));
        assert_eq!(verdict.distributions["revoked_key_working_ms"].samples, vec![2500.0]);
        assert_eq!(verdict.distributions["new_key_delay_ms"].samples, vec![110.0]);
    }

    #[test]
    fn a_revoked_key_working_past_the_bound_in_true_time_fails_naming_key_and_server() {
        let verdict =
            keys_history(vec![probe(10, "api-1", 1200, 404), probe(11, "api-2", 3501, 404)]);
        assert!(!verdict.passed());
        assert_eq!(verdict.violations.len(), 1, "{:?}", verdict.violations);
        let violation = &verdict.violations[0];
        for part in
            ["key k1", "api-2", "invoked at 3501 ms", "acknowledged at 1000 ms", "bound of 2500 ms"]
        {
            assert!(violation.contains(part), "{part:?} in {violation}");
        }
        // An upload names no server.
        let upload = json!({ "account": "a", "key": "k1", "idempotency": "u2" });
        let late = call(
            2,
            "upload",
            (4000, upload),
            (4010, json!({ "status": 202, "job": 8, "duplicate": false })),
        );
        let verdict = keys_history(vec![late]);
        assert!(!verdict.passed());
        assert!(verdict.violations[0].contains("by an API server"), "{:?}", verdict.violations);
    }

    #[test]
    fn a_cross_account_read_answered_but_404_fails() {
        let verdict = keys_history(vec![read_other(1500, 404), read_other(1700, 200)]);
        assert!(!verdict.passed());
        assert_eq!(verdict.violations.len(), 1, "{:?}", verdict.violations);
        let violation = &verdict.violations[0];
        for part in ["job 7 of account a", "api-1", "key k2 of account b", "answered 200"] {
            assert!(violation.contains(part), "{part:?} in {violation}");
        }
        // A job nobody knows the owner of, or the owner's own read, proves nothing.
        let own = call(
            21,
            "read_other",
            (1500, json!({ "job": 7, "account": "a", "key": "k1" })),
            (1505, json!({ "job": 7, "status": 200 })),
        );
        let stranger = call(
            22,
            "read_other",
            (1500, json!({ "job": 9, "account": "b", "key": "k2" })),
            (1505, json!({ "job": 9, "status": 200 })),
        );
        let verdict = keys_history(vec![own, stranger]);
        assert!(verdict.passed(), "{:?}", verdict.violations);
        assert_eq!(verdict.figures["cross_account_owner_unknown"], json!(1));
    }

    #[test]
    fn unreadable_auth_knobs_fail_the_check_rather_than_bound_nothing() {
        let verdict = auth_keys(&[], &json!({ "auth": { "ttl_ms": "long" } }));
        assert!(!verdict.passed());
        assert!(
            verdict.violations[0].contains("auth knob cannot be read"),
            "{:?}",
            verdict.violations
        );
    }

    /// Inside a fault: upload `u1` refused once (429) then accepted 300 ms after its first
    /// try; `u2` refused on its only try; `u3` accepted at once. Per try 2 of 4 were
    /// accepted; per upload, as a user sees it, 2 of 3, the retried one taking 300 ms.
    #[test]
    fn an_out_of_memory_kill_fails_the_quarantine_only_with_decode_limits_on() {
        let crash = |cause: &str| EventKind::Internal {
            node: "worker-1".into(),
            what: "worker_crash".into(),
            detail: json!({ "job": 7, "attempt": 1, "cause": cause }),
        };
        let workers = ["worker-1".to_string(), "worker-2".to_string()];
        let events = at(vec![(100, crash("out_of_memory"))]);
        let limits_on = pill_quarantine(&events, &json!({}), &workers);
        assert!(!limits_on.passed());
        assert_eq!(
            limits_on.violations,
            vec!["job 7 killed worker-1 out of memory at 100 ms with decode limits on"]
        );
        let limits_off = json!({ "worker": { "decode_limits": false } });
        assert!(pill_quarantine(&events, &limits_off, &workers).passed());
        // The crash trigger is an unknown decoder bug: limits cannot stop it.
        assert!(pill_quarantine(&at(vec![(100, crash("crash_trigger"))]), &json!({}), &workers)
            .passed());
    }

    #[test]
    fn a_fault_counts_tries_and_uploads_with_their_retries() {
        let fault = json!({ "kind": "crash", "node": "api-1" });
        let events = at(vec![
            (0, EventKind::FaultStart { fault: 0, kind: "crash".into(), detail: fault }),
            (10, upload(1, "u1")),
            (20, answered(1, 429)),
            (120, upload(1, "u1")),
            (310, answered(1, 202)),
            (400, upload(2, "u2")),
            (410, answered(2, 503)),
            (500, upload(3, "u3")),
            (550, answered(3, 202)),
            (1000, EventKind::FaultEnd { fault: 0, kind: "crash".into() }),
        ]);
        let verdict = service_availability(&events, 1000, None);
        let fault = &verdict.figures["per_fault"][0];
        assert_eq!(fault["uploads"], json!(4));
        assert_eq!(fault["ok_fraction"], json!(0.5));
        assert_eq!(fault["user_uploads"], json!(3));
        assert_eq!(fault["user_accepted_fraction"], json!(0.6667));
        assert_eq!(fault["user_latency_ms_max"], json!(300));
        assert_eq!(fault["accepted_latency_ms_max"], json!(190));
        assert_eq!(verdict.figures["user_latency_ms_p50"], json!(50));
    }

    /// A history of one upload per job, each fetched once with the given result.
    fn jobs(outcomes: Vec<(ImageSpec, Value)>) -> Vec<Event> {
        let mut kinds = Vec::new();
        for (job, (spec, mut fetched)) in (1u64..).zip(outcomes) {
            let value = json!({ "account": "a", "key": "k", "image": spec, "idempotency": job });
            kinds.push((0, EventKind::Invoke { process: 1, f: "upload".into(), value }));
            let value = json!({ "status": 202, "job": job, "duplicate": false });
            kinds.push((0, EventKind::Ok { process: 1, f: "upload".into(), value }));
            let value = json!({ "job": job, "account": "a" });
            kinds.push((0, EventKind::Invoke { process: 2, f: "fetch".into(), value }));
            fetched["job"] = json!(job);
            kinds.push((0, EventKind::Ok { process: 2, f: "fetch".into(), value: fetched }));
        }
        at(kinds)
    }

    fn photo(seed: u64, width: u32, height: u32) -> ImageSpec {
        ImageSpec { kind: "photo".into(), seed, width, height }
    }

    /// What a poller records for a thumbnail with these pixels.
    fn done(picture: &image::RgbImage) -> Value {
        let signature = Signature::of_rgb(picture);
        json!({ "status": "done", "width": signature.width, "height": signature.height,
                "signature": signature.means_hex() })
    }

    /// The service's own thumbnail of `spec` into the 32 box, decoded: what a correct service
    /// serves (the test may call the service's code; the checker may not).
    fn served(spec: &ImageSpec) -> image::RgbImage {
        let budget = pessimist_core::resize::DecodeBudget {
            memory_bytes_max: 256 << 20,
            limits_enabled: true,
        };
        let target = pessimist_core::resize::ResizeSpec::new(32, 32).expect("valid");
        let made = pessimist_core::resize::thumbnail(&spec.generate().unwrap(), &target, &budget)
            .expect("a photo converts");
        image::load_from_memory(&made.jpeg).expect("a JPEG").to_rgb8()
    }

    /// The source, decoded whole and resized by `filter` to `width` x `height`.
    fn resized(spec: &ImageSpec, width: u32, height: u32, filter: FilterType) -> image::RgbImage {
        let full = image::load_from_memory(&spec.generate().unwrap()).unwrap().to_rgb8();
        image::imageops::resize(&full, width, height, filter)
    }

    fn check(outcomes: Vec<(ImageSpec, Value)>) -> Verdict {
        thumbnails(&jobs(outcomes), &json!({}), 32)
    }

    #[test]
    fn correct_thumbnails_and_failures_pass() {
        let (wide, tall) = (photo(1, 150, 60), photo(2, 70, 140));
        let verdict = check(vec![
            (wide.clone(), done(&served(&wide))),
            (tall.clone(), done(&served(&tall))),
            (photo(3, 20, 30), done(&resized(&photo(3, 20, 30), 20, 30, FilterType::Lanczos3))),
            (
                ImageSpec { kind: "truncated_jpeg".into(), seed: 4, width: 0, height: 0 },
                json!({ "status": "failed", "reason": "corrupt" }),
            ),
            (
                ImageSpec { kind: "corrupted_image".into(), seed: 5, width: 0, height: 0 },
                done(&served(&wide)),
            ),
        ]);
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.figures["thumbnails_compared"], json!(3));
        assert_eq!(verdict.figures["failed_as_expected"], json!(1));
        assert_eq!(verdict.figures["either_outcome"], json!(1));
    }

    #[test]
    fn resize_bugs_fail() {
        let spec = photo(7, 150, 60);
        let good = served(&spec);
        let mut swapped = good.clone();
        swapped.pixels_mut().for_each(|pixel| pixel.0.swap(0, 2));
        let wrong: Vec<(&str, image::RgbImage)> = vec![
            ("channels swapped", swapped),
            ("flipped", image::imageops::flip_vertical(&good)),
            ("mirrored", image::imageops::flip_horizontal(&good)),
            ("aspect swapped", resized(&spec, 13, 32, FilterType::Lanczos3)),
            ("stretched to the box", resized(&spec, 32, 32, FilterType::Lanczos3)),
            ("one pixel short", resized(&spec, 31, 12, FilterType::Lanczos3)),
            ("the box not applied", resized(&spec, 150, 60, FilterType::Lanczos3)),
        ];
        for (what, picture) in wrong {
            let verdict = check(vec![(spec.clone(), done(&picture))]);
            assert!(!verdict.passed(), "{what} passed: {verdict:?}");
        }
        // What the tolerance cannot tell (see service::thumbnail_oracle): the filter.
        let nearest = resized(&spec, 32, 13, FilterType::Nearest);
        assert!(check(vec![(spec.clone(), done(&nearest))]).passed());
    }

    #[test]
    fn wrong_outcomes_fail() {
        let spec = photo(8, 100, 100);
        let pill = |kind: &str| ImageSpec { kind: kind.into(), seed: 9, width: 0, height: 0 };
        let cases = vec![
            (spec.clone(), json!({ "status": "failed", "reason": "corrupt" }), "but the reference"),
            (spec.clone(), json!({ "status": "done", "undecodable": "not a JPEG" }), "not a JPEG"),
            (spec.clone(), json!({ "status": "done", "width": 32 }), "no signature"),
            (pill("png_declares_13000"), done(&served(&spec)), "must fail"),
            (pill("truncated_jpeg"), done(&served(&spec)), "must fail"),
            (pill("crash_trigger"), done(&served(&spec)), "must fail"),
        ];
        for (spec, fetched, why) in cases {
            let verdict = check(vec![(spec.clone(), fetched)]);
            assert_eq!(verdict.violations.len(), 1, "{spec:?}: {verdict:?}");
            assert!(verdict.violations[0].contains(why), "{verdict:?}");
        }
        // Without the crash trigger knob, the marked JPEG is an ordinary photo.
        let marked = pill("crash_trigger");
        let full = image::load_from_memory(&marked.generate().unwrap()).unwrap().to_rgb8();
        let (width, height) = thumbnail_oracle::expected_size(full.width(), full.height(), 32, 32);
        let picture = image::imageops::resize(&full, width, height, FilterType::Lanczos3);
        let knobs = json!({ "worker": { "crash_trigger": false } });
        let verdict = thumbnails(&jobs(vec![(marked, done(&picture))]), &knobs, 32);
        assert!(verdict.passed(), "{verdict:?}");
    }
}
