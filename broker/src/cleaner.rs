//! The log cleaner of a broker (Kafka's `LogCleaner` and `LogCleanerManager`): its own OS
//! threads (`[cleaner] threads`), each cleaning one compacted log at a time. A thread picks
//! the log with `lmq_storage::clean::choose` over every compacted log's cleaning view, then
//! runs passes of the storage cleaner: the plan and the commit take the partition's log lock
//! briefly, the reading and writing in between runs without it, so produce and fetch go on
//! during a pass. A log changed under a pass (truncation, retention, a reopen) makes the
//! commit discard it. Stopping sets the abort flag every running pass checks per batch.
//!
//! What the threads did is kept in the broker's [`CleanerStatus`] (per log: the dirty ratio
//! when last looked at, the last pass and the last error; the broker's last error), which
//! `/v1/status`, `/v1/topics/{topic}` and `lmq topics describe` show.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lmq_storage::clean::CleanStats;
use lmq_storage::clean::{Cleaner, CleanerConfig, CleaningView, Pause, choose};
use lmq_storage::{CommitOutcome, StorageError};
use serde::Serialize;
use uuid::Uuid;

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
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassResult {
    /// The cleaned segments replaced the old ones.
    Committed,
    /// The log changed under the pass (truncation, retention, a reopen) or the cleaner
    /// stopped: nothing changed.
    Discarded,
    /// An error ended the pass (a damaged segment, a dedupe buffer too small for one batch's
    /// keys, an I/O error): nothing changed; the log is tried again later.
    Failed,
}

/// The last pass over one log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassRecord {
    /// Wall-clock time (ms since the epoch) the pass ended.
    pub finished_at_ms: i64,
    pub duration_ms: u64,
    pub result: PassResult,
    /// What the pass read and wrote; 0 for a failed pass (its files are deleted).
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_removed: u64,
    /// Time the I/O limit (`io_bytes_per_second_max`) held the pass back.
    pub throttled_ms: u64,
    /// The log's dirty ratio when the pass was planned.
    pub dirty_ratio_before: f64,
    /// How long the plan and the commit held the partition's log lock (appends and reads
    /// of that partition wait meanwhile); the cleaning in between does not hold it.
    pub log_locked_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A failed pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CleanerError {
    /// Wall-clock time (ms since the epoch) of the failure.
    pub at_ms: i64,
    pub topic: String,
    pub partition: i32,
    pub message: String,
}

/// The cleaner's view of one compacted log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LogCleaning {
    /// Dirty bytes / cleanable bytes when the cleaner last looked at the log, and when.
    pub dirty_ratio: f64,
    pub looked_at_ms: i64,
    /// Passes committed and passes failed since the broker started.
    pub passes: u64,
    pub failed_passes: u64,
    pub last_pass: Option<PassRecord>,
    /// The last failure, kept after later passes succeed.
    pub last_error: Option<CleanerError>,
}

/// What the cleaner threads did, per compacted log (by topic id, so a topic deleted and made
/// again starts afresh) and for the broker.
#[derive(Debug, Default)]
pub struct CleanerStatus {
    logs: Mutex<HashMap<(Uuid, i32), LogCleaning>>,
    last_error: Mutex<Option<CleanerError>>,
}

impl CleanerStatus {
    /// The state of one log; `None` when the cleaner has not looked at it (not compacted,
    /// the cleaner is off, or its threads have not come round to it yet).
    pub fn log(&self, topic_id: Uuid, partition: i32) -> Option<LogCleaning> {
        lock(&self.logs).get(&(topic_id, partition)).cloned()
    }

    /// The broker's last failed pass.
    pub fn last_error(&self) -> Option<CleanerError> {
        lock(&self.last_error).clone()
    }

    fn looked(&self, key: (Uuid, i32), dirty_ratio: f64, now_ms: i64) {
        let mut logs = lock(&self.logs);
        let log = logs.entry(key).or_default();
        log.dirty_ratio = dirty_ratio;
        log.looked_at_ms = now_ms;
    }

    fn passed(&self, key: (Uuid, i32), pass: PassRecord) {
        let mut logs = lock(&self.logs);
        let log = logs.entry(key).or_default();
        if pass.result == PassResult::Committed {
            log.passes += 1;
        }
        log.last_pass = Some(pass);
    }

    fn failed(&self, key: (Uuid, i32), error: CleanerError, duration_ms: u64) {
        {
            let mut logs = lock(&self.logs);
            let log = logs.entry(key).or_default();
            log.failed_passes += 1;
            log.last_pass = Some(PassRecord {
                finished_at_ms: error.at_ms,
                duration_ms,
                result: PassResult::Failed,
                bytes_read: 0,
                bytes_written: 0,
                records_read: 0,
                records_removed: 0,
                throttled_ms: 0,
                dirty_ratio_before: log.dirty_ratio,
                log_locked_ms: 0,
                error: Some(error.message.clone()),
            });
            log.last_error = Some(error.clone());
        }
        *lock(&self.last_error) = Some(error);
    }

