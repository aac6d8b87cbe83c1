//! The partition's unit tests: group-committed partitions whose fsyncs fail on demand, and
//! the watches that wake parked fetches.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use lmq_storage::Syncer;
use lmq_storage::builder::BatchBuilder;

use super::group_commit::tests::{FailingSyncer, every_batch_partition};
use super::*;
use crate::replication::{Assignment, ReplicationConfig};

/// Node 1 leads alone in epoch 0.
fn alone() -> Assignment {
    Assignment {
        leader_id: 1,
        leader_epoch: 0,
        replicas: vec![1],
        isr: vec![1],
    }
}

fn failing_every_batch_partition(dir: &std::path::Path) -> (Arc<Partition>, Arc<FailingSyncer>) {
    let syncer = Arc::new(FailingSyncer::default());
    let partition = every_batch_partition(dir, Arc::clone(&syncer) as Arc<dyn Syncer>);
    (partition, syncer)
}

fn record() -> Vec<u8> {
    let mut builder = BatchBuilder::new(0);
    builder.push(None, Some(b"record"), 0);
    builder.build()
}

/// Poisons the log with a failed group commit of an append made as leader, and cuts the
/// appended bytes from the `.log` file, as a lost write leaves it; the next reopen's
/// recovery ends the log before them.
async fn poison_and_lose(partition: &Arc<Partition>, syncer: &FailingSyncer, end: i64) {
    syncer.failing.store(true, Ordering::SeqCst);
    partition.flush_to(end).await.unwrap_err();
    syncer.failing.store(false, Ordering::SeqCst);
    let dir = partition
        .with_log(|log| Ok(log.dir().to_path_buf()))
        .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("00000000000000000000.log"))
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// The recovered log goes into service with no role: the old leadership (whose high
/// watermark may be past the recovered log end) serves no append or read in between
/// the swap and the role being taken again.
#[tokio::test]
async fn a_reopened_log_serves_no_role_until_the_metadata_is_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, syncer) = failing_every_batch_partition(dir.path());
    partition
        .become_role(1, &alone(), ReplicationConfig::default(), 0)
        .unwrap();
    let first = partition
        .append_as_leader(&mut record(), Acks::Leader, 0)
        .unwrap();
    partition
        .flush_to(first.info.last_offset + 1)
        .await
        .unwrap();
    let second = partition
        .append_as_leader(&mut record(), Acks::Leader, 0)
        .unwrap();
    poison_and_lose(&partition, &syncer, second.info.last_offset + 1).await;
    assert_eq!(partition.reopen_log(0).unwrap(), Reopened::Open);
    assert!(
        !partition.is_leader(),
        "the old leadership ended with the old log"
    );
    assert!(matches!(
        partition.append_as_leader(&mut record(), Acks::Leader, 0),
        Err(ReplicaError::NotLeader)
    ));
    assert!(matches!(
        partition.check_leader(-1),
        Err(ReplicaError::NotLeader)
    ));
}

/// A reopen after an I/O failure cuts a record a produce waits on; the partition leads
/// again in the same epoch (single node) with no truncation counted on the new log. The
/// produce must not be acknowledged: the log it appended to is not the one serving.
#[tokio::test]
async fn an_append_cut_by_a_reopen_is_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, syncer) = failing_every_batch_partition(dir.path());
    partition
        .become_role(1, &alone(), ReplicationConfig::default(), 0)
        .unwrap();
    let appended = partition
        .append_as_leader(&mut record(), Acks::Leader, 0)
        .unwrap();
    let end = appended.info.last_offset + 1;
    poison_and_lose(&partition, &syncer, end).await;
    assert_eq!(partition.reopen_log(0).unwrap(), Reopened::Open);
    partition
        .become_role(1, &alone(), ReplicationConfig::default(), 0)
        .unwrap();
    assert_eq!(
        partition.offsets().unwrap().log_end_offset,
        0,
        "the record is gone"
    );
    assert_eq!(
        partition.still_holds(appended.mark),
        Err(AppendLost::LogReplaced),
        "an append to the replaced log is not acknowledged"
    );
}

/// A follower under `every-batch` with appends not yet on disk becomes leader: its own
/// position is what is on disk, so the high watermark does not pass the unsynced tail
/// until its fsync.
#[tokio::test]
async fn a_promoted_follower_counts_only_its_flushed_records_under_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, _syncer) = failing_every_batch_partition(dir.path());
    let follower = Assignment {
        leader_id: 2,
        leader_epoch: 0,
        replicas: vec![1, 2],
        isr: vec![1, 2],
    };
    partition
        .become_role(1, &follower, ReplicationConfig::default(), 0)
        .unwrap();
    let mut batch = record();
    // The leader stamped its epoch (0) on the batch (outside the CRC).
    batch[12..16].copy_from_slice(&0i32.to_be_bytes());
    let leader = LeaderOffsets {
        high_watermark: 0,
        log_start_offset: 0,
    };
    let end = partition
        .append_as_follower(0, &batch, leader, 0)
        .unwrap()
        .unwrap();
    // The old leader failed; this follower leads alone in the next epoch.
    let promoted = Assignment {
        leader_id: 1,
        leader_epoch: 1,
        replicas: vec![1, 2],
        isr: vec![1],
    };
    partition
        .become_role(1, &promoted, ReplicationConfig::default(), 0)
        .unwrap();
    assert_eq!(
        partition.offsets().unwrap().high_watermark,
        0,
        "the replicated record is not on disk here yet"
    );
    partition.flush_to(end).await.unwrap();
    assert_eq!(partition.offsets().unwrap().high_watermark, end);
}

