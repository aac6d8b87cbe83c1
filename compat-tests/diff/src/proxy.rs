//! The recording proxy: clients connect to it instead of the broker; every request and the
//! broker's response pass through unchanged (bytes forwarded as read) except that
//!
//! - broker addresses in Metadata, FindCoordinator and DescribeCluster answers point at the
//!   proxy, so a client never bypasses it (one upstream broker: every node id maps here);
//! - ApiVersions answers are clamped to the versions LMQ supports (`lmq_wire`'s table), so a
//!   client negotiates the same versions with Apache Kafka as with LMQ and the two brokers'
//!   answers compare field for field.
//!
//! Each exchange is one JSON line in the output: connection, API, version, request and
//! response as trees (`tree.rs`), the response `null` when none came (acks=0 produce).

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use bytes::Bytes;
use lmq_wire::protocol::messages::{ApiKey, ResponseKind};
use lmq_wire::protocol::protocol::StrBytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::tree;

/// Larger frames end the connection (Kafka's own request limit is 100 MiB).
const FRAME_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Where exchanges go: one JSON line each, flushed as written so a killed proxy keeps them.
#[derive(Debug, Clone)]
pub struct Recorder {
    out: Arc<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl Recorder {
    pub fn create(path: &std::path::Path) -> Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating the recording {}", path.display()))?;
        Ok(Recorder {
            out: Arc::new(Mutex::new(std::io::BufWriter::new(file))),
        })
    }

    fn write(&self, line: &Value) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        // A recording that cannot be written is reported once per exchange, traffic goes on.
        if let Err(error) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            eprintln!("lmq-diff: writing the recording: {error}");
        }
    }
}

/// A request waiting for its response.
#[derive(Debug)]
struct Pending {
    correlation_id: i32,
    api_key: ApiKey,
    api_version: i16,
    request: Value,
}

/// Accepts clients forever, each connection proxied to `upstream` on its own task.
pub async fn serve(listener: TcpListener, upstream: String, recorder: Recorder) -> Result<()> {
    let advertised = listener.local_addr()?;
    let mut connection = 0u64;
    loop {
        let (client, _) = listener.accept().await?;
        connection += 1;
        let upstream = upstream.clone();
        let recorder = recorder.clone();
        tokio::spawn(async move {
            if let Err(error) = proxy(client, &upstream, advertised, recorder, connection).await {
                eprintln!("lmq-diff: connection {connection}: {error:#}");
            }
        });
    }
}

async fn proxy(
    client: TcpStream,
    upstream: &str,
    advertised: SocketAddr,
    recorder: Recorder,
    connection: u64,
) -> Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to {upstream}"))?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let pending = Arc::new(Mutex::new(VecDeque::new()));
    let requests = forward_requests(client_read, server_write, Arc::clone(&pending));
    let responses = forward_responses(
        server_read,
        client_write,
        advertised,
        Arc::clone(&pending),
        &recorder,
        connection,
    );
    // Either side closing ends the connection, as it would without the proxy.
    let outcome = tokio::select! {
        outcome = requests => outcome,
        outcome = responses => outcome,
    };
    let unanswered: Vec<Pending> = pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .collect();
    for request in unanswered {
        recorder.write(&exchange(connection, &request, Value::Null));
    }
    outcome
}

async fn forward_requests(
    mut client: OwnedReadHalf,
    mut server: OwnedWriteHalf,
    pending: Arc<Mutex<VecDeque<Pending>>>,
) -> Result<()> {
    while let Some(frame) = read_frame(&mut client).await? {
        if let Ok(request) = lmq_wire::decode_any_request(frame.clone()) {
            pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(Pending {
                    correlation_id: request.correlation_id(),
                    api_key: request.api_key,
                    api_version: request.api_version(),
                    request: tree::from_debug(&format!("{:#?}", request.body)),
                });
        }
        write_frame(&mut server, &frame).await?;
    }
    Ok(())
}

async fn forward_responses(
    mut server: OwnedReadHalf,
    mut client: OwnedWriteHalf,
    advertised: SocketAddr,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    recorder: &Recorder,
    connection: u64,
) -> Result<()> {
    while let Some(frame) = read_frame(&mut server).await? {
        let correlation_id = frame
            .get(..4)
            .map_or(-1, |id| i32::from_be_bytes([id[0], id[1], id[2], id[3]]));
        let request = take_pending(&pending, correlation_id, recorder, connection);
        let Some(request) = request else {
            write_frame(&mut client, &frame).await?;
            continue;
        };
        let outgoing =
            match lmq_wire::decode_response(frame.clone(), request.api_key, request.api_version) {
                Ok((_, body)) => {
                    let recorded = tree::from_debug(&format!("{body:#?}"));
                    recorder.write(&exchange(connection, &request, recorded));
                    rewrite(body, request.api_version, advertised)
                        .map(|body| {
                            lmq_wire::encode_response(
                                &body,
                                request.api_key,
                                request.api_version,
                                correlation_id,
                            )
                        })
                        .transpose()?
                        .map(|encoded| encoded.freeze().slice(4..))
                }
                Err(error) => {
                    let failed = json!({ "undecodable": error.to_string() });
                    recorder.write(&exchange(connection, &request, failed));
                    None
                }
            };
        write_frame(&mut client, outgoing.as_ref().unwrap_or(&frame)).await?;
    }
    Ok(())
}

