//! Any bytes as a request frame body (length prefix stripped, as the connection loop hands it
//! over): `decode_request` returns a request or an error, never lets a panic out, never
//! aborts the process.
//!
//! `decode_request` runs the generated `kafka-protocol` decoders under `catch_unwind` and
//! turns their panics into `WireError::Malformed`, by design. libfuzzer-sys's panic hook
//! aborts on every panic, caught or not, so by default this target replaces it with one that
//! reports the panic on stderr (prefixed `lmq-fuzz: panic`) and lets it unwind: a panic
//! `decode_request` contains is then not a crash, one that escapes it still is (libfuzzer-sys
//! aborts when its own `catch_unwind` sees it). `LMQ_FUZZ_STRICT_PANICS=1` keeps the
//! abort-on-any-panic hook, to hunt the contained decoder panics too (and to get their
//! stack traces).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[path = "shared/panics.rs"]
mod panics;

fuzz_target!(init: panics::tolerate_contained_panics("decode_request"), |data: &[u8]| {
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
