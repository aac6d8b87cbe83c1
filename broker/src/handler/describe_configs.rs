//! DescribeConfigs: topic configs (overrides and defaults, with their source) and the
//! broker's static settings.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use lmq_wire::protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{NONE, UNKNOWN_TOPIC_OR_PARTITION, str_bytes};
use crate::broker::Broker;
use crate::topic_config::{Checks, ConfigType, TOPIC_CONFIGS, TopicDefaults};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// `ConfigSource` values (DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

struct Entry {
    name: String,
    value: String,
    source: i8,
    kind: ConfigType,
    read_only: bool,
    /// Where the value could come from, most specific first: `(name, value, source)`.
    synonyms: Vec<(String, String, i8)>,
    documentation: Option<&'static str>,
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
                    .map(|entry| {
                        describe(
                            entry,
                            request.include_synonyms,
                            request.include_documentation,
                            version,
                        )
                    })
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

/// A topic's effective configs as CreateTopics v5+ reports them: `(name, value, source)`.
pub(crate) fn topic_configs(broker: &Broker, name: &str) -> Vec<(String, String, i8)> {
    topic_entries(broker, name)
        .map(|entries| {
            entries
                .into_iter()
                .map(|entry| (entry.name, entry.value, entry.source))
                .collect()
        })
        .unwrap_or_default()
}

fn topic_entries(broker: &Broker, name: &str) -> Result<Vec<Entry>, (i16, &'static str)> {
    let topic = broker
        .topics
        .get(name)
        .ok_or((UNKNOWN_TOPIC_OR_PARTITION, "unknown topic"))?;
    let defaults = TopicDefaults {
        log: broker.topics.defaults(),
        min_insync_replicas: broker.config.cluster.min_insync_replicas,
    };
    // As Kafka's `ConfigHelper.createTopicConfigEntry`: an override is a
    // DYNAMIC_TOPIC_CONFIG synonym; then the broker config the default comes from, as
    // STATIC_BROKER_CONFIG when LMQ's config file makes it differ from Kafka's default, else
    // as DEFAULT_CONFIG where Kafka's broker config has a default of its own; a cluster-wide
    // setting as Kafka 4's controller stores it (a cluster default, DYNAMIC_DEFAULT_BROKER_CONFIG,
    // then DEFAULT_CONFIG). The entry's
    // source is its first synonym's (DEFAULT_CONFIG without any).
    Ok(TOPIC_CONFIGS
        .iter()
        .map(|definition| {
            let name = definition.name;
            let default = definition.default_value(&defaults);
            let mut synonyms = Vec::new();
            let value = match topic.configs.get(name) {
                Some(given) => {
                    // Shown as Kafka writes the parsed value back ("1" of a DOUBLE: "1.0").
                    let value = definition
                        .parse(given, Checks::Stored)
                        .map_or_else(|_| given.clone(), |parsed| parsed.canonical());
                    synonyms.push((name.to_string(), value.clone(), SOURCE_TOPIC));
                    value
                }
                None => default.clone(),
            };
            if let Some(synonym) = definition.broker_synonym {
                if synonym.cluster_wide {
                    synonyms.push((
                        synonym.name.to_string(),
                        default,
                        SOURCE_DYNAMIC_DEFAULT_BROKER,
                    ));
                    synonyms.push((
                        synonym.name.to_string(),
                        definition.kafka_default.to_string(),
                        SOURCE_DEFAULT,
                    ));
                } else if default != definition.kafka_default {
                    synonyms.push((synonym.name.to_string(), default, SOURCE_STATIC_BROKER));
                } else if synonym.listed_by_default {
                    synonyms.push((synonym.name.to_string(), default, SOURCE_DEFAULT));
                }
            }
            let source = synonyms
                .first()
                .map_or(SOURCE_DEFAULT, |(_, _, source)| *source);
            Entry {
                name: name.to_string(),
                value,
                source,
                kind: definition.kind,
                read_only: false,
                synonyms,
                documentation: Some(definition.documentation),
            }
        })
        .collect())
}

fn broker_entries(broker: &Broker) -> Vec<Entry> {
    let config = &broker.config;
    let entry = |name: &str, value: String, kind| Entry {
        name: name.to_string(),
        synonyms: vec![(name.to_string(), value.clone(), SOURCE_STATIC_BROKER)],
        value,
        source: SOURCE_STATIC_BROKER,
        kind,
        read_only: true,
        documentation: None,
    };
    vec![
        entry("node.id", config.node_id.to_string(), ConfigType::Int),
        entry(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::String,
        ),
        entry(
            "num.partitions",
            config.default_partitions.to_string(),
            ConfigType::Int,
        ),
        entry(
            "log.dirs",
            config.data_dir.display().to_string(),
            ConfigType::String,
        ),
        entry(
            "log.segment.bytes",
            config.log.segment_bytes.to_string(),
            ConfigType::Int,
        ),
        entry(
            "log.retention.ms",
            config.log.retention_ms.to_string(),
            ConfigType::Long,
        ),
        entry(
            "log.retention.bytes",
            config.log.retention_bytes.to_string(),
            ConfigType::Long,
        ),
        entry(
            "message.max.bytes",
            config.log.max_message_bytes.to_string(),
            ConfigType::Int,
        ),
        entry(
            "socket.request.max.bytes",
            config.frame_bytes_max.to_string(),
            ConfigType::Int,
        ),
    ]
}

fn describe(
    entry: Entry,
    include_synonyms: bool,
    include_documentation: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut described = DescribeConfigsResourceResult::default();
    described.name = str_bytes(entry.name.clone());
    described.value = Some(str_bytes(entry.value.clone()));
    described.read_only = entry.read_only;
    described.config_source = entry.source;
    // No topic config is a password: none is sensitive (Kafka: PASSWORD types only).
    described.is_sensitive = false;
    // Kafka sends documentation only when asked for it (v3+).
    described.documentation = entry
        .documentation
        .filter(|_| include_documentation && version >= 3)
        .map(str_bytes);
    if include_synonyms {
        described.synonyms = entry
            .synonyms
            .into_iter()
            .map(|(name, value, source)| {
                let mut synonym = DescribeConfigsSynonym::default();
                synonym.name = str_bytes(name);
                synonym.value = Some(str_bytes(value));
                synonym.source = source;
                synonym
            })
            .collect();
    }
    if version >= 3 {
        described.config_type = entry.kind as i8;
    }
    described
}

impl super::ErrorCodes for lmq_wire::protocol::messages::DescribeConfigsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.results.iter().map(|item| item.error_code));
    }
}
