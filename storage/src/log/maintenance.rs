//! Operations that remove data: truncation (followers), log start moves (DeleteRecords),
//! retention; and the index consistency check.

use std::fs::File;

use super::open::delete_segment_files;
use super::{PartitionLog, SegmentTimestamps};
use crate::error::{Result, StorageError};
use crate::files::{LOG_SUFFIX, segment_path, sync_dir};
use crate::retention;
use crate::scan::{BatchHeader, Verify, scan_segment};
use crate::segment::{ActiveSegment, SegmentView};

/// What one retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: Vec<i64>,
    pub deleted_bytes: u64,
    pub log_start_offset: i64,
}

impl PartitionLog {
    /// Removes every batch holding an offset at or after `offset`, as a follower does when
    /// its log diverged from the leader's. Batch granular: a batch that straddles `offset`
    /// goes too. Returns the new log end offset.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        self.ensure_writable()?;
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        let first_base = self
            .sealed
            .front()
            .map_or(self.active.base_offset, |segment| segment.base_offset);
        if offset <= first_base {
            self.truncate_fully_and_start_at(offset)?;
            return Ok(offset);
        }
        self.truncations += 1;
        self.poison_on_error(|log| {
            // Drop whole segments at or after the offset; the one holding it becomes active.
            while log.active.base_offset >= offset {
                let Some(previous) = log.sealed.pop_back() else {
                    break;
                };
                delete_segment_files(&log.dir, log.active.base_offset)?;
                // Newest first, each removal durable before the next: a power cut must not
                // bring a later segment back while an earlier one is gone (a hole).
                sync_dir(&log.dir, log.options.syncer.as_ref())?;
                log.options.file_cache.forget(previous.log_path());
                let base = previous.base_offset;
                drop(previous);
                log.active = log.reopen_active(base)?;
            }
            let cut = match log.active.view().find(offset)? {
                Some(header) => header.position,
                None => log.active.size_bytes(),
            };
            let base = log.active.base_offset;
            let path = segment_path(&log.dir, base, LOG_SUFFIX);
            let file = File::options()
                .write(true)
                .open(&path)
                .map_err(|error| StorageError::io("open", &path, error))?;
            file.set_len(cut)
                .map_err(|error| StorageError::io("truncate", &path, error))?;
            log.options
                .syncer
                .sync_data(&file)
                .map_err(|error| StorageError::io("fsync", &path, error))?;
            log.active = log.reopen_active(base)?;
            let log_end_offset = log.log_end_offset();
            log.state.epochs.truncate_from(log_end_offset);
            log.state.producers.truncate_from(log_end_offset);
            log.txn_index
                .truncate_from(&log.dir, log_end_offset, log.active.base_offset)?;
            log.state.high_watermark = log.state.high_watermark.min(log_end_offset);
            log.state.recovery_point = log.state.recovery_point.min(log_end_offset);
            log.state.log_start_offset = log.state.log_start_offset.min(log_end_offset);
            log.store_state()?;
            log.truncate_cleaner_checkpoint(log_end_offset)?;
            Ok(log_end_offset)
        })
    }

    /// Reopens the segment at `base` as the active one, re-indexing it from its `.log`.
    fn reopen_active(&self, base: i64) -> Result<ActiveSegment> {
        let (segment, damage) = ActiveSegment::recover(
            &self.dir,
            base,
            &self.config,
            Verify::HeaderOnly,
            self.options.syncer.as_ref(),
            self.cleaner.offsets_without_records_below(),
            |_| Ok(()),
        )?;
        if let Some(damage) = damage {
            tracing::warn!(log = %self.dir.display(), segment = base, reason = %damage.reason,
                "segment ended early while re-indexing it");
        }
        Ok(segment)
    }

    /// Deletes everything and restarts the log empty at `offset` (a follower far behind the
    /// leader's log start).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        self.ensure_writable()?;
        self.poison_on_error(|log| {
            log.reset_to(offset)?;
            log.store_state()?;
            log.truncate_cleaner_checkpoint(offset)
        })
    }

    /// Moves the log start offset up (DeleteRecords). Offsets below it become unreadable at
    /// once; segments wholly below it are deleted. Returns the log start offset.
    pub fn advance_log_start(&mut self, offset: i64) -> Result<i64> {
        self.ensure_writable()?;
        if offset > self.state.high_watermark || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start_offset: self.state.log_start_offset,
                log_end_offset: self.state.high_watermark,
            });
        }
        if offset <= self.state.log_start_offset {
            return Ok(self.state.log_start_offset);
        }
        self.poison_on_error(|log| {
            log.state.log_start_offset = offset;
            log.state.epochs.truncate_before(offset);
            log.store_state()?;
            log.delete_oldest(|segment| segment.next_offset <= offset)?;
            Ok(offset)
        })
    }

    /// One retention pass at `now_ms`: deletes the oldest segments that the time, size or log
    /// start rules allow (see [`retention::decide`]). The active segment is rolled first when
    /// it has expired too, so the log always keeps an (empty) active segment.
    ///
    /// A poisoned log still deletes whole old sealed segments (a full disk then gets space
    /// back), but writes nothing: no roll and no checkpoint; the next open moves the log start
    /// past the deleted segments.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        if self.is_poisoned() {
            return self.apply_retention_poisoned(now_ms);
        }
        let policy = self.retention_policy();
        let timestamps = if policy.retention_ms.is_some() {
            SegmentTimestamps::Read
        } else {
            SegmentTimestamps::Skip
        };
        let infos = self.segment_infos(timestamps)?;
        let decision = retention::decide(&infos, &policy, self.state.log_start_offset, now_ms);
        if decision.delete_segments == 0 {
            return Ok(RetentionOutcome {
                log_start_offset: self.state.log_start_offset,
                ..RetentionOutcome::default()
            });
        }
        self.poison_on_error(|log| {
            if decision.roll_active {
                log.roll_active()?;
            }
            let doomed: Vec<i64> = infos[..decision.delete_segments]
                .iter()
                .map(|info| info.base_offset)
                .collect();
            log.delete_oldest(|segment| doomed.contains(&segment.base_offset))
        })
    }

    /// Time and size retention apply only when `cleanup.policy` has `delete`.
    fn retention_policy(&self) -> crate::config::RetentionPolicy {
        if self.config.cleanup_policy.deletes() {
            self.config.retention
        } else {
            crate::config::RetentionPolicy {
                retention_ms: None,
                retention_bytes: None,
            }
        }
    }

    fn apply_retention_poisoned(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        let policy = self.retention_policy();
        // Segment ages from the `.log` modification times: an owner reopening the log may
        // rewrite index files in place, so a poisoned log reads none of its indexes.
        let mut infos = self.segment_infos(SegmentTimestamps::Skip)?;
        if policy.retention_ms.is_some() {
            for (info, segment) in infos.iter_mut().zip(&self.sealed) {
                info.newest_timestamp_ms = segment.modified_ms()?;
            }
        }
        let decision = retention::decide(&infos, &policy, self.state.log_start_offset, now_ms);
        // Never the active segment: removing it needs a roll, a write.
        let count = decision.delete_segments.min(self.sealed.len());
        let mut outcome = RetentionOutcome::default();
        if count > 0 {
            let next_base = self
                .sealed
                .get(count)
                .map_or(self.active.base_offset, |segment| segment.base_offset);
            // Offsets below it become unreadable before their files go.
            self.state.log_start_offset = self.state.log_start_offset.max(next_base);
            self.state.epochs.truncate_before(next_base);
            self.state.high_watermark = self.state.high_watermark.max(next_base);
            for segment in self.sealed.drain(..count) {
                segment.delete(&self.options.file_cache)?;
                outcome.deleted_segments.push(segment.base_offset);
                outcome.deleted_bytes += segment.size_bytes();
            }
            tracing::info!(log = %self.dir.display(), segments = ?outcome.deleted_segments,
                bytes = outcome.deleted_bytes, "deleted old segments of a poisoned log");
        }
        outcome.log_start_offset = self.state.log_start_offset;
        Ok(outcome)
    }

    /// Deletes sealed segments from the oldest while `doomed` holds, moving the log start past
    /// them first so a crash in between leaves files that the next open removes.
    fn delete_oldest(
        &mut self,
        doomed: impl Fn(&retention::SegmentInfo) -> bool,
    ) -> Result<RetentionOutcome> {
        let mut outcome = RetentionOutcome::default();
        let mut count = 0;
        for segment in &self.sealed {
            let info = retention::SegmentInfo {
                base_offset: segment.base_offset,
                next_offset: segment.next_offset(),
                size_bytes: segment.size_bytes(),
                newest_timestamp_ms: 0,
            };
            if !doomed(&info) {
                break;
            }
            count += 1;
        }
        if count == 0 {
            outcome.log_start_offset = self.state.log_start_offset;
            return Ok(outcome);
        }
        let next_base = self
            .sealed
            .get(count)
            .map_or(self.active.base_offset, |segment| segment.base_offset);
        if next_base > self.state.log_start_offset {
            self.state.log_start_offset = next_base;
            self.state.epochs.truncate_before(next_base);
            self.state.high_watermark = self.state.high_watermark.max(next_base);
            self.store_state()?;
        }
        for segment in self.sealed.drain(..count) {
            segment.delete(&self.options.file_cache)?;
            outcome.deleted_segments.push(segment.base_offset);
            outcome.deleted_bytes += segment.size_bytes();
        }
        self.txn_index.remove_below(next_base);
        outcome.log_start_offset = self.state.log_start_offset;
        tracing::info!(log = %self.dir.display(), segments = ?outcome.deleted_segments,
            bytes = outcome.deleted_bytes, log_start_offset = outcome.log_start_offset, "deleted old segments");
        Ok(outcome)
    }

    /// Checks every index entry against the `.log`: each offset entry points at the start of
    /// the batch it names, and each time entry `(t, o)` names a batch's last offset `o` with
    /// `t` the largest timestamp up to it. Returns the problems found (none when healthy).
    pub fn check_indexes(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for segment in &self.sealed {
            segment.with_view(
                &self.options.file_cache,
                self.config.index_interval_bytes,
                segment.base_offset,
                |view| {
                    problems.extend(check_view(view)?);
                    Ok(())
                },
            )?;
        }
        problems.extend(check_view(self.active.view())?);
        Ok(problems)
    }
}

