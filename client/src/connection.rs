//! One connection to one broker: versions negotiated with ApiVersions at connect (for every
//! entry of the client's table, [`crate::api`]), typed requests pipelined, responses matched
//! to requests by correlation id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use lmq_wire::protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestKind, ResponseKind, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use lmq_wire::protocol::protocol::StrBytes;

use crate::scram::ScramClient;

use crate::api::{Api, Negotiated, Request};
use lmq_wire::{decode_response, encode_request, frame_length};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, oneshot};

use crate::security::{SaslMechanism, Security};

use crate::error::{ClientError, Result};

/// Largest response frame accepted (a fetch of many partitions stays well below).
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

type Pending =
    Arc<std::sync::Mutex<HashMap<i32, (ApiKey, i16, oneshot::Sender<Result<ResponseKind>>)>>>;

/// The write half of a connection: plain TCP or TLS.
struct Writer(Box<dyn AsyncWrite + Send + Unpin>);

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}
/// The read half.
type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// A TCP (or TLS) connection to one broker, shared by concurrent requests. A background task reads
/// responses; once the connection closes every waiting request fails with
/// [`ClientError::Connection`] and [`Connection::is_closed`] turns true.
#[derive(Debug)]
pub struct Connection {
    address: String,
    client_id: String,
    writer: Mutex<Writer>,
    pending: Pending,
    /// Set by the reader task when the connection ends.
    closed: Arc<AtomicBool>,
    next_correlation: AtomicI32,
    /// The version of each table entry both sides speak, from the broker's ApiVersions.
    versions: Negotiated,
    request_timeout: Duration,
}

