//! Who a connection is and what it may do: the principal a listener's TLS or SASL proved
//! (Kafka's `KafkaPrincipal`), and what issue 21's authorizer checks against it.

use std::fmt;

pub mod tls;

/// Kafka's principal type for users; the only one Kafka's own authenticators produce.
pub const USER_TYPE: &str = "User";

/// The principal of a connection nothing authenticated (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// The name prefix of a broker's own principal.
pub const BROKER_PREFIX: &str = "lmq-broker-";

/// A principal as Kafka writes it, `TYPE:NAME` (`User:alice`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

/// A principal string without the `TYPE:` part.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("principal '{0}' is not of the form TYPE:NAME (for example User:alice)")]
pub struct PrincipalError(pub String);

impl Principal {
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: USER_TYPE.to_string(),
            name: name.into(),
        }
    }

    /// The principal of a broker of this cluster that proved itself (LMQ's inter-broker
    /// mechanism): `User:lmq-broker-<id>`, a super user to the authorizer.
    pub fn broker(node_id: i32) -> Self {
        Self::user(format!("{BROKER_PREFIX}{node_id}"))
    }

    pub fn anonymous() -> Self {
        Self::user(ANONYMOUS)
    }

    /// Parses `TYPE:NAME` as Kafka's `SecurityUtils.parseKafkaPrincipal` does: split at the
    /// first colon, both parts non-empty.
    pub fn parse(text: &str) -> Result<Self, PrincipalError> {
        match text.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(Self {
                kind: kind.to_string(),
                name: name.to_string(),
            }),
            _ => Err(PrincipalError(text.to_string())),
        }
    }
}

impl Default for Principal {
    fn default() -> Self {
        Self::anonymous()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_principal_parses_at_its_first_colon_and_prints_back() {
        let principal = Principal::parse("User:CN=a:b").unwrap();
        assert_eq!(principal.kind, "User");
        assert_eq!(principal.name, "CN=a:b");
        assert_eq!(principal.to_string(), "User:CN=a:b");
        assert_eq!(Principal::default().to_string(), "User:ANONYMOUS");
    }

    #[test]
    fn a_principal_without_type_or_name_is_refused() {
        for text in ["alice", ":alice", "User:", ""] {
            assert!(Principal::parse(text).is_err(), "{text}");
        }
    }
}
