//! How the client reaches a secured listener: TLS (the broker's certificate checked against a
//! CA file, optionally a client certificate for mutual TLS) and SASL (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512), Kafka's `security.protocol` SSL, SASL_PLAINTEXT and SASL_SSL.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{ClientError, Result};
use crate::scram::ScramMechanism;

/// TLS and SASL settings of every connection a client opens (none: PLAINTEXT).
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// Speak TLS (Kafka's SSL and SASL_SSL).
    pub tls: Option<TlsSettings>,
    /// Authenticate with SASL after connecting (SASL_PLAINTEXT and SASL_SSL).
    pub sasl: Option<SaslSettings>,
}

/// PEM files of a TLS connection.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// CA certificates the broker's certificate must chain to (librdkafka's
    /// `ssl.ca.location`); none: the public web roots are not used, so set it.
    pub ca_file: Option<PathBuf>,
    /// This client's certificate chain for mutual TLS (`ssl.certificate.location`).
    pub cert_file: Option<PathBuf>,
    /// Its private key (`ssl.key.location`).
    pub key_file: Option<PathBuf>,
}

/// A SASL mechanism the client can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN: the password goes to the broker (use it over TLS only).
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(ScramMechanism),
}

impl SaslMechanism {
    /// Its SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(scram) => scram.name(),
        }
    }

    /// The mechanism of a SASL name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Self::Plain),
            other => ScramMechanism::from_name(other).map(Self::Scram),
        }
    }
}

/// A SASL identity.
#[derive(Clone)]
pub struct SaslSettings {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for SaslSettings {
    // Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn tls_error(reason: impl ToString) -> ClientError {
    ClientError::Tls(reason.to_string())
}

impl TlsSettings {
    /// The rustls client configuration these files make.
    pub(crate) fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        let ca_file = self.ca_file.as_ref().ok_or_else(|| {
            tls_error("no CA file: set the CA that signed the broker's certificate")
        })?;
        for certificate in CertificateDer::pem_file_iter(ca_file)
            .map_err(|error| tls_error(format!("{}: {error}", ca_file.display())))?
        {
            let certificate = certificate
                .map_err(|error| tls_error(format!("{}: {error}", ca_file.display())))?;
            roots
                .add(certificate)
                .map_err(|error| tls_error(format!("{}: {error}", ca_file.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let chain = CertificateDer::pem_file_iter(cert_file)
                    .map_err(|error| tls_error(format!("{}: {error}", cert_file.display())))?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|error| tls_error(format!("{}: {error}", cert_file.display())))?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|error| tls_error(format!("{}: {error}", key_file.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(tls_error)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(tls_error(
                    "a client certificate needs both its file and its key",
                ));
            }
        };
        Ok(Arc::new(config))
    }
}
