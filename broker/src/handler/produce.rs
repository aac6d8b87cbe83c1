//! Produce: append each partition's batches as received (offsets assigned in place), answer
//! per partition. acks=0 gets no response at all, as in Kafka. In a cluster only the leader
//! appends, and acks=all waits (up to the request's timeout) until the ISR has the batch.
//! With `flush = "every-batch"` the answer also waits for the partition's group commit.

use std::sync::Arc;

use futures_util::future::join_all;
use lmq_wire::protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use lmq_wire::protocol::messages::{ProduceRequest, ProduceResponse};

use lmq_storage::batch::{BatchView, batch_total_bytes};
use lmq_wire::protocol::ResponseError;

use super::{
    NONE, UNKNOWN_TOPIC_OR_PARTITION, replica_error_code, storage_error_code, store_error_code,
    str_bytes,
};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::metrics::TopicLabels;
use crate::partition::{Partition, ReplicaError};
use crate::replication::AckError;
use crate::topics::is_internal_topic;

/// A produce request whose batches are appended, waiting for their fsync (group commit) and,
/// with acks=all, for the ISR. The connection may read and append its next requests
/// meanwhile, so pipelined requests share fsyncs; answers still go out in request order.
pub struct Appended {
    response: ProduceResponse,
    /// (topic index, partition index, partition, offset to flush below).
    flushes: Vec<(usize, usize, Arc<Partition>, i64)>,
    waiting: Vec<Waiting>,
    acks: i16,
    timeout_ms: i32,
    version: i16,
}

impl Appended {
    /// The answer, once what it acknowledges is durable; `None` for acks=0.
    pub async fn finish(mut self) -> Option<ProduceResponse> {
        if !self.flushes.is_empty() {
            wait_for_flushes(&mut self.response, self.flushes, self.version).await;
        }
        if !self.waiting.is_empty() {
            wait_for_isr(&mut self.response, self.waiting, self.timeout_ms).await;
        }
        (self.acks != 0).then_some(self.response)
    }
}

/// The end of the producer ids the cluster handed out, for the idempotent batches of one
/// produce: a batch whose producer id is at or past it is refused, since no broker gave that
/// id to anyone (Kafka does not check this; a made-up id could fill the producer tables or
/// collide with the producer that gets it later).
#[derive(Debug, Clone, Copy)]
pub struct ProducerIdsEnd {
    end: i64,
    /// The coordinator could not be read to confirm a refusal: its error code instead.
    unconfirmed: Option<i16>,
}

impl ProducerIdsEnd {
    /// The error code for `records` (one batch) when its producer id was never handed out.
    fn refusal(self, records: &[u8]) -> Option<(i16, String)> {
        let producer_id = BatchView::new(records).ok()?.producer_id();
        if producer_id < 0 || producer_id < self.end {
            return None;
        }
        Some(match self.unconfirmed {
            Some(code) => (
                code,
                format!("cannot confirm producer id {producer_id}: the coordinator is away"),
            ),
            None => (
                ResponseError::UnknownProducerId.code(),
                format!("producer id {producer_id} was never handed out by this cluster"),
            ),
        })
    }
}

/// Reads the end of the handed-out producer ids once for the whole request (its largest
/// producer id decides whether the broker's copy is fresh enough). O(partitions).
pub async fn producer_ids_end(cluster: &ClusterNode, request: &ProduceRequest) -> ProducerIdsEnd {
    let largest = request
        .topic_data
        .iter()
        .flat_map(|topic| topic.partition_data.iter())
        .filter_map(|partition| partition.records.as_deref())
        .filter_map(|records| BatchView::new(records).ok())
        .map(|batch| batch.producer_id())
        .max()
        .unwrap_or(-1);
    if largest < 0 {
        return ProducerIdsEnd {
            end: 0,
            unconfirmed: None,
        };
    }
    match cluster.producer_ids_end(largest).await {
        Ok(end) => ProducerIdsEnd {
            end,
            unconfirmed: None,
        },
        Err(error) => {
            tracing::warn!(%error, "cannot read the end of the handed-out producer ids");
            // Ids below this broker's copy stay accepted; only the others wait for the
            // coordinator (retriable).
            ProducerIdsEnd {
                end: cluster.producer_ids_end_known(),
                unconfirmed: Some(store_error_code(&error)),
            }
        }
    }
}

