//! Consumer groups over a socket: join, sync, heartbeat, commits, listing, deletion, and
//! committed offsets surviving a restart.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use bytes::Bytes;
use common::{TestBroker, TestClient};
use lmq_wire::protocol::messages::join_group_request::JoinGroupRequestProtocol;
use lmq_wire::protocol::messages::leave_group_request::MemberIdentity;
use lmq_wire::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use lmq_wire::protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use lmq_wire::protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use lmq_wire::protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, RequestKind, ResponseKind,
    SyncGroupRequest, TopicName,
};
use lmq_wire::protocol::protocol::StrBytes;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn group() -> GroupId {
    GroupId(text("orders-readers"))
}

fn join_request(member_id: &str) -> RequestKind {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = text("range");
    protocol.metadata = Bytes::from_static(b"subscription");
    let mut request = JoinGroupRequest::default();
    request.group_id = group();
    request.session_timeout_ms = 10_000;
    request.rebalance_timeout_ms = 10_000;
    request.member_id = text(member_id);
    request.group_instance_id = None;
    request.protocol_type = text("consumer");
    request.protocols = vec![protocol];
    RequestKind::JoinGroup(request)
}

async fn join(client: &mut TestClient, member_id: &str) -> JoinGroupResponse {
    match client
        .call(ApiKey::JoinGroup, 9, join_request(member_id))
        .await
    {
        ResponseKind::JoinGroup(response) => response,
        other => panic!("{other:?}"),
    }
}

/// KIP-394: the first join answers MEMBER_ID_REQUIRED (79) with an id to rejoin with.
async fn member_id(client: &mut TestClient) -> String {
    let first = join(client, "").await;
    assert_eq!(first.error_code, 79);
    first.member_id.to_string()
}

fn sync_request(member_id: &str, generation_id: i32, assignments: &[(&str, &str)]) -> RequestKind {
    let mut request = SyncGroupRequest::default();
    request.group_id = group();
    request.generation_id = generation_id;
    request.member_id = text(member_id);
    request.group_instance_id = None;
    request.protocol_type = Some(text("consumer"));
    request.protocol_name = Some(text("range"));
    request.assignments = assignments
        .iter()
        .map(|(member, assignment)| {
            let mut entry = SyncGroupRequestAssignment::default();
            entry.member_id = text(member);
            entry.assignment = Bytes::from(assignment.to_string());
            entry
        })
        .collect();
    RequestKind::SyncGroup(request)
}

fn commit_request(member_id: &str, generation_id: i32, offset: i64) -> RequestKind {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = offset;
    partition.committed_metadata = Some(text("meta"));
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(text("orders"));
    topic.partitions = vec![partition];
    let mut request = OffsetCommitRequest::default();
    request.group_id = group();
    request.generation_id_or_member_epoch = generation_id;
    request.member_id = text(member_id);
    request.group_instance_id = None;
    request.topics = vec![topic];
    RequestKind::OffsetCommit(request)
}

async fn commit(client: &mut TestClient, member_id: &str, generation_id: i32, offset: i64) -> i16 {
    match client
        .call(
            ApiKey::OffsetCommit,
            8,
            commit_request(member_id, generation_id, offset),
        )
        .await
    {
        ResponseKind::OffsetCommit(response) => response.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    }
}

async fn committed(client: &mut TestClient, version: i16) -> i64 {
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        let mut requested =
            lmq_wire::protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default();
        requested.group_id = group();
        requested.topics = None;
        request.groups = vec![requested];
    } else {
        let mut topic = OffsetFetchRequestTopic::default();
        topic.name = TopicName(text("orders"));
        topic.partition_indexes = vec![0];
        request.group_id = group();
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
        ResponseKind::OffsetFetch(response) if version >= 8 => response.groups[0]
            .topics
            .first()
            .map_or(-1, |topic| topic.partitions[0].committed_offset),
        ResponseKind::OffsetFetch(response) => response.topics[0].partitions[0].committed_offset,
        other => panic!("{other:?}"),
    }
}

