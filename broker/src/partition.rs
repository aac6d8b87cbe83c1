//! One partition of a topic: its log behind a lock, written by one appender at a time.

use std::sync::{Mutex, MutexGuard, PoisonError};

use lmq_storage::{
    AppendInfo, PartitionLog, ReadLimits, ReadResult, RetentionOutcome, StorageError,
    TimestampMatch,
};

/// The leader epoch a single node stamps on every batch.
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;

#[derive(Debug)]
pub struct Partition {
    pub index: i32,
    /// `None` once closed at shutdown.
    log: Mutex<Option<PartitionLog>>,
}

/// The log end, high watermark and start a response reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

fn closed() -> StorageError {
    StorageError::Poisoned {
        path: "partition".into(),
        reason: "the broker is shutting down".to_string(),
    }
}

impl Partition {
    /// Takes over a recovered log as its single-node leader: everything in it is committed,
    /// whatever high watermark the last checkpoint had (it lags after a crash), as Kafka's
    /// only in-sync replica moves it to its log end on becoming leader.
    pub fn new(index: i32, mut log: PartitionLog) -> Self {
        log.set_high_watermark(log.log_end_offset());
        Partition {
            index,
            log: Mutex::new(Some(log)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<PartitionLog>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `operation` on the open log.
    pub fn with_log<T>(
        &self,
        operation: impl FnOnce(&mut PartitionLog) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match self.lock().as_mut() {
            Some(log) => operation(log),
            None => Err(closed()),
        }
    }

    /// Appends as the single node's leader; the record is committed (high watermark) as soon
    /// as the log took it, since this node is the whole ISR.
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<AppendInfo, StorageError> {
        self.with_log(|log| {
            let info = log.append(records, SINGLE_NODE_LEADER_EPOCH, now_ms)?;
            log.set_high_watermark(log.log_end_offset());
            Ok(info)
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

    /// Flushes when the topic's `IntervalMs` flush policy says one is due.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<(), StorageError> {
        self.with_log(|log| log.flush_if_due(now_ms))
    }

    /// Periodic upkeep: retention, idle producer expiry, then the checkpoint.
    pub fn maintain(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        self.with_log(|log| {
            let outcome = log.apply_retention(now_ms)?;
            log.expire_producers(now_ms, crate::broker::PRODUCER_ID_EXPIRATION_MS);
            log.checkpoint()?;
            Ok(outcome)
        })
    }

    /// Size on disk, segment count and log end offset, for the metrics.
    pub fn log_stats(&self) -> Result<(u64, usize, i64), StorageError> {
        self.with_log(|log| Ok((log.size_bytes(), log.segment_count(), log.log_end_offset())))
    }

    /// Clean shutdown of the log; later calls fail as the broker is going away.
    pub fn close(&self) -> Result<(), StorageError> {
        match self.lock().take() {
            Some(log) => log.close(),
            None => Ok(()),
        }
    }
}
