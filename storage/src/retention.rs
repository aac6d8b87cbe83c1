//! Which segments retention deletes: a pure decision over segment metadata, so the rules are
//! tested without files. [`crate::PartitionLog::apply_retention`] carries it out.

use crate::config::RetentionPolicy;

/// What retention knows of one segment; the last one given is the active segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    /// Largest batch timestamp, or the file's modification time when no batch has one.
    pub newest_timestamp_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionDecision {
    /// Delete this many segments from the oldest.
    pub delete_segments: usize,
    /// The active segment is among them: roll it first, so a new empty active remains.
    pub roll_active: bool,
}

/// Kafka's three rules, each deleting a prefix of the log: segments wholly below the log start
/// offset, segments whose newest record is older than `retention_ms`, and the oldest segments
/// while the log would stay at or above `retention_bytes` without them. The union of prefixes
/// is the longest one. Only the time rule takes the active segment (rolling it first), and
/// never an empty one.
pub fn decide(
    segments: &[SegmentInfo],
    policy: &RetentionPolicy,
    log_start_offset: i64,
    now_ms: i64,
) -> RetentionDecision {
    let Some((active, sealed)) = segments.split_last() else {
        return RetentionDecision::default();
    };
    let active_counts = active.size_bytes > 0;
    let candidates = if active_counts { segments } else { sealed };

    // As in Kafka, a segment is below the log start only when the next one starts at or
    // below it, so this rule never takes the active segment.
    let below_log_start = sealed
        .iter()
        .take_while(|segment| segment.next_offset <= log_start_offset)
        .count();
    let expired = policy.retention_ms.map_or(0, |retention_ms| {
        candidates
            .iter()
            .take_while(|segment| {
                now_ms.saturating_sub(segment.newest_timestamp_ms) > retention_ms as i64
            })
            .count()
    });
    let oversized = policy.retention_bytes.map_or(0, |retention_bytes| {
        let total: u64 = segments.iter().map(|segment| segment.size_bytes).sum();
        let mut excess = total.saturating_sub(retention_bytes);
        sealed
            .iter()
            .take_while(|segment| {
                let fits = segment.size_bytes <= excess;
                if fits {
                    excess -= segment.size_bytes;
                }
                fits
            })
            .count()
    });
    let delete_segments = below_log_start.max(expired).max(oversized);
    RetentionDecision {
        delete_segments,
        roll_active: delete_segments == segments.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(base_offset: i64, size_bytes: u64, newest_timestamp_ms: i64) -> SegmentInfo {
        SegmentInfo {
            base_offset,
            next_offset: base_offset + 10,
            size_bytes,
            newest_timestamp_ms,
        }
    }

    const KEEP_ALL: RetentionPolicy = RetentionPolicy {
        retention_ms: None,
        retention_bytes: None,
    };

    #[test]
    fn nothing_is_deleted_without_limits() {
        let segments = [segment(0, 100, 0), segment(10, 100, 0)];
        assert_eq!(
            decide(&segments, &KEEP_ALL, 0, 1_000_000).delete_segments,
            0
        );
        assert_eq!(decide(&[], &KEEP_ALL, 0, 0), RetentionDecision::default());
    }

    #[test]
    fn time_rule_deletes_an_expired_prefix_only() {
        let policy = RetentionPolicy {
            retention_ms: Some(100),
            ..KEEP_ALL
        };
        // The middle segment is expired but the one before it is not: prefixes only.
        let segments = [segment(0, 1, 950), segment(10, 1, 800), segment(20, 1, 990)];
        assert_eq!(decide(&segments, &policy, 0, 1_000).delete_segments, 0);
        let segments = [segment(0, 1, 800), segment(10, 1, 899), segment(20, 1, 990)];
        assert_eq!(decide(&segments, &policy, 0, 1_000).delete_segments, 2);
        // Exactly retention_ms old is kept, as in Kafka (strictly greater deletes).
        let segments = [segment(0, 1, 900), segment(10, 1, 990)];
        assert_eq!(decide(&segments, &policy, 0, 1_000).delete_segments, 0);
    }

    #[test]
    fn an_expired_non_empty_active_segment_is_rolled_then_deleted() {
        let policy = RetentionPolicy {
            retention_ms: Some(100),
            ..KEEP_ALL
        };
        let segments = [segment(0, 1, 0), segment(10, 5, 0)];
        let decision = decide(&segments, &policy, 0, 1_000);
        assert_eq!(
            decision,
            RetentionDecision {
                delete_segments: 2,
                roll_active: true
            }
        );
        let empty_active = [segment(0, 1, 0), segment(10, 0, 0)];
        let decision = decide(&empty_active, &policy, 0, 1_000);
        assert_eq!(
            decision,
            RetentionDecision {
                delete_segments: 1,
                roll_active: false
            }
        );
    }

    #[test]
    fn size_rule_keeps_at_least_retention_bytes_and_never_the_active_segment() {
        let policy = RetentionPolicy {
            retention_bytes: Some(250),
            ..KEEP_ALL
        };
        let segments = [segment(0, 100, 0), segment(10, 100, 0), segment(20, 100, 0)];
        // 300 total, 50 over: no whole segment fits in the excess.
        assert_eq!(decide(&segments, &policy, 0, 0).delete_segments, 0);
        let policy = RetentionPolicy {
            retention_bytes: Some(100),
            ..KEEP_ALL
        };
        assert_eq!(decide(&segments, &policy, 0, 0).delete_segments, 2);
        let policy = RetentionPolicy {
            retention_bytes: Some(0),
            ..KEEP_ALL
        };
        let decision = decide(&segments, &policy, 0, 0);
        assert_eq!(
            decision,
            RetentionDecision {
                delete_segments: 2,
                roll_active: false
            }
        );
    }

    #[test]
    fn log_start_rule_deletes_segments_wholly_below_it() {
        let segments = [segment(0, 1, 0), segment(10, 1, 0), segment(20, 1, 0)];
        assert_eq!(decide(&segments, &KEEP_ALL, 15, 0).delete_segments, 1);
        assert_eq!(decide(&segments, &KEEP_ALL, 20, 0).delete_segments, 2);
        let decision = decide(&segments, &KEEP_ALL, 30, 0);
        assert_eq!(
            decision,
            RetentionDecision {
                delete_segments: 2,
                roll_active: false
            }
        );
    }
}
