//! Producer ids for idempotent producers, unique across restarts: ids are handed out from
//! blocks whose end is written to disk before the first id of the block is used.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Ids reserved per write of the block file.
const BLOCK_SIZE: i64 = 1_000;

#[derive(Debug)]
struct Block {
    next: i64,
    end: i64,
}

#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    block: Mutex<Block>,
}

impl ProducerIdAllocator {
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join("producer_id_block");
        let end = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a number", path.display()),
                )
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
            Err(error) => return Err(error),
        };
        Ok(ProducerIdAllocator {
            path,
            block: Mutex::new(Block { next: end, end }),
        })
    }

    pub fn allocate(&self) -> io::Result<i64> {
        let mut block = self.block.lock().unwrap_or_else(PoisonError::into_inner);
        if block.next >= block.end {
            let end = block.end + BLOCK_SIZE;
            let temporary = self.path.with_extension("tmp");
            fs::write(&temporary, end.to_string())?;
            fs::File::open(&temporary)?.sync_all()?;
            fs::rename(&temporary, &self.path)?;
            if let Some(dir) = self.path.parent() {
                fs::File::open(dir)?.sync_all()?;
            }
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProducerIdAllocator::open(dir.path()).unwrap();
        assert_eq!(first.allocate().unwrap(), 0);
        assert_eq!(first.allocate().unwrap(), 1);
        drop(first);
        let second = ProducerIdAllocator::open(dir.path()).unwrap();
        assert_eq!(second.allocate().unwrap(), BLOCK_SIZE);
    }
}
