//! Append and sequential read throughput of a partition log: 1 KiB records in ~16 KiB
//! batches, with `FlushPolicy::Os` and `FlushPolicy::EveryBatch`.
//!
//! `cargo bench -p lmq-storage` runs it; `scripts/storage-bench.sh` runs it and compares the
//! figures with this disk's raw sequential write. Data goes under `LMQ_BENCH_DIR` (default:
//! the system temp dir), which should be on the filesystem being measured.

// Benchmark set-up: a failure to set up is a failed run.
#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures real elapsed time"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lmq_storage::builder::BatchBuilder;
use lmq_storage::{
    FirstBatch, FlushPolicy, LogConfig, LogOptions, PartitionLog, ReadBound, ReadLimits,
    RetentionPolicy,
};

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;
/// Data kept for the read benchmark.
const READ_LOG_BYTES: u64 = 512 * 1024 * 1024;

fn bench_dir() -> tempfile::TempDir {
    let root = std::env::var_os("LMQ_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&root).unwrap();
    tempfile::tempdir_in(root).unwrap()
}

/// A batch of incompressible-looking 1 KiB values, as a producer would send.
fn producer_batch() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for _ in 0..RECORDS_PER_BATCH {
        let value: Vec<u8> = (0..RECORD_BYTES)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        builder.push(None, Some(&value), 1_700_000_000_000);
    }
    builder.build()
}

fn config(flush_policy: FlushPolicy) -> LogConfig {
    LogConfig {
        flush_policy,
        retention: RetentionPolicy {
            retention_ms: None,
            retention_bytes: None,
        },
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let template = producer_batch();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(template.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for (name, policy) in [
        ("os", FlushPolicy::Os),
        ("every_batch", FlushPolicy::EveryBatch),
    ] {
        let dir = bench_dir();
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                let (mut log, _) =
                    PartitionLog::open(dir.path(), config(policy), LogOptions::default(), 0)
                        .unwrap();
                // The buffer is reused: append rewrites only the base offset and epoch, which
                // lie outside the CRC.
                let mut batch = template.clone();
                let start = Instant::now();
                for _ in 0..iterations {
                    log.append(&mut batch, 0, 0).unwrap();
                }
                let elapsed = start.elapsed();
                // Start the next sample empty, outside the timed part.
                log.truncate_fully_and_start_at(0).unwrap();
                elapsed
            });
        });
    }
    group.finish();
}

fn sequential_read(c: &mut Criterion) {
    let dir = bench_dir();
    let (mut log, _) = PartitionLog::open(
        dir.path(),
        config(FlushPolicy::Os),
        LogOptions::default(),
        0,
    )
    .unwrap();
    let mut batch = producer_batch();
    while log.size_bytes() < READ_LOG_BYTES {
        log.append(&mut batch, 0, 0).unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    let limits = ReadLimits {
        max_bytes: 1024 * 1024,
        bound: ReadBound::HighWatermark,
        first_batch: FirstBatch::Whole,
    };
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(log.size_bytes()));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("sequential_1mib_fetches", |bencher| {
        let mut buffer = Vec::with_capacity(2 * 1024 * 1024);
        bencher.iter(|| {
            let mut offset = 0;
            while offset < log.log_end_offset() {
                let region = log.read(offset, limits).unwrap().region.unwrap();
                buffer.resize(region.length as usize, 0);
                std::os::unix::fs::FileExt::read_exact_at(
                    &*region.file,
                    &mut buffer,
                    region.position,
                )
                .unwrap();
                offset += (region.length / batch.len() as u64 * RECORDS_PER_BATCH as u64) as i64;
            }
        });
    });
    group.finish();
}

criterion_group!(benches, append, sequential_read);
criterion_main!(benches);
