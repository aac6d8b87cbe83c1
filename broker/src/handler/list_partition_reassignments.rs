//! ListPartitionReassignments (v0): the replica moves in progress, all or of the partitions
//! asked for (a single node has none).

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
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics.iter().any(|asked| {
            asked.name.0.as_str() == topic && asked.partition_indexes.contains(&partition)
        }),
    };
    let ids = |ids: &[i32]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    for (topic, partition, state) in view.metadata.reassignments() {
        if !wanted(topic, partition) {
            continue;
        }
        let mut ongoing = OngoingPartitionReassignment::default();
        ongoing.partition_index = partition;
        ongoing.replicas = ids(&state.replicas);
        ongoing.adding_replicas = ids(&state.adding);
        ongoing.removing_replicas = ids(&state.removing);
        match response
            .topics
            .iter_mut()
            .find(|known| known.name.0.as_str() == topic)
        {
            Some(known) => known.partitions.push(ongoing),
            None => {
                let mut answered = OngoingTopicReassignment::default();
                answered.name = topic_name(topic);
                answered.partitions.push(ongoing);
                response.topics.push(answered);
            }
        }
    }
    response
}
