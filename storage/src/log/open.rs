//! Opening a log: find its segments, trust what the checkpoint says was flushed, and recover
//! the rest from the `.log` files, which are the truth.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use super::{LogOptions, PartitionLog};
use crate::batch::BatchView;
use crate::clean::LoadedCheckpoint;
use crate::config::LogConfig;
use crate::control::{ControlContent, MarkerKind, decode_control};
use crate::error::{Result, StorageError};
use crate::files::{
    LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX, create_dir_durably,
    is_temporary, parse_segment_name, remove_if_exists, segment_path, sync_dir,
};
use crate::scan::{BatchHeader, Damage, Verify};
use crate::segment::{ActiveSegment, SealedSegment, SegmentView};
use crate::state::{LeaderEpochCache, PartitionState};
use crate::txn_index::{AbortedTxn, Loaded, TxnIndex};
use std::os::unix::fs::FileExt;

/// Where recovery cut the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub segment_base_offset: i64,
    pub position: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

/// What opening a log found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The checkpoint covered everything: no segment was rescanned.
    pub clean: bool,
    /// Segments rescanned and re-indexed from their `.log`.
    pub segments_recovered: usize,
    /// The first damage found: torn, corrupt or out-of-order bytes cut from there on.
    pub truncation: Option<Truncation>,
    /// Later segments removed because the damage came before them.
    pub segments_dropped: Vec<i64>,
    /// Segments wholly below the log start offset, left by an interrupted deletion.
    pub segments_below_log_start_deleted: Vec<i64>,
    /// The checkpoint was unreadable and was rebuilt from the log.
    pub checkpoint_rebuilt: bool,
    /// Producer batches and transaction markers replayed from the log past the producer
    /// snapshot.
    pub producer_batches_replayed: usize,
    /// A segment's `.txnindex` was missing or damaged: the aborted-transactions index and
    /// the producer state were rebuilt from the whole log.
    pub transaction_index_rebuilt: bool,
    pub log_end_offset: i64,
}

