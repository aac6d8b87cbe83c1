//! The group coordinator: the pure [`state::Groups`] machine driven by thin async code, and
//! committed offsets persisted in the internal `__consumer_offsets` topic.
//!
//! In a cluster that topic is replicated like any other: a group belongs to the leader of
//! its offsets partition, which reloads the partition when it becomes leader, answers
//! NOT_COORDINATOR for groups it does not own, and acknowledges a commit only once the ISR
//! has it. A commit shows in OffsetFetch only from then on (before, the log may still lose
//! it). Each group's metadata record is stored there too, and a JoinGroup or SyncGroup
//! answer that tells a generation or assignment waits until that record is durable: a
//! restarted or new coordinator replays the group (a Stable one with its members, who
//! resume with heartbeats) and never hands a generation out again. Offsets of Empty groups
//! expire after `offsets.retention.minutes` ([`expiry`]), deleted by tombstones.

#[cfg(test)]
mod coordinator_tests;
pub mod expiry;
pub mod offsets;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use lmq_storage::StorageError;
use tokio::sync::oneshot;

use crate::coordinator_log::{CoordinatorLog, Durable, LogError, Ownership, partition_for};
use crate::partition::Partition;
use offsets::{CommittedOffset, OFFSETS_TOPIC, OffsetKey, OffsetTable, Replayed};
use state::{
    GroupConfig, GroupError, GroupRecord, Groups, JoinRequest, JoinResponse, Output, SyncRequest,
    SyncResponse, Token,
};

#[derive(Debug)]
enum Waiter {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

/// An offsets table change: a commit, or a tombstone (`None`).
type OffsetChange = (OffsetKey, Option<CommittedOffset>);

/// Kafka's `offsets.commit.timeout.ms`: how long a group change may wait for the ISR.
pub(crate) const OFFSETS_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug)]
struct Inner {
    groups: Groups,
    offsets: OffsetTable,
    /// Offset changes appended but not yet durable, by (offsets partition, last offset of
    /// their batch). Applied to `offsets` in log order once durable, so OffsetFetch never
    /// shows a commit the log may still lose; dropped when they fail.
    pending: BTreeMap<(usize, i64), Vec<OffsetChange>>,
    /// Transactional offset commits by producer id, not shown to OffsetFetch until the
    /// producer's COMMIT marker reaches their offsets partition (dropped on ABORT).
    transactional: BTreeMap<i64, offsets::TransactionalOffsets>,
    /// Group records that did not become durable: (group, generation), for the next tick.
    failed_stores: Vec<(String, i32)>,
    waiters: HashMap<Token, Waiter>,
    next_token: Token,
    /// The broker stops: group calls are answered at once, never parked.
    stopping: bool,
}

/// An answer and the connection waiting for it.
#[derive(Debug)]
enum Answer {
    Join(oneshot::Sender<JoinResponse>, JoinResponse),
    Sync(oneshot::Sender<SyncResponse>, SyncResponse),
}

impl Answer {
    fn send(self) {
        // A gone connection has nobody to tell.
        match self {
            Answer::Join(sender, response) => {
                let _ = sender.send(response);
            }
            Answer::Sync(sender, response) => {
                let _ = sender.send(response);
            }
        }
    }

    /// Sends `error` instead of the answer.
    fn fail(self, error: GroupError) {
        match self {
            Answer::Join(sender, response) => {
                let _ = sender.send(JoinResponse::error(error, &response.member_id));
            }
            Answer::Sync(sender, _) => {
                let _ = sender.send(SyncResponse::error(error));
            }
        }
    }
}

impl Inner {
    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    /// The waiting connection for an answer (`None` when it is gone or `output` is a store).
    fn answer(&mut self, output: Output) -> Option<Answer> {
        match output {
            Output::Join(token, response) => match self.waiters.remove(&token) {
                Some(Waiter::Join(sender)) => Some(Answer::Join(sender, response)),
                _ => None,
            },
            Output::Sync(token, response) => match self.waiters.remove(&token) {
                Some(Waiter::Sync(sender)) => Some(Answer::Sync(sender, response)),
                _ => None,
            },
            Output::Store { .. } => None,
        }
    }

