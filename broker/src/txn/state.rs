//! Kafka's transaction coordinator as a state machine without I/O.
//!
//! Inputs are the transaction requests (InitProducerId with a transactional id,
//! AddPartitionsToTxn / AddOffsetsToTxn, EndTxn, the verification form of
//! AddPartitionsToTxn, DescribeTransactions, ListTransactions), the driver's reports
//! ([`Transactions::stored`], [`Transactions::marker_written`]), loading and unloading of
//! `__transaction_state` partitions, and ticks of a clock passed in as `now_ms`. Outputs are
//! [`Output`]s: answers to requests made with a [`Token`], records to store, markers to
//! write.
//!
//! Each id has at most one transition in flight (Kafka's pending state): it is computed,
//! handed out as an [`Output::Store`], and applied only when the driver reports the record
//! durable; every other request on the id meanwhile gets CONCURRENT_TRANSACTIONS. A request
//! whose answer depends on a stored transition is answered by the `stored` call's outputs.
//!
//! ```text
//! Empty/Complete* ──AddPartitions──▶ Ongoing ──EndTxn──▶ PrepareCommit/PrepareAbort
//!       ▲                              │ InitProducerId or timeout: fence, abort   │ markers
//!       └──InitProducerId (epoch bump)─┴──────────────────▶ PrepareAbort           ▼ written
//!                                                         CompleteCommit/CompleteAbort
//! ```

use std::collections::{BTreeMap, BTreeSet};

use super::log::{Replayed, TxnLogValue, encoded_value_bytes};
use super::{
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TopicPartition, TransactionVersion, TxnState, partition_for,
};

mod model;

pub use model::*;

/// A `__transaction_state` partition this broker leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ownership {
    coordinator_epoch: i32,
    loading: bool,
}

/// Every transactional id of the `__transaction_state` partitions this broker leads.
#[derive(Debug)]
pub struct Transactions {
    config: TxnConfig,
    owned: BTreeMap<usize, Ownership>,
    ids: BTreeMap<String, TxnMetadata>,
    /// The id each store in flight belongs to.
    stores: BTreeMap<StoreId, String>,
    next_store: StoreId,
}

