//! A producer keeps going through a broker crash and restart: every acknowledged record is in
//! the log exactly once, at its acknowledged offset (idempotence turns the retries of
//! batches whose answer was lost into no-ops).

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lmq::{
    Admin, ClientConfig, Consumer, ConsumerConfig, OffsetSpec, Producer, ProducerConfig, Record,
};
use lmq_broker::BrokerConfig;
use lmq_broker::clock::SystemClock;
use lmq_broker::node::Node;
use tokio::net::TcpListener;

async fn start(dir: &std::path::Path, address: std::net::SocketAddr) -> Node {
    let mut listener = None;
    for _ in 0..50 {
        match TcpListener::bind(address).await {
            Ok(bound) => {
                listener = Some(bound);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        listen: address,
        ..BrokerConfig::default()
    };
    Node::start(config, Arc::new(SystemClock), vec![listener.unwrap()], None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_a_broker_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = start(dir.path(), address).await;
    let client = ClientConfig {
        brokers: vec![address.to_string()],
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    Admin::connect(client.clone())
        .await
        .unwrap()
        .create_topic("restarted", 1, 1, &BTreeMap::new())
        .await
        .unwrap();
    let producer = Arc::new(
        Producer::connect(ProducerConfig {
            client: client.clone(),
            retries: 20,
            retry_backoff: Duration::from_millis(50),
            ..ProducerConfig::default()
        })
        .await
        .unwrap(),
    );
    let sender = {
        let producer = Arc::clone(&producer);
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for index in 0..400u32 {
                let record = Record {
                    partition: Some(0),
                    value: Some(Bytes::from(index.to_string())),
                    ..Record::default()
                };
                let delivery = producer.send_record("restarted", record).await.unwrap();
                acknowledged.push((index, delivery.offset));
            }
            acknowledged
        })
    };
    // Crash the broker while records are in flight (no log is closed), then restart it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    node.crash().await;
    let node = start(dir.path(), address).await;
    let acknowledged = sender.await.unwrap();
    assert_eq!(acknowledged.len(), 400);

    let mut consumer = Consumer::connect(ConsumerConfig {
        client,
        ..ConsumerConfig::default()
    })
    .await
    .unwrap();
    consumer
        .assign("restarted", 0, OffsetSpec::Earliest)
        .await
        .unwrap();
    let mut values = Vec::new();
    while values.len() < 400 {
        let records = consumer.poll().await.unwrap();
        assert!(
            !records.is_empty() || values.len() >= 400,
            "log ends early at {}",
            values.len()
        );
        values.extend(
            records
                .into_iter()
                .map(|record| (record.offset, record.value.unwrap())),
        );
    }
    assert_eq!(values.len(), 400, "no duplicates");
    for (index, offset) in acknowledged {
        let stored = &values[usize::try_from(offset).unwrap()];
        assert_eq!(
            (stored.0, &stored.1[..]),
            (offset, index.to_string().as_bytes()),
            "record {index} at its acknowledged offset"
        );
    }
    node.stop().await;
}
