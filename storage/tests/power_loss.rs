//! Power-loss simulation. The log runs in a temporary directory with a [`Syncer`] that, at
//! every fsync, records what that fsync made durable: a file's whole content, or a
//! directory's entries (name → inode). A simulated power cut rebuilds a fresh directory tree
//! from that record, as a disk could after losing power: each file has its content as of its
//! last fsync plus an adversarial mix of what was written since (pages kept or lost in any
//! order, a torn length), and each directory has, per name, either its entry as of the last
//! fsync of that directory or its current entry (a created file may vanish, a deleted or
//! renamed one come back). Index files are derived data: they are dropped or kept as they
//! are. The log is reopened there and must hold every offset below the highest recovery
//! point it reported (what it acknowledged as durable: `AppendInfo::durable`, a completed
//! flush, an fsynced roll), read back as a run of batches the test wrote, in order.
//!
//! Cuts happen before any fsync (inside an append, a roll, a checkpoint, a truncation...) and
//! between operations, over random runs of appends, replicated appends with gaps (a
//! follower's run: fetch responses of several batches, most after a gap), rolls,
//! retention, truncation, DeleteRecords, checkpoints, flushes and group commit's
//! `PendingFlush` taken, synced and completed around other operations.
//!
//! `LMQ_POWER_LOSS_SEED=<n>` replays one seed; `LMQ_POWER_LOSS_SEEDS=<k>` runs seeds 0..k
//! (default: as many as give 1,000 cuts).

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time a run takes"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::UNIX_EPOCH;

use common::{as_sent, batch};
use lmq_storage::batch::{BatchView, batch_total_bytes};
use lmq_storage::{
    FirstBatch, FlushPolicy, FlushedTo, LogConfig, LogOptions, PartitionLog, PendingFlush,
    ReadBound, ReadLimits, RetentionPolicy, Syncer,
};

/// Cuts a default run makes at least.
const CUTS_DEFAULT: u64 = 1_000;
/// Operations of one seed's run.
const OPERATIONS_PER_SEED: usize = 160;
/// Cuts one seed makes at most, so a run covers several configurations.
const CUTS_PER_SEED_MAX: u64 = 130;
/// The unit in which unsynced writes reach the disk or not.
const PAGE_BYTES: usize = 512;

/// SplitMix64: small, seeded, the same sequence everywhere.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
    fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
    fn between(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            low
        } else {
            low + self.below((high - low + 1) as u64) as i64
        }
    }
}

/// A temporary directory, in memory where the system has one: a run rebuilds hundreds of
/// directory trees.
fn scratch_dir() -> tempfile::TempDir {
    let memory = Path::new("/dev/shm");
    if memory.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("lmq-power-loss")
            .tempdir_in(memory)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// An inode, told apart from a later one reusing its number by its birth time.
type FileId = (u64, i128);

fn file_id(metadata: &Metadata) -> FileId {
    let born = metadata
        .created()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |duration| duration.as_nanos() as i128);
    (metadata.ino(), born)
}

/// How a cut treats what was not fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adversary {
    /// Each unsynced page and directory entry survives or not at random.
    Random,
    /// Only what was fsynced survives.
    Worst,
}

/// What the log acknowledged, and every version of its contents the test wrote.
#[derive(Debug, Default)]
struct Oracle {
    /// Base offset → (last offset, batch as sent). The last is the current log; earlier ones
    /// are the logs as they were before each truncation (a cut may leave one of those).
    versions: Vec<BTreeMap<i64, (i64, Vec<u8>)>>,
    /// Offsets below this were reported durable (the highest recovery point since the last
    /// truncation below it).
    acknowledged: i64,
    /// The log start offset after a cut may not pass this.
    log_start_bound: i64,
}

impl Oracle {
    fn current(&mut self) -> &mut BTreeMap<i64, (i64, Vec<u8>)> {
        if self.versions.is_empty() {
            self.versions.push(BTreeMap::new());
        }
        let last = self.versions.len() - 1;
        &mut self.versions[last]
    }
}

#[derive(Debug, Default)]
struct Record {
    /// Content of each file as of its last fsync.
    synced: HashMap<FileId, Vec<u8>>,
    /// Entries of each directory as of its last fsync.
    listings: HashMap<PathBuf, BTreeMap<OsString, FileId>>,
}

/// Every record written to a compacted log: offset → (key, value).
type CompactedModel = BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)>;

/// The simulated disk: a [`Syncer`] that remembers what each fsync made durable and cuts the
/// power (rebuild, reopen, check) at seeded points.
#[derive(Debug)]
struct Disk {
    root: PathBuf,
    /// The partition directory, below `root`.
    dir: PathBuf,
    config: LogConfig,
    group_commit: bool,
    seed: u64,
    record: Mutex<Record>,
    oracle: Mutex<Oracle>,
    plan: Mutex<CutPlan>,
    /// For a compacted log: every record written (all flushed before any pass), offset →
    /// (key, value). A cut is then checked by [`check_compacted_image`].
    compacted: Mutex<Option<CompactedModel>>,
}

