//! DescribeCluster: the live brokers and the controller of the cluster.

use lmq_wire::protocol::messages::describe_cluster_response::DescribeClusterBroker;
use lmq_wire::protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::cluster::ClusterNode;

/// `listener`: the name of the listener the request came in on.
pub fn handle(
    cluster: &ClusterNode,
    listener: &str,
    _request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(cluster.cluster_id.clone());
    let view = cluster.view();
    response.controller_id = BrokerId(view.controller);
    response.brokers = view
        .brokers
        .iter()
        .filter_map(|(&id, info)| {
            let (host, port) = info.endpoint(listener)?;
            let mut node = DescribeClusterBroker::default();
            node.broker_id = BrokerId(id);
            node.host = str_bytes(host.to_string());
            node.port = i32::from(port);
            node.rack = info.rack.clone().map(str_bytes);
            Some(node)
        })
        .collect();
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::DescribeClusterResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
