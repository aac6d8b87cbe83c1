//! The replicated cluster (`lmq serve --consul`): this broker's registration, its view of
//! the cluster (metadata document, live brokers, controller), and the tasks that keep the
//! local partitions in the roles that view gives them. Rules live in pure modules
//! (`metadata`, `crate::replication`); this module and its tasks are the I/O edge.
//!
//! Invariants:
//! - The metadata document changes only by compare-and-set (`store`); the controller's writes
//!   are also fenced by its leadership token.
//! - A leader acts on an ISR change only after it is persisted (`replication`, KIP-497), so
//!   a newly elected leader (always from the persisted ISR) has every acknowledged record.
//! - Every leader change bumps the leader epoch; followers and clients with another epoch are
//!   refused (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH) and followers truncate diverging
//!   history by epoch before fetching on.

pub mod controller;
mod fetcher;
pub mod identity;
pub mod metadata;
mod producer_ids;
mod reassign;
mod reconcile;
pub mod store;
mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use lmq_coord::{
    BrokerInfo, BrokerRegistration, CoordResult, Coordinator, EmbeddedStore, HealthCheck, Version,
};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::partition::IsrProposal;
use crate::replication::{Assignment, ReplicationConfig};
use metadata::{ClusterMetadata, LiveBroker, MetadataError, TopicSpec};
use store::StoreError;

/// The coordinator role the controller is elected for.
pub const CONTROLLER_ROLE: &str = "controller";

/// What this broker knows of the cluster, replaced as a whole on every change.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub metadata: ClusterMetadata,
    /// The coordinator's version of `metadata` (0: none yet): older documents arriving late
    /// (a watch behind this broker's own write) are ignored.
    pub metadata_version: u64,
    /// Live (healthy) brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// The controller's id, -1 while none is elected.
    pub controller: i32,
}

impl ClusterView {
    pub fn live_ids(&self) -> BTreeSet<i32> {
        self.brokers.keys().copied().collect()
    }

    pub fn live_brokers(&self) -> Vec<LiveBroker> {
        self.brokers
            .iter()
            .map(|(&id, info)| LiveBroker {
                id,
                rack: info.rack.clone(),
            })
            .collect()
    }
}

/// An ISR change a local leader wants persisted.
#[derive(Debug)]
struct IsrRequest {
    topic: String,
    partition: i32,
    proposal: IsrProposal,
}

#[derive(Debug)]
pub struct ClusterNode {
    pub node_id: i32,
    /// Shared by every broker of the cluster (kept in the coordinator).
    pub cluster_id: String,
    /// What brokers prove they are brokers of this cluster with (`identity`), from the
    /// coordinator.
    replication_secret: String,
    pub coordinator: Arc<dyn Coordinator>,
    view: RwLock<Arc<ClusterView>>,
    /// Bumped after every view change, so the controller and the fetchers re-check.
    changes: watch::Sender<u64>,
    isr_requests: mpsc::UnboundedSender<IsrRequest>,
    /// Varies where replica assignment starts, so leaders spread over topics.
    seed: AtomicUsize,
    /// One reconciliation at a time (the metadata watch and local admin requests both run
    /// one).
    reconciling: std::sync::Mutex<()>,
    /// The leadership lease (monotonic): see [`ClusterNode::may_lead`].
    started: std::time::Instant,
    /// When the last successful round trip to the coordinator was sent.
    contact_ms: AtomicU64,
    lease_ms: u64,
    /// Producer ids: this broker's block, and what the cluster handed out.
    producer_ids: producer_ids::ProducerIds,
}

impl ClusterNode {
    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this broker may acknowledge writes as a leader: only while its last
    /// successful round trip to the coordinator was sent less than half its registration TTL
    /// ago. Cut off from Consul (or stood still: SIGSTOP, a VM pause), it stops before its
    /// registration can expire and the controller can elect other leaders, and it leads again
    /// only after re-reading the metadata (`tasks::keep_contact`).
    pub fn may_lead(&self) -> bool {
        let silent = self
            .monotonic_ms()
            .saturating_sub(self.contact_ms.load(Ordering::Acquire));
        silent <= self.lease_ms
    }

