//! The group consumer, as simple as the original LMQ SDK: `subscribe(topic, handler)` then
//! `run`. Members of one group share a topic's partitions (range assignment, computed by the
//! group's leader as Kafka clients do); a record's offset is committed only after its handler
//! returned Ok (at-least-once); a handler that keeps failing sends the record to a
//! dead-letter topic with headers saying why and from where, so the partition moves on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use lmq_wire::protocol::messages::consumer_protocol_assignment::TopicPartition;
use lmq_wire::protocol::messages::join_group_request::JoinGroupRequestProtocol;
use lmq_wire::protocol::messages::leave_group_request::MemberIdentity;
use lmq_wire::protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use lmq_wire::protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use lmq_wire::protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use lmq_wire::protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::admin::OffsetSpec;
use crate::cluster::{ClientConfig, Cluster};
use crate::connection::Connection;
use crate::consumer::{ConsumedRecord, Consumer, ConsumerConfig};
use crate::error::{ClientError, Result};
use crate::offsets::{Committer, commit};
use crate::producer::{Producer, ProducerConfig, Record};

const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// Settings of a [`GroupConsumer`].
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Brokers, client id and request timeout.
    pub client: ClientConfig,
    /// The group id (default `lmq-group`).
    pub group: String,
    /// How long the coordinator waits without a heartbeat before it removes the member
    /// (default 10 s); also the rebalance timeout.
    pub session_timeout: Duration,
    /// Time between heartbeats (default 3 s); a rebalance is noticed at the next one.
    pub heartbeat_interval: Duration,
    /// Attempts of a handler per record before the record goes to the dead-letter topic.
    pub attempts: u32,
    /// Wait before a handler's next attempt, multiplied by the attempt number (default
    /// 100 ms).
    pub retry_backoff: Duration,
    /// Dead-letter topic for a source topic; `None` uses `<topic>.dlq`.
    pub dead_letter_topic: Option<String>,
    /// Where a partition without a committed offset starts.
    pub start: OffsetSpec,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            client: ClientConfig::default(),
            group: "lmq-group".to_string(),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            attempts: 3,
            retry_backoff: Duration::from_millis(100),
            dead_letter_topic: None,
            start: OffsetSpec::Earliest,
        }
    }
}

/// What a handler returns when it could not process a record.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

type Handler =
    Box<dyn FnMut(&ConsumedRecord) -> std::result::Result<(), HandlerError> + Send + Sync>;

