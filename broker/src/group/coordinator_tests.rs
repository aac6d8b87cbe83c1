//! The coordinator over a real offsets partition: when commits become visible.

use std::sync::Arc;
use std::time::Duration;

use lmq_storage::{LogConfig, LogOptions, PartitionLog};

use bytes::Bytes;

use super::state::{GroupConfig, GroupError, GroupState, JoinRequest, SyncRequest};
use super::{GroupCoordinator, OffsetCommit};
use crate::partition::{IsrWakeup, Partition};
use crate::replication::{Assignment, ReplicationConfig};

/// An offsets partition led by broker 1 with broker 2 in its ISR: nothing is committed
/// until broker 2 has fetched it.
fn replicated_offsets_partition(dir: &std::path::Path) -> Arc<Partition> {
    replicated_offsets_partition_waking(dir, IsrWakeup::default())
}

/// The same, waking `isr_wakeup` when it proposes an ISR change.
fn replicated_offsets_partition_waking(
    dir: &std::path::Path,
    isr_wakeup: IsrWakeup,
) -> Arc<Partition> {
    let (log, _) = PartitionLog::open(dir, LogConfig::default(), LogOptions::default(), 0).unwrap();
    let partition = Arc::new(Partition::new(0, log, isr_wakeup));
    let assignment = Assignment {
        leader_id: 1,
        leader_epoch: 0,
        replicas: vec![1, 2],
        isr: vec![1, 2],
    };
    partition
        .become_role(1, &assignment, ReplicationConfig::default(), 0)
        .unwrap();
    partition
}

fn commit(offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: "orders".to_string(),
        partition: 0,
        offset,
        leader_epoch: -1,
        metadata: None,
    }
}

fn fetched(coordinator: &GroupCoordinator) -> Option<i64> {
    let topics = [("orders".to_string(), vec![0])];
    coordinator.fetch_offsets("g", Some(&topics))[0]
        .2
        .as_ref()
        .map(|committed| committed.offset)
}

#[tokio::test]
async fn a_commit_is_visible_to_offset_fetch_only_once_the_isr_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let partition = replicated_offsets_partition(dir.path());
    let coordinator =
        GroupCoordinator::load(GroupConfig::default(), vec![Arc::clone(&partition)], 0).unwrap();

    // Broker 2 never fetches this one: the commit times out and may yet be lost (a new
    // leader without it truncates it away), so no OffsetFetch may ever have seen it.
    let durable = coordinator
        .commit("g", "", None, -1, &[commit(42)], 1_000)
        .unwrap();
    assert_eq!(fetched(&coordinator), None, "visible before the ISR has it");
    let waited = coordinator
        .wait_durable(durable, Duration::from_millis(50))
        .await;
    assert!(waited.is_err(), "{waited:?}");
    assert_eq!(
        fetched(&coordinator),
        None,
        "visible though never acknowledged"
    );

    // The next commit reaches broker 2 and is acknowledged: visible from then on (with the
    // first one under it, which the ISR now has too).
    let durable = coordinator
        .commit("g", "", None, -1, &[commit(43)], 2_000)
        .unwrap();
    assert_eq!(fetched(&coordinator), None);
    let log_end = partition.offsets().unwrap().log_end_offset;
    partition.follower_fetch(2, log_end, 0, 0, 2_000).unwrap();
    coordinator
        .wait_durable(durable, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(fetched(&coordinator), Some(43));
}

/// An offsets-topic append that finds a follower lagging past `replica.lag.time.max.ms`
/// proposes an ISR without it. The group coordinator used to get that proposal back from the
/// append and drop it, which froze the partition's ISR changes (the state machine proposes
/// nothing new while one is pending). Now the proposal stays in the partition until the
/// cluster's task persists it, and the append wakes that task.
#[tokio::test]
async fn an_isr_proposal_made_by_an_offsets_append_reaches_the_persisting_task() {
    let dir = tempfile::tempdir().unwrap();
    let wakeup = IsrWakeup::default();
    let partition = replicated_offsets_partition_waking(dir.path(), Arc::clone(&wakeup));
    let coordinator =
        GroupCoordinator::load(GroupConfig::default(), vec![Arc::clone(&partition)], 0).unwrap();
    let lagging_ms = ReplicationConfig::default().replica_lag_time_max_ms + 1;
    coordinator
        .commit("g", "", None, -1, &[commit(7)], lagging_ms)
        .unwrap();
    let proposal = partition
        .pending_isr_proposal()
        .expect("the append proposed an ISR without the lagging follower");
    assert_eq!(proposal.isr, std::collections::BTreeSet::from([1]));
    tokio::time::timeout(Duration::from_secs(1), wakeup.notified())
        .await
        .expect("the persisting task was woken");
}