impl Transactions {
    pub fn new(config: TxnConfig) -> Self {
        Transactions {
            config,
            owned: BTreeMap::new(),
            ids: BTreeMap::new(),
            stores: BTreeMap::new(),
            next_store: 0,
        }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.ids.get(transactional_id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The state partitions this machine serves or loads, with their coordinator epochs.
    pub fn partitions(&self) -> Vec<(usize, i32)> {
        self.owned
            .iter()
            .map(|(partition, ownership)| (*partition, ownership.coordinator_epoch))
            .collect()
    }

    pub fn state_partition(&self, transactional_id: &str) -> usize {
        partition_for(transactional_id, self.config.state_partitions)
    }

    /// The coordinator epoch of the id's partition when this broker serves it:
    /// NOT_COORDINATOR when it does not lead it, COORDINATOR_LOAD_IN_PROGRESS while loading.
    pub fn owner(&self, transactional_id: &str) -> Result<i32, TxnError> {
        match self.owned.get(&self.state_partition(transactional_id)) {
            None => Err(TxnError::NotCoordinator),
            Some(ownership) if ownership.loading => Err(TxnError::CoordinatorLoadInProgress),
            Some(ownership) => Ok(ownership.coordinator_epoch),
        }
    }

    /// This broker became leader of state partition `partition` at `coordinator_epoch`
    /// (its leader epoch): its ids answer COORDINATOR_LOAD_IN_PROGRESS until
    /// [`Transactions::restore`]. Whatever was kept of the partition before is dropped
    /// (its waiting requests answered NOT_COORDINATOR), as Kafka's `onElection`.
    pub fn load_begin(&mut self, partition: usize, coordinator_epoch: i32) -> Vec<Output> {
        let outputs = self.drop_partition(partition);
        self.owned.insert(
            partition,
            Ownership {
                coordinator_epoch,
                loading: true,
            },
        );
        outputs
    }

    /// The replay of state partition `partition` is done: its ids are served from now on.
    /// Transactions found prepared resume: their markers are sent again (a prepared
    /// transaction without partitions is completed at once). Ignored unless the partition
    /// is still loading at `coordinator_epoch` (a newer election or an unload came in
    /// between).
    pub fn restore(
        &mut self,
        partition: usize,
        coordinator_epoch: i32,
        replayed: Replayed,
        now_ms: i64,
    ) -> Vec<Output> {
        let expected = Ownership {
            coordinator_epoch,
            loading: true,
        };
        if self.owned.get(&partition) != Some(&expected) {
            return Vec::new();
        }
        let mut outputs = Vec::new();
        for (transactional_id, value) in replayed.transactions {
            if self.state_partition(&transactional_id) != partition {
                tracing::warn!(
                    transactional_id,
                    partition,
                    "a transaction state record in another id's partition"
                );
                continue;
            }
            let mut metadata = TxnMetadata {
                transactional_id: transactional_id.clone(),
                producer_id: value.producer_id,
                previous_producer_id: value.previous_producer_id,
                next_producer_id: value.next_producer_id,
                producer_epoch: value.producer_epoch,
                last_producer_epoch: NO_PRODUCER_EPOCH,
                timeout_ms: value.timeout_ms,
                state: value.state,
                partitions: value.partitions,
                start_ms: value.start_ms,
                last_update_ms: value.last_update_ms,
                client_version: TransactionVersion::from_feature_level(
                    value.client_transaction_version,
                ),
                pending: None,
            };
            let result = match metadata.state {
                TxnState::PrepareCommit => Some(TxnResult::Commit),
                TxnState::PrepareAbort => Some(TxnResult::Abort),
                _ => None,
            };
            if let Some(result) = result {
                outputs.extend(self.begin_markers(
                    &mut metadata,
                    result,
                    coordinator_epoch,
                    now_ms,
                ));
            }
            self.ids.insert(transactional_id, metadata);
        }
        if self.ids.len() > self.config.transactional_ids_max {
            tracing::warn!(
                ids = self.ids.len(),
                limit = self.config.transactional_ids_max,
                "more transactional ids loaded than transactional_ids_max: new ids are refused"
            );
        }
        self.owned.insert(
            partition,
            Ownership {
                coordinator_epoch,
                loading: false,
            },
        );
        outputs
    }

    /// This broker no longer leads state partition `partition` (at `coordinator_epoch`
    /// when known): its ids are forgotten and their waiting requests answered
    /// NOT_COORDINATOR. A newer election than `coordinator_epoch` is left alone.
    pub fn unload(&mut self, partition: usize, coordinator_epoch: Option<i32>) -> Vec<Output> {
        if let (Some(epoch), Some(ownership)) = (coordinator_epoch, self.owned.get(&partition))
            && ownership.coordinator_epoch != epoch
        {
            return Vec::new();
        }
        self.owned.remove(&partition);
        self.drop_partition(partition)
    }

    fn drop_partition(&mut self, partition: usize) -> Vec<Output> {
        let partitions = self.config.state_partitions;
        let dropped: Vec<String> = self
            .ids
            .keys()
            .filter(|id| partition_for(id, partitions) == partition)
            .cloned()
            .collect();
        let mut outputs = Vec::new();
        for transactional_id in dropped {
            let Some(metadata) = self.ids.remove(&transactional_id) else {
                continue;
            };
            if let Some(Pending::Store { store, then, .. }) = metadata.pending {
                self.stores.remove(&store);
                outputs.extend(fail_waiter(then, TxnError::NotCoordinator));
            }
        }
        outputs
    }

    fn store_id(&mut self, transactional_id: &str) -> StoreId {
        self.next_store += 1;
        self.stores
            .insert(self.next_store, transactional_id.to_string());
        self.next_store
    }

    /// Makes `transit` the id's pending transition and asks for its record.
    fn store(
        &mut self,
        metadata: &mut TxnMetadata,
        coordinator_epoch: i32,
        transit: Transit,
        then: AfterStore,
    ) -> Output {
        let store = self.store_id(&metadata.transactional_id);
        let value = (then != AfterStore::Expire).then(|| transit.value.clone());
        metadata.pending = Some(Pending::Store {
            store,
            transit,
            then,
        });
        Output::Store(Store {
            id: store,
            state_partition: self.state_partition(&metadata.transactional_id),
            coordinator_epoch,
            transactional_id: metadata.transactional_id.clone(),
            value,
            value_version: self.config.transaction_version.log_value_version(),
        })
    }

    /// InitProducerId with a transactional id: a producer id and a bumped epoch, stored
    /// before the answer. An ongoing transaction of an older producer is aborted first
    /// (its epoch fenced) and the request answered CONCURRENT_TRANSACTIONS, so the client
    /// retries and gets its epoch once the abort completed (as Kafka).
    pub fn init_producer_id(
        &mut self,
        token: Token,
        request: InitProducerIdRequest,
        producer_ids: &mut dyn ProducerIdSource,
        now_ms: i64,
    ) -> Vec<Output> {
        let reply = |error: TxnError| vec![Output::Reply(token, Reply::InitProducerId(Err(error)))];
        if request.transactional_id.is_empty() {
            return reply(TxnError::InvalidRequest);
        }
        if request.timeout_ms <= 0 || request.timeout_ms > self.config.transaction_max_timeout_ms {
            return reply(TxnError::InvalidTransactionTimeout);
        }
        let coordinator_epoch = match self.owner(&request.transactional_id) {
            Ok(epoch) => epoch,
            Err(error) => return reply(error),
        };
        if !self.ids.contains_key(&request.transactional_id) {
            if self.ids.len() >= self.config.transactional_ids_max {
                return reply(TxnError::LimitExceeded);
            }
            let producer_id = match producer_ids.next_producer_id() {
                Ok(id) => id,
                Err(error) => return reply(error),
            };
            self.ids.insert(
                request.transactional_id.clone(),
                TxnMetadata {
                    transactional_id: request.transactional_id.clone(),
                    producer_id,
                    previous_producer_id: NO_PRODUCER_ID,
                    next_producer_id: NO_PRODUCER_ID,
                    producer_epoch: NO_PRODUCER_EPOCH,
                    last_producer_epoch: NO_PRODUCER_EPOCH,
                    timeout_ms: request.timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    start_ms: -1,
                    last_update_ms: now_ms,
                    client_version: TransactionVersion::V0,
                    pending: None,
                },
            );
        }
        let Some(mut metadata) = self.ids.remove(&request.transactional_id) else {
            return reply(TxnError::UnknownServerError);
        };
        let outputs = self.init_existing(
            token,
            &request,
            &mut metadata,
            coordinator_epoch,
            producer_ids,
            now_ms,
        );
        self.ids.insert(request.transactional_id, metadata);
        outputs
    }

    fn init_existing(
        &mut self,
        token: Token,
        request: &InitProducerIdRequest,
        metadata: &mut TxnMetadata,
        coordinator_epoch: i32,
        producer_ids: &mut dyn ProducerIdSource,
        now_ms: i64,
    ) -> Vec<Output> {
        let reply = |error: TxnError| vec![Output::Reply(token, Reply::InitProducerId(Err(error)))];
        if metadata.pending.is_some() {
            return reply(TxnError::ConcurrentTransactions);
        }
        // KIP-360: the expected producer may bump only when it is the current one, the
        // metadata was just created, or it retries after a bump that rotated its id.
        if let Some(expected) = request.expected {
            let valid = metadata.producer_epoch == NO_PRODUCER_EPOCH
                || expected.producer_id == metadata.producer_id
                || (expected.producer_id == metadata.previous_producer_id
                    && epoch_exhausted(expected.producer_epoch));
            if !valid {
                return reply(TxnError::ProducerFenced);
            }
        }
        match metadata.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                reply(TxnError::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let expected_epoch = request.expected.map(|expected| expected.producer_epoch);
                let transit = if epoch_exhausted(metadata.producer_epoch) {
                    if expected_epoch.is_some_and(|epoch| epoch != metadata.producer_epoch) {
                        // Kafka fails here on an internal check; a stale producer is fenced.
                        return reply(TxnError::ProducerFenced);
                    }
                    let producer_id = match producer_ids.next_producer_id() {
                        Ok(id) => id,
                        Err(error) => return reply(error),
                    };
                    let last = if request.expected.is_some() {
                        metadata.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                    empty_transit(metadata, producer_id, 0, last, request.timeout_ms, now_ms)
                } else {
                    let (epoch, last) = match expected_epoch {
                        None => (metadata.producer_epoch + 1, NO_PRODUCER_EPOCH),
                        Some(expected)
                            if metadata.producer_epoch == NO_PRODUCER_EPOCH
                                || expected == metadata.producer_epoch =>
                        {
                            (metadata.producer_epoch + 1, metadata.producer_epoch)
                        }
                        // A retry of a bump that succeeded: the same answer again.
                        Some(expected) if expected == metadata.last_producer_epoch => {
                            (metadata.producer_epoch, metadata.last_producer_epoch)
                        }
                        Some(_) => return reply(TxnError::ProducerFenced),
                    };
                    let producer_id = metadata.producer_id;
                    empty_transit(
                        metadata,
                        producer_id,
                        epoch,
                        last,
                        request.timeout_ms,
                        now_ms,
                    )
                };
                vec![self.store(
                    metadata,
                    coordinator_epoch,
                    transit,
                    AfterStore::InitProducerId(token),
                )]
            }
            TxnState::Ongoing => {
                let next_producer_id = if self.fence_rotates(metadata) {
                    match producer_ids.next_producer_id() {
                        Ok(id) => id,
                        Err(error) => return reply(error),
                    }
                } else {
                    NO_PRODUCER_ID
                };
                let transit = self.fence_transit(metadata, next_producer_id, now_ms);
                vec![self.store(
                    metadata,
                    coordinator_epoch,
                    transit,
                    AfterStore::Prepare {
                        reply: Some(PrepareReply::Fenced(token)),
                    },
                )]
            }
            TxnState::Dead | TxnState::PrepareEpochFence => reply(TxnError::UnknownServerError),
        }
    }

    /// Whether fencing this id's producer needs a new producer id: with version 2 an
    /// exhausted epoch hands over to a new id when the abort completes (KAFKA-20090).
    fn fence_rotates(&self, metadata: &TxnMetadata) -> bool {
        self.config.transaction_version.supports_epoch_bump()
            && epoch_exhausted(metadata.producer_epoch)
    }

    /// The abort of an ongoing transaction whose producer is fenced (a new producer with
    /// the same id, or a timeout): Kafka's `prepareFenceProducerEpoch` followed by the
    /// coordinator's own EndTxn(abort) with the cluster's transaction version. The epoch is
    /// bumped once (with version 2 too since KAFKA-19367) and never told to a client; the
    /// last epoch is cleared, so no KIP-360 retry of the fenced producer matches it.
    /// `next_producer_id` (version 2, exhausted epoch) takes over when the abort completes.
    fn fence_transit(&self, metadata: &TxnMetadata, next_producer_id: i64, now_ms: i64) -> Transit {
        let version = if self.config.transaction_version.supports_epoch_bump() {
            TransactionVersion::V2
        } else {
            TransactionVersion::V0
        };
        Transit {
            value: TxnLogValue {
                producer_id: metadata.producer_id,
                previous_producer_id: metadata.producer_id,
                next_producer_id,
                producer_epoch: bump(metadata.producer_epoch),
                timeout_ms: metadata.timeout_ms,
                state: TxnState::PrepareAbort,
                partitions: metadata.partitions.clone(),
                last_update_ms: now_ms,
                start_ms: metadata.start_ms,
                client_transaction_version: version.feature_level(),
            },
            last_producer_epoch: NO_PRODUCER_EPOCH,
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn): the partitions join the transaction once
    /// the Ongoing record with them is durable.
    pub fn add_partitions(
        &mut self,
        token: Token,
        request: AddPartitionsRequest,
        now_ms: i64,
    ) -> Vec<Output> {
        let reply = |result| vec![Output::Reply(token, Reply::AddPartitions(result))];
        if request.transactional_id.is_empty() {
            return reply(Err(TxnError::InvalidRequest));
        }
        let coordinator_epoch = match self.owner(&request.transactional_id) {
            Ok(epoch) => epoch,
            Err(error) => return reply(Err(error)),
        };
        let Some(mut metadata) = self.ids.remove(&request.transactional_id) else {
            return reply(Err(TxnError::InvalidProducerIdMapping));
        };
        let outputs = self.add_to(token, &request, &mut metadata, coordinator_epoch, now_ms);
        self.ids.insert(request.transactional_id, metadata);
        outputs
    }

    fn add_to(
        &mut self,
        token: Token,
        request: &AddPartitionsRequest,
        metadata: &mut TxnMetadata,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Vec<Output> {
        let reply = |result| vec![Output::Reply(token, Reply::AddPartitions(result))];
        // Pending first (KAFKA-18660): after a version-2 EndTxn that overflowed, the
        // producer starts its next transaction with the new id while Complete* is still
        // being written; it must be told to retry, not that its id is unknown.
        if metadata.pending.is_some() {
            return reply(Err(TxnError::ConcurrentTransactions));
        }
        if metadata.producer_id != request.producer_id {
            return reply(Err(TxnError::InvalidProducerIdMapping));
        }
        if metadata.producer_epoch != request.producer_epoch {
            return reply(Err(TxnError::ProducerFenced));
        }
        if matches!(
            metadata.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        ) {
            return reply(Err(TxnError::ConcurrentTransactions));
        }
        if metadata.state == TxnState::Ongoing && request.partitions.is_subset(&metadata.partitions)
        {
            return reply(Ok(()));
        }
        if !TxnState::Ongoing.may_follow(metadata.state) {
            return reply(Err(TxnError::UnknownServerError));
        }
        let start_ms = if metadata.state == TxnState::Ongoing {
            metadata.start_ms
        } else {
            now_ms
        };
        let transit = Transit {
            value: TxnLogValue {
                producer_id: metadata.producer_id,
                previous_producer_id: metadata.producer_id,
                next_producer_id: NO_PRODUCER_ID,
                producer_epoch: metadata.producer_epoch,
                timeout_ms: metadata.timeout_ms,
                state: TxnState::Ongoing,
                partitions: metadata
                    .partitions
                    .union(&request.partitions)
                    .cloned()
                    .collect(),
                last_update_ms: now_ms,
                start_ms,
                client_transaction_version: request.client_version.feature_level(),
            },
            last_producer_epoch: metadata.last_producer_epoch,
        };
        let record_bytes = 2
            + 2
            + metadata.transactional_id.len()
            + encoded_value_bytes(
                &transit.value,
                self.config.transaction_version.log_value_version(),
            );
        if record_bytes > self.config.record_bytes_max {
            return reply(Err(TxnError::RecordTooLarge));
        }
        vec![self.store(
            metadata,
            coordinator_epoch,
            transit,
            AfterStore::AddPartitions(token),
        )]
    }

    /// AddPartitionsToTxn v4+ with `verify_only` (KIP-890 part 1, sent by partition
    /// leaders before a transactional produce): whether each partition is in the ongoing
    /// transaction of this producer (TRANSACTION_ABORTABLE when not). Pending transitions
    /// do not matter: partitions join only once durable and leave only with the markers.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Result<(), TxnError>>, TxnError> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        self.owner(transactional_id)?;
        let metadata = self
            .ids
            .get(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if metadata.producer_id != producer.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if metadata.producer_epoch != producer.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if matches!(
            metadata.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort
        ) {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(partitions
            .iter()
            .map(|partition| {
                let result = if metadata.partitions.contains(partition) {
                    Ok(())
                } else {
                    Err(TxnError::TransactionAbortable)
                };
                (partition.clone(), result)
            })
            .collect())
    }

    /// EndTxn: PrepareCommit/PrepareAbort is stored, the request answered, then markers
    /// sent ([`Output::SendMarkers`]); once every marker is written the Complete* record is
    /// stored. A retry of a completed EndTxn is answered as Kafka does (transaction
    /// version 0/1: the same result again; version 2: the retry carries the epoch before
    /// the bump); an abort with version 2 may come without any partition added.
    pub fn end_txn(
        &mut self,
        token: Token,
        request: EndTxnRequest,
        producer_ids: &mut dyn ProducerIdSource,
        now_ms: i64,
    ) -> Vec<Output> {
        let reply = |error: TxnError| vec![Output::Reply(token, Reply::EndTxn(Err(error)))];
        if request.transactional_id.is_empty() {
            return reply(TxnError::InvalidRequest);
        }
        let coordinator_epoch = match self.owner(&request.transactional_id) {
            Ok(epoch) => epoch,
            Err(error) => return reply(error),
        };
        let Some(mut metadata) = self.ids.remove(&request.transactional_id) else {
            return reply(TxnError::InvalidProducerIdMapping);
        };
        let decision = if request.client_version.supports_epoch_bump() {
            end_decision_v2(&metadata, &request)
        } else {
            end_decision_v1(&metadata, &request)
        };
        let outputs = match decision {
            Err(error) => reply(error),
            Ok(EndDecision::AlreadyDone) => {
                vec![Output::Reply(token, Reply::EndTxn(Ok(metadata.producer())))]
            }
            Ok(EndDecision::Prepare { no_partition_added }) => {
                let state = match request.result {
                    TxnResult::Commit => TxnState::PrepareCommit,
                    TxnResult::Abort => TxnState::PrepareAbort,
                };
                let bumps = request.client_version.supports_epoch_bump();
                let next_producer_id = if bumps && epoch_exhausted(metadata.producer_epoch) {
                    producer_ids.next_producer_id()
                } else {
                    Ok(NO_PRODUCER_ID)
                };
                match next_producer_id {
                    Err(error) => reply(error),
                    Ok(next_producer_id) => {
                        let transit = prepare_transit(
                            &metadata,
                            state,
                            request.client_version,
                            next_producer_id,
                            no_partition_added,
                            now_ms,
                        );
                        vec![self.store(
                            &mut metadata,
                            coordinator_epoch,
                            transit,
                            AfterStore::Prepare {
                                reply: Some(PrepareReply::EndTxn(token)),
                            },
                        )]
                    }
                }
            }
        };
        self.ids.insert(request.transactional_id, metadata);
        outputs
    }

    /// The driver's report on [`Output::Store`] `store`: durable (`Ok`) or failed with the
    /// error the waiting client should get (Kafka maps append errors:
    /// NOT_ENOUGH_REPLICAS / timeouts → COORDINATOR_NOT_AVAILABLE, not leader or storage
    /// error → NOT_COORDINATOR, too large → UNKNOWN_SERVER_ERROR). A store the machine no
    /// longer waits for (its partition was unloaded) is ignored.
    pub fn stored(
        &mut self,
        store: StoreId,
        result: Result<(), TxnError>,
        now_ms: i64,
    ) -> Vec<Output> {
        let Some(transactional_id) = self.stores.remove(&store) else {
            return Vec::new();
        };
        let Some(mut metadata) = self.ids.remove(&transactional_id) else {
            return Vec::new();
        };
        let outputs = self.apply_stored(&mut metadata, store, result, now_ms);
        let expired = metadata.pending.is_none() && metadata.state == TxnState::Dead;
        if !expired {
            self.ids.insert(transactional_id, metadata);
        }
        outputs
    }

    fn apply_stored(
        &mut self,
        metadata: &mut TxnMetadata,
        store: StoreId,
        result: Result<(), TxnError>,
        now_ms: i64,
    ) -> Vec<Output> {
        let Some(Pending::Store {
            store: pending_store,
            transit,
            then,
        }) = metadata.pending.take()
        else {
            return Vec::new();
        };
        if pending_store != store {
            metadata.pending = Some(Pending::Store {
                store: pending_store,
                transit,
                then,
            });
            return Vec::new();
        }
        if let Err(error) = result {
            return match then {
                AfterStore::Complete => {
                    metadata.pending = Some(Pending::CompleteUnstored {
                        result: complete_result(transit.value.state),
                    });
                    Vec::new()
                }
                other => fail_waiter(other, error),
            };
        }
        if then == AfterStore::Expire {
            metadata.state = TxnState::Dead;
            return Vec::new();
        }
        apply(metadata, transit);
        match then {
            AfterStore::InitProducerId(token) => vec![Output::Reply(
                token,
                Reply::InitProducerId(Ok(metadata.producer())),
            )],
            AfterStore::AddPartitions(token) => {
                vec![Output::Reply(token, Reply::AddPartitions(Ok(())))]
            }
            AfterStore::Prepare { reply } => {
                let mut outputs = Vec::new();
                match reply {
                    Some(PrepareReply::EndTxn(token)) => {
                        // With an overflowed epoch the client continues with the next id.
                        let next = if metadata.client_version.supports_epoch_bump()
                            && metadata.next_producer_id != NO_PRODUCER_ID
                        {
                            ProducerIdAndEpoch {
                                producer_id: metadata.next_producer_id,
                                producer_epoch: 0,
                            }
                        } else {
                            metadata.producer()
                        };
                        outputs.push(Output::Reply(token, Reply::EndTxn(Ok(next))));
                    }
                    Some(PrepareReply::Fenced(token)) => outputs.push(Output::Reply(
                        token,
                        Reply::InitProducerId(Err(TxnError::ConcurrentTransactions)),
                    )),
                    None => {}
                }
                let result = match metadata.state {
                    TxnState::PrepareCommit => TxnResult::Commit,
                    _ => TxnResult::Abort,
                };
                let coordinator_epoch = self
                    .owned
                    .get(&self.state_partition(&metadata.transactional_id))
                    .map_or(-1, |ownership| ownership.coordinator_epoch);
                outputs.extend(self.begin_markers(metadata, result, coordinator_epoch, now_ms));
                outputs
            }
            AfterStore::Complete | AfterStore::Expire => Vec::new(),
        }
    }

    /// Starts writing the markers of a prepared transaction (or completes one without
    /// partitions at once).
    fn begin_markers(
        &mut self,
        metadata: &mut TxnMetadata,
        result: TxnResult,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Vec<Output> {
        if metadata.partitions.is_empty() {
            let transit = complete_transit(metadata, now_ms);
            return vec![self.store(metadata, coordinator_epoch, transit, AfterStore::Complete)];
        }
        metadata.pending = Some(Pending::Markers {
            result,
            remaining: metadata.partitions.clone(),
        });
        vec![Output::SendMarkers(Markers {
            transactional_id: metadata.transactional_id.clone(),
            producer_id: metadata.producer_id,
            producer_epoch: metadata.producer_epoch,
            coordinator_epoch,
            result,
            partitions: metadata.partitions.clone(),
        })]
    }

    /// The driver wrote the marker of `partition` for the prepared transaction of
    /// `producer` (or the partition's topic is gone, which Kafka treats alike). Once every
    /// partition has its marker, the Complete* record is stored.
    pub fn marker_written(
        &mut self,
        transactional_id: &str,
        producer: ProducerIdAndEpoch,
        partition: &TopicPartition,
        now_ms: i64,
    ) -> Vec<Output> {
        let Ok(coordinator_epoch) = self.owner(transactional_id) else {
            return Vec::new();
        };
        let Some(mut metadata) = self.ids.remove(transactional_id) else {
            return Vec::new();
        };
        let mut outputs = Vec::new();
        if metadata.producer() == producer
            && let Some(Pending::Markers { remaining, .. }) = &mut metadata.pending
        {
            remaining.remove(partition);
            if remaining.is_empty() {
                metadata.pending = None;
                let transit = complete_transit(&metadata, now_ms);
                outputs.push(self.store(
                    &mut metadata,
                    coordinator_epoch,
                    transit,
                    AfterStore::Complete,
                ));
            }
        }
        self.ids.insert(transactional_id.to_string(), metadata);
        outputs
    }

    /// Every prepared transaction's markers not yet written: what a driver (re)sends, e.g.
    /// after its marker task restarted.
    pub fn pending_markers(&self) -> Vec<Markers> {
        self.ids
            .values()
            .filter_map(|metadata| match &metadata.pending {
                Some(Pending::Markers { result, remaining }) => Some(Markers {
                    transactional_id: metadata.transactional_id.clone(),
                    producer_id: metadata.producer_id,
                    producer_epoch: metadata.producer_epoch,
                    coordinator_epoch: self.owner(&metadata.transactional_id).unwrap_or(-1),
                    result: *result,
                    partitions: remaining.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Kafka's `abortTimedOutTransactions` (every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`, 10 s): transactions
    /// running past their timeout are aborted with their producer fenced; Complete*
    /// records that failed to store are stored again.
    ///
    /// `producer_ids` is asked only to fence a version-2 producer at an exhausted epoch;
    /// without one that abort completes at `i16::MAX` on the same id (Kafka before
    /// KAFKA-20090), and the next InitProducerId rotates the id.
    pub fn tick(&mut self, now_ms: i64, producer_ids: &mut dyn ProducerIdSource) -> Vec<Output> {
        self.periodic(now_ms, false, producer_ids)
    }

    /// Kafka's `removeExpiredTransactionalIds` (every
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`, 1 h): ids idle past
    /// `transactional.id.expiration.ms` outside a transaction are deleted by a tombstone.
    pub fn expire_ids(&mut self, now_ms: i64) -> Vec<Output> {
        self.periodic(now_ms, true, &mut NoProducerIds)
    }

    fn periodic(
        &mut self,
        now_ms: i64,
        expire: bool,
        producer_ids: &mut dyn ProducerIdSource,
    ) -> Vec<Output> {
        let expiration_ms = self.config.transactional_id_expiration_ms;
        let due: Vec<String> = self
            .ids
            .values()
            .filter(|metadata| {
                let timed_out = metadata.state == TxnState::Ongoing
                    && metadata
                        .start_ms
                        .saturating_add(i64::from(metadata.timeout_ms))
                        < now_ms;
                let expired = metadata.state.may_expire()
                    && metadata.last_update_ms <= now_ms.saturating_sub(expiration_ms);
                match metadata.pending {
                    None if expire => expired,
                    None => timed_out,
                    Some(Pending::CompleteUnstored { .. }) => !expire,
                    Some(_) => false,
                }
            })
            .map(|metadata| metadata.transactional_id.clone())
            .collect();
        let mut outputs = Vec::new();
        for transactional_id in due {
            let Ok(coordinator_epoch) = self.owner(&transactional_id) else {
                continue;
            };
            let Some(mut metadata) = self.ids.remove(&transactional_id) else {
                continue;
            };
            if matches!(metadata.pending, Some(Pending::CompleteUnstored { .. })) {
                metadata.pending = None;
                let transit = complete_transit(&metadata, now_ms);
                outputs.push(self.store(
                    &mut metadata,
                    coordinator_epoch,
                    transit,
                    AfterStore::Complete,
                ));
            } else if metadata.state == TxnState::Ongoing {
                tracing::info!(transactional_id, "aborting a transaction past its timeout");
                let next_producer_id = if self.fence_rotates(&metadata) {
                    producer_ids.next_producer_id().unwrap_or(NO_PRODUCER_ID)
                } else {
                    NO_PRODUCER_ID
                };
                let transit = self.fence_transit(&metadata, next_producer_id, now_ms);
                outputs.push(self.store(
                    &mut metadata,
                    coordinator_epoch,
                    transit,
                    AfterStore::Prepare { reply: None },
                ));
            } else {
                let transit = Transit {
                    value: metadata_value(&metadata),
                    last_producer_epoch: metadata.last_producer_epoch,
                };
                outputs.push(self.store(
                    &mut metadata,
                    coordinator_epoch,
                    transit,
                    AfterStore::Expire,
                ));
            }
            self.ids.insert(transactional_id, metadata);
        }
        outputs
    }

    /// DescribeTransactions for one id.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, TxnError> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        self.owner(transactional_id)?;
        let metadata = self
            .ids
            .get(transactional_id)
            .filter(|metadata| metadata.state != TxnState::Dead)
            .ok_or(TxnError::TransactionalIdNotFound)?;
        Ok(TxnDescription {
            transactional_id: metadata.transactional_id.clone(),
            state: metadata.state,
            producer_id: metadata.producer_id,
            producer_epoch: metadata.producer_epoch,
            timeout_ms: metadata.timeout_ms,
            start_ms: metadata.start_ms,
            partitions: metadata.partitions.clone(),
        })
    }

    /// ListTransactions over every id this broker coordinates (COORDINATOR_LOAD_IN_PROGRESS
    /// while any partition loads, as Kafka).
    pub fn list(&self, filter: &ListFilter, now_ms: i64) -> Result<TxnListing, TxnError> {
        if self.owned.values().any(|ownership| ownership.loading) {
            return Err(TxnError::CoordinatorLoadInProgress);
        }
        let mut states = BTreeSet::new();
        let mut unknown_state_filters = Vec::new();
        for name in &filter.states {
            match TxnState::from_name(name) {
                Some(state) => {
                    states.insert(state);
                }
                None => unknown_state_filters.push(name.clone()),
            }
        }
        let transactions = self
            .ids
            .values()
            .filter(|metadata| {
                metadata.state != TxnState::Dead
                    && (filter.producer_ids.is_empty()
                        || filter.producer_ids.contains(&metadata.producer_id))
                    && (filter.states.is_empty() || states.contains(&metadata.state))
                    // Kafka compares with the start even of an id without a transaction
                    // (-1): such ids pass any duration filter.
                    && (filter.duration_ms < 0
                        || now_ms.saturating_sub(metadata.start_ms) > filter.duration_ms)
                    && filter
                        .transactional_id_pattern
                        .as_ref()
                        .is_none_or(|pattern| pattern.is_match(&metadata.transactional_id))
            })
            .map(|metadata| {
                (
                    metadata.transactional_id.clone(),
                    metadata.producer_id,
                    metadata.state,
                )
            })
            .collect();
        Ok(TxnListing {
            transactions,
            unknown_state_filters,
        })
    }
}

/// A source without ids (passes that never need one).
#[derive(Debug)]
struct NoProducerIds;

impl ProducerIdSource for NoProducerIds {
    fn next_producer_id(&mut self) -> Result<i64, TxnError> {
        Err(TxnError::ProducerIdsUnavailable)
    }
}

/// Answers the request waiting for a store with `error`.
fn fail_waiter(then: AfterStore, error: TxnError) -> Vec<Output> {
    match then {
        AfterStore::InitProducerId(token)
        | AfterStore::Prepare {
            reply: Some(PrepareReply::Fenced(token)),
        } => vec![Output::Reply(token, Reply::InitProducerId(Err(error)))],
        AfterStore::AddPartitions(token) => {
            vec![Output::Reply(token, Reply::AddPartitions(Err(error)))]
        }
        AfterStore::Prepare {
            reply: Some(PrepareReply::EndTxn(token)),
        } => vec![Output::Reply(token, Reply::EndTxn(Err(error)))],
        AfterStore::Prepare { reply: None } | AfterStore::Complete | AfterStore::Expire => {
            Vec::new()
        }
    }
}

/// An epoch one higher, never past `i16::MAX` (the fencing epoch).
fn bump(epoch: i16) -> i16 {
    epoch.saturating_add(1)
}

fn complete_result(state: TxnState) -> TxnResult {
    if state == TxnState::CompleteCommit {
        TxnResult::Commit
    } else {
        TxnResult::Abort
    }
}

/// The id's current values as a record.
fn metadata_value(metadata: &TxnMetadata) -> TxnLogValue {
    TxnLogValue {
        producer_id: metadata.producer_id,
        previous_producer_id: metadata.previous_producer_id,
        next_producer_id: metadata.next_producer_id,
        producer_epoch: metadata.producer_epoch,
        timeout_ms: metadata.timeout_ms,
        state: metadata.state,
        partitions: metadata.partitions.clone(),
        last_update_ms: metadata.last_update_ms,
        start_ms: metadata.start_ms,
        client_transaction_version: metadata.client_version.feature_level(),
    }
}

/// InitProducerId's transition to Empty (`prepareIncrementProducerEpoch` /
/// `prepareProducerIdRotation`).
fn empty_transit(
    metadata: &TxnMetadata,
    producer_id: i64,
    epoch: i16,
    last_epoch: i16,
    timeout_ms: i32,
    now_ms: i64,
) -> Transit {
    Transit {
        value: TxnLogValue {
            producer_id,
            previous_producer_id: metadata.producer_id,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: epoch,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            start_ms: -1,
            client_transaction_version: metadata.client_version.feature_level(),
        },
        last_producer_epoch: last_epoch,
    }
}

/// EndTxn's transition to PrepareCommit/PrepareAbort (`prepareAbortOrCommit`): with
/// transaction version 2 the epoch is bumped (an abort at `i16::MAX` keeps it, so a broken
/// producer can still be aborted).
fn prepare_transit(
    metadata: &TxnMetadata,
    state: TxnState,
    client_version: TransactionVersion,
    next_producer_id: i64,
    no_partition_added: bool,
    now_ms: i64,
) -> Transit {
    let (epoch, last) = if client_version.supports_epoch_bump() {
        (bump(metadata.producer_epoch), metadata.producer_epoch)
    } else {
        (metadata.producer_epoch, metadata.last_producer_epoch)
    };
    Transit {
        value: TxnLogValue {
            producer_id: metadata.producer_id,
            previous_producer_id: metadata.producer_id,
            next_producer_id,
            producer_epoch: epoch,
            timeout_ms: metadata.timeout_ms,
            state,
            partitions: metadata.partitions.clone(),
            last_update_ms: now_ms,
            start_ms: if no_partition_added {
                now_ms
            } else {
                metadata.start_ms
            },
            client_transaction_version: client_version.feature_level(),
        },
        last_producer_epoch: last,
    }
}

/// The transition once every marker is written (`prepareComplete`): with version 2 and an
/// overflowed epoch the next producer id takes over at epoch 0.
fn complete_transit(metadata: &TxnMetadata, now_ms: i64) -> Transit {
    let state = if metadata.state == TxnState::PrepareCommit {
        TxnState::CompleteCommit
    } else {
        TxnState::CompleteAbort
    };
    let (producer_id, epoch) = if metadata.client_version.supports_epoch_bump()
        && metadata.next_producer_id != NO_PRODUCER_ID
    {
        (metadata.next_producer_id, 0)
    } else {
        (metadata.producer_id, metadata.producer_epoch)
    };
    Transit {
        value: TxnLogValue {
            producer_id,
            previous_producer_id: metadata.producer_id,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: epoch,
            timeout_ms: metadata.timeout_ms,
            state,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            start_ms: metadata.start_ms,
            client_transaction_version: metadata.client_version.feature_level(),
        },
        last_producer_epoch: metadata.last_producer_epoch,
    }
}

/// A durable transition applies (`completeTransitionTo`). The previous producer id moves
/// only with InitProducerId and a version-2 completion, as in Kafka (the records of the
/// other transitions carry the current id there).
fn apply(metadata: &mut TxnMetadata, transit: Transit) {
    let value = transit.value;
    let version = TransactionVersion::from_feature_level(value.client_transaction_version);
    let moves_previous = value.state == TxnState::Empty
        || (version.supports_epoch_bump()
            && matches!(
                value.state,
                TxnState::CompleteCommit | TxnState::CompleteAbort
            ));
    if moves_previous {
        metadata.previous_producer_id = value.previous_producer_id;
    }
    metadata.producer_id = value.producer_id;
    metadata.next_producer_id = value.next_producer_id;
    metadata.producer_epoch = value.producer_epoch;
    metadata.last_producer_epoch = transit.last_producer_epoch;
    metadata.timeout_ms = value.timeout_ms;
    metadata.state = value.state;
    metadata.partitions = value.partitions;
    metadata.start_ms = value.start_ms;
    metadata.last_update_ms = value.last_update_ms;
    metadata.client_version = version;
}

/// What EndTxn does, decided before anything is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndDecision {
    Prepare {
        no_partition_added: bool,
    },
    /// Already completed with this result: answered at once, nothing stored.
    AlreadyDone,
}

/// Transaction version 0/1 (`endTransactionWithTV1`): the client's epoch must be the
/// current one; a completed transaction answers the same result again.
fn end_decision_v1(
    metadata: &TxnMetadata,
    request: &EndTxnRequest,
) -> Result<EndDecision, TxnError> {
    if metadata.producer_id != request.producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if request.producer_epoch != metadata.producer_epoch {
        return Err(TxnError::ProducerFenced);
    }
    if metadata.pending.is_some() {
        return Err(TxnError::ConcurrentTransactions);
    }
    same_result_rules(metadata.state, request.result, false)
}

/// Transaction version 2 (KIP-890 part 2): every EndTxn bumps the epoch, so a retry of one
/// that completed carries the epoch before the bump (or, after an overflow, the previous
/// id at the last epoch); an abort needs no partition. Kafka's table:
///
/// ```text
///                 | Abort retry | Abort current | Commit retry | Commit current
/// Empty           | PF          | EB            | PF           | ITS
/// CompleteAbort   | NONE        | EB            | ITS          | ITS
/// CompleteCommit  | ITS         | EB            | NONE         | ITS
/// ```
///
/// (PF PRODUCER_FENCED, ITS INVALID_TXN_STATE, NONE answered at once, EB a new abort.)
fn end_decision_v2(
    metadata: &TxnMetadata,
    request: &EndTxnRequest,
) -> Result<EndDecision, TxnError> {
    let retry_on_overflow = metadata.previous_producer_id == request.producer_id
        && request.producer_epoch == EPOCH_EXHAUSTED
        && metadata.producer_epoch == 0;
    let retry_on_bump = i32::from(metadata.producer_epoch) == i32::from(request.producer_epoch) + 1;
    let current = request.producer_epoch == metadata.producer_epoch;
    let valid_epoch = match metadata.state {
        TxnState::Ongoing | TxnState::Empty | TxnState::Dead | TxnState::PrepareEpochFence => {
            current
        }
        TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
        TxnState::CompleteCommit | TxnState::CompleteAbort => {
            retry_on_bump || retry_on_overflow || current
        }
    };
    if metadata.producer_id != request.producer_id && !retry_on_overflow {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if !valid_epoch {
        return Err(TxnError::ProducerFenced);
    }
    if metadata.pending.is_some() {
        return Err(TxnError::ConcurrentTransactions);
    }
    let retry = retry_on_bump || retry_on_overflow;
    match (metadata.state, request.result) {
        (TxnState::Ongoing, _) => Ok(EndDecision::Prepare {
            no_partition_added: false,
        }),
        (TxnState::CompleteCommit, TxnResult::Commit)
        | (TxnState::CompleteAbort, TxnResult::Abort)
            if retry =>
        {
            Ok(EndDecision::AlreadyDone)
        }
        (TxnState::CompleteCommit, TxnResult::Abort) if retry => Err(TxnError::InvalidTxnState),
        (
            TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Empty,
            TxnResult::Abort,
        ) => Ok(EndDecision::Prepare {
            no_partition_added: true,
        }),
        (state, result) => same_result_rules(state, result, true),
    }
}

/// The answers both versions share for the Prepare*/Complete*/Empty states.
fn same_result_rules(
    state: TxnState,
    result: TxnResult,
    version_2: bool,
) -> Result<EndDecision, TxnError> {
    match (state, result) {
        (TxnState::Ongoing, _) => Ok(EndDecision::Prepare {
            no_partition_added: false,
        }),
        (TxnState::CompleteCommit, TxnResult::Commit)
        | (TxnState::CompleteAbort, TxnResult::Abort)
            if !version_2 =>
        {
            Ok(EndDecision::AlreadyDone)
        }
        (TxnState::PrepareCommit, TxnResult::Commit)
        | (TxnState::PrepareAbort, TxnResult::Abort) => Err(TxnError::ConcurrentTransactions),
        (TxnState::Dead | TxnState::PrepareEpochFence, _) => Err(TxnError::UnknownServerError),
        _ => Err(TxnError::InvalidTxnState),
    }
}
