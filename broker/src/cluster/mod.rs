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

pub mod acls;
pub mod controller;
pub mod credentials;
mod fetcher;
pub mod identity;
pub mod markers;
pub mod metadata;
mod peers;
mod producer_ids;
pub mod reassign;
mod reconcile;
pub mod store;
mod tasks;
pub mod txn_verify;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use lmq_coord::lease::{Lease, LeaseConfig};
use lmq_coord::{
    BrokerInfo, BrokerRegistration, CoordResult, Coordinator, EmbeddedStore, HealthCheck, Version,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::broker::Broker;
use crate::clock::Clock;
use crate::config::BrokerConfig;
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
    /// Varies where replica assignment starts, so leaders spread over topics.
    seed: AtomicUsize,
    /// One reconciliation at a time (the metadata watch and local admin requests both run
    /// one).
    reconciling: std::sync::Mutex<()>,
    /// Leases are measured on its monotonic time (a manual clock in tests).
    clock: Arc<dyn Clock>,
    /// The leadership lease: see [`ClusterNode::may_lead`]. Renewed by `tasks::keep_contact`.
    lease: std::sync::Mutex<Lease>,
    lease_config: LeaseConfig,
    /// Producer ids: this broker's block, and what the cluster handed out.
    producer_ids: producer_ids::ProducerIds,
    /// Connections to the other brokers for markers and verification (`peers`).
    peers: peers::PeerConnections,
}

/// How often `tasks::keep_contact` passes this broker's TTL check and reads the health list.
pub(crate) const CONTACT_INTERVAL: Duration = Duration::from_millis(500);

/// The leadership lease of a broker whose registration has `broker_ttl`: it ends half a TTL
/// after the send time of the last TTL pass that was followed by a health query listing this
/// broker (`coord::lease` decides; the margin is the other half of the TTL).
fn lease_config(broker_ttl: Duration) -> LeaseConfig {
    LeaseConfig {
        ttl: broker_ttl,
        step_down_margin: broker_ttl / 2,
        renew_interval: CONTACT_INTERVAL,
        retry_interval: CONTACT_INTERVAL,
    }
}

impl ClusterNode {
    /// Now on the lease's time line (the clock's monotonic milliseconds).
    pub(crate) fn lease_now(&self) -> Duration {
        Duration::from_millis(self.clock.monotonic_ms())
    }

