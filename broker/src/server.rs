//! The network shell: accept connections under a limit, read length-prefixed frames bounded
//! by `frame_bytes_max`, run each connection's requests one at a time and send the responses
//! in request order (as Kafka guarantees), and stop on the shutdown signal. A produce waiting
//! for its fsync or the ISR does not stop the next requests from being read and appended.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use lmq_wire::protocol::messages::{ApiKey, ResponseKind};
use lmq_wire::{WireError, decode_request, encode_response, frame_length};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
// Every time here is tokio's (paused in tests), latencies for the metrics included.
use tokio::time::{self, Instant};

use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::config::BrokerConfig;
use crate::handler::{
    Dispatched, Reply, RequestContext, Session, dispatch, unsupported_version_response,
};
use crate::listeners::Listener;
use crate::security::tls::{TlsListener, TlsServer};
use crate::zero_copy::{Part, RegionWrite, ResponseWriter, splice};

/// A bound Kafka listener: its socket, what it is (name, protocol), and for SSL its TLS.
#[derive(Debug)]
pub struct Bound {
    pub socket: TcpListener,
    pub listener: Listener,
    pub tls: Option<Arc<TlsServer>>,
}

/// Serves Kafka clients on `listener` until `shutdown` turns true, then waits for every
/// connection to finish the request it is running.
/// The limits every listener of the broker shares: connection slots, per-address caps and
/// the request byte budget.
struct Shared {
    connections: Arc<Semaphore>,
    per_ip: Arc<ConnectionsPerIp>,
    budget: Arc<RequestBudget>,
}

