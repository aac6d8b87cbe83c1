//! Replication of one partition as a state machine without I/O: the leader's view of its
//! followers (positions, ISR, high watermark) and the acks=all waiting it implies, plus the
//! follower's truncation rule after a leader change. Inputs carry `now_ms`; outputs are
//! [`Action`]s the partition's driver carries out (update the ISR through the controller,
//! move the log's high watermark, answer produce requests). A fetcher and the controller
//! drive it in the replicated cluster; these rules are tested here deterministically.

use std::collections::{BTreeMap, BTreeSet};

/// Kafka's `replica.lag.time.max.ms` and `min.insync.replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationConfig {
    pub replica_lag_time_max_ms: i64,
    pub min_insync_replicas: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
        }
    }
}

/// What the controller decided for a partition: its replicas (leader included), the leader,
/// its epoch and the in-sync set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A produce waiting for replication, identified by the driver.
pub type Token = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// Fewer in-sync replicas than `min.insync.replicas` before the append: nothing written.
    NotEnoughReplicas,
    /// The ISR shrank below the minimum while the append waited: written, not acknowledged.
    NotEnoughReplicasAfterAppend,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The ISR changed: persist it (through the controller) before acting on it.
    IsrChanged(BTreeSet<i32>),
    /// Consumers may now read below this offset.
    HighWatermark(i64),
    /// Answer a waiting acks=all produce.
    Ack {
        token: Token,
        result: Result<(), AckError>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follower {
    log_end_offset: i64,
    /// Last time this follower had everything the leader had.
    caught_up_ms: i64,
}

/// The leader's replication state for one partition in one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    config: ReplicationConfig,
    leader_id: i32,
    leader_epoch: i32,
    /// Offset where this leader epoch started: a follower below it is not caught up.
    epoch_start_offset: i64,
    isr: BTreeSet<i32>,
    followers: BTreeMap<i32, Follower>,
    log_end_offset: i64,
    high_watermark: i64,
    waiting: BTreeMap<Token, i64>,
}

