//! What the client knows of the cluster: brokers, partition leaders, and one connection per
//! broker, refreshed from Metadata when it is missing or stale.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lmq_wire::protocol::messages::metadata_request::MetadataRequestTopic;
use lmq_wire::protocol::messages::{FindCoordinatorRequest, MetadataRequest, TopicName};
use lmq_wire::protocol::protocol::StrBytes;
use tokio::sync::Mutex;

use crate::connection::Connection;
use crate::error::{ClientError, Result};

/// Connection settings every client shares.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more brokers to learn the cluster from.
    pub brokers: Vec<String>,
    /// The `client.id` sent with every request (default `lmq-rust`).
    pub client_id: String,
    /// How long to wait for a TCP connect or a response (default 30 s); also how long
    /// retriable errors (metadata not propagated, a coordinator loading) are retried.
    pub request_timeout: Duration,
    /// Ask brokers to create topics this client uses but that do not exist (Kafka's
    /// `allow.auto.create.topics`; the broker must allow it too).
    pub allow_auto_create_topics: bool,
    /// TLS and SASL for secured listeners (default: PLAINTEXT).
    pub security: crate::security::Security,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            brokers: vec!["127.0.0.1:9092".to_string()],
            client_id: "lmq-rust".to_string(),
            request_timeout: Duration::from_secs(30),
            allow_auto_create_topics: true,
            security: crate::security::Security::default(),
        }
    }
}

/// A partition as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// Node id of the leader, or -1 while there is none.
    pub leader: i32,
    /// The leader epoch, bumped at every leadership change (-1 when unknown).
    pub leader_epoch: i32,
    /// Node ids of all replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
}

/// A topic as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// An internal topic, such as `__consumer_offsets`.
    pub internal: bool,
    /// The partitions, by index.
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Default)]
struct State {
    brokers: HashMap<i32, String>,
    topics: HashMap<String, TopicInfo>,
    connections: HashMap<String, Arc<Connection>>,
    controller: i32,
}

/// FindCoordinator's key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The client's view of a cluster: its brokers, the controller, topic metadata (cached
/// until invalidated) and one shared connection per broker address.
#[derive(Debug)]
pub struct Cluster {
    config: ClientConfig,
    state: Mutex<State>,
}

