//! The log cleaner of a broker (Kafka's `LogCleaner` and `LogCleanerManager`): its own OS
//! threads (`[cleaner] threads`), each cleaning one compacted log at a time. A thread picks
//! the log with `lmq_storage::clean::choose` over every compacted log's cleaning view, then
//! runs passes of the storage cleaner: the plan and the commit take the partition's log lock
//! briefly, the reading and writing in between runs without it, so produce and fetch go on
//! during a pass. A log changed under a pass (truncation, retention, a reopen) makes the
//! commit discard it. Stopping sets the abort flag every running pass checks per batch.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lmq_storage::clean::{Cleaner, CleanerConfig, CleaningView, Pause, choose};
use lmq_storage::{CommitOutcome, StorageError};

use crate::broker::Broker;
use crate::config::CleanerSettings;
use crate::metrics::PartitionLabels;
use crate::partition::Partition;

/// Passes one log gets in a row at most before the thread looks at the others again.
const PASSES_PER_TURN_MAX: usize = 64;

/// The cleaner threads; [`LogCleaner::stop`] ends them (dropping it only signals them).
#[derive(Debug)]
pub struct LogCleaner {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    stop: Arc<AtomicBool>,
    wake: Condvar,
    sleeping: Mutex<()>,
    /// Logs a thread is cleaning now: (topic, partition).
    in_progress: Mutex<HashSet<(String, i32)>>,
    last_error: Mutex<Option<String>>,
}

/// Real time for the I/O throttle and pass durations, on the cleaner's own threads.
#[derive(Debug)]
struct ThreadClock(Instant);

impl Pause for ThreadClock {
    fn now_ms(&self) -> i64 {
        i64::try_from(self.0.elapsed().as_millis()).unwrap_or(i64::MAX)
    }
    fn sleep_ms(&self, duration_ms: u64) {
        std::thread::sleep(Duration::from_millis(duration_ms));
    }
}

impl LogCleaner {
    /// Starts `[cleaner] threads` threads; none when the cleaner is off.
    pub fn start(broker: &Arc<Broker>) -> std::io::Result<Self> {
        let settings = broker.config.cleaner.clone();
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        let count = if settings.enable { settings.threads } else { 0 };
        for index in 0..count {
            let broker = Arc::clone(broker);
            let shared = Arc::clone(&shared);
            let settings = settings.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("lmq-cleaner-{index}"))
                    .spawn(move || run(&broker, &settings, &shared, count))?,
            );
        }
        Ok(LogCleaner { shared, threads })
    }

    /// The last pass failure, if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    /// Stops the threads (a running pass aborts at its next batch) and waits for them.
    pub fn stop(mut self) {
        self.signal_stop();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a cleaner thread panicked");
            }
        }
    }

    fn signal_stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let _guard = lock(&self.shared.sleeping);
        self.shared.wake.notify_all();
    }
}

