use thiserror::Error;

/// What can go wrong talking to a Kafka-compatible cluster.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The TLS settings could not be used, or the TLS handshake failed (an untrusted broker
    /// certificate, a client certificate the broker refused).
    #[error("TLS: {0}")]
    Tls(String),
    /// SASL authentication failed: the broker refused the credentials, or answered the
    /// exchange wrongly.
    #[error("SASL authentication with {address} failed: {reason}")]
    Authentication {
        /// The broker's `host:port`.
        address: String,
        /// Why, as the broker or the exchange said.
        reason: String,
    },
    /// Opening the TCP connection to a broker failed. Retriable.
    #[error("connecting to {address}: {error}")]
    Connect {
        /// The broker's `host:port`.
        address: String,
        /// The I/O error from connecting.
        error: std::io::Error,
    },
    /// An established connection failed: writing a request failed or the connection closed
    /// before the answer came. Retriable.
    #[error("connection to {address} failed: {reason}")]
    Connection {
        /// The broker's `host:port`.
        address: String,
        /// Why it failed.
        reason: String,
    },
    /// Connecting, or waiting for a response, took longer than the request timeout. Retriable.
    #[error("request to {address} timed out after {timeout_ms} ms")]
    Timeout {
        /// The broker's `host:port`.
        address: String,
        /// The timeout that expired, in milliseconds.
        timeout_ms: u64,
    },
    /// A request could not be encoded, or a response or record batch could not be decoded.
    #[error(transparent)]
    Wire(#[from] lmq_wire::WireError),
    /// The broker supports no version of an API in the range this client can use.
    #[error("the broker does not support {api} (needs a version in {min}..={max})")]
    UnsupportedApi {
        /// The API's name (`Fetch`, `JoinGroup`, ...).
        api: String,
        /// Lowest version the client would have accepted.
        min: i16,
        /// Highest version the client would have accepted.
        max: i16,
    },
    /// The broker answered with a Kafka error code. Retriable when Kafka marks the code so.
    #[error("{operation}: {name} (error code {code}){}", message.as_deref().map(|message| format!(": {message}")).unwrap_or_default())]
    Kafka {
        /// What the client was doing (`create topic orders`, `fetch orders-0`, ...).
        operation: String,
        /// The Kafka error code (never 0).
        code: i16,
        /// Kafka's name for the code (`UNKNOWN_TOPIC_OR_PARTITION`), or `CODE_<n>`.
        name: String,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// No broker could be reached, or a broker id is not in the metadata even after a refresh.
    #[error("no broker of {brokers:?} could be reached")]
    NoBrokers {
        /// The configured bootstrap addresses.
        brokers: Vec<String>,
    },
    /// The topic or partition is not in the cluster metadata (`partition` is -1 when the
    /// topic itself is missing or has no partitions).
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownPartition {
        /// The topic asked for.
        topic: String,
        /// The partition asked for, or -1.
        partition: i32,
    },
    /// A response of the wrong kind or shape arrived (names the API), or the producer was
    /// dropped before answering (`producer closed`).
    #[error("unexpected response to {0}")]
    UnexpectedResponse(String),
    /// An argument the client rejects before sending anything, such as a negative timestamp.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// A copy for each of several waiters on one outcome (every record of a failed batch gets
/// the batch's error); an I/O error is copied as its kind and message.
impl Clone for ClientError {
    fn clone(&self) -> Self {
        match self {
            ClientError::Tls(reason) => ClientError::Tls(reason.clone()),
            ClientError::Authentication { address, reason } => ClientError::Authentication {
                address: address.clone(),
                reason: reason.clone(),
            },
            ClientError::Connect { address, error } => ClientError::Connect {
                address: address.clone(),
                error: std::io::Error::new(error.kind(), error.to_string()),
            },
            ClientError::Connection { address, reason } => ClientError::Connection {
                address: address.clone(),
                reason: reason.clone(),
            },
            ClientError::Timeout {
                address,
                timeout_ms,
            } => ClientError::Timeout {
                address: address.clone(),
                timeout_ms: *timeout_ms,
            },
            ClientError::Wire(error) => ClientError::Wire(error.clone()),
            ClientError::UnsupportedApi { api, min, max } => ClientError::UnsupportedApi {
                api: api.clone(),
                min: *min,
                max: *max,
            },
            ClientError::Kafka {
                operation,
                code,
                name,
                message,
            } => ClientError::Kafka {
                operation: operation.clone(),
                code: *code,
                name: name.clone(),
                message: message.clone(),
            },
            ClientError::NoBrokers { brokers } => ClientError::NoBrokers {
                brokers: brokers.clone(),
            },
            ClientError::UnknownPartition { topic, partition } => ClientError::UnknownPartition {
                topic: topic.clone(),
                partition: *partition,
            },
            ClientError::UnexpectedResponse(what) => ClientError::UnexpectedResponse(what.clone()),
            ClientError::InvalidArgument(what) => ClientError::InvalidArgument(what.clone()),
        }
    }
}

impl ClientError {
    /// Whether retrying may succeed: a connection dropped, a timeout, or a Kafka error code
    /// marked retriable (leadership moving, a coordinator loading, ...).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connection { .. }
            | ClientError::Timeout { .. }
            | ClientError::Connect { .. } => true,
            ClientError::Kafka { code, .. } => {
                lmq_wire::protocol::ResponseError::try_from_code(*code)
                    .is_some_and(|error| error.is_retriable())
            }
            _ => false,
        }
    }

    /// The error a Kafka error code means, or `None` for 0 (no error).
    pub fn from_code(operation: &str, code: i16, message: Option<String>) -> Option<Self> {
        (code != 0).then(|| ClientError::Kafka {
            operation: operation.to_string(),
            code,
            name: error_name(code),
            message,
        })
    }
}

pub use lmq_wire::error_name;

/// `Result` with [`ClientError`] as the default error type.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
