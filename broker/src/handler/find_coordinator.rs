//! FindCoordinator: this node coordinates every group (v0-3 one key, v4+ batched keys).
//! Transaction coordinators do not exist yet.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::find_coordinator_response::Coordinator;
use lmq_wire::protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{NONE, str_bytes};
use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;

pub fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let (host, port) = broker.config.advertised();
    let node_id = broker.config.node_id;
    let answer = |key: &str| -> (i16, Option<&'static str>) {
        if request.key_type != KEY_TYPE_GROUP {
            (
                ResponseError::CoordinatorNotAvailable.code(),
                Some("transactions are not supported yet"),
            )
        } else if key.is_empty() {
            (ResponseError::InvalidRequest.code(), Some("empty group id"))
        } else {
            (NONE, None)
        }
    };
    let mut response = FindCoordinatorResponse::default();
    if version < 4 {
        let (error_code, message) = answer(&request.key);
        response.error_code = error_code;
        if version >= 1 {
            response.error_message = message.map(str_bytes);
        }
        if error_code == NONE {
            response.node_id = BrokerId(node_id);
            response.host = str_bytes(host);
            response.port = port;
        }
        return response;
    }
    response.coordinators = request
        .coordinator_keys
        .iter()
        .map(|key| {
            let (error_code, message) = answer(key);
            let mut coordinator = Coordinator::default();
            coordinator.key = key.clone();
            coordinator.error_code = error_code;
            coordinator.error_message = message.map(str_bytes);
            if error_code == NONE {
                coordinator.node_id = BrokerId(node_id);
                coordinator.host = str_bytes(host.clone());
                coordinator.port = port;
            } else {
                coordinator.node_id = BrokerId(-1);
                coordinator.port = -1;
            }
            coordinator
        })
        .collect();
    response
}
