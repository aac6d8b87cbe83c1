//! The network shell: accept connections under a limit, read length-prefixed frames bounded
//! by `frame_bytes_max`, run each connection's requests one at a time and send the responses
//! in request order (as Kafka guarantees), and stop on the shutdown signal. A produce waiting
//! for its fsync or the ISR does not stop the next requests from being read and appended.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use lmq_wire::protocol::messages::{ApiKey, ResponseKind};
use lmq_wire::{WireError, decode_request, encode_response, frame_length};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::handler::{
    Dispatched, Reply, RequestContext, Session, dispatch, error_codes, unsupported_version_response,
};
use crate::zero_copy::{Part, ResponseWriter, splice};

/// Serves Kafka clients on `listener` until `shutdown` turns true, then waits for every
/// connection to finish the request it is running.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    cluster: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(broker.config.connections_max));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        match accepted {
            Ok((socket, peer)) => {
                let broker = Arc::clone(&broker);
                let cluster = Arc::clone(&cluster);
                let shutdown = shutdown.clone();
                broker.metrics.connections_accepted.inc();
                broker.metrics.connections_active.inc();
                tasks.spawn(async move {
                    if let Err(error) = connection(socket, peer, &broker, &cluster, shutdown).await
                    {
                        tracing::debug!(%peer, %error, "connection closed");
                    }
                    broker.metrics.connections_active.dec();
                    drop(permit);
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// The most answers a connection may have waiting (produce requests waiting for their fsync
/// or the ISR, and the answers behind them): beyond it, reading the next request waits, so
/// memory stays bounded.
const ANSWERS_QUEUED_MAX: usize = 64;

/// A request run, its answer on the way.
struct Outgoing {
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    started: Instant,
    answer: Dispatched,
}

/// Reads length-prefixed frames into one growing buffer. Cancel-safe (what was read stays in
/// the buffer), so a connection can wait for the next request and a pending answer at once.
struct FrameReader {
    socket: OwnedReadHalf,
    buffer: BytesMut,
    frame_bytes_max: usize,
}

impl FrameReader {
    /// The next frame's body; `None` at a clean end of stream.
    async fn next(&mut self) -> Result<Option<BytesMut>, FrameError> {
        loop {
            if let Some(prefix) = self.buffer.first_chunk::<4>() {
                let length = frame_length(*prefix, self.frame_bytes_max)?;
                if self.buffer.len() >= 4 + length {
                    self.buffer.advance(4);
                    return Ok(Some(self.buffer.split_to(length)));
                }
                self.buffer.reserve(4 + length - self.buffer.len());
            } else {
                self.buffer.reserve(64 * 1024);
            }
            if self.socket.read_buf(&mut self.buffer).await? == 0 {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Runs requests one at a time in arrival order and sends their answers in the same order.
/// A produce waiting for its fsync or the ISR does not hold up reading and running the next
/// requests (so pipelined produces share one fsync): answers queue behind it.
async fn connection(
    socket: TcpStream,
    peer: SocketAddr,
    broker: &Broker,
    cluster: &ClusterNode,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let (reader, writer) = socket.into_split();
    let mut frames = FrameReader {
        socket: reader,
        buffer: BytesMut::new(),
        frame_bytes_max: broker.config.frame_bytes_max,
    };
    let mut writer = ResponseWriter::new(writer);
    let mut queued: VecDeque<Outgoing> = VecDeque::new();
    let session = Arc::new(Session::default());
    loop {
        // Answers at the head that are ready go out, in order.
        let mut wrote = false;
        while queued
            .front()
            .is_some_and(|outgoing| matches!(outgoing.answer, Dispatched::Ready(_)))
        {
            if let Some(outgoing) = queued.pop_front() {
                write_answer(&mut writer, peer, broker, outgoing).await?;
                wrote = true;
            }
        }
        if wrote {
            writer.flush().await?;
        }
        let room = queued.len() < ANSWERS_QUEUED_MAX;
        let read = if let Some(Outgoing {
            answer: Dispatched::Later(pending),
            ..
        }) = queued.front_mut()
        {
            tokio::select! {
                reply = pending => {
                    if let Some(head) = queued.front_mut() {
                        head.answer = Dispatched::Ready(reply);
                    }
                    continue;
                }
                read = frames.next(), if room => read,
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        } else {
            tokio::select! {
                read = frames.next() => read,
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Io(error)) => return Err(error),
            Err(FrameError::Wire(error)) => {
                tracing::warn!(%peer, %error, "closing connection");
                close_on_error(broker, &error);
                break;
            }
        };
        let Some(outgoing) = run_request(frame, peer, &session, broker, cluster).await else {
            break;
        };
        if queued.is_empty()
            && let Dispatched::Ready(_) = outgoing.answer
        {
            write_answer(&mut writer, peer, broker, outgoing).await?;
            writer.flush().await?;
        } else {
            queued.push_back(outgoing);
        }
    }
    // The requests already run still get their answers.
    for outgoing in queued {
        write_answer(&mut writer, peer, broker, outgoing).await?;
    }
    writer.flush().await
}

/// Decodes and runs one request; `None` when the connection must close (a request that
/// cannot be parsed, as Kafka does).
async fn run_request(
    frame: BytesMut,
    peer: SocketAddr,
    session: &Arc<Session>,
    broker: &Broker,
    cluster: &ClusterNode,
) -> Option<Outgoing> {
    let started = Instant::now();
    let (api_key, api_version, correlation_id, answer) = match decode_request(frame.freeze()) {
        Ok(request) => {
            let (api_key, version, correlation_id) = (
                request.api_key,
                request.api_version(),
                request.correlation_id(),
            );
            tracing::trace!(%peer, ?api_key, version, correlation_id, "request");
            let context = RequestContext {
                peer,
                client_id: request
                    .header
                    .client_id
                    .as_deref()
                    .unwrap_or_default()
                    .to_string(),
                session: Arc::clone(session),
            };
            (
                api_key,
                version,
                correlation_id,
                dispatch(broker, cluster, &context, request).await,
            )
        }
        // Kafka answers an ApiVersions it cannot parse with v0 and UNSUPPORTED_VERSION so
        // the client can pick a version both sides know.
        Err(WireError::UnsupportedVersion {
            api_key,
            correlation_id,
            ..
        }) if api_key == ApiKey::ApiVersions as i16 => (
            ApiKey::ApiVersions,
            0,
            correlation_id,
            Dispatched::Ready(Some(Reply {
                body: ResponseKind::ApiVersions(unsupported_version_response()),
                splices: Vec::new(),
            })),
        ),
        Err(error) => {
            tracing::warn!(%peer, %error, "closing connection");
            close_on_error(broker, &error);
            return None;
        }
    };
    Some(Outgoing {
        api_key,
        api_version,
        correlation_id,
        started,
        answer,
    })
}

/// Waits for one answer and writes it into the buffer (acks=0 produces have none).
async fn write_answer(
    writer: &mut ResponseWriter<OwnedWriteHalf>,
    peer: SocketAddr,
    broker: &Broker,
    outgoing: Outgoing,
) -> std::io::Result<()> {
    let reply = match outgoing.answer {
        Dispatched::Ready(reply) => reply,
        Dispatched::Later(reply) => {
            // What is written so far goes out before the wait.
            writer.flush().await?;
            reply.await
        }
    };
    let api_name = format!("{:?}", outgoing.api_key);
    let Some(reply) = reply else {
        broker
            .metrics
            .observe_request(&api_name, outgoing.started, &[]);
        return Ok(());
    };
    broker
        .metrics
        .observe_request(&api_name, outgoing.started, &error_codes(&reply.body));
    let encoded = encode_response(
        &reply.body,
        outgoing.api_key,
        outgoing.api_version,
        outgoing.correlation_id,
    )
    .map_err(|error| error.to_string())
    .and_then(|bytes| {
        if reply.splices.is_empty() {
            return Ok(vec![Part::Bytes(bytes.freeze())]);
        }
        splice(bytes, outgoing.api_version, &reply.splices).map_err(|error| error.to_string())
    });
    match encoded {
        Ok(parts) => writer.write_parts(parts).await,
        Err(error) => {
            tracing::error!(%peer, api_key = ?outgoing.api_key, %error, "encoding a response failed; closing");
            Err(std::io::Error::other(error))
        }
    }
}

/// Counts a connection closed because of what the client sent.
fn close_on_error(broker: &Broker, error: &WireError) {
    broker.metrics.connections_closed_on_error.inc();
    let (api, kind) = match error {
        WireError::FrameTooLarge { .. } | WireError::NegativeLength { .. } => {
            ("frame", "INVALID_FRAME")
        }
        WireError::TruncatedHeader { .. } | WireError::Malformed { .. } => {
            ("request", "INVALID_REQUEST")
        }
        WireError::UnknownApiKey { .. } => ("request", "UNKNOWN_API_KEY"),
        WireError::UnsupportedVersion { .. } => ("request", "UNSUPPORTED_VERSION"),
    };
    broker.metrics.count_error(api, kind);
}

/// Runs the Kafka listener, the admin listener (when given) and the broker's background
/// upkeep until `shutdown`, then closes every log.
pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: watch::Receiver<bool>,
) {
    let Some(cluster) = broker.cluster().cloned() else {
        tracing::error!("a broker serves only once it joined its cluster (node::Node does both)");
        return;
    };
    let admin = admin.map(|admin| {
        tokio::spawn(crate::admin::serve(
            admin,
            Arc::clone(&broker),
            shutdown.clone(),
        ))
    });
    broker
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    let upkeep = {
        let broker = Arc::clone(&broker);
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut flush = tokio::time::interval(Duration::from_secs(1));
            let mut retention = tokio::time::interval(Duration::from_secs(60));
            let mut groups = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = groups.tick() => broker.groups.tick(broker.now_ms()),
                    _ = flush.tick() => {
                        broker.flush_due();
                        crate::reopen::reopen_poisoned(&broker);
                    }
                    _ = retention.tick() => broker.maintain(),
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
        })
    };
    serve(listener, Arc::clone(&broker), cluster, shutdown).await;
    broker
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    let _ = upkeep.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    broker.close();
}
