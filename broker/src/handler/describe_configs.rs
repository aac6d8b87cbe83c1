//! DescribeConfigs: topic configs (overrides and defaults, with their source) and the
//! broker's static settings.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use lmq_wire::protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{NONE, UNKNOWN_TOPIC_OR_PARTITION, str_bytes};
use crate::broker::Broker;
use crate::topics::{ConfigKind, TOPIC_CONFIGS, default_topic_config};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// `ConfigSource` values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

struct Entry {
    name: String,
    value: String,
    source: i8,
    kind: ConfigKind,
    read_only: bool,
}

pub fn handle(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let entries = match resource.resource_type {
            RESOURCE_TOPIC => topic_entries(broker, &resource.resource_name),
            RESOURCE_BROKER => Ok(broker_entries(broker)),
            _ => Err((
                ResponseError::InvalidRequest.code(),
                "only topic and broker configs exist",
            )),
        };
        match entries {
            Ok(entries) => {
                result.error_code = NONE;
                let wanted = resource.configuration_keys.as_ref();
                result.configs = entries
                    .into_iter()
                    .filter(|entry| {
                        wanted.is_none_or(|keys| keys.iter().any(|key| key.as_str() == entry.name))
                    })
                    .map(|entry| describe(entry, request.include_synonyms, version))
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(message));
            }
        }
        response.results.push(result);
    }
    response
}

fn topic_entries(broker: &Broker, name: &str) -> Result<Vec<Entry>, (i16, &'static str)> {
    let topic = broker
        .topics
        .get(name)
        .ok_or((UNKNOWN_TOPIC_OR_PARTITION, "unknown topic"))?;
    let defaults = broker.topics.defaults();
    Ok(TOPIC_CONFIGS
        .iter()
        .map(|&(name, kind)| {
            let (value, source) = match topic.configs.get(name) {
                Some(value) => (value.clone(), SOURCE_TOPIC),
                None if name == "min.insync.replicas" => (
                    broker.config.cluster.min_insync_replicas.to_string(),
                    SOURCE_DEFAULT,
                ),
                None => (
                    default_topic_config(name, defaults).unwrap_or_default(),
                    SOURCE_DEFAULT,
                ),
            };
            Entry {
                name: name.to_string(),
                value,
                source,
                kind,
                read_only: false,
            }
        })
        .collect())
}

fn broker_entries(broker: &Broker) -> Vec<Entry> {
    let config = &broker.config;
    let entry = |name: &str, value: String, kind| Entry {
        name: name.to_string(),
        value,
        source: SOURCE_STATIC_BROKER,
        kind,
        read_only: true,
    };
    vec![
        entry("node.id", config.node_id.to_string(), ConfigKind::Int),
        entry(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigKind::String,
        ),
        entry(
            "num.partitions",
            config.default_partitions.to_string(),
            ConfigKind::Int,
        ),
        entry(
            "log.dirs",
            config.data_dir.display().to_string(),
            ConfigKind::String,
        ),
        entry(
            "log.segment.bytes",
            config.log.segment_bytes.to_string(),
            ConfigKind::Int,
        ),
        entry(
            "log.retention.ms",
            config.log.retention_ms.to_string(),
            ConfigKind::Long,
        ),
        entry(
            "log.retention.bytes",
            config.log.retention_bytes.to_string(),
            ConfigKind::Long,
        ),
        entry(
            "message.max.bytes",
            config.log.max_message_bytes.to_string(),
            ConfigKind::Int,
        ),
        entry(
            "socket.request.max.bytes",
            config.frame_bytes_max.to_string(),
            ConfigKind::Int,
        ),
    ]
}

fn describe(entry: Entry, include_synonyms: bool, version: i16) -> DescribeConfigsResourceResult {
    let mut described = DescribeConfigsResourceResult::default();
    described.name = str_bytes(entry.name.clone());
    described.value = Some(str_bytes(entry.value.clone()));
    described.read_only = entry.read_only;
    described.config_source = entry.source;
    if include_synonyms {
        let mut synonym = DescribeConfigsSynonym::default();
        synonym.name = str_bytes(entry.name);
        synonym.value = Some(str_bytes(entry.value));
        synonym.source = entry.source;
        described.synonyms = vec![synonym];
    }
    if version >= 3 {
        described.config_type = entry.kind as i8;
    }
    described
}