/// Creates the topic `orders` the commits name (Kafka refuses commits to unknown topics).
async fn create_orders(client: &mut TestClient) {
    let mut create = lmq_wire::protocol::messages::CreateTopicsRequest::default();
    let mut topic = lmq_wire::protocol::messages::create_topics_request::CreatableTopic::default();
    topic.name = TopicName(text("orders"));
    topic.num_partitions = 1;
    topic.replication_factor = 1;
    create.topics = vec![topic];
    client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(create))
        .await;
}

async fn start(dir: &std::path::Path) -> TestBroker {
    let broker =
        TestBroker::start_in(dir, |config| config.group.initial_rebalance_delay_ms = 0).await;
    broker.find_coordinator("any").await;
    broker
}

#[tokio::test]
async fn two_members_join_sync_heartbeat_commit_and_leave() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut first = broker.client().await;
    let mut second = broker.client().await;
    let mut admin = broker.client().await;
    let mut metadata = MetadataRequest::default();
    metadata.topics = None;
    admin
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(metadata))
        .await;
    let mut create = lmq_wire::protocol::messages::CreateTopicsRequest::default();
    let mut topic = lmq_wire::protocol::messages::create_topics_request::CreatableTopic::default();
    topic.name = TopicName(text("orders"));
    topic.num_partitions = 2;
    topic.replication_factor = 1;
    create.topics = vec![topic];
    admin
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(create))
        .await;

    let mut find = FindCoordinatorRequest::default();
    find.key_type = 0;
    find.coordinator_keys = vec![text("orders-readers")];
    let ResponseKind::FindCoordinator(found) = admin
        .call(
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(find),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(found.coordinators[0].error_code, 0);
    assert_eq!(found.coordinators[0].port, i32::from(broker.addr.port()));

    let first_id = member_id(&mut first).await;
    let joined = join(&mut first, &first_id).await;
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    assert_eq!(joined.leader.as_str(), first_id);
    first
        .call(
            ApiKey::SyncGroup,
            5,
            sync_request(&first_id, 1, &[(&first_id, "p0,p1")]),
        )
        .await;

    // The second member's join parks until the first rejoins (told by its heartbeat).
    let second_id = member_id(&mut second).await;
    let parked = second
        .send(ApiKey::JoinGroup, 9, join_request(&second_id))
        .await;
    let mut heartbeat = HeartbeatRequest::default();
    heartbeat.group_id = group();
    heartbeat.generation_id = 1;
    heartbeat.member_id = text(&first_id);
    heartbeat.group_instance_id = None;
    let ResponseKind::Heartbeat(beat) = first
        .call(
            ApiKey::Heartbeat,
            4,
            RequestKind::Heartbeat(heartbeat.clone()),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(beat.error_code, 27, "REBALANCE_IN_PROGRESS");
    let rejoined = join(&mut first, &first_id).await;
    assert_eq!((rejoined.generation_id, rejoined.members.len()), (2, 2));
    let (correlation, response) =
        lmq_wire::decode_response(second.read_frame().await.unwrap(), ApiKey::JoinGroup, 9)
            .unwrap();
    assert_eq!(correlation, parked);
    let ResponseKind::JoinGroup(second_join) = response else {
        panic!()
    };
    assert_eq!(
        (second_join.generation_id, second_join.members.len()),
        (2, 0)
    );

    let follower_sync = second
        .send(ApiKey::SyncGroup, 5, sync_request(&second_id, 2, &[]))
        .await;
    first
        .call(
            ApiKey::SyncGroup,
            5,
            sync_request(&first_id, 2, &[(&first_id, "p0"), (&second_id, "p1")]),
        )
        .await;
    let (correlation, response) =
        lmq_wire::decode_response(second.read_frame().await.unwrap(), ApiKey::SyncGroup, 5)
            .unwrap();
    assert_eq!(correlation, follower_sync);
    let ResponseKind::SyncGroup(assigned) = response else {
        panic!()
    };
    assert_eq!(assigned.assignment, Bytes::from_static(b"p1"));

    heartbeat.generation_id = 2;
    let ResponseKind::Heartbeat(beat) = first
        .call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(heartbeat))
        .await
    else {
        panic!()
    };
    assert_eq!(beat.error_code, 0);

    assert_eq!(commit(&mut first, &first_id, 2, 42).await, 0);
    assert_eq!(
        commit(&mut first, &first_id, 1, 43).await,
        22,
        "stale generation: ILLEGAL_GENERATION"
    );
    assert_eq!(
        commit(&mut admin, "", -1, 44).await,
        25,
        "simple commit to an active group"
    );
    for version in [1, 5, 7, 8] {
        assert_eq!(
            committed(&mut admin, version).await,
            42,
            "offset fetch v{version}"
        );
    }

    let ResponseKind::DescribeGroups(described) = admin
        .call(
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups({
                let mut request = DescribeGroupsRequest::default();
                request.groups = vec![group()];
                request
            }),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].members.len(), 2);
    let ResponseKind::ListGroups(listed) = admin
        .call(
            ApiKey::ListGroups,
            4,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        )
        .await
    else {
        panic!()
    };
    assert!(
        listed
            .groups
            .iter()
            .any(|listed| listed.group_id == group() && listed.group_state.as_str() == "Stable")
    );

    let delete = || {
        let mut request = DeleteGroupsRequest::default();
        request.groups_names = vec![group()];
        RequestKind::DeleteGroups(request)
    };
    let ResponseKind::DeleteGroups(deleted) = admin.call(ApiKey::DeleteGroups, 2, delete()).await
    else {
        panic!()
    };
    assert_eq!(deleted.results[0].error_code, 68, "NON_EMPTY_GROUP");

    let mut leave = LeaveGroupRequest::default();
    leave.group_id = group();
    leave.members = [&first_id, &second_id]
        .iter()
        .map(|member| {
            let mut identity = MemberIdentity::default();
            identity.member_id = text(member);
            identity
        })
        .collect();
    let ResponseKind::LeaveGroup(left) = admin
        .call(ApiKey::LeaveGroup, 4, RequestKind::LeaveGroup(leave))
        .await
    else {
        panic!()
    };
    assert!(left.members.iter().all(|member| member.error_code == 0));
    assert_eq!(
        commit(&mut admin, "", -1, 50).await,
        0,
        "simple commit to an empty group"
    );
    broker.stop().await;

    // Committed offsets survive a restart.
    let broker = start(dir.path()).await;
    let mut admin = broker.client().await;
    assert_eq!(committed(&mut admin, 8).await, 50);
    let ResponseKind::DeleteGroups(deleted) = admin.call(ApiKey::DeleteGroups, 2, delete()).await
    else {
        panic!()
    };
    assert_eq!(deleted.results[0].error_code, 0);
    assert_eq!(committed(&mut admin, 8).await, -1);
    broker.stop().await;
    let broker = start(dir.path()).await;
    let mut admin = broker.client().await;
    assert_eq!(
        committed(&mut admin, 8).await,
        -1,
        "the deletion is durable too"
    );
    broker.stop().await;
}

