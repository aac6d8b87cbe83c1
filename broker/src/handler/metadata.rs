//! Metadata: this node as the only broker and leader; topics on request, auto-created when
//! the client allows it and the broker is configured to.

use std::collections::BTreeMap;

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use lmq_wire::protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{NONE, UNKNOWN_TOPIC_OR_PARTITION, str_bytes, topic_error_code, topic_name};
use crate::broker::Broker;
use crate::group::offsets::OFFSETS_TOPIC;
use crate::partition::SINGLE_NODE_LEADER_EPOCH;
use crate::topics::{NewTopic, Topic, TopicError, validate_topic_name};

pub fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node_id = broker.config.node_id;
    let (host, port) = broker.config.advertised();
    let mut response = MetadataResponse::default();
    let mut node = MetadataResponseBroker::default();
    node.node_id = BrokerId(node_id);
    node.host = str_bytes(host);
    node.port = port;
    response.brokers = vec![node];
    if version >= 2 {
        response.cluster_id = Some(str_bytes(broker.cluster_id.clone()));
    }
    if version >= 1 {
        response.controller_id = BrokerId(node_id);
    }

    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|topic| topic.name.map(|name| name.0.to_string()))
                .collect(),
        ),
    };
    let auto_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    response.topics = match requested {
        None => broker
            .topics
            .list()
            .iter()
            .map(|topic| describe(topic, node_id))
            .collect(),
        Some(names) => names
            .into_iter()
            .map(|name| lookup_or_create(broker, &name, auto_create))
            .collect(),
    };
    response
}

fn lookup_or_create(broker: &Broker, name: &str, auto_create: bool) -> MetadataResponseTopic {
    let node_id = broker.config.node_id;
    if let Some(topic) = broker.topics.get(name) {
        return describe(&topic, node_id);
    }
    let error = |code: i16| {
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(topic_name(name));
        topic.error_code = code;
        topic
    };
    if let Err(invalid) = validate_topic_name(name) {
        return error(topic_error_code(&invalid));
    }
    if !auto_create {
        return error(UNKNOWN_TOPIC_OR_PARTITION);
    }
    let new = NewTopic {
        name: name.to_string(),
        partitions: -1,
        replication_factor: -1,
        configs: BTreeMap::new(),
    };
    match broker.topics.create(&new, broker.now_ms()) {
        // Kafka answers the creating request with LEADER_NOT_AVAILABLE while the new topic's
        // leaders are elected; here they exist at once, so answer with the topic.
        Ok(topic) => describe(&topic, node_id),
        Err(TopicError::AlreadyExists(_)) => match broker.topics.get(name) {
            Some(topic) => describe(&topic, node_id),
            None => error(ResponseError::LeaderNotAvailable.code()),
        },
        Err(failure) => {
            tracing::warn!(topic = name, %failure, "auto-creating a topic failed");
            error(topic_error_code(&failure))
        }
    }
}

fn describe(topic: &Topic, node_id: i32) -> MetadataResponseTopic {
    let mut response = MetadataResponseTopic::default();
    response.error_code = NONE;
    response.name = Some(topic_name(topic.name.clone()));
    response.topic_id = topic.id;
    response.is_internal = topic.name == OFFSETS_TOPIC;
    response.partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let mut described = MetadataResponsePartition::default();
            described.partition_index = partition.index;
            described.leader_id = BrokerId(node_id);
            described.leader_epoch = SINGLE_NODE_LEADER_EPOCH;
            described.replica_nodes = vec![BrokerId(node_id)];
            described.isr_nodes = vec![BrokerId(node_id)];
            described
        })
        .collect();
    response
}
