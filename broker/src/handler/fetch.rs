//! Fetch (v4-12, topics by name): whole batches from each partition's log, long-polling
//! until `min_bytes` are available or `max_wait_ms` passes. Sessionless: every answer has
//! session id 0, which tells clients to keep sending full requests (KIP-227).
//!
//! In a cluster, consumers read from the leader only and up to the high watermark (with
//! isolation level 1, read_committed, up to the last stable offset, and the answer lists the
//! aborted transactions in what it returns, Kafka's `collectAbortedTransactions`); a
//! follower's fetch (replica id set) reads up to the log end, reports the follower's
//! position to the replication state machine, and is told where its history diverges
//! (`diverging_epoch`, KIP-320's check by last fetched epoch). A replica id counts only on a
//! connection that proved it is that broker (`cluster::identity`); from anyone else the
//! fetch is a consumer's, so a forged one cannot move the high watermark.
//!
//! Each requested partition has its own pending answer ([`PendingPartition`]), read again on
//! every pass; between passes the fetch waits on the progress of the partitions it asked for
//! only (`Partition::watch`): the high watermark for consumers, the log end for followers.
//!
//! Record data is not read here: each partition's records are a marker and a file region
//! that the connection sends with `sendfile` (`zero_copy.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use lmq_storage::{FirstBatch, ReadBound, ReadLimits};
use lmq_wire::protocol::messages::fetch_request::FetchPartition;
use lmq_wire::protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use lmq_wire::protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};

use super::{
    NONE, RequestContext, TopicLookup, UNKNOWN_TOPIC_OR_PARTITION, replica_error_code,
    storage_error_code,
};
use crate::broker::Broker;
use crate::metrics::TopicLabels;
use crate::partition::{FetchWatch, FollowerCheck, Partition};
use crate::security::acl::AclOperation;
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
    let mut fetch = PendingFetch::new(&request, follower, version, max_bytes);
    // A consumer needs READ on each topic (a follower is a proven broker: a super user).
    if follower.is_none() {
        fetch.refuse_unauthorized(context);
    }
    long_poll(broker, &mut fetch, deadline, min_bytes).await;
    if started.elapsed() >= WAIT_OBSERVED_MIN {
        broker
            .metrics
            .fetch_wait_duration
            .observe(started.elapsed().as_secs_f64());
    }
    let answer = fetch.into_response();
    count_out(broker, &answer.sent);
    (answer.response, answer.splices)
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
#[derive(Clone, Copy)]
struct Fetcher<'r> {
    request: &'r FetchRequest,
    /// The follower's broker id, `None` for consumers.
    follower: Option<i32>,
    version: i16,
    max_bytes: u64,
}

impl Fetcher<'_> {
    /// What this fetcher reads up to, and so which progress wakes it: followers the log
    /// end, read_committed consumers (isolation level 1) the last stable offset, others the
    /// high watermark.
    fn bound(&self) -> ReadBound {
        if self.follower.is_some() {
            ReadBound::LogEnd
        } else if self.request.isolation_level == 1 {
            ReadBound::LastStableOffset
        } else {
            ReadBound::HighWatermark
        }
    }
}

/// A fetch in the making: one pending answer per requested partition, in the request's
/// order.
struct PendingFetch<'r> {
    fetcher: Fetcher<'r>,
    partitions: Vec<PendingPartition<'r>>,
}

/// One requested partition: the answer of the latest pass, and the subscription that wakes
/// the fetch when the partition moves.
struct PendingPartition<'r> {
    topic: &'r TopicName,
    request: &'r FetchPartition,
    answer: PartitionData,
    /// The records the answer carries: their splice, and the record count for the metrics.
    records: Option<(Splice, u64)>,
    /// The partition last read and its subscription (a topic deleted and created again meanwhile
    /// has a new partition). `None` while the topic or partition is unknown.
    watch: Option<(Arc<Partition>, FetchWatch)>,
    /// The error code a partition the fetcher may not read is answered (never read).
    refused: Option<i16>,
}

/// The finished response.
struct Answer {
    response: FetchResponse,
    splices: Vec<Splice>,
    /// Bytes and records per topic, for the metrics.
    sent: Vec<(String, u64, u64)>,
}

