//! The producer: `send("topic", b"hi")` → the partition and offset once acknowledged.
//!
//! Records are gathered per partition into batches that a background sender ships when
//! they reach `batch_bytes` or have waited `linger`. Memory for records not yet
//! acknowledged is bounded by `buffer_bytes`: `send` waits (back-pressure) when it is used
//! up. Idempotence is on by default: one producer id, sequences per partition, one request
//! in flight per partition, and retries that resend the same batch, so a batch whose answer
//! was lost is never stored twice. Without idempotence up to `max_in_flight` requests per
//! partition are pipelined, written in batch order. Keys are partitioned as the Java client does (murmur2);
//! keyless records stick to one partition per batch, as Kafka's sticky partitioner does.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lmq_wire::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use lmq_wire::protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName, TransactionalId,
};
use lmq_wire::protocol::protocol::StrBytes;
pub use lmq_wire::records::Codec;
use lmq_wire::records::{OutRecord, ProducerStamp, encode_batch};
use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use crate::cluster::{ClientConfig, Cluster};
use crate::error::{ClientError, Result};

/// How many replicas must have a record before it is acknowledged.
pub use lmq_wire::Acks;

/// Settings of a [`Producer`]; the defaults are idempotent with `Acks::All`.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Brokers, client id and request timeout.
    pub client: ClientConfig,
    /// How many replicas must have a record before it counts as delivered (default `All`).
    pub acks: Acks,
    /// Compression of record batches (default none).
    pub codec: Codec,
    /// Producer ids and sequences so retries never duplicate (requires `Acks::All`; ignored
    /// otherwise).
    pub idempotent: bool,
    /// Times a batch is resent after a retriable error before its records fail (default 5).
    pub retries: u32,
    /// Wait before a resend, multiplied by the attempt number (default 100 ms).
    pub retry_backoff: Duration,
    /// How long a batch waits for more records before it is sent (default 5 ms).
    pub linger: Duration,
    /// A batch is sent once its records reach this size (default 16 KiB).
    pub batch_bytes: usize,
    /// Bytes of records sent but not yet acknowledged; `send` waits beyond it (default
    /// 32 MiB).
    pub buffer_bytes: usize,
    /// Requests in flight per partition without idempotence (default 5, as Kafka's
    /// `max.in.flight.requests.per.connection`). A partition's batches are written in order,
    /// but a retried one can land after later ones, as with Kafka. An idempotent producer
    /// keeps one in flight, so a retry never reorders.
    pub max_in_flight: usize,
    /// Kafka's `transactional.id`: records are sent in transactions ([`Producer::begin`],
    /// [`Producer::commit`], [`Producer::abort`]), and connecting fences every older producer
    /// with the same id. Needs idempotence and `Acks::All`. Default `None`.
    pub transactional_id: Option<String>,
    /// Kafka's `transaction.timeout.ms`: the coordinator aborts a transaction open longer
    /// (default 60 s).
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            codec: Codec::None,
            idempotent: true,
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            linger: Duration::from_millis(5),
            batch_bytes: 16 * 1024,
            buffer_bytes: 32 * 1024 * 1024,
            max_in_flight: 5,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// One record to send. `partition: None` lets the partitioner choose.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The key; without `partition`, a keyed record goes to the partition the key's
    /// murmur2 hash picks, as with the Java client.
    pub key: Option<Bytes>,
    /// The value; `None` writes a tombstone.
    pub value: Option<Bytes>,
    /// Headers, in order: name and optional value.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The partition to write to, overriding the partitioner.
    pub partition: Option<i32>,
    /// Milliseconds since the epoch; `None`: now.
    pub timestamp: Option<i64>,
}

/// Where an acknowledged record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The partition the record was written to.
    pub partition: i32,
    /// The record's offset there; -1 with [`Acks::None`].
    pub offset: i64,
}

use crate::transaction::{Identity, Transactions};

type Waiter = oneshot::Sender<Result<Delivery>>;

#[derive(Debug)]
struct Batch {
    records: Vec<OutRecord>,
    waiters: Vec<Waiter>,
    bytes: usize,
    created: Instant,
    _memory: Vec<OwnedSemaphorePermit>,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<Batch>,
    ready: VecDeque<Batch>,
    in_flight: usize,
    next_sequence: i32,
}

