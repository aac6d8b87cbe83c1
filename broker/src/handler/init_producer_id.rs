//! InitProducerId: a producer id and epoch for idempotent producers. With a known id and
//! epoch (v3+, KIP-360) the epoch is bumped so the producer can reset its sequences.
//! Transactions are not built yet: a transactional id is refused. In a cluster the ids come
//! from blocks every broker reserves in the coordinator, so they are unique cluster-wide.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        tracing::warn!(transactional_id = ?request.transactional_id, "transactions are not supported yet");
        response.error_code = ResponseError::InvalidRequest.code();
        return response;
    }
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    if producer_id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        response.producer_id = ProducerId(producer_id);
        response.producer_epoch = epoch + 1;
        return response;
    }
    // In a cluster ids come from blocks reserved in the coordinator, unique across brokers.
    let allocated = match broker.cluster() {
        Some(cluster) => cluster
            .allocate_producer_id()
            .await
            .map_err(|error| (error.to_string(), ResponseError::CoordinatorNotAvailable)),
        None => broker
            .producer_ids
            .allocate()
            .map_err(|error| (error.to_string(), ResponseError::KafkaStorageError)),
    };
    match allocated {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err((error, code)) => {
            tracing::error!(%error, "allocating a producer id failed");
            response.error_code = code.code();
        }
    }
    response
}
