//! OAUTHBEARER's key set from a URL (Kafka's `sasl.oauthbearer.jwks.endpoint.url`): fetched
//! at start and then every `oauthbearer_jwks_refresh_ms`, so an identity provider's rotated
//! keys apply without a restart. A failed fetch, or a document that is no key set, keeps the
//! keys in force and is retried with Kafka's backoff (100 ms doubling to 10 s); until the
//! first fetch succeeds every token is refused. An `https://` URL's certificate must chain to
//! `oauthbearer_jwks_ca_file`, else to the public web roots.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};

use super::oauthbearer::{TokenRules, parse_keys};

/// One fetch's bound: connection, request and body together.
const FETCH_TIMEOUT_MS: u64 = 10_000;
/// The largest key set read (identity providers' sets are a few KiB).
const JWKS_BYTES_MAX: usize = 1 << 20;
/// Kafka's `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms` and `...backoff.max.ms`.
const RETRY_MS_MIN: u64 = 100;
const RETRY_MS_MAX: u64 = 10_000;

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// Where the key set comes from (`[sasl] oauthbearer_jwks_*`).
#[derive(Debug, Clone)]
pub struct JwksSource {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub refresh_ms: u64,
}

/// Keeps `rules`' keys those of the source's URL until `shutdown`.
pub async fn keep_fetched(
    rules: Arc<TokenRules>,
    source: JwksSource,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let JwksSource {
        url,
        ca_file,
        refresh_ms,
    } = source;
    let mut failures: u32 = 0;
    loop {
        // The client is built for each fetch: a CA file that is broken now may be repaired.
        let fetched = match client(ca_file.as_deref()) {
            Ok(client) => fetch(&client, &url).await,
            Err(error) => Err(error),
        }
        .and_then(|text| parse_keys(&text));
        let wait_ms = match fetched {
            Ok(keys) => {
                tracing::debug!(%url, keys = keys.keys.len(), "OAUTHBEARER key set fetched");
                rules.set_keys(keys);
                failures = 0;
                refresh_ms
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(%url, %error, "fetching the OAUTHBEARER key set (the keys in force stay)");
                retry_ms(failures).min(refresh_ms)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// The wait after the `failures`th failure in a row.
fn retry_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (RETRY_MS_MIN << doublings).min(RETRY_MS_MAX)
}

/// https (trusting `ca_file`, else the public web roots) or http; one connection per fetch
/// (an hourly fetch has nothing to pool).
fn client(ca_file: Option<&std::path::Path>) -> Result<Client, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .map_err(|error| format!("reading {}: {error}", path.display()))?;
            let (added, _unusable) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(format!("no usable CA certificate in {}", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The provider is named: rustls panics when the process has none or several installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS versions: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector),
    )
}

/// The body of a GET of `url` that answered 200, within the time and size bounds.
async fn fetch(client: &Client, url: &str) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(|error| format!("{error}"))?;
    let exchange = async {
        let response = client
            .get(uri)
            .await
            .map_err(|error| format!("{error:?}"))?;
        let status = response.status();
        if status != hyper::StatusCode::OK {
            return Err(format!("answered {status}"));
        }
        let body = Limited::new(response.into_body(), JWKS_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| format!("reading the body: {error}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".to_string())
    };
    tokio::time::timeout(Duration::from_millis(FETCH_TIMEOUT_MS), exchange)
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT_MS} ms"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_as_kafka_does() {
        assert_eq!(retry_ms(1), 100);
        assert_eq!(retry_ms(2), 200);
        assert_eq!(retry_ms(7), 6_400);
        assert_eq!(retry_ms(8), 10_000);
        assert_eq!(retry_ms(u32::MAX), 10_000);
    }
}
