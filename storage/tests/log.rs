//! Behaviour of one partition log through its public API.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use common::{ALL, append, as_sent, batch, open, read_all, small_segments};
use lmq_storage::batch::BatchView;
use lmq_storage::{
    FirstBatch, LogConfig, ReadBound, ReadLimits, RetentionPolicy, StorageError, TimestampType,
};

#[test]
fn appends_get_consecutive_offsets_and_read_back_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, report) = open(dir.path(), &LogConfig::default());
    assert_eq!(report.log_end_offset, 0);
    let sent = [
        batch(3, 10, 1, 100),
        batch(1, 10, 2, 101),
        batch(5, 10, 3, 102),
    ];
    assert_eq!(append(&mut log, &sent[0]), (0, 2));
    assert_eq!(append(&mut log, &sent[1]), (3, 3));
    assert_eq!(append(&mut log, &sent[2]), (4, 8));
    assert_eq!(log.log_end_offset(), 9);
    let stored = read_all(&log);
    assert_eq!(
        stored.iter().map(|(base, _)| *base).collect::<Vec<_>>(),
        [0, 3, 4]
    );
    for ((_, stored), sent) in stored.iter().zip(&sent) {
        assert_eq!(BatchView::new(stored).unwrap().partition_leader_epoch(), 0);
        assert_eq!(&as_sent(stored), sent);
    }
}

#[test]
fn one_call_with_several_batches_is_one_append() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    let mut bytes = batch(2, 5, 1, 0);
    bytes.extend(batch(3, 5, 2, 0));
    let info = log.append(&mut bytes, 0, 0).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batches),
        (0, 4, 2)
    );
    assert_eq!(info.bytes, bytes.len() as u64);
}

#[test]
fn reading_a_middle_offset_returns_the_batch_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &small_segments());
    for seed in 0..40 {
        append(&mut log, &batch(4, 50, seed, 0));
    }
    assert!(log.segment_count() > 3, "small segments roll");
    for offset in 0..log.log_end_offset() {
        let region = log.read(offset, ALL).unwrap().region.unwrap();
        let first =
            BatchView::new(&region.read_to_vec().unwrap()[..]).map(|view| view.base_offset());
        // A region holds several batches; the first is the one holding the offset.
        let bytes = region.read_to_vec().unwrap();
        let first = first.unwrap_or_else(|_| common::split(&bytes)[0].0);
        assert_eq!(first, offset - offset % 4, "offset {offset}");
    }
    assert!(log.check_indexes().unwrap().is_empty());
}

