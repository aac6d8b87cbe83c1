//! Transactions on a partition log: transactional batches start a producer's transaction,
//! markers end it, the last stable offset waits for the earliest ongoing one, aborted
//! transactions are indexed per segment (`.txnindex`) and all of it survives a clean
//! restart, a crash, a lost or damaged index file and truncation. A model test drives random
//! transactions, crashes and truncations against a straightforward recomputation.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::path::Path;

use common::{open, small_segments};
use lmq_storage::builder::BatchBuilder;
use lmq_storage::control::{MarkerKind, TxnMarker};
use lmq_storage::producers::{MarkerEpochRule, MarkerError, SequenceError};
use lmq_storage::txn_index::AbortedTxn;
use lmq_storage::{LogConfig, PartitionLog, StorageError};
use proptest::prelude::*;

fn txn_batch(producer_id: i64, epoch: i16, base_sequence: i32, records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(0)
        .producer(producer_id, epoch, base_sequence)
        .transactional();
    for record in 0..records {
        let value = format!("{producer_id}-{base_sequence}-{record}");
        builder.push(Some(b"key"), Some(value.as_bytes()), 0);
    }
    builder.build()
}

fn marker(producer_id: i64, epoch: i16, coordinator_epoch: i32, kind: MarkerKind) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch: epoch,
        coordinator_epoch,
        kind,
        timestamp_ms: 5,
    }
}

fn write_marker(log: &mut PartitionLog, marker: TxnMarker) -> i64 {
    let (info, _) = log
        .append_marker(&marker, MarkerEpochRule::SameOrNewer, 0, 0)
        .unwrap();
    info.base_offset
}

fn aborted(log: &PartitionLog) -> Vec<AbortedTxn> {
    log.aborted_transactions(log.log_start_offset(), log.log_end_offset())
}

#[test]
fn the_last_stable_offset_waits_for_the_earliest_ongoing_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    log.append(&mut common::batch(2, 4, 1, 0), 0, 0).unwrap();
    assert_eq!(log.last_stable_offset(2), 2);
    log.append(&mut txn_batch(7, 0, 0, 3), 0, 0).unwrap(); // 2..=4
    log.append(&mut txn_batch(8, 0, 0, 1), 0, 0).unwrap(); // 5
    log.append(&mut txn_batch(7, 0, 3, 1), 0, 0).unwrap(); // 6
    assert_eq!(log.first_ongoing_offset(), Some(2));
    assert_eq!(log.last_stable_offset(7), 2);
    assert_eq!(
        log.last_stable_offset(1),
        1,
        "never above the high watermark"
    );
    let commit = write_marker(&mut log, marker(7, 0, 0, MarkerKind::Commit));
    assert_eq!(commit, 7);
    assert_eq!(
        log.last_stable_offset(7),
        2,
        "a transaction whose marker the high watermark has not passed is not stable yet"
    );
    assert_eq!(
        log.last_stable_offset(8),
        5,
        "producer 8's transaction still open"
    );
    let abort = write_marker(&mut log, marker(8, 0, 0, MarkerKind::Abort));
    assert_eq!(log.last_stable_offset(9), 9);
    assert_eq!(
        aborted(&log),
        [AbortedTxn {
            producer_id: 8,
            first_offset: 5,
            last_offset: abort,
            last_stable_offset: abort + 1,
        }]
    );
    assert!(
        log.aborted_transactions(0, 5).is_empty(),
        "before its first offset"
    );
    assert_eq!(log.aborted_transactions(9, 10), [], "after its marker");
}

