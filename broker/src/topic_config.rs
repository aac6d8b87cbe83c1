//! The topic configs LMQ knows, as one table: name, Kafka type, Kafka's default, validation,
//! the broker config a default comes from, and what LMQ does with the value. CreateTopics,
//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, the topic registry and produce
//! all read it, and docs/CONFIG.md shows it (a test keeps the two the same).
//!
//! Kafka 4.4's `LogConfig` is the reference: every topic config it documents is here, with
//! its type, default, validator and broker synonym. Values are parsed as Kafka's
//! `ConfigDef.parseType` parses them (trimmed, booleans in any case, lists split at commas),
//! and refused with Kafka's texts (`Unknown topic config name: X`, `Invalid value V for
//! configuration N: ...`). A config is either honoured, accepted with a stated reason why it
//! changes nothing in LMQ, or (where a value would promise a feature LMQ lacks) limited to
//! the value that means "off".

use std::collections::BTreeMap;

use lmq_storage::{CleanupPolicy, FlushPolicy, LogConfig, TimestampType};
use lmq_wire::records::Codec;

/// How Kafka types a config in DescribeConfigs (`ConfigEntry.ConfigType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

impl ConfigType {
    fn name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "boolean",
            ConfigType::String => "string",
            ConfigType::Int => "int",
            ConfigType::Long => "long",
            ConfigType::Double => "double",
            ConfigType::List => "list",
        }
    }
}

/// Kafka's validator of a config (`ConfigDef.Range`, `ValidString`/`ValidList.in`, ...).
#[derive(Debug, Clone, Copy)]
pub enum Validation {
    /// Any value of the type.
    Any,
    AtLeast(i64),
    /// Both ends included (a DOUBLE is compared as a number too).
    Between(i64, i64),
    /// `Between`, or exactly `or` (gzip's -1: the codec's default level).
    BetweenOr {
        min: i64,
        max: i64,
        or: i64,
    },
    /// A string among these; for a list, every item.
    OneOf(&'static [&'static str]),
    /// Kafka's `ThrottledReplicaListValidator`: `*`, or `partition:broker` pairs.
    ThrottledReplicas,
}

/// What LMQ does with a value Kafka would accept.
#[derive(Debug, Clone, Copy)]
pub enum Lmq {
    /// Every valid value is applied; how, in a few words.
    Honoured(&'static str),
    /// Every valid value is accepted, stored and described, and changes nothing: why.
    NoEffect(&'static str),
    /// Only `value` (for a list: every item `value`) is accepted: other values would promise
    /// a feature LMQ does not have. `refusal` is the message for them; with `whole` it is
    /// the whole message (Kafka's own text for that case), else the reason after Kafka's
    /// "Invalid value V for configuration N: ".
    Only {
        value: &'static str,
        refusal: &'static str,
        whole: bool,
    },
}

/// The broker config a topic config falls back to (Kafka's `TOPIC_CONFIG_SYNONYMS`).
#[derive(Debug, Clone, Copy)]
pub struct BrokerSynonym {
    pub name: &'static str,
    /// Kafka's broker config has a default of its own, so DescribeConfigs lists it as a
    /// DEFAULT_CONFIG synonym. `log.retention.ms`, `log.roll.ms`, `log.roll.jitter.ms` and
    /// `log.flush.interval.ms` have none (their value comes from an hours setting or
    /// another config), so Kafka lists them only when the broker sets them.
    pub listed_by_default: bool,
    /// A cluster-wide setting (LMQ's `[cluster]`): Kafka 4's controller stores
    /// `min.insync.replicas` as a cluster default at bootstrap, so it is described as a
    /// DYNAMIC_DEFAULT_BROKER_CONFIG synonym before its DEFAULT_CONFIG one.
    pub cluster_wide: bool,
}

/// A parsed config value (an INT within 32 bits unless parsed with [`Checks::Stored`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Boolean(bool),
    String(String),
    Int(i64),
    Long(i64),
    Double(f64),
    List(Vec<String>),
}

impl Value {
    /// The value as Kafka's `ConfigDef.convertToString` writes it (DescribeConfigs).
    pub fn canonical(&self) -> String {
        match self {
            Value::Boolean(flag) => flag.to_string(),
            Value::String(text) => text.clone(),
            Value::Int(number) | Value::Long(number) => number.to_string(),
            // Java's Double.toString: "1.0", not "1".
            Value::Double(number) if number.fract() == 0.0 && number.abs() < 1e7 => {
                format!("{number:.1}")
            }
            Value::Double(number) => number.to_string(),
            Value::List(items) => items.join(","),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Value::Int(number) | Value::Long(number) => Some(*number as f64),
            Value::Double(number) => Some(*number),
            _ => None,
        }
    }
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
}

/// What a topic falls back to where it has no override.
#[derive(Debug, Clone, Copy)]
pub struct TopicDefaults<'a> {
    pub log: &'a LogConfig,
    /// The cluster's `min.insync.replicas`.
    pub min_insync_replicas: usize,
}

