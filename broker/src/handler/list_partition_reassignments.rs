//! ListPartitionReassignments (v0): the replica moves in progress, all or of the partitions
//! asked for (a single node has none).

use std::collections::{HashMap, HashSet};

use lmq_wire::protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use lmq_wire::protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::topic_name;
use crate::cluster::ClusterNode;

pub fn handle(
    cluster: &ClusterNode,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let mut response = ListPartitionReassignmentsResponse::default();
    // Kafka sends no message with no error.
    response.error_message = None;
    let view = cluster.view();
    // A set of what was asked, not a search of the request per reassignment.
    let asked: Option<HashSet<(&str, i32)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|asked| {
                asked
                    .partition_indexes
                    .iter()
                    .map(|&partition| (asked.name.0.as_str(), partition))
            })
            .collect()
    });
    let wanted = |topic: &str, partition: i32| {
        asked
            .as_ref()
            .is_none_or(|asked| asked.contains(&(topic, partition)))
    };
    let ids = |ids: &[i32]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    // Where each topic's entry is in the answer.
    let mut places: HashMap<&str, usize> = HashMap::new();
    for (topic, partition, state) in view.metadata.reassignments() {
        if !wanted(topic, partition) {
            continue;
        }
        let mut ongoing = OngoingPartitionReassignment::default();
        ongoing.partition_index = partition;
        ongoing.replicas = ids(&state.replicas);
        ongoing.adding_replicas = ids(&state.adding);
        ongoing.removing_replicas = ids(&state.removing);
        match places.get(topic) {
            Some(&place) => {
                if let Some(known) = response.topics.get_mut(place) {
                    known.partitions.push(ongoing);
                }
            }
            None => {
                places.insert(topic, response.topics.len());
                let mut answered = OngoingTopicReassignment::default();
                answered.name = topic_name(topic);
                answered.partitions.push(ongoing);
                response.topics.push(answered);
            }
        }
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::ListPartitionReassignmentsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