/// What opening does about the log's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directory {
    /// A new partition: create the directory (durably) when missing.
    CreateIfMissing,
    /// Reopen a log that existed: a missing directory is an error, never created again (the
    /// partition may have been deleted meanwhile).
    MustExist,
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering it after a crash.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        options: LogOptions,
        now_ms: i64,
    ) -> Result<(Self, RecoveryReport)> {
        Self::open_in(dir, Directory::CreateIfMissing, config, options, now_ms)
    }

    /// Opens the existing log in `dir` (recovering it), failing with a `NotFound` I/O error
    /// when the directory is gone: creates no directory. Files are still created inside it
    /// (a missing first segment, rebuilt indexes), which fails once it is removed.
    pub fn open_existing(
        dir: &Path,
        config: LogConfig,
        options: LogOptions,
        now_ms: i64,
    ) -> Result<(Self, RecoveryReport)> {
        Self::open_in(dir, Directory::MustExist, config, options, now_ms)
    }

    fn open_in(
        dir: &Path,
        directory: Directory,
        config: LogConfig,
        options: LogOptions,
        now_ms: i64,
    ) -> Result<(Self, RecoveryReport)> {
        config.validate().map_err(StorageError::InvalidConfig)?;
        match directory {
            Directory::CreateIfMissing => create_dir_durably(dir, options.syncer.as_ref())?,
            Directory::MustExist => {
                if !dir.is_dir() {
                    return Err(StorageError::io(
                        "open log directory",
                        dir,
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    ));
                }
            }
        }
        let mut report = RecoveryReport::default();
        let (state, epochs_trusted) = match PartitionState::load(dir) {
            Ok(Some(state)) => (state, true),
            Ok(None) => (PartitionState::default(), false),
            Err(error) => {
                tracing::warn!(log = %dir.display(), %error, "checkpoint unreadable; recovering the whole log");
                report.checkpoint_rebuilt = true;
                (PartitionState::default(), false)
            }
        };
        // A cleaner pass cut by a crash: leftovers go, a committed swap is completed.
        crate::clean::recover_swaps(dir, options.syncer.as_ref())?;
        let mut bases = list_segments(dir)?;
        let syncer = options.syncer.as_ref();
        let cleaner = match crate::clean::CleanerCheckpoint::load(dir)? {
            LoadedCheckpoint::Missing => crate::clean::CleanerCheckpoint::default(),
            LoadedCheckpoint::Found(checkpoint) => checkpoint,
            LoadedCheckpoint::Corrupt(reason) => {
                // Which segments were compacted is unknown: accept gaps between segments in
                // every one but the last, gaps inside segments anywhere (a follower may have
                // appended a compacted leader's batches into any), and clean from the start
                // again.
                tracing::warn!(log = %dir.display(), %reason, "cleaner checkpoint unreadable");
                crate::clean::CleanerCheckpoint {
                    gaps_below: bases.last().copied().unwrap_or(0),
                    replicated_gaps_below: i64::MAX,
                    ..crate::clean::CleanerCheckpoint::default()
                }
            }
        };
        // Between segments (a segment ending before the next begins) gaps are accepted only
        // where the cleaner made them; inside a segment also where a follower appended them.
        let gaps_below = cleaner.gaps_below;
        let gaps_inside_below = cleaner.offsets_without_records_below();

        // Segments wholly below the log start: a deletion was interrupted.
        while bases.len() > 1 && bases[1] <= state.log_start_offset {
            let base = bases.remove(0);
            delete_segment_files(dir, base)?;
            report.segments_below_log_start_deleted.push(base);
        }
        if bases.is_empty() {
            bases.push(state.log_start_offset.max(0));
            ActiveSegment::create(dir, bases[0], &config, options.syncer.as_ref())?;
        }

        let mut sealed = VecDeque::new();
        let mut epochs = state.epochs.clone();
        // First segment that holds anything past the recovery point.
        let first_unflushed = bases
            .iter()
            .enumerate()
            .position(|(index, _)| {
                bases
                    .get(index + 1)
                    .is_none_or(|&next| next > state.recovery_point)
            })
            .unwrap_or(bases.len() - 1);
        for index in 0..first_unflushed {
            sealed.push_back(SealedSegment::open_lazy(
                dir,
                bases[index],
                bases[index + 1],
            )?);
        }

        let last = bases.len() - 1;
        let clean_active = if first_unflushed == last && epochs_trusted {
            ActiveSegment::open_clean(
                dir,
                bases[last],
                &config,
                state.recovery_point,
                gaps_inside_below,
                |header| check_epoch(&epochs, header),
            )?
        } else {
            None
        };
        let active = match clean_active {
            Some(active) => {
                report.clean = true;
                active
            }
            None => {
                let mut recovered = None;
                for index in first_unflushed..=last {
                    let base = bases[index];
                    let file_bytes = fs::metadata(segment_path(dir, base, LOG_SUFFIX))
                        .map_or(0, |metadata| metadata.len());
                    let (segment, damage) = ActiveSegment::recover(
                        dir,
                        base,
                        &config,
                        Verify::Crc,
                        syncer,
                        gaps_inside_below,
                        |header| {
                            if epochs_trusted {
                                check_epoch(&epochs, header)
                            } else {
                                rebuild_epoch(&mut epochs, header)
                            }
                        },
                    )?;
                    report.segments_recovered += 1;
                    let overlaps_next = bases
                        .get(index + 1)
                        .is_some_and(|&next| segment.next_offset() > next);
                    // Past the recovery point a segment ends where the next begins: a
                    // follower appends a batch after a gap into the active segment, and a
                    // roll names the next segment by the log end (a segment started at a
                    // gap's end replaced an empty active one after a flush and a checkpoint
                    // past it). Ending early means its tail was lost while a later segment's
                    // pages reached the disk (power loss, `os` policy): keeping the later
                    // segments would leave a hole.
                    let damage = damage.or_else(|| {
                        let next = *bases.get(index + 1)?;
                        // A compacted segment may end before the next one starts.
                        (segment.next_offset() < next && next > gaps_below).then(|| Damage {
                            position: segment.size_bytes(),
                            reason: format!(
                                "segment ends at offset {}, the next one starts at {next}: \
                                 its tail was lost",
                                segment.next_offset()
                            ),
                        })
                    });
                    if let Some(damage) = damage {
                        tracing::warn!(log = %dir.display(), segment = base, position = damage.position,
                            reason = %damage.reason, "truncating damaged log tail");
                        report.truncation = Some(Truncation {
                            segment_base_offset: base,
                            position: damage.position,
                            bytes_dropped: dropped_bytes(
                                dir,
                                &bases[index + 1..],
                                file_bytes,
                                damage.position,
                            ),
                            reason: damage.reason,
                        });
                    }
                    if report.truncation.is_some() || overlaps_next || index == last {
                        for &later in &bases[index + 1..] {
                            delete_segment_files(dir, later)?;
                            report.segments_dropped.push(later);
                        }
                        recovered = Some(segment);
                        break;
                    }
                    sealed.push_back(segment.seal(syncer)?);
                }
                match recovered {
                    Some(active) => active,
                    None => ActiveSegment::create(dir, bases[last], &config, syncer)?,
                }
            }
        };

        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            options,
            sealed,
            active,
            state: PartitionState { epochs, ..state },
            unflushed: Vec::new(),
            truncations: 0,
            cleaner,
            last_flush_ms: now_ms,
            poisoned: None,
            txn_index: crate::txn_index::TxnIndex::default(),
        };
        log.finish_recovery(&mut report, now_ms)?;
        // Nothing past the log end needs it (a tail lost in a power cut, or the unreadable
        // checkpoint's "anywhere"); the file keeps the old value until the next store.
        log.cleaner.replicated_gaps_below =
            log.cleaner.replicated_gaps_below.min(log.log_end_offset());
        Ok((log, report))
    }

    /// Settles offsets after the segments are known, flushing and checkpointing what
    /// recovery changed.
    fn finish_recovery(&mut self, report: &mut RecoveryReport, now_ms: i64) -> Result<()> {
        let log_end_offset = self.log_end_offset();
        let first_base = self
            .sealed
            .front()
            .map_or(self.active.base_offset, |segment| segment.base_offset);
        if self.state.log_start_offset > log_end_offset {
            // Flushed data below the log start was lost: start over at the log start.
            tracing::warn!(log = %self.dir.display(), log_start = self.state.log_start_offset, log_end_offset,
                "log ends below its start offset; starting empty there");
            self.reset_to(self.state.log_start_offset)?;
        }
        self.state.log_start_offset = self.state.log_start_offset.max(first_base);
        self.state.epochs.truncate_from(self.log_end_offset());
        self.state.high_watermark = self
            .state
            .high_watermark
            .clamp(self.state.log_start_offset, self.log_end_offset());
        report.log_end_offset = self.log_end_offset();
        report.producer_batches_replayed = self.replay_producers(report, now_ms)?;
        self.txn_index
            .sync(&self.dir, self.options.syncer.as_ref())?;
        if !report.clean {
            self.active.flush(self.options.syncer.as_ref())?;
            self.state.recovery_point = self.log_end_offset();
            sync_dir(&self.dir, self.options.syncer.as_ref())?;
            self.store_state()?;
        }
        Ok(())
    }

    /// Brings the producer table (and the aborted-transactions index) from the snapshot
    /// offset up to the log end by replaying the batches and markers in between (after a
    /// crash); drops what the log no longer has. A lost or damaged `.txnindex` replays the
    /// whole log instead.
    fn replay_producers(&mut self, report: &mut RecoveryReport, now_ms: i64) -> Result<usize> {
        let log_end_offset = self.log_end_offset();
        let snapshot_offset = self.state.producer_snapshot_offset;
        if snapshot_offset > log_end_offset {
            self.state.producers.truncate_from(log_end_offset);
        }
        let mut segments: Vec<(i64, i64)> = self
            .sealed
            .iter()
            .map(|segment| (segment.base_offset, segment.next_offset()))
            .collect();
        segments.push((self.active.base_offset, i64::MAX));
        let (index, loaded) =
            TxnIndex::load(&self.dir, &segments, snapshot_offset.min(log_end_offset))?;
        let from = match loaded {
            Loaded::Trusted => {
                self.txn_index = index;
                snapshot_offset.max(self.state.log_start_offset)
            }
            Loaded::Rebuild => {
                report.transaction_index_rebuilt = true;
                self.state.producers.clear();
                let bases: Vec<i64> = segments.iter().map(|&(base, _)| base).collect();
                self.txn_index.reset_files(&self.dir, &bases)?;
                self.state.log_start_offset
            }
        };
        let mut replayed = 0;
        if from < log_end_offset {
            // (segment base, header, its marker when a control batch)
            let mut batches: Vec<(i64, BatchHeader, Option<ControlContent>)> = Vec::new();
            for segment in &self.sealed {
                if segment.next_offset() <= from {
                    continue;
                }
                let target = from.max(segment.base_offset);
                batches.extend(segment.with_view(
                    &self.options.file_cache,
                    self.config.index_interval_bytes,
                    target,
                    |view| replay_batches(view, target),
                )?);
            }
            let target = from.max(self.active.base_offset);
            batches.extend(replay_batches(self.active.view(), target)?);
            for (segment_base, header, control) in batches
                .iter()
                .filter(|(_, header, _)| header.base_offset >= from)
            {
                if let Some(ControlContent::Marker(marker)) = control {
                    let completed =
                        self.state
                            .producers
                            .record_marker(marker, header.base_offset, now_ms);
                    if let Some(completed) = completed
                        && completed.kind == MarkerKind::Abort
                    {
                        self.txn_index.append(
                            &self.dir,
                            *segment_base,
                            AbortedTxn::from_completed(&completed),
                        )?;
                    }
                    replayed += 1;
                } else if let Some(producer) = header.producer_batch() {
                    self.state
                        .producers
                        .record(&producer, header.base_offset, now_ms);
                    replayed += 1;
                }
            }
        }
        self.state.producer_snapshot_offset = log_end_offset;
        Ok(replayed)
    }

    /// Deletes every segment and starts an empty log at `offset`.
    pub(crate) fn reset_to(&mut self, offset: i64) -> Result<()> {
        self.truncations += 1;
        for segment in self.sealed.drain(..) {
            segment.delete(&self.options.file_cache)?;
        }
        delete_segment_files(&self.dir, self.active.base_offset)?;
        self.active = ActiveSegment::create(
            &self.dir,
            offset,
            &self.config,
            self.options.syncer.as_ref(),
        )?;
        self.state.log_start_offset = offset;
        self.state.recovery_point = offset;
        self.state.high_watermark = offset;
        self.state.epochs.clear();
        self.state.producers.clear();
        self.txn_index.clear();
        Ok(())
    }
}

