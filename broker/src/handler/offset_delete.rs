//! OffsetDelete: remove committed offsets of partitions of a group that has no members.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use lmq_wire::protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{check_coordinator, commit_error_code, commit_outcome};
use crate::broker::Broker;
use crate::group::CommitError;
use crate::group::state::GroupError;

pub async fn handle(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.0.to_string(), partition.partition_index))
        })
        .collect();
    let mut response = OffsetDeleteResponse::default();
    if let Err(code) = check_coordinator(broker, &request.group_id.0) {
        response.error_code = code;
        return response;
    }
    let deleted = broker
        .groups
        .delete_offsets(&request.group_id.0, &partitions, broker.now_ms());
    let partition_error = match commit_outcome(broker, deleted).await {
        Ok(()) => 0,
        // Kafka refuses per partition when active members may still consume it.
        Err(CommitError::Group(GroupError::NonEmptyGroup)) => {
            ResponseError::GroupSubscribedToTopic.code()
        }
        Err(error) => {
            response.error_code = commit_error_code(&error);
            return response;
        }
    };
    for topic in request.topics {
        let mut answered = OffsetDeleteResponseTopic::default();
        answered.name = topic.name.clone();
        answered.partitions = topic
            .partitions
            .into_iter()
            .map(|partition| {
                let mut result = OffsetDeleteResponsePartition::default();
                result.partition_index = partition.partition_index;
                result.error_code = partition_error;
                result
            })
            .collect();
        response.topics.push(answered);
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::OffsetDeleteResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
        codes.extend(
            self.topics
                .iter()
                .flat_map(|item| item.partitions.iter().map(|inner| inner.error_code)),
        );
    }
}
