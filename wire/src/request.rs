//! Request frames: header by API key and version, body through the generated codec.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::{WireError, contained};
use crate::versions::supported_range;

/// A request the broker can dispatch.
#[derive(Debug, Clone)]
pub struct DecodedRequest {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
}

impl DecodedRequest {
    pub fn api_version(&self) -> i16 {
        self.header.request_api_version
    }
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// Api key, version and correlation id: present in every request header version.
const FIXED_HEADER_BYTES: usize = 8;

/// Decodes one request frame body (without its length prefix). Unknown keys and versions
/// outside [`crate::SUPPORTED_APIS`] are errors carrying the correlation id, so the broker
/// can answer ApiVersions with UNSUPPORTED_VERSION as Kafka does.
pub fn decode_request(frame: Bytes) -> Result<DecodedRequest, WireError> {
    decode(frame, true)
}

/// Decodes a request of any version the codec knows, LMQ's table unchecked: for tools that
/// watch traffic to other brokers (the differential proxy of compat-tests).
pub fn decode_any_request(frame: Bytes) -> Result<DecodedRequest, WireError> {
    decode(frame, false)
}

fn decode(frame: Bytes, supported_only: bool) -> Result<DecodedRequest, WireError> {
    if frame.len() < FIXED_HEADER_BYTES {
        return Err(WireError::TruncatedHeader {
            length: frame.len(),
        });
    }
    let mut fixed = &frame[..FIXED_HEADER_BYTES];
    let raw_key = fixed.get_i16();
    let api_version = fixed.get_i16();
    let correlation_id = fixed.get_i32();
    let api_key = ApiKey::try_from(raw_key).map_err(|()| WireError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let unsupported = || WireError::UnsupportedVersion {
        api_key: raw_key,
        api_version,
        correlation_id,
    };
    let decodable = api_key.valid_versions();
    let (min, max) = if supported_only {
        let range = supported_range(api_key).ok_or_else(unsupported)?;
        (range.min_version.max(decodable.min), range.max_version)
    } else {
        (decodable.min, decodable.max)
    };
    if api_version < min || api_version > max {
        return Err(unsupported());
    }
    let mut body = frame;
    let (header, body) = contained("request", move || {
        let header = RequestHeader::decode(&mut body, api_key.request_header_version(api_version))
            .map_err(|error| WireError::malformed("request header", error))?;
        let body = RequestKind::decode(api_key, &mut body, api_version)
            .map_err(|error| WireError::malformed("request body", error))?;
        Ok((header, body))
    })?;
    Ok(DecodedRequest {
        header,
        api_key,
        body,
    })
}

/// Encodes a request frame, length prefix included (clients and tests).
pub fn encode_request(
    body: &RequestKind,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<BytesMut, WireError> {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = api_version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_string(client_id.to_string()));
    let mut out = BytesMut::new();
    out.extend_from_slice(&[0; 4]);
    header
        .encode(&mut out, api_key.request_header_version(api_version))
        .map_err(|error| WireError::malformed("request header", error))?;
    body.encode(&mut out, api_version)
        .map_err(|error| WireError::malformed("request body", error))?;
    let length =
        i32::try_from(out.len() - 4).map_err(|error| WireError::malformed("request", error))?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    #[test]
    fn round_trips_a_request_through_the_frame() {
        let body = RequestKind::Metadata(MetadataRequest::default());
        let frame = encode_request(&body, ApiKey::Metadata, 9, 42, "test").unwrap();
        let decoded = decode_request(Bytes::copy_from_slice(&frame[4..])).unwrap();
        assert_eq!(decoded.api_key, ApiKey::Metadata);
        assert_eq!(decoded.correlation_id(), 42);
        assert_eq!(decoded.api_version(), 9);
        assert_eq!(decoded.header.client_id.as_deref(), Some("test"));
    }

    #[test]
    fn short_unknown_and_unsupported_requests_are_errors_not_panics() {
        for length in 0..8 {
            assert!(matches!(
                decode_request(Bytes::from(vec![0u8; length])),
                Err(WireError::TruncatedHeader { .. })
            ));
        }
        let mut unknown = vec![0x7f, 0x00, 0, 0, 0, 0, 0, 9];
        unknown.extend_from_slice(&[0; 10]);
        assert!(matches!(
            decode_request(Bytes::from(unknown)),
            Err(WireError::UnknownApiKey {
                api_key: 0x7f00,
                correlation_id: 9
            })
        ));
        let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
        let frame = encode_request(&body, ApiKey::ApiVersions, 3, 5, "x").unwrap();
        let mut bytes = frame[4..].to_vec();
        bytes[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(Bytes::from(bytes)),
            Err(WireError::UnsupportedVersion {
                api_version: 99,
                correlation_id: 5,
                ..
            })
        ));
    }

    #[test]
    fn garbage_bodies_are_malformed() {
        let body = RequestKind::Metadata(MetadataRequest::default());
        let frame = encode_request(&body, ApiKey::Metadata, 12, 1, "test").unwrap();
        for cut in 8..frame.len() - 4 {
            let _ = decode_request(Bytes::copy_from_slice(&frame[4..4 + cut]));
        }
        let mut bytes = frame[4..].to_vec();
        bytes.extend_from_slice(&[0xff; 3]);
        let _ = decode_request(Bytes::from(bytes));
    }
}
