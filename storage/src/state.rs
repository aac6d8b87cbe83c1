//! The partition's small durable state beside its segments, in one checkpoint file written by
//! rename: log start offset, recovery point, high watermark and the leader epoch cache.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::files::{Syncer, write_atomically};
use crate::producers::ProducerStates;

pub const STATE_FILE: &str = "state.checkpoint";
const HEADER: &str = "lmq-partition-state 1";

/// Which leader epoch wrote which offsets: `(epoch, start_offset)` ascending in both.
/// Replication answers OffsetForLeaderEpoch from it; recovery checks each batch against it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Records that `epoch` starts at `start_offset`; `false` when nothing changed. Callers
    /// never pass an epoch below the latest.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        match self.entries.last() {
            Some(&(latest, _)) if latest >= epoch => false,
            _ => {
                self.entries.push((epoch, start_offset));
                true
            }
        }
    }

    /// The epoch that wrote `offset`, by the cache.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|&&(_, start)| start <= offset)
            .map(|&(epoch, _)| epoch)
    }

    /// OffsetForLeaderEpoch: the end offset of `epoch` (the start of the next higher epoch, or
    /// `log_end_offset` for the latest) and the largest epoch `<=` the requested one.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let position = self
            .entries
            .iter()
            .rposition(|&(cached, _)| cached <= epoch)?;
        let found = self.entries[position].0;
        let end = self
            .entries
            .get(position + 1)
            .map_or(log_end_offset, |&(_, start)| start);
        Some((found, end))
    }

    /// Drops epochs that start at or after `offset` (the log was truncated there).
    pub(crate) fn truncate_from(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, start)| start < offset);
        before != self.entries.len()
    }

    /// Drops epochs wholly below `offset` but keeps the one covering it (log start moved).
    pub(crate) fn truncate_before(&mut self, offset: i64) {
        let covering = self.entries.iter().rposition(|&(_, start)| start <= offset);
        if let Some(covering) = covering {
            self.entries.drain(..covering);
            if let Some(first) = self.entries.first_mut() {
                first.1 = first.1.max(offset);
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PartitionState {
    pub log_start_offset: i64,
    /// Everything below this offset was on disk (fsynced) when the checkpoint was written.
    pub recovery_point: i64,
    pub high_watermark: i64,
    pub epochs: LeaderEpochCache,
    /// Idempotent producers as of `producer_snapshot_offset`; recovery replays the log from
    /// there.
    pub producers: ProducerStates,
    pub producer_snapshot_offset: i64,
}

impl PartitionState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// The checkpoint, `Ok(None)` when there is none yet.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(dir);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Err(corrupt(&path, "not UTF-8"));
            }
            Err(error) => return Err(StorageError::io("read", &path, error)),
        };
        Self::parse(&text)
            .map(Some)
            .map_err(|reason| corrupt(&path, &reason))
    }

    pub fn store(&self, dir: &Path, syncer: &dyn Syncer) -> Result<()> {
        write_atomically(&Self::path(dir), self.render().as_bytes(), syncer)
    }

    fn render(&self) -> String {
        let mut body = format!(
            "{HEADER}\nlog_start_offset {}\nrecovery_point {}\nhigh_watermark {}\n",
            self.log_start_offset, self.recovery_point, self.high_watermark
        );
        for (epoch, start) in self.epochs.entries() {
            body.push_str(&format!("leader_epoch {epoch} {start}\n"));
        }
        body.push_str(&format!(
            "producer_snapshot_offset {}\n",
            self.producer_snapshot_offset
        ));
        self.producers.render(&mut body);
        let crc = crc32c::crc32c(body.as_bytes());
        body.push_str(&format!("crc {crc}\n"));
        body
    }

    fn parse(text: &str) -> Result<Self, String> {
        let (body, crc_line) = text
            .trim_end_matches('\n')
            .rsplit_once('\n')
            .ok_or("too short")?;
        let body = format!("{body}\n");
        let stored: u32 = crc_line
            .strip_prefix("crc ")
            .and_then(|crc| crc.parse().ok())
            .ok_or("missing crc line")?;
        if crc32c::crc32c(body.as_bytes()) != stored {
            return Err("crc mismatch".to_string());
        }
        let mut lines = body.lines();
        if lines.next() != Some(HEADER) {
            return Err("unknown header".to_string());
        }
        let mut state = PartitionState::default();
        for line in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            let number = |index: usize| -> Result<i64, String> {
                fields
                    .get(index)
                    .and_then(|field| field.parse().ok())
                    .ok_or_else(|| format!("bad line {line:?}"))
            };
            match fields.first() {
                Some(&"log_start_offset") => state.log_start_offset = number(1)?,
                Some(&"recovery_point") => state.recovery_point = number(1)?,
                Some(&"high_watermark") => state.high_watermark = number(1)?,
                Some(&"leader_epoch") => {
                    let epoch =
                        i32::try_from(number(1)?).map_err(|_| format!("bad epoch {line:?}"))?;
                    if !state.epochs.assign(epoch, number(2)?) {
                        return Err(format!("epochs not ascending at {line:?}"));
                    }
                }
                Some(&"producer_snapshot_offset") => state.producer_snapshot_offset = number(1)?,
                _ => {
                    if !state.producers.parse_line(line)? {
                        return Err(format!("unknown line {line:?}"));
                    }
                }
            }
        }
        Ok(state)
    }
}

