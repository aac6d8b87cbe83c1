//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on topic configs, validated as
//! a whole before anything changes. The change goes into the cluster metadata and reaches
//! every replica from there.

use std::collections::{BTreeMap, HashSet};

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::incremental_alter_configs_request::AlterableConfig;
use lmq_wire::protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use lmq_wire::protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{NONE, refuse_internal_topic, store_error_code, str_bytes, topic_error_code};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::topics::{ConfigKind, TOPIC_CONFIGS, TopicError, default_topic_config};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// The operation named in the refusal of a config change to an internal topic.
const CHANGING_CONFIGS: &str = "Changing the configs";

/// Kafka's dynamic broker throttles for replication, which LMQ does not implement.
const REPLICATION_THROTTLES: &[&str] = &[
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let mut names = HashSet::new();
        let outcome = if !resource
            .configs
            .iter()
            .all(|change| names.insert(change.name.as_str()))
        {
            // As Kafka: each key once per resource (so every key is changed once).
            Err((
                ResponseError::InvalidRequest.code(),
                "Error due to duplicate config keys".to_string(),
            ))
        } else if resource.resource_type == RESOURCE_TOPIC {
            let name = resource.resource_name.to_string();
            let altered = refuse_internal_topic(&name, CHANGING_CONFIGS).and_then(|()| {
                alter_topic(broker, cluster, &name, &resource.configs)
                    .map_err(|error| (topic_error_code(&error), error.to_string()))
            });
            match altered {
                Ok(configs) => {
                    replace_topic_configs(broker, cluster, &name, configs, request.validate_only)
                        .await
                }
                Err(refused) => Err(refused),
            }
        } else if resource.resource_type == RESOURCE_BROKER
            && resource.configs.iter().all(|change| {
                change.config_operation == DELETE
                    && REPLICATION_THROTTLES.contains(&change.name.as_str())
            })
        {
            // Kafka's reassignment tool clears replication throttles when it verifies a
            // move; LMQ sets none, so there is nothing to delete.
            Ok(())
        } else {
            Err(broker_configs_refused())
        };
        match outcome {
            Ok(()) => {
                result.error_code = NONE;
                result.error_message = None;
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(message));
            }
        }
        response.responses.push(result);
    }
    response
}

/// Makes `configs` the topic's whole set of overrides (validated first; nothing is written
/// with `validate_only`): AlterConfigs and IncrementalAlterConfigs both end here.
pub(super) async fn replace_topic_configs(
    broker: &Broker,
    cluster: &ClusterNode,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let refuse = |error: TopicError| (topic_error_code(&error), error.to_string());
    // Retention on the offsets topic would delete committed offsets.
    refuse_internal_topic(name, CHANGING_CONFIGS)?;
    if !cluster.view().metadata.topics.contains_key(name) {
        return Err(refuse(TopicError::Unknown(name.to_string())));
    }
    crate::topics::log_config_for(broker.topics.defaults(), &configs).map_err(refuse)?;
    if validate_only {
        return Ok(());
    }
    cluster
        .set_topic_configs(broker, name, &configs)
        .await
        .map_err(|error| (store_error_code(&error), error.to_string()))
}

/// The answer to a change of broker configs: brokers take their settings from their config
/// file only.
pub(super) fn broker_configs_refused() -> (i16, String) {
    (
        ResponseError::InvalidRequest.code(),
        "only topic configs can be altered (and broker replication throttles deleted); broker \
         settings come from its config file"
            .to_string(),
    )
}

/// The topic's configs after `changes`.
fn alter_topic(
    broker: &Broker,
    cluster: &ClusterNode,
    name: &str,
    changes: &[AlterableConfig],
) -> Result<BTreeMap<String, String>, TopicError> {
    let mut configs = cluster
        .view()
        .metadata
        .topics
        .get(name)
        .map(|topic| topic.configs.clone())
        .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
    for change in changes {
        let key = change.name.to_string();
        let value = change.value.as_ref().map(ToString::to_string);
        let is_list = TOPIC_CONFIGS
            .iter()
            .any(|&(known, kind)| known == key && kind == ConfigKind::List);
        match (change.config_operation, value) {
            (SET, Some(value)) => {
                configs.insert(key, value);
            }
            (DELETE, _) => {
                configs.remove(&key);
            }
            (APPEND | SUBTRACT, Some(value)) if is_list => {
                let current = configs
                    .get(&key)
                    .cloned()
                    .or_else(|| default_topic_config(&key, broker.topics.defaults()))
                    .unwrap_or_default();
                let mut items: Vec<String> = current
                    .split(',')
                    .filter(|item| !item.is_empty())
                    .map(String::from)
                    .collect();
                // Sets, not a search of the list per item: a value may list many items.
                let given = value.split(',').filter(|item| !item.is_empty());
                if change.config_operation == APPEND {
                    let mut present: HashSet<String> = items.iter().cloned().collect();
                    for item in given {
                        if present.insert(item.to_string()) {
                            items.push(item.to_string());
                        }
                    }
                } else {
                    let removed: HashSet<&str> = given.collect();
                    items.retain(|existing| !removed.contains(existing.as_str()));
                }
                configs.insert(key, items.join(","));
            }
            (APPEND | SUBTRACT, Some(_)) => {
                return Err(TopicError::InvalidConfig(format!(
                    "{key} is not a list: APPEND and SUBTRACT do not apply"
                )));
            }
            (operation, _) => {
                return Err(TopicError::InvalidConfig(format!(
                    "operation {operation} on {key} needs a value"
                )));
            }
        }
    }
    Ok(configs)
}