#[tokio::test]
async fn every_group_api_version_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut client = broker.client().await;
    for version in 0..=9 {
        let response = client
            .call(ApiKey::JoinGroup, version, join_request(""))
            .await;
        let ResponseKind::JoinGroup(response) = response else {
            panic!()
        };
        let expected = if version >= 4 { 79 } else { 0 };
        assert_eq!(response.error_code, expected, "join v{version}");
        if version < 4 {
            // Leave so the next version starts from an empty group.
            let mut leave = LeaveGroupRequest::default();
            leave.group_id = group();
            leave.member_id = response.member_id.clone();
            client
                .call(ApiKey::LeaveGroup, 0, RequestKind::LeaveGroup(leave))
                .await;
        }
    }
    for version in 0..=5 {
        let response = client
            .call(ApiKey::SyncGroup, version, sync_request("nobody", 1, &[]))
            .await;
        let ResponseKind::SyncGroup(response) = response else {
            panic!()
        };
        assert_eq!(response.error_code, 25, "sync v{version}");
    }
    for version in 2..=8 {
        assert_eq!(
            match client
                .call(ApiKey::OffsetCommit, version, commit_request("", -1, 7))
                .await
            {
                ResponseKind::OffsetCommit(response) => response.topics[0].partitions[0].error_code,
                other => panic!("{other:?}"),
            },
            3,
            "commit v{version} to a topic that does not exist"
        );
    }
    for version in 0..=5 {
        let ResponseKind::ListGroups(_) = client
            .call(
                ApiKey::ListGroups,
                version,
                RequestKind::ListGroups(ListGroupsRequest::default()),
            )
            .await
        else {
            panic!()
        };
    }
    broker.stop().await;
}

