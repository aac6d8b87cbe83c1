//! The transactional producer and read_committed consumer against LMQ and (when configured)
//! Apache Kafka: committed transactions are seen, aborted ones only by read_uncommitted
//! consumers, offsets sent to a transaction count only when it commits, and a second
//! producer with the same transactional id fences the first.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Target, targets, unique};
use lmq::{Admin, ClientError, Consumer, ConsumerConfig, OffsetSpec, Producer, ProducerConfig};

async fn transactional(target: &Target, id: &str) -> Producer {
    Producer::connect(ProducerConfig {
        client: target.client(),
        transactional_id: Some(id.to_string()),
        ..ProducerConfig::default()
    })
    .await
    .unwrap()
}

/// Every value of partition 0 of `topic` up to its end, as a consumer of that isolation
/// level reads them.
async fn values(
    target: &Target,
    topic: &str,
    read_committed: bool,
    expected: usize,
) -> Vec<String> {
    let mut consumer = Consumer::connect(ConsumerConfig {
        client: target.client(),
        max_wait: Duration::from_millis(100),
        read_committed,
        ..ConsumerConfig::default()
    })
    .await
    .unwrap();
    consumer
        .assign(topic, 0, OffsetSpec::Earliest)
        .await
        .unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    // Read until the expected count, then a little longer: nothing more may come.
    let mut quiet_polls = 0;
    while quiet_polls < 5 {
        let records = consumer.poll().await.unwrap();
        if seen.len() >= expected && records.is_empty() {
            quiet_polls += 1;
        }
        seen.extend(
            records
                .into_iter()
                .map(|record| String::from_utf8(record.value.unwrap().to_vec()).unwrap()),
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}: read {seen:?}, expected {expected}",
            target.name()
        );
    }
    seen
}

