//! Admin APIs over a socket: configs, partitions, record deletion, topic deletion, cluster.

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

use common::requests::{create_topic_request, fetch, produce_request};
use common::{TestBroker, TestClient, batch, now_ms};
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
            &[("cleanup.policy", 0, Some("compact,none"))]
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
        request.timeout_ms = 5_000;
        request.topic_data = vec![topic];
        let ResponseKind::Produce(produced) = client
            .call(ApiKey::Produce, 9, RequestKind::Produce(request))
            .await
        else {
            panic!("not a produce answer")
        };
        // Failed once under load with the first DeleteRecords answering an error: the
        // produces' answers were not looked at then.
        assert_eq!(
            produced.responses[0].partition_responses[0].error_code, 0,
            "{produced:?}"
        );
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

/// Kafka's `ConfigAdminManager.preprocess`, which both AlterConfigs and
/// IncrementalAlterConfigs run: a resource named twice, a key named twice and a null value
/// (other than an incremental DELETE's) are INVALID_REQUEST, and nothing changes.
#[tokio::test]
async fn both_alter_configs_calls_refuse_repeats_and_null_values_alike() {
    use lmq_wire::protocol::messages::AlterConfigsRequest;
    use lmq_wire::protocol::messages::alter_configs_request::{
        AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
    };
    const INVALID_REQUEST: i16 = 42;
    const SET: i8 = 0;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    create(&mut client, "strict", 1).await;
    // Each resource: (topic, [(key, value)]); both calls are built from the same cases.
    type Resources<'a> = &'a [(&'a str, &'a [(&'a str, Option<&'a str>)])];
    let legacy = |resources: Resources<'_>| {
        let mut request = AlterConfigsRequest::default();
        request.resources = resources
            .iter()
            .map(|(topic, entries)| {
                let mut resource = LegacyResource::default();
                resource.resource_type = 2;
                resource.resource_name = text(topic);
                resource.configs = entries
                    .iter()
                    .map(|(key, value)| {
                        let mut config = LegacyConfig::default();
                        config.name = text(key);
                        config.value = value.map(text);
                        config
                    })
                    .collect();
                resource
            })
            .collect();
        RequestKind::AlterConfigs(request)
    };
    let incremental = |resources: Resources<'_>| {
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = resources
            .iter()
            .map(|(topic, entries)| {
                let mut resource = AlterConfigsResource::default();
                resource.resource_type = 2;
                resource.resource_name = text(topic);
                resource.configs = entries
                    .iter()
                    .map(|(key, value)| {
                        let mut change = AlterableConfig::default();
                        change.name = text(key);
                        change.config_operation = SET;
                        change.value = value.map(text);
                        change
                    })
                    .collect();
                resource
            })
            .collect();
        RequestKind::IncrementalAlterConfigs(request)
    };
    let null_value: Resources<'_> = &[(
        "strict",
        &[("retention.ms", Some("1000")), ("segment.ms", None)],
    )];
    let repeated_key: Resources<'_> = &[(
        "strict",
        &[
            ("retention.ms", Some("1000")),
            ("retention.ms", Some("2000")),
        ],
    )];
    let repeated_resource: Resources<'_> = &[
        ("strict", &[("retention.ms", Some("1000"))]),
        ("strict", &[("segment.ms", Some("1000"))]),
    ];
    for (what, case, count) in [
        ("a null value", null_value, 1),
        ("a key named twice", repeated_key, 1),
        ("a resource named twice", repeated_resource, 2),
    ] {
        let refused = answers(&mut client, ApiKey::AlterConfigs, 2, legacy(case)).await;
        assert_eq!(refused.len(), count, "AlterConfigs, {what}: {refused:?}");
        for (code, _) in &refused {
            assert_eq!(*code, INVALID_REQUEST, "AlterConfigs, {what}: {refused:?}");
        }
        let refused = answers(
            &mut client,
            ApiKey::IncrementalAlterConfigs,
            1,
            incremental(case),
        )
        .await;
        assert_eq!(refused.len(), count, "Incremental, {what}: {refused:?}");
        for (code, _) in &refused {
            assert_eq!(*code, INVALID_REQUEST, "Incremental, {what}: {refused:?}");
        }
    }
    let response = describe(&mut client, 4, 2, "strict").await;
    assert_eq!(
        config_value(&response, "retention.ms"),
        ("604800000".to_string(), 5),
        "nothing changed"
    );
    broker.stop().await;
}

