//! The transaction coordinator's driver: the pure [`Transactions`] machine behind a mutex,
//! its records appended to `__transaction_state` through the [`CoordinatorLog`], each
//! request's answer sent once the record it waits for is durable (fsync by the flush
//! policy, then the ISR), and the machine told of every outcome.
//!
//! Markers are not sent here: each marker request goes to the [`MarkerSink`] given at
//! construction (the broker's marker channel, which writes WriteTxnMarkers to the
//! partition leaders); written ones come back through [`TxnCoordinator::marker_written`].
//! [`TxnCoordinator::pending_markers`] lists every unfinished request. A marker refused for
//! good (the coordinator or the producer fenced) needs no call: the transaction stays
//! prepared here until the partition's next owner loads it and sends its markers again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lmq_storage::StorageError;
use tokio::sync::oneshot;

use super::log::Replayed;
use super::state::{
    AddPartitionsRequest, EndTxnRequest, InitProducerIdRequest, ListFilter, Markers, Output,
    ProducerIdAndEpoch, ProducerIdSource, Reply, Store, Token, Transactions, TxnConfig,
    TxnDescription, TxnError, TxnListing,
};
use super::{TopicPartition, TransactionVersion};
use crate::config::TransactionSettings;
use crate::coordinator_log::{CoordinatorLog, LogError, Ownership};
use crate::partition::Partition;

/// Where marker requests go (the broker's marker channel). Called under the coordinator's
/// lock: it must only queue. At most one request per transactional id is outstanding (the
/// id's next transition waits for its markers), so its queue is bounded by the ids.
pub type MarkerSink = Box<dyn Fn(Markers) + Send + Sync>;

/// How long a tombstone may wait for the ISR (a transition waits its transaction timeout,
/// as Kafka's append does).
const TOMBSTONE_TIMEOUT: Duration = Duration::from_secs(5);

/// The machine's configuration from the broker's `[transactions]` settings.
pub fn txn_config(settings: &TransactionSettings, version: TransactionVersion) -> TxnConfig {
    TxnConfig {
        transaction_max_timeout_ms: i32::try_from(settings.max_timeout_ms).unwrap_or(i32::MAX),
        transactional_id_expiration_ms: settings.transactional_id_expiration_ms,
        transaction_version: version,
        state_partitions: usize::try_from(settings.state_log_num_partitions).unwrap_or(1),
        ..TxnConfig::default()
    }
}

#[derive(Debug)]
struct Inner {
    txns: Transactions,
    waiters: BTreeMap<Token, oneshot::Sender<Reply>>,
    next_token: Token,
}

