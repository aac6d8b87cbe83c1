//! The topic configs LMQ knows, as one table: name, Kafka type, default, validation, the
//! broker config a default comes from, and what LMQ implements of it. CreateTopics,
//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, the topic registry and produce all
//! read it. Kafka 4's `LogConfig` is the reference for names, types, defaults and ranges;
//! values are parsed as Kafka's `ConfigDef.parseType` parses them (trimmed, booleans in any
//! case, lists split at commas). Configs Kafka has and LMQ does not implement are refused as
//! unknown.

use std::collections::BTreeMap;

use lmq_storage::{LogConfig, TimestampType};

/// How Kafka types a config in DescribeConfigs (`ConfigEntry.ConfigType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// Kafka's validator of a config (`ConfigDef.Range.atLeast`, `ValidString`/`ValidList.in`).
#[derive(Debug, Clone, Copy)]
pub enum Validation {
    /// Any value of the type.
    Any,
    AtLeast(i64),
    /// A string among these; for a list, every item.
    OneOf(&'static [&'static str]),
}

/// What LMQ does with a value Kafka would accept.
#[derive(Debug, Clone, Copy)]
pub enum Support {
    /// Every valid value is honoured.
    Full,
    /// Only this value (for a list: every item this value); others are refused until the
    /// feature `why` names exists.
    Only {
        value: &'static str,
        why: &'static str,
    },
}

/// A parsed config value (an INT within 32 bits unless parsed with [`Checks::Stored`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Boolean(bool),
    String(String),
    Int(i64),
    Long(i64),
    List(Vec<String>),
}

/// Which checks a value gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Kafka's, for a value a client sends (CreateTopics, the alter calls).
    Kafka,
    /// For overrides already stored (topic files, the cluster metadata): an earlier LMQ took
    /// any 64-bit number there (`retention.ms=-5` meant forever), so numbers skip Kafka's
    /// width and ranges and keep the meaning they had; names, strings and what LMQ supports
    /// are checked as before.
    Stored,
    /// As `Stored`, for the broker's own internal topics, which carry Kafka's settings for
    /// them (`cleanup.policy=compact` on `__consumer_offsets`) whether or not LMQ applies
    /// them yet: what LMQ supports is not checked.
    Internal,
}

/// What a topic falls back to where it has no override.
#[derive(Debug, Clone, Copy)]
pub struct TopicDefaults<'a> {
    pub log: &'a LogConfig,
    /// The cluster's `min.insync.replicas`.
    pub min_insync_replicas: usize,
}

/// A topic's settings: its overrides parsed over the broker defaults, once per topic (when it
/// is opened or reconfigured), never per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    pub log: LogConfig,
    /// `min.insync.replicas` when the topic overrides it (else the cluster's).
    pub min_insync_replicas: Option<usize>,
}

/// A topic config value Kafka would refuse (INVALID_CONFIG), with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

impl TopicSettings {
    /// Parses and validates every override (the whole set is refused for one bad entry).
    pub fn parse(
        defaults: &LogConfig,
        configs: &BTreeMap<String, String>,
        checks: Checks,
    ) -> Result<Self, InvalidConfig> {
        let mut settings = TopicSettings {
            log: defaults.clone(),
            min_insync_replicas: None,
        };
        for (name, value) in configs {
            let definition = find(name).ok_or_else(|| {
                invalid(
                    name,
                    value,
                    "unknown or unsupported topic config".to_string(),
                )
            })?;
            let parsed = definition.parse(value, checks)?;
            (definition.apply)(&mut settings, &parsed);
        }
        // The limits of LMQ's own storage (u32 index positions, a batch header's size).
        settings.log.validate().map_err(InvalidConfig)?;
        Ok(settings)
    }

    /// Whether produce answers carry the broker's append time.
    pub fn uses_log_append_time(&self) -> bool {
        self.log.timestamp_type == TimestampType::LogAppendTime
    }
}

/// One topic config.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub validation: Validation,
    /// The broker config the topic's default comes from, as Kafka names it in DescribeConfigs
    /// synonyms; `None` where Kafka reports none (`segment.ms` falls back to
    /// `log.roll.hours`, which Kafka does not list as its synonym).
    pub broker_synonym: Option<&'static str>,
    pub support: Support,
    default: fn(&TopicDefaults) -> String,
    /// Puts a valid, supported value into the settings.
    apply: fn(&mut TopicSettings, &Value),
}

