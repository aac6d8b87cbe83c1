//! Appends: validate every batch of a call first, assign offsets by rewriting each batch's
//! base offset in place, write, then flush as the policy says.

use std::ops::Range;

use super::{FlushOwner, PartitionLog};
use crate::batch::{
    BatchView, batch_total_bytes, set_base_offset, set_log_append_time, set_partition_leader_epoch,
};
use crate::config::{FlushPolicy, TimestampType};
use crate::control::{ControlContent, MarkerKind, TxnMarker, decode_control};
use crate::error::{Result, StorageError};
use crate::producers::{
    AppendOrigin, BatchMetadata, CompletedTxn, MarkerEpochRule, ProducerBatch, ProducerStates,
    SequenceCheck, SequenceError, VerificationGuard,
};
use crate::scan::BatchHeader;
use crate::segment::ActiveSegment;
use crate::txn_index::AbortedTxn;

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Broker time of the append (Kafka's `log_append_time_ms` answer, when it applies).
    pub log_append_time_ms: i64,
    pub max_timestamp_ms: i64,
    pub log_start_offset: i64,
    pub batches: usize,
    pub bytes: u64,
    /// Whether the records are on disk, and who puts them there.
    pub durability: Durability,
    /// Batches an idempotent producer had already written: answered with their original
    /// offsets, not appended again.
    pub duplicate_batches: usize,
}

/// Where an append's records stand against the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk: the flush policy ran an fsync for this call (or an earlier one covered it).
    OnDisk,
    /// Not on disk, and the flush policy wants them there before they are acknowledged: the
    /// owner (group commit, [`FlushOwner::Caller`]) must flush up to `last_offset` first.
    FlushPending,
    /// Not on disk; the flush policy (`os`, an interval) acknowledges them anyway.
    Unflushed,
}

impl Durability {
    pub fn is_on_disk(self) -> bool {
        self == Durability::OnDisk
    }

    /// The owner must flush before acknowledging.
    pub fn is_flush_pending(self) -> bool {
        self == Durability::FlushPending
    }
}

/// What idempotence decided for one batch of a call.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// No producer id: plain append.
    Plain,
    Append(ProducerBatch),
    Duplicate(BatchMetadata),
}

/// Who produced the batches being appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A producer: every offset of a batch holds a record.
    Producer,
    /// The leader's log: compaction may have left fewer records than offsets.
    Replica,
}

/// Splits `bytes` into whole, CRC-valid batches no larger than `batch_bytes_max`.
fn split_batches(bytes: &[u8], batch_bytes_max: u64, source: Source) -> Result<Vec<Range<usize>>> {
    let mut ranges = Vec::new();
    let mut start = 0usize;
    while start < bytes.len() {
        let batch_index = ranges.len();
        let rest = &bytes[start..];
        let invalid = |reason| StorageError::InvalidBatch {
            batch_index,
            reason,
        };
        let total = batch_total_bytes(rest)
            .and_then(|total| usize::try_from(total).ok())
            .filter(|&total| total <= rest.len())
            .ok_or_else(|| {
                invalid(crate::batch::BatchError::LengthMismatch {
                    declared: batch_total_bytes(rest).map_or(-1, |total| total as i64),
                    available: rest.len(),
                })
            })?;
        if total as u64 > batch_bytes_max {
            return Err(StorageError::BatchTooLarge {
                batch_index,
                size_bytes: total,
                batch_bytes_max,
            });
        }
        let view = BatchView::validated(&rest[..total]).map_err(invalid)?;
        if source == Source::Producer && view.is_control() {
            // Markers come from the transaction coordinator ([`PartitionLog::append_marker`]).
            return Err(StorageError::Sequence {
                batch_index,
                reason: crate::producers::SequenceError::ControlBatch,
            });
        }
        if source == Source::Producer
            && (view.records_count() < 1 || view.records_count() != view.last_offset_delta() + 1)
        {
            return Err(StorageError::RecordsCountMismatch {
                batch_index,
                records_count: view.records_count(),
                last_offset_delta: view.last_offset_delta(),
            });
        }
        ranges.push(start..start + total);
        start += total;
    }
    if ranges.is_empty() {
        return Err(StorageError::EmptyAppend);
    }
    Ok(ranges)
}

