//! [`PartitionLog`]: one partition's segments, its offsets and its durable state.
//!
//! One writer: appends, rolls, truncation and retention take `&mut self`; reads take `&self`
//! and return file regions, so an owner may put the log behind a read-write lock.

mod append;
mod compact;
mod flush;
mod maintenance;
mod open;
mod read;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use append::{AppendInfo, Durability};
pub use compact::CommitOutcome;
pub use flush::{FlushedTo, PendingFlush};
pub use maintenance::RetentionOutcome;
pub(crate) use open::delete_segment_files;
pub use open::{RecoveryReport, Truncation};
pub use read::{FirstBatch, ReadBound, ReadLimits, ReadResult, TimestampMatch};

use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::files::{FileCache, OsSyncer, Syncer};
use crate::retention::SegmentInfo;
use crate::segment::{ActiveSegment, SealedSegment};
use crate::state::{LeaderEpochCache, PartitionState};

/// What a log shares with the other logs of a broker, and the seams tests inject faults at.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Bounds open sealed-segment files across all logs that share it.
    pub file_cache: Arc<FileCache>,
    pub syncer: Arc<dyn Syncer>,
    /// Who runs the fsyncs the flush policy asks for.
    pub flush_owner: FlushOwner,
}

/// Who runs a log's fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOwner {
    /// The log, inside the append that needs one.
    Log,
    /// The owner (group commit): with `FlushPolicy::EveryBatch` appends leave their fsync to
    /// it, and it runs one for many appends ([`PartitionLog::pending_flush`]); an append's
    /// [`Durability::FlushPending`] says it must wait for it before being acknowledged.
    Caller,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            file_cache: Arc::new(FileCache::default()),
            syncer: Arc::new(OsSyncer),
            flush_owner: FlushOwner::Log,
        }
    }
}

/// A partition's log: sealed segments oldest first, then the active segment.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    options: LogOptions,
    sealed: VecDeque<SealedSegment>,
    active: ActiveSegment,
    /// In memory, `state.recovery_point` is the flushed offset; on disk it is as of the last
    /// checkpoint.
    state: PartitionState,
    /// Sealed segments whose `.log` is not on disk yet (rolled under a policy that does not
    /// flush every append): the next flush covers them before it moves the recovery point.
    unflushed: Vec<(Arc<File>, PathBuf)>,
    /// Counts truncations, so a flush taken before one moves nothing.
    truncations: u64,
    last_flush_ms: i64,
    /// How far the cleaner got (`cleaner.checkpoint`).
    cleaner: crate::clean::CleanerCheckpoint,
    /// Set by the first failed write or fsync: the file contents are then unknown, so the log
    /// refuses writes until it is reopened and recovered.
    poisoned: Option<String>,
    /// Aborted transactions (the segments' `.txnindex` files).
    txn_index: crate::txn_index::TxnIndex,
}

/// Whether [`PartitionLog::segment_infos`] reads sealed segments' newest timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentTimestamps {
    /// Time retention needs them.
    Read,
    /// Left 0: size retention does not need them, and a poisoned log reads no index.
    Skip,
}

