//! The transaction coordinator: the pure [`state::Transactions`] machine and the records of
//! the internal `__transaction_state` topic ([`log`]), in Kafka's layout.
//!
//! A transactional id belongs to the leader of its `__transaction_state` partition (the
//! hash of the id modulo the partition count, as Kafka's `partitionFor`); that broker loads
//! the partition when it becomes leader (the partition's leader epoch is the coordinator
//! epoch every marker carries), stores each transition of an id there before it acts on it
//! or answers, and sends the commit or abort markers of a prepared transaction to the
//! leaders of its partitions until every one is written.

pub mod coordinator;
pub mod log;
pub mod markers;
pub mod state;
#[cfg(test)]
mod tests;

use std::fmt;

pub use crate::topics::TRANSACTION_STATE_TOPIC;

/// Kafka's `RecordBatch.NO_PRODUCER_ID` and `NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// A partition of a transaction (a topic name and partition index, as the transaction
/// APIs and the state records name them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> Self {
        TopicPartition {
            topic: topic.to_string(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}-{}", self.topic, self.partition)
    }
}

/// Kafka's `TransactionState`, with the ids its records store and the names
/// DescribeTransactions and ListTransactions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    /// No transaction (a new id, or one whose producer was just initialised).
    Empty,
    Ongoing,
    /// EndTxn(commit) stored: markers are being written.
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    /// Being expired (only ever a pending state: the id is deleted by a tombstone).
    Dead,
    /// Fencing the producer of an ongoing transaction (only ever a pending state).
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.id() == id)
    }

    /// The name Kafka's tools print and filter by.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.name() == name)
    }

    /// Kafka's `validPreviousStates` (4.x, with transaction version 2's aborts from Empty
    /// and Complete*).
    pub fn may_follow(self, previous: TxnState) -> bool {
        use TxnState::*;
        match self {
            Empty => matches!(previous, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(previous, Ongoing | Empty | CompleteCommit | CompleteAbort),
            PrepareCommit => previous == Ongoing,
            PrepareAbort => matches!(
                previous,
                Ongoing | PrepareEpochFence | Empty | CompleteCommit | CompleteAbort
            ),
            CompleteCommit => previous == PrepareCommit,
            CompleteAbort => previous == PrepareAbort,
            Dead => matches!(previous, Empty | CompleteCommit | CompleteAbort),
            PrepareEpochFence => previous == Ongoing,
        }
    }

    /// Whether an idle id in this state may expire (`isExpirationAllowed`).
    pub fn may_expire(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// Kafka's `transaction.version` feature (KIP-890). The cluster's finalized level picks
/// the state record version (1+: flexible records) and the rules of aborts the coordinator
/// starts itself; a client's level comes from its request version (EndTxn v5+ and
/// AddPartitionsToTxn v4+ are version 2, everything older version 0; AddOffsetsToTxn always
/// 0, as Kafka's `transactionVersionForEndTxn` / `transactionVersionForAddPartitionsToTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TransactionVersion {
    V0,
    /// Flexible state records.
    V1,
    /// An epoch bump at the end of every transaction, partitions added by the partition
    /// leaders (KIP-890 part 2).
    V2,
}

impl TransactionVersion {
    pub fn feature_level(self) -> i16 {
        match self {
            TransactionVersion::V0 => 0,
            TransactionVersion::V1 => 1,
            TransactionVersion::V2 => 2,
        }
    }

    /// Levels above 2 act as 2 (Kafka's `fromFeatureLevel` clamps unknown higher levels
    /// to the highest it knows when reading records).
    pub fn from_feature_level(level: i16) -> TransactionVersion {
        match level {
            i16::MIN..=0 => TransactionVersion::V0,
            1 => TransactionVersion::V1,
            _ => TransactionVersion::V2,
        }
    }

    pub fn supports_epoch_bump(self) -> bool {
        self >= TransactionVersion::V2
    }

    /// The `__transaction_state` value version this level writes.
    pub fn log_value_version(self) -> i16 {
        if self >= TransactionVersion::V1 { 1 } else { 0 }
    }

    /// The client's level from an EndTxn request version.
    pub fn for_end_txn(request_version: i16) -> TransactionVersion {
        if request_version > 4 {
            TransactionVersion::V2
        } else {
            TransactionVersion::V0
        }
    }

    /// The client's level from an AddPartitionsToTxn request version.
    pub fn for_add_partitions(request_version: i16) -> TransactionVersion {
        if request_version > 3 {
            TransactionVersion::V2
        } else {
            TransactionVersion::V0
        }
    }
}

/// The `__transaction_state` partition of a transactional id: Kafka's
/// `Utils.abs(transactionalId.hashCode) % partitions` (Java's String hash over UTF-16).
pub use crate::coordinator_log::partition_for;
