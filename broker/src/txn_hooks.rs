//! The partition side's seam to the transaction coordinator (KIP-890 verification):
//! Produce asks it through `cluster::txn_verify`, or through `Broker::txn_verifier` when a
//! test installs another.

use std::future::Future;
use std::pin::Pin;

/// One producer's transactional produce to partitions where it has no transaction ongoing:
/// the coordinator must confirm each was added to its ongoing transaction (KIP-890 part 1,
/// Kafka's `AddPartitionsToTxn` with `verify_only`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// (topic, partition), each once.
    pub partitions: Vec<(String, i32)>,
}

/// The coordinator's answer for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// In the producer's ongoing transaction: the produce may start it here.
    Added,
    /// Not added, or no transaction ongoing (Kafka: INVALID_TXN_STATE).
    NotAdded,
    /// The producer's epoch is not the coordinator's (Kafka: PRODUCER_FENCED, answered
    /// INVALID_PRODUCER_EPOCH to the producer).
    Fenced,
    /// The coordinator cannot answer now (moving, loading, concurrent transactions, not
    /// installed): retriable (Kafka answers NOT_ENOUGH_REPLICAS so every client retries).
    Unavailable,
}

/// What [`TxnVerifier::verify`] returns: one answer per partition of the request, in its
/// order.
pub type Verifying<'a> = Pin<Box<dyn Future<Output = Vec<Verification>> + Send + 'a>>;

/// Asks the transaction coordinator whether partitions are in a producer's transaction.
pub trait TxnVerifier: Send + Sync + std::fmt::Debug {
    fn verify<'a>(&'a self, request: &'a VerifyRequest) -> Verifying<'a>;
}
