//! One partition of a topic: its log behind a lock, written by one appender at a time, and
//! its replica role (single node, leader, follower or none). Lock order: role, then log.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use lmq_storage::control::TxnMarker;
use lmq_storage::producers::{CompletedTxn, MarkerEpochRule, VerificationGuard};
use lmq_storage::{
    AppendInfo, FlushPolicy, LogConfig, LogOptions, PartitionLog, ReadBound, ReadLimits,
    ReadResult, RetentionOutcome, StorageError, TimestampMatch,
};
use std::sync::Arc;

use lmq_wire::Acks;
use tokio::sync::{Notify, oneshot, watch};

mod group_commit;

use crate::replication::{
    AckError, Action, Assignment, LeaderStart, LeaderState, ReplicationConfig, Token,
};
use group_commit::GroupCommit;

/// `producer.id.expiration.ms`: idle idempotent producers are forgotten after a day.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// The leader epoch answered while this node has no role for the partition (Kafka's -1).
const UNKNOWN_LEADER_EPOCH: i32 = -1;

#[derive(Debug)]
pub struct Partition {
    pub index: i32,
    log: Mutex<LogSlot>,
    /// Counts the logs this partition has had: a flush taken from a log that was reopened
    /// since reports to nobody.
    generation: AtomicU64,
    /// Whether a task is reopening the log (at most one at a time).
    reopening: AtomicBool,
    replica: Mutex<Replica>,
    /// Batches the fsyncs of `flush = "every-batch"` appends.
    commit: GroupCommit,
    /// Wakes the task that persists ISR proposals.
    isr_wakeup: IsrWakeup,
    /// Wakes the fetches parked on this partition.
    progress: Progress,
}

/// What long-polling fetches of one partition wait on (Kafka's delayed-fetch purgatory keys
/// its watchers by partition too): consumers read up to the high watermark and followers up
/// to the log end, so each has its own signal, and an append to one partition wakes only the
/// fetches that asked for it. A change of role or log (leadership, reopen, close) signals
/// both, so parked fetches read again and see it.
#[derive(Debug)]
struct Progress {
    high_watermark: watch::Sender<()>,
    log_end: watch::Sender<()>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            high_watermark: watch::Sender::new(()),
            log_end: watch::Sender::new(()),
        }
    }

    fn signal(sender: &watch::Sender<()>) {
        // Marks a change even without receivers (`send` would refuse then).
        sender.send_modify(|()| {});
    }

    fn high_watermark_moved(&self) {
        Self::signal(&self.high_watermark);
    }

    fn log_end_moved(&self) {
        Self::signal(&self.log_end);
    }

    fn role_or_log_changed(&self) {
        self.high_watermark_moved();
        self.log_end_moved();
    }
}

/// A parked fetch's subscription to one partition's progress: [`FetchWatch::mark_seen`]
/// before reading, then [`FetchWatch::changed`] resolves once the partition moved since.
#[derive(Debug)]
pub struct FetchWatch {
    receiver: watch::Receiver<()>,
}

impl FetchWatch {
    /// Forgets the changes so far: the next read sees them.
    pub fn mark_seen(&mut self) {
        self.receiver.borrow_and_update();
    }

    /// Resolves once the partition moved after the last [`FetchWatch::mark_seen`] (at once if
    /// it did in between). Never resolves once the partition is gone.
    pub async fn changed(&mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Wakes the task that persists ISR proposals (`cluster::tasks::persist_isr_changes`). A
/// proposal itself stays in its partition's replication state until it is persisted or
/// refused ([`Partition::pending_isr_proposal`]), so no caller can drop one; the wake-up
/// only says where to look (a permit is kept when nobody waits, so none is missed).
pub type IsrWakeup = Arc<Notify>;

/// The partition's log, or why there is none.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "Open is the state a partition is in nearly always; boxing it would add a hop to every access"
)]
enum LogSlot {
    Open(PartitionLog),
    /// Closed after an I/O failure poisoned it, to be opened again from disk (with
    /// recovery); until then reads and writes fail with a storage error.
    Reopening(ReopenFrom),
    /// Closed at shutdown.
    Closed,
}

/// What a poisoned log was opened with, to open it again.
#[derive(Debug)]
struct ReopenFrom {
    dir: PathBuf,
    config: LogConfig,
    options: LogOptions,
    reason: String,
    /// The poisoned log, no longer read or written, kept only so retention can delete its
    /// old segments while the disk is full (see [`Partition::reopen_log`]).
    poisoned: Option<Box<PartitionLog>>,
}

/// How one attempt to reopen a poisoned log ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Reopened {
    /// The log is open and writable again.
    Open,
    /// The log was not poisoned (or is closed for shutdown): nothing to do.
    NotNeeded,
}

