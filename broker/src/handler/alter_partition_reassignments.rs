//! AlterPartitionReassignments (v0-1): start or cancel replica moves. They go into the
//! cluster metadata and the controller completes each once its new replicas are in sync.

use lmq_wire::protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use lmq_wire::protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};

use super::{NONE, store_error_code, str_bytes};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::cluster::reassign::ReplicaCount;
use crate::cluster::store::StoreError;

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let moves: Vec<(String, i32, Option<Vec<i32>>)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    topic.name.0.to_string(),
                    partition.partition_index,
                    partition
                        .replicas
                        .as_ref()
                        .map(|replicas| replicas.iter().map(|id| id.0).collect()),
                )
            })
        })
        .collect();
    // v0 predates KIP-860: changing the replica count was always allowed.
    let replica_count = if version == 0 || request.allow_replication_factor_change {
        ReplicaCount::MayChange
    } else {
        ReplicaCount::MustStay
    };
    let outcomes: Vec<(i16, Option<String>)> =
        match cluster.reassign(broker, &moves, replica_count).await {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    Ok(()) => (NONE, None),
                    Err(error) => {
                        let message = error.to_string();
                        (
                            store_error_code(&StoreError::Metadata(error)),
                            Some(message),
                        )
                    }
                })
                .collect(),
            Err(error) => {
                let mut response = AlterPartitionReassignmentsResponse::default();
                response.error_code = store_error_code(&error);
                response.error_message = Some(str_bytes(error.to_string()));
                return response;
            }
        };
    let mut response = AlterPartitionReassignmentsResponse::default();
    response.allow_replication_factor_change = request.allow_replication_factor_change;
    let mut outcomes = outcomes.into_iter();
    for topic in request.topics {
        let mut answered = ReassignableTopicResponse::default();
        answered.name = topic.name.clone();
        for partition in topic.partitions {
            let (code, message) = outcomes.next().unwrap_or((NONE, None));
            let mut result = ReassignablePartitionResponse::default();
            result.partition_index = partition.partition_index;
            result.error_code = code;
            result.error_message = message.map(str_bytes);
            answered.partitions.push(result);
        }
        response.responses.push(answered);
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::AlterPartitionReassignmentsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
        codes.extend(
            self.responses
                .iter()
                .flat_map(|item| item.partitions.iter().map(|inner| inner.error_code)),
        );
    }
}
