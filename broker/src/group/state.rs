//! The classic consumer group protocol as a state machine without I/O.
//!
//! Inputs are requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and ticks of a clock
//! passed in as `now_ms`; outputs are answers. JoinGroup and SyncGroup answers are often
//! delayed (the group waits for every member to rejoin, followers wait for the leader's
//! assignment): such a request is parked under its [`Token`] and answered by a later call's
//! [`Output`]. Answers that tell a new generation or assignment come wrapped in an
//! [`Output::Store`] of the group's record: the coordinator sends them once the record is
//! durable, so a generation is never handed out twice. Assignment is the clients' business
//! (the leader computes it), so eager and cooperative rebalancing both work through the
//! same states:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!   ▲                   ▲                                              │ leader's sync
//!   └── last member ────┴──── join with new metadata, leave, expiry ◀── Stable
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;

mod model;

pub use model::*;

/// All groups of this coordinator.
#[derive(Debug)]
pub struct Groups {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    /// Random member id suffixes: unique across restarts, unlike a counter.
    member_ids: Box<dyn MemberIdSource>,
}

impl Groups {
    pub fn new(config: GroupConfig, member_ids: Box<dyn MemberIdSource>) -> Self {
        Groups {
            config,
            groups: BTreeMap::new(),
            member_ids,
        }
    }

