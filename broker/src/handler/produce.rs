//! Produce: append each partition's batch as received (offsets assigned in place), answer
//! per partition. The topic's configs may refuse the batch or have it re-encoded first
//! (`record_checks`: keys of a compacted topic, timestamp bounds, `compression.type`). acks=0 gets no response at all, as in Kafka. In a cluster only the leader
//! appends, and acks=all waits (up to the request's timeout) until the ISR has the batch.
//! With `flush = "every-batch"` the answer also waits for the partition's group commit.
//!
//! Each partition's answer is its own [`PartitionAnswer`]: built at the append, settled
//! (fsync, ISR, leadership) on its own, and put into the response at the end.
//!
//! Transactions: a transactional batch needs the request's transactional id (else every
//! partition is answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka), and where it
//! would start the producer's transaction on a partition (none ongoing there) the
//! transaction coordinator must confirm the partition was added to it first (KIP-890 part 1,
//! [`verify_transactions`] through `Broker::txn_verifier`; without a coordinator installed the
//! batch is refused as retriable). Control batches from clients are refused by the log
//! (INVALID_RECORD).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use lmq_wire::Acks;
use lmq_wire::protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use lmq_wire::protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::oneshot;

use lmq_storage::batch::{BatchView, batch_total_bytes};
use lmq_wire::protocol::ResponseError;

use super::{
    NONE, RequestContext, TRANSACTIONAL_ID_AUTHORIZATION_FAILED, TopicLookup, replica_error_code,
    storage_error_code, store_error_code, str_bytes,
};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::metrics::{ApiErrorLabels, TopicLabels};
use crate::partition::{AppendLost, AppendMark, Partition, ReplicaError};
use crate::record_checks::{self, BatchRefusal, RecordRule};
use crate::replication::AckError;
use crate::security::acl::{AclOperation, ResourceType};
use crate::topic_config::TopicSettings;
use crate::txn_hooks::Verification;
use lmq_storage::producers::VerificationGuard;

/// A produce request whose batches are appended, waiting for their fsync (group commit) and,
/// with acks=all, for the ISR. The connection may read and append its next requests
/// meanwhile, so pipelined requests share fsyncs; answers still go out in request order.
pub struct Appended {
    topics: Vec<TopicAnswer>,
    /// The leadership lease is checked again before the answer.
    cluster: Arc<ClusterNode>,
    /// Refusals of acks=0 produces are counted here: no answer carries them.
    request_errors: Family<ApiErrorLabels, Counter>,
    /// `None`: the request asked for a mode Kafka refuses; it is answered.
    acks: Option<Acks>,
    timeout_ms: i32,
    version: i16,
}

struct TopicAnswer {
    name: TopicName,
    partitions: Vec<PartitionAnswer>,
}

/// One partition's answer in the making.
struct PartitionAnswer {
    answer: PartitionProduceResponse,
    /// The append, while its success still has to be confirmed.
    appended: Option<PendingAppend>,
}

/// An append answered with success so far, and what that success still waits on.
struct PendingAppend {
    partition: Arc<Partition>,
    /// What the append was made under: checked again right before the answer.
    mark: AppendMark,
    /// The group commit (fsync) must reach this offset first.
    flush_to: Option<i64>,
    /// acks=all: the ISR's acknowledgement.
    committed: Option<oneshot::Receiver<Result<(), AckError>>>,
}

impl PartitionAnswer {
    fn new(index: i32) -> Self {
        let mut answer = PartitionProduceResponse::default();
        answer.index = index;
        answer.base_offset = -1;
        answer.log_append_time_ms = -1;
        PartitionAnswer {
            answer,
            appended: None,
        }
    }

    /// Answers with an error: nothing of this partition is acknowledged.
    fn refuse(&mut self, code: i16, message: Option<String>, version: i16) {
        self.answer.error_code = code;
        self.answer.base_offset = -1;
        self.answer.log_append_time_ms = -1;
        if version >= 8 {
            self.answer.error_message = message.map(str_bytes);
        }
        self.appended = None;
    }