/// Appends each partition's batch; [`Appended::finish`] answers.
pub fn append(
    broker: &Broker,
    request: ProduceRequest,
    version: i16,
    producer_ids: ProducerIdsEnd,
) -> Appended {
    let now_ms = broker.now_ms();
    let acks_all = request.acks == -1;
    let mut appended_any = false;
    let mut response = ProduceResponse::default();
    // (topic index, partition index, receiver) of appends waiting for the ISR.
    let mut waiting = Vec::new();
    // Appends waiting for their group commit (fsync), as (topic index, partition index, ...).
    let mut flushes = Vec::new();
    for topic_data in request.topic_data {
        let topic = broker.topics.get(&topic_data.name.0);
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = topic_data.name.clone();
        for partition_data in topic_data.partition_data {
            let mut partition_response = PartitionProduceResponse::default();
            partition_response.index = partition_data.index;
            partition_response.base_offset = -1;
            partition_response.log_append_time_ms = -1;

            let partition = topic.as_ref().and_then(|topic| {
                usize::try_from(partition_data.index)
                    .ok()
                    .and_then(|index| topic.partitions.get(index))
            });
            if is_internal_topic(&topic_data.name.0) {
                // Only its coordinator writes an internal topic (Kafka: "Cannot append to
                // internal topic").
                partition_response.error_code = ResponseError::InvalidTopicException.code();
                topic_response.partition_responses.push(partition_response);
                continue;
            }
            let Some(partition) = partition else {
                partition_response.error_code = UNKNOWN_TOPIC_OR_PARTITION;
                topic_response.partition_responses.push(partition_response);
                continue;
            };
            if broker.cluster().is_some_and(|cluster| !cluster.may_lead()) {
                partition_response.error_code = ResponseError::NotLeaderOrFollower.code();
                topic_response.partition_responses.push(partition_response);
                continue;
            }
            // The log rewrites base offsets in place, so it needs its own copy of the bytes.
            let mut records = partition_data
                .records
                .map(|records| records.to_vec())
                .unwrap_or_default();
            // Kafka: "Produce requests with version 3+ are only allowed to contain exactly one
            // record batch" per partition.
            let one_batch =
                batch_total_bytes(&records).is_some_and(|total| total == records.len() as u64);
            if !one_batch {
                partition_response.error_code = ResponseError::InvalidRecord.code();
                if version >= 8 {
                    partition_response.error_message = Some(str_bytes(
                        "a produce request must carry exactly one record batch per partition",
                    ));
                }
                topic_response.partition_responses.push(partition_response);
                continue;
            }
            if let Some((code, message)) = producer_ids.refusal(&records) {
                partition_response.error_code = code;
                if version >= 8 {
                    partition_response.error_message = Some(str_bytes(message));
                }
                topic_response.partition_responses.push(partition_response);
                continue;
            }
            let started = std::time::Instant::now();
            let appended = partition.append_as_leader(&mut records, acks_all, now_ms);
            broker
                .metrics
                .produce_append_duration
                .observe(started.elapsed().as_secs_f64());
            match appended {
                Ok(appended) => {
                    appended_any = true;
                    let info = appended.info;
                    if info.flush_pending {
                        flushes.push((
                            response.responses.len(),
                            topic_response.partition_responses.len(),
                            Arc::clone(partition),
                            info.last_offset + 1,
                        ));
                    }
                    if let Some(committed) = appended.committed {
                        waiting.push((
                            response.responses.len(),
                            topic_response.partition_responses.len(),
                            committed,
                        ));
                    }
                    if info.batches > 0 {
                        let labels = TopicLabels {
                            topic: topic_data.name.0.to_string(),
                        };
                        broker
                            .metrics
                            .bytes_in
                            .get_or_create(&labels)
                            .inc_by(info.bytes);
                        let records =
                            u64::try_from(info.last_offset - info.base_offset + 1).unwrap_or(0);
                        broker
                            .metrics
                            .records_in
                            .get_or_create(&labels)
                            .inc_by(records);
                    }
                    partition_response.error_code = NONE;
                    partition_response.base_offset = info.base_offset;
                    if version >= 5 {
                        partition_response.log_start_offset = info.log_start_offset;
                    }
                    if partition_uses_log_append_time(broker, &topic_data.name.0) {
                        partition_response.log_append_time_ms = info.log_append_time_ms;
                    }
                }
                Err(error) => {
                    if !matches!(error, ReplicaError::NotLeader) {
                        tracing::warn!(topic = %topic_data.name.0, partition = partition_data.index, %error, "produce refused");
                    }
                    partition_response.error_code = replica_error_code(&error);
                    if version >= 8 {
                        partition_response.error_message = Some(str_bytes(error.to_string()));
                    }
                }
            }
            topic_response.partition_responses.push(partition_response);
        }
        response.responses.push(topic_response);
    }
    if appended_any {
        broker.appended.notify_waiters();
    }
    Appended {
        response,
        flushes,
        waiting,
        acks: request.acks,
        timeout_ms: request.timeout_ms,
        version,
    }
}

