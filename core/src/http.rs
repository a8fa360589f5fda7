//! HTTP/1.1 with hyper over the network seam's TCP: madsim's simulated TCP under
//! `--cfg madsim`, real sockets otherwise. The API servers and the auth management plane's
//! admin endpoints serve with [`serve`]; clients (the workload, the data plane's tests) call
//! with [`request`].
//!
//! Requests and responses are read whole into memory, so both sides bound them: a server
//! answers 413 to a body over its limit without reading it, and a client gives up on a
//! response body over [`RESPONSE_BYTES_MAX`].
//!
//! **The edge** ([`EdgeLimits`]) holds against a hostile client:
//! - a request head (request line and headers) must arrive within `header_read_timeout`,
//!   counted from when the server starts waiting for it (an idle connection too), or the
//!   connection is closed; a head over `header_bytes_max` is answered 431 and closed;
//! - a body must arrive whole within `body_read_timeout` of its head, or it is answered 408
//!   and the connection closed (a body shorter than its `Content-Length` cannot stall);
//! - at most `connections_max` connections are served at once. One over the cap is answered
//!   at once, before anything is read from it, with a canned 503 (`"outcome":
//!   "not_applied"`, `Retry-After: 1`) and closed: unlike a bare close, which a client
//!   cannot tell from a connection broken after its request arrived, the 503 says the
//!   request certainly did not take effect, so the client retries elsewhere. Writing it
//!   costs one short task; at most [`REFUSALS_MAX`] run at once, past them a connection is
//!   closed at once;
//! - with `in_flight_max`, at most that many handlers run at once; more are answered 429
//!   (the API server bounds its handlers itself, with the same answer);
//! - a failed `accept` (no file descriptor left) is retried after a backoff doubling from
//!   10 ms to 1 s ([`crate::seams::net`]'s accept loop), never at once.
//!
//! Timeouts run on the runtime's clock: madsim's simulated time in the simulation.
//!
//! Every request gets one access-log line (`http_access`: method, path, status, bytes in and
//! out, latency, account) in a real node's log ([`Recorder::log`]); a simulated run's history
//! holds the clients' view of each request instead.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::history::Recorder;
use crate::seams::net::{accept_with_backoff, TransportOptions};

/// Connections over the cap being answered 503 at once; past this many they are closed
/// without an answer.
pub const REFUSALS_MAX: usize = 64;
/// How long a refused connection is read (and what is read dropped) after its 503, at most,
/// so the close does not reset the connection before the client reads the answer.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// The bounds of an HTTP server (see the module comment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Largest request body; larger is 413.
    pub body_bytes_max: usize,
    /// Largest request head (request line and headers); larger is 431.
    pub header_bytes_max: usize,
    /// A request head must arrive within this long, or the connection is closed.
    pub header_read_timeout: Duration,
    /// A request body must arrive within this long of its head, or it is answered 408.
    pub body_read_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub connections_max: usize,
    /// Handlers running at once, when the server bounds them here; more are 429.
    pub in_flight_max: Option<usize>,
}

impl EdgeLimits {
    /// Limits with `body_bytes_max` and the defaults: 16 KiB heads, 10 s for a head, 30 s for
    /// a body, 1024 connections, handlers unbounded here.
    pub fn new(body_bytes_max: usize) -> EdgeLimits {
        EdgeLimits {
            body_bytes_max,
            header_bytes_max: 16 << 10,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            connections_max: 1024,
            in_flight_max: None,
        }
    }
}

/// Largest response body a client reads.
pub const RESPONSE_BYTES_MAX: usize = 16 << 20;

/// A request as a handler sees it: header names lower-case.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The query's `name=value` pairs (no percent-decoding: the API's values are plain).
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A response: status, content type, other headers, body.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    /// Headers beyond `Content-Type` (a client's response: all of them, names lower-case).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The account a server served the request for: written in its access log, never sent.
    pub account: Option<String>,
}

