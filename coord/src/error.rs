//! The one error type of the crate: typed, with the context a caller needs to act on it.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::Version;

/// Why a leadership or lock stopped being held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The holder gave it up (`resign` / `release` / drop).
    Released,
    /// The client that acquired it was closed.
    ClientClosed,
    /// The session could not be renewed in time: the holder stepped down before the session
    /// can have expired on the servers (it stops acting before anyone else can take over).
    LeaseExpired,
    /// Consul reported the session gone (TTL expired, its health check went critical, or it
    /// was destroyed).
    SessionInvalidated,
    /// The key is now held by another session (or was released by someone else).
    Deposed,
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            LossReason::Released => "released by the holder",
            LossReason::ClientClosed => "client closed",
            LossReason::LeaseExpired => "session not renewed within its TTL (stepped down)",
            LossReason::SessionInvalidated => "session invalidated",
            LossReason::Deposed => "deposed: the key is held by another session",
        };
        f.write_str(text)
    }
}

/// Errors of every coordinator operation.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("value of {bytes} bytes exceeds the limit of {bytes_max} bytes")]
    ValueTooLarge { bytes: usize, bytes_max: usize },

    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A compare-and-set found another version than the expected one. Never retried inside
    /// the crate: the caller re-reads and decides.
    #[error("compare-and-set conflict on {key:?}: expected version {expected:?}")]
    CasConflict {
        key: String,
        expected: Option<Version>,
    },

    /// A fenced write carried a token that is no longer the current holder's.
    #[error("fencing token {token} of {role:?} is stale: no longer the holder")]
    Fenced { role: String, token: u64 },

    #[error("{what} not acquired within {waited:?}")]
    NotAcquired { what: String, waited: Duration },

    #[error("{name:?} is already held through this client")]
    AlreadyHeld { name: String },

    #[error("session lost before the operation completed: {0}")]
    SessionLost(LossReason),

    #[error("consul request {method} {path} failed: {detail}")]
    Transport {
        method: &'static str,
        path: String,
        detail: String,
    },

    #[error("consul request {method} {path} timed out after {timeout:?}")]
    RequestTimeout {
        method: &'static str,
        path: String,
        timeout: Duration,
    },

    #[error("consul answered {status} to {method} {path}: {body}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },

    /// Consul's ACLs refused the call (403): no token, a token Consul does not know, or one
    /// whose policy lacks the permission.
    #[error(
        "consul refused {method} {path} (403 {detail}): set a Consul ACL token whose policy \
         grants what LMQ needs (see docs/OPERATIONS.md)"
    )]
    AclDenied {
        method: &'static str,
        path: String,
        detail: String,
    },

    /// A CA, client certificate or key file for TLS to Consul could not be used.
    #[error("consul TLS file {path}: {detail}")]
    TlsFile { path: PathBuf, detail: String },

    #[error("malformed consul answer to {path}: {detail}")]
    Malformed { path: String, detail: String },

    #[error("rs-consul {op}: {source}")]
    Consul {
        op: &'static str,
        #[source]
        source: rs_consul::ConsulError,
    },

    #[error("coordinator directory {dir} is in use by another process")]
    DirLocked { dir: PathBuf },

    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("corrupt coordinator state in {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },

    /// An earlier write to the data dir failed; like a storage log, the embedded coordinator
    /// accepts no more writes until it is reopened.
    #[error("embedded coordinator refuses writes after an earlier i/o failure")]
    Poisoned,

    #[error("coordinator client is closed")]
    Closed,

    /// `pass_ttl_check` for a broker this client has no TTL-checked registration of (never
    /// registered through it, deregistered, registered with another check, or forgotten by
    /// the Consul agent).
    #[error("broker {broker_id} has no TTL-checked registration through this client")]
    NotRegistered { broker_id: u32 },
}

pub type CoordResult<T> = Result<T, CoordError>;
