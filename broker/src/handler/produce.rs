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
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use lmq_storage::batch::{BatchView, batch_total_bytes};
use lmq_wire::protocol::ResponseError;

use super::{
    NONE, UNKNOWN_TOPIC_OR_PARTITION, replica_error_code, storage_error_code, store_error_code,
    str_bytes,
};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::metrics::{ApiErrorLabels, TopicLabels};
use crate::partition::{AppendMark, Partition, ReplicaError};
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
    /// (topic index, partition index, partition, what the append was made under) of every
    /// append answered with success so far: checked again right before the answer.
    appends: Vec<(usize, usize, Arc<Partition>, AppendMark)>,
    /// The leadership lease is checked again before the answer.
    cluster: Option<Arc<ClusterNode>>,
    /// Refusals of acks=0 produces are counted here: no answer carries them.
    request_errors: Family<ApiErrorLabels, Counter>,
    acks: i16,
    timeout_ms: i32,
    version: i16,
}

impl Appended {
    /// The answer, once what it acknowledges is durable; `None` for acks=0.
    pub async fn finish(mut self) -> Option<ProduceResponse> {
        if !self.flushes.is_empty() {
            let flushes = std::mem::take(&mut self.flushes);
            wait_for_flushes(&mut self.response, flushes, self.version).await;
        }
        if !self.waiting.is_empty() {
            let waiting = std::mem::take(&mut self.waiting);
            wait_for_isr(&mut self.response, waiting, self.timeout_ms).await;
        }
        self.recheck();
        (self.acks != 0).then_some(self.response)
    }