/// The internal topic's name in these tests.
const OFFSETS: &str = "__consumer_offsets";

/// Error code and message of each resource's answer to `request`.
async fn answers(
    client: &mut TestClient,
    api_key: ApiKey,
    version: i16,
    request: RequestKind,
) -> Vec<(i16, String)> {
    let text = |message: &Option<StrBytes>| {
        message
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    match client.call(api_key, version, request).await {
        ResponseKind::DeleteTopics(response) => response
            .responses
            .iter()
            .map(|result| (result.error_code, text(&result.error_message)))
            .collect(),
        ResponseKind::CreatePartitions(response) => response
            .results
            .iter()
            .map(|result| (result.error_code, text(&result.error_message)))
            .collect(),
        ResponseKind::IncrementalAlterConfigs(response) => response
            .responses
            .iter()
            .map(|result| (result.error_code, text(&result.error_message)))
            .collect(),
        ResponseKind::AlterConfigs(response) => response
            .responses
            .iter()
            .map(|result| (result.error_code, text(&result.error_message)))
            .collect(),
        ResponseKind::CreateTopics(response) => response
            .topics
            .iter()
            .map(|result| (result.error_code, text(&result.error_message)))
            .collect(),
        ResponseKind::DeleteRecords(response) => response
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter())
            .map(|result| (result.error_code, String::new()))
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// Asserts one refusal with `code` whose message (when the version has one) names the topic.
fn assert_refused(answers: &[(i16, String)], code: i16, what: &str) {
    assert_eq!(answers.len(), 1, "{what}: {answers:?}");
    assert_eq!(answers[0].0, code, "{what}: {answers:?}");
}

fn assert_names_the_topic(answers: &[(i16, String)], what: &str) {
    assert!(answers[0].1.contains(OFFSETS), "{what}: {answers:?}");
}

/// `__consumer_offsets` (Kafka's `Topic.isInternal`) is the group coordinator's: clients can
/// neither delete it, trim it, grow it (a group's partition is a hash modulo the count) nor
/// change its configs (retention would delete committed offsets). Kafka's own broker still
/// accepts DeleteTopics of it and leaves the refusal to its CLI; LMQ refuses in the broker.
#[tokio::test]
async fn the_offsets_topic_cannot_be_deleted_trimmed_grown_or_reconfigured() {
    use lmq_wire::protocol::messages::AlterConfigsRequest;
    use lmq_wire::protocol::messages::alter_configs_request::{
        AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
    };
    use lmq_wire::protocol::messages::delete_topics_request::DeleteTopicState;
    const INVALID_TOPIC_EXCEPTION: i16 = 17;
    const INVALID_REQUEST: i16 = 42;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    broker.find_coordinator("some-group").await;
    let mut client = broker.client().await;
    let (code, partitions) = partitions_of(&mut client, OFFSETS).await;
    assert_eq!(code, 0);

    let mut by_name = DeleteTopicsRequest::default();
    by_name.topic_names = vec![name(OFFSETS)];
    let refused = answers(
        &mut client,
        ApiKey::DeleteTopics,
        5,
        RequestKind::DeleteTopics(by_name),
    )
    .await;
    assert_refused(&refused, INVALID_REQUEST, "DeleteTopics by name");
    assert_names_the_topic(&refused, "DeleteTopics by name");
    let ResponseKind::Metadata(metadata) = client
        .call(
            ApiKey::Metadata,
            12,
            common::requests::metadata_request(&[OFFSETS]),
        )
        .await
    else {
        panic!()
    };
    let mut by_id = DeleteTopicsRequest::default();
    let mut state = DeleteTopicState::default();
    state.topic_id = metadata.topics[0].topic_id;
    by_id.topics = vec![state];
    let refused = answers(
        &mut client,
        ApiKey::DeleteTopics,
        6,
        RequestKind::DeleteTopics(by_id),
    )
    .await;
    assert_refused(&refused, INVALID_REQUEST, "DeleteTopics by id");
    assert_names_the_topic(&refused, "DeleteTopics by id");

    let mut partition = DeleteRecordsPartition::default();
    partition.partition_index = 0;
    partition.offset = -1;
    let mut topic = DeleteRecordsTopic::default();
    topic.name = name(OFFSETS);
    topic.partitions = vec![partition];
    let mut trim = DeleteRecordsRequest::default();
    trim.topics = vec![topic];
    let refused = answers(
        &mut client,
        ApiKey::DeleteRecords,
        2,
        RequestKind::DeleteRecords(trim),
    )
    .await;
    assert_refused(
        &refused,
        INVALID_TOPIC_EXCEPTION,
        "DeleteRecords (as Kafka's ReplicaManager)",
    );

    for validate_only in [true, false] {
        let mut grown = CreatePartitionsTopic::default();
        grown.name = name(OFFSETS);
        grown.count = 60;
        let mut request = CreatePartitionsRequest::default();
        request.topics = vec![grown];
        request.validate_only = validate_only;
        let refused = answers(
            &mut client,
            ApiKey::CreatePartitions,
            3,
            RequestKind::CreatePartitions(request),
        )
        .await;
        assert_refused(&refused, INVALID_REQUEST, "CreatePartitions");
        assert_names_the_topic(&refused, "CreatePartitions");
    }

    for validate_only in [true, false] {
        let mut change = AlterableConfig::default();
        change.name = text("retention.ms");
        change.config_operation = 0;
        change.value = Some(text("1000"));
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = 2;
        resource.resource_name = text(OFFSETS);
        resource.configs = vec![change];
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![resource];
        request.validate_only = validate_only;
        let refused = answers(
            &mut client,
            ApiKey::IncrementalAlterConfigs,
            1,
            RequestKind::IncrementalAlterConfigs(request),
        )
        .await;
        assert_refused(&refused, INVALID_REQUEST, "IncrementalAlterConfigs");
        assert_names_the_topic(&refused, "IncrementalAlterConfigs");

        let mut config = LegacyConfig::default();
        config.name = text("retention.ms");
        config.value = Some(text("1000"));
        let mut resource = LegacyResource::default();
        resource.resource_type = 2;
        resource.resource_name = text(OFFSETS);
        resource.configs = vec![config];
        let mut request = AlterConfigsRequest::default();
        request.resources = vec![resource];
        request.validate_only = validate_only;
        let refused = answers(
            &mut client,
            ApiKey::AlterConfigs,
            2,
            RequestKind::AlterConfigs(request),
        )
        .await;
        assert_refused(&refused, INVALID_REQUEST, "AlterConfigs");
        assert_names_the_topic(&refused, "AlterConfigs");
    }

    assert_eq!(
        partitions_of(&mut client, OFFSETS).await,
        (0, partitions),
        "still there, not grown"
    );
    let response = describe(&mut client, 4, 2, OFFSETS).await;
    assert_eq!(
        config_value(&response, "retention.ms").0,
        "-1",
        "configs unchanged"
    );
    broker.stop().await;
}

/// Before the group coordinator created `__consumer_offsets`, a client cannot create it
/// with other settings: Metadata's auto-creation makes it with the coordinator's own
/// partitions and configs (as Kafka's AutoTopicCreationManager), and CreateTopics of it is
/// refused (as Kafka refuses creating its internal `__cluster_metadata`).
#[tokio::test]
async fn clients_cannot_create_the_offsets_topic_with_their_own_settings() {
    const INVALID_REQUEST: i16 = 42;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.default_partitions = 3;
        config.group.offsets_topic_partitions = 2;
    })
    .await;
    let mut client = broker.client().await;
    let refused = answers(
        &mut client,
        ApiKey::CreateTopics,
        7,
        common::requests::create_topic_request(OFFSETS, 5, 1, &[("retention.ms", "1000")]),
    )
    .await;
    assert_refused(&refused, INVALID_REQUEST, "CreateTopics");
    assert_names_the_topic(&refused, "CreateTopics");
    assert_eq!(
        partitions_of(&mut client, OFFSETS).await.0,
        3,
        "not created"
    );

    client
        .call(
            ApiKey::Metadata,
            12,
            common::requests::metadata_request(&[OFFSETS]),
        )
        .await;
    assert_eq!(
        partitions_of(&mut client, OFFSETS).await,
        (0, 2),
        "created with the coordinator's partition count"
    );
    let response = describe(&mut client, 4, 2, OFFSETS).await;
    assert_eq!(
        config_value(&response, "retention.ms").0,
        "-1",
        "and its configs"
    );

    let refused = answers(
        &mut client,
        ApiKey::CreateTopics,
        7,
        common::requests::create_topic_request(OFFSETS, 5, 1, &[]),
    )
    .await;
    assert_refused(&refused, INVALID_REQUEST, "CreateTopics once it exists");
    broker.find_coordinator("a-group").await;
    assert_eq!(partitions_of(&mut client, OFFSETS).await, (0, 2));
    broker.stop().await;
}