    /// Forgets the logs that are gone (deleted topics and partitions no longer compacted).
    fn retain(&self, live: &HashSet<(Uuid, i32)>) {
        lock(&self.logs).retain(|key, _| live.contains(key));
    }
}

impl PassRecord {
    fn of(pass: &Pass, result: PassResult, finished_at_ms: i64, duration_ms: u64) -> Self {
        let stats = &pass.stats;
        PassRecord {
            finished_at_ms,
            duration_ms,
            result,
            bytes_read: stats.bytes_read,
            bytes_written: stats.bytes_written,
            records_read: stats.records_read,
            records_removed: stats.records_removed,
            throttled_ms: stats.throttled_ms,
            dirty_ratio_before: stats.dirty_ratio_before,
            log_locked_ms: pass.log_locked_ms,
            error: None,
        }
    }
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

/// A log a thread claimed.
struct Claimed {
    topic: String,
    topic_id: Uuid,
    partition: Arc<Partition>,
}

impl Claimed {
    fn key(&self) -> (Uuid, i32) {
        (self.topic_id, self.partition.index)
    }
}

/// Picks the log that most needs cleaning and cleans it. `false` when none needed it.
fn clean_one(broker: &Broker, cleaner: &mut Cleaner, shared: &Shared) -> bool {
    let now_ms = broker.now_ms();
    let mut candidates: Vec<Claimed> = Vec::new();
    let mut views: Vec<CleaningView> = Vec::new();
    let mut live = HashSet::new();
    for topic in broker.topics.list() {
        for partition in &topic.partitions {
            let key = (topic.id, partition.index);
            if partition.awaits_reopen() {
                // Still compacted, most likely: keep what is known of it.
                live.insert(key);
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
                    live.insert(key);
                    record_look(broker, &topic.name, key, &view, now_ms);
                    candidates.push(Claimed {
                        topic: topic.name.clone(),
                        topic_id: topic.id,
                        partition: Arc::clone(partition),
                    });
                    views.push(view);
                }
                Ok(None) => {}
                Err(error) => {
                    live.insert(key);
                    tracing::warn!(topic = topic.name, partition = partition.index, %error, "cleaner could not look at a log");
                }
            }
        }
    }
    broker.cleaner.retain(&live);
    let claimed = {
        let mut in_progress = lock(&shared.in_progress);
        choose(&views, now_ms)
            .into_iter()
            .find_map(|(index, reason)| {
                let candidate = &candidates[index];
                in_progress
                    .insert((candidate.topic.clone(), candidate.partition.index))
                    .then_some((index, reason))
            })
    };
    let Some((index, reason)) = claimed else {
        return false;
    };
    let claimed = candidates.swap_remove(index);
    tracing::debug!(
        topic = claimed.topic,
        partition = claimed.partition.index,
        ?reason,
        "cleaning log"
    );
    let worked = clean_log(broker, cleaner, shared, &claimed, now_ms);
    // The dirty ratio the passes left, for the status and the gauge.
    if let Ok(view) = claimed.partition.with_log(|log| {
        let upper_bound = log.high_watermark();
        log.cleaning_view(upper_bound, broker.now_ms())
    }) {
        record_look(
            broker,
            &claimed.topic,
            claimed.key(),
            &view,
            broker.now_ms(),
        );
    }
    lock(&shared.in_progress).remove(&(claimed.topic, claimed.partition.index));
    // A chosen log whose pass found nothing to do must not keep the thread from backing off.
    worked
}

fn record_look(broker: &Broker, topic: &str, key: (Uuid, i32), view: &CleaningView, now_ms: i64) {
    broker
        .metrics
        .cleaner_dirty_ratio
        .get_or_create(&PartitionLabels {
            topic: topic.to_string(),
            partition: key.1.to_string(),
        })
        .set(view.dirty_ratio());
    broker.cleaner.looked(key, view.dirty_ratio(), now_ms);
}