/// Every metadata change (an ISR change of any topic, a new topic) hands the coordinator the
/// offsets topic's partitions again. It used to drop the changes held for batches in flight
/// then, so a commit acknowledged a moment later never showed in OffsetFetch (the
/// compatibility suite's confluent-kafka failover saw `committed != positions` while a
/// restarted broker rejoined the ISR).
#[tokio::test]
async fn a_commit_in_flight_survives_the_same_partitions_handed_over_again() {
    let dir = tempfile::tempdir().unwrap();
    let partition = replicated_offsets_partition(dir.path());
    let coordinator =
        GroupCoordinator::load(GroupConfig::default(), vec![Arc::clone(&partition)], 0).unwrap();
    let durable = coordinator
        .commit("g", "", None, -1, &[commit(44)], 1_000)
        .unwrap();
    coordinator.adopt(vec![Arc::clone(&partition)]);
    let log_end = partition.offsets().unwrap().log_end_offset;
    partition.follower_fetch(2, log_end, 0, 0, 1_000).unwrap();
    coordinator
        .wait_durable(durable, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        fetched(&coordinator),
        Some(44),
        "an acknowledged commit is lost"
    );
}

/// An offsets partition led by broker 1 alone: a change is durable once appended.
fn lone_offsets_partition(dir: &std::path::Path) -> Arc<Partition> {
    let (log, _) = PartitionLog::open(dir, LogConfig::default(), LogOptions::default(), 0).unwrap();
    let partition = Arc::new(Partition::new(0, log, IsrWakeup::default()));
    let assignment = Assignment {
        leader_id: 1,
        leader_epoch: 0,
        replicas: vec![1],
        isr: vec![1],
    };
    partition
        .become_role(1, &assignment, ReplicationConfig::default(), 0)
        .unwrap();
    partition
}

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        offsets_retention_ms: 10_000,
        ..GroupConfig::default()
    }
}

fn join_request(member_id: &str) -> JoinRequest {
    JoinRequest {
        group_id: "g".to_string(),
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".to_string(),
        protocols: vec![("range".to_string(), Bytes::from_static(b"sub"))],
        require_known_member_id: false,
    }
}

#[tokio::test]
async fn a_coordinator_loading_the_log_has_the_stable_group_and_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let partition = lone_offsets_partition(dir.path());
    let first = GroupCoordinator::load(config(), vec![Arc::clone(&partition)], 0).unwrap();
    let joined = first.join(join_request(""), 100).await;
    assert_eq!((joined.error, joined.generation_id), (None, 1));
    let synced = first
        .sync(
            SyncRequest {
                group_id: "g".to_string(),
                generation_id: 1,
                member_id: joined.member_id.clone(),
                group_instance_id: None,
                protocol_type: Some("consumer".to_string()),
                protocol_name: Some("range".to_string()),
                assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"p0"))],
            },
            200,
        )
        .await;
    assert_eq!(synced.error, None);
    let durable = first
        .commit("g", &joined.member_id, None, 1, &[commit(42)], 300)
        .unwrap();
    first
        .wait_durable(durable, Duration::from_secs(5))
        .await
        .unwrap();

    // A new coordinator of the same log (a restart, or the partition's next leader).
    let second = GroupCoordinator::load(config(), vec![Arc::clone(&partition)], 50_000).unwrap();
    let group = second.describe("g").expect("the group is loaded");
    assert_eq!(group.state, GroupState::Stable);
    assert_eq!(group.leader.as_deref(), Some(joined.member_id.as_str()));
    // Its session runs from the load (the record is from 200 ms: a session from then would
    // have ended long ago)...
    second.tick(59_999);
    assert_eq!(second.describe("g").unwrap().members.len(), 1);
    // ...and the member resumes with heartbeats of its generation.
    assert_eq!(
        second.heartbeat("g", &joined.member_id, None, 1, 59_999),
        Ok(())
    );
    assert_eq!(fetched(&second), Some(42));
    second.tick(70_000);
    assert!(second.describe("g").unwrap().members.is_empty());
}

