//! SaslAuthenticate: the token of the mechanism the handshake chose. With LMQ's inter-broker
//! mechanism, a token carrying the cluster's replication secret makes the connection that
//! broker's (its Fetch requests then count as a follower's).

use lmq_wire::protocol::ResponseError;
use lmq_wire::protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};

use super::{RequestContext, str_bytes};
use crate::cluster::ClusterNode;

pub fn handle(
    cluster: &ClusterNode,
    context: &RequestContext,
    request: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let mut response = SaslAuthenticateResponse::default();
    if !context.session.handshake_done() || context.session.replica().is_some() {
        response.error_code = ResponseError::IllegalSaslState.code();
        response.error_message = Some(str_bytes(
            "SaslAuthenticate comes once, after a SaslHandshake",
        ));
        return response;
    }
    match cluster.verify_replica(&request.auth_bytes) {
        Some(node_id) => {
            let _ = context.session.replica.set(node_id);
            tracing::debug!(peer = %context.peer, node_id, "a broker authenticated");
        }
        None => {
            tracing::warn!(peer = %context.peer, "a broker proof without this cluster's secret");
            response.error_code = ResponseError::SaslAuthenticationFailed.code();
            response.error_message = Some(str_bytes(
                "authentication failed: not a broker of this cluster",
            ));
        }
    }
    response
}