/// `compression.type`: how the broker stores a produced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    /// As the producer compressed it (the batch is stored as received).
    Producer,
    /// Re-encoded with this codec when the producer used another one.
    Codec(Codec),
}

/// A topic's settings: its overrides parsed over the broker defaults, once per topic (when it
/// is opened or reconfigured), never per request.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSettings {
    pub log: LogConfig,
    /// `min.insync.replicas` when the topic overrides it (else the cluster's).
    pub min_insync_replicas: Option<usize>,
    pub compression: TopicCompression,
    /// `compression.gzip.level` (-1: the codec's default).
    pub gzip_level: i32,
    /// `compression.zstd.level`.
    pub zstd_level: i32,
    /// `message.timestamp.before.max.ms`: how far a CreateTime record may lag the broker.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far a CreateTime record may lead the broker.
    pub timestamp_after_max_ms: i64,
    /// `max.decompressed.message.bytes`: the most a batch may expand to when the broker
    /// has to look inside it.
    pub decompressed_bytes_max: usize,
    /// `flush.messages` and `flush.ms` when overridden; the flush policy is made of both.
    flush_messages: Option<i64>,
    flush_ms: Option<i64>,
}

/// A topic config value Kafka would refuse (INVALID_CONFIG), with Kafka's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

/// Kafka's defaults of the settings that live outside [`LogConfig`].
const TIMESTAMP_AFTER_MAX_MS_DEFAULT: i64 = 60 * 60 * 1000;
const DECOMPRESSED_BYTES_MAX_DEFAULT: i64 = 2_147_483_639;
const GZIP_LEVEL_DEFAULT: i32 = -1;
const ZSTD_LEVEL_DEFAULT: i32 = 3;

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
            compression: TopicCompression::Producer,
            gzip_level: GZIP_LEVEL_DEFAULT,
            zstd_level: ZSTD_LEVEL_DEFAULT,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            decompressed_bytes_max: usize::try_from(DECOMPRESSED_BYTES_MAX_DEFAULT)
                .unwrap_or(usize::MAX),
            flush_messages: None,
            flush_ms: None,
        };
        for (name, value) in configs {
            let definition = find(name)
                .ok_or_else(|| InvalidConfig(format!("Unknown topic config name: {name}")))?;
            let parsed = definition.parse(value, checks)?;
            (definition.apply)(&mut settings, &parsed);
        }
        // Kafka's `LogConfig.validateValues`, on the values in effect.
        let (min_lag, max_lag) = (
            settings.log.compaction.min_compaction_lag_ms,
            settings.log.compaction.max_compaction_lag_ms,
        );
        if checks == Checks::Kafka && min_lag > max_lag {
            return Err(InvalidConfig(format!(
                "conflict topic config setting min.compaction.lag.ms ({min_lag}) > \
                 max.compaction.lag.ms ({max_lag})"
            )));
        }
        settings.log.flush_policy = flush_policy(
            settings.flush_messages,
            settings.flush_ms,
            defaults.flush_policy,
        );
        // Without `delete` in the policy nothing is removed by age or size (Kafka: a
        // compact-only or empty policy keeps every segment; the cleaner removes records).
        if !settings.log.cleanup_policy.delete {
            settings.log.retention.retention_ms = None;
            settings.log.retention.retention_bytes = None;
        }
        // The limits of LMQ's own storage (u32 index positions, a batch header's size).
        settings.log.validate().map_err(InvalidConfig)?;
        Ok(settings)
    }

    /// Whether produce answers carry the broker's append time.
    pub fn uses_log_append_time(&self) -> bool {
        self.log.timestamp_type == TimestampType::LogAppendTime
    }

    /// The codec and level a produced batch must be stored with, when the producer's codec
    /// is not it; `None` keeps every batch as sent.
    pub fn recompression(&self, producer_codec: Codec) -> Option<(Codec, Option<i32>)> {
        match self.compression {
            TopicCompression::Producer => None,
            TopicCompression::Codec(codec) if codec == producer_codec => None,
            TopicCompression::Codec(codec) => {
                let level = match codec {
                    Codec::Gzip => Some(self.gzip_level),
                    Codec::Zstd => Some(self.zstd_level),
                    _ => None,
                };
                Some((codec, level))
            }
        }
    }
}

/// The flush policy of `flush.messages` and `flush.ms` (each the topic's override, else what
/// the broker's `[log] flush` means for it): one message is every batch (LMQ's group
/// commit), else a time interval, else the OS. A count above one has no LMQ equivalent: it
/// leaves the policy to `flush.ms`.
fn flush_policy(messages: Option<i64>, ms: Option<i64>, broker: FlushPolicy) -> FlushPolicy {
    let messages = messages.unwrap_or_else(|| flush_messages_of(broker));
    let ms = ms.unwrap_or_else(|| flush_ms_of(broker));
    if messages <= 1 {
        FlushPolicy::EveryBatch
    } else if ms != i64::MAX {
        FlushPolicy::IntervalMs(u64::try_from(ms).unwrap_or(0))
    } else {
        FlushPolicy::Os
    }
}