/// The request `correlation_id` answers. Requests before it that got no answer (acks=0
/// produce) are recorded without a response.
fn take_pending(
    pending: &Mutex<VecDeque<Pending>>,
    correlation_id: i32,
    recorder: &Recorder,
    connection: u64,
) -> Option<Pending> {
    let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
    if !pending
        .iter()
        .any(|request| request.correlation_id == correlation_id)
    {
        return None;
    }
    while let Some(request) = pending.pop_front() {
        if request.correlation_id == correlation_id {
            return Some(request);
        }
        recorder.write(&exchange(connection, &request, Value::Null));
    }
    None
}

fn exchange(connection: u64, request: &Pending, response: Value) -> Value {
    json!({
        "connection": connection,
        "api": format!("{:?}", request.api_key),
        "version": request.api_version,
        "request": request.request,
        "response": response,
    })
}

/// The response as the client must see it, when it differs from what the broker sent.
fn rewrite(body: ResponseKind, version: i16, advertised: SocketAddr) -> Option<ResponseKind> {
    let host = StrBytes::from_string(advertised.ip().to_string());
    let port = i32::from(advertised.port());
    match body {
        ResponseKind::Metadata(mut response) => {
            for broker in &mut response.brokers {
                broker.host = host.clone();
                broker.port = port;
            }
            Some(ResponseKind::Metadata(response))
        }
        ResponseKind::FindCoordinator(mut response) => {
            // v0-3 answer one coordinator at the top level, v4+ a list: the fields of the
            // other versions must stay at their defaults or the answer does not encode.
            if version < 4 && response.node_id.0 >= 0 {
                response.host = host.clone();
                response.port = port;
            }
            for coordinator in &mut response.coordinators {
                if coordinator.node_id.0 >= 0 {
                    coordinator.host = host.clone();
                    coordinator.port = port;
                }
            }
            Some(ResponseKind::FindCoordinator(response))
        }
        ResponseKind::DescribeCluster(mut response) => {
            for broker in &mut response.brokers {
                broker.host = host.clone();
                broker.port = port;
            }
            Some(ResponseKind::DescribeCluster(response))
        }
        ResponseKind::ApiVersions(mut response) => {
            clamp_versions(&mut response.api_keys);
            Some(ResponseKind::ApiVersions(response))
        }
        _ => None,
    }
}

/// Keeps the APIs LMQ supports, each within LMQ's version range.
fn clamp_versions(
    api_keys: &mut Vec<lmq_wire::protocol::messages::api_versions_response::ApiVersion>,
) {
    api_keys.retain_mut(|api| {
        let Some(ours) = ApiKey::try_from(api.api_key)
            .ok()
            .and_then(lmq_wire::supported_range)
        else {
            return false;
        };
        api.min_version = api.min_version.max(ours.min_version);
        api.max_version = api.max_version.min(ours.max_version);
        api.min_version <= api.max_version
    });
}

async fn read_frame(stream: &mut OwnedReadHalf) -> Result<Option<Bytes>> {
    let mut prefix = [0u8; 4];
    match stream.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let length = usize::try_from(i32::from_be_bytes(prefix))
        .ok()
        .filter(|length| *length <= FRAME_BYTES_MAX)
        .context("a frame length that is negative or over 128 MiB")?;
    let mut frame = vec![0u8; length];
    stream.read_exact(&mut frame).await?;
    Ok(Some(Bytes::from(frame)))
}

async fn write_frame(stream: &mut OwnedWriteHalf, frame: &[u8]) -> Result<()> {
    let length = u32::try_from(frame.len()).context("frame too long")?;
    stream.write_all(&length.to_be_bytes()).await?;
    stream.write_all(frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmq_wire::protocol::messages::api_versions_response::ApiVersion;

    #[test]
    fn versions_are_clamped_to_lmqs_and_unknown_apis_dropped() {
        let api = |key: ApiKey, min: i16, max: i16| {
            let mut version = ApiVersion::default();
            version.api_key = key as i16;
            version.min_version = min;
            version.max_version = max;
            version
        };
        let ours = lmq_wire::supported_range(ApiKey::Fetch).unwrap();
        let mut keys = vec![api(ApiKey::Fetch, 0, 99), api(ApiKey::Fetch, 0, -1), {
            let mut unknown = ApiVersion::default();
            unknown.api_key = 999;
            unknown
        }];
        clamp_versions(&mut keys);
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(
            (keys[0].min_version, keys[0].max_version),
            (ours.min_version.max(0), ours.max_version)
        );
    }

    #[test]
    fn broker_addresses_point_at_the_proxy() {
        use lmq_wire::protocol::messages::MetadataResponse;
        use lmq_wire::protocol::messages::metadata_response::MetadataResponseBroker;
        let mut response = MetadataResponse::default();
        response.brokers.push(MetadataResponseBroker::default());
        let advertised: SocketAddr = "127.0.0.9:4321".parse().unwrap();
        let Some(ResponseKind::Metadata(rewritten)) =
            rewrite(ResponseKind::Metadata(response), 12, advertised)
        else {
            panic!("metadata is rewritten");
        };
        assert_eq!(rewritten.brokers[0].host.as_str(), "127.0.0.9");
        assert_eq!(rewritten.brokers[0].port, 4321);
    }
}
