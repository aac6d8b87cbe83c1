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
    /// Show a topic's partitions (leader, replicas, ISR, offsets) and configs; for a
    /// compacted topic also the log cleaner's state of each partition, read from the
    /// brokers' admin endpoints (`--admin`).
    ///
    /// Example: lmq topics describe orders --admin 10.0.0.1:9644,10.0.0.2:9644
    Describe {
        topic: String,
        /// Admin endpoints (each broker's admin_listen, HOST:PORT) to read the cleaner state
        /// of a compacted topic from: each reports the partitions it holds
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:9644")]
        admin: Vec<String>,
        /// The admin endpoints' bearer token (the brokers' admin_token_file)
        #[arg(long, value_name = "FILE")]
        admin_token_file: Option<std::path::PathBuf>,
    },
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
        TopicsCommand::Describe {
            topic,
            admin: admin_endpoints,
            admin_token_file,
        } => {
            let info = admin.describe_topic(&topic).await?;
            let earliest = admin
                .list_offsets(&topic, lmq::OffsetSpec::Earliest)
                .await?;
            let latest = admin.list_offsets(&topic, lmq::OffsetSpec::Latest).await?;
            let configs = admin.describe_configs(&topic).await?;
            let compacted = configs.iter().any(|entry| {
                entry.name == "cleanup.policy"
                    && entry
                        .value
                        .as_deref()
                        .is_some_and(|value| value.contains("compact"))
            });
            let cleaner = if compacted {
                let token = match &admin_token_file {
                    Some(path) => Some(read_token(path)?),
                    None => None,
                };
                cleaner_states(&topic, &admin_endpoints, token.as_deref()).await?
            } else {
                Vec::new()
            };
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
                        "cleaner": cleaner.iter().map(CleanerReport::to_json).collect::<Vec<_>>(),
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
                    for report in &cleaner {
                        println!();
                        report.print();
                    }
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

/// What one admin endpoint said of a compacted topic's cleaner state.
struct CleanerReport {
    admin: String,
    /// Its `/v1/topics/{topic}` answer, or why there is none.
    answer: Result<serde_json::Value, String>,
}

/// The bearer token of `--admin-token-file`, its first line.
fn read_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        anyhow::anyhow!("reading --admin-token-file {}: {error}", path.display())
    })?;
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

/// Asks every admin endpoint for the topic; an endpoint that cannot answer is reported, not
/// an error of the command (the Kafka side of the description stands on its own).
async fn cleaner_states(
    topic: &str,
    endpoints: &[String],
    token: Option<&str>,
) -> Result<Vec<CleanerReport>> {
    let mut reports = Vec::new();
    for endpoint in endpoints {
        let address = super::admin_http::admin_address(endpoint)?;
        let answer = super::admin_http::get_json(&address, &format!("/v1/topics/{topic}"), token)
            .await
            .map_err(|error| format!("{error:#}"));
        reports.push(CleanerReport {
            admin: address,
            answer,
        });
    }
    Ok(reports)
}

impl CleanerReport {
    fn to_json(&self) -> serde_json::Value {
        match &self.answer {
            Ok(topic) => json!({
                "admin": self.admin,
                "node_id": topic["node_id"],
                "partitions": topic["partitions"].as_array().map(|partitions| partitions
                    .iter()
                    .map(|partition| json!({"partition": partition["partition"], "cleaner": partition["cleaner"]}))
                    .collect::<Vec<_>>()),
            }),
            Err(error) => json!({"admin": self.admin, "error": error}),
        }
    }

    fn print(&self) {
        let topic = match &self.answer {
            Ok(topic) => topic,
            Err(error) => {
                println!(
                    "Cleaner: the admin endpoint {} did not answer: {error}",
                    self.admin
                );
                println!("(give each broker's admin_listen with --admin HOST:PORT,...)");
                return;
            }
        };
        println!("Cleaner on broker {} ({}):", topic["node_id"], self.admin);
        let empty = Vec::new();
        let partitions = topic["partitions"].as_array().unwrap_or(&empty);
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for partition in partitions {
            let cleaner = &partition["cleaner"];
            if cleaner.is_null() {
                continue;
            }
            let index = partition["partition"].to_string();
            let pass = &cleaner["last_pass"];
            let (when, duration, read, written, result) = if pass.is_null() {
                (
                    String::from("never"),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                )
            } else {
                (
                    pass["finished_at_ms"]
                        .as_i64()
                        .map_or_else(String::new, utc_time),
                    format!("{} ms", pass["duration_ms"]),
                    bytes(pass["bytes_read"].as_u64()),
                    bytes(pass["bytes_written"].as_u64()),
                    pass["result"].as_str().unwrap_or_default().to_string(),
                )
            };
            if let Some(error) = cleaner["last_error"].as_object() {
                errors.push(format!(
                    "partition {index}: last error at {}: {}",
                    error["at_ms"].as_i64().map_or_else(String::new, utc_time),
                    error["message"].as_str().unwrap_or_default()
                ));
            }
            rows.push(vec![
                index,
                cleaner["cleanup_policy"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                cleaner["first_dirty_offset"].to_string(),
                cleaner["dirty_ratio"]
                    .as_f64()
                    .map_or_else(|| "-".to_string(), |ratio| format!("{ratio:.3}")),
                format!("{}/{}", cleaner["passes"], cleaner["failed_passes"]),
                when,
                duration,
                read,
                written,
                result,
            ]);
        }
        if rows.is_empty() {
            println!("(no compacted log of this topic on this broker)");
            return;
        }
        print_table(
            &[
                "PARTITION",
                "POLICY",
                "CLEANED_TO",
                "DIRTY_RATIO",
                "PASSES/FAILED",
                "LAST_PASS_UTC",
                "DURATION",
                "READ",
                "WRITTEN",
                "RESULT",
            ],
            &rows,
        );
        for error in errors {
            println!("{error}");
        }
    }
}

/// Bytes in decimal units, e.g. `12.3 MB`.
fn bytes(count: Option<u64>) -> String {
    let Some(count) = count else {
        return String::new();
    };
    let count = count as f64;
    match count {
        c if c >= 1e9 => format!("{:.1} GB", c / 1e9),
        c if c >= 1e6 => format!("{:.1} MB", c / 1e6),
        c if c >= 1e3 => format!("{:.1} kB", c / 1e3),
        c => format!("{c} B"),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of milliseconds since the Unix epoch.
fn utc_time(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_and_byte_counts_read_as_people_write_them() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_time(1_796_779_384_999), "2026-12-09 01:23:04");
        assert_eq!(utc_time(-1000), "1969-12-31 23:59:59");
        assert_eq!(bytes(Some(999)), "999 B");
        assert_eq!(bytes(Some(12_345_678)), "12.3 MB");
        assert_eq!(bytes(None), "");
    }
}