/// Passes over one log until nothing dirty is left (or the turn ends), each recorded in the
/// broker's [`CleanerStatus`] and metrics. Whether a pass read anything.
fn clean_log(
    broker: &Broker,
    cleaner: &mut Cleaner,
    shared: &Shared,
    claimed: &Claimed,
    now_ms: i64,
) -> bool {
    let mut worked = false;
    for _ in 0..PASSES_PER_TURN_MAX {
        let started = crate::metrics::stopwatch();
        let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let done = match pass(cleaner, shared, &claimed.partition, now_ms) {
            Ok(Some(done)) => done,
            Ok(None) => return worked,
            // A pass the stop aborted did not fail.
            Err(_) if shared.stop.load(Ordering::Acquire) => return worked,
            Err(error) => {
                let at_ms = broker.now_ms();
                broker.metrics.cleaner_errors.inc();
                broker
                    .metrics
                    .cleaner_last_error_time
                    .set(at_ms.div_euclid(1000));
                tracing::error!(topic = claimed.topic, partition = claimed.partition.index, %error, "log cleaning failed");
                let error = CleanerError {
                    at_ms,
                    topic: claimed.topic.clone(),
                    partition: claimed.partition.index,
                    message: error.to_string(),
                };
                broker.cleaner.failed(claimed.key(), error, elapsed_ms());
                return false;
            }
        };
        let stats = &done.stats;
        worked |= stats.records_read > 0;
        broker.metrics.cleaner_read_bytes.inc_by(stats.bytes_read);
        broker
            .metrics
            .cleaner_written_bytes
            .inc_by(stats.bytes_written);
        broker
            .metrics
            .cleaner_pass_duration
            .observe(started.elapsed().as_secs_f64());
        let result = match done.outcome {
            CommitOutcome::Committed { .. } => {
                broker.metrics.cleaner_passes.inc();
                PassResult::Committed
            }
            CommitOutcome::Discarded => PassResult::Discarded,
        };
        // Kafka's cleaner logs a summary of every pass too.
        tracing::info!(
            topic = claimed.topic,
            partition = claimed.partition.index,
            ?result,
            read_bytes = stats.bytes_read,
            written_bytes = stats.bytes_written,
            records_read = stats.records_read,
            records_removed = stats.records_removed,
            duration_ms = elapsed_ms(),
            throttled_ms = stats.throttled_ms,
            log_locked_ms = done.log_locked_ms,
            "cleaner pass"
        );
        broker.cleaner.passed(
            claimed.key(),
            PassRecord::of(&done, result, broker.now_ms(), elapsed_ms()),
        );
        let more = done.more_dirty;
        if result == PassResult::Discarded || !more {
            return worked;
        }
    }
    worked
}

/// What [`pass`] did.
struct Pass {
    outcome: CommitOutcome,
    stats: CleanStats,
    /// Dirty data is left for another pass (the offset map was full).
    more_dirty: bool,
    /// Time spent holding the log lock (plan and commit).
    log_locked_ms: u64,
}

/// One pass: plan under the log lock, clean without it, commit under it. `None` when the
/// log cannot be cleaned now (poisoned).
fn pass(
    cleaner: &mut Cleaner,
    shared: &Shared,
    partition: &Partition,
    now_ms: i64,
) -> Result<Option<Pass>, StorageError> {
    let mut locked = Duration::ZERO;
    let Some(plan) = partition.with_log(|log| {
        let held = crate::metrics::stopwatch();
        // Never above the last stable offset: an undecided transaction's records and its
        // marker are cleaned together, once it ended.
        let plan = log.plan_cleaning(log.last_stable_offset(log.high_watermark()), now_ms);
        locked += held.elapsed();
        plan
    })?
    else {
        return Ok(None);
    };
    // The heavy part, without the log lock.
    let output = cleaner.clean(&plan, now_ms)?;
    let stats = output.stats;
    let more_dirty = output.more_dirty;
    let stop = &shared.stop;
    let outcome = partition.with_log(|log| {
        let held = crate::metrics::stopwatch();
        let outcome = if stop.load(Ordering::Acquire) {
            output.discard().map(|()| CommitOutcome::Discarded)
        } else {
            log.commit_cleaning(output)
        };
        locked += held.elapsed();
        outcome
    })?;
    Ok(Some(Pass {
        outcome,
        stats,
        more_dirty,
        log_locked_ms: u64::try_from(locked.as_millis()).unwrap_or(u64::MAX),
    }))
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
        let state = broker.cleaner.log(topic.id, 0).unwrap();
        assert_eq!((state.passes, state.failed_passes), (1, 0));
        let pass = state.last_pass.unwrap();
        assert_eq!(pass.result, PassResult::Committed);
        assert_eq!((pass.records_read, pass.records_removed), (50, 45));
        assert_eq!(pass.finished_at_ms, 1_700_000_000_000);
        // Looked at again after the pass: nothing dirty is left.
        assert!(state.dirty_ratio.abs() < f64::EPSILON);
        assert!(state.last_error.is_none() && broker.cleaner.last_error().is_none());
    }
}
