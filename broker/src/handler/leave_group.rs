//! LeaveGroup: one member (v0-2) or a batch of members, possibly static (v3+).

use lmq_wire::protocol::messages::leave_group_response::MemberResponse;
use lmq_wire::protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{group_error_code, str_bytes};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|member| {
                (
                    member.member_id.to_string(),
                    member.group_instance_id.as_ref().map(ToString::to_string),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let mut response = LeaveGroupResponse::default();
    match broker
        .groups
        .leave(&request.group_id.0, &leaving, broker.now_ms())
    {
        Err(error) => response.error_code = group_error_code(error),
        Ok(results) if version < 3 => {
            response.error_code = results
                .first()
                .and_then(|result| result.err())
                .map_or(0, group_error_code);
        }
        Ok(results) => {
            response.members = leaving
                .into_iter()
                .zip(results)
                .map(|((member_id, instance_id), result)| {
                    let mut member = MemberResponse::default();
                    member.member_id = str_bytes(member_id);
                    member.group_instance_id = instance_id.map(str_bytes);
                    member.error_code = result.err().map_or(0, group_error_code);
                    member
                })
                .collect();
        }
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::LeaveGroupResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
        codes.extend(self.members.iter().map(|item| item.error_code));
    }
}