#[test]
fn reads_honour_max_bytes_the_high_watermark_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    let one = batch(1, 100, 1, 0);
    for _ in 0..5 {
        append(&mut log, &one);
    }
    let size = one.len() as u64;
    let limits = |max_bytes, bound, first_batch| ReadLimits {
        max_bytes,
        bound,
        first_batch,
    };
    let read = |max_bytes, first_batch| {
        log.read(0, limits(max_bytes, ReadBound::LogEnd, first_batch))
            .unwrap()
            .region
    };
    assert_eq!(
        read(size * 2 + 1, FirstBatch::Whole).unwrap().length,
        size * 2
    );
    assert_eq!(
        read(1, FirstBatch::Whole).unwrap().length,
        size,
        "KIP-74: first batch whole"
    );
    assert!(read(1, FirstBatch::WithinMaxBytes).is_none());

    log.set_high_watermark(2);
    let below_hw = log
        .read(
            0,
            limits(u64::MAX, ReadBound::HighWatermark, FirstBatch::Whole),
        )
        .unwrap();
    assert_eq!(below_hw.region.unwrap().length, size * 2);
    assert_eq!((below_hw.high_watermark, below_hw.log_end_offset), (2, 5));
    let at_hw = log
        .read(
            2,
            limits(u64::MAX, ReadBound::HighWatermark, FirstBatch::Whole),
        )
        .unwrap();
    assert!(at_hw.region.is_none());

    assert!(
        log.read(5, ALL).unwrap().region.is_none(),
        "at the log end: empty, not an error"
    );
    assert!(matches!(
        log.read(6, ALL),
        Err(StorageError::OffsetOutOfRange {
            requested: 6,
            log_start_offset: 0,
            log_end_offset: 5
        })
    ));
    assert!(matches!(
        log.read(-1, ALL),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn invalid_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(
        dir.path(),
        &LogConfig {
            batch_bytes_max: 200,
            ..LogConfig::default()
        },
    );
    let mut good_then_corrupt = batch(1, 10, 1, 0);
    let mut corrupt = batch(1, 10, 2, 0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    good_then_corrupt.extend(corrupt);
    assert!(matches!(
        log.append(&mut good_then_corrupt, 0, 0),
        Err(StorageError::InvalidBatch { batch_index: 1, .. })
    ));
    assert!(matches!(
        log.append(&mut batch(1, 300, 1, 0), 0, 0),
        Err(StorageError::BatchTooLarge { batch_index: 0, .. })
    ));
    assert!(matches!(
        log.append(&mut [0u8; 7], 0, 0),
        Err(StorageError::InvalidBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    assert!(!log.is_poisoned(), "bad input is not an I/O failure");
}

#[test]
fn leader_epochs_are_stamped_cached_and_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    log.append(&mut batch(2, 1, 1, 0), 0, 0).unwrap();
    log.append(&mut batch(2, 1, 2, 0), 3, 0).unwrap();
    assert!(matches!(
        log.append(&mut batch(1, 1, 3, 0), 2, 0),
        Err(StorageError::StaleLeaderEpoch {
            epoch: 2,
            latest_epoch: 3
        })
    ));
    assert_eq!(log.leader_epochs().entries(), &[(0, 0), (3, 2)]);
    assert_eq!(
        log.leader_epochs().end_offset_for(0, log.log_end_offset()),
        Some((0, 2))
    );
    log.close().unwrap();
    let (log, report) = open(dir.path(), &LogConfig::default());
    assert!(report.clean);
    assert_eq!(log.leader_epochs().entries(), &[(0, 0), (3, 2)]);
}

#[test]
fn clean_close_reopens_without_rescanning_and_a_crash_rescans() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments();
    let (mut log, _) = open(dir.path(), &config);
    for seed in 0..30 {
        append(&mut log, &batch(2, 100, seed, seed as i64));
    }
    let before = read_all(&log);
    log.close().unwrap();

    let (mut log, report) = open(dir.path(), &config);
    assert!(report.clean, "{report:?}");
    assert_eq!(report.segments_recovered, 0);
    assert_eq!(read_all(&log), before);
    assert!(log.check_indexes().unwrap().is_empty());
    append(&mut log, &batch(1, 10, 99, 0));
    drop(log); // a crash: no close, nothing flushed with FlushPolicy::Os

    let (log, report) = open(dir.path(), &config);
    assert!(!report.clean);
    assert_eq!(
        report.segments_recovered, 1,
        "only the unflushed active segment"
    );
    assert_eq!(report.truncation, None);
    assert_eq!(log.log_end_offset(), 61);
    assert_eq!(&read_all(&log)[..before.len()], &before[..]);
    assert!(log.check_indexes().unwrap().is_empty());
}

#[test]
fn timestamp_lookup_finds_the_first_batch_at_or_after_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &small_segments());
    // Timestamps 1000, 1010, ... with one late (older) batch in the middle.
    for seed in 0..50 {
        let timestamp = if seed == 25 {
            5
        } else {
            1_000 + seed as i64 * 10
        };
        append(&mut log, &batch(2, 60, seed, timestamp));
    }
    let found = log.find_by_timestamp(1_000).unwrap().unwrap();
    assert_eq!(found.base_offset, 0);
    let found = log.find_by_timestamp(1_101).unwrap().unwrap();
    assert_eq!((found.base_offset, found.max_timestamp_ms), (22, 1_110));
    let found = log.find_by_timestamp(1_250).unwrap().unwrap();
    assert_eq!(
        found.base_offset, 52,
        "the late batch at offset 50 is skipped"
    );
    assert_eq!(common::split(&found.region.read_to_vec().unwrap())[0].0, 52);
    assert!(log.find_by_timestamp(2_000).unwrap().is_none());
    assert_eq!(log.max_timestamp().unwrap(), Some((1_490, 99)));
}

#[test]
fn log_append_time_stamps_batches_with_broker_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let (mut log, _) = open(dir.path(), &config);
    log.append(&mut batch(2, 5, 1, 10), 0, 777).unwrap();
    let (_, stored) = &read_all(&log)[0];
    let view = BatchView::validated(stored).unwrap();
    assert!(view.is_log_append_time());
    assert_eq!(view.max_timestamp(), 777);
}

