//! Log compaction with Kafka's semantics (`LogCleaner`, `Cleaner`, `LogCleanerManager`).
//!
//! A pass keeps the latest record per key below the first uncleanable offset. It runs in
//! three steps so the log's owner holds the log mutably only for the cheap ones:
//!
//! 1. [`crate::PartitionLog::plan_cleaning`] (`&self`, under the owner's lock): the sealed
//!    segments with their open files, the first dirty and first uncleanable offsets, the
//!    producers' last batches, a truncation count.
//! 2. [`Cleaner::clean`] (no lock): maps the dirty keys into the bounded [`OffsetMap`],
//!    reads the sealed segments through the plan's file handles (sealed segments never
//!    change; a handle keeps a deleted file readable) and writes each group of segments as
//!    `<base>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`), fsynced.
//! 3. [`crate::PartitionLog::commit_cleaning`] (`&mut self`, under the lock): if the log was
//!    truncated or any planned segment changed or went (retention) meanwhile, the cleaned
//!    files are deleted and nothing changes; else the groups are swapped in (see
//!    `log/compact.rs` for the crash protocol) and the cleaner checkpoint moves.
//!
//! When the dirty range holds more keys than the map, a pass cleans the prefix that fits and
//! the checkpoint moves to its end; the owner runs passes until [`CleanOutput::more_dirty`]
//! is false.

mod checkpoint;
mod choose;
mod offset_map;
mod rewrite;
mod throttle;
mod transactions;

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use checkpoint::Loaded as LoadedCheckpoint;
pub use checkpoint::{CLEANER_CHECKPOINT_FILE, CleanerCheckpoint};
pub use choose::{CleaningReason, CleaningView, choose};
pub use offset_map::{OffsetMap, SLOT_BYTES};
pub use throttle::{Pause, Throttle};

use crate::batch::{BatchView, Compression, batch_total_bytes, parse_records};
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::files::{
    LOG_SUFFIX, OFFSET_INDEX_SUFFIX, Syncer, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX, segment_path,
};
use crate::index::{OFFSET_ENTRY_BYTES, OffsetIndex, TIME_ENTRY_BYTES, TimeIndex};
use crate::scan::BatchHeader;
use crate::segment::Indexer;
use rewrite::{Outcome, Rules, filter_batch, records_of};
use transactions::{TxnTracker, TxnVerdict};

/// Suffix of a cleaned segment's files before they are swapped in.
pub const CLEANED_SUFFIX: &str = "cleaned";
/// Suffix of a cleaned segment's files once the swap is committed.
pub const SWAP_SUFFIX: &str = "swap";

/// The codecs of compressed batches, which live in the wire crate: the cleaner decompresses,
/// filters and recompresses with the batch's own codec.
pub trait RecordsCodec: Send + Sync + fmt::Debug {
    fn decompress(
        &self,
        compression: Compression,
        payload: &[u8],
        output_bytes_max: usize,
    ) -> Result<Vec<u8>, String>;
    fn compress(&self, compression: Compression, plain: &[u8]) -> Result<Vec<u8>, String>;
}

/// Refuses compressed batches: a pass meeting one fails (and changes nothing).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCodecs;

impl RecordsCodec for NoCodecs {
    fn decompress(&self, compression: Compression, _: &[u8], _: usize) -> Result<Vec<u8>, String> {
        Err(format!("no codec for {compression:?}"))
    }
    fn compress(&self, compression: Compression, _: &[u8]) -> Result<Vec<u8>, String> {
        Err(format!("no codec for {compression:?}"))
    }
}

/// A cleaner thread's settings (Kafka's `log.cleaner.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerConfig {
    /// `log.cleaner.dedupe.buffer.size` divided among the cleaner threads: the offset map.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.io.max.bytes.per.second`; `None`: unlimited (Kafka's default).
    pub io_bytes_per_second_max: Option<u64>,
    /// Largest decompressed batch payload accepted.
    pub decompressed_bytes_max: usize,
    /// Bytes read from a segment at a time.
    pub read_chunk_bytes: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_bytes: 128 * 1024 * 1024,
            io_bytes_per_second_max: None,
            decompressed_bytes_max: 64 * 1024 * 1024,
            read_chunk_bytes: 512 * 1024,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub records_removed: u64,
    pub batches_removed: u64,
    pub keys_mapped: u64,
    pub duration_ms: u64,
    pub throttled_ms: u64,
    /// The dirty ratio of the log when the pass was planned.
    pub dirty_ratio_before: f64,
    pub segments_before: u64,
    pub segments_after: u64,
}