    /// Holds offset changes until the batch at `position` is durable (applied at once when
    /// nothing was written).
    fn hold(&mut self, position: Option<(usize, i64)>, changes: Vec<OffsetChange>) {
        match position {
            Some(position) => {
                self.pending.insert(position, changes);
            }
            None => self.apply(changes),
        }
    }

    fn apply(&mut self, changes: Vec<OffsetChange>) {
        for (key, value) in changes {
            match value {
                Some(value) => self.offsets.put(key, value),
                None => {
                    self.offsets.remove(&key);
                }
            }
        }
    }

    /// Offsets partition `index` is durable up to `last_offset`: every change held for a
    /// batch up to there is applied, in log order.
    fn durable_up_to(&mut self, index: usize, last_offset: i64) {
        let done: Vec<(usize, i64)> = self
            .pending
            .range((index, i64::MIN)..=(index, last_offset))
            .map(|(position, _)| *position)
            .collect();
        for position in done {
            if let Some(changes) = self.pending.remove(&position) {
                self.apply(changes);
            }
        }
    }
}

/// What a group record that did not become durable tells the members waiting on it.
fn store_error(error: &CommitError) -> GroupError {
    match error {
        CommitError::Group(error) => *error,
        CommitError::Storage(StorageError::BatchTooLarge { .. }) => {
            GroupError::GroupMetadataTooLarge
        }
        CommitError::NotCoordinator => GroupError::NotCoordinator,
        CommitError::Storage(_) | CommitError::MetadataTooLarge(_) => {
            GroupError::CoordinatorNotAvailable
        }
    }
}

/// A failure to persist offsets, or a refusal by the group.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("group refused the commit: {0:?}")]
    Group(GroupError),
    #[error("offset metadata of {0} bytes is over the limit")]
    MetadataTooLarge(usize),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("this broker does not coordinate the group (its offsets partition moved)")]
    NotCoordinator,
}

impl From<LogError> for CommitError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Storage(error) => CommitError::Storage(error),
            LogError::NotCoordinator => CommitError::NotCoordinator,
        }
    }
}

/// One partition's commit as asked.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug)]
pub struct GroupCoordinator {
    /// Shared with the tasks that answer once a group record is durable.
    inner: Arc<Mutex<Inner>>,
    /// The offsets topic's partitions and which of them are loaded. Lock order: `inner`
    /// first.
    log: CoordinatorLog,
}

impl GroupCoordinator {
    /// Rebuilds committed offsets and groups by replaying the offsets topic's partitions;
    /// restored members' sessions run from `now_ms`.
    pub fn load(
        config: GroupConfig,
        offsets_partitions: Vec<Arc<Partition>>,
        now_ms: i64,
    ) -> Result<Self, StorageError> {
        let mut inner = Inner {
            groups: Groups::new(config, Box::new(state::RandomIds)),
            offsets: OffsetTable::default(),
            pending: BTreeMap::new(),
            transactional: BTreeMap::new(),
            failed_stores: Vec::new(),
            waiters: HashMap::new(),
            stopping: false,
            next_token: 0,
        };
        let log = CoordinatorLog::new(OFFSETS_TOPIC, offsets_partitions.clone());
        let mut loaded = Replayed::default();
        let mut records = 0usize;
        for partition in &offsets_partitions {
            records += replay(&log, partition, &mut loaded)?;
        }
        let groups = loaded.group_ids().len();
        restore(&mut inner, loaded, now_ms);
        tracing::info!(records, groups, "loaded committed offsets and groups");
        Ok(GroupCoordinator {
            inner: Arc::new(Mutex::new(inner)),
            log,
        })
    }

    /// Takes the cluster's offsets topic partitions (the topic was created or recreated).
    pub fn adopt(&self, partitions: Vec<Arc<Partition>>) {
        // Lock order as in `commit`: the groups, then the partitions.
        let mut inner = self.lock();
        // Changes held for a replaced partition's batches went with it.
        let replaced = self.log.adopt(partitions);
        inner
            .pending
            .retain(|(held, _), _| !replaced.contains(*held));
    }