#[test]
fn truncation_removes_whole_batches_from_the_offset_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments();
    let (mut log, _) = open(dir.path(), &config);
    for seed in 0..40 {
        append(&mut log, &batch(3, 80, seed, 0));
    }
    let before = read_all(&log);
    let segments = log.segment_count();
    // Offset 31 is inside the batch [30, 32]: that batch goes too.
    assert_eq!(log.truncate_to(31).unwrap(), 30);
    assert!(log.segment_count() < segments);
    assert_eq!(read_all(&log), before[..10]);
    assert!(log.check_indexes().unwrap().is_empty());
    assert_eq!(append(&mut log, &batch(1, 1, 7, 0)), (30, 30));
    log.close().unwrap();
    let (log, report) = open(dir.path(), &config);
    assert!(report.clean);
    assert_eq!(log.log_end_offset(), 31);

    drop(log);
    let (mut log, _) = open(dir.path(), &config);
    log.truncate_to(0).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 0, 1)
    );
}

#[test]
fn replicated_appends_keep_offsets_and_a_gap_stays_in_the_segment() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let (mut leader, _) = open(leader_dir.path(), &LogConfig::default());
    leader.append(&mut batch(2, 5, 1, 0), 4, 0).unwrap();
    leader.append(&mut batch(2, 5, 2, 0), 4, 0).unwrap();
    let stored = read_all(&leader);

    let (mut follower, _) = open(follower_dir.path(), &LogConfig::default());
    follower.append_replicated(&stored[0].1, 0).unwrap();
    assert!(matches!(
        follower.append_replicated(&stored[0].1, 0),
        Err(StorageError::NonMonotonicOffset {
            base_offset: 0,
            log_end_offset: 2
        })
    ));
    // A batch further on, as after compaction removed some on the leader.
    let mut later = stored[1].1.clone();
    lmq_storage::batch::set_base_offset(&mut later, 10);
    follower.append_replicated(&later, 0).unwrap();
    assert_eq!(follower.segment_base_offsets(), [0]);
    assert_eq!(follower.log_end_offset(), 12);
    assert_eq!(follower.leader_epochs().entries(), &[(4, 0)]);
    assert_eq!(follower.cleaner_checkpoint().replicated_gaps_below, 12);
    drop(follower);
    let (follower, report) = open(follower_dir.path(), &LogConfig::default());
    assert_eq!(report.truncation, None);
    assert_eq!(follower.log_end_offset(), 12);
    // Reading from inside the gap returns the batch after it.
    let bases: Vec<i64> = read_all(&follower).iter().map(|(base, _)| *base).collect();
    assert_eq!(bases, [0, 10]);
    let from_gap = follower.read(5, ALL).unwrap();
    assert_eq!(
        common::split(&from_gap.region.unwrap().read_to_vec().unwrap())[0].0,
        10
    );
}

/// A gap right after a roll (the active segment empty) names the new segment by the batch's
/// offset, after flushing what comes before and checkpointing past it.
#[test]
fn a_gap_after_a_roll_names_the_segment_by_its_first_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut follower, _) = open(dir.path(), &LogConfig::default());
    let mut first = batch(2, 5, 1, 0);
    lmq_storage::batch::set_partition_leader_epoch(&mut first, 0);
    follower.append_replicated(&first, 0).unwrap();
    follower.roll().unwrap();
    let mut later = batch(2, 5, 2, 0);
    lmq_storage::batch::set_base_offset(&mut later, 10);
    lmq_storage::batch::set_partition_leader_epoch(&mut later, 0);
    follower.append_replicated(&later, 0).unwrap();
    assert_eq!(follower.segment_base_offsets(), [0, 10]);
    assert_eq!(follower.recovery_point(), 10);
    drop(follower);
    let (follower, report) = open(dir.path(), &LogConfig::default());
    assert_eq!(report.truncation, None);
    assert_eq!(follower.log_end_offset(), 12);
}

