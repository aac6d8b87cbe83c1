//! The log's side of compaction: what a cleaner pass plans from (`&self`) and the swap that
//! commits it (`&mut self`). The pass itself runs in `crate::clean` without the log.
//!
//! Crash protocol of a commit, per group of segments `[s1 .. sn]` cleaned into one segment
//! at `s1`'s base `B` (each step made durable by a directory fsync before the next):
//! 1. `cleaner.checkpoint` gets `gaps_below` past the group (recovery then accepts the
//!    offsets compaction removed; before the swap this is harmless).
//! 2. `B.index.cleaned`, `B.timeindex.cleaned`, then `B.log.cleaned` are renamed to
//!    `.swap`. The `.log.swap` rename is the commit point.
//! 3. `s1 .. sn` (newest first) and their indexes are deleted.
//! 4. The index `.swap` files are renamed in and `B.log.swap` hard-linked to `B.log`.
//! 5. `B.log.swap` is unlinked; `cleaner.checkpoint` gets the pass's end as first dirty.
//!
//! At open (`clean::recover_swaps`): `.cleaned` files and index `.swap` files without a
//! `.log.swap` are deleted (the pass never committed and the old segments are whole, or the
//! indexes are rebuilt); a `.log.swap` at `B` replaces every segment whose base is in
//! `[B, its last offset]` by the same steps 3 to 5. A cleaned group keeps the last batch of
//! its last segment (empty if need be), so that range is exactly the group. Until step 5 the
//! `.log.swap` is there, so even a power cut keeping any mix of the unsynced directory
//! entries leaves the group as before or as after, never without its data.

use std::collections::HashMap;
use std::fs;

use super::PartitionLog;
use crate::clean::{
    CLEANED_SUFFIX, CleanOutput, CleanPlan, CleanerCheckpoint, CleaningView, PlannedSegment,
    SWAP_SUFFIX, cleaned_path, complete_swap,
};
use crate::error::{Result, StorageError};
use crate::files::{
    LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX, sync_dir,
};
use crate::segment::SealedSegment;

/// What [`PartitionLog::commit_cleaning`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The cleaned segments replaced the old ones; the first dirty offset is now this.
    Committed { first_dirty_offset: i64 },
    /// The log changed under the pass (truncation, retention, a reopen): its files were
    /// deleted and the log is as it was.
    Discarded,
}

impl PartitionLog {
    /// The cleaner checkpoint as the log holds it.
    pub fn cleaner_checkpoint(&self) -> CleanerCheckpoint {
        self.cleaner
    }

    /// After a truncation to `log_end_offset`: what the cleaner had cleaned past it is gone,
    /// and offsets appended there again must be contiguous (Kafka's
    /// `maybeTruncateCheckpoint`).
    pub(crate) fn truncate_cleaner_checkpoint(&mut self, log_end_offset: i64) -> Result<()> {
        let cleaner = CleanerCheckpoint {
            first_dirty_offset: self.cleaner.first_dirty_offset.min(log_end_offset),
            gaps_below: self.cleaner.gaps_below.min(log_end_offset),
            replicated_gaps_below: self.cleaner.replicated_gaps_below.min(log_end_offset),
            tombstone_horizon_ms: self.cleaner.tombstone_horizon_ms,
        };
        if cleaner != self.cleaner {
            self.cleaner = cleaner;
            self.cleaner
                .store(&self.dir, self.options.syncer.as_ref())?;
        }
        Ok(())
    }

    /// Where the next pass starts (everything below it is cleaned): the checkpoint, or the
    /// log start when the checkpoint is outside the log (as Kafka resets it).
    pub fn first_dirty_offset(&self) -> i64 {
        let checkpoint = self.cleaner.first_dirty_offset;
        if checkpoint < self.state.log_start_offset || checkpoint > self.log_end_offset() {
            self.state.log_start_offset
        } else {
            checkpoint
        }
    }

