use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{SealedSegment, SegmentView};
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::files::{
    LOG_SUFFIX, OFFSET_INDEX_SUFFIX, Syncer, TIME_INDEX_SUFFIX, open_read_write, segment_path,
    sync_dir,
};
use crate::index::{
    OFFSET_ENTRY_BYTES, OffsetEntry, OffsetIndex, TIME_ENTRY_BYTES, TimeEntry, TimeIndex,
};
use crate::scan::{BatchHeader, Damage, Verify, scan_segment};

/// Adds the sparse index entries for batches as they are appended or rescanned, as Kafka's
/// `LogSegment.append` does: one entry once more than `index.interval.bytes` were written
/// since the last, and the time index whenever the segment's max timestamp grows.
#[derive(Debug, Clone)]
pub(crate) struct Indexer {
    base_offset: i64,
    interval_bytes: u64,
    bytes_since_entry: u64,
    /// Largest batch max timestamp so far and the last offset of that batch.
    pub max_timestamp: Option<(i64, i64)>,
}

impl Indexer {
    pub fn new(base_offset: i64, interval_bytes: u64) -> Self {
        Indexer {
            base_offset,
            interval_bytes,
            bytes_since_entry: 0,
            max_timestamp: None,
        }
    }

    /// Fails only when an index cannot grow (a full disk): the caller poisons the log.
    pub fn add(
        &mut self,
        header: &BatchHeader,
        offsets: &mut OffsetIndex,
        times: &mut TimeIndex,
    ) -> Result<()> {
        if self
            .max_timestamp
            .is_none_or(|(timestamp, _)| header.max_timestamp_ms > timestamp)
        {
            self.max_timestamp = Some((header.max_timestamp_ms, header.last_offset));
        }
        if self.bytes_since_entry > self.interval_bytes {
            offsets.push(OffsetEntry {
                relative_offset: self.relative(header.base_offset),
                position: u32::try_from(header.position).unwrap_or(u32::MAX),
            })?;
            self.push_time_entry(times)?;
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += header.total_bytes;
        Ok(())
    }

    /// The final time entry a segment gets when it seals, so its max timestamp is on disk.
    pub fn push_time_entry(&self, times: &mut TimeIndex) -> Result<()> {
        if let Some((timestamp_ms, offset)) = self.max_timestamp {
            times.push_if_newer(TimeEntry {
                timestamp_ms,
                relative_offset: self.relative(offset),
            })?;
        }
        Ok(())
    }

    fn relative(&self, offset: i64) -> u32 {
        // Segments roll before a relative offset could pass u32::MAX.
        u32::try_from(offset - self.base_offset).unwrap_or(u32::MAX)
    }
}

/// Whether `header` may come next in a segment whose batches so far end at `next_offset`:
/// contiguous, or after a gap wholly below `gaps_below` (compacted here or on the leader).
fn follows(header: &BatchHeader, next_offset: i64, gaps_below: i64) -> bool {
    header.base_offset == next_offset
        || (header.base_offset > next_offset && header.last_offset < gaps_below)
}

/// The one segment that takes appends. Its indexes are writable maps sized up front.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub base_offset: i64,
    log_path: PathBuf,
    file: Arc<File>,
    size_bytes: u64,
    next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    indexer: Indexer,
    /// When this process first appended to the segment; `segment.ms` counts from here.
    first_append_ms: Option<i64>,
}

