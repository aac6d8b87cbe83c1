//! FindCoordinator (v0-3 one key, v4+ batched keys). A group's coordinator is the leader of
//! its `__consumer_offsets` partition, a transactional id's the leader of its
//! `__transaction_state` partition (Kafka's hash rule, `coordinator_log::partition_for`).
//! Each topic is created on first use, once enough brokers are alive.

use std::collections::BTreeMap;

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::find_coordinator_response::Coordinator;
use lmq_wire::protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{NONE, str_bytes};
use crate::broker::{Broker, offsets_topic_configs, transaction_state_topic_configs};
use crate::cluster::ClusterNode;
use crate::coordinator_log::partition_for;
use crate::group::offsets::OFFSETS_TOPIC;
use crate::security::acl::{AclOperation, ResourceType};
use crate::topics::TRANSACTION_STATE_TOPIC;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a key's coordinator is: error code and message, or node id, host and port.
type Answer = Result<(i32, String, i32), (i16, &'static str)>;

/// A coordinator's internal topic as it is created.
struct CoordinatorTopic {
    name: &'static str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
}

fn offsets_topic(broker: &Broker) -> CoordinatorTopic {
    CoordinatorTopic {
        name: OFFSETS_TOPIC,
        partitions: broker.config.group.offsets_topic_partitions,
        replication_factor: broker.config.offsets_topic_replication_factor(),
        configs: offsets_topic_configs(&broker.config.group),
    }
}

fn transaction_state_topic(broker: &Broker) -> CoordinatorTopic {
    CoordinatorTopic {
        name: TRANSACTION_STATE_TOPIC,
        partitions: broker.config.transactions.state_log_num_partitions,
        replication_factor: broker.config.transaction_state_replication().0,
        configs: transaction_state_topic_configs(&broker.config),
    }
}

/// Brokers are answered with their addresses on the listener the request came in on
/// (`context.listener`).
pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    context: &super::RequestContext,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let listener: &str = &context.listener;
    // As Kafka: each topic is created for a key the client may describe only.
    let mut keys = std::iter::once(&request.key).chain(&request.coordinator_keys);
    let topic = match request.key_type {
        KEY_TYPE_GROUP => Some(offsets_topic(broker)),
        KEY_TYPE_TRANSACTION => Some(transaction_state_topic(broker)),
        _ => None,
    };
    let describable = |key: &str| match request.key_type {
        KEY_TYPE_GROUP => context.authorize_group(AclOperation::Describe, key),
        _ => context.authorize(AclOperation::Describe, ResourceType::TransactionalId, key),
    };
    if let Some(topic) = &topic
        && keys.any(|key| describable(key))
    {
        ensure_topic(broker, cluster, topic).await;
    }
    let answer = |key: &str| -> Answer {
        let Some(topic) = &topic else {
            return Err((
                ResponseError::InvalidRequest.code(),
                "Unknown coordinator type in FindCoordinator request",
            ));
        };
        if request.key_type == KEY_TYPE_GROUP {
            if key.is_empty() {
                return Err((ResponseError::InvalidRequest.code(), "empty group id"));
            }
            if let Err(code) = context.check_group(AclOperation::Describe, key) {
                return Err((code, "Group authorization failed."));
            }
        } else {
            if key.is_empty() {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    "empty transactional id",
                ));
            }
            if !describable(key) {
                return Err((
                    super::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "Transactional Id authorization failed.",
                ));
            }
        }
        coordinator_of(cluster, listener, topic.name, key)
    };
    let mut response = FindCoordinatorResponse::default();
    if version < 4 {
        match answer(&request.key) {
            Ok((node_id, host, port)) => {
                response.error_code = NONE;
                if version >= 1 {
                    // What Kafka sends: the error's name, also for no error.
                    response.error_message = Some(str_bytes("NONE"));
                }
                response.node_id = BrokerId(node_id);
                response.host = str_bytes(host);
                response.port = port;
            }
            Err((error_code, message)) => {
                response.error_code = error_code;
                response.node_id = BrokerId(-1);
                response.port = -1;
                if version >= 1 {
                    response.error_message = Some(str_bytes(message));
                }
            }
        }
        return response;
    }
    response.coordinators = request
        .coordinator_keys
        .iter()
        .map(|key| {
            let mut coordinator = Coordinator::default();
            coordinator.key = key.clone();
            match answer(key) {
                Ok((node_id, host, port)) => {
                    coordinator.error_code = NONE;
                    coordinator.node_id = BrokerId(node_id);
                    coordinator.host = str_bytes(host);
                    coordinator.port = port;
                }
                Err((error_code, message)) => {
                    coordinator.error_code = error_code;
                    coordinator.error_message = Some(str_bytes(message));
                    coordinator.node_id = BrokerId(-1);
                    coordinator.port = -1;
                }
            }
            coordinator
        })
        .collect();
    response
}

