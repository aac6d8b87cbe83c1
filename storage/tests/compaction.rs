//! Log compaction: behaviour, crashes at every fsync of a pass, and a property test against
//! a model of what a compacted log must hold.

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

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use common::{ALL, split};
use lmq_storage::batch::{BatchView, Compression, parse_records};
use lmq_storage::builder::BatchBuilder;
use lmq_storage::clean::{Cleaner, CleanerConfig, NoCodecs, Pause, RecordsCodec};
use lmq_storage::{
    CleanupPolicy, CommitOutcome, CompactionConfig, FirstBatch, LogConfig, LogOptions,
    PartitionLog, ReadBound, ReadLimits, Syncer,
};
use proptest::prelude::*;

#[derive(Debug, Default)]
struct ManualClock(AtomicI64);

impl Pause for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep_ms(&self, duration_ms: u64) {
        self.0.fetch_add(duration_ms as i64, Ordering::SeqCst);
    }
}

/// A real codec for the tests: LZ4 frames (Kafka's lz4), the only one the tests write.
#[derive(Debug)]
struct Lz4;

impl RecordsCodec for Lz4 {
    fn decompress(
        &self,
        compression: Compression,
        payload: &[u8],
        max: usize,
    ) -> Result<Vec<u8>, String> {
        use std::io::Read;
        if compression != Compression::Lz4 {
            return Err(format!("{compression:?}"));
        }
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(payload)
            .take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|error| error.to_string())?;
        Ok(out)
    }
    fn compress(&self, compression: Compression, plain: &[u8]) -> Result<Vec<u8>, String> {
        use std::io::Write;
        if compression != Compression::Lz4 {
            return Err(format!("{compression:?}"));
        }
        let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
        encoder
            .write_all(plain)
            .map_err(|error| error.to_string())?;
        encoder.finish().map_err(|error| error.to_string())
    }
}

/// Fails every fsync from the `fail_at`-th on (1-based), like a process dying there.
#[derive(Debug, Default)]
struct CrashAt {
    fail_at: AtomicUsize,
    calls: AtomicUsize,
}

impl Syncer for CrashAt {
    fn sync_data(&self, file: &File) -> io::Result<()> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fail_at = self.fail_at.load(Ordering::SeqCst);
        if fail_at != 0 && call >= fail_at {
            return Err(io::Error::other("crash"));
        }
        file.sync_data()
    }
}

fn compacted(segment_bytes_max: u64) -> LogConfig {
    LogConfig {
        segment_bytes_max,
        index_interval_bytes: 256,
        cleanup_policy: CleanupPolicy::COMPACT,
        compaction: CompactionConfig {
            delete_retention_ms: 1_000,
            ..CompactionConfig::default()
        },
        ..LogConfig::default()
    }
}

fn cleaner(dedupe_buffer_bytes: u64) -> Cleaner {
    Cleaner::new(
        CleanerConfig {
            dedupe_buffer_bytes,
            read_chunk_bytes: 4096,
            ..CleanerConfig::default()
        },
        Arc::new(Lz4),
        Arc::new(ManualClock::default()),
    )
}

/// A record read back: offset, key, value.
type Stored = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// One record to produce: key, value (None: tombstone).
type Record = (Option<Vec<u8>>, Option<Vec<u8>>);

fn build(
    records: &[Record],
    timestamp_ms: i64,
    compressed: bool,
    producer: Option<(i64, i32)>,
) -> Vec<u8> {
    let mut builder = BatchBuilder::new(timestamp_ms);
    if let Some((id, sequence)) = producer {
        builder = builder.producer(id, 0, sequence);
    }
    for (key, value) in records {
        builder.push(key.as_deref(), value.as_deref(), timestamp_ms);
    }
    if compressed {
        builder
            .build_compressed(3, |plain| Lz4.compress(Compression::Lz4, plain))
            .unwrap()
    } else {
        builder.build()
    }
}

fn append(log: &mut PartitionLog, bytes: Vec<u8>) -> i64 {
    let mut bytes = bytes;
    let info = log.append(&mut bytes, 0, 0).unwrap();
    log.set_high_watermark(log.log_end_offset());
    info.last_offset
}

