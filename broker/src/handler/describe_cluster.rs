//! DescribeCluster: the live brokers and the controller of the cluster.

use lmq_wire::protocol::messages::describe_cluster_response::DescribeClusterBroker;
use lmq_wire::protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::cluster::ClusterNode;

pub fn handle(cluster: &ClusterNode, _request: DescribeClusterRequest) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(cluster.cluster_id.clone());
    let view = cluster.view();
    response.controller_id = BrokerId(view.controller);
    response.brokers = view
        .brokers
        .iter()
        .map(|(&id, info)| {
            let mut node = DescribeClusterBroker::default();
            node.broker_id = BrokerId(id);
            node.host = str_bytes(info.host.clone());
            node.port = i32::from(info.port);
            node.rack = info.rack.clone().map(str_bytes);
            node
        })
        .collect();
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::DescribeClusterResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
    }
}
