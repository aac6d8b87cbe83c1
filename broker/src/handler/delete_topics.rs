//! DeleteTopics: by name (v1-5) or by name or topic id (v6).

use lmq_wire::protocol::messages::delete_topics_response::DeletableTopicResult;
use lmq_wire::protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{NONE, str_bytes, topic_error_code, topic_name};
use crate::broker::Broker;
use crate::topics::TopicError;

pub fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> = request
        .topic_names
        .into_iter()
        .map(|name| (Some(name), uuid::Uuid::nil()))
        .collect();
    targets.extend(
        request
            .topics
            .into_iter()
            .map(|topic| (topic.name, topic.topic_id)),
    );
    let mut response = DeleteTopicsResponse::default();
    for (requested_name, topic_id) in targets {
        let name = requested_name
            .as_ref()
            .map(|name| name.0.to_string())
            .or_else(|| {
                broker
                    .topics
                    .list()
                    .into_iter()
                    .find(|topic| topic.id == topic_id)
                    .map(|topic| topic.name.clone())
            });
        let mut result = DeletableTopicResult::default();
        result.name = requested_name.clone();
        if version >= 6 {
            result.topic_id = topic_id;
        }
        let outcome = match &name {
            Some(name) => broker.topics.delete(name),
            None => Err(TopicError::Unknown(topic_id.to_string())),
        };
        match outcome {
            Ok(topic) => {
                result.error_code = NONE;
                result.name = Some(topic_name(topic.name.clone()));
                if version >= 6 {
                    result.topic_id = topic.id;
                }
            }
            Err(error) => {
                result.error_code = topic_error_code(&error);
                if version >= 5 {
                    result.error_message = Some(str_bytes(error.to_string()));
                }
            }
        }
        response.responses.push(result);
    }
    response
}
