//! Sparse, memory-mapped segment indexes.
//!
//! A writable index file has a capacity (what a full segment can use, at most
//! `segment.index.bytes`) but holds disk only as its entries need it: it is allocated for real
//! (`fallocate`) in steps as it fills, each step mapped only once allocated, and trimmed to its
//! entries when the segment seals. The `.log` is the truth: an index that fails its sanity
//! check is rebuilt from the log, never repaired in place.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::error::{Result, StorageError};

/// Offset index entry: offset relative to the segment base (u32), file position (u32).
pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
/// Time index entry: timestamp (i64), offset relative to the segment base (u32).
pub(crate) const TIME_ENTRY_BYTES: usize = 12;
/// A writable index's first allocation, and the least it grows by: an idle partition holds
/// this much per index, not the megabytes a full 1 GiB segment's index can use.
pub(crate) const INDEX_GROWTH_BYTES_MIN: usize = 4 * 1024;
/// The most a writable index grows by at once (it doubles up to this step), so one growth
/// allocates a bounded amount of disk inside an append.
pub(crate) const INDEX_GROWTH_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug)]
enum Mapping {
    Writable { file: File, map: MmapMut },
    ReadOnly(Mmap),
    Empty,
}

/// The fixed-size-entry file both indexes are made of.
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    entry_bytes: usize,
    entries: usize,
    capacity_entries: usize,
    /// Entries the file is allocated and mapped for: at least `entries`, at most
    /// `capacity_entries`; a push past it grows the file first.
    allocated_entries: usize,
    mapping: Mapping,
}

