//! CreateTopics: validate name, partitions, replication factor and configs; create unless
//! `validate_only`. The topic goes into the cluster metadata with replicas spread over the
//! live brokers (manual assignments are not honoured yet: replicas are
//! always assigned automatically, with the requested factor).

use std::collections::BTreeMap;

use lmq_wire::protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use lmq_wire::protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{
    NONE, refuse_internal_topic, store_error_code, str_bytes, topic_error_code, topic_outcomes,
};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::cluster::metadata::assign_replicas;
use crate::topic_config::{Checks, TopicSettings};
use crate::topics::{NewTopic, PARTITIONS_MAX, TopicError, validate_topic_name};

/// Valid: partitions and replication factor; or the error code and message.
type Checked = Result<(i32, i16), (i16, String)>;

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut checked: Vec<(NewTopic, Checked)> = Vec::with_capacity(request.topics.len());
    for creatable in &request.topics {
        let mut configs = BTreeMap::new();
        for config in &creatable.configs {
            if let Some(value) = &config.value {
                configs.insert(config.name.to_string(), value.to_string());
            }
        }
        // Manual assignments name replicas per partition (honoured only in count, so far).
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
        let outcome = check(broker, cluster, &new, request.validate_only);
        checked.push((new, outcome));
    }
    // The valid topics are created with one metadata write.
    if !request.validate_only {
        let valid: Vec<NewTopic> = checked
            .iter()
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(new, _)| new.clone())
            .collect();
        let created = if valid.is_empty() {
            Ok(Vec::new())
        } else {
            cluster.create_topics(broker, &valid).await
        };
        let mut created = topic_outcomes(created, valid.len());
        for (_, outcome) in &mut checked {
            if outcome.is_ok()
                && let Some(Err(refused)) = created.next()
            {
                *outcome = Err(refused);
            }
        }
    }
    let view = cluster.view();
    let mut response = CreateTopicsResponse::default();
    for (creatable, (new, outcome)) in request.topics.into_iter().zip(checked) {
        let mut result = CreatableTopicResult::default();
        result.name = creatable.name.clone();
        match outcome {
            Ok((partitions, replication_factor)) => {
                result.error_code = NONE;
                result.error_message = None;
                if version >= 7 {
                    result.topic_id = if request.validate_only {
                        uuid::Uuid::nil()
                    } else {
                        view.metadata
                            .topics
                            .get(&new.name)
                            .map_or(uuid::Uuid::nil(), |topic| topic.id)
                    };
                }
                if version >= 5 {
                    result.num_partitions = partitions;
                    result.replication_factor = replication_factor;
                    // As Kafka: the new topic's effective configs (none when only validated).
                    let configs = super::describe_configs::topic_configs(broker, &new.name);
                    result.configs = Some(
                        configs
                            .into_iter()
                            .map(|(name, value, source)| {
                                let mut config = CreatableTopicConfigs::default();
                                config.name = str_bytes(name);
                                config.value = Some(str_bytes(value));
                                config.config_source = source;
                                config
                            })
                            .collect(),
                    );
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(message));
            }
        }
        response.topics.push(result);
    }
    response
}

/// Everything but the write: name, partitions, configs, replication factor against the live
/// brokers (and, when only validating, that the topic does not exist yet).
fn check(broker: &Broker, cluster: &ClusterNode, new: &NewTopic, validate_only: bool) -> Checked {
    let refuse = |error: TopicError| (topic_error_code(&error), error.to_string());
    validate_topic_name(&new.name).map_err(refuse)?;
    // Only with its coordinator's partitions and configs (Metadata and FindCoordinator
    // create it so), never with a client's.
    refuse_internal_topic(&new.name, "Creation")?;
    let partitions = if new.partitions == -1 {
        broker.config.default_partitions
    } else {
        new.partitions
    };
    if !(1..=PARTITIONS_MAX).contains(&partitions) {
        return Err(refuse(TopicError::InvalidPartitions(new.partitions)));
    }
    TopicSettings::parse(broker.topics.defaults(), &new.configs, Checks::Kafka)
        .map_err(|error| refuse(error.into()))?;
    let factor = if new.replication_factor == -1 {
        broker.config.cluster.default_replication_factor
    } else {
        new.replication_factor
    };
    let live = cluster.view().live_brokers();
    let assigned = assign_replicas(&live, 1, 0, factor, 0)
        .map_err(|error| (store_error_code(&error.clone().into()), error.to_string()))?;
    let factor = assigned.first().map_or(1, |replicas| {
        i16::try_from(replicas.len()).unwrap_or(i16::MAX)
    });
    if validate_only && cluster.view().metadata.topics.contains_key(&new.name) {
        return Err(refuse(TopicError::AlreadyExists(new.name.clone())));
    }
    Ok((partitions, factor))
}

impl super::ErrorCodes for lmq_wire::protocol::messages::CreateTopicsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.topics.iter().map(|item| item.error_code));
    }
}
