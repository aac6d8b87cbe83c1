use thiserror::Error;

/// What can go wrong talking to a Kafka-compatible cluster.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("connecting to {address}: {error}")]
    Connect {
        address: String,
        error: std::io::Error,
    },
    #[error("connection to {address} failed: {reason}")]
    Connection { address: String, reason: String },
    #[error("request to {address} timed out after {timeout_ms} ms")]
    Timeout { address: String, timeout_ms: u64 },
    #[error(transparent)]
    Wire(#[from] lmq_wire::WireError),
    #[error("the broker does not support {api} (needs a version in {min}..={max})")]
    UnsupportedApi { api: String, min: i16, max: i16 },
    #[error("{operation}: {name} (error code {code}){}", message.as_deref().map(|message| format!(": {message}")).unwrap_or_default())]
    Kafka {
        operation: String,
        code: i16,
        name: String,
        message: Option<String>,
    },
    #[error("no broker of {brokers:?} could be reached")]
    NoBrokers { brokers: Vec<String> },
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("unexpected response to {0}")]
    UnexpectedResponse(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
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

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
