//! The LMQ broker: network shell, one handler per Kafka API, partitions over `lmq-storage`
//! logs. Single node today; replication, groups and the controller come next.

pub mod admin;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod group;
mod handler;
pub mod metrics;
pub mod partition;
pub mod producer_ids;
pub mod replication;
pub mod server;
pub mod topics;

pub use broker::Broker;
pub use config::BrokerConfig;
