//! The nouns of the coordination contract, shared by every implementation.

use std::time::Duration;

use crate::error::{CoordError, CoordResult};

/// The largest value a key may hold (Consul's own limit is 512 KiB per KV entry).
pub const VALUE_BYTES_MAX: usize = 512 * 1024;
/// The longest key, role or lock name.
pub const NAME_BYTES_MAX: usize = 256;

/// The version of a key: the index of the write that last modified it (Consul: `ModifyIndex`;
/// embedded: the store's persisted write counter). Strictly increases with every write to the
/// key, and across keys of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

/// What a fencing token proves: holding a leadership (of a role) or a lock (of a name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldKind {
    Leadership,
    Lock,
}

/// Proof of holding a leadership or lock at one point: what was held and the index of the
/// acquisition (Consul: the `ModifyIndex` the acquire wrote on the key; embedded: the
/// persisted counter). A later holder of the same role always has a larger token, so tokens
/// order leaderships, and a fenced write with a stale token fails.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FencingToken {
    kind: HoldKind,
    name: String,
    value: u64,
}

impl FencingToken {
    /// The token of a leadership of `role`, e.g. as received from a former leader.
    pub fn leadership(role: impl Into<String>, value: u64) -> Self {
        FencingToken {
            kind: HoldKind::Leadership,
            name: role.into(),
            value,
        }
    }
    /// The token of the lock `name`.
    pub fn lock(name: impl Into<String>, value: u64) -> Self {
        FencingToken {
            kind: HoldKind::Lock,
            name: name.into(),
            value,
        }
    }
    pub fn kind(&self) -> HoldKind {
        self.kind
    }
    /// The role (leadership) or lock name.
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn value(&self) -> u64 {
        self.value
    }
}

/// A key with its value and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    pub version: Version,
}

/// Who currently leads a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub role: String,
    /// What the leader passed to `campaign` (e.g. its broker id and address).
    pub candidate: Vec<u8>,
    pub token: FencingToken,
}

/// How the coordinator decides a registered broker is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// The registering client keeps it alive (it passes the check every `ttl / 3`); when the
    /// client dies the broker turns unhealthy within `ttl`.
    Ttl { ttl: Duration },
    /// The coordinator connects to `address` (`host:port`) every `interval`; a failed connect
    /// (within `timeout`) turns the broker unhealthy.
    Tcp {
        address: String,
        interval: Duration,
        timeout: Duration,
    },
}

/// What a broker announces about itself. `host`/`port` is where other brokers reach it;
/// `listeners` the advertised address of each of its Kafka listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub broker_id: u32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub health: HealthCheck,
    pub listeners: Vec<Endpoint>,
}

/// A healthy broker as other clients see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerInfo {
    pub broker_id: u32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub listeners: Vec<Endpoint>,
}

/// One advertised listener of a broker (Kafka's `Endpoint`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The listener's name, upper case.
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `NAME://HOST:PORT`, as Kafka writes listeners.
    pub fn to_text(&self) -> String {
        format!("{}://{}:{}", self.name, self.host, self.port)
    }

    /// The inverse of [`Endpoint::to_text`].
    pub fn parse(text: &str) -> Option<Self> {
        let (name, address) = text.split_once("://")?;
        let (host, port) = address.rsplit_once(':')?;
        Some(Self {
            name: name.to_string(),
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }
}

impl BrokerInfo {
    /// The broker's address on the listener `name`: a broker that announced no listeners
    /// has its one address on every name.
    pub fn endpoint(&self, name: &str) -> Option<(&str, u16)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners
            .iter()
            .find(|endpoint| endpoint.name.eq_ignore_ascii_case(name))
            .map(|endpoint| (endpoint.host.as_str(), endpoint.port))
    }
}

impl BrokerRegistration {
    pub fn info(&self) -> BrokerInfo {
        BrokerInfo {
            broker_id: self.broker_id,
            host: self.host.clone(),
            port: self.port,
            rack: self.rack.clone(),
            listeners: self.listeners.clone(),
        }
    }

    pub(crate) fn validate(&self) -> CoordResult<()> {
        if self.host.is_empty() || self.host.len() > NAME_BYTES_MAX {
            return Err(CoordError::InvalidName {
                name: self.host.clone(),
                reason: "host must be 1..=256 bytes",
            });
        }
        if let Some(rack) = &self.rack {
            validate_segment(rack)?;
        }
        match &self.health {
            HealthCheck::Ttl { ttl } if *ttl < Duration::from_secs(1) => Err(
                CoordError::InvalidConfig(format!("TTL check of {ttl:?} is below 1 s")),
            ),
            HealthCheck::Tcp { interval, .. } if *interval < Duration::from_secs(1) => Err(
                CoordError::InvalidConfig(format!("TCP check interval {interval:?} is below 1 s")),
            ),
            _ => Ok(()),
        }
    }
}

/// Keys, roles and lock names: `/`-separated segments of `[A-Za-z0-9._-]`, so they are safe
/// in a URL path without escaping and mean the same in every implementation.
pub fn validate_name(name: &str) -> CoordResult<()> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(CoordError::InvalidName {
            name: name.to_owned(),
            reason: "must be 1..=256 bytes",
        });
    }
    name.split('/').try_for_each(validate_segment)
}

/// A prefix for `list`: empty, or a name optionally ending in `/`.
pub fn validate_prefix(prefix: &str) -> CoordResult<()> {
    match prefix.strip_suffix('/') {
        _ if prefix.is_empty() => Ok(()),
        Some(stem) => validate_name(stem),
        None => validate_name(prefix),
    }
}

fn validate_segment(segment: &str) -> CoordResult<()> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(CoordError::InvalidName {
            name: segment.to_owned(),
            reason: "empty, '.' or '..' segment",
        });
    }
    if !segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(CoordError::InvalidName {
            name: segment.to_owned(),
            reason: "only [A-Za-z0-9._-] and '/' between segments",
        });
    }
    Ok(())
}

pub(crate) fn validate_value(value: &[u8]) -> CoordResult<()> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(CoordError::ValueTooLarge {
            bytes: value.len(),
            bytes_max: VALUE_BYTES_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "cluster/metadata", "topics/my.topic-1_x", "a/b/c"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a b", "a/../b", "ä", "a?b", "a%2f"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_name(&"x".repeat(NAME_BYTES_MAX + 1)).is_err());
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("topics/").is_ok());
        assert!(validate_prefix("topics").is_ok());
        assert!(validate_prefix("/").is_err());
    }
}
