//! Fetch (v4-12, topics by name): whole batches from each partition's log, long-polling
//! until `min_bytes` are available or `max_wait_ms` passes. Sessionless: every answer has
//! session id 0, which tells clients to keep sending full requests (KIP-227).
//!
//! In a cluster, consumers read from the leader only and up to the high watermark; a
//! follower's fetch (replica id set) reads up to the log end, reports the follower's
//! position to the replication state machine, and is told where its history diverges
//! (`diverging_epoch`, KIP-320's check by last fetched epoch). A replica id counts only on a
//! connection that proved it is that broker (`cluster::identity`); from anyone else the
//! fetch is a consumer's, so a forged one cannot move the high watermark.
//!
//! Record data is not read here: each partition's records are a marker and a file region
//! that the connection sends with `sendfile` (`zero_copy.rs`).

use std::time::Duration;

use bytes::Bytes;
use lmq_storage::{FirstBatch, ReadBound, ReadLimits};
use lmq_wire::protocol::messages::fetch_request::FetchPartition;
use lmq_wire::protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use lmq_wire::protocol::messages::{FetchRequest, FetchResponse};

use super::{
    NONE, RequestContext, UNKNOWN_TOPIC_OR_PARTITION, replica_error_code, storage_error_code,
};
use crate::broker::Broker;
use crate::metrics::TopicLabels;
use crate::partition::{FollowerCheck, Partition};
use crate::zero_copy::Splice;

/// Upper bound on how long a fetch may park, whatever the client asks.
/// Fetches answered faster than this did not wait: they stay out of the wait histogram.
const WAIT_OBSERVED_MIN: Duration = Duration::from_millis(1);
const MAX_WAIT_MS_CAP: i32 = 30_000;

/// The response, with markers where records go, and the splices that replace them.
pub async fn handle(
    broker: &Broker,
    context: &RequestContext,
    request: FetchRequest,
    version: i16,
) -> (FetchResponse, Vec<Splice>) {
    let follower = follower(context, &request);
    let max_wait = Duration::from_millis(
        u64::try_from(request.max_wait_ms.clamp(0, MAX_WAIT_MS_CAP)).unwrap_or(0),
    );
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = u64::try_from(request.min_bytes.max(0)).unwrap_or(0);
    let max_bytes = u64::try_from(request.max_bytes.max(0)).unwrap_or(0);
    let started = crate::metrics::stopwatch();
    let fetcher = Fetcher {
        request: &request,
        follower,
        version,
        max_bytes,
    };
    let read = long_poll(broker, &fetcher, deadline, min_bytes).await;
    if started.elapsed() >= WAIT_OBSERVED_MIN {
        broker
            .metrics
            .fetch_wait_duration
            .observe(started.elapsed().as_secs_f64());
    }
    count_out(broker, &read.sent);
    (read.response, read.splices)
}

/// The replica id of a fetch that counts as a follower's: set, and proven by the connection.
fn follower(context: &RequestContext, request: &FetchRequest) -> Option<i32> {
    let replica_id = request.replica_id.0;
    if replica_id < 0 {
        return None;
    }
    let proven = context.session.replica() == Some(replica_id);
    if !proven {
        tracing::debug!(peer = %context.peer, replica_id, "a replica id from a connection that is not that broker's: read as a consumer");
    }
    proven.then_some(replica_id)
}

/// A fetch request and who sends it.
struct Fetcher<'a> {
    request: &'a FetchRequest,
    /// The follower's broker id, `None` for consumers.
    follower: Option<i32>,
    version: i16,
    max_bytes: u64,
}

/// One pass over the requested partitions.
struct Read {
    response: FetchResponse,
    splices: Vec<Splice>,
    /// Record bytes in the response.
    bytes: u64,
    /// Bytes and records per topic, for the metrics.
    sent: Vec<(String, u64, u64)>,
}

async fn long_poll(
    broker: &Broker,
    fetcher: &Fetcher<'_>,
    deadline: tokio::time::Instant,
    min_bytes: u64,
) -> Read {
    let max_bytes = fetcher.max_bytes;
    loop {
        // Register for the append signal before reading, so an append in between wakes us.
        let appended = broker.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let read = read_all(broker, fetcher);
        let bytes = read.bytes;
        if bytes >= min_bytes
            || bytes > 0 && max_bytes <= bytes
            || tokio::time::Instant::now() >= deadline
        {
            return read;
        }
        if tokio::time::timeout_at(deadline, appended).await.is_err() {
            return read_all(broker, fetcher);
        }
    }
}

/// Bytes and records handed to consumers, by topic.
fn count_out(broker: &Broker, sent: &[(String, u64, u64)]) {
    for (topic, bytes, records) in sent {
        let labels = TopicLabels {
            topic: topic.clone(),
        };
        broker
            .metrics
            .bytes_out
            .get_or_create(&labels)
            .inc_by(*bytes);
        broker
            .metrics
            .records_out
            .get_or_create(&labels)
            .inc_by(*records);
    }
}

