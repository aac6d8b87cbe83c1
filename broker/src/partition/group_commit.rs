//! Group commit for `flush = "every-batch"`: an append that must be on disk before its answer
//! waits here. One waiter at a time starts the fsync, on the blocking pool and without the
//! log's lock; appends made meanwhile are covered by the next fsync, which one of their
//! waiters starts. So N concurrent produce requests cost about two fsyncs, not N, and the
//! worker threads keep serving while the disk works.
//!
//! The fsync and the report of its outcome to the log run in one blocking task that owns the
//! partition, never in the waiter's future: a produce cancelled mid-flush (its connection
//! failed) must not drop a failed fsync's outcome. Linux reports a writeback error to one
//! fsync only, so a dropped failure would let the next fsync succeed over lost data.

use std::sync::{Arc, Mutex, PoisonError};

use lmq_storage::StorageError;
use tokio::sync::watch;

use crate::partition::Partition;

#[derive(Debug)]
pub struct GroupCommit {
    /// Whether an fsync is running now.
    flushing: Mutex<bool>,
    /// Signalled after every fsync attempt, once its outcome is in the log.
    flushed: watch::Sender<()>,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            flushing: Mutex::new(false),
            flushed: watch::Sender::new(()),
        }
    }
}

/// Owned by the running flush: clears the flushing flag and wakes the waiters when the flush
/// ends, also when its task panics or is dropped before it ran (runtime shutdown).
struct Flushing(Arc<Partition>);

impl Drop for Flushing {
    fn drop(&mut self) {
        let commit = self.0.group_commit();
        *commit
            .flushing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = false;
        commit.flushed.send_replace(());
    }
}

impl Flushing {
    /// One fsync of everything appended so far, its outcome handed to the log (which it
    /// poisons on failure) before the flag is cleared: blocking.
    fn run(self) -> Result<(), StorageError> {
        let partition = &self.0;
        let Some((pending, generation)) = partition.with_log_generation(|log, generation| {
            Ok(log.pending_flush()?.map(|pending| (pending, generation)))
        })?
        else {
            return Ok(());
        };
        let outcome = pending.sync();
        // A log reopened meanwhile is not the one this fsync covered: the waiters check the
        // new one's recovery point instead.
        partition.with_log_generation(|log, current| {
            if current == generation {
                log.complete_flush(outcome)?;
            }
            Ok(())
        })?;
        partition.leader_flushed();
        Ok(())
    }
}