impl IndexFile {
    /// A new empty index of `capacity_bytes` (rounded down to whole entries), replacing any
    /// file; its first step allocated.
    fn create(path: &Path, entry_bytes: usize, capacity_bytes: u64) -> Result<Self> {
        let capacity_entries = usize::try_from(capacity_bytes).unwrap_or(usize::MAX) / entry_bytes;
        let allocated_entries = grown_entries(0, entry_bytes, capacity_entries);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|error| StorageError::io("create index", path, error))?;
        allocate(&file, path, (allocated_entries * entry_bytes) as u64)?;
        let mapping = map_writable(path, file)?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            entry_bytes,
            entries: 0,
            capacity_entries,
            allocated_entries,
            mapping,
        })
    }

    /// An existing trimmed index, mapped read-only. `None` when the file is missing or its
    /// length is not a whole number of entries.
    fn open_sealed(path: &Path, entry_bytes: usize) -> Result<Option<Self>> {
        let Some((file, length)) = open_existing(path)? else {
            return Ok(None);
        };
        if length % entry_bytes != 0 {
            return Ok(None);
        }
        let entries = length / entry_bytes;
        let mapping = if entries == 0 {
            Mapping::Empty
        } else {
            map_read_only(path, &file)?
        };
        Ok(Some(IndexFile {
            path: path.to_path_buf(),
            entry_bytes,
            entries,
            capacity_entries: entries,
            allocated_entries: entries,
            mapping,
        }))
    }

    /// An existing trimmed index, writable again up to `capacity_bytes`: one growth step past
    /// its entries is allocated.
    fn open_writable(path: &Path, entry_bytes: usize, capacity_bytes: u64) -> Result<Option<Self>> {
        let Some((_, length)) = open_existing(path)? else {
            return Ok(None);
        };
        if length % entry_bytes != 0 {
            return Ok(None);
        }
        let entries = length / entry_bytes;
        let capacity_entries =
            (usize::try_from(capacity_bytes).unwrap_or(usize::MAX) / entry_bytes).max(entries);
        let allocated_entries = grown_entries(entries, entry_bytes, capacity_entries);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|error| StorageError::io("open index", path, error))?;
        allocate(&file, path, (allocated_entries * entry_bytes) as u64)?;
        let mapping = map_writable(path, file)?;
        Ok(Some(IndexFile {
            path: path.to_path_buf(),
            entry_bytes,
            entries,
            capacity_entries,
            allocated_entries,
            mapping,
        }))
    }

    fn entry(&self, index: usize) -> &[u8] {
        let start = index * self.entry_bytes;
        let bytes: &[u8] = match &self.mapping {
            Mapping::Writable { map, .. } => map,
            Mapping::ReadOnly(map) => map,
            Mapping::Empty => &[],
        };
        &bytes[start..start + self.entry_bytes]
    }

    fn is_full(&self) -> bool {
        self.entries >= self.capacity_entries
    }

    /// Callers check [`IndexFile::is_full`] first; a full index rolls the segment. Grows the
    /// file first when its allocation is used up: an error (a full disk) leaves the index as
    /// it was, and the caller poisons the log.
    fn push(&mut self, entry: &[u8]) -> Result<()> {
        debug_assert_eq!(entry.len(), self.entry_bytes);
        if self.entries >= self.capacity_entries {
            return Ok(());
        }
        if self.entries >= self.allocated_entries {
            self.grow()?;
        }
        if let Mapping::Writable { map, .. } = &mut self.mapping {
            let start = self.entries * self.entry_bytes;
            map[start..start + self.entry_bytes].copy_from_slice(entry);
            self.entries += 1;
        }
        Ok(())
    }

    /// Allocates the next step (blocks reserved before they are mapped, so a full disk fails
    /// here instead of a SIGBUS at a write to a hole) and maps the grown file. The old
    /// mapping stays in place until the new one exists.
    fn grow(&mut self) -> Result<()> {
        let Mapping::Writable { file, map } = &mut self.mapping else {
            return Err(StorageError::io(
                "grow index",
                &self.path,
                std::io::Error::other("the index is not writable"),
            ));
        };
        let allocated_entries = grown_entries(
            self.allocated_entries,
            self.entry_bytes,
            self.capacity_entries,
        );
        allocate(
            file,
            &self.path,
            (allocated_entries * self.entry_bytes) as u64,
        )?;
        *map = map_mut(&self.path, file)?;
        self.allocated_entries = allocated_entries;
        Ok(())
    }

    /// Cuts the file to its entries and maps it read-only: the sealed form.
    fn seal(self) -> Result<Self> {
        let IndexFile {
            path,
            entry_bytes,
            entries,
            mapping,
            ..
        } = self;
        if let Mapping::Writable { file, map } = mapping {
            map.flush()
                .map_err(|error| StorageError::io("flush index", &path, error))?;
            drop(map);
            file.set_len((entries * entry_bytes) as u64)
                .map_err(|error| StorageError::io("trim index", &path, error))?;
            file.sync_all()
                .map_err(|error| StorageError::io("fsync index", &path, error))?;
        }
        match Self::open_sealed(&path, entry_bytes)? {
            Some(sealed) => Ok(sealed),
            None => Err(StorageError::io(
                "reopen sealed index",
                &path,
                std::io::Error::other("index length changed while sealing"),
            )),
        }
    }
}

/// The entries a writable index is allocated for once it grows from `allocated_entries`:
/// doubling, by at least [`INDEX_GROWTH_BYTES_MIN`] and at most [`INDEX_GROWTH_BYTES_MAX`] at a
/// time (at least one entry), never past `capacity_entries`.
fn grown_entries(allocated_entries: usize, entry_bytes: usize, capacity_entries: usize) -> usize {
    let step_bytes = allocated_entries
        .saturating_mul(entry_bytes)
        .clamp(INDEX_GROWTH_BYTES_MIN, INDEX_GROWTH_BYTES_MAX);
    allocated_entries
        .saturating_add((step_bytes / entry_bytes).max(1))
        .min(capacity_entries)
}

