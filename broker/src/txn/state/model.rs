//! The transaction coordinator's model: configuration, errors, requests and answers, the
//! records and markers it asks the driver for, and the per-id metadata it keeps.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::super::log::{TxnLogValue, encode_key, encode_value};
use super::super::{TopicPartition, TransactionVersion, TxnState};

/// Identifies a request whose answer comes in a later [`Output::Reply`].
pub type Token = u64;

/// Identifies one [`Store`]; the driver reports its outcome with
/// [`super::Transactions::stored`].
pub type StoreId = u64;

/// Kafka's producer epochs end here: the coordinator keeps `i16::MAX` to fence with, so a
/// client never holds an epoch at or above `EPOCH_EXHAUSTED`.
pub const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

/// Whether an epoch can no longer be bumped for a client (`isEpochExhausted`).
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= EPOCH_EXHAUSTED
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Cluster-unique producer ids, provided by the driver (the blocks every broker reserves
/// in the cluster coordinator). Called only while the state machine needs one: a new
/// transactional id, an exhausted epoch (InitProducerId, or EndTxn with transaction
/// version 2).
pub trait ProducerIdSource {
    fn next_producer_id(&mut self) -> Result<i64, TxnError>;
}

/// Limits and timings (Kafka's `transaction.*` broker settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: an InitProducerId asking for more is refused.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an id idle this long (and not in a transaction)
    /// is deleted.
    pub transactional_id_expiration_ms: i64,
    /// The cluster's finalized `transaction.version`: the state record version, and the
    /// rules of the aborts the coordinator starts itself (fencing, timeouts).
    pub transaction_version: TransactionVersion,
    /// `transaction.state.log.num.partitions`.
    pub state_partitions: usize,
    /// Transactional ids this coordinator keeps; a new one beyond it is refused with
    /// [`TxnError::LimitExceeded`]. Kafka has no such bound (memory is its limit).
    pub transactional_ids_max: usize,
    /// Bytes of one state record (key and value): the state topic's `max.message.bytes`
    /// as Kafka's default (`message.max.bytes`, 1048588). It bounds the partitions of a
    /// transaction, as in Kafka, where a larger record fails its append (MESSAGE_TOO_LARGE,
    /// answered UNKNOWN_SERVER_ERROR); here the AddPartitionsToTxn is refused before.
    pub record_bytes_max: usize,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            transaction_version: TransactionVersion::V2,
            state_partitions: 50,
            transactional_ids_max: 1_000_000,
            record_bytes_max: 1_048_588,
        }
    }
}

/// Why the coordinator refuses; the handlers map these to Kafka's codes (same names),
/// PRODUCER_FENCED as INVALID_PRODUCER_EPOCH for InitProducerId v0-3, EndTxn v0-1,
/// AddPartitionsToTxn v0-1 and AddOffsetsToTxn v0-1, as Kafka's `KafkaApis` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("invalid request")]
    InvalidRequest,
    #[error("transaction timeout out of bounds")]
    InvalidTransactionTimeout,
    #[error("not the coordinator of this transactional id")]
    NotCoordinator,
    #[error("the coordinator is loading this transactional id")]
    CoordinatorLoadInProgress,
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("another transition of this transactional id is in progress")]
    ConcurrentTransactions,
    #[error("producer fenced")]
    ProducerFenced,
    #[error("producer id does not match the transactional id")]
    InvalidProducerIdMapping,
    #[error("invalid transaction state for this request")]
    InvalidTxnState,
    #[error("transactional id not found")]
    TransactionalIdNotFound,
    /// Verification (KIP-890): the partition is not part of the ongoing transaction.
    #[error("partition not in the transaction")]
    TransactionAbortable,
    /// No producer id could be allocated (Kafka: the id manager has no block yet).
    #[error("no producer id available")]
    ProducerIdsUnavailable,
    /// Over [`TxnConfig::transactional_ids_max`].
    #[error("too many transactional ids")]
    LimitExceeded,
    /// The transaction's record would exceed [`TxnConfig::record_bytes_max`] (Kafka:
    /// UNKNOWN_SERVER_ERROR).
    #[error("transaction state record too large")]
    RecordTooLarge,
    #[error("unexpected coordinator state")]
    UnknownServerError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnResult {
    Commit,
    Abort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    pub transactional_id: String,
    pub timeout_ms: i32,
    /// KIP-360 (v3+): the producer's current id and epoch, to bump instead of fence. The
    /// handler refuses a request with only one of them set (INVALID_REQUEST, as Kafka).
    pub expected: Option<ProducerIdAndEpoch>,
}

/// AddPartitionsToTxn (client v0-3, or a broker's v4+ with `verify_only` false) and
/// AddOffsetsToTxn (the group's `__consumer_offsets` partition, client version V0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPartitionsRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: BTreeSet<TopicPartition>,
    pub client_version: TransactionVersion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxnRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub result: TxnResult,
    /// [`TransactionVersion::for_end_txn`] of the request version.
    pub client_version: TransactionVersion,
}

