//! The group model the state machine works on: its configuration, errors, the requests and
//! answers it exchanges, and the members and groups it keeps.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

/// Identifies a parked request so its answer can find the waiting connection.
pub type Token = u64;

/// The outcome for one member of a batched LeaveGroup.
pub type MemberResult = Result<(), GroupError>;

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
    /// Bytes of protocol metadata plus assignment one member may hold.
    pub member_metadata_bytes_max: usize,
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
    /// Too many groups, or member metadata over its limit.
    LimitExceeded,
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

/// An answer to a parked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Join(Token, JoinResponse),
    Sync(Token, SyncResponse),
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
            pending: BTreeMap::new(),
            join_deadline_ms: 0,
            initial_delay_until_ms: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
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