#[test]
fn delete_records_moves_the_log_start_and_drops_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &small_segments());
    for seed in 0..40 {
        append(&mut log, &batch(2, 100, seed, 0));
    }
    let segments = log.segment_base_offsets();
    assert!(matches!(
        log.advance_log_start(81),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let target = segments[2] + 1;
    assert_eq!(log.advance_log_start(target).unwrap(), target);
    assert_eq!(log.segment_base_offsets()[0], segments[2]);
    assert!(matches!(
        log.read(target - 1, ALL),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let first = common::split(
        &log.read(target, ALL)
            .unwrap()
            .region
            .unwrap()
            .read_to_vec()
            .unwrap(),
    )[0]
    .0;
    assert_eq!(first, target - 1, "the batch holding the new log start");
    drop(log);
    let (log, _) = open(dir.path(), &small_segments());
    assert_eq!(log.log_start_offset(), target);
}

#[test]
fn retention_by_size_and_time_never_deletes_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments();
    config.retention = RetentionPolicy {
        retention_ms: None,
        retention_bytes: Some(8 * 1024),
    };
    let (mut log, _) = open(dir.path(), &config);
    for seed in 0..60 {
        append(&mut log, &batch(2, 100, seed, 1_000));
    }
    let total = log.size_bytes();
    let outcome = log.apply_retention(0).unwrap();
    assert!(!outcome.deleted_segments.is_empty());
    assert!(log.size_bytes() >= 8 * 1024 && log.size_bytes() < total);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert_eq!(outcome.log_start_offset, log.log_start_offset());

    config.retention = RetentionPolicy {
        retention_ms: Some(500),
        retention_bytes: None,
    };
    log.set_config(config.clone()).unwrap();
    assert!(
        log.apply_retention(1_500)
            .unwrap()
            .deleted_segments
            .is_empty(),
        "not yet expired"
    );
    let outcome = log.apply_retention(1_501).unwrap();
    assert!(!outcome.deleted_segments.is_empty());
    assert_eq!(log.segment_count(), 1, "an empty active segment remains");
    assert_eq!(log.log_start_offset(), 120);
    assert_eq!(log.log_end_offset(), 120);
    assert_eq!(append(&mut log, &batch(1, 1, 1, 2_000)), (120, 120));
    drop(log);
    let (log, _) = open(dir.path(), &config);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (120, 121));
}

#[test]
fn missing_and_garbage_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments();
    let (mut log, _) = open(dir.path(), &config);
    for seed in 0..40 {
        append(&mut log, &batch(2, 100, seed, 1_000 + seed as i64));
    }
    let before = read_all(&log);
    let bases = log.segment_base_offsets();
    log.close().unwrap();
    let index = |base: i64, suffix: &str| dir.path().join(format!("{base:020}.{suffix}"));
    std::fs::remove_file(index(bases[0], "index")).unwrap();
    std::fs::remove_file(index(bases[1], "timeindex")).unwrap();
    std::fs::write(index(bases[2], "index"), [0xab; 40]).unwrap();
    // Plausible-looking but wrong: strictly increasing entries pointing at the wrong places.
    let mut wrong = Vec::new();
    for entry in 1..4u32 {
        wrong.extend_from_slice(&entry.to_be_bytes());
        wrong.extend_from_slice(&(entry * 3).to_be_bytes());
    }
    std::fs::write(index(bases[3], "index"), wrong).unwrap();

    let (log, _) = open(dir.path(), &config);
    assert_eq!(read_all(&log), before);
    assert_eq!(
        log.find_by_timestamp(1_020).unwrap().unwrap().base_offset,
        40
    );
    assert!(
        log.check_indexes().unwrap().is_empty(),
        "{:?}",
        log.check_indexes()
    );
    assert!(index(bases[0], "index").exists());
}

