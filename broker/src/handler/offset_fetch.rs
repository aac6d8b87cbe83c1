//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+); -1 where nothing
//! was committed.

use std::collections::HashMap;

use lmq_wire::protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use lmq_wire::protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};

use super::{check_coordinator, str_bytes, topic_name};
use crate::broker::Broker;
use crate::group::offsets::CommittedOffset;

type Fetched = Vec<(String, i32, Option<CommittedOffset>)>;
type PartitionOffsets = Vec<(i32, Option<CommittedOffset>)>;

fn fetch(broker: &Broker, group_id: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    broker.groups.fetch_offsets(group_id, topics.as_deref())
}

/// Groups the flat answer by topic, in the order topics first appear (a map from name to
/// place, not a search per entry: a request may name many topics).
fn by_topic(fetched: Fetched) -> Vec<(String, PartitionOffsets)> {
    let mut topics: Vec<(String, PartitionOffsets)> = Vec::new();
    let mut places: HashMap<String, usize> = HashMap::new();
    for (topic, partition, committed) in fetched {
        match places.get(&topic) {
            Some(&place) => {
                if let Some((_, partitions)) = topics.get_mut(place) {
                    partitions.push((partition, committed));
                }
            }
            None => {
                places.insert(topic.clone(), topics.len());
                topics.push((topic, vec![(partition, committed)]));
            }
        }
    }
    topics
}

pub fn handle(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in request.groups {
            let topics = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|topic| (topic.name.0.to_string(), topic.partition_indexes))
                    .collect()
            });
            let mut answered = OffsetFetchResponseGroup::default();
            answered.group_id = GroupId(group.group_id.0.clone());
            if let Err(code) = check_coordinator(broker, &group.group_id.0) {
                answered.error_code = code;
                response.groups.push(answered);
                continue;
            }
            for (topic, partitions) in by_topic(fetch(broker, &group.group_id.0, topics)) {
                let mut answered_topic = OffsetFetchResponseTopics::default();
                answered_topic.name = topic_name(topic);
                answered_topic.partitions = partitions
                    .into_iter()
                    .map(|(partition, committed)| {
                        let mut result = OffsetFetchResponsePartitions::default();
                        result.partition_index = partition;
                        fill(
                            committed,
                            &mut result.committed_offset,
                            &mut result.committed_leader_epoch,
                            &mut result.metadata,
                        );
                        result
                    })
                    .collect();
                answered.topics.push(answered_topic);
            }
            response.groups.push(answered);
        }
        return response;
    }
    if let Err(code) = check_coordinator(broker, &request.group_id.0) {
        if version >= 2 {
            response.error_code = code;
        }
        return response;
    }
    let topics = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.name.0.to_string(), topic.partition_indexes))
            .collect()
    });
    for (topic, partitions) in by_topic(fetch(broker, &request.group_id.0, topics)) {
        let mut answered = OffsetFetchResponseTopic::default();
        answered.name = topic_name(topic);
        answered.partitions = partitions
            .into_iter()
            .map(|(partition, committed)| {
                let mut result = OffsetFetchResponsePartition::default();
                result.partition_index = partition;
                let mut epoch = -1;
                fill(
                    committed,
                    &mut result.committed_offset,
                    &mut epoch,
                    &mut result.metadata,
                );
                if version >= 5 {
                    result.committed_leader_epoch = epoch;
                }
                result
            })
            .collect();
        response.topics.push(answered);
    }
    response
}

fn fill(
    committed: Option<CommittedOffset>,
    offset: &mut i64,
    leader_epoch: &mut i32,
    metadata: &mut Option<lmq_wire::protocol::protocol::StrBytes>,
) {
    match committed {
        Some(committed) => {
            *offset = committed.offset;
            *leader_epoch = committed.leader_epoch;
            *metadata = Some(str_bytes(committed.metadata));
        }
        None => {
            *offset = -1;
            *leader_epoch = -1;
            *metadata = Some(str_bytes(""));
        }
    }
}

impl super::ErrorCodes for lmq_wire::protocol::messages::OffsetFetchResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
        codes.extend(self.groups.iter().map(|item| item.error_code));
    }
}