/// One sealed segment as the plan saw it.
#[derive(Debug, Clone)]
pub(crate) struct PlannedSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    pub file: Arc<File>,
    pub log_path: PathBuf,
    pub modified_ms: i64,
}

/// A pass's inputs, taken under the owner's lock ([`crate::PartitionLog::plan_cleaning`]).
#[derive(Debug, Clone)]
pub struct CleanPlan {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) syncer: Arc<dyn Syncer>,
    pub(crate) segments: Vec<PlannedSegment>,
    pub(crate) first_dirty_offset: i64,
    pub(crate) first_uncleanable_offset: i64,
    pub(crate) truncations: u64,
    /// Producer id → last offset of its last batch: that batch is kept even when empty.
    pub(crate) last_batch_of_producer: std::collections::HashMap<i64, i64>,
    /// The log's aborted transactions that overlap the planned segments: their batches are
    /// discarded, never mapped.
    pub(crate) aborted: Vec<crate::txn_index::AbortedTxn>,
    pub(crate) checkpoint: CleanerCheckpoint,
    pub(crate) dirty_ratio: f64,
}

impl CleanPlan {
    /// The aborted transactions a walk from `offset` meets (those ending at or after it).
    fn aborted_from(&self, offset: i64) -> Vec<crate::txn_index::AbortedTxn> {
        self.aborted
            .iter()
            .filter(|txn| txn.last_offset >= offset)
            .copied()
            .collect()
    }

    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty_offset
    }
    pub fn first_uncleanable_offset(&self) -> i64 {
        self.first_uncleanable_offset
    }
    pub fn dirty_ratio(&self) -> f64 {
        self.dirty_ratio
    }
}

/// One group of segments replaced by one cleaned segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CleanedGroup {
    pub base_offset: i64,
    /// The replaced segments: (base offset, next offset, bytes).
    pub replaced: Vec<(i64, i64, u64)>,
    pub size_bytes: u64,
    pub modified_ms: i64,
    /// The cleaned segment's aborted transactions (its `.txnindex`).
    pub aborted: Vec<crate::txn_index::AbortedTxn>,
}

/// A pass's result, to commit under the owner's lock.
#[derive(Debug)]
pub struct CleanOutput {
    pub(crate) dir: PathBuf,
    pub(crate) truncations: u64,
    pub(crate) groups: Vec<CleanedGroup>,
    /// The next pass's first dirty offset.
    pub(crate) end_offset: i64,
    pub(crate) tombstone_horizon_ms: i64,
    pub stats: CleanStats,
    /// Dirty data past `end_offset` waits for another pass (the map was full).
    pub more_dirty: bool,
}

impl CleanOutput {
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }
    /// Deletes the cleaned files of a pass that will not be committed.
    pub fn discard(self) -> Result<()> {
        for group in &self.groups {
            remove_cleaned_files(&self.dir, group.base_offset)?;
        }
        Ok(())
    }
}

pub(crate) fn cleaned_path(dir: &Path, base_offset: i64, suffix: &str, state: &str) -> PathBuf {
    let mut path = segment_path(dir, base_offset, suffix).into_os_string();
    path.push(".");
    path.push(state);
    PathBuf::from(path)
}

pub(crate) fn remove_cleaned_files(dir: &Path, base_offset: i64) -> Result<()> {
    for suffix in [
        LOG_SUFFIX,
        OFFSET_INDEX_SUFFIX,
        TIME_INDEX_SUFFIX,
        TXN_INDEX_SUFFIX,
    ] {
        crate::files::remove_if_exists(&cleaned_path(dir, base_offset, suffix, CLEANED_SUFFIX))?;
    }
    Ok(())
}

