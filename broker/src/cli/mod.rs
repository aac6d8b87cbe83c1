//! The `lmq` admin verbs: they talk the Kafka protocol through the native client, so they
//! work against LMQ and Apache Kafka alike. Human tables by default, `--output json` for
//! scripts.

pub mod admin_http;
pub mod data;
pub mod groups;
pub mod topics;
pub mod users;

use clap::{Args, ValueEnum};
use lmq::ClientConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Where to connect and how to print; every admin verb takes these.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// Broker addresses to start from, comma-separated
    #[arg(
        long,
        short = 'b',
        default_value = "127.0.0.1:9092",
        value_delimiter = ',',
        global = true
    )]
    pub bootstrap: Vec<String>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    /// Client properties for a secured listener, as Kafka's tools take them:
    /// security.protocol, ssl.ca.location, ssl.certificate.location, ssl.key.location,
    /// sasl.mechanism, sasl.username, sasl.password (or sasl.jaas.config)
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

impl Connect {
    pub fn client(&self) -> anyhow::Result<ClientConfig> {
        let security = match &self.command_config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    anyhow::anyhow!("reading --command-config {}: {error}", path.display())
                })?;
                security_from_properties(&text).map_err(|error| {
                    anyhow::anyhow!("--command-config {}: {error}", path.display())
                })?
            }
            None => lmq::Security::default(),
        };
        Ok(ClientConfig {
            brokers: self.bootstrap.clone(),
            client_id: "lmq-cli".to_string(),
            security,
            ..ClientConfig::default()
        })
    }
}

/// A Kafka client properties file (`key=value` lines, `#` comments) as TLS and SASL
/// settings. TLS files are PEM, as librdkafka names them (`ssl.ca.location`, ...); SASL takes
/// `sasl.mechanism` (or librdkafka's `sasl.mechanisms`) with `sasl.username`/`sasl.password`,
/// or the Java clients' `sasl.jaas.config` (`username="..." password="..."`).
pub fn security_from_properties(text: &str) -> Result<lmq::Security, String> {
    let mut properties = std::collections::BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            return Err(format!("line {line:?} is not key=value"));
        };
        properties.insert(key.trim().to_string(), value.trim().to_string());
    }
    let get = |key: &str| properties.get(key).cloned();
    let protocol = get("security.protocol").unwrap_or_else(|| "PLAINTEXT".to_string());
    let (tls, sasl) = match protocol.to_ascii_uppercase().as_str() {
        "PLAINTEXT" => (false, false),
        "SSL" => (true, false),
        "SASL_PLAINTEXT" => (false, true),
        "SASL_SSL" => (true, true),
        other => {
            return Err(format!(
                "security.protocol {other:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            ));
        }
    };
    let mut security = lmq::Security::default();
    if tls {
        security.tls = Some(lmq::TlsSettings {
            ca_file: get("ssl.ca.location").map(Into::into),
            cert_file: get("ssl.certificate.location").map(Into::into),
            key_file: get("ssl.key.location").map(Into::into),
        });
    }
    if sasl {
        let name = get("sasl.mechanism")
            .or_else(|| get("sasl.mechanisms"))
            .unwrap_or_else(|| "PLAIN".to_string());
        let mechanism = lmq::SaslMechanism::from_name(&name).ok_or_else(|| {
            format!("sasl.mechanism {name:?}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        })?;
        let jaas = get("sasl.jaas.config").unwrap_or_default();
        let quoted = |name: &str| {
            let start = jaas.find(&format!("{name}=\""))? + name.len() + 2;
            let end = jaas[start..].find('"')? + start;
            Some(jaas[start..end].to_string())
        };
        let username = get("sasl.username")
            .or_else(|| quoted("username"))
            .ok_or("SASL needs sasl.username (or sasl.jaas.config with username=\"...\")")?;
        let password = get("sasl.password")
            .or_else(|| quoted("password"))
            .ok_or("SASL needs sasl.password (or sasl.jaas.config with password=\"...\")")?;
        security.sasl = Some(lmq::SaslSettings {
            mechanism,
            username,
            password,
        });
    }
    Ok(security)
}

/// Prints rows as aligned columns under a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                format!(
                    "{cell:<width$}",
                    width = widths.get(index).copied().unwrap_or(0)
                )
            })
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|title| (*title).to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// `key=value` pairs from repeated `--config` flags.
pub fn parse_configs(
    pairs: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--config {pair:?} must be KEY=VALUE, e.g. --config retention.ms=86400000"
                    )
                })
        })
        .collect()
}

/// `earliest`, `latest` or an offset.
pub fn parse_offset_spec(text: &str) -> anyhow::Result<lmq::OffsetSpec> {
    match text {
        "earliest" | "beginning" => Ok(lmq::OffsetSpec::Earliest),
        "latest" | "end" => Ok(lmq::OffsetSpec::Latest),
        offset => offset
            .parse()
            .map(lmq::OffsetSpec::Offset)
            .map_err(|_| anyhow::anyhow!("{offset:?} is not earliest, latest or an offset number")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn kafka_client_properties_become_tls_and_sasl_settings() {
        let security = security_from_properties(
            "# a comment\nsecurity.protocol=SASL_SSL\nssl.ca.location=/etc/ca.pem\n\
             sasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.\
             scram.ScramLoginModule required username=\"alice\" password=\"s3cret\";\n",
        )
        .unwrap();
        let tls = security.tls.unwrap();
        assert_eq!(tls.ca_file.unwrap().to_str(), Some("/etc/ca.pem"));
        let sasl = security.sasl.unwrap();
        assert_eq!(sasl.mechanism.name(), "SCRAM-SHA-512");
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("alice", "s3cret")
        );
        let plain = security_from_properties(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\nsasl.username=bob\nsasl.password=pw\n",
        )
        .unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(plain.sasl.unwrap().username, "bob");
    }

    #[test]
    fn unusable_client_properties_are_refused_with_the_fix() {
        for (text, expected) in [
            ("security.protocol=TLS", "security.protocol"),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI",
                "sasl.mechanism",
            ),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN",
                "sasl.username",
            ),
            ("nonsense", "key=value"),
        ] {
            let error = security_from_properties(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
