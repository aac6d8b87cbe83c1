//! The transaction coordinator over a socket: where a transactional id's coordinator is,
//! and its APIs (InitProducerId with a transactional id, AddPartitionsToTxn, EndTxn,
//! DescribeTransactions, ListTransactions), and transactional offsets as OffsetFetch shows them.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::requests::{create_topic_request, metadata_request, name, temp};
use common::{TestBroker, TestClient};
use lmq_wire::protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use lmq_wire::protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, DescribeTransactionsRequest,
    EndTxnRequest, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, ListTransactionsRequest, OffsetFetchRequest, ProducerId, RequestKind,
    ResponseKind, TransactionalId, TxnOffsetCommitRequest,
};
use lmq_wire::protocol::protocol::StrBytes;

async fn find(broker: &TestBroker, key_type: i8, key: &str) -> FindCoordinatorResponse {
    let mut find = FindCoordinatorRequest::default();
    find.key_type = key_type;
    find.coordinator_keys = vec![StrBytes::from_string(key.to_string())];
    let response = broker
        .client()
        .await
        .call(
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(find),
        )
        .await;
    let ResponseKind::FindCoordinator(found) = response else {
        panic!("{response:?}")
    };
    found
}

#[tokio::test]
async fn a_transactional_id_s_coordinator_is_the_leader_of_its_transaction_state_partition() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let found = find(&broker, 1, "copier-1").await;
    let coordinator = &found.coordinators[0];
    assert_eq!(coordinator.error_code, 0, "{found:?}");
    assert_eq!(coordinator.node_id.0, 0);
    assert_eq!(coordinator.port, i32::from(broker.addr.port()));

    // The first lookup created Kafka's internal topic: 50 partitions, compacted.
    let response = broker
        .client()
        .await
        .call(
            ApiKey::Metadata,
            12,
            metadata_request(&["__transaction_state"]),
        )
        .await;
    let ResponseKind::Metadata(metadata) = response else {
        panic!("{response:?}")
    };
    let topic = &metadata.topics[0];
    assert_eq!(topic.error_code, 0, "{topic:?}");
    assert!(topic.is_internal);
    assert_eq!(topic.partitions.len(), 50);
    let stored = std::fs::read_to_string(dir.path().join("topics/__transaction_state.toml"))
        .expect("the local replica's topic file");
    assert!(stored.contains("compact"), "{stored}");

    // Kafka refuses an empty id and a key type it does not know.
    let empty = find(&broker, 1, "").await;
    assert_eq!(empty.coordinators[0].error_code, 42, "INVALID_REQUEST");
    let unknown = find(&broker, 7, "x").await;
    assert_eq!(unknown.coordinators[0].error_code, 42, "INVALID_REQUEST");
    broker.stop().await;
}

fn id(text: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(text.to_string()))
}

async fn init(client: &mut TestClient, transactional_id: &str) -> InitProducerIdResponse {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = Some(id(transactional_id));
    request.transaction_timeout_ms = 60_000;
    request.producer_id = ProducerId(-1);
    request.producer_epoch = -1;
    match client
        .call(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(request),
        )
        .await
    {
        ResponseKind::InitProducerId(response) => response,
        other => panic!("{other:?}"),
    }
}

/// AddPartitionsToTxn v3: each partition's error code.
async fn add(
    client: &mut TestClient,
    transactional_id: &str,
    producer: &InitProducerIdResponse,
    topic: &str,
) -> Vec<i16> {
    let mut added = AddPartitionsToTxnTopic::default();
    added.name = name(topic);
    added.partitions = vec![0];
    let mut request = AddPartitionsToTxnRequest::default();
    request.v3_and_below_transactional_id = id(transactional_id);
    request.v3_and_below_producer_id = producer.producer_id;
    request.v3_and_below_producer_epoch = producer.producer_epoch;
    request.v3_and_below_topics = vec![added];
    match client
        .call(
            ApiKey::AddPartitionsToTxn,
            3,
            RequestKind::AddPartitionsToTxn(request),
        )
        .await
    {
        ResponseKind::AddPartitionsToTxn(response) => response
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|topic| &topic.results_by_partition)
            .map(|partition| partition.partition_error_code)
            .collect(),
        other => panic!("{other:?}"),
    }
}