/// A cleaner: its offset map (allocated once, `dedupe_buffer_bytes`), throttle and codecs.
#[derive(Debug)]
pub struct Cleaner {
    config: CleanerConfig,
    map: OffsetMap,
    throttle: Throttle,
    codec: Arc<dyn RecordsCodec>,
    clock: Arc<dyn Pause>,
    buffer: Vec<u8>,
    /// Set by the owner to stop a pass (shutdown): checked at every batch read.
    abort: Arc<std::sync::atomic::AtomicBool>,
}

impl Cleaner {
    pub fn new(config: CleanerConfig, codec: Arc<dyn RecordsCodec>, clock: Arc<dyn Pause>) -> Self {
        let throttle = match config.io_bytes_per_second_max {
            Some(rate) => Throttle::new(rate, Arc::clone(&clock)),
            None => Throttle::unlimited(),
        };
        Cleaner {
            map: OffsetMap::with_memory(config.dedupe_buffer_bytes),
            config,
            throttle,
            codec,
            clock,
            buffer: Vec::new(),
            abort: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// A pass stops with an error (its files deleted) once `abort` is set, as Kafka's
    /// `checkDone` aborts a cleaning on shutdown.
    pub fn with_abort(mut self, abort: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.abort = abort;
        self
    }

    fn check_abort(&self, segment: &PlannedSegment) -> Result<()> {
        if self.abort.load(std::sync::atomic::Ordering::Acquire) {
            return Err(cleaning_error(segment, "the cleaner was stopped"));
        }
        Ok(())
    }

    pub fn map(&self) -> &OffsetMap {
        &self.map
    }

    /// Step 2 of a pass, off the owner's lock: writes the cleaned segments of `plan`.
    /// `now_ms` decides which tombstones' horizons passed. On an error the cleaned files
    /// written so far are removed.
    pub fn clean(&mut self, plan: &CleanPlan, now_ms: i64) -> Result<CleanOutput> {
        let started_ms = self.clock.now_ms();
        let slept_before = self.throttle.slept_ms();
        let mut stats = CleanStats {
            dirty_ratio_before: plan.dirty_ratio,
            segments_before: plan.segments.len() as u64,
            ..CleanStats::default()
        };
        let more_dirty = self.build_map(plan, &mut stats)?;
        let end_offset = (self.map.latest_offset() + 1).max(plan.first_dirty_offset);
        stats.keys_mapped = self.map.len() as u64;
        let tombstones_due = plan.checkpoint.tombstone_horizon_ms <= now_ms;
        let mut output = CleanOutput {
            dir: plan.dir.clone(),
            truncations: plan.truncations,
            groups: Vec::new(),
            end_offset,
            tombstone_horizon_ms: i64::MAX,
            stats,
            more_dirty,
        };
        if end_offset > plan.first_dirty_offset || tombstones_due {
            let to_clean: Vec<&PlannedSegment> = plan
                .segments
                .iter()
                .filter(|segment| segment.base_offset < end_offset.max(plan.first_dirty_offset + 1))
                .collect();
            // One walk over the groups in offset order, from the log's first segment: a
            // marker's transaction may have batches in an earlier group.
            let first_base = to_clean.first().map_or(0, |segment| segment.base_offset);
            let mut transactions = TxnTracker::new(&plan.aborted_from(first_base));
            for group in group_by_size(&to_clean, &plan.config) {
                match self.clean_group(plan, &group, now_ms, &mut transactions, &mut output) {
                    Ok(cleaned) => output.groups.push(cleaned),
                    Err(error) => {
                        let _ = remove_cleaned_files(&plan.dir, group[0].base_offset);
                        output.discard()?;
                        return Err(error);
                    }
                }
            }
        } else {
            output.tombstone_horizon_ms = plan.checkpoint.tombstone_horizon_ms;
        }
        output.stats.records_removed = output.stats.records_read - output.stats.records_kept;
        output.stats.segments_after = output.stats.segments_before
            - output
                .groups
                .iter()
                .map(|group| group.replaced.len() as u64 - 1)
                .sum::<u64>();
        output.stats.throttled_ms = self.throttle.slept_ms() - slept_before;
        output.stats.duration_ms =
            u64::try_from(self.clock.now_ms().saturating_sub(started_ms)).unwrap_or(0);
        Ok(output)
    }

    /// Maps the keys of the dirty range from its start until the map is full. Returns
    /// whether dirty data was left for another pass.
    fn build_map(&mut self, plan: &CleanPlan, stats: &mut CleanStats) -> Result<bool> {
        let start = plan.first_dirty_offset;
        let upper = plan.first_uncleanable_offset;
        self.map.clear(start - 1);
        // An aborted transaction's records are never a key's latest: they are discarded.
        let mut transactions = TxnTracker::new(&plan.aborted_from(start));
        for segment in &plan.segments {
            if segment.next_offset <= start || segment.base_offset >= upper {
                continue;
            }
            let mut reader = SegmentReader::new(segment, self.config.read_chunk_bytes);
            while let Some((_, batch)) =
                reader.next(&mut self.buffer, &mut self.throttle, &mut stats.bytes_read)?
            {
                if self.abort.load(std::sync::atomic::Ordering::Acquire) {
                    return Err(cleaning_error(segment, "the cleaner was stopped"));
                }
                let view = BatchView::new(batch).map_err(|error| cleaning_error(segment, error))?;
                if view.last_offset() >= upper {
                    return Ok(false);
                }
                if view.last_offset() < start {
                    continue;
                }
                let aborted = transactions.on_batch(&view) == TxnVerdict::Aborted;
                if !view.is_control() && !aborted {
                    let plain = records_of(
                        &view,
                        self.codec.as_ref(),
                        self.config.decompressed_bytes_max,
                    )
                    .map_err(|reason| cleaning_error(segment, reason))?;
                    let records = parse_records(&view, &plain).ok_or_else(|| {
                        cleaning_error(
                            segment,
                            format!("malformed records at offset {}", view.base_offset()),
                        )
                    })?;
                    for record in &records {
                        if let Some(key) = record.key
                            && record.offset >= start
                            && !self.map.put(key, record.offset)
                        {
                            if self.map.latest_offset() < start {
                                return Err(cleaning_error(
                                    segment,
                                    format!(
                                        "the dedupe buffer ({} keys) cannot hold the keys of the batch at offset {}",
                                        self.map.capacity(),
                                        view.base_offset()
                                    ),
                                ));
                            }
                            return Ok(true);
                        }
                    }
                }
                self.map.update_latest_offset(view.last_offset());
            }
            // Offsets up to the next segment (or the bound) are covered even where no batch
            // holds them.
            self.map
                .update_latest_offset(segment.next_offset.min(upper) - 1);
        }
        Ok(false)
    }

    fn clean_group(
        &mut self,
        plan: &CleanPlan,
        group: &[&PlannedSegment],
        now_ms: i64,
        transactions: &mut TxnTracker,
        output: &mut CleanOutput,
    ) -> Result<CleanedGroup> {
        let base_offset = group[0].base_offset;
        let dir = &plan.dir;
        let log_path = cleaned_path(dir, base_offset, LOG_SUFFIX, CLEANED_SUFFIX);
        let offset_path = cleaned_path(dir, base_offset, OFFSET_INDEX_SUFFIX, CLEANED_SUFFIX);
        let time_path = cleaned_path(dir, base_offset, TIME_INDEX_SUFFIX, CLEANED_SUFFIX);
        let group_bytes: u64 = group.iter().map(|segment| segment.size_bytes).sum();
        let entries_max = group_bytes / crate::batch::BATCH_HEADER_BYTES as u64 + 2;
        let mut offset_index =
            OffsetIndex::create(&offset_path, entries_max * OFFSET_ENTRY_BYTES as u64)?;
        let mut time_index = TimeIndex::create(&time_path, entries_max * TIME_ENTRY_BYTES as u64)?;
        let file = File::create(&log_path)
            .map_err(|error| StorageError::io("create", &log_path, error))?;
        let mut writer = BufWriter::with_capacity(256 * 1024, &file);
        let mut indexer = Indexer::new(base_offset, plan.config.index_interval_bytes);
        let delete_retention_ms =
            i64::try_from(plan.config.compaction.delete_retention_ms).unwrap_or(i64::MAX);
        let mut position = 0u64;
        let mut read_bytes = 0u64;
        for (index, segment) in group.iter().enumerate() {
            let last_segment = index + 1 == group.len();
            self.check_abort(segment)?;
            let mut reader = SegmentReader::new(segment, self.config.read_chunk_bytes);
            while let Some((batch_position, batch)) =
                reader.next(&mut self.buffer, &mut self.throttle, &mut read_bytes)?
            {
                if self.abort.load(std::sync::atomic::Ordering::Acquire) {
                    return Err(cleaning_error(segment, "the cleaner was stopped"));
                }
                let view = BatchView::new(batch).map_err(|error| cleaning_error(segment, error))?;
                let last_in_group =
                    last_segment && batch_position + batch.len() as u64 == segment.size_bytes;
                let last_of_producer = view.producer_id() >= 0
                    && plan.last_batch_of_producer.get(&view.producer_id())
                        == Some(&view.last_offset());
                let last_of_round = view.last_offset() + 1 == plan.first_uncleanable_offset;
                let rules = Rules {
                    map: &self.map,
                    now_ms,
                    delete_retention_ms,
                    codec: self.codec.as_ref(),
                    decompressed_bytes_max: self.config.decompressed_bytes_max,
                };
                let txn = match transactions.on_batch(&view) {
                    // Nothing at or past the bound (the last stable offset) is judged by
                    // its transaction: the walk only learns from it.
                    _ if view.last_offset() >= plan.first_uncleanable_offset => TxnVerdict::Judge,
                    verdict => verdict,
                };
                let (outcome, counts) = filter_batch(
                    &view,
                    last_in_group || last_of_producer || last_of_round,
                    txn,
                    &rules,
                )
                .map_err(|reason| cleaning_error(segment, reason))?;
                output.stats.records_read += counts.records_read;
                output.stats.records_kept += counts.records_kept;
                if let Some(horizon) = counts.tombstone_horizon_ms {
                    output.tombstone_horizon_ms = output.tombstone_horizon_ms.min(horizon);
                }
                let written: &[u8] = match &outcome {
                    Outcome::Keep => batch,
                    Outcome::Rewritten(bytes) => bytes,
                    Outcome::Drop => {
                        output.stats.batches_removed += 1;
                        continue;
                    }
                };
                let written_view =
                    BatchView::new(written).map_err(|error| cleaning_error(segment, error))?;
                let header = BatchHeader::from_view(position, &written_view);
                writer
                    .write_all(written)
                    .map_err(|error| StorageError::io("write", &log_path, error))?;
                indexer.add(&header, &mut offset_index, &mut time_index)?;
                position += written.len() as u64;
                output.stats.bytes_written += written.len() as u64;
                self.throttle.take(written.len() as u64);
            }
        }
        output.stats.bytes_read += read_bytes;
        writer
            .flush()
            .map_err(|error| StorageError::io("write", &log_path, error))?;
        drop(writer);
        plan.syncer
            .sync_data(&file)
            .map_err(|error| StorageError::io("fsync", &log_path, error))?;
        indexer.push_time_entry(&mut time_index)?;
        drop(offset_index.seal()?);
        drop(time_index.seal()?);
        // Sealing synced them already; through the log's syncer too, so the fault-injecting
        // syncers of the tests see them durable (and a real one costs little).
        for path in [&offset_path, &time_path] {
            let index = File::open(path).map_err(|error| StorageError::io("open", path, error))?;
            plan.syncer
                .sync_data(&index)
                .map_err(|error| StorageError::io("fsync", path, error))?;
        }
        // The group's aborted transactions whose marker stays with batches of theirs.
        let aborted = transactions.take_kept();
        let txn_path = cleaned_path(dir, base_offset, TXN_INDEX_SUFFIX, CLEANED_SUFFIX);
        crate::txn_index::write_file(&txn_path, &aborted, plan.syncer.as_ref())?;
        let modified_ms = group.last().map_or(0, |segment| segment.modified_ms);
        // Keep the replaced segments' age for retention's mtime fallback, as Kafka does.
        if let Ok(since) = u64::try_from(modified_ms) {
            let modified = std::time::UNIX_EPOCH + std::time::Duration::from_millis(since);
            let _ = file.set_modified(modified);
        }
        Ok(CleanedGroup {
            base_offset,
            replaced: group
                .iter()
                .map(|segment| (segment.base_offset, segment.next_offset, segment.size_bytes))
                .collect(),
            size_bytes: position,
            modified_ms,
            aborted,
        })
    }
}

fn cleaning_error(segment: &PlannedSegment, reason: impl fmt::Display) -> StorageError {
    StorageError::Cleaning {
        path: segment.log_path.clone(),
        reason: reason.to_string(),
    }
}

/// Kafka's `groupSegmentsBySize`: consecutive segments whose total log bytes stay within
/// `segment.bytes`, whose indexes would stay within `segment.index.bytes`, and whose offsets
/// stay addressable relative to the group's base.
pub(crate) fn group_by_size<'a>(
    segments: &[&'a PlannedSegment],
    config: &LogConfig,
) -> Vec<Vec<&'a PlannedSegment>> {
    let index_bytes = |segment: &PlannedSegment| {
        segment.size_bytes / config.index_interval_bytes.max(1) * OFFSET_ENTRY_BYTES as u64
    };
    let time_index_bytes = |segment: &PlannedSegment| {
        segment.size_bytes / config.index_interval_bytes.max(1) * TIME_ENTRY_BYTES as u64
    };
    let mut groups: Vec<Vec<&PlannedSegment>> = Vec::new();
    for &segment in segments {
        if let Some(group) = groups.last_mut() {
            let log_bytes: u64 = group.iter().map(|member| member.size_bytes).sum();
            let offsets: u64 = group.iter().map(|member| index_bytes(member)).sum();
            let times: u64 = group.iter().map(|member| time_index_bytes(member)).sum();
            let span_fits = segment.next_offset - group[0].base_offset <= i64::from(i32::MAX);
            if log_bytes + segment.size_bytes <= config.segment_bytes_max
                && offsets + index_bytes(segment) <= config.index_bytes_max
                && times + time_index_bytes(segment) <= config.index_bytes_max
                && span_fits
            {
                group.push(segment);
                continue;
            }
        }
        groups.push(vec![segment]);
    }
    groups
}

/// Reads a sealed segment's batches in chunks through positioned reads (the file handle is
/// shared with readers, so no seek position is used).
struct SegmentReader<'a> {
    segment: &'a PlannedSegment,
    chunk_bytes: usize,
    position: u64,
    /// File position of `buffer[0]` and how many bytes of it are valid.
    buffer_position: u64,
    buffer_len: usize,
}