fn delete_records_request(topic: &str, offset: i64) -> RequestKind {
    let mut partition = DeleteRecordsPartition::default();
    partition.partition_index = 0;
    partition.offset = offset;
    let mut requested = DeleteRecordsTopic::default();
    requested.name = name(topic);
    requested.partitions = vec![partition];
    let mut request = DeleteRecordsRequest::default();
    request.topics = vec![requested];
    RequestKind::DeleteRecords(request)
}

/// DeleteRecords acts on the partition's leader only (a follower answers
/// NOT_LEADER_OR_FOLLOWER, as Kafka), and the new log start reaches the followers through
/// replication: each moves its own log start to the leader's.
#[tokio::test]
async fn delete_records_runs_on_the_leader_and_followers_take_its_log_start() {
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    let cluster = common::cluster::TestCluster::start(2).await;
    cluster.wait_for_brokers().await;
    let mut client = cluster.brokers[0].client().await;
    let created = answers(
        &mut client,
        ApiKey::CreateTopics,
        7,
        common::requests::create_topic_request("replicated-trim", 1, 2, &[]),
    )
    .await;
    assert_eq!(created[0].0, 0, "{created:?}");
    let (leader, follower) = cluster.leader_and_follower("replicated-trim", 0).await;
    let mut to_leader = cluster.brokers[leader].client().await;
    let mut to_follower = cluster.brokers[follower].client().await;
    for _ in 0..3 {
        let (code, _) = common::requests::produce(
            &mut to_leader,
            "replicated-trim",
            0,
            batch(&["a", "b"], common::now_ms()),
        )
        .await;
        assert_eq!(code, 0, "acks=all: both replicas have it");
    }
    let refused = answers(
        &mut to_follower,
        ApiKey::DeleteRecords,
        2,
        delete_records_request("replicated-trim", 2),
    )
    .await;
    assert_eq!(refused[0].0, NOT_LEADER_OR_FOLLOWER, "on a follower");
    let ResponseKind::DeleteRecords(deleted) = to_leader
        .call(
            ApiKey::DeleteRecords,
            2,
            delete_records_request("replicated-trim", 4),
        )
        .await
    else {
        panic!()
    };
    let partition = &deleted.topics[0].partitions[0];
    assert_eq!((partition.error_code, partition.low_watermark), (0, 4));
    let follower_log_start = || {
        cluster.brokers[follower]
            .broker
            .topics
            .get("replicated-trim")
            .unwrap()
            .partitions[0]
            .offsets()
            .unwrap()
            .log_start_offset
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while follower_log_start() != 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        follower_log_start(),
        4,
        "the follower took the leader's log start"
    );
    cluster.stop().await;
}

