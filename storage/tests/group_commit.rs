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

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use common::{FlakySyncer, batch, small_segments};
use lmq_storage::builder::BatchBuilder;
use lmq_storage::{
    FlushPolicy, LogConfig, LogOptions, PartitionLog, RecoveryReport, StorageError, Syncer,
};

fn open(dir: &std::path::Path, config: LogConfig, syncer: &Arc<FlakySyncer>) -> PartitionLog {
    open_with(dir, config, Arc::clone(syncer) as Arc<dyn Syncer>).0
}

fn open_with(
    dir: &std::path::Path,
    config: LogConfig,
    syncer: Arc<dyn Syncer>,
) -> (PartitionLog, RecoveryReport) {
    let options = LogOptions {
        syncer,
        flush_owner: lmq_storage::FlushOwner::Caller,
        ..LogOptions::default()
    };
    PartitionLog::open(dir, config, options, 0).unwrap()
}

/// Appends batches of about 2 KiB until the log has `segments` segments; returns the next seed.
fn append_until(log: &mut PartitionLog, segments: usize, mut seed: u64) -> u64 {
    while log.segment_count() < segments {
        log.append(&mut batch(4, 500, seed, 0), 0, 0).unwrap();
        seed += 1;
    }
    seed
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
        assert!(
            !info.durability.is_on_disk() && info.durability.is_flush_pending(),
            "{info:?}"
        );
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
    assert!(
        !info.durability.is_on_disk() && !info.durability.is_flush_pending(),
        "{info:?}"
    );

    // Without group commit, EveryBatch still flushes inside the append.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) =
        PartitionLog::open(dir.path(), every_batch(), LogOptions::default(), 0).unwrap();
    let info = log.append(&mut batch(2, 50, 0, 0), 0, 0).unwrap();
    assert!(
        info.durability.is_on_disk() && !info.durability.is_flush_pending(),
        "{info:?}"
    );
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
    assert!(first.durability.is_flush_pending());
    let retry = log.append(&mut producer_batch(), 0, 0).unwrap();
    assert_eq!(retry.duplicate_batches, 1);
    assert!(
        retry.durability.is_flush_pending(),
        "the original is not on disk yet"
    );

    let pending = log.pending_flush().unwrap().unwrap();
    log.complete_flush(pending.sync()).unwrap();
    let again = log.append(&mut producer_batch(), 0, 0).unwrap();
    assert!(
        again.durability.is_on_disk() && !again.durability.is_flush_pending(),
        "{again:?}"
    );
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

/// A roll under a policy that does not flush every append seals the segment without an
/// fsync (a whole segment of dirty pages would stall every append behind it); the next
/// pending flush covers the sealed segments and the active one, and only then moves the
/// recovery point. Unflushed, the data survives a crash of the process and is rescanned.
#[test]
fn rolls_leave_the_fsync_to_the_next_pending_flush() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let paths = Arc::new(PathSyncer::default());
    let (mut log, _) = open_with(
        dir.path(),
        small_segments(),
        Arc::clone(&paths) as Arc<dyn Syncer>,
    );
    let seed = append_until(&mut log, 4, 0);
    let synced = paths.synced.lock().unwrap().clone();
    let bases = log.segment_base_offsets();
    for base in &bases[..bases.len() - 1] {
        let path = dir
            .path()
            .join(format!("{base:020}.log"))
            .canonicalize()
            .unwrap();
        assert!(
            !synced.contains(&path),
            "{} was synced on append",
            path.display()
        );
    }
    assert_eq!(log.recovery_point(), 0);
    assert!(log.has_unflushed_segments());

    // A crash now: what the page cache holds is rescanned, nothing is lost.
    let end = log.log_end_offset();
    drop(log);
    let (mut log, report) = open_with(
        dir.path(),
        small_segments(),
        Arc::clone(&syncer) as Arc<dyn Syncer>,
    );
    assert_eq!(log.log_end_offset(), end);
    assert!(report.segments_recovered >= 4, "{report:?}");

    // Rolled again after the reopen: one pending flush covers them all.
    append_until(&mut log, 6, seed);
    let syncs = syncer.calls.load(Ordering::SeqCst);
    let pending = log.pending_flush().unwrap().unwrap();
    assert_eq!(pending.end_offset(), log.log_end_offset());
    log.complete_flush(pending.sync()).unwrap();
    assert!(
        syncer.calls.load(Ordering::SeqCst) - syncs >= 2,
        "sealed and active synced"
    );
    assert_eq!(log.recovery_point(), log.log_end_offset());
    assert!(!log.has_unflushed_segments());
}

/// A flush taken before a truncation moves nothing, even when a roll came in between.
#[test]
fn a_flush_taken_before_a_truncation_does_not_cover_rolled_segments() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), small_segments(), &syncer);
    let seed = append_until(&mut log, 3, 0);
    let pending = log.pending_flush().unwrap().unwrap();
    log.truncate_to(5).unwrap();
    append_until(&mut log, 3, seed);
    log.complete_flush(pending.sync()).unwrap();
    assert!(log.recovery_point() <= 5, "{}", log.recovery_point());
    assert!(log.has_unflushed_segments());
}

/// The active segment a flush covered up to its end at the time is rolled while the fsync
/// runs: the appends made to it after the flush was taken are not on disk, so it stays
/// listed unflushed and the next flush syncs it again (the recovery point never moves past
/// what an fsync covered).
#[test]
fn a_segment_rolled_during_a_flush_stays_unflushed() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Arc::new(PathSyncer::default());
    let (mut log, _) = open_with(
        dir.path(),
        small_segments(),
        Arc::clone(&paths) as Arc<dyn Syncer>,
    );
    log.append(&mut batch(4, 500, 0, 0), 0, 0).unwrap();
    let rolled = log.segment_base_offsets()[0];
    let pending = log.pending_flush().unwrap().unwrap();
    let covered = pending.end_offset();
    // While the fsync runs (without the lock), appends fill and roll the active segment.
    append_until(&mut log, 2, 1);
    let flushed = pending.sync();
    paths.synced.lock().unwrap().clear();
    log.complete_flush(flushed).unwrap();
    assert_eq!(log.recovery_point(), covered);
    assert!(
        log.has_unflushed_segments(),
        "segment {rolled} got appends after the flush was taken"
    );
    let pending = log.pending_flush().unwrap().unwrap();
    log.complete_flush(pending.sync()).unwrap();
    let path = dir
        .path()
        .join(format!("{rolled:020}.log"))
        .canonicalize()
        .unwrap();
    assert!(
        paths.synced.lock().unwrap().contains(&path),
        "the next flush syncs the rolled segment again"
    );
    assert_eq!(log.recovery_point(), log.log_end_offset());
}

/// Records the path of every non-empty file it syncs (a new segment's empty file is synced
/// when created).
#[derive(Debug, Default)]
struct PathSyncer {
    synced: Mutex<HashSet<PathBuf>>,
}

impl Syncer for PathSyncer {
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        if file.metadata()?.len() > 0 {
            let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
            self.synced.lock().unwrap().insert(path);
        }
        file.sync_data()
    }
}
