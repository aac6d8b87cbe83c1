//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3) and by timestamp. As Kafka,
//! what a consumer may fetch bounds the answers: the high watermark, or with isolation
//! level 1 (read_committed) the last stable offset; LATEST is that bound, and a timestamp
//! lookup finding an offset at or past it answers none.

use lmq_storage::batch::{BatchView, first_offset_in_records};
use lmq_wire::protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use lmq_wire::protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use lmq_wire::records::{Codec, decompress};

use super::{NONE, RequestContext, TopicLookup, storage_error_code};
use crate::broker::Broker;
use crate::partition::Partition;
use crate::security::acl::AclOperation;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// Bound on a batch's decompressed size when looking inside it.
const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

pub fn handle(
    broker: &Broker,
    context: &RequestContext,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    let isolation = if request.isolation_level == 1 {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    for topic_request in request.topics {
        let topic = TopicLookup::new(broker, &topic_request.name.0);
        let allowed = context.check_topic(AclOperation::Describe, &topic_request.name.0);
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic_request.name.clone();
        for partition_request in topic_request.partitions {
            let mut answer = ListOffsetsPartitionResponse::default();
            answer.partition_index = partition_request.partition_index;
            answer.timestamp = -1;
            answer.offset = -1;
            answer.leader_epoch = -1;
            let found = allowed.and_then(|()| {
                topic.leader(
                    partition_request.partition_index,
                    partition_request.current_leader_epoch,
                )
            });
            match found {
                Err(code) => answer.error_code = code,
                Ok(partition) => match lookup(partition, partition_request.timestamp, isolation)
                    .map_err(|error| storage_error_code(&error))
                {
                    Ok((timestamp, offset)) => {
                        answer.error_code = NONE;
                        answer.timestamp = timestamp;
                        answer.offset = offset;
                        if version >= 4 && offset >= 0 {
                            answer.leader_epoch = partition.leader_epoch();
                        }
                    }
                    Err(code) => answer.error_code = code,
                },
            }
            topic_response.partitions.push(answer);
        }
        response.topics.push(topic_response);
    }
    response
}

/// The request's isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

/// `(timestamp, offset)` as Kafka answers it; `(-1, -1)` when no record qualifies.
fn lookup(
    partition: &Partition,
    timestamp: i64,
    isolation: Isolation,
) -> Result<(i64, i64), lmq_storage::StorageError> {
    let offsets = partition.offsets()?;
    let fetchable_end = match isolation {
        Isolation::ReadUncommitted => offsets.high_watermark,
        Isolation::ReadCommitted => offsets.last_stable_offset,
    };
    let fetchable = |(timestamp, offset): (i64, i64)| {
        if offset < fetchable_end {
            (timestamp, offset)
        } else {
            (-1, -1)
        }
    };
    match timestamp {
        LATEST => Ok((-1, fetchable_end)),
        EARLIEST => Ok((-1, offsets.log_start_offset)),
        MAX_TIMESTAMP => Ok(fetchable(partition.max_timestamp()?.unwrap_or((-1, -1)))),
        target => {
            let Some(found) = partition.find_by_timestamp(target)? else {
                return Ok((-1, -1));
            };
            let bytes =
                found
                    .region
                    .read_to_vec()
                    .map_err(|error| lmq_storage::StorageError::Io {
                        operation: "read",
                        path: "partition".into(),
                        source: error,
                    })?;
            // The exact record, decompressing the batch when needed; a batch that cannot be
            // decoded answers with its first offset.
            let exact = BatchView::new(&bytes).ok().and_then(|view| {
                let codec = Codec::from_attributes(view.attributes()).ok()?;
                let records =
                    decompress(codec, view.records_bytes(), DECOMPRESSED_BYTES_MAX).ok()?;
                first_offset_in_records(&view, &records, target)
            });
            Ok(fetchable(
                exact.unwrap_or((found.max_timestamp_ms, found.base_offset)),
            ))
        }
    }
}

impl super::ErrorCodes for lmq_wire::protocol::messages::ListOffsetsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.extend(
            self.topics
                .iter()
                .flat_map(|item| item.partitions.iter().map(|inner| inner.error_code)),
        );
    }
}