/// A group member. See the module documentation.
pub struct GroupConsumer {
    config: GroupConfig,
    cluster: Cluster,
    handlers: BTreeMap<String, Handler>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GroupConsumer")
            .field("group", &self.config.group)
            .field("topics", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Stops a running [`GroupConsumer`] after its current records: it commits and leaves.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the consumer to stop; [`GroupConsumer::run`] returns once the records in hand
    /// are handled and committed and it has left the group.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// This member's place in the group for one generation.
struct Membership {
    coordinator: Arc<Connection>,
    member_id: String,
    generation_id: i32,
    assignment: Vec<(String, i32)>,
}

impl GroupConsumer {
    /// Connects to the cluster; the group is joined by [`GroupConsumer::run`].
    pub async fn connect(config: GroupConfig) -> Result<Self> {
        Ok(GroupConsumer {
            cluster: Cluster::connect(config.client.clone()).await?,
            config,
            handlers: BTreeMap::new(),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Handles every record of `topic` with `handler`.
    pub fn subscribe(
        &mut self,
        topic: &str,
        handler: impl FnMut(&ConsumedRecord) -> std::result::Result<(), HandlerError>
        + Send
        + Sync
        + 'static,
    ) {
        self.handlers.insert(topic.to_string(), Box::new(handler));
    }

    /// A handle that stops [`GroupConsumer::run`] from another task.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Arc::clone(&self.stop))
    }

    /// Joins the group and consumes until stopped; rejoins whenever the group rebalances.
    pub async fn run(&mut self) -> Result<()> {
        let mut member_id = String::new();
        while !self.stop.load(Ordering::Acquire) {
            let membership = self.join_retrying(&member_id).await?;
            member_id = membership.member_id.clone();
            let outcome = self.consume_generation(&membership).await;
            if let Err(error) = &outcome
                && error.is_retriable()
                && !self.stop.load(Ordering::Acquire)
            {
                // The coordinator or a leader moved, a connection dropped: join again.
                tracing::info!(group = %self.config.group, %error, "rejoining after a retriable error");
                continue;
            }
            if self.stop.load(Ordering::Acquire) || outcome.is_err() {
                self.leave(&membership).await;
                return outcome;
            }
        }
        Ok(())
    }

    /// Joins, finding the coordinator again while it is moving or loading.
    async fn join_retrying(&self, member_id: &str) -> Result<Membership> {
        crate::retry::retrying("the join", self.config.client.request_timeout, || {
            self.join(member_id)
        })
        .await
    }

    async fn coordinator(&self) -> Result<Arc<Connection>> {
        self.cluster.group_coordinator(&self.config.group).await
    }

    async fn join(&self, known_member_id: &str) -> Result<Membership> {
        let coordinator = self.coordinator().await?;
        let topics: Vec<String> = self.handlers.keys().cloned().collect();
        let mut member_id = known_member_id.to_string();
        loop {
            let mut protocol = JoinGroupRequestProtocol::default();
            protocol.name = text(ASSIGNOR);
            protocol.metadata = encode_subscription(&topics)?;
            let mut request = JoinGroupRequest::default();
            request.group_id = GroupId(text(&self.config.group));
            request.session_timeout_ms =
                i32::try_from(self.config.session_timeout.as_millis()).unwrap_or(i32::MAX);
            request.rebalance_timeout_ms = request.session_timeout_ms;
            request.member_id = text(&member_id);
            request.group_instance_id = None;
            request.protocol_type = text(PROTOCOL_TYPE);
            request.protocols = vec![protocol];
            let joined = coordinator.call(request).await?;
            if joined.error_code == MEMBER_ID_REQUIRED {
                member_id = joined.member_id.to_string();
                continue;
            }
            if joined.error_code == REBALANCE_IN_PROGRESS {
                continue;
            }
            if let Some(error) = ClientError::from_code(
                &format!("join group {}", self.config.group),
                joined.error_code,
                None,
            ) {
                return Err(error);
            }
            member_id = joined.member_id.to_string();
            let assignments = if joined.leader.as_str() == member_id {
                let mut subscriptions = Vec::new();
                for member in &joined.members {
                    subscriptions.push((
                        member.member_id.to_string(),
                        decode_subscription(member.metadata.clone()),
                    ));
                }
                let mut partition_counts = BTreeMap::new();
                for topic in subscriptions.iter().flat_map(|(_, topics)| topics) {
                    if !partition_counts.contains_key(topic) {
                        let count = self
                            .cluster
                            .refresh(&[topic])
                            .await?
                            .first()
                            .map_or(0, |info| info.partitions.len());
                        partition_counts
                            .insert(topic.clone(), i32::try_from(count).unwrap_or(i32::MAX));
                    }
                }
                range_assign(&subscriptions, &partition_counts)
            } else {
                BTreeMap::new()
            };
            let mut sync = SyncGroupRequest::default();
            sync.group_id = GroupId(text(&self.config.group));
            sync.generation_id = joined.generation_id;
            sync.member_id = text(&member_id);
            sync.group_instance_id = None;
            sync.protocol_type = Some(text(PROTOCOL_TYPE));
            sync.protocol_name = Some(text(ASSIGNOR));
            sync.assignments = assignments
                .iter()
                .map(|(member, partitions)| {
                    let mut entry = SyncGroupRequestAssignment::default();
                    entry.member_id = text(member);
                    entry.assignment = encode_assignment(partitions).unwrap_or_default();
                    entry
                })
                .collect();
            let synced = coordinator.call(sync).await?;
            if synced.error_code == REBALANCE_IN_PROGRESS {
                continue;
            }
            if let Some(error) = ClientError::from_code(
                &format!("sync group {}", self.config.group),
                synced.error_code,
                None,
            ) {
                return Err(error);
            }
            let assignment = decode_assignment(synced.assignment);
            tracing::info!(group = %self.config.group, member = %member_id, generation = joined.generation_id, ?assignment, "joined group");
            return Ok(Membership {
                coordinator,
                member_id,
                generation_id: joined.generation_id,
                assignment,
            });
        }
    }

    /// Consumes the assigned partitions until a rebalance or a stop.
    async fn consume_generation(&mut self, membership: &Membership) -> Result<()> {
        let rebalance = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeats(
            Arc::clone(&membership.coordinator),
            self.config.group.clone(),
            membership.member_id.clone(),
            membership.generation_id,
            self.config.heartbeat_interval,
            Arc::clone(&rebalance),
            Arc::clone(&self.stop),
        ));
        let outcome = self.consume_assigned(membership, &rebalance).await;
        heartbeat.abort();
        outcome
    }

    async fn consume_assigned(
        &mut self,
        membership: &Membership,
        rebalance: &AtomicBool,
    ) -> Result<()> {
        let mut consumer = Consumer::connect(ConsumerConfig {
            client: self.config.client.clone(),
            max_wait: Duration::from_millis(200),
            ..ConsumerConfig::default()
        })
        .await?;
        let committed = self.committed(membership).await?;
        for (topic, partition) in &membership.assignment {
            let start = committed
                .get(&(topic.clone(), *partition))
                .map_or(self.config.start, |offset| OffsetSpec::Offset(*offset));
            consumer.assign(topic, *partition, start).await?;
        }
        let dead_letters = Producer::connect(ProducerConfig {
            client: self.config.client.clone(),
            ..ProducerConfig::default()
        })
        .await?;
        while !self.stop.load(Ordering::Acquire) && !rebalance.load(Ordering::Acquire) {
            let records = consumer.poll().await?;
            if records.is_empty() {
                continue;
            }
            let mut processed: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for record in &records {
                self.handle(record, &dead_letters).await?;
                processed.insert((record.topic.clone(), record.partition), record.offset + 1);
            }
            if !self.commit(membership, &processed).await? {
                // The coordinator moved or the generation ended: rejoin.
                return Ok(());
            }
        }
        Ok(())
    }

    /// Runs the topic's handler with retries; the last failure goes to the dead-letter topic.
    async fn handle(&mut self, record: &ConsumedRecord, dead_letters: &Producer) -> Result<()> {
        let attempts = self.config.attempts.max(1);
        let Some(handler) = self.handlers.get_mut(&record.topic) else {
            return Ok(());
        };
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            match handler(record) {
                Ok(()) => return Ok(()),
                Err(error) => {
                    last_error = error.to_string();
                    if attempt < attempts {
                        tokio::time::sleep(self.config.retry_backoff * attempt).await;
                    }
                }
            }
        }
        let topic = self
            .config
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", record.topic));
        tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %last_error, dead_letter_topic = %topic, "record dead-lettered");
        let mut headers = record.headers.clone();
        headers.extend([
            ("lmq.dlq.error".to_string(), Some(Bytes::from(last_error))),
            (
                "lmq.dlq.attempts".to_string(),
                Some(Bytes::from(attempts.to_string())),
            ),
            (
                "lmq.dlq.source.topic".to_string(),
                Some(Bytes::from(record.topic.clone())),
            ),
            (
                "lmq.dlq.source.partition".to_string(),
                Some(Bytes::from(record.partition.to_string())),
            ),
            (
                "lmq.dlq.source.offset".to_string(),
                Some(Bytes::from(record.offset.to_string())),
            ),
            (
                "lmq.dlq.group".to_string(),
                Some(Bytes::from(self.config.group.clone())),
            ),
        ]);
        dead_letters
            .send_record(
                &topic,
                Record {
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers,
                    partition: None,
                    timestamp: Some(record.timestamp),
                },
            )
            .await?;
        Ok(())
    }

    async fn committed(&self, membership: &Membership) -> Result<BTreeMap<(String, i32), i64>> {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &membership.assignment {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        let mut request = OffsetFetchRequest::default();
        request.group_id = GroupId(text(&self.config.group));
        request.topics = Some(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut requested = OffsetFetchRequestTopic::default();
                    requested.name = TopicName(text(&topic));
                    requested.partition_indexes = partitions;
                    requested
                })
                .collect(),
        );
        let response = membership.coordinator.call(request).await?;
        if let Some(error) =
            ClientError::from_code("fetch committed offsets", response.error_code, None)
        {
            return Err(error);
        }
        Ok(response
            .topics
            .into_iter()
            .flat_map(|topic| {
                let name = topic.name.0.to_string();
                topic
                    .partitions
                    .into_iter()
                    .filter(|partition| partition.committed_offset >= 0)
                    .map(move |partition| {
                        (
                            (name.clone(), partition.partition_index),
                            partition.committed_offset,
                        )
                    })
            })
            .collect())
    }

