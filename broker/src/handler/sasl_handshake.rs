//! SaslHandshake: the mechanism a connection authenticates with. Only LMQ's inter-broker
//! proof exists so far (`cluster::identity`); client mechanisms come with the security work.
//! To a Kafka client the listener is a PLAINTEXT one, and answers as Kafka's does.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

use super::{RequestContext, SaslState, str_bytes};
use crate::cluster::identity::MECHANISM;

pub fn handle(context: &RequestContext, request: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let mut response = SaslHandshakeResponse::default();
    match context.session.sasl_state() {
        SaslState::Plain if request.mechanism.as_str() == MECHANISM => {
            response.mechanisms = vec![str_bytes(MECHANISM)];
            context.session.set_sasl_state(SaslState::Authenticating);
        }
        // Kafka's PLAINTEXT listener answers every handshake with ILLEGAL_SASL_STATE and no
        // mechanism; LMQ's own is for brokers, not offered to clients. The connection goes on.
        SaslState::Plain => response.error_code = ResponseError::IllegalSaslState.code(),
        // Kafka's SASL listener takes only SaslAuthenticate after the handshake, and closes
        // the connection after answering anything else.
        SaslState::Authenticating => {
            response.error_code = ResponseError::IllegalSaslState.code();
            context.session.close_after_answer();
        }
        // Authenticated: no re-authentication (LMQ's proof does not expire).
        SaslState::Broker(_) => response.error_code = ResponseError::IllegalSaslState.code(),
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::SaslHandshakeResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
