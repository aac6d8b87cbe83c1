//! DescribeGroups: state, protocol and members with their metadata and assignment (those
//! two only while Stable). A group that does not exist is described as Dead, as Kafka does.

use lmq_wire::protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use lmq_wire::protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{check_coordinator, str_bytes};
use crate::broker::Broker;
use crate::group::state::GroupState;

pub fn handle(broker: &Broker, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for group_id in request.groups {
        let mut described = DescribedGroup::default();
        described.group_id = group_id.clone();
        if let Err(code) = check_coordinator(broker, &group_id.0) {
            described.error_code = code;
            response.groups.push(described);
            continue;
        }
        match broker.groups.describe(&group_id.0) {
            None => {
                described.group_state = str_bytes("Dead");
            }
            Some(group) => {
                described.group_state = str_bytes(group.state.name());
                described.protocol_type =
                    str_bytes(group.protocol_type.clone().unwrap_or_default());
                // As Kafka: every member is listed in every state, but the protocol and each
                // member's metadata and assignment only once the group is Stable.
                let stable = group.state == GroupState::Stable;
                let protocol = if stable {
                    group.protocol_name.clone().unwrap_or_default()
                } else {
                    String::new()
                };
                described.protocol_data = str_bytes(protocol.clone());
                described.members = group
                    .members
                    .values()
                    .map(|member| {
                        let mut entry = DescribedGroupMember::default();
                        entry.member_id = str_bytes(member.member_id.clone());
                        entry.group_instance_id = member.group_instance_id.clone().map(str_bytes);
                        entry.client_id = str_bytes(member.client_id.clone());
                        entry.client_host = str_bytes(member.client_host.clone());
                        if stable {
                            entry.member_metadata = member.metadata(&protocol);
                            entry.member_assignment = member.assignment.clone();
                        }
                        entry
                    })
                    .collect();
            }
        }
        response.groups.push(described);
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::DescribeGroupsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(self.groups.iter().map(|item| item.error_code));
    }
}