/// `(error code, message)` of creating `topic` with `configs`.
async fn create_with(
    client: &mut TestClient,
    topic: &str,
    configs: &[(&str, &str)],
) -> (i16, Option<String>) {
    let ResponseKind::CreateTopics(response) = client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request(topic, 1, 1, configs),
        )
        .await
    else {
        panic!()
    };
    let result = &response.topics[0];
    (
        result.error_code,
        result.error_message.as_ref().map(ToString::to_string),
    )
}

/// The answer of one produce of `records` to partition 0 of `topic` (v9).
async fn produce_answer(
    client: &mut TestClient,
    topic: &str,
    records: bytes::Bytes,
) -> lmq_wire::protocol::messages::produce_response::PartitionProduceResponse {
    let ResponseKind::Produce(mut response) = client
        .call(ApiKey::Produce, 9, produce_request(topic, 0, records, -1))
        .await
    else {
        panic!()
    };
    response.responses.remove(0).partition_responses.remove(0)
}

/// Kafka Streams and Connect create compacted topics: `cleanup.policy=compact` is accepted
/// and described back as a topic config, with its broker synonym; unknown names get Kafka's
/// text; a DOUBLE config is typed 6 and documentation comes when asked.
#[tokio::test]
async fn a_compacted_topic_is_created_and_described_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(
        create_with(
            &mut client,
            "changelog",
            &[
                ("cleanup.policy", "compact"),
                ("min.cleanable.dirty.ratio", "0.1"),
                ("segment.ms", "100000"),
            ]
        )
        .await,
        (0, None)
    );
    let (code, message) = create_with(&mut client, "typo", &[("retention.msec", "1")]).await;
    assert_eq!(
        (code, message.as_deref()),
        (40, Some("Unknown topic config name: retention.msec"))
    );
    let (code, message) =
        create_with(&mut client, "tiered", &[("remote.storage.enable", "true")]).await;
    assert_eq!(code, 40, "{message:?}");

    let mut described = DescribeConfigsResource::default();
    described.resource_type = 2;
    described.resource_name = text("changelog");
    described.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![described];
    request.include_synonyms = true;
    request.include_documentation = true;
    let ResponseKind::DescribeConfigs(response) = client
        .call(
            ApiKey::DescribeConfigs,
            4,
            RequestKind::DescribeConfigs(request),
        )
        .await
    else {
        panic!()
    };
    let entry = |key: &str| {
        response.results[0]
            .configs
            .iter()
            .find(|entry| entry.name.as_str() == key)
            .unwrap()
    };
    let synonyms = |key: &str| -> Vec<(String, String, i8)> {
        entry(key)
            .synonyms
            .iter()
            .map(|synonym| {
                (
                    synonym.name.to_string(),
                    synonym.value.as_ref().unwrap().to_string(),
                    synonym.source,
                )
            })
            .collect()
    };
    let policy = entry("cleanup.policy");
    assert_eq!(
        (
            policy.value.as_ref().unwrap().as_str(),
            policy.config_source,
            policy.config_type,
            policy.is_sensitive,
            policy.read_only
        ),
        ("compact", 1, 7, false, false)
    );
    assert!(policy.documentation.is_some());
    assert_eq!(
        synonyms("cleanup.policy"),
        [
            ("cleanup.policy".into(), "compact".into(), 1),
            ("log.cleanup.policy".into(), "delete".into(), 5)
        ]
    );
    let ratio = entry("min.cleanable.dirty.ratio");
    assert_eq!(
        (
            ratio.value.as_ref().unwrap().as_str(),
            ratio.config_source,
            ratio.config_type
        ),
        ("0.1", 1, 6)
    );
    // Kafka lists no synonym for `segment.ms` unless the broker sets `log.roll.ms`.
    assert_eq!(
        synonyms("segment.ms"),
        [("segment.ms".into(), "100000".into(), 1)]
    );
    assert_eq!(synonyms("retention.ms"), []);
    assert_eq!(entry("retention.ms").config_source, 5);
    assert_eq!(
        synonyms("compression.type"),
        [("compression.type".into(), "producer".into(), 5)]
    );
    assert_eq!(
        response.results[0].configs.len(),
        37,
        "every Kafka 4.4 topic config"
    );

    assert_eq!(
        alter(
            &mut client,
            "changelog",
            &[("message.downconversion.enable", 0, Some("true"))]
        )
        .await,
        40
    );
    assert_eq!(
        alter(
            &mut client,
            "changelog",
            &[("cleanup.policy", 2, Some("delete"))]
        )
        .await,
        0
    );
    let response = describe(&mut client, 4, 2, "changelog").await;
    assert_eq!(
        config_value(&response, "cleanup.policy"),
        ("compact,delete".to_string(), 1)
    );
    let topic = broker.node.broker.topics.get("changelog").unwrap();
    assert_eq!(
        topic.settings.log.cleanup_policy,
        lmq_storage::CleanupPolicy {
            compact: true,
            delete: true
        }
    );
    assert!(
        (topic
            .settings
            .log
            .compaction
            .min_cleanable_dirty_ratio
            .as_f64()
            - 0.1)
            .abs()
            < f64::EPSILON
    );
    broker.stop().await;
}