#[derive(Debug)]
struct Inner {
    cluster: Cluster,
    config: ProducerConfig,
    identity: Option<Identity>,
    /// With a `transactional_id`: the transaction's state and coordinator.
    transactions: Option<Transactions>,
    queues: Mutex<HashMap<(String, i32), PartitionQueue>>,
    memory: Arc<Semaphore>,
    wake: Notify,
    idle: Notify,
    flushing: AtomicBool,
    closed: AtomicBool,
    sticky: AtomicUsize,
}

/// Sends records to topics, batched per partition by a background task. See the module
/// documentation. Dropped without [`Producer::close`], the sender still ships what is
/// queued and then stops, but nothing waits for it.
#[derive(Debug)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// Connects to the cluster, gets a producer id (InitProducerId) when idempotent, and
    /// starts the background sender, so it must be called within a Tokio runtime.
    pub async fn connect(config: ProducerConfig) -> Result<Self> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        let transactions = match &config.transactional_id {
            Some(_) if !config.idempotent || config.acks != Acks::All => {
                return Err(ClientError::InvalidArgument(
                    "a transactional producer needs idempotence and Acks::All".to_string(),
                ));
            }
            Some(id) => Some(Transactions::new(
                id.clone(),
                config.transaction_timeout,
                config.client.request_timeout,
            )),
            None => None,
        };
        let identity = match &transactions {
            Some(transactions) => Some(transactions.init(&cluster).await?),
            None if config.idempotent && config.acks == Acks::All => {
                Some(init_producer_id(&cluster).await?)
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            cluster,
            memory: Arc::new(Semaphore::new(
                config.buffer_bytes.clamp(1, Semaphore::MAX_PERMITS),
            )),
            config,
            identity,
            transactions,
            queues: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            idle: Notify::new(),
            flushing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            sticky: AtomicUsize::new(0),
        });
        tokio::spawn(sender(Arc::clone(&inner)));
        Ok(Producer { inner })
    }

    /// Sends `value` with no key to `topic` and waits for its acknowledgement.
    pub async fn send(&self, topic: &str, value: impl Into<Bytes>) -> Result<Delivery> {
        self.send_record(
            topic,
            Record {
                value: Some(value.into()),
                ..Record::default()
            },
        )
        .await
    }

    /// Sends one record and waits for its acknowledgement. Many concurrent calls share
    /// batches; use [`Producer::enqueue`] to pipeline from one task.
    pub async fn send_record(&self, topic: &str, record: Record) -> Result<Delivery> {
        let delivery = self.enqueue(topic, record).await?;
        delivery
            .await
            .map_err(|_| ClientError::UnexpectedResponse("producer closed".to_string()))?
    }

    /// Queues a record and returns at once (after waiting for buffer space); the receiver
    /// yields its delivery or error.
    pub async fn enqueue(
        &self,
        topic: &str,
        record: Record,
    ) -> Result<oneshot::Receiver<Result<Delivery>>> {
        let inner = &self.inner;
        let partitions =
            i32::try_from(inner.cluster.topic(topic).await?.partitions.len()).unwrap_or(i32::MAX);
        if partitions == 0 {
            return Err(ClientError::UnknownPartition {
                topic: topic.to_string(),
                partition: -1,
            });
        }
        let size = record_size(&record);
        let permits = u32::try_from(size.min(inner.config.buffer_bytes)).unwrap_or(u32::MAX);
        let memory = Arc::clone(&inner.memory)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| ClientError::UnexpectedResponse("producer closed".to_string()))?;
        let partition = match (record.partition, &record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                // Sticky: keep filling the same partition's batch until it is sent.
                let modulus = usize::try_from(partitions).unwrap_or(1);
                i32::try_from(inner.sticky.load(Ordering::Relaxed) % modulus).unwrap_or(0)
            }
        };
        // A transaction's partition is registered with its coordinator before any of its
        // batches can be sent.
        if let (Some(transactions), Some(identity)) = (&inner.transactions, inner.identity) {
            transactions
                .add_partition(&inner.cluster, identity, topic, partition)
                .await?;
        }
        let (waiter, receiver) = oneshot::channel();
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let wire_record = OutRecord {
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record.headers.clone(),
            timestamp_ms: timestamp,
        };
        let mut queues = inner.queues.lock().await;
        let queue = queues.entry((topic.to_string(), partition)).or_default();
        let full = queue.open.as_ref().is_some_and(|open| {
            open.bytes + size > inner.config.batch_bytes && !open.records.is_empty()
        });
        if full {
            if let Some(open) = queue.open.take() {
                queue.ready.push_back(open);
            }
            if record.partition.is_none() && record.key.is_none() {
                inner.sticky.fetch_add(1, Ordering::Relaxed);
            }
        }
        let batch = queue.open.get_or_insert_with(|| Batch {
            records: Vec::new(),
            waiters: Vec::new(),
            bytes: 0,
            created: Instant::now(),
            _memory: Vec::new(),
        });
        batch.records.push(wire_record);
        batch.waiters.push(waiter);
        batch.bytes += size;
        batch._memory.push(memory);
        if batch.bytes >= inner.config.batch_bytes {
            if let Some(open) = queue.open.take() {
                queue.ready.push_back(open);
            }
        }
        drop(queues);
        inner.wake.notify_one();
        Ok(receiver)
    }

    fn transactions(&self) -> Result<(&Transactions, Identity)> {
        match (&self.inner.transactions, self.inner.identity) {
            (Some(transactions), Some(identity)) => Ok((transactions, identity)),
            _ => Err(ClientError::InvalidArgument(
                "not a transactional producer: set ProducerConfig::transactional_id".to_string(),
            )),
        }
    }

    /// Starts a transaction: the records sent until [`Producer::commit`] or
    /// [`Producer::abort`] become visible to `read_committed` consumers together, or never.
    pub fn begin(&self) -> Result<()> {
        self.transactions()?.0.begin()
    }

    /// Adds consumed offsets of `group` to the transaction (Kafka's
    /// `sendOffsetsToTransaction`): they are committed if and only if it commits. `offsets`
    /// are (topic, partition, next offset to read); `member` the consumer's (generation, member
    /// id, group instance id) when it is in the group, so a consumer that lost its partitions
    /// cannot commit for them.
    pub async fn send_offsets(
        &self,
        group: &str,
        offsets: &[(String, i32, i64)],
        member: Option<(i32, String, Option<String>)>,
    ) -> Result<()> {
        let (transactions, identity) = self.transactions()?;
        transactions
            .send_offsets(&self.inner.cluster, identity, group, offsets, member)
            .await
    }

    /// Sends every record of the transaction, then commits it. When a record failed, nothing
    /// is committed: the error comes back and the transaction must be aborted.
    pub async fn commit(&self) -> Result<()> {
        let (transactions, identity) = self.transactions()?;
        self.flush().await;
        if let Some(error) = transactions.failure() {
            return Err(error);
        }
        transactions.end(&self.inner.cluster, identity, true).await
    }

    /// Waits for the records already sent, then aborts the transaction: none of its records
    /// or offsets become visible to `read_committed` consumers.
    pub async fn abort(&self) -> Result<()> {
        let (transactions, identity) = self.transactions()?;
        self.flush().await;
        transactions.end(&self.inner.cluster, identity, false).await
    }

    /// Sends everything queued now and waits until every queued record is acknowledged.
    pub async fn flush(&self) {
        let inner = &self.inner;
        inner.flushing.store(true, Ordering::Release);
        loop {
            let idle = inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if inner
                .queues
                .lock()
                .await
                .values()
                .all(|queue| queue.open.is_none() && queue.ready.is_empty() && queue.in_flight == 0)
            {
                break;
            }
            inner.wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(50), idle).await;
        }
        inner.flushing.store(false, Ordering::Release);
    }

    /// Flushes, then stops the background sender.
    pub async fn close(self) {
        self.flush().await;
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }
}

