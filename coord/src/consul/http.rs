//! Direct calls to Consul's HTTP API, on the same hyper client rs-consul uses (one HTTP stack,
//! one set of connection settings). Every call is bounded by a timeout and a response size.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Method;
use rs_consul::HttpsClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ConsulConfig;
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

/// The one client of both paths (rs-consul and direct calls): rustls, with the configured
/// CA and client certificate for `https://` agents, else the public web roots.
pub(crate) fn build_client(config: &ConsulConfig) -> CoordResult<HttpsClient> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match tls_config(config)? {
        Some(tls) => builder.with_tls_config(tls),
        None => builder.with_webpki_roots(),
    };
    let connector = builder.https_or_http().enable_http1().build();
    // As rs-consul's default: no idle pooling (hyper issue 2312: a pooled connection the
    // agent closed fails the next request), one connection per request. Loopback agents
    // make that cheap; blocking queries hold their connection for their whole wait anyway.
    Ok(
        hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::ZERO)
            .pool_max_idle_per_host(0)
            .build(connector),
    )
}

/// The rustls settings when a CA or client certificate is configured (`None`: the defaults).
fn tls_config(config: &ConsulConfig) -> CoordResult<Option<rustls::ClientConfig>> {
    if config.ca_file.is_none() && config.cert_file.is_none() {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let (added, _unparsable) = roots.add_parsable_certificates(read_certificates(path)?);
            if added == 0 {
                return Err(tls_file(path, "no usable CA certificate in it"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The provider is named, not taken from the process default: rustls panics when none
    // or several are installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| CoordError::InvalidConfig(format!("TLS versions: {error}")))?
        .with_root_certificates(roots);
    let tls = match (&config.cert_file, &config.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let chain = read_certificates(cert_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|error| tls_file(key_path, &format!("no private key: {error}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| tls_file(key_path, &error.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(tls))
}

fn tls_file(path: &Path, detail: &str) -> CoordError {
    CoordError::TlsFile {
        path: path.to_owned(),
        detail: detail.to_owned(),
    }
}

/// Every certificate of a PEM file; none is an error.
fn read_certificates(path: &Path) -> CoordResult<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| tls_file(path, &error.to_string()))?;
    if certificates.is_empty() {
        return Err(tls_file(path, "no PEM certificate in it"));
    }
    Ok(certificates)
}

/// A 403 is the ACLs' answer (Consul uses it for nothing else on the calls LMQ makes).
fn acl_denied(method: &'static str, path: &str, body: &str) -> CoordError {
    CoordError::AclDenied {
        method,
        path: path.to_owned(),
        detail: body.trim().to_owned(),
    }
}

/// An rs-consul error, with ACL refusals told apart like on the direct path.
pub(crate) fn consul_error(
    op: &'static str,
    method: &'static str,
    path: &str,
    source: rs_consul::ConsulError,
) -> CoordError {
    match &source {
        rs_consul::ConsulError::UnexpectedResponseCode(status, body)
            if *status == hyper::StatusCode::FORBIDDEN =>
        {
            acl_denied(method, path, body.as_deref().unwrap_or(""))
        }
        _ => CoordError::Consul { op, source },
    }
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

    /// One request; any status but 403 is returned (callers decide what 404 or 409 mean),
    /// 403 is `CoordError::AclDenied`.
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
            let forbidden = status == 403;
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
            let reply = Reply {
                status,
                index,
                body,
            };
            if forbidden {
                return Err(acl_denied(name, path, &reply.body_text()));
            }
            Ok(reply)
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