impl GroupCommit {
    /// Returns once `partition`'s log is on disk below `end_offset` (or below its end, if a
    /// truncation cut it shorter since).
    pub async fn flush_to(partition: &Arc<Partition>, end_offset: i64) -> Result<(), StorageError> {
        let commit = partition.group_commit();
        loop {
            let waiter = {
                let mut flushing = commit
                    .flushing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let done = partition.with_log(|log| {
                    Ok(log.recovery_point() >= end_offset.min(log.log_end_offset()))
                })?;
                if done {
                    return Ok(());
                }
                if *flushing {
                    // Subscribed under the lock: the running flush's signal cannot be missed.
                    Some(commit.flushed.subscribe())
                } else {
                    *flushing = true;
                    None
                }
            };
            if let Some(mut waiter) = waiter {
                // The sender lives as long as the partition, so this only returns on a signal.
                let _ = waiter.changed().await;
                continue;
            }
            let flushing = Flushing(Arc::clone(partition));
            // Dropping the handle (this future cancelled) detaches the task; it runs on.
            tokio::task::spawn_blocking(move || flushing.run())
                .await
                .unwrap_or_else(|error| {
                    Err(StorageError::Poisoned {
                        path: "fsync task".into(),
                        reason: error.to_string(),
                    })
                })?;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs::File;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use lmq_storage::builder::BatchBuilder;
    use lmq_storage::{FlushPolicy, LogConfig, LogOptions, PartitionLog, Syncer};

    use super::*;

    /// Counts fsyncs; each waits while the test holds `gate`.
    #[derive(Debug, Default)]
    struct GatedSyncer {
        gate: Mutex<()>,
        calls: AtomicUsize,
    }

    impl Syncer for GatedSyncer {
        fn sync_data(&self, file: &File) -> std::io::Result<()> {
            let _open = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
            self.calls.fetch_add(1, Ordering::SeqCst);
            file.sync_data()
        }
    }

    /// Like [`GatedSyncer`], but holds only the fsyncs of segment files (`.log`): checkpoint
    /// writes made by appends (a roll stores the state) go through.
    #[derive(Debug, Default)]
    struct SegmentGatedSyncer {
        gated: GatedSyncer,
    }

    impl Syncer for SegmentGatedSyncer {
        fn sync_data(&self, file: &File) -> std::io::Result<()> {
            use std::os::fd::AsRawFd;
            let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
            if path.extension().is_some_and(|extension| extension == "log") {
                return self.gated.sync_data(file);
            }
            file.sync_data()
        }
    }

    pub(crate) fn append(partition: &Partition) -> i64 {
        let mut builder = BatchBuilder::new(0);
        builder.push(None, Some(b"record"), 0);
        let info = partition
            .with_log(|log| log.append(&mut builder.build(), 0, 0))
            .unwrap();
        assert!(info.durability.is_flush_pending(), "{info:?}");
        info.last_offset + 1
    }

    /// A partition whose log (group commit on) fsyncs through `syncer`.
    pub(crate) fn group_committed_partition(
        dir: &std::path::Path,
        syncer: Arc<dyn Syncer>,
        config: LogConfig,
    ) -> Arc<Partition> {
        let options = LogOptions {
            syncer,
            flush_owner: lmq_storage::FlushOwner::Caller,
            ..LogOptions::default()
        };
        let (log, _) = PartitionLog::open(dir, config, options, 0).unwrap();
        Arc::new(Partition::new(0, log, Arc::default()))
    }

    /// A group-committed partition under `flush = "every-batch"`.
    pub(crate) fn every_batch_partition(
        dir: &std::path::Path,
        syncer: Arc<dyn Syncer>,
    ) -> Arc<Partition> {
        group_committed_partition(
            dir,
            syncer,
            LogConfig {
                flush_policy: FlushPolicy::EveryBatch,
                ..LogConfig::default()
            },
        )
    }

    /// A partition whose log (group commit, `EveryBatch`) fsyncs through a [`GatedSyncer`].
    fn gated_partition(dir: &std::path::Path) -> (Arc<Partition>, Arc<GatedSyncer>) {
        let syncer = Arc::new(GatedSyncer::default());
        (
            every_batch_partition(dir, Arc::clone(&syncer) as Arc<dyn Syncer>),
            syncer,
        )
    }

    // The std guard is the point: it holds the fsync on its blocking-pool thread.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_made_during_an_fsync_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let (partition, syncer) = gated_partition(dir.path());
        let first_end = append(&partition);
        let before = syncer.calls.load(Ordering::SeqCst);

        let gate = syncer.gate.lock().unwrap();
        let first = tokio::spawn({
            let partition = Arc::clone(&partition);
            async move { partition.flush_to(first_end).await }
        });
        // The first waiter's fsync is running (held at the gate) ...
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ... while three more appends arrive and wait.
        let mut later = Vec::new();
        for _ in 0..3 {
            let end = append(&partition);
            let partition = Arc::clone(&partition);
            later.push(tokio::spawn(async move { partition.flush_to(end).await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!first.is_finished() && later.iter().all(|task| !task.is_finished()));
        assert_eq!(
            partition.with_log(|log| Ok(log.recovery_point())).unwrap(),
            0
        );
        drop(gate);

        first.await.unwrap().unwrap();
        for task in later {
            task.await.unwrap().unwrap();
        }
        assert_eq!(
            syncer.calls.load(Ordering::SeqCst) - before,
            2,
            "one fsync for the first append, one for the three that came during it"
        );
        let log_end = partition.with_log(|log| Ok(log.log_end_offset())).unwrap();
        assert_eq!(log_end, 4);
        assert_eq!(
            partition.with_log(|log| Ok(log.recovery_point())).unwrap(),
            4
        );
        assert!(
            partition
                .with_log(|log| log.pending_flush())
                .unwrap()
                .is_none()
        );
    }

    /// The upkeep's flush of rolled segments (`os` policy) ends at the log end it saw when
    /// it started: appends during its fsync wait for the next pass instead of keeping one
    /// flusher in a loop of fsyncs for as long as producers write.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rolled_segment_flush_stops_at_the_log_end_it_started_with() {
        let dir = tempfile::tempdir().unwrap();
        let gated = Arc::new(SegmentGatedSyncer::default());
        let syncer = &gated.gated;
        let partition = group_committed_partition(
            dir.path(),
            Arc::clone(&gated) as Arc<dyn Syncer>,
            LogConfig {
                flush_policy: FlushPolicy::Os,
                segment_bytes_max: 4 * 1024,
                ..LogConfig::default()
            },
        );
        let append_kib = |partition: &Partition| {
            let mut builder = BatchBuilder::new(0);
            builder.push(None, Some(&[7u8; 1024][..]), 0);
            partition
                .with_log(|log| log.append(&mut builder.build(), 0, 0))
                .unwrap();
        };
        while partition.background_flush_target(0).unwrap().is_none() {
            append_kib(&partition);
        }
        let target = partition.background_flush_target(0).unwrap().unwrap();
        let gate = syncer.gate.lock().unwrap();
        let flusher = tokio::spawn({
            let partition = Arc::clone(&partition);
            async move { partition.flush_to(target).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first_pass = syncer.calls.load(Ordering::SeqCst) + 1;
        // Producers go on while the fsync runs: more appends, another roll.
        for _ in 0..8 {
            append_kib(&partition);
        }
        drop(gate);
        tokio::time::timeout(Duration::from_secs(10), flusher)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let recovery_point = partition.with_log(|log| Ok(log.recovery_point())).unwrap();
        assert_eq!(recovery_point, target);
        assert!(
            syncer.calls.load(Ordering::SeqCst) <= first_pass + 1,
            "one pass (sealed segments and the active one), not a second for the later appends"
        );
        assert!(partition.background_flush_target(0).unwrap().is_some());
    }

    /// Under `every-batch` the leader counts only what is on disk as its own position: the
    /// high watermark (what consumers may read, what acks=all waits for) does not pass a
    /// record before its fsync, and moves once the group commit is done.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_high_watermark_waits_for_the_leaders_fsync_under_every_batch() {
        use crate::replication::{Assignment, ReplicationConfig};
        let dir = tempfile::tempdir().unwrap();
        let gated = Arc::new(SegmentGatedSyncer::default());
        let partition = every_batch_partition(dir.path(), Arc::clone(&gated) as Arc<dyn Syncer>);
        let syncer = &gated.gated;
        let alone = Assignment {
            leader_id: 1,
            leader_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
        };
        partition
            .become_role(1, &alone, ReplicationConfig::default(), 0)
            .unwrap();
        let gate = syncer.gate.lock().unwrap();
        let mut builder = BatchBuilder::new(0);
        builder.push(None, Some(b"record"), 0);
        let appended = partition
            .append_as_leader(&mut builder.build(), lmq_wire::Acks::All, 0)
            .unwrap();
        let end = appended.info.last_offset + 1;
        assert_eq!(
            partition.offsets().unwrap().high_watermark,
            0,
            "the record is not on disk yet"
        );
        let mut committed = appended.committed.unwrap();
        assert!(
            committed.try_recv().is_err(),
            "acks=all waits for the fsync"
        );
        let flusher = tokio::spawn({
            let partition = Arc::clone(&partition);
            async move { partition.flush_to(end).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(partition.offsets().unwrap().high_watermark, 0);
        drop(gate);
        flusher.await.unwrap().unwrap();
        assert_eq!(partition.offsets().unwrap().high_watermark, end);
        assert_eq!(committed.await.unwrap(), Ok(()));
    }

    /// Fails every fsync once `failing` is set.
    #[derive(Debug, Default)]
    pub(crate) struct FailingSyncer {
        pub(crate) failing: std::sync::atomic::AtomicBool,
    }

    impl Syncer for FailingSyncer {
        fn sync_data(&self, file: &File) -> std::io::Result<()> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected fsync failure"));
            }
            file.sync_data()
        }
    }

    /// A follower under `every-batch` reports (fetches from) only what is on disk, and one
    /// whose fsync failed stops fetching: its poisoned log must not tell the leader it has
    /// records that may be lost.
    #[tokio::test]
    async fn a_follower_fetches_only_from_what_is_on_disk_and_stops_when_poisoned() {
        use crate::replication::{Assignment, ReplicationConfig};
        let dir = tempfile::tempdir().unwrap();
        let syncer = Arc::new(FailingSyncer::default());
        let partition = every_batch_partition(dir.path(), Arc::clone(&syncer) as Arc<dyn Syncer>);
        let follower = Assignment {
            leader_id: 2,
            leader_epoch: 0,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        };
        partition
            .become_role(1, &follower, ReplicationConfig::default(), 0)
            .unwrap();
        let mut builder = BatchBuilder::new(0);
        builder.push(None, Some(b"replicated"), 0);
        let leader = crate::partition::LeaderOffsets {
            high_watermark: 0,
            log_start_offset: 0,
        };
        let mut batch = builder.build();
        // The leader stamped its epoch (0) on the batch (outside the CRC).
        batch[12..16].copy_from_slice(&0i32.to_be_bytes());
        let end = partition
            .append_as_follower(0, &batch, leader, 0)
            .unwrap()
            .unwrap();
        let position = partition.follower_position().unwrap();
        assert_eq!(position.unflushed_end, Some(end), "not on disk yet");
        syncer.failing.store(true, Ordering::SeqCst);
        assert!(partition.flush_to(end).await.is_err());
        assert_eq!(
            partition.follower_position(),
            None,
            "a poisoned follower fetches no more"
        );
    }

    /// Under `every-batch` an append whose produce was dropped before its group commit (the
    /// connection failed) is flushed by the upkeep's background pass, so the leader's
    /// position and the high watermark reach it without another produce.
    #[tokio::test]
    async fn the_upkeep_flushes_an_every_batch_tail_nobody_waits_for() {
        let dir = tempfile::tempdir().unwrap();
        let (partition, _syncer) = gated_partition(dir.path());
        let end = append(&partition);
        assert_eq!(partition.background_flush_target(0).unwrap(), Some(end));
        partition.flush_to(end).await.unwrap();
        assert_eq!(partition.background_flush_target(0).unwrap(), None);
    }

    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn a_cancelled_flusher_hands_over_to_the_next_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let (partition, syncer) = gated_partition(dir.path());
        let end = append(&partition);
        let gate = syncer.gate.lock().unwrap();
        let flusher = tokio::spawn({
            let partition = Arc::clone(&partition);
            async move { partition.flush_to(end).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The client went away: its request (and the flush it was running) is dropped.
        flusher.abort();
        assert!(flusher.await.unwrap_err().is_cancelled());
        drop(gate);
        tokio::time::timeout(Duration::from_secs(10), partition.flush_to(end))
            .await
            .expect("the next waiter is answered when the cancelled produce's fsync ends")
            .unwrap();
    }

    /// Once `armed`, fails the next fsync only, as Linux reports a writeback error once: a
    /// later fsync of the same file succeeds although the data is lost. Each fsync waits
    /// while the test holds `gate`; which call fails is decided on entry, before the gate.
    #[derive(Debug, Default)]
    struct FailsOnceGatedSyncer {
        gate: Mutex<()>,
        armed: std::sync::atomic::AtomicBool,
        calls: AtomicUsize,
    }

    impl Syncer for FailsOnceGatedSyncer {
        fn sync_data(&self, file: &File) -> std::io::Result<()> {
            let fails = self.armed.swap(false, Ordering::SeqCst);
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _open = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
            if fails {
                return Err(std::io::Error::other("injected writeback error"));
            }
            file.sync_data()
        }
    }

    /// The produce running the group commit goes away (its connection failed) while the
    /// fsync runs, and the fsync fails: the failure must still poison the log and reach the
    /// other waiters. Before, it was dropped with the cancelled future and the next waiter's
    /// fsync (which Linux lets succeed after reporting the error once) moved the recovery
    /// point over the lost record.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_fsync_of_a_cancelled_flusher_still_poisons_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Arc::new(FailsOnceGatedSyncer::default());
        let partition = every_batch_partition(dir.path(), Arc::clone(&syncer) as Arc<dyn Syncer>);
        let end = append(&partition);
        let before = syncer.calls.load(Ordering::SeqCst);
        syncer.armed.store(true, Ordering::SeqCst);
        let gate = syncer.gate.lock().unwrap();
        let flusher = tokio::spawn({
            let partition = Arc::clone(&partition);
            async move { partition.flush_to(end).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            syncer.calls.load(Ordering::SeqCst),
            before + 1,
            "the fsync runs"
        );
        let other = tokio::spawn({
            let partition = Arc::clone(&partition);
            async move { partition.flush_to(end).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        flusher.abort();
        assert!(flusher.await.unwrap_err().is_cancelled());
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(gate);
        let outcome = tokio::time::timeout(Duration::from_secs(10), other)
            .await
            .expect("the other waiter is answered")
            .unwrap();
        assert!(
            matches!(
                outcome,
                Err(StorageError::Poisoned { .. }) | Err(StorageError::Io { .. })
            ),
            "the other waiter gets the failure, not success: {outcome:?}"
        );
        assert!(
            partition.with_log(|log| Ok(log.is_poisoned())).unwrap(),
            "the failed fsync poisoned the log"
        );
        assert_eq!(
            partition.with_log(|log| Ok(log.recovery_point())).unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn a_poisoned_log_is_reopened_by_one_claimant_and_takes_appends_again() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = Arc::new(FailingSyncer::default());
        let partition = every_batch_partition(dir.path(), Arc::clone(&syncer) as Arc<dyn Syncer>);
        let end = append(&partition);
        partition.flush_to(end).await.unwrap();
        assert!(
            !partition.claim_reopen(),
            "a healthy log needs no reopening"
        );
        assert_eq!(
            partition.reopen_log(0).unwrap(),
            crate::partition::Reopened::NotNeeded
        );

        syncer.failing.store(true, Ordering::SeqCst);
        let end = append(&partition);
        partition.flush_to(end).await.unwrap_err();
        assert!(partition.claim_reopen());
        assert!(!partition.claim_reopen(), "one reopening task at a time");

        // The disk still fails: the attempt fails and the partition refuses meanwhile.
        assert!(partition.reopen_log(0).is_err());
        assert!(matches!(
            partition.with_log(|log| Ok(log.log_end_offset())),
            Err(StorageError::Poisoned { .. })
        ));
        syncer.failing.store(false, Ordering::SeqCst);
        assert_eq!(
            partition.reopen_log(0).unwrap(),
            crate::partition::Reopened::Open
        );
        partition.reopen_done();
        assert!(!partition.claim_reopen());
        let end = append(&partition);
        partition.flush_to(end).await.unwrap();
        assert_eq!(
            partition.with_log(|log| Ok(log.recovery_point())).unwrap(),
            end
        );

        // Shut down: nothing to reopen any more.
        partition.close().unwrap();
        assert!(!partition.claim_reopen());
        assert_eq!(
            partition.reopen_log(0).unwrap(),
            crate::partition::Reopened::NotNeeded
        );
    }

    /// Under an interval flush policy the broker's logs never fsync inside an append (under
    /// the partition lock, on the request's thread): the upkeep finds the flush due and runs
    /// it through the group commit, off the lock. Before, the append that came after the
    /// interval ran the fsync itself.
    #[tokio::test]
    async fn an_interval_flush_runs_in_the_upkeep_never_inside_an_append() {
        let dir = tempfile::tempdir().unwrap();
        let partition = group_committed_partition(
            dir.path(),
            Arc::new(lmq_storage::OsSyncer),
            LogConfig {
                flush_policy: FlushPolicy::IntervalMs(100),
                ..LogConfig::default()
            },
        );
        let mut builder = BatchBuilder::new(0);
        builder.push(None, Some(b"record"), 0);
        // The log was opened at 0: at 1,000 ms the interval has passed.
        let info = partition
            .with_log(|log| log.append(&mut builder.build(), 0, 1_000))
            .unwrap();
        assert!(
            !info.durability.is_on_disk(),
            "the append ran the interval fsync itself: {info:?}"
        );
        assert_eq!(
            partition.with_log(|log| Ok(log.recovery_point())).unwrap(),
            0
        );
        assert_eq!(partition.background_flush_target(1_050).unwrap(), Some(1));
        partition.flush_to(1).await.unwrap();
        assert_eq!(
            partition.with_log(|log| Ok(log.recovery_point())).unwrap(),
            1
        );
        assert_eq!(
            partition.background_flush_target(1_100).unwrap(),
            None,
            "nothing left to flush"
        );
    }
}