async fn long_poll(
    broker: &Broker,
    fetch: &mut PendingFetch<'_>,
    deadline: tokio::time::Instant,
    min_bytes: u64,
) {
    let max_bytes = fetch.fetcher.max_bytes;
    loop {
        // Each pass marks the partitions' progress seen before reading them, so a move in
        // between wakes the wait below.
        let bytes = fetch.read_all(broker);
        if bytes >= min_bytes
            || bytes > 0 && max_bytes <= bytes
            || fetch.must_answer_now()
            || tokio::time::Instant::now() >= deadline
        {
            return;
        }
        if tokio::time::timeout_at(deadline, fetch.any_moved())
            .await
            .is_err()
        {
            fetch.read_all(broker);
            return;
        }
        broker.metrics.fetch_wakeups.inc();
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
    fetcher: Fetcher<'_>,
    partition: &Partition,
    fetch: &FetchPartition,
) -> Result<(ReadBound, Option<(i32, i64)>), i16> {
    let Some(replica_id) = fetcher.follower else {
        partition
            .check_leader(fetch.current_leader_epoch)
            .map_err(|error| replica_error_code(&error))?;
        return Ok((fetcher.bound(), None));
    };
    // A high watermark this moves wakes the consumers parked on the partition.
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
        FollowerCheck::Read { .. } => Ok((ReadBound::LogEnd, None)),
    }
}

impl<'r> PendingFetch<'r> {
    fn new(request: &'r FetchRequest, follower: Option<i32>, version: i16, max_bytes: u64) -> Self {
        let partitions = request
            .topics
            .iter()
            .flat_map(|fetch_topic| {
                fetch_topic
                    .partitions
                    .iter()
                    .map(|fetch_partition| PendingPartition {
                        topic: &fetch_topic.topic,
                        request: fetch_partition,
                        answer: PartitionData::default(),
                        records: None,
                        watch: None,
                        refused: None,
                    })
            })
            .collect();
        PendingFetch {
            fetcher: Fetcher {
                request,
                follower,
                version,
                max_bytes,
            },
            partitions,
        }
    }

    /// Marks the partitions of topics the connection may not READ: answered
    /// TOPIC_AUTHORIZATION_FAILED, never read.
    fn refuse_unauthorized(&mut self, context: &RequestContext) {
        let mut last: Option<(&TopicName, Option<i16>)> = None;
        for pending in &mut self.partitions {
            let refused = match last {
                Some((topic, refused)) if topic == pending.topic => refused,
                _ => context
                    .check_topic(AclOperation::Read, &pending.topic.0)
                    .err(),
            };
            last = Some((pending.topic, refused));
            pending.refused = refused;
        }
    }

    /// One pass: every partition answered anew, in request order (the first records read go
    /// whole, KIP-74). Returns the record bytes read.
    fn read_all(&mut self, broker: &Broker) -> u64 {
        let bound = self.fetcher.bound();
        let mut total = 0u64;
        // Partitions of one topic are next to each other: one registry lookup per topic.
        let mut topic: Option<(&TopicName, TopicLookup)> = None;
        for pending in &mut self.partitions {
            if topic
                .as_ref()
                .is_none_or(|(name, _)| *name != pending.topic)
            {
                topic = Some((pending.topic, TopicLookup::new(broker, &pending.topic.0)));
            }
            let partition = topic
                .as_ref()
                .filter(|_| pending.refused.is_none())
                .and_then(|(_, lookup)| lookup.partition(pending.request.partition).ok())
                .cloned();
            pending.subscribe(partition.as_ref(), bound);
            total += pending.read(broker, partition.as_deref(), self.fetcher, total);
        }
        total
    }

    /// Whether a partition's answer cannot wait: an error (unknown partition, not the leader,
    /// a fenced epoch...) or a divergence a follower must truncate to. Kafka's delayed fetch
    /// completes at once then too, so the client acts on it instead of waiting out
    /// `max_wait_ms`.
    fn must_answer_now(&self) -> bool {
        self.partitions.iter().any(|pending| {
            pending.answer.error_code != NONE || pending.answer.diverging_epoch.epoch >= 0
        })
    }

    /// Resolves once one of the partitions read moved since its last read; never when none
    /// is known (the deadline ends the wait).
    async fn any_moved(&mut self) {
        let moved: Vec<_> = self
            .partitions
            .iter_mut()
            .filter_map(|pending| pending.watch.as_mut())
            .map(|(_, watch)| Box::pin(watch.changed()))
            .collect();
        if moved.is_empty() {
            std::future::pending::<()>().await;
        }
        select_all(moved).await;
    }

