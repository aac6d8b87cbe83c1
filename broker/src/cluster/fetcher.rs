//! Replica fetchers: one task per leader broker this broker follows partitions of. Each
//! round sends one Kafka Fetch (replica id set, so the leader counts it as a follower's
//! position) for every such partition, then appends what came back, truncates diverging
//! history the leader pointed out, and takes the leader's high watermark.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use lmq::ClientError;
use lmq::api::ReplicaFetch;
use lmq::connection::Connection;
use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use lmq_wire::protocol::messages::{
    BrokerId, FetchRequest, SaslAuthenticateRequest, SaslHandshakeRequest, TopicName,
};
use lmq_wire::protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ClusterNode, identity};
use crate::broker::Broker;
use crate::partition::{LeaderOffsets, Partition};

/// How long the leader may hold a follower's fetch when it has nothing new.
const FETCH_WAIT_MS: i32 = 500;
const PARTITION_BYTES_MAX: i32 = 1024 * 1024;
const FETCH_BYTES_MAX: i32 = 16 * 1024 * 1024;
/// How often the set of replica fetchers is checked against the metadata without a change.
const FETCHERS_RECHECK_INTERVAL: Duration = Duration::from_secs(1);
const RETRY_PAUSE: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps one fetcher per leader that some local follower partition needs.
pub async fn manage(
    broker: Arc<Broker>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = node.changes.subscribe();
    let mut fetchers: HashMap<i32, JoinHandle<()>> = HashMap::new();
    loop {
        let leaders: BTreeSet<i32> = followed(&broker)
            .into_iter()
            .map(|followed| followed.leader)
            .collect();
        fetchers.retain(|leader, task| {
            let keep = leaders.contains(leader) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for leader in leaders {
            fetchers.entry(leader).or_insert_with(|| {
                tracing::info!(leader, "starting a replica fetcher");
                tokio::spawn(fetch_from(Arc::clone(&broker), Arc::clone(&node), leader))
            });
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(FETCHERS_RECHECK_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    for task in fetchers.values() {
        task.abort();
    }
}

struct Followed {
    topic: String,
    partition: Arc<Partition>,
    leader: i32,
    leader_epoch: i32,
    fetch_offset: i64,
    last_fetched_epoch: i32,
    unflushed_end: Option<i64>,
}

/// Every local partition in the follower role (with a writable log), with where it fetches
/// from.
fn followed(broker: &Broker) -> Vec<Followed> {
    let mut followed = Vec::new();
    for topic in broker.topics.list() {
        for partition in &topic.partitions {
            if let Some(position) = partition.follower_position() {
                followed.push(Followed {
                    topic: topic.name.clone(),
                    partition: Arc::clone(partition),
                    leader: position.leader,
                    leader_epoch: position.leader_epoch,
                    fetch_offset: position.fetch_offset,
                    last_fetched_epoch: position.last_fetched_epoch,
                    unflushed_end: position.unflushed_end,
                });
            }
        }
    }
    followed
}

/// Under `flush = "every-batch"` a fetch reports only what is on disk: appends whose fsync
/// did not run yet (the fetcher stopped between append and flush) are flushed first. A
/// partition whose fsync fails is left out: its log is poisoned and fetches no more.
async fn flushed_first(partitions: Vec<Followed>) -> Vec<Followed> {
    let mut ready = Vec::with_capacity(partitions.len());
    for followed in partitions {
        if let Some(end_offset) = followed.unflushed_end
            && let Err(error) = followed.partition.flush_to(end_offset).await
        {
            tracing::error!(topic = followed.topic, partition = followed.partition.index, %error, "a follower's fsync failed: it stops fetching");
            continue;
        }
        ready.push(followed);
    }
    ready
}

async fn fetch_from(broker: Arc<Broker>, node: Arc<ClusterNode>, leader: i32) {
    let mut connection: Option<Connection> = None;
    loop {
        let partitions: Vec<Followed> = flushed_first(
            followed(&broker)
                .into_iter()
                .filter(|followed| followed.leader == leader)
                .collect(),
        )
        .await;
        if partitions.is_empty() {
            return;
        }
        let Some(address) = node
            .view()
            .brokers
            .get(&leader)
            .map(|info| format!("{}:{}", info.host, info.port))
        else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        if connection
            .as_ref()
            .is_none_or(|connection| connection.address() != address)
        {
            match connect_as_broker(&broker, &node, &address).await {
                Ok(connected) => connection = Some(connected),
                Err(error) => {
                    tracing::debug!(leader, %error, "cannot reach the leader");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
        }
        let Some(open) = &connection else { continue };
        match fetch_once(&broker, &node, open, &partitions).await {
            Ok(progress) => {
                if !progress {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
            Err(error) => {
                tracing::debug!(leader, %error, "replica fetch failed");
                connection = None;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Opens a connection to a leader over the inter-broker listener (TLS when that listener is
/// SSL: the broker's own certificate as the client certificate, the `[tls]` CA to trust the
/// leader's) and proves on it that this is a broker of the cluster (`identity`), so the
/// leader counts its fetches as a follower's.
pub(crate) async fn connect_as_broker(
    broker: &Broker,
    node: &ClusterNode,
    address: &str,
) -> Result<Connection, ClientError> {
    let client_id = format!("lmq-replica-{}", node.node_id);
    let security = inter_broker_security(&broker.config);
    let connection =
        Connection::connect_secure(address, &client_id, CONNECT_TIMEOUT, &security).await?;
    let mut handshake = SaslHandshakeRequest::default();
    handshake.mechanism = StrBytes::from_static_str(identity::MECHANISM);
    let answer = connection.call(handshake).await?;
    if let Some(error) = ClientError::from_code("SaslHandshake", answer.error_code, None) {
        return Err(error);
    }
    let mut authenticate = SaslAuthenticateRequest::default();
    authenticate.auth_bytes = node.replica_token().into();
    let answer = connection.call(authenticate).await?;
    let message = answer.error_message.map(|message| message.to_string());
    if let Some(error) = ClientError::from_code("SaslAuthenticate", answer.error_code, message) {
        return Err(error);
    }
    Ok(connection)
}

/// How this broker reaches the others: over TLS when its inter-broker listener is an SSL one
/// (every broker of a cluster names the same listener).
fn inter_broker_security(config: &crate::config::BrokerConfig) -> lmq::Security {
    let listeners = config.listeners().unwrap_or_default();
    let tls = config
        .inter_broker_listener(&listeners)
        .is_some_and(|listener| listener.protocol.tls());
    lmq::Security {
        tls: tls.then(|| lmq::TlsSettings {
            ca_file: config.tls.ca_file.clone(),
            cert_file: config.tls.cert_file.clone(),
            key_file: config.tls.key_file.clone(),
        }),
        sasl: None,
    }
}

/// One fetch round; `Ok(false)` when every partition was refused (wait before retrying).
async fn fetch_once(
    broker: &Broker,
    node: &ClusterNode,
    connection: &Connection,
    partitions: &[Followed],
) -> Result<bool, ClientError> {
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(node.node_id);
    request.max_wait_ms = FETCH_WAIT_MS;
    request.min_bytes = 1;
    request.max_bytes = FETCH_BYTES_MAX;
    request.session_id = 0;
    request.session_epoch = -1;
    let mut by_topic: Vec<FetchTopic> = Vec::new();
    for followed in partitions {
        let mut partition = FetchPartition::default();
        partition.partition = followed.partition.index;
        partition.current_leader_epoch = followed.leader_epoch;
        partition.fetch_offset = followed.fetch_offset;
        partition.last_fetched_epoch = followed.last_fetched_epoch;
        partition.log_start_offset = -1;
        partition.partition_max_bytes = PARTITION_BYTES_MAX;
        match by_topic
            .iter_mut()
            .find(|topic| topic.topic.0.as_str() == followed.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => {
                let mut topic = FetchTopic::default();
                topic.topic = TopicName(StrBytes::from_string(followed.topic.clone()));
                topic.partitions.push(partition);
                by_topic.push(topic);
            }
        }
    }
    request.topics = by_topic;
    let response = connection.call(ReplicaFetch(request)).await?;
    let mut progress = false;
    let now_ms = broker.now_ms();
    for topic in response.responses {
        for data in topic.partitions {
            let Some(followed) = partitions.iter().find(|followed| {
                followed.topic == topic.topic.0.as_str()
                    && followed.partition.index == data.partition_index
            }) else {
                continue;
            };
            let partition = &followed.partition;
            let outcome = if data.error_code == ResponseError::OffsetOutOfRange.code() {
                partition
                    .follower_out_of_range(data.log_start_offset, data.high_watermark)
                    .map_err(|error| error.to_string())
            } else if data.error_code != 0 {
                tracing::debug!(
                    topic = followed.topic,
                    partition = partition.index,
                    code = data.error_code,
                    "the leader refused a replica fetch"
                );
                continue;
            } else if data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0 {
                partition
                    .truncate_diverging(data.diverging_epoch.epoch, data.diverging_epoch.end_offset)
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            } else {
                let records = data.records.as_deref().unwrap_or_default();
                let leader = LeaderOffsets {
                    high_watermark: data.high_watermark,
                    log_start_offset: data.log_start_offset,
                };
                match partition.append_as_follower(followed.leader_epoch, records, leader, now_ms) {
                    // On disk before the next fetch reports it to the leader.
                    Ok(Some(end_offset)) => partition
                        .flush_to(end_offset)
                        .await
                        .map_err(|error| error.to_string()),
                    Ok(None) => Ok(()),
                    Err(error) => Err(error.to_string()),
                }
            };
            tracing::trace!(
                topic = followed.topic,
                partition = partition.index,
                fetch_offset = followed.fetch_offset,
                high_watermark = data.high_watermark,
                bytes = data.records.as_ref().map_or(0, bytes::Bytes::len),
                "replica fetch answered"
            );
            match outcome {
                Ok(()) => progress = true,
                Err(error) => {
                    tracing::warn!(topic = followed.topic, partition = partition.index, %error, "replica fetch not applied");
                }
            }
        }
    }
    Ok(progress)
}
