//! Per-log settings. Defaults follow Kafka's broker defaults where Kafka has one.

/// When appended data is forced to disk with fsync (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every append call is on disk before it returns: all batches of one call share one
    /// fsync (group commit at the call level).
    EveryBatch,
    /// An append flushes when this many milliseconds passed since the last flush; the owner
    /// also calls [`crate::PartitionLog::flush_if_due`] from a timer.
    IntervalMs(u64),
    /// Leave it to the OS page cache (Kafka's default); flushed on roll and close.
    Os,
}

/// `message.timestamp.type`: whose clock the batch timestamps carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Stamp each batch with the broker's append time (rewrites the CRC).
    LogAppendTime,
}

/// Retention limits; `None` keeps data forever by that measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// `retention.ms`: delete sealed segments whose newest timestamp is older than this.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: delete the oldest sealed segments while the log stays at or above it.
    pub retention_bytes: Option<u64>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
        }
    }
}

/// `cleanup.policy`: what removes old records. Both false (Kafka's empty list) keeps every
/// record forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Keep the latest record per key (the cleaner).
    pub compact: bool,
    /// Delete whole old segments by `retention.ms` / `retention.bytes`.
    pub delete: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy {
            compact: false,
            delete: true,
        }
    }
}

// Not `Eq`: `min_cleanable_dirty_ratio` is a float.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this.
    pub segment_bytes_max: u64,
    /// `segment.ms`: roll a non-empty active segment this long after it was created.
    pub segment_ms: u64,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: the most an index file grows to; a full index rolls.
    pub index_bytes_max: u64,
    /// `max.message.bytes`: the largest batch the log accepts.
    pub batch_bytes_max: u64,
    pub flush_policy: FlushPolicy,
    pub retention: RetentionPolicy,
    pub timestamp_type: TimestampType,
    pub cleanup_policy: CleanupPolicy,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a record is eligible for compaction at most this long.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone stays readable after cleaning.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: the dirty share of a log that makes it worth cleaning.
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            index_bytes_max: 10 * 1024 * 1024,
            batch_bytes_max: 1024 * 1024 + 12,
            flush_policy: FlushPolicy::Os,
            retention: RetentionPolicy::default(),
            timestamp_type: TimestampType::CreateTime,
            cleanup_policy: CleanupPolicy::default(),
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

impl LogConfig {
    /// How far an active segment's index files may grow: `index_bytes_max`, but no more than
    /// a full segment can use (one entry per more than `index_interval_bytes` of log, and
    /// the time index's last entry at seal). The files take disk in steps as entries come
    /// (`index.rs`); an index that fills anyway rolls the segment.
    /// `entry_bytes`: the index's entry size.
    pub fn index_capacity_bytes(&self, entry_bytes: u64) -> u64 {
        let entries_max = self.segment_bytes_max / self.index_interval_bytes.saturating_add(1) + 2;
        self.index_bytes_max
            .min(entries_max.saturating_mul(entry_bytes))
    }

    /// Checks the limits Kafka also enforces, so a bad topic config fails at creation.
    pub fn validate(&self) -> Result<(), String> {
        // Positions in the offset index are u32: a segment must stay addressable by them.
        if self.segment_bytes_max < 14 || self.segment_bytes_max > u64::from(u32::MAX) {
            return Err(format!(
                "segment_bytes_max {} must be between 14 and {}",
                self.segment_bytes_max,
                u32::MAX
            ));
        }
        if self.index_bytes_max < 12 || self.index_bytes_max > u64::from(u32::MAX) {
            return Err(format!(
                "index_bytes_max {} must be between 12 and {}",
                self.index_bytes_max,
                u32::MAX
            ));
        }
        // The batch length field is an i32; a batch never spans segments.
        if self.batch_bytes_max < 61 || self.batch_bytes_max > i32::MAX as u64 {
            return Err(format!(
                "batch_bytes_max {} must be between 61 and {}",
                self.batch_bytes_max,
                i32::MAX
            ));
        }
        if self.segment_ms == 0 {
            return Err("segment_ms must be at least 1".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_capacity_is_what_a_full_segment_can_use_at_most() {
        let config = LogConfig {
            segment_bytes_max: 512 * 1024,
            index_interval_bytes: 4096,
            ..LogConfig::default()
        };
        // 127 entries at most (one per more than 4096 bytes), plus the margin.
        assert_eq!(config.index_capacity_bytes(12), (127 + 2) * 12);
        assert_eq!(config.index_capacity_bytes(8), (127 + 2) * 8);
        assert_eq!(
            LogConfig::default().index_capacity_bytes(12),
            (262_080 + 2) * 12
        );
        let every_batch = LogConfig {
            index_interval_bytes: 0,
            ..LogConfig::default()
        };
        assert_eq!(every_batch.index_capacity_bytes(12), 10 * 1024 * 1024);
        let huge_interval = LogConfig {
            index_interval_bytes: u64::MAX,
            ..LogConfig::default()
        };
        assert_eq!(huge_interval.index_capacity_bytes(12), 2 * 12);
    }
}