impl Connection {
    /// Connects to `address` (`host:port`) with TCP_NODELAY and learns the broker's API
    /// versions (ApiVersions v3). `request_timeout` bounds the connect and every request on
    /// this connection.
    pub async fn connect(
        address: &str,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Self> {
        Self::connect_secure(address, client_id, request_timeout, &Security::default()).await
    }

    /// As [`Connection::connect`], over TLS and authenticated with SASL as `security` says
    /// (the TLS handshake first, then ApiVersions, then the SASL exchange).
    pub async fn connect_secure(
        address: &str,
        client_id: &str,
        request_timeout: Duration,
        security: &Security,
    ) -> Result<Self> {
        let timed_out = || ClientError::Timeout {
            address: address.to_string(),
            timeout_ms: u64::try_from(request_timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let stream = tokio::time::timeout(request_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| timed_out())?
            .map_err(|error| ClientError::Connect {
                address: address.to_string(),
                error,
            })?;
        stream
            .set_nodelay(true)
            .map_err(|error| ClientError::Connect {
                address: address.to_string(),
                error,
            })?;
        let (reader, writer): (Reader, Writer) = match &security.tls {
            None => {
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Writer(Box::new(writer)))
            }
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.client_config()?);
                let host = address
                    .rsplit_once(':')
                    .map_or(address, |(host, _)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|error| ClientError::Tls(format!("{host}: {error}")))?;
                let stream = tokio::time::timeout(request_timeout, connector.connect(name, stream))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|error| {
                        ClientError::Tls(format!("handshake with {address}: {error}"))
                    })?;
                let (reader, writer) = tokio::io::split(stream);
                (Box::new(reader), Writer(Box::new(writer)))
            }
        };
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(read_responses(
            reader,
            Arc::clone(&pending),
            Arc::clone(&closed),
            address.to_string(),
        ));
        let mut connection = Connection {
            address: address.to_string(),
            client_id: client_id.to_string(),
            writer: Mutex::new(writer),
            pending,
            closed,
            next_correlation: AtomicI32::new(1),
            versions: Negotiated::new([]),
            request_timeout,
        };
        // Nothing is negotiated yet: ApiVersions goes at the table's version (v3 is understood
        // by every broker we target).
        let request = client_api_versions_request();
        let answer = connection
            .write(
                Api::ApiVersions.key(),
                request.into(),
                *Api::ApiVersions.versions().end(),
            )
            .await?
            .await?;
        let versions = typed::<ApiVersionsRequest>(answer)?;
        if let Some(error) = ClientError::from_code("ApiVersions", versions.error_code, None) {
            return Err(error);
        }
        connection.versions = Negotiated::new(
            versions
                .api_keys
                .iter()
                .map(|key| (key.api_key, key.min_version, key.max_version)),
        );
        if let Some(sasl) = &security.sasl {
            connection.authenticate(sasl).await?;
        }
        Ok(connection)
    }

    /// The SASL exchange (SaslHandshake, then SaslAuthenticate until the mechanism is done).
    async fn authenticate(&self, sasl: &crate::security::SaslSettings) -> Result<()> {
        let failed = |reason: String| ClientError::Authentication {
            address: self.address.clone(),
            reason,
        };
        let mut handshake = SaslHandshakeRequest::default();
        handshake.mechanism = StrBytes::from_string(sasl.mechanism.name().to_string());
        let answer = self.call(handshake).await?;
        if answer.error_code != 0 {
            let offered: Vec<String> = answer.mechanisms.iter().map(ToString::to_string).collect();
            return Err(failed(format!(
                "{} (the broker offers {})",
                lmq_wire::error_name(answer.error_code),
                offered.join(", ")
            )));
        }
        match sasl.mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{}\0{}", sasl.username, sasl.password);
                self.sasl_step(token.into_bytes()).await?;
            }
            SaslMechanism::Scram(mechanism) => {
                let nonce = uuid::Uuid::new_v4().simple().to_string();
                let mut scram = ScramClient::new(mechanism, &sasl.username, &sasl.password, &nonce);
                let server_first = self.sasl_step(scram.first()).await?;
                let last = scram
                    .respond(&server_first)
                    .map_err(|error| failed(error.to_string()))?;
                let server_final = self.sasl_step(last).await?;
                scram
                    .verify(&server_final)
                    .map_err(|error| failed(error.to_string()))?;
            }
        }
        Ok(())
    }

    /// One SaslAuthenticate: the broker's bytes, or its refusal.
    async fn sasl_step(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let mut request = SaslAuthenticateRequest::default();
        request.auth_bytes = bytes.into();
        let answer = self.call(request).await?;
        if answer.error_code != 0 {
            return Err(ClientError::Authentication {
                address: self.address.clone(),
                reason: answer.error_message.map_or_else(
                    || lmq_wire::error_name(answer.error_code).to_string(),
                    |m| m.to_string(),
                ),
            });
        }
        Ok(answer.auth_bytes.to_vec())
    }

    /// The broker's `host:port` this connection was opened to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The version `R` goes at on this connection: the highest one both this client (its
    /// table, [`crate::api`]) and the broker speak. For request bodies whose shape depends on it.
    pub fn version<R: Request>(&self) -> Result<i16> {
        self.versions
            .version(R::API)
            .ok_or_else(|| ClientError::UnsupportedApi {
                api: R::API.name().to_string(),
                min: *R::API.versions().start(),
                max: *R::API.versions().end(),
            })
    }

    /// Sends `request` at the negotiated version and waits for its answer.
    pub async fn call<R: Request>(&self, request: R) -> Result<R::Response> {
        self.start(request).await?.await
    }

    /// Writes a request and returns the wait for its answer: requests started one after the
    /// other reach the broker in that order (a producer's batches of one partition).
    pub(crate) async fn start<R: Request>(
        &self,
        request: R,
    ) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static> {
        let version = self.version::<R>()?;
        let answer = self.write(R::API.key(), request.into(), version).await?;
        Ok(async move { typed::<R>(answer.await?) })
    }

    /// Sends a request the broker does not answer (a Produce with acks=0).
    pub async fn send_without_response<R: Request>(&self, request: R) -> Result<()> {
        let version = self.version::<R>()?;
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(
            &request.into(),
            R::API.key(),
            version,
            correlation_id,
            &self.client_id,
        )?;
        let mut writer = self.writer.lock().await;
        writer
            .0
            .write_all(&frame)
            .await
            .map_err(|error| ClientError::Connection {
                address: self.address.clone(),
                reason: error.to_string(),
            })
    }

    /// Writes `body` at `version` and returns the wait for the decoded answer.
    async fn write(
        &self,
        api_key: ApiKey,
        body: RequestKind,
        version: i16,
    ) -> Result<impl std::future::Future<Output = Result<ResponseKind>> + Send + 'static> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(&body, api_key, version, correlation_id, &self.client_id)?;
        let (sender, receiver) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(correlation_id, (api_key, version, sender));
        let written = {
            let mut writer = self.writer.lock().await;
            writer.0.write_all(&frame).await
        };
        if let Err(error) = written {
            self.forget(correlation_id);
            return Err(ClientError::Connection {
                address: self.address.clone(),
                reason: error.to_string(),
            });
        }
        let address = self.address.clone();
        let pending = Arc::clone(&self.pending);
        let timeout = self.request_timeout;
        Ok(async move {
            match tokio::time::timeout(timeout, receiver).await {
                Ok(Ok(response)) => response,
                Ok(Err(_)) => Err(ClientError::Connection {
                    address,
                    reason: "closed while waiting for a response".to_string(),
                }),
                Err(_) => {
                    pending
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&correlation_id);
                    Err(ClientError::Timeout {
                        address,
                        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    })
                }
            }
        })
    }

    fn forget(&self, correlation_id: i32) {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&correlation_id);
    }

    /// Whether the reader task has seen the connection close.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The typed answer to `R`. The reader decodes each answer with its request's API key, so
