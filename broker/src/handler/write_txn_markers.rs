//! WriteTxnMarkers (v1): the transaction coordinator ends a producer's transaction on each
//! partition it touched by writing a COMMIT or ABORT marker (a control batch) to the
//! partition's leader, as Kafka's `handleWriteTxnMarkersRequest`: a broker sends it (a
//! connection proven as a broker), or an administrator with CLUSTER_ACTION on the cluster
//! (anyone without an authorizer, as Kafka: `kafka-transactions.sh abort`), each
//! marker is appended with acks=all semantics (answered once the ISR has it, or the
//! request's time is up) and each partition is answered on its own: UNKNOWN_TOPIC_OR_PARTITION,
//! NOT_LEADER_OR_FOLLOWER, INVALID_PRODUCER_EPOCH (an older producer epoch),
//! TRANSACTION_COORDINATOR_FENCED (an older coordinator epoch), NOT_ENOUGH_REPLICAS,
//! REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR. A marker on `__consumer_offsets` is then told to
//! the group coordinator (`GroupCoordinator::complete_transaction`), which makes the producer's
//! transactional offset commits visible or drops them.
//!
//! v1 carries no transaction version, so the producer epoch is checked as Kafka checks
//! versions 0 and 1 (the marker's epoch at least the producer's); a marker with a newer
//! epoch (KIP-890's bump at EndTxn) becomes the producer's epoch.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use lmq_storage::control::{MarkerKind, TxnMarker};
use lmq_storage::producers::MarkerEpochRule;
use lmq_wire::Acks;
use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use lmq_wire::protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{
    CLUSTER_AUTHORIZATION_FAILED, NONE, RequestContext, TopicLookup, UNKNOWN_TOPIC_OR_PARTITION,
    replica_error_code, storage_error_code,
};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::group::offsets::OFFSETS_TOPIC;
use crate::partition::{AppendLost, LeaderAppend, Partition};
use crate::replication::AckError;
use crate::security::acl::AclOperation;

/// How long a marker waits for the ISR: Kafka's `request.timeout.ms` default, which it uses
/// for markers.
const MARKER_TIMEOUT_MS: u64 = 30_000;

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    context: &RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    // As Kafka: CLUSTER_ACTION on the cluster, which a proven broker connection has, and
    // everyone without an authorizer (`kafka-transactions.sh abort` of a hanging
    // transaction writes its marker so).
    let allowed = context.session.replica().is_some()
        || context.authorize_cluster(AclOperation::ClusterAction);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(MARKER_TIMEOUT_MS);
    let now_ms = broker.now_ms();
    let mut pending = Vec::new();
    let mut response = WriteTxnMarkersResponse::default();
    for marker in &request.markers {
        let kind = if marker.transaction_result {
            MarkerKind::Commit
        } else {
            MarkerKind::Abort
        };
        let txn_marker = TxnMarker {
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            kind,
            timestamp_ms: now_ms,
        };
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = marker.producer_id;
        for topic in &marker.topics {
            let lookup = TopicLookup::new(broker, &topic.name.0);
            let mut topic_result = WritableTxnMarkerTopicResult::default();
            topic_result.name = topic.name.clone();
            for &index in &topic.partition_indexes {
                let mut answer = WritableTxnMarkerPartitionResult::default();
                answer.partition_index = index;
                answer.error_code = if allowed {
                    match append(cluster, &lookup, index, &txn_marker, now_ms) {
                        Ok(appended) => {
                            pending.push((
                                // Where the answer goes: this marker's, this topic's
                                // (both pushed after their loops).
                                (response.markers.len(), result.topics.len(), index),
                                appended,
                                topic.name.0.to_string(),
                                txn_marker,
                            ));
                            NONE
                        }
                        Err(code) => code,
                    }
                } else {
                    CLUSTER_AUTHORIZATION_FAILED
                };
                topic_result.partitions.push(answer);
            }
            result.topics.push(topic_result);
        }
        response.markers.push(result);
    }
    let settled = join_all(
        pending
            .into_iter()
            .map(|(at, appended, topic, marker)| async move {
                (at, settle(appended, deadline).await, topic, marker)
            }),
    )
    .await;
    let lease_held = cluster.may_lead();
    for ((marker_index, topic_index, index), outcome, topic, marker) in settled {
        let outcome = outcome.and_then(|partition| {
            if !lease_held {
                return Err(ResponseError::NotLeaderOrFollower.code());
            }
            Ok(partition)
        });
        let code = match outcome {
            Ok(_) if topic == OFFSETS_TOPIC => {
                broker.groups.complete_transaction(
                    usize::try_from(index).unwrap_or(0),
                    marker.producer_id,
                    marker.kind == MarkerKind::Commit,
                );
                NONE
            }
            Ok(_) => NONE,
            Err(code) => code,
        };
        if let Some(answer) = response
            .markers
            .get_mut(marker_index)
            .and_then(|result| result.topics.get_mut(topic_index))
            .and_then(|topic| {
                topic
                    .partitions
                    .iter_mut()
                    .find(|partition| partition.partition_index == index)
            })
        {
            answer.error_code = code;
        }
    }
    response
}

