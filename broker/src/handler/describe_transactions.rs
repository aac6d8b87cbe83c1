//! DescribeTransactions (v0, KIP-664): the state of transactional ids this broker
//! coordinates (`kafka-transactions.sh describe`). DESCRIBE on each id; an id another
//! broker coordinates is NOT_COORDINATOR, an unknown one TRANSACTIONAL_ID_NOT_FOUND.

use std::collections::BTreeMap;

use lmq_wire::protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use lmq_wire::protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use crate::broker::Broker;
use crate::security::acl::{AclOperation, ResourceType};

pub fn handle(
    broker: &Broker,
    context: &super::RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut response = DescribeTransactionsResponse::default();
    response.transaction_states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let mut state = TransactionState::default();
            state.transactional_id = id.clone();
            state.transaction_state = super::str_bytes("");
            state.producer_id = ProducerId(-1);
            state.producer_epoch = -1;
            state.transaction_start_time_ms = -1;
            if !context.authorize(AclOperation::Describe, ResourceType::TransactionalId, &id) {
                state.error_code = super::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
                return state;
            }
            match broker.transactions.describe(&id) {
                Ok(described) => {
                    state.transaction_state = super::str_bytes(described.state.name());
                    state.transaction_timeout_ms = described.timeout_ms;
                    state.transaction_start_time_ms = described.start_ms;
                    state.producer_id = ProducerId(described.producer_id);
                    state.producer_epoch = described.producer_epoch;
                    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for partition in described.partitions {
                        topics
                            .entry(partition.topic)
                            .or_default()
                            .push(partition.partition);
                    }
                    state.topics = topics
                        .into_iter()
                        // Kafka leaves out topics the client may not describe.
                        .filter(|(topic, _)| context.authorize_topic(AclOperation::Describe, topic))
                        .map(|(topic, partitions)| {
                            let mut data = TopicData::default();
                            data.topic = TopicName(super::str_bytes(topic));
                            data.partitions = partitions;
                            data
                        })
                        .collect();
                }
                Err(error) => state.error_code = super::txn_error_code(error, true),
            }
            state
        })
        .collect();
    response
}

impl super::ErrorCodes for DescribeTransactionsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.transaction_states.iter().map(|state| state.error_code));
    }
}