    /// The first offset a pass may not clean: the lowest of the active segment's base,
    /// `upper_bound` (the high watermark; later the last stable offset), the recovery point
    /// (compacted segments are always on disk) and the first segment holding a batch newer
    /// than `min.compaction.lag.ms`.
    fn first_uncleanable_offset(&self, upper_bound: i64, now_ms: i64) -> Result<i64> {
        let mut bound = self
            .active
            .base_offset
            .min(upper_bound)
            .min(self.state.recovery_point);
        let lag_ms =
            i64::try_from(self.config.compaction.min_compaction_lag_ms).unwrap_or(i64::MAX);
        if lag_ms > 0 {
            let first_dirty = self.first_dirty_offset();
            for segment in &self.sealed {
                if segment.next_offset() <= first_dirty || segment.base_offset >= bound {
                    continue;
                }
                let newest = match segment.max_timestamp(self.config.index_interval_bytes)? {
                    Some(timestamp) if timestamp >= 0 => timestamp,
                    _ => segment.modified_ms()?,
                };
                if newest > now_ms.saturating_sub(lag_ms) {
                    bound = bound.min(segment.base_offset);
                    break;
                }
            }
        }
        Ok(bound)
    }

    /// What the cleaner chooser needs of this log ([`crate::clean::choose`]).
    pub fn cleaning_view(&self, upper_bound: i64, now_ms: i64) -> Result<CleaningView> {
        let first_dirty = self.first_dirty_offset();
        let first_uncleanable = self.first_uncleanable_offset(upper_bound, now_ms)?;
        let mut clean_bytes = 0;
        let mut cleanable_bytes = 0;
        let mut first_dirty_timestamp_ms = None;
        for segment in &self.sealed {
            if segment.next_offset() <= first_dirty {
                clean_bytes += segment.size_bytes();
            } else if segment.base_offset < first_uncleanable && first_dirty < first_uncleanable {
                cleanable_bytes += segment.size_bytes();
                if first_dirty_timestamp_ms.is_none() {
                    let target = first_dirty.max(segment.base_offset);
                    first_dirty_timestamp_ms = segment.with_view(
                        &self.options.file_cache,
                        self.config.index_interval_bytes,
                        target,
                        |view| Ok(view.find(target)?.map(|header| header.max_timestamp_ms)),
                    )?;
                }
            }
        }
        Ok(CleaningView {
            policy: self.config.cleanup_policy,
            compaction: self.config.compaction,
            clean_bytes,
            cleanable_bytes,
            first_dirty_timestamp_ms,
            tombstone_horizon_ms: self.cleaner.tombstone_horizon_ms,
        })
    }

    /// Step 1 of a pass (cheap, `&self`): the sealed segments to read with their open files
    /// and the bounds of the pass. `None` for a poisoned log.
    pub fn plan_cleaning(&self, upper_bound: i64, now_ms: i64) -> Result<Option<CleanPlan>> {
        if self.is_poisoned() {
            return Ok(None);
        }
        let view = self.cleaning_view(upper_bound, now_ms)?;
        let first_uncleanable = self.first_uncleanable_offset(upper_bound, now_ms)?;
        let mut segments = Vec::new();
        for segment in &self.sealed {
            if segment.base_offset >= first_uncleanable.max(self.first_dirty_offset() + 1) {
                break;
            }
            segments.push(PlannedSegment {
                base_offset: segment.base_offset,
                next_offset: segment.next_offset(),
                size_bytes: segment.size_bytes(),
                file: self.options.file_cache.get(segment.log_path())?,
                log_path: segment.log_path().to_path_buf(),
                modified_ms: segment.modified_ms()?,
            });
        }
        let last_batch_of_producer: HashMap<i64, i64> = self
            .state
            .producers
            .entries()
            .filter_map(|(&producer_id, entry)| {
                entry
                    .batches
                    .last()
                    .map(|batch| (producer_id, batch.last_offset))
            })
            .collect();
        // Every aborted transaction the planned segments may hold batches or markers of.
        let aborted = self
            .txn_index
            .in_range(
                segments
                    .first()
                    .map_or(i64::MAX, |segment| segment.base_offset),
                i64::MAX,
            )
            .to_vec();
        Ok(Some(CleanPlan {
            dir: self.dir.clone(),
            config: self.config.clone(),
            syncer: self.options.syncer.clone(),
            segments,
            first_dirty_offset: self.first_dirty_offset(),
            first_uncleanable_offset: first_uncleanable.max(self.first_dirty_offset()),
            truncations: self.truncations,
            last_batch_of_producer,
            aborted,
            checkpoint: self.cleaner,
            dirty_ratio: view.dirty_ratio(),
        }))
    }

