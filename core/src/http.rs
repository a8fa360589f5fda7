//! HTTP/1.1 with hyper over the network seam's TCP: madsim's simulated TCP under
//! `--cfg madsim`, real sockets otherwise. The API servers and the auth management plane's
//! admin endpoints serve with [`serve`]; clients (the workload, the data plane's tests) call
//! with [`request`].
//!
//! Requests and responses are read whole into memory, so both sides bound them: a server
//! answers 413 to a body over its limit without reading it, and a client gives up on a
//! response body over [`RESPONSE_BYTES_MAX`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

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

/// A response: status, content type, body.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

impl HttpResponse {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> HttpResponse {
        HttpResponse {
            status,
            content_type: "application/json".into(),
            body: Bytes::from(value.to_string()),
        }
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

/// Serves HTTP/1.1 on `listener` until the node dies: one task per connection, each request
/// read whole (a body over `body_bytes_max` is answered 413 without calling `handler`).
pub async fn serve<H, F>(listener: TcpListener, body_bytes_max: usize, handler: H)
where
    H: Fn(HttpRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    loop {
        let Ok((stream, _peer)) = listener.accept().await else { continue };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let handler = handler.clone();
                async move {
                    let response = match read_request(request, body_bytes_max).await {
                        Ok(request) => handler(request).await,
                        Err(response) => response,
                    };
                    Ok::<_, Infallible>(into_hyper(response))
                }
            });
            // A connection that breaks is the client's to notice.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn read_request(
    request: hyper::Request<Incoming>,
    body_bytes_max: usize,
) -> Result<HttpRequest, HttpResponse> {
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
    let body = match Limited::new(body, body_bytes_max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(too_large());
        }
        Err(error) => {
            return Err(HttpResponse::error(400, "bad_body", format!("reading the body: {error}")))
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
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| HttpError::Exchange(error.to_string()))?
            .to_bytes();
        driver.abort();
        Ok(HttpResponse { status, content_type, body })
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
                serve(listener, 16, |request: HttpRequest| async move {
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
}
