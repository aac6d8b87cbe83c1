//! TLS listeners: the rustls server configuration built from PEM files (reloaded when they
//! change), the client-certificate policy (`ssl.client.auth`), and the principal a client
//! certificate proves, named as Kafka names it: the subject in RFC 2253 form, mapped by
//! `ssl.principal.mapping.rules`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use regex::Regex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};

use super::Principal;

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; a client without one connects as `User:ANONYMOUS`.
    Requested,
    /// A client without a certificate the CA signed is refused in the handshake.
    Required,
}

/// The kind of TLS listener a handshake is for. Kafka applies `ssl.client.auth` to SSL
/// listeners only: a SASL_SSL listener's clients prove who they are with SASL, and it asks
/// for no certificate (KIP-684: Kafka asks there only when `ssl.client.auth` is prefixed with
/// the listener's name, which LMQ's one `[tls]` section has no form for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsListener {
    Ssl,
    SaslSsl,
}

/// The `[tls]` section of the broker config: one certificate for every TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the broker (leaf first).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that sign client certificates (`ssl.truststore.*`).
    pub ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// Kafka's `ssl.principal.mapping.rules` (`DEFAULT`, or `RULE:pattern/replacement/[LU]`
    /// items separated by commas).
    pub principal_mapping_rules: Option<String>,
    /// How often the files are checked for a change (a renewed certificate is used by new
    /// connections without a restart).
    pub reload_check_ms: u64,
}

/// The default of [`TlsConfig::reload_check_ms`].
pub const RELOAD_CHECK_MS: u64 = 30_000;

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            ca_file: None,
            client_auth: ClientAuth::None,
            principal_mapping_rules: None,
            reload_check_ms: RELOAD_CHECK_MS,
        }
    }
}

