//! Brings this broker's local topics and partition roles in line with the cluster metadata:
//! creates the local replica of a new topic (or partition), removes a deleted one, applies
//! changed configs, and gives every partition the role (leader, follower, none) and epoch the
//! metadata says.

use std::sync::Arc;

use super::{ClusterNode, assignment_of};
use crate::broker::Broker;
use crate::group::offsets::OFFSETS_TOPIC;
use crate::topics::TRANSACTION_STATE_TOPIC;
use crate::topics::Topic;

pub fn apply(broker: &Broker, node: &ClusterNode) {
    let view = node.view();
    let now_ms = broker.now_ms();
    for (name, state) in &view.metadata.topics {
        let Some(local) = local_topic(broker, name, state) else {
            continue;
        };
        let config = ClusterNode::replication_config(broker, &state.configs);
        let offsets = name == OFFSETS_TOPIC;
        let transaction_state = name == TRANSACTION_STATE_TOPIC;
        if offsets {
            broker.groups.adopt(local.partitions.clone());
        }
        if transaction_state {
            broker.transactions.adopt(local.partitions.clone());
        }
        // Taking a role may persist a leader epoch (fsyncs): on threads, so the 50 offsets
        // partitions' waits overlap.
        let pairs: Vec<_> = local.partitions.iter().zip(&state.partitions).collect();
        let roles = crate::topics::on_threads(&pairs, |(partition, wanted)| {
            partition.become_role(node.node_id, &assignment_of(wanted), config, now_ms)
        });
        if transaction_state {
            // Ids of partitions led elsewhere now answer NOT_COORDINATOR.
            broker.transactions.drop_lost_partitions();
        }
        for ((partition, _), role) in pairs.iter().zip(roles) {
            match role {
                // The new coordinator of this partition's groups loads them from its log.
                Ok(true) if offsets => {
                    let index = usize::try_from(partition.index).unwrap_or(0);
                    if let Err(error) = broker.groups.reload(index, now_ms) {
                        tracing::error!(partition = partition.index, %error, "cannot load the groups of an offsets partition");
                    }
                }
                // The new coordinator of this partition's transactional ids loads them.
                Ok(true) if transaction_state => {
                    let index = usize::try_from(partition.index).unwrap_or(0);
                    if let Err(error) = broker.transactions.reload(index, now_ms) {
                        tracing::error!(partition = partition.index, %error, "cannot load a transaction state partition");
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(topic = name, partition = partition.index, %error, "cannot take the partition's role");
                }
            }
        }
    }
    for local in broker.topics.list() {
        if local.replica && !view.metadata.topics.contains_key(&local.name) {
            if let Err(error) = broker.topics.delete(&local.name) {
                tracing::error!(topic = local.name, %error, "cannot delete the local replica");
            }
        }
    }
}

/// The local replica of a cluster topic, created, recreated (same name, new id) or grown as
/// needed, with the metadata's configs.
fn local_topic(
    broker: &Broker,
    name: &str,
    state: &super::metadata::TopicState,
) -> Option<Arc<Topic>> {
    let now_ms = broker.now_ms();
    let partitions = i32::try_from(state.partitions.len()).unwrap_or(i32::MAX);
    let outcome = (|| {
        let mut local = broker.topics.get(name);
        if local.as_ref().is_some_and(|local| local.id != state.id) {
            tracing::warn!(topic = name, "replacing a local topic of another id");
            broker.topics.delete(name)?;
            local = None;
        }
        let mut local = match local {
            Some(local) => local,
            None => {
                broker
                    .topics
                    .create_replica(name, state.id, partitions, &state.configs, now_ms)?
            }
        };
        if (local.partitions.len()) < state.partitions.len() {
            local = broker.topics.add_partitions(name, partitions, now_ms)?;
        }
        if local.configs != state.configs {
            local = broker.topics.set_configs(name, state.configs.clone())?;
        }
        Ok::<_, crate::topics::TopicError>(local)
    })();
    match outcome {
        Ok(local) => Some(local),
        Err(error) => {
            tracing::error!(topic = name, %error, "cannot keep the local replica in line");
            None
        }
    }
}
