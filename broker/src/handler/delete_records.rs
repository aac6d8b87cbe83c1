//! DeleteRecords: move a partition's log start offset up to a given offset (-1: the high
//! watermark) on its leader (followers take it from the leader's fetch answers); the answer
//! is the leader's new low watermark. Internal topics are refused, as Kafka's ReplicaManager
//! does.

use lmq_wire::protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use lmq_wire::protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use lmq_wire::protocol::ResponseError;

use super::{NONE, UNKNOWN_TOPIC_OR_PARTITION, replica_error_code};
use crate::broker::Broker;
use crate::topics::is_internal_topic;

pub fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic_request in request.topics {
        let topic = broker.topics.get(&topic_request.name.0);
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic_request.name.clone();
        for partition_request in topic_request.partitions {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = partition_request.partition_index;
            result.low_watermark = -1;
            let partition = topic.as_ref().and_then(|topic| {
                usize::try_from(partition_request.partition_index)
                    .ok()
                    .and_then(|index| topic.partitions.get(index))
            });
            match partition {
                // Kafka: "Cannot delete records of internal topic" (no message field here).
                _ if is_internal_topic(&topic_request.name.0) => {
                    result.error_code = ResponseError::InvalidTopicException.code();
                }
                None => result.error_code = UNKNOWN_TOPIC_OR_PARTITION,
                Some(_) if broker.cluster().is_some_and(|cluster| !cluster.may_lead()) => {
                    result.error_code = ResponseError::NotLeaderOrFollower.code();
                }
                Some(partition) => match partition.delete_records(partition_request.offset) {
                    Ok(low_watermark) => {
                        result.error_code = NONE;
                        result.low_watermark = low_watermark;
                    }
                    Err(error) => result.error_code = replica_error_code(&error),
                },
            }
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    response
}
