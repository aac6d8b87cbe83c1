//! The native LMQ client: producer, consumer and admin speaking the Kafka protocol, so it
//! works against LMQ and Apache Kafka alike.
//!
//! ```no_run
//! # async fn example() -> Result<(), lmq::ClientError> {
//! let producer = lmq::Producer::connect(lmq::ProducerConfig::default()).await?;
//! let delivery = producer.send("orders", "hi").await?;
//! println!("partition {} offset {}", delivery.partition, delivery.offset);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod admin;
pub mod api;
pub mod cluster;
pub mod connection;
pub mod consumer;
mod error;
pub mod group;
mod log_offsets;
mod offsets;
pub mod producer;
mod reassign;
mod retry;
pub mod scram;
pub mod security;
pub mod transaction;

pub use admin::{Admin, OffsetSpec};
pub use cluster::ClientConfig;
pub use consumer::{ConsumedRecord, Consumer, ConsumerConfig};
pub use error::{ClientError, Result, error_name};
pub use group::{GroupConfig, GroupConsumer, HandlerError, StopHandle};
pub use producer::{Acks, Codec, Delivery, Producer, ProducerConfig, Record};
pub use reassign::Reassignment;
pub use security::{SaslMechanism, SaslSettings, Security, TlsSettings};