impl TopicConfigDef {
    /// The value a topic has when it does not override this config.
    pub fn default_value(&self, defaults: &TopicDefaults) -> String {
        (self.default)(defaults)
    }

    /// Parses `value` as Kafka does, checks Kafka's validation (as `checks` says), then what
    /// LMQ supports.
    pub fn parse(&self, value: &str, checks: Checks) -> Result<Value, InvalidConfig> {
        let name = self.name;
        let refuse = |reason: String| invalid(name, value, reason);
        let trimmed = value.trim();
        let parsed = match self.kind {
            ConfigType::Boolean => {
                if trimmed.eq_ignore_ascii_case("true") {
                    Value::Boolean(true)
                } else if trimmed.eq_ignore_ascii_case("false") {
                    Value::Boolean(false)
                } else {
                    return Err(refuse("must be true or false".to_string()));
                }
            }
            ConfigType::String => Value::String(trimmed.to_string()),
            ConfigType::Int => {
                let number: i64 = trimmed
                    .parse()
                    .map_err(|_| refuse("not a number of type INT".to_string()))?;
                if checks == Checks::Kafka && i32::try_from(number).is_err() {
                    return Err(refuse("not a number of type INT".to_string()));
                }
                Value::Int(number)
            }
            ConfigType::Long => Value::Long(
                trimmed
                    .parse()
                    .map_err(|_| refuse("not a number of type LONG".to_string()))?,
            ),
            ConfigType::List if trimmed.is_empty() => Value::List(Vec::new()),
            ConfigType::List => Value::List(
                trimmed
                    .split(',')
                    .map(|item| item.trim().to_string())
                    .collect(),
            ),
        };
        match (self.validation, &parsed) {
            (Validation::AtLeast(minimum), Value::Int(number) | Value::Long(number))
                if checks == Checks::Kafka && *number < minimum =>
            {
                return Err(refuse(format!("must be at least {minimum}")));
            }
            (Validation::OneOf(allowed), Value::String(text))
                if !allowed.contains(&text.as_str()) =>
            {
                return Err(refuse(format!("must be one of {}", allowed.join(", "))));
            }
            (Validation::OneOf(allowed), Value::List(items))
                if items.iter().any(|item| !allowed.contains(&item.as_str())) =>
            {
                return Err(refuse(format!(
                    "items must be among {}",
                    allowed.join(", ")
                )));
            }
            _ => {}
        }
        if let Support::Only { value: only, why } = self.support
            && checks != Checks::Internal
        {
            let supported = match &parsed {
                Value::Boolean(flag) => flag.to_string() == only,
                Value::String(text) => text == only,
                Value::Int(number) => number.to_string() == only,
                Value::Long(number) => number.to_string() == only,
                Value::List(items) => !items.is_empty() && items.iter().all(|item| item == only),
            };
            if !supported {
                return Err(refuse(format!("only '{only}' is supported ({why})")));
            }
        }
        Ok(parsed)
    }
}

fn invalid(name: &str, value: &str, reason: String) -> InvalidConfig {
    InvalidConfig(format!("{name}={value}: {reason}"))
}

/// The table entry of `name`.
pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    // Ten entries in name order: a binary search, not a map.
    TOPIC_CONFIGS
        .binary_search_by(|definition| definition.name.cmp(name))
        .ok()
        .and_then(|index| TOPIC_CONFIGS.get(index))
}

/// `min.insync.replicas` of a topic's overrides (already validated where they were set).
pub fn min_insync_replicas(configs: &BTreeMap<String, String>) -> Option<usize> {
    let definition = find(MIN_INSYNC_REPLICAS)?;
    match definition.parse(configs.get(MIN_INSYNC_REPLICAS)?, Checks::Stored) {
        Ok(Value::Int(count)) => usize::try_from(count).ok(),
        _ => None,
    }
}

const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// "-1" for no limit, as Kafka shows it.
fn unlimited(limit: Option<u64>) -> String {
    limit.map_or_else(|| "-1".to_string(), |limit| limit.to_string())
}

/// A non-negative number as the u64 the log config holds (validation ran first).
fn unsigned(value: &Value) -> Option<u64> {
    match value {
        Value::Int(number) => u64::try_from(*number).ok(),
        Value::Long(number) => u64::try_from(*number).ok(),
        _ => None,
    }
}

