//! Reads by offset and lookups by timestamp. Both return whole batches as file regions.

use super::PartitionLog;
use crate::error::{Result, StorageError};
use crate::scan::BatchHeader;
use crate::segment::{FileRegion, ReadWindow, SegmentView, region_from};

/// How far readers may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    /// Consumers: committed records only.
    HighWatermark,
    /// read_committed consumers: below the last stable offset only.
    LastStableOffset,
    /// Followers replicating: everything appended.
    LogEnd,
}

/// Whether a batch larger than `max_bytes` is returned when it is the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBatch {
    /// Always return the first batch whole (KIP-74), so a consumer makes progress.
    Whole,
    /// Stay within `max_bytes` even if that returns nothing.
    WithinMaxBytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_bytes: u64,
    pub bound: ReadBound,
    pub first_batch: FirstBatch,
}

/// Batches from the requested offset on, within one segment, plus the offsets a fetch
/// response reports beside them.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// `None` when there is nothing to return yet (at the bound, or the first batch does not
    /// fit and [`FirstBatch::WithinMaxBytes`] was asked).
    pub region: Option<FileRegion>,
    /// Records in `region`: counted from its batch headers, and from the offsets of the
    /// batches the index skipped where every offset is a record (above the compacted range).
    pub records: u64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// For a [`ReadBound::LastStableOffset`] read: the aborted transactions overlapping the
    /// offsets from the requested one to the end of `region` (Kafka's
    /// `collectAbortedTransactions`), whose records a read_committed reader drops. Empty
    /// when nothing was read; `None` for other bounds.
    pub aborted_transactions: Option<Vec<crate::txn_index::AbortedTxn>>,
}

/// The batch a timestamp lookup found. Offsets inside it are the caller's to pick: the exact
/// record needs the records decoded (and maybe decompressed).
#[derive(Debug, Clone)]
pub struct TimestampMatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp_ms: i64,
    pub region: FileRegion,
}

/// What one segment had for a read.
enum Found<T> {
    /// Nothing at or after the offset in this segment: try the next.
    NotHere,
    Here(T),
}