async fn send_all(producer: &Producer, topic: &str, values: &[&str]) {
    for value in values {
        producer
            .enqueue(
                topic,
                lmq::Record {
                    value: Some(bytes::Bytes::from(value.to_string())),
                    partition: Some(0),
                    ..lmq::Record::default()
                },
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn committed_transactions_are_read_and_aborted_ones_only_uncommitted() {
    for target in targets().await {
        let topic = unique("txn-visibility");
        let admin = Admin::connect(target.client()).await.unwrap();
        admin
            .create_topic(&topic, 1, 1, &BTreeMap::new())
            .await
            .unwrap();
        let producer = transactional(&target, &unique("visibility")).await;
        producer.begin().unwrap();
        send_all(&producer, &topic, &["c1", "c2", "c3"]).await;
        producer.commit().await.unwrap();
        producer.begin().unwrap();
        send_all(&producer, &topic, &["a1", "a2"]).await;
        producer.abort().await.unwrap();
        producer.begin().unwrap();
        send_all(&producer, &topic, &["c4"]).await;
        producer.commit().await.unwrap();

        assert_eq!(
            values(&target, &topic, true, 4).await,
            ["c1", "c2", "c3", "c4"],
            "{}: read_committed",
            target.name()
        );
        assert_eq!(
            values(&target, &topic, false, 6).await,
            ["c1", "c2", "c3", "a1", "a2", "c4"],
            "{}: read_uncommitted",
            target.name()
        );
        // An open transaction holds read_committed consumers back at its first record.
        producer.begin().unwrap();
        send_all(&producer, &topic, &["open"]).await;
        producer.flush().await;
        assert_eq!(values(&target, &topic, true, 4).await.len(), 4);
        producer.commit().await.unwrap();
        assert_eq!(
            values(&target, &topic, true, 5)
                .await
                .last()
                .map(String::as_str),
            Some("open"),
            "{}",
            target.name()
        );
        target.finish().await;
    }
}

/// The group's committed offset of `topic`-0, waiting for `expected` (markers are written
/// after the commit is answered).
async fn committed(admin: &Admin, group: &str, expected: Option<i64>) -> Option<i64> {
    let started = Instant::now();
    loop {
        let lag = admin.group_lag(group).await.unwrap_or_default();
        let offset = lag.first().and_then(|partition| partition.committed);
        if offset == expected || started.elapsed() > Duration::from_secs(10) {
            return offset;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn offsets_sent_to_a_transaction_count_only_when_it_commits() {
    for target in targets().await {
        let input = unique("txn-input");
        let output = unique("txn-output");
        let group = unique("txn-group");
        let admin = Admin::connect(target.client()).await.unwrap();
        for topic in [&input, &output] {
            admin
                .create_topic(topic, 1, 1, &BTreeMap::new())
                .await
                .unwrap();
        }
        let producer = transactional(&target, &unique("offsets")).await;
        producer.begin().unwrap();
        send_all(&producer, &output, &["x"]).await;
        producer
            .send_offsets(&group, &[(input.clone(), 0, 5)], None)
            .await
            .unwrap();
        producer.abort().await.unwrap();
        producer.begin().unwrap();
        send_all(&producer, &output, &["y"]).await;
        producer
            .send_offsets(&group, &[(input.clone(), 0, 7)], None)
            .await
            .unwrap();
        producer.commit().await.unwrap();
        assert_eq!(
            committed(&admin, &group, Some(7)).await,
            Some(7),
            "{}",
            target.name()
        );
        assert_eq!(values(&target, &output, true, 1).await, ["y"]);
        target.finish().await;
    }
}

#[tokio::test]
async fn a_new_producer_with_the_same_transactional_id_fences_the_old_one() {
    for target in targets().await {
        let topic = unique("txn-zombie");
        let id = unique("zombie");
        let admin = Admin::connect(target.client()).await.unwrap();
        admin
            .create_topic(&topic, 1, 1, &BTreeMap::new())
            .await
            .unwrap();
        let zombie = transactional(&target, &id).await;
        zombie.begin().unwrap();
        send_all(&zombie, &topic, &["zombie-1"]).await;
        zombie.flush().await;
        // The new instance's InitProducerId aborts the zombie's open transaction.
        let fresh = transactional(&target, &id).await;
        fresh.begin().unwrap();
        send_all(&fresh, &topic, &["fresh-1"]).await;
        fresh.commit().await.unwrap();

        let late = zombie
            .enqueue(
                &topic,
                lmq::Record {
                    value: Some(bytes::Bytes::from("zombie-2")),
                    partition: Some(0),
                    ..lmq::Record::default()
                },
            )
            .await;
        let outcome = match late {
            Ok(delivery) => delivery.await.unwrap().map(|_| ()),
            Err(error) => Err(error),
        };
        let commit = zombie.commit().await;
        assert!(
            outcome.is_err(),
            "{}: the zombie's send went on: {outcome:?}",
            target.name()
        );
        // The commit fails with the broker's fencing error, not a client-made one.
        match &commit {
            Err(ClientError::Kafka { name, .. }) => assert!(
                ["PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"].contains(&name.as_str()),
                "{}: {name}",
                target.name()
            ),
            other => panic!("{}: the zombie's commit: {other:?}", target.name()),
        }
        assert_eq!(
            values(&target, &topic, true, 1).await,
            ["fresh-1"],
            "{}",
            target.name()
        );
        target.finish().await;
    }
}

/// Kafka's `kafka-transactions.sh` (TransactionsCommand from scripts/kafka.sh's jars)
/// against `target`: its stdout, or the failure with stderr. Awaited, not blocked on: the
/// in-process LMQ broker serves on this test's runtime meanwhile.
async fn transactions_tool(target: &Target, args: &[&str]) -> String {
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = tokio::process::Command::new(repo.join("scripts/kafka.sh"))
        .args([
            "tool",
            "org.apache.kafka.tools.TransactionsCommand",
            "--bootstrap-server",
            target.address(),
        ])
        .args(args)
        .output()
        .await
        .expect("running scripts/kafka.sh tool (it needs Maven and Java)");
    assert!(
        output.status.success(),
        "{}: kafka-transactions.sh {args:?} failed: {}",
        target.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn kafka_transactions_tool_lists_describes_and_aborts_a_hanging_transaction() {
    for target in targets().await {
        let topic = unique("txn-tool");
        let id = unique("tool");
        let admin = Admin::connect(target.client()).await.unwrap();
        admin
            .create_topic(&topic, 1, 1, &BTreeMap::new())
            .await
            .unwrap();
        // A transaction left open: its records hold read_committed consumers back.
        let producer = transactional(&target, &id).await;
        producer.begin().unwrap();
        send_all(&producer, &topic, &["open-1", "open-2"]).await;
        producer.flush().await;

        let listed = transactions_tool(&target, &["list"]).await;
        let line = listed
            .lines()
            .find(|line| line.contains(&id))
            .unwrap_or_else(|| panic!("{}: {id} not listed:\n{listed}", target.name()));
        assert!(line.contains("Ongoing"), "{}: {line}", target.name());
        let described = transactions_tool(&target, &["describe", "--transactional-id", &id]).await;
        assert!(
            described.contains("Ongoing") && described.contains(&format!("{topic}-0")),
            "{}: {described}",
            target.name()
        );
        let producers = transactions_tool(
            &target,
            &["describe-producers", "--topic", &topic, "--partition", "0"],
        )
        .await;
        assert!(
            producers.lines().count() >= 2,
            "{}: no producer described:\n{producers}",
            target.name()
        );
        // An administrator aborts it on the partition (WriteTxnMarkers from the tool).
        transactions_tool(
            &target,
            &[
                "abort",
                "--topic",
                &topic,
                "--partition",
                "0",
                "--start-offset",
                "0",
            ],
        )
        .await;
        assert!(
            values(&target, &topic, true, 0).await.is_empty(),
            "{}: the aborted records are not read_committed",
            target.name()
        );
        // The consumer is no longer held back: later committed records are read.
        let other = transactional(&target, &unique("after")).await;
        other.begin().unwrap();
        send_all(&other, &topic, &["after"]).await;
        other.commit().await.unwrap();
        assert_eq!(
            values(&target, &topic, true, 1).await,
            ["after"],
            "{}",
            target.name()
        );
        drop(producer);
        target.finish().await;
    }
}
