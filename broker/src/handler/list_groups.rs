//! ListGroups, with the v4 state filter and v5 type filter (all groups are "classic").

use lmq_wire::protocol::messages::list_groups_response::ListedGroup;
use lmq_wire::protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    for (group_id, protocol_type, state) in broker.groups.list() {
        let wanted_state = request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|filter| filter.eq_ignore_ascii_case(state));
        let wanted_type = request.types_filter.is_empty()
            || request
                .types_filter
                .iter()
                .any(|filter| filter.eq_ignore_ascii_case("classic"));
        if !(wanted_state && wanted_type) {
            continue;
        }
        let mut listed = ListedGroup::default();
        listed.group_id = GroupId(str_bytes(group_id));
        listed.protocol_type = str_bytes(protocol_type);
        if version >= 4 {
            listed.group_state = str_bytes(state);
        }
        if version >= 5 {
            listed.group_type = str_bytes("classic");
        }
        response.groups.push(listed);
    }
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::ListGroupsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