/// The answer to a request made with a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    InitProducerId(Result<ProducerIdAndEpoch, TxnError>),
    /// One outcome for every partition of the request (Kafka answers them all alike).
    AddPartitions(Result<(), TxnError>),
    /// The producer id and epoch to use next: EndTxn v5+ answers them (with transaction
    /// version 2 the epoch was bumped, or a new id given when it overflowed); older
    /// versions have no such fields.
    EndTxn(Result<ProducerIdAndEpoch, TxnError>),
}

/// A record the driver appends to `__transaction_state` partition `state_partition`
/// (acks=all, as Kafka), only while it still leads it at `coordinator_epoch`; then it
/// reports the outcome with [`super::Transactions::stored`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub id: StoreId,
    pub state_partition: usize,
    pub coordinator_epoch: i32,
    pub transactional_id: String,
    /// `None`: a tombstone (the id expired).
    pub value: Option<TxnLogValue>,
    /// The value's record version (from the cluster's `transaction.version`).
    pub value_version: i16,
}

impl Store {
    pub fn key_bytes(&self) -> Bytes {
        encode_key(&self.transactional_id)
    }

    pub fn value_bytes(&self) -> Option<Bytes> {
        self.value
            .as_ref()
            .map(|value| encode_value(value, self.value_version))
    }
}

/// Commit or abort markers the driver writes (WriteTxnMarkers) to the leaders of
/// `partitions`, retrying each until written; each written one (or one whose topic is
/// gone) is reported with [`super::Transactions::marker_written`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub result: TxnResult,
    pub partitions: BTreeSet<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Reply(Token, Reply),
    Store(Store),
    SendMarkers(Markers),
}

/// One transactional id (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The id before the last producer id change (KIP-360 retries after an overflow).
    pub previous_producer_id: i64,
    /// Transaction version 2: the id replacing `producer_id` when the transaction being
    /// completed overflowed the epoch.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried InitProducerId (KIP-360) or EndTxn
    /// gets the same answer; -1 after a load (Kafka does not store it).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the transaction started (its first partition); -1 for none.
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_version: TransactionVersion,
    pub(super) pending: Option<Pending>,
}

impl TxnMetadata {
    /// The transition in flight, if any (Kafka's `pendingState`).
    pub fn pending_state(&self) -> Option<TxnState> {
        match &self.pending {
            None => None,
            Some(Pending::Store { transit, .. }) => Some(transit.value.state),
            Some(Pending::Markers { result, .. } | Pending::CompleteUnstored { result }) => {
                Some(match result {
                    TxnResult::Commit => TxnState::CompleteCommit,
                    TxnResult::Abort => TxnState::CompleteAbort,
                })
            }
        }
    }

    pub(super) fn producer(&self) -> ProducerIdAndEpoch {
        ProducerIdAndEpoch {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
        }
    }
}

/// The next state of an id, stored before it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transit {
    pub value: TxnLogValue,
    pub last_producer_epoch: i16,
}

/// What happens once a stored transition is durable (or failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AfterStore {
    InitProducerId(Token),
    AddPartitions(Token),
    /// PrepareCommit/PrepareAbort: markers follow; `reply` answers the EndTxn (or, for the
    /// abort of a fenced producer's transaction, the InitProducerId with
    /// CONCURRENT_TRANSACTIONS; `None` for a timeout).
    Prepare {
        reply: Option<PrepareReply>,
    },
    Complete,
    Expire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PrepareReply {
    EndTxn(Token),
    Fenced(Token),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pending {
    Store {
        store: StoreId,
        transit: Transit,
        then: AfterStore,
    },
    /// Prepare* is durable; markers for `remaining` are being written.
    Markers {
        result: TxnResult,
        remaining: BTreeSet<TopicPartition>,
    },
    /// Every marker is written but the Complete* record failed to store: the next tick
    /// stores it again (Kafka retries that append too).
    CompleteUnstored { result: TxnResult },
}

/// DescribeTransactions for one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: TxnState,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub partitions: BTreeSet<TopicPartition>,
}

/// ListTransactions filters (KIP-664, KIP-994 duration, KIP-1152 id pattern); empty
/// filters match everything.
#[derive(Debug, Clone)]
pub struct ListFilter {
    /// State names as clients send them; unknown names come back in
    /// [`TxnListing`]'s `unknown_state_filters`.
    pub states: Vec<String>,
    pub producer_ids: BTreeSet<i64>,
    /// Only transactions running longer than this (ms since their start); negative: any.
    pub duration_ms: i64,
    /// Only ids this pattern matches as a whole (the handler anchors it, as Java's
    /// `Matcher.matches`).
    pub transactional_id_pattern: Option<regex::Regex>,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            states: Vec::new(),
            producer_ids: BTreeSet::new(),
            duration_ms: -1,
            transactional_id_pattern: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub transactions: Vec<(String, i64, TxnState)>,
    pub unknown_state_filters: Vec<String>,
}
