//! A follower copying a compacted leader log: batches come with offset gaps between them
//! (records the leader's cleaner removed). They go into the active segment like any other
//! batch, recovery keeps them, and reads count the records they hold.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{ALL, FlakySyncer, as_sent, batch, read_all};
use lmq_storage::batch::{set_base_offset, set_partition_leader_epoch};
use lmq_storage::{FlushPolicy, LogConfig, LogOptions, PartitionLog};

/// Batches of one fetch response a follower appends at once.
const BATCHES_PER_FETCH: usize = 10;

/// Offsets of a leader's compacted log: batch `index` holds `records` records at
/// `base(index)`, and the cleaner removed the 1 to 4 offsets after each.
fn gapped_base(index: usize, records: usize) -> i64 {
    (index * (records + 4) + index % 4) as i64
}

/// Batches as sent, with the base offset each has in the log.
type Sent = Vec<(i64, Vec<u8>)>;

/// `count` batches of `records` records each, as a leader holds them after compaction,
/// grouped into fetch responses: (base offset, batch as sent) and the concatenated bytes.
fn leader_batches(count: usize, records: usize) -> (Sent, Vec<Vec<u8>>) {
    let mut sent = Vec::new();
    let mut fetches = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(BATCHES_PER_FETCH) {
        let mut response = Vec::new();
        for &index in chunk {
            let original = batch(records, 40, index as u64, 0);
            let base = gapped_base(index, records);
            let mut stored = original.clone();
            set_base_offset(&mut stored, base);
            set_partition_leader_epoch(&mut stored, 0);
            response.extend_from_slice(&stored);
            sent.push((base, original));
        }
        fetches.push(response);
    }
    (sent, fetches)
}

fn open(dir: &std::path::Path, config: &LogConfig, syncer: Arc<FlakySyncer>) -> PartitionLog {
    let options = LogOptions {
        syncer,
        ..LogOptions::default()
    };
    PartitionLog::open(dir, config.clone(), options, 0)
        .unwrap()
        .0
}

fn as_stored(log: &PartitionLog) -> Sent {
    read_all(log)
        .into_iter()
        .map(|(base, bytes)| (base, as_sent(&bytes)))
        .collect()
}

/// 1,000 batches, each after a gap, in fetches of 10: a handful of segments (not one per
/// gap), a bounded number of fsyncs per fetch, and every batch back after a crash (no
/// close) and after a clean close.
#[test]
fn a_follower_appends_batches_after_gaps_into_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes_max: 64 * 1024,
        index_interval_bytes: 512,
        flush_policy: FlushPolicy::Os,
        ..LogConfig::default()
    };
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), &config, Arc::clone(&syncer));
    let (sent, fetches) = leader_batches(1_000, 2);
    let bytes_total: usize = fetches.iter().map(Vec::len).sum();
    let rolls_expected = bytes_total / config.segment_bytes_max as usize;
    let syncs_before = syncer.calls.load(Ordering::SeqCst);
    for fetch in &fetches {
        log.append_replicated(fetch, 0).unwrap();
    }
    let syncs = syncer.calls.load(Ordering::SeqCst) - syncs_before;
    assert!(
        log.segment_count() <= rolls_expected + 2,
        "{} segments for {bytes_total} bytes in 64 KiB segments",
        log.segment_count()
    );
    // A marker update per fetch (file + directory) and the rolls' fsyncs; not one per gap.
    assert!(
        syncs <= 2 * fetches.len() + 4 * (rolls_expected + 1),
        "{syncs} fsyncs for {} fetches",
        fetches.len()
    );
    assert_eq!(log.log_end_offset(), sent.last().unwrap().0 + 2);
    assert_eq!(as_stored(&log), sent);

    // A crash: no close, nothing flushed by the `os` policy beyond the rolls.
    drop(log);
    let (log, report) =
        PartitionLog::open(dir.path(), config.clone(), LogOptions::default(), 0).unwrap();
    assert_eq!(report.truncation, None, "{report:?}");
    assert!(report.segments_dropped.is_empty(), "{report:?}");
    assert_eq!(as_stored(&log), sent);

    // A clean close takes the fast path back.
    log.close().unwrap();
    let (log, report) = PartitionLog::open(dir.path(), config, LogOptions::default(), 0).unwrap();
    assert!(report.clean, "{report:?}");
    assert_eq!(as_stored(&log), sent);
}

/// Gapped appends go on after a truncation, and a crash after them keeps them.
#[test]
fn gapped_appends_after_a_truncation_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes_max: 8 * 1024,
        index_interval_bytes: 256,
        flush_policy: FlushPolicy::Os,
        ..LogConfig::default()
    };
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), &config, Arc::clone(&syncer));
    let (sent, fetches) = leader_batches(200, 1);
    let first = &fetches[..10];
    for fetch in first {
        log.append_replicated(fetch, 0).unwrap();
    }
    // The leader's log diverged at batch 50: cut there and fetch again.
    let cut = sent[50].0;
    assert!(log.truncate_to(cut).unwrap() <= cut);
    for fetch in &fetches[5..] {
        log.append_replicated(fetch, 0).unwrap();
    }
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), config, LogOptions::default(), 0).unwrap();
    assert_eq!(report.truncation, None, "{report:?}");
    assert_eq!(as_stored(&log), sent);
}

/// A read over batches with gaps between them counts the records they hold, also where
/// the offset index lets it skip reading their headers.
#[test]
fn a_read_over_gapped_batches_counts_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    let syncer = Arc::new(FlakySyncer::default());
    let mut log = open(dir.path(), &config, syncer);
    let (sent, fetches) = leader_batches(100, 3);
    for fetch in &fetches {
        log.append_replicated(fetch, 0).unwrap();
    }
    let result = log.read(0, ALL).unwrap();
    let region = result.region.unwrap();
    assert_eq!(
        common::split(&region.read_to_vec().unwrap()).len(),
        sent.len()
    );
    assert_eq!(result.records, 3 * sent.len() as u64);
}

/// An unreadable cleaner checkpoint after a crash: recovery cannot tell where a follower
/// appended gaps, so it accepts gaps inside every segment rather than cutting the log at
/// the first one.
#[test]
fn an_unreadable_cleaner_checkpoint_cuts_no_replicated_gap() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes_max: 8 * 1024,
        index_interval_bytes: 256,
        flush_policy: FlushPolicy::Os,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), &config, Arc::new(FlakySyncer::default()));
    let (sent, fetches) = leader_batches(100, 2);
    for fetch in &fetches {
        log.append_replicated(fetch, 0).unwrap();
    }
    drop(log);
    let path = lmq_storage::clean::CleanerCheckpoint::path(dir.path());
    std::fs::write(&path, "version 2\ngarbage\n").unwrap();
    let (mut log, report) =
        PartitionLog::open(dir.path(), config.clone(), LogOptions::default(), 0).unwrap();
    assert_eq!(report.truncation, None, "{report:?}");
    assert_eq!(as_stored(&log), sent);
    // Gapped appends go on, and the marker is written whole again.
    let more = leader_batches(110, 2);
    log.append_replicated(&more.1[10], 0).unwrap();
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), config, LogOptions::default(), 0).unwrap();
    assert_eq!(report.truncation, None, "{report:?}");
    assert_eq!(as_stored(&log), more.0);
}
