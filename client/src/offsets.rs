//! Committing offsets and reading assignments: shared by the group consumer and the admin.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes};
use lmq_wire::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use lmq_wire::protocol::messages::{
    ConsumerProtocolAssignment, GroupId, OffsetCommitRequest, TopicName,
};
use lmq_wire::protocol::protocol::{Decodable, StrBytes};

use crate::connection::Connection;
use crate::error::Result;

/// Who commits: a member of a generation, or nobody (generation -1: a simple commit to a
/// group without active members).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committer<'a> {
    pub group: &'a str,
    pub generation_id: i32,
    pub member_id: &'a str,
}

/// Commits `offsets` (next offset to read, by topic and partition) and returns each
/// partition's error code as the coordinator answered it.
pub(crate) async fn commit(
    coordinator: &Connection,
    committer: Committer<'_>,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<Vec<(String, i32, i16)>> {
    let text = |value: &str| StrBytes::from_string(value.to_string());
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((topic, partition), offset) in offsets {
        by_topic
            .entry(topic)
            .or_default()
            .push((*partition, *offset));
    }
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(text(committer.group));
    request.generation_id_or_member_epoch = committer.generation_id;
    request.member_id = text(committer.member_id);
    request.group_instance_id = None;
    request.topics = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut committed = OffsetCommitRequestTopic::default();
            committed.name = TopicName(text(topic));
            committed.partitions = partitions
                .into_iter()
                .map(|(partition, offset)| {
                    let mut entry = OffsetCommitRequestPartition::default();
                    entry.partition_index = partition;
                    entry.committed_offset = offset;
                    entry.committed_metadata = Some(text(""));
                    entry
                })
                .collect();
            committed
        })
        .collect();
    let response = coordinator.call(request).await?;
    Ok(response
        .topics
        .into_iter()
        .flat_map(|topic| {
            let name = topic.name.0.to_string();
            topic.partitions.into_iter().map(move |partition| {
                (
                    name.clone(),
                    partition.partition_index,
                    partition.error_code,
                )
            })
        })
        .collect())
}

/// The consumer protocol's assignment (with its version prefix): topics and partitions.
pub(crate) fn decode_assignment(mut bytes: Bytes) -> Vec<(String, Vec<i32>)> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16().clamp(0, 3);
    ConsumerProtocolAssignment::decode(&mut bytes, version)
        .map(|assignment| {
            assignment
                .assigned_partitions
                .into_iter()
                .map(|partitions| (partitions.topic.0.to_string(), partitions.partitions))
                .collect()
        })
        .unwrap_or_default()
}
