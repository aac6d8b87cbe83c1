//! Kafka wire protocol for LMQ: framing with a bounded frame size, request decoding and
//! response encoding by API key and header version, and the one table of supported API
//! versions that ApiVersions and the dispatcher share.
//!
//! This crate is the only one that depends on `kafka-protocol` (re-exported as [`protocol`]
//! for the message types); it performs no I/O.

mod error;
mod frame;
pub mod records;
mod request;
mod response;
mod versions;

/// The generated Kafka message types, for handlers and clients.
pub use kafka_protocol as protocol;

pub use error::WireError;
pub use frame::{FRAME_BYTES_MAX_DEFAULT, FRAME_PREFIX_BYTES, frame_length};
pub use request::{DecodedRequest, decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use versions::{SUPPORTED_APIS, SupportedApi, supported_range};
