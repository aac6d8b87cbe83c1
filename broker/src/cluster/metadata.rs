//! The cluster's metadata as one document (topics, their partitions' replicas, leader, leader
//! epoch and ISR) and every rule that changes it, without I/O: replica assignment, the
//! controller's reaction to brokers coming and going, and a leader's ISR change. The document
//! lives in the coordinator under one key and every change is a compare-and-set on its
//! version, so two writers never lose each other's update (see `cluster::store`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub topics: BTreeMap<String, TopicState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub id: Uuid,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
}

/// One partition as the controller decided it. `leader` is -1 while no in-sync replica is
/// alive (unclean election is off: an out-of-sync replica never becomes leader). While a
/// reassignment runs, `replicas` holds the target replicas followed by those `removing`;
/// `adding` are target replicas that were not replicas before (see `reassign`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

/// A topic to create: its id, partition count, replication factor (-1: min(3, live
/// brokers)) and configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub id: Uuid,
    pub partitions: usize,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// A live broker as assignment sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    pub id: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    #[error("replication factor {requested} is larger than the {live} live brokers")]
    ReplicationFactorTooLarge { requested: i16, live: usize },
    #[error("replication factor {0} must be at least 1 (or -1 for the default)")]
    InvalidReplicationFactor(i16),
    /// Kafka's text, as a client gets it.
    #[error("Topic '{0}' already exists.")]
    TopicExists(String),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("topic has {current} partitions; it can only grow, not become {requested}")]
    CannotShrink { current: usize, requested: usize },
    #[error("partition {topic}-{partition} is led by {leader} in epoch {epoch} now")]
    StaleLeader {
        topic: String,
        partition: i32,
        leader: i32,
        epoch: i32,
    },
    #[error("the ISR must contain the leader and only replicas")]
    InvalidIsr,
    #[error("broker {0} is not alive and cannot join the ISR")]
    IneligibleReplica(i32),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("partition {topic}-{partition} has no reassignment in progress")]
    NoReassignmentInProgress { topic: String, partition: i32 },
}

