//! Group commit: with [`LogOptions::group_commit`](super::LogOptions) the owner of a log takes
//! a [`PendingFlush`] under its lock, runs the fsync without the lock (so appends go on
//! meanwhile), and hands the outcome back. The appends made while one fsync runs are all
//! covered by the next one: one fsync for many produce requests.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::PartitionLog;
use crate::error::{Result, StorageError};
use crate::files::Syncer;

/// An fsync of the active segment up to the log end at the moment it was taken.
#[derive(Debug)]
pub struct PendingFlush {
    file: Arc<File>,
    path: PathBuf,
    end_offset: i64,
    syncer: Arc<dyn Syncer>,
}

/// A finished [`PendingFlush`], to report with [`PartitionLog::complete_flush`].
#[derive(Debug)]
pub struct FlushedTo {
    file: Arc<File>,
    end_offset: i64,
}

impl PendingFlush {
    /// Every offset below this is on disk once [`PendingFlush::sync`] succeeds.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// The fsync (`fdatasync`): blocking, and meant to run without the log's lock.
    pub fn sync(self) -> Result<FlushedTo> {
        self.syncer
            .sync_data(&self.file)
            .map_err(|error| StorageError::io("fsync", &self.path, error))?;
        Ok(FlushedTo {
            file: self.file,
            end_offset: self.end_offset,
        })
    }
}

impl PartitionLog {
    /// The fsync that would make the whole log durable; `None` when it already is.
    pub fn pending_flush(&self) -> Result<Option<PendingFlush>> {
        self.ensure_writable()?;
        let end_offset = self.log_end_offset();
        if self.state.recovery_point >= end_offset {
            return Ok(None);
        }
        let (file, path) = self.active.shared_file();
        Ok(Some(PendingFlush {
            file,
            path,
            end_offset,
            syncer: Arc::clone(&self.options.syncer),
        }))
    }

    /// Takes a flush's outcome: success moves the recovery point, failure poisons the log
    /// (what reached the disk is unknown). A flush of a segment replaced meanwhile moves
    /// nothing: a roll already flushed it, and a truncation cut what it covered.
    pub fn complete_flush(&mut self, outcome: Result<FlushedTo>) -> Result<()> {
        let flushed = self.poison_on_error(|_| outcome)?;
        let (active_file, _) = self.active.shared_file();
        if Arc::ptr_eq(&active_file, &flushed.file) && flushed.end_offset <= self.log_end_offset() {
            self.state.recovery_point = self.state.recovery_point.max(flushed.end_offset);
        }
        Ok(())
    }
}