impl<'a> SegmentReader<'a> {
    fn new(segment: &'a PlannedSegment, chunk_bytes: usize) -> Self {
        SegmentReader {
            segment,
            chunk_bytes: chunk_bytes.max(4096),
            position: 0,
            buffer_position: 0,
            buffer_len: 0,
        }
    }

    /// The next batch and its position; `None` at the end of the segment.
    fn next<'b>(
        &mut self,
        buffer: &'b mut Vec<u8>,
        throttle: &mut Throttle,
        bytes_read: &mut u64,
    ) -> Result<Option<(u64, &'b [u8])>> {
        let size = self.segment.size_bytes;
        if self.position >= size {
            return Ok(None);
        }
        let damaged = |reason: String| cleaning_error(self.segment, reason);
        self.ensure(buffer, 12, throttle, bytes_read)?;
        let start = usize::try_from(self.position - self.buffer_position).unwrap_or(usize::MAX);
        let total = buffer
            .get(start..self.buffer_len)
            .and_then(batch_total_bytes)
            .filter(|&total| total >= 61 && self.position + total <= size)
            .ok_or_else(|| damaged(format!("no whole batch at position {}", self.position)))?;
        let total = usize::try_from(total).map_err(|error| damaged(error.to_string()))?;
        self.ensure(buffer, total, throttle, bytes_read)?;
        let start = usize::try_from(self.position - self.buffer_position).unwrap_or(usize::MAX);
        let batch_position = self.position;
        self.position += total as u64;
        let batch = buffer
            .get(start..start + total)
            .ok_or_else(|| damaged("short read".to_string()))?;
        Ok(Some((batch_position, batch)))
    }

    /// Makes `needed` bytes from the current position available in `buffer`.
    fn ensure(
        &mut self,
        buffer: &mut Vec<u8>,
        needed: usize,
        throttle: &mut Throttle,
        bytes_read: &mut u64,
    ) -> Result<()> {
        let have_from = self.buffer_position;
        let have_to = self.buffer_position + self.buffer_len as u64;
        if self.position >= have_from && self.position + needed as u64 <= have_to {
            return Ok(());
        }
        let left = self.segment.size_bytes - self.position;
        let want = needed
            .max(self.chunk_bytes)
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        buffer.resize(want, 0);
        self.segment
            .file
            .read_exact_at(&mut buffer[..want], self.position)
            .map_err(|error| StorageError::io("read", &self.segment.log_path, error))?;
        self.buffer_position = self.position;
        self.buffer_len = want;
        *bytes_read += want as u64;
        throttle.take(want as u64);
        Ok(())
    }
}

