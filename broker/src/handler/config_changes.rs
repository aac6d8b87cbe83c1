//! What AlterConfigs and IncrementalAlterConfigs share: Kafka's preprocessing of both
//! (`ConfigAdminManager.preprocess`: each resource once, each key once per resource, no null
//! value but a DELETE's), and the change of a topic's overrides, validated as a whole by the
//! topic config table before anything changes. The change goes into the cluster metadata and
//! reaches every replica from there.

use std::collections::{BTreeMap, HashMap, HashSet};

use lmq_wire::protocol::ResponseError;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{refuse_internal_topic, store_error_code, topic_error_code};
use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::topic_config::{self, Checks, ConfigType, TopicDefaults, TopicSettings};
use crate::topics::TopicError;

/// An error code and its message.
pub(super) type Refusal = (i16, String);

/// The operation named in the refusal of a config change to an internal topic.
const CHANGING_CONFIGS: &str = "Changing the configs";

/// Kafka's dynamic broker throttles for replication, which LMQ does not implement.
const REPLICATION_THROTTLES: &[&str] = &[
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

/// `AlterConfigOp.OpType` of IncrementalAlterConfigs; AlterConfigs only sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    Set,
    Delete,
    Append,
    Subtract,
    Unknown(i8),
}

impl Operation {
    pub(super) fn from_code(code: i8) -> Self {
        match code {
            0 => Operation::Set,
            1 => Operation::Delete,
            2 => Operation::Append,
            3 => Operation::Subtract,
            other => Operation::Unknown(other),
        }
    }
}

/// How a request's changes make the topic's new overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// AlterConfigs: the changes (all SET) are the whole set of overrides; what they leave
    /// out returns to its default. Broker configs cannot be changed.
    Replace,
    /// IncrementalAlterConfigs: each change applies to the current overrides. Deleting
    /// replication throttles of a broker is accepted (there are none).
    Incremental,
}

#[derive(Debug)]
pub(super) struct Change<'a> {
    pub name: &'a str,
    pub operation: Operation,
    pub value: Option<&'a str>,
}

#[derive(Debug)]
pub(super) struct Resource<'a> {
    pub resource_type: i8,
    pub name: &'a str,
    pub changes: Vec<Change<'a>>,
}

/// A resource's error code and message as both alter responses carry them.
pub(super) fn answer(
    outcome: Result<(), Refusal>,
) -> (i16, Option<lmq_wire::protocol::protocol::StrBytes>) {
    match outcome {
        Ok(()) => (super::NONE, None),
        Err((code, message)) => (code, Some(super::str_bytes(message))),
    }
}

