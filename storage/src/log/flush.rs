//! Group commit: with [`LogOptions::group_commit`](super::LogOptions) the owner of a log takes
//! a [`PendingFlush`] under its lock, runs the fsync without the lock (so appends go on
//! meanwhile), and hands the outcome back. The appends made while one fsync runs are all
//! covered by the next one: one fsync for many produce requests.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::PartitionLog;
use crate::error::Result;
use crate::files::Syncer;

/// An fsync of the sealed segments not yet on disk and of the active segment, up to the
/// log end at the moment it was taken.
#[derive(Debug)]
pub struct PendingFlush {
    /// The sealed segments first, the active segment last.
    files: Vec<(Arc<File>, PathBuf)>,
    end_offset: i64,
    truncations: u64,
    syncer: Arc<dyn Syncer>,
}

/// A finished [`PendingFlush`], to report with [`PartitionLog::complete_flush`].
#[derive(Debug)]
pub struct FlushedTo {
    /// The segments that were sealed when the flush was taken: wholly on disk now. The
    /// active one is not among them: rolled meanwhile, it may have more than was synced.
    sealed: Vec<Arc<File>>,
    end_offset: i64,
    truncations: u64,
}

impl PendingFlush {
    /// Every offset below this is on disk once [`PendingFlush::sync`] succeeds.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// The fsyncs (`fdatasync`): blocking, and meant to run without the log's lock.
    pub fn sync(self) -> Result<FlushedTo> {
        super::sync_all(&self.files, self.syncer.as_ref())?;
        let mut files = self.files;
        files.pop();
        Ok(FlushedTo {
            sealed: files.into_iter().map(|(file, _)| file).collect(),
            end_offset: self.end_offset,
            truncations: self.truncations,
        })
    }
}

impl PartitionLog {
    /// The fsyncs that would make the whole log durable; `None` when it already is.
    pub fn pending_flush(&self) -> Result<Option<PendingFlush>> {
        self.ensure_writable()?;
        let end_offset = self.log_end_offset();
        if self.state.recovery_point >= end_offset {
            return Ok(None);
        }
        let mut files = self.unflushed.clone();
        files.push(self.active.shared_file());
        Ok(Some(PendingFlush {
            files,
            end_offset,
            truncations: self.truncations,
            syncer: Arc::clone(&self.options.syncer),
        }))
    }

    /// Takes a flush's outcome: success moves the recovery point, failure poisons the log
    /// (what reached the disk is unknown). A flush taken before a truncation moves nothing:
    /// the truncation may have cut what it covered. A segment rolled meanwhile (the active
    /// one when the flush was taken) stays listed unflushed: it may have got appends after
    /// the flush was taken, which the next flush syncs.
    pub fn complete_flush(&mut self, outcome: Result<FlushedTo>) -> Result<()> {
        let flushed = self.poison_on_error(|_| outcome)?;
        // Without a truncation the log end only grew since the flush was taken.
        if flushed.truncations == self.truncations {
            self.unflushed.retain(|(file, _)| {
                !flushed
                    .sealed
                    .iter()
                    .any(|synced| Arc::ptr_eq(synced, file))
            });
            self.state.recovery_point = self.state.recovery_point.max(flushed.end_offset);
        }
        Ok(())
    }
}
