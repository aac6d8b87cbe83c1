//! Admin APIs over a socket: configs, partitions, record deletion, topic deletion, cluster.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use common::{TestBroker, TestClient, batch};
use lmq_wire::protocol::messages::create_partitions_request::CreatePartitionsTopic;
use lmq_wire::protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use lmq_wire::protocol::messages::describe_configs_request::DescribeConfigsResource;
use lmq_wire::protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use lmq_wire::protocol::messages::metadata_request::MetadataRequestTopic;
use lmq_wire::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use lmq_wire::protocol::messages::{
    ApiKey, CreatePartitionsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, MetadataRequest, ProduceRequest, RequestKind, ResponseKind,
    TopicName,
};
use lmq_wire::protocol::protocol::StrBytes;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn name(value: &str) -> TopicName {
    TopicName(text(value))
}

async fn partitions_of(client: &mut TestClient, topic: &str) -> (i16, usize) {
    let mut requested = MetadataRequestTopic::default();
    requested.name = Some(name(topic));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![requested]);
    request.allow_auto_topic_creation = false;
    let ResponseKind::Metadata(response) = client
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(request))
        .await
    else {
        panic!()
    };
    (
        response.topics[0].error_code,
        response.topics[0].partitions.len(),
    )
}

async fn create(client: &mut TestClient, topic: &str, partitions: i32) {
    let mut creatable =
        lmq_wire::protocol::messages::create_topics_request::CreatableTopic::default();
    creatable.name = name(topic);
    creatable.num_partitions = partitions;
    creatable.replication_factor = 1;
    let mut request = lmq_wire::protocol::messages::CreateTopicsRequest::default();
    request.topics = vec![creatable];
    let ResponseKind::CreateTopics(response) = client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request))
        .await
    else {
        panic!()
    };
    assert_eq!(response.topics[0].error_code, 0);
}

async fn describe(
    client: &mut TestClient,
    version: i16,
    resource_type: i8,
    resource: &str,
) -> DescribeConfigsResponse {
    let mut described = DescribeConfigsResource::default();
    described.resource_type = resource_type;
    described.resource_name = text(resource);
    described.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![described];
    request.include_synonyms = true;
    match client
        .call(
            ApiKey::DescribeConfigs,
            version,
            RequestKind::DescribeConfigs(request),
        )
        .await
    {
        ResponseKind::DescribeConfigs(response) => response,
        other => panic!("{other:?}"),
    }
}

fn config_value(response: &DescribeConfigsResponse, key: &str) -> (String, i8) {
    let entry = response.results[0]
        .configs
        .iter()
        .find(|entry| entry.name.as_str() == key)
        .unwrap();
    (
        entry.value.as_ref().unwrap().to_string(),
        entry.config_source,
    )
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
async fn topic_configs_are_described_altered_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    create(&mut client, "configured", 1).await;
    for version in 1..=4 {
        let response = describe(&mut client, version, 2, "configured").await;
        assert_eq!(response.results[0].error_code, 0, "v{version}");
        assert_eq!(
            config_value(&response, "retention.ms"),
            ("604800000".to_string(), 5)
        );
        assert_eq!(
            config_value(&response, "cleanup.policy"),
            ("delete".to_string(), 5)
        );
    }
    assert_eq!(
        alter(
            &mut client,
            "configured",
            &[("retention.ms", 0, Some("60000"))]
        )
        .await,
        0
    );
    assert_eq!(
        alter(
            &mut client,
            "configured",
            &[("cleanup.policy", 2, Some("delete"))]
        )
        .await,
        0
    );
    let response = describe(&mut client, 4, 2, "configured").await;
    assert_eq!(
        config_value(&response, "retention.ms"),
        ("60000".to_string(), 1)
    );
    assert_eq!(
        alter(
            &mut client,
            "configured",
            &[("segment.bytes", 0, Some("huge"))]
        )
        .await,
        40
    );
    assert_eq!(
        alter(
            &mut client,
            "configured",
            &[("cleanup.policy", 0, Some("compact"))]
        )
        .await,
        40
    );
    assert_eq!(
        alter(&mut client, "missing", &[("retention.ms", 0, Some("1"))]).await,
        3
    );
    let response = describe(&mut client, 4, 2, "missing").await;
    assert_eq!(response.results[0].error_code, 3);
    let response = describe(&mut client, 4, 4, "0").await;
    assert_eq!(
        config_value(&response, "num.partitions"),
        ("3".to_string(), 4)
    );
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    let response = describe(&mut client, 4, 2, "configured").await;
    assert_eq!(
        config_value(&response, "retention.ms"),
        ("60000".to_string(), 1)
    );
    assert_eq!(
        alter(&mut client, "configured", &[("retention.ms", 1, None)]).await,
        0
    );
    let response = describe(&mut client, 4, 2, "configured").await;
    assert_eq!(
        config_value(&response, "retention.ms"),
        ("604800000".to_string(), 5)
    );
    broker.stop().await;
}