async fn serve(
    bound: Bound,
    shared: Arc<Shared>,
    broker: Arc<Broker>,
    cluster: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Bound {
        socket: listener,
        listener: spec,
        tls,
    } = bound;
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let (connections, per_ip, budget) = (
        Arc::clone(&shared.connections),
        Arc::clone(&shared.per_ip),
        Arc::clone(&shared.budget),
    );
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
                // One address over its cap is closed at once (as Kafka's
                // max.connections.per.ip), so it cannot hold every slot.
                let Some(slot) = ConnectionsPerIp::take(&per_ip, peer.ip()) else {
                    tracing::debug!(%peer, "closing: connections_per_ip_max reached");
                    broker.metrics.connections_refused_per_ip.inc();
                    drop(socket);
                    continue;
                };
                let broker = Arc::clone(&broker);
                let cluster = Arc::clone(&cluster);
                let budget = Arc::clone(&budget);
                let shutdown = shutdown.clone();
                let link = Link {
                    peer,
                    listener: Arc::clone(&name),
                    sasl: spec.protocol.sasl(),
                    tls: tls.clone(),
                };
                broker.metrics.connections_accepted.inc();
                broker.metrics.connections_active.inc();
                tasks.spawn(async move {
                    let served = connection(socket, link, &broker, &cluster, budget, shutdown);
                    match served.await {
                        Ok(()) => {}
                        Err(FrameError::Idle) => {
                            tracing::debug!(%peer, "closing an idle connection");
                            broker.metrics.connections_timed_out.inc();
                        }
                        Err(FrameError::Stalled) => {
                            tracing::debug!(%peer, "closing: answers not taken");
                            broker.metrics.connections_timed_out.inc();
                        }
                        Err(FrameError::FrameDeadline) => {
                            tracing::debug!(%peer, "closing: frame_receive_ms_max passed");
                            broker.metrics.connections_timed_out.inc();
                        }
                        Err(FrameError::Tls(error)) => {
                            // A client that is not ours or not trusted: the handshake says
                            // why to the client; the broker only counts it.
                            tracing::debug!(%peer, %error, "closing: TLS handshake failed");
                            broker
                                .metrics
                                .count_error("tls", "SSL_AUTHENTICATION_FAILED");
                        }
                        Err(error) => tracing::debug!(%peer, %error, "connection closed"),
                    }
                    broker.metrics.connections_active.dec();
                    drop(slot);
                    drop(permit);
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Open connections per client address, each capped at `max`.
struct ConnectionsPerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One open connection of an address; gives its place back when dropped.
struct IpSlot {
    table: Arc<ConnectionsPerIp>,
    ip: IpAddr,
}

impl ConnectionsPerIp {
    fn new(max: usize) -> Self {
        ConnectionsPerIp {
            open: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// A place for one more connection from `ip`; `None` when it has `max` open.
    fn take(table: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = table.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= table.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The most answers a connection may have waiting (produce requests waiting for their fsync
/// or the ISR, and the answers behind them): beyond it, reading the next request waits, so
/// memory stays bounded.
/// After a failed accept (out of file descriptors and the like), before the next one.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

const ANSWERS_QUEUED_MAX: usize = 64;

/// A request run, its answer on the way.
struct Outgoing {
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    started: Instant,
    answer: Dispatched,
}

/// Bytes one read asks for at most while a frame grows: its buffer at most doubles per read,
/// so memory follows the bytes that arrived, never a length a client merely declared.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The broker-wide budget of request bytes (`requests_in_flight_bytes_max`, Kafka's
/// `queued.max.request.bytes` memory pool). A frame takes its whole size once its length
/// prefix is read and keeps it until its request has run, so a connection that holds a part
/// of the budget never waits for more (no frame can sit half-received waiting for budget
/// that other half-received frames hold). Waiting is not first-come-first-served, as in
/// Kafka: a small request that fits goes ahead of a large one that does not.
pub(crate) struct RequestBudget {
    available_bytes: Mutex<usize>,
    bytes_max: usize,
    released: tokio::sync::Notify,
}

/// Bytes taken from a [`RequestBudget`], given back when dropped.
pub(crate) struct BudgetGrant {
    budget: Arc<RequestBudget>,
    bytes: usize,
}

impl RequestBudget {
    pub(crate) fn new(bytes_max: usize) -> Arc<Self> {
        Arc::new(RequestBudget {
            available_bytes: Mutex::new(bytes_max),
            bytes_max,
            released: tokio::sync::Notify::new(),
        })
    }

    fn try_take(budget: &Arc<Self>, bytes: usize) -> Option<BudgetGrant> {
        let mut available = budget
            .available_bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let left = available.checked_sub(bytes)?;
        *available = left;
        Some(BudgetGrant {
            budget: Arc::clone(budget),
            bytes,
        })
    }

    /// Waits until `bytes` (at most `bytes_max`) are free and takes them. Cancel-safe.
    async fn take(budget: &Arc<Self>, bytes: usize) -> BudgetGrant {
        loop {
            let released = budget.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is not missed.
            released.as_mut().enable();
            if let Some(grant) = Self::try_take(budget, bytes) {
                return grant;
            }
            released.await;
        }
    }

    #[cfg(test)]
    fn available_bytes(&self) -> usize {
        *self
            .available_bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for BudgetGrant {
    fn drop(&mut self) {
        {
            let mut available = self
                .budget
                .available_bytes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *available = available.saturating_add(self.bytes);
        }
        self.budget.released.notify_waiters();
    }
}

/// Reads length-prefixed frames. The 4-byte prefix is read on its own; then the frame's
/// whole size is taken from the broker-wide request budget (a frame larger than all of it is
/// refused), and only then its body is read, into a buffer that grows as bytes arrive.
/// Cancel-safe (what was read stays), so a connection can wait for the next request and a
/// pending answer at once.
struct FrameReader<R> {
    socket: R,
    prefix: [u8; 4],
    prefix_bytes: usize,
    /// The body length of the frame being received, once its prefix is complete.
    length: Option<usize>,
    body: BytesMut,
    /// The budget of the frame being received (4 + `length` bytes), once taken.
    grant: Option<BudgetGrant>,
    budget: Arc<RequestBudget>,
    frame_bytes_max: usize,
    frame_receive: Duration,
    /// Since when the client owes the rest of the frame: its first byte, then again once its
    /// budget was granted (a wait for budget is the broker's, not the client's).
    frame_started: Option<Instant>,
}

/// A frame's body and its share of the request byte budget, given back when dropped.
struct Frame {
    body: BytesMut,
    budget: Option<BudgetGrant>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(socket: R, budget: Arc<RequestBudget>, config: &BrokerConfig) -> Self {
        FrameReader {
            socket,
            prefix: [0; 4],
            prefix_bytes: 0,
            length: None,
            body: BytesMut::new(),
            grant: None,
            budget,
            frame_bytes_max: config.frame_bytes_max,
            frame_receive: Duration::from_millis(config.frame_receive_ms_max),
            frame_started: None,
        }
    }

    /// The next frame; `None` at a clean end of stream. With no frame begun, waiting ends
    /// at `idle_deadline` ([`FrameError::Idle`]); a begun frame must be complete within
    /// `frame_receive_ms_max` of its first byte, and of its budget grant
    /// ([`FrameError::FrameDeadline`]).
    async fn next(&mut self, idle_deadline: Option<Instant>) -> Result<Option<Frame>, FrameError> {
        loop {
            let (deadline, expired) = match self.frame_started {
                Some(started) => (
                    Some(started + self.frame_receive),
                    FrameError::FrameDeadline,
                ),
                None => (idle_deadline, FrameError::Idle),
            };
            let Some(length) = self.length else {
                // The prefix: at most 4 bytes per connection, outside the budget (as Kafka's
                // size buffer), so an idle or waiting connection holds none of it.
                // `read` is cancel-safe: nothing is lost when the deadline or another
                // branch of the connection's select wins.
                let read = match within(
                    deadline,
                    self.socket.read(&mut self.prefix[self.prefix_bytes..]),
                )
                .await
                {
                    None => return Err(expired),
                    Some(read) => read?,
                };
                match read {
                    0 if self.prefix_bytes == 0 => return Ok(None),
                    0 => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())),
                    read => {
                        self.prefix_bytes += read;
                        self.frame_started.get_or_insert_with(Instant::now);
                        if self.prefix_bytes == self.prefix.len() {
                            let frame_bytes_max = self
                                .frame_bytes_max
                                .min(self.budget.bytes_max.saturating_sub(4));
                            self.length = Some(frame_length(self.prefix, frame_bytes_max)?);
                        }
                    }
                }
                continue;
            };
            if self.grant.is_none() {
                // The whole frame's budget before any of its body: a connection holding
                // budget only ever waits for its client.
                self.grant = Some(RequestBudget::take(&self.budget, 4 + length).await);
                self.frame_started = Some(Instant::now());
                continue;
            }
            if self.body.len() >= length {
                return Ok(Some(self.take_frame()));
            }
            // Grow by at most what is already buffered (or one chunk), never past the frame.
            let want = (length - self.body.len()).min(self.body.len().max(READ_CHUNK_BYTES));
            self.body.reserve(want);
            let read = match within(
                deadline,
                self.socket.read_buf(&mut (&mut self.body).limit(want)),
            )
            .await
            {
                None => return Err(expired),
                Some(read) => read?,
            };
            if read == 0 {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Hands out the complete frame and starts the next one.
    fn take_frame(&mut self) -> Frame {
        self.prefix_bytes = 0;
        self.length = None;
        self.frame_started = None;
        Frame {
            // The frame keeps the allocation; an idle connection holds no buffer memory.
            body: std::mem::take(&mut self.body),
            budget: self.grant.take(),
        }
    }
}

/// `future`'s output, or `None` when `deadline` passes first.
async fn within<T>(deadline: Option<Instant>, future: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        None => Some(future.await),
    }
}

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("idle for connections_idle_ms_max")]
    Idle,
    #[error("a frame unfinished after frame_receive_ms_max")]
    FrameDeadline,
    #[error("answers not taken by the client for connections_idle_ms_max")]
    Stalled,
    #[error("TLS handshake: {0}")]
    Tls(String),
}

/// Where a connection came from: its peer, the listener it reached and that listener's TLS.
struct Link {
    peer: SocketAddr,
    listener: Arc<str>,
    /// The listener needs SASL authentication (SASL_PLAINTEXT, SASL_SSL).
    sasl: bool,
    tls: Option<Arc<TlsServer>>,
}

/// Runs requests one at a time in arrival order and sends their answers in the same order.
/// A produce waiting for its fsync or the ISR does not hold up reading and running the next
/// requests (so pipelined produces share one fsync): answers queue behind it.
async fn connection(
    socket: TcpStream,
    link: Link,
    broker: &Broker,
    cluster: &Arc<ClusterNode>,
    budget: Arc<RequestBudget>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), FrameError> {
    socket.set_nodelay(true)?;
    let session = Arc::new(Session::new(link.sasl));
    let Some(tls) = &link.tls else {
        let (reader, writer) = socket.into_split();
        return exchange(
            reader, writer, &link, session, broker, cluster, budget, shutdown,
        )
        .await;
    };
    // The handshake is bounded like a frame: a client that stalls in it is closed.
    let kind = if link.sasl {
        TlsListener::SaslSsl
    } else {
        TlsListener::Ssl
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config(kind));
    let handshake = Duration::from_millis(broker.config.frame_receive_ms_max);
    let stream = match time::timeout(handshake, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(FrameError::Tls(error.to_string())),
        Err(_) => {
            return Err(FrameError::Tls(
                "not finished within frame_receive_ms_max".into(),
            ));
        }
    };
    let principal = tls
        .principal(stream.get_ref().1.peer_certificates())
        .map_err(|error| FrameError::Tls(error.to_string()))?;
    tracing::debug!(peer = %link.peer, %principal, "TLS connection");
    session.set_principal(principal);
    let (reader, writer) = tokio::io::split(stream);
    exchange(
        reader, writer, &link, session, broker, cluster, budget, shutdown,
    )
    .await
}

/// The requests and answers of one connection, over plain TCP or TLS.
#[allow(clippy::too_many_arguments)]
async fn exchange<R: AsyncRead + Unpin, W: RegionWrite>(
    reader: R,
    writer: W,
    link: &Link,
    session: Arc<Session>,
    broker: &Broker,
    cluster: &Arc<ClusterNode>,
    budget: Arc<RequestBudget>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), FrameError> {
    let peer = link.peer;
    let mut frames = FrameReader::new(reader, budget, &broker.config);
    let idle = Duration::from_millis(broker.config.connections_idle_ms_max);
    let mut writer = ResponseWriter::new(writer);
    let mut queued: VecDeque<Outgoing> = VecDeque::new();
    // The last request read or answer sent: the idle clock runs from there.
    let mut active = Instant::now();
    loop {
        // Answers at the head that are ready go out, in order.
        let mut wrote = false;
        while queued
            .front()
            .is_some_and(|outgoing| matches!(outgoing.answer, Dispatched::Ready(_)))
        {
            if let Some(outgoing) = queued.pop_front() {
                taken(idle, write_answer(&mut writer, peer, broker, outgoing)).await?;
                wrote = true;
            }
        }
        if wrote {
            taken(idle, writer.flush()).await?;
            active = Instant::now();
        }
        let room = queued.len() < ANSWERS_QUEUED_MAX;
        // A connection owing an answer is not idle.
        let idle_deadline = queued.is_empty().then(|| active + idle);
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
                read = frames.next(idle_deadline), if room => read,
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        } else {
            tokio::select! {
                read = frames.next(idle_deadline) => read,
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Wire(error)) => {
                tracing::warn!(%peer, %error, "closing connection");
                close_on_error(broker, &error);
                break;
            }
            Err(error) => return Err(error),
        };
        active = Instant::now();
        let Frame { body, budget } = frame;
        let outgoing = run_request(body, link, &session, broker, cluster).await;
        // The frame's bytes count until its request has run (the handlers copy what they
        // keep).
        drop(budget);
        let Some(outgoing) = outgoing else {
            break;
        };
        if session.closing() {
            // Its answer goes out, then the connection closes (a failed authentication).
            queued.push_back(outgoing);
            break;
        }
        if queued.is_empty()
            && let Dispatched::Ready(_) = outgoing.answer
        {
            taken(idle, write_answer(&mut writer, peer, broker, outgoing)).await?;
            taken(idle, writer.flush()).await?;
            active = Instant::now();
        } else {
            queued.push_back(outgoing);
        }
    }
    // The requests already run still get their answers.
    for outgoing in queued {
        taken(idle, write_answer(&mut writer, peer, broker, outgoing)).await?;
    }
    taken(idle, writer.flush()).await
}

/// The outcome of writing answers, or [`FrameError::Stalled`] when the client has not taken
/// them within `idle` (a client that sends requests and never reads is closed like an idle
/// one, instead of holding its slot and its answers forever).
async fn taken<T>(
    idle: Duration,
    write: impl Future<Output = std::io::Result<T>>,
) -> Result<T, FrameError> {
    match time::timeout(idle, write).await {
        Ok(written) => Ok(written?),
        Err(_) => Err(FrameError::Stalled),
    }
}

/// Decodes and runs one request; `None` when the connection must close (a request that
/// cannot be parsed, as Kafka does).
async fn run_request(
    frame: BytesMut,
    link: &Link,
    session: &Arc<Session>,
    broker: &Broker,
    cluster: &Arc<ClusterNode>,
) -> Option<Outgoing> {
    let started = Instant::now();
    let peer = link.peer;
    let (api_key, api_version, correlation_id, answer) = match decode_request(frame.freeze()) {
        Ok(request) => {
            let (api_key, version, correlation_id) = (
                request.api_key,
                request.api_version(),
                request.correlation_id(),
            );
            tracing::trace!(%peer, principal = %session.principal(), ?api_key, version, correlation_id, "request");
            let context = RequestContext {
                peer,
                listener: Arc::clone(&link.listener),
                client_id: request
                    .header
                    .client_id
                    .as_deref()
                    .unwrap_or_default()
                    .to_string(),
                session: Arc::clone(session),
                authorizer: Arc::clone(&broker.authorizer),
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
            Dispatched::Ready(Some(Reply::of(
                unsupported_version_response(),
                ResponseKind::ApiVersions,
            ))),
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
async fn write_answer<W: RegionWrite>(
    writer: &mut ResponseWriter<W>,
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
            .observe_request(&api_name, outgoing.started.into_std(), &[]);
        return Ok(());
    };
    broker
        .metrics
        .observe_request(&api_name, outgoing.started.into_std(), reply.errors());
    let encoded = encode_response(
        reply.body(),
        outgoing.api_key,
        outgoing.api_version,
        outgoing.correlation_id,
    )
    .map_err(|error| error.to_string())
    .and_then(|bytes| {
        if reply.splices().is_empty() {
            return Ok(vec![Part::Bytes(bytes.freeze())]);
        }
        splice(bytes, outgoing.api_version, reply.splices()).map_err(|error| error.to_string())
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
/// upkeep (`upkeep.rs`) until `shutdown`, then waits (boundedly) for those tasks and closes
/// every log.
pub async fn run(
    broker: Arc<Broker>,
    cluster: Arc<ClusterNode>,
    listeners: Vec<Bound>,
    admin: Option<TcpListener>,
    shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    if let Some(admin) = admin {
        tasks.spawn(crate::admin::serve(
            admin,
            Arc::clone(&broker),
            Arc::clone(&cluster),
            shutdown.clone(),
        ));
    }
    crate::upkeep::spawn(&broker, &cluster, &shutdown, &mut tasks);
    // Its own OS threads (disk-bound work off the runtime); dropped with this future on an
    // abort, which signals them to stop.
    let cleaner = match crate::cleaner::LogCleaner::start(&broker) {
        Ok(cleaner) => Some(cleaner),
        Err(error) => {
            tracing::error!(%error, "the log cleaner threads did not start; logs are not compacted");
            None
        }
    };
    // The TLS listeners share one certificate.
    if let Some(tls) = listeners.iter().find_map(|bound| bound.tls.clone()) {
        tasks.spawn(crate::security::tls::keep_reloaded(tls, shutdown.clone()));
    }
    let sasl = &broker.config.sasl;
    if let (Some(rules), Some(url)) = (&broker.oauth_rules, &sasl.oauthbearer_jwks_url) {
        tasks.spawn(crate::security::jwks::keep_fetched(
            Arc::clone(rules),
            crate::security::jwks::JwksSource {
                url: url.clone(),
                ca_file: sasl.oauthbearer_jwks_ca_file.clone(),
                refresh_ms: sasl.oauthbearer_jwks_refresh_ms,
            },
            shutdown.clone(),
        ));
    }
    broker
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    // Connections finish their requests in flight before they close; a JoinGroup parked in a
    // rebalance would hold the stop for up to its rebalance timeout, so the groups answer
    // every parked call as soon as the stop begins.
    let unload_groups = {
        let broker = Arc::clone(&broker);
        let mut shutdown = shutdown.clone();
        async move {
            if shutdown.wait_for(|stop| *stop).await.is_ok() {
                broker.groups.shutdown();
            }
        }
    };
    let shared = Arc::new(Shared {
        connections: Arc::new(Semaphore::new(broker.config.connections_max)),
        per_ip: Arc::new(ConnectionsPerIp::new(broker.config.connections_per_ip_max)),
        budget: RequestBudget::new(broker.config.requests_in_flight_bytes_max),
    });
    let serving = futures_util::future::join_all(listeners.into_iter().map(|bound| {
        serve(
            bound,
            Arc::clone(&shared),
            Arc::clone(&broker),
            Arc::clone(&cluster),
            shutdown.clone(),
        )
    }));
    tokio::join!(serving, unload_groups);
    broker
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    crate::upkeep::join_within(
        tasks,
        Duration::from_millis(crate::upkeep::STOP_TASKS_MS_MAX),
    )
    .await;
    if let Some(cleaner) = cleaner {
        // A running pass aborts at its next batch; its files are deleted.
        let _ = tokio::task::spawn_blocking(move || cleaner.stop()).await;
    }
    // Closing is fsyncs: off the runtime's workers.
    let closing = Arc::clone(&broker);
    if let Err(error) = tokio::task::spawn_blocking(move || closing.close()).await {
        tracing::error!(%error, "closing the logs failed");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    /// A connected pair: the broker's read half and the client's stream.
    async fn pair() -> (OwnedReadHalf, TcpStream, OwnedWriteHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (read, write) = server.into_split();
        (read, client, write)
    }

    fn reader(socket: OwnedReadHalf, budget: &Arc<RequestBudget>) -> FrameReader<OwnedReadHalf> {
        let config = BrokerConfig {
            frame_receive_ms_max: 60_000,
            ..BrokerConfig::default()
        };
        FrameReader::new(socket, Arc::clone(budget), &config)
    }

    #[tokio::test(start_paused = true)]
    async fn a_declared_length_is_not_allocated_before_its_bytes_arrive() {
        let (socket, mut client, _write) = pair().await;
        let budget = RequestBudget::new(1 << 30);
        let mut frames = reader(socket, &budget);
        // A frame declaring 100 MiB, of which 10 bytes come.
        client
            .write_all(&(100 * 1024 * 1024i32).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&[7; 10]).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), frames.next(None)).await;
        assert!(waited.is_err(), "the frame is not complete");
        assert_eq!(frames.body.len(), 10);
        assert!(
            frames.body.capacity() <= 256 * 1024,
            "{} bytes allocated for 10 received",
            frames.body.capacity()
        );
        // The budget is the whole frame's (as Kafka's memory pool), the memory is not.
        assert_eq!(
            budget.available_bytes(),
            (1 << 30) - (4 + 100 * 1024 * 1024),
            "budget of the declared frame"
        );
    }

    /// A frame of `length` bytes of `fill`, prefix included.
    fn frame(length: usize, fill: u8) -> Vec<u8> {
        let mut bytes = i32::try_from(length).unwrap().to_be_bytes().to_vec();
        bytes.resize(4 + length, fill);
        bytes
    }

    #[tokio::test(start_paused = true)]
    async fn buffered_request_bytes_share_one_budget_and_reading_waits_at_its_limit() {
        let budget = RequestBudget::new(100_000);
        let (first_socket, mut first_client, _first_write) = pair().await;
        let (second_socket, mut second_client, _second_write) = pair().await;
        let mut first = reader(first_socket, &budget);
        let mut second = reader(second_socket, &budget);
        // The first connection receives a whole 90,000-byte frame: it holds its bytes
        // until the frame is dropped (its request has run).
        first_client.write_all(&frame(90_000, 1)).await.unwrap();
        let big = first.next(None).await.unwrap().unwrap();
        assert_eq!(big.body.len(), 90_000);
        assert_eq!(budget.available_bytes(), 10_000 - 4);
        // The second one's 20,000 bytes do not fit in what is left: reading stops there.
        second_client.write_all(&frame(20_000, 2)).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), second.next(None)).await;
        assert!(waited.is_err(), "read past the budget");
        assert_eq!(
            second.body.len(),
            0,
            "body read before its budget was granted"
        );
        // Once the first request is done, the second frame comes in.
        drop(big);
        let small = tokio::time::timeout(Duration::from_secs(5), second.next(None))
            .await
            .expect("reading resumes when the budget frees")
            .unwrap()
            .unwrap();
        assert_eq!(small.body.len(), 20_000);
        assert!(small.body.iter().all(|&byte| byte == 2));
        drop(small);
        assert_eq!(budget.available_bytes(), 100_000);
    }

    /// Starts reading frames from `socket` in the background, as a connection does; the
    /// task ends with the reader's first outcome.
    fn read_in_background(mut frames: FrameReader<OwnedReadHalf>) -> tokio::task::JoinHandle<bool> {
        tokio::spawn(async move { frames.next(None).await.is_ok() })
    }

    #[tokio::test(start_paused = true)]
    async fn partial_frames_holding_the_budget_do_not_starve_a_small_frame() {
        let budget = RequestBudget::new(256 * 1024);
        // Two clients declare 200 KiB frames, send 150 KiB of each and stall.
        let mut slow = Vec::new();
        for _ in 0..2 {
            let (socket, mut client, write) = pair().await;
            let reading = read_in_background(reader(socket, &budget));
            let writing = tokio::spawn(async move {
                client
                    .write_all(&frame(200 * 1024, 1)[..150 * 1024])
                    .await
                    .unwrap();
                client
            });
            slow.push((reading, writing, write));
        }
        // (Paused time: this passes only once both readers wait.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A 20-byte request on a third connection is read at once.
        let (socket, mut client, _write) = pair().await;
        let mut small = reader(socket, &budget);
        client.write_all(&frame(20, 3)).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(1), small.next(None))
            .await
            .expect("a small frame waits for budget that unfinished frames hold")
            .unwrap()
            .unwrap();
        assert_eq!(read.body.len(), 20);
        assert!(read.body.iter().all(|&byte| byte == 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_larger_than_the_whole_budget_is_refused() {
        let budget = RequestBudget::new(100_000);
        let (socket, mut client, _write) = pair().await;
        let mut frames = reader(socket, &budget);
        client.write_all(&frame(200_000, 1)[..1_000]).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(1), frames.next(None))
            .await
            .expect("a frame the budget can never hold is waited for");
        assert!(
            matches!(read, Err(FrameError::Wire(WireError::FrameTooLarge { .. }))),
            "{:?}",
            read.err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_frame_past_its_deadline_is_an_error_and_idle_waits_end_at_theirs() {
        let budget = RequestBudget::new(1 << 20);
        let (socket, mut client, _write) = pair().await;
        let config = BrokerConfig {
            frame_receive_ms_max: 200,
            ..BrokerConfig::default()
        };
        let mut frames = FrameReader::new(socket, Arc::clone(&budget), &config);
        let idle = Instant::now() + Duration::from_millis(100);
        assert!(matches!(
            frames.next(Some(idle)).await,
            Err(FrameError::Idle)
        ));
        client.write_all(&frame(100, 0)[..50]).await.unwrap();
        // The idle deadline no longer applies once a frame began; its own one does.
        let started = Instant::now();
        let far = started + Duration::from_secs(60);
        assert!(matches!(
            frames.next(Some(far)).await,
            Err(FrameError::FrameDeadline)
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
