//! OffsetCommit: generation-checked commits from group members, or simple commits
//! (generation -1) for groups without members.

use lmq_wire::protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use lmq_wire::protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{check_coordinator, commit_error_code, commit_outcome};
use crate::broker::Broker;
use crate::group::CommitError;
use crate::security::acl::AclOperation;

pub async fn handle(
    broker: &Broker,
    context: &super::RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    // Partitions of unknown topics are refused one by one; the rest commit together. As
    // Kafka: READ on each topic (its partitions TOPIC_AUTHORIZATION_FAILED), READ on the
    // group (every partition GROUP_AUTHORIZATION_FAILED).
    let (commits, refusals) = super::requested_commits(
        broker,
        context,
        request
            .topics
            .iter()
            .map(|topic| (topic.name.0.as_str(), topic.partitions.as_slice())),
    );
    let group = &request.group_id.0;
    let error_code = match context
        .check_group(AclOperation::Read, group)
        .and_then(|()| check_coordinator(broker, group))
    {
        Err(code) => code,
        Ok(()) => {
            let outcome = broker.groups.commit(
                &request.group_id.0,
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.generation_id_or_member_epoch,
                &commits,
                broker.now_ms(),
            );
            match commit_outcome(broker, outcome).await {
                Ok(()) => 0,
                Err(error) => {
                    if let CommitError::Storage(error) = &error {
                        tracing::error!(group = %request.group_id.0, %error, "persisting offsets failed");
                    }
                    commit_error_code(&error)
                }
            }
        }
    };
    let mut response = OffsetCommitResponse::default();
    let mut refusals = refusals.into_iter();
    for topic in request.topics {
        let mut answered = OffsetCommitResponseTopic::default();
        answered.name = topic.name.clone();
        for partition in topic.partitions {
            let mut result = OffsetCommitResponsePartition::default();
            result.partition_index = partition.partition_index;
            result.error_code = refusals.next().flatten().unwrap_or(error_code);
            answered.partitions.push(result);
        }
        response.topics.push(answered);
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::OffsetCommitResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(
            self.topics
                .iter()
                .flat_map(|item| item.partitions.iter().map(|inner| inner.error_code)),
        );
    }
}
