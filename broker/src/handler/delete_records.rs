//! DeleteRecords: move a partition's log start offset up to a given offset (-1: the high
//! watermark); the answer is the new low watermark.

use lmq_wire::protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use lmq_wire::protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{NONE, UNKNOWN_TOPIC_OR_PARTITION, storage_error_code};
use crate::broker::Broker;

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
                None => result.error_code = UNKNOWN_TOPIC_OR_PARTITION,
                Some(partition) => {
                    let outcome = partition.with_log(|log| {
                        let offset = if partition_request.offset == -1 {
                            log.high_watermark()
                        } else {
                            partition_request.offset
                        };
                        log.advance_log_start(offset)
                    });
                    match outcome {
                        Ok(low_watermark) => {
                            result.error_code = NONE;
                            result.low_watermark = low_watermark;
                        }
                        Err(error) => result.error_code = storage_error_code(&error),
                    }
                }
            }
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    response
}
