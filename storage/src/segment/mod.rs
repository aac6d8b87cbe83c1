//! A segment is one `.log` file plus its `.index` and `.timeindex`, covering a contiguous
//! range of offsets that starts at the base offset in its name. The active segment takes
//! appends; sealed segments are read-only, and their indexes load on first use.

mod active;
mod sealed;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

pub(crate) use active::{ActiveSegment, Indexer};
pub(crate) use sealed::SealedSegment;

use crate::error::Result;
use crate::index::{OffsetIndex, TimeIndex};
use crate::scan::{BatchHeader, read_header_at};

/// A byte range of a segment file: what a read returns so the network layer can send it
/// with `sendfile` (or copy it when TLS is in the way). The `Arc` keeps the file readable
/// even if retention deletes the segment meanwhile.
#[derive(Debug, Clone)]
pub struct FileRegion {
    pub file: Arc<File>,
    pub position: u64,
    pub length: u64,
}

impl FileRegion {
    /// Copies the region into memory (TLS, tests, replication to an in-memory buffer).
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let length = usize::try_from(self.length).map_err(io::Error::other)?;
        let mut bytes = vec![0u8; length];
        self.file.read_exact_at(&mut bytes, self.position)?;
        Ok(bytes)
    }
}

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadWindow {
    /// Batches whose last offset is at or beyond this are not returned.
    pub end_offset: i64,
    pub max_bytes: u64,
    /// Return the first batch whole even when it alone exceeds `max_bytes` (KIP-74), so a
    /// consumer can always make progress.
    pub first_batch_whole: bool,
    /// At and above this offset every offset holds one record and batches are contiguous;
    /// below it compaction (here or on a leader) may have left offsets without records.
    pub offsets_are_records_from: i64,
}

/// Walks batch headers from `position` to the first batch whose last offset reaches
/// `target_offset`. `None` when the segment ends first.
pub(crate) fn find_batch(
    file: &File,
    path: &Path,
    size_bytes: u64,
    mut position: u64,
    target_offset: i64,
) -> Result<Option<BatchHeader>> {
    while let Some(header) = read_header_at(file, path, position, size_bytes)? {
        if header.last_offset >= target_offset {
            return Ok(Some(header));
        }
        position = header.end_position();
    }
    Ok(None)
}

/// From the batch `first`, extends the region over following batches within `window`; with
/// the number of records in it. The offset index jumps over the whole batches that surely fit
/// (one entry per `index.interval.bytes`); only the last few batch headers are read. Records
/// are counted from the headers read plus the offsets jumped over, so the jump is taken only
/// from `window.offsets_are_records_from` on (below it the headers are read one by one: a
/// compacted region has offsets without records). `None` when not even the first batch fits.
pub(crate) fn region_from(
    view: &SegmentView<'_>,
    first: BatchHeader,
    window: ReadWindow,
) -> Result<Option<Region>> {
    if first.last_offset >= window.end_offset {
        return Ok(None);
    }
    if first.total_bytes > window.max_bytes && !window.first_batch_whole {
        return Ok(None);
    }
    let mut end = first.end_position();
    let mut records = u64::from(first.records_count);
    let mut last_offset = first.last_offset;
    let limit = first.position.saturating_add(window.max_bytes);
    let mut jumped = false;
    loop {
        // Every batch before the indexed one starting within the byte limit (and at or below
        // the offset bound) fits: they end where it starts. Their records are the offsets in
        // between once no offset there can be without a record.
        if !jumped && last_offset + 1 >= window.offsets_are_records_from {
            jumped = true;
            if let Some((position, base_offset)) =
                view.indexed_batch_before(limit, window.end_offset)
                && position > end
                && position < view.size_bytes
            {
                records += u64::try_from(base_offset - last_offset - 1).unwrap_or(0);
                end = position;
                last_offset = base_offset - 1;
            }
        }
        let Some(next) = read_header_at(view.file, view.path, end, view.size_bytes)? else {
            break;
        };
        if next.last_offset >= window.end_offset
            || next.end_position() - first.position > window.max_bytes
        {
            break;
        }
        end = next.end_position();
        last_offset = next.last_offset;
        records += u64::from(next.records_count);
    }
    let region = FileRegion {
        file: Arc::clone(view.file),
        position: first.position,
        length: end - first.position,
    };
    Ok(Some(Region {
        region,
        records,
        last_offset,
    }))
}