/// Sizes a writable index to `bytes` with its blocks allocated (`fallocate`), so a full disk
/// fails here with an error: a sparse file would be mapped fine and then kill the process
/// with SIGBUS at the first write to a page the filesystem cannot back. Filesystems without
/// `fallocate` get a sparse file, as before.
fn allocate(file: &File, path: &Path, bytes: u64) -> Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{FallocateFlags, fallocate};
    let length = i64::try_from(bytes).map_err(|_| {
        StorageError::io("size index", path, std::io::Error::other("index too large"))
    })?;
    if length > 0 {
        match fallocate(file, FallocateFlags::empty(), 0, length) {
            Ok(()) => {}
            Err(Errno::EOPNOTSUPP) => {}
            Err(errno) => {
                return Err(StorageError::io(
                    "allocate index",
                    path,
                    std::io::Error::from(errno),
                ));
            }
        }
    }
    // Shrinks a file longer than `bytes` (fallocate only grows), and sizes the sparse one.
    file.set_len(bytes)
        .map_err(|error| StorageError::io("size index", path, error))
}

fn open_existing(path: &Path) -> Result<Option<(File, usize)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io("open index", path, error)),
    };
    let length = file
        .metadata()
        .map_err(|error| StorageError::io("stat index", path, error))?
        .len();
    Ok(Some((file, usize::try_from(length).unwrap_or(usize::MAX))))
}

fn map_writable(path: &Path, file: File) -> Result<Mapping> {
    if file
        .metadata()
        .map_err(|error| StorageError::io("stat index", path, error))?
        .len()
        == 0
    {
        return Ok(Mapping::Empty);
    }
    let map = map_mut(path, &file)?;
    Ok(Mapping::Writable { file, map })
}

#[allow(unsafe_code)]
fn map_mut(path: &Path, file: &File) -> Result<MmapMut> {
    // SAFETY: the index file belongs to this segment alone; it only grows while mapped (the
    // mapping covers a prefix that stays), is shrunk only after the mapping is dropped
    // (`seal`), and no other process writes the data directory.
    unsafe { MmapMut::map_mut(file) }.map_err(|error| StorageError::io("map index", path, error))
}

#[allow(unsafe_code)]
fn map_read_only(path: &Path, file: &File) -> Result<Mapping> {
    // SAFETY: sealed index files are never modified; a rebuild writes a new file under the
    // same name only after this mapping's owner has dropped it.
    let map =
        unsafe { Mmap::map(file) }.map_err(|error| StorageError::io("map index", path, error))?;
    Ok(Mapping::ReadOnly(map))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut out = [0u8; 4];
    out.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(out)
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(out)
}

/// Which keys [`floor_entry`] counts as below its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Floor {
    /// `key <= target`.
    AtOrBelow,
    /// `key < target`.
    StrictlyBelow,
}