    /// The waits may have outlasted the leadership: an append is acknowledged only if the
    /// lease still holds now and its partition is still led in the epoch it was appended in,
    /// with no truncation since (else the record may be gone, or be overwritten by the new
    /// leader's history). Otherwise NOT_LEADER_OR_FOLLOWER, as Kafka answers a produce whose
    /// leader moved: the client refreshes its metadata and retries.
    fn recheck(&mut self) {
        let lease_held = self
            .cluster
            .as_ref()
            .is_none_or(|cluster| cluster.may_lead());
        for (topic, partition, replica, mark) in &self.appends {
            let answered_ok = self
                .response
                .responses
                .get(*topic)
                .and_then(|topic| topic.partition_responses.get(*partition))
                .is_some_and(|answer| answer.error_code == NONE);
            if !answered_ok {
                continue;
            }
            let reason = if !lease_held {
                "the leadership lease lapsed before the answer"
            } else if !replica.still_holds(*mark) {
                "the leadership changed (or the log was truncated) before the answer"
            } else {
                continue;
            };
            let code = ResponseError::NotLeaderOrFollower.code();
            tracing::info!(
                partition = replica.index,
                reason,
                "produce not acknowledged"
            );
            if let Some(answer) = unacknowledge(&mut self.response, *topic, *partition, code)
                && self.version >= 8
            {
                answer.error_message = Some(str_bytes(reason));
            }
            if self.acks == 0 {
                self.request_errors
                    .get_or_create(&ApiErrorLabels {
                        api: "Produce".to_string(),
                        error: crate::metrics::error_name(code),
                    })
                    .inc();
            }
        }
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
    let mut response = ProduceResponse::default();
    // (topic index, partition index, receiver) of appends waiting for the ISR.
    let mut waiting = Vec::new();
    // Appends waiting for their group commit (fsync), as (topic index, partition index, ...).
    let mut flushes = Vec::new();
    // Every append, checked again before the answer.
    let mut appends = Vec::new();
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
                    appends.push((
                        response.responses.len(),
                        topic_response.partition_responses.len(),
                        Arc::clone(partition),
                        appended.mark,
                    ));
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
    Appended {
        response,
        flushes,
        waiting,
        appends,
        cluster: broker.cluster().cloned(),
        request_errors: broker.metrics.request_errors.clone(),
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
            Ok(Ok(Err(AckError::NotLeader)) | Err(_)) => ResponseError::NotLeaderOrFollower.code(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lmq_storage::builder::BatchBuilder;
    use lmq_wire::protocol::messages::TopicName;
    use lmq_wire::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use lmq_wire::protocol::protocol::StrBytes;

    use super::*;
    use crate::cluster::testing;
    use crate::replication::{Assignment, ReplicationConfig};

    const NOT_LEADER: i16 = 6;

    fn request(topic: &str, acks: i16) -> ProduceRequest {
        let mut builder = BatchBuilder::new(0);
        builder.push(None, Some(b"record"), 0);
        let mut data = PartitionProduceData::default();
        data.index = 0;
        data.records = Some(builder.build().into());
        let mut topic_data = TopicProduceData::default();
        topic_data.name = TopicName(StrBytes::from_string(topic.to_string()));
        topic_data.partition_data = vec![data];
        let mut request = ProduceRequest::default();
        request.acks = acks;
        request.timeout_ms = 5_000;
        request.topic_data = vec![topic_data];
        request
    }

    const ANY_PRODUCER_ID: ProducerIdsEnd = ProducerIdsEnd {
        end: i64::MAX,
        unconfirmed: None,
    };

    fn code(response: &ProduceResponse) -> i16 {
        response.responses[0].partition_responses[0].error_code
    }

    fn refused_count(broker: &Broker) -> u64 {
        broker
            .metrics
            .request_errors
            .get_or_create(&ApiErrorLabels {
                api: "Produce".to_string(),
                error: "NOT_LEADER_OR_FOLLOWER".to_string(),
            })
            .get()
    }

    /// The lease is checked again when the answer is sent: appended while it held, answered
    /// after it lapsed (the manual clock moved past half the registration TTL meanwhile), the
    /// produce is not acknowledged. acks=0 sends nothing but counts the refusal.
    #[tokio::test]
    async fn a_lease_that_lapses_before_the_answer_refuses_the_produce() {
        for acks in [1, -1, 0] {
            let test = testing::start(|_| {}, |coordinator| coordinator).await;
            test.stop_tasks();
            let ttl_ms = i64::try_from(test.broker.config.cluster.broker_ttl_ms).unwrap();
            test.node
                .create_topic(&test.broker, "t", 1, 1, &BTreeMap::new())
                .await
                .unwrap();
            let appended = append(&test.broker, request("t", acks), 9, ANY_PRODUCER_ID);
            assert_eq!(code(&appended.response), NONE, "acks={acks}: appended");
            test.clock.advance(ttl_ms);
            let answer = appended.finish().await;
            if acks == 0 {
                assert!(answer.is_none());
                // No answer to count from: the refusal is counted here.
                assert_eq!(refused_count(&test.broker), 1);
            } else {
                let answer = answer.unwrap();
                assert_eq!(code(&answer), NOT_LEADER, "acks={acks}: {answer:?}");
                assert_eq!(answer.responses[0].partition_responses[0].base_offset, -1);
            }
        }
    }

    /// A produce waiting for its fsync whose record is cut meanwhile (another broker was
    /// elected, this one follows it and truncates its diverging log) is answered with an
    /// error, never success: its record is gone.
    #[tokio::test]
    async fn a_produce_truncated_while_it_waits_is_not_acknowledged() {
        for acks in [1, -1] {
            let test = testing::start(
                |config| config.log.flush = "every-batch".to_string(),
                |coordinator| coordinator,
            )
            .await;
            test.stop_tasks();
            test.node
                .create_topic(&test.broker, "t", 1, 1, &BTreeMap::new())
                .await
                .unwrap();
            let appended = append(&test.broker, request("t", acks), 9, ANY_PRODUCER_ID);
            assert_eq!(code(&appended.response), NONE, "acks={acks}: appended");
            assert_eq!(appended.flushes.len(), 1, "waits for its fsync");
            let partition = Arc::clone(&test.broker.topics.get("t").unwrap().partitions[0]);
            let new_leader = Assignment {
                leader_id: 1,
                leader_epoch: 1,
                replicas: vec![0, 1],
                isr: vec![1],
            };
            partition
                .become_role(0, &new_leader, ReplicationConfig::default(), 0)
                .unwrap();
            assert_eq!(partition.truncate_diverging(0, 0).unwrap(), 0);
            let answer = appended.finish().await.unwrap();
            assert_eq!(code(&answer), NOT_LEADER, "acks={acks}: {answer:?}");
        }
    }
}