    /// Answers a batch the topic's configs refuse: INVALID_TIMESTAMP or INVALID_RECORD, with
    /// the refused records' indexes and reasons (v8+), as Kafka's `RecordValidationException`.
    fn refuse_records(&mut self, refusal: &BatchRefusal, version: i16) {
        let code = match refusal {
            BatchRefusal::Records {
                rule: RecordRule::Timestamp,
                ..
            } => ResponseError::InvalidTimestamp,
            BatchRefusal::Records { .. } | BatchRefusal::Unreadable(_) => {
                ResponseError::InvalidRecord
            }
        };
        self.refuse(code.code(), Some(refusal.to_string()), version);
        if let (BatchRefusal::Records { errors, .. }, 8..) = (refusal, version) {
            self.answer.record_errors = errors
                .iter()
                .map(|error| {
                    let mut record_error = BatchIndexAndErrorMessage::default();
                    record_error.batch_index = error.batch_index;
                    record_error.batch_index_error_message = Some(str_bytes(error.message.clone()));
                    record_error
                })
                .collect();
        }
    }

    /// Waits for what the append's success depends on: its fsync, then (acks=all) the ISR
    /// until `deadline` (REQUEST_TIMED_OUT: written, maybe replicated later, not
    /// acknowledged). A failed fsync answers KAFKA_STORAGE_ERROR.
    async fn settle(&mut self, deadline: tokio::time::Instant, version: i16) {
        let Some(appended) = self.appended.as_mut() else {
            return;
        };
        if let Some(end_offset) = appended.flush_to
            && let Err(error) = appended.partition.flush_to(end_offset).await
        {
            tracing::warn!(%error, "produce not acknowledged: fsync failed");
            self.refuse(storage_error_code(&error), Some(error.to_string()), version);
            return;
        }
        let Some(committed) = appended.committed.take() else {
            return;
        };
        let code = match tokio::time::timeout_at(deadline, committed).await {
            Ok(Ok(Ok(()))) => return,
            Ok(Ok(Err(AckError::NotEnoughReplicas))) => ResponseError::NotEnoughReplicas.code(),
            Ok(Ok(Err(AckError::NotEnoughReplicasAfterAppend))) => {
                ResponseError::NotEnoughReplicasAfterAppend.code()
            }
            // The leader stepped down while the append waited.
            Ok(Ok(Err(AckError::NotLeader)) | Err(_)) => ResponseError::NotLeaderOrFollower.code(),
            Err(_) => ResponseError::RequestTimedOut.code(),
        };
        self.refuse(code, None, version);
    }

    /// Why a success may no longer be given, and the code answered instead: the lease lapsed,
    /// the partition is no longer led in the epoch the append was made in or its log was
    /// truncated since (the record may be gone, or be overwritten by the new leader's
    /// history: NOT_LEADER_OR_FOLLOWER, the client refreshes its metadata and retries), or
    /// the log was reopened after an I/O failure (KAFKA_STORAGE_ERROR, as Kafka answers a
    /// produce whose partition went offline with its log directory).
    fn lost(&self, lease_held: bool) -> Option<(&'static str, ResponseError)> {
        let appended = self.appended.as_ref()?;
        if !lease_held {
            return Some((
                "the leadership lease lapsed before the answer",
                ResponseError::NotLeaderOrFollower,
            ));
        }
        match appended.partition.still_holds(appended.mark) {
            Ok(()) => None,
            Err(AppendLost::NotLeader) => Some((
                "the leadership changed before the answer",
                ResponseError::NotLeaderOrFollower,
            )),
            Err(AppendLost::Truncated) => Some((
                "the log was truncated before the answer",
                ResponseError::NotLeaderOrFollower,
            )),
            Err(AppendLost::LogReplaced) => Some((
                "the log was reopened after an I/O failure before the answer",
                ResponseError::KafkaStorageError,
            )),
        }
    }
}