/// Binary search: the last entry index whose key is below `target` as `floor` says, given
/// keys sorted ascending.
fn floor_entry(
    entries: usize,
    floor: Floor,
    key: impl Fn(usize) -> i64,
    target: i64,
) -> Option<usize> {
    let (mut low, mut high) = (0usize, entries);
    while low < high {
        let middle = low + (high - low) / 2;
        let below = match floor {
            Floor::AtOrBelow => key(middle) <= target,
            Floor::StrictlyBelow => key(middle) < target,
        };
        if below {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low.checked_sub(1)
}

/// Relative offset → file position of the batch starting there, one entry per
/// `index.interval.bytes` of log.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    file: IndexFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl OffsetIndex {
    pub fn create(path: &Path, capacity_bytes: u64) -> Result<Self> {
        IndexFile::create(path, OFFSET_ENTRY_BYTES, capacity_bytes).map(|file| OffsetIndex { file })
    }

    /// The sealed index if it exists and passes [`OffsetIndex::is_sane`].
    pub fn open_sealed(path: &Path, log_bytes: u64, offset_span: u64) -> Result<Option<Self>> {
        let index =
            IndexFile::open_sealed(path, OFFSET_ENTRY_BYTES)?.map(|file| OffsetIndex { file });
        Ok(index.filter(|index| index.is_sane(log_bytes, offset_span)))
    }

    pub fn open_writable(path: &Path, capacity_bytes: u64, log_bytes: u64) -> Result<Option<Self>> {
        let index = IndexFile::open_writable(path, OFFSET_ENTRY_BYTES, capacity_bytes)?
            .map(|file| OffsetIndex { file });
        Ok(index.filter(|index| index.is_sane(log_bytes, u64::from(u32::MAX) + 1)))
    }

    pub fn len(&self) -> usize {
        self.file.entries
    }
    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }
    pub fn entry(&self, index: usize) -> OffsetEntry {
        let bytes = self.file.entry(index);
        OffsetEntry {
            relative_offset: u32_at(bytes, 0),
            position: u32_at(bytes, 4),
        }
    }
    pub fn last(&self) -> Option<OffsetEntry> {
        self.len().checked_sub(1).map(|index| self.entry(index))
    }

    pub fn push(&mut self, entry: OffsetEntry) -> Result<()> {
        let mut bytes = [0u8; OFFSET_ENTRY_BYTES];
        bytes[..4].copy_from_slice(&entry.relative_offset.to_be_bytes());
        bytes[4..].copy_from_slice(&entry.position.to_be_bytes());
        self.file.push(&bytes)
    }

    /// Index of the last entry whose batch starts at or before byte `position`.
    pub fn floor_by_position(&self, position: u64) -> Option<usize> {
        floor_entry(
            self.len(),
            Floor::AtOrBelow,
            |index| i64::from(self.entry(index).position),
            i64::try_from(position).unwrap_or(i64::MAX),
        )
    }

    /// Index of the last entry whose batch starts at or before `relative_offset`.
    pub fn floor_by_offset(&self, relative_offset: u32) -> Option<usize> {
        floor_entry(
            self.len(),
            Floor::AtOrBelow,
            |index| i64::from(self.entry(index).relative_offset),
            i64::from(relative_offset),
        )
    }

    /// The entry of the last indexed batch starting at or before `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        self.floor_by_offset(relative_offset)
            .map(|index| self.entry(index))
    }

    /// Entries strictly increasing in offset and position, inside the log and offset span.
    pub fn is_sane(&self, log_bytes: u64, offset_span: u64) -> bool {
        let mut previous: Option<OffsetEntry> = None;
        for index in 0..self.len() {
            let entry = self.entry(index);
            if u64::from(entry.position) >= log_bytes
                || u64::from(entry.relative_offset) >= offset_span
            {
                return false;
            }
            if let Some(previous) = previous
                && (entry.relative_offset <= previous.relative_offset
                    || entry.position <= previous.position)
            {
                return false;
            }
            previous = Some(entry);
        }
        true
    }

    pub fn seal(self) -> Result<Self> {
        self.file.seal().map(|file| OffsetIndex { file })
    }
}

/// Timestamp → relative offset: entry `(t, o)` says no batch up to offset `o` has a
/// timestamp above `t`. Appended only when the segment's max timestamp grows.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    file: IndexFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

impl TimeIndex {
    pub fn create(path: &Path, capacity_bytes: u64) -> Result<Self> {
        IndexFile::create(path, TIME_ENTRY_BYTES, capacity_bytes).map(|file| TimeIndex { file })
    }

    pub fn open_sealed(path: &Path, offset_span: u64) -> Result<Option<Self>> {
        let index = IndexFile::open_sealed(path, TIME_ENTRY_BYTES)?.map(|file| TimeIndex { file });
        Ok(index.filter(|index| index.is_sane(offset_span)))
    }

    pub fn open_writable(path: &Path, capacity_bytes: u64) -> Result<Option<Self>> {
        let index = IndexFile::open_writable(path, TIME_ENTRY_BYTES, capacity_bytes)?
            .map(|file| TimeIndex { file });
        Ok(index.filter(|index| index.is_sane(u64::from(u32::MAX) + 1)))
    }

