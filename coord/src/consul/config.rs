//! `ConsulConfig`: the settings of a `ConsulCoordinator`, and their checks.

use std::time::Duration;

use crate::error::{CoordError, CoordResult};
use crate::types::validate_name;

/// Settings of a `ConsulCoordinator`. Durations are bounded by Consul's own limits.
#[derive(Debug, Clone)]
pub struct ConsulConfig {
    /// The agent's HTTP address, e.g. `http://127.0.0.1:8500`.
    pub address: String,
    /// ACL token, if the agent requires one.
    pub token: Option<String>,
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
