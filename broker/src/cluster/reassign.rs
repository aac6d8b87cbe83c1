//! Moving a partition's replicas (Kafka's AlterPartitionReassignments), without I/O. A
//! reassignment first adds the target replicas to the current ones (they replicate as
//! followers), and the controller completes it once every target replica is in the ISR:
//! the replicas become the target, removed ones leave the ISR, and a removed leader hands
//! over to an in-sync target replica (epoch bumped). Until then it can be cancelled.

use std::collections::BTreeSet;

use super::metadata::{ClusterMetadata, MetadataError, PartitionState};

/// Whether a reassignment may change a partition's replica count (KIP-860's
/// `allow_replication_factor_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaCount {
    MustStay,
    MayChange,
}

impl ClusterMetadata {
    fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionState, MetadataError> {
        self.topics
            .get_mut(topic)
            .and_then(|state| state.partitions.get_mut(usize::try_from(partition).ok()?))
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))
    }

    /// Starts moving a partition to `target` replicas (`None` cancels a running move).
    /// Target brokers must be alive; with [`ReplicaCount::MustStay`] the replica count must
    /// stay the same.
    pub fn reassign(
        &mut self,
        topic: &str,
        partition: i32,
        target: Option<&[i32]>,
        replica_count: ReplicaCount,
        live: &BTreeSet<i32>,
    ) -> Result<bool, MetadataError> {
        let state = self.partition_mut(topic, partition)?;
        let original: Vec<i32> = state
            .replicas
            .iter()
            .copied()
            .filter(|id| !state.adding.contains(id))
            .collect();
        let Some(target) = target else {
            if state.adding.is_empty() && state.removing.is_empty() {
                return Err(MetadataError::NoReassignmentInProgress {
                    topic: topic.to_string(),
                    partition,
                });
            }
            return Ok(state.move_to(original, live));
        };
        let invalid = |reason: String| Err(MetadataError::InvalidReplicaAssignment(reason));
        let distinct: BTreeSet<i32> = target.iter().copied().collect();
        if target.is_empty() || distinct.len() != target.len() {
            return invalid(format!("{target:?} must name distinct brokers"));
        }
        if let Some(gone) = target.iter().find(|id| !live.contains(id)) {
            return invalid(format!("broker {gone} is not alive"));
        }
        if replica_count == ReplicaCount::MustStay && target.len() != original.len() {
            return invalid(format!(
                "{} replicas instead of {} (the request does not allow a change)",
                target.len(),
                original.len()
            ));
        }
        if state.replicas == target && state.adding.is_empty() && state.removing.is_empty() {
            return Ok(false);
        }
        state.adding = target
            .iter()
            .copied()
            .filter(|id| !original.contains(id))
            .collect();
        state.removing = original
            .iter()
            .copied()
            .filter(|id| !target.contains(id))
            .collect();
        state.replicas = target.iter().chain(&state.removing).copied().collect();
        Ok(true)
    }

    /// Completes every reassignment whose target replicas are all in the ISR. Returns
    /// whether anything changed.
    pub fn complete_reassignments(&mut self, live: &BTreeSet<i32>) -> bool {
        let mut changed = false;
        for topic in self.topics.values_mut() {
            for state in &mut topic.partitions {
                if state.adding.is_empty() && state.removing.is_empty() {
                    continue;
                }
                let target: Vec<i32> = state
                    .replicas
                    .iter()
                    .copied()
                    .filter(|id| !state.removing.contains(id))
                    .collect();
                if target.iter().all(|id| state.isr.contains(id)) {
                    changed |= state.move_to(target, live);
                }
            }
        }
        changed
    }

    /// Partitions with a reassignment in progress: (topic, partition, state).
    pub fn reassignments(&self) -> impl Iterator<Item = (&str, i32, &PartitionState)> {
        self.topics.iter().flat_map(|(name, topic)| {
            topic
                .partitions
                .iter()
                .zip(0..)
                .filter(|(state, _)| !state.adding.is_empty() || !state.removing.is_empty())
                .map(move |(state, index)| (name.as_str(), index, state))
        })
    }
}