#[derive(Debug)]
struct CutPlan {
    rng: Rng,
    /// Out of 100: how often an fsync is preceded by a cut.
    cut_percent: u64,
    cuts: u64,
    cuts_max: u64,
    /// What the driver is doing, for the failure message.
    operation: String,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Syncer for Disk {
    fn sync_data(&self, file: &File) -> io::Result<()> {
        let cut = {
            let mut plan = lock(&self.plan);
            let cut_percent = plan.cut_percent;
            plan.cuts < plan.cuts_max && plan.rng.chance(cut_percent, 100)
        };
        if cut {
            self.cut_and_check(Adversary::Random, "before an fsync");
        }
        self.remember_sync(file)
    }
}

impl Disk {
    fn new(
        root: &Path,
        partition: &str,
        config: LogConfig,
        group_commit: bool,
        seed: u64,
    ) -> Arc<Self> {
        let disk = Disk {
            root: root.to_path_buf(),
            dir: root.join(partition),
            config,
            group_commit,
            seed,
            record: Mutex::new(Record::default()),
            oracle: Mutex::new(Oracle {
                versions: vec![BTreeMap::new()],
                ..Oracle::default()
            }),
            plan: Mutex::new(CutPlan {
                rng: Rng(seed ^ 0xC0FF_EE00),
                cut_percent: 0,
                cuts: 0,
                cuts_max: 0,
                operation: String::new(),
            }),
            compacted: Mutex::new(None),
        };
        // The root exists durably, as the data directory of a broker does.
        let listing = current_listing(root).unwrap();
        lock(&disk.record)
            .listings
            .insert(root.to_path_buf(), listing);
        Arc::new(disk)
    }

    fn options(self: &Arc<Self>) -> LogOptions {
        LogOptions {
            syncer: Arc::clone(self) as Arc<dyn Syncer>,
            flush_owner: flush_owner(self.group_commit),
            ..LogOptions::default()
        }
    }

    /// Records what an fsync of `file` makes durable (no real fsync: nothing real is lost).
    fn remember_sync(&self, file: &File) -> io::Result<()> {
        let metadata = file.metadata()?;
        let id = file_id(&metadata);
        let handle = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if metadata.is_dir() {
            let path = fs::read_link(&handle)?;
            let listing = current_listing(&path)?;
            lock(&self.record).listings.insert(path, listing);
        } else {
            // Through /proc: reads the open inode even when it was written only, or deleted.
            let content = fs::read(&handle)?;
            lock(&self.record).synced.insert(id, content);
        }
        Ok(())
    }

    /// Rebuilds the tree under `root` as a power cut could leave it, into a new directory.
    fn image(&self, rng: &mut Rng, adversary: Adversary) -> tempfile::TempDir {
        let target = scratch_dir();
        let record = lock(&self.record);
        let mut paths = HashMap::new();
        index_tree(&self.root, &mut paths);
        rebuild_dir(&record, &paths, &self.root, target.path(), rng, adversary);
        target
    }

    /// A power cut now: rebuild, reopen, check; panics with a replay command on a failure.
    fn cut_and_check(&self, adversary: Adversary, place: &str) {
        let (mut rng, cut, operation) = {
            let mut plan = lock(&self.plan);
            plan.cuts += 1;
            (Rng(plan.rng.next()), plan.cuts, plan.operation.clone())
        };
        let image = self.image(&mut rng, adversary);
        let relative = self.dir.strip_prefix(&self.root).unwrap();
        let compacted = lock(&self.compacted).clone();
        let outcome = if let Some(model) = compacted {
            check_compacted_image(&image.path().join(relative), &self.config, &model)
        } else {
            check_image(
                &image.path().join(relative),
                &self.config,
                self.group_commit,
                &lock(&self.oracle),
            )
        };
        if let Err(reason) = outcome {
            panic!(
                "seed {} ({:?}, group commit {}), cut {cut} {place} during {operation}: {reason}\n\
                 replay: LMQ_POWER_LOSS_SEED={} cargo test -p lmq-storage --test power_loss",
                self.seed, self.config.flush_policy, self.group_commit, self.seed
            );
        }
    }
}

/// Name → inode of the entries of `dir`, sorted.
fn current_listing(dir: &Path) -> io::Result<BTreeMap<OsString, FileId>> {
    let mut listing = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        listing.insert(entry.file_name(), file_id(&entry.metadata()?));
    }
    Ok(listing)
}

/// Where each inode under `dir` is now.
fn index_tree(dir: &Path, paths: &mut HashMap<FileId, PathBuf>) {
    let Ok(metadata) = fs::metadata(dir) else {
        return;
    };
    paths.insert(file_id(&metadata), dir.to_path_buf());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            index_tree(&path, paths);
        } else if let Ok(metadata) = entry.metadata() {
            paths.insert(file_id(&metadata), path);
        }
    }
}

