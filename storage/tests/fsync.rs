//! An fsync failure poisons the log: the append that hit it is not acknowledged, nothing after
//! it is, and a reopen recovers every acknowledged record.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{FlakySyncer, batch, read_all};
use lmq_storage::{FlushPolicy, LogConfig, LogOptions, PartitionLog, StorageError};

fn open(dir: &std::path::Path, config: LogConfig, syncer: Arc<FlakySyncer>) -> PartitionLog {
    let options = LogOptions {
        syncer,
        ..LogOptions::default()
    };
    PartitionLog::open(dir, config, options, 0).unwrap().0
}

#[test]
fn an_fsync_failure_poisons_the_log_and_nothing_after_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let config = LogConfig {
        flush_policy: FlushPolicy::EveryBatch,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone(), Arc::clone(&syncer));
    let mut acknowledged = Vec::new();
    for seed in 0..5 {
        let info = log.append(&mut batch(2, 50, seed, 0), 0, 0).unwrap();
        assert!(
            info.durability.is_on_disk(),
            "EveryBatch acknowledges only what is on disk"
        );
        acknowledged.push(info.base_offset);
    }
    let calls_before = syncer.calls.load(Ordering::SeqCst);
    syncer.failing.store(true, Ordering::SeqCst);

    let error = log.append(&mut batch(2, 50, 5, 0), 0, 0).unwrap_err();
    assert!(
        matches!(
            error,
            StorageError::Io {
                operation: "fsync",
                ..
            }
        ),
        "{error}"
    );
    assert!(log.is_poisoned());
    // The disk is healthy again, but the log does not retry: the page cache state after a
    // failed fsync is unknown.
    syncer.failing.store(false, Ordering::SeqCst);
    for seed in 6..9 {
        let error = log.append(&mut batch(1, 10, seed, 0), 0, 0).unwrap_err();
        assert!(matches!(error, StorageError::Poisoned { .. }), "{error}");
    }
    assert!(matches!(log.flush(0), Err(StorageError::Poisoned { .. })));
    assert!(matches!(log.roll(), Err(StorageError::Poisoned { .. })));
    assert!(matches!(
        log.truncate_to(0),
        Err(StorageError::Poisoned { .. })
    ));
    assert_eq!(
        syncer.calls.load(Ordering::SeqCst),
        calls_before + 1,
        "exactly one fsync attempt, never a retry"
    );
    // Reads of what was acknowledged still work.
    log.set_high_watermark(10);
    assert_eq!(read_all(&log).len(), 6);
    log.close().unwrap();

    let log = open(dir.path(), config, Arc::clone(&syncer));
    let recovered: Vec<i64> = read_all(&log).iter().map(|(base, _)| *base).collect();
    assert!(
        recovered.starts_with(&acknowledged),
        "acknowledged {acknowledged:?}, recovered {recovered:?}"
    );
    assert!(!log.is_poisoned(), "reopening clears the poison");
}

#[test]
fn an_fsync_failure_on_roll_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let config = LogConfig {
        segment_bytes_max: 1024,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, Arc::clone(&syncer));
    log.append(&mut batch(4, 200, 1, 0), 0, 0).unwrap();
    syncer.failing.store(true, Ordering::SeqCst);
    // The second batch does not fit: the roll flushes the old segment and fails.
    let error = log.append(&mut batch(4, 200, 2, 0), 0, 0).unwrap_err();
    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert!(log.is_poisoned());
    assert_eq!(
        log.log_end_offset(),
        4,
        "the batch after the failed roll was not written"
    );
}

#[test]
fn a_failed_checkpoint_for_a_new_epoch_poisons_before_writing_data() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), LogConfig::default(), Arc::clone(&syncer));
    log.append(&mut batch(1, 10, 1, 0), 0, 0).unwrap();
    syncer.failing.store(true, Ordering::SeqCst);
    assert!(log.append(&mut batch(1, 10, 2, 0), 1, 0).is_err());
    assert!(log.is_poisoned());
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(
        log.leader_epochs().latest_epoch(),
        Some(1),
        "in memory only"
    );
    drop(log);
    syncer.failing.store(false, Ordering::SeqCst);
    let log = open(dir.path(), LogConfig::default(), syncer);
    assert_eq!(log.leader_epochs().entries(), &[(0, 0)]);
    assert_eq!(log.log_end_offset(), 1);
}

/// A full disk poisons the log; retention must still delete whole old segments so the space
/// can come back (it writes nothing: no roll, no checkpoint), and the next open starts the log
/// after them.
#[test]
fn retention_deletes_old_segments_of_a_poisoned_log() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let config = LogConfig {
        flush_policy: FlushPolicy::EveryBatch,
        segment_bytes_max: 1024,
        retention: lmq_storage::RetentionPolicy {
            retention_ms: None,
            retention_bytes: Some(2048),
        },
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone(), Arc::clone(&syncer));
    for seed in 0..20 {
        log.append(&mut batch(2, 100, seed, 0), 0, 0).unwrap();
    }
    let segments_before = log.segment_count();
    assert!(segments_before > 4, "{segments_before} segments");
    syncer.failing.store(true, Ordering::SeqCst);
    log.append(&mut batch(2, 100, 99, 0), 0, 0).unwrap_err();
    assert!(log.is_poisoned());

    let outcome = log.apply_retention(0).unwrap();
    assert!(!outcome.deleted_segments.is_empty(), "{outcome:?}");
    assert!(
        log.size_bytes() <= 2048 + 1024,
        "{} bytes",
        log.size_bytes()
    );
    assert!(log.is_poisoned(), "retention does not unpoison the log");
    let log_start = outcome.log_start_offset;
    assert!(log_start > 0);
    drop(log);

    syncer.failing.store(false, Ordering::SeqCst);
    let reopened = open(dir.path(), config, syncer);
    assert_eq!(reopened.log_start_offset(), log_start);
    assert_eq!(
        reopened.segment_count(),
        segments_before - outcome.deleted_segments.len()
    );
}
