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
use crate::metrics::{Metrics, TimedSyncer};
use crate::security::Authorizer;
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
    /// ACL checks; its ACLs are kept current by the cluster's watch (`cluster::acls`).
    pub authorizer: Arc<Authorizer>,
    /// The users SASL/PLAIN accepts (`[sasl] plain_users_file`).
    pub plain_users: crate::security::plain::PlainUsers,
    /// How OAUTHBEARER tokens are checked (`[sasl] oauthbearer_*`), when enabled.
    pub oauth_rules: Option<crate::security::oauthbearer::TokenRules>,
    /// What the log cleaner threads did (`cleaner.rs`), for the admin endpoint.
    pub cleaner: crate::cleaner::CleanerStatus,
}

impl Broker {
    /// Opens the data directory, recovering every partition log.
    pub fn open(config: BrokerConfig, clock: Arc<dyn Clock>) -> Result<Self, TopicError> {
        config.validate().map_err(TopicError::InvalidConfig)?;
        let authorizer = Arc::new(Authorizer::new(
            config
                .authorizer_config()
                .map_err(TopicError::InvalidConfig)?,
        ));
        let log_defaults = config.log.log_config().map_err(TopicError::InvalidConfig)?;
        let metrics = Metrics::new();
        let syncer = Arc::new(TimedSyncer {
            histogram: metrics.fsync_duration.clone(),
        });
        lmq_storage::create_dir_durably(&config.data_dir, syncer.as_ref())?;
        let cluster_id = load_or_create_cluster_id(&config.data_dir, syncer.as_ref())?;
        let topics = TopicRegistry::load(&config.data_dir, log_defaults, syncer, clock.now_ms())?;
        let groups = open_group_coordinator(&config)?;
        let plain_users = match &config.sasl.plain_users_file {
            Some(path) => crate::security::plain::PlainUsers::load(path)
                .map_err(|error| TopicError::InvalidConfig(error.to_string()))?,
            None => crate::security::plain::PlainUsers::default(),
        };
        let sasl = &config.sasl;
        let oauth_rules = match &sasl.oauthbearer_jwks_file {
            Some(path) => Some(
                crate::security::oauthbearer::TokenRules::load(
                    path,
                    sasl.oauthbearer_expected_issuer.clone(),
                    sasl.oauthbearer_expected_audience.clone(),
                    sasl.oauthbearer_sub_claim_name.clone(),
                )
                .map_err(|error| TopicError::InvalidConfig(error.to_string()))?,
            ),
            None => None,
        };
        Ok(Broker {
            plain_users,
            oauth_rules,
            config,
            topics,
            clock,
            cluster_id,
            groups,
            metrics,
            ready: AtomicBool::new(false),
            authorizer,
            cleaner: crate::cleaner::CleanerStatus::default(),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The background flushes due (every second): rolled segments, interval flushes, and an
    /// every-batch tail whose produce went away, for each partition's group commit to fsync
    /// off the append path and off the partition lock.
    pub fn flush_due(&self) -> Vec<(Arc<crate::partition::Partition>, i64)> {
        let mut due = Vec::new();
        self.for_each_partition("flush", |partition, now_ms| {
            if let Some(end_offset) = partition.background_flush_target(now_ms)? {
                due.push((Arc::clone(partition), end_offset));
            }
            Ok(())
        });
        due
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

    fn for_each_partition(
        &self,
        what: &'static str,
        mut operation: impl FnMut(
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

/// The configs `__consumer_offsets` is created with (and an older one is brought to): as
/// Kafka's, compacted (the latest record per key is what a replay needs) with
/// `offsets.topic.segment.bytes` segments; never deleted by time or size (with compaction
/// alone Kafka applies no retention either, and until the cleaner runs the log is the only
/// copy of every commit).
pub fn offsets_topic_configs(settings: &crate::config::GroupSettings) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        ("retention.bytes".to_string(), "-1".to_string()),
        (
            "segment.bytes".to_string(),
            settings.offsets_topic_segment_bytes.to_string(),
        ),
    ])
}

/// The group coordinator starts without partitions: the cluster metadata creates the
/// offsets topic on first use (`handler::find_coordinator`) and the coordinator adopts each
/// partition this broker leads (`cluster::reconcile`).
fn open_group_coordinator(config: &BrokerConfig) -> Result<GroupCoordinator, TopicError> {
    GroupCoordinator::load(config.group.coordinator_config(), Vec::new(), 0)
        .map_err(TopicError::from)
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
mod tests {
    use super::*;
    use crate::test_support::RecordingSyncer;

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