/// `log.flush.interval.messages` as LMQ's broker flush policy means it.
fn flush_messages_of(policy: FlushPolicy) -> i64 {
    match policy {
        FlushPolicy::EveryBatch => 1,
        FlushPolicy::IntervalMs(_) | FlushPolicy::Os => i64::MAX,
    }
}

/// `log.flush.interval.ms` as LMQ's broker flush policy means it.
fn flush_ms_of(policy: FlushPolicy) -> i64 {
    match policy {
        FlushPolicy::IntervalMs(ms) => i64::try_from(ms).unwrap_or(i64::MAX),
        FlushPolicy::EveryBatch | FlushPolicy::Os => i64::MAX,
    }
}

/// One topic config.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub validation: Validation,
    /// Kafka 4's default, as DescribeConfigs shows it on a broker that sets nothing.
    pub kafka_default: &'static str,
    pub broker_synonym: Option<BrokerSynonym>,
    pub lmq: Lmq,
    /// What the config means (DescribeConfigs with `include_documentation`).
    pub documentation: &'static str,
    /// The value in effect without an override: LMQ's broker setting where it has one.
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
        let refuse = |shown: &str, reason: &str| {
            InvalidConfig(format!(
                "Invalid value {shown} for configuration {name}: {reason}"
            ))
        };
        let trimmed = value.trim();
        let not_a = |kind: &str| refuse(value, &format!("Not a number of type {kind}"));
        let parsed = match self.kind {
            ConfigType::Boolean => {
                if trimmed.eq_ignore_ascii_case("true") {
                    Value::Boolean(true)
                } else if trimmed.eq_ignore_ascii_case("false") {
                    Value::Boolean(false)
                } else {
                    return Err(refuse(value, "Expected value to be either true or false"));
                }
            }
            ConfigType::String => Value::String(trimmed.to_string()),
            ConfigType::Int => {
                let number: i64 = trimmed.parse().map_err(|_| not_a("INT"))?;
                if checks == Checks::Kafka && i32::try_from(number).is_err() {
                    return Err(not_a("INT"));
                }
                Value::Int(number)
            }
            ConfigType::Long => Value::Long(trimmed.parse().map_err(|_| not_a("LONG"))?),
            ConfigType::Double => {
                let number: f64 = trimmed.parse().map_err(|_| not_a("DOUBLE"))?;
                if !number.is_finite() {
                    return Err(not_a("DOUBLE"));
                }
                Value::Double(number)
            }
            ConfigType::List if trimmed.is_empty() => Value::List(Vec::new()),
            ConfigType::List => Value::List(
                trimmed
                    .split(',')
                    .map(|item| item.trim().to_string())
                    .collect(),
            ),
        };
        if let Some(reason) = self.violation(&parsed, checks) {
            // Kafka names the offending item of a list it checks item by item.
            let shown = match (&parsed, self.validation) {
                (Value::List(items), Validation::OneOf(allowed)) => items
                    .iter()
                    .find(|item| !allowed.contains(&item.as_str()))
                    .cloned()
                    .unwrap_or_default(),
                (Value::List(items), _) => format!("[{}]", items.join(", ")),
                // Kafka's validators see the parsed value: a DOUBLE "2" shows as "2.0".
                (parsed, _) => parsed.canonical(),
            };
            return Err(refuse(&shown, &reason));
        }
        if let Lmq::Only {
            value: only,
            refusal,
            whole,
        } = self.lmq
        {
            let supported = match &parsed {
                Value::List(items) => !items.is_empty() && items.iter().all(|item| item == only),
                other => other.canonical() == only,
            };
            if !supported {
                return Err(if whole {
                    InvalidConfig(refusal.to_string())
                } else {
                    refuse(value, refusal)
                });
            }
        }
        Ok(parsed)
    }

    /// Kafka's validator's complaint about `parsed`, if any.
    fn violation(&self, parsed: &Value, checks: Checks) -> Option<String> {
        let range_checked = checks == Checks::Kafka || matches!(parsed, Value::Double(_));
        match (self.validation, parsed) {
            (Validation::Any, _) => None,
            (Validation::AtLeast(minimum), value) if range_checked => value
                .number()
                .filter(|&number| number < minimum as f64)
                .map(|_| format!("Value must be at least {minimum}")),
            (Validation::Between(minimum, maximum), value) if range_checked => {
                let number = value.number()?;
                if number < minimum as f64 {
                    Some(format!("Value must be at least {minimum}"))
                } else if number > maximum as f64 {
                    Some(format!("Value must be no more than {maximum}"))
                } else {
                    None
                }
            }
            (Validation::BetweenOr { min, max, or }, value) if range_checked => {
                let number = value.number()?;
                let valid = number == or as f64 || (min as f64..=max as f64).contains(&number);
                (!valid).then(|| format!("Value must be between {min} and {max} or equal to {or}"))
            }
            (Validation::OneOf(allowed), Value::String(text))
                if !allowed.contains(&text.as_str()) =>
            {
                Some(format!("String must be one of: {}", allowed.join(", ")))
            }
            (Validation::OneOf(allowed), Value::List(items))
                if items.iter().any(|item| !allowed.contains(&item.as_str())) =>
            {
                Some(format!("String must be one of: {}", allowed.join(", ")))
            }
            (Validation::ThrottledReplicas, Value::List(items))
                if !throttled_replicas_valid(items) =>
            {
                Some(format!(
                    "{} must be the literal '*' or a list of replicas in the following format: \
                     [partitionId]:[brokerId],[partitionId]:[brokerId],...",
                    self.name
                ))
            }
            _ => None,
        }
    }
}

