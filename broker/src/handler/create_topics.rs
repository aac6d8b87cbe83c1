//! CreateTopics: validate name, partitions, replication factor and configs; create unless
//! `validate_only`.

use std::collections::BTreeMap;

use lmq_wire::protocol::messages::create_topics_response::CreatableTopicResult;
use lmq_wire::protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{NONE, str_bytes, topic_error_code};
use crate::broker::Broker;
use crate::topics::{NewTopic, TopicError};

pub fn handle(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    for creatable in request.topics {
        let mut result = CreatableTopicResult::default();
        result.name = creatable.name.clone();
        let mut configs = BTreeMap::new();
        for config in &creatable.configs {
            if let Some(value) = &config.value {
                configs.insert(config.name.to_string(), value.to_string());
            }
        }
        // Manual assignments name replicas per partition; on one node they must name it.
        let (partitions, replication_factor) = if creatable.assignments.is_empty() {
            (creatable.num_partitions, creatable.replication_factor)
        } else {
            let replicas = creatable.assignments[0].broker_ids.len();
            (
                i32::try_from(creatable.assignments.len()).unwrap_or(i32::MAX),
                i16::try_from(replicas).unwrap_or(i16::MAX),
            )
        };
        let new = NewTopic {
            name: creatable.name.0.to_string(),
            partitions,
            replication_factor,
            configs,
        };
        let outcome: Result<(uuid::Uuid, i32), TopicError> = if request.validate_only {
            broker
                .topics
                .validate(&new)
                .map(|partitions| (uuid::Uuid::nil(), partitions))
        } else {
            broker.topics.create(&new, broker.now_ms()).map(|topic| {
                (
                    topic.id,
                    i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
                )
            })
        };
        match outcome {
            Ok((topic_id, partitions)) => {
                result.error_code = NONE;
                if version >= 7 {
                    result.topic_id = topic_id;
                }
                if version >= 5 {
                    result.num_partitions = partitions;
                    result.replication_factor = 1;
                }
            }
            Err(error) => {
                result.error_code = topic_error_code(&error);
                result.error_message = Some(str_bytes(error.to_string()));
            }
        }
        response.topics.push(result);
    }
    response
}
