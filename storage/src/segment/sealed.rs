use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::SegmentView;
use crate::error::{Result, StorageError};
use crate::files::{
    FileCache, LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, remove_if_exists, segment_path,
};
use crate::index::{OffsetIndex, TimeIndex};
use crate::scan::{Verify, scan_segment};

use super::active::Indexer;

#[derive(Debug)]
struct SealedIndexes {
    offset_index: OffsetIndex,
    time_index: TimeIndex,
}

/// A read-only segment. Opening a log does not touch its indexes; they are mapped on first
/// lookup, checked, and rebuilt from the `.log` when missing or wrong.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub base_offset: i64,
    next_offset: i64,
    size_bytes: u64,
    log_path: PathBuf,
    indexes: Mutex<Option<Arc<SealedIndexes>>>,
}

/// How [`SealedSegment::indexes`] gets a sealed segment's indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexLoad {
    /// The loaded ones, else the files when they pass their sanity check, else rebuilt.
    Trusted,
    /// Rebuilt from the `.log` (the loaded ones disagreed with it).
    Rebuild,
}

impl SealedSegment {
    pub fn sealed_now(
        base_offset: i64,
        next_offset: i64,
        size_bytes: u64,
        log_path: PathBuf,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Self {
        SealedSegment {
            base_offset,
            next_offset,
            size_bytes,
            log_path,
            indexes: Mutex::new(Some(Arc::new(SealedIndexes {
                offset_index,
                time_index,
            }))),
        }
    }

    /// A sealed segment found on disk below the recovery point; `next_offset` is the base of
    /// the segment after it.
    pub fn open_lazy(dir: &Path, base_offset: i64, next_offset: i64) -> Result<Self> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let size_bytes = fs::metadata(&log_path)
            .map_err(|error| StorageError::io("stat", &log_path, error))?
            .len();
        Ok(SealedSegment {
            base_offset,
            next_offset,
            size_bytes,
            log_path,
            indexes: Mutex::new(None),
        })
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Runs `lookup` over this segment's file and indexes, rebuilding the offset index once
    /// if it points somewhere that is not the batch it names.
    pub fn with_view<T>(
        &self,
        files: &FileCache,
        index_interval_bytes: u64,
        at_offset: i64,
        lookup: impl FnOnce(SegmentView<'_>) -> Result<T>,
    ) -> Result<T> {
        let file = files.get(&self.log_path)?;
        let mut indexes = self.indexes(index_interval_bytes, IndexLoad::Trusted)?;
        let mut view = self.view(&file, &indexes);
        if !view.index_agrees_at(at_offset)? {
            tracing::warn!(segment = %self.log_path.display(), "offset index disagrees with the log; rebuilding it");
            indexes = self.indexes(index_interval_bytes, IndexLoad::Rebuild)?;
            view = self.view(&file, &indexes);
        }
        lookup(view)
    }

    fn view<'a>(&'a self, file: &'a Arc<fs::File>, indexes: &'a SealedIndexes) -> SegmentView<'a> {
        SegmentView {
            file,
            path: &self.log_path,
            size_bytes: self.size_bytes,
            base_offset: self.base_offset,
            offset_index: &indexes.offset_index,
            time_index: &indexes.time_index,
        }
    }

    /// Largest batch timestamp in the segment, from the time index's last entry.
    pub fn max_timestamp(&self, index_interval_bytes: u64) -> Result<Option<i64>> {
        let indexes = self.indexes(index_interval_bytes, IndexLoad::Trusted)?;
        Ok(indexes.time_index.last().map(|entry| entry.timestamp_ms))
    }

