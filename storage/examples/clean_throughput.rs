//! Cleaner throughput: writes ~200 MB of 1 KiB values over 10,000 keys into a compacted log
//! (64 MiB segments), cleans it in one pass and prints MB/s and the peak RSS, then the same
//! figures as one JSON line (what `scripts/bench.sh` records). The log goes under `$TMPDIR`.
//! `cargo run --release -p lmq-storage --example clean_throughput [MB]`

#![allow(clippy::disallowed_methods, reason = "a benchmark measures real time")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::time::Instant;

use lmq_storage::builder::BatchBuilder;
use lmq_storage::clean::{Cleaner, CleanerConfig, NoCodecs, Pause};
use lmq_storage::{CleanupPolicy, FlushPolicy, LogConfig, LogOptions, PartitionLog};

#[derive(Debug)]
struct RealClock(Instant);

impl Pause for RealClock {
    fn now_ms(&self) -> i64 {
        self.0.elapsed().as_millis() as i64
    }
    fn sleep_ms(&self, duration_ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(duration_ms));
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let megabytes: u64 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes_max: 64 * 1024 * 1024,
        flush_policy: FlushPolicy::Os,
        cleanup_policy: CleanupPolicy::COMPACT,
        ..LogConfig::default()
    };
    let (mut log, _) = PartitionLog::open(dir.path(), config, LogOptions::default(), 0).unwrap();
    let value = vec![7u8; 1024];
    let mut record = 0u64;
    while log.size_bytes() < megabytes * 1024 * 1024 {
        let mut builder = BatchBuilder::new(0);
        for _ in 0..10 {
            let key = format!("key-{}", record % 10_000);
            builder.push(Some(key.as_bytes()), Some(&value), 0);
            record += 1;
        }
        let mut bytes = builder.build();
        log.append(&mut bytes, 0, 0).unwrap();
    }
    log.roll().unwrap();
    log.flush(0).unwrap();
    log.set_high_watermark(log.log_end_offset());
    let rss_before = peak_rss_kib();
    let size = log.size_bytes();
    let mut cleaner = Cleaner::new(
        CleanerConfig::default(),
        Arc::new(NoCodecs),
        Arc::new(RealClock(Instant::now())),
    );
    let started = Instant::now();
    let (_, stats, more) = log
        .clean_now(&mut cleaner, log.high_watermark(), 0)
        .unwrap()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "log {:.1} MB, {record} records over 10,000 keys; pass {seconds:.2} s: read {:.1} MB, wrote {:.1} MB, kept {} records, {:.1} MB/s of log cleaned; more passes needed: {more}",
        size as f64 / 1e6,
        stats.bytes_read as f64 / 1e6,
        stats.bytes_written as f64 / 1e6,
        stats.records_kept,
        size as f64 / 1e6 / seconds,
    );
    println!(
        "peak RSS {:.1} MB before the pass, {:.1} MB after (offset map {:.1} MB)",
        rss_before as f64 / 1024.0,
        peak_rss_kib() as f64 / 1024.0,
        cleaner.map().memory_bytes() as f64 / 1e6
    );
    println!(
        "{{\"log_bytes\": {size}, \"records\": {record}, \"keys\": 10000, \"seconds\": {seconds:.3}, \"bytes_read\": {}, \"bytes_written\": {}, \"records_kept\": {}, \"mb_per_s\": {:.1}, \"more_passes\": {more}, \"peak_rss_mb_before\": {:.1}, \"peak_rss_mb_after\": {:.1}, \"offset_map_mb\": {:.1}}}",
        stats.bytes_read,
        stats.bytes_written,
        stats.records_kept,
        size as f64 / 1e6 / seconds,
        rss_before as f64 / 1024.0,
        peak_rss_kib() as f64 / 1024.0,
        cleaner.map().memory_bytes() as f64 / 1e6
    );
}