    /// Commits what the handlers finished. `Ok(false)`: the commit belongs to a generation
    /// or coordinator that is gone; the caller rejoins (whoever gets those partitions may see
    /// the records again: at-least-once).
    async fn commit(
        &self,
        membership: &Membership,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<bool> {
        let committer = Committer {
            group: &self.config.group,
            generation_id: membership.generation_id,
            member_id: &membership.member_id,
        };
        let codes = match commit(&membership.coordinator, committer, offsets).await {
            Ok(codes) => codes,
            Err(error) if error.is_retriable() => {
                tracing::info!(group = %self.config.group, %error, "commit failed; rejoining");
                return Ok(false);
            }
            Err(error) => return Err(error),
        };
        for (_, _, code) in codes {
            if [REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID].contains(&code) {
                tracing::info!(group = %self.config.group, "commit refused by a rebalance; rejoining");
                return Ok(false);
            }
            if let Some(error) = ClientError::from_code("commit offsets", code, None) {
                if error.is_retriable() {
                    tracing::info!(group = %self.config.group, %error, "coordinator moved; rejoining");
                    return Ok(false);
                }
                return Err(error);
            }
        }
        Ok(true)
    }

    async fn leave(&self, membership: &Membership) {
        let coordinator = &membership.coordinator;
        let left = match coordinator.version::<LeaveGroupRequest>() {
            Ok(version) => {
                let mut request = LeaveGroupRequest::default();
                request.group_id = GroupId(text(&self.config.group));
                // v0-2 name the one member leaving; v3+ (KIP-345) a list of members instead,
                // and a body with both encodes at no version.
                if version < 3 {
                    request.member_id = text(&membership.member_id);
                } else {
                    let mut member = MemberIdentity::default();
                    member.member_id = text(&membership.member_id);
                    request.members = vec![member];
                }
                coordinator.call(request).await.map(|_| ())
            }
            Err(error) => Err(error),
        };
        if let Err(error) = left {
            tracing::warn!(%error, "leaving the group failed; the session will expire instead");
        }
    }
}

/// Heartbeats until told to stop; flags a rebalance when the coordinator asks for one.
async fn heartbeats(
    coordinator: Arc<Connection>,
    group: String,
    member_id: String,
    generation_id: i32,
    interval: Duration,
    rebalance: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(interval).await;
        if stop.load(Ordering::Acquire) {
            return;
        }
        let mut request = HeartbeatRequest::default();
        request.group_id = GroupId(text(&group));
        request.generation_id = generation_id;
        request.member_id = text(&member_id);
        request.group_instance_id = None;
        match coordinator.call(request).await {
            Ok(response) if response.error_code == 0 => {}
            Ok(_) | Err(_) => {
                rebalance.store(true, Ordering::Release);
                return;
            }
        }
    }
}

