//! LMQ's storage engine: per-partition logs of Kafka RecordBatch v2 batches, stored as
//! producers sent them.
//!
//! A [`PartitionLog`] is a directory of segments named by their 20-digit base offset
//! (`.log`, sparse `.index`, `.timeindex`) and one `state.checkpoint`. Appends validate each
//! batch (length, magic, CRC-32C) and assign offsets by rewriting the base offset in place;
//! reads return [`FileRegion`]s a network layer can send without copying. The `.log` files
//! are the truth: on open, recovery keeps their longest valid prefix, cuts only a torn or
//! corrupt tail and rebuilds indexes from them.
//!
//! This crate knows nothing of Kafka requests; the record batch format is its file format.

pub mod batch;
pub mod builder;
pub mod clean;
mod config;
pub mod control;
mod error;
mod files;
mod index;
mod log;
pub mod producers;
pub mod retention;
mod scan;
mod segment;
mod state;
pub mod txn_index;

pub use config::{
    CleanupPolicy, CompactionConfig, FlushPolicy, LogConfig, Ratio, RetentionPolicy, TimestampType,
};
pub use error::{Result, StorageError};
pub use files::{FileCache, OsSyncer, Syncer, create_dir_durably, write_atomically};
pub use log::{
    AppendInfo, CommitOutcome, Durability, FirstBatch, FlushOwner, FlushedTo, LogOptions,
    PartitionLog, PendingFlush, ReadBound, ReadLimits, ReadResult, RecoveryReport,
    RetentionOutcome, TimestampMatch, Truncation,
};
pub use scan::Damage;
pub use segment::FileRegion;
pub use state::{LeaderEpochCache, STATE_FILE};
