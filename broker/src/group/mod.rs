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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::Bytes;
use lmq_storage::batch::{BatchView, parse_records};
use lmq_storage::builder::BatchBuilder;
use lmq_storage::{FirstBatch, ReadBound, ReadLimits, StorageError};
use lmq_wire::Acks;
use tokio::sync::oneshot;

use crate::partition::{Partition, ReplicaError};
use crate::replication::AckError;
use offsets::{CommittedOffset, OffsetKey, OffsetTable, Replayed, partition_for};
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

impl From<ReplicaError> for CommitError {
    fn from(error: ReplicaError) -> Self {
        match error {
            ReplicaError::Storage(error) => CommitError::Storage(error),
            ReplicaError::NotLeader
            | ReplicaError::NotEnoughReplicas
            | ReplicaError::FencedLeaderEpoch(_)
            | ReplicaError::UnknownLeaderEpoch(_) => CommitError::NotCoordinator,
        }
    }
}

/// A change written to the offsets log, to wait on before answering: its fsync (with
/// `flush = "every-batch"`), then (in a cluster) the moment the ISR has it.
#[derive(Debug, Default)]
pub struct Durable {
    flush: Option<(Arc<Partition>, i64)>,
    committed: Option<oneshot::Receiver<Result<(), AckError>>>,
    /// The offsets partition and last offset of the batch written.
    position: Option<(usize, i64)>,
}

impl Durable {
    /// The outcome when it is known without waiting.
    fn settled(&mut self) -> Option<Result<(), CommitError>> {
        if self.flush.is_some() {
            return None;
        }
        let Some(committed) = self.committed.as_mut() else {
            return Some(Ok(()));
        };
        match committed.try_recv() {
            Ok(Ok(())) => Some(Ok(())),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                Some(Err(CommitError::NotCoordinator))
            }
        }
    }
}

