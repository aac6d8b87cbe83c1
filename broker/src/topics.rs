//! The topics this node hosts: names, ids, partitions and per-topic configs, persisted as one
//! small TOML file per topic under `<data_dir>/topics/`, with partition logs in
//! `<data_dir>/<topic>-<partition>/` as Kafka lays them out.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use lmq_storage::{FileCache, LogConfig, LogOptions, PartitionLog, StorageError, Syncer};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::partition::{IsrWakeup, Partition};
use crate::topic_config::{Checks, InvalidConfig, TopicSettings};

/// Kafka's limit on topic name length.
const TOPIC_NAME_BYTES_MAX: usize = 249;
/// A broker-side bound on partitions per topic, so a request cannot make us open millions of
/// files.
pub const PARTITIONS_MAX: i32 = 10_000;

#[derive(Debug, Error)]
pub enum TopicError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// Kafka's text, as a client gets it.
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("number of partitions {0} must be between 1 and {PARTITIONS_MAX}")]
    InvalidPartitions(i32),
    /// Kafka's message, as a client gets it.
    #[error("{0}")]
    InvalidConfig(String),
    #[error("topic {0:?} does not exist")]
    Unknown(String),
    #[error("topic has {current} partitions; it can only grow, not become {requested}")]
    InvalidPartitionCount { current: i32, requested: i32 },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("topic metadata {path}: {reason}")]
    Metadata { path: PathBuf, reason: String },
}

/// Topics that belong to the broker itself (Kafka's `Topic.isInternal`): their coordinator
/// creates them with its own settings and alone writes them; clients may not create, delete,
/// trim, grow or reconfigure them. A share-group state topic joins this list when its
/// coordinator exists.
pub const INTERNAL_TOPICS: &[&str] = &[
    crate::group::offsets::OFFSETS_TOPIC,
    TRANSACTION_STATE_TOPIC,
];

/// The transaction coordinator's state (Kafka's `__transaction_state`).
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Threads [`on_threads`] uses at most.
const THREADS_MAX: usize = 8;

/// Fewer items than this are worked on in the calling thread (a thread costs more than
/// the few fsync waits it would overlap; every metadata change takes every role again).
const THREADS_ITEMS_MIN: usize = 8;

/// `work` on every item, on up to [`THREADS_MAX`] scoped threads (each a contiguous run of
/// items), the results in the items' order: for per-partition disk work whose fsync waits
/// should overlap (creating a topic's logs, taking their roles). A panic is passed on.
pub fn on_threads<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < THREADS_ITEMS_MIN {
        return items.iter().map(work).collect();
    }
    let run = items.len().div_ceil(THREADS_MAX);
    let work = &work;
    std::thread::scope(|scope| {
        let threads: Vec<_> = items
            .chunks(run)
            .map(|run| scope.spawn(move || run.iter().map(work).collect::<Vec<R>>()))
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Kafka's rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason| TopicError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are reserved"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(invalid("it is longer than 249 characters"));
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TopicFile {
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
    /// A replica of a cluster topic (its metadata lives in the coordinator).
    #[serde(default)]
    replica: bool,
}

#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<Arc<Partition>>,
    /// The overrides as set (DescribeConfigs shows them as given).
    pub configs: BTreeMap<String, String>,
    /// The overrides parsed over the broker defaults, once per change of `configs`.
    pub settings: TopicSettings,
    /// Created from the cluster metadata (and deleted when it no longer lists it).
    pub replica: bool,
}

/// What a topic is created with.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default.
    pub partitions: i32,
    /// -1: the cluster default.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct TopicRegistry {
    data_dir: PathBuf,
    defaults: LogConfig,
    file_cache: Arc<FileCache>,
    /// Every log's fsyncs go through it (timed for the metrics).
    syncer: Arc<dyn Syncer>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Shared by every partition: wakes the task that persists ISR proposals.
    pub isr_wakeup: IsrWakeup,
}

impl From<InvalidConfig> for TopicError {
    fn from(error: InvalidConfig) -> Self {
        TopicError::InvalidConfig(error.0)
    }
}

