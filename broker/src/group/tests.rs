//! The group state machine with a manual clock: no sockets, no sleeps.

use bytes::Bytes;

use super::expiry;
use super::offsets::{CommittedOffset, OffsetKey};
use super::state::{
    GroupConfig, GroupError, GroupRecord, GroupState, Groups, JoinRequest, JoinResponse, Output,
    SeededIds, SyncRequest, SyncResponse,
};

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn groups() -> Groups {
    Groups::new(
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        },
        Box::new(SeededIds::new(7)),
    )
}

fn join_request(member_id: &str, instance: Option<&str>, metadata: &str) -> JoinRequest {
    JoinRequest {
        group_id: "g".to_string(),
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_string(),
        protocols: vec![("range".to_string(), Bytes::from(metadata.to_string()))],
        require_known_member_id: true,
    }
}

/// Every answer, those waiting for a group record included (as if it became durable).
fn answers(outputs: &[Output]) -> Vec<Output> {
    outputs
        .iter()
        .flat_map(|output| match output {
            Output::Store { then, .. } => answers(then),
            answer => vec![answer.clone()],
        })
        .collect()
}

fn join_answer(outputs: &[Output], token: u64) -> Option<JoinResponse> {
    answers(outputs)
        .into_iter()
        .find_map(|output| match output {
            Output::Join(answered, response) if answered == token => Some(response),
            _ => None,
        })
}

fn sync_answer(outputs: &[Output], token: u64) -> Option<SyncResponse> {
    answers(outputs)
        .into_iter()
        .find_map(|output| match output {
            Output::Sync(answered, response) if answered == token => Some(response),
            _ => None,
        })
}

/// The group records to persist, in order.
fn stored(outputs: &[Output]) -> Vec<GroupRecord> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Store { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect()
}

/// KIP-394: first join gets MEMBER_ID_REQUIRED and an id, the second join enters.
fn new_member(groups: &mut Groups, token: u64, now_ms: i64) -> (String, Vec<Output>) {
    let outputs = groups.join(token, join_request("", None, "m"), now_ms);
    let response = join_answer(&outputs, token).unwrap();
    assert_eq!(response.error, Some(GroupError::MemberIdRequired));
    let member_id = response.member_id;
    let outputs = groups.join(token + 1, join_request(&member_id, None, "m"), now_ms);
    (member_id, outputs)
}

fn sync(
    groups: &mut Groups,
    token: u64,
    member_id: &str,
    generation_id: i32,
    assignments: Vec<(String, Bytes)>,
    now_ms: i64,
) -> Vec<Output> {
    groups.sync(
        token,
        SyncRequest {
            group_id: "g".to_string(),
            generation_id,
            member_id: member_id.to_string(),
            group_instance_id: None,
            protocol_type: Some("consumer".to_string()),
            protocol_name: Some("range".to_string()),
            assignments,
        },
        now_ms,
    )
}