/// What this node is for the partition.
#[derive(Debug)]
pub enum Role {
    Leader(LeaderState),
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
    /// Not a replica, or no leader is known.
    Offline,
}

#[derive(Debug)]
struct Replica {
    role: Role,
    waiters: HashMap<Token, oneshot::Sender<Result<(), AckError>>>,
    next_token: Token,
}

/// Why a replicated partition refused a request.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error("the request's leader epoch {0} is older than the partition's")]
    FencedLeaderEpoch(i32),
    #[error("the request's leader epoch {0} is newer than this broker knows")]
    UnknownLeaderEpoch(i32),
    #[error("fewer in-sync replicas than min.insync.replicas")]
    NotEnoughReplicas,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A replicated append: offsets assigned, and (acks=all) a receiver for the moment the ISR
/// has it.
#[derive(Debug)]
pub struct LeaderAppend {
    pub info: AppendInfo,
    /// What must still hold for the append to be acknowledged ([`Partition::still_holds`]).
    pub mark: AppendMark,
    pub committed: Option<oneshot::Receiver<Result<(), AckError>>>,
}

/// The leadership and log an append was made under: the leader epoch, the log's generation
/// (which log of the partition: a reopen after an I/O failure replaces it, and its recovery
/// may cut the record) and its truncation count. If any changed before the answer, the
/// record may be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendMark {
    pub leader_epoch: i32,
    pub generation: u64,
    pub truncations: u64,
}

/// Why an append may no longer be acknowledged ([`Partition::still_holds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendLost {
    #[error("the leadership changed before the answer")]
    NotLeader,
    #[error("the log was truncated before the answer")]
    Truncated,
    #[error("the log was reopened after an I/O failure before the answer")]
    LogReplaced,
}

/// An ISR change the leader of `leader_epoch` wants persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    pub isr: BTreeSet<i32>,
}

/// What a leader's fetch answer says of its log, for a follower to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderOffsets {
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// A follower's fetch as the leader judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerCheck {
    /// Read from the fetch offset on.
    Read { high_watermark: i64 },
    /// The follower's history differs from this epoch's end on: it must truncate there.
    Diverging { epoch: i32, end_offset: i64 },
}

/// A follower's next fetch: from whom, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerPosition {
    pub leader: i32,
    pub leader_epoch: i32,
    /// The log end: the fetch reports everything below it as replicated here.
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    /// Under `flush = "every-batch"`: the log end, when appends below it are not on disk yet
    /// (their fsync did not run); they must be before a fetch reports them.
    pub unflushed_end: Option<i64>,
}

/// The log end, high watermark and start a response reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_end_offset: i64,
}

fn closed() -> StorageError {
    StorageError::Poisoned {
        path: "partition".into(),
        reason: "the broker is shutting down".to_string(),
    }
}

impl Partition {
    /// A replica: no role until the cluster metadata gives one, and the checkpointed high
    /// watermark kept (only a leader may move it).
    pub fn new(index: i32, log: PartitionLog, isr_wakeup: IsrWakeup) -> Self {
        Partition {
            isr_wakeup,
            index,
            log: Mutex::new(LogSlot::Open(log)),
            generation: AtomicU64::new(0),
            reopening: AtomicBool::new(false),
            replica: Mutex::new(Replica {
                role: Role::Offline,
                waiters: HashMap::new(),
                next_token: 0,
            }),
            commit: GroupCommit::default(),
            progress: Progress::new(),
        }
    }

    /// Subscribes a long-polling fetch that reads up to `bound` (consumers: the high
    /// watermark, followers: the log end). The subscription starts as seen.
    pub fn watch(&self, bound: ReadBound) -> FetchWatch {
        let sender = match bound {
            // The last stable offset moves only with the high watermark: a marker's
            // transaction stays unstable until the high watermark passes the marker.
            ReadBound::HighWatermark | ReadBound::LastStableOffset => &self.progress.high_watermark,
            ReadBound::LogEnd => &self.progress.log_end,
        };
        FetchWatch {
            receiver: sender.subscribe(),
        }
    }

    /// Returns once the log is on disk below `end_offset`, running one fsync for every
    /// append waiting meanwhile (group commit).
    pub async fn flush_to(self: &Arc<Self>, end_offset: i64) -> Result<(), StorageError> {
        GroupCommit::flush_to(self, end_offset).await
    }

    pub(crate) fn group_commit(&self) -> &GroupCommit {
        &self.commit
    }

