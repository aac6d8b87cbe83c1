use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::batch::BatchError;

/// Everything a partition log can refuse or fail at. The broker maps these to Kafka codes.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("batch {batch_index} of the append is invalid: {reason}")]
    InvalidBatch {
        batch_index: usize,
        reason: BatchError,
    },
    #[error(
        "batch {batch_index} of the append has {records_count} records but last offset delta {last_offset_delta}"
    )]
    RecordsCountMismatch {
        batch_index: usize,
        records_count: i32,
        last_offset_delta: i32,
    },
    #[error("batch {batch_index} of {size_bytes} bytes exceeds the {batch_bytes_max}-byte limit")]
    BatchTooLarge {
        batch_index: usize,
        size_bytes: usize,
        batch_bytes_max: u64,
    },
    #[error("an append needs at least one batch")]
    EmptyAppend,
    #[error("offset {requested} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        requested: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest_epoch}")]
    StaleLeaderEpoch { epoch: i32, latest_epoch: i32 },
    #[error("leader epoch {epoch} is invalid: epochs are 0 or greater")]
    InvalidLeaderEpoch { epoch: i32 },
    #[error(
        "replicated batch at offset {base_offset} is below the log end offset {log_end_offset}"
    )]
    NonMonotonicOffset {
        base_offset: i64,
        log_end_offset: i64,
    },
    #[error("log {path} refuses writes after an I/O failure ({reason}); reopen it to recover")]
    Poisoned { path: PathBuf, reason: String },
    #[error("batch {batch_index} of the append is refused by idempotence: {reason:?}")]
    Sequence {
        batch_index: usize,
        reason: crate::producers::SequenceError,
    },
    #[error("transaction marker refused: {reason:?}")]
    Marker {
        reason: crate::producers::MarkerError,
    },
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
    #[error("cleaning {path} failed: {reason}")]
    Cleaning { path: PathBuf, reason: String },
    #[error("corrupt checkpoint {path}: {reason}")]
    CorruptCheckpoint { path: PathBuf, reason: String },
}

impl StorageError {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