/// The headers of a segment's batches from the one holding `offset`, with the marker of each
/// control batch (read whole: markers are small). A control batch whose record cannot be
/// read ends no transaction (logged): its CRC held, so it is what was written.
fn replay_batches(
    view: SegmentView<'_>,
    offset: i64,
) -> Result<Vec<(i64, BatchHeader, Option<ControlContent>)>> {
    let mut out = Vec::new();
    for header in view.headers_from(offset)? {
        let control = if header.is_control() {
            let length = usize::try_from(header.total_bytes).unwrap_or(usize::MAX);
            let mut bytes = vec![0u8; length.min(crate::batch::CONTROL_BATCH_BYTES_MAX)];
            view.file
                .read_exact_at(&mut bytes, header.position)
                .map_err(|error| StorageError::io("read", view.path, error))?;
            let content = BatchView::new(&bytes)
                .map_err(|error| error.to_string())
                .and_then(|batch| decode_control(&batch));
            Some(content.unwrap_or_else(|reason| {
                tracing::warn!(segment = view.base_offset, offset = header.base_offset, %reason,
                    "unreadable control batch; it ends no transaction");
                ControlContent::Other
            }))
        } else {
            None
        };
        out.push((view.base_offset, header, control));
    }
    Ok(out)
}

/// With a trusted epoch cache, each batch must carry the epoch the cache names for its
/// offset: the epoch field lies outside the CRC, so this is what catches a flipped byte there.
fn check_epoch(epochs: &LeaderEpochCache, header: &BatchHeader) -> Result<(), String> {
    let first_start = epochs
        .entries()
        .first()
        .map_or(i64::MAX, |&(_, start)| start);
    if header.base_offset < first_start {
        return Ok(());
    }
    match epochs.epoch_for_offset(header.base_offset) {
        Some(epoch) if epoch == header.partition_leader_epoch => Ok(()),
        expected => Err(format!(
            "leader epoch {} at offset {} where the epoch cache says {expected:?}",
            header.partition_leader_epoch, header.base_offset
        )),
    }
}