impl LeaderState {
    /// Becomes leader of `assignment` with the log as it stands.
    pub fn new(
        config: ReplicationConfig,
        assignment: &Assignment,
        log_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> Self {
        let (leader_id, leader_epoch) = (assignment.leader_id, assignment.leader_epoch);
        let (replicas, isr) = (&assignment.replicas, &assignment.isr);
        let followers = replicas
            .iter()
            .filter(|&&replica| replica != leader_id)
            .map(|&replica| {
                (
                    replica,
                    Follower {
                        // Unknown until its first fetch; the ISR grants it a grace period.
                        log_end_offset: -1,
                        caught_up_ms: now_ms,
                    },
                )
            })
            .collect();
        LeaderState {
            config,
            leader_id,
            leader_epoch,
            epoch_start_offset: log_end_offset,
            isr: isr
                .iter()
                .copied()
                .chain(std::iter::once(leader_id))
                .collect(),
            followers,
            log_end_offset,
            high_watermark,
            waiting: BTreeMap::new(),
        }
    }

    pub fn isr(&self) -> &BTreeSet<i32> {
        &self.isr
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Whether an acks=all produce may be appended now.
    pub fn check_produce(&self) -> Result<(), AckError> {
        if self.isr.len() < self.config.min_insync_replicas {
            return Err(AckError::NotEnoughReplicas);
        }
        Ok(())
    }

    /// The leader appended up to `log_end_offset`; `waiting` (acks=all) wants everything up to
    /// its last offset replicated to the ISR.
    pub fn appended(
        &mut self,
        log_end_offset: i64,
        waiting: Option<Token>,
        now_ms: i64,
    ) -> Vec<Action> {
        self.log_end_offset = log_end_offset;
        if let Some(token) = waiting {
            self.waiting.insert(token, log_end_offset);
        }
        self.settle(now_ms)
    }

    /// A follower fetched from `fetch_offset`: it has everything below it.
    pub fn follower_fetched(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Vec<Action> {
        let Some(follower) = self.followers.get_mut(&replica) else {
            return Vec::new();
        };
        follower.log_end_offset = fetch_offset;
        if fetch_offset >= self.log_end_offset {
            follower.caught_up_ms = now_ms;
        }
        self.settle(now_ms)
    }

    /// Time passes: followers that lag too long leave the ISR.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Action> {
        self.settle(now_ms)
    }

    fn settle(&mut self, now_ms: i64) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut isr = self.isr.clone();
        for (&replica, follower) in &self.followers {
            let lagging =
                now_ms.saturating_sub(follower.caught_up_ms) > self.config.replica_lag_time_max_ms;
            if isr.contains(&replica) && lagging {
                isr.remove(&replica);
            }
            // Rejoins once it has everything committed, from this leader's epoch on.
            let caught_up = follower.log_end_offset
                >= self.high_watermark.max(self.epoch_start_offset)
                && !lagging;
            if !isr.contains(&replica) && caught_up {
                isr.insert(replica);
            }
        }
        if isr != self.isr {
            self.isr = isr;
            actions.push(Action::IsrChanged(self.isr.clone()));
        }
        let replicated = self
            .isr
            .iter()
            .map(|replica| {
                if *replica == self.leader_id {
                    self.log_end_offset
                } else {
                    self.followers
                        .get(replica)
                        .map_or(-1, |follower| follower.log_end_offset)
                }
            })
            .min()
            .unwrap_or(self.log_end_offset);
        if replicated > self.high_watermark {
            self.high_watermark = replicated;
            actions.push(Action::HighWatermark(replicated));
        }
        let enough = self.isr.len() >= self.config.min_insync_replicas;
        let high_watermark = self.high_watermark;
        let answered: Vec<Token> = self
            .waiting
            .iter()
            .filter(|&(_, &needed)| needed <= high_watermark || !enough)
            .map(|(&token, _)| token)
            .collect();
        for token in answered {
            let needed = self.waiting.remove(&token).unwrap_or(i64::MAX);
            // As Kafka's checkEnoughReplicasReachOffset: replicated but by too few is a failure.
            let result = if enough && needed <= high_watermark {
                Ok(())
            } else {
                Err(AckError::NotEnoughReplicasAfterAppend)
            };
            actions.push(Action::Ack { token, result });
        }
        actions
    }
}

/// Where a follower truncates after asking the new leader for the end of its latest epoch
/// (OffsetForLeaderEpoch): `leader_epoch` and `leader_end_offset` are the leader's answer
/// (the largest epoch it knows at or below ours, and where that epoch ends on the leader);
/// `local_end_for` gives this follower's own end offset for an epoch. Everything from the
/// returned offset on diverged and must go.
pub fn follower_truncation_offset(
    leader_epoch: i32,
    leader_end_offset: i64,
    local_log_end_offset: i64,
    local_end_for: impl Fn(i32) -> Option<(i32, i64)>,
) -> i64 {
    // Keep what both logs have of that epoch: up to where the leader's copy of it ends and
    // where ours does (if we never had it, where our last earlier epoch ended).
    let local_end = local_end_for(leader_epoch).map_or(local_log_end_offset, |(_, end)| end);
    leader_end_offset.min(local_end).min(local_log_end_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG_MS: i64 = 10_000;

    fn leader(min_insync_replicas: usize) -> LeaderState {
        let config = ReplicationConfig {
            replica_lag_time_max_ms: LAG_MS,
            min_insync_replicas,
        };
        let assignment = Assignment {
            leader_id: 1,
            leader_epoch: 5,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
        };
        LeaderState::new(config, &assignment, 100, 100, 0)
    }

    fn has(actions: &[Action], wanted: &Action) -> bool {
        actions.contains(wanted)
    }

    #[test]
    fn the_high_watermark_follows_the_slowest_in_sync_replica() {
        let mut state = leader(2);
        assert!(
            state.appended(110, None, 1).is_empty(),
            "followers have not fetched yet"
        );
        assert!(
            state.follower_fetched(2, 110, 2).is_empty(),
            "replica 3 still at -1"
        );
        let actions = state.follower_fetched(3, 105, 3);
        assert!(has(&actions, &Action::HighWatermark(105)));
        let actions = state.follower_fetched(3, 110, 4);
        assert!(has(&actions, &Action::HighWatermark(110)));
        assert_eq!(state.high_watermark(), 110);
    }

    #[test]
    fn acks_all_waits_for_the_isr_and_fails_when_it_shrinks_below_the_minimum() {
        let mut state = leader(2);
        state.follower_fetched(2, 100, 1);
        state.follower_fetched(3, 100, 1);
        assert!(
            state.appended(120, Some(7), 2).is_empty(),
            "waits for replication"
        );
        let actions = state.follower_fetched(2, 120, 3);
        assert!(
            !actions
                .iter()
                .any(|action| matches!(action, Action::Ack { .. })),
            "replica 3 is in the ISR too"
        );
        let actions = state.follower_fetched(3, 120, 4);
        assert!(has(
            &actions,
            &Action::Ack {
                token: 7,
                result: Ok(())
            }
        ));

        state.appended(130, Some(8), 5);
        state.follower_fetched(2, 130, 6);
        // Replica 2 keeps up, replica 3 and then 2 stop fetching for longer than the lag limit.
        let mut actions = state.follower_fetched(2, 130, 6 + LAG_MS);
        actions.extend(state.tick(6 + LAG_MS + 1));
        assert!(
            actions
                .iter()
                .any(|action| matches!(action, Action::IsrChanged(isr) if !isr.contains(&3)))
        );
        assert!(
            has(&actions, &Action::HighWatermark(130)),
            "with 3 out, 2 alone completes the batch"
        );
        assert!(has(
            &actions,
            &Action::Ack {
                token: 8,
                result: Ok(())
            }
        ));
        state.appended(140, Some(9), 20_000);
        let actions = state.tick(6 + 2 * LAG_MS + 100);
        assert!(
            actions
                .iter()
                .any(|action| matches!(action, Action::IsrChanged(isr) if isr.len() == 1))
        );
        assert!(has(
            &actions,
            &Action::Ack {
                token: 9,
                result: Err(AckError::NotEnoughReplicasAfterAppend)
            }
        ));
        assert_eq!(
            state.check_produce(),
            Err(AckError::NotEnoughReplicas),
            "refused before appending now"
        );
    }

    #[test]
    fn a_lagging_follower_rejoins_the_isr_once_it_caught_up() {
        let mut state = leader(1);
        state.follower_fetched(2, 100, 1);
        state.follower_fetched(3, 100, 1);
        state.appended(150, None, 2);
        state.follower_fetched(2, 150, 3);
        let actions = state.tick(LAG_MS + 10);
        assert!(
            actions
                .iter()
                .any(|action| matches!(action, Action::IsrChanged(isr) if !isr.contains(&3)))
        );
        assert!(
            state.follower_fetched(3, 120, LAG_MS + 20).is_empty(),
            "not caught up yet"
        );
        let actions = state.follower_fetched(3, 150, LAG_MS + 30);
        assert!(
            actions
                .iter()
                .any(|action| matches!(action, Action::IsrChanged(isr) if isr.contains(&3)))
        );
    }

    #[test]
    fn a_follower_truncates_the_history_it_does_not_share_with_the_new_leader() {
        // The follower wrote epoch 4 up to offset 130; the new leader (epoch 5) only has epoch
        // 4 up to 120 and started epoch 5 there.
        let local = |epoch: i32| match epoch {
            4 => Some((4, 130)),
            3 => Some((3, 80)),
            _ => None,
        };
        assert_eq!(follower_truncation_offset(4, 120, 130, local), 120);
        // The leader never had epoch 4: it answers its epoch 3, which ended at 90 there.
        assert_eq!(follower_truncation_offset(3, 90, 130, local), 80);
        // Same history: nothing to cut.
        assert_eq!(follower_truncation_offset(4, 130, 130, local), 130);
    }
}
