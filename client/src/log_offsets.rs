//! A partition log's offsets, as `Admin` methods: log start, end or the offset for a time
//! (ListOffsets), and moving the log start forward (DeleteRecords).

use lmq_wire::protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use lmq_wire::protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use lmq_wire::protocol::messages::{BrokerId, DeleteRecordsRequest, ListOffsetsRequest, TopicName};

use crate::admin::{Admin, OffsetSpec, text};
use crate::error::{ClientError, Result};

impl Admin {
    /// The offset `spec` names on every partition of `topic`, following leaders that move
    /// (metadata refreshed, retried within the request timeout). For
    /// [`OffsetSpec::Timestamp`] a partition with no record that new answers its log end.
    pub async fn list_offsets(&self, topic: &str, spec: OffsetSpec) -> Result<Vec<(i32, i64)>> {
        self.retrying_with_fresh_metadata(topic, || self.list_offsets_once(topic, spec))
            .await
    }

    /// Retries `operation` as [`Admin::retrying`] does, refreshing `topic`'s metadata after
    /// each failure so a moved leader is found.
    async fn retrying_with_fresh_metadata<T, F, Fut>(&self, topic: &str, operation: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.retrying(|| async {
            let outcome = operation().await;
            if outcome.is_err() {
                self.cluster.invalidate(topic).await;
            }
            outcome
        })
        .await
    }

    async fn list_offsets_once(&self, topic: &str, spec: OffsetSpec) -> Result<Vec<(i32, i64)>> {
        let info = self.cluster.topic(topic).await?;
        let timestamp = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(timestamp) if timestamp < 0 => {
                return Err(ClientError::InvalidArgument(format!(
                    "timestamp {timestamp} is negative; use OffsetSpec::Earliest or Latest"
                )));
            }
            OffsetSpec::Timestamp(timestamp) => timestamp,
            OffsetSpec::Offset(offset) => {
                return Ok(info
                    .partitions
                    .iter()
                    .map(|partition| (partition.partition, offset))
                    .collect());
            }
        };
        let mut offsets = Vec::new();
        for partition in &info.partitions {
            let mut offset = self
                .list_offset(topic, partition.partition, timestamp)
                .await?;
            if offset < 0 {
                // No record at or after the time: Kafka answers -1, the consumer's "end".
                offset = self.list_offset(topic, partition.partition, -1).await?;
            }
            offsets.push((partition.partition, offset));
        }
        Ok(offsets)
    }

    /// One partition's offset for `timestamp` (-2 log start, -1 log end) from its leader.
    async fn list_offset(&self, topic: &str, partition: i32, timestamp: i64) -> Result<i64> {
        let connection = self.cluster.leader(topic, partition).await?;
        let mut requested = ListOffsetsPartition::default();
        requested.partition_index = partition;
        requested.timestamp = timestamp;
        let mut requested_topic = ListOffsetsTopic::default();
        requested_topic.name = TopicName(text(topic));
        requested_topic.partitions = vec![requested];
        let mut request = ListOffsetsRequest::default();
        request.replica_id = BrokerId(-1);
        request.topics = vec![requested_topic];
        let response = connection.call(request).await?;
        let answered = response
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .find(|answered| answered.partition_index == partition)
            .ok_or_else(|| ClientError::UnexpectedResponse("ListOffsets".to_string()))?;
        if let Some(error) = ClientError::from_code(
            &format!("list offsets of {topic}-{partition}"),
            answered.error_code,
            None,
        ) {
            return Err(error);
        }
        Ok(answered.offset)
    }

    /// Deletes the records of `partition` before `before` (Kafka's DeleteRecords; -1 means
    /// the high watermark): the log start moves there. Returns the new log start.
    pub async fn delete_records(&self, topic: &str, partition: i32, before: i64) -> Result<i64> {
        self.retrying_with_fresh_metadata(topic, || {
            self.delete_records_once(topic, partition, before)
        })
        .await
    }

    async fn delete_records_once(&self, topic: &str, partition: i32, before: i64) -> Result<i64> {
        let connection = self.cluster.leader(topic, partition).await?;
        let mut requested = DeleteRecordsPartition::default();
        requested.partition_index = partition;
        requested.offset = before;
        let mut requested_topic = DeleteRecordsTopic::default();
        requested_topic.name = TopicName(text(topic));
        requested_topic.partitions = vec![requested];
        let mut request = DeleteRecordsRequest::default();
        request.topics = vec![requested_topic];
        request.timeout_ms =
            i32::try_from(self.cluster.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
        let response = connection.call(request).await?;
        let answered = response
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .find(|answered| answered.partition_index == partition)
            .ok_or_else(|| ClientError::UnexpectedResponse("DeleteRecords".to_string()))?;
        if let Some(error) = ClientError::from_code(
            &format!("delete records of {topic}-{partition}"),
            answered.error_code,
            None,
        ) {
            return Err(error);
        }
        Ok(answered.low_watermark)
    }
}
