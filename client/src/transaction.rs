//! A transactional producer's exchanges with its transaction coordinator, as Kafka's
//! `TransactionManager` does them before KIP-890 part 2 (what every Kafka 4.x broker serves):
//! InitProducerId with the transactional id (fences older instances), AddPartitionsToTxn
//! before the first record of each partition in a transaction, AddOffsetsToTxn and
//! TxnOffsetCommit for consumed offsets, EndTxn to commit or abort.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lmq_wire::protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use lmq_wire::protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use lmq_wire::protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use lmq_wire::protocol::protocol::StrBytes;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::connection::Connection;
use crate::error::{ClientError, Result};

/// Kafka's codes a transactional producer handles itself.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const PRODUCER_FENCED: i16 = 90;

/// Backoff between retries of a coordinator call (Kafka's `retry.backoff.ms` default is
/// 100 ms; CONCURRENT_TRANSACTIONS is retried sooner, as the Java client does).
const BACKOFF: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The producer id and epoch a transactional id was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

#[derive(Debug, Default)]
struct State {
    /// Between `begin` and the end of `commit`/`abort`.
    in_transaction: bool,
    /// A newer instance took the transactional id (the broker's error saying so): nothing
    /// more works.
    fenced: Option<ClientError>,
    /// Partitions the coordinator has for the ongoing transaction.
    partitions: HashSet<(String, i32)>,
    /// Groups whose offsets the ongoing transaction carries.
    groups: HashSet<String>,
    /// A record of the transaction failed: it can only be aborted.
    failed: Option<ClientError>,
}

