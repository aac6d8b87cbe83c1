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

/// `cleanup.policy`: what removes old data from a log. Neither (Kafka's empty list) keeps
/// every record forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// The cleaner keeps the latest record per key.
    pub compact: bool,
    /// Time and size retention delete whole old segments.
    pub delete: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        Self::DELETE
    }
}

impl CleanupPolicy {
    /// Kafka's default.
    pub const DELETE: Self = Self {
        compact: false,
        delete: true,
    };
    pub const COMPACT: Self = Self {
        compact: true,
        delete: false,
    };
    /// `compact,delete`: both.
    pub const COMPACT_DELETE: Self = Self {
        compact: true,
        delete: true,
    };

    pub fn compacts(self) -> bool {
        self.compact
    }
    pub fn deletes(self) -> bool {
        self.delete
    }
}

/// A ratio in [0, 1] kept in millionths, so configs stay `Eq` (Kafka's type is a double).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ratio(u32);

impl Ratio {
    pub const MILLIONTHS: u32 = 1_000_000;

    /// `None` outside [0, 1] or for NaN.
    pub fn from_f64(value: f64) -> Option<Self> {
        if !(0.0..=1.0).contains(&value) {
            return None;
        }
        // In range by the check above: at most 1,000,000.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let millionths = (value * f64::from(Self::MILLIONTHS)).round() as u32;
        Some(Ratio(millionths))
    }
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / f64::from(Self::MILLIONTHS)
    }
}

/// The settings of log compaction (Kafka's topic configs of the same names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionConfig {
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: u64,
    /// `max.compaction.lag.ms`: dirty data older than this makes the log cleanable whatever
    /// its dirty ratio.
    pub max_compaction_lag_ms: u64,
    /// `delete.retention.ms`: how long a tombstone stays readable once its batch was cleaned.
    pub delete_retention_ms: u64,
    /// `min.cleanable.dirty.ratio`: dirty bytes / all bytes of the cleanable range needed to
    /// clean.
    pub min_cleanable_dirty_ratio: Ratio,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX as u64,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: Ratio(Ratio::MILLIONTHS / 2),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    pub compaction: CompactionConfig,
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
            cleanup_policy: CleanupPolicy::DELETE,
            compaction: CompactionConfig::default(),
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
        if self.compaction.min_compaction_lag_ms > i64::MAX as u64
            || self.compaction.max_compaction_lag_ms > i64::MAX as u64
            || self.compaction.delete_retention_ms > i64::MAX as u64
        {
            return Err("compaction lags and delete retention must fit an i64".to_string());
        }
        // Kafka: max.compaction.lag.ms at least 1 (and not below min.compaction.lag.ms, which
        // it checks across the two configs).
        if self.compaction.max_compaction_lag_ms == 0
            || self.compaction.max_compaction_lag_ms < self.compaction.min_compaction_lag_ms
        {
            return Err(format!(
                "max_compaction_lag_ms {} must be at least 1 and at least min_compaction_lag_ms {}",
                self.compaction.max_compaction_lag_ms, self.compaction.min_compaction_lag_ms
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