#[test]
fn markers_from_fenced_producers_or_coordinators_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    log.append(&mut txn_batch(1, 3, 0, 1), 0, 0).unwrap();
    let refused = |log: &mut PartitionLog, marker: TxnMarker, rule| match log
        .append_marker(&marker, rule, 0, 0)
    {
        Err(StorageError::Marker { reason }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refused(
            &mut log,
            marker(1, 2, 0, MarkerKind::Commit),
            MarkerEpochRule::SameOrNewer
        ),
        MarkerError::FencedEpoch {
            current: 3,
            received: 2
        }
    );
    assert_eq!(
        refused(
            &mut log,
            marker(1, 3, 0, MarkerKind::Commit),
            MarkerEpochRule::Bumped
        ),
        MarkerError::FencedEpoch {
            current: 3,
            received: 3
        },
        "transaction version 2 markers carry the bumped epoch"
    );
    // A bumped epoch with coordinator epoch 4 ends it; the producer's epoch is now 4.
    let (_, completed) = log
        .append_marker(
            &marker(1, 4, 4, MarkerKind::Commit),
            MarkerEpochRule::Bumped,
            0,
            0,
        )
        .unwrap();
    assert_eq!(completed.unwrap().first_offset, 0);
    assert_eq!(log.producers().get(1).unwrap().epoch, 4);
    assert_eq!(
        refused(
            &mut log,
            marker(1, 4, 3, MarkerKind::Abort),
            MarkerEpochRule::SameOrNewer
        ),
        MarkerError::CoordinatorFenced {
            current: 4,
            received: 3
        }
    );
    // The retry of the marker already written is accepted (no transaction ongoing).
    let (_, completed) = log
        .append_marker(
            &marker(1, 4, 4, MarkerKind::Commit),
            MarkerEpochRule::Bumped,
            0,
            0,
        )
        .unwrap();
    assert_eq!(completed, None);
    // The bumped epoch restarts sequences.
    log.append(&mut txn_batch(1, 4, 0, 1), 0, 0).unwrap();
}

#[test]
fn producers_cannot_write_control_batches_or_leave_a_transaction_silently() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    let mut control = BatchBuilder::marker(1, 0, 0, MarkerKind::Commit, 0);
    assert!(matches!(
        log.append(&mut control, 0, 0),
        Err(StorageError::Sequence {
            reason: SequenceError::ControlBatch,
            ..
        })
    ));
    log.append(&mut txn_batch(1, 0, 0, 1), 0, 0).unwrap();
    let mut plain = BatchBuilder::new(0).producer(1, 0, 1);
    plain.push(None, Some(b"v"), 0);
    assert!(matches!(
        log.append(&mut plain.build(), 0, 0),
        Err(StorageError::Sequence {
            reason: SequenceError::TransactionOngoing { producer_id: 1 },
            ..
        })
    ));
}

/// Ongoing transactions and aborted ones, written across several segments.
fn transactional_log(dir: &Path) -> PartitionLog {
    let (mut log, _) = open(dir, &small_segments());
    for round in 0..20 {
        let sequence = round * 2;
        log.append(&mut txn_batch(1, 0, sequence, 2), 0, 0).unwrap();
        log.append(&mut common::batch(3, 200, round as u64, 0), 0, 0)
            .unwrap();
        let kind = if round % 3 == 0 {
            MarkerKind::Abort
        } else {
            MarkerKind::Commit
        };
        write_marker(&mut log, marker(1, 0, 0, kind));
    }
    log.append(&mut txn_batch(2, 0, 0, 1), 0, 0).unwrap();
    log.set_high_watermark(log.log_end_offset());
    assert!(log.segment_count() > 3, "the test needs several segments");
    log
}

fn txn_index_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txnindex"))
        .collect();
    files.sort();
    files
}

#[test]
fn transactions_survive_a_clean_restart_and_a_crash() {
    for crash in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = transactional_log(dir.path());
        let (lso, aborts) = (log.last_stable_offset(i64::MAX), aborted(&log));
        assert_eq!(aborts.len(), 7);
        assert_eq!(
            txn_index_files(dir.path()).len(),
            log.segment_count(),
            "one file per segment"
        );
        if crash {
            drop(log);
        } else {
            log.close().unwrap();
        }
        let (log, report) = open(dir.path(), &small_segments());
        assert!(!report.transaction_index_rebuilt);
        assert_eq!(log.last_stable_offset(i64::MAX), lso, "crash: {crash}");
        assert_eq!(aborted(&log), aborts, "crash: {crash}");
    }
}

#[test]
fn a_lost_or_damaged_txnindex_is_rebuilt_from_the_log() {
    for damage in ["remove", "garble"] {
        let dir = tempfile::tempdir().unwrap();
        let log = transactional_log(dir.path());
        let (lso, aborts) = (log.last_stable_offset(i64::MAX), aborted(&log));
        log.close().unwrap();
        let victim = txn_index_files(dir.path())
            .into_iter()
            .find(|path| std::fs::metadata(path).unwrap().len() > 0)
            .unwrap();
        match damage {
            "remove" => std::fs::remove_file(&victim).unwrap(),
            _ => std::fs::write(&victim, [1u8; 40]).unwrap(),
        }
        let (log, report) = open(dir.path(), &small_segments());
        assert!(report.transaction_index_rebuilt, "{damage}");
        assert_eq!(log.last_stable_offset(i64::MAX), lso, "{damage}");
        assert_eq!(aborted(&log), aborts, "{damage}");
        assert!(victim.exists());
        log.close().unwrap();
        let (log, report) = open(dir.path(), &small_segments());
        assert!(
            !report.transaction_index_rebuilt,
            "the rebuilt file is kept"
        );
        assert_eq!(aborted(&log), aborts);
    }
}