impl PartitionLog {
    /// Reads whole batches starting with the one that holds `offset`. Offsets below the log
    /// start or above the log end are out of range, as Kafka answers them.
    pub fn read(&self, offset: i64, limits: ReadLimits) -> Result<ReadResult> {
        let log_end_offset = self.log_end_offset();
        if offset < self.state.log_start_offset || offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start_offset: self.state.log_start_offset,
                log_end_offset,
            });
        }
        let window = ReadWindow {
            end_offset: match limits.bound {
                ReadBound::HighWatermark => self.state.high_watermark,
                ReadBound::LastStableOffset => self.last_stable_offset(self.state.high_watermark),
                ReadBound::LogEnd => log_end_offset,
            },
            max_bytes: limits.max_bytes,
            first_batch_whole: limits.first_batch == FirstBatch::Whole,
            offsets_are_records_from: self.cleaner.offsets_without_records_below(),
        };
        let mut found = None;
        let mut target = offset;
        // A consumer's read (bounded by the high watermark) passes over batches compaction
        // left without records: librdkafka takes an answer without records for a fetch size
        // too small and doubles it, until it reports the message too large. When nothing
        // with records follows up to the bound, the last of them is answered after all, so
        // the consumer's position still reaches the bound (Java's readToEnd waits for it). A
        // follower's read (to the log end) gets every batch, as it must copy the log.
        // Bounded by the segments there are.
        let mut passed_over = None;
        for _ in 0..=self.sealed.len() {
            if target >= window.end_offset {
                break;
            }
            found = self
                .first_found(target, |view, target| match view.find(target)? {
                    None => Ok(Found::NotHere),
                    Some(first) => region_from(&view, first, window).map(Found::Here),
                })?
                .flatten();
            match &found {
                Some(region) if region.records == 0 && limits.bound != ReadBound::LogEnd => {
                    target = region.last_offset + 1;
                    passed_over = found.take();
                }
                _ => break,
            }
        }
        let found = found.or(passed_over);
        let aborted_transactions = (limits.bound == ReadBound::LastStableOffset).then(|| {
            found.as_ref().map_or_else(Vec::new, |found| {
                self.aborted_transactions(offset, found.last_offset + 1)
            })
        });
        let (region, records) =
            found.map_or((None, 0), |found| (Some(found.region), found.records));
        Ok(ReadResult {
            region,
            records,
            log_start_offset: self.state.log_start_offset,
            log_end_offset,
            high_watermark: self.state.high_watermark,
            last_stable_offset: self.last_stable_offset(self.state.high_watermark),
            aborted_transactions,
        })
    }

    /// The first batch at or after the log start whose max timestamp is at or after
    /// `timestamp_ms` (ListOffsets by timestamp); `None` when every batch is older.
    pub fn find_by_timestamp(&self, timestamp_ms: i64) -> Result<Option<TimestampMatch>> {
        let log_start_offset = self.state.log_start_offset;
        for segment in &self.sealed {
            if segment.next_offset() <= log_start_offset {
                continue;
            }
            let newest = segment.max_timestamp(self.config.index_interval_bytes)?;
            if newest.is_some_and(|newest| newest < timestamp_ms) {
                continue;
            }
            let found = segment.with_view(
                &self.options.file_cache,
                self.config.index_interval_bytes,
                log_start_offset.max(segment.base_offset),
                |view| timestamp_match(view, timestamp_ms, log_start_offset),
            )?;
            if found.is_some() {
                return Ok(found);
            }
        }
        timestamp_match(self.active.view(), timestamp_ms, log_start_offset)
    }

    /// Largest batch timestamp at or after the log start and the last offset of its batch
    /// (ListOffsets `MAX_TIMESTAMP`, at batch granularity).
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        let mut best: Option<(i64, i64)> = None;
        let mut consider = |candidate: Option<(i64, i64)>| {
            if let Some(candidate) = candidate
                && best.is_none_or(|(timestamp, _)| candidate.0 > timestamp)
            {
                best = Some(candidate);
            }
        };
        for segment in &self.sealed {
            if segment.next_offset() <= self.state.log_start_offset {
                continue;
            }
            let found = segment.with_view(
                &self.options.file_cache,
                self.config.index_interval_bytes,
                segment.base_offset,
                |view| {
                    Ok(view.time_index.last().map(|entry| {
                        (
                            entry.timestamp_ms,
                            view.base_offset + i64::from(entry.relative_offset),
                        )
                    }))
                },
            )?;
            consider(found);
        }
        consider(self.active.max_timestamp());
        Ok(best.filter(|&(_, offset)| offset >= self.state.log_start_offset))
    }

    /// Runs `lookup` on each segment from the one holding `offset` until one has an answer.
    fn first_found<T>(
        &self,
        offset: i64,
        lookup: impl Fn(SegmentView<'_>, i64) -> Result<Found<T>>,
    ) -> Result<Option<T>> {
        let start = self
            .sealed
            .partition_point(|segment| segment.base_offset <= offset)
            .saturating_sub(1);
        if offset < self.active.base_offset {
            for segment in self.sealed.range(start..) {
                let target = offset.max(segment.base_offset);
                let found = segment.with_view(
                    &self.options.file_cache,
                    self.config.index_interval_bytes,
                    target,
                    |view| lookup(view, target),
                )?;
                if let Found::Here(value) = found {
                    return Ok(Some(value));
                }
            }
        }
        let target = offset.max(self.active.base_offset);
        match lookup(self.active.view(), target)? {
            Found::Here(value) => Ok(Some(value)),
            Found::NotHere => Ok(None),
        }
    }
}

fn timestamp_match(
    view: SegmentView<'_>,
    timestamp_ms: i64,
    min_offset: i64,
) -> Result<Option<TimestampMatch>> {
    Ok(view
        .find_by_timestamp(timestamp_ms, min_offset)?
        .map(|header: BatchHeader| TimestampMatch {
            base_offset: header.base_offset,
            last_offset: header.last_offset,
            max_timestamp_ms: header.max_timestamp_ms,
            region: FileRegion {
                file: std::sync::Arc::clone(view.file),
                position: header.position,
                length: header.total_bytes,
            },
        }))
}
