//! Who a connection is and what it may do: the principal a listener's TLS or SASL proved
//! (Kafka's `KafkaPrincipal`), and what issue 21's authorizer checks against it.

pub mod acl;

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use acl::{AclBinding, AclIndex, AclOperation, AuthorizerConfig, AuthorizerKind, ResourceType};

use serde::{Deserialize, Serialize};

pub mod jwks;
pub mod oauthbearer;
pub mod plain;
pub mod scram;
pub mod tls;

/// Kafka's principal type for users; the only one Kafka's own authenticators produce.
pub const USER_TYPE: &str = "User";

/// The principal of a connection nothing authenticated (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// A SASL mechanism a client may authenticate with (Kafka's `sasl.enabled.mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// A JWT bearer token checked against `[sasl] oauthbearer_jwks_file`.
    #[serde(rename = "OAUTHBEARER")]
    OauthBearer,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OauthBearer => "OAUTHBEARER",
        }
    }

    pub fn scram(self) -> Option<scram::ScramMechanism> {
        match self {
            Self::Plain | Self::OauthBearer => None,
            Self::ScramSha256 => Some(scram::ScramMechanism::Sha256),
            Self::ScramSha512 => Some(scram::ScramMechanism::Sha512),
        }
    }
}

/// The `[sasl]` section of the broker config: how clients on SASL_PLAINTEXT and SASL_SSL
/// listeners authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaslConfig {
    /// Kafka's `sasl.enabled.mechanisms`.
    pub enabled_mechanisms: Vec<SaslMechanism>,
    /// The users and passwords of PLAIN (TOML, `[users]` with `name = "password"`).
    pub plain_users_file: Option<std::path::PathBuf>,
    /// The JWKS (JSON Web Key Set) whose keys sign OAUTHBEARER tokens (Kafka's
    /// `sasl.oauthbearer.jwks.endpoint.url`, as a file).
    pub oauthbearer_jwks_file: Option<std::path::PathBuf>,
    /// Or where the JWKS is fetched from (Kafka's `sasl.oauthbearer.jwks.endpoint.url`): an
    /// `https://` URL (a certificate the public web roots trust) or `http://`, fetched at
    /// start and every `oauthbearer_jwks_refresh_ms`.
    pub oauthbearer_jwks_url: Option<String>,
    /// Kafka's `sasl.oauthbearer.jwks.endpoint.refresh.ms`: how often the URL's key set is
    /// fetched again (an identity provider's new key is used from then on).
    pub oauthbearer_jwks_refresh_ms: u64,
    /// PEM CA certificates an `https://` JWKS URL's certificate must chain to (an identity
    /// provider with a private CA); unset: the public web roots.
    pub oauthbearer_jwks_ca_file: Option<std::path::PathBuf>,
    /// The `iss` a token must carry (`sasl.oauthbearer.expected.issuer`); unset: any.
    pub oauthbearer_expected_issuer: Option<String>,
    /// One of these must be in a token's `aud` (`sasl.oauthbearer.expected.audience`);
    /// empty: any.
    pub oauthbearer_expected_audience: Vec<String>,
    /// The claim naming the principal (`sasl.oauthbearer.sub.claim.name`).
    pub oauthbearer_sub_claim_name: String,
}

impl Default for SaslConfig {
    fn default() -> Self {
        Self {
            enabled_mechanisms: vec![SaslMechanism::ScramSha256, SaslMechanism::ScramSha512],
            plain_users_file: None,
            oauthbearer_jwks_file: None,
            oauthbearer_jwks_url: None,
            oauthbearer_jwks_refresh_ms: oauthbearer::JWKS_REFRESH_MS,
            oauthbearer_jwks_ca_file: None,
            oauthbearer_expected_issuer: None,
            oauthbearer_expected_audience: Vec::new(),
            oauthbearer_sub_claim_name: "sub".to_string(),
        }
    }
}

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

/// The broker's authorizer: its settings, and the cluster's ACLs as last read from the
/// coordinator (replaced as a whole by the cluster's watch, so every broker applies a change
/// without a restart). Off (`authorizer = "none"`, the default) it allows everything, as a
/// Kafka broker without `authorizer.class.name`.
#[derive(Debug, Default)]
pub struct Authorizer {
    config: AuthorizerConfig,
    /// The ACLs and the coordinator's version of them (a watch delivering an older version
    /// after this broker's own write is ignored).
    acls: RwLock<(u64, Arc<AclIndex>)>,
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig) -> Self {
        Authorizer {
            config,
            acls: RwLock::default(),
        }
    }

    /// Whether ACLs are checked (the ACL APIs answer SECURITY_DISABLED otherwise).
    pub fn enabled(&self) -> bool {
        self.config.kind != AuthorizerKind::None
    }

    /// The ACLs now in force.
    pub fn acls(&self) -> Arc<AclIndex> {
        Arc::clone(&self.acls.read().unwrap_or_else(PoisonError::into_inner).1)
    }

    /// Takes the cluster's ACLs as of the coordinator's `version`, unless newer ones are
    /// already in force.
    pub fn set_acls(&self, version: u64, bindings: Vec<AclBinding>) {
        let mut acls = self.acls.write().unwrap_or_else(PoisonError::into_inner);
        if version >= acls.0 {
            *acls = (version, Arc::new(AclIndex::new(bindings)));
        }
    }

    /// Whether `principal` connected from `host` may do `operation` on the resource.
    pub fn authorize(
        &self,
        principal: &Principal,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        !self.enabled()
            || self
                .acls()
                .authorize(
                    &self.config,
                    principal,
                    host,
                    operation,
                    resource_type,
                    name,
                )
                .allowed()
    }

    /// Whether `principal` may do `operation` on some resource of the type (Kafka's
    /// `authorizeByResourceType`).
    pub fn authorize_any(
        &self,
        principal: &Principal,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        !self.enabled()
            || self
                .acls()
                .authorize_any(&self.config, principal, host, operation, resource_type)
                .allowed()
    }

    /// The bit field of the operations of the resource's type `principal` may do on it
    /// (Kafka's authorized operations; all of them with the authorizer off).
    pub fn authorized_operations(
        &self,
        principal: &Principal,
        host: &str,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        let acls = self.acls();
        let operations = resource_type
            .supported_operations()
            .iter()
            .filter(|&&operation| {
                !self.enabled()
                    || acls
                        .authorize(
                            &self.config,
                            principal,
                            host,
                            operation,
                            resource_type,
                            name,
                        )
                        .allowed()
            });
        acl::operations_bit_field(operations.copied())
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