impl PartitionLog {
    /// Appends the batches of one produce call as leader at `leader_epoch`: offsets are
    /// assigned from the log end, each batch is stamped with the epoch, and with
    /// `LogAppendTime` with `now_ms`. Either every batch is validated and written, or the call
    /// fails before writing anything (a write failure poisons the log instead).
    pub fn append(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.append_guarded(batches, leader_epoch, now_ms, None)
    }

    /// [`Self::append`] of a client's produce whose transactional batches were verified
    /// with the transaction coordinator (KIP-890): with `guards`, a transactional batch that
    /// starts its producer's transaction is refused (`StaleVerification`) unless its
    /// producer's guard is given and still holds (no marker since).
    pub fn append_guarded(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
        guards: Option<&[VerificationGuard]>,
    ) -> Result<AppendInfo> {
        self.append_from(batches, leader_epoch, now_ms, guards, AppendOrigin::Client)
    }

    /// [`Self::append`] of a coordinator's own batches (`AppendOrigin::Coordinator`): a
    /// transactional one is checked for fencing, not for sequence numbers, which it has none
    /// of.
    pub fn append_from_coordinator(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.append_from(
            batches,
            leader_epoch,
            now_ms,
            None,
            AppendOrigin::Coordinator,
        )
    }

    fn append_from(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
        guards: Option<&[VerificationGuard]>,
        origin: AppendOrigin,
    ) -> Result<AppendInfo> {
        self.ensure_writable()?;
        if leader_epoch < 0 {
            return Err(StorageError::InvalidLeaderEpoch {
                epoch: leader_epoch,
            });
        }
        if let Some(latest_epoch) = self.state.epochs.latest_epoch()
            && leader_epoch < latest_epoch
        {
            return Err(StorageError::StaleLeaderEpoch {
                epoch: leader_epoch,
                latest_epoch,
            });
        }
        let ranges = split_batches(batches, self.config.batch_bytes_max, Source::Producer)?;
        let verdicts = self.check_producers(batches, &ranges, origin)?;
        if let Some(guards) = guards {
            self.check_guards(&verdicts, guards)?;
        }
        let timestamp_type = self.config.timestamp_type;
        self.poison_on_error(|log| {
            log.assign_epoch(leader_epoch, log.log_end_offset())?;
            let mut info = log.start_info(now_ms);
            for (range, verdict) in ranges.into_iter().zip(verdicts) {
                let producer = match verdict {
                    Verdict::Duplicate(original) => {
                        if info.batches == 0 && info.duplicate_batches == 0 {
                            info.base_offset = original.base_offset;
                            info.last_offset = original.last_offset;
                        }
                        info.last_offset = info.last_offset.max(original.last_offset);
                        info.duplicate_batches += 1;
                        continue;
                    }
                    Verdict::Plain => None,
                    Verdict::Append(producer) => Some(producer),
                };
                let batch = &mut batches[range];
                let base_offset = log.log_end_offset();
                set_base_offset(batch, base_offset);
                set_partition_leader_epoch(batch, leader_epoch);
                if timestamp_type == TimestampType::LogAppendTime {
                    set_log_append_time(batch, now_ms);
                }
                log.append_one(batch, now_ms, &mut info)?;
                if let Some(producer) = producer {
                    log.state.producers.record(&producer, base_offset, now_ms);
                }
            }
            if info.batches == 0 {
                // Only duplicates: nothing was written.
                // The originals may still wait for their group commit.
                info.durability = log.durability_of(log.state.recovery_point > info.last_offset);
                return Ok(info);
            }
            log.finish_append(now_ms, info)
        })
    }

