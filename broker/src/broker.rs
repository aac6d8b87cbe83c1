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
    /// The transaction coordinator of the `__transaction_state` partitions this broker
    /// leads; its markers go out through `markers`.
    pub transactions: crate::txn::coordinator::TxnCoordinator,
    /// The marker channel the cluster's sending task drains (`cluster::markers`).
    pub markers: Arc<crate::txn::markers::MarkerChannel>,
    pub metrics: Metrics,
    /// Set once the listener serves: logs are recovered and requests are answered.
    pub ready: AtomicBool,
    /// ACL checks; its ACLs are kept current by the cluster's watch (`cluster::acls`).
    pub authorizer: Arc<Authorizer>,
    /// The users SASL/PLAIN accepts (`[sasl] plain_users_file`).
    pub plain_users: crate::security::plain::PlainUsers,
    /// How OAUTHBEARER tokens are checked (`[sasl] oauthbearer_*`), when enabled; with a
    /// JWKS URL its keys are kept current by `security::jwks::keep_fetched`.
    pub oauth_rules: Option<Arc<crate::security::oauthbearer::TokenRules>>,
    /// A replacement for the transaction coordinator's check of transactional produces
    /// (KIP-890; `cluster::txn_verify` when unset), for tests of the partition side alone.
    pub txn_verifier: std::sync::OnceLock<Arc<dyn crate::txn_hooks::TxnVerifier>>,
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
        let markers = Arc::new(crate::txn::markers::MarkerChannel::default());
        let transactions = open_transaction_coordinator(&config, Arc::clone(&markers));
        let plain_users = match &config.sasl.plain_users_file {
            Some(path) => crate::security::plain::PlainUsers::load(path)
                .map_err(|error| TopicError::InvalidConfig(error.to_string()))?,
            None => crate::security::plain::PlainUsers::default(),
        };
        let sasl = &config.sasl;
        let token_checks = || crate::security::oauthbearer::TokenChecks {
            issuer: sasl.oauthbearer_expected_issuer.clone(),
            audience: sasl.oauthbearer_expected_audience.clone(),
            subject_claim: sasl.oauthbearer_sub_claim_name.clone(),
        };
        let oauth_rules = match (&sasl.oauthbearer_jwks_file, &sasl.oauthbearer_jwks_url) {
            (Some(path), _) => Some(Arc::new(
                crate::security::oauthbearer::TokenRules::load(path, token_checks())
                    .map_err(|error| TopicError::InvalidConfig(error.to_string()))?,
            )),
            // The keys come with the first fetch (`security::jwks::keep_fetched`).
            (None, Some(_)) => Some(Arc::new(
                crate::security::oauthbearer::TokenRules::without_keys(token_checks()),
            )),
            (None, None) => None,
        };
        Ok(Broker {
            plain_users,
            oauth_rules,
            config,
            topics,
            clock,
            cluster_id,
            groups,
            transactions,
            markers,
            metrics,
            ready: AtomicBool::new(false),
            authorizer,
            txn_verifier: std::sync::OnceLock::new(),
            cleaner: crate::cleaner::CleanerStatus::default(),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// What the marker channel heard from a partition leader, told to the transaction
    /// coordinator. A marker refused for good changes nothing: the transaction stays
    /// prepared until its state partition's next owner loads it and sends its markers again.
    pub fn marker_outcome(&self, outcome: crate::txn::markers::MarkerOutcome) {
        if let crate::txn::markers::MarkerOutcome::Written {
            transactional_id,
            producer_id,
            producer_epoch,
            topic,
            partition,
        } = outcome
        {
            self.transactions.marker_written(
                &transactional_id,
                crate::txn::state::ProducerIdAndEpoch {
                    producer_id,
                    producer_epoch,
                },
                &crate::txn::TopicPartition::new(&topic, partition),
                self.now_ms(),
            );
        }
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

/// The configs `__transaction_state` is created with, as Kafka's `TransactionLog`: compacted
/// (the latest state per transactional id is what a replay needs), its own min ISR and
/// segment size, never an unclean leader, uncompressed (the records are small).
pub fn transaction_state_topic_configs(config: &BrokerConfig) -> BTreeMap<String, String> {
    let (_, min_isr) = config.transaction_state_replication();
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("compression.type".to_string(), "uncompressed".to_string()),
        ("min.insync.replicas".to_string(), min_isr.to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        ("retention.bytes".to_string(), "-1".to_string()),
        (
            "segment.bytes".to_string(),
            config.transactions.state_log_segment_bytes.to_string(),
        ),
        (
            "unclean.leader.election.enable".to_string(),
            "false".to_string(),
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

/// The transaction coordinator starts without partitions, like the group coordinator: the
/// first FindCoordinator for a transactional id creates `__transaction_state` and each
/// partition this broker leads is loaded (`cluster::reconcile`). Transaction version 1
/// (flexible state records, no epoch bump per transaction): LMQ does not advertise the
/// `transaction.version` feature, so clients run the protocol before KIP-890 part 2.
fn open_transaction_coordinator(
    config: &BrokerConfig,
    markers: Arc<crate::txn::markers::MarkerChannel>,
) -> crate::txn::coordinator::TxnCoordinator {
    use crate::txn::coordinator::{TxnCoordinator, txn_config};
    let settings = txn_config(&config.transactions, crate::txn::TransactionVersion::V1);
    TxnCoordinator::new(
        settings,
        Box::new(move |request| markers.send(crate::txn::markers::MarkerJob::from(request))),
    )
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
