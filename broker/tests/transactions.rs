//! Transactions on the partition side, over the Kafka protocol: transactional produce (with
//! the coordinator's KIP-890 verification), WriteTxnMarkers from a broker, read_committed
//! Fetch up to the last stable offset with the aborted transactions, ListOffsets by
//! isolation level, DescribeProducers, and all of it after a restart.
//!
//! The transaction coordinator is another component (the lead's); its verification is a
//! recording test double here, installed on the broker as the coordinator will be.

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

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::requests::*;
use common::{TestBroker, TestClient};
use lmq_broker::txn_hooks::{TxnVerifier, Verification, VerifyRequest, Verifying};
use lmq_storage::builder::BatchBuilder;
use lmq_storage::control::MarkerKind;
use lmq_wire::protocol::messages::describe_producers_request::TopicRequest;
use lmq_wire::protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use lmq_wire::protocol::messages::{
    ApiKey, DescribeProducersRequest, FetchResponse, ProducerId, RequestKind, ResponseKind,
    SaslAuthenticateRequest, SaslHandshakeRequest, WriteTxnMarkersRequest,
};
use lmq_wire::protocol::protocol::StrBytes;

const TOPIC: &str = "txn";
const NOT_ENOUGH_REPLICAS: i16 = 19;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_RECORD: i16 = 87;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

/// The coordinator's verification as a test double: answers `answer` and records each ask.
#[derive(Debug)]
struct RecordingVerifier {
    answer: Verification,
    asked: Mutex<Vec<VerifyRequest>>,
}

impl TxnVerifier for RecordingVerifier {
    fn verify<'a>(&'a self, request: &'a VerifyRequest) -> Verifying<'a> {
        self.asked.lock().unwrap().push(request.clone());
        let answers = vec![self.answer; request.partitions.len()];
        Box::pin(async move { answers })
    }
}

fn install_verifier(broker: &TestBroker, answer: Verification) -> Arc<RecordingVerifier> {
    let verifier = Arc::new(RecordingVerifier {
        answer,
        asked: Mutex::new(Vec::new()),
    });
    broker
        .node
        .broker
        .txn_verifier
        .set(verifier.clone())
        .unwrap();
    verifier
}