/// Every record of the log as (offset, key, value), checking CRCs and increasing offsets.
fn records(log: &PartitionLog) -> Vec<Stored> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let mut last_seen = -1;
    while offset < log.log_end_offset() {
        let result = log.read(offset, ALL).unwrap();
        let Some(region) = result.region else { break };
        for (_, bytes) in split(&region.read_to_vec().unwrap()) {
            let view = BatchView::validated(&bytes).unwrap();
            let plain = match view.compression() {
                Compression::None => view.records_bytes().to_vec(),
                codec => Lz4
                    .decompress(codec, view.records_bytes(), 1 << 24)
                    .unwrap(),
            };
            for record in parse_records(&view, &plain).unwrap() {
                assert!(record.offset > last_seen, "offsets only increase");
                assert!(record.offset >= view.base_offset() && record.offset <= view.last_offset());
                last_seen = record.offset;
                out.push((
                    record.offset,
                    record.key.map(<[u8]>::to_vec),
                    record.value.map(<[u8]>::to_vec),
                ));
            }
            offset = view.last_offset() + 1;
        }
    }
    out
}

fn latest_by_key(records: &[Stored]) -> BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
    let mut latest = BTreeMap::new();
    for (offset, key, value) in records {
        if let Some(key) = key {
            latest.insert(key.clone(), (*offset, value.clone()));
        }
    }
    latest
}

fn open(dir: &Path, config: &LogConfig, syncer: Arc<dyn Syncer>) -> PartitionLog {
    let options = LogOptions {
        syncer,
        ..LogOptions::default()
    };
    PartitionLog::open(dir, config.clone(), options, 0)
        .unwrap()
        .0
}

fn key(index: usize) -> Option<Vec<u8>> {
    Some(format!("key-{index}").into_bytes())
}

fn value(text: String) -> Option<Vec<u8>> {
    Some(text.into_bytes())
}

#[test]
fn cleaning_keeps_the_latest_record_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(2_048);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    for round in 0..20 {
        for index in 0..5 {
            append(
                &mut log,
                build(
                    &[(key(index), value(format!("v{round}-{index}")))],
                    0,
                    round % 3 == 0,
                    None,
                ),
            );
        }
    }
    log.roll().unwrap();
    let before = records(&log);
    let segments_before = log.segment_count();
    let mut cleaner = cleaner(1 << 20);
    let (outcome, stats, more) = log
        .clean_now(&mut cleaner, log.high_watermark(), 10)
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        CommitOutcome::Committed {
            first_dirty_offset: 100
        }
    );
    assert!(!more);
    let after = records(&log);
    assert_eq!(after.len(), 5, "one record per key: {after:?}");
    assert_eq!(latest_by_key(&after), latest_by_key(&before));
    assert_eq!(stats.records_read, 100);
    assert_eq!(stats.records_kept, 5);
    assert!(stats.bytes_written < stats.bytes_read);
    assert_eq!(
        log.segment_count(),
        segments_before,
        "groups are sized by the old segments"
    );
    assert!(log.check_indexes().unwrap().is_empty());
    // The same after a reopen: recovery accepts the gaps compaction made.
    drop(log);
    let log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    assert_eq!(records(&log), after);
    // And after a full recovery (no state checkpoint): gaps below the cleaned point stay.
    drop(log);
    fs::remove_file(dir.path().join(lmq_storage::STATE_FILE)).unwrap();
    let (log, report) =
        PartitionLog::open(dir.path(), config.clone(), LogOptions::default(), 0).unwrap();
    assert_eq!(report.truncation, None);
    assert_eq!(records(&log), after);
    // The next pass groups the small cleaned segments into one (Kafka's groupSegmentsBySize).
    let mut log = log;
    append(
        &mut log,
        build(&[(key(0), value("last".into()))], 0, false, None),
    );
    log.roll().unwrap();
    let segments_before = log.segment_count();
    log.clean_now(&mut cleaner, log.high_watermark(), 10)
        .unwrap();
    assert!(
        log.segment_count() < segments_before,
        "{} segments",
        log.segment_count()
    );
    assert_eq!(records(&log).len(), 5);
}

