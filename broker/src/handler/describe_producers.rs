//! DescribeProducers (v0): the producer state of partitions this broker leads, as Kafka's
//! `handleDescribeProducersRequest` (what `kafka-transactions.sh describe-producers` and
//! `find-hanging` read): per producer its id, epoch, last sequence, last timestamp, the
//! coordinator epoch of its last marker and the first offset of its ongoing transaction
//! (-1 when none). READ on the topic (else TOPIC_AUTHORIZATION_FAILED); a partition this
//! broker does not lead is answered NOT_LEADER_OR_FOLLOWER.

use lmq_wire::protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use lmq_wire::protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};

use super::{NONE, RequestContext, TopicLookup, storage_error_code};
use crate::broker::Broker;
use crate::security::acl::AclOperation;

pub fn handle(
    broker: &Broker,
    context: &RequestContext,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    for topic in request.topics {
        let allowed = context.check_topic(AclOperation::Read, &topic.name.0);
        let lookup = TopicLookup::new(broker, &topic.name.0);
        let mut topic_response = TopicResponse::default();
        topic_response.name = topic.name.clone();
        for index in topic.partition_indexes {
            let mut answer = PartitionResponse::default();
            answer.partition_index = index;
            let producers = allowed
                .and_then(|()| lookup.leader(index, -1))
                .and_then(|partition| {
                    partition
                        .with_log(|log| {
                            Ok(log
                                .producers()
                                .entries()
                                .map(|(&producer_id, entry)| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(producer_id))
                                        .with_producer_epoch(i32::from(entry.epoch))
                                        .with_last_sequence(entry.last_sequence())
                                        .with_last_timestamp(entry.last_timestamp_ms)
                                        .with_coordinator_epoch(entry.coordinator_epoch)
                                        .with_current_txn_start_offset(
                                            entry.current_txn_first_offset.unwrap_or(-1),
                                        )
                                })
                                .collect())
                        })
                        .map_err(|error| storage_error_code(&error))
                });
            match producers {
                Ok(producers) => {
                    answer.error_code = NONE;
                    answer.active_producers = producers;
                }
                Err(code) => answer.error_code = code,
            }
            topic_response.partitions.push(answer);
        }
        response.topics.push(topic_response);
    }
    response
}

impl super::ErrorCodes for DescribeProducersResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.topics.iter().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| partition.error_code)
        }));
    }
}