#[test]
fn a_single_member_joins_syncs_and_heartbeats() {
    let mut groups = groups();
    let (member, outputs) = new_member(&mut groups, 1, 0);
    let joined = join_answer(&outputs, 2).unwrap();
    assert_eq!(joined.error, None);
    assert_eq!(
        (joined.generation_id, joined.leader.as_str()),
        (1, member.as_str())
    );
    assert_eq!(joined.members.len(), 1, "the leader gets the member list");
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    let outputs = sync(
        &mut groups,
        3,
        &member,
        1,
        vec![(member.clone(), Bytes::from_static(b"p0"))],
        10,
    );
    assert_eq!(
        sync_answer(&outputs, 3).unwrap().assignment,
        Bytes::from_static(b"p0")
    );
    assert_eq!(groups.get("g").unwrap().state, GroupState::Stable);
    assert_eq!(groups.heartbeat("g", &member, None, 1, 20), Ok(()));
    assert_eq!(
        groups.heartbeat("g", &member, None, 0, 20),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        groups.heartbeat("g", "stranger", None, 1, 20),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn a_second_member_triggers_a_rebalance_that_waits_for_everyone() {
    let mut groups = groups();
    let (first, _) = new_member(&mut groups, 1, 0);
    sync(
        &mut groups,
        3,
        &first,
        1,
        vec![(first.clone(), Bytes::from_static(b"all"))],
        0,
    );

    let (second, outputs) = new_member(&mut groups, 10, 100);
    assert!(
        join_answer(&outputs, 11).is_none(),
        "parked until the first member rejoins"
    );
    assert_eq!(
        groups.heartbeat("g", &first, None, 1, 200),
        Err(GroupError::RebalanceInProgress)
    );
    let outputs = groups.join(20, join_request(&first, None, "m"), 300);
    let first_join = join_answer(&outputs, 20).unwrap();
    let second_join = join_answer(&outputs, 11).unwrap();
    assert_eq!(
        (first_join.generation_id, second_join.generation_id),
        (2, 2)
    );
    assert_eq!(first_join.leader, first, "the leader stays the leader");
    assert_eq!(first_join.members.len(), 2);
    assert!(second_join.members.is_empty());

    // The follower's sync waits for the leader's.
    let outputs = sync(&mut groups, 30, &second, 2, Vec::new(), 400);
    assert!(outputs.is_empty());
    let assignments = vec![
        (first.clone(), Bytes::from_static(b"a")),
        (second.clone(), Bytes::from_static(b"b")),
    ];
    let outputs = sync(&mut groups, 31, &first, 2, assignments, 500);
    assert_eq!(
        sync_answer(&outputs, 30).unwrap().assignment,
        Bytes::from_static(b"b")
    );
    assert_eq!(
        sync_answer(&outputs, 31).unwrap().assignment,
        Bytes::from_static(b"a")
    );
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped() {
    let mut groups = groups();
    let (first, _) = new_member(&mut groups, 1, 0);
    sync(&mut groups, 3, &first, 1, Vec::new(), 0);
    // Keep the first member's session alive while the second joins; it never rejoins.
    groups.heartbeat("g", &first, None, 1, 5_000).unwrap();
    let (second, outputs) = new_member(&mut groups, 10, 5_000);
    assert!(join_answer(&outputs, 11).is_none());
    // Its session runs out before the rebalance timeout does: it is dropped then.
    assert!(groups.tick(5_000 + i64::from(SESSION_MS)).is_empty());
    let outputs = groups.tick(5_000 + i64::from(SESSION_MS) + 1);
    let joined = join_answer(&outputs, 11).unwrap();
    assert_eq!(
        (joined.generation_id, joined.leader.as_str()),
        (2, second.as_str())
    );
    assert!(!groups.get("g").unwrap().members.contains_key(&first));
}

#[test]
fn an_expired_session_removes_the_member_and_rebalances_the_rest() {
    let mut groups = groups();
    let (first, _) = new_member(&mut groups, 1, 0);
    let (second, _) = new_member(&mut groups, 10, 0);
    let outputs = groups.join(20, join_request(&first, None, "m"), 0);
    assert!(join_answer(&outputs, 20).is_some());
    sync(&mut groups, 30, &second, 2, Vec::new(), 0);
    sync(&mut groups, 31, &first, 2, Vec::new(), 0);
    assert_eq!(groups.get("g").unwrap().state, GroupState::Stable);
    // Only the first member keeps heartbeating.
    for now in (1_000..=12_000).step_by(1_000) {
        let _ = groups.heartbeat("g", &first, None, 2, now);
        groups.tick(now);
    }
    let group = groups.get("g").unwrap();
    assert!(
        !group.members.contains_key(&second),
        "expired after the session timeout"
    );
    assert_eq!(group.state, GroupState::PreparingRebalance);
    let outputs = groups.join(40, join_request(&first, None, "m"), 12_500);
    assert_eq!(join_answer(&outputs, 40).unwrap().generation_id, 3);
}

#[test]
fn leaving_members_get_their_answers_and_the_last_one_empties_the_group() {
    let mut groups = groups();
    let (first, _) = new_member(&mut groups, 1, 0);
    sync(&mut groups, 3, &first, 1, Vec::new(), 0);
    let (results, _) = groups
        .leave(
            "g",
            &[(first.clone(), None), ("ghost".to_string(), None)],
            10,
        )
        .unwrap();
    assert_eq!(results, vec![Ok(()), Err(GroupError::UnknownMemberId)]);
    let group = groups.get("g").unwrap();
    assert_eq!((group.state, group.generation_id), (GroupState::Empty, 2));
    assert_eq!(groups.delete("g"), Ok(()));
    assert_eq!(groups.delete("g"), Err(GroupError::GroupIdNotFound));
}

#[test]
fn a_static_member_rejoining_with_a_new_id_keeps_the_group_stable() {
    let mut groups = groups();
    let outputs = groups.join(1, join_request("", Some("instance-a"), "m"), 0);
    let first = join_answer(&outputs, 1).unwrap();
    assert_eq!(first.error, None, "static members skip MEMBER_ID_REQUIRED");
    let (other, _) = new_member(&mut groups, 5, 0);
    let outputs = groups.join(
        7,
        join_request(&first.member_id, Some("instance-a"), "m"),
        0,
    );
    assert!(join_answer(&outputs, 7).is_some());
    sync(&mut groups, 8, &other, 2, Vec::new(), 0);
    let assignments = vec![(first.member_id.clone(), Bytes::from_static(b"mine"))];
    let leader = groups.get("g").unwrap().leader.clone().unwrap();
    sync(&mut groups, 9, &leader, 2, assignments, 0);
    assert_eq!(groups.get("g").unwrap().state, GroupState::Stable);

    // Restart: same instance id, no member id. No rebalance, same generation.
    let outputs = groups.join(20, join_request("", Some("instance-a"), "m"), 100);
    let rejoined = join_answer(&outputs, 20).unwrap();
    assert_eq!((rejoined.error, rejoined.generation_id), (None, 2));
    assert_ne!(rejoined.member_id, first.member_id);
    assert_eq!(groups.get("g").unwrap().state, GroupState::Stable);
    // The old incarnation is fenced.
    assert_eq!(
        groups.heartbeat("g", &first.member_id, Some("instance-a"), 2, 200),
        Err(GroupError::FencedInstanceId)
    );
}

#[test]
fn a_member_joining_during_a_rebalance_is_part_of_it() {
    let mut groups = groups();
    let (first, _) = new_member(&mut groups, 1, 0);
    sync(&mut groups, 3, &first, 1, Vec::new(), 0);
    let (_second, _) = new_member(&mut groups, 10, 10);
    let (_third, outputs) = new_member(&mut groups, 20, 20);
    assert!(
        outputs
            .iter()
            .all(|output| matches!(output, Output::Sync(..)))
            || outputs.is_empty()
    );
    let outputs = groups.join(30, join_request(&first, None, "m"), 30);
    let answers: Vec<JoinResponse> = [11, 21, 30]
        .iter()
        .filter_map(|token| join_answer(&outputs, *token))
        .collect();
    assert_eq!(answers.len(), 3);
    assert!(answers.iter().all(|answer| answer.generation_id == 2));
}

#[test]
fn commits_are_checked_against_the_generation() {
    let mut groups = groups();
    assert_eq!(
        groups.validate_commit("solo", "", None, -1),
        Ok(()),
        "simple commits need no group"
    );
    let (first, _) = new_member(&mut groups, 1, 0);
    assert_eq!(
        groups.validate_commit("g", &first, None, 1),
        Err(GroupError::RebalanceInProgress)
    );
    sync(&mut groups, 3, &first, 1, Vec::new(), 0);
    assert_eq!(groups.validate_commit("g", &first, None, 1), Ok(()));
    assert_eq!(
        groups.validate_commit("g", &first, None, 0),
        Err(GroupError::IllegalGeneration),
        "stale generation"
    );
    assert_eq!(
        groups.validate_commit("g", "", None, -1),
        Err(GroupError::UnknownMemberId),
        "group is active"
    );
}

#[test]
fn protocol_mismatches_and_bad_timeouts_are_refused() {
    let mut groups = groups();
    let (_member, _) = new_member(&mut groups, 1, 0);
    let mut other = join_request("", None, "m");
    other.protocols = vec![("roundrobin".to_string(), Bytes::new())];
    let outputs = groups.join(5, other, 0);
    assert_eq!(
        join_answer(&outputs, 5).unwrap().error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    let mut short = join_request("", None, "m");
    short.session_timeout_ms = 10;
    let outputs = groups.join(6, short, 0);
    assert_eq!(
        join_answer(&outputs, 6).unwrap().error,
        Some(GroupError::InvalidSessionTimeout)
    );
    let outputs = groups.join(
        7,
        JoinRequest {
            group_id: String::new(),
            ..join_request("", None, "m")
        },
        0,
    );
    assert_eq!(
        join_answer(&outputs, 7).unwrap().error,
        Some(GroupError::InvalidGroupId)
    );
}

#[test]
fn a_new_group_waits_for_the_initial_rebalance_delay() {
    let mut groups = Groups::new(
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            ..GroupConfig::default()
        },
        Box::new(SeededIds::new(7)),
    );
    let (_first, outputs) = new_member(&mut groups, 1, 0);
    assert!(join_answer(&outputs, 2).is_none());
    let (_second, outputs) = new_member(&mut groups, 10, 1_000);
    assert!(join_answer(&outputs, 11).is_none());
    let outputs = groups.tick(3_000);
    assert!(join_answer(&outputs, 2).is_some() && join_answer(&outputs, 11).is_some());
}

#[test]
fn member_ids_are_the_client_id_and_a_uuid_from_the_injected_source() {
    let (mut first, mut again) = (groups(), groups());
    let (id, _) = new_member(&mut first, 1, 0);
    let (same, _) = new_member(&mut again, 1, 0);
    assert_eq!(id, same, "the same seed gives the same ids");
    let uuid = id.strip_prefix("client-").unwrap();
    assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);
    let (next, _) = new_member(&mut first, 10, 0);
    assert_ne!(next, id);
}

#[test]
fn a_new_generation_is_stored_before_anyone_learns_it() {
    let mut groups = groups();
    let (member, outputs) = new_member(&mut groups, 1, 0);
    // The join answer is inside the store: the coordinator sends it once the record is
    // durable.
    assert!(
        outputs
            .iter()
            .all(|output| matches!(output, Output::Store { .. }))
    );
    let records = stored(&outputs);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].generation_id, records[0].leader.as_deref()),
        (1, Some(member.as_str()))
    );
    assert!(records[0].members.is_empty(), "small: never fails on size");

    let outputs = sync(
        &mut groups,
        3,
        &member,
        1,
        vec![(member.clone(), Bytes::from_static(b"p0"))],
        10,
    );
    let records = stored(&outputs);
    assert_eq!(records.len(), 1, "the assignment is stored with the group");
    assert_eq!(records[0].members[0].assignment, Bytes::from_static(b"p0"));
    assert_eq!(records[0].members[0].subscription, Bytes::from_static(b"m"));
    assert!(sync_answer(&outputs, 3).is_some());

    let (_, outputs) = groups.leave("g", &[(member, None)], 20).unwrap();
    assert_eq!(
        stored(&outputs)
            .iter()
            .map(|record| record.generation_id)
            .collect::<Vec<_>>(),
        [2],
        "the empty group's generation too"
    );
}

