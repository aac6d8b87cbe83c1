//! DeleteTopics: by name (v1-5) or by name or topic id (v6), from the cluster metadata
//! (every replica deletes its copy when it sees the change).

use std::collections::HashMap;

use lmq_wire::protocol::messages::delete_topics_response::DeletableTopicResult;
use lmq_wire::protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{NONE, store_error_code, str_bytes, topic_error_code, topic_name};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::topics::TopicError;

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
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
    // Names by topic id, made once (not a scan of every topic per id asked for).
    let by_id: HashMap<uuid::Uuid, String> = if targets.iter().any(|(name, _)| name.is_none()) {
        let view = cluster.view();
        view.metadata
            .topics
            .iter()
            .map(|(name, topic)| (topic.id, name.clone()))
            .collect()
    } else {
        HashMap::new()
    };
    let mut response = DeleteTopicsResponse::default();
    for (requested_name, topic_id) in targets {
        let name = requested_name
            .as_ref()
            .map(|name| name.0.to_string())
            .or_else(|| {
                // Only while it still exists (an earlier entry may have deleted it).
                by_id.get(&topic_id).cloned().filter(|name| {
                    cluster
                        .view()
                        .metadata
                        .topics
                        .get(name)
                        .is_some_and(|topic| topic.id == topic_id)
                })
            });
        let mut result = DeletableTopicResult::default();
        result.name = requested_name.clone();
        if version >= 6 {
            result.topic_id = topic_id;
        }
        let outcome = match &name {
            Some(name) => {
                let id = cluster
                    .view()
                    .metadata
                    .topics
                    .get(name)
                    .map(|topic| topic.id);
                cluster
                    .delete_topic(broker, name)
                    .await
                    .map(|()| (name.clone(), id.unwrap_or(topic_id)))
                    .map_err(|error| (store_error_code(&error), error.to_string()))
            }
            None => {
                let error = TopicError::Unknown(topic_id.to_string());
                Err((topic_error_code(&error), error.to_string()))
            }
        };
        match outcome {
            Ok((name, id)) => {
                result.error_code = NONE;
                result.name = Some(topic_name(name));
                if version >= 6 {
                    result.topic_id = id;
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                if version >= 5 {
                    result.error_message = Some(str_bytes(message));
                }
            }
        }
        response.responses.push(result);
    }
    response
}
