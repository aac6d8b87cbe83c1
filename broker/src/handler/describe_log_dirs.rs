//! DescribeLogDirs (v1-4): this broker's one log directory (the data dir) with the size of
//! every partition replica it holds, and the filesystem's total and free bytes.

use std::collections::HashSet;

use lmq_wire::protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use lmq_wire::protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{NONE, str_bytes, topic_name};
use crate::broker::Broker;
use crate::metrics::disk_space;

pub fn handle(broker: &Broker, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // A set of what was asked, not a search of the request per partition held.
    let asked: Option<HashSet<(&str, i32)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|asked| {
                asked
                    .partitions
                    .iter()
                    .map(|&partition| (asked.topic.0.as_str(), partition))
            })
            .collect()
    });
    let wanted = |topic: &str, partition: i32| {
        asked
            .as_ref()
            .is_none_or(|asked| asked.contains(&(topic, partition)))
    };
    let data_dir = &broker.config.data_dir;
    let mut result = DescribeLogDirsResult::default();
    result.error_code = NONE;
    result.log_dir = str_bytes(
        std::fs::canonicalize(data_dir)
            .unwrap_or_else(|_| data_dir.clone())
            .display()
            .to_string(),
    );
    if let Some((total, available)) = disk_space(data_dir) {
        result.total_bytes = i64::try_from(total).unwrap_or(i64::MAX);
        result.usable_bytes = i64::try_from(available).unwrap_or(i64::MAX);
    }
    for topic in broker.topics.list() {
        let mut described = DescribeLogDirsTopic::default();
        described.name = topic_name(topic.name.clone());
        for partition in &topic.partitions {
            // A cluster broker keeps logs of partitions it does not replicate: not listed.
            if partition.role_name() == "offline" || !wanted(&topic.name, partition.index) {
                continue;
            }
            let (Ok((size, _, log_end)), Ok(offsets)) =
                (partition.log_stats(), partition.offsets())
            else {
                continue;
            };
            let mut entry = DescribeLogDirsPartition::default();
            entry.partition_index = partition.index;
            entry.partition_size = i64::try_from(size).unwrap_or(i64::MAX);
            entry.offset_lag = (offsets.high_watermark - log_end).max(0);
            entry.is_future_key = false;
            described.partitions.push(entry);
        }
        if !described.partitions.is_empty() {
            result.topics.push(described);
        }
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    response
}

impl super::ErrorCodes for lmq_wire::protocol::messages::DescribeLogDirsResponse {
    fn error_codes(&self, codes: &mut Vec<i16>) {
        codes.push(self.error_code);
        codes.extend(self.results.iter().map(|item| item.error_code));
    }
}