impl TopicRegistry {
    /// Loads every topic in `data_dir`, recovering each partition log.
    pub fn load(
        data_dir: &Path,
        defaults: LogConfig,
        syncer: Arc<dyn Syncer>,
        now_ms: i64,
    ) -> Result<Self, TopicError> {
        let registry = TopicRegistry {
            syncer,
            data_dir: data_dir.to_path_buf(),
            defaults,
            file_cache: Arc::new(FileCache::default()),
            topics: RwLock::new(BTreeMap::new()),
            isr_wakeup: IsrWakeup::default(),
        };
        let topics_dir = registry.topics_dir();
        // Its name must survive a power cut with the topic files written into it.
        lmq_storage::create_dir_durably(&topics_dir, registry.syncer.as_ref())?;
        let entries =
            fs::read_dir(&topics_dir).map_err(|error| metadata_error(&topics_dir, error))?;
        let mut loaded = BTreeMap::new();
        for entry in entries {
            let path = entry
                .map_err(|error| metadata_error(&topics_dir, error))?
                .path();
            let Some(name) = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".toml"))
            else {
                continue;
            };
            let text = fs::read_to_string(&path).map_err(|error| metadata_error(&path, error))?;
            let file: TopicFile =
                toml::from_str(&text).map_err(|error| metadata_error(&path, error))?;
            let topic = registry.open_topic(name, &file, now_ms)?;
            tracing::info!(topic = name, partitions = file.partitions, "loaded topic");
            loaded.insert(name.to_string(), Arc::new(topic));
        }
        *registry
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner) = loaded;
        remove_leftover_partitions(data_dir, &registry.list());
        Ok(registry)
    }

    fn topics_dir(&self) -> PathBuf {
        self.data_dir.join("topics")
    }

    fn open_topic(&self, name: &str, file: &TopicFile, now_ms: i64) -> Result<Topic, TopicError> {
        let settings = TopicSettings::parse(&self.defaults, &file.configs, Checks::Stored)?;
        // Opening (or creating) a log waits on several fsyncs: done on threads so the waits
        // overlap (50 new offsets partitions took 1.4 s one after another).
        let indexes: Vec<i32> = (0..file.partitions).collect();
        let log = &settings.log;
        let mut partitions = Vec::with_capacity(indexes.len());
        for opened in on_threads(&indexes, |&index| {
            self.open_partition(name, index, log, now_ms)
        }) {
            partitions.push(Arc::new(opened?));
        }
        Ok(Topic {
            name: name.to_string(),
            id: file.id,
            partitions,
            configs: file.configs.clone(),
            settings,
            replica: file.replica,
        })
    }

    fn open_partition(
        &self,
        name: &str,
        index: i32,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<Partition, TopicError> {
        let dir = self.data_dir.join(format!("{name}-{index}"));
        let options = LogOptions {
            file_cache: Arc::clone(&self.file_cache),
            syncer: Arc::clone(&self.syncer),
            flush_owner: lmq_storage::FlushOwner::Caller,
        };
        let (log, report) = PartitionLog::open(&dir, config.clone(), options, now_ms)?;
        if report.truncation.is_some() || !report.segments_dropped.is_empty() {
            tracing::warn!(
                topic = name,
                partition = index,
                ?report,
                "recovered a damaged log"
            );
        }
        Ok(Partition::new(index, log, Arc::clone(&self.isr_wakeup)))
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Creates the local replica of a topic the cluster metadata defines (its id, partition
    /// count and configs were decided and validated there).
    pub fn create_replica(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let file = TopicFile {
            id,
            partitions,
            configs: configs.clone(),
            replica: true,
        };
        self.write_topic_file(name, &file)?;
        let topic = Arc::new(self.open_topic(name, &file, now_ms)?);
        topics.insert(name.to_string(), Arc::clone(&topic));
        tracing::info!(topic = name, partitions, "created topic replica");
        Ok(topic)
    }

    /// Makes a topic this node created alone a replica of the cluster topic of the same id
    /// (`cluster::join` adopts it into the metadata first).
    pub fn adopt(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        let Some(topic) = topics.get(name) else {
            return Err(TopicError::Unknown(name.to_string()));
        };
        let file = TopicFile {
            id: topic.id,
            partitions: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
            configs: topic.configs.clone(),
            replica: true,
        };
        self.write_topic_file(name, &file)?;
        let adopted = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            configs: topic.configs.clone(),
            settings: topic.settings.clone(),
            replica: true,
        });
        topics.insert(name.to_string(), Arc::clone(&adopted));
        Ok(adopted)
    }

    fn write_topic_file(&self, name: &str, file: &TopicFile) -> Result<(), TopicError> {
        let path = self.topics_dir().join(format!("{name}.toml"));
        let temporary = path.with_extension("toml.tmp");
        let text = toml::to_string(file).map_err(|error| metadata_error(&path, error))?;
        let mut handle =
            fs::File::create(&temporary).map_err(|error| metadata_error(&temporary, error))?;
        handle
            .write_all(text.as_bytes())
            .and_then(|()| handle.sync_all())
            .map_err(|error| metadata_error(&temporary, error))?;
        fs::rename(&temporary, &path).map_err(|error| metadata_error(&path, error))?;
        fs::File::open(self.topics_dir())
            .and_then(|dir| dir.sync_all())
            .map_err(|error| metadata_error(&path, error))
    }

    /// Deletes a topic: its metadata file first (the commit point: a restart no longer loads
    /// it), then its partition directories. Leftover directories after a crash in between
    /// are removed by the next load.
    pub fn delete(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        let Some(topic) = topics.remove(name) else {
            return Err(TopicError::Unknown(name.to_string()));
        };
        let path = self.topics_dir().join(format!("{name}.toml"));
        fs::remove_file(&path).map_err(|error| metadata_error(&path, error))?;
        drop(topics);
        for partition in &topic.partitions {
            if let Err(error) = partition.close() {
                tracing::warn!(topic = name, partition = partition.index, %error, "closing a deleted partition failed");
            }
            remove_partition_dir(&self.data_dir.join(format!("{name}-{}", partition.index)));
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Grows the local replica to the metadata's `total` partitions; partitions never shrink.
    pub fn add_partitions(
        &self,
        name: &str,
        total: i32,
        now_ms: i64,
    ) -> Result<Arc<Topic>, TopicError> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        let Some(topic) = topics.get(name).cloned() else {
            return Err(TopicError::Unknown(name.to_string()));
        };
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if total <= current {
            return Err(TopicError::InvalidPartitionCount {
                current,
                requested: total,
            });
        }
        if total > PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions(total));
        }
        let file = TopicFile {
            id: topic.id,
            partitions: total,
            configs: topic.configs.clone(),
            replica: topic.replica,
        };
        self.write_topic_file(name, &file)?;
        let mut partitions = topic.partitions.clone();
        for index in current..total {
            partitions.push(Arc::new(self.open_partition(
                name,
                index,
                &topic.settings.log,
                now_ms,
            )?));
        }
        let grown = Arc::new(Topic {
            name: name.to_string(),
            id: topic.id,
            partitions,
            configs: topic.configs.clone(),
            settings: topic.settings.clone(),
            replica: topic.replica,
        });
        topics.insert(name.to_string(), Arc::clone(&grown));
        tracing::info!(topic = name, from = current, to = total, "added partitions");
        Ok(grown)
    }

    /// Replaces a topic's config overrides (validated as a whole) and applies them to its
    /// logs.
    pub fn set_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        let Some(topic) = topics.get(name).cloned() else {
            return Err(TopicError::Unknown(name.to_string()));
        };
        // Set through the metadata, whose writers checked them (Kafka's checks).
        let settings = TopicSettings::parse(&self.defaults, &configs, Checks::Stored)?;
        let file = TopicFile {
            id: topic.id,
            partitions: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
            configs: configs.clone(),
            replica: topic.replica,
        };
        self.write_topic_file(name, &file)?;
        for partition in &topic.partitions {
            partition.with_log(|log| log.set_config(settings.log.clone()))?;
        }
        let updated = Arc::new(Topic {
            name: name.to_string(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            configs,
            settings,
            replica: topic.replica,
        });
        topics.insert(name.to_string(), Arc::clone(&updated));
        tracing::info!(topic = name, "updated topic configs");
        Ok(updated)
    }

    /// The broker-wide defaults topics start from.
    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// Closes every partition log cleanly (shutdown), on up to [`CLOSE_THREADS_MAX`]
    /// threads: each close is a few fsyncs, which the disk serves side by side. Blocking.
    pub fn close(&self) {
        let partitions: Vec<(String, Arc<Partition>)> = self
            .list()
            .into_iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (topic.name.clone(), Arc::clone(partition)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..CLOSE_THREADS_MAX.min(partitions.len()) {
                scope.spawn(|| {
                    while let Some((topic, partition)) =
                        partitions.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        if let Err(error) = partition.close() {
                            tracing::error!(topic, partition = partition.index, %error, "close failed");
                        }
                    }
                });
            }
        });
    }
}

