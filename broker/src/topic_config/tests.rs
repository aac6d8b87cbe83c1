use super::*;

fn parsed(key: &str, value: &str) -> Result<TopicSettings, InvalidConfig> {
    let configs = BTreeMap::from([(key.to_string(), value.to_string())]);
    TopicSettings::parse(&LogConfig::default(), &configs, Checks::Kafka)
}

fn refusal(key: &str, value: &str) -> String {
    match parsed(key, value) {
        Ok(_) => panic!("{key}={value} was accepted"),
        Err(InvalidConfig(message)) => message,
    }
}

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
}

/// Every topic config Kafka 4.4's `LogConfig` documents (its non-internal names), and no
/// other: `message.downconversion.enable` went in Kafka 4.0.
#[test]
fn the_table_has_every_kafka_4_topic_config() {
    let kafka = [
        "cleanup.policy",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.type",
        "compression.zstd.level",
        "delete.retention.ms",
        "errors.deadletterqueue.group.enable",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "follower.replication.throttled.replicas",
        "index.interval.bytes",
        "leader.replication.throttled.replicas",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "max.decompressed.message.bytes",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.type",
        "min.cleanable.dirty.ratio",
        "min.compaction.lag.ms",
        "min.insync.replicas",
        "preallocate",
        "remote.copy.lag.bytes",
        "remote.copy.lag.ms",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
        "remote.storage.enable",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.index.bytes",
        "segment.jitter.ms",
        "segment.ms",
        "unclean.leader.election.enable",
    ];
    let ours: Vec<&str> = TOPIC_CONFIGS
        .iter()
        .map(|definition| definition.name)
        .collect();
    assert_eq!(ours, kafka);
    assert!(find("message.downconversion.enable").is_none());
}

/// Without overrides a topic has Kafka's defaults (on LMQ's default broker settings), and
/// every default passes its own validation.
#[test]
fn defaults_are_kafkas_and_valid() {
    let log = LogConfig::default();
    let defaults = TopicDefaults {
        log: &log,
        min_insync_replicas: 1,
    };
    for definition in TOPIC_CONFIGS {
        let default = definition.default_value(&defaults);
        assert_eq!(default, definition.kafka_default, "{}", definition.name);
        if !default.is_empty() || definition.kind == ConfigType::List {
            assert!(
                definition.parse(&default, Checks::Kafka).is_ok(),
                "{}={default}",
                definition.name
            );
        }
    }
}

#[test]
fn unknown_names_are_refused_with_kafkas_text() {
    assert_eq!(
        refusal("no.such", "1"),
        "Unknown topic config name: no.such"
    );
    assert_eq!(
        refusal("message.downconversion.enable", "true"),
        "Unknown topic config name: message.downconversion.enable"
    );
}

/// Kafka 4.4's messages, read from its `LogConfig.validate` for the same inputs.
#[test]
fn bad_values_are_refused_with_kafkas_text() {
    for (key, value, message) in [
        (
            "retention.ms",
            "-5",
            "Invalid value -5 for configuration retention.ms: Value must be at least -1",
        ),
        (
            "cleanup.policy",
            "compact,foo",
            "Invalid value foo for configuration cleanup.policy: String must be one of: \
             compact, delete",
        ),
        (
            "compression.type",
            "brotli",
            "Invalid value brotli for configuration compression.type: String must be one of: \
             uncompressed, zstd, lz4, snappy, gzip, producer",
        ),
        (
            "min.cleanable.dirty.ratio",
            "1.5",
            "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no \
             more than 1",
        ),
        (
            "min.cleanable.dirty.ratio",
            "2",
            "Invalid value 2.0 for configuration min.cleanable.dirty.ratio: Value must be no \
             more than 1",
        ),
        (
            "min.cleanable.dirty.ratio",
            "x",
            "Invalid value x for configuration min.cleanable.dirty.ratio: Not a number of type \
             DOUBLE",
        ),
        (
            "preallocate",
            "yes",
            "Invalid value yes for configuration preallocate: Expected value to be either true \
             or false",
        ),
        (
            "segment.bytes",
            "3000000000",
            "Invalid value 3000000000 for configuration segment.bytes: Not a number of type INT",
        ),
        (
            "compression.gzip.level",
            "10",
            "Invalid value 10 for configuration compression.gzip.level: Value must be between \
             1 and 9 or equal to -1",
        ),
        (
            "leader.replication.throttled.replicas",
            "x",
            "Invalid value [x] for configuration leader.replication.throttled.replicas: \
             leader.replication.throttled.replicas must be the literal '*' or a list of \
             replicas in the following format: [partitionId]:[brokerId],[partitionId]:\
             [brokerId],...",
        ),
        (
            "remote.storage.enable",
            "true",
            "Tiered Storage functionality is disabled in the broker. Topic cannot be \
             configured with remote log storage.",
        ),
    ] {
        assert_eq!(refusal(key, value), message, "{key}={value}");
    }
    let configs = BTreeMap::from([
        ("min.compaction.lag.ms".to_string(), "10".to_string()),
        ("max.compaction.lag.ms".to_string(), "5".to_string()),
    ]);
    assert_eq!(
        TopicSettings::parse(&LogConfig::default(), &configs, Checks::Kafka),
        Err(InvalidConfig(
            "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms \
             (5)"
            .to_string()
        ))
    );
}

