//! The `lmq` admin verbs: they talk the Kafka protocol through the native client, so they
//! work against LMQ and Apache Kafka alike. Human tables by default, `--output json` for
//! scripts.

pub mod data;
pub mod groups;
pub mod topics;
pub mod users;

use clap::{Args, ValueEnum};
use lmq::ClientConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Where to connect and how to print; every admin verb takes these.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// Broker addresses to start from, comma-separated
    #[arg(
        long,
        short = 'b',
        default_value = "127.0.0.1:9092",
        value_delimiter = ',',
        global = true
    )]
    pub bootstrap: Vec<String>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

impl Connect {
    pub fn client(&self) -> ClientConfig {
        ClientConfig {
            brokers: self.bootstrap.clone(),
            client_id: "lmq-cli".to_string(),
            ..ClientConfig::default()
        }
    }
}

/// Prints rows as aligned columns under a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                format!(
                    "{cell:<width$}",
                    width = widths.get(index).copied().unwrap_or(0)
                )
            })
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|title| (*title).to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// `key=value` pairs from repeated `--config` flags.
pub fn parse_configs(
    pairs: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--config {pair:?} must be KEY=VALUE, e.g. --config retention.ms=86400000"
                    )
                })
        })
        .collect()
}

/// `earliest`, `latest` or an offset.
pub fn parse_offset_spec(text: &str) -> anyhow::Result<lmq::OffsetSpec> {
    match text {
        "earliest" | "beginning" => Ok(lmq::OffsetSpec::Earliest),
        "latest" | "end" => Ok(lmq::OffsetSpec::Latest),
        offset => offset
            .parse()
            .map(lmq::OffsetSpec::Offset)
            .map_err(|_| anyhow::anyhow!("{offset:?} is not earliest, latest or an offset number")),
    }
}