impl ClusterMetadata {
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics
            .get(topic)
            .and_then(|state| state.partitions.get(usize::try_from(partition).ok()?))
    }

    /// Adds a topic with replicas spread over `live` brokers. `seed` varies where the
    /// round-robin starts so leaders of many topics do not pile onto the first broker.
    pub fn create_topic(
        &mut self,
        name: &str,
        spec: TopicSpec,
        live: &[LiveBroker],
        seed: usize,
    ) -> Result<&TopicState, MetadataError> {
        if self.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        let replicas = assign_replicas(live, spec.partitions, 0, spec.replication_factor, seed)?;
        let state = TopicState {
            id: spec.id,
            configs: spec.configs,
            partitions: replicas.into_iter().map(PartitionState::new).collect(),
        };
        Ok(self.topics.entry(name.to_string()).or_insert(state))
    }

    /// Grows a topic to `total` partitions, new ones with the topic's replication factor.
    pub fn add_partitions(
        &mut self,
        name: &str,
        total: usize,
        live: &[LiveBroker],
        seed: usize,
    ) -> Result<(), MetadataError> {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        let current = topic.partitions.len();
        if total <= current {
            return Err(MetadataError::CannotShrink {
                current,
                requested: total,
            });
        }
        let factor = topic
            .partitions
            .first()
            .map_or(1, |partition| partition.replicas.len());
        let factor = i16::try_from(factor).unwrap_or(i16::MAX);
        let replicas = assign_replicas(live, total - current, current, factor, seed)?;
        topic
            .partitions
            .extend(replicas.into_iter().map(PartitionState::new));
        Ok(())
    }

    /// The controller's reaction to the live set changing: in-sync replicas that died leave
    /// the ISR (the last one stays, so its data is not forgotten), partitions without a live
    /// leader get the first live in-sync replica in replica order, and every leader change
    /// bumps the leader epoch. Returns whether anything changed.
    pub fn elect_leaders(&mut self, live: &BTreeSet<i32>) -> bool {
        let mut changed = false;
        for topic in self.topics.values_mut() {
            for partition in &mut topic.partitions {
                changed |= partition.elect(live);
            }
        }
        changed
    }

    /// The partition `leader` leads in `leader_epoch`: a deposed leader's (or a stale epoch's)
    /// request is refused.
    fn led_partition(
        &mut self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
    ) -> Result<&mut PartitionState, MetadataError> {
        let state = self
            .topics
            .get_mut(topic)
            .and_then(|state| state.partitions.get_mut(usize::try_from(partition).ok()?))
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
        if state.leader != leader || state.leader_epoch != leader_epoch {
            return Err(MetadataError::StaleLeader {
                topic: topic.to_string(),
                partition,
                leader: state.leader,
                epoch: state.leader_epoch,
            });
        }
        Ok(state)
    }

    /// A leader's ISR change, accepted only from the partition's current leader in its
    /// current epoch (a deposed leader's late request is refused), and adding only live
    /// brokers (Kafka's INELIGIBLE_REPLICA).
    pub fn alter_isr(
        &mut self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        isr: &BTreeSet<i32>,
        live: &BTreeSet<i32>,
    ) -> Result<bool, MetadataError> {
        let state = self.led_partition(topic, partition, leader, leader_epoch)?;
        if !isr.contains(&leader) || isr.iter().any(|id| !state.replicas.contains(id)) {
            return Err(MetadataError::InvalidIsr);
        }
        if let Some(&gone) = isr
            .iter()
            .find(|id| !state.isr.contains(id) && !live.contains(id))
        {
            return Err(MetadataError::IneligibleReplica(gone));
        }
        let isr: Vec<i32> = isr.iter().copied().collect();
        let changed = state.isr != isr;
        state.isr = isr;
        Ok(changed)
    }

    /// A leader whose log failed (a write or fsync error poisoned it) gives up leadership:
    /// accepted only from the current leader in its current epoch; the first live in-sync
    /// replica in replica order leads in the next epoch, and the resigning broker leaves the
    /// ISR (its log must be recovered and caught up before it counts again). Without another
    /// live in-sync replica nothing changes (the leader keeps the only complete copy and
    /// refuses writes until its log is reopened). Returns whether the leadership moved.
    pub fn resign_leadership(
        &mut self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        live: &BTreeSet<i32>,
    ) -> Result<bool, MetadataError> {
        let state = self.led_partition(topic, partition, leader, leader_epoch)?;
        let Some(next) = state
            .replicas
            .iter()
            .copied()
            .find(|id| *id != leader && live.contains(id) && state.isr.contains(id))
        else {
            return Ok(false);
        };
        state.leader = next;
        state.leader_epoch += 1;
        state.isr.retain(|id| *id != leader);
        Ok(true)
    }
}

