//! ListTransactions (v0-2; KIP-664, KIP-994's duration filter, KIP-1152's id pattern): the
//! transactions this broker coordinates, filtered (`kafka-transactions.sh list` asks every
//! broker). Only ids the client may DESCRIBE are listed.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::list_transactions_response::TransactionState;
use lmq_wire::protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use crate::broker::Broker;
use crate::security::acl::{AclOperation, ResourceType};
use crate::txn::state::ListFilter;

pub fn handle(
    broker: &Broker,
    context: &super::RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let pattern = match request.transactional_id_pattern.as_deref() {
        None | Some("") => None,
        // Java's `Matcher.matches`: the whole id.
        Some(pattern) => match regex::Regex::new(&format!("^(?:{pattern})$")) {
            Ok(regex) => Some(regex),
            Err(_) => {
                response.error_code = ResponseError::InvalidRegularExpression.code();
                return response;
            }
        },
    };
    let filter = ListFilter {
        states: request
            .state_filters
            .iter()
            .map(|state| state.to_string())
            .collect(),
        producer_ids: request.producer_id_filters.iter().map(|id| id.0).collect(),
        duration_ms: request.duration_filter,
        transactional_id_pattern: pattern,
    };
    match broker.transactions.list(&filter, broker.now_ms()) {
        Ok(listing) => {
            response.unknown_state_filters = listing
                .unknown_state_filters
                .into_iter()
                .map(super::str_bytes)
                .collect();
            response.transaction_states = listing
                .transactions
                .into_iter()
                .filter(|(id, _, _)| {
                    context.authorize(AclOperation::Describe, ResourceType::TransactionalId, id)
                })
                .map(|(id, producer_id, state)| {
                    let mut listed = TransactionState::default();
                    listed.transactional_id = TransactionalId(super::str_bytes(id));
                    listed.producer_id = ProducerId(producer_id);
                    listed.transaction_state = super::str_bytes(state.name());
                    listed
                })
                .collect();
        }
        Err(error) => response.error_code = super::txn_error_code(error, true),
    }
    response
}

impl super::ErrorCodes for ListTransactionsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