#[test]
fn truncation_cuts_markers_and_reopens_their_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &small_segments());
    log.append(&mut txn_batch(1, 0, 0, 2), 0, 0).unwrap(); // 0..=1
    let abort = write_marker(&mut log, marker(1, 0, 0, MarkerKind::Abort)); // 2
    log.append(&mut txn_batch(1, 0, 2, 1), 0, 0).unwrap(); // 3
    let commit = write_marker(&mut log, marker(1, 0, 0, MarkerKind::Commit)); // 4
    assert_eq!((abort, commit), (2, 4));
    assert_eq!(log.first_ongoing_offset(), None);
    log.truncate_to(4).unwrap();
    assert_eq!(log.first_ongoing_offset(), Some(3), "its marker was cut");
    assert_eq!(aborted(&log).len(), 1);
    log.truncate_to(2).unwrap();
    assert_eq!(log.first_ongoing_offset(), Some(0));
    assert!(aborted(&log).is_empty(), "the abort went with its marker");
    drop(log);
    let (log, _) = open(dir.path(), &small_segments());
    assert_eq!(log.first_ongoing_offset(), Some(0));
    assert!(aborted(&log).is_empty());
}

#[test]
fn a_follower_takes_markers_from_its_leader() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = transactional_log(leader_dir.path());
    let (mut follower, _) = open(follower_dir.path(), &small_segments());
    for (_, batch) in common::read_all(&leader) {
        follower.append_replicated(&batch, 0).unwrap();
    }
    assert_eq!(
        follower.last_stable_offset(i64::MAX),
        leader.last_stable_offset(i64::MAX)
    );
    assert_eq!(aborted(&follower), aborted(&leader));
}

// The model: what the log should say, recomputed from the list of what was appended.