    /// Where the upkeep's background flush ends, when one is due: segments rolled without an
    /// fsync (`os` and interval policies), the tail under an interval policy whose interval
    /// passed (the log leaves those flushes to its owner: never inside an append, under this
    /// partition's lock), or under `every-batch` appends whose group commit nobody ran (their
    /// produce was dropped with its connection; the leader counts only what is on disk, so
    /// they would stay above the high watermark until the next produce). The log end as it
    /// is now, so appends made meanwhile wait for the next pass and a busy partition does not
    /// fsync back to back. `None` when nothing waits.
    pub fn background_flush_target(&self, now_ms: i64) -> Result<Option<i64>, StorageError> {
        self.with_log(|log| {
            let unflushed_tail = log.config().flush_policy == FlushPolicy::EveryBatch
                && !log.is_poisoned()
                && log.recovery_point() < log.log_end_offset();
            let interval_due = !log.is_poisoned() && log.take_interval_flush(now_ms);
            Ok(
                (log.has_unflushed_segments() || unflushed_tail || interval_due)
                    .then(|| log.log_end_offset()),
            )
        })
    }

    /// The log, waited for off the async workers when another thread holds it: a cleaner
    /// commit holds it across its fsyncs (tens to hundreds of ms on a busy disk), and a
    /// worker blocked on it would stall every connection it serves (with the broker on one
    /// core there is one worker), not only this partition's.
    fn lock(&self) -> MutexGuard<'_, LogSlot> {
        match self.log.try_lock() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
        let wait = || self.log.lock().unwrap_or_else(PoisonError::into_inner);
        match tokio::runtime::Handle::try_current() {
            // The worker hands its other tasks to another thread while this one waits.
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Runs `operation` on the open log.
    pub fn with_log<T>(
        &self,
        operation: impl FnOnce(&mut PartitionLog) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.with_log_generation(|log, _| operation(log))
    }

    /// [`Partition::with_log`], also given which log this is (see `generation`).
    pub(crate) fn with_log_generation<T>(
        &self,
        operation: impl FnOnce(&mut PartitionLog, u64) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut slot = self.lock();
        match &mut *slot {
            LogSlot::Open(log) => operation(log, self.generation.load(Ordering::Acquire)),
            LogSlot::Reopening(from) => Err(StorageError::Poisoned {
                path: from.dir.clone(),
                reason: format!("reopening after: {}", from.reason),
            }),
            LogSlot::Closed => Err(closed()),
        }
    }

    /// Whether the log refuses writes after an I/O failure and no task reopens it yet. The
    /// caller that gets `true` owns the reopening and calls [`Partition::reopen_done`] when
    /// it gives up or succeeded.
    pub fn claim_reopen(&self) -> bool {
        self.awaits_reopen()
            && self
                .reopening
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Whether the log refuses writes after an I/O failure (poisoned, or being reopened): the
    /// upkeep leaves it to the reopening task.
    pub fn awaits_reopen(&self) -> bool {
        match &*self.lock() {
            LogSlot::Open(log) => log.is_poisoned(),
            LogSlot::Reopening(_) => true,
            LogSlot::Closed => false,
        }
    }

    /// The reopening task ended.
    pub fn reopen_done(&self) {
        self.reopening.store(false, Ordering::Release);
    }

    /// One attempt to bring a poisoned log back: takes it out of service (its file contents
    /// are unknown after the failure; nothing reads it any more, as the reopening may rewrite
    /// its index files in place), lets retention delete its old segments, opens the log again
    /// from disk with recovery, which keeps the valid prefix of the `.log` files, and puts
    /// the new one in service, dropping the poisoned one and the partition's role with it:
    /// the caller has the role taken again from the cluster metadata, so a leader starts a
    /// fresh leadership over the recovered log, and produces waiting on the old log are
    /// failed (they were never acknowledged). Blocking file I/O: callers run it on the
    /// blocking pool. On an error the poisoned log is kept for the next attempt.
    pub fn reopen_log(&self, now_ms: i64) -> Result<Reopened, StorageError> {
        let (dir, config, options, poisoned) = {
            let mut slot = self.lock();
            if let LogSlot::Open(log) = &*slot {
                if !log.is_poisoned() {
                    return Ok(Reopened::NotNeeded);
                }
                let from = ReopenFrom {
                    dir: log.dir().to_path_buf(),
                    config: log.config().clone(),
                    options: log.options().clone(),
                    reason: "an I/O failure".to_string(),
                    poisoned: None,
                };
                if let LogSlot::Open(log) = std::mem::replace(&mut *slot, LogSlot::Reopening(from))
                    && let LogSlot::Reopening(from) = &mut *slot
                {
                    from.poisoned = Some(Box::new(log));
                }
            }
            let LogSlot::Reopening(from) = &mut *slot else {
                return Ok(Reopened::NotNeeded);
            };
            (
                from.dir.clone(),
                from.config.clone(),
                from.options.clone(),
                from.poisoned.take(),
            )
        };
        // Retention still runs on the poisoned log (whole old segments, no writes), so a full
        // disk can get space back before the reopen needs it.
        let poisoned = poisoned.map(|mut log| {
            match log.apply_retention(now_ms) {
                Ok(outcome) if !outcome.deleted_segments.is_empty() => {
                    tracing::info!(partition = self.index, ?outcome, "retention on the poisoned log");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(partition = self.index, %error, "retention on the poisoned log failed");
                }
            }
            log
        });
        // Never creates the directory: a topic deleted meanwhile must not come back.
        let outcome = PartitionLog::open_existing(&dir, config, options, now_ms);
        // The role goes with the old log, under both locks (role, then log): no append or
        // read may meet the new log under the old leadership, whose high watermark and
        // follower positions may be past the recovered log end.
        let mut replica = self.replica();
        let mut slot = self.lock();
        match outcome {
            Ok((log, report)) => match &*slot {
                LogSlot::Reopening(_) => {
                    tracing::info!(
                        partition = self.index,
                        ?report,
                        "reopened the log after an I/O failure"
                    );
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    *slot = LogSlot::Open(log);
                    let Replica { role, waiters, .. } = &mut *replica;
                    *role = Role::Offline;
                    fail_waiters(waiters);
                    self.progress.role_or_log_changed();
                    Ok(Reopened::Open)
                }
                // Shut down meanwhile.
                LogSlot::Open(_) | LogSlot::Closed => {
                    drop(slot);
                    drop(replica);
                    log.close()?;
                    Ok(Reopened::NotNeeded)
                }
            },
            Err(error) => {
                if let LogSlot::Reopening(from) = &mut *slot {
                    from.reason = error.to_string();
                    from.poisoned = poisoned;
                }
                Err(error)
            }
        }
    }

    fn replica(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends as leader: committed once the ISR has it (`Acks::All` then returns a receiver
    /// to wait on).
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        acks: Acks,
        now_ms: i64,
    ) -> Result<LeaderAppend, ReplicaError> {
        self.append_as_leader_guarded(records, acks, now_ms, None)
    }

    /// [`Self::append_as_leader`] of a produce whose transactional batches were verified
    /// with the transaction coordinator (`PartitionLog::append_guarded`).
    pub fn append_as_leader_guarded(
        &self,
        records: &mut [u8],
        acks: Acks,
        now_ms: i64,
        guards: Option<&[VerificationGuard]>,
    ) -> Result<LeaderAppend, ReplicaError> {
        self.leader_append(acks, now_ms, |log, epoch| {
            Ok((log.append_guarded(records, epoch, now_ms, guards)?, ()))
        })
        .map(|(append, ())| append)
    }

    /// [`Self::append_as_leader`] of this broker's coordinators' own records
    /// (`PartitionLog::append_from_coordinator`: transactional offset commits carry no
    /// sequence numbers).
    pub fn append_as_coordinator(
        &self,
        records: &mut [u8],
        acks: Acks,
        now_ms: i64,
    ) -> Result<LeaderAppend, ReplicaError> {
        self.leader_append(acks, now_ms, |log, epoch| {
            Ok((log.append_from_coordinator(records, epoch, now_ms)?, ()))
        })
        .map(|(append, ())| append)
    }

    /// Writes a transaction marker as leader (WriteTxnMarkers), waited for like a produce
    /// with `acks`: ends the producer's transaction here. Returns the transaction it ended
    /// (none when the producer had no records here since its last marker).
    pub fn append_marker_as_leader(
        &self,
        marker: &TxnMarker,
        rule: MarkerEpochRule,
        acks: Acks,
        now_ms: i64,
    ) -> Result<(LeaderAppend, Option<CompletedTxn>), ReplicaError> {
        self.leader_append(acks, now_ms, |log, epoch| {
            let (info, completed) = log.append_marker(marker, rule, epoch, now_ms)?;
            Ok((info, completed))
        })
    }

    /// A leader's append through `write` (under the log lock, at the leader epoch), then the
    /// replication state's position and the acks=all waiter.
    fn leader_append<T>(
        &self,
        acks: Acks,
        now_ms: i64,
        write: impl FnOnce(&mut PartitionLog, i32) -> Result<(AppendInfo, T), StorageError>,
    ) -> Result<(LeaderAppend, T), ReplicaError> {
        let acks_all = acks == Acks::All;
        let mut replica = self.replica();
        let Replica {
            role,
            waiters,
            next_token,
        } = &mut *replica;
        let state = match role {
            Role::Leader(state) => state,
            Role::Follower { .. } | Role::Offline => return Err(ReplicaError::NotLeader),
        };
        if acks_all && state.check_produce().is_err() {
            return Err(ReplicaError::NotEnoughReplicas);
        }
        let epoch = state.leader_epoch();
        let ((info, extra), truncations, generation) =
            self.with_log_generation(|log, generation| {
                Ok((write(log, epoch)?, log.truncations(), generation))
            })?;
        self.progress.log_end_moved();
        let (token, committed) = if acks_all {
            let (sender, receiver) = oneshot::channel();
            *next_token += 1;
            waiters.insert(*next_token, sender);
            (Some(*next_token), Some(receiver))
        } else {
            (None, None)
        };
        let log_end = info.last_offset + 1;
        // Under `every-batch` the leader's own position is what is on disk: the high
        // watermark must not pass a record before its fsync (the group commit reports it).
        let position = if info.durability.is_flush_pending() {
            self.with_log(|log| Ok(log.recovery_point()))?
        } else {
            log_end
        };
        let actions = state.appended_unflushed(position, log_end, token, now_ms);
        self.apply(waiters, actions);
        Ok((
            LeaderAppend {
                info,
                mark: AppendMark {
                    leader_epoch: epoch,
                    generation,
                    truncations,
                },
                committed,
            },
            extra,
        ))
    }

    /// Whether an append made under `mark` may still be acknowledged: this node still leads
    /// in the same epoch, the log is the one appended to (not reopened since: its recovery
    /// may have cut the record, and the new log counts truncations from zero) and nothing
    /// was truncated since (a follower truncates its diverging log; a new epoch may follow
    /// one), so the record is still in the log.
    pub fn still_holds(&self, mark: AppendMark) -> Result<(), AppendLost> {
        let replica = self.replica();
        let Role::Leader(state) = &replica.role else {
            return Err(AppendLost::NotLeader);
        };
        if state.leader_epoch() != mark.leader_epoch {
            return Err(AppendLost::NotLeader);
        }
        // A log out of service (being reopened, closed) holds nothing acknowledgeable.
        let (generation, truncations) = self
            .with_log_generation(|log, generation| Ok((generation, log.truncations())))
            .map_err(|_| AppendLost::LogReplaced)?;
        if generation != mark.generation {
            return Err(AppendLost::LogReplaced);
        }
        if truncations != mark.truncations {
            return Err(AppendLost::Truncated);
        }
        Ok(())
    }

    /// DeleteRecords: only the leader moves the log start (`-1`: to the high watermark);
    /// followers take it from the leader's fetch answers
    /// ([`Partition::append_as_follower`]). Returns the new log start offset.
    pub fn delete_records(&self, offset: i64) -> Result<i64, ReplicaError> {
        let replica = self.replica();
        if !matches!(replica.role, Role::Leader(_)) {
            return Err(ReplicaError::NotLeader);
        }
        Ok(self.with_log(|log| {
            let offset = if offset == -1 {
                log.high_watermark()
            } else {
                offset
            };
            log.advance_log_start(offset)
        })?)
    }

    /// Carries out the replication state machine's actions: moves the log's high watermark,
    /// answers waiting produces, and wakes the task that persists an ISR proposal (which
    /// stays in `state` until persisted or refused).
    fn apply(
        &self,
        waiters: &mut HashMap<Token, oneshot::Sender<Result<(), AckError>>>,
        actions: Vec<Action>,
    ) {
        for action in actions {
            match action {
                Action::HighWatermark(offset) => {
                    match self.with_log(|log| Ok(log.set_high_watermark(offset))) {
                        Ok(_) => self.progress.high_watermark_moved(),
                        Err(error) => {
                            tracing::debug!(%error, "high watermark not moved on a closed log");
                        }
                    }
                }
                Action::Ack { token, result } => {
                    if let Some(waiter) = waiters.remove(&token) {
                        let _ = waiter.send(result);
                    }
                }
                Action::IsrChanged(_) => self.isr_wakeup.notify_one(),
            }
        }
    }

    /// The ISR change this partition's leader proposed and is waiting to have persisted.
    pub fn pending_isr_proposal(&self) -> Option<IsrProposal> {
        match &self.replica().role {
            Role::Leader(state) => state.pending_isr().map(|isr| IsrProposal {
                leader_epoch: state.leader_epoch(),
                isr: isr.clone(),
            }),
            Role::Follower { .. } | Role::Offline => None,
        }
    }

    /// A group commit finished: under `every-batch` the leader's own position moves to what
    /// is on disk now, which may move the high watermark and answer acks=all produces.
    pub fn leader_flushed(&self) {
        let mut guard = self.replica();
        let Replica { role, waiters, .. } = &mut *guard;
        let Role::Leader(state) = role else {
            return;
        };
        let Ok(recovery_point) = self.with_log(|log| Ok(log.recovery_point())) else {
            return;
        };
        let actions = state.flushed(recovery_point);
        self.apply(waiters, actions);
    }

    /// The leader's side of a follower's fetch: checks the follower's epoch and history, and
    /// records that it has everything below `fetch_offset`.
    pub fn follower_fetch(
        &self,
        replica_id: i32,
        fetch_offset: i64,
        current_leader_epoch: i32,
        last_fetched_epoch: i32,
        now_ms: i64,
    ) -> Result<FollowerCheck, ReplicaError> {
        let mut guard = self.replica();
        let Replica { role, waiters, .. } = &mut *guard;
        let Role::Leader(state) = role else {
            return Err(ReplicaError::NotLeader);
        };
        check_epoch(state.leader_epoch(), current_leader_epoch)?;
        let log_end = self.with_log(|log| Ok(log.log_end_offset()))?;
        if last_fetched_epoch >= 0 {
            let end = self.with_log(|log| {
                Ok(log
                    .leader_epochs()
                    .end_offset_for(last_fetched_epoch, log_end))
            })?;
            match end {
                Some((epoch, end_offset))
                    if epoch == last_fetched_epoch && end_offset >= fetch_offset => {}
                Some((epoch, end_offset)) => {
                    return Ok(FollowerCheck::Diverging { epoch, end_offset });
                }
                // The follower's epoch is older than anything here: no answer by epoch; the
                // read below reports an offset out of range if it is past our log.
                None => {}
            }
        }
        let actions = state.follower_fetched(replica_id, fetch_offset.min(log_end), now_ms);
        tracing::trace!(
            partition = self.index,
            replica_id,
            fetch_offset,
            ?actions,
            "follower fetched"
        );
        self.apply(waiters, actions);
        let high_watermark = state.high_watermark();
        Ok(FollowerCheck::Read { high_watermark })
    }

    /// Checks a client's view of the leader epoch (Fetch/ListOffsets `current_leader_epoch`,
    /// -1 = not given) and that this node leads.
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<(), ReplicaError> {
        match &self.replica().role {
            Role::Leader(state) => check_epoch(state.leader_epoch(), current_leader_epoch),
            Role::Follower { .. } | Role::Offline => Err(ReplicaError::NotLeader),
        }
    }

    /// The largest epoch at or below `epoch` in this log and where it ends.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, i64)>, StorageError> {
        self.with_log(|log| {
            let log_end = log.log_end_offset();
            Ok(log.leader_epochs().end_offset_for(epoch, log_end))
        })
    }

    /// The leader epoch clients see (Metadata, ListOffsets).
    pub fn leader_epoch(&self) -> i32 {
        match &self.replica().role {
            Role::Leader(state) => state.leader_epoch(),
            Role::Follower { leader_epoch, .. } => *leader_epoch,
            Role::Offline => UNKNOWN_LEADER_EPOCH,
        }
    }

    /// Time passes for a leader: lagging followers leave the ISR.
    pub fn tick(&self, now_ms: i64) {
        let mut guard = self.replica();
        let Replica { role, waiters, .. } = &mut *guard;
        let Role::Leader(state) = role else {
            return;
        };
        let actions = state.tick(now_ms);
        self.apply(waiters, actions);
    }

    /// The outcome of persisting an ISR proposal of `leader_epoch`.
    pub fn isr_persisted(&self, leader_epoch: i32, isr: Option<BTreeSet<i32>>, now_ms: i64) {
        let mut guard = self.replica();
        let Replica { role, waiters, .. } = &mut *guard;
        let Role::Leader(state) = role else {
            return;
        };
        if state.leader_epoch() != leader_epoch {
            return;
        }
        match isr {
            Some(isr) => {
                let actions = state.isr_committed(isr, now_ms);
                self.apply(waiters, actions);
            }
            None => state.isr_change_failed(),
        }
    }

    /// Takes the role the cluster metadata gives this node. Leading the same epoch again only
    /// refreshes the persisted ISR; any change of role fails the produces still waiting.
    /// Returns whether this node just became the leader.
    pub fn become_role(
        &self,
        node_id: i32,
        assignment: &Assignment,
        config: ReplicationConfig,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let mut guard = self.replica();
        let Replica { role, waiters, .. } = &mut *guard;
        if assignment.leader_id == node_id {
            if let Role::Leader(state) = role
                && state.leader_epoch() == assignment.leader_epoch
            {
                state.set_replicas(&assignment.replicas, now_ms);
                if state.pending_isr().is_none() && *state.isr() != assignment.isr_set() {
                    let actions = state.isr_committed(assignment.isr_set(), now_ms);
                    self.apply(waiters, actions);
                }
                return Ok(false);
            }
            // Under `every-batch` the leader's own position is what is on disk: a follower's
            // appends it has not synced yet (their fsync may still be running) must not count
            // toward the high watermark until their group commit reports them.
            let (log_end, position, high_watermark) = self.with_log(|log| {
                let log_end = log.log_end_offset();
                let position = if log.config().flush_policy == FlushPolicy::EveryBatch {
                    log.recovery_point().min(log_end)
                } else {
                    log_end
                };
                Ok((log_end, position, log.high_watermark()))
            })?;
            tracing::info!(
                partition = self.index,
                epoch = assignment.leader_epoch,
                isr = ?assignment.isr,
                log_end,
                position,
                high_watermark,
                "becoming leader"
            );
            let mut state = LeaderState::new(
                config,
                assignment,
                LeaderStart {
                    log_end_offset: log_end,
                    position,
                    high_watermark,
                },
                now_ms,
            );
            fail_waiters(waiters);
            // A leader whose ISR has only itself commits its whole log at once (Kafka's
            // makeLeader does the same), rather than on its first tick.
            let actions = state.tick(now_ms);
            self.apply(waiters, actions);
            *role = Role::Leader(state);
            self.progress.role_or_log_changed();
            return Ok(true);
        } else if assignment.replicas.contains(&node_id) && assignment.leader_id >= 0 {
            if matches!(role, Role::Follower { leader, leader_epoch }
                if *leader == assignment.leader_id && *leader_epoch == assignment.leader_epoch)
            {
                return Ok(false);
            }
            *role = Role::Follower {
                leader: assignment.leader_id,
                leader_epoch: assignment.leader_epoch,
            };
        } else {
            *role = Role::Offline;
        }
        fail_waiters(waiters);
        self.progress.role_or_log_changed();
        Ok(false)
    }

    /// Where a follower fetches from; `None` unless a follower with a writable log (a
    /// poisoned log, or one being reopened, fetches no more: what it holds is unknown until it
    /// is recovered).
    pub fn follower_position(&self) -> Option<FollowerPosition> {
        let Role::Follower {
            leader,
            leader_epoch,
        } = self.replica().role
        else {
            return None;
        };
        // A poisoned log does not fetch: its fetch offset would tell the leader it is caught
        // up (and put it back in the ISR) while it can store nothing.
        self.with_log(|log| {
            let log_end = log.log_end_offset();
            let every_batch = log.config().flush_policy == FlushPolicy::EveryBatch;
            Ok((!log.is_poisoned()).then(|| FollowerPosition {
                leader,
                leader_epoch,
                fetch_offset: log_end,
                last_fetched_epoch: log.leader_epochs().latest_epoch().unwrap_or(-1),
                unflushed_end: (every_batch && log.recovery_point() < log_end).then_some(log_end),
            }))
        })
        .ok()
        .flatten()
    }

    /// A follower appends what the leader of `leader_epoch` sent and takes the leader's high
    /// watermark as far as its own log reaches, then the leader's log start (DeleteRecords,
    /// retention) as far as its high watermark reaches, as Kafka's replica fetcher does: a
    /// lagging follower moves it further on later fetches. `Some(end)`: the append must be
    /// flushed below `end` ([`Partition::flush_to`]) before the follower reports it.
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        records: &[u8],
        leader: LeaderOffsets,
        now_ms: i64,
    ) -> Result<Option<i64>, ReplicaError> {
        let replica = self.replica();
        match replica.role {
            Role::Follower {
                leader_epoch: current,
                ..
            } if current == leader_epoch => {}
            _ => return Err(ReplicaError::FencedLeaderEpoch(leader_epoch)),
        }
        let (flush, high_watermark_moved) = self.with_log(|log| {
            let mut flush = None;
            if !records.is_empty() {
                let info = log.append_replicated(records, now_ms)?;
                flush = info
                    .durability
                    .is_flush_pending()
                    .then_some(info.last_offset + 1);
            }
            let before = log.high_watermark();
            log.set_high_watermark(leader.high_watermark.min(log.log_end_offset()));
            let high_watermark_moved = log.high_watermark() != before;
            let log_start = leader.log_start_offset.min(log.high_watermark());
            if log_start > log.log_start_offset() {
                log.advance_log_start(log_start)?;
            }
            Ok((flush, high_watermark_moved))
        })?;
        if !records.is_empty() {
            self.progress.log_end_moved();
        }
        if high_watermark_moved {
            self.progress.high_watermark_moved();
        }
        Ok(flush)
    }

    /// A follower cuts the history it does not share with the leader, which reported that
    /// `epoch` ends at `end_offset` on its side.
    pub fn truncate_diverging(&self, epoch: i32, end_offset: i64) -> Result<i64, StorageError> {
        self.with_log(|log| {
            let log_end = log.log_end_offset();
            let offset = crate::replication::follower_truncation_offset(
                epoch,
                end_offset,
                log_end,
                |wanted| log.leader_epochs().end_offset_for(wanted, log_end),
            );
            if offset < log_end {
                tracing::warn!(
                    partition = self.index,
                    from = offset,
                    to = log_end,
                    "truncating history not shared with the leader"
                );
                log.truncate_to(offset)?;
            }
            Ok(offset)
        })
    }

    pub fn read(&self, offset: i64, limits: ReadLimits) -> Result<ReadResult, StorageError> {
        self.with_log(|log| log.read(offset, limits))
    }

    pub fn offsets(&self) -> Result<Offsets, StorageError> {
        self.with_log(|log| {
            Ok(Offsets {
                log_start_offset: log.log_start_offset(),
                high_watermark: log.high_watermark(),
                last_stable_offset: log.last_stable_offset(log.high_watermark()),
                log_end_offset: log.log_end_offset(),
            })
        })
    }

    pub fn find_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampMatch>, StorageError> {
        self.with_log(|log| log.find_by_timestamp(timestamp_ms))
    }

    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        self.with_log(|log| log.max_timestamp())
    }

