//! CreatePartitions: grow a topic to a new total count (in a cluster, through the cluster
//! metadata, new partitions with the topic's replication factor).

use lmq_wire::protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use lmq_wire::protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{NONE, store_error_code, str_bytes, topic_error_code};
use crate::broker::Broker;
use crate::topics::PARTITIONS_MAX;

pub async fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        let outcome = match broker.cluster() {
            Some(cluster) if !request.validate_only && topic.count <= PARTITIONS_MAX => cluster
                .add_partitions(broker, &topic.name.0, topic.count)
                .await
                .map_err(|error| (store_error_code(&error), error.to_string())),
            _ => broker
                .topics
                .add_partitions(
                    &topic.name.0,
                    topic.count,
                    request.validate_only,
                    broker.now_ms(),
                )
                .map(|_| ())
                .map_err(|error| (topic_error_code(&error), error.to_string())),
        };
        match outcome {
            Ok(()) => result.error_code = NONE,
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(message));
            }
        }
        response.results.push(result);
    }
    response
}
