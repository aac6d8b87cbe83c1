//! Metadata: topics on request, auto-created when the client allows it and the broker is
//! configured to. Every broker answers for the whole cluster (an embedded node: itself) from
//! its view of the metadata (live brokers, leaders, epochs, ISR), so clients find each
//! partition's leader wherever they ask.

use std::collections::{BTreeMap, HashSet};

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use lmq_wire::protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::find_coordinator::ensure_offsets_topic;
use super::{NONE, UNKNOWN_TOPIC_OR_PARTITION, str_bytes, topic_error_code, topic_name};
use crate::broker::Broker;
use crate::cluster::metadata::TopicState;
use crate::cluster::{ClusterNode, ClusterView};
use crate::group::offsets::OFFSETS_TOPIC;
use crate::topics::{NewTopic, is_internal_topic, validate_topic_name};

/// The topics asked for (`None`: all) and whether missing ones may be created.
fn requested_topics(
    broker: &Broker,
    request: MetadataRequest,
    version: i16,
) -> (Option<Vec<String>>, bool) {
    let auto_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|topic| topic.name.map(|name| name.0.to_string()))
                .collect(),
        ),
    };
    (requested, auto_create)
}

fn missing_topic(name: &str, code: i16) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(topic_name(name));
    topic.error_code = code;
    topic
}

/// `listener`: the name of the listener the request came in on.
pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    listener: &str,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let mut response = MetadataResponse::default();
    if version >= 2 {
        response.cluster_id = Some(str_bytes(cluster.cluster_id.clone()));
    }
    let (requested, auto_create) = requested_topics(broker, request, version);
    let mut topics = Vec::new();
    match requested {
        None => {
            let view = cluster.view();
            topics.extend(
                view.metadata
                    .topics
                    .iter()
                    .map(|(name, state)| describe_replicated(name, state, &view)),
            );
        }
        Some(names) => {
            // The offsets topic with the coordinator's settings, as Kafka's
            // AutoTopicCreationManager; other internal topics only by their own coordinator.
            if auto_create
                && names.iter().any(|name| name == OFFSETS_TOPIC)
                && !cluster.view().metadata.topics.contains_key(OFFSETS_TOPIC)
            {
                ensure_offsets_topic(broker, cluster).await;
            }
            // Missing topics to create, all with one metadata write.
            let view = cluster.view();
            let mut wanted: HashSet<&str> = HashSet::new();
            let to_create: Vec<NewTopic> = names
                .iter()
                .filter(|name| {
                    auto_create
                        && !view.metadata.topics.contains_key(name.as_str())
                        && validate_topic_name(name).is_ok()
                        && !is_internal_topic(name)
                        && wanted.insert(name.as_str())
                })
                .map(|name| NewTopic {
                    name: name.clone(),
                    partitions: -1,
                    replication_factor: -1,
                    configs: BTreeMap::new(),
                })
                .collect();
            if !to_create.is_empty() {
                match cluster.create_topics(broker, &to_create).await {
                    Ok(outcomes) => {
                        for (topic, outcome) in to_create.iter().zip(outcomes) {
                            if let Err(error) = outcome {
                                let topic = &topic.name;
                                tracing::warn!(topic, %error, "auto-creating a topic failed");
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "auto-creating topics failed"),
                }
            }
            let view = cluster.view();
            for name in names {
                if let Some(state) = view.metadata.topics.get(&name) {
                    topics.push(describe_replicated(&name, state, &view));
                    continue;
                }
                let code = match validate_topic_name(&name) {
                    Err(invalid) => topic_error_code(&invalid),
                    Ok(()) if !auto_create => UNKNOWN_TOPIC_OR_PARTITION,
                    Ok(()) if is_internal_topic(&name) && name != OFFSETS_TOPIC => {
                        UNKNOWN_TOPIC_OR_PARTITION
                    }
                    Ok(()) => ResponseError::LeaderNotAvailable.code(),
                };
                topics.push(missing_topic(&name, code));
            }
        }
    }
    let view = cluster.view();
    response.topics = topics;
    // Each broker's address on the listener the request came in on (Kafka omits brokers
    // without that listener).
    response.brokers = view
        .brokers
        .iter()
        .filter_map(|(&id, info)| {
            let (host, port) = info.endpoint(listener)?;
            let mut described = MetadataResponseBroker::default();
            described.node_id = BrokerId(id);
            described.host = str_bytes(host.to_string());
            described.port = i32::from(port);
            described.rack = info.rack.clone().map(str_bytes);
            Some(described)
        })
        .collect();
    if version >= 1 {
        response.controller_id = BrokerId(view.controller);
    }
    response
}

fn describe_replicated(
    name: &str,
    state: &TopicState,
    view: &ClusterView,
) -> MetadataResponseTopic {
    let mut response = MetadataResponseTopic::default();
    response.error_code = NONE;
    response.name = Some(topic_name(name));
    response.topic_id = state.id;
    response.is_internal = name == OFFSETS_TOPIC;
    let ids = |ids: &[i32]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    response.partitions = state
        .partitions
        .iter()
        .zip(0..)
        .map(|(partition, index)| {
            let mut described = MetadataResponsePartition::default();
            described.partition_index = index;
            described.error_code = if partition.leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                NONE
            };
            described.leader_id = BrokerId(partition.leader);
            described.leader_epoch = partition.leader_epoch;
            described.replica_nodes = ids(&partition.replicas);
            described.isr_nodes = ids(&partition.isr);
            described.offline_replicas = partition
                .replicas
                .iter()
                .filter(|id| !view.brokers.contains_key(id))
                .map(|&id| BrokerId(id))
                .collect();
            described
        })
        .collect();
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::MetadataResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.topics.iter().map(|item| item.error_code));
    }
}