    /// Periodic upkeep: retention, idle producer expiry, then the checkpoint.
    pub fn maintain(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        self.with_log(|log| {
            let outcome = log.apply_retention(now_ms)?;
            log.expire_producers(now_ms, PRODUCER_ID_EXPIRATION_MS);
            log.checkpoint()?;
            Ok(outcome)
        })
    }

    /// Size on disk, segment count and log end offset, for the metrics.
    pub fn log_stats(&self) -> Result<(u64, usize, i64), StorageError> {
        self.with_log(|log| Ok((log.size_bytes(), log.segment_count(), log.log_end_offset())))
    }

    /// A follower whose fetch offset the leader does not have: past the leader's end, it
    /// keeps only what the leader committed; below the leader's log start, it starts over
    /// there.
    pub fn follower_out_of_range(
        &self,
        leader_log_start: i64,
        leader_high_watermark: i64,
    ) -> Result<(), StorageError> {
        self.with_log(|log| {
            if log.log_end_offset() < leader_log_start {
                tracing::warn!(
                    partition = self.index,
                    leader_log_start,
                    "restarting the replica at the leader's log start"
                );
                log.truncate_fully_and_start_at(leader_log_start)
            } else if leader_high_watermark >= 0 && log.log_end_offset() > leader_high_watermark {
                log.truncate_to(leader_high_watermark).map(|_| ())
            } else {
                Ok(())
            }
        })
    }