    fn lease(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this broker may acknowledge writes as a leader: only while the last pass of its
    /// TTL check that a health query then confirmed (listed healthy) was sent less than half
    /// its registration TTL ago. The agent keeps the registration healthy at least a TTL after
    /// receiving that pass, so the broker stops before the registration can expire and the
    /// controller can elect other leaders, also when cut off from Consul or stood still
    /// (SIGSTOP, a VM pause); it leads again only after re-reading the metadata
    /// (`tasks::keep_contact`). Checked on append and again before a produce is answered.
    pub fn may_lead(&self) -> bool {
        let now = self.lease_now();
        self.lease().is_held(now)
    }

    /// A confirmed pass sent at `sent`: extends a held lease. Returns `false` (nothing
    /// changed) when the lease has lapsed: the caller re-reads the metadata, then
    /// [`ClusterNode::restart_lease`].
    pub(crate) fn renew_lease(&self, sent: Duration) -> bool {
        let now = self.lease_now();
        let mut lease = self.lease();
        if !lease.is_held(now) {
            return false;
        }
        lease.renewal_succeeded(sent);
        true
    }

    /// A new lease from a confirmed pass sent at `sent`, once the metadata was re-read.
    pub(crate) fn restart_lease(&self, sent: Duration) {
        *self.lease() = Lease::new(self.lease_config, sent);
    }

    /// How long one keep_contact round (TTL pass and health query) may take: a quarter TTL,
    /// below the TTL/3 between the coordinator's own passes.
    pub(crate) fn contact_timeout(&self) -> Duration {
        self.lease_config.ttl / 4
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

    /// Creates one topic in the cluster metadata (the offsets topic) and applies it locally before
    /// returning, so this broker's next Metadata answer has it.
    pub async fn create_topic(
        &self,
        broker: &Broker,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let topic = crate::topics::NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs: configs.clone(),
        };
        let outcomes = self
            .create_topics(broker, std::slice::from_ref(&topic))
            .await?;
        outcomes.into_iter().next().unwrap_or(Ok(()))?;
        Ok(())
    }

    /// Creates topics in the cluster metadata with one write (CreateTopics), each with its
    /// own outcome in order, and applies them locally before returning. One write, not one
    /// per topic: every write carries the whole document (and the embedded coordinator
    /// fsyncs it), so 2,000 topics took 383 s one by one.
    pub async fn create_topics(
        &self,
        broker: &Broker,
        topics: &[crate::topics::NewTopic],
    ) -> Result<Vec<Result<(), MetadataError>>, StoreError> {
        let live = self.view().live_brokers();
        let specs: Vec<(TopicSpec, usize)> = topics
            .iter()
            .map(|topic| {
                let partitions = if topic.partitions == -1 {
                    broker.config.default_partitions
                } else {
                    topic.partitions
                };
                let replication_factor = if topic.replication_factor == -1 {
                    broker.config.cluster.default_replication_factor
                } else {
                    topic.replication_factor
                };
                let spec = TopicSpec {
                    id: Uuid::new_v4(),
                    partitions: usize::try_from(partitions).unwrap_or(0),
                    replication_factor,
                    configs: topic.configs.clone(),
                };
                (spec, self.seed.fetch_add(1, Ordering::Relaxed))
            })
            .collect();
        let mut outcomes = Vec::with_capacity(topics.len());
        let (metadata, version) = store::update(&*self.coordinator, None, |metadata| {
            // A retry after a conflict starts over on the newer document.
            outcomes.clear();
            for (topic, (spec, seed)) in topics.iter().zip(&specs) {
                let created = metadata.create_topic(&topic.name, spec.clone(), &live, *seed);
                outcomes.push(created.map(|_| ()));
            }
            Ok(outcomes.iter().any(Result::is_ok))
        })
        .await?;
        self.apply_metadata(broker, metadata, version);
        Ok(outcomes)
    }

    /// Deletes topics from the cluster metadata with one write (DeleteTopics), each with its
    /// own outcome in order (a name given twice is unknown the second time).
    pub async fn delete_topics(
        &self,
        broker: &Broker,
        names: &[String],
    ) -> Result<Vec<Result<(), MetadataError>>, StoreError> {
        let mut outcomes = Vec::with_capacity(names.len());
        let (metadata, version) = store::update(&*self.coordinator, None, |metadata| {
            // A retry after a conflict starts over on the newer document.
            outcomes.clear();
            for name in names {
                let removed = metadata.topics.remove(name);
                outcomes.push(
                    removed
                        .map(|_| ())
                        .ok_or_else(|| MetadataError::UnknownTopic(name.clone())),
                );
            }
            Ok(outcomes.iter().any(Result::is_ok))
        })
        .await?;
        self.apply_metadata(broker, metadata, version);
        Ok(outcomes)
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
        replica_count: reassign::ReplicaCount,
    ) -> Result<Vec<Result<(), MetadataError>>, StoreError> {
        let live = self.view().live_ids();
        let mut outcomes = Vec::new();
        let (metadata, version) = store::update(&*self.coordinator, None, |metadata| {
            outcomes.clear();
            let mut changed = false;
            for (topic, partition, target) in moves {
                let outcome =
                    metadata.reassign(topic, *partition, target.as_deref(), replica_count, &live);
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
            min_insync_replicas: crate::topic_config::min_insync_replicas(configs)
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

/// Consul's lock delay on the controller role: a controller that crashed is replaced after
/// its session's TTL plus this.
const CONTROLLER_LOCK_DELAY: Duration = Duration::from_secs(1);

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
        lock_delay: CONTROLLER_LOCK_DELAY,
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
/// ISR persistence, leader ticks and replica fetchers) into `background`, until `shutdown`.
pub async fn join(
    broker: Arc<Broker>,
    coordinator: Arc<dyn Coordinator>,
    shutdown: watch::Receiver<bool>,
    background: &mut JoinSet<()>,
) -> Result<Arc<ClusterNode>, StoreError> {
    let node_id = broker.config.node_id;
    // `validate` checked the listeners; a config that was not validated registers none.
    let listeners = broker.config.listeners().unwrap_or_default();
    let (host, port) = match broker.config.inter_broker_listener(&listeners) {
        Some(listener) => (listener.advertised_host.clone(), listener.advertised_port),
        None => {
            let (host, port) = broker.config.advertised();
            (host, u16::try_from(port).unwrap_or(9092))
        }
    };
    let broker_ttl = Duration::from_millis(broker.config.cluster.broker_ttl_ms);
    let registration = BrokerRegistration {
        listeners: listeners
            .iter()
            .map(|listener| lmq_coord::Endpoint {
                name: listener.name.clone(),
                host: listener.advertised_host.clone(),
                port: listener.advertised_port,
            })
            .collect(),
        broker_id: u32::try_from(node_id).unwrap_or(0),
        host,
        port,
        rack: broker.config.cluster.rack.clone(),
        health: HealthCheck::Ttl { ttl: broker_ttl },
    };
    let cluster_id = shared_value(&*coordinator, "cluster/id", &broker.cluster_id).await?;
    let replication_secret =
        shared_value(&*coordinator, identity::SECRET_KEY, &identity::new_secret()).await?;
    // A registration starts healthy (passing): the first lease runs from its send time.
    let registered_at = Duration::from_millis(broker.clock.monotonic_ms());
    coordinator.register_broker(&registration).await?;
    let lease_config = lease_config(broker_ttl);
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
        seed: AtomicUsize::new(usize::try_from(node_id).unwrap_or(0)),
        reconciling: std::sync::Mutex::new(()),
        clock: Arc::clone(&broker.clock),
        lease: std::sync::Mutex::new(Lease::new(lease_config, registered_at)),
        lease_config,
        producer_ids: producer_ids::ProducerIds::default(),
        peers: peers::PeerConnections::default(),
    });
    let brokers = coordinator.brokers().await?;
    node.update_view(|view| view.brokers = tasks::by_id(brokers));
    adopt_producer_ids(&broker.config.data_dir, &*coordinator).await?;
    let (metadata, version) = adopt_local_topics(&broker, &*coordinator, node_id).await?;
    node.apply_metadata(&broker, metadata, version);

    background.spawn(tasks::watch_metadata(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown.clone(),
    ));
    background.spawn(tasks::watch_brokers(Arc::clone(&node), shutdown.clone()));
    if broker.authorizer.enabled() {
        let (document, version) = acls::read(&*coordinator).await?;
        broker
            .authorizer
            .set_acls(version.map_or(0, |version| version.0), document.acls);
        background.spawn(acls::watch(
            Arc::clone(&broker),
            Arc::clone(&coordinator),
            shutdown.clone(),
        ));
    }
    background.spawn(tasks::watch_controller(Arc::clone(&node), shutdown.clone()));
    background.spawn(controller::campaign(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown.clone(),
    ));
    background.spawn(tasks::persist_isr_changes(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown.clone(),
    ));
    background.spawn(tasks::tick_leaders(Arc::clone(&broker), shutdown.clone()));
    background.spawn(tasks::keep_contact(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown.clone(),
    ));
    background.spawn(fetcher::manage(
        Arc::clone(&broker),
        Arc::clone(&node),
        shutdown.clone(),
    ));
    let reporting = Arc::clone(&broker);
    background.spawn(markers::run(
        Arc::clone(&broker),
        Arc::clone(&node),
        Arc::clone(&broker.markers),
        move |outcome| reporting.marker_outcome(outcome),
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

/// A broker joined to an embedded coordinator of its own, on a manual clock: for unit tests
/// of the cluster edge (lease, produce answers) without sockets.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use lmq_coord::{Coordinator, EmbeddedStore};
    use tokio::sync::watch;

    use crate::broker::Broker;
    use crate::clock::ManualClock;
    use crate::config::BrokerConfig;

    use super::ClusterNode;

    pub(crate) struct TestNode {
        pub broker: Arc<Broker>,
        pub node: Arc<ClusterNode>,
        pub clock: Arc<ManualClock>,
        stop: watch::Sender<bool>,
        /// Aborted with the node (dropping a JoinSet aborts its tasks).
        _tasks: tokio::task::JoinSet<()>,
        _store: EmbeddedStore,
        _dir: tempfile::TempDir,
    }

    impl TestNode {
        /// Stops the background tasks (the lease is then renewed by nobody).
        pub fn stop_tasks(&self) {
            let _ = self.stop.send(true);
        }
    }

    impl Drop for TestNode {
        fn drop(&mut self) {
            let _ = self.stop.send(true);
        }
    }

    /// Node 0, configured by `configure`, joined through `wrap(coordinator)`.
    pub(crate) async fn start(
        configure: impl FnOnce(&mut BrokerConfig),
        wrap: impl FnOnce(Arc<dyn Coordinator>) -> Arc<dyn Coordinator>,
    ) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("coordinator")).unwrap();
        let mut config = BrokerConfig {
            data_dir: dir.path().join("broker"),
            node_id: 0,
            ..BrokerConfig::default()
        };
        configure(&mut config);
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let broker = Arc::new(Broker::open(config, Arc::clone(&clock) as _).unwrap());
        let coordinator: Arc<dyn Coordinator> = Arc::new(store.client());
        let (stop, shutdown) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let node = super::join(Arc::clone(&broker), wrap(coordinator), shutdown, &mut tasks)
            .await
            .unwrap();
        TestNode {
            broker,
            node,
            clock,
            stop,
            _tasks: tasks,
            _store: store,
            _dir: dir,
        }
    }
}