#[derive(Debug, Clone)]
enum Op {
    /// A transactional batch of `records` records by producer `producer`.
    Data {
        producer: usize,
        records: usize,
    },
    /// A non-transactional batch.
    Plain {
        records: usize,
    },
    End {
        producer: usize,
        abort: bool,
        bump: bool,
    },
    Restart {
        crash: bool,
    },
    /// Truncate the last `entries` appended entries (at most 3: the producer state keeps 5
    /// ended transactions per producer).
    Truncate {
        entries: usize,
    },
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Data {
        producer: usize,
        first: i64,
    },
    Plain,
    Marker {
        producer: usize,
        abort: bool,
        offset: i64,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct Producer {
    epoch: i16,
    next_sequence: i32,
}

fn expected(entries: &[Entry], log_end: i64) -> (i64, Vec<(i64, i64, i64)>) {
    let mut ongoing: std::collections::BTreeMap<usize, i64> = Default::default();
    let mut aborts = Vec::new();
    for entry in entries {
        match *entry {
            Entry::Data { producer, first } => {
                ongoing.entry(producer).or_insert(first);
            }
            Entry::Plain => {}
            Entry::Marker {
                producer,
                abort,
                offset,
            } => {
                if let Some(first) = ongoing.remove(&producer)
                    && abort
                {
                    aborts.push((producer as i64, first, offset));
                }
            }
        }
    }
    let lso = ongoing
        .values()
        .copied()
        .min()
        .unwrap_or(log_end)
        .min(log_end);
    (lso, aborts)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, 1usize..4).prop_map(|(producer, records)| Op::Data { producer, records }),
        2 => (1usize..4).prop_map(|records| Op::Plain { records }),
        4 => (0usize..3, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(producer, abort, bump)| Op::End { producer, abort, bump }),
        1 => any::<bool>().prop_map(|crash| Op::Restart { crash }),
        1 => (1usize..4).prop_map(|entries| Op::Truncate { entries }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn transactions_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes_max: 600, ..small_segments() };
        let (mut log, _) = open(dir.path(), &config);
        let mut entries: Vec<(Entry, i64)> = Vec::new(); // with each one's end offset
        let mut producers = [Producer::default(); 3];
        for op in ops {
            match op {
                Op::Data { producer, records } => {
                    let state = &mut producers[producer];
                    let info = log
                        .append(&mut txn_batch(producer as i64, state.epoch, state.next_sequence, records), 0, 0)
                        .unwrap();
                    state.next_sequence += records as i32;
                    entries.push((Entry::Data { producer, first: info.base_offset }, info.last_offset + 1));
                }
                Op::Plain { records } => {
                    let info = log.append(&mut common::batch(records, 20, 1, 0), 0, 0).unwrap();
                    entries.push((Entry::Plain, info.last_offset + 1));
                }
                Op::End { producer, abort, bump } => {
                    let state = &mut producers[producer];
                    let epoch = if bump { state.epoch + 1 } else { state.epoch };
                    let kind = if abort { MarkerKind::Abort } else { MarkerKind::Commit };
                    let offset = write_marker(&mut log, marker(producer as i64, epoch, 0, kind));
                    if bump {
                        *state = Producer { epoch, next_sequence: 0 };
                    }
                    entries.push((Entry::Marker { producer, abort, offset }, offset + 1));
                }
                Op::Restart { crash } => {
                    if crash { drop(log) } else { log.close().unwrap() }
                    log = open(dir.path(), &config).0;
                }
                Op::Truncate { entries: count } => {
                    let keep = entries.len().saturating_sub(count);
                    let cut = keep.checked_sub(1).map_or(0, |last| entries[last].1);
                    if cut <= log.log_start_offset() {
                        continue;
                    }
                    log.truncate_to(cut).unwrap();
                    entries.truncate(keep);
                    // A cut batch's sequences are written again, as a producer's retry would.
                    producers = [Producer::default(); 3];
                    for (index, producer) in producers.iter_mut().enumerate() {
                        if let Some(state) = log.producers().get(index as i64) {
                            producer.epoch = state.epoch;
                            producer.next_sequence = state.last_sequence() + 1;
                        }
                    }
                }
            }
            let log_end = log.log_end_offset();
            let list: Vec<Entry> = entries.iter().map(|(entry, _)| *entry).collect();
            let (lso, aborts) = expected(&list, log_end);
            prop_assert_eq!(log.last_stable_offset(log_end), lso);
            let found: Vec<(i64, i64, i64)> = aborted(&log)
                .iter()
                .map(|abort| (abort.producer_id, abort.first_offset, abort.last_offset))
                .collect();
            prop_assert_eq!(found, aborts);
        }
    }
}

/// KIP-890's verification guard: a transactional batch starts a transaction only while the
/// producer's state is as it was when the coordinator verified it (no marker since).
#[test]
fn a_marker_after_the_verification_fails_the_append_that_would_start_a_transaction() {
    use lmq_storage::producers::VerificationGuard;
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    let guard = log.producers().verification_guard(1);
    assert_eq!(
        guard,
        VerificationGuard {
            producer_id: 1,
            last_marker_offset: -1
        }
    );
    log.append_guarded(&mut txn_batch(1, 0, 0, 1), 0, 0, Some(&[guard]))
        .unwrap();
    // Ongoing: the guard is not needed for the next batch of the same transaction.
    log.append_guarded(&mut txn_batch(1, 0, 1, 1), 0, 0, Some(&[]))
        .unwrap();
    // The coordinator verified the next transaction, then a marker (a timed-out abort, say)
    // ended the current one before the append.
    let stale = log.producers().verification_guard(1);
    write_marker(&mut log, marker(1, 0, 0, MarkerKind::Abort));
    assert!(matches!(
        log.append_guarded(&mut txn_batch(1, 0, 2, 1), 0, 0, Some(&[stale])),
        Err(StorageError::Sequence {
            reason: SequenceError::StaleVerification { producer_id: 1 },
            ..
        })
    ));
    assert!(matches!(
        log.append_guarded(&mut txn_batch(1, 0, 2, 1), 0, 0, Some(&[])),
        Err(StorageError::Sequence {
            reason: SequenceError::StaleVerification { .. },
            ..
        })
    ));
    let fresh = log.producers().verification_guard(1);
    log.append_guarded(&mut txn_batch(1, 0, 2, 1), 0, 0, Some(&[fresh]))
        .unwrap();
    assert_eq!(log.first_ongoing_offset(), Some(3));
}
