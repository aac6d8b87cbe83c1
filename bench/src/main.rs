//! `lmq-perf`: a load generator on the native `lmq` client that works against LMQ and Apache
//! Kafka alike, and the small probes `scripts/bench.sh` needs around it.
//!
//! `lmq-perf run` produces fixed-size incompressible records to a fresh topic at a target rate
//! with open-loop scheduling (record `i` is due at `start + i / rate`; latency counts from that
//! instant, so a stalled broker cannot hide its stall by slowing the generator down), while a
//! consumer in the same process reads the topic back. Each record's first 8 bytes carry its
//! due time, so the consumer measures end-to-end latency. Every command prints one JSON line.

mod idle;
mod load;
mod probe;

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The instant now: a load generator measures real time (there is no clock to inject into a
/// broker it runs against).
#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures real elapsed time"
)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

#[derive(Debug, Parser)]
#[command(
    name = "lmq-perf",
    about = "Load generator and probes for Kafka-protocol brokers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a topic, produce to it at a rate for a while, consume it back, print the figures.
    Run(load::RunArgs),
    /// Broker CPU per produced MB while many consumers long-poll idle partitions of the topic.
    IdleFetch(idle::IdleFetchArgs),
    /// Read a topic from offset 0 to its log end (every partition at once), print the rate.
    Consume(load::ConsumeArgs),
    /// Create a topic and wait until every partition has a leader.
    CreateTopic(probe::CreateArgs),
    /// Print the sum of the log end offsets of a topic's partitions.
    Offsets(probe::TopicArgs),
    /// Poll until a broker answers Metadata with itself in it; print the wall-clock instant.
    WaitMetadata(probe::WaitArgs),
    /// Spawn a broker, poll Metadata until it answers; print the start-up time and its pid.
    /// The broker keeps running after lmq-perf exits.
    Startup(probe::StartupArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let output = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => load::run(args).await,
            Command::Consume(args) => load::consume(args).await,
            Command::IdleFetch(args) => idle::idle_fetch(args).await,
            Command::CreateTopic(args) => probe::create_topic(args).await,
            Command::Offsets(args) => probe::offsets(args).await,
            Command::WaitMetadata(args) => probe::wait_metadata(args).await,
            Command::Startup(args) => probe::startup(args).await,
        }
    })?;
    println!("{output}");
    // Connection tasks may still be parked in reads; do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}
