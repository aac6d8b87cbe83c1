//! `lmq-diff`: the compatibility suite's differential mode (compat-tests/README.md).
//!
//! - `lmq-diff record --upstream HOST:PORT --out FILE` listens on a free loopback port,
//!   prints it, and proxies Kafka clients to the broker, recording every exchange.
//! - `lmq-diff compare LMQ_DIR KAFKA_DIR --ignore FILE` pairs the recordings of each cell
//!   (`DIR/<family>/<scenario>.jsonl`) and reports field-level differences.

mod compare;
mod proxy;
mod report;
mod tree;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lmq-diff",
    about = "Record Kafka traffic and compare two brokers' answers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Proxy clients to a broker and record each request and response as a JSON line.
    Record {
        /// The broker to forward to.
        #[arg(long)]
        upstream: String,
        /// The recording (JSON lines), created or truncated.
        #[arg(long)]
        out: PathBuf,
        /// Where clients connect; its address is printed on stdout once listening.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Compare the recordings of the same cells against LMQ and Apache Kafka.
    Compare {
        lmq: PathBuf,
        kafka: PathBuf,
        /// Fields left out, each with its reason (`API PATH REASON` lines).
        #[arg(long)]
        ignore: PathBuf,
        /// The report as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Record {
            upstream,
            out,
            listen,
        } => {
            let recorder = proxy::Recorder::create(&out)?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            println!("{}", listener.local_addr()?);
            proxy::serve(listener, upstream, recorder).await
        }
        Command::Compare {
            lmq,
            kafka,
            ignore,
            out,
        } => {
            let rules = std::fs::read_to_string(&ignore)
                .with_context(|| format!("reading {}", ignore.display()))?;
            let rules = compare::parse_ignores(&rules)
                .map_err(|error| anyhow::anyhow!("{}: {error}", ignore.display()))?;
            let report = report::compare_dirs(&lmq, &kafka, &rules)?;
            print!("{}", report.text());
            if let Some(out) = out {
                std::fs::write(&out, serde_json::to_string_pretty(&report.json())?)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            Ok(())
        }
    }
}
