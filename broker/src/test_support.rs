//! Helpers shared by the crate's unit tests.

use std::path::PathBuf;
use std::sync::Mutex;

/// Records the path of every file and directory fsynced through it.
#[derive(Debug, Default)]
pub(crate) struct RecordingSyncer {
    pub synced: Mutex<Vec<PathBuf>>,
}

impl lmq_storage::Syncer for RecordingSyncer {
    fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        self.synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(path);
        Ok(())
    }
}