/// The background sender: ships batches that are full, lingered long enough, or flushed,
/// up to the in-flight limit per partition. It writes each request itself, so a partition's
/// batches reach the broker in order; tasks of their own wait for the answers.
async fn sender(inner: Arc<Inner>) {
    loop {
        let wake = inner.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let drained = drain(&inner).await;
        let idle = drained.is_empty() && all_idle(&inner).await;
        for ((topic, partition), batch, sequence) in drained {
            ship(&inner, topic, partition, batch, sequence).await;
        }
        if idle {
            inner.idle.notify_waiters();
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
        }
        let _ = tokio::time::timeout(inner.config.linger.max(Duration::from_millis(1)), wake).await;
    }
}

async fn all_idle(inner: &Inner) -> bool {
    inner
        .queues
        .lock()
        .await
        .values()
        .all(|queue| queue.open.is_none() && queue.ready.is_empty() && queue.in_flight == 0)
}

/// Takes the sendable batches of every partition, in order, up to its in-flight limit.
async fn drain(inner: &Inner) -> Vec<((String, i32), Batch, i32)> {
    let flushing = inner.flushing.load(Ordering::Acquire) || inner.closed.load(Ordering::Acquire);
    let limit = if inner.identity.is_some() {
        1
    } else {
        inner.config.max_in_flight.max(1)
    };
    let mut queues = inner.queues.lock().await;
    let mut drained = Vec::new();
    for (key, queue) in queues.iter_mut() {
        let lingered = queue
            .open
            .as_ref()
            .is_some_and(|open| flushing || open.created.elapsed() >= inner.config.linger);
        while queue.in_flight < limit {
            let batch = match queue.ready.pop_front() {
                Some(batch) => batch,
                None if lingered => match queue.open.take() {
                    Some(batch) => batch,
                    None => break,
                },
                None => break,
            };
            queue.in_flight += 1;
            let sequence = queue.next_sequence;
            drained.push((key.clone(), batch, sequence));
        }
    }
    if !drained.is_empty() {
        // A new batch for keyless records goes to the next partition.
        inner.sticky.fetch_add(1, Ordering::Relaxed);
    }
    drained
}