/// A record without members, as the end of a join phase or an emptied group stores it.
fn record_without_members(generation_id: i32, leader: Option<&str>, at_ms: i64) -> GroupRecord {
    GroupRecord {
        group_id: "g".to_string(),
        protocol_type: "consumer".to_string(),
        generation_id,
        protocol_name: leader.map(|_| "range".to_string()),
        leader: leader.map(str::to_string),
        state_timestamp_ms: at_ms,
        members: Vec::new(),
    }
}

#[test]
fn a_restored_group_continues_above_its_stored_generation() {
    let mut groups = groups();
    groups
        .restore("g", Some(&record_without_members(41, None, 0)), 0)
        .unwrap();
    assert_eq!(groups.get("g").unwrap().state, GroupState::Empty);
    let (_, outputs) = new_member(&mut groups, 1, 0);
    assert_eq!(join_answer(&outputs, 2).unwrap().generation_id, 42);
    groups
        .restore("g", Some(&record_without_members(7, None, 0)), 0)
        .unwrap();
    assert_eq!(groups.get("g").unwrap().generation_id, 42, "never lowered");
}

/// Two members joined and synced; the group as its last record stores it.
fn stable_group_record() -> (Groups, String, String, GroupRecord) {
    let mut groups = groups();
    let (first, _) = new_member(&mut groups, 1, 0);
    sync(&mut groups, 3, &first, 1, Vec::new(), 0);
    let (second, _) = new_member(&mut groups, 10, 10);
    groups.join(12, join_request(&first, None, "m"), 10);
    let assignments = vec![
        (first.clone(), Bytes::from_static(b"p0")),
        (second.clone(), Bytes::from_static(b"p1")),
    ];
    let leader = groups.get("g").unwrap().leader.clone().unwrap();
    let follower = if leader == first { &second } else { &first };
    sync(&mut groups, 20, follower, 2, Vec::new(), 20);
    let outputs = sync(&mut groups, 21, &leader, 2, assignments, 20);
    let record = stored(&outputs).pop().expect("the assignments are stored");
    assert_eq!(record.members.len(), 2);
    (groups, first, second, record)
}

