//! The aborted-transactions index (Kafka's `TransactionIndex`): one entry per aborted
//! transaction, in the `.txnindex` file of the segment holding its ABORT marker, so a
//! read_committed reader learns which producers' records in its range to drop.
//!
//! Entry (34 bytes, big-endian, Kafka's format): version (i16, 0), producer id, first offset,
//! last offset (the marker's), last stable offset once it ended. Every segment has a file
//! (empty when nothing aborted there), so a missing one is known to be lost.
//!
//! Derived data: the log holds every marker. Entries reach their file when the marker is
//! appended and are fsynced before the checkpoint that covers them is written, so at open the
//! entries below the checkpoint's producer snapshot offset are trusted and those above are
//! replayed from the log with the producer state; a missing or damaged file makes the whole
//! index (and the producer state) be rebuilt from the log start.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::{Result, StorageError};
use crate::files::{Syncer, TXN_INDEX_SUFFIX, segment_path};
use crate::producers::CompletedTxn;

pub const ENTRY_BYTES: usize = 34;
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub(crate) fn from_completed(completed: &CompletedTxn) -> Self {
        AbortedTxn {
            producer_id: completed.producer_id,
            first_offset: completed.first_offset,
            last_offset: completed.last_offset,
            last_stable_offset: completed.last_stable_offset,
        }
    }

    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut out = [0u8; ENTRY_BYTES];
        out[0..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let i64_at = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let version = i16::from_be_bytes(bytes.get(0..2)?.try_into().ok()?);
        (version == ENTRY_VERSION).then_some(())?;
        Some(AbortedTxn {
            producer_id: i64_at(2)?,
            first_offset: i64_at(10)?,
            last_offset: i64_at(18)?,
            last_stable_offset: i64_at(26)?,
        })
    }
}

/// What loading found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// Every file below the trusted offset was present and sane.
    Trusted,
    /// A file was missing or damaged: rebuild everything from the log.
    Rebuild,
}

/// The log's aborted transactions, ascending by marker offset (markers are appended in
/// offset order), and which segment files hold entries not fsynced yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TxnIndex {
    entries: Vec<AbortedTxn>,
    unsynced: BTreeSet<i64>,
}

/// Creates (or empties) a segment's file.
pub(crate) fn create_file(dir: &Path, base_offset: i64) -> Result<()> {
    let path = segment_path(dir, base_offset, TXN_INDEX_SUFFIX);
    File::create(&path).map_err(|error| StorageError::io("create", &path, error))?;
    Ok(())
}

fn set_file_len(dir: &Path, base_offset: i64, entries: usize) -> Result<()> {
    let path = segment_path(dir, base_offset, TXN_INDEX_SUFFIX);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| StorageError::io("open", &path, error))?;
    file.set_len((entries * ENTRY_BYTES) as u64)
        .map_err(|error| StorageError::io("truncate", &path, error))
}

/// Writes `entries` as a segment's whole file (a cleaned segment's, before its swap), synced.
pub(crate) fn write_file(path: &Path, entries: &[AbortedTxn], syncer: &dyn Syncer) -> Result<()> {
    let mut file = File::create(path).map_err(|error| StorageError::io("create", path, error))?;
    let bytes: Vec<u8> = entries.iter().flat_map(AbortedTxn::encode).collect();
    file.write_all(&bytes)
        .map_err(|error| StorageError::io("write", path, error))?;
    syncer
        .sync_data(&file)
        .map_err(|error| StorageError::io("fsync", path, error))
}