async fn heartbeat(client: &mut TestClient, member_id: &str, generation_id: i32) -> i16 {
    let mut request = HeartbeatRequest::default();
    request.group_id = group();
    request.generation_id = generation_id;
    request.member_id = text(member_id);
    request.group_instance_id = None;
    match client
        .call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(request))
        .await
    {
        ResponseKind::Heartbeat(response) => response.error_code,
        other => panic!("{other:?}"),
    }
}

/// A member alone in the group: joins (KIP-394 round trip), is the leader, and syncs with
/// `assignment` for itself. Returns its id, generation and the sync's error code.
async fn join_alone(client: &mut TestClient, assignment: &str) -> (String, i32, i16) {
    let id = member_id(client).await;
    let joined = join(client, &id).await;
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(joined.leader.as_str(), id);
    let ResponseKind::SyncGroup(synced) = client
        .call(
            ApiKey::SyncGroup,
            5,
            sync_request(&id, joined.generation_id, &[(&id, assignment)]),
        )
        .await
    else {
        panic!()
    };
    (id, joined.generation_id, synced.error_code)
}

async fn leave(client: &mut TestClient, member_id: &str) -> i16 {
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = group();
    let mut identity = MemberIdentity::default();
    identity.member_id = text(member_id);
    leave.members = vec![identity];
    match client
        .call(ApiKey::LeaveGroup, 4, RequestKind::LeaveGroup(leave))
        .await
    {
        ResponseKind::LeaveGroup(left) => left.members[0].error_code,
        other => panic!("{other:?}"),
    }
}

/// The group's metadata record brings the group back whole: after a restart the member
/// resumes with heartbeats of its generation (Kafka: the coordinator loads the group Stable
/// from `__consumer_offsets`), its commits go on, and its offsets are there.
#[tokio::test]
async fn a_member_resumes_with_heartbeats_after_a_restart_and_its_offsets_stay() {
    let dir = tempfile::tempdir().unwrap();
    for graceful in [true, false] {
        let broker = start(dir.path()).await;
        let mut client = broker.client().await;
        create_orders(&mut client).await;
        let (id, generation, synced) = join_alone(&mut client, "p0").await;
        assert_eq!(synced, 0);
        assert_eq!(commit(&mut client, &id, generation, 42).await, 0);
        if graceful {
            broker.stop().await;
        } else {
            broker.crash().await;
        }

        let broker = start(dir.path()).await;
        let mut client = broker.client().await;
        assert_eq!(
            heartbeat(&mut client, &id, generation).await,
            0,
            "NONE: the member and its generation are known after a restart (graceful: {graceful})"
        );
        assert_eq!(commit(&mut client, &id, generation, 43).await, 0);
        assert_eq!(committed(&mut client, 8).await, 43);
        // A retried SyncGroup gets the stored assignment.
        let ResponseKind::SyncGroup(synced) = client
            .call(ApiKey::SyncGroup, 5, sync_request(&id, generation, &[]))
            .await
        else {
            panic!()
        };
        assert_eq!((synced.error_code, &synced.assignment[..]), (0, &b"p0"[..]));
        assert_eq!(leave(&mut client, &id).await, 0);
        broker.stop().await;
    }
}