#[test]
fn tombstones_stay_until_delete_retention_after_their_first_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(1_024);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    append(
        &mut log,
        build(
            &[(key(1), value("a".into())), (key(2), value("b".into()))],
            0,
            false,
            None,
        ),
    );
    append(&mut log, build(&[(key(1), None)], 0, false, None));
    log.roll().unwrap();
    append(
        &mut log,
        build(&[(key(3), value("c".into()))], 0, false, None),
    );
    log.roll().unwrap();
    let mut cleaner = cleaner(1 << 16);
    // First pass at t=100: the tombstone is kept and its batch gets horizon 1,100.
    log.clean_now(&mut cleaner, log.high_watermark(), 100)
        .unwrap();
    let after_first = records(&log);
    assert_eq!(
        after_first
            .iter()
            .filter(|(_, _, value)| value.is_none())
            .count(),
        1
    );
    assert_eq!(log.cleaner_checkpoint().tombstone_horizon_ms, 1_100);
    // Before the horizon: still there.
    log.clean_now(&mut cleaner, log.high_watermark(), 1_099)
        .unwrap();
    assert_eq!(records(&log), after_first);
    // At the horizon: gone, with nothing dirty.
    log.clean_now(&mut cleaner, log.high_watermark(), 1_100)
        .unwrap();
    let after = records(&log);
    assert!(
        after.iter().all(|(_, _, value)| value.is_some()),
        "{after:?}"
    );
    assert_eq!(after.len(), 2);
    assert_eq!(log.cleaner_checkpoint().tombstone_horizon_ms, i64::MAX);
}

#[test]
fn a_small_dedupe_buffer_cleans_in_several_passes() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(4_096);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    for round in 0..4 {
        for index in 0..40 {
            append(
                &mut log,
                build(&[(key(index), value(format!("{round}")))], 0, false, None),
            );
        }
    }
    log.roll().unwrap();
    let before = records(&log);
    // 20 slots, 18 keys a pass.
    let mut cleaner = cleaner(20 * 24);
    assert_eq!(cleaner.map().capacity(), 18);
    let mut passes = 0;
    loop {
        let (outcome, stats, more) = log
            .clean_now(&mut cleaner, log.high_watermark(), 0)
            .unwrap()
            .unwrap();
        assert!(matches!(outcome, CommitOutcome::Committed { .. }));
        assert!(stats.keys_mapped <= 18);
        passes += 1;
        if !more {
            break;
        }
    }
    assert!(passes >= 3, "{passes} passes");
    let after = records(&log);
    assert_eq!(after.len(), 40);
    assert_eq!(latest_by_key(&after), latest_by_key(&before));
}

#[test]
fn the_last_batch_of_a_producer_stays_even_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(1 << 20);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    append(
        &mut log,
        build(&[(key(1), value("old".into()))], 0, false, Some((7, 0))),
    );
    append(
        &mut log,
        build(&[(key(2), value("x".into()))], 0, false, None),
    );
    append(
        &mut log,
        build(&[(key(1), value("new".into()))], 0, false, None),
    );
    append(
        &mut log,
        build(&[(key(2), value("y".into()))], 0, false, None),
    );
    log.roll().unwrap();
    log.clean_now(&mut cleaner(1 << 16), log.high_watermark(), 0)
        .unwrap();
    let result = log.read(0, ALL).unwrap();
    let batches = split(&result.region.unwrap().read_to_vec().unwrap());
    let first = BatchView::validated(&batches[0].1).unwrap();
    assert_eq!(
        (
            first.base_offset(),
            first.records_count(),
            first.producer_id()
        ),
        (0, 0, 7)
    );
    assert_eq!(first.base_sequence(), 0);
    assert_eq!(records(&log).len(), 2);
}

#[test]
fn a_pass_is_discarded_when_the_log_was_truncated_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(512);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    for round in 0..30 {
        append(
            &mut log,
            build(
                &[(key(round % 3), value(format!("{round}")))],
                0,
                false,
                None,
            ),
        );
    }
    log.roll().unwrap();
    let plan = log.plan_cleaning(log.high_watermark(), 0).unwrap().unwrap();
    let output = cleaner(1 << 16).clean(&plan, 0).unwrap();
    let cleaned_files = fs::read_dir(dir.path()).unwrap().filter(|entry| {
        entry
            .as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".cleaned")
    });
    assert!(cleaned_files.count() > 0);
    log.truncate_to(20).unwrap();
    let before = records(&log);
    assert_eq!(
        log.commit_cleaning(output).unwrap(),
        CommitOutcome::Discarded
    );
    assert_eq!(records(&log), before);
    let leftovers = fs::read_dir(dir.path()).unwrap().filter(|entry| {
        entry
            .as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".cleaned")
    });
    assert_eq!(leftovers.count(), 0);
}

