//! The producer: `send("topic", b"hi")` → the partition and offset once acknowledged.
//!
//! This first version sends one batch per call (no linger batching yet), partitions keys as
//! the Java client does (murmur2), spreads keyless records round-robin, and is idempotent by
//! default: one producer id, one sequence per partition, one request in flight per partition,
//! so a retry after a lost answer is deduplicated by the broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lmq_wire::protocol::indexmap::IndexMap;
use lmq_wire::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use lmq_wire::protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, RequestKind, ResponseKind, TopicName,
};
use lmq_wire::protocol::protocol::StrBytes;
use lmq_wire::protocol::records::{Record as WireRecord, TimestampType};
pub use lmq_wire::records::Codec;
use lmq_wire::records::encode_batch;
use tokio::sync::Mutex;

use crate::cluster::{ClientConfig, Cluster};
use crate::error::{ClientError, Result};

/// How many replicas must have a record before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer at all (offsets are unknown: `send` returns -1).
    None,
    Leader,
    All,
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    pub acks: Acks,
    pub codec: Codec,
    /// Producer ids and sequences so retries never duplicate (requires `Acks::All`).
    pub idempotent: bool,
    pub retries: u32,
    pub retry_backoff: Duration,
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
        }
    }
}

/// One record to send. `partition: None` lets the partitioner choose.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub partition: Option<i32>,
    /// Milliseconds since the epoch; `None`: now.
    pub timestamp: Option<i64>,
}

/// Where an acknowledged record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug)]
struct Identity {
    producer_id: i64,
    producer_epoch: i16,
}

#[derive(Debug)]
pub struct Producer {
    cluster: Cluster,
    config: ProducerConfig,
    identity: Option<Identity>,
    /// Next sequence per partition; the lock also keeps one request in flight per partition.
    sequences: Mutex<HashMap<(String, i32), i32>>,
    round_robin: AtomicUsize,
}

impl Producer {
    pub async fn connect(config: ProducerConfig) -> Result<Self> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        let identity = if config.idempotent && config.acks == Acks::All {
            Some(init_producer_id(&cluster).await?)
        } else {
            None
        };
        Ok(Producer {
            cluster,
            config,
            identity,
            sequences: Mutex::new(HashMap::new()),
            round_robin: AtomicUsize::new(0),
        })
    }

    /// Sends `value` with no key to `topic`.
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

    pub async fn send_record(&self, topic: &str, record: Record) -> Result<Delivery> {
        let partitions =
            i32::try_from(self.cluster.topic(topic).await?.partitions.len()).unwrap_or(i32::MAX);
        if partitions == 0 {
            return Err(ClientError::UnknownPartition {
                topic: topic.to_string(),
                partition: -1,
            });
        }
        let partition = match (record.partition, &record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                let next = self.round_robin.fetch_add(1, Ordering::Relaxed);
                i32::try_from(next % usize::try_from(partitions).unwrap_or(1)).unwrap_or(0)
            }
        };
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let mut sequences = self.sequences.lock().await;
        let sequence_key = (topic.to_string(), partition);
        let sequence = sequences.get(&sequence_key).copied().unwrap_or(0);
        let batch = self.encode(&record, timestamp, sequence)?;
        let mut attempt = 0;
        loop {
            match self.produce_once(topic, partition, batch.clone()).await {
                Ok(offset) => {
                    sequences.insert(sequence_key, sequence.wrapping_add(1) & i32::MAX);
                    return Ok(Delivery { partition, offset });
                }
                Err(error) if attempt < self.config.retries && retriable(&error) => {
                    attempt += 1;
                    tracing::debug!(topic, partition, attempt, %error, "retrying produce");
                    self.cluster.invalidate(topic).await;
                    tokio::time::sleep(self.config.retry_backoff * attempt).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn encode(&self, record: &Record, timestamp: i64, sequence: i32) -> Result<Bytes> {
        let (producer_id, producer_epoch, sequence) = match &self.identity {
            Some(identity) => (identity.producer_id, identity.producer_epoch, sequence),
            None => (-1, -1, -1),
        };
        let mut headers = IndexMap::new();
        for (key, value) in &record.headers {
            headers.insert(StrBytes::from_string(key.clone()), value.clone());
        }
        let wire_record = WireRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence,
            timestamp,
            key: record.key.clone(),
            value: record.value.clone(),
            headers,
        };
        Ok(encode_batch(&[wire_record], self.config.codec)?)
    }

    async fn produce_once(&self, topic: &str, partition: i32, batch: Bytes) -> Result<i64> {
        let connection = self.cluster.leader(topic, partition).await?;
        let mut data = PartitionProduceData::default();
        data.index = partition;
        data.records = Some(batch);
        let mut topic_data = TopicProduceData::default();
        topic_data.name = TopicName(StrBytes::from_string(topic.to_string()));
        topic_data.partition_data = vec![data];
        let mut request = ProduceRequest::default();
        request.transactional_id = None;
        request.acks = match self.config.acks {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        };
        request.timeout_ms = 30_000;
        request.topic_data = vec![topic_data];
        if self.config.acks == Acks::None {
            let version = connection.version(ApiKey::Produce, 3..=11)?;
            connection
                .send_without_response(ApiKey::Produce, version, RequestKind::Produce(request))
                .await?;
            return Ok(-1);
        }
        let ResponseKind::Produce(response) = connection
            .call(ApiKey::Produce, 3..=11, RequestKind::Produce(request))
            .await?
        else {
            return Err(ClientError::UnexpectedResponse("Produce".to_string()));
        };
        let answer = response
            .responses
            .into_iter()
            .flat_map(|topic| topic.partition_responses)
            .next()
            .ok_or_else(|| ClientError::UnexpectedResponse("Produce".to_string()))?;
        if let Some(error) = ClientError::from_code(
            &format!("produce to {topic}-{partition}"),
            answer.error_code,
            answer.error_message.map(|message| message.to_string()),
        ) {
            return Err(error);
        }
        Ok(answer.base_offset)
    }
}

async fn init_producer_id(cluster: &Cluster) -> Result<Identity> {
    let connection = cluster.any_connection().await?;
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    let ResponseKind::InitProducerId(response) = connection
        .call(
            ApiKey::InitProducerId,
            0..=4,
            RequestKind::InitProducerId(request),
        )
        .await?
    else {
        return Err(ClientError::UnexpectedResponse(
            "InitProducerId".to_string(),
        ));
    };
    if let Some(error) = ClientError::from_code("init producer id", response.error_code, None) {
        return Err(error);
    }
    Ok(Identity {
        producer_id: response.producer_id.0,
        producer_epoch: response.producer_epoch,
    })
}

/// Errors a retry can fix: leadership moved, a connection dropped, a timeout.
fn retriable(error: &ClientError) -> bool {
    match error {
        ClientError::Connection { .. }
        | ClientError::Timeout { .. }
        | ClientError::Connect { .. } => true,
        ClientError::Kafka { code, .. } => lmq_wire::protocol::ResponseError::try_from_code(*code)
            .is_some_and(|error| error.is_retriable()),
        _ => false,
    }
}

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
