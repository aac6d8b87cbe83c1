//! A node's life: crashes and restarts, an older data dir adopted, an idle node at rest, a
//! second broker kept off a data dir in use.

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

use std::time::Duration;

use common::requests::{
    create_topic_request, fetch, init_producer_id_request, metadata_request, name, produce,
    produce_request, temp,
};
use common::{TestBroker, batch, now_ms};
use lmq_wire::decode_response;
use lmq_wire::protocol::messages::{ApiKey, RequestKind, ResponseKind};

#[tokio::test]
async fn everything_acknowledged_is_readable_after_a_crash() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["crashy"]))
        .await;
    // Let the first checkpoint (high watermark 0) be written, then produce. Records stamped
    // now: ones from 1970 are past the 7-day retention, and the restarted broker's first
    // retention pass could delete them before the fetch below.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let now_ms = now_ms();
    for _ in 0..5 {
        assert_eq!(
            produce(&mut client, "crashy", 0, batch(&["a", "b"], now_ms))
                .await
                .0,
            0
        );
    }
    drop(client);
    broker.crash().await;
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    let response = fetch(&mut client, 12, "crashy", 0, 0).await;
    let partition = &response.responses[0].partitions[0];
    assert_eq!(
        partition.high_watermark, 10,
        "the high watermark is the log end again"
    );
    assert!(lmq_storage::batch::batch_total_bytes(partition.records.as_ref().unwrap()).is_some());
    broker.stop().await;
}

/// Pipelined produces under `flush = "every-batch"`: the broker reads and appends the next
/// requests while earlier ones wait for their fsync (group commit), answers in request order,
/// and everything answered is on disk.
#[tokio::test]
async fn pipelined_produces_are_answered_in_order_and_survive_a_crash() {
    let dir = temp();
    let every_batch = |config: &mut lmq_broker::BrokerConfig| {
        config.log.flush = "every-batch".to_string();
    };
    let broker = TestBroker::start_in(dir.path(), every_batch).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["piped"]))
        .await;
    let now_ms = now_ms();
    let mut sent = Vec::new();
    for round in 0..30 {
        let records = batch(&["a", "b"], now_ms);
        let id = client
            .send(ApiKey::Produce, 9, produce_request("piped", 0, records, 1))
            .await;
        sent.push((id, ApiKey::Produce));
        if round % 10 == 0 {
            // Other requests between them keep their place in the answers.
            let id = client
                .send(ApiKey::Metadata, 12, metadata_request(&["piped"]))
                .await;
            sent.push((id, ApiKey::Metadata));
        }
    }
    let mut next_offset = 0;
    for (id, api_key) in sent {
        let version = if api_key == ApiKey::Produce { 9 } else { 12 };
        let frame = client.read_frame().await.expect("an answer");
        let (received, response) = decode_response(frame, api_key, version).unwrap();
        assert_eq!(received, id, "answers come in request order");
        if let ResponseKind::Produce(response) = response {
            let answer = &response.responses[0].partition_responses[0];
            assert_eq!((answer.error_code, answer.base_offset), (0, next_offset));
            next_offset += 2;
        }
    }
    drop(client);
    broker.crash().await;
    let broker = TestBroker::start_in(dir.path(), every_batch).await;
    let mut client = broker.client().await;
    let response = fetch(&mut client, 12, "piped", 0, 0).await;
    assert_eq!(response.responses[0].partitions[0].high_watermark, 60);
    broker.stop().await;
}

