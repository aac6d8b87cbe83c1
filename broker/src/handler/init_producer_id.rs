//! InitProducerId: a producer id and epoch. Without a transactional id (an idempotent
//! producer) any broker answers, from the id blocks every broker reserves in the
//! coordinator, so ids are unique cluster-wide; with a known id and epoch (v3+, KIP-360) the
//! epoch is bumped so the producer can reset its sequences, and a bump of an id no broker
//! handed out gets a new id. With a transactional id the transaction coordinator answers
//! (`txn::coordinator`): a new epoch for the id, which fences every older producer of it.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::cluster::ClusterNode;
use crate::security::acl::{AclOperation, ResourceType};
use crate::txn::state::{self, ProducerIdAndEpoch, TxnError};

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterNode,
    context: &super::RequestContext,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    // Kafka 4: a transactional producer needs WRITE on its id; an idempotent one
    // IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    let refused = match &request.transactional_id {
        Some(id) => (!context.authorize(AclOperation::Write, ResourceType::TransactionalId, id))
            .then_some(super::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        None => (!context.authorize_cluster(AclOperation::IdempotentWrite)
            && !context.authorize_any(AclOperation::Write, ResourceType::Topic))
        .then_some(super::CLUSTER_AUTHORIZATION_FAILED),
    };
    if let Some(code) = refused {
        response.error_code = code;
        return response;
    }
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    if let Some(id) = &request.transactional_id {
        // Kafka: both or neither of the expected id and epoch.
        let expected = match (producer_id, epoch) {
            (-1, -1) => None,
            (producer_id, producer_epoch) if producer_id >= 0 && producer_epoch >= 0 => {
                Some(ProducerIdAndEpoch {
                    producer_id,
                    producer_epoch,
                })
            }
            _ => {
                response.error_code = ResponseError::InvalidRequest.code();
                return response;
            }
        };
        let initialized = broker
            .transactions
            .init_producer_id(
                state::InitProducerIdRequest {
                    transactional_id: id.to_string(),
                    timeout_ms: request.transaction_timeout_ms,
                    expected,
                },
                broker.now_ms(),
                async || allocate(cluster).await,
            )
            .await;
        match initialized {
            Ok(given) => {
                response.producer_id = ProducerId(given.producer_id);
                response.producer_epoch = given.producer_epoch;
            }
            Err(error) => response.error_code = super::txn_error_code(error, version >= 4),
        }
        return response;
    }
    // Only an id the cluster handed out is bumped; a made-up one gets a new id, as Kafka
    // answers every InitProducerId without a transactional id.
    let handed_out = producer_id >= 0
        && cluster
            .producer_ids_end(producer_id)
            .await
            .is_ok_and(|end| producer_id < end);
    if handed_out && (0..i16::MAX - 1).contains(&epoch) {
        response.producer_id = ProducerId(producer_id);
        response.producer_epoch = epoch + 1;
        return response;
    }
    match cluster.allocate_producer_id().await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(error) => {
            tracing::error!(%error, "allocating a producer id failed");
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    response
}

/// A cluster-unique producer id for the transaction coordinator.
pub(super) async fn allocate(cluster: &ClusterNode) -> Result<i64, TxnError> {
    cluster.allocate_producer_id().await.map_err(|error| {
        tracing::error!(%error, "allocating a producer id failed");
        TxnError::ProducerIdsUnavailable
    })
}

impl super::ErrorCodes for lmq_wire::protocol::messages::InitProducerIdResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