#[test]
fn a_reader_that_started_before_a_pass_keeps_reading_the_old_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(1 << 20);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    for round in 0..10 {
        append(
            &mut log,
            build(
                &[(key(round % 2), value(format!("{round}")))],
                0,
                false,
                None,
            ),
        );
    }
    log.roll().unwrap();
    let region = log.read(0, ALL).unwrap().region.unwrap();
    let bytes_before = region.read_to_vec().unwrap();
    log.clean_now(&mut cleaner(1 << 16), log.high_watermark(), 0)
        .unwrap();
    assert_eq!(
        region.read_to_vec().unwrap(),
        bytes_before,
        "an old region reads the old file"
    );
    assert_eq!(records(&log).len(), 2);
}

#[test]
fn compressed_batches_are_recompressed_with_their_codec() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(1 << 20);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    append(
        &mut log,
        build(
            &[
                (key(1), value("a".into())),
                (key(2), value("b".into())),
                (key(1), value("c".into())),
            ],
            5,
            true,
            None,
        ),
    );
    log.roll().unwrap();
    log.clean_now(&mut cleaner(1 << 16), log.high_watermark(), 0)
        .unwrap();
    let region = log.read(0, ALL).unwrap().region.unwrap();
    let batches = split(&region.read_to_vec().unwrap());
    let view = BatchView::validated(&batches[0].1).unwrap();
    assert_eq!(view.compression(), Compression::Lz4);
    assert_eq!(
        (
            view.base_offset(),
            view.last_offset_delta(),
            view.records_count()
        ),
        (0, 2, 2)
    );
    let kept: Vec<i64> = records(&log).iter().map(|record| record.0).collect();
    assert_eq!(kept, [1, 2]);
    // Without a codec the pass fails and changes nothing.
    let mut log2 = log;
    append(
        &mut log2,
        build(&[(key(1), value("d".into()))], 5, true, None),
    );
    log2.roll().unwrap();
    let mut no_codecs = Cleaner::new(
        CleanerConfig::default(),
        Arc::new(NoCodecs),
        Arc::new(ManualClock::default()),
    );
    assert!(
        log2.clean_now(&mut no_codecs, log2.high_watermark(), 0)
            .is_err()
    );
}

/// Runs one pass on a copy of `dir` with fsync number `fail_at` failing (0: none), then
/// reopens it as after a crash. Returns the records read after the reopen.
fn pass_with_crash(
    dir: &Path,
    config: &LogConfig,
    fail_at: usize,
    now_ms: i64,
    dedupe_bytes: u64,
) -> (Vec<Stored>, usize) {
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let syncer = Arc::new(CrashAt::default());
    let mut log = open(copy.path(), config, syncer.clone());
    let start = syncer.calls.load(Ordering::SeqCst);
    if fail_at != 0 {
        syncer.fail_at.store(start + fail_at, Ordering::SeqCst);
    }
    let outcome = log.clean_now(&mut cleaner(dedupe_bytes), log.high_watermark(), now_ms);
    let fsyncs = syncer.calls.load(Ordering::SeqCst) - start;
    if fail_at == 0 {
        outcome.unwrap();
    }
    drop(log);
    let log = open(copy.path(), config, Arc::new(lmq_storage::OsSyncer));
    assert!(log.check_indexes().unwrap().is_empty());
    let read = records(&log);
    (read, fsyncs)
}

#[test]
fn a_crash_at_any_fsync_of_a_pass_leaves_each_group_as_before_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(700);
    {
        let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
        for round in 0..40 {
            let tombstone = round % 7 == 6;
            let record = (
                key(round % 5),
                if tombstone {
                    None
                } else {
                    value(format!("{round}"))
                },
            );
            append(&mut log, build(&[record], 0, round % 4 == 0, None));
        }
        log.roll().unwrap();
        log.close().unwrap();
    }
    let before = {
        let log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
        records(&log)
    };
    let (after, fsyncs) = pass_with_crash(dir.path(), &config, 0, 0, 1 << 16);
    assert_ne!(before, after);
    assert!(fsyncs >= 6, "{fsyncs} fsyncs in a pass");
    // Each group of segments is swapped atomically: a crash leaves every group either as it
    // was or cleaned, so the log holds between the records after and before the pass, and
    // always the latest record of every key.
    let mut exactly_before_or_after = 0;
    for fail_at in 1..=fsyncs {
        let (read, _) = pass_with_crash(dir.path(), &config, fail_at, 0, 1 << 16);
        assert!(
            after.iter().all(|record| read.contains(record)),
            "crash at fsync {fail_at}: {read:?}"
        );
        assert!(
            read.iter().all(|record| before.contains(record)),
            "crash at fsync {fail_at}: {read:?}"
        );
        assert_eq!(
            latest_by_key(&read),
            latest_by_key(&before),
            "crash at fsync {fail_at}"
        );
        if read == before || read == after {
            exactly_before_or_after += 1;
        }
    }
    assert!(exactly_before_or_after > 0);
}