impl Drop for LogCleaner {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn run(broker: &Arc<Broker>, settings: &CleanerSettings, shared: &Shared, threads: usize) {
    let config = CleanerConfig {
        dedupe_buffer_bytes: settings.dedupe_buffer_bytes / threads.max(1) as u64,
        io_bytes_per_second_max: settings.io_bytes_per_second_max,
        ..CleanerConfig::default()
    };
    let mut cleaner = Cleaner::new(
        config,
        Arc::new(lmq_wire::records::CleanerCodecs),
        Arc::new(ThreadClock(crate::metrics::stopwatch())),
    )
    .with_abort(Arc::clone(&shared.stop));
    while !shared.stop.load(Ordering::Acquire) {
        if clean_one(broker, &mut cleaner, shared) {
            continue;
        }
        let guard = lock(&shared.sleeping);
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let _ = shared
            .wake
            .wait_timeout(guard, Duration::from_millis(settings.backoff_ms.max(1)));
    }
}

/// Picks the log that most needs cleaning and cleans it. `false` when none needed it.
fn clean_one(broker: &Broker, cleaner: &mut Cleaner, shared: &Shared) -> bool {
    let now_ms = broker.now_ms();
    let mut candidates: Vec<(String, Arc<Partition>)> = Vec::new();
    let mut views: Vec<CleaningView> = Vec::new();
    for topic in broker.topics.list() {
        for partition in &topic.partitions {
            if partition.awaits_reopen() {
                continue;
            }
            let view = partition.with_log(|log| {
                if !log.config().cleanup_policy.compacts() {
                    return Ok(None);
                }
                log.cleaning_view(log.last_stable_offset(log.high_watermark()), now_ms)
                    .map(Some)
            });
            match view {
                Ok(Some(view)) => {
                    broker
                        .metrics
                        .cleaner_dirty_ratio
                        .get_or_create(&PartitionLabels {
                            topic: topic.name.clone(),
                            partition: partition.index.to_string(),
                        })
                        .set(view.dirty_ratio());
                    candidates.push((topic.name.clone(), Arc::clone(partition)));
                    views.push(view);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(topic = topic.name, partition = partition.index, %error, "cleaner could not look at a log");
                }
            }
        }
    }
    let claimed = {
        let mut in_progress = lock(&shared.in_progress);
        choose(&views, now_ms)
            .into_iter()
            .find_map(|(index, reason)| {
                let (topic, partition) = &candidates[index];
                in_progress
                    .insert((topic.clone(), partition.index))
                    .then(|| (topic.clone(), Arc::clone(partition), reason))
            })
    };
    let Some((topic, partition, reason)) = claimed else {
        return false;
    };
    tracing::debug!(topic, partition = partition.index, ?reason, "cleaning log");
    let worked = match clean_log(broker, cleaner, shared, &partition, now_ms) {
        Ok(worked) => worked,
        Err(error) => {
            broker.metrics.cleaner_errors.inc();
            tracing::error!(topic, partition = partition.index, %error, "log cleaning failed");
            *lock(&shared.last_error) = Some(format!("{topic}-{}: {error}", partition.index));
            false
        }
    };
    lock(&shared.in_progress).remove(&(topic, partition.index));
    // A chosen log whose pass found nothing to do must not keep the thread from backing off.
    worked
}

/// Passes over one log until nothing dirty is left (or the turn ends). Whether a pass read
/// anything.
fn clean_log(
    broker: &Broker,
    cleaner: &mut Cleaner,
    shared: &Shared,
    partition: &Partition,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let mut worked = false;
    for _ in 0..PASSES_PER_TURN_MAX {
        let started = crate::metrics::stopwatch();
        let Some(plan) =
            // Never above the last stable offset: an undecided transaction's records and
            // its marker are cleaned together, once it ended.
            partition.with_log(|log| {
                log.plan_cleaning(log.last_stable_offset(log.high_watermark()), now_ms)
            })?
        else {
            return Ok(worked);
        };
        // The heavy part, without the log lock.
        let output = cleaner.clean(&plan, now_ms)?;
        let stats = output.stats;
        let more = output.more_dirty;
        worked |= stats.records_read > 0;
        let stop = &shared.stop;
        let outcome = partition.with_log(move |log| {
            if stop.load(Ordering::Acquire) {
                output.discard()?;
                return Ok(CommitOutcome::Discarded);
            }
            log.commit_cleaning(output)
        })?;
        broker.metrics.cleaner_read_bytes.inc_by(stats.bytes_read);
        broker
            .metrics
            .cleaner_written_bytes
            .inc_by(stats.bytes_written);
        broker
            .metrics
            .cleaner_pass_duration
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            CommitOutcome::Committed { .. } => broker.metrics.cleaner_passes.inc(),
            CommitOutcome::Discarded => return Ok(worked),
        };
        if !more {
            return Ok(worked);
        }
    }
    Ok(worked)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use lmq_storage::builder::BatchBuilder;
    use lmq_storage::{CleanupPolicy, ReadBound, ReadLimits};

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::BrokerConfig;

    fn records_in(partition: &Partition) -> usize {
        partition
            .with_log(|log| {
                let limits = ReadLimits {
                    max_bytes: u64::MAX,
                    bound: ReadBound::LogEnd,
                    first_batch: lmq_storage::FirstBatch::Whole,
                };
                // One region holds every batch up to the log end.
                let Some(region) = log.read(log.log_start_offset(), limits)?.region else {
                    return Ok(0);
                };
                let bytes = bytes::Bytes::from(region.read_to_vec().unwrap());
                Ok(lmq_wire::records::decode_batches(bytes, 1 << 20)
                    .unwrap()
                    .len())
            })
            .unwrap()
    }

    #[test]
    fn the_cleaner_threads_compact_a_compacted_topic_and_count_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            cleaner: CleanerSettings {
                backoff_ms: 10,
                dedupe_buffer_bytes: 1024 * 1024,
                ..CleanerSettings::default()
            },
            ..BrokerConfig::default()
        };
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let broker = Arc::new(Broker::open(config, clock as _).unwrap());
        let topic = broker
            .topics
            .create_replica("table", uuid::Uuid::new_v4(), 1, &BTreeMap::new(), 0)
            .unwrap();
        let partition = Arc::clone(&topic.partitions[0]);
        // The topic config parser does not take cleanup.policy yet: set it on the log.
        partition
            .with_log(|log| {
                let mut config = log.config().clone();
                config.cleanup_policy = CleanupPolicy::COMPACT;
                log.set_config(config)?;
                for round in 0..50 {
                    let mut builder = BatchBuilder::new(0);
                    let key = format!("key-{}", round % 5);
                    builder.push(Some(key.as_bytes()), Some(b"value"), 0);
                    let mut bytes = builder.build();
                    log.append(&mut bytes, 0, 0)?;
                }
                log.roll()?;
                // The upkeep's flush pass: compaction stays below the recovery point.
                log.flush(0)?;
                log.set_high_watermark(log.log_end_offset());
                Ok(())
            })
            .unwrap();
        assert_eq!(records_in(&partition), 50);
        let cleaner = LogCleaner::start(&broker).unwrap();
        let deadline = crate::metrics::stopwatch();
        while broker.metrics.cleaner_passes.get() == 0 {
            assert!(deadline.elapsed() < Duration::from_secs(20), "no pass ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Nothing dirty is left: the threads back off instead of passing again.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(broker.metrics.cleaner_passes.get(), 1);
        cleaner.stop();
        assert_eq!(records_in(&partition), 5);
        assert!(broker.metrics.cleaner_read_bytes.get() > 0);
        assert!(broker.metrics.cleaner_written_bytes.get() > 0);
        assert_eq!(broker.metrics.cleaner_errors.get(), 0);
    }
}
