//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+); -1 where nothing
//! was committed. With `require_stable` (v7+, KIP-447) a partition whose offset a
//! transaction committed without its marker having settled yet is answered
//! UNSTABLE_OFFSET_COMMIT, so the client retries rather than resume from an older offset.

use std::collections::HashMap;

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use lmq_wire::protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};

use super::{check_coordinator, str_bytes, topic_name};
use crate::broker::Broker;
use crate::group::offsets::CommittedOffset;
use crate::security::acl::AclOperation;

const UNSTABLE_OFFSET_COMMIT: i16 = ResponseError::UnstableOffsetCommit.code();

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

pub fn handle(
    broker: &Broker,
    context: &super::RequestContext,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in request.groups {
            let all_topics = group.topics.is_none();
            let topics = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|topic| (topic.name.0.to_string(), topic.partition_indexes))
                    .collect()
            });
            let mut answered = OffsetFetchResponseGroup::default();
            answered.group_id = GroupId(group.group_id.0.clone());
            if let Err(code) = context
                .check_group(AclOperation::Describe, &group.group_id.0)
                .and_then(|()| check_coordinator(broker, &group.group_id.0))
            {
                answered.error_code = code;
                response.groups.push(answered);
                continue;
            }
            let group_id = group.group_id.0.to_string();
            for (topic, partitions) in by_topic(fetch(broker, &group_id, topics)) {
                let refused = context.check_topic(AclOperation::Describe, &topic).err();
                if refused.is_some() && all_topics {
                    continue;
                }
                let mut answered_topic = OffsetFetchResponseTopics::default();
                answered_topic.partitions = partitions
                    .into_iter()
                    .map(|(partition, committed)| {
                        let error = partition_error(
                            broker,
                            &group_id,
                            &topic,
                            partition,
                            refused,
                            request.require_stable,
                        );
                        let mut result = OffsetFetchResponsePartitions::default();
                        result.partition_index = partition;
                        result.error_code = error.unwrap_or(0);
                        fill(
                            committed.filter(|_| error.is_none()),
                            &mut result.committed_offset,
                            &mut result.committed_leader_epoch,
                            &mut result.metadata,
                        );
                        result
                    })
                    .collect();
                answered_topic.name = topic_name(topic);
                answered.topics.push(answered_topic);
            }
            response.groups.push(answered);
        }
        return response;
    }
    if let Err(code) = context
        .check_group(AclOperation::Describe, &request.group_id.0)
        .and_then(|()| check_coordinator(broker, &request.group_id.0))
    {
        if version >= 2 {
            response.error_code = code;
        }
        return response;
    }
    let all_topics = request.topics.is_none();
    let topics = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.name.0.to_string(), topic.partition_indexes))
            .collect()
    });
    let group_id = request.group_id.0.to_string();
    for (topic, partitions) in by_topic(fetch(broker, &group_id, topics)) {
        // As Kafka: topics it may not DESCRIBE are left out of "all", refused when named.
        let refused = context.check_topic(AclOperation::Describe, &topic).err();
        if refused.is_some() && all_topics {
            continue;
        }
        let mut answered = OffsetFetchResponseTopic::default();
        answered.partitions = partitions
            .into_iter()
            .map(|(partition, committed)| {
                let error = partition_error(
                    broker,
                    &group_id,
                    &topic,
                    partition,
                    refused,
                    version >= 7 && request.require_stable,
                );
                let mut result = OffsetFetchResponsePartition::default();
                result.partition_index = partition;
                result.error_code = error.unwrap_or(0);
                let mut epoch = -1;
                fill(
                    committed.filter(|_| error.is_none()),
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
        answered.name = topic_name(topic);
        response.topics.push(answered);
    }
    response
}

/// A partition's error: the topic's refusal, else UNSTABLE_OFFSET_COMMIT when the client
/// requires stable offsets and a transaction holds one not yet settled (its offset is then
/// not shown, as Kafka).
fn partition_error(
    broker: &Broker,
    group_id: &str,
    topic: &str,
    partition: i32,
    refused: Option<i16>,
    require_stable: bool,
) -> Option<i16> {
    refused.or_else(|| {
        (require_stable
            && broker
                .groups
                .has_pending_transaction(group_id, topic, partition))
        .then_some(UNSTABLE_OFFSET_COMMIT)
    })
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
