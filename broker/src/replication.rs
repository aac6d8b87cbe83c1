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

/// Kafka's default `replica.lag.time.max.ms`.
const REPLICA_LAG_TIME_MS_MAX_DEFAULT: i64 = 30_000;

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replica_lag_time_max_ms: REPLICA_LAG_TIME_MS_MAX_DEFAULT,
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

impl Assignment {
    /// The ISR as a set, the leader always in it.
    pub fn isr_set(&self) -> BTreeSet<i32> {
        self.isr
            .iter()
            .copied()
            .chain((self.leader_id >= 0).then_some(self.leader_id))
            .collect()
    }
}

/// A produce waiting for replication, identified by the driver.
pub type Token = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// Fewer in-sync replicas than `min.insync.replicas` before the append: nothing written.
    NotEnoughReplicas,
    /// The ISR shrank below the minimum while the append waited: written, not acknowledged.
    NotEnoughReplicasAfterAppend,
    /// This broker stopped leading the partition while the append waited (Kafka's delayed
    /// produce answers NOT_LEADER_OR_FOLLOWER then, so the client looks for the new leader).
    NotLeader,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Propose this ISR: persist it (with the metadata's compare-and-set) and report back
    /// with [`LeaderState::isr_committed`] or [`LeaderState::isr_change_failed`]. Until
    /// then the high watermark counts both the old and the proposed members, so nothing is
    /// acknowledged on the strength of an ISR a new leader might not know (Kafka's KIP-497).
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
    /// The ISR as persisted: what a new leader would be chosen from.
    isr: BTreeSet<i32>,
    /// A change proposed and not yet persisted (at most one in flight).
    pending_isr: Option<BTreeSet<i32>>,
    followers: BTreeMap<i32, Follower>,
    /// The leader's own position: its log end, or under `flush = "every-batch"` what of it
    /// is on disk (the leader counts like a follower that reports only what it flushed).
    log_end_offset: i64,
    high_watermark: i64,
    waiting: BTreeMap<Token, i64>,
    /// The latest time an input brought, for inputs without one (a flush finishing).
    now_ms: i64,
}

/// The log a new leader starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderStart {
    /// Where the leader's epoch starts.
    pub log_end_offset: i64,
    /// The leader's own position: the log end, or under `flush = "every-batch"` what of it is
    /// on disk (the recovery point).
    pub position: i64,
    pub high_watermark: i64,
}

impl LeaderStart {
    /// A log wholly on disk (or not flushed per append).
    pub fn at(log_end_offset: i64, high_watermark: i64) -> Self {
        LeaderStart {
            log_end_offset,
            position: log_end_offset,
            high_watermark,
        }
    }
}

impl LeaderState {
    /// Becomes leader of `assignment` with the log as it stands.
    pub fn new(
        config: ReplicationConfig,
        assignment: &Assignment,
        start: LeaderStart,
        now_ms: i64,
    ) -> Self {
        let LeaderStart {
            log_end_offset,
            position,
            high_watermark,
        } = start;
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
            pending_isr: None,
            followers,
            log_end_offset: position.min(log_end_offset),
            high_watermark,
            waiting: BTreeMap::new(),
            now_ms,
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
        self.appended_unflushed(log_end_offset, log_end_offset, waiting, now_ms)
    }

    /// The leader appended up to `log_end_offset` of which only what is below
    /// `position` is on disk (`flush = "every-batch"` before its group commit): the leader
    /// counts itself at `position` until [`LeaderState::flushed`] moves it.
    pub fn appended_unflushed(
        &mut self,
        position: i64,
        log_end_offset: i64,
        waiting: Option<Token>,
        now_ms: i64,
    ) -> Vec<Action> {
        self.log_end_offset = self.log_end_offset.max(position);
        if let Some(token) = waiting {
            self.waiting.insert(token, log_end_offset);
        }
        self.settle(now_ms)
    }