/// Kafka's `ThrottledReplicaListValidator`: empty, `*` alone, or `partition:broker` pairs of
/// numbers.
fn throttled_replicas_valid(items: &[String]) -> bool {
    let pair = |item: &String| {
        item.split_once(':').is_some_and(|(partition, broker)| {
            partition.trim().parse::<i32>().is_ok() && broker.trim().parse::<i32>().is_ok()
        })
    };
    items.iter().all(pair) || (items.len() == 1 && items[0] == "*")
}

/// The table entry of `name`.
pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    // The table is in name order: a binary search, not a map.
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
        Value::Int(number) | Value::Long(number) => u64::try_from(*number).ok(),
        _ => None,
    }
}

/// A number as it was given (INT or LONG).
fn signed(value: &Value) -> Option<i64> {
    match value {
        Value::Int(number) | Value::Long(number) => Some(*number),
        _ => None,
    }
}

fn int32(value: &Value) -> Option<i32> {
    signed(value).and_then(|number| i32::try_from(number).ok())
}

const fn synonym(name: &'static str) -> Option<BrokerSynonym> {
    Some(BrokerSynonym {
        name,
        listed_by_default: true,
        cluster_wide: false,
    })
}

/// A broker synonym Kafka lists only when the broker sets it.
const fn synonym_when_set(name: &'static str) -> Option<BrokerSynonym> {
    Some(BrokerSynonym {
        name,
        listed_by_default: false,
        cluster_wide: false,
    })
}

const NO_TIERED_STORAGE: &str = "LMQ has no tiered storage: a topic's data stays on the \
                                  broker's disk, so local and total retention are the same";