/// The outcome of each resource, in request order.
pub(super) async fn alter(
    broker: &Broker,
    cluster: &ClusterNode,
    resources: &[Resource<'_>],
    mode: Mode,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let mut outcomes = Vec::with_capacity(resources.len());
    for (resource, refused) in resources.iter().zip(preprocess(resources)) {
        let outcome = match refused {
            Some(refusal) => Err(refusal),
            None if resource.resource_type == RESOURCE_TOPIC => {
                alter_topic(broker, cluster, resource, mode, validate_only).await
            }
            // Kafka's reassignment tool clears replication throttles when it verifies a
            // move; LMQ sets none, so there is nothing to delete.
            None if mode == Mode::Incremental
                && resource.resource_type == RESOURCE_BROKER
                && resource.changes.iter().all(|change| {
                    change.operation == Operation::Delete
                        && REPLICATION_THROTTLES.contains(&change.name)
                }) =>
            {
                Ok(())
            }
            None => Err(broker_configs_refused()),
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// Kafka's checks before any resource is looked at, in its order: a resource named twice
/// (both refused), a key named twice in one resource, null values.
fn preprocess(resources: &[Resource<'_>]) -> Vec<Option<Refusal>> {
    let invalid = |message: String| Some((ResponseError::InvalidRequest.code(), message));
    let mut named: HashMap<(i8, &str), usize> = HashMap::with_capacity(resources.len());
    for resource in resources {
        *named
            .entry((resource.resource_type, resource.name))
            .or_default() += 1;
    }
    resources
        .iter()
        .map(|resource| {
            if named
                .get(&(resource.resource_type, resource.name))
                .is_some_and(|&count| count > 1)
            {
                return invalid("Each resource must appear at most once.".to_string());
            }
            let mut keys = HashSet::with_capacity(resource.changes.len());
            if !resource
                .changes
                .iter()
                .all(|change| keys.insert(change.name))
            {
                return invalid("Error due to duplicate config keys".to_string());
            }
            let nulls: Vec<&str> = resource
                .changes
                .iter()
                .filter(|change| change.value.is_none() && change.operation != Operation::Delete)
                .map(|change| change.name)
                .collect();
            if !nulls.is_empty() {
                return invalid(format!(
                    "Null value not supported for : {}",
                    nulls.join(", ")
                ));
            }
            None
        })
        .collect()
}

/// Makes the topic's overrides what `resource` asks (validated first; nothing is written
/// with `validate_only`).
async fn alter_topic(
    broker: &Broker,
    cluster: &ClusterNode,
    resource: &Resource<'_>,
    mode: Mode,
    validate_only: bool,
) -> Result<(), Refusal> {
    let refuse = |error: TopicError| (topic_error_code(&error), error.to_string());
    let name = resource.name;
    // Retention on the offsets topic would delete committed offsets.
    refuse_internal_topic(name, CHANGING_CONFIGS)?;
    let current = cluster
        .view()
        .metadata
        .topics
        .get(name)
        .map(|topic| topic.configs.clone())
        .ok_or_else(|| refuse(TopicError::Unknown(name.to_string())))?;
    let configs = match mode {
        Mode::Replace => resource
            .changes
            .iter()
            .filter_map(|change| Some((change.name.to_string(), change.value?.to_string())))
            .collect(),
        Mode::Incremental => {
            let defaults = TopicDefaults {
                log: broker.topics.defaults(),
                min_insync_replicas: broker.config.cluster.min_insync_replicas,
            };
            apply_changes(current, &resource.changes, &defaults).map_err(refuse)?
        }
    };
    TopicSettings::parse(broker.topics.defaults(), &configs, Checks::Kafka)
        .map_err(|error| refuse(error.into()))?;
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
fn broker_configs_refused() -> Refusal {
    (
        ResponseError::InvalidRequest.code(),
        "only topic configs can be altered (and broker replication throttles deleted); broker \
         settings come from its config file"
            .to_string(),
    )
}

/// The overrides after IncrementalAlterConfigs' `changes` (each key once: preprocessed).
fn apply_changes(
    mut configs: BTreeMap<String, String>,
    changes: &[Change<'_>],
    defaults: &TopicDefaults,
) -> Result<BTreeMap<String, String>, TopicError> {
    for change in changes {
        let key = change.name.to_string();
        let definition = topic_config::find(change.name);
        let is_list = definition.is_some_and(|definition| definition.kind == ConfigType::List);
        match (change.operation, change.value) {
            (Operation::Set, Some(value)) => {
                configs.insert(key, value.to_string());
            }
            (Operation::Delete, _) => {
                configs.remove(&key);
            }
            (operation @ (Operation::Append | Operation::Subtract), Some(value)) if is_list => {
                let current = configs
                    .get(&key)
                    .cloned()
                    .or_else(|| definition.map(|definition| definition.default_value(defaults)))
                    .unwrap_or_default();
                let mut items: Vec<String> = current
                    .split(',')
                    .filter(|item| !item.is_empty())
                    .map(String::from)
                    .collect();
                // Sets, not a search of the list per item: a value may list many items.
                let given = value.split(',').filter(|item| !item.is_empty());
                if operation == Operation::Append {
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
            (operation @ (Operation::Append | Operation::Subtract), Some(_)) => {
                // Kafka's controller (`ConfigurationControlManager`), for an unknown name too.
                let operation = if operation == Operation::Append {
                    "APPEND"
                } else {
                    "SUBTRACT"
                };
                return Err(TopicError::InvalidConfig(format!(
                    "Can't {operation} to key {key} because its type is not LIST."
                )));
            }
            (operation, _) => {
                return Err(TopicError::InvalidConfig(format!(
                    "operation {operation:?} on {key} is not supported"
                )));
            }
        }
    }
    Ok(configs)
}
