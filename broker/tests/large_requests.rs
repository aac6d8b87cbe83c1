//! Requests with hundreds of thousands of items: every handler must stay within
//! O(n log n) of the request's size (a linear search per item made a 300,000-partition
//! OffsetCommit take minutes). These tests assert the answers, not timings: before the
//! fixes they ran for minutes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestBroker;
use common::TestClient;
use common::requests::*;
use lmq_wire::protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use lmq_wire::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use lmq_wire::protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use lmq_wire::protocol::messages::{
    ApiKey, GroupId, IncrementalAlterConfigsRequest, OffsetCommitRequest, OffsetFetchRequest,
    RequestKind, ResponseKind,
};
use lmq_wire::protocol::protocol::StrBytes;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// Thousands of partitions: small segments, so each active segment's index files (allocated
/// for real, sized to what a full segment can use) take kilobytes, not megabytes, of disk.
fn small_logs(config: &mut lmq_broker::config::BrokerConfig) {
    config.log.segment_bytes = 1 << 20;
}

/// An OffsetCommit of `partitions` of each topic, offset = partition index.
fn commit_request(group: &str, topics: &[(&str, std::ops::Range<i32>)]) -> RequestKind {
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(text(group));
    request.generation_id_or_member_epoch = -1;
    request.group_instance_id = None;
    request.topics = topics
        .iter()
        .map(|(topic, partitions)| {
            let mut committed = OffsetCommitRequestTopic::default();
            committed.name = name(topic);
            committed.partitions = partitions
                .clone()
                .map(|index| {
                    let mut partition = OffsetCommitRequestPartition::default();
                    partition.partition_index = index;
                    partition.committed_offset = i64::from(index);
                    partition
                })
                .collect();
            committed
        })
        .collect();
    RequestKind::OffsetCommit(request)
}

#[tokio::test]
async fn an_offset_commit_of_300_000_partitions_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), small_logs).await;
    broker.find_coordinator("wide").await;
    let mut client = broker.client().await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("orders", 3, 1, &[]),
        )
        .await;
    // Three partitions that exist, 300,000 that do not.
    let request = commit_request("wide", &[("orders", 0..3), ("nowhere", 0..300_000)]);
    let ResponseKind::OffsetCommit(response) = client.call(ApiKey::OffsetCommit, 8, request).await
    else {
        panic!()
    };
    assert_eq!(response.topics.len(), 2);
    let known = &response.topics[0].partitions;
    assert_eq!(known.len(), 3);
    assert!(known.iter().all(|partition| partition.error_code == 0));
    let unknown = &response.topics[1].partitions;
    assert_eq!(unknown.len(), 300_000);
    for (index, partition) in unknown.iter().enumerate() {
        assert_eq!(partition.partition_index, i32::try_from(index).unwrap());
        assert_eq!(partition.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    }
    broker.stop().await;
}

#[tokio::test]
async fn an_offset_fetch_of_200_000_topics_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), small_logs).await;
    broker.find_coordinator("wide").await;
    let mut client = broker.client().await;
    let mut group = OffsetFetchRequestGroup::default();
    group.group_id = GroupId(text("wide"));
    group.topics = Some(
        (0..200_000)
            .map(|index| {
                let mut topic = OffsetFetchRequestTopics::default();
                topic.name = name(&format!("t{index}"));
                topic.partition_indexes = vec![0];
                topic
            })
            .collect(),
    );
    let mut request = OffsetFetchRequest::default();
    request.groups = vec![group];
    let ResponseKind::OffsetFetch(response) = client
        .call(ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(request))
        .await
    else {
        panic!()
    };
    let topics = &response.groups[0].topics;
    assert_eq!(topics.len(), 200_000);
    for (index, topic) in topics.iter().enumerate() {
        assert_eq!(topic.name.0.as_str(), format!("t{index}"), "request order");
        assert_eq!(topic.partitions[0].committed_offset, -1);
    }
    broker.stop().await;
}

async fn alter(client: &mut TestClient, topic: &str, changes: &[(&str, i8, Option<&str>)]) -> i16 {
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = text(topic);
    resource.configs = changes
        .iter()
        .map(|(key, operation, value)| {
            let mut change = AlterableConfig::default();
            change.name = text(key);
            change.config_operation = *operation;
            change.value = value.map(text);
            change
        })
        .collect();
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    let ResponseKind::IncrementalAlterConfigs(response) = client
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            RequestKind::IncrementalAlterConfigs(request),
        )
        .await
    else {
        panic!()
    };
    response.responses[0].error_code
}

