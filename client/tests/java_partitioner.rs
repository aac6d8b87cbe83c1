//! Keyed records land on the partition the Java producer chooses for the same key: the real
//! `KafkaProducer` (Kafka 4.x jars from scripts/kafka.sh, `compat-tests/java/
//! KeyedPartitions.java`) and the native producer send the same keys to the same topic, on
//! LMQ and (when configured) on Apache Kafka.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use common::{targets, unique};
use lmq::{Admin, Producer, ProducerConfig, Record};

const KEYS: usize = 120;
const PARTITIONS: i32 = 7;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Kafka's jars: `LMQ_KAFKA_CLASSPATH`, else what scripts/kafka.sh installs.
fn kafka_classpath() -> String {
    if let Ok(classpath) = std::env::var("LMQ_KAFKA_CLASSPATH") {
        return classpath;
    }
    let output = Command::new(repo().join("scripts/kafka.sh"))
        .arg("classpath")
        .output()
        .expect("running scripts/kafka.sh classpath");
    assert!(
        output.status.success(),
        "scripts/kafka.sh classpath failed (it needs Maven and Java): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Key → partition as the Java producer sent them.
fn java_choices(classpath: &str, bootstrap: &str, topic: &str) -> BTreeMap<String, i32> {
    let output = Command::new("java")
        .arg("-cp")
        .arg(classpath)
        .arg(repo().join("compat-tests/java/KeyedPartitions.java"))
        .args([bootstrap, topic, &KEYS.to_string()])
        .output()
        .expect("running java");
    assert!(
        output.status.success(),
        "the Java producer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, partition) = line.rsplit_once(' ').unwrap();
            (key.to_string(), partition.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_where_the_java_producer_puts_them() {
    let classpath = kafka_classpath();
    for target in targets().await {
        let topic = unique("keyed");
        Admin::connect(target.client())
            .await
            .unwrap()
            .create_topic(&topic, PARTITIONS, 1, &BTreeMap::new())
            .await
            .unwrap();
        let classpath = classpath.clone();
        let (bootstrap, java_topic) = (target.address().to_string(), topic.clone());
        let java =
            tokio::task::spawn_blocking(move || java_choices(&classpath, &bootstrap, &java_topic))
                .await
                .unwrap();
        assert_eq!(
            java.len(),
            KEYS,
            "{}: every key acknowledged",
            target.name()
        );
        let spread: std::collections::BTreeSet<i32> = java.values().copied().collect();
        assert_eq!(
            spread.len(),
            7,
            "{}: keys spread over every partition",
            target.name()
        );

        let producer = Producer::connect(ProducerConfig {
            client: target.client(),
            ..ProducerConfig::default()
        })
        .await
        .unwrap();
        for (key, java_partition) in &java {
            let record = Record {
                key: Some(Bytes::from(key.clone())),
                value: Some(Bytes::from_static(b"v")),
                ..Record::default()
            };
            let delivery = producer.send_record(&topic, record).await.unwrap();
            assert_eq!(
                delivery.partition,
                *java_partition,
                "{}: key {key}",
                target.name()
            );
        }
        target.finish().await;
    }
}