    /// Whether this broker coordinates the group: it leads the group's offsets partition and
    /// has loaded its groups at the current leader epoch.
    pub fn check_owner(&self, group_id: &str) -> Result<(), GroupError> {
        match self.log.ownership(group_id) {
            Ownership::Owned => Ok(()),
            Ownership::Loading => Err(GroupError::CoordinatorLoadInProgress),
            Ownership::Elsewhere => Err(GroupError::NotCoordinator),
            // A cluster broker before the offsets topic exists.
            Ownership::NoTopic => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    /// Reloads the groups of offsets partition `index` from its log (this broker just became
    /// its leader: the log, replicated from the previous leader, is the truth); restored
    /// members' sessions run from `now_ms`.
    pub fn reload(&self, index: usize, now_ms: i64) -> Result<(), StorageError> {
        let Some(partition) = self.log.partition(index) else {
            return Ok(());
        };
        let count = self.log.partition_count();
        // The epoch this load is for (read first: a later leadership loads again).
        let epoch = partition.leader_epoch();
        let mut loaded = Replayed::default();
        let replayed = replay(&self.log, &partition, &mut loaded)?;
        let mut inner = self.lock();
        let mine = |group: &str| partition_for(group, count) == index;
        let stale: Vec<String> = inner
            .groups
            .list()
            .filter(|group| mine(&group.group_id))
            .map(|group| group.group_id.clone())
            .collect();
        for group_id in stale {
            inner.groups.forget(&group_id);
        }
        inner.offsets.retain_groups(|group| !mine(group));
        inner.pending.retain(|(held, _), _| *held != index);
        for offsets in inner.transactional.values_mut() {
            offsets.retain(|key, _| !mine(&key.group_id));
        }
        restore(&mut inner, loaded, now_ms);
        self.log.mark_loaded(index, epoch);
        tracing::info!(
            partition = index,
            records = replayed,
            "loaded the groups of an offsets partition"
        );
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Hands each answer to the connection waiting for it (gone connections are skipped);
    /// answers behind a group record wait until it is durable.
    fn deliver(&self, inner: &mut Inner, outputs: Vec<Output>, now_ms: i64) {
        for output in outputs {
            match output {
                Output::Store { record, then } => self.store(inner, &record, then, now_ms),
                answer => {
                    if let Some(answer) = inner.answer(answer) {
                        answer.send();
                    }
                }
            }
        }
    }

    /// Appends a group record; the answers in `then` go out once it is durable, or get an
    /// error (and the group rebalances at the next tick) when it cannot be.
    fn store(&self, inner: &mut Inner, record: &GroupRecord, then: Vec<Output>, now_ms: i64) {
        let mut answers = Vec::new();
        for output in then {
            if let Output::Store { .. } = output {
                self.deliver(inner, vec![output], now_ms);
            } else if let Some(answer) = inner.answer(output) {
                answers.push(answer);
            }
        }
        let group = (record.group_id.clone(), record.generation_id);
        let value = offsets::encode_group_value(record);
        let key = offsets::encode_group_key(&record.group_id);
        let mut durable = match self.persist(&group.0, &[(key, Some(value))], now_ms) {
            Ok(durable) => durable,
            Err(error) => return fail_store(inner, group, answers, &error),
        };
        match durable.settled() {
            Some(Ok(())) => answers.into_iter().for_each(Answer::send),
            Some(Err(error)) => fail_store(inner, group, answers, &error.into()),
            None => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return fail_store(inner, group, answers, &CommitError::NotCoordinator);
                };
                let shared = Arc::clone(&self.inner);
                runtime.spawn(async move {
                    match durable
                        .wait(OFFSETS_COMMIT_TIMEOUT)
                        .await
                        .map_err(CommitError::from)
                    {
                        Ok(()) => answers.into_iter().for_each(Answer::send),
                        Err(error) => fail_store(&mut lock(&shared), group, answers, &error),
                    }
                });
            }
        }
    }

    /// JoinGroup: answered when the join phase completes (or at once on errors).
    pub async fn join(&self, request: JoinRequest, now_ms: i64) -> JoinResponse {
        let member_id = request.member_id.clone();
        if let Err(error) = self.check_owner(&request.group_id) {
            return JoinResponse::error(error, &member_id);
        }
        let receiver = {
            let mut inner = self.lock();
            if inner.stopping {
                return JoinResponse::error(GroupError::NotCoordinator, &member_id);
            }
            let token = inner.token();
            let (sender, receiver) = oneshot::channel();
            inner.waiters.insert(token, Waiter::Join(sender));
            let outputs = inner.groups.join(token, request, now_ms);
            self.deliver(&mut inner, outputs, now_ms);
            receiver
        };
        // A waiter dropped unanswered: the group was unloaded (its offsets partition moved, or
        // the broker stops), which Kafka answers NOT_COORDINATOR.
        receiver
            .await
            .unwrap_or_else(|_| JoinResponse::error(GroupError::NotCoordinator, &member_id))
    }

    /// SyncGroup: followers wait for the leader's assignment.
    pub async fn sync(&self, request: SyncRequest, now_ms: i64) -> SyncResponse {
        if let Err(error) = self.check_owner(&request.group_id) {
            return SyncResponse::error(error);
        }
        let receiver = {
            let mut inner = self.lock();
            if inner.stopping {
                return SyncResponse::error(GroupError::NotCoordinator);
            }
            let token = inner.token();
            let (sender, receiver) = oneshot::channel();
            inner.waiters.insert(token, Waiter::Sync(sender));
            let outputs = inner.groups.sync(token, request, now_ms);
            self.deliver(&mut inner, outputs, now_ms);
            receiver
        };
        receiver
            .await
            .unwrap_or_else(|_| SyncResponse::error(GroupError::NotCoordinator))
    }

    /// The broker stops: every parked JoinGroup and SyncGroup is answered NOT_COORDINATOR
    /// now (the clients find the next coordinator) and no group call parks any more.
    pub fn shutdown(&self) {
        let mut inner = self.lock();
        inner.stopping = true;
        inner.waiters.clear();
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        self.check_owner(group_id)?;
        self.lock()
            .groups
            .heartbeat(group_id, member_id, instance_id, generation_id, now_ms)
    }

    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Result<Vec<state::MemberResult>, GroupError> {
        self.check_owner(group_id)?;
        let mut inner = self.lock();
        let (results, outputs) = inner.groups.leave(group_id, members, now_ms)?;
        self.deliver(&mut inner, outputs, now_ms);
        Ok(results)
    }

    /// Session expiry, join deadlines and group records that failed; the server calls it
    /// several times a second.
    pub fn tick(&self, now_ms: i64) {
        let mut inner = self.lock();
        let mut outputs = Vec::new();
        for (group_id, generation_id) in std::mem::take(&mut inner.failed_stores) {
            outputs.extend(inner.groups.store_failed(&group_id, generation_id, now_ms));
        }
        outputs.extend(inner.groups.tick(now_ms));
        self.deliver(&mut inner, outputs, now_ms);
    }

    /// Validates and persists a commit: the records reach the offsets topic, and the table
    /// changes only once they are durable ([`Self::wait_durable`]).
    pub fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        commits: &[OffsetCommit],
        now_ms: i64,
    ) -> Result<Durable, CommitError> {
        let member = (member_id, instance_id, generation_id);
        self.commit_as(group_id, member, commits, None, now_ms)
    }