/// Writes one batch's request, then leaves a task to wait for its answer (retrying as
/// configured), answer its waiters and free its partition's slot.
async fn ship(inner: &Arc<Inner>, topic: String, partition: i32, batch: Batch, sequence: i32) {
    let stamp = inner.identity.map(|identity| ProducerStamp {
        producer_id: identity.producer_id,
        producer_epoch: identity.producer_epoch,
        base_sequence: sequence,
        transactional: inner.transactions.is_some(),
    });
    // The first attempt is written here, in the sender's order; its answer is awaited below.
    let attempt = match encode_batch(&batch.records, inner.config.codec, stamp) {
        Ok(bytes) => {
            let started = start_produce(inner, &topic, partition, bytes.clone()).await;
            Ok((bytes, started))
        }
        Err(error) => Err(ClientError::from(error)),
    };
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        let outcome = match attempt {
            Ok((bytes, started)) => {
                let first = answered(started).await;
                produce_with_retries(&inner, &topic, partition, bytes, first).await
            }
            Err(error) => Err(error),
        };
        settle(&inner, &topic, partition, batch, sequence, outcome).await;
        inner.wake.notify_one();
    });
}

/// Frees the partition's slot and answers the batch's waiters.
async fn settle(
    inner: &Inner,
    topic: &str,
    partition: i32,
    batch: Batch,
    sequence: i32,
    outcome: Result<i64>,
) {
    let count = i32::try_from(batch.records.len()).unwrap_or(i32::MAX);
    {
        let mut queues = inner.queues.lock().await;
        if let Some(queue) = queues.get_mut(&(topic.to_string(), partition)) {
            queue.in_flight = queue.in_flight.saturating_sub(1);
            if outcome.is_ok() {
                queue.next_sequence = sequence.wrapping_add(count) & i32::MAX;
            }
        }
    }
    match outcome {
        Ok(base_offset) => {
            for (index, waiter) in batch.waiters.into_iter().enumerate() {
                let offset = if base_offset >= 0 {
                    base_offset + i64::try_from(index).unwrap_or(0)
                } else {
                    -1
                };
                let _ = waiter.send(Ok(Delivery { partition, offset }));
            }
        }
        Err(error) => {
            if let Some(transactions) = &inner.transactions {
                transactions.record_failure(&error);
            }
            // Each record gets the batch's own error: its Kafka code tells a caller whether
            // sending again may help.
            for waiter in batch.waiters {
                let _ = waiter.send(Err(error.clone()));
            }
        }
    }
}

