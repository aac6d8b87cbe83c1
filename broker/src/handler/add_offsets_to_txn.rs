//! AddOffsetsToTxn (v0-4): adds a consumer group's `__consumer_offsets` partition to the
//! transaction, so the offsets the producer then commits with TxnOffsetCommit become
//! visible with the transaction's COMMIT marker there (or are dropped with its ABORT).

use lmq_wire::protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::broker::Broker;
use crate::coordinator_log::partition_for;
use crate::group::offsets::OFFSETS_TOPIC;
use crate::security::acl::{AclOperation, ResourceType};
use crate::txn::state::AddPartitionsRequest;
use crate::txn::{TopicPartition, TransactionVersion};

pub async fn handle(
    broker: &Broker,
    cluster: &crate::cluster::ClusterNode,
    context: &super::RequestContext,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let mut response = AddOffsetsToTxnResponse::default();
    let id = request.transactional_id.0.to_string();
    let group = request.group_id.0.to_string();
    if !context.authorize(AclOperation::Write, ResourceType::TransactionalId, &id) {
        response.error_code = super::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return response;
    }
    if let Err(code) = context.check_group(AclOperation::Read, &group) {
        response.error_code = code;
        return response;
    }
    // The group's partition as the cluster has the offsets topic (created by now: the
    // producer's consumer found its coordinator), else as it will be created.
    let partitions = cluster.view().metadata.topics.get(OFFSETS_TOPIC).map_or(
        usize::try_from(broker.config.group.offsets_topic_partitions).unwrap_or(1),
        |topic| topic.partitions.len(),
    );
    let partition = i32::try_from(partition_for(&group, partitions)).unwrap_or(0);
    let added = broker
        .transactions
        .add_partitions(
            AddPartitionsRequest {
                transactional_id: id,
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
                partitions: [TopicPartition::new(OFFSETS_TOPIC, partition)].into(),
                client_version: TransactionVersion::V0,
            },
            broker.now_ms(),
        )
        .await;
    if let Err(error) = added {
        response.error_code = super::txn_error_code(error, version >= 2);
    }
    response
}

impl super::ErrorCodes for AddOffsetsToTxnResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