    /// File modification time, Kafka's fallback age for segments without timestamps.
    pub fn modified_ms(&self) -> Result<i64> {
        let modified = fs::metadata(&self.log_path)
            .and_then(|metadata| metadata.modified())
            .map_err(|error| StorageError::io("stat", &self.log_path, error))?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            }))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<SealedIndexes>>> {
        self.indexes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn indexes(&self, index_interval_bytes: u64, load: IndexLoad) -> Result<Arc<SealedIndexes>> {
        let mut slot = self.lock();
        if load == IndexLoad::Trusted
            && let Some(indexes) = slot.as_ref()
        {
            return Ok(Arc::clone(indexes));
        }
        let dir = self.log_path.parent().unwrap_or(Path::new("."));
        let offset_path = segment_path(dir, self.base_offset, OFFSET_INDEX_SUFFIX);
        let time_path = segment_path(dir, self.base_offset, TIME_INDEX_SUFFIX);
        let span = (self.next_offset - self.base_offset).max(0) as u64;
        let loaded = if load == IndexLoad::Rebuild {
            None
        } else {
            match (
                OffsetIndex::open_sealed(&offset_path, self.size_bytes, span)?,
                TimeIndex::open_sealed(&time_path, span)?,
            ) {
                (Some(offset_index), Some(time_index)) => Some(SealedIndexes {
                    offset_index,
                    time_index,
                }),
                _ => None,
            }
        };
        let indexes = match loaded {
            Some(indexes) => indexes,
            None => self.rebuild(&offset_path, &time_path, index_interval_bytes)?,
        };
        let indexes = Arc::new(indexes);
        *slot = Some(Arc::clone(&indexes));
        Ok(indexes)
    }

    /// Writes both indexes anew from the `.log` into temporary files renamed into place.
    fn rebuild(
        &self,
        offset_path: &Path,
        time_path: &Path,
        index_interval_bytes: u64,
    ) -> Result<SealedIndexes> {
        tracing::info!(segment = %self.log_path.display(), "rebuilding sealed segment indexes");
        let offset_temporary = offset_path.with_extension("index.rebuild.tmp");
        let time_temporary = time_path.with_extension("timeindex.rebuild.tmp");
        // A sealed segment has at most one entry per batch; batches are at least 61 bytes.
        let capacity_entries = self.size_bytes / 61 + 2;
        let mut offset_index = OffsetIndex::create(&offset_temporary, capacity_entries * 8)?;
        let mut time_index = TimeIndex::create(&time_temporary, capacity_entries * 12)?;
        let mut indexer = Indexer::new(self.base_offset, index_interval_bytes);
        let file = fs::File::open(&self.log_path)
            .map_err(|error| StorageError::io("open", &self.log_path, error))?;
        // An index that cannot grow stops the scan; it is an error, not damage.
        let mut index_error = None;
        let (_, damage) = scan_segment(
            &file,
            &self.log_path,
            self.size_bytes,
            0,
            Verify::HeaderOnly,
            |header| {
                indexer
                    .add(header, &mut offset_index, &mut time_index)
                    .map_err(|error| {
                        let reason = error.to_string();
                        index_error = Some(error);
                        reason
                    })
            },
        )?;
        if let Some(error) = index_error {
            return Err(error);
        }
        if let Some(damage) = damage {
            tracing::error!(segment = %self.log_path.display(), position = damage.position, reason = %damage.reason,
                "sealed segment is damaged below the recovery point; indexing its valid prefix");
        }
        indexer.push_time_entry(&mut time_index)?;
        let offset_index = offset_index.seal()?;
        let time_index = time_index.seal()?;
        fs::rename(&offset_temporary, offset_path)
            .map_err(|error| StorageError::io("rename", offset_path, error))?;
        fs::rename(&time_temporary, time_path)
            .map_err(|error| StorageError::io("rename", time_path, error))?;
        Ok(SealedIndexes {
            offset_index,
            time_index,
        })
    }

    /// Removes the segment's files; readers holding its `.log` keep reading until they drop it.
    pub fn delete(&self, files: &FileCache) -> Result<()> {
        files.forget(&self.log_path);
        let dir = self.log_path.parent().unwrap_or(Path::new("."));
        remove_if_exists(&self.log_path)?;
        remove_if_exists(&segment_path(dir, self.base_offset, OFFSET_INDEX_SUFFIX))?;
        remove_if_exists(&segment_path(dir, self.base_offset, TIME_INDEX_SUFFIX))?;
        remove_if_exists(&segment_path(
            dir,
            self.base_offset,
            crate::files::TXN_INDEX_SUFFIX,
        ))
    }
}
