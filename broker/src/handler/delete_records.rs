//! DeleteRecords: move a partition's log start offset up to a given offset (-1: the high
//! watermark) on its leader (followers take it from the leader's fetch answers); the answer
//! is the leader's new low watermark. Internal topics are refused, as Kafka's ReplicaManager
//! does.

use lmq_wire::protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use lmq_wire::protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{NONE, TopicLookup, replica_error_code};
use crate::broker::Broker;
use crate::cluster::ClusterNode;

pub fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic_request in request.topics {
        let topic = TopicLookup::new(broker, &topic_request.name.0);
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic_request.name.clone();
        for partition_request in topic_request.partitions {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = partition_request.partition_index;
            result.low_watermark = -1;
            // Kafka: "Cannot delete records of internal topic" (no message field here).
            match topic.writable(cluster, partition_request.partition_index) {
                Err(code) => result.error_code = code,
                Ok(partition) => match partition.delete_records(partition_request.offset) {
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

impl super::ErrorCodes for lmq_wire::protocol::messages::DeleteRecordsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(
            self.topics
                .iter()
                .flat_map(|item| item.partitions.iter().map(|inner| inner.error_code)),
        );
    }
}