#[test]
fn a_group_restored_from_its_record_is_stable_and_its_members_resume_with_heartbeats() {
    let (before, first, second, record) = stable_group_record();
    let original = before.get("g").unwrap();
    let load_ms = 1_000_000;
    let mut groups = groups();
    groups.restore("g", Some(&record), load_ms).unwrap();
    let group = groups.get("g").unwrap();
    assert_eq!(group.state, GroupState::Stable);
    assert_eq!(
        (
            group.generation_id,
            group.protocol_type.as_deref(),
            group.protocol_name.as_deref(),
            &group.leader
        ),
        (2, Some("consumer"), Some("range"), &original.leader)
    );
    assert_eq!(
        group.members.keys().collect::<Vec<_>>(),
        original.members.keys().collect::<Vec<_>>()
    );
    // Same generation: heartbeats and commits go on, no rebalance.
    assert_eq!(groups.heartbeat("g", &first, None, 2, load_ms + 1), Ok(()));
    assert_eq!(groups.validate_commit("g", &second, None, 2), Ok(()));
    // A SyncGroup retried across the move gets the stored assignment.
    let outputs = sync(&mut groups, 30, &second, 2, Vec::new(), load_ms + 2);
    assert_eq!(
        sync_answer(&outputs, 30).unwrap().assignment,
        Bytes::from_static(b"p1")
    );
    // Sessions run from the load, not from the record: both are alive a session later than
    // the record; the one that stops heartbeating expires a session after its last one.
    let session = i64::from(SESSION_MS);
    assert!(groups.tick(load_ms + session).is_empty());
    assert_eq!(
        groups.heartbeat("g", &first, None, 2, load_ms + session),
        Ok(())
    );
    groups.tick(load_ms + session + 1);
    let group = groups.get("g").unwrap();
    assert_eq!(group.members.len(), 1, "the silent member expired");
    assert!(group.members.contains_key(&first));
    assert_eq!(group.state, GroupState::PreparingRebalance);
}

