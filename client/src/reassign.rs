//! Moving partition replicas between brokers (Kafka's AlterPartitionReassignments and
//! ListPartitionReassignments), as `Admin` methods.

use lmq_wire::protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use lmq_wire::protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};
use lmq_wire::protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{ClientError, Result};

/// A replica move in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// The topic.
    pub topic: String,
    /// The partition being moved.
    pub partition: i32,
    /// The target replicas followed by those being removed.
    pub replicas: Vec<i32>,
    /// Replicas being added.
    pub adding: Vec<i32>,
    /// Replicas being removed.
    pub removing: Vec<i32>,
}

impl Admin {
    /// Moves a partition to `replicas` (`None` cancels a move in progress). The cluster
    /// copies the data to new replicas first and switches once they are in sync; follow it
    /// with [`Admin::list_reassignments`].
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: i32,
        replicas: Option<&[i32]>,
    ) -> Result<()> {
        let mut reassigned = ReassignablePartition::default();
        reassigned.partition_index = partition;
        reassigned.replicas = replicas.map(|ids| ids.iter().map(|&id| BrokerId(id)).collect());
        let mut requested = ReassignableTopic::default();
        requested.name = TopicName(StrBytes::from_string(topic.to_string()));
        requested.partitions = vec![reassigned];
        let mut request = AlterPartitionReassignmentsRequest::default();
        request.timeout_ms = 30_000;
        request.allow_replication_factor_change = true;
        request.topics = vec![requested];
        let connection = self.cluster().controller().await?;
        let response = connection.call(request).await?;
        let operation = format!("reassign {topic}-{partition}");
        if let Some(error) = ClientError::from_code(
            &operation,
            response.error_code,
            response.error_message.map(|message| message.to_string()),
        ) {
            return Err(error);
        }
        for answered in response
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
        {
            if let Some(error) = ClientError::from_code(
                &operation,
                answered.error_code,
                answered.error_message.as_ref().map(ToString::to_string),
            ) {
                return Err(error);
            }
        }
        self.cluster().invalidate(topic).await;
        Ok(())
    }

    /// Every replica move in progress.
    pub async fn list_reassignments(&self) -> Result<Vec<Reassignment>> {
        let mut request = ListPartitionReassignmentsRequest::default();
        request.timeout_ms = 30_000;
        request.topics = None;
        let connection = self.cluster().controller().await?;
        let response = connection.call(request).await?;
        if let Some(error) = ClientError::from_code(
            "list reassignments",
            response.error_code,
            response.error_message.map(|message| message.to_string()),
        ) {
            return Err(error);
        }
        let ids = |ids: &[BrokerId]| ids.iter().map(|id| id.0).collect::<Vec<i32>>();
        Ok(response
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|partition| Reassignment {
                    topic: topic.name.0.to_string(),
                    partition: partition.partition_index,
                    replicas: ids(&partition.replicas),
                    adding: ids(&partition.adding_replicas),
                    removing: ids(&partition.removing_replicas),
                })
            })
            .collect())
    }
}