fn rebuild_dir(
    record: &Record,
    paths: &HashMap<FileId, PathBuf>,
    dir: &Path,
    target: &Path,
    rng: &mut Rng,
    adversary: Adversary,
) {
    let durable = record.listings.get(dir).cloned().unwrap_or_default();
    let current = current_listing(dir).unwrap_or_default();
    let names: BTreeSet<&OsString> = durable.keys().chain(current.keys()).collect();
    for name in names {
        let was = durable.get(name).copied();
        let now = current.get(name).copied();
        // Either side of an unsynced change: the entry as last synced, or as it is now.
        let keep_synced = was == now || adversary == Adversary::Worst || rng.chance(1, 2);
        let chosen = if keep_synced { was } else { now };
        let Some(id) = chosen else { continue };
        let destination = target.join(name);
        let present = paths.get(&id);
        if present.is_some_and(|path| path.is_dir()) {
            fs::create_dir(&destination).unwrap();
            rebuild_dir(
                record,
                paths,
                present.unwrap(),
                &destination,
                rng,
                adversary,
            );
            continue;
        }
        let now_content = present.and_then(|path| fs::read(path).ok());
        let text = name.to_string_lossy();
        if text.ends_with(".index") || text.ends_with(".timeindex") {
            // Derived data, written through a map: lost, or left as it is.
            if let Some(content) = now_content
                && adversary == Adversary::Random
                && rng.chance(1, 2)
            {
                fs::write(&destination, content).unwrap();
            }
            continue;
        }
        let synced = record.synced.get(&id).map(Vec::as_slice).unwrap_or(&[]);
        let content = match (&now_content, adversary) {
            (Some(now), Adversary::Random) => torn(synced, now, rng),
            _ => synced.to_vec(),
        };
        fs::write(&destination, content).unwrap();
    }
}

/// A file after a cut: the synced content with some of the unsynced writes, page by page,
/// in any order, and a length anywhere between the two.
fn torn(synced: &[u8], now: &[u8], rng: &mut Rng) -> Vec<u8> {
    if synced == now {
        return now.to_vec();
    }
    let (shorter, longer) = (synced.len().min(now.len()), synced.len().max(now.len()));
    let mode = rng.below(4);
    let length = match mode {
        0 => synced.len(),
        1 => now.len(),
        _ => rng.between(shorter as i64, longer as i64) as usize,
    };
    let pages = length.div_ceil(PAGE_BYTES);
    let prefix_pages = rng.below(pages as u64 + 1) as usize;
    let mut out = vec![0u8; length];
    for page in 0..pages {
        let take_now = match mode {
            0 => false,
            1 => true,
            2 => page < prefix_pages,
            _ => rng.chance(1, 2),
        };
        let source = if take_now { now } else { synced };
        for (index, byte) in out
            .iter_mut()
            .enumerate()
            .take(((page + 1) * PAGE_BYTES).min(length))
            .skip(page * PAGE_BYTES)
        {
            *byte = source.get(index).copied().unwrap_or(0);
        }
    }
    out
}

/// Fsyncs nothing: the reopened image is thrown away.
#[derive(Debug)]
struct NoSync;

impl Syncer for NoSync {
    fn sync_data(&self, _file: &File) -> io::Result<()> {
        Ok(())
    }
}

const ALL: ReadLimits = ReadLimits {
    max_bytes: u64::MAX,
    bound: ReadBound::LogEnd,
    first_batch: FirstBatch::Whole,
};

/// The group commit (its owner runs the fsyncs) or the log itself.
fn flush_owner(group_commit: bool) -> lmq_storage::FlushOwner {
    if group_commit {
        lmq_storage::FlushOwner::Caller
    } else {
        lmq_storage::FlushOwner::Log
    }
}

/// Reopens the log of an image and checks it against what was acknowledged.
fn check_image(
    dir: &Path,
    config: &LogConfig,
    group_commit: bool,
    oracle: &Oracle,
) -> Result<(), String> {
    let options = LogOptions {
        syncer: Arc::new(NoSync),
        flush_owner: flush_owner(group_commit),
        ..LogOptions::default()
    };
    let listing = describe(dir);
    let (mut log, report) = PartitionLog::open(dir, config.clone(), options, 0)
        .map_err(|error| format!("reopen failed: {error}; files {listing}"))?;
    let context = format!("files {listing}; recovery {report:?}");
    check_log(&mut log, oracle).map_err(|reason| format!("{reason}\n{context}"))
}

/// The files of an image directory and their sizes, for a failure message.
fn describe(dir: &Path) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    let bytes = entry.metadata().map_or(0, |metadata| metadata.len());
                    format!("{}:{bytes}", entry.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let checkpoint = fs::read_to_string(dir.join(lmq_storage::STATE_FILE)).unwrap_or_default();
    format!("{}; checkpoint {checkpoint:?}", names.join(" "))
}