struct Shared {
    inner: Mutex<Inner>,
    log: CoordinatorLog,
    markers: MarkerSink,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Shared")
            .field("inner", &self.inner)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct TxnCoordinator {
    shared: Arc<Shared>,
}

/// At most one producer id, allocated by the driver before the call that needs it.
#[derive(Debug)]
struct Spare(Option<i64>);

impl ProducerIdSource for Spare {
    fn next_producer_id(&mut self) -> Result<i64, TxnError> {
        self.0.take().ok_or(TxnError::ProducerIdsUnavailable)
    }
}

impl TxnCoordinator {
    /// A coordinator of no partition yet: [`TxnCoordinator::adopt`] and
    /// [`TxnCoordinator::reload`] bring them.
    pub fn new(config: TxnConfig, markers: MarkerSink) -> Self {
        TxnCoordinator {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    txns: Transactions::new(config),
                    waiters: BTreeMap::new(),
                    next_token: 0,
                }),
                log: CoordinatorLog::new(super::TRANSACTION_STATE_TOPIC, Vec::new()),
                markers,
            }),
        }
    }

    /// Takes the cluster's `__transaction_state` partitions; the ids of replaced ones are
    /// dropped (their waiting requests answered NOT_COORDINATOR) until reloaded.
    pub fn adopt(&self, partitions: Vec<Arc<Partition>>) {
        let count = partitions.len();
        let replaced = self.shared.log.adopt(partitions);
        let mut inner = self.shared.lock();
        let held: Vec<usize> = inner
            .txns
            .partitions()
            .into_iter()
            .map(|(index, _)| index)
            .filter(|index| replaced.contains(*index) || *index >= count)
            .collect();
        for index in held {
            let outputs = inner.txns.unload(index, None);
            self.shared.deliver(&mut inner, outputs, 0);
        }
    }

    /// This broker leads `__transaction_state` partition `index`: its records are replayed
    /// (the log, replicated from the previous leader, is the truth) and its ids served from
    /// then on, the partition's leader epoch as their coordinator epoch; prepared
    /// transactions send their markers again.
    pub fn reload(&self, index: usize, now_ms: i64) -> Result<(), StorageError> {
        let Some(partition) = self.shared.log.partition(index) else {
            return Ok(());
        };
        // The epoch this load is for (read first: a later leadership loads again).
        let epoch = partition.leader_epoch();
        {
            let mut inner = self.shared.lock();
            let outputs = inner.txns.load_begin(index, epoch);
            self.shared.deliver(&mut inner, outputs, now_ms);
        }
        let mut replayed = Replayed::default();
        let records = self.shared.log.replay(&partition, |_, record| {
            if let Some(key) = record.key {
                replayed.apply(key, record.value);
            }
        })?;
        let ids = replayed.transactions.len();
        let mut inner = self.shared.lock();
        let outputs = inner.txns.restore(index, epoch, replayed, now_ms);
        self.shared.deliver(&mut inner, outputs, now_ms);
        self.shared.log.mark_loaded(index, epoch);
        tracing::info!(partition = index, records, ids, "loaded transaction state");
        Ok(())
    }

    /// Forgets partitions this broker no longer leads (call before the timers, and when
    /// the metadata moves a partition away).
    pub fn drop_lost_partitions(&self) {
        let mut inner = self.shared.lock();
        for (index, _) in inner.txns.partitions() {
            let still_led = self
                .shared
                .log
                .partition(index)
                .is_some_and(|partition| partition.is_leader());
            if !still_led {
                let outputs = inner.txns.unload(index, None);
                self.shared.deliver(&mut inner, outputs, 0);
            }
        }
    }

    /// Ownership as the log sees it (the topic may not exist yet: COORDINATOR_NOT_AVAILABLE).
    fn check_owner(&self, transactional_id: &str) -> Result<(), TxnError> {
        match self.shared.log.ownership(transactional_id) {
            Ownership::Owned => Ok(()),
            Ownership::Loading => Err(TxnError::CoordinatorLoadInProgress),
            Ownership::Elsewhere => Err(TxnError::NotCoordinator),
            Ownership::NoTopic => Err(TxnError::CoordinatorNotAvailable),
        }
    }

    /// Runs one request on the machine and waits for its answer. When the machine needed a
    /// producer id it did not have, one is allocated and the request runs again.
    async fn request<A>(
        &self,
        transactional_id: &str,
        now_ms: i64,
        allocate: A,
        run: impl Fn(&mut Transactions, Token, &mut dyn ProducerIdSource) -> Vec<Output>,
        gone: Reply,
    ) -> Reply
    where
        A: AsyncFnOnce() -> Result<i64, TxnError>,
    {
        if let Err(error) = self.check_owner(transactional_id) {
            return error_reply(&gone, error);
        }
        let mut allocate = Some(allocate);
        let mut spare = None;
        loop {
            let receiver = {
                let mut inner = self.shared.lock();
                let token = inner.token();
                let (sender, receiver) = oneshot::channel();
                inner.waiters.insert(token, sender);
                let mut source = Spare(spare.take());
                let outputs = run(&mut inner.txns, token, &mut source);
                self.shared.deliver(&mut inner, outputs, now_ms);
                receiver
            };
            // A waiter dropped unanswered: the partition was unloaded.
            let reply = receiver.await.unwrap_or_else(|_| gone.clone());
            if reply_error(&reply) == Some(TxnError::ProducerIdsUnavailable)
                && let Some(allocate) = allocate.take()
            {
                match allocate().await {
                    Ok(id) => {
                        spare = Some(id);
                        continue;
                    }
                    Err(error) => return error_reply(&gone, error),
                }
            }
            return reply;
        }
    }

    /// InitProducerId with a transactional id; `allocate` gives a cluster-unique producer id
    /// (called only when one is needed).
    pub async fn init_producer_id<A>(
        &self,
        request: InitProducerIdRequest,
        now_ms: i64,
        allocate: A,
    ) -> Result<ProducerIdAndEpoch, TxnError>
    where
        A: AsyncFnOnce() -> Result<i64, TxnError>,
    {
        let id = request.transactional_id.clone();
        let gone = Reply::InitProducerId(Err(TxnError::NotCoordinator));
        let run = |txns: &mut Transactions, token, ids: &mut dyn ProducerIdSource| {
            txns.init_producer_id(token, request.clone(), ids, now_ms)
        };
        match self.request(&id, now_ms, allocate, run, gone).await {
            Reply::InitProducerId(result) => result,
            _ => Err(TxnError::UnknownServerError),
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn with the group's offsets partition).
    pub async fn add_partitions(
        &self,
        request: AddPartitionsRequest,
        now_ms: i64,
    ) -> Result<(), TxnError> {
        let id = request.transactional_id.clone();
        let gone = Reply::AddPartitions(Err(TxnError::NotCoordinator));
        let run = |txns: &mut Transactions, token, _: &mut dyn ProducerIdSource| {
            txns.add_partitions(token, request.clone(), now_ms)
        };
        let no_ids = async || Err(TxnError::ProducerIdsUnavailable);
        match self.request(&id, now_ms, no_ids, run, gone).await {
            Reply::AddPartitions(result) => result,
            _ => Err(TxnError::UnknownServerError),
        }
    }

    /// EndTxn; `allocate` gives a producer id when a version-2 epoch overflows.
    pub async fn end_txn<A>(
        &self,
        request: EndTxnRequest,
        now_ms: i64,
        allocate: A,
    ) -> Result<ProducerIdAndEpoch, TxnError>
    where
        A: AsyncFnOnce() -> Result<i64, TxnError>,
    {
        let id = request.transactional_id.clone();
        let gone = Reply::EndTxn(Err(TxnError::NotCoordinator));
        let run = |txns: &mut Transactions, token, ids: &mut dyn ProducerIdSource| {
            txns.end_txn(token, request.clone(), ids, now_ms)
        };
        match self.request(&id, now_ms, allocate, run, gone).await {
            Reply::EndTxn(result) => result,
            _ => Err(TxnError::UnknownServerError),
        }
    }

    /// The verification form of AddPartitionsToTxn (KIP-890 part 1).
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Result<(), TxnError>>, TxnError> {
        self.check_owner(transactional_id)?;
        self.shared
            .lock()
            .txns
            .verify_partitions(transactional_id, producer, partitions)
    }

    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, TxnError> {
        if !transactional_id.is_empty() {
            self.check_owner(transactional_id)?;
        }
        self.shared.lock().txns.describe(transactional_id)
    }

    pub fn list(&self, filter: &ListFilter, now_ms: i64) -> Result<TxnListing, TxnError> {
        self.shared.lock().txns.list(filter, now_ms)
    }

    /// Aborts transactions past their timeout (every
    /// `abort_timed_out_transaction_cleanup_interval_ms`).
    pub fn abort_timed_out(&self, now_ms: i64) {
        self.drop_lost_partitions();
        let mut inner = self.shared.lock();
        // No id at hand: a version-2 producer fenced at an exhausted epoch keeps its id
        // until its next InitProducerId (see `Transactions::tick`).
        let outputs = inner.txns.tick(now_ms, &mut Spare(None));
        self.shared.deliver(&mut inner, outputs, now_ms);
    }

    /// Deletes expired transactional ids (every
    /// `remove_expired_transaction_cleanup_interval_ms`).
    pub fn expire_ids(&self, now_ms: i64) {
        self.drop_lost_partitions();
        let mut inner = self.shared.lock();
        let outputs = inner.txns.expire_ids(now_ms);
        self.shared.deliver(&mut inner, outputs, now_ms);
    }

    /// Every unfinished marker request (for a sender that lost its queue).
    pub fn pending_markers(&self) -> Vec<Markers> {
        self.shared.lock().txns.pending_markers()
    }

    /// A marker was written (or its partition's topic is gone).
    pub fn marker_written(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        partition: &TopicPartition,
        now_ms: i64,
    ) {
        let mut inner = self.shared.lock();
        let outputs = inner
            .txns
            .marker_written(transactional_id, producer, partition, now_ms);
        self.shared.deliver(&mut inner, outputs, now_ms);
    }

    /// Answers every waiting request NOT_COORDINATOR (the broker stops).
    pub fn shutdown(&self) {
        let mut inner = self.shared.lock();
        let partitions = inner.txns.partitions();
        for (index, _) in partitions {
            let outputs = inner.txns.unload(index, None);
            self.shared.deliver(&mut inner, outputs, 0);
        }
    }
}

impl Inner {
    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deliver(self: &Arc<Self>, inner: &mut Inner, outputs: Vec<Output>, now_ms: i64) {
        for output in outputs {
            match output {
                Output::Reply(token, reply) => {
                    // A gone connection has nobody to tell.
                    if let Some(sender) = inner.waiters.remove(&token) {
                        let _ = sender.send(reply);
                    }
                }
                Output::Store(store) => self.store(inner, store, now_ms),
                Output::SendMarkers(markers) => (self.markers)(markers),
            }
        }
    }

    /// Appends a record while this broker still leads its partition at the coordinator
    /// epoch it was made for; the machine hears the outcome once it is known.
    fn store(self: &Arc<Self>, inner: &mut Inner, store: Store, now_ms: i64) {
        let led = self
            .log
            .partition(store.state_partition)
            .is_some_and(|partition| {
                partition.is_leader() && partition.leader_epoch() == store.coordinator_epoch
            });
        let appended = if led {
            let records = [(store.key_bytes(), store.value_bytes())];
            self.log
                .append(store.state_partition, &records, now_ms)
                .map_err(|error| store_error(&error))
        } else {
            Err(TxnError::NotCoordinator)
        };
        let mut durable = match appended {
            Ok(durable) => durable,
            Err(error) => return self.stored(inner, store.id, Err(error), now_ms),
        };
        if let Some(result) = durable.settled() {
            return self.stored(inner, store.id, result.map_err(|e| store_error(&e)), now_ms);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.stored(inner, store.id, Err(TxnError::NotCoordinator), now_ms);
        };
        let timeout = store.value.as_ref().map_or(TOMBSTONE_TIMEOUT, |value| {
            Duration::from_millis(u64::try_from(value.timeout_ms).unwrap_or(0))
        });
        let shared = Arc::clone(self);
        runtime.spawn(async move {
            let result = durable.wait(timeout).await.map_err(|e| store_error(&e));
            let mut inner = shared.lock();
            shared.stored(&mut inner, store.id, result, now_ms);
        });
    }

    fn stored(
        self: &Arc<Self>,
        inner: &mut Inner,
        store: u64,
        result: Result<(), TxnError>,
        now_ms: i64,
    ) {
        if let Err(error) = result {
            tracing::warn!(store, %error, "storing a transaction state record failed");
        }
        let outputs = inner.txns.stored(store, result, now_ms);
        self.deliver(inner, outputs, now_ms);
    }
}

/// Kafka's mapping of a failed state append (`appendTransactionToLog`): a batch too large
/// UNKNOWN_SERVER_ERROR, everything else (not leader, storage, no ISR in time) makes the
/// client look for the coordinator again.
fn store_error(error: &LogError) -> TxnError {
    match error {
        LogError::Storage(StorageError::BatchTooLarge { .. }) => TxnError::UnknownServerError,
        LogError::Storage(_) | LogError::NotCoordinator => TxnError::NotCoordinator,
    }
}

fn reply_error(reply: &Reply) -> Option<TxnError> {
    match reply {
        Reply::InitProducerId(result) | Reply::EndTxn(result) => result.err(),
        Reply::AddPartitions(result) => result.err(),
    }
}

/// `error` in the shape of `like`.
fn error_reply(like: &Reply, error: TxnError) -> Reply {
    match like {
        Reply::InitProducerId(_) => Reply::InitProducerId(Err(error)),
        Reply::AddPartitions(_) => Reply::AddPartitions(Err(error)),
        Reply::EndTxn(_) => Reply::EndTxn(Err(error)),
    }
}

#[cfg(test)]
mod tests {
    //! The driver over a real `__transaction_state` partition.

    use std::sync::Arc;

    use lmq_storage::{LogConfig, LogOptions, PartitionLog};

    use super::*;
    use crate::partition::IsrWakeup;
    use crate::replication::{Assignment, ReplicationConfig};
    use crate::txn::TxnState;
    use crate::txn::state::TxnResult;

    fn led_partition(dir: &std::path::Path, epoch: i32) -> Arc<Partition> {
        let (log, _) =
            PartitionLog::open(dir, LogConfig::default(), LogOptions::default(), 0).unwrap();
        let partition = Arc::new(Partition::new(0, log, IsrWakeup::default()));
        let assignment = Assignment {
            leader_id: 1,
            leader_epoch: epoch,
            replicas: vec![1],
            isr: vec![1],
        };
        partition
            .become_role(1, &assignment, ReplicationConfig::default(), 0)
            .unwrap();
        partition
    }

    type Sent = Arc<std::sync::Mutex<Vec<Markers>>>;

    /// A coordinator whose marker requests land in the returned list.
    fn unloaded() -> (TxnCoordinator, Sent) {
        let sent: Sent = Arc::default();
        let sink = Arc::clone(&sent);
        let coordinator = TxnCoordinator::new(
            TxnConfig {
                state_partitions: 1,
                ..TxnConfig::default()
            },
            Box::new(move |markers| sink.lock().unwrap().push(markers)),
        );
        (coordinator, sent)
    }

    fn coordinator(partition: &Arc<Partition>) -> (TxnCoordinator, Sent) {
        let (coordinator, sent) = unloaded();
        coordinator.adopt(vec![Arc::clone(partition)]);
        coordinator.reload(0, 0).unwrap();
        (coordinator, sent)
    }

    fn take(sent: &Sent) -> Vec<Markers> {
        std::mem::take(&mut *sent.lock().unwrap())
    }

    #[tokio::test]
    async fn a_commit_is_stored_and_a_new_coordinator_resends_its_markers() {
        let dir = tempfile::tempdir().unwrap();
        let partition = led_partition(dir.path(), 0);
        let (first, first_sent) = coordinator(&partition);
        let allocated = async || Ok(4000);
        let producer = first
            .init_producer_id(
                InitProducerIdRequest {
                    transactional_id: "t".to_string(),
                    timeout_ms: 60_000,
                    expected: None,
                },
                0,
                allocated,
            )
            .await
            .unwrap();
        assert_eq!(
            producer,
            ProducerIdAndEpoch {
                producer_id: 4000,
                producer_epoch: 0
            }
        );
        let partitions: BTreeSet<TopicPartition> =
            [TopicPartition::new("orders", 3)].into_iter().collect();
        first
            .add_partitions(
                AddPartitionsRequest {
                    transactional_id: "t".to_string(),
                    producer_id: producer.producer_id,
                    producer_epoch: producer.producer_epoch,
                    partitions: partitions.clone(),
                    client_version: TransactionVersion::V0,
                },
                1,
            )
            .await
            .unwrap();
        let no_ids = async || Err(TxnError::ProducerIdsUnavailable);
        let ended = first
            .end_txn(
                EndTxnRequest {
                    transactional_id: "t".to_string(),
                    producer_id: producer.producer_id,
                    producer_epoch: producer.producer_epoch,
                    result: TxnResult::Commit,
                    client_version: TransactionVersion::V2,
                },
                2,
                no_ids,
            )
            .await
            .unwrap();
        assert_eq!(ended.producer_epoch, 1, "version 2 bumps the epoch");
        let markers = take(&first_sent);
        assert_eq!(markers.len(), 1);
        assert_eq!(markers[0].partitions, partitions);

        // The partition is led again at epoch 1 (a failover) before any marker is written:
        // a coordinator loading the log resumes the commit.
        drop(first);
        let again = Assignment {
            leader_id: 1,
            leader_epoch: 1,
            replicas: vec![1],
            isr: vec![1],
        };
        partition
            .become_role(1, &again, ReplicationConfig::default(), 10)
            .unwrap();
        let (second, second_sent) = coordinator(&partition);
        let resent = take(&second_sent);
        assert_eq!(resent.len(), 1);
        assert_eq!(resent[0].coordinator_epoch, 1);
        assert_eq!(resent[0].result, TxnResult::Commit);
        assert_eq!(resent[0].producer_epoch, 1);
        assert_eq!(
            second.describe("t").map(|d| d.state),
            Ok(TxnState::PrepareCommit)
        );
        second.marker_written(
            "t",
            ProducerIdAndEpoch {
                producer_id: 4000,
                producer_epoch: 1,
            },
            &TopicPartition::new("orders", 3),
            20,
        );
        assert_eq!(
            second.describe("t").map(|d| d.state),
            Ok(TxnState::CompleteCommit)
        );
        // A third load finds the completed transaction.
        let (third, third_sent) = unloaded();
        third.adopt(vec![Arc::clone(&partition)]);
        assert_eq!(
            third.describe("t"),
            Err(TxnError::CoordinatorLoadInProgress)
        );
        third.reload(0, 30).unwrap();
        assert!(take(&third_sent).is_empty());
        assert_eq!(
            third.describe("t").map(|d| (d.state, d.producer_epoch)),
            Ok((TxnState::CompleteCommit, 1))
        );
    }
}