/// Removes leftovers of an interrupted pass and completes committed swaps, before a log's
/// segments are listed at open (see `log/compact.rs` for the protocol).
pub(crate) fn recover_swaps(dir: &Path, syncer: &dyn Syncer) -> Result<bool> {
    let mut changed = false;
    let mut swapped_logs = Vec::new();
    let mut leftovers = Vec::new();
    let entries = fs::read_dir(dir).map_err(|error| StorageError::io("list", dir, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| StorageError::io("list", dir, error))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((base, suffix)) = crate::files::parse_segment_name(name) else {
            continue;
        };
        match suffix.rsplit_once('.') {
            Some((LOG_SUFFIX, SWAP_SUFFIX)) => swapped_logs.push(base),
            Some((_, SWAP_SUFFIX | CLEANED_SUFFIX)) => leftovers.push((base, entry.path())),
            _ => {}
        }
    }
    swapped_logs.sort_unstable();
    for (base, path) in leftovers {
        let is_index_swap = path
            .extension()
            .is_some_and(|extension| extension == SWAP_SUFFIX);
        // An index `.swap` belongs to a committed swap only while its `.log.swap` exists;
        // otherwise it is a pass cut before its commit.
        if is_index_swap && swapped_logs.binary_search(&base).is_ok() {
            continue;
        }
        crate::files::remove_if_exists(&path)?;
        changed = true;
    }
    for base in swapped_logs {
        complete_swap(dir, base, None, syncer)?;
        changed = true;
    }
    if changed {
        crate::files::sync_dir(dir, syncer)?;
    }
    Ok(changed)
}

