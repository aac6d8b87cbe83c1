//! The group consumer against LMQ and (when configured) Apache Kafka: members share
//! partitions, failures go to the dead-letter topic, a restarted group resumes from commits.

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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Target, targets, unique};
use lmq::{
    Admin, Consumer, ConsumerConfig, GroupConfig, GroupConsumer, OffsetSpec, Producer,
    ProducerConfig, Record,
};

fn group_config(target: &Target, group: &str) -> GroupConfig {
    GroupConfig {
        client: target.client(),
        group: group.to_string(),
        heartbeat_interval: Duration::from_millis(200),
        retry_backoff: Duration::from_millis(10),
        ..GroupConfig::default()
    }
}

type Seen = Arc<Mutex<Vec<(usize, i32, i64)>>>;

async fn wait_for(seen: &Seen, count: usize) {
    let started = Instant::now();
    while seen.lock().unwrap().len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {count} records handled",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn producer(target: &Target) -> Producer {
    Producer::connect(ProducerConfig {
        client: target.client(),
        ..ProducerConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_and_a_restart_resumes() {
    for target in targets().await {
        let (topic, group) = (unique("shared"), unique("sharers"));
        Admin::connect(target.client())
            .await
            .unwrap()
            .create_topic(&topic, 6, 1, &BTreeMap::new())
            .await
            .unwrap();
        let producer = producer(&target).await;
        for index in 0..60 {
            let record = Record {
                partition: Some(index % 6),
                value: Some(Bytes::from(format!("{index}"))),
                ..Record::default()
            };
            producer.send_record(&topic, record).await.unwrap();
        }
        let seen: Seen = Arc::default();
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        for member in 0..3 {
            let mut consumer = GroupConsumer::connect(group_config(&target, &group))
                .await
                .unwrap();
            let seen = Arc::clone(&seen);
            consumer.subscribe(&topic, move |record| {
                seen.lock()
                    .unwrap()
                    .push((member, record.partition, record.offset));
                Ok(())
            });
            stops.push(consumer.stop_handle());
            tasks.push(tokio::spawn(async move { consumer.run().await }));
        }
        wait_for(&seen, 60).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // One member leaves: the others take over its partitions.
        stops[0].stop();
        let mut tasks = tasks.into_iter();
        tasks.next().unwrap().await.unwrap().unwrap();
        // It said so (LeaveGroup): the group lists two members now, long before its session
        // could have timed out.
        let described = Admin::connect(target.client())
            .await
            .unwrap()
            .describe_group(&group)
            .await
            .unwrap();
        assert_eq!(
            described.members.len(),
            2,
            "{}: the leaving member is gone at once: {described:?}",
            target.name()
        );
        for index in 0..6 {
            let record = Record {
                partition: Some(index),
                value: Some(Bytes::from("after-leave")),
                ..Record::default()
            };
            producer.send_record(&topic, record).await.unwrap();
        }
        wait_for(&seen, 66).await;
        let after_leave: BTreeSet<usize> = seen.lock().unwrap()[60..]
            .iter()
            .map(|&(member, _, _)| member)
            .collect();
        assert!(
            !after_leave.contains(&0),
            "{}: the member that left handled nothing more",
            target.name()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        for handle in &stops[1..] {
            handle.stop();
        }
        for running in tasks {
            running.await.unwrap().unwrap();
        }
        let handled = seen.lock().unwrap().clone();
        let distinct: BTreeSet<(i32, i64)> = handled
            .iter()
            .map(|&(_, partition, offset)| (partition, offset))
            .collect();
        assert_eq!(
            distinct.len(),
            66,
            "{}: every record handled",
            target.name()
        );

        // New records, then a fresh member of the same group: only the new ones are handled.
        for index in 0..6 {
            let record = Record {
                partition: Some(index),
                value: Some(Bytes::from("late")),
                ..Record::default()
            };
            producer.send_record(&topic, record).await.unwrap();
        }
        let resumed: Seen = Arc::default();
        let mut consumer = GroupConsumer::connect(group_config(&target, &group))
            .await
            .unwrap();
        let resumed_seen = Arc::clone(&resumed);
        consumer.subscribe(&topic, move |record| {
            resumed_seen
                .lock()
                .unwrap()
                .push((0, record.partition, record.offset));
            Ok(())
        });
        let handle = consumer.stop_handle();
        let running = tokio::spawn(async move { consumer.run().await });
        wait_for(&resumed, 6).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        handle.stop();
        running.await.unwrap().unwrap();
        let offsets: BTreeSet<i64> = resumed
            .lock()
            .unwrap()
            .iter()
            .map(|&(_, _, offset)| offset)
            .collect();
        assert_eq!(
            offsets,
            BTreeSet::from([11]),
            "{}: resumed from the committed offsets",
            target.name()
        );
        target.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_goes_to_the_dead_letter_topic() {
    for target in targets().await {
        let (topic, group) = (unique("jobs"), unique("workers"));
        let dead_letter_topic = format!("{topic}.dlq");
        let admin = Admin::connect(target.client()).await.unwrap();
        admin
            .create_topic(&topic, 1, 1, &BTreeMap::new())
            .await
            .unwrap();
        admin
            .create_topic(&dead_letter_topic, 1, 1, &BTreeMap::new())
            .await
            .unwrap();
        let producer = producer(&target).await;
        for value in ["good", "poison", "good-again"] {
            let record = Record {
                partition: Some(0),
                value: Some(Bytes::from(value)),
                ..Record::default()
            };
            producer.send_record(&topic, record).await.unwrap();
        }
        let seen: Seen = Arc::default();
        let attempts = Arc::new(Mutex::new(0u32));
        let mut consumer = GroupConsumer::connect(GroupConfig {
            attempts: 3,
            ..group_config(&target, &group)
        })
        .await
        .unwrap();
        let (seen_by_handler, attempts_by_handler) = (Arc::clone(&seen), Arc::clone(&attempts));
        consumer.subscribe(&topic, move |record| {
            if record.value.as_deref() == Some(&b"poison"[..]) {
                *attempts_by_handler.lock().unwrap() += 1;
                return Err("cannot process poison".into());
            }
            seen_by_handler
                .lock()
                .unwrap()
                .push((0, record.partition, record.offset));
            Ok(())
        });
        let handle = consumer.stop_handle();
        let running = tokio::spawn(async move { consumer.run().await });
        let mut reader = Consumer::connect(ConsumerConfig {
            client: target.client(),
            ..ConsumerConfig::default()
        })
        .await
        .unwrap();
        reader
            .assign(&dead_letter_topic, 0, OffsetSpec::Earliest)
            .await
            .unwrap();
        let started = Instant::now();
        let mut dead = Vec::new();
        while dead.is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{}: nothing dead-lettered",
                target.name()
            );
            dead.extend(reader.poll().await.unwrap());
        }
        wait_for(&seen, 2).await;
        handle.stop();
        running.await.unwrap().unwrap();
        assert_eq!(*attempts.lock().unwrap(), 3);
        let letter = &dead[0];
        assert_eq!(letter.value.as_deref(), Some(&b"poison"[..]));
        let header = |name: &str| {
            letter
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.clone())
                .map(|value| String::from_utf8(value.to_vec()).unwrap())
        };
        assert_eq!(
            header("lmq.dlq.error").as_deref(),
            Some("cannot process poison")
        );
        assert_eq!(
            header("lmq.dlq.source.topic").as_deref(),
            Some(topic.as_str())
        );
        assert_eq!(header("lmq.dlq.source.offset").as_deref(), Some("1"));
        assert_eq!(header("lmq.dlq.attempts").as_deref(), Some("3"));
        let offsets: Vec<i64> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|&(_, _, offset)| offset)
            .collect();
        assert_eq!(
            offsets,
            [0, 2],
            "{}: the partition moved on past the dead letter",
            target.name()
        );
        target.finish().await;
    }
}