/// A marker appended, waiting for what its success depends on.
struct Appended {
    partition: Arc<Partition>,
    append: LeaderAppend,
}

/// Appends the marker to the partition this broker leads.
fn append(
    cluster: &ClusterNode,
    lookup: &TopicLookup,
    index: i32,
    marker: &TxnMarker,
    now_ms: i64,
) -> Result<Appended, i16> {
    let partition = lookup
        .partition(index)
        .map_err(|_| UNKNOWN_TOPIC_OR_PARTITION)?;
    if !cluster.may_lead() {
        return Err(ResponseError::NotLeaderOrFollower.code());
    }
    let (append, _) = partition
        .append_marker_as_leader(marker, MarkerEpochRule::SameOrNewer, Acks::All, now_ms)
        .map_err(|error| replica_error_code(&error))?;
    Ok(Appended {
        partition: Arc::clone(partition),
        append,
    })
}

/// Waits for the marker's fsync (group commit) and the ISR until `deadline`, then checks
/// that the append still holds (same leader epoch, log and no truncation), as a produce's
/// answer does.
async fn settle(appended: Appended, deadline: tokio::time::Instant) -> Result<Arc<Partition>, i16> {
    let Appended { partition, append } = appended;
    let info = append.info;
    if info.durability.is_flush_pending()
        && let Err(error) = partition.flush_to(info.last_offset + 1).await
    {
        tracing::warn!(%error, "transaction marker not acknowledged: fsync failed");
        return Err(storage_error_code(&error));
    }
    if let Some(committed) = append.committed {
        match tokio::time::timeout_at(deadline, committed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(AckError::NotEnoughReplicas))) => {
                return Err(ResponseError::NotEnoughReplicas.code());
            }
            Ok(Ok(Err(AckError::NotEnoughReplicasAfterAppend))) => {
                return Err(ResponseError::NotEnoughReplicasAfterAppend.code());
            }
            Ok(Ok(Err(AckError::NotLeader)) | Err(_)) => {
                return Err(ResponseError::NotLeaderOrFollower.code());
            }
            Err(_) => return Err(ResponseError::RequestTimedOut.code()),
        }
    }
    match partition.still_holds(append.mark) {
        Ok(()) => Ok(partition),
        Err(AppendLost::LogReplaced) => Err(ResponseError::KafkaStorageError.code()),
        Err(AppendLost::NotLeader | AppendLost::Truncated) => {
            Err(ResponseError::NotLeaderOrFollower.code())
        }
    }
}

impl super::ErrorCodes for WriteTxnMarkersResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.markers.iter().flat_map(|marker| {
            marker.topics.iter().flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| partition.error_code)
            })
        }));
    }
}