impl HttpResponse {
    /// A response with no other header.
    pub fn new(status: u16, content_type: &str, body: Bytes) -> HttpResponse {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body,
            account: None,
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> HttpResponse {
        HttpResponse::new(status, "application/json", Bytes::from(value.to_string()))
    }

    /// 405 for a known path asked with a method it does not take; `Allow` names those it does.
    pub fn method_not_allowed(method: &str, path: &str, allow: &[&str]) -> HttpResponse {
        let allow = allow.join(", ");
        let message = format!("{path} does not take {method}; it takes {allow}");
        HttpResponse::error(405, "method_not_allowed", message).with_header("allow", &allow)
    }

    /// The response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> HttpResponse {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The response, logged as served for `account`.
    pub fn for_account(mut self, account: &str) -> HttpResponse {
        self.account = Some(account.to_string());
        self
    }

    /// The value of header `name` (lower-case), if the response has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A JSON error: `{"error": "<code>", "message": "<message>"}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> HttpResponse {
        let message = message.into();
        HttpResponse::json(status, &serde_json::json!({ "error": code, "message": message }))
    }

    /// The body as JSON, if it is.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Why a client's request has no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("HTTP exchange failed: {0}")]
    Exchange(String),
}

impl HttpError {
    /// Whether the request may have reached the server (and so may have taken effect).
    pub fn may_have_arrived(&self) -> bool {
        !matches!(self, HttpError::Connect(..))
    }
}

/// Checks a knob's edge settings: connections, head size, head and body timeouts in ms. The
/// error names the field (without a knob's prefix) and what is wrong with it.
pub fn validate_edge(
    connections_max: usize,
    header_bytes_max: usize,
    header_read_timeout_ms: u64,
    body_read_timeout_ms: u64,
) -> Result<(), (&'static str, String)> {
    if !(1..=100_000).contains(&connections_max) {
        return Err(("connections_max", "must be between 1 and 100000".into()));
    }
    if !(1024..=(1 << 20)).contains(&header_bytes_max) {
        return Err(("header_bytes_max", "must be between 1 KiB and 1 MiB".into()));
    }
    if !(10..=600_000).contains(&header_read_timeout_ms) {
        return Err(("header_read_timeout_ms", "must be between 10 and 600000".into()));
    }
    if !(10..=600_000).contains(&body_read_timeout_ms) {
        return Err(("body_read_timeout_ms", "must be between 10 and 600000".into()));
    }
    Ok(())
}

/// Serves HTTP/1.1 on `listener` until the node dies: one task per connection within
/// `limits` (see the module comment), each request read whole, then answered by `handler`,
/// and logged to `log`.
pub async fn serve<H, F>(listener: TcpListener, limits: EdgeLimits, log: Recorder, handler: H)
where
    H: Fn(HttpRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let limits = Arc::new(limits);
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    let in_flight = limits.in_flight_max.map(|max| Arc::new(Semaphore::new(max)));
    let listener = Arc::new(listener);
    let accept_log = log.clone();
    let accept = move || {
        let listener = listener.clone();
        let log = accept_log.clone();
        async move {
            let accepted = listener.accept().await;
            if let Err(error) = &accepted {
                // At most one line per backoff step: the loop waits after each failure.
                log.log("http_accept_failed", json!({ "error": error.to_string() }));
            }
            accepted.map(|(stream, _peer)| stream)
        }
    };
    let serve_one = move |stream: TcpStream| {
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                let (log, connections_max) = (log.clone(), limits.connections_max);
                tokio::spawn(async move {
                    refuse(stream, connections_max, &log).await;
                    drop(refusal);
                });
            } // Else the stream is dropped here: closed at once.
            return;
        };
        let (handler, limits, in_flight, log) =
            (handler.clone(), limits.clone(), in_flight.clone(), log.clone());
        tokio::spawn(async move {
            let conn_log = log.clone();
            let (header_read_timeout, header_bytes_max) =
                (limits.header_read_timeout, limits.header_bytes_max);
            let service = hyper::service::service_fn(move |request| {
                let (handler, limits, in_flight, log) =
                    (handler.clone(), limits.clone(), in_flight.clone(), log.clone());
                async move {
                    let response =
                        answer(request, &limits, in_flight.as_deref(), &log, handler).await;
                    Ok::<_, Infallible>(into_hyper(response))
                }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(SeamTimer)
                .header_read_timeout(header_read_timeout)
                .max_header_size(header_bytes_max)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            // A connection that breaks is the client's to notice; what the edge cut is logged.
            if let Err(error) = served {
                let cut = if error.is_timeout() {
                    Some("header_read_timeout")
                } else if error.is_parse_too_large() {
                    Some("header_too_large") // hyper answered 431
                } else if error.is_parse() {
                    Some("bad_request") // hyper answered 400
                } else {
                    None
                };
                if let Some(cut) = cut {
                    conn_log.log("http_connection_cut", json!({ "reason": cut }));
                }
            }
            drop(permit);
        });
    };
    accept_with_backoff(accept, TransportOptions::default(), serve_one).await
}