/// Kafka 4 refuses a keyless record in a compacted topic with INVALID_RECORD and the
/// record's index and reason; nothing is appended.
#[tokio::test]
async fn a_compacted_topic_refuses_a_record_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(
        create_with(&mut client, "table", &[("cleanup.policy", "compact")]).await,
        (0, None)
    );
    let mut builder = lmq_storage::builder::BatchBuilder::new(now_ms());
    builder.push(Some(b"k"), Some(b"with key"), now_ms());
    builder.push(None, Some(b"without"), now_ms());
    let answer = produce_answer(&mut client, "table", builder.build().into()).await;
    assert_eq!(answer.error_code, 87, "{answer:?}");
    assert_eq!(answer.base_offset, -1);
    assert_eq!(answer.record_errors.len(), 1);
    assert_eq!(answer.record_errors[0].batch_index, 1);
    assert_eq!(
        answer.record_errors[0]
            .batch_index_error_message
            .as_ref()
            .unwrap()
            .as_str(),
        "Compacted topic cannot accept message without key in topic partition table-0"
    );
    let answer = produce_answer(&mut client, "table", batch(&["a", "b"], now_ms())).await;
    assert_eq!(
        (answer.error_code, answer.base_offset),
        (0, 0),
        "keyed records go in"
    );
    broker.stop().await;
}