    pub fn view(&self) -> Arc<ClusterView> {
        Arc::clone(&self.view.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn update_view(&self, change: impl FnOnce(&mut ClusterView)) {
        let mut guard = self.view.write().unwrap_or_else(PoisonError::into_inner);
        let mut view = (**guard).clone();
        change(&mut view);
        *guard = Arc::new(view);
        drop(guard);
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// How many times the view changed (tasks wake on each change); an idle cluster's stays
    /// still.
    pub fn view_generation(&self) -> u64 {
        *self.changes.borrow()
    }

    /// The SASL token this broker proves itself with to the brokers it fetches from.
    pub fn replica_token(&self) -> Vec<u8> {
        identity::token(self.node_id, &self.replication_secret)
    }

    /// The broker a replica fetcher's token proves (whether it replicates a partition is the
    /// replication state's business).
    pub fn verify_replica(&self, token: &[u8]) -> Option<i32> {
        identity::verify(token, &self.replication_secret)
    }

    /// Hands an ISR proposal of a local leader to the task that persists it.
    pub fn propose_isr(&self, topic: &str, partition: i32, proposal: IsrProposal) {
        let _ = self.isr_requests.send(IsrRequest {
            topic: topic.to_string(),
            partition,
            proposal,
        });
    }

    /// Creates a topic in the cluster metadata (CreateTopics, auto-creation) and applies it
    /// locally before returning, so this broker's next Metadata answer has it.
    pub async fn create_topic(
        &self,
        broker: &Broker,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let view = self.view();
        let live = view.live_brokers();
        let partitions = if partitions == -1 {
            broker.config.default_partitions
        } else {
            partitions
        };
        let partitions = usize::try_from(partitions).unwrap_or(0);
        let factor = if replication_factor == -1 {
            broker.config.cluster.default_replication_factor
        } else {
            replication_factor
        };
        let id = Uuid::new_v4();
        let seed = self.seed.fetch_add(1, Ordering::Relaxed);
        let (metadata, version) = store::update(&*self.coordinator, None, |metadata| {
            let spec = TopicSpec {
                id,
                partitions,
                replication_factor: factor,
                configs: configs.clone(),
            };
            metadata.create_topic(name, spec, &live, seed)?;
            Ok(true)
        })
        .await?;
        self.apply_metadata(broker, metadata, version);
        Ok(())
    }

    pub async fn delete_topic(&self, broker: &Broker, name: &str) -> Result<(), StoreError> {
        let (metadata, version) = store::update(&*self.coordinator, None, |metadata| {
            metadata
                .topics
                .remove(name)
                .map(|_| true)
                .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))
        })
        .await?;
        self.apply_metadata(broker, metadata, version);
        Ok(())
    }

    pub async fn add_partitions(
        &self,
        broker: &Broker,
        name: &str,
        total: i32,
    ) -> Result<(), StoreError> {
        let live = self.view().live_brokers();
        let seed = self.seed.fetch_add(1, Ordering::Relaxed);
        let total = usize::try_from(total).unwrap_or(0);
        let (metadata, version) = store::update(&*self.coordinator, None, |metadata| {
            metadata.add_partitions(name, total, &live, seed)?;
            Ok(true)
        })
        .await?;
        self.apply_metadata(broker, metadata, version);
        Ok(())
    }

    pub async fn set_topic_configs(
        &self,
        broker: &Broker,
        name: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let (metadata, version) = store::update(&*self.coordinator, None, |metadata| {
            let topic = metadata
                .topics
                .get_mut(name)
                .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
            let changed = topic.configs != *configs;
            topic.configs = configs.clone();
            Ok(changed)
        })
        .await?;
        self.apply_metadata(broker, metadata, version);
        Ok(())
    }

    /// Starts (or, with `None`, cancels) replica moves; the controller completes each once
    /// its new replicas are in sync. Returns each partition's outcome, in request order.
    pub async fn reassign(
        &self,
        broker: &Broker,
        moves: &[(String, i32, Option<Vec<i32>>)],
        allow_factor_change: bool,
    ) -> Result<Vec<Result<(), MetadataError>>, StoreError> {
        let live = self.view().live_ids();
        let mut outcomes = Vec::new();
        let (metadata, version) = store::update(&*self.coordinator, None, |metadata| {
            outcomes.clear();
            let mut changed = false;
            for (topic, partition, target) in moves {
                let outcome = metadata.reassign(
                    topic,
                    *partition,
                    target.as_deref(),
                    allow_factor_change,
                    &live,
                );
                changed |= outcome.as_ref().is_ok_and(|changed| *changed);
                outcomes.push(outcome.map(|_| ()));
            }
            Ok(changed)
        })
        .await?;
        self.apply_metadata(broker, metadata, version);
        Ok(outcomes)
    }

    /// A producer id unique in the cluster, from blocks reserved in the coordinator.
    pub async fn allocate_producer_id(&self) -> Result<i64, StoreError> {
        self.producer_ids.allocate(&*self.coordinator).await
    }

    /// The end of the producer ids the cluster handed out (every id below it was), fresh
    /// enough to judge `producer_id`: re-read from the coordinator when `producer_id` is not
    /// below this broker's copy.
    pub async fn producer_ids_end(&self, producer_id: i64) -> Result<i64, StoreError> {
        self.producer_ids
            .end_covering(&*self.coordinator, producer_id)
            .await
    }

    /// This broker's copy of that end, without asking the coordinator.
    pub fn producer_ids_end_known(&self) -> i64 {
        self.producer_ids.end_known()
    }

    /// Takes a metadata document as the current one, unless a newer one is already, and
    /// brings local partitions in line.
    fn apply_metadata(&self, broker: &Broker, metadata: ClusterMetadata, version: Option<Version>) {
        let _one_at_a_time = self
            .reconciling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let version = version.map_or(0, |version| version.0);
        // Only a newer document changes the view: a change wakes the controller, which then
        // applies the document it read, so re-announcing the same one would never let it rest.
        if version > self.view().metadata_version {
            self.update_view(|view| {
                view.metadata = metadata;
                view.metadata_version = version;
            });
        }
        reconcile::apply(broker, self);
    }

    /// This broker's log of a partition it leads failed: gives the leadership to another
    /// live in-sync replica through the metadata (see
    /// [`ClusterMetadata::resign_leadership`]) and applies the outcome, so this broker
    /// follows. Returns whether the leadership moved (not when no other replica is in sync).
    pub async fn resign_leadership(
        &self,
        broker: &Broker,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
    ) -> Result<bool, StoreError> {
        let live = self.view().live_ids();
        let mut moved = false;
        let (metadata, version) = store::update(&*self.coordinator, None, |metadata| {
            moved =
                metadata.resign_leadership(topic, partition, self.node_id, leader_epoch, &live)?;
            Ok(moved)
        })
        .await?;
        if moved {
            self.apply_metadata(broker, metadata, version);
        }
        Ok(moved)
    }

    /// Applies the current metadata again, e.g. to a partition whose log was reopened and
    /// which forgot its role.
    pub fn reapply_metadata(&self, broker: &Broker) {
        let _one_at_a_time = self
            .reconciling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        reconcile::apply(broker, self);
    }

    /// The replication settings of a topic: its `min.insync.replicas` or the broker's.
    pub fn replication_config(
        broker: &Broker,
        configs: &BTreeMap<String, String>,
    ) -> ReplicationConfig {
        ReplicationConfig {
            replica_lag_time_max_ms: broker.config.cluster.replica_lag_time_max_ms,
            min_insync_replicas: configs
                .get("min.insync.replicas")
                .and_then(|value| value.parse().ok())
                .unwrap_or(broker.config.cluster.min_insync_replicas),
        }
    }
}

/// The partition's assignment in the form the replication state machine takes.
pub fn assignment_of(state: &metadata::PartitionState) -> Assignment {
    Assignment {
        leader_id: state.leader,
        leader_epoch: state.leader_epoch,
        replicas: state.replicas.clone(),
        isr: state.isr.clone(),
    }
}

/// The directory of the embedded coordinator's state inside a data dir.
pub const EMBEDDED_DIR: &str = "coordinator";

/// The coordinator the configuration asks for: Consul with `cluster.consul`, else the
/// embedded one persisted under the data dir (a cluster of this one broker).
pub async fn open_coordinator(config: &BrokerConfig) -> CoordResult<Arc<dyn Coordinator>> {
    Ok(match &config.cluster.consul {
        Some(address) => {
            let consul = consul_config(&config.cluster, address)?;
            Arc::new(lmq_coord::ConsulCoordinator::connect(consul).await?)
        }
        None => Arc::new(EmbeddedStore::open(&config.data_dir.join(EMBEDDED_DIR))?.client()),
    })
}

/// A token file longer than this is not a token file.
const CONSUL_TOKEN_FILE_BYTES_MAX: u64 = 4096;

/// The Consul client settings of a broker: address, key prefix, token (read from its file
/// if it is given that way) and TLS files.
pub fn consul_config(
    cluster: &crate::config::ClusterSettings,
    address: &str,
) -> CoordResult<lmq_coord::ConsulConfig> {
    let token = match (&cluster.consul_token, &cluster.consul_token_file) {
        (Some(token), _) => Some(token.expose().to_owned()),
        (None, Some(path)) => Some(read_token_file(path)?),
        (None, None) => None,
    };
    Ok(lmq_coord::ConsulConfig {
        key_prefix: cluster.consul_key_prefix.clone(),
        token,
        ca_file: cluster.consul_ca_file.clone(),
        cert_file: cluster.consul_cert_file.clone(),
        key_file: cluster.consul_key_file.clone(),
        // A controller that crashed is replaced after its session's TTL plus this delay.
        // The holder already steps down before its TTL can run out (coord's lease), so a
        // short delay keeps controller failover near the session TTL.
        lock_delay: Duration::from_secs(1),
        ..lmq_coord::ConsulConfig::new(address)
    })
}

/// The token in a file, surrounding whitespace (a final newline) removed.
fn read_token_file(path: &std::path::Path) -> CoordResult<String> {
    use std::io::Read;
    let failed = |detail: String| {
        lmq_coord::CoordError::InvalidConfig(format!(
            "Consul token file {}: {detail}",
            path.display()
        ))
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(CONSUL_TOKEN_FILE_BYTES_MAX + 1)
                .read_to_string(&mut text)
        })
        .map_err(|error| failed(error.to_string()))?;
    if text.len() as u64 > CONSUL_TOKEN_FILE_BYTES_MAX {
        return Err(failed(format!(
            "longer than {CONSUL_TOKEN_FILE_BYTES_MAX} bytes"
        )));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(failed("empty".to_string()));
    }
    Ok(token.to_owned())
}

