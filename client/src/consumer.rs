//! The plain consumer: assign partitions at offsets, then `poll` fetches from their leaders.
//! Group membership (`subscribe` with a handler, commits, retries, dead letters) builds on it.

use std::time::Duration;

use bytes::Bytes;
use lmq_wire::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use lmq_wire::protocol::messages::{BrokerId, FetchRequest, TopicName};
use lmq_wire::protocol::protocol::StrBytes;
use lmq_wire::records::decode_batches;

use crate::admin::OffsetSpec;
use crate::cluster::{ClientConfig, Cluster};
use crate::error::{ClientError, Result};

/// Bound on one batch's decompressed size.
const DECOMPRESSED_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Settings of a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Brokers, client id and request timeout.
    pub client: ClientConfig,
    /// How long a fetch may wait for data (default 500 ms).
    pub max_wait: Duration,
    /// Most bytes a fetch asks for from a partition (default 1 MiB); also the fetch's
    /// overall limit.
    pub partition_max_bytes: i32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            max_wait: Duration::from_millis(500),
            partition_max_bytes: 1024 * 1024,
        }
    }
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The topic it was read from.
    pub topic: String,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, if it has one.
    pub key: Option<Bytes>,
    /// The value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Headers in the order they were written: name and optional value.
    pub headers: Vec<(String, Option<Bytes>)>,
}

#[derive(Debug)]
struct Assignment {
    topic: String,
    partition: i32,
    position: i64,
}

/// A consumer outside any group: reads the partitions it is assigned from the offsets given,
/// tracks its positions itself and commits nothing. See the module documentation.
#[derive(Debug)]
pub struct Consumer {
    cluster: Cluster,
    config: ConsumerConfig,
    assignments: Vec<Assignment>,
}

impl Consumer {
    /// Connects to the cluster; nothing is assigned yet.
    pub async fn connect(config: ConsumerConfig) -> Result<Self> {
        Ok(Consumer {
            cluster: Cluster::connect(config.client.clone()).await?,
            config,
            assignments: Vec::new(),
        })
    }

    /// Reads `topic`'s `partition` from `start` on, replacing any earlier assignment of that
    /// partition. Any `start` but [`OffsetSpec::Offset`] is resolved now with ListOffsets.
    pub async fn assign(&mut self, topic: &str, partition: i32, start: OffsetSpec) -> Result<()> {
        let position = match start {
            OffsetSpec::Offset(offset) => offset,
            spec => {
                let admin_view = crate::admin::Admin::connect(self.config.client.clone()).await?;
                admin_view
                    .list_offsets(topic, spec)
                    .await?
                    .into_iter()
                    .find(|(listed, _)| *listed == partition)
                    .map(|(_, offset)| offset)
                    .ok_or_else(|| ClientError::UnknownPartition {
                        topic: topic.to_string(),
                        partition,
                    })?
            }
        };
        self.assignments
            .retain(|assignment| !(assignment.topic == topic && assignment.partition == partition));
        self.assignments.push(Assignment {
            topic: topic.to_string(),
            partition,
            position,
        });
        Ok(())
    }

    /// The next offset to read of each assigned partition.
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        self.assignments
            .iter()
            .map(|assignment| {
                (
                    assignment.topic.clone(),
                    assignment.partition,
                    assignment.position,
                )
            })
            .collect()
    }

    /// Fetches once from every assigned partition's leader in turn (Fetch, each waiting up
    /// to `max_wait` for data) and advances past the records returned. Transaction control
    /// records are skipped. A partition's error code fails the whole poll and no position moves,
    /// so the next poll reads the same records again (none is skipped).
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>> {
        let mut records = Vec::new();
        let mut moved = Vec::new();
        for index in 0..self.assignments.len() {
            let (topic, partition, position) = {
                let assignment = &self.assignments[index];
                (
                    assignment.topic.clone(),
                    assignment.partition,
                    assignment.position,
                )
            };
            let fetched = self.fetch(&topic, partition, position).await?;
            if let Some(last) = fetched.last() {
                moved.push((index, last.offset + 1));
            }
            records.extend(fetched);
        }
        // Positions move only once every partition answered: when one fails, the records
        // already fetched are dropped with the error and read again by the next poll.
        for (index, position) in moved {
            self.assignments[index].position = position;
        }
        Ok(records)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        position: i64,
    ) -> Result<Vec<ConsumedRecord>> {
        let connection = self.cluster.leader(topic, partition).await?;
        let mut fetch_partition = FetchPartition::default();
        fetch_partition.partition = partition;
        fetch_partition.fetch_offset = position;
        fetch_partition.partition_max_bytes = self.config.partition_max_bytes;
        let mut fetch_topic = FetchTopic::default();
        fetch_topic.topic = TopicName(StrBytes::from_string(topic.to_string()));
        fetch_topic.partitions = vec![fetch_partition];
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_wait_ms = i32::try_from(self.config.max_wait.as_millis()).unwrap_or(i32::MAX);
        request.min_bytes = 1;
        request.max_bytes = self.config.partition_max_bytes.max(1);
        request.topics = vec![fetch_topic];
        let response = connection.call(request).await?;
        if let Some(error) = ClientError::from_code("fetch", response.error_code, None) {
            return Err(error);
        }
        let mut out = Vec::new();
        for answered in response
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
        {
            if let Some(error) = ClientError::from_code(
                &format!("fetch {topic}-{partition}"),
                answered.error_code,
                None,
            ) {
                return Err(error);
            }
            if let Some(bytes) = &answered.records {
                out.extend(decode_records(topic, partition, bytes.clone(), position)?);
            }
        }
        Ok(out)
    }
}

/// Records at or after `from` in the whole batches of `bytes` (a fetch returns the batch that
/// holds the requested offset, and may end with a partial batch, which is skipped).
pub fn decode_records(
    topic: &str,
    partition: i32,
    bytes: Bytes,
    from: i64,
) -> Result<Vec<ConsumedRecord>> {
    Ok(decode_batches(bytes, DECOMPRESSED_BYTES_MAX)?
        .into_iter()
        .filter(|record| record.offset >= from && !record.control)
        .map(|record| ConsumedRecord {
            topic: topic.to_string(),
            partition,
            offset: record.offset,
            timestamp: record.timestamp_ms,
            key: record.key,
            value: record.value,
            headers: record.headers,
        })
        .collect())
}