/// Checks the files of `server` every `reload_check_ms` until `shutdown`, off the runtime's
/// workers; a broken replacement is logged and the current certificate kept.
pub async fn keep_reloaded(
    server: Arc<TlsServer>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let period = std::time::Duration::from_millis(server.config.reload_check_ms.max(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let checking = Arc::clone(&server);
        match tokio::task::spawn_blocking(move || checking.reload_if_changed()).await {
            Ok(Ok(true)) => tracing::info!("TLS certificate files changed: reloaded"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "TLS certificate files changed but cannot be used; keeping the current ones");
            }
            Err(error) => tracing::error!(%error, "TLS reload task failed"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[tls] {0} is not set: a TLS listener needs the broker's certificate and key")]
    Missing(&'static str),
    #[error("reading {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the TLS configuration is refused: {0}")]
    Rustls(String),
    #[error("client_auth = \"{0}\" needs [tls] ca_file (the CA that signs client certificates)")]
    NoClientCa(&'static str),
    #[error("ssl.principal.mapping.rules: {0}")]
    Rules(String),
    #[error("no ssl.principal.mapping.rules rule matches the certificate subject '{0}'")]
    NoMatchingRule(String),
    #[error("the client certificate cannot be read: {0}")]
    Certificate(String),
}

/// One rule of `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
enum Rule {
    /// The distinguished name as it is.
    Default,
    Replace {
        /// Matches the whole name.
        pattern: Regex,
        /// With `$1`-style groups.
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// Kafka's `SslPrincipalMapper`: the first rule whose pattern matches the whole subject
/// names the principal; no rule matching is an authentication failure.
#[derive(Debug, Clone)]
pub struct PrincipalRules(Vec<Rule>);

impl Default for PrincipalRules {
    fn default() -> Self {
        Self(vec![Rule::Default])
    }
}

impl PrincipalRules {
    /// Parses the config value; `None` or blank is `DEFAULT`.
    pub fn parse(text: Option<&str>) -> Result<Self, TlsError> {
        let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
            return Ok(Self::default());
        };
        let mut rules = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            rest = rest.trim_start_matches([',', ' ', '\n', '\t']);
            if rest.is_empty() {
                break;
            }
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
                continue;
            }
            let Some(body) = rest.strip_prefix("RULE:") else {
                return Err(TlsError::Rules(format!(
                    "'{rest}' is neither DEFAULT nor RULE:pattern/replacement/[LU]"
                )));
            };
            let (pattern, after) = split_unescaped_slash(body).ok_or_else(|| {
                TlsError::Rules(format!("'RULE:{body}' has no '/' after its pattern"))
            })?;
            let (replacement, after) = split_unescaped_slash(after).ok_or_else(|| {
                TlsError::Rules(format!("'RULE:{body}' has no '/' after its replacement"))
            })?;
            let (case, after) = match after.chars().next() {
                Some('L') => (Case::Lower, &after[1..]),
                Some('U') => (Case::Upper, &after[1..]),
                _ => (Case::Keep, after),
            };
            let pattern = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|error| TlsError::Rules(format!("pattern '{pattern}': {error}")))?;
            rules.push(Rule::Replace {
                pattern,
                replacement: replacement.to_string(),
                case,
            });
            rest = after;
        }
        if rules.is_empty() {
            return Err(TlsError::Rules(format!("no rule in '{text}'")));
        }
        Ok(Self(rules))
    }

    /// The principal name for the certificate subject `name` (RFC 2253).
    pub fn apply(&self, name: &str) -> Result<String, TlsError> {
        for rule in &self.0 {
            match rule {
                Rule::Default => return Ok(name.to_string()),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if !pattern.is_match(name) {
                        continue;
                    }
                    let mapped = pattern.replace(name, replacement.as_str());
                    return Ok(match case {
                        Case::Keep => mapped.into_owned(),
                        Case::Lower => mapped.to_lowercase(),
                        Case::Upper => mapped.to_uppercase(),
                    });
                }
            }
        }
        Err(TlsError::NoMatchingRule(name.to_string()))
    }
}

/// `text` split at its first `/` not escaped with a backslash.
fn split_unescaped_slash(text: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (index, character) in text.char_indices() {
        match character {
            '\\' if !escaped => escaped = true,
            '/' if !escaped => return Some((&text[..index], &text[index + 1..])),
            _ => escaped = false,
        }
    }
    None
}

/// The subject of a DER certificate as Java's `X500Principal.getName()` writes it (RFC
/// 2253: the last RDN first, `,` between RDNs, `+` within one, special characters escaped),
/// which is what Kafka's rules match.
pub fn subject_name(certificate: &[u8]) -> Result<String, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|error| TlsError::Certificate(error.to_string()))?;
    let mut rdns = Vec::new();
    for rdn in parsed.subject().iter_rdn() {
        let mut parts = Vec::new();
        for attribute in rdn.iter() {
            let oid = attribute.attr_type().to_id_string();
            let value = match attribute.as_str() {
                Ok(text) => escape_rfc2253(text),
                // Not a string type: RFC 2253's `#` and the DER bytes in hex.
                Err(_) => format!("#{}", hex(attribute.attr_value().data)),
            };
            parts.push(format!("{}={value}", short_name(&oid).unwrap_or(&oid)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// The keywords Java prints for attribute types (others as the dotted OID).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, character) in value.chars().enumerate() {
        let special = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && (character == '#' || character == ' '))
            || (index == last && character == ' ');
        if special {
            out.push('\\');
        }
        out.push(character);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The rustls configuration of the TLS listeners, rebuilt when a PEM file changes (a
/// renewed certificate applies to new connections without a restart).
#[derive(Debug)]
pub struct TlsServer {
    config: TlsConfig,
    rules: PrincipalRules,
    current: RwLock<Loaded>,
}

#[derive(Debug, Clone)]
struct Loaded {
    /// SSL listeners: with the `client_auth` policy.
    server: Arc<rustls::ServerConfig>,
    /// SASL_SSL listeners: no client certificate asked for.
    sasl_server: Arc<rustls::ServerConfig>,
    /// Modification times of the files it was built from.
    stamps: Vec<Option<SystemTime>>,
}

impl TlsServer {
    pub fn new(config: &TlsConfig) -> Result<Self, TlsError> {
        let rules = PrincipalRules::parse(config.principal_mapping_rules.as_deref())?;
        let loaded = load(config)?;
        Ok(Self {
            config: config.clone(),
            rules,
            current: RwLock::new(loaded),
        })
    }

    /// The configuration new connections of a `listener` use.
    pub fn server_config(&self, listener: TlsListener) -> Arc<rustls::ServerConfig> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(match listener {
            TlsListener::Ssl => &current.server,
            TlsListener::SaslSsl => &current.sasl_server,
        })
    }

    /// Rebuilds the configuration when a file changed since the last load. A broken
    /// replacement is refused and the current configuration kept. Returns whether it
    /// changed. Blocking (reads files).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = stamps(&self.config);
        let unchanged = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stamps
            == stamps;
        if unchanged {
            return Ok(false);
        }
        let loaded = load(&self.config)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        Ok(true)
    }

    /// The principal of a finished handshake: the mapped subject of the client's
    /// certificate, or `User:ANONYMOUS` without one.
    pub fn principal(
        &self,
        peer_certificates: Option<&[CertificateDer<'_>]>,
    ) -> Result<Principal, TlsError> {
        let Some(leaf) = peer_certificates.and_then(|chain| chain.first()) else {
            return Ok(Principal::anonymous());
        };
        let name = subject_name(leaf)?;
        Ok(Principal::user(self.rules.apply(&name)?))
    }
}

fn files(config: &TlsConfig) -> Vec<&Path> {
    [&config.cert_file, &config.key_file, &config.ca_file]
        .into_iter()
        .filter_map(|path| path.as_deref())
        .collect()
}

fn stamps(config: &TlsConfig) -> Vec<Option<SystemTime>> {
    files(config)
        .into_iter()
        .map(|path| {
            std::fs::metadata(path)
                .and_then(|meta| meta.modified())
                .ok()
        })
        .collect()
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(path, error))?;
    if certificates.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certificates)
}

fn load(config: &TlsConfig) -> Result<Loaded, TlsError> {
    let stamps = stamps(config);
    let cert_file = config
        .cert_file
        .as_deref()
        .ok_or(TlsError::Missing("cert_file"))?;
    let key_file = config
        .key_file
        .as_deref()
        .ok_or(TlsError::Missing("key_file"))?;
    let chain = certificates(cert_file)?;
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(|error| file_error(key_file, error))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    let sasl_server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Rustls(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    let builder = match (config.client_auth, config.ca_file.as_deref()) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (ClientAuth::Requested, None) => return Err(TlsError::NoClientCa("requested")),
        (ClientAuth::Required, None) => return Err(TlsError::NoClientCa("required")),
        (auth, Some(ca_file)) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(ca_file)? {
                roots
                    .add(certificate)
                    .map_err(|error| file_error(ca_file, error))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|error| TlsError::Rustls(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let server = builder
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    Ok(Loaded {
        server: Arc::new(server),
        sasl_server: Arc::new(sasl_server),
        stamps,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn default_rules_keep_the_subject_and_rules_map_it_as_kafka_does() {
        let name = "CN=alice,OU=eng,O=Example,C=DE";
        assert_eq!(
            PrincipalRules::parse(None).unwrap().apply(name).unwrap(),
            name
        );
        let rules = PrincipalRules::parse(Some(
            "RULE:^CN=(.*?),OU=ops.*$/$1/U, RULE:^CN=(.*?),OU=(.*?),.*$/$1@$2/L,DEFAULT",
        ))
        .unwrap();
        assert_eq!(rules.apply("CN=bob,OU=ops,O=X").unwrap(), "BOB");
        assert_eq!(rules.apply(name).unwrap(), "alice@eng");
        assert_eq!(rules.apply("CN=solo").unwrap(), "CN=solo");
    }

    #[test]
    fn no_matching_rule_is_an_error_and_bad_rules_are_refused() {
        let rules = PrincipalRules::parse(Some("RULE:^CN=(.*)$/$1/")).unwrap();
        assert!(matches!(
            rules.apply("O=nobody"),
            Err(TlsError::NoMatchingRule(_))
        ));
        for bad in ["RULE:^CN=(.*)$", "NONSENSE", "RULE:(/x/"] {
            assert!(PrincipalRules::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_slash_escaped_in_a_pattern_stays_in_it() {
        let rules = PrincipalRules::parse(Some(r"RULE:^CN=a\/b$/ab/")).unwrap();
        assert_eq!(rules.apply("CN=a/b").unwrap(), "ab");
    }

    #[test]
    fn subjects_print_last_rdn_first_with_rfc2253_escapes() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CountryName, "DE");
        name.push(rcgen::DnType::OrganizationName, "Example, Inc");
        name.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_name(certificate.der()).unwrap(),
            r"CN=alice,O=Example\, Inc,C=DE"
        );
    }
}