    /// KIP-890's verification guard: each transactional batch that would start its
    /// producer's transaction needs that producer's guard, unchanged since it was taken.
    fn check_guards(&self, verdicts: &[Verdict], guards: &[VerificationGuard]) -> Result<()> {
        for (batch_index, verdict) in verdicts.iter().enumerate() {
            let Verdict::Append(producer) = verdict else {
                continue;
            };
            let states = &self.state.producers;
            if !producer.is_transactional || states.has_ongoing_transaction(producer.producer_id) {
                continue;
            }
            let now = states.verification_guard(producer.producer_id);
            if !guards.contains(&now) {
                return Err(StorageError::Sequence {
                    batch_index,
                    reason: SequenceError::StaleVerification {
                        producer_id: producer.producer_id,
                    },
                });
            }
        }
        Ok(())
    }

    /// Idempotence verdicts for every batch of a call, before anything is written: a refused
    /// batch fails the whole call.
    fn check_producers(
        &self,
        batches: &[u8],
        ranges: &[Range<usize>],
        origin: AppendOrigin,
    ) -> Result<Vec<Verdict>> {
        // Several batches of one producer in one call see each other's sequences.
        let mut scratch: Option<ProducerStates> = None;
        let mut next_offset = self.log_end_offset();
        let mut verdicts = Vec::with_capacity(ranges.len());
        for (batch_index, range) in ranges.iter().enumerate() {
            let view = BatchView::new(&batches[range.clone()]).map_err(|reason| {
                StorageError::InvalidBatch {
                    batch_index,
                    reason,
                }
            })?;
            let header = BatchHeader::from_view(0, &view);
            let Some(producer) = header.producer_batch() else {
                verdicts.push(Verdict::Plain);
                next_offset = header.last_offset - header.base_offset + next_offset + 1;
                continue;
            };
            let states = match &scratch {
                Some(states) => states,
                None => &self.state.producers,
            };
            let verdict = match states.check_from(&producer, origin) {
                Ok(SequenceCheck::Accept) => Verdict::Append(producer),
                Ok(SequenceCheck::Duplicate(original)) => Verdict::Duplicate(original),
                Err(reason) => {
                    return Err(StorageError::Sequence {
                        batch_index,
                        reason,
                    });
                }
            };
            if ranges.len() > 1
                && let Verdict::Append(producer) = verdict
            {
                scratch
                    .get_or_insert_with(|| self.state.producers.clone())
                    .record(&producer, next_offset, 0);
                next_offset += i64::from(producer.last_offset_delta) + 1;
            }
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }

    /// Appends batches copied from the leader, keeping their offsets and epochs (a follower's
    /// append). Offsets must go up from the log end. A batch after a gap (the leader's
    /// cleaner removed the offsets between) goes into the active segment like any other; the
    /// cleaner checkpoint's `replicated_gaps_below` is moved past the call's batches first,
    /// durably, so recovery takes such a gap for what it is, never for a lost tail.
    pub fn append_replicated(&mut self, batches: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.ensure_writable()?;
        let ranges = split_batches(batches, i32::MAX as u64, Source::Replica)?;
        let mut expected = self.log_end_offset();
        let mut latest_epoch = self.state.epochs.latest_epoch();
        // An offset gap before a batch, or a batch with fewer records than offsets.
        let mut compacted = false;
        for range in &ranges {
            let view = BatchView::new(&batches[range.clone()]).map_err(|reason| {
                StorageError::InvalidBatch {
                    batch_index: 0,
                    reason,
                }
            })?;
            if view.base_offset() < expected {
                return Err(StorageError::NonMonotonicOffset {
                    base_offset: view.base_offset(),
                    log_end_offset: expected,
                });
            }
            let epoch = view.partition_leader_epoch();
            if epoch < 0 {
                return Err(StorageError::InvalidLeaderEpoch { epoch });
            }
            if let Some(latest) = latest_epoch
                && epoch < latest
            {
                return Err(StorageError::StaleLeaderEpoch {
                    epoch,
                    latest_epoch: latest,
                });
            }
            latest_epoch = Some(epoch);
            compacted |= view.base_offset() > expected
                || view.records_count() != view.last_offset_delta() + 1;
            expected = view.last_offset() + 1;
        }
        self.poison_on_error(|log| {
            if compacted {
                log.cover_replicated_gaps(expected)?;
            }
            let mut info = log.start_info(now_ms);
            for range in ranges {
                let batch = &batches[range];
                let (base_offset, epoch) = {
                    let view =
                        BatchView::new(batch).map_err(|reason| StorageError::InvalidBatch {
                            batch_index: 0,
                            reason,
                        })?;
                    (view.base_offset(), view.partition_leader_epoch())
                };
                if base_offset != log.log_end_offset() && log.active.is_empty() {
                    // Name the new segment by its first offset, as when a log starts at a
                    // leader's log start.
                    log.start_segment_at(base_offset)?;
                }
                log.assign_epoch(epoch, base_offset)?;
                log.append_one(batch, now_ms, &mut info)?;
                let header = BatchHeader::from_view(
                    0,
                    &BatchView::new(batch).map_err(|reason| StorageError::InvalidBatch {
                        batch_index: 0,
                        reason,
                    })?,
                );
                if header.is_control() {
                    // The leader checked it; a follower takes what its leader wrote.
                    let content = BatchView::new(batch)
                        .map_err(|error| error.to_string())
                        .and_then(|view| decode_control(&view));
                    match content {
                        Ok(ControlContent::Marker(marker)) => {
                            log.record_marker(&marker, base_offset, now_ms)?;
                        }
                        Ok(ControlContent::Other) => {}
                        Err(reason) => {
                            tracing::warn!(log = %log.dir.display(), offset = base_offset, %reason,
                                "replicated control batch unreadable; it ends no transaction");
                        }
                    }
                } else if let Some(producer) = header.producer_batch() {
                    log.state.producers.record(&producer, base_offset, now_ms);
                }
            }
            log.finish_append(now_ms, info)
        })
    }

    /// Appends a transaction marker as leader at `leader_epoch` (WriteTxnMarkers): a control
    /// batch ending the producer's transaction here. Refused when the producer epoch or the
    /// coordinator epoch is older than the producer's state knows (`rule` says how the
    /// producer epoch is compared). An ABORT of a transaction with records here goes into
    /// the aborted-transactions index. Returns the append and the transaction it ended.
    pub fn append_marker(
        &mut self,
        marker: &TxnMarker,
        rule: MarkerEpochRule,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<(AppendInfo, Option<CompletedTxn>)> {
        self.ensure_writable()?;
        if leader_epoch < 0 {
            return Err(StorageError::InvalidLeaderEpoch {
                epoch: leader_epoch,
            });
        }
        if let Some(latest_epoch) = self.state.epochs.latest_epoch()
            && leader_epoch < latest_epoch
        {
            return Err(StorageError::StaleLeaderEpoch {
                epoch: leader_epoch,
                latest_epoch,
            });
        }
        self.state
            .producers
            .check_marker(marker, rule)
            .map_err(|reason| StorageError::Marker { reason })?;
        let mut batch = crate::builder::BatchBuilder::marker(
            marker.producer_id,
            marker.producer_epoch,
            marker.coordinator_epoch,
            marker.kind,
            marker.timestamp_ms,
        );
        self.poison_on_error(|log| {
            log.assign_epoch(leader_epoch, log.log_end_offset())?;
            let mut info = log.start_info(now_ms);
            let base_offset = log.log_end_offset();
            set_base_offset(&mut batch, base_offset);
            set_partition_leader_epoch(&mut batch, leader_epoch);
            if log.config.timestamp_type == TimestampType::LogAppendTime {
                set_log_append_time(&mut batch, now_ms);
            }
            log.append_one(&batch, now_ms, &mut info)?;
            let completed = log.record_marker(marker, base_offset, now_ms)?;
            Ok((log.finish_append(now_ms, info)?, completed))
        })
    }

    /// Updates producer state for a marker written at `offset` (in the active segment) and
    /// indexes an aborted transaction.
    fn record_marker(
        &mut self,
        marker: &TxnMarker,
        offset: i64,
        now_ms: i64,
    ) -> Result<Option<CompletedTxn>> {
        let completed = self.state.producers.record_marker(marker, offset, now_ms);
        if let Some(completed) = &completed
            && completed.kind == MarkerKind::Abort
        {
            self.txn_index.append(
                &self.dir,
                self.active.base_offset,
                AbortedTxn::from_completed(completed),
            )?;
        }
        Ok(completed)
    }

    /// Makes recovery accept offset gaps inside segments below `end_offset` (the end of a
    /// replicated call's batches), durably before any of those batches is written: their
    /// pages may reach the disk at any time after the write, and recovery without the marker
    /// would cut the log at the first gap (and every batch after it). One checkpoint write
    /// per call, whatever the number of gaps in it.
    fn cover_replicated_gaps(&mut self, end_offset: i64) -> Result<()> {
        if self.cleaner.replicated_gaps_below >= end_offset {
            return Ok(());
        }
        self.cleaner.replicated_gaps_below = end_offset;
        self.cleaner.store(&self.dir, self.options.syncer.as_ref())
    }

    fn start_info(&self, now_ms: i64) -> AppendInfo {
        AppendInfo {
            base_offset: self.log_end_offset(),
            last_offset: self.log_end_offset() - 1,
            log_append_time_ms: now_ms,
            max_timestamp_ms: i64::MIN,
            log_start_offset: self.state.log_start_offset,
            batches: 0,
            bytes: 0,
            durability: Durability::Unflushed,
            duplicate_batches: 0,
        }
    }

    /// Records a new leader epoch starting at `start_offset`, durably before any batch of it
    /// is written, so recovery can check every batch's epoch.
    fn assign_epoch(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        if self.state.epochs.assign(epoch, start_offset) {
            self.store_state()?;
        }
        Ok(())
    }

    fn append_one(&mut self, batch: &[u8], now_ms: i64, info: &mut AppendInfo) -> Result<()> {
        let view = BatchView::new(batch).map_err(|reason| StorageError::InvalidBatch {
            batch_index: info.batches,
            reason,
        })?;
        let total_bytes = view.total_bytes() as u64;
        if self
            .active
            .should_roll(total_bytes, view.last_offset(), now_ms, &self.config)
        {
            self.roll_active()?;
        }
        let header = BatchHeader::from_view(self.active.size_bytes(), &view);
        if info.batches == 0 {
            info.base_offset = header.base_offset;
        }
        self.active.append(batch, header, now_ms)?;
        info.last_offset = header.last_offset;
        info.max_timestamp_ms = info.max_timestamp_ms.max(header.max_timestamp_ms);
        info.batches += 1;
        info.bytes += total_bytes;
        Ok(())
    }

    fn finish_append(&mut self, now_ms: i64, mut info: AppendInfo) -> Result<AppendInfo> {
        let flush_now = match self.config.flush_policy {
            FlushPolicy::EveryBatch => self.options.flush_owner == FlushOwner::Log,
            // An owner (the broker's upkeep) runs interval flushes off the append path.
            FlushPolicy::IntervalMs(interval_ms) => {
                self.options.flush_owner == FlushOwner::Log
                    && now_ms.saturating_sub(self.last_flush_ms) >= interval_ms as i64
            }
            FlushPolicy::Os => false,
        };
        if flush_now {
            self.flush_all()?;
            self.last_flush_ms = now_ms;
        }
        info.durability = self.durability_of(self.state.recovery_point >= self.log_end_offset());
        Ok(info)
    }

    /// Every append must be durable before its answer, and the owner runs the fsyncs.
    fn defers_every_batch_flush(&self) -> bool {
        self.options.flush_owner == FlushOwner::Caller
            && self.config.flush_policy == FlushPolicy::EveryBatch
    }

    fn durability_of(&self, on_disk: bool) -> Durability {
        if on_disk {
            Durability::OnDisk
        } else if self.defers_every_batch_flush() {
            Durability::FlushPending
        } else {
            Durability::Unflushed
        }
    }

    /// Seals the active segment (flushing it) and starts a new one at the log end.
    pub fn roll(&mut self) -> Result<()> {
        self.ensure_writable()?;
        self.poison_on_error(|log| log.roll_active())
    }

    pub(crate) fn roll_active(&mut self) -> Result<()> {
        if self.active.is_empty() {
            return Ok(());
        }
        let next_offset = self.log_end_offset();
        self.replace_active(next_offset)
    }

    /// A replicated batch after a gap while the active segment is empty: that segment is
    /// replaced by one named by the batch's offset. Everything before the gap is flushed
    /// first and the checkpoint's recovery point set past it: recovery takes a segment that
    /// ends before the next one's base as a lost tail (power loss under the `os` policy), so
    /// it must never scan across this gap between segments.
    fn start_segment_at(&mut self, base_offset: i64) -> Result<()> {
        debug_assert!(self.active.is_empty());
        self.flush_all()?;
        super::open::delete_segment_files(&self.dir, self.active.base_offset)?;
        self.active = ActiveSegment::create(
            &self.dir,
            base_offset,
            &self.config,
            self.options.syncer.as_ref(),
        )?;
        if self.sealed.is_empty() {
            // A log holding no batch restarts here; recovery would move its start here too.
            self.state.log_start_offset = self.state.log_start_offset.max(base_offset);
            self.state.high_watermark = self.state.high_watermark.max(base_offset);
        }
        self.state.recovery_point = base_offset;
        self.store_state()
    }

    fn replace_active(&mut self, base_offset: i64) -> Result<()> {
        let deferred = self.options.flush_owner == FlushOwner::Caller
            && self.config.flush_policy != FlushPolicy::EveryBatch;
        if !deferred {
            // The segment's data is on disk before the next segment's name is: a power cut
            // never leaves a next segment behind this one's lost tail (recovery would take
            // the tail's offsets as a gap and skip them).
            self.active.flush(self.options.syncer.as_ref())?;
        }
        let fresh = ActiveSegment::create(
            &self.dir,
            base_offset,
            &self.config,
            self.options.syncer.as_ref(),
        )?;
        let previous = std::mem::replace(&mut self.active, fresh);
        if deferred {
            // The owner flushes it off the append path (`pending_flush`), as Kafka flushes a
            // rolled segment in the background: an fsync of a whole segment's dirty pages
            // here would stall every append behind it.
            let file = previous.shared_file();
            self.sealed.push_back(previous.seal_unflushed()?);
            self.unflushed.push(file);
            return self.store_state();
        }
        let sealed = previous.seal_unflushed()?;
        self.sealed.push_back(sealed);
        if self.unflushed.is_empty() {
            // Everything before the new segment was flushed by the seal.
            self.state.recovery_point = base_offset;
        }
        self.store_state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::BatchBuilder;

    fn batch(records: usize) -> Vec<u8> {
        let mut builder = BatchBuilder::new(0);
        for _ in 0..records {
            builder.push(None, Some(b"v"), 0);
        }
        builder.build()
    }

    #[test]
    fn split_accepts_concatenated_batches_and_rejects_trailing_bytes() {
        let mut bytes = batch(1);
        bytes.extend(batch(3));
        let ranges = split_batches(&bytes, 1 << 20, Source::Producer).unwrap();
        assert_eq!(ranges.len(), 2);
        bytes.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(
            split_batches(&bytes, 1 << 20, Source::Producer),
            Err(StorageError::InvalidBatch { batch_index: 2, .. })
        ));
        assert!(matches!(
            split_batches(&[], 1 << 20, Source::Producer),
            Err(StorageError::EmptyAppend)
        ));
    }

    #[test]
    fn split_enforces_the_batch_size_limit() {
        let bytes = batch(10);
        assert!(matches!(
            split_batches(&bytes, 70, Source::Producer),
            Err(StorageError::BatchTooLarge { batch_index: 0, .. })
        ));
    }
}