/// What [`region_from`] found: the bytes, the records in them and the last offset they cover.
#[derive(Debug)]
pub(crate) struct Region {
    pub region: FileRegion,
    pub records: u64,
    pub last_offset: i64,
}

/// A segment's file and indexes, borrowed for one lookup; active and sealed segments both
/// read through it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentView<'a> {
    pub file: &'a Arc<File>,
    pub path: &'a Path,
    pub size_bytes: u64,
    pub base_offset: i64,
    pub offset_index: &'a OffsetIndex,
    pub time_index: &'a TimeIndex,
}

impl SegmentView<'_> {
    /// Position of the last indexed batch starting at or before `offset`.
    pub fn indexed_position(&self, offset: i64) -> u64 {
        let relative = u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        self.offset_index
            .lookup(relative)
            .map_or(0, |entry| u64::from(entry.position))
    }

    /// The last indexed batch starting at or before byte `position` whose base offset is at
    /// or below `end_offset`: its position and base offset.
    pub fn indexed_batch_before(&self, position: u64, end_offset: i64) -> Option<(u64, i64)> {
        let by_position = self.offset_index.floor_by_position(position)?;
        let relative_end =
            u32::try_from((end_offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        let by_offset = self.offset_index.floor_by_offset(relative_end)?;
        let entry = self.offset_index.entry(by_position.min(by_offset));
        let base_offset = self.base_offset + i64::from(entry.relative_offset);
        (base_offset <= end_offset).then_some((u64::from(entry.position), base_offset))
    }

    /// The batch holding `offset` (or the first after it), through the sparse index.
    pub fn find(&self, offset: i64) -> Result<Option<BatchHeader>> {
        let position = self.indexed_position(offset);
        find_batch(self.file, self.path, self.size_bytes, position, offset)
    }

    /// Headers of every batch from the one holding `offset` to the end of the segment.
    pub fn headers_from(&self, offset: i64) -> Result<Vec<BatchHeader>> {
        let mut headers = Vec::new();
        let mut next = self.find(offset)?;
        while let Some(header) = next {
            headers.push(header);
            next = read_header_at(self.file, self.path, header.end_position(), self.size_bytes)?;
        }
        Ok(headers)
    }

    /// The first batch at or after `min_offset` whose max timestamp reaches `timestamp_ms`.
    pub fn find_by_timestamp(
        &self,
        timestamp_ms: i64,
        min_offset: i64,
    ) -> Result<Option<BatchHeader>> {
        let indexed = self
            .time_index
            .lookup_before(timestamp_ms)
            .map_or(self.base_offset, |entry| {
                self.base_offset + i64::from(entry.relative_offset)
            });
        let start_offset = indexed.max(min_offset);
        let mut position = self.indexed_position(start_offset);
        while let Some(header) = read_header_at(self.file, self.path, position, self.size_bytes)? {
            if header.last_offset >= min_offset && header.max_timestamp_ms >= timestamp_ms {
                return Ok(Some(header));
            }
            position = header.end_position();
        }
        Ok(None)
    }

    /// Whether the index entry used for `offset` points at a batch starting at the offset it
    /// claims; a sealed index that fails this is rebuilt.
    pub fn index_agrees_at(&self, offset: i64) -> Result<bool> {
        let relative = u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        let Some(entry) = self.offset_index.lookup(relative) else {
            return Ok(true);
        };
        let header = read_header_at(
            self.file,
            self.path,
            u64::from(entry.position),
            self.size_bytes,
        )?;
        Ok(header.is_some_and(|header| {
            header.base_offset == self.base_offset + i64::from(entry.relative_offset)
        }))
    }
}
