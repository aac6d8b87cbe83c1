//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use lmq_wire::protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::group_error_code;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let outcome = broker.groups.heartbeat(
        &request.group_id.0,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
        broker.now_ms(),
    );
    let mut response = HeartbeatResponse::default();
    response.error_code = outcome.err().map_or(0, group_error_code);
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::HeartbeatResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