/// Retries a batch whose first attempt ended in `first`, as configured.
async fn produce_with_retries(
    inner: &Inner,
    topic: &str,
    partition: i32,
    batch: Bytes,
    first: Result<i64>,
) -> Result<i64> {
    let mut outcome = first;
    let mut attempt = 0;
    loop {
        match outcome {
            Ok(offset) => return Ok(offset),
            Err(error) if attempt < inner.config.retries && error.is_retriable() => {
                attempt += 1;
                tracing::debug!(topic, partition, attempt, %error, "retrying produce");
                inner.cluster.invalidate(topic).await;
                tokio::time::sleep(inner.config.retry_backoff * attempt).await;
                outcome =
                    answered(start_produce(inner, topic, partition, batch.clone()).await).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The answer to a written produce request: the batch's base offset (-1 with acks=0).
type ProduceAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = Result<i64>> + Send>>;

/// Writes a produce request for one batch to the partition's leader.
async fn start_produce(
    inner: &Inner,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> Result<ProduceAnswer> {
    let connection = inner.cluster.leader(topic, partition).await?;
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(batch);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = TopicName(StrBytes::from_string(topic.to_string()));
    topic_data.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.transactional_id = inner
        .transactions
        .as_ref()
        .map(|transactions| TransactionalId(StrBytes::from_string(transactions.id().to_string())));
    request.acks = inner.config.acks.code();
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic_data];
    if inner.config.acks == Acks::None {
        connection.send_without_response(request).await?;
        return Ok(Box::pin(std::future::ready(Ok(-1))));
    }
    let answer = connection.start(request).await?;
    let context = format!("produce to {topic}-{partition}");
    Ok(Box::pin(
        async move { base_offset(answer.await?, &context) },
    ))
}

/// Waits for the answer of a request that was written, or passes on why it was not.
async fn answered(started: Result<ProduceAnswer>) -> Result<i64> {
    started?.await
}

/// The base offset a produce answer gives one batch, or its error.
fn base_offset(response: ProduceResponse, context: &str) -> Result<i64> {
    let answer = response
        .responses
        .into_iter()
        .flat_map(|topic| topic.partition_responses)
        .next()
        .ok_or_else(|| ClientError::UnexpectedResponse("Produce".to_string()))?;
    if let Some(error) = ClientError::from_code(
        context,
        answer.error_code,
        answer.error_message.map(|message| message.to_string()),
    ) {
        return Err(error);
    }
    Ok(answer.base_offset)
}

/// Gets a producer id, retrying what a broker that is still starting answers (Kafka's
/// transaction coordinator reports COORDINATOR_LOAD_IN_PROGRESS for a while after start).
async fn init_producer_id(cluster: &Cluster) -> Result<Identity> {
    crate::retry::retrying("InitProducerId", cluster.config().request_timeout, || {
        try_init_producer_id(cluster)
    })
    .await
}

async fn try_init_producer_id(cluster: &Cluster) -> Result<Identity> {
    let connection = cluster.any_connection().await?;
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    let response = connection.call(request).await?;
    if let Some(error) = ClientError::from_code("init producer id", response.error_code, None) {
        return Err(error);
    }
    Ok(Identity {
        producer_id: response.producer_id.0,
        producer_epoch: response.producer_epoch,
    })
}

/// Bytes a record takes in a batch, roughly: what the memory bound counts.
fn record_size(record: &Record) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|(key, value)| key.len() + value.as_ref().map_or(0, Bytes::len) + 4)
        .sum();
    record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + headers
        + 24
}

/// Record timestamps (CreateTime): the producer's wall clock, as Kafka's producer stamps them.
#[allow(
    clippy::disallowed_methods,
    reason = "CreateTime is the producing machine's wall time by definition"
)]
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The Java client's default partitioner for keyed records: `toPositive(murmur2(key)) % n`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h = SEED ^ u32::try_from(length).unwrap_or(u32::MAX);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    i32::from_ne_bytes(h.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 5] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }
}
