//! The LMQ broker: network shell, one handler per Kafka API, partitions over `lmq-storage`
//! logs, consumer groups, and the replicated cluster (`cluster`) coordinated through
//! `lmq-coord`.

pub mod admin;
pub mod broker;
pub mod cleaner;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod coordinator_log;
pub mod group;
mod handler;
pub mod listeners;
pub mod metrics;
pub mod node;
pub mod partition;
pub mod record_checks;
pub mod reopen;
pub mod replication;

pub mod security;
pub mod server;
#[cfg(test)]
mod test_support;
pub mod topic_config;
pub mod topics;
pub mod txn;
pub mod txn_hooks;
pub mod upkeep;
mod zero_copy;

pub use broker::Broker;
pub use config::BrokerConfig;
