//! Kafka wire protocol for LMQ: framing with a bounded frame size, request and response enums
//! by API key and header version, and the one table of supported API versions.
//!
//! This crate is the only one that imports `kafka-protocol`; it performs no I/O.
//! It is empty until the single-node broker issue fills it.
