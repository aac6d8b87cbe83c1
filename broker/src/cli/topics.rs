use anyhow::Result;
use clap::Subcommand;
use lmq::Admin;
use serde_json::json;

use super::{Connect, Output, parse_configs, print_table};

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List topics with their partition counts.
    ///
    /// Example: lmq topics list -b 127.0.0.1:9092
    List {
        /// Include internal topics such as __consumer_offsets
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions (leader, replicas, ISR, offsets) and configs.
    ///
    /// Example: lmq topics describe orders
    Describe { topic: String },
    /// Create a topic.
    ///
    /// Example: lmq topics create orders --partitions 6 --config retention.ms=86400000
    Create {
        topic: String,
        /// Partitions; -1 takes the broker default
        #[arg(long, short = 'p', default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replicas per partition; -1 takes the broker default
        #[arg(long, short = 'r', default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config KEY=VALUE, repeatable
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
    },
    /// Delete a topic and its data.
    ///
    /// Example: lmq topics delete orders
    Delete { topic: String },
    /// Grow partitions and set or remove topic configs.
    ///
    /// Example: lmq topics alter orders --partitions 12 --config retention.ms=3600000 --delete-config segment.ms
    Alter {
        topic: String,
        /// New total partition count (partitions only grow)
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Topic config KEY=VALUE to set, repeatable
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
        /// Topic config to reset to the default, repeatable
        #[arg(long = "delete-config")]
        delete_configs: Vec<String>,
    },
}

pub async fn run(command: TopicsCommand, connect: &Connect) -> Result<()> {
    let admin = Admin::connect(connect.client()?).await?;
    match command {
        TopicsCommand::List { internal } => {
            let topics = admin.list_topics(internal).await?;
            match connect.output {
                Output::Json => println!(
                    "{}",
                    json!(topics.iter().map(|topic| json!({"name": topic.name, "partitions": topic.partitions.len(), "internal": topic.internal})).collect::<Vec<_>>())
                ),
                Output::Table => print_table(
                    &["TOPIC", "PARTITIONS"],
                    &topics.iter().map(|topic| vec![topic.name.clone(), topic.partitions.len().to_string()]).collect::<Vec<_>>(),
                ),
            }
        }
        TopicsCommand::Describe { topic } => {
            let info = admin.describe_topic(&topic).await?;
            let earliest = admin
                .list_offsets(&topic, lmq::OffsetSpec::Earliest)
                .await?;
            let latest = admin.list_offsets(&topic, lmq::OffsetSpec::Latest).await?;
            let configs = admin.describe_configs(&topic).await?;
            let offset_of = |offsets: &[(i32, i64)], partition: i32| {
                offsets
                    .iter()
                    .find(|(p, _)| *p == partition)
                    .map_or(-1, |(_, offset)| *offset)
            };
            match connect.output {
                Output::Json => println!(
                    "{}",
                    json!({
                        "name": info.name,
                        "partitions": info.partitions.iter().map(|partition| json!({
                            "partition": partition.partition,
                            "leader": partition.leader,
                            "leader_epoch": partition.leader_epoch,
                            "replicas": partition.replicas,
                            "isr": partition.isr,
                            "log_start_offset": offset_of(&earliest, partition.partition),
                            "log_end_offset": offset_of(&latest, partition.partition),
                        })).collect::<Vec<_>>(),
                        "configs": configs.iter().map(|entry| json!({"name": entry.name, "value": entry.value, "override": entry.is_override})).collect::<Vec<_>>(),
                    })
                ),
                Output::Table => {
                    println!(
                        "Topic: {}  Partitions: {}",
                        info.name,
                        info.partitions.len()
                    );
                    print_table(
                        &["PARTITION", "LEADER", "REPLICAS", "ISR", "START", "END"],
                        &info
                            .partitions
                            .iter()
                            .map(|partition| {
                                vec![
                                    partition.partition.to_string(),
                                    partition.leader.to_string(),
                                    format!("{:?}", partition.replicas),
                                    format!("{:?}", partition.isr),
                                    offset_of(&earliest, partition.partition).to_string(),
                                    offset_of(&latest, partition.partition).to_string(),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                    println!();
                    print_table(
                        &["CONFIG", "VALUE", "SOURCE"],
                        &configs
                            .iter()
                            .map(|entry| {
                                vec![
                                    entry.name.clone(),
                                    entry.value.clone().unwrap_or_default(),
                                    if entry.is_override {
                                        "topic"
                                    } else {
                                        "default"
                                    }
                                    .to_string(),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            admin
                .create_topic(
                    &topic,
                    partitions,
                    replication_factor,
                    &parse_configs(&configs)?,
                )
                .await?;
            report(
                connect.output,
                json!({"created": topic}),
                &format!("Created topic {topic}."),
            );
        }
        TopicsCommand::Delete { topic } => {
            admin.delete_topic(&topic).await?;
            report(
                connect.output,
                json!({"deleted": topic}),
                &format!("Deleted topic {topic}."),
            );
        }
        TopicsCommand::Alter {
            topic,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                anyhow::bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            if let Some(partitions) = partitions {
                admin.create_partitions(&topic, partitions).await?;
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                admin
                    .alter_configs(&topic, &parse_configs(&configs)?, &delete_configs)
                    .await?;
            }
            report(
                connect.output,
                json!({"altered": topic}),
                &format!("Altered topic {topic}."),
            );
        }
    }
    Ok(())
}

pub fn report(output: Output, value: serde_json::Value, text: &str) {
    match output {
        Output::Json => println!("{value}"),
        Output::Table => println!("{text}"),
    }
}