/// `compression.type=gzip`: an uncompressed batch is stored gzip-compressed (the fetched
/// batch says gzip and reads back the same records); `producer` keeps it as sent.
#[tokio::test]
async fn a_gzip_topic_recompresses_an_uncompressed_batch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    for (topic, compression, codec) in [("zipped", "gzip", 1), ("as-sent", "producer", 0)] {
        assert_eq!(
            create_with(&mut client, topic, &[("compression.type", compression)]).await,
            (0, None)
        );
        let answer = produce_answer(&mut client, topic, batch(&["a", "b", "c"], now_ms())).await;
        assert_eq!(answer.error_code, 0, "{answer:?}");
        let fetched = fetch(&mut client, 12, topic, 0, 0).await;
        let records = fetched.responses[0].partitions[0].records.clone().unwrap();
        let view = lmq_storage::batch::BatchView::validated(&records).unwrap();
        assert_eq!(view.attributes() & 0x07, codec, "{topic}");
        let values: Vec<_> = lmq_wire::records::decode_batches(records, 1 << 20)
            .unwrap()
            .into_iter()
            .map(|record| record.value.unwrap())
            .collect();
        assert_eq!(values, ["a", "b", "c"], "{topic}");
    }
    broker.stop().await;
}

/// `message.timestamp.before.max.ms` refuses a record older than the bound with
/// INVALID_TIMESTAMP; a current one goes in.
#[tokio::test]
async fn timestamp_bounds_refuse_a_too_old_record() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(
        create_with(
            &mut client,
            "recent",
            &[("message.timestamp.before.max.ms", "60000")]
        )
        .await,
        (0, None)
    );
    let hour_ago = now_ms() - 3_600_000;
    let answer = produce_answer(&mut client, "recent", batch(&["old"], hour_ago)).await;
    assert_eq!(answer.error_code, 32, "{answer:?}");
    assert_eq!(
        answer
            .error_message
            .as_ref()
            .map(|message| message.as_str()),
        Some("One or more records have been rejected due to invalid timestamp")
    );
    assert!(
        answer.record_errors[0]
            .batch_index_error_message
            .as_ref()
            .unwrap()
            .starts_with(&format!(
                "Timestamp {hour_ago} of message with offset 0 is out of range"
            ))
    );
    let answer = produce_answer(&mut client, "recent", batch(&["new"], now_ms())).await;
    assert_eq!((answer.error_code, answer.base_offset), (0, 0));
    broker.stop().await;
}