#[tokio::test]
async fn member_ids_and_generations_are_not_reused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut old = broker.client().await;
    let (old_id, old_generation, synced) = join_alone(&mut old, "p0").await;
    assert_eq!((old_generation, synced), (1, 0));
    assert!(
        old_id.starts_with("lmq-test-"),
        "client id, then a random part: {old_id}"
    );
    broker.stop().await;

    // The member resumes after the restart, then leaves; a new member joins alone.
    let broker = start(dir.path()).await;
    let mut old = broker.client().await;
    assert_eq!(heartbeat(&mut old, &old_id, old_generation).await, 0);
    assert_eq!(leave(&mut old, &old_id).await, 0);
    let mut new = broker.client().await;
    let (new_id, new_generation, _) = join_alone(&mut new, "p0").await;
    assert_eq!(
        heartbeat(&mut old, &old_id, old_generation).await,
        25,
        "the old member's id and generation must be refused: UNKNOWN_MEMBER_ID"
    );
    assert_ne!(new_id, old_id, "a member id is never handed out twice");
    assert!(
        new_generation > old_generation,
        "generation {new_generation} after a restart, {old_generation} before"
    );

    // A generation handed out by a JoinGroup whose SyncGroup never came is not reused either.
    let mut joiner = broker.client().await;
    let joiner_id = member_id(&mut joiner).await;
    let parked = joiner
        .send(ApiKey::JoinGroup, 9, join_request(&joiner_id))
        .await;
    assert_eq!(heartbeat(&mut new, &new_id, new_generation).await, 27);
    let rejoined = join(&mut new, &new_id).await;
    let (correlation, _) =
        lmq_wire::decode_response(joiner.read_frame().await.unwrap(), ApiKey::JoinGroup, 9)
            .unwrap();
    assert_eq!(correlation, parked);
    let unsynced_generation = rejoined.generation_id;
    assert_eq!(unsynced_generation, new_generation + 1);
    broker.crash().await;
    let broker = start(dir.path()).await;
    let mut last = broker.client().await;
    let (_, last_generation, _) = join_alone(&mut last, "p0").await;
    assert!(
        last_generation > unsynced_generation,
        "generation {last_generation} after a crash, {unsynced_generation} handed out before"
    );
    broker.stop().await;
}

#[tokio::test]
async fn sync_group_assignments_over_the_group_metadata_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut client = broker.client().await;
    // Kafka stores the assignments in one group metadata record, bounded by the offsets
    // topic's max.message.bytes (1 MiB): a larger one fails with UNKNOWN_SERVER_ERROR.
    let huge = "x".repeat(2 * 1024 * 1024);
    let (id, generation, synced) = join_alone(&mut client, &huge).await;
    assert_eq!(synced, -1, "UNKNOWN_SERVER_ERROR");
    assert_eq!(
        heartbeat(&mut client, &id, generation).await,
        27,
        "the group rebalances: REBALANCE_IN_PROGRESS"
    );
    let rejoined = join(&mut client, &id).await;
    assert_eq!(rejoined.error_code, 0);
    let ResponseKind::SyncGroup(synced) = client
        .call(
            ApiKey::SyncGroup,
            5,
            sync_request(&id, rejoined.generation_id, &[(&id, "p0")]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"p0"));
    broker.stop().await;
}

/// A graceful stop answers a JoinGroup parked in a rebalance (NOT_COORDINATOR, as Kafka's
/// coordinator answers pending joins when it unloads a group) instead of waiting up to the
/// group's rebalance timeout for it; it used to wait the whole 300 s here.
#[tokio::test]
async fn a_stop_answers_a_join_group_parked_in_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let long_rebalance = |member_id: &str| {
        let RequestKind::JoinGroup(mut request) = join_request(member_id) else {
            unreachable!()
        };
        request.rebalance_timeout_ms = 300_000;
        RequestKind::JoinGroup(request)
    };
    let mut first = broker.client().await;
    let first_id = member_id(&mut first).await;
    let ResponseKind::JoinGroup(joined) = first
        .call(ApiKey::JoinGroup, 9, long_rebalance(&first_id))
        .await
    else {
        panic!()
    };
    assert_eq!(joined.error_code, 0);
    let ResponseKind::SyncGroup(synced) = first
        .call(
            ApiKey::SyncGroup,
            5,
            sync_request(&first_id, joined.generation_id, &[(&first_id, "a")]),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(synced.error_code, 0);

    // A second member's join waits until the first rejoins (it never does).
    let mut second = broker.client().await;
    let second_id = member_id(&mut second).await;
    second
        .send(ApiKey::JoinGroup, 9, long_rebalance(&second_id))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    tokio::time::timeout(std::time::Duration::from_secs(10), broker.stop())
        .await
        .expect("the stop waited for the parked JoinGroup");
    let frame = second
        .read_frame()
        .await
        .expect("the parked join is answered");
    let (_, response) = lmq_wire::decode_response(frame, ApiKey::JoinGroup, 9).unwrap();
    let ResponseKind::JoinGroup(answer) = response else {
        panic!("{response:?}")
    };
    assert_eq!(answer.error_code, 16, "NOT_COORDINATOR: {answer:?}");
}

