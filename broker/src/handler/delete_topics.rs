//! DeleteTopics: by name (v1-5) or by name or topic id (v6), from the cluster metadata
//! (every replica deletes its copy when it sees the change).

use std::collections::HashMap;

use lmq_wire::protocol::messages::delete_topics_response::DeletableTopicResult;
use lmq_wire::protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{NONE, refuse_internal_topic, str_bytes, topic_error_code, topic_name, topic_outcomes};
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
    // Names by topic id, made once (not a scan of every topic per id asked for), and the ids
    // of the topics before any is deleted.
    let view = cluster.view();
    let by_id: HashMap<uuid::Uuid, &str> = if targets.iter().any(|(name, _)| name.is_none()) {
        view.metadata
            .topics
            .iter()
            .map(|(name, topic)| (topic.id, name.as_str()))
            .collect()
    } else {
        HashMap::new()
    };
    let names: Vec<Option<String>> = targets
        .iter()
        .map(|(requested_name, topic_id)| match requested_name {
            Some(name) => Some(name.0.to_string()),
            None => by_id.get(topic_id).map(|name| (*name).to_string()),
        })
        .collect();
    // Every named topic is deleted with one metadata write (each with its own outcome);
    // internal topics are refused before.
    let to_delete: Vec<String> = names
        .iter()
        .flatten()
        .filter(|name| refuse_internal_topic(name, "Deletion").is_ok())
        .cloned()
        .collect();
    let deleted = if to_delete.is_empty() {
        Ok(Vec::new())
    } else {
        cluster.delete_topics(broker, &to_delete).await
    };
    let mut deleted = topic_outcomes(deleted, to_delete.len());
    let mut response = DeleteTopicsResponse::default();
    for ((requested_name, topic_id), name) in targets.into_iter().zip(names) {
        let mut result = DeletableTopicResult::default();
        result.name = requested_name.clone();
        if version >= 6 {
            result.topic_id = topic_id;
        }
        let outcome = match name {
            Some(name) => match refuse_internal_topic(&name, "Deletion") {
                Err(refused) => Err(refused),
                Ok(()) => {
                    let id = view.metadata.topics.get(&name).map(|topic| topic.id);
                    deleted
                        .next()
                        .unwrap_or(Ok(()))
                        .map(|()| (name, id.unwrap_or(topic_id)))
                }
            },
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

impl super::ErrorCodes for lmq_wire::protocol::messages::DeleteTopicsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.responses.iter().map(|item| item.error_code));
    }
}
