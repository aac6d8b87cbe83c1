//! The replication state machine in a simulated 3-replica network with a manual clock:
//! acks=all produces, follower fetches (with the last-fetched-epoch divergence check and
//! truncation), lost fetches, time passing (ISR shrink), ISR proposals that are persisted or
//! lost, and leader crashes followed by an election from the persisted ISR. Thousands of
//! seeded random schedules; after every election the new leader must hold every record that
//! was acknowledged, at the same offset and epoch.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use lmq_broker::replication::{
    Action, Assignment, LeaderStart, LeaderState, ReplicationConfig, follower_truncation_offset,
};

const LAG_MS: i64 = 1_000;

/// A tiny deterministic generator (xorshift64*), so every schedule can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A replica's log: the leader epoch of each offset.
type Log = Vec<i32>;

/// The largest epoch at or below `epoch` in `log` and the offset where it ends.
fn end_offset_for(log: &Log, epoch: i32) -> Option<(i32, i64)> {
    let found = log.iter().copied().filter(|&e| e <= epoch).max()?;
    let end = log
        .iter()
        .position(|&e| e > found)
        .map_or(log.len(), |position| position);
    Some((found, end as i64))
}

struct Sim {
    rng: Rng,
    now: i64,
    logs: BTreeMap<i32, Log>,
    alive: BTreeSet<i32>,
    /// The persisted partition state (what a controller elects from).
    assignment: Assignment,
    leader: LeaderState,
    /// Acknowledged records: offset -> epoch.
    acked: BTreeMap<i64, i32>,
    waiting: BTreeMap<u64, i64>,
    next_token: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let assignment = Assignment {
            leader_id: 1,
            leader_epoch: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
        };
        let config = ReplicationConfig {
            replica_lag_time_max_ms: LAG_MS,
            min_insync_replicas: 2,
        };
        Sim {
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            now: 0,
            logs: (1..=3).map(|id| (id, Vec::new())).collect(),
            alive: (1..=3).collect(),
            leader: LeaderState::new(config, &assignment, LeaderStart::at(0, 0), 0),
            assignment,
            acked: BTreeMap::new(),
            waiting: BTreeMap::new(),
            next_token: 0,
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Ack { token, result } => {
                    let offset = self.waiting.remove(&token).unwrap();
                    if result.is_ok() {
                        let leader = &self.logs[&self.assignment.leader_id];
                        self.acked
                            .insert(offset, leader[usize::try_from(offset).unwrap()]);
                    }
                }
                Action::IsrChanged(isr) => {
                    // The proposal reaches the metadata store, or is lost on the way.
                    if self.rng.below(4) == 0 {
                        self.leader.isr_change_failed();
                    } else {
                        self.assignment.isr = isr.iter().copied().collect();
                        let more = self.leader.isr_committed(isr, self.now);
                        self.apply(more);
                    }
                }
                Action::HighWatermark(_) => {}
            }
        }
    }

    fn produce(&mut self) {
        if self.leader.check_produce().is_err() {
            return;
        }
        let leader = self.assignment.leader_id;
        let log = self.logs.get_mut(&leader).unwrap();
        log.push(self.assignment.leader_epoch);
        let offset = log.len() as i64 - 1;
        self.next_token += 1;
        self.waiting.insert(self.next_token, offset);
        let actions = self
            .leader
            .appended(offset + 1, Some(self.next_token), self.now);
        self.apply(actions);
    }

    fn fetch(&mut self, follower: i32) {
        let leader = self.assignment.leader_id;
        if follower == leader || !self.alive.contains(&follower) {
            return;
        }
        let local = self.logs[&follower].clone();
        let leader_log = self.logs[&leader].clone();
        // The leader checks the follower's last fetched epoch (Fetch's diverging_epoch).
        if let Some(&last_epoch) = local.last() {
            match end_offset_for(&leader_log, last_epoch) {
                Some((epoch, end)) if epoch == last_epoch && end >= local.len() as i64 => {}
                Some((epoch, end)) => {
                    let cut =
                        follower_truncation_offset(epoch, end, local.len() as i64, |wanted| {
                            end_offset_for(&local, wanted)
                        });
                    self.logs
                        .get_mut(&follower)
                        .unwrap()
                        .truncate(usize::try_from(cut).unwrap());
                    return;
                }
                None => {
                    self.logs.get_mut(&follower).unwrap().clear();
                    return;
                }
            }
        }
        let offset = local.len();
        let actions = self
            .leader
            .follower_fetched(follower, offset as i64, self.now);
        self.apply(actions);
        let batch = usize::try_from(self.rng.below(3)).unwrap() + 1;
        let end = (offset + batch).min(leader_log.len());
        self.logs
            .get_mut(&follower)
            .unwrap()
            .extend_from_slice(&leader_log[offset..end]);
    }

    /// The leader dies; the controller elects the first live member of the persisted ISR.
    fn crash_leader(&mut self) {
        let old = self.assignment.leader_id;
        self.alive.remove(&old);
        self.waiting.clear();
        let Some(&next) = self
            .assignment
            .isr
            .iter()
            .find(|id| self.alive.contains(id))
        else {
            self.alive.insert(old);
            return;
        };
        let new_log = &self.logs[&next];
        for (&offset, &epoch) in &self.acked {
            assert_eq!(
                new_log.get(usize::try_from(offset).unwrap()),
                Some(&epoch),
                "acknowledged offset {offset} missing on the new leader {next}: {:?}",
                self.logs
            );
        }
        self.assignment.leader_id = next;
        self.assignment.leader_epoch += 1;
        self.assignment.isr.retain(|id| self.alive.contains(id));
        let config = ReplicationConfig {
            replica_lag_time_max_ms: LAG_MS,
            min_insync_replicas: 2,
        };
        let end = new_log.len() as i64;
        let high_watermark = self.acked.keys().next_back().map_or(0, |last| last + 1);
        self.leader = LeaderState::new(
            config,
            &self.assignment,
            LeaderStart::at(end, high_watermark.min(end)),
            self.now,
        );
        // The old leader comes back later as a follower with whatever it had.
        self.alive.insert(old);
    }

    fn step(&mut self) {
        match self.rng.below(20) {
            0..=5 => self.produce(),
            6..=15 => {
                let follower = i32::try_from(self.rng.below(3)).unwrap() + 1;
                // Some fetches are lost on the way.
                if self.rng.below(5) != 0 {
                    self.fetch(follower);
                }
            }
            16..=18 => {
                self.now += i64::try_from(self.rng.below(400)).unwrap();
                let actions = self.leader.tick(self.now);
                self.apply(actions);
            }
            _ => self.crash_leader(),
        }
    }
}

#[test]
fn no_acknowledged_record_is_lost_across_elections_in_random_schedules() {
    let mut acked = 0;
    for seed in 0..2_000u64 {
        let mut sim = Sim::new(seed);
        for _ in 0..300 {
            sim.step();
        }
        acked += sim.acked.len();
    }
    assert!(
        acked > 10_000,
        "the schedules acknowledged records ({acked})"
    );
}
