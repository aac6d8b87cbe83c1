//! Response frames: the response header version follows the request's API key and version,
//! except ApiVersions, whose response header is always v0 so a client that sent a version
//! we do not know can still read the answer.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::WireError;

fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(api_version)
    }
}

/// Encodes a response frame, length prefix included.
pub fn encode_response(
    body: &ResponseKind,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
) -> Result<BytesMut, WireError> {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let mut out = BytesMut::with_capacity(64);
    out.extend_from_slice(&[0; 4]);
    header
        .encode(&mut out, response_header_version(api_key, api_version))
        .map_err(|error| WireError::malformed("response header", error))?;
    body.encode(&mut out, api_version)
        .map_err(|error| WireError::malformed("response body", error))?;
    let length =
        i32::try_from(out.len() - 4).map_err(|error| WireError::malformed("response", error))?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(out)
}

/// Decodes a response frame body (without its length prefix): the correlation id and body.
pub fn decode_response(
    mut frame: Bytes,
    api_key: ApiKey,
    api_version: i16,
) -> Result<(i32, ResponseKind), WireError> {
    let header = ResponseHeader::decode(&mut frame, response_header_version(api_key, api_version))
        .map_err(|error| WireError::malformed("response header", error))?;
    let body = ResponseKind::decode(api_key, &mut frame, api_version)
        .map_err(|error| WireError::malformed("response body", error))?;
    Ok((header.correlation_id, body))
}
