//! The HTTP edge on real sockets (real build only: `RUSTFLAGS= cargo test --target-dir
//! target/real -p pessimist-core --test http_edge`): a slowloris head and a truncated body
//! are cut off by their timeouts, a head over its bound is 431, connections over the cap are
//! answered 503, requests over the in-flight bound 429, a wrong method 405 with `Allow`; and
//! an abuse pass against one API server (backed by a one-node queue and a one-node auth
//! plane, in this process), after which a normal upload is still accepted. Every wait is
//! bounded: the file runs in seconds.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pessimist_core::history::Recorder;
use pessimist_core::http::{self, EdgeLimits, HttpRequest, HttpResponse};
use pessimist_core::node::NodeContext;
use pessimist_core::seams::clock::Clock;
use pessimist_core::seams::disk::{Disk, RealDisk};
use pessimist_core::seams::net::{AddressBook, LinkFaults};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(5);

/// An echo server within `limits` on a free loopback port; its handler sleeps for the
/// `sleep_ms` query parameter first.
async fn echo_server(limits: EdgeLimits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(http::serve(
        listener,
        limits,
        Recorder::disabled("echo"),
        |request: HttpRequest| async move {
            if let Some(ms) = request.query.get("sleep_ms").and_then(|ms| ms.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            match (request.method.as_str(), request.path.as_str()) {
                ("POST", "/echo") => HttpResponse::new(200, "text/plain", request.body),
                (method, "/echo") => HttpResponse::method_not_allowed(method, "/echo", &["POST"]),
                _ => HttpResponse::error(404, "not_found", "no route"),
            }
        },
    ));
    address
}

fn limits() -> EdgeLimits {
    EdgeLimits {
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        ..EdgeLimits::new(1 << 16)
    }
}

/// Reads what the server sends until it closes (or `within` passes: then `None`).
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let reading = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(within, reading).await.ok()?;
    Some(String::from_utf8_lossy(&received).into_owned())
}

async fn post(address: SocketAddr, path: &str, body: &'static str) -> HttpResponse {
    http::request(address, "POST", path, &[], Bytes::from(body), TIMEOUT).await.expect("answer")
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_after_the_header_timeout() {
    let address = echo_server(limits()).await;
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let started = Instant::now();
    let head =
        b"POST /echo HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !cut {
        assert_eq!(read_to_close(&mut stream, Duration::from_secs(3)).await.as_deref(), Some(""));
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(450), "cut after {elapsed:?}, before the timeout");
    assert!(elapsed < Duration::from_secs(3), "still open after {elapsed:?}");
    // An idle connection that sends nothing is cut off as well.
    let mut idle = TcpStream::connect(address).await.expect("connect");
    assert_eq!(read_to_close(&mut idle, Duration::from_secs(3)).await.as_deref(), Some(""));
    // The server still serves.
    assert_eq!(post(address, "/echo", "hi").await.body, "hi");
}

#[tokio::test]
async fn a_body_shorter_than_its_length_is_answered_408_after_the_body_timeout() {
    let address = echo_server(limits()).await;
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly ten b")
        .await
        .expect("write");
    let answer = read_to_close(&mut stream, Duration::from_secs(3)).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(450));
}