/// Joins the cluster: registers this broker, loads the metadata, and starts the tasks that
/// follow the cluster (metadata, membership and controller watches, the controller campaign,
/// ISR persistence, leader ticks and replica fetchers) until `shutdown`.
pub async fn join(
    broker: Arc<Broker>,
    coordinator: Arc<dyn Coordinator>,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<ClusterNode>, StoreError> {
    let node_id = broker.config.node_id;
    let (host, port) = broker.config.advertised();
    let registration = BrokerRegistration {
        broker_id: u32::try_from(node_id).unwrap_or(0),
        host,
        port: u16::try_from(port).unwrap_or(9092),
        rack: broker.config.cluster.rack.clone(),
        health: HealthCheck::Ttl {
            ttl: Duration::from_millis(broker.config.cluster.broker_ttl_ms),
        },
    };
    let cluster_id = shared_value(&*coordinator, "cluster/id", &broker.cluster_id).await?;
    let replication_secret =
        shared_value(&*coordinator, identity::SECRET_KEY, &identity::new_secret()).await?;
    coordinator.register_broker(&registration).await?;
    let (isr_requests, isr_receiver) = mpsc::unbounded_channel();
    let node = Arc::new(ClusterNode {
        node_id,
        cluster_id,
        replication_secret,
        coordinator: Arc::clone(&coordinator),
        view: RwLock::new(Arc::new(ClusterView {
            controller: -1,
            ..ClusterView::default()
        })),
        changes: watch::channel(0).0,
        isr_requests,
        seed: AtomicUsize::new(usize::try_from(node_id).unwrap_or(0)),
        reconciling: std::sync::Mutex::new(()),
        started: std::time::Instant::now(),
        contact_ms: AtomicU64::new(0),
        lease_ms: broker.config.cluster.broker_ttl_ms / 2,
        producer_ids: producer_ids::ProducerIds::default(),
    });
    let brokers = coordinator.brokers().await?;
    node.update_view(|view| view.brokers = tasks::by_id(brokers));
    adopt_producer_ids(&broker.config.data_dir, &*coordinator).await?;
    let (metadata, version) = adopt_local_topics(&broker, &*coordinator, node_id).await?;
    node.apply_metadata(&broker, metadata, version);
    broker.set_cluster(Arc::clone(&node));

    tokio::spawn(tasks::watch_metadata(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown.clone(),
    ));
    tokio::spawn(tasks::watch_brokers(Arc::clone(&node), shutdown.clone()));
    tokio::spawn(tasks::watch_controller(Arc::clone(&node), shutdown.clone()));
    tokio::spawn(controller::campaign(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown.clone(),
    ));
    tokio::spawn(tasks::persist_isr_changes(
        Arc::clone(&broker),
        Arc::clone(&node),
        isr_receiver,
        shutdown.clone(),
    ));
    tokio::spawn(tasks::tick_leaders(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown.clone(),
    ));
    tokio::spawn(tasks::keep_contact(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown.clone(),
    ));
    tokio::spawn(fetcher::manage(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown,
    ));
    Ok(node)
}

/// Topics a single node made before it was coordinated (a data dir of an older LMQ) enter
/// the cluster metadata as they are: same id and partitions, this broker their only replica
/// and leader. Returns the metadata as it is now.
async fn adopt_local_topics(
    broker: &Broker,
    coordinator: &dyn Coordinator,
    node_id: i32,
) -> Result<(ClusterMetadata, Option<Version>), StoreError> {
    let local: Vec<_> = broker
        .topics
        .list()
        .into_iter()
        .filter(|topic| !topic.replica)
        .collect();
    let current = store::update(coordinator, None, |metadata| {
        let mut changed = false;
        for topic in &local {
            if metadata.topics.contains_key(&topic.name) {
                continue;
            }
            let alone = metadata::PartitionState {
                replicas: vec![node_id],
                leader: node_id,
                leader_epoch: 0,
                isr: vec![node_id],
                adding: Vec::new(),
                removing: Vec::new(),
            };
            let state = metadata::TopicState {
                id: topic.id,
                configs: topic.configs.clone(),
                partitions: vec![alone; topic.partitions.len()],
            };
            metadata.topics.insert(topic.name.clone(), state);
            changed = true;
        }
        Ok(changed)
    })
    .await?;
    for topic in &local {
        tracing::info!(
            topic = topic.name,
            "adopting a single-node topic into the cluster"
        );
        broker.topics.adopt(&topic.name)?;
    }
    Ok(current)
}

/// The end of the producer-id block a node without a coordinator kept in its data dir (an
/// older LMQ): ids below it were handed out, so the cluster's counter must not give them
/// again.
async fn adopt_producer_ids(
    data_dir: &std::path::Path,
    coordinator: &dyn Coordinator,
) -> Result<(), StoreError> {
    let path = data_dir.join("producer_id_block");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let end = text
        .trim()
        .parse::<i64>()
        .map_err(|_| StoreError::Corrupt(format!("{} is not a number", path.display())))?;
    store::raise_producer_ids(coordinator, end).await?;
    tracing::info!(end, "adopted the producer ids of a single-node data dir");
    if let Err(error) = std::fs::remove_file(&path) {
        tracing::warn!(%error, path = %path.display(), "cannot remove the adopted producer id block");
    }
    Ok(())
}

/// A value every broker of the cluster shares (the cluster id, the replication secret): the
/// first broker to join offers its own, every later one adopts it.
async fn shared_value(
    coordinator: &dyn Coordinator,
    key: &str,
    offer: &str,
) -> Result<String, StoreError> {
    if let Some(entry) = coordinator.get(key).await? {
        return Ok(String::from_utf8_lossy(&entry.value).into_owned());
    }
    match coordinator
        .compare_and_set(key, None, offer.as_bytes())
        .await
    {
        Ok(_) => Ok(offer.to_string()),
        Err(lmq_coord::CoordError::CasConflict { .. }) => Ok(coordinator
            .get(key)
            .await?
            .map(|entry| String::from_utf8_lossy(&entry.value).into_owned())
            .unwrap_or_else(|| offer.to_string())),
        Err(error) => Err(error.into()),
    }
}