#[tokio::test]
async fn partitions_grow_but_never_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    create(&mut client, "growing", 2).await;
    let grow = |count: i32, validate_only: bool| {
        let mut topic = CreatePartitionsTopic::default();
        topic.name = name("growing");
        topic.count = count;
        topic.assignments = None;
        let mut request = CreatePartitionsRequest::default();
        request.topics = vec![topic];
        request.validate_only = validate_only;
        RequestKind::CreatePartitions(request)
    };
    for (version, (count, validate_only, code)) in
        [(5, true, 0), (5, false, 0), (4, false, 37), (5, false, 37)]
            .into_iter()
            .enumerate()
    {
        let ResponseKind::CreatePartitions(response) = client
            .call(
                ApiKey::CreatePartitions,
                version.min(3) as i16,
                grow(count, validate_only),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(response.results[0].error_code, code, "to {count}");
    }
    assert_eq!(partitions_of(&mut client, "growing").await, (0, 5));
    broker.stop().await;
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(partitions_of(&mut client, "growing").await, (0, 5));
    broker.stop().await;
}

#[tokio::test]
async fn delete_records_moves_the_low_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    create(&mut client, "trimmed", 1).await;
    for _ in 0..3 {
        let mut data = PartitionProduceData::default();
        data.index = 0;
        data.records = Some(batch(&["a", "b"], 0));
        let mut topic = TopicProduceData::default();
        topic.name = name("trimmed");
        topic.partition_data = vec![data];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.topic_data = vec![topic];
        client
            .call(ApiKey::Produce, 9, RequestKind::Produce(request))
            .await;
    }
    let delete = |offset: i64| {
        let mut partition = DeleteRecordsPartition::default();
        partition.partition_index = 0;
        partition.offset = offset;
        let mut topic = DeleteRecordsTopic::default();
        topic.name = name("trimmed");
        topic.partitions = vec![partition];
        let mut request = DeleteRecordsRequest::default();
        request.topics = vec![topic];
        RequestKind::DeleteRecords(request)
    };
    let answer = |response: ResponseKind| match response {
        ResponseKind::DeleteRecords(response) => {
            let partition = &response.topics[0].partitions[0];
            (partition.error_code, partition.low_watermark)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        answer(client.call(ApiKey::DeleteRecords, 2, delete(3)).await),
        (0, 3)
    );
    assert_eq!(
        answer(client.call(ApiKey::DeleteRecords, 1, delete(99)).await).0,
        1,
        "beyond the HW"
    );
    assert_eq!(
        answer(client.call(ApiKey::DeleteRecords, 0, delete(-1)).await),
        (0, 6),
        "-1: the HW"
    );
    broker.stop().await;
}

