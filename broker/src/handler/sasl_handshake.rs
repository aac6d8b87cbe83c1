//! SaslHandshake: the mechanism a connection authenticates with. Only LMQ's inter-broker
//! proof exists so far (`cluster::identity`); client mechanisms come with the security work.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

use super::{RequestContext, str_bytes};
use crate::cluster::identity::MECHANISM;

pub fn handle(context: &RequestContext, request: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let mut response = SaslHandshakeResponse::default();
    response.mechanisms = vec![str_bytes(MECHANISM)];
    if context.session.replica().is_some() {
        // Kafka refuses a second handshake on an authenticated connection.
        response.error_code = ResponseError::IllegalSaslState.code();
    } else if request.mechanism.as_str() == MECHANISM {
        context.session.start_handshake();
    } else {
        response.error_code = ResponseError::UnsupportedSaslMechanism.code();
    }
    response
}