/// `flush.messages=1` makes one topic's log fsync every batch (group commit) on a broker
/// whose `[log] flush` is the OS's; removing the override gives the log the broker's policy
/// back; `flush.ms` makes it an interval.
#[tokio::test]
async fn flush_configs_reach_the_topics_logs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(
        create_with(&mut client, "durable", &[("flush.messages", "1")]).await,
        (0, None)
    );
    let policy = || {
        broker.node.broker.topics.get("durable").unwrap().partitions[0]
            .with_log(|log| Ok(log.config().flush_policy))
            .unwrap()
    };
    assert_eq!(policy(), lmq_storage::FlushPolicy::EveryBatch);
    let answer = produce_answer(&mut client, "durable", batch(&["a"], now_ms())).await;
    assert_eq!(answer.error_code, 0);
    assert_eq!(
        alter(
            &mut client,
            "durable",
            &[("flush.messages", 1, None), ("flush.ms", 0, Some("5000"))]
        )
        .await,
        0
    );
    assert_eq!(policy(), lmq_storage::FlushPolicy::IntervalMs(5000));
    assert_eq!(
        alter(&mut client, "durable", &[("flush.ms", 1, None)]).await,
        0
    );
    assert_eq!(policy(), lmq_storage::FlushPolicy::Os);
    broker.stop().await;
}

/// A topic default LMQ's config file changes is described as Kafka describes a setting of
/// server.properties: source STATIC_BROKER_CONFIG, the broker config named as its synonym
/// (also `log.retention.ms`, which Kafka lists only when it is set); `[log] flush =
/// "every-batch"` shows as `log.flush.interval.messages=1`.
#[tokio::test]
async fn broker_settings_show_as_static_broker_configs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |config| {
        config.log.retention_ms = 3_600_000;
        config.log.flush = "every-batch".to_string();
    })
    .await;
    let mut client = broker.client().await;
    create(&mut client, "defaults", 1).await;
    let response = describe(&mut client, 4, 2, "defaults").await;
    let synonyms = |key: &str| -> (i8, Vec<(String, String, i8)>) {
        let entry = response.results[0]
            .configs
            .iter()
            .find(|entry| entry.name.as_str() == key)
            .unwrap();
        (
            entry.config_source,
            entry
                .synonyms
                .iter()
                .map(|synonym| {
                    (
                        synonym.name.to_string(),
                        synonym.value.as_ref().unwrap().to_string(),
                        synonym.source,
                    )
                })
                .collect(),
        )
    };
    assert_eq!(
        synonyms("retention.ms"),
        (4, vec![("log.retention.ms".into(), "3600000".into(), 4)])
    );
    assert_eq!(
        synonyms("flush.messages"),
        (
            4,
            vec![("log.flush.interval.messages".into(), "1".into(), 4)]
        )
    );
    assert_eq!(
        synonyms("segment.bytes"),
        (
            5,
            vec![("log.segment.bytes".into(), "1073741824".into(), 5)]
        )
    );
    broker.stop().await;
}
