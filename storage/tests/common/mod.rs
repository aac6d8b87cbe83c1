//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lmq_storage::batch::BatchView;
use lmq_storage::builder::BatchBuilder;
use lmq_storage::{
    FirstBatch, LogConfig, LogOptions, PartitionLog, ReadBound, ReadLimits, RecoveryReport, Syncer,
};

/// A batch of `records` records whose values are `value_bytes` long and derived from `seed`,
/// all with timestamp `timestamp_ms`.
pub fn batch(records: usize, value_bytes: usize, seed: u64, timestamp_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(timestamp_ms);
    for record in 0..records {
        let value: Vec<u8> = (0..value_bytes)
            .map(|index| (seed as usize * 31 + record * 7 + index) as u8)
            .collect();
        let key = format!("key-{seed}-{record}");
        builder.push(Some(key.as_bytes()), Some(&value), timestamp_ms);
    }
    builder.build()
}

pub fn open(dir: &Path, config: &LogConfig) -> (PartitionLog, RecoveryReport) {
    PartitionLog::open(dir, config.clone(), LogOptions::default(), 0).expect("open log")
}

pub fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// Appends `bytes` at epoch 0 and moves the high watermark to the log end, as a
/// single-node broker does once an append is acknowledged.
pub fn append(log: &mut PartitionLog, bytes: &[u8]) -> (i64, i64) {
    let mut owned = bytes.to_vec();
    let info = log.append(&mut owned, 0, 0).expect("append");
    log.set_high_watermark(log.log_end_offset());
    (info.base_offset, info.last_offset)
}

pub const ALL: ReadLimits = ReadLimits {
    max_bytes: u64::MAX,
    bound: ReadBound::LogEnd,
    first_batch: FirstBatch::Whole,
};

/// Every batch from the log start to the log end as `(base offset, bytes)`, reading one
/// region at a time as a consumer would.
pub fn read_all(log: &PartitionLog) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let result = log.read(offset, ALL).expect("read");
        let region = result.region.expect("a region below the log end");
        let bytes = region.read_to_vec().expect("read region");
        let batches = split(&bytes);
        assert!(!batches.is_empty());
        for (base, batch) in batches {
            offset = BatchView::new(&batch).unwrap().last_offset() + 1;
            out.push((base, batch));
        }
    }
    out
}

/// Splits region bytes into `(base offset, batch bytes)`, checking each CRC.
pub fn split(mut bytes: &[u8]) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let total = lmq_storage::batch::batch_total_bytes(bytes).unwrap() as usize;
        let view = BatchView::validated(&bytes[..total]).expect("valid batch in a read");
        out.push((view.base_offset(), bytes[..total].to_vec()));
        bytes = &bytes[total..];
    }
    out
}

/// The batch as a producer sent it: base offset 0 and epoch -1, to compare stored bytes with
/// what was appended.
pub fn as_sent(stored: &[u8]) -> Vec<u8> {
    let mut bytes = stored.to_vec();
    lmq_storage::batch::set_base_offset(&mut bytes, 0);
    lmq_storage::batch::set_partition_leader_epoch(&mut bytes, -1);
    bytes
}

/// Counts fsyncs and fails every one while `failing` is set, like a disk returning EIO.
#[derive(Debug, Default)]
pub struct FlakySyncer {
    pub failing: AtomicBool,
    pub calls: AtomicUsize,
}

impl Syncer for FlakySyncer {
    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected EIO"));
        }
        file.sync_data()
    }
}