/// The consumer protocol subscription (v0: topics), with its version prefix.
fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let mut subscription = ConsumerProtocolSubscription::default();
    subscription.topics = topics.iter().map(|topic| text(topic)).collect();
    let mut out = BytesMut::new();
    out.put_i16(0);
    subscription
        .encode(&mut out, 0)
        .map_err(|error| lmq_wire::WireError::Malformed {
            what: "consumer subscription",
            reason: error.to_string(),
        })?;
    Ok(out.freeze())
}

fn decode_subscription(mut bytes: Bytes) -> Vec<String> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut bytes, version)
        .map(|subscription| {
            subscription
                .topics
                .iter()
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn encode_assignment(partitions: &[(String, i32)]) -> Result<Bytes> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let mut assignment = ConsumerProtocolAssignment::default();
    assignment.assigned_partitions = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut assigned = TopicPartition::default();
            assigned.topic = TopicName(text(topic));
            assigned.partitions = partitions;
            assigned
        })
        .collect();
    let mut out = BytesMut::new();
    out.put_i16(0);
    assignment
        .encode(&mut out, 0)
        .map_err(|error| lmq_wire::WireError::Malformed {
            what: "consumer assignment",
            reason: error.to_string(),
        })?;
    Ok(out.freeze())
}

fn decode_assignment(bytes: Bytes) -> Vec<(String, i32)> {
    crate::offsets::decode_assignment(bytes)
        .into_iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .into_iter()
                .map(move |partition| (topic.clone(), partition))
        })
        .collect()
}

