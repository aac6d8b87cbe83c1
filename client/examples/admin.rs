//! Creates a topic, lists topics and groups with their lag.
//!
//! `cargo run -p lmq-client --example admin -- 127.0.0.1:9092`

use std::collections::BTreeMap;

use lmq::{Admin, ClientConfig};

#[tokio::main]
async fn main() -> Result<(), lmq::ClientError> {
    let broker = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let admin = Admin::connect(ClientConfig {
        brokers: vec![broker],
        ..ClientConfig::default()
    })
    .await?;
    let configs = BTreeMap::from([("retention.ms".to_string(), "86400000".to_string())]);
    match admin.create_topic("orders", 6, -1, &configs).await {
        Ok(()) => println!("created orders"),
        Err(error) => println!("orders: {error}"),
    }
    for topic in admin.list_topics(false).await? {
        println!(
            "topic {} with {} partitions",
            topic.name,
            topic.partitions.len()
        );
    }
    for group in admin.list_groups().await? {
        println!("group {} ({})", group.group, group.state);
        for lag in admin.group_lag(&group.group).await? {
            println!(
                "  {}-{} committed {:?} end {} lag {:?}",
                lag.topic, lag.partition, lag.committed, lag.log_end_offset, lag.lag
            );
        }
    }
    Ok(())
}