/// What the property test does.
#[derive(Debug, Clone)]
enum Op {
    /// A batch of (key index, value or tombstone, keyless), compressed or not, from a producer.
    Produce {
        records: Vec<(u8, bool)>,
        compressed: bool,
        producer: bool,
    },
    Roll,
    /// A pass with this dedupe buffer (in slots) at this time; crash at this fsync (0: none).
    Clean {
        slots: u8,
        now_ms: u16,
        crash_at: u8,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((0u8..12, prop::bool::weighted(0.15)), 1..5), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(records, compressed, producer)| Op::Produce { records, compressed, producer }),
        2 => Just(Op::Roll),
        3 => (3u8..30, 0u16..3_000, 0u8..12).prop_map(|(slots, now_ms, crash_at)| Op::Clean { slots, now_ms, crash_at }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_compacted_log_holds_the_latest_value_of_every_key(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let config = compacted(600);
        let syncer = Arc::new(CrashAt::default());
        let mut log = open(dir.path(), &config, syncer.clone());
        // The model: every record produced (offset, key, value).
        let mut produced: Vec<Stored> = Vec::new();
        let mut sequence = 0;
        let mut now_max = 0i64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Produce { records: batch, compressed, producer } => {
                    let records: Vec<Record> = batch.iter().enumerate().map(|(index, &(key_index, tombstone))| {
                        (key(usize::from(key_index)), (!tombstone).then(|| format!("{step}-{index}").into_bytes()))
                    }).collect();
                    let producer = producer.then(|| { let s = sequence; sequence += records.len() as i32; (9, s) });
                    let last = append(&mut log, build(&records, 0, compressed, producer));
                    let first = last + 1 - records.len() as i64;
                    for (index, (key, value)) in records.into_iter().enumerate() {
                        produced.push((first + index as i64, key, value));
                    }
                }
                Op::Roll => { let _ = log.roll(); }
                Op::Reopen => {
                    drop(log);
                    log = open(dir.path(), &config, syncer.clone());
                }
                Op::Clean { slots, now_ms, crash_at } => {
                    // Time only moves forward.
                    now_max = now_max.max(i64::from(now_ms));
                    let before = records(&log);
                    // The active segment is never cleaned.
                    let untouched_from = *log.segment_base_offsets().last().unwrap();
                    let region_before = log.read(log.log_start_offset(), ALL).unwrap().region;
                    let bytes_before = region_before.as_ref().map(|region| region.read_to_vec().unwrap());
                    let start = syncer.calls.load(Ordering::SeqCst);
                    if crash_at > 0 {
                        syncer.fail_at.store(start + usize::from(crash_at), Ordering::SeqCst);
                    }
                    let mut cleaner = cleaner(u64::from(slots) * 24);
                    let result = log.clean_now(&mut cleaner, log.high_watermark(), now_max);
                    syncer.fail_at.store(0, Ordering::SeqCst);
                    if result.is_err() || log.is_poisoned() {
                        // A crash: reopen as after one.
                        drop(log);
                        log = open(dir.path(), &config, syncer.clone());
                    }
                    let after = records(&log);
                    // A reader that started before the pass still reads its bytes.
                    if let (Some(region), Some(bytes)) = (region_before, bytes_before) {
                        prop_assert_eq!(region.read_to_vec().unwrap(), bytes);
                    }
                    // Records above the cleaned point that no pass reached are untouched.
                    let above = |list: &[Stored]| list.iter().filter(|record| record.0 >= untouched_from).cloned().collect::<Vec<_>>();
                    prop_assert_eq!(above(&after), above(&before));
                    prop_assert!(after.iter().all(|record| before.contains(record)), "cleaning only removes records");
                }
            }
            // For every key, its latest value is readable (a tombstone may be gone, then the
            // key has no older value either).
            let read = records(&log);
            let latest = latest_by_key(&read);
            for (key, (offset, value)) in latest_by_key(&produced) {
                match (latest.get(&key), value) {
                    (Some(found), value) => prop_assert_eq!(found, &(offset, value)),
                    (None, None) => {}
                    (None, Some(_)) => prop_assert!(false, "key {:?} lost its latest value", key),
                }
            }
            let model: Vec<i64> = produced.iter().map(|record| record.0).collect();
            prop_assert!(read.iter().all(|record| model.binary_search(&record.0).is_ok()));
        }
    }
}

