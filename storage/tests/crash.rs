//! The crash-recovery matrix: a log whose last segment is cut at every byte of its final
//! batch, or has any single byte of it flipped, reopens with exactly the complete batches
//! before the damage, indexes that agree with the log, and appends that continue at the
//! right offset. Both after a clean close (fast open path) and after a crash (rescan).

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{append, batch, read_all};
use lmq_storage::{LogConfig, LogOptions, PartitionLog};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Clean,
    Crash,
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 3 * 1024,
        index_interval_bytes: 300,
        // Small preallocated indexes keep the hundreds of directory copies cheap.
        index_bytes_max: 4 * 1024,
        ..LogConfig::default()
    }
}

/// A template log of several segments. Returns the batches, the last segment's `.log` path
/// (relative to the directory) and where its final batch starts.
struct Template {
    dir: tempfile::TempDir,
    batches: Vec<(i64, Vec<u8>)>,
    last_log: PathBuf,
    final_position: u64,
}

fn template(shutdown: Shutdown) -> Template {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), config(), LogOptions::default(), 0).unwrap();
    for seed in 0..40u64 {
        let records = 1 + (seed as usize % 4);
        append(
            &mut log,
            &batch(
                records,
                40 + (seed as usize * 13) % 90,
                seed,
                1_000 + seed as i64,
            ),
        );
    }
    // A last segment of several batches, so damage has complete batches before it there.
    log.roll().unwrap();
    for seed in 40..46u64 {
        append(&mut log, &batch(3, 60, seed, 2_000 + seed as i64));
    }
    let batches = read_all(&log);
    let last_base = *log.segment_base_offsets().last().unwrap();
    assert!(
        log.segment_count() >= 3,
        "the template spans several segments"
    );
    match shutdown {
        Shutdown::Clean => log.close().unwrap(),
        Shutdown::Crash => drop(log),
    }
    let last_log = PathBuf::from(format!("{last_base:020}.log"));
    let file_bytes = fs::metadata(dir.path().join(&last_log)).unwrap().len();
    let final_bytes = batches.last().unwrap().1.len() as u64;
    Template {
        dir,
        batches,
        last_log,
        final_position: file_bytes - final_bytes,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Opens the damaged copy and checks everything the matrix promises.
fn assert_recovers_to_prefix(dir: &Path, template: &Template, damage_at: u64, what: &str) {
    let (mut log, report) = PartitionLog::open(dir, config(), LogOptions::default(), 0)
        .unwrap_or_else(|error| panic!("{what}: open failed: {error}"));
    let kept = &template.batches[..template.batches.len() - 1];
    let final_base = template.batches.last().unwrap().0;
    assert_eq!(log.log_end_offset(), final_base, "{what}: log end offset");
    if damage_at > template.final_position {
        let truncation = report
            .truncation
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: damage not reported: {report:?}"));
        assert_eq!(truncation.position, template.final_position, "{what}");
    }
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(read_all(&log), kept, "{what}: kept batches");
    // Append before anything else scans the file (a scan would move its cursor and hide a
    // write position left behind by recovery).
    assert_eq!(
        append(&mut log, &batch(2, 10, 999, 5_000)).0,
        final_base,
        "{what}: next append"
    );
    assert_eq!(
        log.check_indexes().unwrap(),
        Vec::<String>::new(),
        "{what}: indexes"
    );
    drop(log);
    let (log, report) = PartitionLog::open(dir, config(), LogOptions::default(), 0).unwrap();
    assert_eq!(
        report.truncation, None,
        "{what}: second open finds nothing to cut"
    );
    assert_eq!(
        log.log_end_offset(),
        final_base + 2,
        "{what}: append survived a crash"
    );
}

fn run_matrix(shutdown: Shutdown) {
    let template = template(shutdown);
    let final_length = template.batches.last().unwrap().1.len() as u64;
    let mut cases = 0;
    for cut in template.final_position..template.final_position + final_length {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(template.dir.path(), copy.path());
        let log_file = fs::OpenOptions::new()
            .write(true)
            .open(copy.path().join(&template.last_log))
            .unwrap();
        log_file.set_len(cut).unwrap();
        drop(log_file);
        let what = format!("{shutdown:?}, cut at {cut}");
        assert_recovers_to_prefix(copy.path(), &template, cut, &what);
        cases += 1;
    }
    for offset_in_batch in 0..final_length {
        for mask in [0xffu8, 0x01] {
            let copy = tempfile::tempdir().unwrap();
            copy_dir(template.dir.path(), copy.path());
            let path = copy.path().join(&template.last_log);
            let mut bytes = fs::read(&path).unwrap();
            let at = (template.final_position + offset_in_batch) as usize;
            bytes[at] ^= mask;
            fs::write(&path, bytes).unwrap();
            let what =
                format!("{shutdown:?}, byte {offset_in_batch} of the final batch ^ {mask:#04x}");
            assert_recovers_to_prefix(copy.path(), &template, template.final_position + 1, &what);
            cases += 1;
        }
    }
    assert_eq!(cases as u64, final_length * 3);
}

#[test]
fn torn_or_flipped_final_batch_after_a_clean_close() {
    run_matrix(Shutdown::Clean);
}

#[test]
fn torn_or_flipped_final_batch_after_a_crash() {
    run_matrix(Shutdown::Crash);
}

#[test]
fn damage_in_a_middle_batch_drops_it_and_everything_after() {
    let template = template(Shutdown::Crash);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(template.dir.path(), copy.path());
    let path = copy.path().join(&template.last_log);
    let mut bytes = fs::read(&path).unwrap();
    // The second batch of the last segment: find it through the segment's first batch.
    let first_length = lmq_storage::batch::batch_total_bytes(&bytes).unwrap() as usize;
    bytes[first_length + 70] ^= 0x10;
    let file_bytes = bytes.len() as u64;
    fs::write(&path, bytes).unwrap();
    let (log, report) =
        PartitionLog::open(copy.path(), config(), LogOptions::default(), 0).unwrap();
    let truncation = report.truncation.unwrap();
    assert_eq!(truncation.position, first_length as u64);
    assert_eq!(truncation.bytes_dropped, file_bytes - first_length as u64);
    assert!(truncation.reason.contains("CRC"), "{}", truncation.reason);
    let last_base = log.segment_base_offsets().last().copied().unwrap();
    let kept: Vec<_> = template
        .batches
        .iter()
        .filter(|(base, _)| *base <= last_base)
        .cloned()
        .collect();
    assert_eq!(read_all(&log), kept);
}

#[test]
fn damage_in_an_unflushed_earlier_segment_drops_the_later_segments() {
    // No checkpoint at all: every segment is rescanned, the damage is in the first one.
    let template = template(Shutdown::Crash);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(template.dir.path(), copy.path());
    fs::remove_file(copy.path().join("state.checkpoint")).unwrap();
    let first = copy.path().join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&first).unwrap();
    let cut = bytes.len() - 5;
    bytes.truncate(cut);
    fs::write(&first, bytes).unwrap();
    let (log, report) =
        PartitionLog::open(copy.path(), config(), LogOptions::default(), 0).unwrap();
    assert!(report.truncation.is_some());
    assert!(!report.segments_dropped.is_empty());
    assert_eq!(log.segment_count(), 1);
    let kept: Vec<_> = template
        .batches
        .iter()
        .filter(|(base, _)| *base < log.log_end_offset())
        .cloned()
        .collect();
    assert_eq!(read_all(&log), kept);
    assert!(log.log_end_offset() > 0);
}

#[test]
fn appends_after_a_cut_tail_land_right_after_the_kept_data() {
    // Regression: recovery shortened the file but the write position stayed where the scan
    // had read to, so the next append left a hole of zeros (and was lost at the next open).
    let dir = tempfile::tempdir().unwrap();
    let big = LogConfig::default();
    let (mut log, _) =
        PartitionLog::open(dir.path(), big.clone(), LogOptions::default(), 0).unwrap();
    for seed in 0..50u64 {
        append(&mut log, &batch(20, 900, seed, 0));
    }
    drop(log);
    let path = dir.path().join(format!("{:020}.log", 0));
    let file_bytes = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(file_bytes - 7)
        .unwrap();
    let (mut log, report) =
        PartitionLog::open(dir.path(), big.clone(), LogOptions::default(), 0).unwrap();
    let kept = report.truncation.unwrap().position;
    let extra = batch(1, 10, 999, 0);
    append(&mut log, &extra);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        kept + extra.len() as u64,
        "no hole"
    );
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), big, LogOptions::default(), 0).unwrap();
    assert_eq!(report.truncation, None);
    assert_eq!(log.log_end_offset(), 49 * 20 + 1);
}