/// With the default flush policy a segment roll does not fsync on the append path; the
/// broker's upkeep flushes the rolled segments in the background within about a second, and
/// only then moves the recovery point.
#[tokio::test]
async fn rolled_segments_are_flushed_in_the_background() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |config| config.log.segment_bytes = 300).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["rolled"]))
        .await;
    for _ in 0..20 {
        produce(&mut client, "rolled", 0, batch(&["x", "y", "z"], now_ms())).await;
    }
    let partition = broker.node.broker.topics.get("rolled").unwrap().partitions[0].clone();
    let offsets = || {
        partition
            .with_log(|log| {
                Ok((
                    log.segment_count(),
                    log.recovery_point(),
                    log.log_end_offset(),
                ))
            })
            .unwrap()
    };
    assert!(offsets().0 >= 3, "the log rolled: {:?}", offsets());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while offsets().1 < offsets().2 {
        assert!(
            std::time::Instant::now() < deadline,
            "not flushed: {:?}",
            offsets()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    client
        .call(ApiKey::Metadata, 12, metadata_request(&["durable"]))
        .await;
    for index in 0..10 {
        produce(
            &mut client,
            "durable",
            index % 3,
            batch(&["x", "y"], now_ms()),
        )
        .await;
    }
    broker.stop().await;
    let broker = TestBroker::start_in(dir.path(), |config| config.auto_create_topics = false).await;
    let mut client = broker.client().await;
    let mut total = 0;
    for partition in 0..3 {
        let response = fetch(&mut client, 12, "durable", partition, 0).await;
        total += response.responses[0].partitions[0].high_watermark;
    }
    assert_eq!(total, 20);
    broker.stop().await;
}

/// A data dir written by a node that ran without a coordinator (before LMQ had the embedded
/// one): its topics join the embedded cluster metadata as they are, and producer ids it
/// handed out are never handed out again.
#[tokio::test]
async fn an_uncoordinated_data_dir_is_adopted() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("legacy", 2, 1, &[]),
        )
        .await;
    assert_eq!(
        produce(&mut client, "legacy", 1, batch(&["old", "data"], now_ms())).await,
        (0, 0)
    );
    broker.stop().await;
    // What such a node left: topic files without the replica mark, no coordinator state, the
    // end of its last producer-id block.
    let topic_file = dir.path().join("topics/legacy.toml");
    let text = std::fs::read_to_string(&topic_file).unwrap();
    assert!(text.contains("replica = true"));
    std::fs::write(&topic_file, text.replace("replica = true", "")).unwrap();
    std::fs::remove_dir_all(dir.path().join(lmq_broker::cluster::EMBEDDED_DIR)).unwrap();
    std::fs::write(dir.path().join("producer_id_block"), "7000").unwrap();

    let broker = TestBroker::start_in(dir.path(), |config| config.auto_create_topics = false).await;
    let mut client = broker.client().await;
    let ResponseKind::Metadata(metadata) = client
        .call(ApiKey::Metadata, 12, metadata_request(&["legacy"]))
        .await
    else {
        panic!()
    };
    let topic = &metadata.topics[0];
    assert_eq!((topic.error_code, topic.partitions.len()), (0, 2));
    let response = fetch(&mut client, 12, "legacy", 1, 0).await;
    assert_eq!(response.responses[0].partitions[0].high_watermark, 2);
    assert_eq!(
        produce(&mut client, "legacy", 0, batch(&["new"], 0)).await,
        (0, 0)
    );
    let ResponseKind::InitProducerId(init) = client
        .call(ApiKey::InitProducerId, 4, init_producer_id_request())
        .await
    else {
        panic!()
    };
    assert_eq!(init.error_code, 0);
    assert!(init.producer_id.0 >= 7000, "{init:?}");
    broker.stop().await;

    // Adopted, the topic is the cluster's: deleting it removes its logs.
    assert!(dir.path().join("legacy-0").exists());
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    let mut delete = lmq_wire::protocol::messages::DeleteTopicsRequest::default();
    delete.topic_names = vec![name("legacy")];
    let ResponseKind::DeleteTopics(deleted) = client
        .call(ApiKey::DeleteTopics, 4, RequestKind::DeleteTopics(delete))
        .await
    else {
        panic!()
    };
    assert_eq!(deleted.responses[0].error_code, 0);
    assert!(!dir.path().join("legacy-0").exists());
    broker.stop().await;
}

/// Nothing wakes the cluster tasks of an idle node: the controller once re-announced the
/// document it had just read, woke itself with it and spun at 100% CPU.
#[tokio::test]
async fn an_idle_node_is_still() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("still", 3, 1, &[]),
        )
        .await;
    broker.find_coordinator("still-group").await;
    let cluster = &broker.node.cluster;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = cluster.view_generation();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        cluster.view_generation(),
        settled,
        "the view changed while idle"
    );
    broker.stop().await;
}

/// A second broker on a data dir in use stops at the data dir's lock, before it opens its
/// coordinator (embedded or Consul) or (would recover) the logs the first one writes.
#[tokio::test]
async fn a_second_broker_on_the_same_data_dir_is_refused_before_it_opens_logs() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = lmq_broker::BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: listener.local_addr().unwrap(),
        ..lmq_broker::BrokerConfig::default()
    };
    let clock = std::sync::Arc::new(lmq_broker::clock::SystemClock);
    let second = lmq_broker::node::Node::start(config, clock, vec![listener], None).await;
    assert!(
        matches!(second, Err(lmq_broker::node::NodeError::DataDirInUse(_))),
        "{second:?}"
    );
    broker.stop().await;
}
