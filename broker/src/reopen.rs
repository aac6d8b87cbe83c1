//! Bringing a poisoned partition log back: after a failed write or fsync the log refuses
//! writes (KAFKA_STORAGE_ERROR); a background task closes it, opens it again from disk with
//! recovery on the blocking pool, retrying with exponential backoff while that fails (the
//! disk still full), and then has the partition take its role from the cluster metadata again
//! (leader again on a single node). A leader with another live in-sync replica first gives the
//! partition to it through the metadata, and comes back as its follower.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::partition::{Partition, Reopened};

/// The wait before the first attempt to reopen a poisoned log.
pub const REOPEN_BACKOFF_MS_MIN: u64 = 100;
/// The longest wait between two attempts.
pub const REOPEN_BACKOFF_MS_MAX: u64 = 10_000;

/// Exponential backoff between reopen attempts: pure, so the schedule is unit-tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReopenBackoff {
    pub delay_ms_min: u64,
    pub delay_ms_max: u64,
}

impl Default for ReopenBackoff {
    fn default() -> Self {
        ReopenBackoff {
            delay_ms_min: REOPEN_BACKOFF_MS_MIN,
            delay_ms_max: REOPEN_BACKOFF_MS_MAX,
        }
    }
}

impl ReopenBackoff {
    /// The wait before attempt `failures + 1`: the minimum doubled per failure, capped.
    pub fn delay_ms(&self, failures: u32) -> u64 {
        let factor = 1u64.checked_shl(failures.min(63)).unwrap_or(u64::MAX);
        self.delay_ms_min
            .saturating_mul(factor)
            .min(self.delay_ms_max)
    }
}

/// Starts a reopening task for each poisoned partition log that has none.
pub fn reopen_poisoned(broker: &Arc<Broker>, cluster: &Arc<ClusterNode>) {
    for topic in broker.topics.list() {
        for partition in &topic.partitions {
            if partition.claim_reopen() {
                tracing::warn!(
                    topic = topic.name,
                    partition = partition.index,
                    "log poisoned by an I/O failure; reopening it in the background"
                );
                tokio::spawn(reopen(
                    Arc::clone(broker),
                    Arc::clone(cluster),
                    topic.name.clone(),
                    Arc::clone(partition),
                    ReopenBackoff::default(),
                ));
            }
        }
    }
}

async fn reopen(
    broker: Arc<Broker>,
    node: Arc<ClusterNode>,
    topic: String,
    partition: Arc<Partition>,
    backoff: ReopenBackoff,
) {
    // In a cluster, a leader hands the partition to another in-sync replica first: its own
    // log lost what the failed write or fsync covered, and the others have every
    // acknowledged record.
    if partition.is_leader() {
        let epoch = partition.leader_epoch();
        match node
            .resign_leadership(&broker, &topic, partition.index, epoch)
            .await
        {
            Ok(true) => {
                tracing::warn!(
                    topic,
                    partition = partition.index,
                    epoch,
                    "gave up leadership after an I/O failure"
                );
            }
            Ok(false) => {
                tracing::warn!(
                    topic,
                    partition = partition.index,
                    "no other in-sync replica: keeping leadership, refusing writes until the log is reopened"
                );
            }
            Err(error) => {
                tracing::error!(topic, partition = partition.index, %error, "could not give up leadership");
            }
        }
    }
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(backoff.delay_ms(failures))).await;
        let attempt = {
            let partition = Arc::clone(&partition);
            let broker = Arc::clone(&broker);
            let node = Arc::clone(&node);
            let now_ms = broker.now_ms();
            tokio::task::spawn_blocking(move || {
                let outcome = partition.reopen_log(now_ms);
                // The reopen dropped the role with the old log; it is taken again right away
                // on this thread, so the partition answers NOT_LEADER_OR_FOLLOWER only for as
                // long as applying the metadata takes (not a task switch more).
                if matches!(outcome, Ok(Reopened::Open)) {
                    node.reapply_metadata(&broker);
                }
                outcome
            })
            .await
        };
        match attempt {
            Ok(Ok(Reopened::Open)) => {
                tracing::info!(
                    topic,
                    partition = partition.index,
                    role = partition.role_name(),
                    "log reopened; partition serves again"
                );
                break;
            }
            Ok(Ok(Reopened::NotNeeded)) => break,
            Ok(Err(error)) => {
                failures = failures.saturating_add(1);
                tracing::warn!(topic, partition = partition.index, %error, retry_ms = backoff.delay_ms(failures), "reopening the log failed");
            }
            Err(error) => {
                tracing::error!(topic, partition = partition.index, %error, "the reopening task failed");
                break;
            }
        }
    }
    partition.reopen_done();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
        let backoff = ReopenBackoff {
            delay_ms_min: 100,
            delay_ms_max: 1_000,
        };
        let delays: Vec<u64> = (0..6).map(|failures| backoff.delay_ms(failures)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff.delay_ms(u32::MAX), 1_000);
        assert_eq!(
            ReopenBackoff::default().delay_ms(100),
            REOPEN_BACKOFF_MS_MAX
        );
    }
}