/// One transactional id's state in a producer.
#[derive(Debug)]
pub(crate) struct Transactions {
    id: String,
    timeout_ms: i32,
    /// Total time one coordinator call may take with its retries.
    request_timeout: Duration,
    coordinator: tokio::sync::Mutex<Option<Arc<Connection>>>,
    state: Mutex<State>,
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

impl Transactions {
    pub(crate) fn new(id: String, timeout: Duration, request_timeout: Duration) -> Self {
        Transactions {
            id,
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            request_timeout,
            coordinator: tokio::sync::Mutex::new(None),
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `call` against the coordinator until it succeeds or fails for good: a moved or
    /// loading coordinator is found again, CONCURRENT_TRANSACTIONS (the previous
    /// transaction's markers are still being written) and retriable errors are retried
    /// until the request timeout; a fenced producer is remembered.
    async fn with_coordinator<T, F, Fut>(&self, cluster: &Cluster, what: &str, call: F) -> Result<T>
    where
        F: Fn(Arc<Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        let mut backoff = BACKOFF;
        loop {
            let outcome = match self.coordinator_connection(cluster).await {
                Ok(connection) => call(connection).await,
                Err(error) => Err(error),
            };
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let code = match &error {
                ClientError::Kafka { code, .. } => Some(*code),
                _ => None,
            };
            if matches!(code, Some(PRODUCER_FENCED | INVALID_PRODUCER_EPOCH)) {
                self.state().fenced = Some(error.clone());
                return Err(error);
            }
            let moved = matches!(
                code,
                Some(NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS)
            ) || matches!(
                error,
                ClientError::Connection { .. } | ClientError::Connect { .. }
            );
            if moved {
                *self.coordinator.lock().await = None;
            }
            let again = moved || code == Some(CONCURRENT_TRANSACTIONS) || error.is_retriable();
            if !again || Instant::now() + backoff >= deadline {
                return Err(error);
            }
            tracing::debug!(what, %error, "retrying a transaction call");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn coordinator_connection(&self, cluster: &Cluster) -> Result<Arc<Connection>> {
        let mut cached = self.coordinator.lock().await;
        if let Some(connection) = cached.as_ref()
            && !connection.is_closed()
        {
            return Ok(Arc::clone(connection));
        }
        let connection = cluster.transaction_coordinator(&self.id).await?;
        *cached = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// InitProducerId with the transactional id: a producer id and a new epoch, which fences
    /// every older instance and has the coordinator abort (or finish) what one left open.
    pub(crate) async fn init(&self, cluster: &Cluster) -> Result<Identity> {
        let identity = self
            .with_coordinator(cluster, "InitProducerId", |connection| async move {
                let mut request = InitProducerIdRequest::default();
                request.transactional_id = Some(TransactionalId(text(&self.id)));
                request.transaction_timeout_ms = self.timeout_ms;
                request.producer_id = ProducerId(-1);
                request.producer_epoch = -1;
                let response = connection.call(request).await?;
                if let Some(error) =
                    ClientError::from_code("init transactions", response.error_code, None)
                {
                    return Err(error);
                }
                Ok(Identity {
                    producer_id: response.producer_id.0,
                    producer_epoch: response.producer_epoch,
                })
            })
            .await?;
        *self.state() = State::default();
        Ok(identity)
    }

    /// Fails with the broker's fencing error once a newer producer took the id: this
    /// producer can only be closed.
    fn usable(&self, state: &State) -> Result<()> {
        match &state.fenced {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Starts a transaction (local: the coordinator learns of it with the first partition).
    pub(crate) fn begin(&self) -> Result<()> {
        let mut state = self.state();
        self.usable(&state)?;
        if state.in_transaction {
            return Err(ClientError::InvalidArgument(
                "a transaction is already open: commit or abort it first".to_string(),
            ));
        }
        state.in_transaction = true;
        Ok(())
    }

    fn expect_open(&self) -> Result<()> {
        let state = self.state();
        self.usable(&state)?;
        if !state.in_transaction {
            return Err(ClientError::InvalidArgument(
                "no transaction is open: call begin first".to_string(),
            ));
        }
        Ok(())
    }

    /// Adds `topic`-`partition` to the ongoing transaction unless it is in already; a
    /// record may be sent to it only after this.
    pub(crate) async fn add_partition(
        &self,
        cluster: &Cluster,
        identity: Identity,
        topic: &str,
        partition: i32,
    ) -> Result<()> {
        self.expect_open()?;
        let key = (topic.to_string(), partition);
        if self.state().partitions.contains(&key) {
            return Ok(());
        }
        self.with_coordinator(cluster, "AddPartitionsToTxn", |connection| async move {
            let mut added = AddPartitionsToTxnTopic::default();
            added.name = TopicName(text(topic));
            added.partitions = vec![partition];
            let mut request = AddPartitionsToTxnRequest::default();
            request.v3_and_below_transactional_id = TransactionalId(text(&self.id));
            request.v3_and_below_producer_id = ProducerId(identity.producer_id);
            request.v3_and_below_producer_epoch = identity.producer_epoch;
            request.v3_and_below_topics = vec![added];
            let response = connection.call(request).await?;
            let code = response
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|topic| &topic.results_by_partition)
                .map(|result| result.partition_error_code)
                .find(|code| *code != 0)
                .unwrap_or(0);
            match ClientError::from_code(
                &format!("add {topic}-{partition} to the transaction"),
                code,
                None,
            ) {
                Some(error) => Err(error),
                None => Ok(()),
            }
        })
        .await?;
        self.state().partitions.insert(key);
        Ok(())
    }

    /// Commits `offsets` (topic, partition, next offset to read) of consumer group `group`
    /// as part of the transaction: they count only if it commits. `member` is the consumer's
    /// (generation, member id, group instance id), or `None` for a group without members
    /// (the coordinator then checks no generation, as Kafka).
    pub(crate) async fn send_offsets(
        &self,
        cluster: &Cluster,
        identity: Identity,
        group: &str,
        offsets: &[(String, i32, i64)],
        member: Option<(i32, String, Option<String>)>,
    ) -> Result<()> {
        self.expect_open()?;
        if !self.state().groups.contains(group) {
            self.with_coordinator(cluster, "AddOffsetsToTxn", |connection| async move {
                let mut request = AddOffsetsToTxnRequest::default();
                request.transactional_id = TransactionalId(text(&self.id));
                request.producer_id = ProducerId(identity.producer_id);
                request.producer_epoch = identity.producer_epoch;
                request.group_id = GroupId(text(group));
                let response = connection.call(request).await?;
                match ClientError::from_code(
                    "add offsets to the transaction",
                    response.error_code,
                    None,
                ) {
                    Some(error) => Err(error),
                    None => Ok(()),
                }
            })
            .await?;
            self.state().groups.insert(group.to_string());
        }
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let mut committed = TxnOffsetCommitRequestPartition::default();
            committed.partition_index = *partition;
            committed.committed_offset = *offset;
            committed.committed_leader_epoch = -1;
            match topics.iter_mut().find(|item| item.name.0.as_str() == topic) {
                Some(item) => item.partitions.push(committed),
                None => {
                    let mut item = TxnOffsetCommitRequestTopic::default();
                    item.name = TopicName(text(topic));
                    item.partitions = vec![committed];
                    topics.push(item);
                }
            }
        }
        let (generation_id, member_id, instance_id) = member.unwrap_or((-1, String::new(), None));
        let mut request = TxnOffsetCommitRequest::default();
        request.transactional_id = TransactionalId(text(&self.id));
        request.group_id = GroupId(text(group));
        request.producer_id = ProducerId(identity.producer_id);
        request.producer_epoch = identity.producer_epoch;
        request.generation_id = generation_id;
        request.member_id = text(&member_id);
        request.group_instance_id = instance_id.as_deref().map(text);
        request.topics = topics;
        // The offsets go to the group's coordinator, found like a consumer finds it.
        crate::retry::retrying("TxnOffsetCommit", self.request_timeout, || {
            let request = request.clone();
            async move {
                let connection = cluster.group_coordinator(group).await?;
                let response = connection.call(request).await?;
                let code = response
                    .topics
                    .iter()
                    .flat_map(|topic| &topic.partitions)
                    .map(|partition| partition.error_code)
                    .find(|code| *code != 0)
                    .unwrap_or(0);
                match ClientError::from_code("commit offsets in the transaction", code, None) {
                    Some(error) => Err(error),
                    None => Ok(()),
                }
            }
        })
        .await
    }

    /// Remembers that a record of the ongoing transaction failed: it can only be aborted.
    pub(crate) fn record_failure(&self, error: &ClientError) {
        let mut state = self.state();
        if let ClientError::Kafka {
            code: PRODUCER_FENCED | INVALID_PRODUCER_EPOCH,
            ..
        } = error
        {
            state.fenced = Some(error.clone());
        }
        if state.in_transaction && state.failed.is_none() {
            state.failed = Some(error.clone());
        }
    }

    /// The first failed record's error, when the transaction cannot commit.
    pub(crate) fn failure(&self) -> Option<ClientError> {
        self.state().failed.clone()
    }

    /// EndTxn: commits or aborts. The caller has flushed every record first. A transaction
    /// that reached no partition and no group ends here without the coordinator (it never
    /// learnt of it), as Kafka's producer does.
    pub(crate) async fn end(
        &self,
        cluster: &Cluster,
        identity: Identity,
        commit: bool,
    ) -> Result<()> {
        self.expect_open()?;
        let touched = {
            let state = self.state();
            !state.partitions.is_empty() || !state.groups.is_empty()
        };
        if touched {
            self.with_coordinator(cluster, "EndTxn", |connection| async move {
                let mut request = EndTxnRequest::default();
                request.transactional_id = TransactionalId(text(&self.id));
                request.producer_id = ProducerId(identity.producer_id);
                request.producer_epoch = identity.producer_epoch;
                request.committed = commit;
                let response = connection.call(request).await?;
                let what = if commit { "commit" } else { "abort" };
                match ClientError::from_code(
                    &format!("{what} the transaction"),
                    response.error_code,
                    None,
                ) {
                    Some(error) => Err(error),
                    None => Ok(()),
                }
            })
            .await?;
        }
        let mut state = self.state();
        state.in_transaction = false;
        state.partitions.clear();
        state.groups.clear();
        state.failed = None;
        Ok(())
    }
}