#[test]
fn a_join_phase_record_restores_an_empty_group_whose_members_rejoin() {
    let mut groups = groups();
    groups
        .restore("g", Some(&record_without_members(5, Some("m-1"), 10)), 500)
        .unwrap();
    let group = groups.get("g").unwrap();
    assert_eq!(
        (group.state, group.generation_id, group.state_timestamp_ms),
        (GroupState::Empty, 5, Some(500)),
        "empty since the load"
    );
    assert_eq!(
        groups.heartbeat("g", "m-1", None, 5, 600),
        Err(GroupError::UnknownMemberId)
    );
    let (_, outputs) = new_member(&mut groups, 1, 700);
    assert_eq!(join_answer(&outputs, 2).unwrap().generation_id, 6);
}

#[test]
fn a_static_member_s_new_id_is_stored_before_it_learns_it() {
    let mut groups = groups();
    let outputs = groups.join(1, join_request("", Some("instance-a"), "m"), 0);
    let first = join_answer(&outputs, 1).unwrap();
    let assignments = vec![(first.member_id.clone(), Bytes::from_static(b"mine"))];
    sync(&mut groups, 2, &first.member_id, 1, assignments, 0);
    let outputs = groups.join(3, join_request("", Some("instance-a"), "m"), 100);
    let records = stored(&outputs);
    assert_eq!(records.len(), 1, "{outputs:?}");
    let rejoined = join_answer(&outputs, 3).unwrap();
    assert!(
        outputs
            .iter()
            .all(|output| matches!(output, Output::Store { .. })),
        "the answer waits for the record"
    );
    assert_eq!(records[0].members[0].member_id, rejoined.member_id);
    assert_eq!(
        records[0].members[0].assignment,
        Bytes::from_static(b"mine")
    );
    // A coordinator loading that record knows the new id.
    let mut moved = self::groups();
    moved.restore("g", Some(&records[0]), 1_000).unwrap();
    assert_eq!(
        moved.heartbeat("g", &rejoined.member_id, Some("instance-a"), 1, 1_001),
        Ok(())
    );
}