/// A simple commit (no member, generation -1) of `offset` for `orders`-0 by `group_id`.
async fn commit_as(client: &mut TestClient, group_id: &str, offset: i64) -> i16 {
    let RequestKind::OffsetCommit(mut request) = commit_request("", -1, offset) else {
        unreachable!()
    };
    request.group_id = GroupId(text(group_id));
    match client
        .call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(request))
        .await
    {
        ResponseKind::OffsetCommit(response) => response.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    }
}

/// `group_id`'s committed offset of `orders`-0 (-1 for none), by OffsetFetch v8.
async fn committed_by(client: &mut TestClient, group_id: &str) -> i64 {
    let mut requested =
        lmq_wire::protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default();
    requested.group_id = GroupId(text(group_id));
    requested.topics = None;
    let mut request = OffsetFetchRequest::default();
    request.groups = vec![requested];
    match client
        .call(ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(request))
        .await
    {
        ResponseKind::OffsetFetch(response) => response.groups[0]
            .topics
            .first()
            .map_or(-1, |topic| topic.partitions[0].committed_offset),
        other => panic!("{other:?}"),
    }
}

async fn offsets_partitions(client: &mut TestClient) -> usize {
    let mut metadata = MetadataRequest::default();
    let mut topic = lmq_wire::protocol::messages::metadata_request::MetadataRequestTopic::default();
    topic.name = Some(TopicName(text("__consumer_offsets")));
    metadata.topics = Some(vec![topic]);
    match client
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(metadata))
        .await
    {
        ResponseKind::Metadata(response) => response.topics[0].partitions.len(),
        other => panic!("{other:?}"),
    }
}

/// The upgrade from the one-partition offsets topic of earlier LMQ versions (their default,
/// `offsets_topic_partitions = 1`): the topic keeps its one partition (a group's partition
/// is its hash modulo the topic's count, which Kafka never changes either), so every
/// committed offset and group is where the new coordinator looks. A new data dir gets 50.
/// scripts/offsets-migration.sh runs the same upgrade from a real older binary.
#[tokio::test]
async fn offsets_committed_with_one_offsets_partition_are_all_there_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestBroker::start_in(dir.path(), |config| {
        config.group.initial_rebalance_delay_ms = 0;
        config.group.offsets_topic_partitions = 1;
    })
    .await;
    old.find_coordinator("any").await;
    let mut client = old.client().await;
    create_orders(&mut client).await;
    assert_eq!(offsets_partitions(&mut client).await, 1);
    for n in 0..20 {
        assert_eq!(commit_as(&mut client, &format!("group-{n}"), n).await, 0);
    }
    let (member, generation, _) = join_alone(&mut client, "p0").await;
    old.stop().await;

    let new = start(dir.path()).await;
    let mut client = new.client().await;
    assert_eq!(
        offsets_partitions(&mut client).await,
        1,
        "an existing offsets topic keeps its partition count"
    );
    for n in 0..20 {
        assert_eq!(committed_by(&mut client, &format!("group-{n}")).await, n);
    }
    assert_eq!(heartbeat(&mut client, &member, generation).await, 0);
    new.stop().await;

    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = start(fresh_dir.path()).await;
    let mut client = fresh.client().await;
    assert_eq!(offsets_partitions(&mut client).await, 50, "Kafka's default");
    fresh.stop().await;
}
