//! OffsetForLeaderEpoch (v2-4): where a leader epoch ends in the leader's log, the largest
//! epoch at or below the one asked for and its end offset (-1/-1 when the log has none).
//! Consumers use it to detect a log truncated under them after a leader change (KIP-320);
//! LMQ's own followers get the same answer inside Fetch (`diverging_epoch`).

use lmq_wire::protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use lmq_wire::protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{NONE, TopicLookup, storage_error_code};
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for asked in request.topics {
        let topic = TopicLookup::new(broker, &asked.topic.0);
        let mut answered = OffsetForLeaderTopicResult::default();
        answered.topic = asked.topic.clone();
        for partition in asked.partitions {
            let mut result = EpochEndOffset::default();
            result.partition = partition.partition;
            result.leader_epoch = -1;
            result.end_offset = -1;
            result.error_code =
                match topic.leader(partition.partition, partition.current_leader_epoch) {
                    Err(code) => code,
                    Ok(local) => match local.end_offset_for_epoch(partition.leader_epoch) {
                        Ok(Some((epoch, end_offset))) => {
                            result.leader_epoch = epoch;
                            result.end_offset = end_offset;
                            NONE
                        }
                        Ok(None) => NONE,
                        Err(error) => storage_error_code(&error),
                    },
                };
            answered.partitions.push(result);
        }
        response.topics.push(answered);
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::OffsetForLeaderEpochResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(
            self.topics
                .iter()
                .flat_map(|item| item.partitions.iter().map(|inner| inner.error_code)),
        );
    }
}