    pub fn get(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn list(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Makes sure a group exists (one that only has committed offsets is Empty).
    pub fn ensure(&mut self, group_id: &str) -> Result<(), GroupError> {
        if !self.groups.contains_key(group_id) {
            if self.groups.len() >= self.config.groups_max {
                return Err(GroupError::LimitExceeded);
            }
            self.groups
                .insert(group_id.to_string(), Group::new(group_id));
        }
        Ok(())
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// A group as `__consumer_offsets` last stored it (`record`; `None` for a group known
    /// only by its committed offsets), loaded at `now_ms` (as Kafka loads one): a record with
    /// members (the leader's assignments) is a Stable group whose members resume with
    /// heartbeats, their sessions running from `now_ms`; one without is Empty. A record of a
    /// join phase that ended without its SyncGroup is Empty too (its members rejoin), with
    /// at least that generation, so the next join phase hands out a higher one.
    pub fn restore(
        &mut self,
        group_id: &str,
        record: Option<&GroupRecord>,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        self.ensure(group_id)?;
        let (Some(group), Some(record)) = (self.groups.get_mut(group_id), record) else {
            return Ok(());
        };
        group.generation_id = group.generation_id.max(record.generation_id);
        group.protocol_type =
            (!record.protocol_type.is_empty()).then(|| record.protocol_type.clone());
        let stored_at = (record.state_timestamp_ms >= 0).then_some(record.state_timestamp_ms);
        if record.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol_name = None;
            group.leader = None;
            group.members.clear();
            // A join phase's record is not the moment the group emptied: that is now.
            group.state_timestamp_ms = if record.leader.is_none() {
                stored_at
            } else {
                Some(now_ms)
            };
            return Ok(());
        }
        let protocol = record.protocol_name.clone().unwrap_or_default();
        group.members = record
            .members
            .iter()
            .map(|recorded| {
                let member = Member {
                    member_id: recorded.member_id.clone(),
                    group_instance_id: recorded.group_instance_id.clone(),
                    client_id: recorded.client_id.clone(),
                    client_host: recorded.client_host.clone(),
                    session_timeout_ms: recorded.session_timeout_ms,
                    rebalance_timeout_ms: recorded.rebalance_timeout_ms,
                    protocols: vec![(protocol.clone(), recorded.subscription.clone())],
                    assignment: recorded.assignment.clone(),
                    last_heartbeat_ms: now_ms,
                    awaiting_join: None,
                    awaiting_sync: None,
                };
                (member.member_id.clone(), member)
            })
            .collect();
        group.protocol_name = record.protocol_name.clone();
        group.leader = record
            .leader
            .clone()
            .filter(|leader| group.members.contains_key(leader))
            .or_else(|| group.members.keys().next().cloned());
        group.state = GroupState::Stable;
        group.state_timestamp_ms = stored_at.or(Some(now_ms));
        Ok(())
    }

    /// A group record of generation `generation_id` did not become durable (its answers got
    /// an error instead): the members must not keep a generation or assignment the log may
    /// not have, so the group rebalances (as Kafka does when storing the assignment fails).
    pub fn store_failed(&mut self, group_id: &str, generation_id: i32, now_ms: i64) -> Vec<Output> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Vec::new();
        };
        if group.generation_id != generation_id
            || !matches!(
                group.state,
                GroupState::CompletingRebalance | GroupState::Stable
            )
        {
            return Vec::new();
        }
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
        }
        let mut outputs = prepare_rebalance(group, now_ms, self.config.initial_rebalance_delay_ms);
        outputs.extend(maybe_complete_join(group, now_ms));
        outputs
    }

    /// Removes an Empty group (DeleteGroups); its offsets are the caller's to delete.
    pub fn delete(&mut self, group_id: &str) -> Result<(), GroupError> {
        match self.groups.get(group_id) {
            None => Err(GroupError::GroupIdNotFound),
            Some(group) if !group.is_empty() => Err(GroupError::NonEmptyGroup),
            Some(_) => {
                self.groups.remove(group_id);
                Ok(())
            }
        }
    }

    /// Forgets a group whatever its state (its coordinator moved to another broker; its
    /// members find the new one and join there).
    pub fn forget(&mut self, group_id: &str) {
        self.groups.remove(group_id);
    }

    /// Kafka's form: the client id (a static member's instance id), "-", a random UUID.
    fn new_member_id(&mut self, client_id: &str, instance_id: Option<&str>) -> String {
        let prefix = instance_id.unwrap_or(client_id);
        format!("{prefix}-{}", self.member_ids.next_id().hyphenated())
    }

    pub fn join(&mut self, token: Token, request: JoinRequest, now_ms: i64) -> Vec<Output> {
        let reply = |response| vec![Output::Join(token, response)];
        if request.group_id.is_empty() {
            return reply(JoinResponse::error(
                GroupError::InvalidGroupId,
                &request.member_id,
            ));
        }
        if request.session_timeout_ms < self.config.session_timeout_ms_min
            || request.session_timeout_ms > self.config.session_timeout_ms_max
        {
            return reply(JoinResponse::error(
                GroupError::InvalidSessionTimeout,
                &request.member_id,
            ));
        }
        let metadata_bytes: usize = request
            .protocols
            .iter()
            .map(|(name, metadata)| name.len() + metadata.len())
            .sum();
        if metadata_bytes > self.config.member_metadata_bytes_max {
            return reply(JoinResponse::error(
                GroupError::LimitExceeded,
                &request.member_id,
            ));
        }
        if !self.groups.contains_key(&request.group_id) {
            if !request.member_id.is_empty() {
                return reply(JoinResponse::error(
                    GroupError::UnknownMemberId,
                    &request.member_id,
                ));
            }
            if let Err(error) = self.ensure(&request.group_id) {
                return reply(JoinResponse::error(error, &request.member_id));
            }
        }
        let members_max = self.config.members_max;
        let Some(group) = self.groups.get(&request.group_id) else {
            return reply(JoinResponse::error(
                GroupError::CoordinatorNotAvailable,
                &request.member_id,
            ));
        };
        if !group.supports(&request.protocol_type, &request.protocols) {
            return reply(JoinResponse::error(
                GroupError::InconsistentGroupProtocol,
                &request.member_id,
            ));
        }
        let known = group.members.contains_key(&request.member_id);
        let pending = group.pending.contains_key(&request.member_id);
        if request.member_id.is_empty() {
            if let Some(instance_id) = request.group_instance_id.clone() {
                return self.join_static_unknown(token, request, &instance_id, now_ms);
            }
            if group.members.len() + group.pending.len() >= members_max {
                return reply(JoinResponse::error(GroupError::GroupMaxSizeReached, ""));
            }
            let member_id = self.new_member_id(&request.client_id, None);
            if request.require_known_member_id {
                if let Some(group) = self.groups.get_mut(&request.group_id) {
                    group.pending.insert(
                        member_id.clone(),
                        now_ms + i64::from(request.session_timeout_ms),
                    );
                }
                return reply(JoinResponse::error(
                    GroupError::MemberIdRequired,
                    &member_id,
                ));
            }
            return self.add_member_and_rebalance(token, request, member_id, now_ms);
        }
        if pending {
            if let Some(group) = self.groups.get_mut(&request.group_id) {
                group.pending.remove(&request.member_id);
            }
            let member_id = request.member_id.clone();
            return self.add_member_and_rebalance(token, request, member_id, now_ms);
        }
        if !known {
            return reply(JoinResponse::error(
                GroupError::UnknownMemberId,
                &request.member_id,
            ));
        }
        if let Some(member) = group.members.get(&request.member_id)
            && member.group_instance_id != request.group_instance_id
        {
            return reply(JoinResponse::error(
                GroupError::FencedInstanceId,
                &request.member_id,
            ));
        }
        self.rejoin_known(token, request, now_ms)
    }

    /// A static member coming back with a new member id (restart): it replaces its old id.
    /// When the group is stable and nothing changed, it rejoins without a rebalance.
    fn join_static_unknown(
        &mut self,
        token: Token,
        request: JoinRequest,
        instance_id: &str,
        now_ms: i64,
    ) -> Vec<Output> {
        let member_id = self.new_member_id(&request.client_id, Some(instance_id));
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return Vec::new();
        };
        let Some(old) = group.member_for_instance(instance_id).cloned() else {
            return self.add_member_and_rebalance(token, request, member_id, now_ms);
        };
        let mut replaced = old.clone();
        replaced.member_id = member_id.clone();
        replaced.last_heartbeat_ms = now_ms;
        replaced.awaiting_join = None;
        replaced.awaiting_sync = None;
        let unchanged = old.protocols == request.protocols;
        group.members.remove(&old.member_id);
        let mut outputs = Vec::new();
        // The old incarnation's parked requests are fenced.
        if let Some(parked) = old.awaiting_join {
            outputs.push(Output::Join(
                parked,
                JoinResponse::error(GroupError::FencedInstanceId, &old.member_id),
            ));
        }
        if let Some(parked) = old.awaiting_sync {
            outputs.push(Output::Sync(
                parked,
                SyncResponse::error(GroupError::FencedInstanceId),
            ));
        }
        if group.leader.as_deref() == Some(old.member_id.as_str()) {
            group.leader = Some(member_id.clone());
        }
        group.members.insert(member_id.clone(), replaced);
        if group.state == GroupState::Stable && unchanged {
            // The new id is stored before the member learns it (as Kafka): a coordinator
            // loading the group after a move knows it.
            let assignments: BTreeMap<String, Bytes> = group
                .members
                .values()
                .map(|member| (member.member_id.clone(), member.assignment.clone()))
                .collect();
            outputs.push(Output::Store {
                record: group_record(group, Some(&assignments)),
                then: vec![Output::Join(token, current_generation(group, &member_id))],
            });
            return outputs;
        }
        outputs.extend(self.rejoin_known(
            token,
            JoinRequest {
                member_id,
                ..request
            },
            now_ms,
        ));
        outputs
    }

    fn add_member_and_rebalance(
        &mut self,
        token: Token,
        request: JoinRequest,
        member_id: String,
        now_ms: i64,
    ) -> Vec<Output> {
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return Vec::new();
        };
        if group.members.len() >= self.config.members_max {
            return vec![Output::Join(
                token,
                JoinResponse::error(GroupError::GroupMaxSizeReached, &member_id),
            )];
        }
        group.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                group_instance_id: request.group_instance_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                session_timeout_ms: request.session_timeout_ms,
                rebalance_timeout_ms: request.rebalance_timeout_ms,
                protocols: request.protocols.clone(),
                assignment: Bytes::new(),
                last_heartbeat_ms: now_ms,
                awaiting_join: Some(token),
                awaiting_sync: None,
            },
        );
        if group.members.len() == 1 {
            // The first member decides the protocol type (an Empty group keeps its old one).
            group.protocol_type = Some(request.protocol_type.clone());
        }
        let mut outputs = prepare_rebalance(group, now_ms, self.config.initial_rebalance_delay_ms);
        outputs.extend(maybe_complete_join(group, now_ms));
        outputs
    }

    fn rejoin_known(&mut self, token: Token, request: JoinRequest, now_ms: i64) -> Vec<Output> {
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return Vec::new();
        };
        let Some(member) = group.members.get_mut(&request.member_id) else {
            return vec![Output::Join(
                token,
                JoinResponse::error(GroupError::UnknownMemberId, &request.member_id),
            )];
        };
        let unchanged = member.protocols == request.protocols;
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.last_heartbeat_ms = now_ms;
        let mut outputs = Vec::new();
        if let Some(previous) = member.awaiting_join.replace(token) {
            // A member retried its join: the older request is superseded.
            outputs.push(Output::Join(
                previous,
                JoinResponse::error(GroupError::RebalanceInProgress, &request.member_id),
            ));
        }
        let is_leader = group.leader.as_deref() == Some(request.member_id.as_str());
        match group.state {
            GroupState::CompletingRebalance | GroupState::Stable if unchanged && !is_leader => {
                // Same metadata: hand back the current generation, no new rebalance.
                if let Some(member) = group.members.get_mut(&request.member_id) {
                    member.awaiting_join = None;
                }
                outputs.push(Output::Join(
                    token,
                    current_generation(group, &request.member_id),
                ));
            }
            GroupState::PreparingRebalance => outputs.extend(maybe_complete_join(group, now_ms)),
            _ => {
                outputs.extend(prepare_rebalance(
                    group,
                    now_ms,
                    self.config.initial_rebalance_delay_ms,
                ));
                outputs.extend(maybe_complete_join(group, now_ms));
            }
        }
        outputs
    }

    pub fn sync(&mut self, token: Token, request: SyncRequest, now_ms: i64) -> Vec<Output> {
        let reply = |error| vec![Output::Sync(token, SyncResponse::error(error))];
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return reply(GroupError::UnknownMemberId);
        };
        if let Err(error) = check_member(
            group,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        ) {
            return reply(error);
        }
        if request
            .protocol_type
            .as_ref()
            .is_some_and(|kind| Some(kind) != group.protocol_type.as_ref())
            || request
                .protocol_name
                .as_ref()
                .is_some_and(|name| Some(name) != group.protocol_name.as_ref())
        {
            return reply(GroupError::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty => reply(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => reply(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                let assignment = group
                    .members
                    .get(&request.member_id)
                    .map(|member| member.assignment.clone())
                    .unwrap_or_default();
                vec![Output::Sync(token, sync_ok(group, assignment))]
            }
            GroupState::CompletingRebalance => {
                if let Some(member) = group.members.get_mut(&request.member_id) {
                    member.awaiting_sync = Some(token);
                    member.last_heartbeat_ms = now_ms;
                }
                if group.leader.as_deref() != Some(request.member_id.as_str()) {
                    return Vec::new();
                }
                let assignments: BTreeMap<String, Bytes> =
                    request.assignments.into_iter().collect();
                // Stamped with the moment the group becomes Stable (if it does).
                let record = GroupRecord {
                    state_timestamp_ms: now_ms,
                    ..group_record(group, Some(&assignments))
                };
                if record.value_bytes() > self.config.group_metadata_bytes_max {
                    // Kafka: the record cannot be stored, every member waiting for its
                    // assignment gets the error and the group rebalances.
                    let mut outputs = Vec::new();
                    for member in group.members.values_mut() {
                        if let Some(parked) = member.awaiting_sync.take() {
                            outputs.push(Output::Sync(
                                parked,
                                SyncResponse::error(GroupError::GroupMetadataTooLarge),
                            ));
                        }
                    }
                    outputs.extend(prepare_rebalance(
                        group,
                        now_ms,
                        self.config.initial_rebalance_delay_ms,
                    ));
                    outputs.extend(maybe_complete_join(group, now_ms));
                    return outputs;
                }
                let mut outputs = Vec::new();
                let response_template = sync_ok(group, Bytes::new());
                for member in group.members.values_mut() {
                    member.assignment = assignments
                        .get(&member.member_id)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(parked) = member.awaiting_sync.take() {
                        outputs.push(Output::Sync(
                            parked,
                            SyncResponse {
                                assignment: member.assignment.clone(),
                                ..response_template.clone()
                            },
                        ));
                    }
                }
                group.enter(GroupState::Stable, now_ms);
                vec![Output::Store {
                    record,
                    then: outputs,
                }]
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        check_member(group, member_id, group_instance_id, generation_id)?;
        if let Some(member) = group.members.get_mut(member_id) {
            member.last_heartbeat_ms = now_ms;
        }
        match group.state {
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// Removes members (LeaveGroup); each gets its own result. Remaining members rebalance.
    pub fn leave(
        &mut self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Result<(Vec<MemberResult>, Vec<Output>), GroupError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = Vec::new();
        for (member_id, instance_id) in leaving {
            // v3+ may name a static member by instance id alone.
            let target = if member_id.is_empty() {
                instance_id
                    .as_deref()
                    .and_then(|instance| group.member_for_instance(instance))
                    .map(|member| member.member_id.clone())
            } else {
                Some(member_id.clone())
            };
            let Some(target) = target else {
                results.push(Err(GroupError::UnknownMemberId));
                continue;
            };
            if group.pending.remove(&target).is_some() {
                results.push(Ok(()));
                continue;
            }
            match group.members.get(&target) {
                None => results.push(Err(GroupError::UnknownMemberId)),
                Some(member)
                    if instance_id.is_some() && member.group_instance_id != *instance_id =>
                {
                    results.push(Err(GroupError::FencedInstanceId));
                }
                Some(_) => {
                    if let Some(member) = group.members.remove(&target) {
                        removed.push(member);
                    }
                    results.push(Ok(()));
                }
            }
        }
        let mut outputs = Vec::new();
        for member in &removed {
            if let Some(parked) = member.awaiting_join {
                outputs.push(Output::Join(
                    parked,
                    JoinResponse::error(GroupError::UnknownMemberId, &member.member_id),
                ));
            }
            if let Some(parked) = member.awaiting_sync {
                outputs.push(Output::Sync(
                    parked,
                    SyncResponse::error(GroupError::UnknownMemberId),
                ));
            }
        }
        if !removed.is_empty() {
            outputs.extend(after_members_left(
                group,
                now_ms,
                self.config.initial_rebalance_delay_ms,
            ));
        }
        Ok((results, outputs))
    }

    /// Expires members whose session timed out and completes join phases that are due.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Output> {
        let mut outputs = Vec::new();
        for group in self.groups.values_mut() {
            group.pending.retain(|_, expiry| *expiry > now_ms);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|member| {
                    member.awaiting_join.is_none()
                        && now_ms.saturating_sub(member.last_heartbeat_ms)
                            > i64::from(member.session_timeout_ms)
                })
                .map(|member| member.member_id.clone())
                .collect();
            for member_id in &expired {
                if let Some(member) = group.members.remove(member_id)
                    && let Some(parked) = member.awaiting_sync
                {
                    outputs.push(Output::Sync(
                        parked,
                        SyncResponse::error(GroupError::UnknownMemberId),
                    ));
                }
            }
            if !expired.is_empty() {
                outputs.extend(after_members_left(
                    group,
                    now_ms,
                    self.config.initial_rebalance_delay_ms,
                ));
            }
            outputs.extend(maybe_complete_join(group, now_ms));
        }
        outputs
    }

    /// Whether an offset commit from this member and generation may be stored now. A
    /// generation of -1 with no member id is a simple (standalone) commit, allowed while the
    /// group has no members.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        let Some(group) = self.groups.get(group_id) else {
            return if generation_id < 0 {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration)
            };
        };
        if generation_id < 0 && member_id.is_empty() {
            return if group.is_empty() {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        }
        check_member(group, member_id, group_instance_id, generation_id)?;
        match group.state {
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }
}

fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation_id: i32,
) -> Result<(), GroupError> {
    if let Some(instance_id) = instance_id
        && let Some(static_member) = group.member_for_instance(instance_id)
        && static_member.member_id != member_id
    {
        return Err(GroupError::FencedInstanceId);
    }
    let member = group
        .members
        .get(member_id)
        .ok_or(GroupError::UnknownMemberId)?;
    if instance_id.is_some() && member.group_instance_id.as_deref() != instance_id {
        return Err(GroupError::FencedInstanceId);
    }
    if generation_id != group.generation_id {
        return Err(GroupError::IllegalGeneration);
    }
    Ok(())
}

