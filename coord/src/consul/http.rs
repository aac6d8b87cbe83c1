//! Direct calls to Consul's HTTP API, on the same hyper client rs-consul uses (one HTTP stack,
//! one set of connection settings). Every call is bounded by a timeout and a response size.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Method;
use rs_consul::HttpsClient;

use crate::error::{CoordError, CoordResult};

/// Answers larger than this are refused (a full KV listing of LMQ's metadata is far below).
const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// `X-Consul-Index`, the index for the next blocking query.
    pub(crate) index: Option<u64>,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(512)
            .collect()
    }
}

#[derive(Debug)]
pub(crate) struct Http {
    client: HttpsClient,
    base: String,
    token: Option<String>,
    requests: AtomicU64,
}

pub(crate) fn build_client() -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    // As rs-consul's default: no idle pooling (hyper issue 2312: a pooled connection the
    // agent closed fails the next request), one connection per request. Loopback agents
    // make that cheap; blocking queries hold their connection for their whole wait anyway.
    hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::ZERO)
        .pool_max_idle_per_host(0)
        .build(connector)
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        _ => "OTHER",
    }
}

impl Http {
    pub(crate) fn new(client: HttpsClient, base: &str, token: Option<String>) -> Self {
        Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
            requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Counts a request made through rs-consul, so `requests_sent` covers both paths.
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// One request; any status is returned (callers decide what 404 or 409 mean).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> CoordResult<Reply> {
        let name = method_name(&method);
        let transport = |detail: String| CoordError::Transport {
            method: name,
            path: path.to_owned(),
            detail,
        };
        let body: BoxBody<Bytes, Infallible> = match body {
            Some(bytes) => BoxBody::new(Full::new(Bytes::from(bytes))),
            None => BoxBody::new(http_body_util::Empty::new()),
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        let request = request
            .body(body)
            .map_err(|error| transport(error.to_string()))?;
        self.count_request();
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| transport(format!("{error:?}")))?;
            let status = response.status().as_u16();
            let index = response
                .headers()
                .get("x-consul-index")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            let body = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|error| transport(error.to_string()))?
                .to_bytes();
            Ok(Reply {
                status,
                index,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CoordError::RequestTimeout {
                method: name,
                path: path.to_owned(),
                timeout,
            }),
        }
    }

    /// `call`, and anything but 200 is an error.
    pub(crate) async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> CoordResult<Reply> {
        let name = method_name(&method);
        let reply = self.call(method, path, body, timeout).await?;
        if reply.status != 200 {
            return Err(CoordError::Status {
                method: name,
                path: path.to_owned(),
                status: reply.status,
                body: reply.body_text(),
            });
        }
        Ok(reply)
    }
}

/// A Go duration string Consul accepts.
pub(crate) fn go_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// The query string of a blocking query.
pub(crate) fn blocking_params(index: u64, wait: Duration) -> String {
    format!("index={index}&wait={}", go_duration(wait))
}

/// How long to wait for a blocking query's answer: the wait, Consul's jitter (up to 1/16 of
/// the wait) and the usual request time.
pub(crate) fn blocking_timeout(wait: Duration, request_timeout: Duration) -> Duration {
    wait + wait / 16 + request_timeout
}