impl Cluster {
    /// Learns the cluster from the bootstrap brokers with a Metadata request for all topics;
    /// fails when none of them answers.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let cluster = Cluster {
            config,
            state: Mutex::new(State::default()),
        };
        cluster.bootstrap().await?;
        Ok(cluster)
    }

    /// The settings this cluster view was connected with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A connection to any reachable broker, bootstrap addresses first.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        let known: Vec<String> = {
            let state = self.state.lock().await;
            state.brokers.values().cloned().collect()
        };
        let mut last_error = None;
        for address in self.config.brokers.iter().chain(known.iter()) {
            match self.connection_to(address).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::NoBrokers {
            brokers: self.config.brokers.clone(),
        }))
    }

    async fn connection_to(&self, address: &str) -> Result<Arc<Connection>> {
        let mut state = self.state.lock().await;
        if let Some(connection) = state.connections.get(address)
            && !connection.is_closed()
        {
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(
            Connection::connect_secure(
                address,
                &self.config.client_id,
                self.config.request_timeout,
                &self.config.security,
            )
            .await?,
        );
        state
            .connections
            .insert(address.to_string(), Arc::clone(&connection));
        Ok(connection)
    }

    /// The connection to broker `node_id`, from the last metadata (refreshed once when the
    /// id is unknown; still unknown: [`ClientError::NoBrokers`]).
    pub async fn connection(&self, node_id: i32) -> Result<Arc<Connection>> {
        let address = self.state.lock().await.brokers.get(&node_id).cloned();
        match address {
            Some(address) => self.connection_to(&address).await,
            None => {
                self.refresh(&[]).await?;
                let address = self.state.lock().await.brokers.get(&node_id).cloned();
                let address = address.ok_or_else(|| ClientError::NoBrokers {
                    brokers: self.config.brokers.clone(),
                })?;
                self.connection_to(&address).await
            }
        }
    }

    /// The connection to the controller as last known, where topic and partition changes
    /// go; any reachable broker when no controller is known.
    pub async fn controller(&self) -> Result<Arc<Connection>> {
        let controller = self.state.lock().await.controller;
        if controller >= 0 {
            return self.connection(controller).await;
        }
        self.any_connection().await
    }

    async fn bootstrap(&self) -> Result<()> {
        self.refresh(&[]).await.map(|_| ())
    }

    /// Fetches metadata for `topics` (all when empty) and updates what is known. Missing
    /// topics are created when the broker auto-creates.
    pub async fn refresh(&self, topics: &[&str]) -> Result<Vec<TopicInfo>> {
        let connection = self.any_connection().await?;
        let mut request = MetadataRequest::default();
        request.allow_auto_topic_creation = self.config.allow_auto_create_topics;
        request.topics = if topics.is_empty() {
            None
        } else {
            Some(
                topics
                    .iter()
                    .map(|topic| {
                        let mut requested = MetadataRequestTopic::default();
                        requested.name =
                            Some(TopicName(StrBytes::from_string((*topic).to_string())));
                        requested
                    })
                    .collect(),
            )
        };
        let response = connection.call(request).await?;
        let mut state = self.state.lock().await;
        for broker in &response.brokers {
            state.brokers.insert(
                broker.node_id.0,
                format!("{}:{}", broker.host.as_str(), broker.port),
            );
        }
        state.controller = response.controller_id.0;
        let mut described = Vec::new();
        for topic in response.topics {
            let name = topic
                .name
                .map(|name| name.0.to_string())
                .unwrap_or_default();
            if let Some(error) =
                ClientError::from_code(&format!("metadata for {name}"), topic.error_code, None)
            {
                if !topics.is_empty() {
                    return Err(error);
                }
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .into_iter()
                .map(|partition| PartitionInfo {
                    partition: partition.partition_index,
                    leader: partition.leader_id.0,
                    leader_epoch: partition.leader_epoch,
                    replicas: partition.replica_nodes.iter().map(|node| node.0).collect(),
                    isr: partition.isr_nodes.iter().map(|node| node.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|partition| partition.partition);
            let info = TopicInfo {
                name: name.clone(),
                internal: topic.is_internal,
                partitions,
            };
            state.topics.insert(name, info.clone());
            described.push(info);
        }
        Ok(described)
    }

    /// The topic as last known, refreshing when it is not known yet. A topic just created
    /// may be unknown to a broker for a moment (Kafka propagates metadata asynchronously), so
    /// UNKNOWN_TOPIC_OR_PARTITION and LEADER_NOT_AVAILABLE are retried within the request
    /// timeout, as Kafka's clients wait for metadata.
    pub async fn topic(&self, name: &str) -> Result<TopicInfo> {
        if let Some(topic) = self.state.lock().await.topics.get(name).cloned() {
            return Ok(topic);
        }
        crate::retry::retrying("topic metadata", self.config.request_timeout, || async {
            self.refresh(&[name])
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| ClientError::UnknownPartition {
                    topic: name.to_string(),
                    partition: -1,
                })
        })
        .await
    }

    /// The leader's connection for a partition.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Arc<Connection>> {
        let info = self.topic(topic).await?;
        let leader = info
            .partitions
            .iter()
            .find(|known| known.partition == partition)
            .map(|known| known.leader)
            .ok_or_else(|| ClientError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        self.connection(leader).await
    }

    /// Brokers as last known: node id and address, by id.
    pub async fn brokers(&self) -> Vec<(i32, String)> {
        let mut brokers: Vec<(i32, String)> = self
            .state
            .lock()
            .await
            .brokers
            .iter()
            .map(|(id, address)| (*id, address.clone()))
            .collect();
        brokers.sort();
        brokers
    }

    /// The controller's node id as last known (-1: unknown).
    pub async fn controller_id(&self) -> i32 {
        self.state.lock().await.controller
    }

    /// The connection to a group's coordinator. Retries what a coordinator still loading
    /// answers (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, ...) until the
    /// request timeout, as Kafka's clients do.
    pub async fn group_coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        self.coordinator(group, KEY_TYPE_GROUP).await
    }

    /// The connection to a transactional id's coordinator, retried as
    /// [`Cluster::group_coordinator`].
    pub async fn transaction_coordinator(&self, transactional_id: &str) -> Result<Arc<Connection>> {
        self.coordinator(transactional_id, KEY_TYPE_TRANSACTION)
            .await
    }

    async fn coordinator(&self, key: &str, key_type: i8) -> Result<Arc<Connection>> {
        crate::retry::retrying("FindCoordinator", self.config.request_timeout, || {
            self.find_coordinator_once(key, key_type)
        })
        .await
    }

    async fn find_coordinator_once(&self, group: &str, key_type: i8) -> Result<Arc<Connection>> {
        let connection = self.any_connection().await?;
        let version = connection.version::<FindCoordinatorRequest>()?;
        let mut request = FindCoordinatorRequest::default();
        request.key_type = key_type;
        // v4 batched the keys and dropped the single one.
        if version >= 4 {
            request.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
        } else {
            request.key = StrBytes::from_string(group.to_string());
        }
        let response = connection.call(request).await?;
        let (code, node) = match response.coordinators.first() {
            Some(coordinator) => (coordinator.error_code, coordinator.node_id.0),
            None => (response.error_code, response.node_id.0),
        };
        if let Some(error) =
            ClientError::from_code(&format!("find the coordinator of {group}"), code, None)
        {
            return Err(error);
        }
        self.connection(node).await
    }

    /// Forgets a topic's metadata so the next use refreshes it (after a leadership error).
    pub async fn invalidate(&self, topic: &str) {
        self.state.lock().await.topics.remove(topic);
    }
}