/// A topic deletion removes the directory of a partition whose poisoned log waits to be
/// reopened: the reopen fails without creating it again, and stops once the deletion
/// closed the partition.
#[tokio::test]
async fn a_reopen_does_not_bring_back_a_deleted_partition_directory() {
    let dir = tempfile::tempdir().unwrap();
    let partition_dir = dir.path().join("topic-0");
    let (partition, syncer) = failing_every_batch_partition(&partition_dir);
    let end = super::group_commit::tests::append(&partition);
    syncer.failing.store(true, Ordering::SeqCst);
    partition.flush_to(end).await.unwrap_err();
    syncer.failing.store(false, Ordering::SeqCst);
    std::fs::remove_dir_all(&partition_dir).unwrap();
    assert!(partition.reopen_log(0).is_err());
    assert!(!partition_dir.exists(), "the reopen created the directory");
    partition.close().unwrap();
    assert_eq!(partition.reopen_log(0).unwrap(), Reopened::NotNeeded);
    assert!(!partition_dir.exists());
}

mod watch {
    use futures_util::FutureExt;
    use lmq_storage::builder::BatchBuilder;

    use super::super::*;
    use crate::replication::{Assignment, ReplicationConfig};

    fn assignment(leader_id: i32, leader_epoch: i32) -> Assignment {
        Assignment {
            leader_id,
            leader_epoch,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        }
    }

    /// A partition led by broker 1 with broker 2 in its ISR: the high watermark moves only
    /// when broker 2 fetches.
    fn led_partition(dir: &std::path::Path) -> Partition {
        let (log, _) =
            PartitionLog::open(dir, LogConfig::default(), LogOptions::default(), 0).unwrap();
        let partition = Partition::new(0, log, IsrWakeup::default());
        partition
            .become_role(1, &assignment(1, 0), ReplicationConfig::default(), 0)
            .unwrap();
        partition
    }

    fn moved(watch: &mut FetchWatch) -> bool {
        watch.changed().now_or_never().is_some()
    }

    #[test]
    fn consumers_wake_on_the_high_watermark_followers_on_the_log_end_both_on_a_role_change() {
        let dir = tempfile::tempdir().unwrap();
        let partition = led_partition(dir.path());
        let mut consumer = partition.watch(ReadBound::HighWatermark);
        let mut follower = partition.watch(ReadBound::LogEnd);
        assert!(
            !moved(&mut consumer) && !moved(&mut follower),
            "starts as seen"
        );

        let mut builder = BatchBuilder::new(0);
        builder.push(None, Some(b"record"), 0);
        let append = partition
            .append_as_leader(&mut builder.build(), Acks::Leader, 0)
            .unwrap();
        assert!(moved(&mut follower), "the append moved the log end");
        assert!(
            !moved(&mut consumer),
            "the high watermark waits for broker 2"
        );

        let log_end = append.info.last_offset + 1;
        partition.follower_fetch(2, log_end, 0, 0, 1).unwrap();
        assert_eq!(partition.offsets().unwrap().high_watermark, log_end);
        assert!(
            moved(&mut consumer),
            "broker 2's fetch moved the high watermark"
        );

        // A watch marked seen misses nothing signalled after.
        consumer.mark_seen();
        follower.mark_seen();
        partition
            .become_role(1, &assignment(2, 1), ReplicationConfig::default(), 2)
            .unwrap();
        assert!(
            moved(&mut consumer) && moved(&mut follower),
            "leadership moved"
        );

        partition.close().unwrap();
        assert!(
            moved(&mut consumer) && moved(&mut follower),
            "the log closed"
        );
    }
}

/// A log held by another thread (a cleaner commit runs its fsyncs under the lock) must not
/// stop the async worker: with one worker, a task waiting for the log leaves the worker's
/// other tasks running.
#[test]
fn a_task_waiting_for_a_log_held_elsewhere_leaves_the_worker_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) =
        PartitionLog::open(dir.path(), LogConfig::default(), LogOptions::default(), 0).unwrap();
    let partition = Arc::new(Partition::new(0, log, IsrWakeup::default()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let partition = Arc::clone(&partition);
        std::thread::spawn(move || {
            partition
                .with_log(|_| {
                    held_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                })
                .unwrap();
        })
    };
    held_rx.recv().unwrap();
    let waiter = {
        let partition = Arc::clone(&partition);
        runtime.spawn(async move { partition.with_log(|log| Ok(log.log_end_offset())) })
    };
    let (ran_tx, ran_rx) = std::sync::mpsc::channel();
    runtime.spawn(async move { ran_tx.send(()).unwrap() });
    let ran = ran_rx.recv_timeout(std::time::Duration::from_secs(5));
    release_tx.send(()).unwrap();
    assert!(
        ran.is_ok(),
        "a task waiting for the log stalled the runtime's only worker"
    );
    assert_eq!(runtime.block_on(waiter).unwrap().unwrap(), 0);
    holder.join().unwrap();
}