    /// Step 3 of a pass (`&mut self`, short): swaps the cleaned segments in, or discards
    /// them when the log changed since the plan (module docs: the crash protocol).
    pub fn commit_cleaning(&mut self, output: CleanOutput) -> Result<CommitOutcome> {
        if !self.still_matches(&output) {
            tracing::info!(log = %self.dir.display(), "log changed during a cleaner pass; discarding it");
            output.discard()?;
            return Ok(CommitOutcome::Discarded);
        }
        self.poison_on_error(|log| {
            if let Some(last) = output.groups.last() {
                let group_end = last
                    .replaced
                    .last()
                    .map_or(last.base_offset, |&(_, next, _)| next);
                log.cleaner.gaps_below = log.cleaner.gaps_below.max(group_end);
                log.cleaner.store(&log.dir, log.options.syncer.as_ref())?;
            }
            for group in &output.groups {
                log.swap_in(group)?;
            }
            log.cleaner.first_dirty_offset = output.end_offset;
            log.cleaner.tombstone_horizon_ms = output.tombstone_horizon_ms;
            log.cleaner.store(&log.dir, log.options.syncer.as_ref())?;
            Ok(CommitOutcome::Committed {
                first_dirty_offset: output.end_offset,
            })
        })
    }

    /// Whether every segment the pass replaced is still in the log as it was planned.
    fn still_matches(&self, output: &CleanOutput) -> bool {
        if self.is_poisoned() || output.dir != self.dir || output.truncations != self.truncations {
            return false;
        }
        output.groups.iter().all(|group| {
            group.replaced.iter().all(|&(base, next, size)| {
                self.sealed.iter().any(|segment| {
                    segment.base_offset == base
                        && segment.next_offset() == next
                        && segment.size_bytes() == size
                })
            })
        })
    }

    fn swap_in(&mut self, group: &crate::clean::CleanedGroup) -> Result<()> {
        let dir = self.dir.clone();
        let syncer = self.options.syncer.clone();
        let base = group.base_offset;
        let group_next = group.replaced.last().map_or(base, |&(_, next, _)| next);
        sync_dir(&dir, syncer.as_ref())?;
        for suffix in [
            OFFSET_INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
            LOG_SUFFIX,
        ] {
            let from = cleaned_path(&dir, base, suffix, CLEANED_SUFFIX);
            let to = cleaned_path(&dir, base, suffix, SWAP_SUFFIX);
            fs::rename(&from, &to).map_err(|error| StorageError::io("rename", &to, error))?;
        }
        sync_dir(&dir, syncer.as_ref())?;
        // Committed: from here a crash completes the swap at open.
        let first = self
            .sealed
            .iter()
            .position(|segment| segment.base_offset == base)
            .ok_or_else(|| StorageError::Cleaning {
                path: dir.clone(),
                reason: format!("segment {base} vanished during the swap"),
            })?;
        let count = group.replaced.len();
        let removed: Vec<SealedSegment> = self.sealed.drain(first..first + count).collect();
        for segment in &removed {
            self.options.file_cache.forget(segment.log_path());
        }
        let next_offset = removed.last().map_or(base, SealedSegment::next_offset);
        drop(removed);
        let bases: Vec<i64> = group.replaced.iter().map(|&(base, _, _)| base).collect();
        complete_swap(&dir, base, Some(&bases), syncer.as_ref())?;
        sync_dir(&dir, syncer.as_ref())?;
        self.sealed
            .insert(first, SealedSegment::open_lazy(&dir, base, next_offset)?);
        // The cleaner dropped aborted transactions' batches (and markers left without any).
        self.txn_index
            .replace_range(base, group_next, &group.aborted);
        Ok(())
    }

    /// A whole pass in one call (tests, tools): plan, clean and commit while holding the
    /// log. Owners that serve the log meanwhile use the three steps.
    pub fn clean_now(
        &mut self,
        cleaner: &mut crate::clean::Cleaner,
        upper_bound: i64,
        now_ms: i64,
    ) -> Result<Option<(CommitOutcome, crate::clean::CleanStats, bool)>> {
        let Some(plan) = self.plan_cleaning(upper_bound, now_ms)? else {
            return Ok(None);
        };
        let output = cleaner.clean(&plan, now_ms)?;
        let stats = output.stats;
        let more = output.more_dirty;
        let outcome = self.commit_cleaning(output)?;
        Ok(Some((outcome, stats, more)))
    }
}
