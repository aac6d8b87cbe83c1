//! The holder's side of a session lease, as a pure state machine: when to renew, and when to
//! step down. No I/O and no clock: time comes in as `now` (a `Duration` since any fixed
//! origin), so the rules are tested with a manual clock.
//!
//! The rule that makes a deposed leader stop before another can start: the servers never
//! expire a session (nor its TTL health check) earlier than `ttl` after they processed the
//! last renewal, and they processed it after we sent it. So a holder whose last successful
//! renewal was *sent* at `t` is safe until `t + ttl`; it steps down at
//! `t + ttl - step_down_margin`, and nobody can acquire before `t + ttl + lock_delay`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The session TTL (and the TTL of the health check the session is tied to).
    pub ttl: Duration,
    /// How long before `last successful send + ttl` the holder gives up.
    pub step_down_margin: Duration,
    /// Renew this long after the last successful renewal was sent.
    pub renew_interval: Duration,
    /// After a failed renewal, try again this long after the failure.
    pub retry_interval: Duration,
}

impl LeaseConfig {
    /// Renew three times per TTL, retry failures quickly.
    pub fn for_ttl(ttl: Duration, step_down_margin: Duration) -> Self {
        LeaseConfig {
            ttl,
            step_down_margin,
            renew_interval: ttl / 4,
            retry_interval: (ttl / 20).max(Duration::from_millis(100)),
        }
    }
}

/// What the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAction {
    /// Send a renewal now; report it with `renewal_succeeded(sent_at)` or `renewal_failed`.
    Renew,
    /// Nothing to do before `until` (a renewal is due or the lease ends then).
    WaitUntil(Duration),
    /// The lease is over: stop acting as holder of anything tied to it.
    StepDown,
}

#[derive(Debug, Clone)]
pub struct Lease {
    config: LeaseConfig,
    /// Send time of the latest successful renewal (or of the session creation).
    last_ok_sent_at: Duration,
    /// Set after a failed renewal: retry at this time.
    retry_at: Option<Duration>,
    over: bool,
}

impl Lease {
    /// A lease whose session creation request was sent at `created_sent_at`.
    pub fn new(config: LeaseConfig, created_sent_at: Duration) -> Self {
        Lease {
            config,
            last_ok_sent_at: created_sent_at,
            retry_at: None,
            over: false,
        }
    }

    /// The instant the holder stops holding, unless a renewal succeeds first.
    pub fn step_down_at(&self) -> Duration {
        (self.last_ok_sent_at + self.config.ttl).saturating_sub(self.config.step_down_margin)
    }

    pub fn is_held(&self, now: Duration) -> bool {
        !self.over && now < self.step_down_at()
    }

    pub fn renewal_succeeded(&mut self, sent_at: Duration) {
        if self.over {
            return;
        }
        // A late answer to an older request must not move the lease backwards.
        self.last_ok_sent_at = self.last_ok_sent_at.max(sent_at);
        self.retry_at = None;
    }

    pub fn renewal_failed(&mut self, now: Duration) {
        self.retry_at = Some(now + self.config.retry_interval);
    }

    /// The servers said the session is gone: over at once, whatever the clock says.
    pub fn invalidated(&mut self) {
        self.over = true;
    }

    pub fn next(&mut self, now: Duration) -> LeaseAction {
        if self.over || now >= self.step_down_at() {
            self.over = true;
            return LeaseAction::StepDown;
        }
        let renew_at = self
            .retry_at
            .unwrap_or(self.last_ok_sent_at + self.config.renew_interval);
        if now >= renew_at {
            LeaseAction::Renew
        } else {
            LeaseAction::WaitUntil(renew_at.min(self.step_down_at()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn config() -> LeaseConfig {
        LeaseConfig {
            ttl: 10 * S,
            step_down_margin: S,
            renew_interval: 3 * S,
            retry_interval: 500 * MS,
        }
    }

    #[test]
    fn renews_on_schedule_and_stays_held() {
        let mut lease = Lease::new(config(), Duration::ZERO);
        assert_eq!(lease.next(Duration::ZERO), LeaseAction::WaitUntil(3 * S));
        assert_eq!(lease.next(3 * S), LeaseAction::Renew);
        lease.renewal_succeeded(3 * S);
        assert_eq!(lease.next(3 * S + MS), LeaseAction::WaitUntil(6 * S));
        assert!(lease.is_held(11 * S));
        assert_eq!(lease.step_down_at(), 12 * S);
    }

    #[test]
    fn failing_renewals_retry_then_step_down_before_the_ttl() {
        let mut lease = Lease::new(config(), Duration::ZERO);
        let mut now = 3 * S;
        let mut renewals = 0;
        loop {
            match lease.next(now) {
                LeaseAction::Renew => {
                    renewals += 1;
                    now += 200 * MS; // the request times out
                    lease.renewal_failed(now);
                }
                LeaseAction::WaitUntil(until) => {
                    assert!(until > now);
                    now = until;
                }
                LeaseAction::StepDown => break,
            }
        }
        // Stepped down at ttl - margin after the last successful send (the creation).
        assert_eq!(now, 9 * S);
        assert!(renewals >= 8, "retried quickly: {renewals}");
        assert!(!lease.is_held(now));
        // Over is final: a late success does not revive it.
        lease.renewal_succeeded(now);
        assert_eq!(lease.next(now), LeaseAction::StepDown);
    }

    #[test]
    fn a_late_answer_does_not_move_the_lease_backwards() {
        let mut lease = Lease::new(config(), Duration::ZERO);
        lease.renewal_succeeded(5 * S);
        lease.renewal_succeeded(4 * S);
        assert_eq!(lease.step_down_at(), 14 * S);
    }

    #[test]
    fn invalidation_steps_down_at_once() {
        let mut lease = Lease::new(config(), Duration::ZERO);
        lease.invalidated();
        assert!(!lease.is_held(Duration::ZERO));
        assert_eq!(lease.next(Duration::ZERO), LeaseAction::StepDown);
    }

    #[test]
    fn recovery_after_failures_clears_the_retry() {
        let mut lease = Lease::new(config(), Duration::ZERO);
        assert_eq!(lease.next(3 * S), LeaseAction::Renew);
        lease.renewal_failed(3 * S);
        assert_eq!(lease.next(3 * S), LeaseAction::WaitUntil(3 * S + 500 * MS));
        assert_eq!(lease.next(3 * S + 500 * MS), LeaseAction::Renew);
        lease.renewal_succeeded(3 * S + 500 * MS);
        assert_eq!(lease.next(4 * S), LeaseAction::WaitUntil(6 * S + 500 * MS));
    }

    /// Whatever the pattern of successes and failures, the holder is never held at or after
    /// `last successful send + ttl`: the earliest moment the servers may expire the session.
    #[test]
    fn never_held_past_the_server_side_expiry() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            let mut lease = Lease::new(config(), Duration::ZERO);
            let mut now = Duration::ZERO;
            let mut last_ok = Duration::ZERO;
            for _ in 0..500 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match lease.next(now) {
                    LeaseAction::Renew => {
                        let sent = now;
                        now += Duration::from_millis(seed % 3000);
                        if seed % 3 == 0 {
                            lease.renewal_failed(now);
                        } else {
                            lease.renewal_succeeded(sent);
                            last_ok = last_ok.max(sent);
                        }
                    }
                    LeaseAction::WaitUntil(until) => now = until,
                    LeaseAction::StepDown => break,
                }
                if lease.is_held(now) {
                    assert!(now < last_ok + config().ttl);
                }
            }
        }
    }
}
