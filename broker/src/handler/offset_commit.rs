//! OffsetCommit: generation-checked commits from group members, or simple commits
//! (generation -1) for groups without members.

use lmq_wire::protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use lmq_wire::protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{UNKNOWN_TOPIC_OR_PARTITION, check_coordinator, commit_error_code, commit_outcome};
use crate::broker::Broker;
use crate::group::{CommitError, OffsetCommit};

pub async fn handle(broker: &Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    // Partitions of unknown topics are refused one by one; the rest commit together.
    // `exists` follows the request's order, so the answer needs no search per partition.
    let mut commits = Vec::new();
    let mut exists_in_order = Vec::new();
    for topic in &request.topics {
        let known = broker.topics.get(&topic.name.0);
        for partition in &topic.partitions {
            let exists = known.as_ref().is_some_and(|known| {
                usize::try_from(partition.partition_index)
                    .is_ok_and(|index| index < known.partitions.len())
            });
            exists_in_order.push(exists);
            if exists {
                commits.push(OffsetCommit {
                    topic: topic.name.0.to_string(),
                    partition: partition.partition_index,
                    offset: partition.committed_offset,
                    leader_epoch: partition.committed_leader_epoch,
                    metadata: partition
                        .committed_metadata
                        .as_ref()
                        .map(ToString::to_string),
                });
            }
        }
    }
    let error_code = match check_coordinator(broker, &request.group_id.0) {
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
    let mut exists = exists_in_order.into_iter();
    for topic in request.topics {
        let mut answered = OffsetCommitResponseTopic::default();
        answered.name = topic.name.clone();
        for partition in topic.partitions {
            let mut result = OffsetCommitResponsePartition::default();
            result.partition_index = partition.partition_index;
            result.error_code = if exists.next().unwrap_or(false) {
                error_code
            } else {
                UNKNOWN_TOPIC_OR_PARTITION
            };
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