#[tokio::test]
async fn offsets_of_an_empty_group_expire_by_tombstones_and_the_group_goes_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let partition = lone_offsets_partition(dir.path());
    let coordinator = GroupCoordinator::load(config(), vec![Arc::clone(&partition)], 0).unwrap();
    let joined = coordinator.join(join_request(""), 0).await;
    let member = joined.member_id.clone();
    coordinator
        .sync(
            SyncRequest {
                group_id: "g".to_string(),
                generation_id: 1,
                member_id: member.clone(),
                group_instance_id: None,
                protocol_type: None,
                protocol_name: None,
                assignments: Vec::new(),
            },
            0,
        )
        .await;
    let durable = coordinator
        .commit("g", &member, None, 1, &[commit(7)], 1_000)
        .unwrap();
    coordinator
        .wait_durable(durable, Duration::from_secs(5))
        .await
        .unwrap();
    // Past the retention since the commit, but the group has a member.
    coordinator.heartbeat("g", &member, None, 1, 5_000).unwrap();
    assert!(coordinator.expire_offsets(20_000).is_empty());
    coordinator
        .leave("g", &[(member.clone(), None)], 20_000)
        .unwrap();
    assert!(coordinator.expire_offsets(29_999).is_empty());
    assert_eq!(fetched(&coordinator), Some(7));

    let written = coordinator.expire_offsets(30_000);
    assert_eq!(written.len(), 1);
    assert!(
        coordinator.describe("g").is_none(),
        "the empty group is deleted"
    );
    for durable in written {
        coordinator
            .wait_durable(durable, Duration::from_secs(5))
            .await
            .unwrap();
    }
    assert_eq!(fetched(&coordinator), None);
    // The tombstones are in the log: a replay brings back neither.
    let reloaded = GroupCoordinator::load(config(), vec![partition], 40_000).unwrap();
    assert_eq!(fetched(&reloaded), None);
    assert!(reloaded.describe("g").is_none());
}

/// Between this broker becoming leader of an offsets partition and its groups being loaded
/// from it, the groups are not known yet: a member's Heartbeat then must not be answered
/// UNKNOWN_MEMBER_ID (the member would rejoin and rebalance the group), but
/// COORDINATOR_LOAD_IN_PROGRESS, which clients retry (as Kafka answers while loading).
#[tokio::test]
async fn a_partition_led_but_not_loaded_yet_answers_load_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let partition = lone_offsets_partition(dir.path());
    let first = GroupCoordinator::load(config(), vec![Arc::clone(&partition)], 0).unwrap();
    let joined = first.join(join_request(""), 100).await;
    assert_eq!(joined.error, None);
    let synced = first
        .sync(
            SyncRequest {
                group_id: "g".to_string(),
                generation_id: 1,
                member_id: joined.member_id.clone(),
                group_instance_id: None,
                protocol_type: None,
                protocol_name: None,
                assignments: Vec::new(),
            },
            150,
        )
        .await;
    assert_eq!(synced.error, None);

    // Another coordinator holds the partition as follower, then becomes its leader.
    let second = GroupCoordinator::load(config(), Vec::new(), 0).unwrap();
    let follower = Assignment {
        leader_id: 2,
        leader_epoch: 1,
        replicas: vec![1, 2],
        isr: vec![1, 2],
    };
    partition
        .become_role(1, &follower, ReplicationConfig::default(), 200)
        .unwrap();
    second.adopt(vec![Arc::clone(&partition)]);
    let leader = Assignment {
        leader_id: 1,
        leader_epoch: 2,
        replicas: vec![1],
        isr: vec![1],
    };
    assert!(
        partition
            .become_role(1, &leader, ReplicationConfig::default(), 300)
            .unwrap()
    );
    assert_eq!(
        second.heartbeat("g", &joined.member_id, None, 1, 300),
        Err(GroupError::CoordinatorLoadInProgress),
        "led but not loaded"
    );
    second.reload(0, 400).unwrap();
    assert_eq!(
        second.heartbeat("g", &joined.member_id, None, 1, 400),
        Ok(()),
        "loaded: the member resumes"
    );
}
