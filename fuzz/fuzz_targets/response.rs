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

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lmq_wire::protocol::messages::ApiKey;

/// Panics reported on stderr; later ones are counted but not printed.
const PANICS_PRINTED_MAX: usize = 20;
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn tolerate_contained_panics() {
    if std::env::var_os("LMQ_FUZZ_STRICT_PANICS").is_some_and(|value| value != "0") {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let seen = PANICS.fetch_add(1, Ordering::Relaxed);
        if seen < PANICS_PRINTED_MAX {
            eprintln!(
                "lmq-fuzz: panic #{} (a crash only if decode_response lets it out): {info}",
                seen + 1
            );
        }
    }));
}

fuzz_target!(init: tolerate_contained_panics(), |data: &[u8]| {
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
