//! Kafka wire protocol for LMQ: framing with a bounded frame size, request decoding and
//! response encoding by API key and header version, and the one table of supported API
//! versions that ApiVersions and the dispatcher share.
//!
//! This crate is the only one that depends on `kafka-protocol` (re-exported as [`protocol`]
//! for the message types); it performs no I/O.

mod acks;
mod error;
mod frame;
pub mod records;
mod request;
mod response;
mod versions;

/// The generated Kafka message types, for handlers and clients.
pub use kafka_protocol as protocol;

pub use acks::Acks;
pub use error::WireError;
pub use frame::{FRAME_BYTES_MAX_DEFAULT, FRAME_PREFIX_BYTES, frame_length};
pub use request::{DecodedRequest, decode_any_request, decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use versions::{SUPPORTED_APIS, SupportedApi, supported_range};

/// Kafka's name for an error code (`UNKNOWN_TOPIC_OR_PARTITION`), as its tools print it;
/// `CODE_<n>` for codes Kafka does not define.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(kafka_protocol::ResponseError::Unknown(_)) | None => format!("CODE_{code}"),
        Some(error) => {
            let camel = format!("{error:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (index, character) in camel.chars().enumerate() {
                if character.is_ascii_uppercase() && index > 0 {
                    out.push('_');
                }
                out.push(character.to_ascii_uppercase());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(super::error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(super::error_name(2), "CORRUPT_MESSAGE");
        assert_eq!(super::error_name(-999), "CODE_-999");
    }
}
