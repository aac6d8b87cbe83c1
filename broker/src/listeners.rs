//! Kafka listeners as Kafka's broker configs name them: `listeners` (`NAME://HOST:PORT`, one
//! per name), `advertised.listeners`, `listener.security.protocol.map` and
//! `inter.broker.listener.name`. Without `listeners` a broker has one PLAINTEXT listener on
//! `listen` (what a first run needs).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// Kafka's `SecurityProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Self::Plaintext,
            "SSL" => Self::Ssl,
            "SASL_PLAINTEXT" => Self::SaslPlaintext,
            "SASL_SSL" => Self::SaslSsl,
            _ => return None,
        })
    }

    /// Whether the listener speaks TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before any other request.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        })
    }
}

/// One listener of this broker, resolved from the configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Upper case, as Kafka normalizes listener names.
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    /// What Metadata tells clients that came in on this listener.
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// The name of the listener a broker without `listeners` has.
pub const DEFAULT_NAME: &str = "PLAINTEXT";

/// `NAME://HOST:PORT` split into its name and address text (IPv6 hosts in brackets).
fn split_listener(text: &str) -> Result<(String, String, u16), String> {
    let (name, address) = text
        .trim()
        .split_once("://")
        .ok_or_else(|| format!("listener {text:?} is not NAME://HOST:PORT"))?;
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("listener {text:?} has no port (NAME://HOST:PORT)"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("listener {text:?}: port {port:?} is not a number from 0 to 65535"))?;
    if name.is_empty() {
        return Err(format!("listener {text:?} has no name"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((name.to_ascii_uppercase(), host.to_string(), port))
}

/// Kafka's default `listener.security.protocol.map`: each protocol under its own name.
fn default_protocol(name: &str) -> Option<SecurityProtocol> {
    SecurityProtocol::parse(name)
}

/// The broker configs listeners are resolved from (`BrokerConfig::listeners`).
#[derive(Debug)]
pub struct Settings<'a> {
    /// The one PLAINTEXT listener's address when `listeners` is empty, and what it advertises.
    pub listen: SocketAddr,
    pub advertised: (String, i32),
    pub listeners: &'a [String],
    pub advertised_listeners: &'a [String],
    pub protocol_map: &'a BTreeMap<String, String>,
    pub inter_broker_listener_name: Option<&'a str>,
}

/// Every listener, in the order given; checked as Kafka checks them (one per name, a
/// protocol for each name, advertised names among the listeners, the inter-broker listener
/// among them).
pub fn resolve(config: &Settings<'_>) -> Result<Vec<Listener>, String> {
    if config.listeners.is_empty() {
        let (advertised_host, advertised_port) = config.advertised.clone();
        if !config.advertised_listeners.is_empty() {
            return Err(
                "advertised_listeners needs listeners (or use advertised_listener with listen)"
                    .to_string(),
            );
        }
        return Ok(vec![Listener {
            name: DEFAULT_NAME.to_string(),
            protocol: SecurityProtocol::Plaintext,
            bind: config.listen,
            advertised_host,
            advertised_port: u16::try_from(advertised_port).unwrap_or(9092),
        }]);
    }
    let map: BTreeMap<String, SecurityProtocol> = config
        .protocol_map
        .iter()
        .map(|(name, protocol)| {
            SecurityProtocol::parse(protocol)
                .map(|protocol| (name.to_ascii_uppercase(), protocol))
                .ok_or_else(|| {
                    format!(
                        "listener_security_protocol_map: {protocol:?} (for {name}) is not \
                         PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let mut advertised = BTreeMap::new();
    for text in config.advertised_listeners {
        let (name, host, port) = split_listener(text)?;
        if port == 0 {
            return Err(format!("advertised listener {text:?} needs a port"));
        }
        if advertised.insert(name.clone(), (host, port)).is_some() {
            return Err(format!("advertised_listeners names {name} twice"));
        }
    }
    let mut listeners: Vec<Listener> = Vec::new();
    for text in config.listeners {
        let (name, host, port) = split_listener(text)?;
        if listeners.iter().any(|listener| listener.name == name) {
            return Err(format!("listeners names {name} twice (each name once)"));
        }
        let protocol = map
            .get(&name)
            .copied()
            .or_else(|| default_protocol(&name))
            .ok_or_else(|| {
                format!(
                    "listener {name} has no security protocol: add {name} = \"PLAINTEXT\" (or \
                     SSL, SASL_PLAINTEXT, SASL_SSL) to listener_security_protocol_map"
                )
            })?;
        let bind_host = if host.is_empty() { "0.0.0.0" } else { &host };
        let bind: SocketAddr =
            format!("{}:{port}", bracketed(bind_host))
                .parse()
                .map_err(|_| {
                    format!("listener {text:?}: {bind_host:?} is not an IP address to bind")
                })?;
        let (advertised_host, advertised_port) = advertised
            .remove(&name)
            .unwrap_or_else(|| (bind.ip().to_string(), bind.port()));
        listeners.push(Listener {
            name,
            protocol,
            bind,
            advertised_host,
            advertised_port,
        });
    }
    if let Some(name) = advertised.keys().next() {
        return Err(format!(
            "advertised_listeners names {name}, which listeners does not have"
        ));
    }
    if let Some(name) = config.inter_broker_listener_name
        && !listeners
            .iter()
            .any(|listener| listener.name.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "inter_broker_listener_name {name} is not among the listeners"
        ));
    }
    Ok(listeners)
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The listener other brokers reach this one on: the one named, else the first.
pub fn inter_broker<'a>(name: Option<&str>, listeners: &'a [Listener]) -> Option<&'a Listener> {
    match name {
        Some(name) => listeners
            .iter()
            .find(|listener| listener.name.eq_ignore_ascii_case(name)),
        None => listeners.first(),
    }
}

/// The listener `text` (`NAME://HOST:PORT`) bound to `address` instead.
pub fn rebound(text: &str, address: SocketAddr) -> Option<String> {
    let (name, _, _) = split_listener(text).ok()?;
    Some(format!("{name}://{address}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::BrokerConfig;

    fn config(listeners: &[&str], advertised: &[&str]) -> BrokerConfig {
        BrokerConfig {
            listeners: listeners.iter().map(|text| text.to_string()).collect(),
            advertised_listeners: advertised.iter().map(|text| text.to_string()).collect(),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn without_listeners_the_broker_has_one_plaintext_listener_on_listen() {
        let listeners = BrokerConfig::default().listeners().unwrap();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].name, "PLAINTEXT");
        assert_eq!(listeners[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(listeners[0].bind.to_string(), "127.0.0.1:9092");
    }

    #[test]
    fn named_listeners_take_their_protocol_from_the_map_or_their_name() {
        let mut config = config(
            &["internal://127.0.0.1:9094", "SSL://127.0.0.1:9093"],
            &["SSL://kafka.example:443"],
        );
        config
            .listener_security_protocol_map
            .insert("INTERNAL".into(), "PLAINTEXT".into());
        config.inter_broker_listener_name = Some("INTERNAL".into());
        let listeners = config.listeners().unwrap();
        assert_eq!(listeners[0].name, "INTERNAL");
        assert_eq!(listeners[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(listeners[0].advertised_host, "127.0.0.1");
        assert_eq!(listeners[1].protocol, SecurityProtocol::Ssl);
        assert_eq!(
            (
                listeners[1].advertised_host.as_str(),
                listeners[1].advertised_port
            ),
            ("kafka.example", 443)
        );
        assert_eq!(
            config.inter_broker_listener(&listeners).unwrap().name,
            "INTERNAL"
        );
    }

    #[test]
    fn listener_mistakes_are_refused_with_the_fix() {
        let cases: Vec<(BrokerConfig, &str)> = vec![
            (
                config(&["CLIENT://127.0.0.1:1"], &[]),
                "listener_security_protocol_map",
            ),
            (
                config(&["PLAINTEXT://127.0.0.1:1", "PLAINTEXT://127.0.0.1:2"], &[]),
                "twice",
            ),
            (
                config(&["PLAINTEXT://127.0.0.1:1"], &["SSL://a:1"]),
                "does not have",
            ),
            (config(&["127.0.0.1:9092"], &[]), "NAME://HOST:PORT"),
            (
                config(&["PLAINTEXT://kafka.example:9092"], &[]),
                "IP address",
            ),
        ];
        for (config, expected) in cases {
            let error = config.listeners().unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        let mut config = config(&["PLAINTEXT://127.0.0.1:1"], &[]);
        config.inter_broker_listener_name = Some("OTHER".into());
        assert!(
            config
                .listeners()
                .unwrap_err()
                .contains("inter_broker_listener_name")
        );
    }

    #[test]
    fn a_port_the_kernel_chose_is_recorded() {
        let mut config = config(&["PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0"], &[]);
        config.record_bound(1, "127.0.0.1:40001".parse().unwrap());
        let listeners = config.listeners().unwrap();
        assert_eq!(listeners[1].advertised_port, 40001);
        assert_eq!(listeners[0].bind.port(), 0);
    }
}