/// Reads one request, runs the handler on it (or answers for the edge) and logs the answer.
async fn answer<H, F>(
    request: hyper::Request<Incoming>,
    limits: &EdgeLimits,
    in_flight: Option<&Semaphore>,
    log: &Recorder,
    handler: H,
) -> HttpResponse
where
    H: Fn(HttpRequest) -> F,
    F: Future<Output = HttpResponse>,
{
    let started = tokio::time::Instant::now();
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let (response, bytes_in) = match read_request(request, limits).await {
        Ok(request) => {
            let bytes_in = request.body.len();
            let permit = match in_flight {
                Some(bound) => match bound.try_acquire() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        let response =
                            HttpResponse::error(429, "overloaded", "too many requests in flight");
                        return logged(log, &method, &path, response, bytes_in, started);
                    }
                },
                None => None,
            };
            let response = handler(request).await;
            drop(permit);
            (response, bytes_in)
        }
        Err(response) => (response, 0),
    };
    logged(log, &method, &path, response, bytes_in, started)
}

/// Writes the access-log line of one answered request.
fn logged(
    log: &Recorder,
    method: &str,
    path: &str,
    response: HttpResponse,
    bytes_in: usize,
    started: tokio::time::Instant,
) -> HttpResponse {
    log.log(
        "http_access",
        json!({
            "method": method,
            "path": path,
            "status": response.status,
            "bytes_in": bytes_in,
            "bytes_out": response.body.len(),
            "latency_us": u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "account": response.account,
        }),
    );
    response
}

/// Answers a connection over the cap with a canned 503 before reading anything, then reads
/// what the client sent for a short while (dropping it) and closes.
async fn refuse(mut stream: TcpStream, connections_max: usize, log: &Recorder) {
    let body = json!({
        "error": "too_many_connections",
        "outcome": "not_applied",
        "message": format!("this server holds its {connections_max} connections; retry"),
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    log.log(
        "http_connection_refused",
        json!({ "status": 503, "connections_max": connections_max }),
    );
    // Flushed before the shutdown: madsim's TCP sends what was written on a flush.
    let written = stream.write_all(answer.as_bytes()).await.is_ok() && stream.flush().await.is_ok();
    if !written || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut read = 0usize;
        while read < (64 << 10) {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

/// hyper's timer on the runtime's clock (madsim's under `--cfg madsim`).
#[derive(Clone, Copy, Debug)]
struct SeamTimer;

impl hyper::rt::Timer for SeamTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(SeamSleep(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(self.now()))
    }

    fn now(&self) -> std::time::Instant {
        // Under madsim, `std::time::Instant::now` reads the simulated clock.
        std::time::Instant::now()
    }
}

struct SeamSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for SeamSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for SeamSleep {}

async fn read_request(
    request: hyper::Request<Incoming>,
    limits: &EdgeLimits,
) -> Result<HttpRequest, HttpResponse> {
    let body_bytes_max = limits.body_bytes_max;
    let too_large = || {
        HttpResponse::error(413, "too_large", format!("the body exceeds {body_bytes_max} bytes"))
    };
    let (parts, body) = request.into_parts();
    let declared = parts.headers.get(hyper::header::CONTENT_LENGTH);
    if let Some(length) = declared.and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        if length > body_bytes_max as u64 {
            return Err(too_large());
        }
    }
    let reading = Limited::new(body, body_bytes_max).collect();
    let body = match tokio::time::timeout(limits.body_read_timeout, reading).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(too_large());
        }
        Ok(Err(error)) => {
            return Err(HttpResponse::error(400, "bad_body", format!("reading the body: {error}")))
        }
        Err(_) => {
            let timeout_ms = limits.body_read_timeout.as_millis();
            let message = format!("the body did not arrive within {timeout_ms} ms");
            return Err(HttpResponse::error(408, "body_timeout", message)
                .with_header("connection", "close"));
        }
    };
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        let Ok(value) = value.to_str() else {
            let message = format!("header {name} is not visible ASCII");
            return Err(HttpResponse::error(400, "bad_header", message));
        };
        headers.insert(name.as_str().to_ascii_lowercase(), value.to_string());
    }
    let query = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (pair.to_string(), String::new()),
        })
        .collect();
    Ok(HttpRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query,
        headers,
        body,
    })
}