async fn create_topic(client: &mut TestClient) {
    let ResponseKind::CreateTopics(created) = client
        .call(
            ApiKey::CreateTopics,
            5,
            create_topic_request(TOPIC, 1, -1, &[]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(created.topics[0].error_code, 0);
}

async fn producer_id(client: &mut TestClient) -> i64 {
    let ResponseKind::InitProducerId(answer) = client
        .call(ApiKey::InitProducerId, 4, init_producer_id_request())
        .await
    else {
        panic!()
    };
    assert_eq!(answer.error_code, 0);
    answer.producer_id.0
}

fn txn_batch(producer_id: i64, base_sequence: i32, values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(common::now_ms())
        .producer(producer_id, 0, base_sequence)
        .transactional();
    for value in values {
        builder.push(Some(b"k"), Some(value.as_bytes()), common::now_ms());
    }
    Bytes::from(builder.build())
}

/// A transactional produce (transactional id "tx"): its error code and base offset.
async fn produce_txn(client: &mut TestClient, records: Bytes) -> (i16, i64) {
    let mut request = produce_request(TOPIC, 0, records, -1);
    if let RequestKind::Produce(produce) = &mut request {
        produce.transactional_id = Some(lmq_wire::protocol::messages::TransactionalId(
            StrBytes::from_static_str("tx"),
        ));
    }
    let ResponseKind::Produce(response) = client.call(ApiKey::Produce, 9, request).await else {
        panic!()
    };
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

/// A connection proven as this broker (LMQ's inter-broker SASL mechanism), as the
/// transaction coordinator's marker sender is.
async fn broker_client(broker: &TestBroker) -> TestClient {
    let mut client = broker.client().await;
    let mut handshake = SaslHandshakeRequest::default();
    handshake.mechanism = StrBytes::from_static_str("LMQ-BROKER");
    let ResponseKind::SaslHandshake(answer) = client
        .call(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(handshake),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(answer.error_code, 0);
    let mut authenticate = SaslAuthenticateRequest::default();
    authenticate.auth_bytes = Bytes::from(broker.node.cluster.replica_token());
    let ResponseKind::SaslAuthenticate(answer) = client
        .call(
            ApiKey::SaslAuthenticate,
            2,
            RequestKind::SaslAuthenticate(authenticate),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(answer.error_code, 0);
    client
}

/// WriteTxnMarkers for producer `producer_id` (epoch 0) on the topic's partition 0.
async fn write_marker(
    client: &mut TestClient,
    producer_id: i64,
    kind: MarkerKind,
    coordinator_epoch: i32,
) -> i16 {
    write_marker_to(client, TOPIC, producer_id, 0, kind, coordinator_epoch).await
}

async fn write_marker_to(
    client: &mut TestClient,
    topic_name: &str,
    producer_id: i64,
    producer_epoch: i16,
    kind: MarkerKind,
    coordinator_epoch: i32,
) -> i16 {
    let mut topic = WritableTxnMarkerTopic::default();
    topic.name = name(topic_name);
    topic.partition_indexes = vec![0];
    let mut marker = WritableTxnMarker::default();
    marker.producer_id = ProducerId(producer_id);
    marker.producer_epoch = producer_epoch;
    marker.transaction_result = kind == MarkerKind::Commit;
    marker.coordinator_epoch = coordinator_epoch;
    marker.topics = vec![topic];
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = vec![marker];
    let ResponseKind::WriteTxnMarkers(response) = client
        .call(
            ApiKey::WriteTxnMarkers,
            1,
            RequestKind::WriteTxnMarkers(request),
        )
        .await
    else {
        panic!()
    };
    response.markers[0].topics[0].partitions[0].error_code
}

async fn fetch_isolated(
    client: &mut TestClient,
    offset: i64,
    isolation_level: i8,
) -> FetchResponse {
    let mut request = fetch_request(TOPIC, 0, offset, 0, 0);
    if let RequestKind::Fetch(fetch) = &mut request {
        fetch.isolation_level = isolation_level;
    }
    let ResponseKind::Fetch(response) = client.call(ApiKey::Fetch, 12, request).await else {
        panic!()
    };
    response
}

/// Record values in a fetch answer (control batches skipped), and the aborted
/// transactions as (producer id, first offset).
fn records_and_aborts(response: &FetchResponse) -> (Vec<String>, Option<Vec<(i64, i64)>>) {
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    let mut values = Vec::new();
    let mut bytes: &[u8] = partition.records.as_deref().unwrap_or_default();
    while !bytes.is_empty() {
        let total = lmq_storage::batch::batch_total_bytes(bytes).unwrap() as usize;
        let view = lmq_storage::batch::BatchView::validated(&bytes[..total]).unwrap();
        if !view.is_control() {
            for record in lmq_storage::batch::parse_records(&view, view.records_bytes()).unwrap() {
                values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
        }
        bytes = &bytes[total..];
    }
    let aborts = partition.aborted_transactions.as_ref().map(|aborted| {
        aborted
            .iter()
            .map(|txn| (txn.producer_id.0, txn.first_offset))
            .collect()
    });
    (values, aborts)
}

async fn latest(client: &mut TestClient, isolation_level: i8) -> i64 {
    let mut request = list_offsets_request(TOPIC, 0, -1);
    if let RequestKind::ListOffsets(list) = &mut request {
        list.isolation_level = isolation_level;
    }
    let ResponseKind::ListOffsets(response) = client.call(ApiKey::ListOffsets, 8, request).await
    else {
        panic!()
    };
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0);
    answer.offset
}

/// Without a transaction coordinator a transactional produce is never accepted unverified:
/// it is refused as retriable. With one, its answer decides, and it is asked only when the
/// producer has no transaction ongoing on the partition.
#[tokio::test]
async fn a_transactional_produce_is_verified_with_the_coordinator_first() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    create_topic(&mut client).await;
    let producer = producer_id(&mut client).await;
    assert_eq!(
        produce_txn(&mut client, txn_batch(producer, 0, &["a"]))
            .await
            .0,
        NOT_ENOUGH_REPLICAS,
        "no coordinator to verify with"
    );
    let verifier = install_verifier(&broker, Verification::Added);
    assert_eq!(
        produce_txn(&mut client, txn_batch(producer, 0, &["a"])).await,
        (0, 0)
    );
    assert_eq!(
        produce_txn(&mut client, txn_batch(producer, 1, &["b"])).await,
        (0, 1)
    );
    let asked = verifier.asked.lock().unwrap().clone();
    assert_eq!(
        asked.len(),
        1,
        "the ongoing transaction needs no second ask"
    );
    assert_eq!(asked[0].transactional_id, "tx");
    assert_eq!(asked[0].producer_id, producer);
    assert_eq!(asked[0].partitions, [(TOPIC.to_string(), 0)]);
    // Transactional records need a transactional id.
    let (code, _) = produce(&mut client, TOPIC, 0, txn_batch(producer, 2, &["c"])).await;
    assert_eq!(code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    // A client's control batch is refused.
    let control = BatchBuilder::marker(producer, 0, 0, MarkerKind::Commit, 0);
    let (code, _) = produce(&mut client, TOPIC, 0, Bytes::from(control)).await;
    assert_eq!(code, INVALID_RECORD);
    broker.stop().await;
}

#[tokio::test]
async fn the_coordinators_refusals_are_answered() {
    for (answer, code) in [
        (Verification::NotAdded, INVALID_TXN_STATE),
        (Verification::Fenced, INVALID_PRODUCER_EPOCH),
        (Verification::Unavailable, NOT_ENOUGH_REPLICAS),
    ] {
        let dir = temp();
        let broker = TestBroker::start_in(dir.path(), |_| {}).await;
        let mut client = broker.client().await;
        create_topic(&mut client).await;
        let producer = producer_id(&mut client).await;
        install_verifier(&broker, answer);
        assert_eq!(
            produce_txn(&mut client, txn_batch(producer, 0, &["a"]))
                .await
                .0,
            code,
            "{answer:?}"
        );
        broker.stop().await;
    }
}

/// Commit and abort as read_committed and read_uncommitted consumers see them, the last
/// stable offset in Fetch and ListOffsets, DescribeProducers, and a restart.
#[tokio::test]
async fn read_committed_sees_committed_transactions_only_after_their_marker() {
    let dir = temp();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    create_topic(&mut client).await;
    install_verifier(&broker, Verification::Added);
    let committing = producer_id(&mut client).await;
    let aborting = producer_id(&mut client).await;
    assert_eq!(
        produce(
            &mut client,
            TOPIC,
            0,
            common::batch(&["plain"], common::now_ms())
        )
        .await,
        (0, 0)
    );
    assert_eq!(
        produce_txn(&mut client, txn_batch(committing, 0, &["c1", "c2"])).await,
        (0, 1)
    );
    assert_eq!(
        produce_txn(&mut client, txn_batch(aborting, 0, &["a1"])).await,
        (0, 3)
    );

    // Undecided: read_committed stops at the first transaction's start.
    let (values, aborts) = records_and_aborts(&fetch_isolated(&mut client, 0, 1).await);
    assert_eq!((values, aborts), (vec!["plain".to_string()], Some(vec![])));
    let response = fetch_isolated(&mut client, 0, 1).await;
    assert_eq!(response.responses[0].partitions[0].last_stable_offset, 1);
    assert_eq!(response.responses[0].partitions[0].high_watermark, 4);
    let (values, aborts) = records_and_aborts(&fetch_isolated(&mut client, 0, 0).await);
    assert_eq!(values, ["plain", "c1", "c2", "a1"]);
    assert_eq!(aborts, None, "read_uncommitted gets no aborted list");
    assert_eq!(latest(&mut client, 1).await, 1);
    assert_eq!(latest(&mut client, 0).await, 4);

    // The coordinator writes the markers (a proven broker connection; CLUSTER_ACTION).
    let mut coordinator = broker_client(&broker).await;
    assert_eq!(
        write_marker(&mut coordinator, committing, MarkerKind::Commit, 5).await,
        0
    );
    // The committed transaction is visible; the aborting one's start still bounds it.
    let (values, _) = records_and_aborts(&fetch_isolated(&mut client, 0, 1).await);
    assert_eq!(values, ["plain", "c1", "c2"]);
    assert_eq!(latest(&mut client, 1).await, 3);
    assert_eq!(
        write_marker(&mut coordinator, committing, MarkerKind::Commit, 4).await,
        52,
        "TRANSACTION_COORDINATOR_FENCED: an older coordinator epoch"
    );

    let ResponseKind::DescribeProducers(described) = client
        .call(
            ApiKey::DescribeProducers,
            0,
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                    TopicRequest::default()
                        .with_name(name(TOPIC))
                        .with_partition_indexes(vec![0]),
                ])),
        )
        .await
    else {
        panic!()
    };
    let partition = &described.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let state = |producer: i64| {
        partition
            .active_producers
            .iter()
            .find(|state| state.producer_id.0 == producer)
            .unwrap()
            .clone()
    };
    assert_eq!(state(aborting).current_txn_start_offset, 3);
    assert_eq!(state(committing).current_txn_start_offset, -1);
    assert_eq!(state(committing).coordinator_epoch, 5);
    assert_eq!(state(committing).last_sequence, 1);

    assert_eq!(
        write_marker(&mut coordinator, aborting, MarkerKind::Abort, 5).await,
        0
    );
    let (values, aborts) = records_and_aborts(&fetch_isolated(&mut client, 0, 1).await);
    assert_eq!(
        values,
        ["plain", "c1", "c2", "a1"],
        "the records come, with the list to drop them by"
    );
    assert_eq!(aborts, Some(vec![(aborting, 3)]));
    let (_, aborts) = records_and_aborts(&fetch_isolated(&mut client, 6, 1).await);
    assert_eq!(aborts, Some(vec![]), "a read past the abort lists nothing");
    assert_eq!(latest(&mut client, 1).await, 6);

    // A marker with a bumped producer epoch (KIP-890 part 2) becomes the producer's epoch;
    // an older one is fenced. No such topic: UNKNOWN_TOPIC_OR_PARTITION.
    assert_eq!(
        write_marker_to(
            &mut coordinator,
            TOPIC,
            committing,
            1,
            MarkerKind::Commit,
            5
        )
        .await,
        0
    );
    assert_eq!(
        write_marker_to(
            &mut coordinator,
            TOPIC,
            committing,
            0,
            MarkerKind::Commit,
            5
        )
        .await,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        write_marker_to(
            &mut coordinator,
            "none",
            committing,
            1,
            MarkerKind::Commit,
            5
        )
        .await,
        3
    );

    // A restart keeps the last stable offset and the aborted index; a transaction left
    // open stays open.
    let third = producer_id(&mut client).await;
    assert_eq!(
        produce_txn(&mut client, txn_batch(third, 0, &["open"])).await,
        (0, 7)
    );
    drop((client, coordinator));
    broker.stop().await;
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(latest(&mut client, 1).await, 7);
    assert_eq!(latest(&mut client, 0).await, 8);
    let (values, aborts) = records_and_aborts(&fetch_isolated(&mut client, 0, 1).await);
    assert_eq!(values, ["plain", "c1", "c2", "a1"]);
    assert_eq!(aborts, Some(vec![(aborting, 3)]));

    // An abort, then a crash (no log closed): recovery replays the marker.
    let mut coordinator = broker_client(&broker).await;
    assert_eq!(
        write_marker(&mut coordinator, third, MarkerKind::Abort, 5).await,
        0
    );
    drop((client, coordinator));
    broker.crash().await;
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let mut client = broker.client().await;
    assert_eq!(latest(&mut client, 1).await, 9);
    let (values, aborts) = records_and_aborts(&fetch_isolated(&mut client, 0, 1).await);
    assert_eq!(values, ["plain", "c1", "c2", "a1", "open"]);
    assert_eq!(aborts, Some(vec![(aborting, 3), (third, 7)]));
    broker.stop().await;
}
