//! `cleaner.checkpoint`: how far a log is cleaned (Kafka's `cleaner-offset-checkpoint`, one
//! per log here), written by rename with a CRC.
//!
//! Three offsets, because they must move at different times:
//! - `first_dirty_offset`: where the next pass starts mapping keys; moved after a pass.
//! - `gaps_below`: below it segments may have offsets that no batch holds (whole batches
//!   removed), and a segment may end before the next one begins; recovery accepts such gaps
//!   there and nowhere else. Moved before a pass swaps its segments in, so it always covers
//!   every gap on disk.
//! - `replicated_gaps_below`: below it offsets may skip ahead between the batches *inside* a
//!   segment, and a batch may hold fewer records than offsets: a follower copied a leader's
//!   compacted batches. Moved (durably) by `append_replicated` past the batches of a call
//!   before any of them is written, so it covers every such gap whose bytes could be on disk.
//!   Segment boundaries stay contiguous above `gaps_below`: a segment that ends early is still
//!   a lost tail there.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::files::{Syncer, write_atomically};

pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner.checkpoint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerCheckpoint {
    pub first_dirty_offset: i64,
    pub gaps_below: i64,
    pub replicated_gaps_below: i64,
    /// The earliest delete horizon of a cleaned batch still holding tombstones: a pass after
    /// it removes them even without new dirty data. `i64::MAX`: none.
    pub tombstone_horizon_ms: i64,
}

impl Default for CleanerCheckpoint {
    fn default() -> Self {
        CleanerCheckpoint {
            first_dirty_offset: 0,
            gaps_below: 0,
            replicated_gaps_below: 0,
            tombstone_horizon_ms: i64::MAX,
        }
    }
}

/// What was found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Missing,
    Found(CleanerCheckpoint),
    /// Present but unreadable: the reason.
    Corrupt(String),
}

impl CleanerCheckpoint {
    /// Below this, offsets may skip ahead between batches inside a segment and batches may
    /// hold fewer records than offsets (compacted, here or on the leader); above it, every
    /// offset is one record and batches are contiguous.
    pub fn offsets_without_records_below(&self) -> i64 {
        self.gaps_below.max(self.replicated_gaps_below)
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(CLEANER_CHECKPOINT_FILE)
    }

    pub fn load(dir: &Path) -> Result<Loaded> {
        let path = Self::path(dir);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Ok(Loaded::Corrupt(error.to_string()));
            }
            Err(error) => return Err(StorageError::io("read", &path, error)),
        };
        Ok(match parse(&text) {
            Ok(checkpoint) => Loaded::Found(checkpoint),
            Err(reason) => Loaded::Corrupt(reason),
        })
    }

    pub fn store(&self, dir: &Path, syncer: &dyn Syncer) -> Result<()> {
        let body = format!(
            "version 2\nfirst_dirty_offset {}\ngaps_below {}\nreplicated_gaps_below {}\n\
             tombstone_horizon_ms {}\n",
            self.first_dirty_offset,
            self.gaps_below,
            self.replicated_gaps_below,
            self.tombstone_horizon_ms
        );
        let text = format!("{body}crc {}\n", crc32c::crc32c(body.as_bytes()));
        write_atomically(&Self::path(dir), text.as_bytes(), syncer)
    }
}

fn parse(text: &str) -> Result<CleanerCheckpoint, String> {
    let (body, crc_line) = text
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .ok_or("no crc line")?;
    let body = format!("{body}\n");
    let crc: u32 = crc_line
        .strip_prefix("crc ")
        .and_then(|crc| crc.parse().ok())
        .ok_or("bad crc line")?;
    if crc != crc32c::crc32c(body.as_bytes()) {
        return Err("crc mismatch".to_string());
    }
    let mut checkpoint = CleanerCheckpoint::default();
    let mut fields = 0;
    // Version 1 (before followers appended gaps into a segment) has no replicated gaps.
    let mut fields_expected = 5;
    for line in body.lines() {
        let (name, value) = line.split_once(' ').ok_or("malformed line")?;
        let value: i64 = value
            .parse()
            .map_err(|_| format!("bad value in {line:?}"))?;
        match name {
            "version" if value == 1 => fields_expected = 4,
            "version" if value == 2 => {}
            "version" => return Err(format!("unknown version {value}")),
            "first_dirty_offset" => checkpoint.first_dirty_offset = value,
            "gaps_below" => checkpoint.gaps_below = value,
            "replicated_gaps_below" if fields_expected == 5 => {
                checkpoint.replicated_gaps_below = value
            }
            "tombstone_horizon_ms" => checkpoint.tombstone_horizon_ms = value,
            other => return Err(format!("unknown field {other}")),
        }
        fields += 1;
    }
    if fields != fields_expected {
        return Err(format!(
            "{fields} fields where {fields_expected} are expected"
        ));
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::OsSyncer;

    #[test]
    fn round_trips_and_refuses_a_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            CleanerCheckpoint::load(dir.path()).unwrap(),
            Loaded::Missing
        );
        let checkpoint = CleanerCheckpoint {
            first_dirty_offset: 42,
            gaps_below: 40,
            replicated_gaps_below: 41,
            tombstone_horizon_ms: 7,
        };
        checkpoint.store(dir.path(), &OsSyncer).unwrap();
        assert_eq!(
            CleanerCheckpoint::load(dir.path()).unwrap(),
            Loaded::Found(checkpoint)
        );
        let path = CleanerCheckpoint::path(dir.path());
        let text = fs::read_to_string(&path).unwrap().replace("42", "43");
        fs::write(&path, text).unwrap();
        assert!(matches!(
            CleanerCheckpoint::load(dir.path()).unwrap(),
            Loaded::Corrupt(_)
        ));
    }

    #[test]
    fn reads_version_1_without_replicated_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let body = "version 1\nfirst_dirty_offset 42\ngaps_below 40\ntombstone_horizon_ms 7\n";
        let text = format!("{body}crc {}\n", crc32c::crc32c(body.as_bytes()));
        fs::write(CleanerCheckpoint::path(dir.path()), text).unwrap();
        assert_eq!(
            CleanerCheckpoint::load(dir.path()).unwrap(),
            Loaded::Found(CleanerCheckpoint {
                first_dirty_offset: 42,
                gaps_below: 40,
                replicated_gaps_below: 0,
                tombstone_horizon_ms: 7,
            })
        );
    }
}
