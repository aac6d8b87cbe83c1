//! The LMQ broker: network shell, one handler per Kafka API, partitions over
//! [`lmq-storage`](../lmq_storage/index.html) logs, replication, groups and the controller.
//!
//! It is empty until the single-node broker issue fills it.