impl PartitionLog {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    /// What the log was opened with, so an owner can reopen a poisoned log the same way.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }
    /// Changes limits for what comes next (topic config update); existing segments stay.
    pub fn set_config(&mut self, config: LogConfig) -> Result<()> {
        config.validate().map_err(StorageError::InvalidConfig)?;
        self.config = config;
        Ok(())
    }
    pub fn log_start_offset(&self) -> i64 {
        self.state.log_start_offset
    }
    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active.next_offset()
    }
    pub fn high_watermark(&self) -> i64 {
        self.state.high_watermark
    }
    /// How many truncations cut this log since it was opened: an append made before the
    /// count changed may be gone.
    pub fn truncations(&self) -> u64 {
        self.truncations
    }
    /// Everything below this offset has been fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.state.recovery_point
    }
    pub fn leader_epochs(&self) -> &LeaderEpochCache {
        &self.state.epochs
    }
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Sets the high watermark, clamped to `[log_start_offset, log_end_offset]`; the owner
    /// (replication, or the single-node broker after a durable append) decides it.
    pub fn set_high_watermark(&mut self, offset: i64) -> i64 {
        self.state.high_watermark = offset
            .min(self.log_end_offset())
            .max(self.state.log_start_offset);
        self.state
            .producers
            .on_high_watermark(self.state.high_watermark);
        self.state.high_watermark
    }

    pub fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }

    pub fn size_bytes(&self) -> u64 {
        self.sealed
            .iter()
            .map(SealedSegment::size_bytes)
            .sum::<u64>()
            + self.active.size_bytes()
    }

    /// Base offsets of all segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.sealed
            .iter()
            .map(|segment| segment.base_offset)
            .chain(std::iter::once(self.active.base_offset))
            .collect()
    }

    /// Retention's view of the segments. Timestamps are read only with
    /// [`SegmentTimestamps::Read`] (they load sealed indexes).
    pub(crate) fn segment_infos(&self, timestamps: SegmentTimestamps) -> Result<Vec<SegmentInfo>> {
        let mut infos = Vec::with_capacity(self.segment_count());
        for segment in &self.sealed {
            let newest_timestamp_ms = if timestamps == SegmentTimestamps::Read {
                match segment.max_timestamp(self.config.index_interval_bytes)? {
                    Some(timestamp) if timestamp >= 0 => timestamp,
                    _ => segment.modified_ms()?,
                }
            } else {
                0
            };
            infos.push(SegmentInfo {
                base_offset: segment.base_offset,
                next_offset: segment.next_offset(),
                size_bytes: segment.size_bytes(),
                newest_timestamp_ms,
            });
        }
        infos.push(SegmentInfo {
            base_offset: self.active.base_offset,
            next_offset: self.active.next_offset(),
            size_bytes: self.active.size_bytes(),
            newest_timestamp_ms: self
                .active
                .max_timestamp()
                .map_or(i64::MIN, |(timestamp, _)| timestamp),
        });
        Ok(infos)
    }

    fn ensure_writable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(StorageError::Poisoned {
                path: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs a write step; any failure poisons the log so nothing after it is acknowledged.
    fn poison_on_error<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let outcome = step(self);
        if let Err(error) = &outcome {
            tracing::error!(log = %self.dir.display(), %error, "write failed; log refuses writes until reopened");
            self.poisoned = Some(error.to_string());
        }
        outcome
    }

    /// Writes the checkpoint; the producer table in it is as of the log end, so the aborted
    /// transactions up to there are made durable first (the next open trusts them).
    fn store_state(&mut self) -> Result<()> {
        self.txn_index
            .sync(&self.dir, self.options.syncer.as_ref())?;
        self.state.producer_snapshot_offset = self.log_end_offset();
        self.state.store(&self.dir, self.options.syncer.as_ref())
    }

    /// Producer state: idempotence and transactions (for the broker's answers and tests).
    pub fn producers(&self) -> &crate::producers::ProducerStates {
        &self.state.producers
    }

    /// The first offset of the earliest ongoing transaction, if any.
    pub fn first_ongoing_offset(&self) -> Option<i64> {
        self.state.producers.first_ongoing_offset()
    }

    /// The last stable offset (Kafka's LSO) under `high_watermark`: the first offset of the
    /// earliest transaction that is ongoing or whose marker is not below the high watermark
    /// yet, when that is lower, else the high watermark. read_committed readers see nothing
    /// at or past it.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.state
            .producers
            .first_unstable_offset(high_watermark)
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// Aborted transactions overlapping `[fetch_offset, upper_bound)` (Kafka's
    /// `collectAbortedTransactions`): a read_committed reader drops each one's producer's
    /// records from its first offset until that producer's ABORT marker.
    pub fn aborted_transactions(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
    ) -> Vec<crate::txn_index::AbortedTxn> {
        self.txn_index.collect(fetch_offset, upper_bound)
    }

    /// Forgets producers idle for longer than `expiration_ms` (`producer.id.expiration.ms`).
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.state.producers.expire(now_ms, expiration_ms)
    }

    /// Forces the active segment to disk and advances the recovery point to the log end.
    pub fn flush(&mut self, now_ms: i64) -> Result<()> {
        self.ensure_writable()?;
        self.poison_on_error(|log| {
            log.flush_all()?;
            log.last_flush_ms = now_ms;
            Ok(())
        })
    }

    /// Forces the unflushed sealed segments and the active one to disk. On an error the
    /// caller must poison the log.
    pub(crate) fn flush_all(&mut self) -> Result<()> {
        sync_all(&self.unflushed, self.options.syncer.as_ref())?;
        self.unflushed.clear();
        self.active.flush(self.options.syncer.as_ref())?;
        self.state.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// Sealed segments wait for a flush ([`PartitionLog::pending_flush`] covers them).
    pub fn has_unflushed_segments(&self) -> bool {
        self.poisoned.is_none()
            && !self.unflushed.is_empty()
            && self.state.recovery_point < self.log_end_offset()
    }

    /// [`PartitionLog::flush`] when the `IntervalMs` policy says one is due.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<()> {
        if let crate::config::FlushPolicy::IntervalMs(interval_ms) = self.config.flush_policy
            && self.state.recovery_point < self.log_end_offset()
            && now_ms.saturating_sub(self.last_flush_ms) >= interval_ms as i64
        {
            self.flush(now_ms)?;
        }
        Ok(())
    }

    /// For an owner that runs the flushes ([`FlushOwner::Caller`]): whether the `IntervalMs`
    /// policy wants one now. A `true` counts as the flush's start (the next is due an
    /// interval later); the owner then flushes to the log end through [`Self::pending_flush`].
    pub fn take_interval_flush(&mut self, now_ms: i64) -> bool {
        let due = matches!(self.config.flush_policy,
            crate::config::FlushPolicy::IntervalMs(interval_ms)
                if self.state.recovery_point < self.log_end_offset()
                    && now_ms.saturating_sub(self.last_flush_ms) >= interval_ms as i64);
        if due {
            self.last_flush_ms = now_ms;
        }
        due
    }

    /// Writes the checkpoint (recovery point, log start, high watermark, epochs) so the next
    /// open can skip recovering what was flushed. Owners call it from a timer.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.ensure_writable()?;
        self.poison_on_error(|log| log.store_state())
    }

    /// Clean shutdown: flush, trim the active segment's indexes and checkpoint, so the next
    /// open takes the fast path. A poisoned log skips this and recovers on the next open.
    pub fn close(self) -> Result<()> {
        if self.poisoned.is_some() {
            return Ok(());
        }
        let PartitionLog {
            dir,
            options,
            active,
            mut state,
            unflushed,
            mut txn_index,
            ..
        } = self;
        sync_all(&unflushed, options.syncer.as_ref())?;
        txn_index.sync(&dir, options.syncer.as_ref())?;
        state.recovery_point = active.next_offset();
        state.producer_snapshot_offset = active.next_offset();
        active.seal(options.syncer.as_ref())?;
        state.store(&dir, options.syncer.as_ref())
    }
}

/// `fdatasync` of each file.
fn sync_all(files: &[(Arc<File>, PathBuf)], syncer: &dyn Syncer) -> Result<()> {
    for (file, path) in files {
        syncer
            .sync_data(file)
            .map_err(|error| StorageError::io("fsync", path, error))?;
    }
    Ok(())
}
