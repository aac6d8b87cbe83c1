//! Admin operations: topics, partitions, configs, consumer groups and their offsets.

use std::collections::BTreeMap;

use lmq_wire::protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use lmq_wire::protocol::messages::create_partitions_request::CreatePartitionsTopic;
use lmq_wire::protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use lmq_wire::protocol::messages::describe_configs_request::DescribeConfigsResource;
use lmq_wire::protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use lmq_wire::protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use lmq_wire::protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, GroupId, IncrementalAlterConfigsRequest, ListGroupsRequest,
    OffsetFetchRequest, TopicName,
};
use lmq_wire::protocol::protocol::StrBytes;

use crate::cluster::{ClientConfig, Cluster, TopicInfo};
use crate::error::{ClientError, Result};

pub(crate) fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// A topic config as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config key (`retention.ms`, `cleanup.policy`, ...).
    pub name: String,
    /// The effective value; `None` for a sensitive config or one without a value.
    pub value: Option<String>,
    /// Set on the topic itself rather than inherited.
    pub is_override: bool,
    /// The broker does not let this config be changed.
    pub read_only: bool,
}

/// A user's SCRAM credentials as DescribeUserScramCredentials reports them: each
/// mechanism (Kafka's code: 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512) with its iterations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    /// The user name.
    pub user: String,
    /// Each credential: (mechanism code, iterations).
    pub mechanisms: Vec<(i8, i32)>,
}

/// A consumer group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group: String,
    /// The members' protocol type: `consumer` for consumer groups, empty when unknown.
    pub protocol_type: String,
    /// The group's state (`Stable`, `Empty`, ...); empty from brokers older than
    /// ListGroups v4.
    pub state: String,
}

/// One member of a group, as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The id the coordinator gave the member.
    pub member_id: String,
    /// The static member id (KIP-345); `None` for a dynamic member.
    pub group_instance_id: Option<String>,
    /// The `client.id` the member connected with.
    pub client_id: String,
    /// The address the member connected from.
    pub client_host: String,
    /// Decoded from the consumer protocol assignment (empty for other protocols).
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A group's state and members, as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group: String,
    /// The group's state (`Stable`, `Empty`, `PreparingRebalance`, `Dead`, ...).
    pub state: String,
    /// The members' protocol type: `consumer` for consumer groups.
    pub protocol_type: String,
    /// The protocol the group chose; for consumer groups, the assignor (`range`, ...).
    pub protocol: String,
    /// The current members.
    pub members: Vec<GroupMember>,
}

/// One partition's position for a group: committed offset, log end, lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next to read); `None` when nothing is committed.
    pub committed: Option<i64>,
    /// The partition's log end offset, or -1 when it could not be listed.
    pub log_end_offset: i64,
    /// Records between the committed offset and the log end (never negative); `None`
    /// when nothing is committed.
    pub lag: Option<i64>,
}

/// A position in a partition: where `assign` starts, where `reset_offsets` moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset: the oldest record still kept.
    Earliest,
    /// The log end offset: the offset the next record written will get.
    Latest,
    /// This exact offset, on every partition.
    Offset(i64),
    /// The first record whose timestamp is at or after these epoch milliseconds (Kafka's
    /// offsets-for-times). Where no record is that new, the log end.
    Timestamp(i64),
}

/// Administers a cluster: topics, partitions, configs, replica moves, consumer groups and
/// their offsets. Never auto-creates topics by looking them up.
#[derive(Debug)]
pub struct Admin {
    pub(crate) cluster: Cluster,
}