impl PartitionState {
    /// A new partition: its first replica leads, every replica is in sync (all are empty).
    fn new(replicas: Vec<i32>) -> Self {
        PartitionState {
            leader: replicas.first().copied().unwrap_or(-1),
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    pub(crate) fn elect(&mut self, live: &BTreeSet<i32>) -> bool {
        let before = self.clone();
        let live_isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| live.contains(id))
            .collect();
        if !live_isr.is_empty() {
            self.isr = live_isr;
        } else if let Some(&last) = self.isr.iter().find(|&&id| id == self.leader) {
            // Nobody in sync is alive: keep the last leader as the ISR, the only replica
            // allowed to lead again without losing acknowledged records.
            self.isr = vec![last];
        }
        if !live.contains(&self.leader) {
            let next = self
                .replicas
                .iter()
                .copied()
                .find(|id| live.contains(id) && self.isr.contains(id))
                .unwrap_or(-1);
            if next != self.leader {
                self.leader = next;
                self.leader_epoch += 1;
            }
        }
        *self != before
    }
}

/// Replica lists for `count` new partitions numbered from `first`: leaders round-robin over
/// the brokers starting at `seed`, followers on the next brokers with a shift per pass (as
/// Kafka's assignment does) so replica pairs vary. With racks, brokers are ordered by
/// alternating racks, which puts a partition's consecutive replicas on different racks.
pub fn assign_replicas(
    live: &[LiveBroker],
    count: usize,
    first: usize,
    replication_factor: i16,
    seed: usize,
) -> Result<Vec<Vec<i32>>, MetadataError> {
    let factor = match replication_factor {
        -1 => live.len().min(3),
        factor if factor >= 1 => usize::try_from(factor).unwrap_or(usize::MAX),
        factor => return Err(MetadataError::InvalidReplicationFactor(factor)),
    };
    if factor == 0 || factor > live.len() {
        return Err(MetadataError::ReplicationFactorTooLarge {
            requested: replication_factor,
            live: live.len(),
        });
    }
    let brokers = rack_alternating(live);
    let rack_of: BTreeMap<i32, Option<&str>> = live
        .iter()
        .map(|broker| (broker.id, broker.rack.as_deref()))
        .collect();
    let n = brokers.len();
    Ok((first..first + count)
        .map(|partition| {
            let leader = (seed + partition) % n;
            // Candidates sit 1..n-1 places after the leader, never on it and never twice; the
            // shift changes every full pass over the brokers so replica sets vary.
            let others = n - 1;
            let shift = (seed + partition / n) % others.max(1);
            let candidates: Vec<i32> = (0..others)
                .map(|step| brokers[(leader + 1 + (shift + step) % others) % n])
                .collect();
            let mut replicas = vec![brokers[leader]];
            // Racks not used yet first, then the rest, each in candidate order.
            for new_rack_only in [true, false] {
                for &candidate in &candidates {
                    if replicas.len() == factor || replicas.contains(&candidate) {
                        continue;
                    }
                    let rack = rack_of.get(&candidate).copied().flatten();
                    let rack_used = replicas
                        .iter()
                        .any(|id| rack_of.get(id).copied().flatten() == rack);
                    if !new_rack_only || !rack_used {
                        replicas.push(candidate);
                    }
                }
            }
            replicas
        })
        .collect())
}

/// Broker ids sorted, then interleaved rack by rack (a, b, c, a, b, c, ...).
fn rack_alternating(live: &[LiveBroker]) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for broker in live {
        by_rack
            .entry(broker.rack.as_deref())
            .or_default()
            .push(broker.id);
    }
    if by_rack.len() <= 1 {
        let mut ids: Vec<i32> = live.iter().map(|broker| broker.id).collect();
        ids.sort_unstable();
        ids.dedup();
        return ids;
    }
    let mut racks: Vec<Vec<i32>> = by_rack
        .into_values()
        .map(|mut ids| {
            ids.sort_unstable();
            ids
        })
        .collect();
    let mut ordered = Vec::new();
    let longest = racks.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..longest {
        for rack in &mut racks {
            if let Some(&id) = rack.get(round) {
                ordered.push(id);
            }
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> Vec<LiveBroker> {
        ids.iter()
            .map(|&id| LiveBroker { id, rack: None })
            .collect()
    }

    fn spec(partitions: usize, replication_factor: i16) -> TopicSpec {
        TopicSpec {
            id: Uuid::nil(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    fn live(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn assignment_spreads_leaders_and_replicas_evenly() {
        let assigned = assign_replicas(&brokers(&[1, 2, 3]), 6, 0, 2, 0).unwrap();
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for partition in &assigned {
            assert_eq!(partition.len(), 2);
            assert_ne!(partition[0], partition[1], "{assigned:?}");
            *leaders.entry(partition[0]).or_insert(0) += 1;
            for id in partition {
                *replicas.entry(*id).or_insert(0) += 1;
            }
        }
        assert_eq!(leaders.values().collect::<Vec<_>>(), [&2, &2, &2]);
        assert_eq!(replicas.values().collect::<Vec<_>>(), [&4, &4, &4]);
    }

    #[test]
    fn every_partition_gets_distinct_replicas_whatever_the_factor() {
        for n in 1..=5 {
            let ids: Vec<i32> = (1..=n).collect();
            for factor in 1..=n {
                for seed in 0..7 {
                    let factor = i16::try_from(factor).unwrap();
                    for replicas in assign_replicas(&brokers(&ids), 12, 3, factor, seed).unwrap() {
                        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
                        assert_eq!(distinct.len(), replicas.len(), "{replicas:?}");
                        assert_eq!(replicas.len(), usize::try_from(factor).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn assignment_refuses_more_replicas_than_brokers() {
        assert_eq!(
            assign_replicas(&brokers(&[1, 2]), 1, 0, 3, 0),
            Err(MetadataError::ReplicationFactorTooLarge {
                requested: 3,
                live: 2
            })
        );
        assert!(assign_replicas(&brokers(&[1, 2]), 1, 0, 0, 0).is_err());
        assert_eq!(
            assign_replicas(&brokers(&[1, 2]), 1, 0, -1, 0).unwrap()[0].len(),
            2
        );
    }

    #[test]
    fn racks_put_replicas_of_a_partition_on_different_racks() {
        let live = vec![
            LiveBroker {
                id: 1,
                rack: Some("a".into()),
            },
            LiveBroker {
                id: 2,
                rack: Some("a".into()),
            },
            LiveBroker {
                id: 3,
                rack: Some("b".into()),
            },
            LiveBroker {
                id: 4,
                rack: Some("b".into()),
            },
        ];
        let rack = |id: i32| if id <= 2 { "a" } else { "b" };
        for seed in 0..4 {
            for partition in assign_replicas(&live, 8, 0, 2, seed).unwrap() {
                assert_ne!(rack(partition[0]), rack(partition[1]), "{partition:?}");
            }
        }
    }

    #[test]
    fn losing_the_leader_elects_the_next_in_sync_replica_and_bumps_the_epoch() {
        let mut metadata = ClusterMetadata::default();
        metadata
            .create_topic("t", spec(1, 3), &brokers(&[1, 2, 3]), 0)
            .unwrap();
        let before = metadata.partition("t", 0).unwrap().clone();
        assert_eq!((before.leader, before.leader_epoch), (1, 0));
        assert!(metadata.elect_leaders(&live(&[2, 3])));
        let after = metadata.partition("t", 0).unwrap().clone();
        assert_eq!(after.leader, before.replicas[1]);
        assert_eq!(after.leader_epoch, 1);
        assert!(!after.isr.contains(&1));
        assert!(!metadata.elect_leaders(&live(&[2, 3])), "nothing new");
        // The old leader returns: it is a follower until it catches up (ISR is the leader's).
        assert!(!metadata.elect_leaders(&live(&[1, 2, 3])));
        assert_eq!(metadata.partition("t", 0).unwrap().leader, after.leader);
    }

    #[test]
    fn no_live_in_sync_replica_means_no_leader_until_one_returns() {
        let mut metadata = ClusterMetadata::default();
        metadata
            .create_topic("t", spec(1, 2), &brokers(&[1, 2]), 0)
            .unwrap();
        let leader = metadata.partition("t", 0).unwrap().leader;
        let follower = 3 - leader;
        // The follower fell out of sync, then the leader died: no clean choice.
        metadata
            .alter_isr("t", 0, leader, 0, &live(&[leader]), &live(&[1, 2]))
            .unwrap();
        metadata.elect_leaders(&live(&[follower]));
        let state = metadata.partition("t", 0).unwrap();
        assert_eq!((state.leader, state.leader_epoch), (-1, 1));
        assert_eq!(state.isr, vec![leader], "the last in-sync replica is kept");
        // The out-of-sync follower is never elected (unclean election is off)...
        assert!(!metadata.elect_leaders(&live(&[follower])));
        // ...and the last in-sync replica leads again when it returns.
        metadata.elect_leaders(&live(&[1, 2]));
        let state = metadata.partition("t", 0).unwrap();
        assert_eq!((state.leader, state.leader_epoch), (leader, 2));
    }

    #[test]
    fn isr_changes_come_only_from_the_current_leader_and_epoch() {
        let mut metadata = ClusterMetadata::default();
        metadata
            .create_topic("t", spec(1, 3), &brokers(&[1, 2, 3]), 0)
            .unwrap();
        let state = metadata.partition("t", 0).unwrap().clone();
        let shrunk = live(&[state.leader, state.replicas[1]]);
        let all = live(&[1, 2, 3]);
        assert!(
            metadata
                .alter_isr("t", 0, state.leader, 0, &shrunk, &all)
                .unwrap()
        );
        assert!(matches!(
            metadata.alter_isr("t", 0, state.leader, 7, &shrunk, &all),
            Err(MetadataError::StaleLeader { .. })
        ));
        assert!(matches!(
            metadata.alter_isr("t", 0, state.replicas[1], 0, &shrunk, &all),
            Err(MetadataError::StaleLeader { .. })
        ));
        assert_eq!(
            metadata.alter_isr("t", 0, state.leader, 0, &live(&[state.replicas[1]]), &all),
            Err(MetadataError::InvalidIsr)
        );
        // Growing back needs the broker alive.
        let grown = live(&[1, 2, 3]);
        assert_eq!(
            metadata.alter_isr("t", 0, state.leader, 0, &grown, &shrunk),
            Err(MetadataError::IneligibleReplica(state.replicas[2]))
        );
        assert!(
            metadata
                .alter_isr("t", 0, state.leader, 0, &grown, &all)
                .unwrap()
        );
    }

    #[test]
    fn a_failed_leader_resigns_to_the_next_live_in_sync_replica() {
        let mut metadata = ClusterMetadata::default();
        metadata
            .create_topic("t", spec(1, 3), &brokers(&[1, 2, 3]), 0)
            .unwrap();
        let state = metadata.partition("t", 0).unwrap().clone();
        let (leader, second, third) = (state.replicas[0], state.replicas[1], state.replicas[2]);
        // Only from the current leader and epoch.
        assert!(matches!(
            metadata.resign_leadership("t", 0, second, 0, &live(&[1, 2, 3])),
            Err(MetadataError::StaleLeader { .. })
        ));
        assert!(matches!(
            metadata.resign_leadership("t", 0, leader, 3, &live(&[1, 2, 3])),
            Err(MetadataError::StaleLeader { .. })
        ));
        // The second replica is dead: the third takes over, the leader leaves the ISR.
        assert!(
            metadata
                .resign_leadership("t", 0, leader, 0, &live(&[leader, third]))
                .unwrap()
        );
        let after = metadata.partition("t", 0).unwrap();
        assert_eq!((after.leader, after.leader_epoch), (third, 1));
        assert!(!after.isr.contains(&leader), "{after:?}");
        // Alone in the ISR: the leader keeps the partition (the only complete copy).
        let mut alone = metadata.clone();
        alone
            .alter_isr("t", 0, third, 1, &live(&[third]), &live(&[1, 2, 3]))
            .unwrap();
        assert!(
            !alone
                .resign_leadership("t", 0, third, 1, &live(&[1, 2, 3]))
                .unwrap()
        );
        assert_eq!(alone.partition("t", 0).unwrap().leader, third);
    }

    #[test]
    fn partitions_grow_with_the_topic_replication_factor() {
        let mut metadata = ClusterMetadata::default();
        let live = brokers(&[1, 2, 3]);
        metadata.create_topic("t", spec(2, 2), &live, 1).unwrap();
        metadata.add_partitions("t", 5, &live, 1).unwrap();
        let topic = &metadata.topics["t"];
        assert_eq!(topic.partitions.len(), 5);
        assert!(topic.partitions.iter().all(|p| p.replicas.len() == 2));
        assert!(matches!(
            metadata.add_partitions("t", 5, &live, 1),
            Err(MetadataError::CannotShrink { .. })
        ));
        let json = serde_json::to_vec(&metadata).unwrap();
        assert_eq!(
            serde_json::from_slice::<ClusterMetadata>(&json).unwrap(),
            metadata
        );
    }
}