fn committed_at(topic: &str, commit_ms: i64) -> (OffsetKey, CommittedOffset) {
    (
        OffsetKey {
            group_id: "g".to_string(),
            topic: topic.to_string(),
            partition: 0,
        },
        CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: commit_ms,
        },
    )
}

fn expired(
    groups: &Groups,
    offsets: &[(OffsetKey, CommittedOffset)],
    now_ms: i64,
    retention_ms: i64,
) -> Vec<String> {
    expiry::expired_offsets(
        groups.get("g"),
        offsets.iter().map(|(key, value)| (key, value)),
        now_ms,
        retention_ms,
    )
    .into_iter()
    .map(|key| key.topic)
    .collect()
}

#[test]
fn an_empty_group_s_offsets_expire_a_retention_after_it_emptied_not_after_the_commit() {
    let retention = 10_000;
    let mut groups = groups();
    let (member, _) = new_member(&mut groups, 1, 0);
    sync(&mut groups, 3, &member, 1, Vec::new(), 0);
    let offsets = [committed_at("a", 0), committed_at("b", 500)];
    // A group with members keeps its offsets however old they are.
    groups.heartbeat("g", &member, None, 1, 9_000).unwrap();
    assert!(expired(&groups, &offsets, 9_000, retention).is_empty());
    groups.leave("g", &[(member, None)], 9_000).unwrap();
    let group = groups.get("g").unwrap();
    assert_eq!(
        (group.state, group.state_timestamp_ms),
        (GroupState::Empty, Some(9_000))
    );
    assert!(expiry::group_is_removable(group));
    // The commits are past the retention, the emptiness is not.
    assert!(expired(&groups, &offsets, 18_999, retention).is_empty());
    assert_eq!(expired(&groups, &offsets, 19_000, retention), ["a", "b"]);
}

#[test]
fn a_group_without_a_protocol_expires_each_offset_a_retention_after_its_commit() {
    let retention = 10_000;
    let mut groups = groups();
    groups.ensure("g").unwrap();
    let offsets = [committed_at("a", 0), committed_at("b", 5_000)];
    assert!(expired(&groups, &offsets, 9_999, retention).is_empty());
    assert_eq!(expired(&groups, &offsets, 10_000, retention), ["a"]);
    assert_eq!(expired(&groups, &offsets, 15_000, retention), ["a", "b"]);
    // The same without any group state (offsets only, never restored).
    let none = Groups::new(GroupConfig::default(), Box::new(SeededIds::new(1)));
    assert_eq!(expired(&none, &offsets, 10_000, retention), ["a"]);
}

#[test]
fn an_emptied_group_restored_from_its_record_keeps_the_moment_it_emptied() {
    let mut groups = groups();
    groups
        .restore("g", Some(&record_without_members(3, None, 4_000)), 50_000)
        .unwrap();
    let offsets = [committed_at("a", 0)];
    assert!(expired(&groups, &offsets, 13_999, 10_000).is_empty());
    assert_eq!(expired(&groups, &offsets, 14_000, 10_000), ["a"]);
}