/// How the partition answers this fetcher: `Err` is the error code to return, `Ok` the
/// read bound (and a divergence to report instead of records).
fn admit(
    broker: &Broker,
    follower: Option<i32>,
    partition: &Partition,
    fetch: &FetchPartition,
    high_watermark_moved: &mut bool,
) -> Result<(ReadBound, Option<(i32, i64)>), i16> {
    let Some(replica_id) = follower else {
        partition
            .check_leader(fetch.current_leader_epoch)
            .map_err(|error| replica_error_code(&error))?;
        return Ok((ReadBound::HighWatermark, None));
    };
    let before = partition.offsets().map(|offsets| offsets.high_watermark);
    let check = partition
        .follower_fetch(
            replica_id,
            fetch.fetch_offset,
            fetch.current_leader_epoch,
            fetch.last_fetched_epoch,
            broker.now_ms(),
        )
        .map_err(|error| replica_error_code(&error))?;
    match check {
        FollowerCheck::Diverging { epoch, end_offset } => {
            Ok((ReadBound::LogEnd, Some((epoch, end_offset))))
        }
        FollowerCheck::Read { high_watermark } => {
            *high_watermark_moved |= before.is_ok_and(|before| before < high_watermark);
            Ok((ReadBound::LogEnd, None))
        }
    }
}

fn read_all(broker: &Broker, fetcher: &Fetcher<'_>) -> Read {
    let Fetcher {
        request,
        follower,
        version,
        max_bytes,
    } = *fetcher;
    let mut response = FetchResponse::default();
    let mut splices = Vec::new();
    let mut sent = Vec::new();
    let mut total = 0u64;
    let mut high_watermark_moved = false;
    for fetch_topic in &request.topics {
        let topic = broker.topics.get(&fetch_topic.topic.0);
        let mut topic_response = FetchableTopicResponse::default();
        topic_response.topic = fetch_topic.topic.clone();
        for fetch_partition in &fetch_topic.partitions {
            let mut data = PartitionData::default();
            data.aborted_transactions = None;
            data.partition_index = fetch_partition.partition;
            data.high_watermark = -1;
            data.last_stable_offset = -1;
            let partition = topic.as_ref().and_then(|topic| {
                usize::try_from(fetch_partition.partition)
                    .ok()
                    .and_then(|index| topic.partitions.get(index))
            });
            let Some(partition) = partition else {
                data.error_code = UNKNOWN_TOPIC_OR_PARTITION;
                topic_response.partitions.push(data);
                continue;
            };
            let bound = match admit(
                broker,
                follower,
                partition,
                fetch_partition,
                &mut high_watermark_moved,
            ) {
                Ok((_, Some((epoch, end_offset)))) => {
                    data.diverging_epoch.epoch = epoch;
                    data.diverging_epoch.end_offset = end_offset;
                    if let Ok(offsets) = partition.offsets() {
                        data.high_watermark = offsets.high_watermark;
                        data.log_start_offset = offsets.log_start_offset;
                    }
                    data.records = Some(Bytes::new());
                    topic_response.partitions.push(data);
                    continue;
                }
                Ok((bound, None)) => bound,
                Err(code) => {
                    data.error_code = code;
                    topic_response.partitions.push(data);
                    continue;
                }
            };
            let partition_max =
                u64::try_from(fetch_partition.partition_max_bytes.max(0)).unwrap_or(0);
            let limits = ReadLimits {
                max_bytes: partition_max.min(max_bytes.saturating_sub(total)),
                bound,
                // KIP-74: the first batch of the response goes whole even past the limits,
                // so a consumer is never stuck behind a batch larger than its max bytes.
                first_batch: if total == 0 {
                    FirstBatch::Whole
                } else {
                    FirstBatch::WithinMaxBytes
                },
            };
            match partition.read(fetch_partition.fetch_offset, limits) {
                Ok(read) => {
                    data.error_code = NONE;
                    data.high_watermark = read.high_watermark;
                    data.last_stable_offset = read.high_watermark;
                    if version >= 5 {
                        data.log_start_offset = read.log_start_offset;
                    }
                    // A list (empty: no transactions yet) only for read_committed readers;
                    // Kafka answers null to read_uncommitted ones.
                    data.aborted_transactions = (request.isolation_level == 1).then(Vec::new);
                    match read.region {
                        Some(region) => {
                            total += region.length;
                            sent.push((
                                fetch_topic.topic.0.to_string(),
                                region.length,
                                read.records,
                            ));
                            let splice = Splice::new(region);
                            data.records = Some(splice.marker.clone());
                            splices.push(splice);
                        }
                        None => data.records = Some(Bytes::new()),
                    }
                }
                Err(error) => {
                    data.error_code = storage_error_code(&error);
                    // Kafka answers an error with -1 offsets; LMQ's own followers get the
                    // leader's offsets so an out-of-range one resets without a ListOffsets.
                    if let Some(offsets) = partition.offsets().ok().filter(|_| follower.is_some()) {
                        data.high_watermark = offsets.high_watermark;
                        data.last_stable_offset = offsets.high_watermark;
                        if version >= 5 {
                            data.log_start_offset = offsets.log_start_offset;
                        }
                    }
                }
            }
            topic_response.partitions.push(data);
        }
        response.responses.push(topic_response);
    }
    if high_watermark_moved {
        // Consumers parked on this partition may read further now.
        broker.appended.notify_waiters();
    }
    Read {
        response,
        splices,
        bytes: total,
        sent,
    }
}
