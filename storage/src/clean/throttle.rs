//! The cleaner's I/O rate limit (`log.cleaner.io.max.bytes.per.second`): a token bucket over
//! an injected [`Pause`], so tests run it on a manual clock without sleeping.

use std::fmt;
use std::sync::Arc;

/// Time for the throttle: a monotonic millisecond clock and a way to wait.
pub trait Pause: Send + Sync + fmt::Debug {
    fn now_ms(&self) -> i64;
    fn sleep_ms(&self, duration_ms: u64);
}

/// Holds the cleaner's reads and writes to `bytes_per_second` on average, with bursts of at
/// most one second's worth.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: Option<u64>,
    pause: Option<Arc<dyn Pause>>,
    /// Bytes that may pass without waiting; negative: owed.
    available: i128,
    last_ms: Option<i64>,
    slept_ms_total: u64,
}

impl Throttle {
    /// No limit.
    pub fn unlimited() -> Self {
        Throttle {
            bytes_per_second: None,
            pause: None,
            available: 0,
            last_ms: None,
            slept_ms_total: 0,
        }
    }

    pub fn new(bytes_per_second: u64, pause: Arc<dyn Pause>) -> Self {
        Throttle {
            bytes_per_second: Some(bytes_per_second.max(1)),
            pause: Some(pause),
            available: i128::from(bytes_per_second.max(1)),
            last_ms: None,
            slept_ms_total: 0,
        }
    }

    /// Milliseconds spent waiting so far.
    pub fn slept_ms(&self) -> u64 {
        self.slept_ms_total
    }

    /// Accounts `bytes` of I/O, waiting first when they exceed what the rate allows.
    pub fn take(&mut self, bytes: u64) {
        let (Some(rate), Some(pause)) = (self.bytes_per_second, self.pause.clone()) else {
            return;
        };
        self.refill(rate, pause.now_ms());
        self.available -= i128::from(bytes);
        if self.available < 0 {
            let owed = (-self.available) as u128;
            let wait_ms = u64::try_from(owed.saturating_mul(1000).div_ceil(u128::from(rate)))
                .unwrap_or(u64::MAX);
            pause.sleep_ms(wait_ms);
            self.slept_ms_total = self.slept_ms_total.saturating_add(wait_ms);
            self.refill(rate, pause.now_ms());
        }
    }

    fn refill(&mut self, rate: u64, now_ms: i64) {
        let elapsed_ms = self.last_ms.map_or(0, |last| {
            u64::try_from(now_ms.saturating_sub(last)).unwrap_or(0)
        });
        self.last_ms = Some(now_ms);
        let earned = i128::from(elapsed_ms) * i128::from(rate) / 1000;
        self.available = (self.available + earned).min(i128::from(rate));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[derive(Debug, Default)]
    struct ManualPause(AtomicI64);

    impl Pause for ManualPause {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
        fn sleep_ms(&self, duration_ms: u64) {
            self.0.fetch_add(duration_ms as i64, Ordering::SeqCst);
        }
    }

    #[test]
    fn holds_io_to_the_configured_rate_on_a_manual_clock() {
        let pause = Arc::new(ManualPause::default());
        let mut throttle = Throttle::new(1_000, pause.clone());
        // One second's worth passes at once.
        throttle.take(1_000);
        assert_eq!(pause.now_ms(), 0);
        // 10,000 more bytes take 10 s.
        for _ in 0..100 {
            throttle.take(100);
        }
        assert_eq!(pause.now_ms(), 10_000);
        assert_eq!(throttle.slept_ms(), 10_000);
        // Idle time refills at most one second's worth.
        pause.sleep_ms(60_000);
        throttle.take(1_000);
        assert_eq!(pause.now_ms(), 70_000);
        throttle.take(500);
        assert_eq!(pause.now_ms(), 70_500);
    }

    #[test]
    fn an_unlimited_throttle_never_waits() {
        let mut throttle = Throttle::unlimited();
        throttle.take(u64::MAX);
        assert_eq!(throttle.slept_ms(), 0);
    }
}