#[tokio::test]
async fn a_head_over_its_bound_is_431_and_a_wrong_method_405_with_allow() {
    let address = echo_server(limits()).await;
    let huge = "x".repeat(20 << 10);
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let request = format!("GET /echo HTTP/1.1\r\nhost: x\r\nx-huge: {huge}\r\n\r\n");
    // The server may close before reading it all: a failed write is part of the answer.
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_to_close(&mut stream, Duration::from_secs(3)).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    for method in ["DELETE", "PUT", "GET"] {
        let response = http::request(address, method, "/echo", &[], Bytes::new(), TIMEOUT)
            .await
            .expect("answer");
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("POST"), "{method}");
        assert_eq!(response.body_json().unwrap()["error"], "method_not_allowed");
    }
    let response = http::request(address, "DELETE", "/nowhere", &[], Bytes::new(), TIMEOUT)
        .await
        .expect("answer");
    assert_eq!(response.status, 404);
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503_and_handlers_over_theirs_429() {
    let limits = EdgeLimits {
        connections_max: 4,
        in_flight_max: Some(2),
        header_read_timeout: Duration::from_secs(5),
        ..limits()
    };
    let address = echo_server(limits).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(address).await.expect("connect"));
    }
    // Let the server accept the four before the fifth comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = http::request(address, "POST", "/echo", &[], Bytes::from("x"), TIMEOUT)
        .await
        .expect("an answer, not a reset");
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), Some("1"));
    let body = response.body_json().expect("JSON");
    assert_eq!(
        (body["error"].as_str(), body["outcome"].as_str()),
        (Some("too_many_connections"), Some("not_applied"))
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(post(address, "/echo", "back").await.body, "back");

    // Two handlers sleep; a third request at the same time is 429, and served after them.
    let slow = || post(address, "/echo?sleep_ms=600", "slow");
    let (first, second) = (tokio::spawn(slow()), tokio::spawn(slow()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = post(address, "/echo", "third").await;
    assert_eq!(third.status, 429);
    assert_eq!(third.body_json().unwrap()["error"], "overloaded");
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    assert_eq!(post(address, "/echo", "third").await.status, 200);
}

/// Two adjacent free loopback ports (an auth node's transport and admin ports).
async fn free_port_pair() -> (u16, u16) {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).await.is_ok() {
            return (port, port + 1);
        }
    }
    panic!("no two adjacent free ports");
}

async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().unwrap().port()
}

/// Starts a one-node auth plane, a one-node queue and one API server in this process, on
/// loopback, with `knobs`; returns the API server's and the admin endpoint's addresses.
async fn small_service(
    knobs: serde_json::Value,
    data: &std::path::Path,
) -> (SocketAddr, SocketAddr) {
    let (auth_port, admin_port) = free_port_pair().await;
    let (queue_port, api_port) = (free_port().await, free_port().await);
    let nodes = [
        ("auth-1", "auth", auth_port),
        ("queue-1", "queue", queue_port),
        ("api-1", "api", api_port),
    ];
    let book: BTreeMap<String, SocketAddr> = nodes
        .iter()
        .map(|(name, _, port)| (name.to_string(), SocketAddr::from(([127, 0, 0, 1], *port))))
        .collect();
    let book = AddressBook::new(book);
    let cluster: BTreeMap<String, String> =
        nodes.iter().map(|(name, role, _)| (name.to_string(), role.to_string())).collect();
    for (name, role, _) in nodes {
        let context = NodeContext {
            name: name.into(),
            role: role.into(),
            book: book.clone(),
            cluster: cluster.clone(),
            disk: Disk::Real(RealDisk::open(data.join(name)).expect("data directory")),
            clock: Clock::system(),
            link_faults: LinkFaults::default(),
            recorder: Recorder::disabled(name),
            run_seed: 7,
            incarnation: 0,
            knobs: knobs.clone(),
        };
        tokio::spawn(pessimist_core::serve_role(context).expect("a role of the service"));
    }
    (SocketAddr::from(([127, 0, 0, 1], api_port)), SocketAddr::from(([127, 0, 0, 1], admin_port)))
}

