//! SyncGroup: the leader hands out assignments; followers wait for them.

use lmq_wire::protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{group_error_code, str_bytes};
use crate::broker::Broker;
use crate::group::state::SyncRequest;

pub async fn handle(broker: &Broker, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let sync = SyncRequest {
        group_id: request.group_id.0.to_string(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        protocol_type: request.protocol_type.map(|kind| kind.to_string()),
        protocol_name: request.protocol_name.map(|name| name.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| (assignment.member_id.to_string(), assignment.assignment))
            .collect(),
    };
    let synced = broker.groups.sync(sync, broker.now_ms()).await;
    let mut response = SyncGroupResponse::default();
    response.error_code = synced.error.map_or(0, group_error_code);
    if version >= 5 {
        response.protocol_type = synced.protocol_type.map(str_bytes);
        response.protocol_name = synced.protocol_name.map(str_bytes);
    }
    response.assignment = synced.assignment;
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::SyncGroupResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