impl Admin {
    /// Connects to the cluster and loads its metadata. An admin never creates topics by
    /// asking about them: `allow_auto_create_topics` is forced off.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let config = ClientConfig {
            allow_auto_create_topics: false,
            ..config
        };
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    /// The cluster view this admin uses: brokers, metadata and connections.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Runs a group operation again while its coordinator is moving or loading (the errors
    /// Kafka marks retriable), within the request timeout, as Kafka's admin client does.
    pub(crate) async fn retrying<T, F, Fut>(&self, operation: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        crate::retry::retrying(
            "a group operation",
            self.cluster.config().request_timeout,
            operation,
        )
        .await
    }

    /// Describes a group with DescribeGroups, asked of its coordinator; retried while the
    /// coordinator is moving or loading, within the request timeout.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.retrying(|| self.describe_group_once(group)).await
    }

    /// Committed offsets of a group with the log end and lag of each partition, sorted by
    /// topic and partition (OffsetFetch to the coordinator, then ListOffsets per topic).
    pub async fn group_lag(&self, group: &str) -> Result<Vec<PartitionLag>> {
        self.retrying(|| self.group_lag_once(group)).await
    }

    /// Moves a group with no active members to `spec` on every partition of `topic`
    /// (the group must be empty, as with Kafka's tool). Returns the offsets set.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        spec: OffsetSpec,
    ) -> Result<Vec<(i32, i64)>> {
        self.retrying(|| self.reset_offsets_once(group, topic, spec))
            .await
    }

    /// Every topic (internal ones only when asked for), by name, from a fresh Metadata
    /// request.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicInfo>> {
        let mut topics: Vec<TopicInfo> = self
            .cluster
            .refresh(&[])
            .await?
            .into_iter()
            .filter(|topic| include_internal || !topic.internal)
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// A topic's partitions, leaders and replicas from a fresh Metadata request. A missing
    /// topic is a [`ClientError::Kafka`] with `UNKNOWN_TOPIC_OR_PARTITION`; it is not created.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        self.cluster
            .refresh(&[name])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::UnknownPartition {
                topic: name.to_string(),
                partition: -1,
            })
    }

    /// Creates a topic with CreateTopics, sent to the controller; `partitions` and
    /// `replication_factor` of -1 take the broker defaults, `configs` are topic overrides.
    /// An existing topic is a [`ClientError::Kafka`] with `TOPIC_ALREADY_EXISTS`.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut topic = CreatableTopic::default();
        topic.name = TopicName(text(name));
        topic.num_partitions = partitions;
        topic.replication_factor = replication_factor;
        topic.configs = configs
            .iter()
            .map(|(key, value)| {
                let mut config = CreatableTopicConfig::default();
                config.name = text(key);
                config.value = Some(text(value));
                config
            })
            .collect();
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 30_000;
        let connection = self.cluster.controller().await?;
        let response = connection.call(request).await?;
        for result in response.topics {
            if let Some(error) = ClientError::from_code(
                &format!("create topic {name}"),
                result.error_code,
                result.error_message.map(|message| message.to_string()),
            ) {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Every user with SCRAM credentials (DescribeUserScramCredentials).
    pub async fn describe_scram_users(&self) -> Result<Vec<ScramUser>> {
        let mut request = DescribeUserScramCredentialsRequest::default();
        request.users = None;
        let connection = self.cluster.any_connection().await?;
        let response = connection.call(request).await?;
        if let Some(error) = ClientError::from_code(
            "describe SCRAM users",
            response.error_code,
            response.error_message.map(|message| message.to_string()),
        ) {
            return Err(error);
        }
        Ok(response
            .results
            .into_iter()
            .map(|result| ScramUser {
                user: result.user.to_string(),
                mechanisms: result
                    .credential_infos
                    .iter()
                    .map(|info| (info.mechanism, info.iterations))
                    .collect(),
            })
            .collect())
    }

    /// Sets `user`'s SCRAM credential for `mechanism` (Kafka's code) from a salted password
    /// (the caller salts and hashes, as Kafka's tools do: the password never reaches the
    /// broker), or removes it (`None`). AlterUserScramCredentials, sent to the controller.
    pub async fn alter_scram_credential(
        &self,
        user: &str,
        mechanism: i8,
        upsert: Option<(i32, Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let mut request = AlterUserScramCredentialsRequest::default();
        match upsert {
            Some((iterations, salt, salted_password)) => {
                let mut upsertion = ScramCredentialUpsertion::default();
                upsertion.name = text(user);
                upsertion.mechanism = mechanism;
                upsertion.iterations = iterations;
                upsertion.salt = salt.into();
                upsertion.salted_password = salted_password.into();
                request.upsertions = vec![upsertion];
            }
            None => {
                let mut deletion = ScramCredentialDeletion::default();
                deletion.name = text(user);
                deletion.mechanism = mechanism;
                request.deletions = vec![deletion];
            }
        }
        let connection = self.cluster.controller().await?;
        let response = connection.call(request).await?;
        for result in response.results {
            if let Some(error) = ClientError::from_code(
                &format!("alter SCRAM credential of {user}"),
                result.error_code,
                result.error_message.map(|message| message.to_string()),
            ) {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Deletes a topic with DeleteTopics, sent to the controller, and forgets its metadata.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let mut request = DeleteTopicsRequest::default();
        request.topic_names = vec![TopicName(text(name))];
        request.timeout_ms = 30_000;
        let connection = self.cluster.controller().await?;
        let response = connection.call(request).await?;
        for result in response.responses {
            if let Some(error) = ClientError::from_code(
                &format!("delete topic {name}"),
                result.error_code,
                result.error_message.map(|message| message.to_string()),
            ) {
                return Err(error);
            }
        }
        self.cluster.invalidate(name).await;
        Ok(())
    }

    /// Grows a topic to `total` partitions (CreatePartitions, sent to the controller); the
    /// broker places the new replicas. Partitions can only be added, never removed.
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<()> {
        let mut topic = CreatePartitionsTopic::default();
        topic.name = TopicName(text(name));
        topic.count = total;
        topic.assignments = None;
        let mut request = CreatePartitionsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 30_000;
        let connection = self.cluster.controller().await?;
        let response = connection.call(request).await?;
        for result in response.results {
            if let Some(error) = ClientError::from_code(
                &format!("create partitions of {name}"),
                result.error_code,
                result.error_message.map(|message| message.to_string()),
            ) {
                return Err(error);
            }
        }
        self.cluster.invalidate(name).await;
        Ok(())
    }

    /// Every config of a topic, overridden or inherited, with DescribeConfigs.
    pub async fn describe_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let mut resource = DescribeConfigsResource::default();
        resource.resource_type = 2;
        resource.resource_name = text(topic);
        resource.configuration_keys = None;
        let mut request = DescribeConfigsRequest::default();
        request.resources = vec![resource];
        let connection = self.cluster.any_connection().await?;
        let response = connection.call(request).await?;
        let mut entries = Vec::new();
        for result in response.results {
            if let Some(error) = ClientError::from_code(
                &format!("describe configs of {topic}"),
                result.error_code,
                result.error_message.map(|message| message.to_string()),
            ) {
                return Err(error);
            }
            entries.extend(result.configs.into_iter().map(|config| ConfigEntry {
                name: config.name.to_string(),
                value: config.value.map(|value| value.to_string()),
                is_override: config.config_source == 1,
                read_only: config.read_only,
            }));
        }
        Ok(entries)
    }

    /// Sets and removes topic config overrides in one IncrementalAlterConfigs request;
    /// configs named in neither `set` nor `delete` are left as they are.
    pub async fn alter_configs(
        &self,
        topic: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<()> {
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = 2;
        resource.resource_name = text(topic);
        resource.configs = set
            .iter()
            .map(|(key, value)| {
                let mut change = AlterableConfig::default();
                change.name = text(key);
                change.config_operation = 0;
                change.value = Some(text(value));
                change
            })
            .chain(delete.iter().map(|key| {
                let mut change = AlterableConfig::default();
                change.name = text(key);
                change.config_operation = 1;
                change.value = None;
                change
            }))
            .collect();
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![resource];
        let connection = self.cluster.any_connection().await?;
        let response = connection.call(request).await?;
        for result in response.responses {
            if let Some(error) = ClientError::from_code(
                &format!("alter configs of {topic}"),
                result.error_code,
                result.error_message.map(|message| message.to_string()),
            ) {
                return Err(error);
            }
        }
        Ok(())
    }

    /// The groups one reachable broker knows (ListGroups), by id. A Kafka broker lists only
    /// the groups it coordinates, so on a multi-broker Kafka cluster this may be a subset.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        // Each broker lists the groups it coordinates: ask them all, as Kafka's admin does.
        self.cluster.refresh(&[]).await?;
        let mut groups: Vec<GroupListing> = Vec::new();
        for (node_id, _) in self.cluster.brokers().await {
            let connection = self.cluster.connection(node_id).await?;
            let response = connection.call(ListGroupsRequest::default()).await?;
            if let Some(error) = ClientError::from_code("list groups", response.error_code, None) {
                return Err(error);
            }
            groups.extend(response.groups.into_iter().map(|group| GroupListing {
                group: group.group_id.0.to_string(),
                protocol_type: group.protocol_type.to_string(),
                state: group.group_state.to_string(),
            }));
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        // A coordinator that moved during the calls may have been listed twice.
        groups.dedup_by(|a, b| a.group == b.group);
        Ok(groups)
    }

    async fn coordinator(
        &self,
        group: &str,
    ) -> Result<std::sync::Arc<crate::connection::Connection>> {
        self.cluster.group_coordinator(group).await
    }

    async fn describe_group_once(&self, group: &str) -> Result<GroupDescription> {
        let connection = self.coordinator(group).await?;
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![GroupId(text(group))];
        let response = connection.call(request).await?;
        let described = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::UnexpectedResponse("DescribeGroups".to_string()))?;
        if let Some(error) = ClientError::from_code(
            &format!("describe group {group}"),
            described.error_code,
            None,
        ) {
            return Err(error);
        }
        let consumer = described.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group: group.to_string(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members: described
                .members
                .into_iter()
                .map(|member| GroupMember {
                    member_id: member.member_id.to_string(),
                    group_instance_id: member.group_instance_id.map(|id| id.to_string()),
                    client_id: member.client_id.to_string(),
                    client_host: member.client_host.to_string(),
                    assignment: if consumer {
                        crate::offsets::decode_assignment(member.member_assignment)
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        })
    }

    /// Committed offsets of a group with the log end and lag of each partition.
    async fn group_lag_once(&self, group: &str) -> Result<Vec<PartitionLag>> {
        let connection = self.coordinator(group).await?;
        let mut request = OffsetFetchRequest::default();
        request.group_id = GroupId(text(group));
        request.topics = None;
        let response = connection.call(request).await?;
        if let Some(error) = ClientError::from_code(
            &format!("fetch offsets of {group}"),
            response.error_code,
            None,
        ) {
            return Err(error);
        }
        let mut lags = Vec::new();
        for topic in response.topics {
            let name = topic.name.0.to_string();
            let ends: BTreeMap<i32, i64> = self
                .list_offsets(&name, OffsetSpec::Latest)
                .await?
                .into_iter()
                .collect();
            for partition in topic.partitions {
                let committed =
                    (partition.committed_offset >= 0).then_some(partition.committed_offset);
                let log_end_offset = ends.get(&partition.partition_index).copied().unwrap_or(-1);
                lags.push(PartitionLag {
                    topic: name.clone(),
                    partition: partition.partition_index,
                    committed,
                    log_end_offset,
                    lag: committed.map(|committed| (log_end_offset - committed).max(0)),
                });
            }
        }
        lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(lags)
    }

    /// Moves a group with no active members to `spec` on every partition of `topic`
    /// (the group must be empty, as with Kafka's tool). Returns the offsets set.
    async fn reset_offsets_once(
        &self,
        group: &str,
        topic: &str,
        spec: OffsetSpec,
    ) -> Result<Vec<(i32, i64)>> {
        let offsets = self.list_offsets(topic, spec).await?;
        let connection = self.coordinator(group).await?;
        let committer = crate::offsets::Committer {
            group,
            generation_id: -1,
            member_id: "",
        };
        let wanted = offsets
            .iter()
            .map(|&(partition, offset)| ((topic.to_string(), partition), offset))
            .collect();
        for (_, _, code) in crate::offsets::commit(&connection, committer, &wanted).await? {
            if let Some(error) =
                ClientError::from_code(&format!("reset offsets of {group}"), code, None)
            {
                return Err(error);
            }
        }
        Ok(offsets)
    }
}