#[tokio::test]
async fn a_list_config_append_of_200_000_items_is_answered_and_keys_come_once() {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    const APPEND: i8 = 2;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), small_logs).await;
    let mut client = broker.client().await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("orders", 1, 1, &[]),
        )
        .await;
    let items: Vec<String> = (0..200_000).map(|index| format!("p{index}")).collect();
    let items = items.join(",");
    assert_eq!(
        alter(
            &mut client,
            "orders",
            &[("cleanup.policy", APPEND, Some(&items))]
        )
        .await,
        40,
        "INVALID_CONFIG: the items are not compact or delete"
    );
    // As Kafka: a key named twice in one resource is INVALID_REQUEST.
    assert_eq!(
        alter(
            &mut client,
            "orders",
            &[
                ("retention.ms", SET, Some("1000")),
                ("retention.ms", DELETE, None)
            ]
        )
        .await,
        42
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_create_topics_of_2_000_topics_is_one_metadata_write() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), small_logs).await;
    let mut client = broker.client().await;
    let mut request = lmq_wire::protocol::messages::CreateTopicsRequest::default();
    request.timeout_ms = 60_000;
    request.topics = (0..2_000)
        .map(|index| {
            let RequestKind::CreateTopics(one) =
                create_topic_request(&format!("t{index}"), 1, 1, &[])
            else {
                panic!()
            };
            one.topics.into_iter().next().unwrap()
        })
        .collect();
    // The last one twice: the second is refused as existing.
    request.topics.push(request.topics[1_999].clone());
    let ResponseKind::CreateTopics(response) = client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))
        .await
    else {
        panic!()
    };
    assert_eq!(response.topics.len(), 2_001);
    for (index, topic) in response.topics[..2_000].iter().enumerate() {
        assert_eq!(topic.name.0.as_str(), format!("t{index}"));
        assert_eq!(topic.error_code, 0, "{topic:?}");
        assert!(!topic.topic_id.is_nil());
    }
    assert_eq!(
        response.topics[2_000].error_code, 36,
        "TOPIC_ALREADY_EXISTS"
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_metadata_request_auto_creating_2_000_topics_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |config| {
        small_logs(config);
        config.default_partitions = 1;
    })
    .await;
    let mut client = broker.client().await;
    let names: Vec<String> = (0..2_000).map(|index| format!("auto{index}")).collect();
    let mut asked: Vec<&str> = names.iter().map(String::as_str).collect();
    asked.push("auto0"); // twice
    asked.push("bad name"); // invalid
    let ResponseKind::Metadata(response) = client
        .call(ApiKey::Metadata, 12, metadata_request(&asked))
        .await
    else {
        panic!()
    };
    assert_eq!(response.topics.len(), 2_002);
    for (index, topic) in response.topics[..2_000].iter().enumerate() {
        assert_eq!(
            topic.name.as_ref().unwrap().0.as_str(),
            format!("auto{index}")
        );
        assert_eq!(topic.error_code, 0);
        assert_eq!(topic.partitions.len(), 1);
    }
    assert_eq!(response.topics[2_000].error_code, 0, "asked twice");
    assert_eq!(
        response.topics[2_001].error_code, 17,
        "INVALID_TOPIC_EXCEPTION"
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_delete_topics_of_2_000_topics_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), small_logs).await;
    let mut client = broker.client().await;
    let names: Vec<String> = (0..2_000).map(|index| format!("t{index}")).collect();
    let mut create = lmq_wire::protocol::messages::CreateTopicsRequest::default();
    create.timeout_ms = 60_000;
    create.topics = names
        .iter()
        .map(|topic| {
            let RequestKind::CreateTopics(one) = create_topic_request(topic, 1, 1, &[]) else {
                panic!()
            };
            one.topics.into_iter().next().unwrap()
        })
        .collect();
    client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(create))
        .await;
    let mut delete = lmq_wire::protocol::messages::DeleteTopicsRequest::default();
    delete.timeout_ms = 60_000;
    delete.topic_names = names.iter().map(|topic| name(topic)).collect();
    delete.topic_names.push(name("t0")); // twice
    let ResponseKind::DeleteTopics(response) = client
        .call(ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(delete))
        .await
    else {
        panic!()
    };
    assert_eq!(response.responses.len(), 2_001);
    for (index, result) in response.responses[..2_000].iter().enumerate() {
        assert_eq!(
            result.name.as_ref().unwrap().0.as_str(),
            format!("t{index}")
        );
        assert_eq!(result.error_code, 0, "{result:?}");
    }
    assert_eq!(response.responses[2_000].error_code, 3, "deleted already");
    broker.stop().await;
}
