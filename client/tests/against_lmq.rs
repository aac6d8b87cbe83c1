//! The native client against an in-process LMQ broker on port 0.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use lmq::{
    Admin, ClientConfig, Codec, Consumer, ConsumerConfig, OffsetSpec, Producer, ProducerConfig,
    Record,
};
use lmq_broker::clock::SystemClock;
use lmq_broker::{Broker, BrokerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

struct Running {
    address: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn broker() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: address,
        ..BrokerConfig::default()
    };
    let broker = Arc::new(Broker::open(config, Arc::new(SystemClock)).unwrap());
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(lmq_broker::server::run(broker, listener, None, shutdown));
    Running {
        address: address.to_string(),
        stop,
        task,
        _dir: dir,
    }
}

fn client(address: &str) -> ClientConfig {
    ClientConfig {
        brokers: vec![address.to_string()],
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn produce_and_consume_round_trip_with_every_codec() {
    let running = broker().await;
    let admin = Admin::connect(client(&running.address)).await.unwrap();
    admin
        .create_topic("native", 4, -1, &BTreeMap::new())
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
            client: client(&running.address),
            codec,
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        let value = format!("value with {codec:?}");
        let delivery = producer
            .send_record(
                "native",
                Record {
                    key: Some(Bytes::from("same-key")),
                    value: Some(Bytes::from(value.clone())),
                    headers: vec![("codec".to_string(), Some(Bytes::from(format!("{codec:?}"))))],
                    ..Record::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            delivery.partition,
            lmq::producer::partition_for_key(b"same-key", 4),
            "murmur2 as in Java"
        );
        let mut consumer = Consumer::connect(ConsumerConfig {
            client: client(&running.address),
            ..ConsumerConfig::default()
        })
        .await
        .unwrap();
        consumer
            .assign(
                "native",
                delivery.partition,
                OffsetSpec::Offset(delivery.offset),
            )
            .await
            .unwrap();
        let records = consumer.poll().await.unwrap();
        assert_eq!(records[0].offset, delivery.offset);
        assert_eq!(records[0].value.as_deref(), Some(value.as_bytes()));
        assert_eq!(records[0].key.as_deref(), Some(&b"same-key"[..]));
        assert_eq!(records[0].headers[0].0, "codec");
    }
    running.stop.send(true).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn keyless_sends_spread_and_offsets_are_consecutive() {
    let running = broker().await;
    let producer = Producer::connect(ProducerConfig {
        client: client(&running.address),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    let mut partitions = std::collections::BTreeMap::new();
    for index in 0..30 {
        let delivery = producer.send("spread", format!("m{index}")).await.unwrap();
        let offsets: &mut Vec<i64> = partitions.entry(delivery.partition).or_default();
        offsets.push(delivery.offset);
    }
    assert_eq!(
        partitions.len(),
        3,
        "auto-created with 3 partitions, all used"
    );
    for offsets in partitions.values() {
        assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
    running.stop.send(true).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn admin_manages_topics_configs_and_group_offsets() {
    let running = broker().await;
    let admin = Admin::connect(client(&running.address)).await.unwrap();
    let configs = BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]);
    admin.create_topic("managed", 2, 1, &configs).await.unwrap();
    let error = admin
        .create_topic("managed", 2, 1, &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("TOPIC_ALREADY_EXISTS"),
        "{error}"
    );
    let names: Vec<String> = admin
        .list_topics(false)
        .await
        .unwrap()
        .into_iter()
        .map(|topic| topic.name)
        .collect();
    assert_eq!(names, ["managed"], "internal topics hidden");
    admin.create_partitions("managed", 5).await.unwrap();
    assert_eq!(
        admin
            .describe_topic("managed")
            .await
            .unwrap()
            .partitions
            .len(),
        5
    );
    let entries = admin.describe_configs("managed").await.unwrap();
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
            "managed",
            &BTreeMap::from([("segment.ms".to_string(), "60000".to_string())]),
            &["retention.ms".to_string()],
        )
        .await
        .unwrap();
    let entries = admin.describe_configs("managed").await.unwrap();
    assert!(
        !entries
            .iter()
            .find(|entry| entry.name == "retention.ms")
            .unwrap()
            .is_override
    );

    let producer = Producer::connect(ProducerConfig {
        client: client(&running.address),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    for index in 0..10 {
        producer
            .send_record(
                "managed",
                Record {
                    partition: Some(0),
                    value: Some(Bytes::from(format!("{index}"))),
                    ..Record::default()
                },
            )
            .await
            .unwrap();
    }
    let reset = admin
        .reset_offsets("readers", "managed", OffsetSpec::Offset(4))
        .await
        .unwrap();
    assert_eq!(reset.len(), 5);
    let lag = admin.group_lag("readers").await.unwrap();
    let partition_zero = lag.iter().find(|lag| lag.partition == 0).unwrap();
    assert_eq!(
        (
            partition_zero.committed,
            partition_zero.log_end_offset,
            partition_zero.lag
        ),
        (Some(4), 10, Some(6))
    );
    let groups = admin.list_groups().await.unwrap();
    assert_eq!(groups[0].group, "readers");
    assert_eq!(
        admin.describe_group("readers").await.unwrap().state,
        "Empty"
    );
    admin.delete_topic("managed").await.unwrap();
    assert!(admin.describe_topic("managed").await.is_err());
    running.stop.send(true).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn pipelined_sends_are_batched_in_order_within_a_small_buffer() {
    let running = broker().await;
    let producer = Producer::connect(ProducerConfig {
        client: client(&running.address),
        linger: std::time::Duration::from_millis(20),
        batch_bytes: 8 * 1024,
        // Far smaller than the data: sends must wait for acknowledgements to free space.
        buffer_bytes: 16 * 1024,
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
        pending.push(producer.enqueue("pipelined", record).await.unwrap());
    }
    let mut offsets = Vec::new();
    for delivery in pending {
        offsets.push(delivery.await.unwrap().unwrap().offset);
    }
    assert_eq!(
        offsets,
        (0..2_000).collect::<Vec<i64>>(),
        "acknowledged in order, each once"
    );
    producer.flush().await;
    let mut consumer = Consumer::connect(ConsumerConfig {
        client: client(&running.address),
        ..ConsumerConfig::default()
    })
    .await
    .unwrap();
    consumer
        .assign("pipelined", 0, OffsetSpec::Earliest)
        .await
        .unwrap();
    let mut read = Vec::new();
    while read.len() < 2_000 {
        read.extend(consumer.poll().await.unwrap());
    }
    assert_eq!(
        read[1_999].value.as_deref(),
        Some(format!("{:0>100}", 1_999).as_bytes())
    );
    producer.close().await;
    running.stop.send(true).unwrap();
    running.task.await.unwrap();
}
