//! The native LMQ client: producer, consumer and admin speaking the Kafka protocol.
//!
//! It is empty until the native-client issue fills it.
