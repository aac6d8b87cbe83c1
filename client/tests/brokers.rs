//! The native client's producer, consumer and admin against LMQ and (when configured)
//! Apache Kafka: the same test bodies for both brokers.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{Target, targets, unique};
use lmq::{
    Acks, Admin, Codec, Consumer, ConsumerConfig, OffsetSpec, Producer, ProducerConfig, Record,
};

/// Creates `topic` with `partitions` partitions, one replica.
async fn create_topic(target: &Target, topic: &str, partitions: i32) {
    Admin::connect(target.client())
        .await
        .unwrap()
        .create_topic(topic, partitions, 1, &BTreeMap::new())
        .await
        .unwrap();
}

async fn consumer(target: &Target) -> Consumer {
    Consumer::connect(ConsumerConfig {
        client: target.client(),
        ..ConsumerConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn produce_and_consume_round_trip_with_every_codec() {
    for target in targets().await {
        let topic = unique("native");
        let admin = Admin::connect(target.client()).await.unwrap();
        admin
            .create_topic(&topic, 4, 1, &BTreeMap::new())
            .await
            .unwrap();
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let producer = Producer::connect(ProducerConfig {
                client: target.client(),
                codec,
                ..ProducerConfig::default()
            })
            .await
            .unwrap();
            let value = format!("value with {codec:?}");
            // A key may repeat and a value may be null: both must come back as sent.
            let headers = vec![
                ("codec".to_string(), Some(Bytes::from(format!("{codec:?}")))),
                ("trace".to_string(), Some(Bytes::from("first"))),
                ("trace".to_string(), None),
                ("trace".to_string(), Some(Bytes::from("third"))),
            ];
            let delivery = producer
                .send_record(
                    &topic,
                    Record {
                        key: Some(Bytes::from("same-key")),
                        value: Some(Bytes::from(value.clone())),
                        headers: headers.clone(),
                        ..Record::default()
                    },
                )
                .await
                .unwrap();
            let expected = lmq::producer::partition_for_key(b"same-key", 4);
            assert_eq!(
                delivery.partition,
                expected,
                "{}: murmur2 as in Java",
                target.name()
            );
            let mut consumer = consumer(&target).await;
            consumer
                .assign(
                    &topic,
                    delivery.partition,
                    OffsetSpec::Offset(delivery.offset),
                )
                .await
                .unwrap();
            let records = consumer.poll().await.unwrap();
            assert_eq!(records[0].offset, delivery.offset, "{}", target.name());
            assert_eq!(records[0].value.as_deref(), Some(value.as_bytes()));
            assert_eq!(records[0].key.as_deref(), Some(&b"same-key"[..]));
            assert_eq!(records[0].headers, headers, "{}", target.name());
        }
        target.finish().await;
    }
}

#[tokio::test]
async fn keyless_sends_spread_and_offsets_are_consecutive() {
    for target in targets().await {
        let topic = unique("spread");
        create_topic(&target, &topic, 3).await;
        let producer = Producer::connect(ProducerConfig {
            client: target.client(),
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        let mut partitions = BTreeMap::new();
        for index in 0..30 {
            let delivery = producer.send(&topic, format!("m{index}")).await.unwrap();
            let offsets: &mut Vec<i64> = partitions.entry(delivery.partition).or_default();
            offsets.push(delivery.offset);
        }
        assert_eq!(
            partitions.len(),
            3,
            "{}: all partitions used",
            target.name()
        );
        for offsets in partitions.values() {
            assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
        }
        target.finish().await;
    }
}

#[tokio::test]
async fn pipelined_sends_are_batched_in_order_within_a_small_buffer() {
    for target in targets().await {
        // Idempotent (one request in flight), then acks=1 with five in flight per partition.
        for idempotent in [true, false] {
            let topic = unique("pipelined");
            create_topic(&target, &topic, 1).await;
            let producer = Producer::connect(ProducerConfig {
                client: target.client(),
                linger: std::time::Duration::from_millis(20),
                batch_bytes: 8 * 1024,
                // Far smaller than the data: sends must wait for acknowledgements to free
                // space; room for several batches at once without idempotence.
                buffer_bytes: if idempotent { 16 * 1024 } else { 64 * 1024 },
                acks: if idempotent { Acks::All } else { Acks::Leader },
                idempotent,
                ..ProducerConfig::default()
            })
            .await
            .unwrap();
            let mut pending = Vec::new();
            for index in 0..2_000 {
                let record = Record {
                    partition: Some(0),
                    value: Some(Bytes::from(format!("{index:0>100}"))),
                    ..Record::default()
                };
                pending.push(producer.enqueue(&topic, record).await.unwrap());
            }
            let mut offsets = Vec::new();
            for delivery in pending {
                offsets.push(delivery.await.unwrap().unwrap().offset);
            }
            assert_eq!(
                offsets,
                (0..2_000).collect::<Vec<i64>>(),
                "{} (idempotent: {idempotent}): in order, each once",
                target.name()
            );
            producer.flush().await;
            let mut consumer = consumer(&target).await;
            consumer
                .assign(&topic, 0, OffsetSpec::Earliest)
                .await
                .unwrap();
            let mut read = Vec::new();
            while read.len() < 2_000 {
                read.extend(consumer.poll().await.unwrap());
            }
            for (index, record) in read.iter().enumerate().take(2_000) {
                assert_eq!(
                    record.value.as_deref(),
                    Some(format!("{index:0>100}").as_bytes())
                );
            }
            producer.close().await;
        }
        target.finish().await;
    }
}

/// A batch the broker refuses for good (larger than the topic's `max.message.bytes`) fails
/// every record in it with the broker's error code, not retriable, and the producer goes on.
#[tokio::test]
async fn a_refused_batch_gives_each_record_the_brokers_error() {
    for target in targets().await {
        let topic = unique("refused");
        let configs = BTreeMap::from([("max.message.bytes".to_string(), "2048".to_string())]);
        Admin::connect(target.client())
            .await
            .unwrap()
            .create_topic(&topic, 1, 1, &configs)
            .await
            .unwrap();
        let producer = Producer::connect(ProducerConfig {
            client: target.client(),
            linger: std::time::Duration::from_millis(20),
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        let mut pending = Vec::new();
        for _ in 0..3 {
            let record = Record {
                partition: Some(0),
                value: Some(Bytes::from(vec![7u8; 1500])),
                ..Record::default()
            };
            pending.push(producer.enqueue(&topic, record).await.unwrap());
        }
        for delivery in pending {
            let error = delivery.await.unwrap().unwrap_err();
            assert!(
                matches!(error, lmq::ClientError::Kafka { code: 10, .. }),
                "{}: {error:?}",
                target.name()
            );
            assert!(!error.is_retriable(), "{}: {error}", target.name());
        }
        let small = producer.send(&topic, b"fits".as_slice()).await.unwrap();
        assert_eq!(small.offset, 0, "{}", target.name());
        producer.close().await;
        target.finish().await;
    }
}

#[tokio::test]
async fn admin_manages_topics_configs_and_group_offsets() {
    for target in targets().await {
        let topic = unique("managed");
        let group = unique("readers");
        let admin = Admin::connect(target.client()).await.unwrap();
        let configs = BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]);
        admin.create_topic(&topic, 2, 1, &configs).await.unwrap();
        let error = admin
            .create_topic(&topic, 2, 1, &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("TOPIC_ALREADY_EXISTS"),
            "{}: {error}",
            target.name()
        );
        let listed = admin.list_topics(false).await.unwrap();
        assert!(listed.iter().any(|listed| listed.name == topic));
        assert!(
            listed.iter().all(|listed| !listed.internal),
            "internal topics hidden"
        );
        admin.create_partitions(&topic, 5).await.unwrap();
        // Kafka applies partition changes asynchronously: wait for metadata to show them.
        let started = std::time::Instant::now();
        while admin.describe_topic(&topic).await.unwrap().partitions.len() != 5 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{}",
                target.name()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let entries = admin.describe_configs(&topic).await.unwrap();
        let retention = entries
            .iter()
            .find(|entry| entry.name == "retention.ms")
            .unwrap();
        assert_eq!(
            (retention.value.as_deref(), retention.is_override),
            (Some("3600000"), true)
        );
        admin
            .alter_configs(
                &topic,
                &BTreeMap::from([("segment.ms".to_string(), "60000".to_string())]),
                &["retention.ms".to_string()],
            )
            .await
            .unwrap();
        // Kafka applies config changes asynchronously too.
        let started = std::time::Instant::now();
        loop {
            let entries = admin.describe_configs(&topic).await.unwrap();
            if !entries
                .iter()
                .find(|entry| entry.name == "retention.ms")
                .unwrap()
                .is_override
            {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{}: override not removed",
                target.name()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        let producer = Producer::connect(ProducerConfig {
            client: target.client(),
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        for index in 0..10 {
            let record = Record {
                partition: Some(0),
                value: Some(Bytes::from(format!("{index}"))),
                ..Record::default()
            };
            producer.send_record(&topic, record).await.unwrap();
        }
        let reset = admin
            .reset_offsets(&group, &topic, OffsetSpec::Offset(4))
            .await
            .unwrap();
        assert_eq!(reset.len(), 5);
        let lag = admin.group_lag(&group).await.unwrap();
        let partition_zero = lag.iter().find(|lag| lag.partition == 0).unwrap();
        assert_eq!(
            (
                partition_zero.committed,
                partition_zero.log_end_offset,
                partition_zero.lag
            ),
            (Some(4), 10, Some(6))
        );
        assert!(
            admin
                .list_groups()
                .await
                .unwrap()
                .iter()
                .any(|listed| listed.group == group)
        );
        assert_eq!(admin.describe_group(&group).await.unwrap().state, "Empty");
        admin.delete_topic(&topic).await.unwrap();
        target.finish().await;
    }
}

#[tokio::test]
async fn offsets_for_times_and_deleting_records() {
    for target in targets().await {
        let topic = unique("times");
        let admin = Admin::connect(target.client()).await.unwrap();
        admin
            .create_topic(&topic, 1, 1, &BTreeMap::new())
            .await
            .unwrap();
        let producer = Producer::connect(ProducerConfig {
            client: target.client(),
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        let hour_ago = lmq_now_ms() - 3_600_000;
        for index in 0..10_i64 {
            // Offsets 0-4 an hour old, 5-9 a minute later.
            let timestamp = hour_ago + if index < 5 { index } else { 60_000 + index };
            producer
                .send_record(
                    &topic,
                    Record {
                        value: Some(Bytes::from(format!("m{index}"))),
                        timestamp: Some(timestamp),
                        ..Record::default()
                    },
                )
                .await
                .unwrap();
        }
        let at = |spec| {
            let admin = &admin;
            let topic = &topic;
            async move { admin.list_offsets(topic, spec).await.unwrap() }
        };
        let name = target.name();
        assert_eq!(
            at(OffsetSpec::Timestamp(hour_ago + 2)).await,
            [(0, 2)],
            "{name}"
        );
        assert_eq!(
            at(OffsetSpec::Timestamp(hour_ago + 30_000)).await,
            [(0, 5)],
            "{name}"
        );
        assert_eq!(
            at(OffsetSpec::Timestamp(lmq_now_ms() + 60_000)).await,
            [(0, 10)],
            "{name}: no record that new: the log end"
        );
        assert!(
            admin
                .list_offsets(&topic, OffsetSpec::Timestamp(-5))
                .await
                .is_err()
        );
        let mut reader = consumer(&target).await;
        reader
            .assign(&topic, 0, OffsetSpec::Timestamp(hour_ago + 30_000))
            .await
            .unwrap();
        assert_eq!(reader.poll().await.unwrap()[0].offset, 5, "{name}");

        assert_eq!(
            admin.delete_records(&topic, 0, 7).await.unwrap(),
            7,
            "{name}"
        );
        assert_eq!(at(OffsetSpec::Earliest).await, [(0, 7)], "{name}");
        let beyond = admin.delete_records(&topic, 0, 11).await.unwrap_err();
        assert!(
            beyond.to_string().contains("OFFSET_OUT_OF_RANGE")
                || beyond.to_string().contains("OffsetOutOfRange"),
            "{name}: {beyond}"
        );
        target.finish().await;
    }
}

fn lmq_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn a_failed_poll_moves_no_position() {
    for target in targets().await {
        let (data, empty) = (unique("poll-data"), unique("poll-empty"));
        let admin = Admin::connect(target.client()).await.unwrap();
        for topic in [&data, &empty] {
            admin
                .create_topic(topic, 1, 1, &BTreeMap::new())
                .await
                .unwrap();
        }
        let producer = Producer::connect(ProducerConfig {
            client: target.client(),
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        for index in 0..3 {
            producer.send(&data, format!("m{index}")).await.unwrap();
        }
        let mut reader = consumer(&target).await;
        reader.assign(&data, 0, OffsetSpec::Earliest).await.unwrap();
        // Past the end of an empty log: OFFSET_OUT_OF_RANGE after `data` was fetched.
        reader
            .assign(&empty, 0, OffsetSpec::Offset(1_000))
            .await
            .unwrap();
        assert!(reader.poll().await.is_err(), "{}", target.name());
        reader
            .assign(&empty, 0, OffsetSpec::Offset(0))
            .await
            .unwrap();
        let records = reader.poll().await.unwrap();
        let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, [0, 1, 2], "{}: nothing skipped", target.name());
        target.finish().await;
    }
}
