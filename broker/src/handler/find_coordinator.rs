//! FindCoordinator (v0-3 one key, v4+ batched keys). A group's coordinator is the leader of
//! its `__consumer_offsets` partition (the topic is created on first use, once enough
//! brokers are alive).
//! Transaction coordinators do not exist yet.

use std::collections::BTreeMap;

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::find_coordinator_response::Coordinator;
use lmq_wire::protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{NONE, str_bytes};
use crate::broker::{Broker, offsets_topic_configs};
use crate::cluster::ClusterNode;
use crate::group::offsets::{OFFSETS_TOPIC, partition_for};

const KEY_TYPE_GROUP: i8 = 0;

/// Where a key's coordinator is: error code and message, or node id, host and port.
type Answer = Result<(i32, String, i32), (i16, &'static str)>;

/// `listener`: the name of the listener the request came in on.
pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    listener: &str,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if request.key_type == KEY_TYPE_GROUP {
        ensure_offsets_topic(broker, cluster).await;
    }
    let answer = |key: &str| -> Answer {
        if request.key_type != KEY_TYPE_GROUP {
            Err((
                ResponseError::CoordinatorNotAvailable.code(),
                "transactions are not supported yet",
            ))
        } else if key.is_empty() {
            Err((ResponseError::InvalidRequest.code(), "empty group id"))
        } else {
            group_leader(cluster, listener, key)
        }
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

/// Creates the replicated offsets topic on first use, once enough brokers are alive, with
/// the group coordinator's partitions and configs (also when a client's Metadata asks for it
/// first). An offsets topic an older LMQ created keeps its partition count (a group's
/// partition is the hash of its id modulo that count, as Kafka, which never changes it
/// either) and gets the configs it lacks (`cleanup.policy=compact`).
pub(super) async fn ensure_offsets_topic(broker: &Broker, cluster: &ClusterNode) {
    let settings = &broker.config.group;
    let wanted = offsets_topic_configs(settings);
    let stored = cluster
        .view()
        .metadata
        .topics
        .get(OFFSETS_TOPIC)
        .map(|topic| topic.configs.clone());
    if let Some(stored) = stored {
        if let Some(upgraded) = with_missing_configs(&stored, wanted)
            && let Err(error) = cluster
                .set_topic_configs(broker, OFFSETS_TOPIC, &upgraded)
                .await
        {
            tracing::warn!(%error, "cannot bring the offsets topic's configs up to date yet");
        }
        return;
    }
    let created = cluster
        .create_topic(
            broker,
            OFFSETS_TOPIC,
            settings.offsets_topic_partitions,
            broker.config.offsets_topic_replication_factor(),
            &wanted,
        )
        .await;
    if let Err(error) = created {
        tracing::warn!(%error, "cannot create the offsets topic yet");
    }
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

/// The leader of the group's offsets partition.
fn group_leader(cluster: &ClusterNode, listener: &str, group_id: &str) -> Answer {
    let view = cluster.view();
    let not_available = (
        ResponseError::CoordinatorNotAvailable.code(),
        "the offsets topic has no leader yet",
    );
    let topic = view
        .metadata
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or(not_available)?;
    let index = partition_for(group_id, topic.partitions.len());
    let leader = topic.partitions.get(index).map_or(-1, |state| state.leader);
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
