//! Which logs need cleaning: a pure decision over what each log reports
//! ([`crate::PartitionLog::cleaning_view`]), as Kafka's `LogCleanerManager` picks the
//! filthiest log.

use crate::config::{CleanupPolicy, CompactionConfig};

/// What the chooser needs of one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleaningView {
    pub policy: CleanupPolicy,
    pub compaction: CompactionConfig,
    /// Bytes of the segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of the segments from the first dirty offset to the first uncleanable one.
    pub cleanable_bytes: u64,
    /// Newest timestamp of the first dirty batch, when there is dirty data.
    pub first_dirty_timestamp_ms: Option<i64>,
    /// When a cleaned batch's tombstones may go (`i64::MAX`: none waiting).
    pub tombstone_horizon_ms: i64,
}

impl CleaningView {
    /// `cleanable / (clean + cleanable)`, 0 for an empty log.
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes.saturating_add(self.cleanable_bytes);
        if total == 0 {
            0.0
        } else {
            self.cleanable_bytes as f64 / total as f64
        }
    }
}

/// Why a log is cleaned now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleaningReason {
    /// Dirty data is older than `max.compaction.lag.ms`.
    MaxCompactionLag,
    /// The dirty ratio reached `min.cleanable.dirty.ratio`.
    DirtyRatio,
    /// Tombstones of cleaned batches passed their delete horizon.
    TombstonesExpired,
}

/// The logs (by index into `views`) to clean now, most urgent first: those past their
/// maximum compaction lag, then by dirty ratio, then those with expired tombstones. Logs
/// without `compact` in their policy are never chosen.
pub fn choose(views: &[CleaningView], now_ms: i64) -> Vec<(usize, CleaningReason)> {
    let mut chosen: Vec<(usize, CleaningReason, f64)> = Vec::new();
    for (index, view) in views.iter().enumerate() {
        if !view.policy.compacts() {
            continue;
        }
        let ratio = view.dirty_ratio();
        let max_lag = i64::try_from(view.compaction.max_compaction_lag_ms).unwrap_or(i64::MAX);
        let reason = if view.cleanable_bytes > 0
            && view
                .first_dirty_timestamp_ms
                .is_some_and(|timestamp| now_ms.saturating_sub(timestamp) > max_lag)
        {
            Some(CleaningReason::MaxCompactionLag)
        } else if view.cleanable_bytes > 0
            && ratio >= view.compaction.min_cleanable_dirty_ratio.as_f64()
        {
            Some(CleaningReason::DirtyRatio)
        } else if view.tombstone_horizon_ms <= now_ms {
            Some(CleaningReason::TombstonesExpired)
        } else {
            None
        };
        if let Some(reason) = reason {
            chosen.push((index, reason, ratio));
        }
    }
    let rank = |reason: CleaningReason| match reason {
        CleaningReason::MaxCompactionLag => 0,
        CleaningReason::DirtyRatio => 1,
        CleaningReason::TombstonesExpired => 2,
    };
    chosen.sort_by(|a, b| rank(a.1).cmp(&rank(b.1)).then(b.2.total_cmp(&a.2)));
    chosen
        .into_iter()
        .map(|(index, reason, _)| (index, reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ratio;

    fn view(clean_bytes: u64, cleanable_bytes: u64) -> CleaningView {
        CleaningView {
            policy: CleanupPolicy::COMPACT,
            compaction: CompactionConfig::default(),
            clean_bytes,
            cleanable_bytes,
            first_dirty_timestamp_ms: Some(1_000),
            tombstone_horizon_ms: i64::MAX,
        }
    }

    #[test]
    fn picks_compacted_logs_by_ratio_lag_and_tombstones() {
        let lagging = CleaningView {
            compaction: CompactionConfig {
                max_compaction_lag_ms: 500,
                ..CompactionConfig::default()
            },
            ..view(900, 100)
        };
        let tombstones = CleaningView {
            tombstone_horizon_ms: 1_500,
            ..view(1_000, 0)
        };
        let views = [
            view(100, 100), // 0.5: at the default ratio
            view(900, 100), // 0.1: below it
            view(100, 300), // 0.75
            CleaningView {
                policy: CleanupPolicy::DELETE,
                ..view(0, 100)
            },
            lagging,
            tombstones,
            CleaningView {
                compaction: CompactionConfig {
                    min_cleanable_dirty_ratio: Ratio::from_f64(0.05).unwrap(),
                    ..CompactionConfig::default()
                },
                ..view(900, 100)
            },
            view(0, 0),
        ];
        assert_eq!(
            choose(&views, 2_000),
            vec![
                (4, CleaningReason::MaxCompactionLag),
                (2, CleaningReason::DirtyRatio),
                (0, CleaningReason::DirtyRatio),
                (6, CleaningReason::DirtyRatio),
                (5, CleaningReason::TombstonesExpired),
            ]
        );
        // Before the tombstone horizon and the lag: only the ratios.
        assert_eq!(choose(&views, 1_200).len(), 3);
    }
}
