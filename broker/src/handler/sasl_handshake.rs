//! SaslHandshake: the mechanism a connection authenticates with. On a SASL_PLAINTEXT or
//! SASL_SSL listener, the broker's `[sasl] enabled_mechanisms` (again on an authenticated
//! connection when sessions have a lifetime: KIP-368's re-authentication); on any listener,
//! LMQ's inter-broker proof (never offered to clients). Elsewhere a client's handshake is answered
//! as Kafka's PLAINTEXT and SSL listeners answer it.

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

use super::{Method, RequestContext, SaslState, str_bytes};
use crate::broker::Broker;
use crate::cluster::identity::MECHANISM;

pub fn handle(
    broker: &Broker,
    context: &RequestContext,
    request: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let mut response = SaslHandshakeResponse::default();
    let session = &context.session;
    let enabled = &broker.config.sasl.enabled_mechanisms;
    let asked = request.mechanism.as_str();
    match session.sasl_state() {
        SaslState::Plain if asked == MECHANISM => {
            response.mechanisms = vec![str_bytes(MECHANISM)];
            session.set_sasl_state(SaslState::Authenticating(Method::Broker));
        }
        SaslState::Plain if session.sasl_listener => {
            response.mechanisms = enabled
                .iter()
                .map(|mechanism| str_bytes(mechanism.name()))
                .collect();
            match enabled.iter().find(|mechanism| mechanism.name() == asked) {
                Some(&mechanism) => {
                    session.set_sasl_state(SaslState::Authenticating(Method::Client(mechanism)));
                }
                // Kafka answers with the mechanisms it has; the client may try another.
                None => response.error_code = ResponseError::UnsupportedSaslMechanism.code(),
            }
        }
        // Kafka's PLAINTEXT listener answers every handshake with ILLEGAL_SASL_STATE and no
        // mechanism. The connection goes on.
        SaslState::Plain => response.error_code = ResponseError::IllegalSaslState.code(),
        // Kafka's SASL listener takes only SaslAuthenticate after the handshake, and closes
        // the connection after answering anything else.
        SaslState::Authenticating(_) => {
            response.error_code = ResponseError::IllegalSaslState.code();
            session.close_after_answer();
        }
        // KIP-368: an authenticated client re-authenticates with a new exchange on the same
        // connection (it must prove the same principal again), when sessions have a lifetime.
        SaslState::Authenticated if broker.config.connections_max_reauth_ms > 0 => {
            response.mechanisms = enabled
                .iter()
                .map(|mechanism| str_bytes(mechanism.name()))
                .collect();
            match enabled.iter().find(|mechanism| mechanism.name() == asked) {
                Some(&mechanism) => {
                    session.set_reauthenticating(Some(session.principal()));
                    session.set_sasl_state(SaslState::Authenticating(Method::Client(mechanism)));
                }
                None => response.error_code = ResponseError::UnsupportedSaslMechanism.code(),
            }
        }
        SaslState::Broker(_) | SaslState::Authenticated => {
            response.error_code = ResponseError::IllegalSaslState.code();
        }
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::SaslHandshakeResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