/// Finishes a committed swap: the `.log.swap` at `base` replaces every segment whose base
/// lies in `[base, last offset of the swap]` (a cleaned group always keeps the last batch of
/// its last segment, so that range reaches every replaced segment and no other).
/// `replaced`: the bases the committing pass knows it replaces (at open: found by the rule).
///
/// The `.log.swap` name stays until the end, so every state a crash (or a power cut that
/// keeps any mix of the unsynced directory entries) can leave still has it or a durable
/// `<base>.log` with its content: the replaced segments and their indexes go first
/// (durably), then the `.log.swap` is hard-linked to `<base>.log` (durably), then unlinked.
pub(crate) fn complete_swap(
    dir: &Path,
    base: i64,
    replaced: Option<&[i64]>,
    syncer: &dyn Syncer,
) -> Result<()> {
    let swap_path = cleaned_path(dir, base, LOG_SUFFIX, SWAP_SUFFIX);
    let mut bases = Vec::new();
    let last_offset = match replaced {
        Some(replaced) => {
            bases.extend(replaced.iter().copied());
            None
        }
        None => last_offset_of(&swap_path)?,
    };
    if replaced.is_none() {
        for entry in fs::read_dir(dir).map_err(|error| StorageError::io("list", dir, error))? {
            let entry = entry.map_err(|error| StorageError::io("list", dir, error))?;
            if let Some(name) = entry.file_name().to_str()
                && let Some((other, LOG_SUFFIX)) = crate::files::parse_segment_name(name)
                && other >= base
                && last_offset.is_some_and(|last| other <= last)
            {
                bases.push(other);
            }
        }
    }
    if !bases.contains(&base) {
        bases.push(base);
    }
    bases.sort_unstable();
    // Newest first, as truncation deletes: a segment is never left without its predecessor.
    // `base`'s old indexes go too: they must never sit beside the cleaned `.log`.
    for other in bases.into_iter().rev() {
        crate::log::delete_segment_files(dir, other)?;
    }
    crate::files::sync_dir(dir, syncer)?;
    // A lost index rename only costs a rebuild from the `.log`.
    for suffix in [OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
        let from = cleaned_path(dir, base, suffix, SWAP_SUFFIX);
        if from.exists() {
            let to = segment_path(dir, base, suffix);
            fs::rename(&from, &to).map_err(|error| StorageError::io("rename", &to, error))?;
        }
    }
    let to = segment_path(dir, base, LOG_SUFFIX);
    fs::hard_link(&swap_path, &to).map_err(|error| StorageError::io("link", &to, error))?;
    crate::files::sync_dir(dir, syncer)?;
    crate::files::remove_if_exists(&swap_path)?;
    tracing::info!(log = %dir.display(), segment = base, "completed a cleaned segment's swap");
    Ok(())
}