#[tokio::test]
async fn deleted_topics_are_gone_with_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |config| config.auto_create_topics = false).await;
    let mut client = broker.client().await;
    create(&mut client, "doomed", 2).await;
    create(&mut client, "kept", 1).await;
    let mut request = DeleteTopicsRequest::default();
    request.topic_names = vec![name("doomed"), name("never-was")];
    let ResponseKind::DeleteTopics(response) = client
        .call(ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(request))
        .await
    else {
        panic!()
    };
    let codes: Vec<i16> = response
        .responses
        .iter()
        .map(|result| result.error_code)
        .collect();
    assert_eq!(codes, [0, 3]);
    assert_eq!(partitions_of(&mut client, "doomed").await.0, 3);
    assert!(!dir.path().join("doomed-0").exists());
    assert!(dir.path().join("kept-0").exists());
    broker.stop().await;
    let broker = TestBroker::start_in(dir.path(), |config| config.auto_create_topics = false).await;
    let mut client = broker.client().await;
    assert_eq!(partitions_of(&mut client, "doomed").await.0, 3);
    assert_eq!(partitions_of(&mut client, "kept").await, (0, 1));
    broker.stop().await;
}

#[tokio::test]
async fn describe_cluster_names_this_node_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |config| config.node_id = 7).await;
    let mut client = broker.client().await;
    for version in 0..=2 {
        let ResponseKind::DescribeCluster(response) = client
            .call(
                ApiKey::DescribeCluster,
                version,
                RequestKind::DescribeCluster(DescribeClusterRequest::default()),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(response.controller_id.0, 7);
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.brokers[0].port, i32::from(broker.addr.port()));
        assert!(!response.cluster_id.is_empty());
    }
    broker.stop().await;
}

/// AlterConfigs (the legacy call, all versions): the entries sent become the whole set of
/// overrides; an invalid set changes nothing.
#[tokio::test]
async fn alter_configs_replaces_the_overrides() {
    use lmq_wire::protocol::messages::AlterConfigsRequest;
    use lmq_wire::protocol::messages::alter_configs_request::{
        AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    create(&mut client, "legacy-altered", 1).await;
    let set = |version: i16, entries: &[(&str, &str)], validate_only: bool| {
        let mut resource = LegacyResource::default();
        resource.resource_type = 2;
        resource.resource_name = text("legacy-altered");
        resource.configs = entries
            .iter()
            .map(|(key, value)| {
                let mut config = LegacyConfig::default();
                config.name = text(key);
                config.value = Some(text(value));
                config
            })
            .collect();
        let mut request = AlterConfigsRequest::default();
        request.resources = vec![resource];
        request.validate_only = validate_only;
        (version, RequestKind::AlterConfigs(request))
    };
    for version in 0..=2 {
        let (version, request) = set(version, &[("retention.ms", "60000")], false);
        let ResponseKind::AlterConfigs(response) =
            client.call(ApiKey::AlterConfigs, version, request).await
        else {
            panic!()
        };
        assert_eq!(response.responses[0].error_code, 0, "v{version}");
    }
    let (version, request) = set(2, &[("segment.ms", "3600000")], false);
    client.call(ApiKey::AlterConfigs, version, request).await;
    let response = describe(&mut client, 4, 2, "legacy-altered").await;
    assert_eq!(
        config_value(&response, "segment.ms"),
        ("3600000".to_string(), 1)
    );
    assert_eq!(
        config_value(&response, "retention.ms"),
        ("604800000".to_string(), 5),
        "left out: back to the default"
    );
    let (version, request) = set(2, &[("segment.bytes", "huge")], false);
    let ResponseKind::AlterConfigs(response) =
        client.call(ApiKey::AlterConfigs, version, request).await
    else {
        panic!()
    };
    assert_eq!(response.responses[0].error_code, 40, "INVALID_CONFIG");
    let (version, request) = set(2, &[("segment.ms", "1000")], true);
    client.call(ApiKey::AlterConfigs, version, request).await;
    let response = describe(&mut client, 4, 2, "legacy-altered").await;
    assert_eq!(
        config_value(&response, "segment.ms"),
        ("3600000".to_string(), 1),
        "validate_only changes nothing"
    );
    broker.stop().await;
}
