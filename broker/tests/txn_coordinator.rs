//! The transaction coordinator over a socket: where a transactional id's coordinator is.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestBroker;
use common::requests::{metadata_request, temp};
use lmq_wire::protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, RequestKind, ResponseKind,
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