/// The last offset of the last whole batch of a segment file.
fn last_offset_of(path: &Path) -> Result<Option<i64>> {
    let file = File::open(path).map_err(|error| StorageError::io("open", path, error))?;
    let size = file
        .metadata()
        .map_err(|error| StorageError::io("stat", path, error))?
        .len();
    let mut last = None;
    crate::scan::scan_segment(
        &file,
        path,
        size,
        0,
        crate::scan::Verify::HeaderOnly,
        |header| {
            last = Some(header.last_offset);
            Ok(())
        },
    )?;
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(
        file: &Arc<File>,
        base_offset: i64,
        next_offset: i64,
        size_bytes: u64,
    ) -> PlannedSegment {
        PlannedSegment {
            base_offset,
            next_offset,
            size_bytes,
            file: Arc::clone(file),
            log_path: PathBuf::from("x.log"),
            modified_ms: 0,
        }
    }

    #[test]
    fn groups_consecutive_segments_within_the_segment_and_index_limits() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(File::create(dir.path().join("x")).unwrap());
        let config = LogConfig {
            segment_bytes_max: 1_000,
            index_interval_bytes: 100,
            index_bytes_max: 100,
            ..LogConfig::default()
        };
        // Index bytes a segment adds: one 8-byte offset and 12-byte time entry per 100 bytes.
        let segments = [
            segment(&file, 0, 10, 300),
            segment(&file, 10, 20, 500),
            segment(&file, 20, 30, 300), // 1,100 bytes with the two before: a new group
            segment(&file, 30, 40, 300),
            segment(&file, 40, 50, 0),
            segment(&file, 50, 60, 300), // time index: 36 + 36 + 36 bytes > 100
            segment(&file, 60, 60 + i64::from(i32::MAX), 10), // offsets past i32 from 50
        ];
        let refs: Vec<&PlannedSegment> = segments.iter().collect();
        let groups: Vec<Vec<i64>> = group_by_size(&refs, &config)
            .iter()
            .map(|group| group.iter().map(|segment| segment.base_offset).collect())
            .collect();
        assert_eq!(
            groups,
            vec![vec![0, 10], vec![20, 30, 40], vec![50], vec![60]]
        );
    }
}
