//! OffsetForLeaderEpoch (v2-4): where a leader epoch ends in the leader's log, the largest
//! epoch at or below the one asked for and its end offset (-1/-1 when the log has none).
//! Consumers use it to detect a log truncated under them after a leader change (KIP-320);
//! LMQ's own followers get the same answer inside Fetch (`diverging_epoch`).

use lmq_wire::protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use lmq_wire::protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{NONE, UNKNOWN_TOPIC_OR_PARTITION, replica_error_code, storage_error_code};
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for asked in request.topics {
        let topic = broker.topics.get(&asked.topic.0);
        let mut answered = OffsetForLeaderTopicResult::default();
        answered.topic = asked.topic.clone();
        for partition in asked.partitions {
            let mut result = EpochEndOffset::default();
            result.partition = partition.partition;
            result.leader_epoch = -1;
            result.end_offset = -1;
            let local = topic.as_ref().and_then(|topic| {
                usize::try_from(partition.partition)
                    .ok()
                    .and_then(|index| topic.partitions.get(index))
            });
            result.error_code = match local {
                None => UNKNOWN_TOPIC_OR_PARTITION,
                Some(local) => match local.check_leader(partition.current_leader_epoch) {
                    Err(error) => replica_error_code(&error),
                    Ok(()) => match local.end_offset_for_epoch(partition.leader_epoch) {
                        Ok(Some((epoch, end_offset))) => {
                            result.leader_epoch = epoch;
                            result.end_offset = end_offset;
                            NONE
                        }
                        Ok(None) => NONE,
                        Err(error) => storage_error_code(&error),
                    },
                },
            };
            answered.partitions.push(result);
        }
        response.topics.push(answered);
    }
    response
}
