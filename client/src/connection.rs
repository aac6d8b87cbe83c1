//! One connection to one broker: versions negotiated with ApiVersions at connect, requests
//! pipelined, responses matched to requests by correlation id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use lmq_wire::protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
use lmq_wire::{decode_response, encode_request, frame_length};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, oneshot};

use crate::error::{ClientError, Result};

/// Largest response frame accepted (a fetch of many partitions stays well below).
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

type Pending =
    Arc<std::sync::Mutex<HashMap<i32, (ApiKey, i16, oneshot::Sender<Result<ResponseKind>>)>>>;

/// A TCP connection to one broker, shared by concurrent requests. A background task reads
/// responses; once the connection closes every waiting request fails with
/// [`ClientError::Connection`] and [`Connection::is_closed`] turns true.
#[derive(Debug)]
pub struct Connection {
    address: String,
    client_id: String,
    writer: Mutex<OwnedWriteHalf>,
    pending: Pending,
    /// Set by the reader task when the connection ends.
    closed: Arc<AtomicBool>,
    next_correlation: AtomicI32,
    /// The broker's supported range per API key.
    versions: HashMap<i16, (i16, i16)>,
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
        let stream = tokio::time::timeout(request_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ClientError::Timeout {
                address: address.to_string(),
                timeout_ms: u64::try_from(request_timeout.as_millis()).unwrap_or(u64::MAX),
            })?
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
        let (reader, writer) = stream.into_split();
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
            versions: HashMap::new(),
            request_timeout,
        };
        // ApiVersions v3 is understood by every broker we target; v0 would be the fallback.
        let response = connection
            .send(
                ApiKey::ApiVersions,
                3,
                RequestKind::ApiVersions(client_api_versions_request()),
            )
            .await?;
        let ResponseKind::ApiVersions(versions) = response else {
            return Err(ClientError::UnexpectedResponse("ApiVersions".to_string()));
        };
        if let Some(error) = ClientError::from_code("ApiVersions", versions.error_code, None) {
            return Err(error);
        }
        connection.versions = versions
            .api_keys
            .iter()
            .map(|key| (key.api_key, (key.min_version, key.max_version)))
            .collect();
        Ok(connection)
    }

    /// The broker's `host:port` this connection was opened to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The highest version both this client and the broker speak, within `wanted`.
    pub fn version(&self, api_key: ApiKey, wanted: std::ops::RangeInclusive<i16>) -> Result<i16> {
        let decodable = api_key.valid_versions();
        let unsupported = || ClientError::UnsupportedApi {
            api: format!("{api_key:?}"),
            min: *wanted.start(),
            max: *wanted.end(),
        };
        let (broker_min, broker_max) = self
            .versions
            .get(&(api_key as i16))
            .copied()
            .ok_or_else(unsupported)?;
        let version = broker_max.min(*wanted.end()).min(decodable.max);
        if version < broker_min.max(*wanted.start()).max(decodable.min) {
            return Err(unsupported());
        }
        Ok(version)
    }

    /// Sends a request at the best common version within `wanted` and waits for its answer.
    pub async fn call(
        &self,
        api_key: ApiKey,
        wanted: std::ops::RangeInclusive<i16>,
        body: RequestKind,
    ) -> Result<ResponseKind> {
        let version = self.version(api_key, wanted)?;
        self.send(api_key, version, body).await
    }

    pub(crate) async fn send(
        &self,
        api_key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind> {
        self.start(api_key, version, body).await?.await
    }

    /// Writes a request and returns the wait for its answer: requests started one after the
    /// other reach the broker in that order (a producer's batches of one partition).
    pub(crate) async fn start(
        &self,
        api_key: ApiKey,
        version: i16,
        body: RequestKind,
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
            writer.write_all(&frame).await
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

    /// Sends a Produce with acks=0: the broker sends nothing back.
    pub async fn send_without_response(
        &self,
        api_key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<()> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(&body, api_key, version, correlation_id, &self.client_id)?;
        let mut writer = self.writer.lock().await;
        writer
            .write_all(&frame)
            .await
            .map_err(|error| ClientError::Connection {
                address: self.address.clone(),
                reason: error.to_string(),
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

fn client_api_versions_request() -> ApiVersionsRequest {
    let mut request = ApiVersionsRequest::default();
    request.client_software_name =
        lmq_wire::protocol::protocol::StrBytes::from_string("lmq-rust".to_string());
    request.client_software_version =
        lmq_wire::protocol::protocol::StrBytes::from_string(env!("CARGO_PKG_VERSION").to_string());
    request
}

async fn read_responses(
    mut reader: OwnedReadHalf,
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