#[test]
fn assignments_over_the_group_metadata_limit_fail_every_sync_and_rebalance() {
    let mut groups = Groups::new(
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            group_metadata_bytes_max: 1_000,
            ..GroupConfig::default()
        },
        Box::new(SeededIds::new(7)),
    );
    let (first, _) = new_member(&mut groups, 1, 0);
    let (second, _) = new_member(&mut groups, 10, 0);
    let outputs = groups.join(20, join_request(&first, None, "m"), 0);
    let leader = join_answer(&outputs, 20).unwrap().leader;
    let follower = if leader == first { &second } else { &first };
    assert!(sync(&mut groups, 30, follower, 2, Vec::new(), 0).is_empty());
    let assignments = vec![
        (first.clone(), Bytes::from(vec![b'a'; 600])),
        (second.clone(), Bytes::from(vec![b'b'; 600])),
    ];
    let outputs = sync(&mut groups, 31, &leader, 2, assignments, 0);
    assert!(stored(&outputs).is_empty(), "nothing stored");
    for token in [30, 31] {
        assert_eq!(
            sync_answer(&outputs, token).unwrap().error,
            Some(GroupError::GroupMetadataTooLarge)
        );
    }
    assert_eq!(
        groups.get("g").unwrap().state,
        GroupState::PreparingRebalance
    );
    // Each assignment alone fits: only the group's total counts.
    let outputs = groups.join(40, join_request(&first, None, "m"), 10);
    assert!(join_answer(&outputs, 40).is_none());
    let outputs = groups.join(41, join_request(&second, None, "m"), 10);
    assert_eq!(join_answer(&outputs, 41).unwrap().generation_id, 3);
}

#[test]
fn a_group_record_that_fails_to_store_makes_the_group_rebalance() {
    let mut groups = groups();
    let (member, _) = new_member(&mut groups, 1, 0);
    sync(&mut groups, 3, &member, 1, Vec::new(), 0);
    assert!(
        groups.store_failed("g", 0, 10).is_empty(),
        "an older generation"
    );
    assert_eq!(groups.get("g").unwrap().state, GroupState::Stable);
    groups.store_failed("g", 1, 10);
    assert_eq!(
        groups.heartbeat("g", &member, None, 1, 20),
        Err(GroupError::RebalanceInProgress)
    );
    let outputs = groups.join(5, join_request(&member, None, "m"), 30);
    assert_eq!(join_answer(&outputs, 5).unwrap().generation_id, 2);
}

/// A JoinGroup listing as many protocols as its metadata limit allows (about 100,000 short
/// names) against a member that listed as many: checking what they share was a search of
/// every member's list per protocol (quadratic; minutes before the fix).
#[test]
fn a_join_with_100_000_protocols_is_checked_against_the_group_at_once() {
    let mut groups = groups();
    let protocols = |prefix: &str| -> Vec<(String, Bytes)> {
        (0..100_000)
            .map(|index| (format!("{prefix}{index}"), Bytes::new()))
            .collect()
    };
    let mut first = join_request("", None, "m");
    first.protocols = protocols("a");
    let response = join_answer(&groups.join(1, first.clone(), 0), 1).unwrap();
    first.member_id = response.member_id;
    let outputs = groups.join(2, first, 0);
    assert_eq!(join_answer(&outputs, 2).unwrap().error, None);
    // Nothing in common but the last entry.
    let mut other = join_request("", None, "m");
    other.protocols = protocols("b");
    other.protocols.push(("a99999".to_string(), Bytes::new()));
    let outputs = groups.join(3, other.clone(), 0);
    assert_eq!(
        join_answer(&outputs, 3).unwrap().error,
        Some(GroupError::MemberIdRequired),
        "accepted: one protocol in common"
    );
    other.protocols.pop();
    let outputs = groups.join(4, other, 0);
    assert_eq!(
        join_answer(&outputs, 4).unwrap().error,
        Some(GroupError::InconsistentGroupProtocol)
    );
}