/// Waits until a persisted group change is on disk and replicated (or `timeout` passes).
async fn wait_durable(durable: Durable, timeout: std::time::Duration) -> Result<(), CommitError> {
    if let Some((partition, end_offset)) = durable.flush {
        partition.flush_to(end_offset).await?;
    }
    let Some(committed) = durable.committed else {
        return Ok(());
    };
    match tokio::time::timeout(timeout, committed).await {
        Ok(Ok(Ok(()))) => Ok(()),
        _ => Err(CommitError::NotCoordinator),
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
    /// The offsets topic's partitions (replaced when a cluster (re)creates the topic).
    offsets_partitions: RwLock<Vec<Arc<Partition>>>,
    /// The leader epoch at which each offsets partition's groups were last loaded: a
    /// partition led at another epoch is not loaded yet (COORDINATOR_LOAD_IN_PROGRESS, not
    /// UNKNOWN_MEMBER_ID, which would make its members rejoin). Lock order: `inner` first.
    loaded_epochs: Mutex<HashMap<usize, i32>>,
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
            failed_stores: Vec::new(),
            waiters: HashMap::new(),
            stopping: false,
            next_token: 0,
        };
        let mut loaded = Replayed::default();
        let mut records = 0usize;
        for partition in &offsets_partitions {
            records += replay(partition, &mut loaded)?;
        }
        let groups = loaded.group_ids().len();
        restore(&mut inner, loaded, now_ms);
        tracing::info!(records, groups, "loaded committed offsets and groups");
        let loaded_epochs = offsets_partitions
            .iter()
            .enumerate()
            .map(|(index, partition)| (index, partition.leader_epoch()))
            .collect();
        Ok(GroupCoordinator {
            inner: Arc::new(Mutex::new(inner)),
            offsets_partitions: RwLock::new(offsets_partitions),
            loaded_epochs: Mutex::new(loaded_epochs),
        })
    }

    /// Takes the cluster's offsets topic partitions (the topic was created or recreated).
    pub fn adopt(&self, partitions: Vec<Arc<Partition>>) {
        // Lock order as in `commit`: the groups, then the partitions.
        let mut inner = self.lock();
        let mut current = self
            .offsets_partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut loaded = self
            .loaded_epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if partitions.len() != current.len() {
            // Groups map to other partitions now: what was held went with the old ones.
            inner.pending.clear();
            loaded.clear();
        } else {
            // Every metadata change hands the same partitions over again: only a partition
            // that was really replaced loses the changes held for its batches.
            let replaced: Vec<usize> = current
                .iter()
                .zip(&partitions)
                .enumerate()
                .filter(|(_, (old, new))| !Arc::ptr_eq(old, new))
                .map(|(index, _)| index)
                .collect();
            inner
                .pending
                .retain(|(held, _), _| !replaced.contains(held));
            loaded.retain(|index, _| !replaced.contains(index));
        }
        *current = partitions;
    }

    fn offsets_partition(&self, group_id: &str) -> Option<(usize, Arc<Partition>)> {
        let partitions = self
            .offsets_partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if partitions.is_empty() {
            return None;
        }
        let index = partition_for(group_id, partitions.len());
        Some((index, Arc::clone(&partitions[index])))
    }

    /// Whether this broker coordinates the group: it leads the group's offsets partition and
    /// has loaded its groups at the current leader epoch.
    pub fn check_owner(&self, group_id: &str) -> Result<(), GroupError> {
        match self.offsets_partition(group_id) {
            Some((index, partition)) if partition.is_leader() => {
                let loaded = self
                    .loaded_epochs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&index)
                    .copied();
                if loaded == Some(partition.leader_epoch()) {
                    Ok(())
                } else {
                    Err(GroupError::CoordinatorLoadInProgress)
                }
            }
            Some(_) => Err(GroupError::NotCoordinator),
            // A cluster broker before the offsets topic exists.
            None => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    /// Reloads the groups of offsets partition `index` from its log (this broker just became
    /// its leader: the log, replicated from the previous leader, is the truth); restored
    /// members' sessions run from `now_ms`.
    pub fn reload(&self, index: usize, now_ms: i64) -> Result<(), StorageError> {
        let partitions = self
            .offsets_partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(partition) = partitions.get(index) else {
            return Ok(());
        };
        let count = partitions.len();
        // The epoch this load is for (read first: a later leadership loads again).
        let epoch = partition.leader_epoch();
        let mut loaded = Replayed::default();
        let replayed = replay(partition, &mut loaded)?;
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
        restore(&mut inner, loaded, now_ms);
        self.loaded_epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(index, epoch);
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
            Some(Err(error)) => fail_store(inner, group, answers, &error),
            None => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return fail_store(inner, group, answers, &CommitError::NotCoordinator);
                };
                let shared = Arc::clone(&self.inner);
                runtime.spawn(async move {
                    match wait_durable(durable, OFFSETS_COMMIT_TIMEOUT).await {
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
        self.check_owner(group_id).map_err(CommitError::Group)?;
        let mut inner = self.lock();
        inner
            .groups
            .validate_commit(group_id, member_id, instance_id, generation_id)
            .map_err(CommitError::Group)?;
        if let Some(too_large) = commits
            .iter()
            .filter_map(|commit| commit.metadata.as_ref())
            .find(|metadata| metadata.len() > offsets::OFFSET_METADATA_BYTES_MAX)
        {
            return Err(CommitError::MetadataTooLarge(too_large.len()));
        }
        inner.groups.ensure(group_id).map_err(CommitError::Group)?;
        let entries: Vec<(OffsetKey, CommittedOffset)> = commits
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
            .collect();
        let records: Vec<(Bytes, Option<Bytes>)> = entries
            .iter()
            .map(|(key, value)| (offsets::encode_key(key), Some(offsets::encode_value(value))))
            .collect();
        let durable = self.persist(group_id, &records, now_ms)?;
        let changes = entries
            .into_iter()
            .map(|(key, value)| (key, Some(value)))
            .collect();
        inner.hold(durable.position, changes);
        Ok(durable)
    }

    /// Appends group records to the group's offsets partition as its leader. In a cluster
    /// the table changes at once but the client hears back only when the ISR has them.
    fn persist(
        &self,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<Durable, CommitError> {
        if records.is_empty() {
            return Ok(Durable::default());
        }
        let (index, partition) = self
            .offsets_partition(group_id)
            .ok_or(CommitError::NotCoordinator)?;
        let mut builder = BatchBuilder::new(now_ms);
        for (key, value) in records {
            builder.push(Some(key), value.as_deref(), now_ms);
        }
        let appended = partition.append_as_leader(&mut builder.build(), Acks::All, now_ms)?;
        let info = appended.info;
        Ok(Durable {
            flush: info
                .durability
                .is_flush_pending()
                .then(|| (Arc::clone(&partition), info.last_offset + 1)),
            committed: appended.committed,
            position: Some((index, info.last_offset)),
        })
    }

    /// Waits until a persisted offsets change is on disk and replicated (or `timeout`
    /// passes), then shows it to OffsetFetch; a failed one is dropped (the log may lose it).
    pub async fn wait_durable(
        &self,
        durable: Durable,
        timeout: std::time::Duration,
    ) -> Result<(), CommitError> {
        let position = durable.position;
        let result = wait_durable(durable, timeout).await;
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
}

/// Bytes of tombstones one expiry batch carries at most (the offsets topic's batches stay
/// well below its `max.message.bytes`).
const EXPIRY_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Bytes of the offsets topic one replay read takes.
const REPLAY_READ_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Applies every record of an offsets partition's log (to its end: a new leader's log is the
/// truth) to `table`; returns how many records it read.
fn replay(partition: &Partition, table: &mut Replayed) -> Result<usize, StorageError> {
    let mut replayed = 0usize;
    let offsets = partition.offsets()?;
    let mut offset = offsets.log_start_offset;
    while offset < offsets.log_end_offset {
        let limits = ReadLimits {
            max_bytes: REPLAY_READ_BYTES_MAX,
            bound: ReadBound::LogEnd,
            first_batch: FirstBatch::Whole,
        };
        let Some(region) = partition.read(offset, limits)?.region else {
            break;
        };
        let bytes = region.read_to_vec().map_err(|error| StorageError::Io {
            operation: "read",
            path: "__consumer_offsets".into(),
            source: error,
        })?;
        let mut rest = &bytes[..];
        while let Some(total) = lmq_storage::batch::batch_total_bytes(rest)
            .and_then(|total| usize::try_from(total).ok())
        {
            let Some(batch) = rest.get(..total) else {
                break;
            };
            rest = &rest[total..];
            let Ok(view) = BatchView::new(batch) else {
                break;
            };
            offset = view.last_offset() + 1;
            // A transaction marker (WriteTxnMarkers) is no offset or group record.
            if view.is_control() {
                continue;
            }
            for record in parse_records(&view, view.records_bytes()).unwrap_or_default() {
                if let Some(key) = record.key {
                    table.apply(key, record.value);
                    replayed += 1;
                }
            }
        }
    }
    Ok(replayed)
}
