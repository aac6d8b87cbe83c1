//! JoinGroup: parked until the group's join phase completes.

use lmq_wire::protocol::messages::join_group_response::JoinGroupResponseMember;
use lmq_wire::protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{RequestContext, group_error_code, str_bytes};
use crate::broker::Broker;
use crate::group::state::JoinRequest;

pub async fn handle(
    broker: &Broker,
    context: &RequestContext,
    request: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let join = JoinRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id: context.client_id.clone(),
        client_host: format!("/{}", context.peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|protocol| (protocol.name.to_string(), protocol.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let joined = broker.groups.join(join, broker.now_ms()).await;
    let mut response = JoinGroupResponse::default();
    response.error_code = joined.error.map_or(0, group_error_code);
    response.generation_id = joined.generation_id;
    if version >= 7 {
        response.protocol_type = joined.protocol_type.map(str_bytes);
    }
    response.protocol_name = joined.protocol_name.map(str_bytes);
    if version < 7 && response.protocol_name.is_none() {
        // Before v7 the protocol name is not nullable.
        response.protocol_name = Some(str_bytes(""));
    }
    response.leader = str_bytes(joined.leader);
    response.member_id = str_bytes(joined.member_id);
    response.members = joined
        .members
        .into_iter()
        .map(|member| {
            let mut described = JoinGroupResponseMember::default();
            described.member_id = str_bytes(member.member_id);
            if version >= 5 {
                described.group_instance_id = member.group_instance_id.map(str_bytes);
            }
            described.metadata = member.metadata;
            described
        })
        .collect();
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::JoinGroupResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
