//! Cluster coordination for LMQ: the `Coordinator` trait (membership with health checks,
//! leader election with fencing tokens, metadata with compare-and-set, locks and watches) and
//! its implementations: `EmbeddedCoordinator` (in-process, persisted in the data dir; the
//! single-node default) and `ConsulCoordinator` (a real Consul agent).
//!
//! Architecture invariants:
//! - A holder stops acting (its `Leadership` flips to lost) before anyone else can acquire:
//!   see `lease` for the rule, and the Consul session's design in `consul`.
//! - Fencing tokens only grow: a later leadership of a role has a larger token than every
//!   earlier one, also across restarts of the embedded store.
//! - Conflicts (`CasConflict`, `Fenced`) are returned to the caller, never retried here.
//! - The crate knows nothing of Kafka or partitions: keys and values are opaque.

mod consul;
mod coordinator;
mod embedded;
mod error;
pub mod lease;
mod types;

pub use consul::{ConsulConfig, ConsulCoordinator};
pub use coordinator::{
    BoxFuture, Coordinator, Expected, HoldState, Leadership, LockGuard, Watch, WriteCondition,
};
pub use embedded::{EmbeddedCoordinator, EmbeddedStore};
pub use error::{CoordError, CoordResult, LossReason};
pub use types::{
    BrokerInfo, BrokerRegistration, Endpoint, FencingToken, HealthCheck, HoldKind, KvEntry,
    LeaderInfo, NAME_BYTES_MAX, VALUE_BYTES_MAX, Version, validate_name, validate_prefix,
};