impl PartitionState {
    /// Makes `replicas` the replica set: the ISR keeps only them, and a leader outside them
    /// hands over to the first in-sync live one (epoch bumped).
    fn move_to(&mut self, replicas: Vec<i32>, live: &BTreeSet<i32>) -> bool {
        let before = self.clone();
        self.isr.retain(|id| replicas.contains(id));
        self.replicas = replicas;
        self.adding.clear();
        self.removing.clear();
        if !self.replicas.contains(&self.leader) {
            self.leader = -1;
            // Elects (bumping the epoch) when an in-sync target replica is alive.
            self.elect(live);
            if self.leader == -1 {
                self.leader_epoch += 1;
            }
        }
        *self != before
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::cluster::metadata::{LiveBroker, TopicSpec};

    fn cluster(ids: &[i32], factor: i16) -> (ClusterMetadata, BTreeSet<i32>) {
        let live: Vec<LiveBroker> = ids
            .iter()
            .map(|&id| LiveBroker { id, rack: None })
            .collect();
        let mut metadata = ClusterMetadata::default();
        let spec = TopicSpec {
            id: Uuid::nil(),
            partitions: 1,
            replication_factor: factor,
            configs: BTreeMap::new(),
        };
        metadata.create_topic("t", spec, &live[..3], 0).unwrap();
        (metadata, ids.iter().copied().collect())
    }

    #[test]
    fn a_move_adds_first_and_completes_once_the_new_replica_is_in_sync() {
        let (mut metadata, live) = cluster(&[1, 2, 3, 4], 2);
        assert_eq!(metadata.partition("t", 0).unwrap().replicas, vec![1, 2]);
        assert!(
            metadata
                .reassign("t", 0, Some(&[4, 2]), ReplicaCount::MustStay, &live)
                .unwrap()
        );
        let state = metadata.partition("t", 0).unwrap().clone();
        assert_eq!(state.replicas, vec![4, 2, 1]);
        assert_eq!(
            (state.adding.clone(), state.removing.clone()),
            (vec![4], vec![1])
        );
        assert_eq!(metadata.reassignments().count(), 1);
        assert!(
            !metadata.complete_reassignments(&live),
            "4 is not in sync yet"
        );
        metadata
            .alter_isr("t", 0, 1, 0, &BTreeSet::from([1, 2, 4]), &live)
            .unwrap();
        assert!(metadata.complete_reassignments(&live));
        let state = metadata.partition("t", 0).unwrap();
        assert_eq!(state.replicas, vec![4, 2]);
        assert_eq!(state.isr, vec![2, 4]);
        assert_eq!(
            (state.leader, state.leader_epoch),
            (4, 1),
            "the removed leader handed over"
        );
        assert_eq!(metadata.reassignments().count(), 0);
    }

    #[test]
    fn a_running_move_can_be_cancelled_and_bad_targets_are_refused() {
        let (mut metadata, live) = cluster(&[1, 2, 3, 4], 2);
        let error = |result| matches!(result, Err(MetadataError::InvalidReplicaAssignment(_)));
        assert!(error(metadata.reassign(
            "t",
            0,
            Some(&[4, 4]),
            ReplicaCount::MayChange,
            &live
        )));
        assert!(error(metadata.reassign(
            "t",
            0,
            Some(&[9, 2]),
            ReplicaCount::MayChange,
            &live
        )));
        assert!(error(metadata.reassign(
            "t",
            0,
            Some(&[1, 2, 3]),
            ReplicaCount::MustStay,
            &live
        )));
        assert!(matches!(
            metadata.reassign("t", 0, None, ReplicaCount::MayChange, &live),
            Err(MetadataError::NoReassignmentInProgress { .. })
        ));
        assert!(
            metadata
                .reassign("t", 0, Some(&[1, 2, 3]), ReplicaCount::MayChange, &live)
                .unwrap()
        );
        assert!(
            metadata
                .reassign("t", 0, None, ReplicaCount::MayChange, &live)
                .unwrap()
        );
        let state = metadata.partition("t", 0).unwrap();
        assert_eq!((state.replicas.clone(), state.leader), (vec![1, 2], 1));
        assert!(state.adding.is_empty());
    }
}
