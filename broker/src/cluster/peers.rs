//! Connections to the other brokers of the cluster for what a broker sends them on its own
//! (transaction markers, KIP-890 verification): one per broker, opened over the
//! inter-broker listener as a broker (`fetcher::connect_as_broker`), shared (requests
//! pipeline on it), replaced when the broker's address changed or the connection broke.

use std::collections::HashMap;
use std::sync::Arc;

use lmq::ClientError;
use lmq::connection::Connection;

use super::ClusterNode;
use crate::broker::Broker;

#[derive(Debug, Default)]
pub struct PeerConnections {
    connections: tokio::sync::Mutex<HashMap<i32, Arc<Connection>>>,
}

impl PeerConnections {
    /// The connection to broker `id`, opened when missing or stale.
    pub async fn get(
        &self,
        broker: &Broker,
        node: &ClusterNode,
        id: i32,
    ) -> Result<Arc<Connection>, ClientError> {
        let address = node
            .view()
            .brokers
            .get(&id)
            .map(|info| format!("{}:{}", info.host, info.port))
            .ok_or_else(|| ClientError::NoBrokers {
                brokers: Vec::new(),
            })?;
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(&id)
            && !connection.is_closed()
            && connection.address() == address
        {
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(super::fetcher::connect_as_broker(broker, node, &address).await?);
        connections.insert(id, Arc::clone(&connection));
        Ok(connection)
    }

    /// Forgets broker `id`'s connection after a failed request: the next use reconnects.
    pub async fn broken(&self, id: i32) {
        self.connections.lock().await.remove(&id);
    }
}
