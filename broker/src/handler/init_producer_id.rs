//! InitProducerId: a producer id and epoch for idempotent producers. With a known id and
//! epoch (v3+, KIP-360) the epoch is bumped so the producer can reset its sequences.
//! Transactions are not built yet: a transactional id is refused. Ids come from blocks every
//! broker reserves in the coordinator, so they are unique cluster-wide; a bump of an id no
//! broker handed out gets a new id.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::cluster::ClusterNode;

pub async fn handle(
    cluster: &ClusterNode,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        tracing::warn!(transactional_id = ?request.transactional_id, "transactions are not supported yet");
        response.error_code = ResponseError::InvalidRequest.code();
        return response;
    }
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
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

impl super::ErrorCodes for lmq_wire::protocol::messages::InitProducerIdResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
