//! Group commit: with `LogOptions::group_commit` and `FlushPolicy::EveryBatch`, appends leave
//! their fsync to the owner, one fsync covers every append before it, and nothing is
//! reported durable that the fsync did not cover.

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

use common::{FlakySyncer, batch};
use lmq_storage::builder::BatchBuilder;
use lmq_storage::{FlushPolicy, LogConfig, LogOptions, PartitionLog, StorageError, Syncer};

fn open(dir: &std::path::Path, config: LogConfig, syncer: &Arc<FlakySyncer>) -> PartitionLog {
    let options = LogOptions {
        syncer: Arc::clone(syncer) as Arc<dyn Syncer>,
        group_commit: true,
        ..LogOptions::default()
    };
    PartitionLog::open(dir, config, options, 0).unwrap().0
}

fn every_batch() -> LogConfig {
    LogConfig {
        flush_policy: FlushPolicy::EveryBatch,
        ..LogConfig::default()
    }
}

#[test]
fn one_fsync_covers_every_append_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), every_batch(), &syncer);
    // The first append checkpoints its new leader epoch (fsyncs of the state file).
    log.append(&mut batch(2, 50, 0, 0), 0, 0).unwrap();
    let before = syncer.calls.load(Ordering::SeqCst);
    for seed in 1..3 {
        let info = log.append(&mut batch(2, 50, seed, 0), 0, 0).unwrap();
        assert!(!info.durable && info.flush_pending, "{info:?}");
    }
    assert_eq!(
        syncer.calls.load(Ordering::SeqCst),
        before,
        "no fsync on append"
    );

    let pending = log.pending_flush().unwrap().unwrap();
    assert_eq!(pending.end_offset(), 6);
    // An append while the fsync runs (without the log's lock) is not covered by it.
    let late = log.append(&mut batch(2, 50, 3, 0), 0, 0).unwrap();
    log.complete_flush(pending.sync()).unwrap();
    assert_eq!(syncer.calls.load(Ordering::SeqCst), before + 1);
    assert_eq!(log.recovery_point(), 6);
    assert!(late.last_offset >= log.recovery_point());

    let pending = log.pending_flush().unwrap().unwrap();
    assert_eq!(pending.end_offset(), 8);
    log.complete_flush(pending.sync()).unwrap();
    assert_eq!(log.recovery_point(), 8);
    assert!(
        log.pending_flush().unwrap().is_none(),
        "nothing left to flush"
    );
}

#[test]
fn other_policies_and_plain_logs_never_ask_for_a_group_flush() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), LogConfig::default(), &syncer);
    let info = log.append(&mut batch(2, 50, 0, 0), 0, 0).unwrap();
    assert!(!info.durable && !info.flush_pending, "{info:?}");

    // Without group commit, EveryBatch still flushes inside the append.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) =
        PartitionLog::open(dir.path(), every_batch(), LogOptions::default(), 0).unwrap();
    let info = log.append(&mut batch(2, 50, 0, 0), 0, 0).unwrap();
    assert!(info.durable && !info.flush_pending, "{info:?}");
}

#[test]
fn a_flush_of_a_truncated_segment_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), every_batch(), &syncer);
    for seed in 0..3 {
        log.append(&mut batch(2, 50, seed, 0), 0, 0).unwrap();
    }
    let pending = log.pending_flush().unwrap().unwrap();
    log.truncate_to(2).unwrap();
    for seed in 3..5 {
        log.append(&mut batch(2, 50, seed, 0), 0, 0).unwrap();
    }
    log.complete_flush(pending.sync()).unwrap();
    assert!(
        log.recovery_point() <= 2,
        "offsets 2..6 were rewritten after the fsync was taken: {}",
        log.recovery_point()
    );
}

#[test]
fn a_retried_batch_waits_for_the_flush_of_its_original() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), every_batch(), &syncer);
    let producer_batch = || {
        let mut builder = BatchBuilder::new(0).producer(7, 0, 0);
        builder.push(None, Some(b"once"), 0);
        builder.build()
    };
    let first = log.append(&mut producer_batch(), 0, 0).unwrap();
    assert!(first.flush_pending);
    let retry = log.append(&mut producer_batch(), 0, 0).unwrap();
    assert_eq!(retry.duplicate_batches, 1);
    assert!(retry.flush_pending, "the original is not on disk yet");

    let pending = log.pending_flush().unwrap().unwrap();
    log.complete_flush(pending.sync()).unwrap();
    let again = log.append(&mut producer_batch(), 0, 0).unwrap();
    assert!(again.durable && !again.flush_pending, "{again:?}");
}

#[test]
fn a_failed_group_fsync_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), every_batch(), &syncer);
    log.append(&mut batch(2, 50, 0, 0), 0, 0).unwrap();
    syncer.failing.store(true, Ordering::SeqCst);
    let pending = log.pending_flush().unwrap().unwrap();
    let error = log.complete_flush(pending.sync()).unwrap_err();
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
    assert_eq!(log.recovery_point(), 0);
    syncer.failing.store(false, Ordering::SeqCst);
    assert!(log.append(&mut batch(2, 50, 1, 0), 0, 0).is_err());
    assert!(log.pending_flush().is_err());
}