    fn into_response(self) -> Answer {
        let mut response = FetchResponse::default();
        let mut splices = Vec::new();
        let mut sent = Vec::new();
        let mut partitions = self.partitions.into_iter();
        for fetch_topic in &self.fetcher.request.topics {
            let mut topic_response = FetchableTopicResponse::default();
            topic_response.topic = fetch_topic.topic.clone();
            for pending in partitions.by_ref().take(fetch_topic.partitions.len()) {
                if let Some((splice, records)) = pending.records {
                    sent.push((
                        fetch_topic.topic.0.to_string(),
                        splice.region.length,
                        records,
                    ));
                    splices.push(splice);
                }
                topic_response.partitions.push(pending.answer);
            }
            response.responses.push(topic_response);
        }
        Answer {
            response,
            splices,
            sent,
        }
    }
}

impl PendingPartition<'_> {
    /// Keeps the subscription to `partition`'s progress (marking what it saw so far) or
    /// subscribes anew when the partition is not the one read last time.
    fn subscribe(&mut self, partition: Option<&Arc<Partition>>, bound: ReadBound) {
        match (partition, &mut self.watch) {
            (Some(partition), Some((watched, watch))) if Arc::ptr_eq(partition, watched) => {
                watch.mark_seen();
            }
            (Some(partition), _) => {
                self.watch = Some((Arc::clone(partition), partition.watch(bound)));
            }
            (None, _) => self.watch = None,
        }
    }

    /// Answers this partition from its log, `total` record bytes being read before it in
    /// this pass. Returns the record bytes it read.
    fn read(
        &mut self,
        broker: &Broker,
        partition: Option<&Partition>,
        fetch: Fetcher<'_>,
        total: u64,
    ) -> u64 {
        let fetch_partition = self.request;
        let data = &mut self.answer;
        *data = PartitionData::default();
        self.records = None;
        data.aborted_transactions = None;
        data.partition_index = fetch_partition.partition;
        data.high_watermark = -1;
        data.last_stable_offset = -1;
        let Some(partition) = partition else {
            data.error_code = self.refused.unwrap_or(UNKNOWN_TOPIC_OR_PARTITION);
            return 0;
        };
        let bound = match admit(broker, fetch, partition, fetch_partition) {
            Ok((_, Some((epoch, end_offset)))) => {
                data.diverging_epoch.epoch = epoch;
                data.diverging_epoch.end_offset = end_offset;
                if let Ok(offsets) = partition.offsets() {
                    data.high_watermark = offsets.high_watermark;
                    data.last_stable_offset = offsets.last_stable_offset;
                    data.log_start_offset = offsets.log_start_offset;
                }
                data.records = Some(Bytes::new());
                return 0;
            }
            Ok((bound, None)) => bound,
            Err(code) => {
                data.error_code = code;
                return 0;
            }
        };
        let partition_max = u64::try_from(fetch_partition.partition_max_bytes.max(0)).unwrap_or(0);
        let limits = ReadLimits {
            max_bytes: partition_max.min(fetch.max_bytes.saturating_sub(total)),
            bound,
            // KIP-74: the first batch of the response goes whole even past the limits, so a
            // consumer is never stuck behind a batch larger than its max bytes.
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
                data.last_stable_offset = read.last_stable_offset;
                if fetch.version >= 5 {
                    data.log_start_offset = read.log_start_offset;
                }
                // A list only for read_committed readers (the aborted transactions in what
                // was read); Kafka answers null to read_uncommitted ones.
                data.aborted_transactions = read.aborted_transactions.map(|aborted| {
                    aborted
                        .iter()
                        .map(|txn| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(txn.producer_id))
                                .with_first_offset(txn.first_offset)
                        })
                        .collect()
                });
                match read.region {
                    Some(region) => {
                        let length = region.length;
                        let splice = Splice::new(region);
                        data.records = Some(splice.marker.clone());
                        self.records = Some((splice, read.records));
                        length
                    }
                    None => {
                        data.records = Some(Bytes::new());
                        0
                    }
                }
            }
            Err(error) => {
                data.error_code = storage_error_code(&error);
                // Kafka answers an error with -1 offsets; LMQ's own followers get the
                // leader's offsets so an out-of-range one resets without a ListOffsets.
                if let Some(offsets) = partition
                    .offsets()
                    .ok()
                    .filter(|_| fetch.follower.is_some())
                {
                    data.high_watermark = offsets.high_watermark;
                    data.last_stable_offset = offsets.last_stable_offset;
                    if fetch.version >= 5 {
                        data.log_start_offset = offsets.log_start_offset;
                    }
                }
                0
            }
        }
    }
}

impl super::ErrorCodes for lmq_wire::protocol::messages::FetchResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
        codes.extend(
            self.responses
                .iter()
                .flat_map(|item| item.partitions.iter().map(|inner| inner.error_code)),
        );
    }
}
