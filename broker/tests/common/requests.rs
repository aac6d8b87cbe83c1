//! Request builders and one-call helpers the API and node tests share.

use bytes::Bytes;
use lmq_wire::SUPPORTED_APIS;
use lmq_wire::protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use lmq_wire::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use lmq_wire::protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use lmq_wire::protocol::messages::metadata_request::MetadataRequestTopic;
use lmq_wire::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use lmq_wire::protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, FetchResponse, InitProducerIdRequest,
    ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestKind, ResponseKind, TopicName,
};
use lmq_wire::protocol::protocol::StrBytes;

use super::TestClient;

pub fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_string()))
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> RequestKind {
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(records);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = name(topic);
    topic_data.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 5_000;
    request.topic_data = vec![topic_data];
    RequestKind::Produce(request)
}

pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> RequestKind {
    let mut fetch_partition = FetchPartition::default();
    fetch_partition.partition = partition;
    fetch_partition.fetch_offset = offset;
    fetch_partition.partition_max_bytes = 1 << 20;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = name(topic);
    fetch_topic.partitions = vec![fetch_partition];
    let mut request = FetchRequest::default();
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = min_bytes;
    request.max_bytes = 50 << 20;
    request.topics = vec![fetch_topic];
    RequestKind::Fetch(request)
}

pub fn metadata_request(topics: &[&str]) -> RequestKind {
    let mut request = MetadataRequest::default();
    request.allow_auto_topic_creation = true;
    request.topics = Some(
        topics
            .iter()
            .map(|topic| {
                let mut requested = MetadataRequestTopic::default();
                requested.name = Some(name(topic));
                requested
            })
            .collect(),
    );
    RequestKind::Metadata(request)
}

pub fn create_topic_request(
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> RequestKind {
    let mut creatable = CreatableTopic::default();
    creatable.name = name(topic);
    creatable.num_partitions = partitions;
    creatable.replication_factor = replication_factor;
    creatable.configs = configs
        .iter()
        .map(|(key, value)| {
            let mut config = CreatableTopicConfig::default();
            config.name = StrBytes::from_string(key.to_string());
            config.value = Some(StrBytes::from_string(value.to_string()));
            config
        })
        .collect();
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![creatable];
    request.timeout_ms = 5_000;
    RequestKind::CreateTopics(request)
}

pub fn list_offsets_request(topic: &str, partition: i32, timestamp: i64) -> RequestKind {
    let mut requested = ListOffsetsPartition::default();
    requested.partition_index = partition;
    requested.timestamp = timestamp;
    let mut requested_topic = ListOffsetsTopic::default();
    requested_topic.name = name(topic);
    requested_topic.partitions = vec![requested];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = lmq_wire::protocol::messages::BrokerId(-1);
    request.topics = vec![requested_topic];
    RequestKind::ListOffsets(request)
}

pub fn init_producer_id_request() -> RequestKind {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    RequestKind::InitProducerId(request)
}

pub fn version(api_key: ApiKey) -> (i16, i16) {
    let api = SUPPORTED_APIS
        .iter()
        .find(|api| api.api_key == api_key)
        .unwrap();
    (
        api.min_version.max(api_key.valid_versions().min),
        api.max_version,
    )
}

pub async fn produce(
    client: &mut TestClient,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64) {
    let response = client
        .call(
            ApiKey::Produce,
            9,
            produce_request(topic, partition, records, -1),
        )
        .await;
    let ResponseKind::Produce(response) = response else {
        panic!()
    };
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

pub async fn fetch(
    client: &mut TestClient,
    version: i16,
    topic: &str,
    partition: i32,
    offset: i64,
) -> FetchResponse {
    match client
        .call(
            ApiKey::Fetch,
            version,
            fetch_request(topic, partition, offset, 0, 0),
        )
        .await
    {
        ResponseKind::Fetch(response) => response,
        other => panic!("{other:?}"),
    }
}

pub fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
