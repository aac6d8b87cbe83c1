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
use super::{
    NONE, RequestContext, TOPIC_AUTHORIZATION_FAILED, UNKNOWN_TOPIC_OR_PARTITION, str_bytes,
    topic_error_code, topic_name,
};
use crate::broker::Broker;
use crate::cluster::metadata::TopicState;
use crate::cluster::{ClusterNode, ClusterView};
use crate::group::offsets::OFFSETS_TOPIC;
use crate::security::acl::{AclOperation, CLUSTER_NAME, ResourceType};
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

/// Brokers are answered with their addresses on the listener the request came in on
/// (`context.listener`).
pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    context: &RequestContext,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let listener: &str = &context.listener;
    let mut response = MetadataResponse::default();
    if version >= 2 {
        response.cluster_id = Some(str_bytes(cluster.cluster_id.clone()));
    }
    let with_topic_operations = request.include_topic_authorized_operations;
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations =
            context.authorized_operations(ResourceType::Cluster, CLUSTER_NAME);
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
                    // All topics: only those it may describe, as Kafka.
                    .filter(|(name, _)| context.authorize_topic(AclOperation::Describe, name))
                    .map(|(name, state)| describe_replicated(name, state, &view)),
            );
        }
        Some(names) => {
            // The offsets topic with the coordinator's settings, as Kafka's
            // AutoTopicCreationManager; other internal topics only by their own coordinator.
            if auto_create
                && names.iter().any(|name| name == OFFSETS_TOPIC)
                && context.authorize_topic(AclOperation::Describe, OFFSETS_TOPIC)
                && !cluster.view().metadata.topics.contains_key(OFFSETS_TOPIC)
            {
                ensure_offsets_topic(broker, cluster).await;
            }
            let view = cluster.view();
            let refused = refused_topics(context, &names, auto_create, &view);
            // Missing topics to create, all with one metadata write.
            let mut wanted: HashSet<&str> = HashSet::new();
            let to_create: Vec<NewTopic> = names
                .iter()
                .filter(|name| {
                    auto_create
                        && !refused.contains(name.as_str())
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
            for name in &names {
                if refused.contains(name.as_str()) {
                    topics.push(missing_topic(name, TOPIC_AUTHORIZATION_FAILED));
                    continue;
                }
                if let Some(state) = view.metadata.topics.get(name) {
                    topics.push(describe_replicated(name, state, &view));
                    continue;
                }
                let code = match validate_topic_name(name) {
                    Err(invalid) => topic_error_code(&invalid),
                    Ok(()) if !auto_create => UNKNOWN_TOPIC_OR_PARTITION,
                    Ok(()) if is_internal_topic(name) && name != OFFSETS_TOPIC => {
                        UNKNOWN_TOPIC_OR_PARTITION
                    }
                    Ok(()) => ResponseError::LeaderNotAvailable.code(),
                };
                topics.push(missing_topic(name, code));
            }
        }
    }
    if with_topic_operations {
        for topic in &mut topics {
            if topic.error_code != TOPIC_AUTHORIZATION_FAILED {
                let name = topic.name.as_ref().map_or("", |name| name.0.as_str());
                topic.topic_authorized_operations =
                    context.authorized_operations(ResourceType::Topic, name);
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

/// The requested topics Kafka answers TOPIC_AUTHORIZATION_FAILED: those it may not
/// describe (their existence is not disclosed), and missing ones auto-creation would create
/// without CREATE on the cluster or the topic.
fn refused_topics<'a>(
    context: &RequestContext,
    names: &'a [String],
    auto_create: bool,
    view: &ClusterView,
) -> HashSet<&'a str> {
    let may_create_any = auto_create && context.authorize_cluster(AclOperation::Create);
    names
        .iter()
        .filter(|name| {
            !context.authorize_topic(AclOperation::Describe, name)
                || (auto_create
                    && !may_create_any
                    && !view.metadata.topics.contains_key(name.as_str())
                    && !context.authorize_topic(AclOperation::Create, name))
        })
        .map(String::as_str)
        .collect()
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
    response.is_internal = is_internal_topic(name);
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
