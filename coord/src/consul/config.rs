//! `ConsulConfig`: the settings of a `ConsulCoordinator`, and their checks.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{CoordError, CoordResult};
use crate::types::validate_name;

/// Settings of a `ConsulCoordinator`. Durations are bounded by Consul's own limits.
/// `Debug` leaves the token out: configs end up in logs.
#[derive(Clone)]
pub struct ConsulConfig {
    /// The agent's HTTP address, e.g. `http://127.0.0.1:8500` or `https://consul:8501`.
    pub address: String,
    /// ACL token, sent as `X-Consul-Token` on every request (agents with ACLs need one).
    pub token: Option<String>,
    /// PEM file of the CA(s) that sign the agent's https certificate; without it the public
    /// web roots are trusted. Only with an `https://` address.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) shown to the agent, for `verify_incoming`; needs
    /// `key_file`. Only with an `https://` address.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Root of every key this coordinator reads or writes.
    pub key_prefix: String,
    /// Consul service name of the brokers.
    pub service_name: String,
    /// Session (and session health check) TTL: 10 s to 24 h, as Consul allows.
    pub session_ttl: Duration,
    /// After a session is invalidated, its keys cannot be acquired for this long (≤ 60 s).
    pub lock_delay: Duration,
    /// The holder steps down this long before its session can expire on the servers.
    pub step_down_margin: Duration,
    /// How long one blocking query waits for a change (≥ 1 s, ≤ 10 min).
    pub watch_wait: Duration,
    /// Timeout of every non-blocking request.
    pub request_timeout: Duration,
    /// Longest pause between retries of a failing watch.
    pub retry_backoff_max: Duration,
}

impl ConsulConfig {
    pub fn new(address: impl Into<String>) -> Self {
        ConsulConfig {
            address: address.into(),
            token: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_prefix: "lmq".into(),
            service_name: "lmq-broker".into(),
            session_ttl: Duration::from_secs(10),
            lock_delay: Duration::from_secs(5),
            step_down_margin: Duration::from_secs(1),
            watch_wait: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            retry_backoff_max: Duration::from_secs(2),
        }
    }

    pub(super) fn validate(&self) -> CoordResult<()> {
        let invalid = |text: String| Err(CoordError::InvalidConfig(text));
        validate_name(&self.key_prefix)?;
        validate_name(&self.service_name)?;
        if self.service_name.contains('/') {
            return invalid(format!("service name {:?} contains '/'", self.service_name));
        }
        if !(self.address.starts_with("http://") || self.address.starts_with("https://")) {
            return invalid(format!("address {:?} is not http(s)://", self.address));
        }
        let tls_files = [&self.ca_file, &self.cert_file, &self.key_file];
        if !self.address.starts_with("https://") && tls_files.iter().any(|file| file.is_some()) {
            return invalid(format!(
                "TLS files are set but the address {:?} is not https://: they would not be \
                 used (and the token would travel in clear)",
                self.address
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return invalid("a client certificate needs both cert_file and key_file".into());
        }
        if self
            .token
            .as_deref()
            .is_some_and(|token| token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return invalid("the ACL token is empty or has spaces or control characters".into());
        }
        if self.session_ttl < Duration::from_secs(10)
            || self.session_ttl > Duration::from_secs(86_400)
        {
            return invalid(format!(
                "session_ttl {:?} outside 10 s..=24 h",
                self.session_ttl
            ));
        }
        if self.lock_delay > Duration::from_secs(60) {
            return invalid(format!("lock_delay {:?} above 60 s", self.lock_delay));
        }
        if self.step_down_margin.is_zero() || self.step_down_margin >= self.session_ttl / 2 {
            return invalid(format!(
                "step_down_margin {:?} must be above 0 and below half the session TTL",
                self.step_down_margin
            ));
        }
        if self.watch_wait < Duration::from_secs(1) || self.watch_wait > Duration::from_secs(600) {
            return invalid(format!(
                "watch_wait {:?} outside 1 s..=10 min",
                self.watch_wait
            ));
        }
        if self.request_timeout.is_zero() || self.retry_backoff_max.is_zero() {
            return invalid("request_timeout and retry_backoff_max must be above 0".into());
        }
        Ok(())
    }
}

impl std::fmt::Debug for ConsulConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("key_prefix", &self.key_prefix)
            .field("service_name", &self.service_name)
            .field("session_ttl", &self.session_ttl)
            .field("lock_delay", &self.lock_delay)
            .field("step_down_margin", &self.step_down_margin)
            .field("watch_wait", &self.watch_wait)
            .field("request_timeout", &self.request_timeout)
            .field("retry_backoff_max", &self.retry_backoff_max)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_leaves_the_token_out() {
        let config = ConsulConfig {
            token: Some("s3cr3t-token".into()),
            ..ConsulConfig::new("http://127.0.0.1:8500")
        };
        let text = format!("{config:?}");
        assert!(!text.contains("s3cr3t-token"), "{text}");
        assert!(text.contains("<set>"), "{text}");
    }

    #[test]
    fn tls_files_need_https_and_a_certificate_needs_its_key() {
        let https = ConsulConfig {
            ca_file: Some("/ca.pem".into()),
            ..ConsulConfig::new("https://127.0.0.1:8501")
        };
        assert!(https.validate().is_ok());
        let http = ConsulConfig {
            address: "http://127.0.0.1:8500".into(),
            ..https.clone()
        };
        assert!(matches!(http.validate(), Err(CoordError::InvalidConfig(_))));
        let half = ConsulConfig {
            cert_file: Some("/client.pem".into()),
            ..https.clone()
        };
        assert!(matches!(half.validate(), Err(CoordError::InvalidConfig(_))));
        let spaced = ConsulConfig {
            token: Some("a b".into()),
            ..https
        };
        assert!(matches!(
            spaced.validate(),
            Err(CoordError::InvalidConfig(_))
        ));
    }
}
