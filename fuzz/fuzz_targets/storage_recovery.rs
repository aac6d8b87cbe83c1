//! Any bytes as the only `.log` segment of a partition directory with no checkpoint (a crash
//! before the first one): `PartitionLog::open` recovers or refuses, never panics. A log it
//! opens is consistent: the indexes agree with the `.log`, every offset from the log start
//! to the log end reads back as CRC-valid batches, and a reopen finds nothing left to cut.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use lmq_storage::batch::{BatchView, batch_total_bytes};
use lmq_storage::{FirstBatch, LogConfig, LogOptions, PartitionLog, ReadBound, ReadLimits, Syncer};

/// Durability is not under test here, and fsync would dominate every execution.
#[derive(Debug)]
struct NoSync;

impl Syncer for NoSync {
    fn sync_data(&self, _file: &std::fs::File) -> std::io::Result<()> {
        Ok(())
    }
}

fn config() -> LogConfig {
    LogConfig {
        // Small enough that a few-kilobyte input gets several index entries.
        index_interval_bytes: 128,
        index_bytes_max: 64 * 1024,
        ..LogConfig::default()
    }
}

fn options() -> LogOptions {
    LogOptions {
        syncer: Arc::new(NoSync),
        ..LogOptions::default()
    }
}

const ALL: ReadLimits = ReadLimits {
    max_bytes: u64::MAX,
    bound: ReadBound::LogEnd,
    first_batch: FirstBatch::Whole,
};

fn scratch() -> tempfile::TempDir {
    // tmpfs when there is one: every execution creates and deletes a directory.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("temporary directory")
}

fn check(log: &PartitionLog) {
    let problems = log
        .check_indexes()
        .expect("check_indexes on a recovered log");
    assert!(
        problems.is_empty(),
        "index problems after recovery: {problems:?}"
    );

    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    let mut timestamps = vec![i64::MIN, 0, i64::MAX];
    while offset < end {
        let result = log.read(offset, ALL).expect("read inside the log range");
        let region = result.region.expect("a region below the log end");
        let bytes = region.read_to_vec().expect("read the region");
        let mut rest = &bytes[..];
        assert!(!rest.is_empty(), "empty region at offset {offset}");
        while !rest.is_empty() {
            let total = batch_total_bytes(rest).expect("a batch length") as usize;
            let view = BatchView::validated(&rest[..total]).expect("a valid batch in a read");
            assert!(
                view.last_offset() >= offset,
                "read at {offset} returned an older batch"
            );
            offset = view.last_offset() + 1;
            timestamps.push(view.max_timestamp());
            rest = &rest[total..];
        }
    }
    assert_eq!(offset, end, "batches overran the log end");
    for timestamp in timestamps {
        if let Some(found) = log.find_by_timestamp(timestamp).expect("timestamp lookup") {
            assert!(found.max_timestamp_ms >= timestamp);
            assert!(found.base_offset >= log.log_start_offset() && found.last_offset < end);
        }
    }
    let _ = log.max_timestamp().expect("max timestamp");
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    std::fs::write(dir.path().join("00000000000000000000.log"), data).expect("write segment");
    let Ok((log, _report)) = PartitionLog::open(dir.path(), config(), options(), 0) else {
        return;
    };
    check(&log);
    let end = log.log_end_offset();
    log.close().expect("close a recovered log");

    let (log, report) =
        PartitionLog::open(dir.path(), config(), options(), 0).expect("reopen a recovered log");
    assert_eq!(report.truncation, None, "a second recovery cut again");
    assert_eq!(log.log_end_offset(), end);
    check(&log);
});
