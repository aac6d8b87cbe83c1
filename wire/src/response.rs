//! Response frames: the response header version follows the request's API key and version,
//! except ApiVersions, whose response header is always v0 so a client that sent a version
//! we do not know can still read the answer.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::{WireError, contained};

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
/// Any bytes are an answer or an error, never a panic: clients, and the replica fetcher that
/// reads other brokers' answers with it, get [`WireError::Malformed`] for what does not decode.
pub fn decode_response(
    frame: Bytes,
    api_key: ApiKey,
    api_version: i16,
) -> Result<(i32, ResponseKind), WireError> {
    let mut frame = frame;
    contained("response", move || {
        let header =
            ResponseHeader::decode(&mut frame, response_header_version(api_key, api_version))
                .map_err(|error| WireError::malformed("response header", error))?;
        let body = ResponseKind::decode(api_key, &mut frame, api_version)
            .map_err(|error| WireError::malformed("response body", error))?;
        Ok((header.correlation_id, body))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{
        ApiVersionsResponse, BrokerId, FetchResponse, MetadataResponse, SaslAuthenticateResponse,
        SaslHandshakeResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    /// Responses of the APIs the client and the replica fetcher use, with every array filled.
    fn responses() -> Vec<(ResponseKind, ApiKey, i16)> {
        let mut versions = ApiVersionsResponse::default();
        versions.api_keys = crate::SUPPORTED_APIS
            .iter()
            .map(|api| {
                let mut key = ApiVersion::default();
                key.api_key = api.api_key as i16;
                key.min_version = api.min_version;
                key.max_version = api.max_version;
                key
            })
            .collect();
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = BrokerId(1);
        broker.host = StrBytes::from_static_str("127.0.0.1");
        broker.port = 9092;
        let mut partition = MetadataResponsePartition::default();
        partition.leader_id = BrokerId(1);
        partition.replica_nodes = vec![BrokerId(1), BrokerId(2)];
        partition.isr_nodes = vec![BrokerId(1)];
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(TopicName(StrBytes::from_static_str("orders")));
        topic.partitions = vec![partition];
        let mut metadata = MetadataResponse::default();
        metadata.brokers = vec![broker];
        metadata.topics = vec![topic];
        let mut data = PartitionData::default();
        data.high_watermark = 10;
        data.records = Some(Bytes::from_static(&[7; 70]));
        let mut fetched = FetchableTopicResponse::default();
        fetched.topic = TopicName(StrBytes::from_static_str("orders"));
        fetched.partitions = vec![data];
        let mut fetch = FetchResponse::default();
        fetch.responses = vec![fetched];
        let mut authenticate = SaslAuthenticateResponse::default();
        authenticate.error_message = Some(StrBytes::from_static_str("no"));
        vec![
            (ResponseKind::ApiVersions(versions), ApiKey::ApiVersions, 3),
            (
                ResponseKind::Metadata(metadata.clone()),
                ApiKey::Metadata,
                1,
            ),
            (ResponseKind::Metadata(metadata), ApiKey::Metadata, 12),
            (ResponseKind::Fetch(fetch.clone()), ApiKey::Fetch, 4),
            (ResponseKind::Fetch(fetch), ApiKey::Fetch, 12),
            (
                ResponseKind::SaslHandshake(SaslHandshakeResponse::default()),
                ApiKey::SaslHandshake,
                1,
            ),
            (
                ResponseKind::SaslAuthenticate(authenticate),
                ApiKey::SaslAuthenticate,
                2,
            ),
        ]
    }

    #[test]
    fn responses_round_trip() {
        for (body, api_key, version) in responses() {
            let frame = encode_response(&body, api_key, version, 77).unwrap();
            let (correlation_id, decoded) =
                decode_response(Bytes::copy_from_slice(&frame[4..]), api_key, version).unwrap();
            assert_eq!(correlation_id, 77);
            assert_eq!(decoded, body, "{api_key:?} v{version}");
        }
    }

    /// A peer that stops mid-answer or sends noise: every cut of a real answer and every
    /// garbage body is an error the caller can handle.
    #[test]
    fn truncated_and_garbage_responses_are_errors_not_panics() {
        for (body, api_key, version) in responses() {
            let frame = encode_response(&body, api_key, version, 77).unwrap();
            let frame = &frame[4..];
            for cut in 0..frame.len() {
                let decoded =
                    decode_response(Bytes::copy_from_slice(&frame[..cut]), api_key, version);
                assert!(
                    matches!(decoded, Err(WireError::Malformed { .. })),
                    "{api_key:?} v{version} cut at {cut}: {decoded:?}"
                );
            }
            let mut state: u32 = 0x9e37_79b9;
            for length in [4, 9, 64, 300] {
                for fill in [0x00, 0xff, 0x80] {
                    let garbage = vec![fill; length];
                    let _ = decode_response(Bytes::from(garbage), api_key, version);
                }
                let noise: Vec<u8> = (0..length)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        state.to_be_bytes()[0]
                    })
                    .collect();
                let _ = decode_response(Bytes::from(noise), api_key, version);
            }
        }
    }

    /// What `decode_response` and `decode_request` rely on: a decoder that panics becomes a
    /// `Malformed` error for the caller instead of unwinding into it.
    #[test]
    fn a_panicking_decoder_is_a_malformed_error() {
        let decoded = contained("response", || -> Result<(), WireError> {
            panic!("a decoder bug")
        });
        assert_eq!(
            decoded,
            Err(WireError::Malformed {
                what: "response",
                reason: "the decoder panicked".to_string()
            })
        );
    }
}