/// The group's metadata record: with every member's subscription and assignment when
/// `assignments` is given (the leader's SyncGroup), else just the generation, protocol and
/// leader (the end of a join phase: small, so it never fails on size).
fn group_record(group: &Group, assignments: Option<&BTreeMap<String, Bytes>>) -> GroupRecord {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    let members = assignments.map_or_else(Vec::new, |assignments| {
        group
            .members
            .values()
            .map(|member| RecordedMember {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                rebalance_timeout_ms: member.rebalance_timeout_ms,
                session_timeout_ms: member.session_timeout_ms,
                subscription: member.metadata(&protocol),
                assignment: assignments
                    .get(&member.member_id)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect()
    });
    GroupRecord {
        group_id: group.group_id.clone(),
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        generation_id: group.generation_id,
        protocol_name: group.protocol_name.clone(),
        leader: group.leader.clone(),
        state_timestamp_ms: group.state_timestamp_ms.unwrap_or(-1),
        members,
    }
}

fn sync_ok(group: &Group, assignment: Bytes) -> SyncResponse {
    SyncResponse {
        error: None,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        assignment,
    }
}

fn current_generation(group: &Group, member_id: &str) -> JoinResponse {
    let is_leader = group.leader.as_deref() == Some(member_id);
    JoinResponse {
        error: None,
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members: if is_leader {
            joined_members(group)
        } else {
            Vec::new()
        },
    }
}

fn joined_members(group: &Group) -> Vec<JoinedMember> {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    group
        .members
        .values()
        .map(|member| JoinedMember {
            member_id: member.member_id.clone(),
            group_instance_id: member.group_instance_id.clone(),
            metadata: member.metadata(&protocol),
        })
        .collect()
}

/// Starts (or keeps) a join phase. Members waiting for a sync learn that a new rebalance
/// began.
fn prepare_rebalance(group: &mut Group, now_ms: i64, initial_delay_ms: i64) -> Vec<Output> {
    let mut outputs = Vec::new();
    for member in group.members.values_mut() {
        if let Some(parked) = member.awaiting_sync.take() {
            outputs.push(Output::Sync(
                parked,
                SyncResponse::error(GroupError::RebalanceInProgress),
            ));
        }
    }
    if group.state == GroupState::PreparingRebalance {
        return outputs;
    }
    let rebalance_timeout_ms = group
        .members
        .values()
        .map(|member| i64::from(member.rebalance_timeout_ms))
        .max()
        .unwrap_or(0);
    group.initial_delay_until_ms = if group.state == GroupState::Empty {
        now_ms + initial_delay_ms.min(rebalance_timeout_ms)
    } else {
        now_ms
    };
    group.join_deadline_ms = now_ms + rebalance_timeout_ms;
    group.enter(GroupState::PreparingRebalance, now_ms);
    outputs
}

/// Ends the join phase when every member rejoined (after any initial delay) or the deadline
/// passed: members that did not rejoin are dropped, a new generation starts and every parked
/// join is answered (the leader with the member list).
fn maybe_complete_join(group: &mut Group, now_ms: i64) -> Vec<Output> {
    if group.state != GroupState::PreparingRebalance {
        return Vec::new();
    }
    let all_joined = group
        .members
        .values()
        .all(|member| member.awaiting_join.is_some());
    if !(all_joined && now_ms >= group.initial_delay_until_ms || now_ms >= group.join_deadline_ms) {
        return Vec::new();
    }
    group
        .members
        .retain(|_, member| member.awaiting_join.is_some());
    group.generation_id += 1;
    if group.members.is_empty() {
        group.enter(GroupState::Empty, now_ms);
        group.protocol_name = None;
        group.leader = None;
        return vec![Output::Store {
            record: group_record(group, None),
            then: Vec::new(),
        }];
    }
    group.protocol_name = group.select_protocol();
    if !group
        .leader
        .as_ref()
        .is_some_and(|leader| group.members.contains_key(leader))
    {
        group.leader = group.members.keys().next().cloned();
    }
    group.enter(GroupState::CompletingRebalance, now_ms);
    let mut outputs = Vec::new();
    let member_ids: Vec<String> = group.members.keys().cloned().collect();
    for member_id in member_ids {
        let response = current_generation(group, &member_id);
        if let Some(member) = group.members.get_mut(&member_id) {
            member.last_heartbeat_ms = now_ms;
            if let Some(parked) = member.awaiting_join.take() {
                outputs.push(Output::Join(parked, response));
            }
        }
    }
    // Nobody learns the new generation before it is durable.
    vec![Output::Store {
        record: group_record(group, None),
        then: outputs,
    }]
}

fn after_members_left(group: &mut Group, now_ms: i64, initial_delay_ms: i64) -> Vec<Output> {
    if group.members.is_empty() && group.state != GroupState::PreparingRebalance {
        group.enter(GroupState::Empty, now_ms);
        group.generation_id += 1;
        group.protocol_name = None;
        group.leader = None;
        return vec![Output::Store {
            record: group_record(group, None),
            then: Vec::new(),
        }];
    }
    let mut outputs = prepare_rebalance(group, now_ms, initial_delay_ms);
    outputs.extend(maybe_complete_join(group, now_ms));
    outputs
}