/// Waits for the fsyncs of every partition's append at once (each partition's group commit
/// covers other requests' appends too). A failed fsync answers KAFKA_STORAGE_ERROR: the
/// append is not acknowledged.
async fn wait_for_flushes(
    response: &mut ProduceResponse,
    flushes: Vec<(usize, usize, Arc<Partition>, i64)>,
    version: i16,
) {
    let outcomes = join_all(
        flushes
            .iter()
            .map(|(_, _, partition, end_offset)| partition.flush_to(*end_offset)),
    )
    .await;
    for ((topic, partition, _, _), outcome) in flushes.iter().zip(outcomes) {
        let Err(error) = outcome else {
            continue;
        };
        tracing::warn!(%error, "produce not acknowledged: fsync failed");
        if let Some(answer) =
            unacknowledge(response, *topic, *partition, storage_error_code(&error))
            && version >= 8
        {
            answer.error_message = Some(str_bytes(error.to_string()));
        }
    }
}

/// An acks=all append waiting for the ISR: its topic and partition index in the response.
type Waiting = (
    usize,
    usize,
    tokio::sync::oneshot::Receiver<Result<(), AckError>>,
);

/// Waits until the ISR has each acks=all append, or the request's timeout passes
/// (REQUEST_TIMED_OUT: written, maybe replicated later, not acknowledged).
async fn wait_for_isr(response: &mut ProduceResponse, waiting: Vec<Waiting>, timeout_ms: i32) {
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(u64::try_from(timeout_ms.max(0)).unwrap_or(0));
    for (topic, partition, committed) in waiting {
        let code = match tokio::time::timeout_at(deadline, committed).await {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(AckError::NotEnoughReplicas))) => ResponseError::NotEnoughReplicas.code(),
            Ok(Ok(Err(AckError::NotEnoughReplicasAfterAppend))) => {
                ResponseError::NotEnoughReplicasAfterAppend.code()
            }
            // The leader stepped down while the append waited.
            Ok(Err(_)) => ResponseError::NotLeaderOrFollower.code(),
            Err(_) => ResponseError::RequestTimedOut.code(),
        };
        unacknowledge(response, topic, partition, code);
    }
}

/// Turns an appended partition's answer into an error: the append is not acknowledged.
fn unacknowledge(
    response: &mut ProduceResponse,
    topic: usize,
    partition: usize,
    code: i16,
) -> Option<&mut PartitionProduceResponse> {
    let answer = response
        .responses
        .get_mut(topic)?
        .partition_responses
        .get_mut(partition)?;
    answer.error_code = code;
    answer.base_offset = -1;
    Some(answer)
}

fn partition_uses_log_append_time(broker: &Broker, topic: &str) -> bool {
    broker
        .topics
        .get(topic)
        .and_then(|topic| topic.configs.get("message.timestamp.type").cloned())
        .is_some_and(|kind| kind == "LogAppendTime")
}
