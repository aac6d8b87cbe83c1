use anyhow::Result;
use clap::Subcommand;
use lmq::Admin;
use serde_json::json;

use super::topics::report;
use super::{Connect, Output, parse_offset_spec, print_table};

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups and their states.
    ///
    /// Example: lmq groups list
    List,
    /// Show a group's members, their partitions, and the lag of every partition.
    ///
    /// Example: lmq groups describe orders-readers
    Describe { group: String },
    /// Move a group's committed offsets on a topic (the group must have no active members).
    ///
    /// Example: lmq groups reset-offsets orders-readers --topic orders --to earliest
    ResetOffsets {
        group: String,
        /// Topic whose partitions to reset, repeatable
        #[arg(long, short = 't', required = true)]
        topic: Vec<String>,
        /// earliest, latest, or an offset number
        #[arg(long)]
        to: String,
    },
}

pub async fn run(command: GroupsCommand, connect: &Connect) -> Result<()> {
    let admin = Admin::connect(connect.client()?).await?;
    match command {
        GroupsCommand::List => {
            let groups = admin.list_groups().await?;
            match connect.output {
                Output::Json => println!(
                    "{}",
                    json!(groups.iter().map(|group| json!({"group": group.group, "state": group.state, "protocol_type": group.protocol_type})).collect::<Vec<_>>())
                ),
                Output::Table => print_table(
                    &["GROUP", "STATE", "PROTOCOL"],
                    &groups
                        .iter()
                        .map(|group| vec![group.group.clone(), group.state.clone(), group.protocol_type.clone()])
                        .collect::<Vec<_>>(),
                ),
            }
        }
        GroupsCommand::Describe { group } => {
            let description = admin.describe_group(&group).await?;
            let lag = admin.group_lag(&group).await?;
            let owner = |topic: &str, partition: i32| {
                description
                    .members
                    .iter()
                    .find(|member| {
                        member.assignment.iter().any(|(assigned, partitions)| {
                            assigned == topic && partitions.contains(&partition)
                        })
                    })
                    .map(|member| member.member_id.clone())
            };
            match connect.output {
                Output::Json => println!(
                    "{}",
                    json!({
                        "group": description.group,
                        "state": description.state,
                        "protocol": description.protocol,
                        "members": description.members.iter().map(|member| json!({
                            "member_id": member.member_id,
                            "group_instance_id": member.group_instance_id,
                            "client_id": member.client_id,
                            "host": member.client_host,
                            "assignment": member.assignment,
                        })).collect::<Vec<_>>(),
                        "offsets": lag.iter().map(|lag| json!({
                            "topic": lag.topic, "partition": lag.partition, "committed": lag.committed,
                            "log_end_offset": lag.log_end_offset, "lag": lag.lag,
                            "member": owner(&lag.topic, lag.partition),
                        })).collect::<Vec<_>>(),
                    })
                ),
                Output::Table => {
                    println!(
                        "Group: {}  State: {}  Protocol: {}  Members: {}",
                        description.group,
                        description.state,
                        description.protocol,
                        description.members.len()
                    );
                    print_table(
                        &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"],
                        &lag.iter()
                            .map(|lag| {
                                vec![
                                    lag.topic.clone(),
                                    lag.partition.to_string(),
                                    lag.committed
                                        .map_or("-".to_string(), |offset| offset.to_string()),
                                    lag.log_end_offset.to_string(),
                                    lag.lag.map_or("-".to_string(), |lag| lag.to_string()),
                                    owner(&lag.topic, lag.partition)
                                        .unwrap_or_else(|| "-".to_string()),
                                ]
                            })
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
        GroupsCommand::ResetOffsets { group, topic, to } => {
            let spec = parse_offset_spec(&to)?;
            let mut reset = Vec::new();
            for (index, name) in topic.iter().enumerate() {
                eprintln!(
                    "[{}/{}] resetting {group} on {name} to {to}",
                    index + 1,
                    topic.len()
                );
                for (partition, offset) in admin.reset_offsets(&group, name, spec).await? {
                    reset.push(json!({"topic": name, "partition": partition, "offset": offset}));
                }
            }
            report(
                connect.output,
                json!({"group": group, "reset": reset}),
                &format!("Reset {} partition(s) of group {group}.", reset.len()),
            );
        }
    }
    Ok(())
}