fn check_log(log: &mut PartitionLog, oracle: &Oracle) -> Result<(), String> {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    // The end of the last acknowledged record: a recovery point may lie in a gap.
    let required_end = oracle
        .versions
        .last()
        .and_then(|current| {
            current
                .values()
                .filter(|(last, _)| *last < oracle.acknowledged)
                .map(|(last, _)| last + 1)
                .max()
        })
        .unwrap_or(0);
    if end < required_end {
        return Err(format!(
            "acknowledged records lost: log end {end} after the cut, records up to {required_end} \
             acknowledged (recovery point {}, log start {start})",
            oracle.acknowledged
        ));
    }
    if start > oracle.log_start_bound {
        return Err(format!(
            "log start {start} after the cut, at most {} expected",
            oracle.log_start_bound
        ));
    }
    let mut batches = Vec::new();
    let mut offset = start;
    while offset < end {
        let result = log
            .read(offset, ALL)
            .map_err(|error| format!("read at {offset}: {error}"))?;
        // Nothing more: the rest is a gap before an empty segment (checked below).
        let Some(region) = result.region else { break };
        let mut bytes = region
            .read_to_vec()
            .map_err(|error| error.to_string())?
            .as_slice()
            .to_vec();
        let mut rest = bytes.as_mut_slice();
        if rest.is_empty() {
            return Err(format!("empty region at {offset}"));
        }
        while !rest.is_empty() {
            let total = batch_total_bytes(rest).ok_or("short batch in a read")? as usize;
            let view = BatchView::validated(&rest[..total])
                .map_err(|error| format!("invalid batch in a read at {offset}: {error:?}"))?;
            offset = view.last_offset() + 1;
            batches.push((
                view.base_offset(),
                view.last_offset(),
                as_sent(&rest[..total]),
            ));
            rest = &mut rest[total..];
        }
    }
    let read_end = batches.last().map_or(start, |&(_, last, _)| last + 1);
    // The log may end with an empty segment after a gap: one a replicated batch after a gap
    // started at its offset (the active one was empty), or a truncation emptied.
    if read_end != end && log.segment_base_offsets().last() != Some(&end) {
        return Err(format!(
            "the batches end at {read_end}, the log end is {end} (segments {:?})",
            log.segment_base_offsets()
        ));
    }
    // The batches must be a run of consecutive batches of one version of the log.
    let matches = |version: &BTreeMap<i64, (i64, Vec<u8>)>| {
        let Some(&(first, _, _)) = batches.first() else {
            return true;
        };
        let mut expected = version.range(first..);
        batches.iter().all(|(base, last, bytes)| {
            expected
                .next()
                .is_some_and(|(b, (l, sent))| b == base && l == last && sent == bytes)
        })
    };
    if !oracle.versions.iter().any(matches) {
        let found: Vec<(i64, i64)> = batches
            .iter()
            .map(|&(base, last, _)| (base, last))
            .collect();
        return Err(format!(
            "the log after the cut is no run of written batches: {found:?} (log start {start})"
        ));
    }
    // And it takes appends where it ends.
    let mut next = batch(1, 10, 7, 0);
    let info = log
        .append(&mut next, 1_000, 0)
        .map_err(|error| format!("append after the cut: {error}"))?;
    if info.base_offset != end {
        return Err(format!(
            "an append after the cut got offset {}, the log end was {end}",
            info.base_offset
        ));
    }
    Ok(())
}

/// A group commit flush on its way: taken, then synced, then completed.
enum InFlight {
    None,
    Taken(PendingFlush),
    Synced(lmq_storage::Result<FlushedTo>),
}

/// Which operations a run makes most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Produce appends mostly, a replicated batch (maybe after a gap) now and then.
    Leader,
    /// A follower of a compacted log: replicated calls of several batches, most after an
    /// offset gap, which go into the active segment.
    Follower,
}

