//! Any bytes as a response a peer sends: the first 4 bytes pick the API key and version the
//! caller expects (big-endian i16 each, as a client's pending request would), the rest is the
//! frame body (length prefix stripped, as the client's reader hands it over).
//! `decode_response` returns an answer or an error, never lets a panic out, never aborts the
//! process; a decoded answer carries the correlation id of the frame's first 4 bytes.
//!
//! The clients and the broker's replica fetcher (which reads other brokers' answers) decode
//! with it. Like `request`, this target reports panics `decode_response` contains as
//! `lmq-fuzz: panic` lines instead of crashing; `LMQ_FUZZ_STRICT_PANICS=1` makes them crashes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lmq_wire::protocol::messages::ApiKey;

#[path = "shared/panics.rs"]
mod panics;

fuzz_target!(init: panics::tolerate_contained_panics("decode_response"), |data: &[u8]| {
    let Some((selector, frame)) = data.split_first_chunk::<4>() else {
        return;
    };
    let Ok(api_key) = ApiKey::try_from(i16::from_be_bytes([selector[0], selector[1]])) else {
        return;
    };
    let api_version = i16::from_be_bytes([selector[2], selector[3]]);
    if let Ok((correlation_id, _)) =
        lmq_wire::decode_response(Bytes::copy_from_slice(frame), api_key, api_version)
    {
        let prefix = frame.first_chunk::<4>().expect("a decoded response has a header");
        assert_eq!(correlation_id, i32::from_be_bytes(*prefix));
    }
});