/// Every topic config LMQ knows, in name order (DescribeConfigs lists them so; [`find`]
/// searches it).
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        validation: Validation::OneOf(&["compact", "delete"]),
        broker_synonym: Some("log.cleanup.policy"),
        support: Support::Only {
            value: "delete",
            why: "compaction is not built yet",
        },
        default: |_| "delete".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        kind: ConfigType::Int,
        validation: Validation::AtLeast(0),
        broker_synonym: Some("log.index.interval.bytes"),
        support: Support::Full,
        default: |defaults| defaults.log.index_interval_bytes.to_string(),
        apply: |settings, value| {
            if let Some(bytes) = unsigned(value) {
                settings.log.index_interval_bytes = bytes;
            }
        },
    },
    TopicConfigDef {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        validation: Validation::AtLeast(0),
        broker_synonym: Some("message.max.bytes"),
        support: Support::Full,
        default: |defaults| defaults.log.batch_bytes_max.to_string(),
        apply: |settings, value| {
            if let Some(bytes) = unsigned(value) {
                settings.log.batch_bytes_max = bytes;
            }
        },
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        validation: Validation::OneOf(&["CreateTime", "LogAppendTime"]),
        broker_synonym: Some("log.message.timestamp.type"),
        support: Support::Full,
        default: |defaults| match defaults.log.timestamp_type {
            TimestampType::CreateTime => "CreateTime".to_string(),
            TimestampType::LogAppendTime => "LogAppendTime".to_string(),
        },
        apply: |settings, value| {
            settings.log.timestamp_type = match value {
                Value::String(kind) if kind == "LogAppendTime" => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            };
        },
    },
    TopicConfigDef {
        name: MIN_INSYNC_REPLICAS,
        kind: ConfigType::Int,
        validation: Validation::AtLeast(1),
        broker_synonym: Some("min.insync.replicas"),
        support: Support::Full,
        default: |defaults| defaults.min_insync_replicas.to_string(),
        // Applied by the partition's leader (`ClusterNode::replication_config`).
        apply: |settings, value| {
            settings.min_insync_replicas = unsigned(value).and_then(|n| usize::try_from(n).ok());
        },
    },
    TopicConfigDef {
        name: "retention.bytes",
        // Kafka: any long; a negative one means no limit.
        kind: ConfigType::Long,
        validation: Validation::Any,
        broker_synonym: Some("log.retention.bytes"),
        support: Support::Full,
        default: |defaults| unlimited(defaults.log.retention.retention_bytes),
        apply: |settings, value| settings.log.retention.retention_bytes = unsigned(value),
    },
    TopicConfigDef {
        name: "retention.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(-1),
        broker_synonym: Some("log.retention.ms"),
        support: Support::Full,
        default: |defaults| unlimited(defaults.log.retention.retention_ms),
        apply: |settings, value| settings.log.retention.retention_ms = unsigned(value),
    },
    TopicConfigDef {
        name: "segment.bytes",
        kind: ConfigType::Int,
        // Kafka's `LegacyRecord.RECORD_OVERHEAD_V0`.
        validation: Validation::AtLeast(14),
        broker_synonym: Some("log.segment.bytes"),
        support: Support::Full,
        default: |defaults| defaults.log.segment_bytes_max.to_string(),
        apply: |settings, value| {
            if let Some(bytes) = unsigned(value) {
                settings.log.segment_bytes_max = bytes;
            }
        },
    },
    TopicConfigDef {
        name: "segment.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(1),
        broker_synonym: None,
        support: Support::Full,
        default: |defaults| defaults.log.segment_ms.to_string(),
        apply: |settings, value| {
            if let Some(ms) = unsigned(value) {
                settings.log.segment_ms = ms;
            }
        },
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        validation: Validation::Any,
        broker_synonym: Some("unclean.leader.election.enable"),
        support: Support::Only {
            value: "false",
            why: "an out-of-sync replica never leads",
        },
        default: |_| "false".to_string(),
        apply: |_, _| {},
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_name_order_so_find_sees_every_entry() {
        for definition in TOPIC_CONFIGS {
            assert_eq!(
                find(definition.name).map(|found| found.name),
                Some(definition.name)
            );
        }
        assert!(
            TOPIC_CONFIGS
                .windows(2)
                .all(|pair| pair[0].name < pair[1].name)
        );
        assert!(find("compression.type").is_none());
    }

    #[test]
    fn min_insync_replicas_is_read_from_the_overrides() {
        let configs = BTreeMap::from([(MIN_INSYNC_REPLICAS.to_string(), " 2".to_string())]);
        assert_eq!(min_insync_replicas(&configs), Some(2));
        assert_eq!(min_insync_replicas(&BTreeMap::new()), None);
    }
}
