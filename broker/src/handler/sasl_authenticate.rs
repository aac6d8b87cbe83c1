//! SaslAuthenticate: the token of the mechanism the handshake chose. With LMQ's inter-broker
//! mechanism, a token carrying the cluster's replication secret makes the connection that
//! broker's (its Fetch requests then count as a follower's).

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};

use super::{RequestContext, SaslState, str_bytes};
use crate::cluster::ClusterNode;

pub fn handle(
    cluster: &ClusterNode,
    context: &RequestContext,
    request: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let mut response = SaslAuthenticateResponse::default();
    match context.session.sasl_state() {
        // As Kafka's PLAINTEXT listener (and its SASL listener once authenticated):
        // ILLEGAL_SASL_STATE, and the connection goes on.
        SaslState::Plain => {
            response.error_code = ResponseError::IllegalSaslState.code();
            response.error_message = Some(str_bytes(
                "SaslAuthenticate without a SaslHandshake on this connection",
            ));
        }
        SaslState::Broker(_) => {
            response.error_code = ResponseError::IllegalSaslState.code();
            response.error_message = Some(str_bytes("this connection is authenticated already"));
        }
        SaslState::Authenticating => match cluster.verify_replica(&request.auth_bytes) {
            Some(node_id) => {
                context.session.set_sasl_state(SaslState::Broker(node_id));
                context
                    .session
                    .set_principal(crate::security::Principal::broker(node_id));
                tracing::debug!(peer = %context.peer, principal = %context.session.principal(), "a broker authenticated");
            }
            None => {
                tracing::warn!(peer = %context.peer, "a broker proof without this cluster's secret");
                response.error_code = ResponseError::SaslAuthenticationFailed.code();
                response.error_message = Some(str_bytes(
                    "authentication failed: not a broker of this cluster",
                ));
                // As Kafka: the failure is answered, then the connection closed, so each
                // guess costs a new connection.
                context.session.close_after_answer();
            }
        },
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::SaslAuthenticateResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