impl ActiveSegment {
    /// A new empty segment at `base_offset`, replacing any files of that name. The directory
    /// is fsynced: an fsync of the file's data alone does not keep its name after a power
    /// cut, and appends to it may be acknowledged before anything else syncs the directory.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        syncer: &dyn Syncer,
    ) -> Result<Self> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = open_read_write(&log_path, true)?;
        file.set_len(0)
            .map_err(|error| StorageError::io("truncate", &log_path, error))?;
        crate::txn_index::create_file(dir, base_offset)?;
        sync_dir(dir, syncer)?;
        Self::with_fresh_indexes(dir, base_offset, config, log_path, file)
    }

    fn with_fresh_indexes(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        log_path: PathBuf,
        file: File,
    ) -> Result<Self> {
        let offset_index = OffsetIndex::create(
            &segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX),
            config.index_capacity_bytes(OFFSET_ENTRY_BYTES as u64),
        )?;
        let time_index = TimeIndex::create(
            &segment_path(dir, base_offset, TIME_INDEX_SUFFIX),
            config.index_capacity_bytes(TIME_ENTRY_BYTES as u64),
        )?;
        Ok(ActiveSegment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size_bytes: 0,
            next_offset: base_offset,
            offset_index,
            time_index,
            indexer: Indexer::new(base_offset, config.index_interval_bytes),
            first_append_ms: None,
        })
    }

    /// Rescans an existing `.log` (creating it if missing), rebuilds both indexes from it and
    /// cuts the file at the first batch that is torn, corrupt, out of offset order or refused
    /// by `check`. Returns the damage found, if any. Below `gaps_below` (what the cleaner
    /// compacted, or a follower copied compacted) offsets may skip ahead: compaction removed
    /// whole batches there.
    pub fn recover(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        verify: Verify,
        syncer: &dyn Syncer,
        gaps_below: i64,
        mut check: impl FnMut(&BatchHeader) -> Result<(), String>,
    ) -> Result<(Self, Option<Damage>)> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = open_read_write(&log_path, true)?;
        let file_bytes = file
            .metadata()
            .map_err(|error| StorageError::io("stat", &log_path, error))?
            .len();
        let mut segment = Self::with_fresh_indexes(dir, base_offset, config, log_path, file)?;
        let file = Arc::clone(&segment.file);
        let path = segment.log_path.clone();
        // An index that cannot grow stops the scan but is no damage: the log is not cut for it.
        let mut index_error = None;
        let (valid_bytes, damage) = scan_segment(&file, &path, file_bytes, 0, verify, |header| {
            segment.accept_scanned(header, gaps_below, &mut check, &mut index_error)
        })?;
        if let Some(error) = index_error {
            return Err(error);
        }
        if damage.is_some() {
            file.set_len(valid_bytes)
                .map_err(|error| StorageError::io("truncate torn tail", &path, error))?;
            syncer
                .sync_data(&file)
                .map_err(|error| StorageError::io("fsync", &path, error))?;
        }
        segment.size_bytes = valid_bytes;
        Ok((segment, damage))
    }

    /// The fast path after a clean shutdown: trust the trimmed indexes, CRC-check only the
    /// batches after the last index entry, and require that the checkpoint's recovery point
    /// is exactly this segment's end. Offsets may skip ahead below `gaps_below`, as in
    /// [`ActiveSegment::recover`]. `None` means: run [`ActiveSegment::recover`].
    pub fn open_clean(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        recovery_point: i64,
        gaps_below: i64,
        mut check: impl FnMut(&BatchHeader) -> Result<(), String>,
    ) -> Result<Option<Self>> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = match File::options().read(true).write(true).open(&log_path) {
            Ok(file) => file,
            Err(_) => return Ok(None),
        };
        let file_bytes = file
            .metadata()
            .map_err(|error| StorageError::io("stat", &log_path, error))?
            .len();
        let offset_path = segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX);
        let time_path = segment_path(dir, base_offset, TIME_INDEX_SUFFIX);
        let Some(offset_index) = OffsetIndex::open_writable(
            &offset_path,
            config.index_capacity_bytes(OFFSET_ENTRY_BYTES as u64),
            file_bytes,
        )?
        else {
            return Ok(None);
        };
        let Some(time_index) = TimeIndex::open_writable(
            &time_path,
            config.index_capacity_bytes(TIME_ENTRY_BYTES as u64),
        )?
        else {
            return Ok(None);
        };
        let mut indexer = Indexer::new(base_offset, config.index_interval_bytes);
        indexer.max_timestamp = time_index.last().map(|entry| {
            (
                entry.timestamp_ms,
                base_offset + i64::from(entry.relative_offset),
            )
        });
        let (tail_position, tail_offset) = offset_index.last().map_or((0, base_offset), |entry| {
            (
                u64::from(entry.position),
                base_offset + i64::from(entry.relative_offset),
            )
        });
        let mut segment = ActiveSegment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size_bytes: file_bytes,
            next_offset: tail_offset,
            offset_index,
            time_index,
            indexer,
            first_append_ms: None,
        };
        // The indexer would add entries for the tail batches again; only track their offsets
        // and timestamps here.
        let file = Arc::clone(&segment.file);
        let path = segment.log_path.clone();
        let (_, damage) = scan_segment(
            &file,
            &path,
            file_bytes,
            tail_position,
            Verify::Crc,
            |header| {
                if !follows(header, segment.next_offset, gaps_below) {
                    return Err("offset out of order".to_string());
                }
                check(header)?;
                segment.next_offset = header.last_offset + 1;
                if segment
                    .indexer
                    .max_timestamp
                    .is_none_or(|(timestamp, _)| header.max_timestamp_ms > timestamp)
                {
                    segment.indexer.max_timestamp =
                        Some((header.max_timestamp_ms, header.last_offset));
                }
                Ok(())
            },
        )?;
        if damage.is_some() || segment.next_offset != recovery_point {
            return Ok(None);
        }
        Ok(Some(segment))
    }

    /// A refused batch is damage (`Err` with the reason); an index that cannot grow sets
    /// `index_error` and stops the scan.
    fn accept_scanned(
        &mut self,
        header: &BatchHeader,
        gaps_below: i64,
        check: &mut impl FnMut(&BatchHeader) -> Result<(), String>,
        index_error: &mut Option<StorageError>,
    ) -> Result<(), String> {
        if !follows(header, self.next_offset, gaps_below) {
            return Err(format!(
                "batch base offset {} where {} was expected",
                header.base_offset, self.next_offset
            ));
        }
        check(header)?;
        if let Err(error) = self
            .indexer
            .add(header, &mut self.offset_index, &mut self.time_index)
        {
            let reason = error.to_string();
            *index_error = Some(error);
            return Err(reason);
        }
        self.next_offset = header.last_offset + 1;
        Ok(())
    }

    pub fn view(&self) -> SegmentView<'_> {
        SegmentView {
            file: &self.file,
            path: &self.log_path,
            size_bytes: self.size_bytes,
            base_offset: self.base_offset,
            offset_index: &self.offset_index,
            time_index: &self.time_index,
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.indexer.max_timestamp
    }

    /// Kafka's roll rule, checked before each batch: the segment would outgrow
    /// `segment.bytes`, is older than `segment.ms`, has a full index, or the batch's offsets
    /// would not fit the u32 relative offsets of the index.
    pub fn should_roll(
        &self,
        batch_bytes: u64,
        last_offset: i64,
        now_ms: i64,
        config: &LogConfig,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        self.size_bytes + batch_bytes > config.segment_bytes_max
            || self
                .first_append_ms
                .is_some_and(|first| now_ms.saturating_sub(first) >= config.segment_ms as i64)
            || self.offset_index.is_full()
            || self.time_index.is_full()
            || last_offset - self.base_offset > i64::from(u32::MAX)
    }

    /// Appends one validated batch whose offsets are already assigned. On an I/O error the
    /// caller must poison the log: the file may hold part of the batch.
    pub fn append(&mut self, batch: &[u8], header: BatchHeader, now_ms: i64) -> Result<()> {
        debug_assert_eq!(header.position, self.size_bytes);
        // Positioned write: the file's cursor is shared with scans and may sit anywhere (a
        // recovery scan reads ahead past a tail it then cuts); the segment's size is the truth.
        self.file
            .write_all_at(batch, self.size_bytes)
            .map_err(|error| StorageError::io("append", &self.log_path, error))?;
        self.first_append_ms.get_or_insert(now_ms);
        self.indexer
            .add(&header, &mut self.offset_index, &mut self.time_index)?;
        self.size_bytes += header.total_bytes;
        self.next_offset = header.last_offset + 1;
        Ok(())
    }

    /// The `.log` file and its path, for an fsync run without the log's lock.
    pub fn shared_file(&self) -> (Arc<File>, PathBuf) {
        (Arc::clone(&self.file), self.log_path.clone())
    }

    /// Forces the `.log` to disk. The indexes are not synced here: recovery rebuilds or
    /// tail-checks them from the log, so an fsync per append pays for the log alone. They
    /// are synced when the segment seals.
    pub fn flush(&self, syncer: &dyn Syncer) -> Result<()> {
        syncer
            .sync_data(&self.file)
            .map_err(|error| StorageError::io("fsync", &self.log_path, error))
    }

    /// Flushes the segment and trims its indexes; the result is read-only.
    pub fn seal(self, syncer: &dyn Syncer) -> Result<SealedSegment> {
        self.flush(syncer)?;
        self.seal_unflushed()
    }

    /// Trims the indexes without forcing the log to disk: the owner flushes the `.log` later
    /// (through [`ActiveSegment::shared_file`], taken before).
    pub fn seal_unflushed(mut self) -> Result<SealedSegment> {
        self.indexer.push_time_entry(&mut self.time_index)?;
        let offset_index = self.offset_index.seal()?;
        let time_index = self.time_index.seal()?;
        Ok(SealedSegment::sealed_now(
            self.base_offset,
            self.next_offset,
            self.size_bytes,
            self.log_path,
            offset_index,
            time_index,
        ))
    }
}