/// One seed's run: a random configuration and random operations, with cuts before fsyncs and
/// between operations. Returns the number of cuts.
fn run_seed(seed: u64, cuts_max: u64, role: Role) -> u64 {
    let mut rng = Rng(seed);
    let flush_policy = match rng.below(3) {
        0 => FlushPolicy::EveryBatch,
        1 => FlushPolicy::IntervalMs(rng.between(1, 50) as u64),
        _ => FlushPolicy::Os,
    };
    let group_commit = rng.chance(1, 2);
    let config = LogConfig {
        segment_bytes_max: rng.between(600, 3_000) as u64,
        index_interval_bytes: 256,
        index_bytes_max: 1_024,
        flush_policy,
        retention: RetentionPolicy {
            retention_ms: None,
            retention_bytes: Some(rng.between(2_000, 12_000) as u64),
        },
        ..LogConfig::default()
    };
    let root = scratch_dir();
    let disk = Disk::new(root.path(), "topic-0", config.clone(), group_commit, seed);
    {
        let mut plan = lock(&disk.plan);
        plan.cut_percent = 20;
        plan.cuts_max = cuts_max;
        plan.operation = "open".to_string();
    }
    let (mut log, _) = PartitionLog::open(&disk.dir, config.clone(), disk.options(), 0).unwrap();
    let mut in_flight = InFlight::None;
    let mut now_ms = 0i64;
    let mut value_seed = seed.wrapping_mul(1_000_003);
    for _ in 0..OPERATIONS_PER_SEED {
        now_ms += rng.between(0, 20);
        let choice = match role {
            Role::Leader => rng.below(100),
            // Replicated appends instead of produce appends.
            Role::Follower => (rng.below(100) + 40) % 100,
        };
        let end = log.log_end_offset();
        let operation = match choice {
            0..=39 if role == Role::Follower => "replicated append",
            0..=39 => "append",
            40..=47 => "replicated append",
            48..=53 => "roll",
            54..=58 => "flush",
            59..=62 => "interval flush",
            63..=66 => "checkpoint",
            67..=70 => "retention",
            71..=74 => "delete records",
            75..=77 => "truncate",
            78..=80 => "crash and reopen",
            _ => "group commit step",
        };
        lock(&disk.plan).operation = format!("{operation} (log end {end})");
        match operation {
            "append" | "replicated append" => {
                // A follower's fetch response holds several batches.
                let batches = match (operation, role) {
                    ("replicated append", Role::Follower) => rng.between(1, 6),
                    _ => 1,
                };
                let mut bytes = Vec::new();
                let mut next = end;
                for index in 0..batches {
                    value_seed += 1;
                    let records = rng.between(1, 3) as usize;
                    let value_bytes = rng.between(10, 220) as usize;
                    let sent = batch(records, value_bytes, value_seed, now_ms);
                    let gap = match (operation, role) {
                        ("replicated append", Role::Follower) if rng.chance(3, 4) => {
                            rng.between(1, 4)
                        }
                        ("replicated append", Role::Leader) if rng.chance(1, 2) => {
                            rng.between(1, 3)
                        }
                        _ => 0,
                    };
                    let base = next + gap;
                    next = base + records as i64;
                    // Known before the call: a cut inside it may keep the batch.
                    let mut oracle = lock(&disk.oracle);
                    oracle
                        .current()
                        .insert(base, (base + records as i64 - 1, sent.clone()));
                    if index == 0 && gap > 0 && log.segment_count() == 1 && log.size_bytes() == 0 {
                        // A log holding no batch restarts at the batch: its log start may
                        // follow (its start may lag its end after a truncation).
                        oracle.log_start_bound = oracle.log_start_bound.max(base);
                    }
                    drop(oracle);
                    let mut stored = sent;
                    lmq_storage::batch::set_base_offset(&mut stored, base);
                    lmq_storage::batch::set_partition_leader_epoch(&mut stored, 0);
                    bytes.extend_from_slice(&stored);
                }
                if operation == "append" {
                    let info = log.append(&mut bytes, 0, now_ms).unwrap();
                    assert_eq!(info.base_offset, end);
                } else {
                    log.append_replicated(&bytes, now_ms).unwrap();
                }
                log.set_high_watermark(log.log_end_offset());
            }
            "roll" => log.roll().unwrap(),
            "flush" => log.flush(now_ms).unwrap(),
            "interval flush" => log.flush_if_due(now_ms).unwrap(),
            "checkpoint" => log.checkpoint().unwrap(),
            "retention" => {
                lock(&disk.oracle).log_start_bound = end;
                log.apply_retention(now_ms).unwrap();
            }
            "delete records" => {
                let target = rng.between(log.log_start_offset(), log.high_watermark());
                let mut oracle = lock(&disk.oracle);
                // A target in a gap (replicated) moves the log start to the next batch.
                let next = oracle
                    .current()
                    .iter()
                    .find(|(_, (last, _))| *last >= target)
                    .map_or(end, |(&base, _)| base.max(target));
                oracle.log_start_bound = oracle.log_start_bound.max(next);
                drop(oracle);
                let moved = log.advance_log_start(target).unwrap();
                if std::env::var_os("LMQ_POWER_LOSS_TRACE").is_some() {
                    eprintln!("delete records to {target}: log start {moved}");
                }
            }
            "truncate" => {
                let target = rng.between(log.log_start_offset(), end);
                {
                    // Batch granular: the batch holding the target goes too, and a gap
                    // before the target with it.
                    let mut oracle = lock(&disk.oracle);
                    let current = oracle.current();
                    let cut = current.range(..target).next_back().map_or(
                        target,
                        |(&base, &(last, _))| if last >= target { base } else { last + 1 },
                    );
                    let kept: BTreeMap<_, _> =
                        current.range(..cut).map(|(k, v)| (*k, v.clone())).collect();
                    // The log ends after its last kept batch, or at the base of a segment
                    // emptied by the cut (a gap before the cut batch may stay in the log).
                    let kept_end = kept.values().next_back().map_or(cut, |(last, _)| last + 1);
                    oracle.versions.push(kept);
                    oracle.acknowledged = oracle.acknowledged.min(kept_end);
                    oracle.log_start_bound = oracle.log_start_bound.max(cut);
                }
                let new_end = log.truncate_to(target).unwrap();
                let mut oracle = lock(&disk.oracle);
                assert!(
                    oracle.acknowledged <= new_end,
                    "truncated to {new_end} (target {target}, acknowledged {})",
                    oracle.acknowledged
                );
                let current = oracle.current();
                current.retain(|&base, _| base < new_end);
            }
            "crash and reopen" => {
                // A process crash without power loss: what was written stays.
                in_flight = InFlight::None;
                drop(log);
                log = PartitionLog::open(&disk.dir, config.clone(), disk.options(), now_ms)
                    .unwrap()
                    .0;
            }
            _ => {
                in_flight = match in_flight {
                    InFlight::None => match log.pending_flush().unwrap() {
                        Some(pending) => InFlight::Taken(pending),
                        None => InFlight::None,
                    },
                    InFlight::Taken(pending) => InFlight::Synced(pending.sync()),
                    InFlight::Synced(outcome) => {
                        log.complete_flush(outcome).unwrap();
                        InFlight::None
                    }
                };
            }
        }
        if std::env::var_os("LMQ_POWER_LOSS_TRACE").is_some() {
            eprintln!(
                "{operation}: log start {} end {} recovery point {} segments {:?}",
                log.log_start_offset(),
                log.log_end_offset(),
                log.recovery_point(),
                log.segment_base_offsets()
            );
        }
        let mut oracle = lock(&disk.oracle);
        oracle.acknowledged = oracle.acknowledged.max(log.recovery_point());
        oracle.log_start_bound = oracle.log_start_bound.max(log.log_start_offset());
        drop(oracle);
        let cut_between = {
            let mut plan = lock(&disk.plan);
            plan.cuts < plan.cuts_max && plan.rng.chance(20, 100)
        };
        if cut_between {
            disk.cut_and_check(Adversary::Random, "after the operation");
        }
    }
    lock(&disk.plan).cuts
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}"))
    })
}

