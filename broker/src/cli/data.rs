//! `lmq produce`, `lmq consume` and `lmq cluster status`: quick checks from a shell.

use std::io::BufRead;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use clap::Args;
use lmq::{Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, Record};
use serde_json::json;

use super::{Connect, Output, parse_offset_spec, print_table};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Values to send; without any, one record per line of standard input
    pub values: Vec<String>,
    /// Key for every record (same key, same partition)
    #[arg(long, short = 'k')]
    pub key: Option<String>,
    /// Partition to write to (default: by key, or spread)
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Partition to read
    #[arg(long, short = 'p', default_value_t = 0)]
    pub partition: i32,
    /// earliest, latest, or an offset number
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// Stop after this many records
    #[arg(long, short = 'n')]
    pub max: Option<usize>,
    /// Stop when nothing arrives for this many milliseconds
    #[arg(long, default_value_t = 2_000)]
    pub idle_ms: u64,
}

pub async fn produce(args: ProduceArgs, connect: &Connect) -> Result<()> {
    let producer = Producer::connect(ProducerConfig {
        client: connect.client()?,
        ..ProducerConfig::default()
    })
    .await?;
    let values: Vec<String> = if args.values.is_empty() {
        std::io::stdin().lock().lines().collect::<Result<_, _>>()?
    } else {
        args.values
    };
    for value in values {
        let delivery = producer
            .send_record(
                &args.topic,
                Record {
                    key: args.key.clone().map(Bytes::from),
                    value: Some(Bytes::from(value)),
                    partition: args.partition,
                    ..Record::default()
                },
            )
            .await?;
        match connect.output {
            Output::Json => println!(
                "{}",
                json!({"topic": args.topic, "partition": delivery.partition, "offset": delivery.offset})
            ),
            Output::Table => println!("{}-{}@{}", args.topic, delivery.partition, delivery.offset),
        }
    }
    Ok(())
}

/// The longest a fetch of `lmq consume` waits, so `--idle-ms` is checked at least this often.
const CONSUME_FETCH_WAIT_MS_MAX: u64 = 500;

pub async fn consume(args: ConsumeArgs, connect: &Connect) -> Result<()> {
    let mut consumer = Consumer::connect(ConsumerConfig {
        client: connect.client()?,
        max_wait: Duration::from_millis(args.idle_ms.min(CONSUME_FETCH_WAIT_MS_MAX)),
        ..ConsumerConfig::default()
    })
    .await?;
    consumer
        .assign(&args.topic, args.partition, parse_offset_spec(&args.from)?)
        .await?;
    let mut seen = 0usize;
    let mut idle_since = tokio::time::Instant::now();
    loop {
        let records = consumer.poll().await?;
        if records.is_empty() {
            if idle_since.elapsed() >= Duration::from_millis(args.idle_ms) {
                return Ok(());
            }
            continue;
        }
        idle_since = tokio::time::Instant::now();
        for record in records {
            let value = record
                .value
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let key = record.key.as_deref().map(String::from_utf8_lossy);
            match connect.output {
                Output::Json => println!(
                    "{}",
                    json!({"partition": record.partition, "offset": record.offset, "timestamp": record.timestamp, "key": key, "value": value})
                ),
                Output::Table => println!("{}\t{}", record.offset, value),
            }
            seen += 1;
            if args.max.is_some_and(|max| seen >= max) {
                return Ok(());
            }
        }
    }
}

pub async fn cluster_status(connect: &Connect) -> Result<()> {
    let admin = Admin::connect(connect.client()?).await?;
    let topics = admin.list_topics(true).await?;
    let partitions: usize = topics.iter().map(|topic| topic.partitions.len()).sum();
    let leaderless: usize = topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter(|partition| partition.leader < 0)
        .count();
    let under_replicated: usize = topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter(|partition| partition.isr.len() < partition.replicas.len())
        .count();
    let groups = admin.list_groups().await?;
    let brokers = admin.cluster().brokers().await;
    let controller = admin.cluster().controller_id().await;
    match connect.output {
        Output::Json => println!(
            "{}",
            json!({"brokers": brokers.iter().map(|(id, address)| json!({"node_id": id, "address": address})).collect::<Vec<_>>(),
                   "controller": controller, "topics": topics.len(), "partitions": partitions,
                   "offline_partitions": leaderless, "under_replicated_partitions": under_replicated, "groups": groups.len()})
        ),
        Output::Table => {
            print_table(
                &["NODE", "ADDRESS", "ROLE"],
                &brokers
                    .iter()
                    .map(|(id, address)| {
                        vec![
                            id.to_string(),
                            address.clone(),
                            if *id == controller { "controller" } else { "" }.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            println!();
            print_table(
                &[
                    "TOPICS",
                    "PARTITIONS",
                    "OFFLINE",
                    "UNDER-REPLICATED",
                    "GROUPS",
                ],
                &[vec![
                    topics.len().to_string(),
                    partitions.to_string(),
                    leaderless.to_string(),
                    under_replicated.to_string(),
                    groups.len().to_string(),
                ]],
            );
        }
    }
    Ok(())
}
