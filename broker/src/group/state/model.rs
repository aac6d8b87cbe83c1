//! The group model the state machine works on: its configuration, errors, the requests and
//! answers it exchanges, and the members and groups it keeps.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

/// Identifies a parked request so its answer can find the waiting connection.
pub type Token = u64;

/// The outcome for one member of a batched LeaveGroup.
pub type MemberResult = Result<(), GroupError>;

/// The random part of new member ids (Kafka: a random UUID after the client id), so an id
/// is never handed out twice, across restarts and coordinator moves included. Injected like
/// the clock: the coordinator uses [`RandomIds`], tests a [`SeededIds`].
pub trait MemberIdSource: std::fmt::Debug + Send {
    fn next_id(&mut self) -> uuid::Uuid;
}

/// Version 4 UUIDs from the operating system's randomness.
#[derive(Debug, Default)]
pub struct RandomIds;

impl MemberIdSource for RandomIds {
    fn next_id(&mut self) -> uuid::Uuid {
        uuid::Uuid::new_v4()
    }
}

/// A reproducible sequence of version 4 UUIDs (SplitMix64 from a seed), for tests.
#[derive(Debug)]
pub struct SeededIds {
    state: u64,
}

impl SeededIds {
    pub fn new(seed: u64) -> Self {
        SeededIds { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }
}

impl MemberIdSource for SeededIds {
    fn next_id(&mut self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// Limits and timings (Kafka's `group.*` broker settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`: a new group waits this long for more members.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`.
    pub members_max: usize,
    /// Groups the coordinator keeps (with members or committed offsets).
    pub groups_max: usize,
    /// Bytes of protocol metadata one member may send with its JoinGroup.
    pub member_metadata_bytes_max: usize,
    /// Bytes of a group's metadata record (every member's subscription and assignment, as
    /// Kafka stores them in `__consumer_offsets`); a leader's SyncGroup whose assignments
    /// would make it larger is refused. Kafka's bound is the offsets topic's
    /// `max.message.bytes` (1 MiB); this default leaves room for the key and batch header.
    pub group_metadata_bytes_max: usize,
    /// `offsets.retention.minutes` in milliseconds: how long an Empty group's offsets (a
    /// group without a protocol: each offset after its commit) are kept (KIP-211).
    pub offsets_retention_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            members_max: 1_000,
            groups_max: 100_000,
            member_metadata_bytes_max: 1024 * 1024,
            group_metadata_bytes_max: 1_000_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
        }
    }
}

/// Why the coordinator refuses a request; handlers turn these into Kafka error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    InvalidGroupId,
    UnknownMemberId,
    IllegalGeneration,
    RebalanceInProgress,
    InconsistentGroupProtocol,
    FencedInstanceId,
    MemberIdRequired,
    GroupMaxSizeReached,
    InvalidSessionTimeout,
    GroupIdNotFound,
    NonEmptyGroup,
    CoordinatorNotAvailable,
    /// Another broker coordinates the group (its offsets partition is led elsewhere).
    NotCoordinator,
    /// This broker leads the group's offsets partition but has not loaded its groups yet.
    CoordinatorLoadInProgress,
    /// Too many groups, or member metadata over its limit.
    LimitExceeded,
    /// The group's metadata record (the leader's assignments) is over its size limit.
    GroupMetadataTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name Kafka's tools print.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// Supported protocols (assignors) in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets an id with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members and their metadata.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub(crate) fn error(error: GroupError, member_id: &str) -> Self {
        JoinResponse {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// From the leader: each member's assignment.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub(crate) fn error(error: GroupError) -> Self {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer to a parked request, or a group record to persist first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Join(Token, JoinResponse),
    Sync(Token, SyncResponse),
    /// Persist `record`; the answers in `then` (which tell members the generation or the
    /// assignments it holds) go out only once it is durable. Should that fail, they get an
    /// error instead and [`super::Groups::store_failed`] is told.
    Store {
        record: GroupRecord,
        then: Vec<Output>,
    },
}

/// A group as Kafka's GroupMetadata record (key v2, value v3) stores it in
/// `__consumer_offsets`: written when a join phase ends (without members: before any member
/// learns the new generation, so a restarted or new coordinator never hands a generation
/// out twice), with the leader's assignments (every member: the Stable group a replay
/// restores, members resuming with heartbeats), when a static member's id is replaced, and
/// when the group empties. `state_timestamp_ms` is -1 when unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub group_id: String,
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<RecordedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

impl GroupRecord {
    /// Bytes of the encoded value (v3: strings with an i16 length, bytes with an i32 one).
    pub fn value_bytes(&self) -> usize {
        let text = |text: &str| 2 + text.len();
        let nullable = |text: &Option<String>| 2 + text.as_ref().map_or(0, String::len);
        let members: usize = self
            .members
            .iter()
            .map(|member| {
                text(&member.member_id)
                    + nullable(&member.group_instance_id)
                    + text(&member.client_id)
                    + text(&member.client_host)
                    + 4
                    + 4
                    + 4
                    + member.subscription.len()
                    + 4
                    + member.assignment.len()
            })
            .sum();
        2 + text(&self.protocol_type)
            + 4
            + nullable(&self.protocol_name)
            + nullable(&self.leader)
            + 8
            + 4
            + members
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub(super) last_heartbeat_ms: i64,
    pub(super) awaiting_join: Option<Token>,
    pub(super) awaiting_sync: Option<Token>,
}

impl Member {
    /// This member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// When the group entered its current state (Kafka's `currentStateTimestamp`): an Empty
    /// group's offsets expire `offsets.retention.minutes` after it. `None` for a group
    /// that never changed state (one with only simple commits).
    pub state_timestamp_ms: Option<i64>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, valid until their session times out.
    pub(super) pending: BTreeMap<String, i64>,
    /// When the join phase ends at the latest.
    pub(super) join_deadline_ms: i64,
    /// A new group does not complete its first join before this (initial delay).
    pub(super) initial_delay_until_ms: i64,
}

impl Group {
    pub(super) fn new(group_id: &str) -> Self {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            state_timestamp_ms: None,
            pending: BTreeMap::new(),
            join_deadline_ms: 0,
            initial_delay_until_ms: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Moves to `state` at `now_ms`.
    pub(super) fn enter(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = Some(now_ms);
    }

    pub(super) fn member_for_instance(&self, instance_id: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|member| member.group_instance_id.as_deref() == Some(instance_id))
    }

    /// The protocols every member supports; `None` without members.
    fn common_protocols(&self) -> Option<BTreeSet<&str>> {
        let mut candidates: Option<BTreeSet<&str>> = None;
        for member in self.members.values() {
            let supported: BTreeSet<&str> = member
                .protocols
                .iter()
                .map(|(name, _)| name.as_str())
                .collect();
            candidates = Some(match candidates {
                None => supported,
                Some(current) => current.intersection(&supported).copied().collect(),
            });
        }
        candidates
    }

    /// A protocol every member supports: the one most members prefer (Kafka's vote).
    pub(super) fn select_protocol(&self) -> Option<String> {
        let candidates = self.common_protocols()?;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(name.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|&(name, count)| (count, std::cmp::Reverse(name)))
            .map(|(name, _)| name.to_string())
    }

    /// Whether `protocols` share at least one with what every current member supports.
    pub(super) fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // One set of what all members share, not a search of every member per protocol:
        // a JoinGroup may list many.
        let common = self.common_protocols().unwrap_or_default();
        protocols
            .iter()
            .any(|(name, _)| common.contains(name.as_str()))
    }
}
