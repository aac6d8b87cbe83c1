//! Sends a few records, as the original LMQ SDK's `producer.Send(topic, data)`.
//!
//! `cargo run -p lmq-client --example producer -- 127.0.0.1:9092 orders`

use lmq::{ClientConfig, Producer, ProducerConfig};

#[tokio::main]
async fn main() -> Result<(), lmq::ClientError> {
    let mut args = std::env::args().skip(1);
    let broker = args.next().unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let topic = args.next().unwrap_or_else(|| "orders".to_string());
    let producer = Producer::connect(ProducerConfig {
        client: ClientConfig {
            brokers: vec![broker],
            ..ClientConfig::default()
        },
        ..ProducerConfig::default()
    })
    .await?;
    for index in 0..10 {
        let delivery = producer.send(&topic, format!("hello {index}")).await?;
        println!(
            "sent to partition {} at offset {}",
            delivery.partition, delivery.offset
        );
    }
    producer.close().await;
    Ok(())
}
