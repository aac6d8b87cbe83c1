//! The admin endpoints: health, readiness, status, and metrics that move by the right amounts.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use common::{TestBroker, batch};
use lmq_wire::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use lmq_wire::protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use lmq_wire::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use lmq_wire::protocol::messages::{
    ApiKey, GroupId, MetadataRequest, OffsetCommitRequest, OffsetForLeaderEpochRequest,
    ProduceRequest, RequestKind, TopicName,
};
use lmq_wire::protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// The value of the sample line that starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{metrics}"))
}

#[tokio::test]
async fn health_ready_status_and_metrics_follow_the_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    assert_eq!(broker.http_get("/health").await, (200, "ok\n".to_string()));
    assert_eq!(broker.http_get("/ready").await.0, 200);

    let mut client = broker.client().await;
    let mut metadata = MetadataRequest::default();
    metadata.topics = Some(vec![{
        let mut topic =
            lmq_wire::protocol::messages::metadata_request::MetadataRequestTopic::default();
        topic.name = Some(TopicName(text("metered")));
        topic
    }]);
    metadata.allow_auto_topic_creation = true;
    client
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(metadata))
        .await;
    for partition in [0, 0, 1, 7] {
        let mut data = PartitionProduceData::default();
        data.index = partition;
        data.records = Some(batch(&["a", "b", "c"], 0));
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(text("metered"));
        topic.partition_data = vec![data];
        let mut request = ProduceRequest::default();
        request.acks = 1;
        request.topic_data = vec![topic];
        client
            .call(ApiKey::Produce, 9, RequestKind::Produce(request))
            .await;
    }
    broker.find_coordinator("lagging").await;
    // A committed offset 2 below the high watermark of partition 0 (6).
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = 4;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(text("metered"));
    topic.partitions = vec![partition];
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(text("lagging"));
    commit.generation_id_or_member_epoch = -1;
    commit.topics = vec![topic];
    client
        .call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit))
        .await;
    // An API whose answer once carried no error codes to the metrics (a central match over
    // the response types answered nothing for it).
    let mut asked = OffsetForLeaderPartition::default();
    asked.partition = 0;
    asked.leader_epoch = 0;
    let mut unknown = OffsetForLeaderTopic::default();
    unknown.topic = TopicName(text("no-such-topic"));
    unknown.partitions = vec![asked];
    let mut epochs = OffsetForLeaderEpochRequest::default();
    epochs.replica_id = lmq_wire::protocol::messages::BrokerId(-1);
    epochs.topics = vec![unknown];
    client
        .call(
            ApiKey::OffsetForLeaderEpoch,
            4,
            RequestKind::OffsetForLeaderEpoch(epochs),
        )
        .await;
    // A request that closes its connection.
    let mut bad = broker.client().await;
    bad.stream
        .write_all(&[0x7f, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    assert!(bad.is_closed().await);

    let (status, metrics) = broker.http_get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "lmq_topic_records_in_total{topic=\"metered\"}"),
        9.0
    );
    assert_eq!(sample(&metrics, "lmq_requests_total{api=\"Produce\"}"), 4.0);
    assert_eq!(
        sample(
            &metrics,
            "lmq_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "lmq_request_errors_total{api=\"frame\",error=\"INVALID_FRAME\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "lmq_request_errors_total{api=\"OffsetForLeaderEpoch\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "lmq_consumer_lag{group=\"lagging\",topic=\"metered\",partition=\"0\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "lmq_log_end_offset{topic=\"metered\",partition=\"1\"}"
        ),
        3.0
    );
    assert!(sample(&metrics, "lmq_process_resident_memory_bytes") > 0.0);
    assert!(sample(&metrics, "lmq_connections_active") >= 1.0);
    assert!(metrics.contains("lmq_fsync_duration_seconds_count"));

    let (status, body) = broker.http_get("/v1/status").await;
    assert_eq!(status, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let metered = status["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|topic| topic["name"] == "metered")
        .unwrap();
    assert_eq!(metered["partitions"][0]["high_watermark"], 6);
    assert_eq!(status["ready"], true);
    broker.stop().await;
}

/// In a cluster each broker reports what it leads, and `/v1/status` shows the cluster's
/// leaders, replicas and ISR. Both used to report the single-node view: every broker
/// counted each partition it hosts as led by itself (two brokers of a topic with 4
/// partitions and 2 replicas reported 8 leaders between them).
#[tokio::test]
async fn leaders_and_status_report_the_cluster_view() {
    let cluster = common::cluster::TestCluster::start(2).await;
    cluster.wait_for_brokers().await;
    let mut client = cluster.brokers[0].client().await;
    let created = client
        .call(
            ApiKey::CreateTopics,
            7,
            common::requests::create_topic_request("spread", 4, 2, &[]),
        )
        .await;
    let lmq_wire::protocol::messages::ResponseKind::CreateTopics(created) = created else {
        panic!("{created:?}")
    };
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    let mut leaders = Vec::new();
    for index in 0..4 {
        leaders.push(cluster.leader_and_follower("spread", index).await.0);
    }
    let mut reported = 0;
    for (position, member) in cluster.brokers.iter().enumerate() {
        lmq_broker::admin::refresh_metrics(&member.broker, &member.cluster);
        let led = member.broker.metrics.leader_partitions.get();
        let expected = leaders.iter().filter(|&&leader| leader == position).count();
        assert_eq!(led, expected as i64, "broker {position} leads {expected}");
        assert_eq!(member.broker.metrics.under_replicated_partitions.get(), 0);
        reported += led;
        let status = lmq_broker::admin::status(&member.broker, &member.cluster);
        let partitions = status["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|topic| topic["name"] == "spread")
            .unwrap()["partitions"]
            .as_array()
            .unwrap()
            .clone();
        for (index, partition) in partitions.iter().enumerate() {
            // Node ids are the brokers' positions in a TestCluster.
            assert_eq!(partition["leader"], leaders[index] as i64, "{partition}");
            assert_eq!(
                partition["replicas"].as_array().unwrap().len(),
                2,
                "{partition}"
            );
        }
        assert_eq!(status["brokers"].as_array().unwrap().len(), 2, "{status}");
    }
    assert_eq!(reported, 4);
    cluster.stop().await;
}

/// With `admin_token_file`, /metrics and /v1/status need the bearer token; the probes do not.
#[tokio::test]
async fn a_configured_admin_token_guards_metrics_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let broker = TestBroker::start_in(&dir.path().join("data"), |config| {
        config.admin_token_file = Some(token_file.clone());
    })
    .await;
    for path in ["/metrics", "/v1/status"] {
        assert_eq!(broker.http_get(path).await.0, 401, "{path} without a token");
        let wrong = broker
            .http_get_with(path, "Authorization: Bearer guess\r\n")
            .await;
        assert_eq!(wrong.0, 401, "{path} with a wrong token");
        let right = broker
            .http_get_with(path, "Authorization: Bearer s3cret-token\r\n")
            .await;
        assert_eq!(right.0, 200, "{path} with the token");
    }
    assert_eq!(broker.http_get("/health").await.0, 200);
    assert_eq!(broker.http_get("/ready").await.0, 200);
    broker.stop().await;
}