#[test]
fn stray_files_from_interrupted_work_are_cleaned_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    append(&mut log, &batch(1, 1, 1, 0));
    log.close().unwrap();
    std::fs::write(dir.path().join("state.checkpoint.tmp"), b"half").unwrap();
    std::fs::write(dir.path().join("00000000000000000500.index"), [0u8; 8]).unwrap();
    let (log, _) = open(dir.path(), &LogConfig::default());
    assert!(!dir.path().join("state.checkpoint.tmp").exists());
    assert!(!dir.path().join("00000000000000000500.index").exists());
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn an_unreadable_checkpoint_means_full_recovery_not_data_loss() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments();
    let (mut log, _) = open(dir.path(), &config);
    log.append(&mut batch(2, 100, 1, 0), 0, 0).unwrap();
    log.append(&mut batch(2, 100, 2, 0), 2, 0).unwrap();
    for seed in 0..30 {
        log.append(&mut batch(2, 100, seed, 0), 2, 0).unwrap();
    }
    let end = log.log_end_offset();
    log.close().unwrap();
    std::fs::write(dir.path().join("state.checkpoint"), b"garbage").unwrap();
    let (log, report) = open(dir.path(), &config);
    assert!(report.checkpoint_rebuilt);
    assert_eq!(report.truncation, None);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.leader_epochs().entries(), &[(0, 0), (2, 2)]);
}

#[test]
fn bad_config_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes_max: 1,
        ..LogConfig::default()
    };
    let error =
        lmq_storage::PartitionLog::open(dir.path(), config, Default::default(), 0).unwrap_err();
    assert!(error.to_string().contains("segment_bytes_max"), "{error}");
}

#[test]
fn segments_roll_by_age_once_they_hold_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let (mut log, _) = open(dir.path(), &config);
    log.append(&mut batch(1, 1, 1, 0), 0, 10_000).unwrap();
    log.append(&mut batch(1, 1, 2, 0), 0, 10_999).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&mut batch(1, 1, 3, 0), 0, 11_000).unwrap();
    assert_eq!(log.segment_base_offsets(), [0, 2]);
}

#[test]
fn interval_flush_policy_flushes_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_policy: lmq_storage::FlushPolicy::IntervalMs(100),
        ..LogConfig::default()
    };
    let (mut log, _) = open(dir.path(), &config);
    // The open counts as the last flush (time 0 in these tests).
    let info = log.append(&mut batch(1, 1, 1, 0), 0, 50).unwrap();
    assert!(!info.durability.is_on_disk());
    assert_eq!(log.recovery_point(), 0);
    log.flush_if_due(99).unwrap();
    assert_eq!(log.recovery_point(), 0);
    log.flush_if_due(100).unwrap();
    assert_eq!(log.recovery_point(), 1);
    let info = log.append(&mut batch(1, 1, 2, 0), 0, 150).unwrap();
    assert!(!info.durability.is_on_disk());
    let info = log.append(&mut batch(1, 1, 3, 0), 0, 200).unwrap();
    assert!(info.durability.is_on_disk(), "100 ms after the last flush");
    assert_eq!(log.recovery_point(), 3);
}

#[test]
fn open_sealed_segment_files_stay_within_the_shared_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = std::sync::Arc::new(lmq_storage::FileCache::new(
        std::num::NonZeroUsize::new(2).unwrap(),
    ));
    let options = lmq_storage::LogOptions {
        file_cache: cache.clone(),
        ..Default::default()
    };
    let (mut log, _) =
        lmq_storage::PartitionLog::open(dir.path(), small_segments(), options, 0).unwrap();
    for seed in 0..60 {
        append(&mut log, &batch(2, 100, seed, 0));
    }
    assert!(log.segment_count() > 3);
    assert_eq!(read_all(&log).len(), 60);
    assert_eq!(cache.open_files(), 2);
}

/// Reads jump over whole batches by the offset index and walk only the last headers: the
/// region and its record count match a walk over every batch, for any start, size limit and
/// high watermark.
#[test]
fn index_assisted_reads_match_a_walk_over_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let (mut log, _) = open(dir.path(), &config);
    // (base offset, last offset, bytes) of batches of 1-4 records and varied sizes.
    let mut batches = Vec::new();
    for seed in 0..120u64 {
        let bytes = batch(
            1 + (seed % 4) as usize,
            40 + (seed * 37 % 200) as usize,
            seed,
            0,
        );
        let (base, last) = append(&mut log, &bytes);
        batches.push((base, last, bytes.len() as u64));
    }
    let log_end = log.log_end_offset();
    for high_watermark in [log_end, log_end / 2, 7] {
        log.set_high_watermark(high_watermark);
        for start in (0..log_end).step_by(3) {
            for max_bytes in [1, 100, 500, 1_000, 4_096, 20_000, u64::MAX] {
                let limits = ReadLimits {
                    max_bytes,
                    bound: ReadBound::HighWatermark,
                    first_batch: FirstBatch::Whole,
                };
                let read = log.read(start, limits).unwrap();
                let first = batches
                    .iter()
                    .position(|&(_, last, _)| last >= start)
                    .unwrap();
                let mut expected = None;
                if batches[first].1 < high_watermark {
                    let (mut length, mut records) = (0u64, 0u64);
                    for &(base, last, bytes) in &batches[first..] {
                        let fits = length == 0 || length + bytes <= max_bytes;
                        if last >= high_watermark || !fits {
                            break;
                        }
                        length += bytes;
                        records += (last - base + 1) as u64;
                    }
                    expected = Some((length, records));
                }
                let got = read
                    .region
                    .as_ref()
                    .map(|region| (region.length, read.records));
                assert_eq!(
                    got, expected,
                    "start {start}, max_bytes {max_bytes}, high watermark {high_watermark}"
                );
            }
        }
    }
}