fn corrupt(path: &Path, reason: &str) -> StorageError {
    StorageError::CorruptCheckpoint {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::OsSyncer;

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = PartitionState {
            log_start_offset: 5,
            recovery_point: 40,
            high_watermark: 38,
            ..PartitionState::default()
        };
        state.producers.record(
            &crate::producers::ProducerBatch {
                producer_id: 4,
                producer_epoch: 1,
                base_sequence: 0,
                last_offset_delta: 2,
                max_timestamp_ms: 5,
                is_transactional: true,
            },
            30,
            6,
        );
        state.producer_snapshot_offset = 40;
        state.epochs.assign(0, 0);
        state.epochs.assign(3, 20);
        state.store(dir.path(), &OsSyncer).unwrap();
        assert_eq!(PartitionState::load(dir.path()).unwrap(), Some(state));
        assert_eq!(
            PartitionState::load(&dir.path().join("none")).unwrap(),
            None
        );
    }

    #[test]
    fn a_damaged_checkpoint_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        PartitionState::default()
            .store(dir.path(), &OsSyncer)
            .unwrap();
        let path = PartitionState::path(dir.path());
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("recovery_point 0", "recovery_point 9");
        fs::write(&path, text).unwrap();
        assert!(matches!(
            PartitionState::load(dir.path()),
            Err(StorageError::CorruptCheckpoint { .. })
        ));
    }

    #[test]
    fn epoch_cache_answers_offsets_and_end_offsets() {
        let mut cache = LeaderEpochCache::default();
        assert!(cache.assign(0, 0));
        assert!(!cache.assign(0, 10));
        assert!(cache.assign(2, 10));
        assert!(cache.assign(5, 30));
        assert_eq!(cache.epoch_for_offset(9), Some(0));
        assert_eq!(cache.epoch_for_offset(10), Some(2));
        assert_eq!(cache.epoch_for_offset(100), Some(5));
        assert_eq!(cache.end_offset_for(0, 50), Some((0, 10)));
        assert_eq!(cache.end_offset_for(3, 50), Some((2, 30)));
        assert_eq!(cache.end_offset_for(5, 50), Some((5, 50)));
        assert_eq!(cache.end_offset_for(-1, 50), None);
        assert!(cache.truncate_from(30));
        assert_eq!(cache.latest_epoch(), Some(2));
        cache.truncate_before(15);
        assert_eq!(cache.entries(), &[(2, 15)]);
    }
}
