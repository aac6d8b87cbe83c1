//! Consumes a topic as a member of a group, as the original LMQ SDK's
//! `consumer.Subscribe(topic, handler)` + `Start()`; Ctrl-C commits and leaves.
//!
//! `cargo run -p lmq-client --example consumer -- 127.0.0.1:9092 orders test-group`

use lmq::{ClientConfig, GroupConfig, GroupConsumer};

#[tokio::main]
async fn main() -> Result<(), lmq::ClientError> {
    let mut args = std::env::args().skip(1);
    let broker = args.next().unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let topic = args.next().unwrap_or_else(|| "orders".to_string());
    let group = args.next().unwrap_or_else(|| "test-group".to_string());
    let mut consumer = GroupConsumer::connect(GroupConfig {
        client: ClientConfig {
            brokers: vec![broker],
            ..ClientConfig::default()
        },
        group,
        ..GroupConfig::default()
    })
    .await?;
    consumer.subscribe(&topic, |record| {
        let value = record
            .value
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        println!(
            "{}-{}@{}: {value}",
            record.topic, record.partition, record.offset
        );
        // Returning an error retries the record, then sends it to `<topic>.dlq`.
        Ok(())
    });
    let stop = consumer.stop_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.stop();
    });
    consumer.run().await
}
