//! Prometheus metrics. Counters and histograms are updated where things happen; gauges that
//! describe state (partitions, log sizes, groups, lag, process) are refreshed at scrape time.
//! Labels stay low-cardinality: API, error, topic, partition and group, never client ids.

use std::fs::File;
use std::io;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiErrorLabels {
    pub api: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

/// What Linux nearly always answers, should `sysconf` not.
const CLOCK_TICKS_PER_SECOND_USUAL: i64 = 100;
const PAGE_BYTES_USUAL: i64 = 4096;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets: from 50 µs, doubling, 20 of them (to ~27 s).
const LATENCY_SECONDS_FIRST_BUCKET: f64 = 0.000_05;
const LATENCY_BUCKETS: u16 = 20;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        LATENCY_SECONDS_FIRST_BUCKET,
        2.0,
        LATENCY_BUCKETS,
    ))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<ApiLabels, Counter>,
    pub request_errors: Family<ApiErrorLabels, Counter>,
    pub request_duration: HistogramFamily<ApiLabels>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub records_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub records_out: Family<TopicLabels, Counter>,
    pub produce_append_duration: Histogram,
    pub fetch_wait_duration: Histogram,
    /// Times a parked fetch was woken to read its partitions again.
    pub fetch_wakeups: Counter,
    pub fsync_duration: Histogram,
    pub connections_active: Gauge,
    pub connections_accepted: Counter,
    pub connections_closed_on_error: Counter,
    pub connections_refused_per_ip: Counter,
    pub connections_timed_out: Counter,
    pub retention_deleted_segments: Counter,
    pub retention_deleted_bytes: Counter,
    pub cleaner_read_bytes: Counter,
    pub cleaner_written_bytes: Counter,
    pub cleaner_passes: Counter,
    pub cleaner_errors: Counter,
    /// Unix seconds of the last failed cleaner pass; 0 before any.
    pub cleaner_last_error_time: Gauge,
    pub cleaner_pass_duration: Histogram,
    /// Dirty ratio of each compacted log, as the cleaner last looked.
    pub cleaner_dirty_ratio: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    pub group_generation: Family<GroupLabels, Gauge>,
    // Refreshed at scrape time.
    pub partitions: Gauge,
    pub leader_partitions: Gauge,
    pub under_replicated_partitions: Gauge,
    pub offline_partitions: Gauge,
    pub log_size: Family<PartitionLabels, Gauge>,
    pub log_segments: Family<PartitionLabels, Gauge>,
    pub log_end_offset: Family<PartitionLabels, Gauge>,
    pub groups: Gauge,
    pub group_members: Family<GroupLabels, Gauge>,
    pub consumer_lag: Family<GroupPartitionLabels, Gauge>,
    pub process_cpu_seconds: Gauge<f64, AtomicU64>,
    pub process_resident_memory: Gauge,
    pub process_open_fds: Gauge,
    pub data_dir_free: Gauge,
    pub uptime_seconds: Gauge<f64, AtomicU64>,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts timing a duration for a metric (request latency, append and wait times, uptime).
/// The one place the broker reads the monotonic clock itself: a metric only reports the time
/// things took, nothing decides by it (decisions take time from the injected `Clock`).
#[allow(
    clippy::disallowed_methods,
    reason = "metrics measure real durations; no decision depends on them"
)]
pub fn stopwatch() -> Instant {
    Instant::now()
}