/// Creates a coordinator's replicated topic on first use, once enough brokers are alive,
/// with the coordinator's partitions and configs. A topic an older LMQ created keeps its
/// partition count (a key's partition is the hash of the key modulo that count, as Kafka,
/// which never changes it either) and gets the configs it lacks (for the offsets topic,
/// `cleanup.policy=compact`).
async fn ensure_topic(broker: &Broker, cluster: &ClusterNode, topic: &CoordinatorTopic) {
    let stored = cluster
        .view()
        .metadata
        .topics
        .get(topic.name)
        .map(|state| state.configs.clone());
    if let Some(stored) = stored {
        if let Some(upgraded) = with_missing_configs(&stored, topic.configs.clone())
            && let Err(error) = cluster
                .set_topic_configs(broker, topic.name, &upgraded)
                .await
        {
            tracing::warn!(topic = topic.name, %error, "cannot bring a coordinator topic's configs up to date yet");
        }
        return;
    }
    let created = cluster
        .create_topic(
            broker,
            topic.name,
            topic.partitions,
            topic.replication_factor,
            &topic.configs,
        )
        .await;
    if let Err(error) = created {
        tracing::warn!(topic = topic.name, %error, "cannot create a coordinator topic yet");
    }
}

/// Creates the offsets topic (also when a client's Metadata asks for it first).
pub(super) async fn ensure_offsets_topic(broker: &Broker, cluster: &ClusterNode) {
    ensure_topic(broker, cluster, &offsets_topic(broker)).await;
}

/// `stored` with the configs of `wanted` it does not set, when it lacks any; the values it
/// sets stay (they were the settings when the topic was created, as in Kafka).
fn with_missing_configs(
    stored: &BTreeMap<String, String>,
    wanted: BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let mut upgraded = stored.clone();
    for (name, value) in wanted {
        upgraded.entry(name).or_insert(value);
    }
    (upgraded != *stored).then_some(upgraded)
}

/// The leader of the key's partition of the coordinator topic `topic`.
fn coordinator_of(cluster: &ClusterNode, listener: &str, topic: &str, key: &str) -> Answer {
    let view = cluster.view();
    let not_available = (
        ResponseError::CoordinatorNotAvailable.code(),
        "the coordinator's topic has no leader yet",
    );
    let state = view.metadata.topics.get(topic).ok_or(not_available)?;
    let index = partition_for(key, state.partitions.len());
    let leader = state.partitions.get(index).map_or(-1, |state| state.leader);
    let info = view.brokers.get(&leader).ok_or(not_available)?;
    let (host, port) = info.endpoint(listener).ok_or(not_available)?;
    Ok((leader, host.to_string(), i32::from(port)))
}

impl super::ErrorCodes for lmq_wire::protocol::messages::FindCoordinatorResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
        codes.extend(self.coordinators.iter().map(|item| item.error_code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupSettings;

    #[test]
    fn an_older_offsets_topic_gets_compaction_and_keeps_its_own_settings() {
        // What LMQ before compaction created the topic with.
        let older = BTreeMap::from([
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), "1048576".to_string()),
        ]);
        let settings = GroupSettings::default();
        let upgraded = with_missing_configs(&older, offsets_topic_configs(&settings)).unwrap();
        assert_eq!(upgraded["cleanup.policy"], "compact");
        assert_eq!(upgraded["segment.bytes"], "1048576", "kept as created");
        assert_eq!(
            with_missing_configs(&upgraded, offsets_topic_configs(&settings)),
            None,
            "written once"
        );
    }
}