async fn describe(client: &mut TestClient, transactional_id: &str) -> (i16, String, usize) {
    let mut request = DescribeTransactionsRequest::default();
    request.transactional_ids = vec![id(transactional_id)];
    match client
        .call(
            ApiKey::DescribeTransactions,
            0,
            RequestKind::DescribeTransactions(request),
        )
        .await
    {
        ResponseKind::DescribeTransactions(response) => {
            let state = &response.transaction_states[0];
            (
                state.error_code,
                state.transaction_state.to_string(),
                state
                    .topics
                    .iter()
                    .map(|topic| topic.partitions.len())
                    .sum(),
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_transactional_id_gets_an_epoch_per_producer_and_keeps_its_transaction_s_partitions() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    assert_eq!(
        find(&broker, 1, "copier").await.coordinators[0].error_code,
        0
    );
    let mut client = broker.client().await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("input", 1, 1, &[]),
        )
        .await;
    let first = init(&mut client, "copier").await;
    assert_eq!(first.error_code, 0, "{first:?}");
    // A second producer with the id fences the first: same producer id, the next epoch.
    let second = init(&mut client, "copier").await;
    assert_eq!(second.error_code, 0, "{second:?}");
    assert_eq!(second.producer_id, first.producer_id);
    assert_eq!(second.producer_epoch, first.producer_epoch + 1);
    // The fenced one can no longer add partitions (v3: PRODUCER_FENCED).
    assert_eq!(add(&mut client, "copier", &first, "input").await, [90]);
    assert_eq!(add(&mut client, "copier", &second, "missing").await, [3]);
    assert_eq!(add(&mut client, "copier", &second, "input").await, [0]);
    assert_eq!(
        describe(&mut client, "copier").await,
        (0, "Ongoing".to_string(), 1)
    );
    let mut list = ListTransactionsRequest::default();
    list.state_filters = vec![StrBytes::from_static_str("Ongoing")];
    list.duration_filter = -1;
    let ResponseKind::ListTransactions(listed) = client
        .call(
            ApiKey::ListTransactions,
            1,
            RequestKind::ListTransactions(list),
        )
        .await
    else {
        panic!()
    };
    let ids: Vec<String> = listed
        .transaction_states
        .iter()
        .map(|state| state.transactional_id.0.to_string())
        .collect();
    assert_eq!(ids, ["copier"]);
    let mut end = EndTxnRequest::default();
    end.transactional_id = id("copier");
    end.producer_id = second.producer_id;
    end.producer_epoch = second.producer_epoch;
    end.committed = true;
    let ResponseKind::EndTxn(ended) = client
        .call(ApiKey::EndTxn, 4, RequestKind::EndTxn(end))
        .await
    else {
        panic!()
    };
    assert_eq!(ended.error_code, 0, "{ended:?}");
    let (code, state, _) = describe(&mut client, "copier").await;
    assert_eq!(code, 0);
    assert!(
        ["PrepareCommit", "CompleteCommit"].contains(&state.as_str()),
        "{state}"
    );
    assert_eq!(
        describe(&mut client, "unknown-id").await.0,
        105,
        "TRANSACTIONAL_ID_NOT_FOUND"
    );
    broker.stop().await;
}

/// OffsetFetch of `group`'s `input`-0: (partition error, committed offset), with
/// `require_stable` as given; `version` 7 (one group) or 8 (the group list form).
async fn fetch_committed(
    client: &mut TestClient,
    version: i16,
    group: &str,
    require_stable: bool,
) -> (i16, i64) {
    use lmq_wire::protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    let mut request = OffsetFetchRequest::default();
    request.require_stable = require_stable;
    if version >= 8 {
        let mut topic = OffsetFetchRequestTopics::default();
        topic.name = name("input");
        topic.partition_indexes = vec![0];
        let mut requested = OffsetFetchRequestGroup::default();
        requested.group_id = GroupId(StrBytes::from_string(group.to_string()));
        requested.topics = Some(vec![topic]);
        request.groups = vec![requested];
    } else {
        let mut topic = OffsetFetchRequestTopic::default();
        topic.name = name("input");
        topic.partition_indexes = vec![0];
        request.group_id = GroupId(StrBytes::from_string(group.to_string()));
        request.topics = Some(vec![topic]);
    }
    match client
        .call(
            ApiKey::OffsetFetch,
            version,
            RequestKind::OffsetFetch(request),
        )
        .await
    {
        ResponseKind::OffsetFetch(response) if version >= 8 => {
            let partition = &response.groups[0].topics[0].partitions[0];
            (partition.error_code, partition.committed_offset)
        }
        ResponseKind::OffsetFetch(response) => {
            let partition = &response.topics[0].partitions[0];
            (partition.error_code, partition.committed_offset)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn offsets_a_transaction_commits_are_unstable_to_require_stable_until_its_marker() {
    use lmq_wire::protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    assert_eq!(find(&broker, 1, "etl").await.coordinators[0].error_code, 0);
    assert_eq!(
        find(&broker, 0, "readers").await.coordinators[0].error_code,
        0
    );
    let mut client = broker.client().await;
    client
        .call(
            ApiKey::CreateTopics,
            7,
            create_topic_request("input", 1, 1, &[]),
        )
        .await;
    let producer = init(&mut client, "etl").await;
    assert_eq!(producer.error_code, 0, "{producer:?}");
    let mut add = AddOffsetsToTxnRequest::default();
    add.transactional_id = id("etl");
    add.producer_id = producer.producer_id;
    add.producer_epoch = producer.producer_epoch;
    add.group_id = GroupId(StrBytes::from_static_str("readers"));
    let ResponseKind::AddOffsetsToTxn(added) = client
        .call(
            ApiKey::AddOffsetsToTxn,
            3,
            RequestKind::AddOffsetsToTxn(add),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(added.error_code, 0, "{added:?}");
    let mut partition = TxnOffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = 3;
    partition.committed_leader_epoch = -1;
    let mut topic = TxnOffsetCommitRequestTopic::default();
    topic.name = name("input");
    topic.partitions = vec![partition];
    let mut commit = TxnOffsetCommitRequest::default();
    commit.transactional_id = id("etl");
    commit.group_id = GroupId(StrBytes::from_static_str("readers"));
    commit.producer_id = producer.producer_id;
    commit.producer_epoch = producer.producer_epoch;
    commit.generation_id = -1;
    commit.topics = vec![topic];
    let ResponseKind::TxnOffsetCommit(committed) = client
        .call(
            ApiKey::TxnOffsetCommit,
            3,
            RequestKind::TxnOffsetCommit(commit),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        committed.topics[0].partitions[0].error_code, 0,
        "{committed:?}"
    );

    // Before the transaction ends: UNSTABLE_OFFSET_COMMIT (88) to a client that requires
    // stable offsets, in both forms of the request; the last stable offset (none) otherwise.
    for version in [7, 8] {
        assert_eq!(
            fetch_committed(&mut client, version, "readers", true).await,
            (88, -1),
            "v{version}"
        );
        assert_eq!(
            fetch_committed(&mut client, version, "readers", false).await,
            (0, -1),
            "v{version}"
        );
    }

    let mut end = EndTxnRequest::default();
    end.transactional_id = id("etl");
    end.producer_id = producer.producer_id;
    end.producer_epoch = producer.producer_epoch;
    end.committed = true;
    let ResponseKind::EndTxn(ended) = client
        .call(ApiKey::EndTxn, 4, RequestKind::EndTxn(end))
        .await
    else {
        panic!()
    };
    assert_eq!(ended.error_code, 0, "{ended:?}");
    // The marker reaches the group's offsets partition after EndTxn answers: 10 s at most.
    let mut stable = (88, -1);
    for _ in 0..200 {
        stable = fetch_committed(&mut client, 7, "readers", true).await;
        if stable == (0, 3) {
            break;
        }
        assert_eq!(stable, (88, -1), "unstable until the marker, then 3");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        stable,
        (0, 3),
        "the committed offset once the marker is written"
    );
    assert_eq!(
        fetch_committed(&mut client, 8, "readers", true).await,
        (0, 3)
    );
    broker.stop().await;
}
