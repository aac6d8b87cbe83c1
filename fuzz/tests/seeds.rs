//! The seeds as the fuzz targets see them, checked with the crates' own APIs (this package
//! depends on both lmq-wire and lmq-storage, which `wire/tests/decode_corpus.rs` cannot):
//! every recorded request and answer decodes, every recorded batch passes `BatchView::validated`, and
//! every recorded segment opens as a log whose records all read back. So a fuzzing run
//! starts from inputs that reach deep into the code, not from ones refused at the door.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml` (scripts/fuzz.sh --capture runs it).

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use lmq_storage::batch::BatchView;
use lmq_storage::{FirstBatch, LogConfig, LogOptions, PartitionLog, ReadBound, ReadLimits};
use lmq_wire::protocol::messages::ApiKey;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

#[test]
fn request_seeds_decode() {
    for (path, bytes) in seeds("request") {
        lmq_wire::decode_request(Bytes::from(bytes))
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
}

/// `response` seeds: the request's API key and version (big-endian i16 each), then the frame.
#[test]
fn response_seeds_decode() {
    for (path, bytes) in seeds("response") {
        let (selector, frame) = bytes
            .split_first_chunk::<4>()
            .unwrap_or_else(|| panic!("{}: no selector", path.display()));
        let api_key = ApiKey::try_from(i16::from_be_bytes([selector[0], selector[1]]))
            .unwrap_or_else(|()| panic!("{}: unknown API key", path.display()));
        let version = i16::from_be_bytes([selector[2], selector[3]]);
        lmq_wire::decode_response(Bytes::copy_from_slice(frame), api_key, version)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
}

#[test]
fn record_batch_seeds_are_valid_batches() {
    for (path, bytes) in seeds("record_batch") {
        let view = BatchView::validated(&bytes)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(view.records_count() > 0, "{}", path.display());
    }
}

#[test]
fn storage_recovery_seeds_open_with_every_batch() {
    for (path, bytes) in seeds("storage_recovery") {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("00000000000000000000.log"), &bytes).unwrap();
        let (log, report) =
            PartitionLog::open(dir.path(), LogConfig::default(), LogOptions::default(), 0)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(report.truncation, None, "{}", path.display());
        assert!(log.log_end_offset() > 0, "{}", path.display());
        let limits = ReadLimits {
            max_bytes: u64::MAX,
            bound: ReadBound::LogEnd,
            first_batch: FirstBatch::Whole,
        };
        let region = log.read(0, limits).unwrap().region.unwrap();
        assert_eq!(region.length, bytes.len() as u64, "{}", path.display());
        assert!(log.check_indexes().unwrap().is_empty());
    }
}