    pub fn len(&self) -> usize {
        self.file.entries
    }
    /// One slot stays free for the entry a segment adds when it seals.
    pub fn is_full(&self) -> bool {
        self.file.entries + 1 >= self.file.capacity_entries
    }
    pub fn entry(&self, index: usize) -> TimeEntry {
        let bytes = self.file.entry(index);
        TimeEntry {
            timestamp_ms: i64_at(bytes, 0),
            relative_offset: u32_at(bytes, 8),
        }
    }
    pub fn last(&self) -> Option<TimeEntry> {
        self.len().checked_sub(1).map(|index| self.entry(index))
    }

    /// Appends when `entry` raises the indexed maximum timestamp; the full check is the
    /// caller's (a full index rolls the segment before the next batch).
    pub fn push_if_newer(&mut self, entry: TimeEntry) -> Result<()> {
        if self
            .last()
            .is_some_and(|last| entry.timestamp_ms <= last.timestamp_ms)
        {
            return Ok(());
        }
        let mut bytes = [0u8; TIME_ENTRY_BYTES];
        bytes[..8].copy_from_slice(&entry.timestamp_ms.to_be_bytes());
        bytes[8..].copy_from_slice(&entry.relative_offset.to_be_bytes());
        self.file.push(&bytes)
    }

    /// The last entry with a timestamp strictly below `timestamp_ms`: every batch up to its
    /// offset is older than the target, so a search may start there.
    pub fn lookup_before(&self, timestamp_ms: i64) -> Option<TimeEntry> {
        floor_entry(
            self.len(),
            Floor::StrictlyBelow,
            |index| self.entry(index).timestamp_ms,
            timestamp_ms,
        )
        .map(|index| self.entry(index))
    }

    /// Timestamps strictly increasing, offsets non-decreasing and inside the span.
    pub fn is_sane(&self, offset_span: u64) -> bool {
        let mut previous: Option<TimeEntry> = None;
        for index in 0..self.len() {
            let entry = self.entry(index);
            if u64::from(entry.relative_offset) >= offset_span {
                return false;
            }
            if let Some(previous) = previous
                && (entry.timestamp_ms <= previous.timestamp_ms
                    || entry.relative_offset < previous.relative_offset)
            {
                return false;
            }
            previous = Some(entry);
        }
        true
    }

    pub fn seal(self) -> Result<Self> {
        self.file.seal().map(|file| TimeIndex { file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tmpfs of `size`, unmounted on drop; `None` (with a message) where mounting is not
    /// permitted.
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount(size: &str) -> Option<Tmpfs> {
            let dir = tempfile::tempdir().unwrap();
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .is_ok_and(|status| status.success());
            if !mounted {
                eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
                return None;
            }
            Some(Tmpfs(dir))
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0.path())
                .status();
        }
    }

    /// A sparse index on a full disk maps fine and then kills the process with SIGBUS at the
    /// first entry written to a page the filesystem cannot back; allocating it for real
    /// fails at creation with an error instead.
    #[test]
    fn an_index_on_a_full_filesystem_fails_to_allocate_instead_of_mapping_holes() {
        let Some(tmpfs) = Tmpfs::mount("1m") else {
            return;
        };
        let filler = tmpfs.0.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![1u8; 4096];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        drop(file);
        let outcome = OffsetIndex::create(&tmpfs.0.path().join("0.index"), 64 * 1024);
        assert!(
            outcome.is_err(),
            "a 64 KiB index was created on a full filesystem"
        );
        // With space back, the same index is allocated and usable.
        std::fs::remove_file(&filler).unwrap();
        let mut index = OffsetIndex::create(&tmpfs.0.path().join("0.index"), 64 * 1024).unwrap();
        index
            .push(OffsetEntry {
                relative_offset: 1,
                position: 10,
            })
            .unwrap();
        assert_eq!(index.lookup(1).unwrap().position, 10);
    }

    /// An index grows in steps as it fills; on a full disk the step fails with an error
    /// (the caller poisons the log), never a write to an unallocated page (SIGBUS), and the
    /// entries it has stay readable.
    #[test]
    fn a_growing_index_on_a_full_filesystem_fails_to_grow_instead_of_mapping_holes() {
        let Some(tmpfs) = Tmpfs::mount("1m") else {
            return;
        };
        let path = tmpfs.0.path().join("0.index");
        let mut index = OffsetIndex::create(&path, 512 * 1024).unwrap();
        let first_step = u32::try_from(INDEX_GROWTH_BYTES_MIN / OFFSET_ENTRY_BYTES).unwrap();
        let entry = |n: u32| OffsetEntry {
            relative_offset: n,
            position: n * 10,
        };
        for n in 0..first_step {
            index.push(entry(n)).unwrap();
        }
        let filler = tmpfs.0.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![1u8; 4096];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        drop(file);
        assert!(
            index.push(entry(first_step)).is_err(),
            "the index grew on a full filesystem"
        );
        assert_eq!(index.len(), first_step as usize);
        assert_eq!(index.lookup(7).unwrap().position, 70);
        // With space back, it grows and takes the entry.
        std::fs::remove_file(&filler).unwrap();
        index.push(entry(first_step)).unwrap();
        assert_eq!(index.lookup(first_step).unwrap().position, first_step * 10);
    }

    #[test]
    fn offset_index_lookup_finds_the_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = OffsetIndex::create(&dir.path().join("0.index"), 64).unwrap();
        for (relative_offset, position) in [(10, 100), (20, 200), (30, 300)] {
            index
                .push(OffsetEntry {
                    relative_offset,
                    position,
                })
                .unwrap();
        }
        assert_eq!(index.lookup(5), None);
        assert_eq!(index.lookup(10).unwrap().position, 100);
        assert_eq!(index.lookup(29).unwrap().position, 200);
        assert_eq!(index.lookup(1_000).unwrap().position, 300);
        assert!(index.is_sane(301, 31));
        assert!(!index.is_sane(300, 31), "a position past the log is insane");
    }