fn into_hyper(response: HttpResponse) -> hyper::Response<Full<Bytes>> {
    let mut built = hyper::Response::new(Full::new(response.body));
    *built.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = hyper::header::HeaderValue::from_str(&response.content_type) {
        built.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    for (name, value) in &response.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            built.headers_mut().append(name, value);
        }
    }
    built
}

/// One request on a fresh connection, the whole exchange bounded by `timeout`.
pub async fn request(
    address: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let exchange = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| HttpError::Connect(address, error.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| HttpError::Exchange(error.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, address.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|error| HttpError::Exchange(error.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| HttpError::Exchange(error.to_string()))?;
        let status = response.status().as_u16();
        let mut content_type = String::new();
        let mut response_headers = Vec::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if name == hyper::header::CONTENT_TYPE {
                content_type = value;
            } else {
                response_headers.push((name.as_str().to_string(), value));
            }
        }
        let body = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| HttpError::Exchange(error.to_string()))?
            .to_bytes();
        driver.abort();
        Ok(HttpResponse { status, content_type, headers: response_headers, body, account: None })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(HttpError::Timeout(timeout)),
    }
}

#[cfg(all(test, madsim))]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use bytes::Bytes;
    use serde_json::json;

    use super::*;

    /// A server that echoes what it parsed, on one simulated node; requests from another.
    #[madsim::test]
    async fn requests_are_parsed_bounded_and_answered() {
        let handle = madsim::runtime::Handle::current();
        let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 8080);
        handle
            .create_node()
            .name("server")
            .ip(address.ip())
            .init(move || async move {
                let listener = TcpListener::bind(address).await.unwrap();
                let log = crate::history::Recorder::disabled("server");
                serve(listener, EdgeLimits::new(16), log, |request: HttpRequest| async move {
                    HttpResponse::json(
                        200,
                        &json!({
                            "method": request.method,
                            "path": request.path,
                            "query": request.query,
                            "key": request.header("x-key"),
                            "body": String::from_utf8_lossy(&request.body),
                        }),
                    )
                })
                .await
            })
            .build();
        let client =
            handle.create_node().name("client").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1))).build();
        client
            .spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let timeout = Duration::from_secs(1);
                let response = request(
                    address,
                    "POST",
                    "/v1/x?a=1&b",
                    &[("X-Key", "k")],
                    Bytes::from("hello"),
                    timeout,
                )
                .await
                .unwrap();
                assert_eq!(response.status, 200);
                assert_eq!(
                    response.body_json().unwrap(),
                    json!({ "method": "POST", "path": "/v1/x", "query": { "a": "1", "b": "" },
                            "key": "k", "body": "hello" })
                );
                let too_large = Bytes::from(vec![b'x'; 17]);
                let response =
                    request(address, "POST", "/", &[], too_large, timeout).await.unwrap();
                assert_eq!(response.status, 413);
                assert_eq!(response.body_json().unwrap()["error"], "too_large");
                let nobody = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 8080);
                let error =
                    request(nobody, "GET", "/", &[], Bytes::new(), timeout).await.unwrap_err();
                assert!(
                    matches!(error, HttpError::Connect(..) | HttpError::Timeout(_)),
                    "{error:?}"
                );
            })
            .await
            .unwrap();
    }

    /// The read timeouts run on simulated time: a head sent a byte at a time is cut off, and a
    /// body shorter than its length answered 408, each after its timeout; connections over the
    /// cap are answered 503.
    #[madsim::test]
    async fn read_timeouts_and_the_connection_cap_hold_on_simulated_time() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let handle = madsim::runtime::Handle::current();
        let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 8080);
        handle
            .create_node()
            .name("server")
            .ip(address.ip())
            .init(move || async move {
                let listener = TcpListener::bind(address).await.unwrap();
                let limits = EdgeLimits {
                    header_read_timeout: Duration::from_millis(2000),
                    body_read_timeout: Duration::from_millis(3000),
                    connections_max: 2,
                    ..EdgeLimits::new(1024)
                };
                let log = crate::history::Recorder::disabled("server");
                serve(listener, limits, log, |request: HttpRequest| async move {
                    HttpResponse::new(200, "text/plain", request.body)
                })
                .await
            })
            .build();
        let client =
            handle.create_node().name("client").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2))).build();
        client
            .spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
                    let mut received = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                        received.extend_from_slice(&buffer[..n]);
                    }
                    String::from_utf8_lossy(&received).into_owned()
                }
                // Slowloris: a byte every 100 ms, never the head's end; the server closes.
                let started = tokio::time::Instant::now();
                let slow = TcpStream::connect(address).await.unwrap();
                let (mut reading, mut writing) = tokio::io::split(slow);
                let slowloris = tokio::spawn(async move {
                    for byte in b"GET / HTTP/1.1\r\nx-slow: ".iter().cycle() {
                        let sent = writing.write_all(&[*byte]).await;
                        if sent.is_err() || writing.flush().await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
                let closed =
                    tokio::time::timeout(Duration::from_secs(5), until_closed(&mut reading)).await;
                slowloris.abort();
                assert_eq!(closed.as_deref(), Ok(""));
                let elapsed = started.elapsed();
                assert!(elapsed >= Duration::from_millis(2000), "{elapsed:?}");
                assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
                // A body shorter than its length.
                let started = tokio::time::Instant::now();
                let mut short = TcpStream::connect(address).await.unwrap();
                let head = "POST / HTTP/1.1\r\ncontent-length: 100\r\n\r\nten bytes!";
                short.write_all(head.as_bytes()).await.unwrap();
                short.flush().await.unwrap(); // madsim's TCP sends on flush
                let answer = until_closed(&mut short).await;
                assert!(answer.starts_with("HTTP/1.1 408"), "{answer} {:?}", started.elapsed());
                let elapsed = started.elapsed();
                assert!(elapsed >= Duration::from_millis(3000), "{elapsed:?}");
                assert!(elapsed < Duration::from_millis(3500), "{elapsed:?}");
                // Two connections held; the third is answered 503 at once.
                let _held = [
                    TcpStream::connect(address).await.unwrap(),
                    TcpStream::connect(address).await.unwrap(),
                ];
                tokio::time::sleep(Duration::from_millis(10)).await;
                let response =
                    request(address, "POST", "/", &[], Bytes::from("x"), Duration::from_secs(1))
                        .await
                        .unwrap();
                assert_eq!(response.status, 503);
                assert_eq!(response.body_json().unwrap()["outcome"], "not_applied");
            })
            .await
            .unwrap();
    }
}
