use thiserror::Error;

/// Why bytes from a peer are not a request or response we can handle. Kafka's broker closes
/// the connection on all of these except [`WireError::UnsupportedVersion`] for ApiVersions,
/// which it answers (see the broker).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("frame of {length} bytes exceeds the {frame_bytes_max}-byte limit")]
    FrameTooLarge { length: i64, frame_bytes_max: usize },
    #[error("frame length {length} is negative")]
    NegativeLength { length: i32 },
    #[error("request of {length} bytes is shorter than a request header")]
    TruncatedHeader { length: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("API key {api_key} version {api_version} is not supported")]
    UnsupportedVersion {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
    },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
}

impl WireError {
    pub(crate) fn malformed(what: &'static str, error: impl std::fmt::Display) -> Self {
        WireError::Malformed {
            what,
            reason: error.to_string(),
        }
    }
}

/// Runs a generated decoder on peer bytes with its panics turned into
/// [`WireError::Malformed`]: the decoders return errors for the bad input known so far, but a
/// panic found later must not take a connection task (or a replica fetcher) down with it.
pub(crate) fn contained<T>(
    what: &'static str,
    decode: impl FnOnce() -> Result<T, WireError> + std::panic::UnwindSafe,
) -> Result<T, WireError> {
    std::panic::catch_unwind(decode).map_err(|_| WireError::Malformed {
        what,
        reason: "the decoder panicked".to_string(),
    })?
}