/// Files of the directory with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn written_log(dir: &Path, config: &LogConfig) {
    let mut log = open(dir, config, Arc::new(lmq_storage::OsSyncer));
    for round in 0..24 {
        let record = (key(round % 3), value(format!("{round}")));
        append(&mut log, build(&[record], 0, false, None));
    }
    log.roll().unwrap();
    log.close().unwrap();
}

#[test]
fn at_open_cleaned_files_are_deleted_and_swap_files_completed() {
    let config = compacted(500);
    // A pass cut before its commit: `.cleaned` files only. The log reads as before.
    let dir = tempfile::tempdir().unwrap();
    written_log(dir.path(), &config);
    let log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    let before = records(&log);
    let plan = log.plan_cleaning(log.high_watermark(), 0).unwrap().unwrap();
    let output = cleaner(1 << 16).clean(&plan, 0).unwrap();
    assert!(!files_ending(dir.path(), ".log.cleaned").is_empty());
    drop(output);
    drop(log);
    let log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    assert!(files_ending(dir.path(), ".cleaned").is_empty());
    assert_eq!(records(&log), before);
    drop(log);

    // A pass cut right after its commit point (every `.cleaned` renamed to `.swap`, the
    // cleaner checkpoint's gaps_below moved): the open completes the swaps.
    let expected = {
        let copy = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
        let mut log = open(copy.path(), &config, Arc::new(lmq_storage::OsSyncer));
        log.clean_now(&mut cleaner(1 << 16), log.high_watermark(), 0)
            .unwrap();
        records(&log)
    };
    let log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    let plan = log.plan_cleaning(log.high_watermark(), 0).unwrap().unwrap();
    let output = cleaner(1 << 16).clean(&plan, 0).unwrap();
    let end = *log.segment_base_offsets().last().unwrap();
    drop(log);
    lmq_storage::clean::CleanerCheckpoint {
        gaps_below: end,
        ..lmq_storage::clean::CleanerCheckpoint::default()
    }
    .store(dir.path(), &lmq_storage::OsSyncer)
    .unwrap();
    for name in files_ending(dir.path(), ".cleaned") {
        let swap = name.replace(".cleaned", ".swap");
        fs::rename(dir.path().join(&name), dir.path().join(swap)).unwrap();
    }
    drop(output);
    let swaps = files_ending(dir.path(), ".log.swap");
    assert!(swaps.len() > 1, "{swaps:?}");
    let log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    assert!(files_ending(dir.path(), ".swap").is_empty());
    assert_eq!(records(&log), expected);
    assert_ne!(expected, before);
    assert!(log.check_indexes().unwrap().is_empty());
}

#[test]
fn a_truncation_below_the_cleaned_point_moves_the_cleaner_checkpoint_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(500);
    written_log(dir.path(), &config);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    log.clean_now(&mut cleaner(1 << 16), log.high_watermark(), 0)
        .unwrap();
    assert_eq!(log.cleaner_checkpoint().first_dirty_offset, 24);
    log.truncate_to(20).unwrap();
    let checkpoint = log.cleaner_checkpoint();
    assert!(
        checkpoint.first_dirty_offset <= 20 && checkpoint.gaps_below <= 20,
        "{checkpoint:?}"
    );
    drop(log);
    let log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    assert_eq!(log.cleaner_checkpoint(), checkpoint);
}