/// Kafka's range assignor: per topic, members (sorted by id) subscribed to it get consecutive
/// partitions, the first ones one more when they do not divide evenly.
pub fn range_assign(
    subscriptions: &[(String, Vec<String>)],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<(String, i32)>> {
    let mut assignments: BTreeMap<String, Vec<(String, i32)>> = subscriptions
        .iter()
        .map(|(member, _)| (member.clone(), Vec::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let mut members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        members.sort();
        if members.is_empty() {
            continue;
        }
        let member_count = i32::try_from(members.len()).unwrap_or(i32::MAX);
        let (share, extra) = (count / member_count, count % member_count);
        let mut next = 0;
        for (index, member) in members.into_iter().enumerate() {
            let index = i32::try_from(index).unwrap_or(i32::MAX);
            let take = share + i32::from(index < extra);
            if let Some(assigned) = assignments.get_mut(member) {
                assigned.extend((next..next + take).map(|partition| (topic.clone(), partition)));
            }
            next += take;
        }
    }
    assignments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_matches_kafka() {
        let subscriptions = vec![
            ("b".to_string(), vec!["t".to_string()]),
            ("a".to_string(), vec!["t".to_string(), "u".to_string()]),
        ];
        let counts = BTreeMap::from([("t".to_string(), 5), ("u".to_string(), 2)]);
        let assigned = range_assign(&subscriptions, &counts);
        assert_eq!(
            assigned["a"],
            [
                ("t".to_string(), 0),
                ("t".to_string(), 1),
                ("t".to_string(), 2),
                ("u".to_string(), 0),
                ("u".to_string(), 1)
            ]
        );
        assert_eq!(assigned["b"], [("t".to_string(), 3), ("t".to_string(), 4)]);
    }

    #[test]
    fn protocol_payloads_round_trip() {
        let subscription = encode_subscription(&["orders".to_string()]).unwrap();
        assert_eq!(decode_subscription(subscription), ["orders"]);
        let assignment =
            encode_assignment(&[("orders".to_string(), 2), ("orders".to_string(), 5)]).unwrap();
        assert_eq!(
            decode_assignment(assignment),
            [("orders".to_string(), 2), ("orders".to_string(), 5)]
        );
        assert!(decode_assignment(Bytes::from_static(b"\x00")).is_empty());
    }
}