/// Random runs over every flush policy, with and without group commit: after each cut the
/// log holds what it acknowledged, as a run of written batches, and appends go on from its
/// end.
#[test]
fn acknowledged_records_survive_random_power_cuts() {
    let started = std::time::Instant::now();
    let (seeds, cuts_wanted): (Vec<u64>, u64) = if let Some(seed) = env_u64("LMQ_POWER_LOSS_SEED") {
        (vec![seed], 0)
    } else if let Some(count) = env_u64("LMQ_POWER_LOSS_SEEDS") {
        ((0..count).collect(), 0)
    } else {
        ((0..1_000).collect(), CUTS_DEFAULT)
    };
    let mut cuts = 0;
    let mut seeds_run = 0;
    for seed in seeds {
        cuts += run_seed(seed, CUTS_PER_SEED_MAX, Role::Leader);
        seeds_run += 1;
        if cuts_wanted > 0 && cuts >= cuts_wanted {
            break;
        }
    }
    eprintln!(
        "power loss: {seeds_run} seeds, {cuts} cuts, {:?}",
        started.elapsed()
    );
    assert!(cuts >= cuts_wanted, "only {cuts} cuts");
}

/// A follower of a compacted log: fetch responses of several batches, most after an offset
/// gap, appended into the active segment (not a segment per gap), cut by power losses before
/// random fsyncs (the gap marker's among them) and between operations, over every flush
/// policy, with and without group commit. After each cut the log keeps every acknowledged
/// batch, holds a run of written batches (recovery never cut at a real gap, nor kept a torn
/// tail or a hole after a lost one) and appends on from its end. The seeds are the leader
/// run's (`LMQ_POWER_LOSS_SEED`, `LMQ_POWER_LOSS_SEEDS`), 500 cuts by default.
#[test]
fn a_follower_of_a_compacted_log_survives_random_power_cuts() {
    let (seeds, cuts_wanted): (Vec<u64>, u64) = if let Some(seed) = env_u64("LMQ_POWER_LOSS_SEED") {
        (vec![seed], 0)
    } else if let Some(count) = env_u64("LMQ_POWER_LOSS_SEEDS") {
        ((0..count).collect(), 0)
    } else {
        ((0..1_000).collect(), CUTS_DEFAULT / 2)
    };
    let mut cuts = 0;
    let mut seeds_run = 0;
    for seed in seeds {
        cuts += run_seed(seed, CUTS_PER_SEED_MAX, Role::Follower);
        seeds_run += 1;
        if cuts_wanted > 0 && cuts >= cuts_wanted {
            break;
        }
    }
    eprintln!("follower power loss: {seeds_run} seeds, {cuts} cuts");
    assert!(cuts >= cuts_wanted, "only {cuts} cuts");
}

/// A log whose only fsyncs come from `every-batch`, cut with only what was fsynced kept.
fn worst_cut(disk: &Disk) {
    disk.cut_and_check(Adversary::Worst, "at the end");
}

fn every_batch() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4 * 1024,
        index_bytes_max: 1_024,
        flush_policy: FlushPolicy::EveryBatch,
        ..LogConfig::default()
    }
}

fn acknowledge(disk: &Disk, log: &PartitionLog, base: i64, sent: &[u8]) {
    let mut oracle = lock(&disk.oracle);
    let last = base + i64::from(BatchView::new(sent).unwrap().last_offset_delta());
    oracle.current().insert(base, (last, sent.to_vec()));
    oracle.acknowledged = oracle.acknowledged.max(log.recovery_point());
    oracle.log_start_bound = oracle.log_start_bound.max(log.log_start_offset());
}

