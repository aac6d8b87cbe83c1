//! CreatePartitions: grow a topic to a new total count through the cluster metadata, new
//! partitions with the topic's replication factor.

use lmq_wire::protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use lmq_wire::protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{NONE, refuse_internal_topic, store_error_code, str_bytes, topic_error_code};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::cluster::store::StoreError;
use crate::topics::{PARTITIONS_MAX, TopicError};

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        // A group's offsets partition is its id's hash modulo the count: more partitions
        // would move groups away from their committed offsets.
        let outcome =
            if let Err(refused) = refuse_internal_topic(&topic.name.0, "Adding partitions") {
                Err(refused)
            } else if !(1..=PARTITIONS_MAX).contains(&topic.count) {
                let error = TopicError::InvalidPartitions(topic.count);
                Err((topic_error_code(&error), error.to_string()))
            } else if request.validate_only {
                // The change the metadata would make, on a copy.
                let view = cluster.view();
                let total = usize::try_from(topic.count).unwrap_or(0);
                view.metadata
                    .clone()
                    .add_partitions(&topic.name.0, total, &view.live_brokers(), 0)
                    .map_err(|error| {
                        let message = error.to_string();
                        (store_error_code(&StoreError::Metadata(error)), message)
                    })
            } else {
                cluster
                    .add_partitions(broker, &topic.name.0, topic.count)
                    .await
                    .map_err(|error| (store_error_code(&error), error.to_string()))
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

impl super::ErrorCodes for lmq_wire::protocol::messages::CreatePartitionsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.results.iter().map(|item| item.error_code));
    }
}
