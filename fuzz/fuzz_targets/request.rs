//! Any bytes as a request frame body (length prefix stripped, as the connection loop hands it
//! over): `decode_request` returns a request or an error, never panics, never aborts.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(prefix) = data.first_chunk::<4>() {
        let _ = lmq_wire::frame_length(*prefix, lmq_wire::FRAME_BYTES_MAX_DEFAULT);
    }
    if let Ok(request) = lmq_wire::decode_request(Bytes::copy_from_slice(data)) {
        // What the decoder promises the dispatcher: the header it read is the one in the
        // fixed prefix, and the version is one LMQ serves.
        let range = lmq_wire::supported_range(request.api_key).expect("decoded an unserved API");
        let version = request.api_version();
        assert!(range.min_version <= version && version <= range.max_version);
        assert_eq!(request.header.request_api_key, i16::from_be_bytes([data[0], data[1]]));
        assert_eq!(request.correlation_id(), i32::from_be_bytes([data[4], data[5], data[6], data[7]]));
    }
});