    /// TxnOffsetCommit: validates like a commit and appends the offsets as part of producer
    /// `producer`'s transaction (id, epoch); they show in OffsetFetch only once the
    /// transaction's COMMIT marker reaches the group's offsets partition
    /// ([`GroupCoordinator::complete_transaction`]).
    pub fn txn_commit(
        &self,
        group_id: &str,
        producer: (i64, i16),
        member: (&str, Option<&str>, i32),
        commits: &[OffsetCommit],
        now_ms: i64,
    ) -> Result<Durable, CommitError> {
        self.commit_as(group_id, member, commits, Some(producer), now_ms)
    }

    /// A commit by `member` (member id, group instance id, generation), plain or as part of
    /// `transaction`'s producer (id, epoch).
    fn commit_as(
        &self,
        group_id: &str,
        (member_id, instance_id, generation_id): (&str, Option<&str>, i32),
        commits: &[OffsetCommit],
        transaction: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<Durable, CommitError> {
        self.check_owner(group_id).map_err(CommitError::Group)?;
        let mut inner = self.lock();
        inner
            .groups
            .validate_commit(group_id, member_id, instance_id, generation_id)
            .map_err(CommitError::Group)?;
        let entries = offset_entries(group_id, commits, now_ms)?;
        inner.groups.ensure(group_id).map_err(CommitError::Group)?;
        let records: Vec<(Bytes, Option<Bytes>)> = entries
            .iter()
            .map(|(key, value)| (offsets::encode_key(key), Some(offsets::encode_value(value))))
            .collect();
        let Some(producer) = transaction else {
            let durable = self.persist(group_id, &records, now_ms)?;
            let changes = entries
                .into_iter()
                .map(|(key, value)| (key, Some(value)))
                .collect();
            inner.hold(durable.position, changes);
            return Ok(durable);
        };
        let (index, _) = self
            .log
            .partition_of(group_id)
            .ok_or(CommitError::NotCoordinator)?;
        let durable = self
            .log
            .append_transactional(index, &records, producer, now_ms)?;
        inner
            .transactional
            .entry(producer.0)
            .or_default()
            .extend(entries);
        Ok(durable)
    }

    /// A transaction marker of producer `producer_id` is durable in offsets partition
    /// `index`: the producer's transactional offsets of that partition's groups count
    /// (`commit`) or are dropped.
    pub fn complete_transaction(&self, index: usize, producer_id: i64, commit: bool) {
        let count = self.log.partition_count();
        let mut inner = self.lock();
        let Some(offsets) = inner.transactional.get_mut(&producer_id) else {
            return;
        };
        let (ended, kept): (Vec<_>, Vec<_>) = std::mem::take(offsets)
            .into_iter()
            .partition(|(key, _)| partition_for(&key.group_id, count) == index);
        offsets.extend(kept);
        if offsets.is_empty() {
            inner.transactional.remove(&producer_id);
        }
        if commit {
            inner.apply(
                ended
                    .into_iter()
                    .map(|(key, value)| (key, Some(value)))
                    .collect(),
            );
        }
    }

    /// Whether a transaction holds an offset commit of the group's `topic`-`partition` that
    /// its marker has not settled (OffsetFetch with `require_stable` answers
    /// UNSTABLE_OFFSET_COMMIT then, as Kafka).
    pub fn has_pending_transaction(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let key = OffsetKey {
            group_id: group_id.to_string(),
            topic: topic.to_string(),
            partition,
        };
        self.lock()
            .transactional
            .values()
            .any(|offsets| offsets.contains_key(&key))
    }

    /// Appends group records to the group's offsets partition as its leader. In a cluster
    /// the table changes at once but the client hears back only when the ISR has them.
    fn persist(
        &self,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<Durable, CommitError> {
        let (index, _) = self
            .log
            .partition_of(group_id)
            .ok_or(CommitError::NotCoordinator)?;
        Ok(self.log.append(index, records, now_ms)?)
    }

    /// Waits until a persisted offsets change is on disk and replicated (or `timeout`
    /// passes), then shows it to OffsetFetch; a failed one is dropped (the log may lose it).
    pub async fn wait_durable(
        &self,
        durable: Durable,
        timeout: std::time::Duration,
    ) -> Result<(), CommitError> {
        let position = durable.position;
        let result = durable.wait(timeout).await.map_err(CommitError::from);
        if let Some((index, last_offset)) = position {
            let mut inner = self.lock();
            match result {
                Ok(()) => inner.durable_up_to(index, last_offset),
                Err(_) => {
                    inner.pending.remove(&(index, last_offset));
                }
            }
        }
        result
    }

    /// Committed offsets of a group: every partition when `topics` is `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        let inner = self.lock();
        match topics {
            None => inner
                .offsets
                .of_group(group_id)
                .map(|(key, value)| (key.topic.clone(), key.partition, Some(value.clone())))
                .collect(),
            Some(topics) => topics
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions.iter().map(|&partition| {
                        let key = OffsetKey {
                            group_id: group_id.to_string(),
                            topic: topic.clone(),
                            partition,
                        };
                        (topic.clone(), partition, inner.offsets.get(&key).cloned())
                    })
                })
                .collect(),
        }
    }

    /// Deletes committed offsets of an Empty group's partitions (OffsetDelete).
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Durable, CommitError> {
        let mut inner = self.lock();
        let group = inner
            .groups
            .get(group_id)
            .ok_or(CommitError::Group(GroupError::GroupIdNotFound))?;
        if !group.is_empty() {
            return Err(CommitError::Group(GroupError::NonEmptyGroup));
        }
        let keys: Vec<OffsetKey> = partitions
            .iter()
            .map(|(topic, partition)| OffsetKey {
                group_id: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
            })
            .filter(|key| inner.offsets.get(key).is_some())
            .collect();
        let tombstones: Vec<(Bytes, Option<Bytes>)> = keys
            .iter()
            .map(|key| (offsets::encode_key(key), None))
            .collect();
        let durable = self.persist(group_id, &tombstones, now_ms)?;
        inner.hold(
            durable.position,
            keys.into_iter().map(|key| (key, None)).collect(),
        );
        Ok(durable)
    }

    /// DeleteGroups: an Empty group and all its offsets.
    pub fn delete_group(&self, group_id: &str, now_ms: i64) -> Result<Durable, CommitError> {
        let mut inner = self.lock();
        match inner.groups.get(group_id) {
            None => return Err(CommitError::Group(GroupError::GroupIdNotFound)),
            Some(group) if !group.is_empty() => {
                return Err(CommitError::Group(GroupError::NonEmptyGroup));
            }
            Some(_) => {}
        }
        let keys: Vec<OffsetKey> = inner
            .offsets
            .of_group(group_id)
            .map(|(key, _)| key.clone())
            .collect();
        // The group's metadata record goes too, or a replay would bring the group back.
        let tombstones: Vec<(Bytes, Option<Bytes>)> = keys
            .iter()
            .map(|key| (offsets::encode_key(key), None))
            .chain(std::iter::once((offsets::encode_group_key(group_id), None)))
            .collect();
        let durable = self.persist(group_id, &tombstones, now_ms)?;
        inner.hold(
            durable.position,
            keys.into_iter().map(|key| (key, None)).collect(),
        );
        inner.groups.delete(group_id).map_err(CommitError::Group)?;
        Ok(durable)
    }

    /// Offset expiry (`offsets.retention.check.interval.ms`): writes tombstones for the
    /// offsets of the groups coordinated here that are past `offsets.retention.minutes`
    /// ([`expiry`]), and deletes an Empty group left without offsets (with a tombstone for
    /// its metadata record). OffsetFetch stops showing an offset once its tombstone is
    /// durable ([`Self::wait_durable`] on each returned change).
    pub fn expire_offsets(&self, now_ms: i64) -> Vec<Durable> {
        let mut inner = self.lock();
        let retention_ms = inner.groups.config().offsets_retention_ms;
        // A commit on its way to the log is newer than anything expiry decides on.
        let in_flight: std::collections::HashSet<OffsetKey> = inner
            .pending
            .values()
            .flatten()
            .map(|(key, _)| key.clone())
            .collect();
        let group_ids: Vec<String> = inner
            .groups
            .list()
            .map(|group| group.group_id.clone())
            .filter(|group_id| self.check_owner(group_id).is_ok())
            .collect();
        let mut written = Vec::new();
        for group_id in group_ids {
            let group = inner.groups.get(&group_id);
            let committed: Vec<(&OffsetKey, &CommittedOffset)> =
                inner.offsets.of_group(&group_id).collect();
            let settled = committed
                .iter()
                .filter(|(key, _)| !in_flight.contains(*key))
                .copied();
            let expired = expiry::expired_offsets(group, settled, now_ms, retention_ms);
            let remove_group = expired.len() == committed.len()
                && !in_flight.iter().any(|key| key.group_id == group_id)
                && group.is_some_and(expiry::group_is_removable);
            if expired.is_empty() && !remove_group {
                continue;
            }
            let mut tombstones: Vec<(Bytes, Option<Bytes>)> = expired
                .iter()
                .map(|key| (offsets::encode_key(key), None))
                .collect();
            if remove_group {
                tombstones.push((offsets::encode_group_key(&group_id), None));
            }
            // Keys go with their tombstones, batch by batch.
            let mut keys = expired.into_iter();
            let mut rest = &tombstones[..];
            while !rest.is_empty() {
                let mut bytes = 0usize;
                let count = rest
                    .iter()
                    .take_while(|(key, _)| {
                        bytes += key.len() + 16;
                        bytes <= EXPIRY_BATCH_BYTES_MAX
                    })
                    .count()
                    .max(1);
                let (batch, after) = rest.split_at(count);
                rest = after;
                match self.persist(&group_id, batch, now_ms) {
                    Ok(durable) => {
                        let changes = keys.by_ref().take(count).map(|key| (key, None)).collect();
                        inner.hold(durable.position, changes);
                        written.push(durable);
                    }
                    Err(error) => {
                        tracing::warn!(group = %group_id, %error, "cannot expire offsets now");
                        break;
                    }
                }
            }
            if remove_group && rest.is_empty() {
                inner.groups.forget(&group_id);
                tracing::info!(group = %group_id, "deleted an empty group whose offsets expired");
            }
        }
        written
    }

    /// A snapshot of one group for DescribeGroups; `None` when it does not exist.
    pub fn describe(&self, group_id: &str) -> Option<state::Group> {
        self.lock().groups.get(group_id).cloned()
    }

    /// Every group: id, protocol type and state.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        self.lock()
            .groups
            .list()
            .map(|group| {
                (
                    group.group_id.clone(),
                    group.protocol_type.clone().unwrap_or_default(),
                    group.state.name(),
                )
            })
            .collect()
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A group record that did not become durable: its answers get the error, and the group
/// rebalances at the next tick.
fn fail_store(inner: &mut Inner, group: (String, i32), answers: Vec<Answer>, error: &CommitError) {
    tracing::warn!(group = %group.0, generation = group.1, %error, "storing the group failed");
    let error = store_error(error);
    answers.into_iter().for_each(|answer| answer.fail(error));
    inner.failed_stores.push(group);
}