/// A partition directory the log creates, then durable appends: a cut keeping only what was
/// fsynced must keep the directory (its parent's entry) and the appends.
#[test]
fn a_new_partition_directory_survives_a_power_cut() {
    let root = scratch_dir();
    let disk = Disk::new(root.path(), "topic-0", every_batch(), false, 0);
    let (mut log, _) = PartitionLog::open(&disk.dir, every_batch(), disk.options(), 0).unwrap();
    for seed in 0..3 {
        let sent = batch(2, 30, seed, 0);
        let info = log.append(&mut sent.clone(), 0, 0).unwrap();
        assert!(info.durability.is_on_disk());
        acknowledge(&disk, &log, info.base_offset, &sent);
    }
    worst_cut(&disk);
}

/// A replicated batch after a gap starts a new segment file when the active one is empty
/// (it replaces it); appended with `every-batch`, its records are acknowledged: a cut
/// keeping only what was fsynced must keep the new file's directory entry.
#[test]
fn a_segment_started_after_a_gap_survives_a_power_cut() {
    let root = scratch_dir();
    // The partition directory exists durably already (the root's listing is taken as
    // durable): only the segment file's entry is at stake.
    fs::create_dir(root.path().join("topic-0")).unwrap();
    let disk = Disk::new(root.path(), "topic-0", every_batch(), false, 0);
    let (mut log, _) = PartitionLog::open(&disk.dir, every_batch(), disk.options(), 0).unwrap();
    let sent = batch(2, 30, 1, 0);
    let info = log.append(&mut sent.clone(), 0, 0).unwrap();
    acknowledge(&disk, &log, info.base_offset, &sent);
    log.roll().unwrap();
    let sent = batch(2, 30, 2, 0);
    let mut bytes = sent.clone();
    lmq_storage::batch::set_base_offset(&mut bytes, 10);
    lmq_storage::batch::set_partition_leader_epoch(&mut bytes, 0);
    let info = log.append_replicated(&bytes, 0).unwrap();
    assert!(info.durability.is_on_disk());
    assert_eq!(log.segment_base_offsets(), vec![0, 10]);
    acknowledge(&disk, &log, 10, &sent);
    worst_cut(&disk);
}

/// The checker itself: a log whose `os` policy never fsyncs loses its unsynced appends in a
/// worst cut, and the check accepts that (nothing was acknowledged) but refuses a claim that
/// it was.
#[test]
fn the_checker_refuses_a_lost_acknowledged_record() {
    let root = scratch_dir();
    let config = LogConfig {
        flush_policy: FlushPolicy::Os,
        ..every_batch()
    };
    let disk = Disk::new(root.path(), "topic-0", config.clone(), false, 0);
    let (mut log, _) = PartitionLog::open(&disk.dir, config, disk.options(), 0).unwrap();
    let sent = batch(2, 30, 1, 0);
    let info = log.append(&mut sent.clone(), 0, 0).unwrap();
    assert!(!info.durability.is_on_disk());
    acknowledge(&disk, &log, info.base_offset, &sent);
    worst_cut(&disk);
    lock(&disk.oracle).acknowledged = 2;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worst_cut(&disk)));
    let message = caught.expect_err("a lost acknowledged record is caught");
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("acknowledged records lost"), "{text}");
}

/// A compacted log after a cut: it reopens, every record it holds is one written at that
/// offset, offsets increase, and every key's latest record is there (a latest tombstone may
/// be gone, and then no older value of its key is left).
fn check_compacted_image(
    dir: &Path,
    config: &LogConfig,
    model: &CompactedModel,
) -> Result<(), String> {
    let options = LogOptions {
        syncer: Arc::new(NoSync),
        ..LogOptions::default()
    };
    let listing = describe(dir);
    let (log, report) = PartitionLog::open(dir, config.clone(), options, 0)
        .map_err(|error| format!("reopen failed: {error}; files {listing}"))?;
    let context = format!("files {listing}; recovery {report:?}");
    if report.truncation.is_some() || !report.segments_dropped.is_empty() {
        return Err(format!("recovery cut a compacted log; {context}"));
    }
    let problems = log.check_indexes().map_err(|error| error.to_string())?;
    if !problems.is_empty() {
        return Err(format!("indexes: {problems:?}; {context}"));
    }
    let mut latest: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
    let mut offset = log.log_start_offset();
    let mut previous = -1;
    while offset < log.log_end_offset() {
        let result = log
            .read(offset, ALL)
            .map_err(|error| format!("read at {offset}: {error}; {context}"))?;
        let Some(region) = result.region else { break };
        let bytes = region.read_to_vec().map_err(|error| error.to_string())?;
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let total = batch_total_bytes(rest).ok_or("short batch")? as usize;
            let view = BatchView::validated(&rest[..total])
                .map_err(|error| format!("invalid batch at {offset}: {error:?}; {context}"))?;
            let records = lmq_storage::batch::parse_records(&view, view.records_bytes())
                .ok_or_else(|| format!("malformed records at {}; {context}", view.base_offset()))?;
            for record in records {
                let key = record.key.ok_or("a keyless record")?.to_vec();
                let value = record.value.map(<[u8]>::to_vec);
                if record.offset <= previous {
                    return Err(format!(
                        "offset {} after {previous}; {context}",
                        record.offset
                    ));
                }
                previous = record.offset;
                if model.get(&record.offset) != Some(&(key.clone(), value.clone())) {
                    return Err(format!(
                        "offset {} holds a record never written there; {context}",
                        record.offset
                    ));
                }
                latest.insert(key, (record.offset, value));
            }
            offset = view.last_offset() + 1;
            rest = &rest[total..];
        }
    }
    let mut expected: BTreeMap<&Vec<u8>, (i64, &Option<Vec<u8>>)> = BTreeMap::new();
    for (&offset, (key, value)) in model {
        expected.insert(key, (offset, value));
    }
    for (key, (offset, value)) in expected {
        match (latest.get(key), value) {
            (Some((found, found_value)), value) if *found == offset && found_value == value => {}
            (None, None) => {}
            (found, _) => {
                return Err(format!(
                    "key {:?}: latest written at {offset}, read {found:?}; {context}",
                    String::from_utf8_lossy(key)
                ));
            }
        }
    }
    Ok(())
}

