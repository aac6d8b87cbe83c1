//! The error codes a response carries, for the request error metrics.

use lmq_wire::protocol::messages::ResponseKind;

/// Every non-top-level and top-level error code in `response` (zeros included; callers
/// skip them).
pub fn error_codes(response: &ResponseKind) -> Vec<i16> {
    match response {
        ResponseKind::Produce(response) => response
            .responses
            .iter()
            .flat_map(|topic| {
                topic
                    .partition_responses
                    .iter()
                    .map(|partition| partition.error_code)
            })
            .collect(),
        ResponseKind::Fetch(response) => std::iter::once(response.error_code)
            .chain(response.responses.iter().flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| partition.error_code)
            }))
            .collect(),
        ResponseKind::ListOffsets(response) => response
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| partition.error_code)
            })
            .collect(),
        ResponseKind::Metadata(response) => response
            .topics
            .iter()
            .map(|topic| topic.error_code)
            .collect(),
        ResponseKind::CreateTopics(response) => response
            .topics
            .iter()
            .map(|topic| topic.error_code)
            .collect(),
        ResponseKind::DeleteTopics(response) => response
            .responses
            .iter()
            .map(|topic| topic.error_code)
            .collect(),
        ResponseKind::CreatePartitions(response) => response
            .results
            .iter()
            .map(|topic| topic.error_code)
            .collect(),
        ResponseKind::DeleteRecords(response) => response
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| partition.error_code)
            })
            .collect(),
        ResponseKind::DescribeConfigs(response) => response
            .results
            .iter()
            .map(|result| result.error_code)
            .collect(),
        ResponseKind::AlterConfigs(response) => response
            .responses
            .iter()
            .map(|result| result.error_code)
            .collect(),
        ResponseKind::IncrementalAlterConfigs(response) => response
            .responses
            .iter()
            .map(|result| result.error_code)
            .collect(),
        ResponseKind::InitProducerId(response) => vec![response.error_code],
        ResponseKind::ApiVersions(response) => vec![response.error_code],
        ResponseKind::FindCoordinator(response) => std::iter::once(response.error_code)
            .chain(
                response
                    .coordinators
                    .iter()
                    .map(|coordinator| coordinator.error_code),
            )
            .collect(),
        ResponseKind::JoinGroup(response) => vec![response.error_code],
        ResponseKind::SyncGroup(response) => vec![response.error_code],
        ResponseKind::Heartbeat(response) => vec![response.error_code],
        ResponseKind::LeaveGroup(response) => std::iter::once(response.error_code)
            .chain(response.members.iter().map(|member| member.error_code))
            .collect(),
        ResponseKind::OffsetCommit(response) => response
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| partition.error_code)
            })
            .collect(),
        ResponseKind::OffsetFetch(response) => std::iter::once(response.error_code)
            .chain(response.groups.iter().map(|group| group.error_code))
            .collect(),
        ResponseKind::DescribeGroups(response) => response
            .groups
            .iter()
            .map(|group| group.error_code)
            .collect(),
        ResponseKind::DeleteGroups(response) => response
            .results
            .iter()
            .map(|group| group.error_code)
            .collect(),
        ResponseKind::ListGroups(response) => vec![response.error_code],
        ResponseKind::DescribeCluster(response) => vec![response.error_code],
        ResponseKind::SaslHandshake(response) => vec![response.error_code],
        ResponseKind::SaslAuthenticate(response) => vec![response.error_code],
        ResponseKind::OffsetDelete(response) => std::iter::once(response.error_code)
            .chain(response.topics.iter().flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| partition.error_code)
            }))
            .collect(),
        _ => Vec::new(),
    }
}