/// Takes replayed offsets and groups (a group known only by its offsets is Empty).
fn restore(inner: &mut Inner, loaded: Replayed, now_ms: i64) {
    for group_id in loaded.group_ids() {
        if let Err(error) = inner
            .groups
            .restore(&group_id, loaded.groups.get(&group_id), now_ms)
        {
            tracing::warn!(group = %group_id, ?error, "group not restored");
        }
    }
    inner.offsets.merge(loaded.offsets);
    for (producer_id, offsets) in loaded.transactional {
        inner
            .transactional
            .entry(producer_id)
            .or_default()
            .extend(offsets);
    }
    inner.transactional.retain(|_, offsets| !offsets.is_empty());
}

/// The table entries of `commits` for `group_id`, refused whole when one's metadata is over
/// Kafka's `offset.metadata.max.bytes`.
fn offset_entries(
    group_id: &str,
    commits: &[OffsetCommit],
    now_ms: i64,
) -> Result<Vec<(OffsetKey, CommittedOffset)>, CommitError> {
    if let Some(too_large) = commits
        .iter()
        .filter_map(|commit| commit.metadata.as_ref())
        .find(|metadata| metadata.len() > offsets::OFFSET_METADATA_BYTES_MAX)
    {
        return Err(CommitError::MetadataTooLarge(too_large.len()));
    }
    Ok(commits
        .iter()
        .map(|commit| {
            (
                OffsetKey {
                    group_id: group_id.to_string(),
                    topic: commit.topic.clone(),
                    partition: commit.partition,
                },
                CommittedOffset {
                    offset: commit.offset,
                    leader_epoch: commit.leader_epoch,
                    metadata: commit.metadata.clone().unwrap_or_default(),
                    commit_timestamp_ms: now_ms,
                },
            )
        })
        .collect())
}

/// Bytes of tombstones one expiry batch carries at most (the offsets topic's batches stay
/// well below its `max.message.bytes`).
const EXPIRY_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Applies every record of an offsets partition's log (to its end: a new leader's log is the
/// truth) to `table`; returns how many records it read.
fn replay(
    log: &CoordinatorLog,
    partition: &Partition,
    table: &mut Replayed,
) -> Result<usize, StorageError> {
    log.replay(partition, |batch, record| {
        let Some(key) = record.key else { return };
        if batch.is_control() {
            if let Some(commit) = offsets::control_commit(key) {
                table.end_transaction(batch.producer_id(), commit);
            }
        } else if batch.is_transactional() {
            table.apply_transactional(batch.producer_id(), key, record.value);
        } else {
            table.apply(key, record.value);
        }
    })
}
