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
    /// Kafka's `isolation.level=read_committed`: read only up to the last stable offset
    /// and leave out the records of aborted transactions. Default `false`
    /// (`read_uncommitted`, Kafka's default).
    pub read_committed: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            max_wait: Duration::from_millis(500),
            partition_max_bytes: 1024 * 1024,
            read_committed: false,
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
            let (fetched, next) = self.fetch(&topic, partition, position).await?;
            if next > position {
                moved.push((index, next));
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
    ) -> Result<(Vec<ConsumedRecord>, i64)> {
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
        request.isolation_level = i8::from(self.config.read_committed);
        request.topics = vec![fetch_topic];
        let response = connection.call(request).await?;
        if let Some(error) = ClientError::from_code("fetch", response.error_code, None) {
            return Err(error);
        }
        let mut out = Vec::new();
        let mut next = position;
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
                let aborted: Vec<(i64, i64)> = answered
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|aborted| (aborted.producer_id.0, aborted.first_offset))
                    .collect();
                let (records, after) =
                    decode_committed(topic, partition, bytes.clone(), position, &aborted)?;
                out.extend(records);
                next = next.max(after);
            }
        }
        Ok((out, next))
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
    Ok(decode_committed(topic, partition, bytes, from, &[])?.0)
}

/// The control record type of an ABORT marker (its key: version, then type; 1 is COMMIT).
const CONTROL_TYPE_ABORT: i16 = 0;

/// Like [`decode_records`], leaving out transaction markers and the records of the
/// `aborted` transactions (producer id, first offset: a fetch's `aborted_transactions`), as
/// Kafka's consumer does: a transactional record of a producer whose aborted transaction
/// started at or before it is skipped until that producer's ABORT marker. Also returns the
/// offset after the last whole record read, markers and skipped records included, so the
/// position moves past them.
pub fn decode_committed(
    topic: &str,
    partition: i32,
    bytes: Bytes,
    from: i64,
    aborted: &[(i64, i64)],
) -> Result<(Vec<ConsumedRecord>, i64)> {
    let mut pending: Vec<(i64, i64)> = aborted.to_vec();
    // By first offset, latest first, so the next to start is popped from the end.
    pending.sort_unstable_by_key(|&(_, first)| std::cmp::Reverse(first));
    let mut aborting: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut next = from;
    for record in decode_batches(bytes, DECOMPRESSED_BYTES_MAX)? {
        while pending
            .last()
            .is_some_and(|(_, first)| *first <= record.offset)
        {
            if let Some((producer_id, _)) = pending.pop() {
                aborting.insert(producer_id);
            }
        }
        if record.offset < from {
            continue;
        }
        next = next.max(record.offset + 1);
        if record.control {
            let abort = record
                .key
                .as_ref()
                .and_then(|key| key.get(2..4))
                .is_some_and(|kind| i16::from_be_bytes([kind[0], kind[1]]) == CONTROL_TYPE_ABORT);
            if abort {
                aborting.remove(&record.producer_id);
            }
            continue;
        }
        if record.transactional && aborting.contains(&record.producer_id) {
            continue;
        }
        out.push(ConsumedRecord {
            topic: topic.to_string(),
            partition,
            offset: record.offset,
            timestamp: record.timestamp_ms,
            key: record.key,
            value: record.value,
            headers: record.headers,
        });
    }
    Ok((out, next))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use lmq_wire::records::{Codec, OutRecord, ProducerStamp, encode_batch};

    /// A batch of `values` by `producer_id` at `base_offset`.
    fn batch(base_offset: i64, producer_id: i64, transactional: bool, values: &[&str]) -> Vec<u8> {
        let records: Vec<OutRecord> = values
            .iter()
            .map(|value| OutRecord {
                value: Some(Bytes::from(value.to_string())),
                ..OutRecord::default()
            })
            .collect();
        let stamp = ProducerStamp {
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            transactional,
        };
        let mut bytes = encode_batch(&records, Codec::None, Some(stamp))
            .unwrap()
            .to_vec();
        // The base offset lies outside the CRC: the log sets it on append.
        bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
        bytes
    }

    #[test]
    fn read_committed_leaves_out_the_records_of_aborted_transactions() {
        let fetched: Vec<u8> = [
            batch(0, 1, true, &["aborted-1", "aborted-2"]),
            batch(2, 2, true, &["committed"]),
            batch(3, 1, false, &["plain"]),
            batch(4, 3, true, &["aborted-later"]),
        ]
        .concat();
        // Producer 1's transaction from offset 0 and producer 3's from 4 were aborted; a
        // producer 1 record that is not transactional is not part of it.
        let aborted = [(3, 4), (1, 0)];
        let (records, next) =
            decode_committed("t", 0, Bytes::from(fetched.clone()), 0, &aborted).unwrap();
        let values: Vec<_> = records
            .iter()
            .map(|record| record.value.clone().unwrap())
            .collect();
        assert_eq!(values, ["committed", "plain"]);
        assert_eq!(next, 5, "the position moves past the skipped records");
        // Without aborted transactions (read_uncommitted) everything is read, from `from`.
        let (all, _) = decode_committed("t", 0, Bytes::from(fetched), 1, &[]).unwrap();
        assert_eq!(all.first().map(|record| record.offset), Some(1));
        assert_eq!(all.len(), 4);
    }
}