/// Every topic config LMQ knows, in name order (DescribeConfigs lists them so; [`find`]
/// searches it).
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        validation: Validation::OneOf(&["compact", "delete"]),
        kafka_default: "delete",
        broker_synonym: synonym("log.cleanup.policy"),
        lmq: Lmq::Honoured(
            "`delete` removes old segments by `retention.*`; `compact` is passed to the log \
             cleaner in `LogConfig::cleanup_policy` (keyless records are refused at \
             produce); without `delete` nothing is removed by age or size",
        ),
        documentation: "How old records go: \"delete\" removes whole segments past the \
                        retention limits, \"compact\" keeps the latest record of each key, \
                        both may be given; an empty list keeps everything.",
        default: |_| "delete".to_string(),
        apply: |settings, value| {
            if let Value::List(items) = value {
                settings.log.cleanup_policy = CleanupPolicy {
                    compact: items.iter().any(|item| item == "compact"),
                    delete: items.iter().any(|item| item == "delete"),
                };
            }
        },
    },
    TopicConfigDef {
        name: "compression.gzip.level",
        kind: ConfigType::Int,
        validation: Validation::BetweenOr {
            min: 1,
            max: 9,
            or: -1,
        },
        kafka_default: "-1",
        broker_synonym: synonym("compression.gzip.level"),
        lmq: Lmq::Honoured("the level of batches the broker recompresses to gzip"),
        documentation: "The gzip level used when the broker compresses with gzip (-1: the \
                        codec's default).",
        default: |_| GZIP_LEVEL_DEFAULT.to_string(),
        apply: |settings, value| {
            if let Some(level) = int32(value) {
                settings.gzip_level = level;
            }
        },
    },
    TopicConfigDef {
        name: "compression.lz4.level",
        kind: ConfigType::Int,
        validation: Validation::Between(1, 17),
        kafka_default: "9",
        broker_synonym: synonym("compression.lz4.level"),
        lmq: Lmq::NoEffect(
            "LMQ's lz4 encoder (lz4_flex) has one speed; batches it recompresses to lz4 \
             are valid LZ4 frames at that level",
        ),
        documentation: "The lz4 level used when the broker compresses with lz4.",
        default: |_| "9".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "compression.type",
        kind: ConfigType::String,
        validation: Validation::OneOf(&[
            "uncompressed",
            "zstd",
            "lz4",
            "snappy",
            "gzip",
            "producer",
        ]),
        kafka_default: "producer",
        broker_synonym: synonym("compression.type"),
        lmq: Lmq::Honoured(
            "`producer` stores batches as sent; a codec re-encodes each batch the producer \
             compressed otherwise before it is appended",
        ),
        documentation: "The codec batches are stored with: \"producer\" keeps the producer's, \
                        a codec name (or \"uncompressed\") makes the broker recompress batches \
                        that differ.",
        default: |_| "producer".to_string(),
        apply: |settings, value| {
            settings.compression = match value {
                Value::String(name) => match name.as_str() {
                    "uncompressed" => TopicCompression::Codec(Codec::None),
                    "gzip" => TopicCompression::Codec(Codec::Gzip),
                    "snappy" => TopicCompression::Codec(Codec::Snappy),
                    "lz4" => TopicCompression::Codec(Codec::Lz4),
                    "zstd" => TopicCompression::Codec(Codec::Zstd),
                    _ => TopicCompression::Producer,
                },
                _ => TopicCompression::Producer,
            };
        },
    },
    TopicConfigDef {
        name: "compression.zstd.level",
        kind: ConfigType::Int,
        validation: Validation::Between(-131_072, 22),
        kafka_default: "3",
        broker_synonym: synonym("compression.zstd.level"),
        lmq: Lmq::Honoured("the level of batches the broker recompresses to zstd"),
        documentation: "The zstd level used when the broker compresses with zstd.",
        default: |_| ZSTD_LEVEL_DEFAULT.to_string(),
        apply: |settings, value| {
            if let Some(level) = int32(value) {
                settings.zstd_level = level;
            }
        },
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(0),
        kafka_default: "86400000",
        broker_synonym: synonym("log.cleaner.delete.retention.ms"),
        lmq: Lmq::Honoured("passed to the log cleaner: how long a tombstone stays readable"),
        documentation: "How long a tombstone (a record with a key and no value) stays in a \
                        compacted log after cleaning reached it.",
        default: |defaults| defaults.log.compaction.delete_retention_ms.to_string(),
        apply: |settings, value| {
            if let Some(ms) = signed(value) {
                settings.log.compaction.delete_retention_ms = u64::try_from(ms).unwrap_or(0);
            }
        },
    },
    TopicConfigDef {
        name: "errors.deadletterqueue.group.enable",
        kind: ConfigType::Boolean,
        validation: Validation::Any,
        kafka_default: "false",
        broker_synonym: None,
        lmq: Lmq::Only {
            value: "false",
            refusal: "LMQ has no share groups, so no share-group dead-letter queue",
            whole: false,
        },
        documentation: "Whether share groups may use this topic as their dead-letter queue.",
        default: |_| "false".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(0),
        kafka_default: "60000",
        broker_synonym: synonym("log.segment.delete.delay.ms"),
        lmq: Lmq::NoEffect(
            "LMQ removes a segment's files as soon as retention drops it; a read in \
             progress keeps its open file, so no grace period is needed",
        ),
        documentation: "How long a deleted segment's files are kept before they are removed \
                        from the file system.",
        default: |_| "60000".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "flush.messages",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(1),
        kafka_default: "9223372036854775807",
        broker_synonym: synonym("log.flush.interval.messages"),
        lmq: Lmq::Honoured(
            "1 fsyncs every batch before it is acknowledged (group commit, as `[log] flush = \
             \"every-batch\"`); a larger count has no LMQ equivalent and leaves flushing to \
             `flush.ms`",
        ),
        documentation: "The number of messages after which the log is fsynced.",
        default: |defaults| flush_messages_of(defaults.log.flush_policy).to_string(),
        apply: |settings, value| settings.flush_messages = signed(value),
    },
    TopicConfigDef {
        name: "flush.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(0),
        kafka_default: "9223372036854775807",
        broker_synonym: synonym_when_set("log.flush.interval.ms"),
        lmq: Lmq::Honoured(
            "an interval fsync by the broker's 1 s upkeep (below 1 s acts as 1 s), as \
             `[log] flush = MS`",
        ),
        documentation: "The time after which the log is fsynced.",
        default: |defaults| flush_ms_of(defaults.log.flush_policy).to_string(),
        apply: |settings, value| settings.flush_ms = signed(value),
    },
    TopicConfigDef {
        name: "follower.replication.throttled.replicas",
        kind: ConfigType::List,
        validation: Validation::ThrottledReplicas,
        kafka_default: "",
        broker_synonym: None,
        lmq: Lmq::NoEffect("LMQ does not throttle replication"),
        documentation: "The replicas whose follower-side replication is throttled \
                        (partition:broker pairs, or *).",
        default: |_| String::new(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        kind: ConfigType::Int,
        validation: Validation::AtLeast(0),
        kafka_default: "4096",
        broker_synonym: synonym("log.index.interval.bytes"),
        lmq: Lmq::Honoured("bytes of log between two offset index entries"),
        documentation: "How many bytes of log lie between two entries of the offset index.",
        default: |defaults| defaults.log.index_interval_bytes.to_string(),
        apply: |settings, value| {
            if let Some(bytes) = unsigned(value) {
                settings.log.index_interval_bytes = bytes;
            }
        },
    },
    TopicConfigDef {
        name: "leader.replication.throttled.replicas",
        kind: ConfigType::List,
        validation: Validation::ThrottledReplicas,
        kafka_default: "",
        broker_synonym: None,
        lmq: Lmq::NoEffect("LMQ does not throttle replication"),
        documentation: "The replicas whose leader-side replication is throttled \
                        (partition:broker pairs, or *).",
        default: |_| String::new(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "local.retention.bytes",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(-2),
        kafka_default: "-2",
        broker_synonym: synonym("log.local.retention.bytes"),
        lmq: Lmq::NoEffect(NO_TIERED_STORAGE),
        documentation: "With tiered storage, the bytes a partition keeps on local disk (-2: \
                        retention.bytes).",
        default: |_| "-2".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "local.retention.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(-2),
        kafka_default: "-2",
        broker_synonym: synonym("log.local.retention.ms"),
        lmq: Lmq::NoEffect(NO_TIERED_STORAGE),
        documentation: "With tiered storage, how long a segment stays on local disk (-2: \
                        retention.ms).",
        default: |_| "-2".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(1),
        kafka_default: "9223372036854775807",
        broker_synonym: synonym("log.cleaner.max.compaction.lag.ms"),
        lmq: Lmq::Honoured("passed to the log cleaner"),
        documentation: "The longest a record may stay uncompacted in a compacted log.",
        default: |defaults| defaults.log.compaction.max_compaction_lag_ms.to_string(),
        apply: |settings, value| {
            if let Some(ms) = signed(value) {
                settings.log.compaction.max_compaction_lag_ms = u64::try_from(ms).unwrap_or(0);
            }
        },
    },
    TopicConfigDef {
        name: "max.decompressed.message.bytes",
        kind: ConfigType::Int,
        validation: Validation::Between(1, DECOMPRESSED_BYTES_MAX_DEFAULT),
        kafka_default: "2147483639",
        broker_synonym: synonym("max.decompressed.message.bytes"),
        lmq: Lmq::Honoured(
            "bounds a batch the broker decompresses (recompression, key and timestamp checks)",
        ),
        documentation: "The most bytes a compressed batch may expand to when the broker \
                        decompresses it.",
        default: |_| DECOMPRESSED_BYTES_MAX_DEFAULT.to_string(),
        apply: |settings, value| {
            if let Some(bytes) = unsigned(value).and_then(|bytes| usize::try_from(bytes).ok()) {
                settings.decompressed_bytes_max = bytes;
            }
        },
    },
    TopicConfigDef {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        validation: Validation::AtLeast(0),
        kafka_default: "1048588",
        broker_synonym: synonym("message.max.bytes"),
        lmq: Lmq::Honoured(
            "the largest batch a produce may append (LMQ: at least 61, a batch header)",
        ),
        documentation: "The largest record batch the topic accepts.",
        default: |defaults| defaults.log.batch_bytes_max.to_string(),
        apply: |settings, value| {
            if let Some(bytes) = unsigned(value) {
                settings.log.batch_bytes_max = bytes;
            }
        },
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(0),
        kafka_default: "3600000",
        broker_synonym: synonym("log.message.timestamp.after.max.ms"),
        lmq: Lmq::Honoured(
            "a CreateTime record further ahead of the broker's clock is refused \
             (INVALID_TIMESTAMP)",
        ),
        documentation: "How far a record's CreateTime timestamp may be ahead of the \
                        broker's clock.",
        default: |_| TIMESTAMP_AFTER_MAX_MS_DEFAULT.to_string(),
        apply: |settings, value| {
            if let Some(ms) = signed(value) {
                settings.timestamp_after_max_ms = ms;
            }
        },
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(0),
        kafka_default: "9223372036854775807",
        broker_synonym: synonym("log.message.timestamp.before.max.ms"),
        lmq: Lmq::Honoured(
            "a CreateTime record further behind the broker's clock is refused \
             (INVALID_TIMESTAMP)",
        ),
        documentation: "How far a record's CreateTime timestamp may be behind the \
                        broker's clock.",
        default: |_| i64::MAX.to_string(),
        apply: |settings, value| {
            if let Some(ms) = signed(value) {
                settings.timestamp_before_max_ms = ms;
            }
        },
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        validation: Validation::OneOf(&["CreateTime", "LogAppendTime"]),
        kafka_default: "CreateTime",
        broker_synonym: synonym("log.message.timestamp.type"),
        lmq: Lmq::Honoured("LogAppendTime stamps each batch with the broker's time"),
        documentation: "Whether records keep the producer's timestamp (CreateTime) or get \
                        the broker's append time (LogAppendTime).",
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
        name: "min.cleanable.dirty.ratio",
        kind: ConfigType::Double,
        validation: Validation::Between(0, 1),
        kafka_default: "0.5",
        broker_synonym: synonym("log.cleaner.min.cleanable.ratio"),
        lmq: Lmq::Honoured("passed to the log cleaner"),
        documentation: "The share of a compacted log not yet cleaned above which the \
                        cleaner takes it.",
        default: |defaults| {
            Value::Double(defaults.log.compaction.min_cleanable_dirty_ratio.as_f64()).canonical()
        },
        apply: |settings, value| {
            // Kafka's validator keeps it within [0, 1].
            if let Value::Double(ratio) = value
                && let Some(ratio) = lmq_storage::Ratio::from_f64(*ratio)
            {
                settings.log.compaction.min_cleanable_dirty_ratio = ratio;
            }
        },
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(0),
        kafka_default: "0",
        broker_synonym: synonym("log.cleaner.min.compaction.lag.ms"),
        lmq: Lmq::Honoured("passed to the log cleaner"),
        documentation: "The least time a record stays uncompacted in a compacted log.",
        default: |defaults| defaults.log.compaction.min_compaction_lag_ms.to_string(),
        apply: |settings, value| {
            if let Some(ms) = signed(value) {
                settings.log.compaction.min_compaction_lag_ms = u64::try_from(ms).unwrap_or(0);
            }
        },
    },
    TopicConfigDef {
        name: MIN_INSYNC_REPLICAS,
        kind: ConfigType::Int,
        validation: Validation::AtLeast(1),
        kafka_default: "1",
        broker_synonym: Some(BrokerSynonym {
            name: "min.insync.replicas",
            listed_by_default: true,
            cluster_wide: true,
        }),
        lmq: Lmq::Honoured("replicas an acks=all produce needs in sync"),
        documentation: "The replicas that must be in sync for an acks=all produce to succeed.",
        default: |defaults| defaults.min_insync_replicas.to_string(),
        // Applied by the partition's leader (`ClusterNode::replication_config`).
        apply: |settings, value| {
            settings.min_insync_replicas = unsigned(value).and_then(|n| usize::try_from(n).ok());
        },
    },
    TopicConfigDef {
        name: "preallocate",
        kind: ConfigType::Boolean,
        validation: Validation::Any,
        kafka_default: "false",
        broker_synonym: synonym("log.preallocate"),
        lmq: Lmq::NoEffect(
            "LMQ grows segment files as records arrive; preallocating would only reserve \
             the disk earlier",
        ),
        documentation: "Whether a new segment file is created at its full size.",
        default: |_| "false".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "remote.copy.lag.bytes",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(-1),
        kafka_default: "-1",
        broker_synonym: synonym("log.remote.copy.lag.bytes"),
        lmq: Lmq::NoEffect(NO_TIERED_STORAGE),
        documentation: "With tiered storage, how many bytes a segment waits before it is \
                        copied to remote storage.",
        default: |_| "-1".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "remote.copy.lag.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(-1),
        kafka_default: "0",
        broker_synonym: synonym("log.remote.copy.lag.ms"),
        lmq: Lmq::NoEffect(NO_TIERED_STORAGE),
        documentation: "With tiered storage, how long a segment waits before it is copied \
                        to remote storage.",
        default: |_| "0".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "remote.log.copy.disable",
        kind: ConfigType::Boolean,
        validation: Validation::Any,
        kafka_default: "false",
        broker_synonym: None,
        lmq: Lmq::NoEffect(NO_TIERED_STORAGE),
        documentation: "With tiered storage, stops copying segments to remote storage.",
        default: |_| "false".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "remote.log.delete.on.disable",
        kind: ConfigType::Boolean,
        validation: Validation::Any,
        kafka_default: "false",
        broker_synonym: None,
        lmq: Lmq::NoEffect(NO_TIERED_STORAGE),
        documentation: "With tiered storage, deletes the remote data when remote storage is \
                        turned off.",
        default: |_| "false".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "remote.storage.enable",
        kind: ConfigType::Boolean,
        validation: Validation::Any,
        kafka_default: "false",
        broker_synonym: None,
        lmq: Lmq::Only {
            value: "false",
            // Kafka's answer on a broker without tiered storage, which LMQ is.
            refusal: "Tiered Storage functionality is disabled in the broker. Topic cannot \
                      be configured with remote log storage.",
            whole: true,
        },
        documentation: "Whether the topic uses tiered (remote) storage.",
        default: |_| "false".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "retention.bytes",
        // Kafka: any long; a negative one means no limit.
        kind: ConfigType::Long,
        validation: Validation::Any,
        kafka_default: "-1",
        broker_synonym: synonym("log.retention.bytes"),
        lmq: Lmq::Honoured(
            "oldest segments deleted while the partition is larger (policy `delete`)",
        ),
        documentation: "The size a partition may grow to before its oldest segments are \
                        deleted (-1: no limit).",
        default: |defaults| unlimited(defaults.log.retention.retention_bytes),
        apply: |settings, value| settings.log.retention.retention_bytes = unsigned(value),
    },
    TopicConfigDef {
        name: "retention.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(-1),
        kafka_default: "604800000",
        broker_synonym: synonym_when_set("log.retention.ms"),
        lmq: Lmq::Honoured("segments older than this are deleted (policy `delete`)"),
        documentation: "How long a segment is kept before it is deleted (-1: forever).",
        default: |defaults| unlimited(defaults.log.retention.retention_ms),
        apply: |settings, value| settings.log.retention.retention_ms = unsigned(value),
    },
    TopicConfigDef {
        name: "segment.bytes",
        kind: ConfigType::Int,
        validation: Validation::AtLeast(1024 * 1024),
        kafka_default: "1073741824",
        broker_synonym: synonym("log.segment.bytes"),
        lmq: Lmq::Honoured("a segment rolls before it grows past this"),
        documentation: "The size of a segment file.",
        default: |defaults| defaults.log.segment_bytes_max.to_string(),
        apply: |settings, value| {
            if let Some(bytes) = unsigned(value) {
                settings.log.segment_bytes_max = bytes;
            }
        },
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        kind: ConfigType::Int,
        validation: Validation::AtLeast(4),
        kafka_default: "10485760",
        broker_synonym: synonym("log.index.size.max.bytes"),
        lmq: Lmq::Honoured(
            "the most an index file grows to; a full index rolls (LMQ: at least 12)",
        ),
        documentation: "The largest an offset or time index file grows to.",
        default: |defaults| defaults.log.index_bytes_max.to_string(),
        apply: |settings, value| {
            if let Some(bytes) = unsigned(value) {
                settings.log.index_bytes_max = bytes;
            }
        },
    },
    TopicConfigDef {
        name: "segment.jitter.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(0),
        kafka_default: "0",
        broker_synonym: synonym_when_set("log.roll.jitter.ms"),
        lmq: Lmq::NoEffect("LMQ rolls a segment exactly `segment.ms` after it was created"),
        documentation: "The most a segment's time-based roll is moved earlier at random, so \
                        segments do not all roll at once.",
        default: |_| "0".to_string(),
        apply: |_, _| {},
    },
    TopicConfigDef {
        name: "segment.ms",
        kind: ConfigType::Long,
        validation: Validation::AtLeast(1),
        kafka_default: "604800000",
        broker_synonym: synonym_when_set("log.roll.ms"),
        lmq: Lmq::Honoured("a non-empty segment rolls this long after it was created"),
        documentation: "The time after which a segment rolls even if it is not full.",
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
        kafka_default: "false",
        broker_synonym: synonym("unclean.leader.election.enable"),
        lmq: Lmq::Only {
            value: "false",
            refusal: "LMQ supports only false: an out-of-sync replica never leads",
            whole: false,
        },
        documentation: "Whether a replica out of the ISR may become leader (losing data).",
        default: |_| "false".to_string(),
        apply: |_, _| {},
    },
];

/// The topic config table of docs/CONFIG.md, made from [`TOPIC_CONFIGS`] (a test checks the
/// file holds exactly this).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| topic config | type | Kafka default | broker synonym | valid | LMQ |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for definition in TOPIC_CONFIGS {
        let default = if definition.kafka_default.is_empty() {
            "\"\"".to_string()
        } else {
            format!("`{}`", definition.kafka_default)
        };
        let synonym = definition
            .broker_synonym
            .map_or_else(|| "-".to_string(), |synonym| format!("`{}`", synonym.name));
        let valid = match definition.validation {
            Validation::Any if definition.kind == ConfigType::Boolean => "true, false".to_string(),
            Validation::Any => "any".to_string(),
            Validation::AtLeast(minimum) => format!(">= {minimum}"),
            Validation::Between(minimum, maximum) => format!("{minimum} to {maximum}"),
            Validation::BetweenOr { min, max, or } => format!("{min} to {max}, or {or}"),
            Validation::OneOf(allowed) => allowed.join(", "),
            Validation::ThrottledReplicas => "`*` or partition:broker pairs".to_string(),
        };
        let lmq = match definition.lmq {
            Lmq::Honoured(how) => format!("yes: {how}"),
            Lmq::NoEffect(why) => format!("accepted, no effect: {why}"),
            Lmq::Only { value, refusal, .. } => {
                format!("only `{value}`; other values refused: {refusal}")
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {default} | {synonym} | {valid} | {lmq} |\n",
            definition.name,
            definition.kind.name(),
        ));
    }
    out
}

#[cfg(test)]
mod tests;