/// Total and available bytes of the filesystem holding `path`.
pub fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    let stats = nix::sys::statvfs::statvfs(path).ok()?;
    let total = stats.blocks().saturating_mul(stats.fragment_size());
    let available = stats
        .blocks_available()
        .saturating_mul(stats.fragment_size());
    Some((total, available))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lmq");
        let metrics = Metrics {
            requests: Family::default(),
            request_errors: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            records_in: Family::default(),
            bytes_out: Family::default(),
            records_out: Family::default(),
            produce_append_duration: latency_histogram(),
            fetch_wait_duration: latency_histogram(),
            fetch_wakeups: Counter::default(),
            fsync_duration: latency_histogram(),
            connections_active: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_closed_on_error: Counter::default(),
            connections_refused_per_ip: Counter::default(),
            connections_timed_out: Counter::default(),
            retention_deleted_segments: Counter::default(),
            retention_deleted_bytes: Counter::default(),
            cleaner_read_bytes: Counter::default(),
            cleaner_written_bytes: Counter::default(),
            cleaner_passes: Counter::default(),
            cleaner_errors: Counter::default(),
            cleaner_last_error_time: Gauge::default(),
            cleaner_pass_duration: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            cleaner_dirty_ratio: Family::default(),
            group_generation: Family::default(),
            partitions: Gauge::default(),
            leader_partitions: Gauge::default(),
            under_replicated_partitions: Gauge::default(),
            offline_partitions: Gauge::default(),
            log_size: Family::default(),
            log_segments: Family::default(),
            log_end_offset: Family::default(),
            groups: Gauge::default(),
            group_members: Family::default(),
            consumer_lag: Family::default(),
            process_cpu_seconds: Gauge::default(),
            process_resident_memory: Gauge::default(),
            process_open_fds: Gauge::default(),
            data_dir_free: Gauge::default(),
            uptime_seconds: Gauge::default(),
            started: stopwatch(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Kafka requests handled, by API",
            metrics.requests.clone(),
        );
        registry.register(
            "request_errors",
            "Error codes answered (and connections closed on bad requests), by API and error",
            metrics.request_errors.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its response, by API",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        registry.register_with_unit(
            "topic_in",
            "Record batch bytes appended, by topic",
            Unit::Bytes,
            metrics.bytes_in.clone(),
        );
        registry.register(
            "topic_records_in",
            "Records appended, by topic",
            metrics.records_in.clone(),
        );
        registry.register_with_unit(
            "topic_out",
            "Record batch bytes fetched, by topic",
            Unit::Bytes,
            metrics.bytes_out.clone(),
        );
        registry.register(
            "topic_records_out",
            "Records fetched, by topic",
            metrics.records_out.clone(),
        );
        registry.register_with_unit(
            "produce_append_duration",
            "Time to append and (by flush policy) fsync a produce to one partition",
            Unit::Seconds,
            metrics.produce_append_duration.clone(),
        );
        registry.register_with_unit(
            "fetch_wait_duration",
            "Time fetches spent waiting for min_bytes",
            Unit::Seconds,
            metrics.fetch_wait_duration.clone(),
        );
        registry.register(
            "fetch_wakeups",
            "Times a parked fetch was woken to read its partitions again",
            metrics.fetch_wakeups.clone(),
        );
        registry.register_with_unit(
            "fsync_duration",
            "Time of each fsync of log data and checkpoints",
            Unit::Seconds,
            metrics.fsync_duration.clone(),
        );
        registry.register(
            "connections_active",
            "Open client connections",
            metrics.connections_active.clone(),
        );
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            metrics.connections_accepted.clone(),
        );
        registry.register(
            "connections_closed_on_error",
            "Connections closed because of a bad or oversized request",
            metrics.connections_closed_on_error.clone(),
        );
        registry.register(
            "connections_refused_per_ip",
            "Connections closed at once because their address had connections_per_ip_max open",
            metrics.connections_refused_per_ip.clone(),
        );
        registry.register(
            "connections_timed_out",
            "Connections closed idle, with answers not taken, or with a frame late",
            metrics.connections_timed_out.clone(),
        );
        registry.register(
            "retention_deleted_segments",
            "Log segments deleted by retention or DeleteRecords",
            metrics.retention_deleted_segments.clone(),
        );
        registry.register_with_unit(
            "retention_deleted",
            "Log bytes deleted by retention or DeleteRecords",
            Unit::Bytes,
            metrics.retention_deleted_bytes.clone(),
        );
        registry.register_with_unit(
            "cleaner_read",
            "Bytes the log cleaner read",
            Unit::Bytes,
            metrics.cleaner_read_bytes.clone(),
        );
        registry.register_with_unit(
            "cleaner_written",
            "Bytes the log cleaner wrote",
            Unit::Bytes,
            metrics.cleaner_written_bytes.clone(),
        );
        registry.register(
            "cleaner_passes",
            "Cleaner passes committed",
            metrics.cleaner_passes.clone(),
        );
        registry.register(
            "cleaner_errors",
            "Cleaner passes that failed (the last error is logged and in /v1/status)",
            metrics.cleaner_errors.clone(),
        );
        registry.register_with_unit(
            "cleaner_last_error_timestamp",
            "Unix time of the last failed cleaner pass (0: none since the start)",
            Unit::Seconds,
            metrics.cleaner_last_error_time.clone(),
        );
        registry.register_with_unit(
            "cleaner_pass_duration",
            "Time of a cleaner pass",
            Unit::Seconds,
            metrics.cleaner_pass_duration.clone(),
        );
        registry.register(
            "cleaner_dirty_ratio",
            "Dirty bytes / cleanable bytes of each compacted log when the cleaner last looked",
            metrics.cleaner_dirty_ratio.clone(),
        );
        registry.register(
            "group_generation",
            "Generation of each consumer group: it grows by one per completed rebalance",
            metrics.group_generation.clone(),
        );
        registry.register(
            "partitions",
            "Partitions hosted on this node",
            metrics.partitions.clone(),
        );
        registry.register(
            "leader_partitions",
            "Partitions this node leads",
            metrics.leader_partitions.clone(),
        );
        registry.register(
            "under_replicated_partitions",
            "Partitions with fewer in-sync replicas than replicas",
            metrics.under_replicated_partitions.clone(),
        );
        registry.register(
            "offline_partitions",
            "Partitions without a leader",
            metrics.offline_partitions.clone(),
        );
        registry.register_with_unit(
            "log_size",
            "Bytes of log on disk, by partition",
            Unit::Bytes,
            metrics.log_size.clone(),
        );
        registry.register(
            "log_segments",
            "Log segments, by partition",
            metrics.log_segments.clone(),
        );
        registry.register(
            "log_end_offset",
            "Next offset to be written, by partition",
            metrics.log_end_offset.clone(),
        );
        registry.register(
            "groups",
            "Consumer groups known to the coordinator",
            metrics.groups.clone(),
        );
        registry.register(
            "group_members",
            "Members of each consumer group",
            metrics.group_members.clone(),
        );
        registry.register(
            "consumer_lag",
            "High watermark minus committed offset, by group and partition",
            metrics.consumer_lag.clone(),
        );
        registry.register_with_unit(
            "process_cpu",
            "CPU time used by the broker process",
            Unit::Seconds,
            metrics.process_cpu_seconds.clone(),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the broker process",
            Unit::Bytes,
            metrics.process_resident_memory.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the broker process",
            metrics.process_open_fds.clone(),
        );
        registry.register_with_unit(
            "data_dir_free",
            "Free space on the data directory's filesystem",
            Unit::Bytes,
            metrics.data_dir_free.clone(),
        );
        registry.register_with_unit(
            "uptime",
            "Time since the broker started",
            Unit::Seconds,
            metrics.uptime_seconds.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts one handled request and its duration.
    pub fn observe_request(&self, api: &str, started: Instant, error_codes: &[i16]) {
        let labels = ApiLabels {
            api: api.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        for &code in error_codes.iter().filter(|&&code| code != 0) {
            self.count_error(api, &error_name(code));
        }
    }

    pub fn count_error(&self, api: &str, error: &str) {
        self.request_errors
            .get_or_create(&ApiErrorLabels {
                api: api.to_string(),
                error: error.to_string(),
            })
            .inc();
    }

    /// Process figures from /proc (Linux); absent values are left as they were.
    pub fn refresh_process(&self, data_dir: &std::path::Path) {
        self.uptime_seconds.set(self.uptime().as_secs_f64());
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest)
        {
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the name.
            let ticks: u64 = [11, 12]
                .iter()
                .filter_map(|&index| {
                    fields
                        .get(index)
                        .and_then(|field| field.parse::<u64>().ok())
                })
                .sum();
            let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .unwrap_or(CLOCK_TICKS_PER_SECOND_USUAL);
            self.process_cpu_seconds
                .set(ticks as f64 / ticks_per_second as f64);
        }
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && let Some(resident_pages) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|pages| pages.parse::<i64>().ok())
        {
            let page_bytes = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .unwrap_or(PAGE_BYTES_USUAL);
            self.process_resident_memory
                .set(resident_pages * page_bytes);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.process_open_fds
                .set(i64::try_from(entries.count()).unwrap_or(i64::MAX));
        }
        if let Some((_, free)) = disk_space(data_dir) {
            self.data_dir_free
                .set(i64::try_from(free).unwrap_or(i64::MAX));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Converts the OpenMetrics exposition to the classic Prometheus text format (0.0.4) that
/// scrapers ask for without OpenMetrics in their Accept header (and that `promtool check
/// metrics` reads): counter families carry their `_total` suffix, and the `# UNIT` and
/// `# EOF` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

pub use lmq_wire::error_name;

/// Times every fsync the storage layer makes.
#[derive(Debug)]
pub struct TimedSyncer {
    pub histogram: Histogram,
}

impl lmq_storage::Syncer for TimedSyncer {
    fn sync_data(&self, file: &File) -> io::Result<()> {
        let started = stopwatch();
        let outcome = file.sync_data();
        self.histogram.observe(started.elapsed().as_secs_f64());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_labels_use_kafka_names() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(2), "CORRUPT_MESSAGE");
        assert_eq!(error_name(-999), "CODE_-999");
    }

    #[test]
    fn the_exposition_names_units_and_labels() {
        let metrics = Metrics::new();
        metrics.observe_request("Produce", stopwatch(), &[0, 3]);
        metrics
            .bytes_in
            .get_or_create(&TopicLabels {
                topic: "t".to_string(),
            })
            .inc_by(10);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("lmq_requests_total{api=\"Produce\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "lmq_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 1"
        ));
        assert!(text.contains("lmq_topic_in_bytes_total{topic=\"t\"} 10"));
        assert!(text.contains("# UNIT lmq_request_duration_seconds seconds"));
        assert!(text.ends_with("# EOF\n"));
        let classic = to_prometheus_text(&text);
        assert!(
            classic.contains("# TYPE lmq_requests_total counter"),
            "{classic}"
        );
        assert!(classic.contains("# HELP lmq_requests_total "));
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }
}
