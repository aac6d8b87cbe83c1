//! The state one node serves from: config, topics, clock, groups and metrics. (Long-polling
//! fetches wait on their partitions' own signals, `Partition::watch`.)

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::clock::Clock;
use std::collections::BTreeMap;

use std::sync::atomic::AtomicBool;

use crate::config::BrokerConfig;
use crate::group::GroupCoordinator;
use crate::metrics::{GroupLabels, GroupPartitionLabels, Metrics, PartitionLabels, TimedSyncer};
use crate::topics::{TopicError, TopicRegistry};

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub topics: TopicRegistry,
    pub clock: Arc<dyn Clock>,
    pub cluster_id: String,
    pub groups: GroupCoordinator,
    pub metrics: Metrics,
    /// Set once the listener serves: logs are recovered and requests are answered.
    pub ready: AtomicBool,
    /// The replicated cluster this broker joined (`None`: a single node).
    cluster: std::sync::OnceLock<Arc<crate::cluster::ClusterNode>>,
}

/// `producer.id.expiration.ms`: idle idempotent producers are forgotten after a day.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

impl Broker {
    /// Opens the data directory, recovering every partition log.
    pub fn open(config: BrokerConfig, clock: Arc<dyn Clock>) -> Result<Self, TopicError> {
        config.validate().map_err(TopicError::InvalidConfig)?;
        let log_defaults = config.log.log_config().map_err(TopicError::InvalidConfig)?;
        let metrics = Metrics::new();
        let syncer = Arc::new(TimedSyncer {
            histogram: metrics.fsync_duration.clone(),
        });
        lmq_storage::create_dir_durably(&config.data_dir, syncer.as_ref())?;
        let cluster_id = load_or_create_cluster_id(&config.data_dir, syncer.as_ref())?;
        let topics = TopicRegistry::load(&config.data_dir, log_defaults, syncer, clock.now_ms())?;
        let groups = open_group_coordinator(&config)?;
        Ok(Broker {
            config,
            topics,
            clock,
            cluster_id,
            groups,
            metrics,
            ready: AtomicBool::new(false),
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// The cluster id clients see: the replicated cluster's, else this data dir's.
    pub fn cluster_id(&self) -> String {
        self.cluster()
            .map_or_else(|| self.cluster_id.clone(), |node| node.cluster_id.clone())
    }

    /// The cluster this broker serves in, once it joined one.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::ClusterNode>> {
        self.cluster.get()
    }

    pub(crate) fn set_cluster(&self, node: Arc<crate::cluster::ClusterNode>) {
        let _ = self.cluster.set(node);
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Interval flushes for every partition (every second).
    pub fn flush_due(&self) {
        self.for_each_partition("flush", |partition, now_ms| {
            partition.flush_if_due(now_ms)?;
            // Rolled segments (and an every-batch tail whose produce went away) go to disk off
            // the append path, on the blocking pool.
            if let Some(end_offset) = partition.background_flush_target()? {
                let partition = Arc::clone(partition);
                tokio::spawn(async move {
                    if let Err(error) = partition.flush_to(end_offset).await {
                        tracing::error!(partition = partition.index, %error, "flushing rolled segments failed");
                    }
                });
            }
            Ok(())
        });
    }

    /// Retention and checkpoints for every partition (every minute).
    pub fn maintain(&self) {
        self.for_each_partition("retention", |partition, now_ms| {
            let outcome = partition.maintain(now_ms)?;
            self.metrics
                .retention_deleted_segments
                .inc_by(outcome.deleted_segments.len() as u64);
            self.metrics
                .retention_deleted_bytes
                .inc_by(outcome.deleted_bytes);
            Ok(())
        });
    }

    /// Brings the state gauges up to date; the admin endpoint calls it before each scrape.
    pub fn refresh_metrics(&self) {
        let metrics = &self.metrics;
        metrics.refresh_process(&self.config.data_dir);
        metrics.log_size.clear();
        metrics.log_segments.clear();
        metrics.log_end_offset.clear();
        let mut partitions = 0i64;
        let mut high_watermarks = std::collections::HashMap::new();
        for topic in self.topics.list() {
            for partition in &topic.partitions {
                partitions += 1;
                let labels = PartitionLabels {
                    topic: topic.name.clone(),
                    partition: partition.index.to_string(),
                };
                if let Ok((size_bytes, segments, log_end_offset)) = partition.log_stats() {
                    metrics
                        .log_size
                        .get_or_create(&labels)
                        .set(i64::try_from(size_bytes).unwrap_or(i64::MAX));
                    metrics
                        .log_segments
                        .get_or_create(&labels)
                        .set(i64::try_from(segments).unwrap_or(i64::MAX));
                    metrics
                        .log_end_offset
                        .get_or_create(&labels)
                        .set(log_end_offset);
                }
                if let Ok(offsets) = partition.offsets() {
                    high_watermarks.insert(
                        (topic.name.clone(), partition.index),
                        offsets.high_watermark,
                    );
                }
            }
        }
        // One node: it leads every partition it hosts and every replica is in sync.
        metrics.partitions.set(partitions);
        metrics.leader_partitions.set(partitions);
        metrics.under_replicated_partitions.set(0);
        metrics.offline_partitions.set(0);
        metrics.group_members.clear();
        metrics.group_generation.clear();
        metrics.consumer_lag.clear();
        let groups = self.groups.list();
        metrics
            .groups
            .set(i64::try_from(groups.len()).unwrap_or(i64::MAX));
        for (group_id, _, _) in groups {
            let Some(group) = self.groups.describe(&group_id) else {
                continue;
            };
            let labels = GroupLabels {
                group: group_id.clone(),
            };
            metrics
                .group_members
                .get_or_create(&labels)
                .set(i64::try_from(group.members.len()).unwrap_or(i64::MAX));
            metrics
                .group_generation
                .get_or_create(&labels)
                .set(i64::from(group.generation_id));
            for (topic, partition, committed) in self.groups.fetch_offsets(&group_id, None) {
                let (Some(committed), Some(high_watermark)) =
                    (committed, high_watermarks.get(&(topic.clone(), partition)))
                else {
                    continue;
                };
                let labels = GroupPartitionLabels {
                    group: group_id.clone(),
                    topic,
                    partition: partition.to_string(),
                };
                metrics
                    .consumer_lag
                    .get_or_create(&labels)
                    .set((high_watermark - committed.offset).max(0));
            }
        }
    }

    fn for_each_partition(
        &self,
        what: &'static str,
        operation: impl Fn(
            &Arc<crate::partition::Partition>,
            i64,
        ) -> Result<(), lmq_storage::StorageError>,
    ) {
        let now_ms = self.now_ms();
        for topic in self.topics.list() {
            for partition in &topic.partitions {
                // A log poisoned by an I/O failure is the reopening task's (`reopen.rs`),
                // which also runs its retention; here it would only fail every second.
                if partition.awaits_reopen() {
                    continue;
                }
                if let Err(error) = operation(partition, now_ms) {
                    tracing::error!(topic = topic.name, partition = partition.index, %error, "log {what} failed");
                }
            }
        }
    }

    /// Flushes and closes every log: the next start takes the fast path.
    pub fn close(&self) {
        self.topics.close();
    }
}

/// The configs of the offsets topic: its records are never deleted by time (without
/// compaction they are the only copy).
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("retention.ms".to_string(), "-1".to_string()),
        ("retention.bytes".to_string(), "-1".to_string()),
        ("segment.bytes".to_string(), (100 * 1024 * 1024).to_string()),
    ])
}