/// Threads that close logs at a clean stop.
const CLOSE_THREADS_MAX: usize = 8;

/// Partition directories (`<topic>-<n>` holding a partition checkpoint) of topics that no
/// longer exist: a deletion was interrupted between its metadata and its data.
fn remove_leftover_partitions(data_dir: &Path, topics: &[Arc<Topic>]) {
    let Ok(entries) = fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let Some((topic, index)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        let known = topics
            .iter()
            .any(|known| known.name == topic && index < known.partitions.len());
        if !known && path.join(lmq_storage::STATE_FILE).exists() {
            tracing::warn!(dir = %path.display(), "removing the partition directory of a deleted topic");
            remove_partition_dir(&path);
        }
    }
}

fn remove_partition_dir(dir: &Path) {
    if let Err(error) = fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(dir = %dir.display(), %error, "removing a partition directory failed");
    }
}

fn metadata_error(path: &Path, error: impl std::fmt::Display) -> TopicError {
    TopicError::Metadata {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use lmq_storage::TimestampType;

    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn topic_configs_override_defaults_and_bad_ones_are_refused() {
        let defaults = LogConfig::default();
        let configs = BTreeMap::from([
            ("retention.ms".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), "1048576".to_string()),
            (
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            ),
        ]);
        let config = TopicSettings::parse(&defaults, &configs, Checks::Kafka)
            .unwrap()
            .log;
        assert_eq!(config.retention.retention_ms, None);
        assert_eq!(config.segment_bytes_max, 1_048_576);
        assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
        for (key, value) in [
            ("segment.bytes", "x"),
            ("cleanup.policy", "compact,none"),
            ("no.such", "1"),
        ] {
            let configs = BTreeMap::from([(key.to_string(), value.to_string())]);
            assert!(
                TopicSettings::parse(&defaults, &configs, Checks::Kafka).is_err(),
                "{key}={value}"
            );
        }
    }

    fn parsed(key: &str, value: &str) -> Result<LogConfig, TopicError> {
        let configs = BTreeMap::from([(key.to_string(), value.to_string())]);
        TopicSettings::parse(&LogConfig::default(), &configs, Checks::Kafka)
            .map(|settings| settings.log)
            .map_err(TopicError::from)
    }

    /// Kafka's `LogConfig` types and ranges: INT configs are 32-bit, `retention.ms` at least
    /// -1, `min.insync.replicas` at least 1.
    #[test]
    fn topic_configs_are_checked_against_kafkas_types_and_ranges() {
        for (key, value) in [
            ("segment.bytes", "3000000000"),
            ("max.message.bytes", "2147483648"),
            ("index.interval.bytes", "-1"),
            ("min.insync.replicas", "3000000000"),
            ("min.insync.replicas", "0"),
            ("retention.ms", "-2"),
            ("segment.ms", "0"),
            ("segment.bytes", "13"),
            ("message.timestamp.type", "createtime"),
            ("unclean.leader.election.enable", "yes"),
        ] {
            assert!(parsed(key, value).is_err(), "{key}={value} was accepted");
        }
        assert_eq!(
            parsed("retention.ms", "-1").unwrap().retention.retention_ms,
            None
        );
        assert_eq!(
            parsed("retention.bytes", "-5")
                .unwrap()
                .retention
                .retention_bytes,
            None
        );
    }

    /// As Kafka's `ConfigDef.parseType`: values are trimmed, booleans ignore case, lists are
    /// split at commas with spaces around them.
    #[test]
    fn topic_config_values_are_parsed_as_kafka_parses_them() {
        assert_eq!(
            parsed("retention.ms", " 1000 ")
                .unwrap()
                .retention
                .retention_ms,
            Some(1000)
        );
        assert_eq!(
            parsed("message.timestamp.type", " LogAppendTime")
                .unwrap()
                .timestamp_type,
            TimestampType::LogAppendTime
        );
        for value in ["FALSE", "False", " false "] {
            assert!(
                parsed("unclean.leader.election.enable", value).is_ok(),
                "{value}"
            );
        }
        assert!(parsed("unclean.leader.election.enable", "TRUE").is_err());
        assert!(parsed("cleanup.policy", "delete , delete").is_ok());
        assert!(parsed("cleanup.policy", "delete,compact").is_ok());
        assert!(parsed("cleanup.policy", "Delete").is_err());
    }

    /// Overrides an earlier LMQ stored without Kafka's ranges (it took any 64-bit number:
    /// `retention.ms=-5` meant forever, `segment.bytes` up to 4 GiB) still load with the
    /// meaning they had, so an upgraded broker opens its topics.
    #[test]
    fn overrides_stored_before_kafkas_ranges_were_checked_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let topics = dir.path().join("topics");
        fs::create_dir_all(&topics).unwrap();
        fs::write(
            topics.join("old.toml"),
            format!(
                "id = \"{}\"\npartitions = 1\n[configs]\n\"retention.ms\" = \"-5\"\n\
                 \"segment.bytes\" = \"3000000000\"\n",
                Uuid::new_v4()
            ),
        )
        .unwrap();
        let registry = TopicRegistry::load(
            dir.path(),
            LogConfig::default(),
            Arc::new(lmq_storage::OsSyncer),
            0,
        )
        .unwrap();
        let topic = registry.get("old").unwrap();
        assert_eq!(topic.settings.log.retention.retention_ms, None);
        assert_eq!(topic.settings.log.segment_bytes_max, 3_000_000_000);
        registry.close();
    }

    #[test]
    fn a_fresh_data_dir_gets_its_topics_directory_synced_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().canonicalize().unwrap();
        let syncer = Arc::new(crate::test_support::RecordingSyncer::default());
        TopicRegistry::load(&data_dir, LogConfig::default(), syncer.clone(), 0).unwrap();
        let synced = syncer.synced.lock().unwrap().clone();
        assert!(
            synced.contains(&data_dir),
            "the data directory was not fsynced after creating topics/: {synced:?}"
        );
    }

    #[test]
    fn topics_persist_across_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TopicRegistry::load(
            dir.path(),
            LogConfig::default(),
            Arc::new(lmq_storage::OsSyncer),
            0,
        )
        .unwrap();
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let created = registry
            .create_replica("orders", Uuid::new_v4(), 3, &configs, 0)
            .unwrap();
        assert_eq!(created.partitions.len(), 3);
        assert!(matches!(
            registry.create_replica("orders", Uuid::new_v4(), 3, &configs, 0),
            Err(TopicError::AlreadyExists(_))
        ));
        registry.close();
        let reloaded = TopicRegistry::load(
            dir.path(),
            LogConfig::default(),
            Arc::new(lmq_storage::OsSyncer),
            0,
        )
        .unwrap();
        let topic = reloaded.get("orders").unwrap();
        assert_eq!((topic.id, topic.partitions.len()), (created.id, 3));
        assert_eq!(
            topic.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
    }
}
