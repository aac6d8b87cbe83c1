//! Idempotent producers: retries answered with the original offsets, gaps and zombies
//! refused, and the state surviving a clean restart and a crash.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use common::{open, read_all};
use lmq_storage::builder::BatchBuilder;
use lmq_storage::producers::SequenceError;
use lmq_storage::{LogConfig, StorageError};

fn producer_batch(producer_id: i64, epoch: i16, base_sequence: i32, records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(0).producer(producer_id, epoch, base_sequence);
    for record in 0..records {
        builder.push(
            None,
            Some(format!("{producer_id}-{base_sequence}-{record}").as_bytes()),
            0,
        );
    }
    builder.build()
}

#[test]
fn a_retried_batch_gets_its_original_offsets_and_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    let first = log.append(&mut producer_batch(1, 0, 0, 3), 0, 0).unwrap();
    log.append(&mut common::batch(2, 5, 9, 0), 0, 0).unwrap();
    let retry = log.append(&mut producer_batch(1, 0, 0, 3), 0, 0).unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (first.base_offset, first.last_offset)
    );
    assert_eq!((retry.batches, retry.duplicate_batches), (0, 1));
    assert_eq!(log.log_end_offset(), 5);
    let next = log.append(&mut producer_batch(1, 0, 3, 2), 0, 0).unwrap();
    assert_eq!(next.base_offset, 5);
}

#[test]
fn gaps_unknown_producers_and_old_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    log.append(&mut producer_batch(1, 2, 0, 2), 0, 0).unwrap();
    let refused = |result: Result<_, StorageError>| match result {
        Err(StorageError::Sequence { reason, .. }) => reason,
        other => panic!("expected a sequence error, got {other:?}"),
    };
    assert_eq!(
        refused(log.append(&mut producer_batch(1, 2, 5, 1), 0, 0)),
        SequenceError::OutOfOrder {
            expected: 2,
            received: 5
        }
    );
    assert_eq!(
        refused(log.append(&mut producer_batch(1, 1, 2, 1), 0, 0)),
        SequenceError::FencedEpoch {
            current: 2,
            received: 1
        }
    );
    assert_eq!(
        refused(log.append(&mut producer_batch(8, 0, 4, 1), 0, 0)),
        SequenceError::UnknownProducer { producer_id: 8 }
    );
    assert_eq!(log.log_end_offset(), 2, "refused batches are not written");
    // A new epoch starts again at sequence 0.
    assert_eq!(
        log.append(&mut producer_batch(1, 3, 0, 1), 0, 0)
            .unwrap()
            .base_offset,
        2
    );
}

#[test]
fn several_batches_of_one_producer_in_one_call_follow_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    let mut bytes = producer_batch(1, 0, 0, 2);
    bytes.extend(producer_batch(1, 0, 2, 2));
    assert_eq!(log.append(&mut bytes, 0, 0).unwrap().last_offset, 3);
    let mut gap = producer_batch(1, 0, 4, 1);
    gap.extend(producer_batch(1, 0, 9, 1));
    assert!(matches!(
        log.append(&mut gap, 0, 0),
        Err(StorageError::Sequence { batch_index: 1, .. })
    ));
    assert_eq!(log.log_end_offset(), 4, "the whole call is refused");
}

#[test]
fn producer_state_survives_a_clean_restart_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::small_segments();
    let (mut log, _) = open(dir.path(), &config);
    for sequence in 0..20 {
        log.append(&mut producer_batch(1, 0, sequence * 2, 2), 0, 0)
            .unwrap();
    }
    log.close().unwrap();
    let (mut log, report) = open(dir.path(), &config);
    assert_eq!(
        report.producer_batches_replayed, 0,
        "the snapshot is current after a close"
    );
    let retry = log.append(&mut producer_batch(1, 0, 38, 2), 0, 0).unwrap();
    assert_eq!((retry.base_offset, retry.duplicate_batches), (38, 1));
    for sequence in 20..30 {
        log.append(&mut producer_batch(1, 0, sequence * 2, 2), 0, 0)
            .unwrap();
    }
    drop(log); // crash: the snapshot is as of the close, the log has 10 batches more

    let (mut log, report) = open(dir.path(), &config);
    assert_eq!(report.producer_batches_replayed, 10);
    let retry = log.append(&mut producer_batch(1, 0, 58, 2), 0, 0).unwrap();
    assert_eq!((retry.base_offset, retry.duplicate_batches), (58, 1));
    assert!(matches!(
        log.append(&mut producer_batch(1, 0, 70, 1), 0, 0),
        Err(StorageError::Sequence { .. })
    ));
    assert_eq!(
        log.append(&mut producer_batch(1, 0, 60, 1), 0, 0)
            .unwrap()
            .base_offset,
        60
    );
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(read_all(&log).len(), 31);
}

#[test]
fn truncation_and_expiry_forget_producer_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = open(dir.path(), &LogConfig::default());
    log.append(&mut producer_batch(1, 0, 0, 2), 0, 1_000)
        .unwrap();
    log.append(&mut producer_batch(1, 0, 2, 2), 0, 1_000)
        .unwrap();
    log.truncate_to(2).unwrap();
    // The truncated batch is gone, so its retry is appended again.
    let again = log
        .append(&mut producer_batch(1, 0, 2, 2), 0, 1_000)
        .unwrap();
    assert_eq!((again.base_offset, again.duplicate_batches), (2, 0));
    assert_eq!(log.expire_producers(1_000 + 86_400_000, 86_400_000), 0);
    assert_eq!(log.expire_producers(1_001 + 86_400_000, 86_400_000), 1);
    assert!(log.producers().is_empty());
}
