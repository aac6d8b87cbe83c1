//! The group consumer against an in-process LMQ: members share partitions, failures go to
//! the dead-letter topic, and a restarted group resumes from its commits.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lmq::{
    Admin, ClientConfig, Consumer, ConsumerConfig, GroupConfig, GroupConsumer, OffsetSpec,
    Producer, ProducerConfig, Record,
};
use lmq_broker::clock::SystemClock;
use lmq_broker::{Broker, BrokerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

async fn broker(
    dir: &std::path::Path,
) -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        listen: address,
        ..BrokerConfig::default()
    };
    config.group.initial_rebalance_delay_ms = 0;
    let broker = Arc::new(Broker::open(config, Arc::new(SystemClock)).unwrap());
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(lmq_broker::server::run(broker, listener, None, shutdown));
    (address.to_string(), stop, task)
}

fn client(address: &str) -> ClientConfig {
    ClientConfig {
        brokers: vec![address.to_string()],
        ..ClientConfig::default()
    }
}

fn group_config(address: &str, group: &str) -> GroupConfig {
    GroupConfig {
        client: client(address),
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
            started.elapsed() < Duration::from_secs(30),
            "only {} of {count} records handled",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (address, stop, task) = broker(dir.path()).await;
    let admin = Admin::connect(client(&address)).await.unwrap();
    admin
        .create_topic("shared", 6, 1, &BTreeMap::new())
        .await
        .unwrap();
    let producer = Producer::connect(ProducerConfig {
        client: client(&address),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    for index in 0..60 {
        producer
            .send_record(
                "shared",
                Record {
                    partition: Some(index % 6),
                    value: Some(Bytes::from(format!("{index}"))),
                    ..Record::default()
                },
            )
            .await
            .unwrap();
    }
    let seen: Seen = Arc::default();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for member in 0..3 {
        let mut consumer = GroupConsumer::connect(group_config(&address, "sharers"))
            .await
            .unwrap();
        let seen = Arc::clone(&seen);
        consumer.subscribe("shared", move |record| {
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
    for handle in &stops {
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
    assert_eq!(distinct.len(), 60, "every record handled");
    // After the group settled, each partition belonged to one member.
    let owners: BTreeMap<i32, BTreeSet<usize>> =
        handled
            .iter()
            .fold(BTreeMap::new(), |mut owners, &(member, partition, _)| {
                owners.entry(partition).or_default().insert(member);
                owners
            });
    assert_eq!(owners.len(), 6);

    // New records, then a fresh member of the same group: only the new ones are handled.
    for index in 0..6 {
        producer
            .send_record(
                "shared",
                Record {
                    partition: Some(index),
                    value: Some(Bytes::from("late")),
                    ..Record::default()
                },
            )
            .await
            .unwrap();
    }
    let resumed: Seen = Arc::default();
    let mut consumer = GroupConsumer::connect(group_config(&address, "sharers"))
        .await
        .unwrap();
    let resumed_seen = Arc::clone(&resumed);
    consumer.subscribe("shared", move |record| {
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
        BTreeSet::from([10]),
        "resumed from the committed offsets: only the new record of each partition"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_goes_to_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (address, stop, task) = broker(dir.path()).await;
    let producer = Producer::connect(ProducerConfig {
        client: client(&address),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    for value in ["good", "poison", "good-again"] {
        producer
            .send_record(
                "jobs",
                Record {
                    partition: Some(0),
                    value: Some(Bytes::from(value)),
                    ..Record::default()
                },
            )
            .await
            .unwrap();
    }
    let seen: Seen = Arc::default();
    let attempts = Arc::new(Mutex::new(0u32));
    let mut consumer = GroupConsumer::connect(GroupConfig {
        attempts: 3,
        ..group_config(&address, "workers")
    })
    .await
    .unwrap();
    let (seen_by_handler, attempts_by_handler) = (Arc::clone(&seen), Arc::clone(&attempts));
    consumer.subscribe("jobs", move |record| {
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
    let started = Instant::now();
    let mut dead = Vec::new();
    let mut reader = Consumer::connect(ConsumerConfig {
        client: client(&address),
        ..ConsumerConfig::default()
    })
    .await
    .unwrap();
    while dead.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing dead-lettered"
        );
        if Admin::connect(client(&address))
            .await
            .unwrap()
            .describe_topic("jobs.dlq")
            .await
            .is_ok()
        {
            if reader.positions().is_empty() {
                reader
                    .assign("jobs.dlq", 0, OffsetSpec::Earliest)
                    .await
                    .unwrap_or(());
            }
            dead.extend(reader.poll().await.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    assert_eq!(header("lmq.dlq.source.topic").as_deref(), Some("jobs"));
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
        "the partition moved on past the dead letter"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}