    #[test]
    fn a_full_index_refuses_more_entries_and_seals_to_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&path, 20).unwrap();
        index
            .push(OffsetEntry {
                relative_offset: 1,
                position: 1,
            })
            .unwrap();
        index
            .push(OffsetEntry {
                relative_offset: 2,
                position: 2,
            })
            .unwrap();
        assert!(index.is_full());
        index
            .push(OffsetEntry {
                relative_offset: 3,
                position: 3,
            })
            .unwrap();
        assert_eq!(index.len(), 2);
        let sealed = index.seal().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        assert_eq!(sealed.last().unwrap().relative_offset, 2);
        let reopened = OffsetIndex::open_sealed(&path, 10, 10).unwrap().unwrap();
        assert_eq!(reopened.len(), 2);
    }

    #[test]
    fn garbage_index_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        std::fs::write(&path, [0xffu8; 13]).unwrap();
        assert!(
            OffsetIndex::open_sealed(&path, 1_000, 1_000)
                .unwrap()
                .is_none()
        );
        std::fs::write(&path, [0xffu8; 16]).unwrap();
        assert!(
            OffsetIndex::open_sealed(&path, 1_000, 1_000)
                .unwrap()
                .is_none()
        );
        assert!(
            OffsetIndex::open_sealed(&dir.path().join("missing"), 1, 1)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn time_index_lookup_is_strictly_before_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::create(&dir.path().join("0.timeindex"), 120).unwrap();
        index
            .push_if_newer(TimeEntry {
                timestamp_ms: 100,
                relative_offset: 0,
            })
            .unwrap();
        index
            .push_if_newer(TimeEntry {
                timestamp_ms: 90,
                relative_offset: 1,
            })
            .unwrap();
        index
            .push_if_newer(TimeEntry {
                timestamp_ms: 200,
                relative_offset: 5,
            })
            .unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup_before(100), None);
        assert_eq!(index.lookup_before(101).unwrap().relative_offset, 0);
        assert_eq!(index.lookup_before(200).unwrap().relative_offset, 0);
        assert_eq!(index.lookup_before(201).unwrap().relative_offset, 5);
    }
}