/// Segments compaction left with nothing but empty batch headers are passed over by a
/// consumer's read (bounded by the high watermark): librdkafka takes an answer without
/// records for a fetch size too small, doubles it each time and finally reports the message
/// too large (found by compat-tests/compaction.sh). A follower's read (to the log end) still
/// gets every batch, empty ones included.
#[test]
fn a_consumer_read_passes_over_batches_compaction_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(1_024);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    for round in 0..40 {
        for index in 0..5 {
            append(
                &mut log,
                build(
                    &[(key(index), value(format!("v{round}-{index}")))],
                    0,
                    false,
                    None,
                ),
            );
        }
    }
    log.roll().unwrap();
    log.clean_now(&mut cleaner(1 << 20), log.high_watermark(), 10)
        .unwrap();
    let limits = |bound| ReadLimits {
        max_bytes: 64,
        bound,
        first_batch: FirstBatch::Whole,
    };
    let follower = log.read(0, limits(ReadBound::LogEnd)).unwrap();
    let bytes = follower.region.unwrap().read_to_vec().unwrap();
    let batches = split(&bytes);
    let first = BatchView::validated(&batches[0].1).unwrap();
    assert_eq!(
        (first.records_count(), follower.records),
        (0, 0),
        "the follower reads the first group's empty batch"
    );
    let consumer = log.read(0, limits(ReadBound::HighWatermark)).unwrap();
    assert!(consumer.records > 0, "the consumer's read holds records");
    let bytes = consumer.region.unwrap().read_to_vec().unwrap();
    let batches = split(&bytes);
    let first = BatchView::validated(&batches[0].1).unwrap();
    assert!(first.records_count() > 0);
    assert!(first.base_offset() > 0);
}

/// When nothing but emptied batches remains up to the high watermark (every key deleted and
/// its tombstone gone), the consumer's read answers the last of them, so its position still
/// reaches the high watermark (Java's `readToEnd` waits for that).
#[test]
fn a_consumer_read_of_an_emptied_tail_still_reaches_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = compacted(1_024);
    let mut log = open(dir.path(), &config, Arc::new(lmq_storage::OsSyncer));
    for round in 0..10 {
        append(
            &mut log,
            build(&[(key(1), value(format!("v{round}")))], 0, false, None),
        );
    }
    append(&mut log, build(&[(key(1), None)], 0, false, None));
    log.roll().unwrap();
    let mut cleaner = cleaner(1 << 16);
    log.clean_now(&mut cleaner, log.high_watermark(), 100)
        .unwrap();
    log.clean_now(&mut cleaner, log.high_watermark(), 1_100)
        .unwrap();
    assert!(records(&log).is_empty(), "every record is gone");
    let read = log
        .read(
            0,
            ReadLimits {
                max_bytes: 1 << 20,
                bound: ReadBound::HighWatermark,
                first_batch: FirstBatch::Whole,
            },
        )
        .unwrap();
    let bytes = read
        .region
        .expect("the last emptied batch")
        .read_to_vec()
        .unwrap();
    let batches = split(&bytes);
    let last = BatchView::validated(&batches[batches.len() - 1].1).unwrap();
    assert_eq!(last.last_offset() + 1, log.high_watermark());
}