#[test]
fn every_cleanup_policy_is_accepted_and_reaches_the_log_config() {
    for (value, compact, delete) in [
        ("delete", false, true),
        ("compact", true, false),
        ("compact,delete", true, true),
        (" delete , compact ", true, true),
        ("", false, false),
    ] {
        let log = parsed("cleanup.policy", value).unwrap().log;
        assert_eq!(
            log.cleanup_policy,
            CleanupPolicy { compact, delete },
            "{value:?}"
        );
        // Only `delete` removes segments by age or size.
        assert_eq!(log.retention.retention_ms.is_some(), delete, "{value:?}");
    }
}

#[test]
fn compaction_settings_reach_the_log_config() {
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("min.compaction.lag.ms".to_string(), "100".to_string()),
        ("max.compaction.lag.ms".to_string(), "200".to_string()),
        ("delete.retention.ms".to_string(), "300".to_string()),
        ("min.cleanable.dirty.ratio".to_string(), "0.25".to_string()),
    ]);
    let log = TopicSettings::parse(&LogConfig::default(), &configs, Checks::Kafka)
        .unwrap()
        .log;
    assert_eq!(
        (
            log.compaction.min_compaction_lag_ms,
            log.compaction.max_compaction_lag_ms,
            log.compaction.delete_retention_ms,
            log.compaction.min_cleanable_dirty_ratio.as_f64()
        ),
        (100, 200, 300, 0.25)
    );
}

#[test]
fn compression_type_names_the_codec_batches_are_recompressed_to() {
    let producer = parsed("compression.type", "producer").unwrap();
    assert_eq!(producer.recompression(Codec::Snappy), None);
    let gzip = parsed("compression.type", "gzip").unwrap();
    assert_eq!(gzip.recompression(Codec::Gzip), None, "same codec: as sent");
    assert_eq!(
        gzip.recompression(Codec::None),
        Some((Codec::Gzip, Some(-1)))
    );
    let uncompressed = parsed("compression.type", "uncompressed").unwrap();
    assert_eq!(
        uncompressed.recompression(Codec::Lz4),
        Some((Codec::None, None))
    );
    let configs = BTreeMap::from([
        ("compression.type".to_string(), "zstd".to_string()),
        ("compression.zstd.level".to_string(), "7".to_string()),
    ]);
    let zstd = TopicSettings::parse(&LogConfig::default(), &configs, Checks::Kafka).unwrap();
    assert_eq!(
        zstd.recompression(Codec::None),
        Some((Codec::Zstd, Some(7)))
    );
}