impl TxnIndex {
    /// Loads the files of the segments `(base, next base)` (ascending). Entries whose marker
    /// is at or past `trusted_below` (the producer snapshot offset) are dropped from memory
    /// and file: the replay writes them again.
    pub(crate) fn load(
        dir: &Path,
        segments: &[(i64, i64)],
        trusted_below: i64,
    ) -> Result<(Self, Loaded)> {
        let mut index = TxnIndex::default();
        for &(base, next) in segments {
            let path = segment_path(dir, base, TXN_INDEX_SUFFIX);
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    if base < trusted_below {
                        tracing::warn!(log = %dir.display(), segment = base, "transaction index missing; rebuilding from the log");
                        return Ok((TxnIndex::default(), Loaded::Rebuild));
                    }
                    create_file(dir, base)?;
                    continue;
                }
                Err(error) => return Err(StorageError::io("read", &path, error)),
            };
            let mut kept = 0;
            let sane = bytes.len() % ENTRY_BYTES == 0
                && bytes.chunks(ENTRY_BYTES).all(|chunk| {
                    let Some(entry) = AbortedTxn::decode(chunk) else {
                        return false;
                    };
                    let in_order = index
                        .entries
                        .last()
                        .is_none_or(|last| last.last_offset < entry.last_offset);
                    let fits = entry.last_offset >= base
                        && entry.last_offset < next
                        && entry.first_offset <= entry.last_offset;
                    if in_order && fits && entry.last_offset < trusted_below {
                        index.entries.push(entry);
                        kept += 1;
                    }
                    in_order && fits
                });
            if !sane {
                tracing::warn!(log = %dir.display(), segment = base, "transaction index damaged; rebuilding from the log");
                return Ok((TxnIndex::default(), Loaded::Rebuild));
            }
            if kept * ENTRY_BYTES != bytes.len() {
                set_file_len(dir, base, kept)?;
                index.unsynced.insert(base);
            }
        }
        Ok((index, Loaded::Trusted))
    }

    /// Empties every segment's file before a rebuild.
    pub(crate) fn reset_files(&mut self, dir: &Path, bases: &[i64]) -> Result<()> {
        self.entries.clear();
        for &base in bases {
            create_file(dir, base)?;
            self.unsynced.insert(base);
        }
        Ok(())
    }

    /// Adds an aborted transaction whose marker is in the segment at `segment_base`.
    pub(crate) fn append(
        &mut self,
        dir: &Path,
        segment_base: i64,
        entry: AbortedTxn,
    ) -> Result<()> {
        let path = segment_path(dir, segment_base, TXN_INDEX_SUFFIX);
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|error| StorageError::io("open", &path, error))?;
        file.write_all(&entry.encode())
            .map_err(|error| StorageError::io("write", &path, error))?;
        self.entries.push(entry);
        self.unsynced.insert(segment_base);
        Ok(())
    }

    /// Fsyncs the files written since the last call (before a checkpoint covers them).
    pub(crate) fn sync(&mut self, dir: &Path, syncer: &dyn Syncer) -> Result<()> {
        while let Some(&base) = self.unsynced.first() {
            let path = segment_path(dir, base, TXN_INDEX_SUFFIX);
            match File::open(&path) {
                Ok(file) => syncer
                    .sync_data(&file)
                    .map_err(|error| StorageError::io("fsync", &path, error))?,
                // Its segment was deleted meanwhile.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(StorageError::io("open", &path, error)),
            }
            self.unsynced.remove(&base);
        }
        Ok(())
    }

    /// The log was truncated at `offset`, now inside the segment at `segment_base`: later
    /// segments (and their files) are gone; that segment's file keeps its earlier entries.
    pub(crate) fn truncate_from(
        &mut self,
        dir: &Path,
        offset: i64,
        segment_base: i64,
    ) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.last_offset < offset);
        if before != self.entries.len() {
            let kept = self
                .entries
                .iter()
                .filter(|entry| entry.last_offset >= segment_base)
                .count();
            set_file_len(dir, segment_base, kept)?;
            self.unsynced.insert(segment_base);
        }
        self.unsynced.retain(|&base| base <= segment_base);
        Ok(())
    }

    /// Segments below `first_base` were deleted (with their files).
    pub(crate) fn remove_below(&mut self, first_base: i64) {
        self.entries.retain(|entry| entry.last_offset >= first_base);
        self.unsynced.retain(|&base| base >= first_base);
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.unsynced.clear();
    }

    /// A cleaned segment replaced the segments of `[from, to)`: its entries are `entries`.
    pub(crate) fn replace_range(&mut self, from: i64, to: i64, entries: &[AbortedTxn]) {
        let start = self
            .entries
            .partition_point(|entry| entry.last_offset < from);
        let end = self.entries.partition_point(|entry| entry.last_offset < to);
        self.entries.splice(start..end, entries.iter().copied());
    }

    /// Entries whose marker lies in `[from, to)`.
    pub(crate) fn in_range(&self, from: i64, to: i64) -> &[AbortedTxn] {
        let start = self
            .entries
            .partition_point(|entry| entry.last_offset < from);
        let end = self.entries.partition_point(|entry| entry.last_offset < to);
        &self.entries[start..end]
    }

    /// Kafka's `collectAbortedTransactions`: the aborted transactions that overlap
    /// `[fetch_offset, upper_bound)` (marker at or after the fetch offset, first record before
    /// the bound). Stops at the first entry whose last stable offset reaches the bound: every
    /// later aborted transaction started at or after it.
    pub(crate) fn collect(&self, fetch_offset: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        let start = self
            .entries
            .partition_point(|entry| entry.last_offset < fetch_offset);
        let mut out = Vec::new();
        for entry in &self.entries[start..] {
            if entry.first_offset < upper_bound {
                out.push(*entry);
            }
            if entry.last_stable_offset >= upper_bound {
                break;
            }
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::OsSyncer;

    fn entry(producer_id: i64, first_offset: i64, last_offset: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn files_round_trip_and_untrusted_entries_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        create_file(dir.path(), 0).unwrap();
        create_file(dir.path(), 100).unwrap();
        let mut index = TxnIndex::default();
        index.append(dir.path(), 0, entry(1, 5, 10, 11)).unwrap();
        index
            .append(dir.path(), 100, entry(2, 90, 120, 121))
            .unwrap();
        index
            .append(dir.path(), 100, entry(3, 125, 130, 131))
            .unwrap();
        index.sync(dir.path(), &OsSyncer).unwrap();
        let segments = [(0, 100), (100, 200)];
        let (loaded, verdict) = TxnIndex::load(dir.path(), &segments, 200).unwrap();
        assert_eq!(verdict, Loaded::Trusted);
        assert_eq!(loaded.entries, index.entries);
        let (loaded, _) = TxnIndex::load(dir.path(), &segments, 125).unwrap();
        assert_eq!(
            loaded.len(),
            2,
            "the entry past the snapshot is replayed, not trusted"
        );
        let (reloaded, _) = TxnIndex::load(dir.path(), &segments, 200).unwrap();
        assert_eq!(reloaded.entries, loaded.entries, "and cut from its file");
    }

    #[test]
    fn a_missing_or_damaged_file_asks_for_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        create_file(dir.path(), 0).unwrap();
        let segments = [(0, 100), (100, 200)];
        let (_, verdict) = TxnIndex::load(dir.path(), &segments, 150).unwrap();
        assert_eq!(verdict, Loaded::Rebuild, "segment 100's file is missing");
        let (_, verdict) = TxnIndex::load(dir.path(), &segments, 100).unwrap();
        assert_eq!(
            verdict,
            Loaded::Trusted,
            "past the snapshot it is only created"
        );
        fs::write(segment_path(dir.path(), 0, TXN_INDEX_SUFFIX), [0u8; 7]).unwrap();
        let (_, verdict) = TxnIndex::load(dir.path(), &segments, 100).unwrap();
        assert_eq!(verdict, Loaded::Rebuild);
        let mut out_of_range = TxnIndex::default();
        create_file(dir.path(), 0).unwrap();
        out_of_range
            .append(dir.path(), 0, entry(1, 0, 150, 151))
            .unwrap();
        let (_, verdict) = TxnIndex::load(dir.path(), &segments, 200).unwrap();
        assert_eq!(verdict, Loaded::Rebuild, "a marker outside its segment");
    }

    #[test]
    fn collect_finds_overlapping_aborts_and_stops_at_the_bound() {
        let index = TxnIndex {
            entries: vec![
                entry(1, 0, 10, 5),
                entry(2, 5, 20, 21),
                entry(3, 30, 40, 41),
            ],
            unsynced: BTreeSet::new(),
        };
        let ids = |found: Vec<AbortedTxn>| found.iter().map(|e| e.producer_id).collect::<Vec<_>>();
        assert_eq!(ids(index.collect(0, 8)), [1, 2]);
        assert_eq!(ids(index.collect(11, 25)), [2]);
        assert_eq!(ids(index.collect(11, 50)), [2, 3]);
        assert_eq!(ids(index.collect(41, 50)), Vec::<i64>::new());
    }

    #[test]
    fn truncation_keeps_earlier_entries_of_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        create_file(dir.path(), 0).unwrap();
        let mut index = TxnIndex::default();
        index.append(dir.path(), 0, entry(1, 0, 10, 11)).unwrap();
        index.append(dir.path(), 0, entry(1, 12, 20, 21)).unwrap();
        index.truncate_from(dir.path(), 15, 0).unwrap();
        assert_eq!(index.len(), 1);
        let (loaded, _) = TxnIndex::load(dir.path(), &[(0, 100)], 100).unwrap();
        assert_eq!(loaded.entries, index.entries);
    }
}