/// another kind means a bug, reported as [`ClientError::UnexpectedResponse`].
fn typed<R: Request>(response: ResponseKind) -> Result<R::Response> {
    R::response(response).ok_or_else(|| ClientError::UnexpectedResponse(R::API.name().to_string()))
}

fn client_api_versions_request() -> ApiVersionsRequest {
    let mut request = ApiVersionsRequest::default();
    request.client_software_name =
        lmq_wire::protocol::protocol::StrBytes::from_string("lmq-rust".to_string());
    request.client_software_version =
        lmq_wire::protocol::protocol::StrBytes::from_string(env!("CARGO_PKG_VERSION").to_string());
    request
}

async fn read_responses(
    mut reader: Reader,
    pending: Pending,
    closed: Arc<AtomicBool>,
    address: String,
) {
    let failure = loop {
        let mut prefix = [0u8; 4];
        if let Err(error) = reader.read_exact(&mut prefix).await {
            break error.to_string();
        }
        let length = match frame_length(prefix, RESPONSE_BYTES_MAX) {
            Ok(length) => length,
            Err(error) => break error.to_string(),
        };
        let mut frame = BytesMut::zeroed(length);
        if let Err(error) = reader.read_exact(&mut frame).await {
            break error.to_string();
        }
        let frame: Bytes = frame.freeze();
        if frame.len() < 4 {
            break "response shorter than its header".to_string();
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let waiting = pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&correlation_id);
        let Some((api_key, version, sender)) = waiting else {
            tracing::debug!(%address, correlation_id, "response nobody waits for");
            continue;
        };
        let decoded = decode_response(frame, api_key, version)
            .map(|(_, response)| response)
            .map_err(ClientError::from);
        let _ = sender.send(decoded);
    };
    tracing::debug!(%address, %failure, "connection closed");
    closed.store(true, Ordering::Release);
    let waiting: Vec<_> = pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .drain()
        .collect();
    for (_, (_, _, sender)) in waiting {
        let _ = sender.send(Err(ClientError::Connection {
            address: address.clone(),
            reason: failure.clone(),
        }));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use lmq_wire::protocol::messages::api_versions_response::ApiVersion;
    use lmq_wire::protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse};
    use lmq_wire::{WireError, decode_request, encode_response};
    use tokio::net::TcpListener;

    /// How the fake broker answers one request after ApiVersions.
    #[derive(Debug, Clone, Copy)]
    enum Answer {
        /// The real answer cut after its correlation id and a few bytes.
        Truncated,
        /// The correlation id followed by noise.
        Garbage,
        /// The real answer.
        Whole,
    }

    /// A broker on a loopback port that answers ApiVersions with LMQ's table (cut short when
    /// `truncate_api_versions`), then each later request with the next of `answers`.
    async fn fake_broker(truncate_api_versions: bool, answers: Vec<Answer>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut answers = answers.into_iter();
            loop {
                let mut prefix = [0u8; 4];
                if stream.read_exact(&mut prefix).await.is_err() {
                    return;
                }
                let length = frame_length(prefix, 1 << 20).unwrap();
                let mut frame = vec![0u8; length];
                stream.read_exact(&mut frame).await.unwrap();
                let request = decode_request(Bytes::from(frame)).unwrap();
                let (body, answer) = match request.api_key {
                    ApiKey::ApiVersions => {
                        let mut versions = ApiVersionsResponse::default();
                        versions.api_keys = lmq_wire::SUPPORTED_APIS
                            .iter()
                            .map(|api| {
                                let mut key = ApiVersion::default();
                                key.api_key = api.api_key as i16;
                                key.min_version = api.min_version;
                                key.max_version = api.max_version;
                                key
                            })
                            .collect();
                        let answer = if truncate_api_versions {
                            Answer::Truncated
                        } else {
                            Answer::Whole
                        };
                        (ResponseKind::ApiVersions(versions), answer)
                    }
                    _ => (
                        ResponseKind::Metadata(MetadataResponse::default()),
                        answers.next().unwrap(),
                    ),
                };
                let whole = encode_response(
                    &body,
                    request.api_key,
                    request.api_version(),
                    request.correlation_id(),
                )
                .unwrap();
                let body = match answer {
                    Answer::Whole => whole[4..].to_vec(),
                    Answer::Truncated => whole[4..whole.len().min(11)].to_vec(),
                    Answer::Garbage => {
                        let mut body = request.correlation_id().to_be_bytes().to_vec();
                        body.extend_from_slice(&[0xff, 0x80, 0x00, 0x7f, 0xff, 0xff, 0xff]);
                        body
                    }
                };
                let length = i32::try_from(body.len()).unwrap();
                stream.write_all(&length.to_be_bytes()).await.unwrap();
                stream.write_all(&body).await.unwrap();
            }
        });
        address
    }

    fn is_malformed(result: &Result<impl std::fmt::Debug>) -> bool {
        matches!(result, Err(ClientError::Wire(WireError::Malformed { .. })))
    }

    /// A broker (or, for the replica fetcher, a peer broker) that answers with a cut or
    /// garbled frame: the call is an error, nothing panics, and the connection serves the
    /// next request.
    #[tokio::test]
    async fn a_truncated_or_garbage_answer_is_an_error_and_the_connection_goes_on() {
        let address = fake_broker(
            false,
            vec![Answer::Truncated, Answer::Garbage, Answer::Whole],
        )
        .await;
        let connection = Connection::connect(&address, "test", Duration::from_secs(5))
            .await
            .unwrap();
        let truncated = connection.call(MetadataRequest::default()).await;
        assert!(is_malformed(&truncated), "{truncated:?}");
        let garbage = connection.call(MetadataRequest::default()).await;
        assert!(is_malformed(&garbage), "{garbage:?}");
        let whole = connection.call(MetadataRequest::default()).await;
        assert_eq!(whole.unwrap(), MetadataResponse::default());
    }

    #[tokio::test]
    async fn a_truncated_api_versions_answer_fails_the_connect() {
        let address = fake_broker(true, Vec::new()).await;
        let connected = Connection::connect(&address, "test", Duration::from_secs(5)).await;
        assert!(is_malformed(&connected), "{connected:?}");
    }

    /// Versions come from the client's table, negotiated with the broker's at connect.
    #[tokio::test]
    async fn calls_go_at_the_version_negotiated_from_the_clients_table() {
        let address = fake_broker(false, Vec::new()).await;
        let connection = Connection::connect(&address, "test", Duration::from_secs(5))
            .await
            .unwrap();
        // LMQ serves Metadata up to 12, the client's table goes to 12.
        assert_eq!(connection.version::<MetadataRequest>().unwrap(), 12);
        // LMQ advertises FindCoordinator up to 5, the client's table stops at 4.
        assert_eq!(
            connection
                .version::<lmq_wire::protocol::messages::FindCoordinatorRequest>()
                .unwrap(),
            4
        );
        assert_eq!(
            connection.version::<crate::api::ReplicaFetch>().unwrap(),
            12
        );
    }
}
