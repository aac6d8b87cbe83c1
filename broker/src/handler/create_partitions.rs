//! CreatePartitions: grow a topic to a new total count.

use lmq_wire::protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use lmq_wire::protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{NONE, str_bytes, topic_error_code};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        match broker.topics.add_partitions(
            &topic.name.0,
            topic.count,
            request.validate_only,
            broker.now_ms(),
        ) {
            Ok(_) => result.error_code = NONE,
            Err(error) => {
                result.error_code = topic_error_code(&error);
                result.error_message = Some(str_bytes(error.to_string()));
            }
        }
        response.results.push(result);
    }
    response
}