    /// Whether this node leads the partition.
    pub fn is_leader(&self) -> bool {
        matches!(self.replica().role, Role::Leader(_))
    }

    /// The role's name, for logs and status.
    pub fn role_name(&self) -> &'static str {
        match self.replica().role {
            Role::Leader(_) => "leader",
            Role::Follower { .. } => "follower",
            Role::Offline => "offline",
        }
    }

    /// Clean shutdown of the log; later calls fail as the broker is going away.
    pub fn close(&self) -> Result<(), StorageError> {
        let closed = match std::mem::replace(&mut *self.lock(), LogSlot::Closed) {
            LogSlot::Open(log) => log.close(),
            LogSlot::Reopening(_) | LogSlot::Closed => Ok(()),
        };
        // Fetches parked on a deleted partition read again and answer that it is gone.
        self.progress.role_or_log_changed();
        closed
    }
}

/// Produces waiting under a leadership that ended: written, never acknowledged.
fn fail_waiters(waiters: &mut HashMap<Token, oneshot::Sender<Result<(), AckError>>>) {
    for (_, waiter) in waiters.drain() {
        let _ = waiter.send(Err(AckError::NotLeader));
    }
}

fn check_epoch(current: i32, requested: i32) -> Result<(), ReplicaError> {
    match requested {
        -1 => Ok(()),
        requested if requested < current => Err(ReplicaError::FencedLeaderEpoch(requested)),
        requested if requested > current => Err(ReplicaError::UnknownLeaderEpoch(requested)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
