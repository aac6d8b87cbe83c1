//! File naming, fsync, rename-based writes and the bounded cache of open segment files.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::error::{Result, StorageError};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const OFFSET_INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
pub(crate) const TXN_INDEX_SUFFIX: &str = "txnindex";
const TEMPORARY_SUFFIX: &str = "tmp";

/// `00000000000000000042.log` for base offset 42, as Kafka names segment files.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// The base offset a segment file name encodes, or `None` for any other file.
pub(crate) fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

pub(crate) fn is_temporary(name: &str) -> bool {
    name.ends_with(TEMPORARY_SUFFIX)
}

/// Forces file data to disk. A trait so tests can inject the failures a disk produces.
pub trait Syncer: Send + Sync + fmt::Debug {
    fn sync_data(&self, file: &File) -> io::Result<()>;
}

/// `fdatasync(2)` through the standard library.
#[derive(Debug, Default)]
pub struct OsSyncer;

impl Syncer for OsSyncer {
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
}

/// Writes `contents` to `path` so that a crash leaves either the old or the new file:
/// write a temporary file, fsync it, rename it over, fsync the directory.
pub fn write_atomically(path: &Path, contents: &[u8], syncer: &dyn Syncer) -> Result<()> {
    let temporary = path.with_extension(TEMPORARY_SUFFIX);
    let mut file =
        File::create(&temporary).map_err(|error| StorageError::io("create", &temporary, error))?;
    file.write_all(contents)
        .map_err(|error| StorageError::io("write", &temporary, error))?;
    syncer
        .sync_data(&file)
        .map_err(|error| StorageError::io("fsync", &temporary, error))?;
    fs::rename(&temporary, path).map_err(|error| StorageError::io("rename", path, error))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir, syncer)?;
    }
    Ok(())
}

/// Makes created, renamed and deleted names in `dir` durable.
pub(crate) fn sync_dir(dir: &Path, syncer: &dyn Syncer) -> Result<()> {
    let handle = File::open(dir).map_err(|error| StorageError::io("open dir", dir, error))?;
    syncer
        .sync_data(&handle)
        .map_err(|error| StorageError::io("fsync dir", dir, error))
}

/// Creates `dir` and any missing parents so that each new name survives a power cut: the
/// parent of every directory created here is fsynced after it.
pub fn create_dir_durably(dir: &Path, syncer: &dyn Syncer) -> Result<()> {
    let mut missing = Vec::new();
    let mut ancestor = Some(dir);
    while let Some(path) = ancestor {
        if path.as_os_str().is_empty() || path.exists() {
            break;
        }
        missing.push(path);
        ancestor = path.parent();
    }
    fs::create_dir_all(dir).map_err(|error| StorageError::io("create dir", dir, error))?;
    // Deepest first is fine: each fsync makes one parent's new entry durable.
    for created in missing {
        if let Some(parent) = created
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            sync_dir(parent, syncer)?;
        }
    }
    Ok(())
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StorageError::io("remove", path, error)),
    }
}

pub(crate) fn open_read_write(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|error| StorageError::io("open", path, error))
}

/// Read handles of sealed segment files, bounded across every log that shares the cache so a
/// broker with many partitions keeps a fixed number of descriptors open. Readers hold an
/// `Arc<File>`, so eviction never closes a file under a reader.
#[derive(Debug)]
pub struct FileCache {
    files: Mutex<LruCache<PathBuf, Arc<File>>>,
}

impl FileCache {
    pub fn new(open_files_max: NonZeroUsize) -> Self {
        FileCache {
            files: Mutex::new(LruCache::new(open_files_max)),
        }
    }

    pub(crate) fn get(&self, path: &Path) -> Result<Arc<File>> {
        let mut files = self.lock();
        if let Some(file) = files.get(path) {
            return Ok(Arc::clone(file));
        }
        let file =
            Arc::new(File::open(path).map_err(|error| StorageError::io("open", path, error))?);
        files.put(path.to_path_buf(), Arc::clone(&file));
        Ok(file)
    }

    /// Drops the cached handle of a file about to be deleted or rewritten.
    pub(crate) fn forget(&self, path: &Path) {
        self.lock().pop(path);
    }

    pub fn open_files(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<PathBuf, Arc<File>>> {
        // A panic while holding this lock cannot leave the cache inconsistent: recover it.
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache::new(NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let path = segment_path(Path::new("/d"), 42, LOG_SUFFIX);
        assert_eq!(path, Path::new("/d/00000000000000000042.log"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some((42, "log")));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.log"), None);
        assert_eq!(parse_segment_name("state.checkpoint"), None);
    }

    #[test]
    fn file_cache_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(NonZeroUsize::new(2).unwrap());
        for index in 0..5 {
            let path = dir.path().join(format!("{index}"));
            fs::write(&path, b"x").unwrap();
            cache.get(&path).unwrap();
        }
        assert_eq!(cache.open_files(), 2);
    }
}
