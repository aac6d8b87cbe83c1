//! TxnOffsetCommit (v0-5): a transactional producer commits a consumer group's offsets as
//! part of its transaction (`sendOffsetsToTransaction`). Sent to the group coordinator, which
//! appends them as the producer's transactional batch; OffsetFetch shows them only once the
//! transaction's COMMIT marker reaches the group's offsets partition.

use lmq_wire::protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use lmq_wire::protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::{check_coordinator, commit_error_code, commit_outcome};
use crate::broker::Broker;
use crate::group::CommitError;
use crate::security::acl::{AclOperation, ResourceType};

pub async fn handle(
    broker: &Broker,
    context: &super::RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    // As OffsetCommit: partitions of unknown or unreadable topics are refused one by one,
    // the rest commit together.
    let (commits, refusals) = super::requested_commits(
        broker,
        context,
        request
            .topics
            .iter()
            .map(|topic| (topic.name.0.as_str(), topic.partitions.as_slice())),
    );
    let group = &request.group_id.0;
    let transactional_id = &request.transactional_id.0;
    let error_code = if !context.authorize(
        AclOperation::Write,
        ResourceType::TransactionalId,
        transactional_id,
    ) {
        super::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else {
        match context
            .check_group(AclOperation::Read, group)
            .and_then(|()| check_coordinator(broker, group))
        {
            Err(code) => code,
            Ok(()) => {
                let outcome = broker.groups.txn_commit(
                    group,
                    (request.producer_id.0, request.producer_epoch),
                    (
                        &request.member_id,
                        request.group_instance_id.as_deref(),
                        request.generation_id,
                    ),
                    &commits,
                    broker.now_ms(),
                );
                match commit_outcome(broker, outcome).await {
                    Ok(()) => 0,
                    Err(error) => {
                        if let CommitError::Storage(error) = &error {
                            tracing::error!(group = %group, %error, "persisting transactional offsets failed");
                        }
                        commit_error_code(&error)
                    }
                }
            }
        }
    };
    let mut response = TxnOffsetCommitResponse::default();
    let mut refusals = refusals.into_iter();
    for topic in request.topics {
        let mut answered = TxnOffsetCommitResponseTopic::default();
        answered.name = topic.name.clone();
        for partition in topic.partitions {
            let mut result = TxnOffsetCommitResponsePartition::default();
            result.partition_index = partition.partition_index;
            result.error_code = refusals.next().flatten().unwrap_or(error_code);
            answered.partitions.push(result);
        }
        response.topics.push(answered);
    }
    response
}

impl super::ErrorCodes for TxnOffsetCommitResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.topics.iter().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| partition.error_code)
        }));
    }
}