/// Without a checkpoint, epochs are learnt from the log; they must never go down.
fn rebuild_epoch(epochs: &mut LeaderEpochCache, header: &BatchHeader) -> Result<(), String> {
    let epoch = header.partition_leader_epoch;
    if epoch < 0 {
        return Ok(());
    }
    if epochs.latest_epoch().is_some_and(|latest| epoch < latest) {
        return Err(format!(
            "leader epoch {epoch} at offset {} goes backwards",
            header.base_offset
        ));
    }
    epochs.assign(epoch, header.base_offset);
    Ok(())
}

fn dropped_bytes(dir: &Path, later_bases: &[i64], file_bytes: u64, position: u64) -> u64 {
    let later: u64 = later_bases
        .iter()
        .filter_map(|&base| fs::metadata(segment_path(dir, base, LOG_SUFFIX)).ok())
        .map(|metadata| metadata.len())
        .sum();
    file_bytes.saturating_sub(position) + later
}

/// Base offsets of the segments in `dir`, ascending. Removes temporary files and indexes
/// whose `.log` is gone.
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    let mut orphans: Vec<(i64, PathBuf)> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|error| StorageError::io("list", dir, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| StorageError::io("list", dir, error))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_temporary(name) {
            remove_if_exists(&entry.path())?;
            continue;
        }
        match parse_segment_name(name) {
            Some((base, LOG_SUFFIX)) => bases.push(base),
            Some((base, OFFSET_INDEX_SUFFIX | TIME_INDEX_SUFFIX | TXN_INDEX_SUFFIX)) => {
                orphans.push((base, entry.path()))
            }
            _ => {}
        }
    }
    bases.sort_unstable();
    for (base, path) in orphans {
        if bases.binary_search(&base).is_err() {
            remove_if_exists(&path)?;
        }
    }
    Ok(bases)
}

pub(crate) fn delete_segment_files(dir: &Path, base_offset: i64) -> Result<()> {
    remove_if_exists(&segment_path(dir, base_offset, LOG_SUFFIX))?;
    remove_if_exists(&segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX))?;
    remove_if_exists(&segment_path(dir, base_offset, TIME_INDEX_SUFFIX))?;
    remove_if_exists(&segment_path(dir, base_offset, TXN_INDEX_SUFFIX))
}