/// `flush.messages=1` is every batch, `flush.ms` an interval; without overrides the broker's
/// `[log] flush` holds, and it is what the defaults show.
#[test]
fn flush_configs_make_the_topics_flush_policy() {
    assert_eq!(
        parsed("flush.messages", "1").unwrap().log.flush_policy,
        FlushPolicy::EveryBatch
    );
    assert_eq!(
        parsed("flush.ms", "250").unwrap().log.flush_policy,
        FlushPolicy::IntervalMs(250)
    );
    assert_eq!(
        parsed("flush.messages", "1000").unwrap().log.flush_policy,
        FlushPolicy::Os,
        "a count above one has no LMQ equivalent"
    );
    let every_batch = LogConfig {
        flush_policy: FlushPolicy::EveryBatch,
        ..LogConfig::default()
    };
    let configs = BTreeMap::from([(
        "flush.messages".to_string(),
        "9223372036854775807".to_string(),
    )]);
    assert_eq!(
        TopicSettings::parse(&every_batch, &configs, Checks::Kafka)
            .unwrap()
            .log
            .flush_policy,
        FlushPolicy::Os,
        "a topic opts out of the broker's every-batch"
    );
    assert_eq!(
        TopicSettings::parse(&every_batch, &BTreeMap::new(), Checks::Kafka)
            .unwrap()
            .log
            .flush_policy,
        FlushPolicy::EveryBatch
    );
    let defaults = TopicDefaults {
        log: &every_batch,
        min_insync_replicas: 1,
    };
    assert_eq!(
        find("flush.messages").unwrap().default_value(&defaults),
        "1"
    );
}

#[test]
fn timestamp_bounds_and_other_settings_are_parsed() {
    let configs = BTreeMap::from([
        (
            "message.timestamp.before.max.ms".to_string(),
            "1000".to_string(),
        ),
        (
            "message.timestamp.after.max.ms".to_string(),
            "2000".to_string(),
        ),
        ("segment.index.bytes".to_string(), "4096".to_string()),
        (
            "max.decompressed.message.bytes".to_string(),
            "65536".to_string(),
        ),
        ("preallocate".to_string(), "TRUE".to_string()),
        ("remote.storage.enable".to_string(), "false".to_string()),
        ("local.retention.ms".to_string(), "-2".to_string()),
        (
            "leader.replication.throttled.replicas".to_string(),
            "0:1, 1:2".to_string(),
        ),
        (
            "follower.replication.throttled.replicas".to_string(),
            "*".to_string(),
        ),
    ]);
    let settings = TopicSettings::parse(&LogConfig::default(), &configs, Checks::Kafka).unwrap();
    assert_eq!(
        (
            settings.timestamp_before_max_ms,
            settings.timestamp_after_max_ms,
            settings.log.index_bytes_max,
            settings.decompressed_bytes_max
        ),
        (1000, 2000, 4096, 65536)
    );
}

#[test]
fn min_insync_replicas_is_read_from_the_overrides() {
    let configs = BTreeMap::from([(MIN_INSYNC_REPLICAS.to_string(), " 2".to_string())]);
    assert_eq!(min_insync_replicas(&configs), Some(2));
    assert_eq!(min_insync_replicas(&BTreeMap::new()), None);
}

#[test]
fn values_are_described_as_kafka_writes_them() {
    let ratio = find("min.cleanable.dirty.ratio").unwrap();
    assert_eq!(
        ratio.parse(" 1 ", Checks::Kafka).unwrap().canonical(),
        "1.0"
    );
    assert_eq!(
        ratio.parse("0.25", Checks::Kafka).unwrap().canonical(),
        "0.25"
    );
    let policy = find("cleanup.policy").unwrap();
    assert_eq!(
        policy
            .parse("compact , delete", Checks::Kafka)
            .unwrap()
            .canonical(),
        "compact,delete"
    );
    let retention = find("retention.ms").unwrap();
    assert_eq!(
        retention.parse(" 010", Checks::Kafka).unwrap().canonical(),
        "10"
    );
}

/// docs/CONFIG.md holds the table made from `TOPIC_CONFIGS`, so the documentation says what
/// the code does. On a change, paste the printed table into the file.
#[test]
fn config_md_holds_the_topic_config_table() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIG.md")).unwrap();
    let table = markdown_table();
    assert!(
        doc.contains(&table),
        "docs/CONFIG.md lacks the current topic config table:\n{table}"
    );
}