impl Appended {
    /// The answer, once what it acknowledges is durable; `None` for acks=0.
    pub async fn finish(mut self) -> Option<ProduceResponse> {
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(u64::try_from(self.timeout_ms.max(0)).unwrap_or(0));
        let version = self.version;
        join_all(
            self.topics
                .iter_mut()
                .flat_map(|topic| topic.partitions.iter_mut())
                .map(|partition| partition.settle(deadline, version)),
        )
        .await;
        self.recheck();
        if self.acks == Some(Acks::None) {
            return None;
        }
        let mut response = ProduceResponse::default();
        response.responses = self
            .topics
            .into_iter()
            .map(|topic| {
                let mut answer = TopicProduceResponse::default();
                answer.name = topic.name;
                answer.partition_responses = topic
                    .partitions
                    .into_iter()
                    .map(|partition| partition.answer)
                    .collect();
                answer
            })
            .collect();
        Some(response)
    }

    /// The waits may have outlasted the leadership: an append is acknowledged only if the
    /// lease still holds now and its partition is still led, on the same log, as when it was
    /// appended ([`PartitionAnswer::lost`]).
    fn recheck(&mut self) {
        let lease_held = self.cluster.may_lead();
        let version = self.version;
        for partition in self
            .topics
            .iter_mut()
            .flat_map(|topic| topic.partitions.iter_mut())
        {
            let Some((reason, error)) = partition.lost(lease_held) else {
                continue;
            };
            let code = error.code();
            tracing::info!(
                partition = partition.answer.index,
                reason,
                "produce not acknowledged"
            );
            partition.refuse(code, Some(reason.to_string()), version);
            if self.acks == Some(Acks::None) {
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

/// The transactional batches of one produce that the transaction coordinator refused to
/// let start a transaction on their partition (KIP-890): (topic, partition) → code, reason.
/// With each transactional batch's guard: what the partition showed of its producer when
/// the coordinator was asked (or the transaction was seen ongoing), checked again under the
/// partition's lock at the append, so a marker written meanwhile fails the append instead
/// of letting it start a transaction nobody verified (Kafka's verification guard).
#[derive(Debug, Clone, Default)]
pub struct TxnVerdicts {
    refused: HashMap<(String, i32), (i16, String)>,
    guards: HashMap<(String, i32), VerificationGuard>,
}

/// The transactional batch of a partition's records: (producer id, epoch).
fn transactional_producer(records: &[u8]) -> Option<(i64, i16)> {
    let view = BatchView::new(records).ok()?;
    (view.is_transactional() && !view.is_control() && view.producer_id() >= 0)
        .then(|| (view.producer_id(), view.producer_epoch()))
}

/// Asks the transaction coordinator, once per producer of the request, about every
/// partition where a transactional batch would start the producer's transaction (none is
/// ongoing there): Kafka's verification before the append. Partitions this broker does not
/// lead are left to the append's own refusal.
pub async fn verify_transactions(
    broker: &Broker,
    cluster: &ClusterNode,
    request: &ProduceRequest,
) -> TxnVerdicts {
    let mut verdicts = TxnVerdicts::default();
    let Some(transactional_id) = request.transactional_id.as_ref() else {
        return verdicts;
    };
    let mut asks: HashMap<(i64, i16), Vec<(String, i32)>> = HashMap::new();
    for topic_data in &request.topic_data {
        let topic = TopicLookup::new(broker, &topic_data.name.0);
        for partition_data in &topic_data.partition_data {
            let Some((producer_id, epoch)) = partition_data
                .records
                .as_deref()
                .and_then(transactional_producer)
            else {
                continue;
            };
            let Some(partition) = topic
                .partition(partition_data.index)
                .ok()
                .filter(|partition| partition.is_leader())
            else {
                continue;
            };
            let Ok((ongoing, guard)) = partition.with_log(|log| {
                let producers = log.producers();
                Ok((
                    producers.has_ongoing_transaction(producer_id),
                    producers.verification_guard(producer_id),
                ))
            }) else {
                continue;
            };
            verdicts
                .guards
                .insert((topic_data.name.0.to_string(), partition_data.index), guard);
            if !ongoing {
                asks.entry((producer_id, epoch))
                    .or_default()
                    .push((topic_data.name.0.to_string(), partition_data.index));
            }
        }
    }
    for ((producer_id, producer_epoch), partitions) in asks {
        let ask = crate::txn_hooks::VerifyRequest {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            partitions,
        };
        let answers = match broker.txn_verifier.get() {
            Some(verifier) => verifier.verify(&ask).await,
            None => crate::cluster::txn_verify::verify(broker, cluster, &ask).await,
        };
        for (index, key) in ask.partitions.into_iter().enumerate() {
            let verification = answers
                .get(index)
                .copied()
                .unwrap_or(Verification::Unavailable);
            let refusal = match verification {
                Verification::Added => continue,
                Verification::NotAdded => (
                    ResponseError::InvalidTxnState.code(),
                    "the partition was not added to the transaction".to_string(),
                ),
                Verification::Fenced => (
                    ResponseError::InvalidProducerEpoch.code(),
                    "the producer's epoch is fenced by the transaction coordinator".to_string(),
                ),
                // Kafka answers the coordinator's retriable errors NOT_ENOUGH_REPLICAS, which
                // every producer retries without a metadata refresh.
                Verification::Unavailable => (
                    ResponseError::NotEnoughReplicas.code(),
                    "unable to verify the partition was added to the transaction: \
                     the transaction coordinator is not available"
                        .to_string(),
                ),
            };
            verdicts.refused.insert(key, refusal);
        }
    }
    verdicts
}

/// Appends each partition's batch; [`Appended::finish`] answers.
pub fn append(
    broker: &Broker,
    cluster: &Arc<ClusterNode>,
    context: &RequestContext,
    request: ProduceRequest,
    version: i16,
    producer_ids: ProducerIdsEnd,
    transactions: TxnVerdicts,
) -> Appended {
    let acks = Acks::from_code(request.acks);
    // As Kafka: transactional records need a transactional id, and a transactional producer
    // needs WRITE on it (else every partition is refused), then WRITE on each topic.
    let has_transactional = request
        .topic_data
        .iter()
        .flat_map(|topic| topic.partition_data.iter())
        .filter_map(|partition| partition.records.as_deref())
        .any(|records| transactional_producer(records).is_some());
    let transaction_refused = match request.transactional_id.as_ref() {
        None if has_transactional => Some(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        None => None,
        Some(id) => (!context.authorize(AclOperation::Write, ResourceType::TransactionalId, id))
            .then_some(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
    };
    let appender = Appender {
        broker,
        producer_ids,
        transactions,
        now_ms: broker.now_ms(),
        version,
    };
    let topics = request
        .topic_data
        .into_iter()
        .map(|topic_data| {
            let topic = TopicLookup::new(broker, &topic_data.name.0);
            let refused = transaction_refused.or_else(|| {
                context
                    .check_topic(AclOperation::Write, &topic_data.name.0)
                    .err()
            });
            let log_append_time = topic.uses_log_append_time();
            let partitions = topic_data
                .partition_data
                .into_iter()
                .map(|partition_data| {
                    let mut answer = PartitionAnswer::new(partition_data.index);
                    let Some(acks) = acks else {
                        // Kafka: "Invalid required acks", for every partition.
                        answer.refuse(ResponseError::InvalidRequiredAcks.code(), None, version);
                        return answer;
                    };
                    if let Some(code) = refused {
                        answer.refuse(code, None, version);
                        return answer;
                    }
                    let partition = match topic.writable(cluster, partition_data.index) {
                        Ok(partition) => partition,
                        Err(code) => {
                            answer.refuse(code, None, version);
                            return answer;
                        }
                    };
                    // The log rewrites base offsets in place, so it needs its own copy.
                    let records = partition_data
                        .records
                        .map(|records| records.to_vec())
                        .unwrap_or_default();
                    appender.append(
                        &topic_data.name.0,
                        topic.settings(),
                        partition,
                        records,
                        acks,
                        &mut answer,
                    );
                    if answer.appended.is_some() && !log_append_time {
                        answer.answer.log_append_time_ms = -1;
                    }
                    answer
                })
                .collect();
            TopicAnswer {
                name: topic_data.name,
                partitions,
            }
        })
        .collect();
    Appended {
        topics,
        cluster: Arc::clone(cluster),
        request_errors: broker.metrics.request_errors.clone(),
        acks,
        timeout_ms: request.timeout_ms,
        version,
    }
}

/// What every partition of one produce request is appended with.
struct Appender<'a> {
    broker: &'a Broker,
    producer_ids: ProducerIdsEnd,
    transactions: TxnVerdicts,
    now_ms: i64,
    version: i16,
}

impl Appender<'_> {
    /// Checks one partition's batch against the topic's configs (`record_checks`: keys of a
    /// compacted topic, timestamp bounds, `compression.type`) and appends it as leader,
    /// filling its answer.
    fn append(
        &self,
        topic: &str,
        settings: Option<&TopicSettings>,
        partition: &Arc<Partition>,
        records: Vec<u8>,
        acks: Acks,
        answer: &mut PartitionAnswer,
    ) {
        let version = self.version;
        // Kafka: "Produce requests with version 3+ are only allowed to contain exactly one
        // record batch" per partition.
        let one_batch =
            batch_total_bytes(&records).is_some_and(|total| total == records.len() as u64);
        if !one_batch {
            answer.refuse(
                ResponseError::InvalidRecord.code(),
                Some("a produce request must carry exactly one record batch per partition".into()),
                version,
            );
            return;
        }
        if let Some((code, message)) = self.producer_ids.refusal(&records) {
            answer.refuse(code, Some(message), version);
            return;
        }
        if let Some((code, message)) = self
            .transactions
            .refused
            .get(&(topic.to_string(), partition.index))
        {
            answer.refuse(*code, Some(message.clone()), version);
            return;
        }
        let mut records = match settings {
            Some(settings) => {
                let topic_partition = format!("{topic}-{}", partition.index);
                match record_checks::prepare(settings, &topic_partition, records, self.now_ms) {
                    Ok(records) => records,
                    Err(refusal) => {
                        answer.refuse_records(&refusal, version);
                        return;
                    }
                }
            }
            None => records,
        };
        let metrics = &self.broker.metrics;
        let started = crate::metrics::stopwatch();
        // A transactional batch may start a transaction only as verified (KIP-890).
        let guard = self
            .transactions
            .guards
            .get(&(topic.to_string(), partition.index))
            .copied();
        let appended = if transactional_producer(&records).is_some() {
            let guards: Vec<VerificationGuard> = guard.into_iter().collect();
            partition.append_as_leader_guarded(&mut records, acks, self.now_ms, Some(&guards))
        } else {
            partition.append_as_leader(&mut records, acks, self.now_ms)
        };
        metrics
            .produce_append_duration
            .observe(started.elapsed().as_secs_f64());
        let appended = match appended {
            Ok(appended) => appended,
            Err(error) => {
                if !matches!(error, ReplicaError::NotLeader) {
                    tracing::warn!(topic, partition = partition.index, %error, "produce refused");
                }
                answer.refuse(replica_error_code(&error), Some(error.to_string()), version);
                return;
            }
        };
        let info = appended.info;
        if info.batches > 0 {
            let labels = TopicLabels {
                topic: topic.to_string(),
            };
            metrics.bytes_in.get_or_create(&labels).inc_by(info.bytes);
            let records = u64::try_from(info.last_offset - info.base_offset + 1).unwrap_or(0);
            metrics.records_in.get_or_create(&labels).inc_by(records);
        }
        answer.answer.error_code = NONE;
        answer.answer.base_offset = info.base_offset;
        if version >= 5 {
            answer.answer.log_start_offset = info.log_start_offset;
        }
        answer.answer.log_append_time_ms = info.log_append_time_ms;
        answer.appended = Some(PendingAppend {
            partition: Arc::clone(partition),
            mark: appended.mark,
            flush_to: info
                .durability
                .is_flush_pending()
                .then_some(info.last_offset + 1),
            committed: appended.committed,
        });
    }
}

impl super::ErrorCodes for lmq_wire::protocol::messages::ProduceResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.responses.iter().flat_map(|item| {
            item.partition_responses
                .iter()
                .map(|inner| inner.error_code)
        }));
    }
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

    /// A node under `flush = "every-batch"` with topic `t` (1 partition), tasks stopped.
    async fn every_batch_node() -> testing::TestNode {
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
        test
    }

    /// One record appended to `t` with `acks` (its answer so far: success).
    fn appended_to_t(test: &testing::TestNode, acks: i16) -> Appended {
        let appended = append(
            &test.broker,
            &test.node,
            &super::super::test_context(&test.broker),
            request("t", acks),
            9,
            ANY_PRODUCER_ID,
            TxnVerdicts::default(),
        );
        assert_eq!(
            appended.topics[0].partitions[0].answer.error_code, NONE,
            "acks={acks}: appended"
        );
        appended
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
            let appended = appended_to_t(&test, acks);
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
            let test = every_batch_node().await;
            let appended = appended_to_t(&test, acks);
            assert!(
                appended.topics[0].partitions[0]
                    .appended
                    .as_ref()
                    .is_some_and(|appended| appended.flush_to.is_some()),
                "waits for its fsync"
            );
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

    /// An acks value Kafka does not know (2, -2, ...) is refused for every partition with
    /// INVALID_REQUIRED_ACKS and nothing is appended; it used to be taken as acks=1.
    #[tokio::test]
    async fn an_unknown_acks_value_is_refused_and_appends_nothing() {
        let test = testing::start(|_| {}, |coordinator| coordinator).await;
        test.stop_tasks();
        test.node
            .create_topic(&test.broker, "t", 1, 1, &BTreeMap::new())
            .await
            .unwrap();
        for acks in [2, -2, 42] {
            let answer = append(
                &test.broker,
                &test.node,
                &super::super::test_context(&test.broker),
                request("t", acks),
                9,
                ANY_PRODUCER_ID,
                TxnVerdicts::default(),
            )
            .finish()
            .await
            .unwrap();
            assert_eq!(code(&answer), 21, "acks={acks}: {answer:?}");
        }
        let partition = &test.broker.topics.get("t").unwrap().partitions[0];
        assert_eq!(partition.offsets().unwrap().log_end_offset, 0);
    }

    /// An acks=all produce whose fsync failed is answered with the storage error at once: it
    /// does not wait for the ISR (which its unflushed record never reaches) and is not
    /// answered REQUEST_TIMED_OUT instead.
    #[tokio::test]
    async fn a_produce_whose_fsync_failed_is_answered_without_waiting_for_the_isr() {
        let test = every_batch_node().await;
        let appended = append(
            &test.broker,
            &test.node,
            &super::super::test_context(&test.broker),
            request("t", -1),
            9,
            ANY_PRODUCER_ID,
            TxnVerdicts::default(),
        );
        let pending = appended.topics[0].partitions[0].appended.as_ref().unwrap();
        assert!(pending.committed.is_some(), "waits for the ISR");
        // The log goes out of service before the group commit: the flush fails.
        let partition = Arc::clone(&test.broker.topics.get("t").unwrap().partitions[0]);
        partition.close().unwrap();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(3), appended.finish())
            .await
            .expect("answered before the request timeout (5 s)")
            .unwrap();
        assert_eq!(
            code(&answer),
            ResponseError::KafkaStorageError.code(),
            "{answer:?}"
        );
    }
}