/// Disk blocks a file holds (what `du` counts), not its length.
fn allocated_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// A partition with 1 GiB segments costs a few KiB of index until its active segment has
/// entries to keep, not the 5 MiB a full segment's indexes can use: a broker with thousands
/// of partitions would otherwise hold GiBs of disk in empty index space.
#[test]
fn a_new_segments_indexes_take_disk_as_their_entries_need_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default();
    assert_eq!(config.segment_bytes_max, 1024 * 1024 * 1024);
    let (mut log, _) = open(dir.path(), &config);
    append(&mut log, &batch(1, 10, 1, 100));
    let index = dir.path().join("00000000000000000000.index");
    let time_index = dir.path().join("00000000000000000000.timeindex");
    let allocated = allocated_bytes(&index) + allocated_bytes(&time_index);
    assert!(
        allocated <= 64 * 1024,
        "the empty indexes of one segment hold {allocated} bytes of disk"
    );

    // Entries past the first allocation grow the files, and read back after a reopen.
    let dir = tempfile::tempdir().unwrap();
    let small_interval = LogConfig {
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let (mut log, _) = open(dir.path(), &small_interval);
    let index = dir.path().join("00000000000000000000.index");
    for seed in 0..3_001u64 {
        append(&mut log, &batch(1, 10, seed, 100 + seed as i64));
    }
    assert!(allocated_bytes(&index) >= 3_000 * 8);
    assert!(allocated_bytes(&index) < 1024 * 1024);
    let sent = read_all(&log);
    assert_eq!(sent.len(), 3_001);
    log.close().unwrap();
    assert_eq!(
        std::fs::metadata(&index).unwrap().len(),
        3_000 * 8,
        "sealed to its entries (one per batch after the first)"
    );
    let (log, report) = open(dir.path(), &small_interval);
    assert!(report.clean, "{report:?}");
    assert_eq!(read_all(&log), sent);
    for offset in [0, 1, 1_500, 2_999, 3_000] {
        let read = log
            .read(
                offset,
                ReadLimits {
                    max_bytes: 1,
                    ..ALL
                },
            )
            .unwrap();
        assert!(read.region.is_some(), "offset {offset}");
    }
}

/// The broker reopens a poisoned log with `open_existing`: a topic deleted meanwhile has its
/// directory removed, and the reopen must not bring it back (an orphan a restart would load).
#[test]
fn opening_an_existing_log_never_creates_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let partition_dir = dir.path().join("topic-0");
    let (mut log, _) = open(&partition_dir, &LogConfig::default());
    append(&mut log, &batch(2, 10, 1, 100));
    drop(log);
    let (log, report) = lmq_storage::PartitionLog::open_existing(
        &partition_dir,
        LogConfig::default(),
        lmq_storage::LogOptions::default(),
        0,
    )
    .unwrap();
    assert_eq!(report.log_end_offset, 2);
    drop(log);

    std::fs::remove_dir_all(&partition_dir).unwrap();
    let outcome = lmq_storage::PartitionLog::open_existing(
        &partition_dir,
        LogConfig::default(),
        lmq_storage::LogOptions::default(),
        0,
    );
    assert!(
        !partition_dir.exists(),
        "opening the existing log of a deleted partition created its directory again"
    );
    assert!(
        matches!(&outcome, Err(StorageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound),
        "{:?}",
        outcome.map(|(_, report)| report)
    );
}