/// Transactions in a compacted log, as Kafka's cleaner treats them: the cleaner stops at the
/// bound it is given (the last stable offset: an undecided transaction is never cleaned), an
/// aborted transaction's records go (and are never a key's latest), a marker stays while
/// batches of its transaction do and goes a delete horizon after they are all gone, and the
/// cleaned segments' `.txnindex` files hold the aborted transactions still in the log, which
/// a reopen trusts and a rebuild from the log agrees with.
#[test]
fn cleaning_drops_aborted_transactions_and_then_their_markers() {
    use lmq_storage::control::{MarkerKind, TxnMarker};
    use lmq_storage::producers::MarkerEpochRule;
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = common::open(dir.path(), &compacted(1024));
    let aborts = |round: i32| round % 4 == 1;
    for round in 0..30 {
        let mut builder = BatchBuilder::new(0).producer(1, 0, round).transactional();
        builder.push(Some(b"key"), Some(format!("v{round}").as_bytes()), 0);
        log.append(&mut builder.build(), 0, 0).unwrap();
        let marker = TxnMarker {
            producer_id: 1,
            producer_epoch: 0,
            coordinator_epoch: 0,
            kind: if aborts(round) {
                MarkerKind::Abort
            } else {
                MarkerKind::Commit
            },
            timestamp_ms: 0,
        };
        log.append_marker(&marker, MarkerEpochRule::SameOrNewer, 0, 0)
            .unwrap();
    }
    // An undecided transaction of another producer holds the last stable offset.
    let mut open = BatchBuilder::new(0).producer(2, 0, 0).transactional();
    open.push(Some(b"key"), Some(b"undecided"), 0);
    let open_at = log.append(&mut open.build(), 0, 0).unwrap().base_offset;
    log.roll().unwrap();
    log.set_high_watermark(log.log_end_offset());
    let lso = log.last_stable_offset(log.high_watermark());
    assert_eq!(lso, open_at);
    assert_eq!(log.aborted_transactions(0, lso).len(), 8);
    // Larger segments from now on, so the cleaner merges the small ones into groups.
    log.set_config(compacted(64 * 1024)).unwrap();
    let segments_before = log.segment_count();
    let pass = |log: &mut lmq_storage::PartitionLog, now_ms: i64| {
        let lso = log.last_stable_offset(log.high_watermark());
        let (outcome, _, _) = log
            .clean_now(&mut cleaner(1 << 20), lso, now_ms)
            .unwrap()
            .unwrap();
        let CommitOutcome::Committed { first_dirty_offset } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            first_dirty_offset <= lso,
            "cleaned past the last stable offset"
        );
    };
    // (values of data records, markers with their record) in the log
    let contents = |log: &lmq_storage::PartitionLog| {
        let mut values = Vec::new();
        let mut markers = 0;
        for (_, batch) in common::read_all(log) {
            let view = BatchView::new(&batch).unwrap();
            if view.is_control() {
                markers += usize::from(view.records_count() > 0);
                continue;
            }
            for record in parse_records(&view, view.records_bytes()).unwrap() {
                values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
        }
        (values, markers)
    };

    pass(&mut log, 10);
    assert!(log.segment_count() < segments_before, "nothing was merged");
    assert_eq!(
        contents(&log),
        (vec!["v28".to_string(), "undecided".to_string()], 30),
        "the latest committed value, not the aborted v29; every marker still has batches"
    );
    assert_eq!(log.aborted_transactions(0, lso).len(), 8);

    // The next pass finds the transactions emptied: their markers get a horizon, and the
    // aborted ones leave the index (but v29's, whose emptied batch is its producer's last).
    // Producer 2's transaction ends first, so the bound moves past the new data.
    let commit = TxnMarker {
        producer_id: 2,
        producer_epoch: 0,
        coordinator_epoch: 0,
        kind: MarkerKind::Commit,
        timestamp_ms: 0,
    };
    log.append_marker(&commit, MarkerEpochRule::SameOrNewer, 0, 0)
        .unwrap();
    let mut plain = BatchBuilder::new(0);
    plain.push(Some(b"other"), Some(b"x"), 0);
    log.append(&mut plain.build(), 0, 0).unwrap();
    log.roll().unwrap();
    log.set_high_watermark(log.log_end_offset());
    pass(&mut log, 20);
    assert_eq!(contents(&log).1, 31, "markers wait for their horizon");
    let aborted = log.aborted_transactions(0, i64::MAX);
    assert_eq!(
        aborted
            .iter()
            .map(|txn| txn.first_offset)
            .collect::<Vec<_>>(),
        [58],
        "only round 29's abort still has a batch"
    );
    pass(&mut log, 20 + 1_000);
    assert_eq!(
        contents(&log).1,
        3,
        "round 28's commit and round 29's abort stay, and producer 2's (its data stays)"
    );
    assert_eq!(log.aborted_transactions(0, i64::MAX), aborted);

    let txn_indexes = fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|extension| extension == "txnindex")
        })
        .count();
    assert_eq!(txn_indexes, log.segment_count());
    log.close().unwrap();
    let (log, report) = common::open(dir.path(), &compacted(64 * 1024));
    assert!(!report.transaction_index_rebuilt);
    assert_eq!(log.aborted_transactions(0, i64::MAX), aborted);
    assert_eq!(
        log.last_stable_offset(log.high_watermark()),
        log.high_watermark()
    );
    let first_segment = log.segment_base_offsets()[0];
    log.close().unwrap();
    // A rebuild from the cleaned log agrees: no transaction left hanging.
    fs::remove_file(dir.path().join(format!("{first_segment:020}.txnindex"))).unwrap();
    let (log, report) = common::open(dir.path(), &compacted(64 * 1024));
    assert!(report.transaction_index_rebuilt);
    assert_eq!(log.aborted_transactions(0, i64::MAX), aborted);
    assert_eq!(
        log.last_stable_offset(log.high_watermark()),
        log.high_watermark()
    );
}