    /// The leader's log is on disk below `position` (a group commit finished).
    pub fn flushed(&mut self, position: i64) -> Vec<Action> {
        if position <= self.log_end_offset {
            return Vec::new();
        }
        self.log_end_offset = position;
        self.settle(self.now_ms)
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

    /// The proposed ISR (or one the controller set in the same leader epoch) is persisted.
    pub fn isr_committed(&mut self, isr: BTreeSet<i32>, now_ms: i64) -> Vec<Action> {
        // A replica removed (by the controller when its broker died) must fetch again before
        // it may rejoin: its last known position proves nothing about a broker that is gone.
        for (replica, follower) in &mut self.followers {
            if self.isr.contains(replica) && !isr.contains(replica) {
                follower.log_end_offset = -1;
            }
        }
        self.isr = isr;
        self.isr.insert(self.leader_id);
        self.pending_isr = None;
        self.settle(now_ms)
    }

    /// Persisting the proposal failed (a conflict or the coordinator away): propose again on
    /// the next step.
    pub fn isr_change_failed(&mut self) {
        self.pending_isr = None;
    }

    /// The replica set changed within this leader epoch (a reassignment added or removed
    /// replicas): new followers start unknown and out of the ISR, removed ones are forgotten.
    pub fn set_replicas(&mut self, replicas: &[i32], now_ms: i64) {
        self.followers
            .retain(|replica, _| replicas.contains(replica));
        for &replica in replicas {
            if replica != self.leader_id {
                self.followers.entry(replica).or_insert(Follower {
                    log_end_offset: -1,
                    caught_up_ms: now_ms,
                });
            }
        }
    }

    /// The proposed ISR, if one is waiting to be persisted.
    pub fn pending_isr(&self) -> Option<&BTreeSet<i32>> {
        self.pending_isr.as_ref()
    }

    fn settle(&mut self, now_ms: i64) -> Vec<Action> {
        self.now_ms = self.now_ms.max(now_ms);
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
        if isr != self.isr && self.pending_isr.is_none() {
            self.pending_isr = Some(isr.clone());
            actions.push(Action::IsrChanged(isr));
        }
        // The maximal ISR: members leaving still count until their removal is persisted.
        let maximal: BTreeSet<i32> = self
            .isr
            .iter()
            .chain(self.pending_isr.iter().flatten())
            .copied()
            .collect();
        let replicated = maximal
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
        LeaderState::new(config, &assignment, LeaderStart::at(100, 100), 0)
    }

    fn has(actions: &[Action], wanted: &Action) -> bool {
        actions.contains(wanted)
    }

    /// Persists the ISR change `actions` proposed, as the metadata store would, and returns
    /// what the leader does then.
    fn commit(state: &mut LeaderState, actions: &[Action], now_ms: i64) -> Vec<Action> {
        let isr = actions
            .iter()
            .find_map(|action| match action {
                Action::IsrChanged(isr) => Some(isr.clone()),
                _ => None,
            })
            .unwrap();
        state.isr_committed(isr, now_ms)
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
            !has(&actions, &Action::HighWatermark(130)),
            "replica 3 counts until its removal is persisted"
        );
        assert!(
            state.tick(6 + LAG_MS + 2).is_empty(),
            "one proposal at a time"
        );
        let actions = commit(&mut state, &actions, 6 + LAG_MS + 3);
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
        let actions = commit(&mut state, &actions, 6 + 2 * LAG_MS + 101);
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
        commit(&mut state, &actions, LAG_MS + 11);
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

#[cfg(test)]
mod pending_isr_tests {
    use super::*;

    /// Leader 1 of `replicas` (all in sync) in epoch 0, its log ending at `log_end`.
    fn leader_of(replicas: &[i32], lag_ms: i64, log_end: i64) -> LeaderState {
        let config = ReplicationConfig {
            replica_lag_time_max_ms: lag_ms,
            min_insync_replicas: 1,
        };
        let assignment = Assignment {
            leader_id: 1,
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
        };
        LeaderState::new(config, &assignment, LeaderStart::at(log_end, log_end), 0)
    }

    #[test]
    fn a_replica_the_controller_removed_rejoins_only_after_fetching_again() {
        let mut state = leader_of(&[1, 2, 3], 10_000, 20);
        state.follower_fetched(2, 20, 1);
        state.follower_fetched(3, 20, 1);
        // Broker 3 dies; the controller removes it at once, long before the lag limit.
        let actions = state.isr_committed(BTreeSet::from([1, 2]), 2);
        assert!(actions.is_empty(), "no proposal to re-add 3: {actions:?}");
        state.appended(21, Some(1), 3);
        let actions = state.follower_fetched(2, 21, 4);
        assert!(actions.contains(&Action::HighWatermark(21)), "{actions:?}");
        assert!(actions.contains(&Action::Ack {
            token: 1,
            result: Ok(())
        }));
        // Broker 3 comes back and catches up: now it is proposed again.
        let actions = state.follower_fetched(3, 21, 5);
        assert!(actions.contains(&Action::IsrChanged(BTreeSet::from([1, 2, 3]))));
    }

    #[test]
    fn a_replica_added_by_a_reassignment_joins_once_caught_up() {
        let mut state = leader_of(&[1, 2], 10_000, 50);
        state.follower_fetched(2, 50, 1);
        assert!(
            state.follower_fetched(4, 50, 2).is_empty(),
            "not a replica yet"
        );
        state.set_replicas(&[1, 2, 4], 3);
        assert!(state.follower_fetched(4, 20, 4).is_empty(), "behind");
        let actions = state.follower_fetched(4, 50, 5);
        assert!(actions.contains(&Action::IsrChanged(BTreeSet::from([1, 2, 4]))));
    }

    #[test]
    fn a_failed_isr_change_is_proposed_again() {
        let mut state = leader_of(&[1, 2], 10, 0);
        let shrink = Action::IsrChanged(BTreeSet::from([1]));
        assert!(state.tick(20).contains(&shrink));
        assert!(state.tick(21).is_empty());
        state.isr_change_failed();
        assert!(state.tick(22).contains(&shrink));
    }
}
