//! EndTxn (v0-5): commits or aborts a transaction at its coordinator, which stores the
//! prepared state, answers, and writes the markers to every partition of the transaction.
//! v5 (transaction version 2, KIP-890 part 2) answers the producer id and epoch to use
//! next: the epoch is bumped at every end.

use lmq_wire::protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::security::acl::{AclOperation, ResourceType};
use crate::txn::TransactionVersion;
use crate::txn::state::{self, TxnResult};

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    context: &super::RequestContext,
    request: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    let mut response = EndTxnResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let id = request.transactional_id.0.to_string();
    if !context.authorize(AclOperation::Write, ResourceType::TransactionalId, &id) {
        response.error_code = super::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return response;
    }
    let client_version = TransactionVersion::for_end_txn(version);
    let ended = broker
        .transactions
        .end_txn(
            state::EndTxnRequest {
                transactional_id: id,
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
                result: if request.committed {
                    TxnResult::Commit
                } else {
                    TxnResult::Abort
                },
                client_version,
            },
            broker.now_ms(),
            // A version-2 end whose epoch ran out hands over to a new producer id.
            async || super::init_producer_id::allocate(cluster).await,
        )
        .await;
    match ended {
        Ok(next) => {
            if version >= 5 {
                response.producer_id = ProducerId(next.producer_id);
                response.producer_epoch = next.producer_epoch;
            }
        }
        Err(error) => response.error_code = super::txn_error_code(error, version >= 2),
    }
    response
}

impl super::ErrorCodes for EndTxnResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