/// Creates an account and a key through the admin endpoint, once the plane has a leader.
async fn api_key(admin: SocketAddr, admin_key: &str) -> String {
    let bearer = format!("Bearer {admin_key}");
    let call = |path: String, body: &'static str, idempotency: &'static str| {
        let bearer = bearer.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let headers =
                    [("authorization", bearer.as_str()), ("idempotency-key", idempotency)];
                let outcome =
                    http::request(admin, "POST", &path, &headers, Bytes::from(body), TIMEOUT).await;
                match outcome {
                    Ok(response) if response.status == 201 => return response.body_json().unwrap(),
                    other => {
                        assert!(
                            Instant::now() < deadline,
                            "the admin endpoint never created: {other:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    };
    let account = call("/v1/admin/accounts".into(), r#"{"name": "edge"}"#, "acct-1").await;
    let account = account["account"].as_str().expect("an account id").to_string();
    let key = call(format!("/v1/admin/accounts/{account}/keys"), "", "key-1").await;
    key["api_key"].as_str().expect("a secret").to_string()
}

/// An upload with `secret`, retried while the queue elects its leader.
async fn upload(api: SocketAddr, secret: &str, idempotency: &str) -> HttpResponse {
    let bearer = format!("Bearer {secret}");
    let headers = [("authorization", bearer.as_str()), ("idempotency-key", idempotency)];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let image = Bytes::from_static(b"not an image, but a body");
        let outcome =
            http::request(api, "POST", "/v1/images?width=8&height=8", &headers, image, TIMEOUT)
                .await;
        match outcome {
            Ok(response) if response.status != 503 => return response,
            other => {
                assert!(Instant::now() < deadline, "no upload accepted: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_still_accepts_uploads_after_an_abuse_pass() {
    let data = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("http-edge-abuse");
    let _ = std::fs::remove_dir_all(&data);
    let admin_key = "edge-admin-key";
    let knobs = json!({
        "auth": { "admin_key": admin_key },
        // Timeouts long enough that the 200 connections are all open before any is cut, on a
        // loaded machine too.
        "api": { "connections_max": 150, "header_read_timeout_ms": 3000, "body_read_timeout_ms": 3000 },
    });
    let (api, admin) = small_service(knobs, &data).await;
    let secret = api_key(admin, admin_key).await;
    let first = upload(api, &secret, "before").await;
    assert_eq!(first.status, 202, "{first:?}");

    // The abuse: 200 connections open at once (50 over the cap), then a third of them send
    // slowloris heads, a third truncated bodies, a third huge heads; then wrong methods.
    let all_open = std::sync::Arc::new(tokio::sync::Barrier::new(200));
    let mut abusers = Vec::new();
    for index in 0..200usize {
        let all_open = all_open.clone();
        abusers.push(tokio::spawn(async move {
            let connected = TcpStream::connect(api).await;
            all_open.wait().await;
            let Ok(mut stream) = connected else { return String::from("refused") };
            let sent = match index % 3 {
                0 => stream.write_all(b"POST /v1/images HTTP/1.1\r\nhost: x\r\nx-slow: a").await,
                1 => {
                    let head = "POST /v1/images?width=8&height=8 HTTP/1.1\r\nhost: x\r\n\
                                content-length: 5000\r\n\r\npartial";
                    stream.write_all(head.as_bytes()).await
                }
                _ => {
                    let huge = "y".repeat(64 << 10);
                    let head =
                        format!("GET /v1/jobs/1 HTTP/1.1\r\nhost: x\r\nx-huge: {huge}\r\n\r\n");
                    stream.write_all(head.as_bytes()).await
                }
            };
            let _ = sent;
            let answer = read_to_close(&mut stream, Duration::from_secs(10)).await;
            match answer {
                None => "still open".to_string(),
                Some(text) if text.is_empty() => "closed".to_string(),
                Some(text) => text.get(9..12).unwrap_or("?").to_string(),
            }
        }));
    }
    let abuse_started = Instant::now();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for abuser in abusers {
        *outcomes.entry(abuser.await.expect("abuser")).or_default() += 1;
    }
    eprintln!("abuse outcomes after {:?}: {outcomes:?}", abuse_started.elapsed());
    assert_eq!(outcomes.get("still open"), None, "{outcomes:?}");
    assert!(outcomes.get("503").copied().unwrap_or(0) >= 1, "none over the cap: {outcomes:?}");
    assert!(outcomes.get("431").copied().unwrap_or(0) >= 1, "{outcomes:?}");
    assert!(outcomes.get("408").copied().unwrap_or(0) >= 1, "{outcomes:?}");

    for (method, path, allow) in [
        ("DELETE", "/v1/images", "POST"),
        ("PUT", "/v1/jobs/1", "GET"),
        ("PATCH", "/v1/jobs/2", "GET"),
    ] {
        let response =
            http::request(api, method, path, &[], Bytes::new(), TIMEOUT).await.expect("answer");
        assert_eq!(
            (response.status, response.header("allow")),
            (405, Some(allow)),
            "{method} {path}"
        );
    }
    let after = upload(api, &secret, "after").await;
    assert_eq!(after.status, 202, "{after:?}");
    assert_eq!(after.body_json().unwrap()["duplicate"], false);
}