/// The group coordinator starts without partitions: the cluster metadata creates the
/// offsets topic on first use (`handler::find_coordinator`) and the coordinator adopts each
/// partition this broker leads (`cluster::reconcile`).
fn open_group_coordinator(config: &BrokerConfig) -> Result<GroupCoordinator, TopicError> {
    GroupCoordinator::load(config.group.coordinator_config(), Vec::new()).map_err(TopicError::from)
}

/// The cluster id, made once and kept in the data directory so it survives restarts.
fn load_or_create_cluster_id(
    data_dir: &Path,
    syncer: &dyn lmq_storage::Syncer,
) -> Result<String, TopicError> {
    let path = data_dir.join("cluster_id");
    let error = |error: std::io::Error| TopicError::Metadata {
        path: path.clone(),
        reason: error.to_string(),
    };
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(read) if read.kind() == std::io::ErrorKind::NotFound => {}
        Err(read) => return Err(error(read)),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    // Temporary file, fsync, rename, directory fsync: a power cut never leaves an empty or
    // half-written id (which would make a new id and a new cluster on restart).
    lmq_storage::write_atomically(&path, id.as_bytes(), syncer)?;
    Ok(id)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
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
            let path = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
            self.synced.lock().unwrap().push(path);
            Ok(())
        }
    }

    #[test]
    fn the_cluster_id_is_written_by_rename_and_synced() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().canonicalize().unwrap();
        let syncer = RecordingSyncer::default();
        let id = load_or_create_cluster_id(&data_dir, &syncer).unwrap();
        let synced = syncer.synced.lock().unwrap().clone();
        // The id is fsynced under a temporary name, renamed, then the directory fsynced: a
        // power cut leaves the old file or the whole new one, never an empty one.
        assert_eq!(
            synced,
            vec![data_dir.join("cluster_id.tmp"), data_dir.clone()],
            "fsyncs of the cluster id"
        );
        assert_eq!(fs::read_to_string(data_dir.join("cluster_id")).unwrap(), id);
        assert!(!data_dir.join("cluster_id.tmp").exists());
        assert_eq!(load_or_create_cluster_id(&data_dir, &syncer).unwrap(), id);
    }
}
