//! Retrying what Kafka marks retriable (leadership moving, a coordinator loading, metadata not
//! propagated yet, a dropped connection) with exponential backoff until a deadline, as Kafka's
//! own clients do.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Result;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Runs `operation` until it succeeds, fails with a non-retriable error, or the next attempt
/// would start after `timeout`; the last error is returned then.
pub(crate) async fn retrying<T, F, Fut>(what: &str, timeout: Duration, operation: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match operation().await {
            Err(error) if error.is_retriable() && Instant::now() + backoff < deadline => {
                tracing::debug!(what, %error, "retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            outcome => return outcome,
        }
    }
}