fn check_view(view: SegmentView<'_>) -> Result<Vec<String>> {
    let mut headers: Vec<BatchHeader> = Vec::new();
    scan_segment(
        view.file,
        view.path,
        view.size_bytes,
        0,
        Verify::HeaderOnly,
        |header| {
            headers.push(*header);
            Ok(())
        },
    )?;
    let mut problems = Vec::new();
    let name = view.path.display();
    for index in 0..view.offset_index.len() {
        let entry = view.offset_index.entry(index);
        let offset = view.base_offset + i64::from(entry.relative_offset);
        let matches = headers.iter().any(|header| {
            header.position == u64::from(entry.position) && header.base_offset == offset
        });
        if !matches {
            problems.push(format!(
                "{name}: offset entry {offset} -> {} is not a batch start",
                entry.position
            ));
        }
    }
    let mut newest = i64::MIN;
    let mut newest_by_last_offset = Vec::with_capacity(headers.len());
    for header in &headers {
        newest = newest.max(header.max_timestamp_ms);
        newest_by_last_offset.push((header.last_offset, newest));
    }
    for index in 0..view.time_index.len() {
        let entry = view.time_index.entry(index);
        let offset = view.base_offset + i64::from(entry.relative_offset);
        let expected = newest_by_last_offset
            .iter()
            .find(|&&(last_offset, _)| last_offset == offset)
            .map(|&(_, newest)| newest);
        if expected != Some(entry.timestamp_ms) {
            problems.push(format!(
                "{name}: time entry ({}, {offset}) but the log says {expected:?}",
                entry.timestamp_ms
            ));
        }
    }
    Ok(problems)
}