/// Cleaner passes cut by power losses before random fsyncs (of the cleaned files, the
/// checkpoint, the directory between swap steps): after every cut the log reopens without
/// recovery cutting anything, holds only records written at their offsets, and the latest
/// record of every key.
#[test]
fn cleaner_passes_survive_random_power_cuts() {
    use lmq_storage::clean::{Cleaner, CleanerConfig, NoCodecs, Pause};
    use lmq_storage::{CleanupPolicy, CompactionConfig};

    #[derive(Debug)]
    struct Stopped;
    impl Pause for Stopped {
        fn now_ms(&self) -> i64 {
            0
        }
        fn sleep_ms(&self, _: u64) {}
    }

    let seeds = env_u64("LMQ_POWER_LOSS_SEED").map_or_else(|| (0..12).collect(), |seed| vec![seed]);
    let mut cuts = 0;
    let seeds_run = seeds.len() as u64;
    for seed in seeds {
        let mut rng = Rng(seed ^ 0xC1EA);
        let config = LogConfig {
            segment_bytes_max: rng.between(400, 1_500) as u64,
            index_interval_bytes: 128,
            flush_policy: FlushPolicy::Os,
            cleanup_policy: CleanupPolicy::COMPACT,
            compaction: CompactionConfig {
                delete_retention_ms: 100,
                ..CompactionConfig::default()
            },
            ..LogConfig::default()
        };
        let root = scratch_dir();
        let disk = Disk::new(root.path(), "compacted-0", config.clone(), false, seed);
        *lock(&disk.compacted) = Some(BTreeMap::new());
        let (mut log, _) =
            PartitionLog::open(&disk.dir, config.clone(), disk.options(), 0).unwrap();
        let mut now_ms = 0;
        for round in 0..6 {
            // Appends, all flushed: no cut here (the checker wants every record durable).
            lock(&disk.plan).cut_percent = 0;
            for index in 0..rng.between(5, 30) {
                let mut builder = lmq_storage::builder::BatchBuilder::new(0);
                let mut records = Vec::new();
                for _ in 0..rng.between(1, 3) {
                    let key = format!("k{}", rng.below(8)).into_bytes();
                    let value =
                        (!rng.chance(1, 6)).then(|| format!("{round}-{index}").into_bytes());
                    builder.push(Some(&key), value.as_deref(), 0);
                    records.push((key, value));
                }
                let mut bytes = builder.build();
                let info = log.append(&mut bytes, 0, 0).unwrap();
                let mut model = lock(&disk.compacted);
                for (offset, record) in (info.base_offset..).zip(records) {
                    model.as_mut().unwrap().insert(offset, record);
                }
            }
            log.roll().unwrap();
            log.flush(0).unwrap();
            log.set_high_watermark(log.log_end_offset());
            {
                let mut plan = lock(&disk.plan);
                plan.cut_percent = 35;
                plan.cuts_max = u64::MAX;
                plan.operation = format!("cleaner pass {round}");
            }
            now_ms += rng.between(0, 150);
            let mut cleaner = Cleaner::new(
                CleanerConfig {
                    dedupe_buffer_bytes: rng.between(4, 20) as u64 * 24,
                    ..CleanerConfig::default()
                },
                Arc::new(NoCodecs),
                Arc::new(Stopped),
            );
            // Passes until nothing is left dirty.
            for _ in 0..20 {
                let (_, _, more) = log
                    .clean_now(&mut cleaner, log.high_watermark(), now_ms)
                    .unwrap()
                    .unwrap();
                if !more {
                    break;
                }
            }
            disk.cut_and_check(Adversary::Random, "after the passes");
        }
        cuts += lock(&disk.plan).cuts;
    }
    eprintln!("cleaner power loss: {cuts} cuts");
    assert!(cuts >= 5 * seeds_run, "only {cuts} cuts");
}
