//! `lmq`: the LMQ broker binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use lmq_broker::BrokerConfig;
use lmq_broker::cli;
use lmq_broker::clock::SystemClock;
use lmq_broker::node::{Node, NodeError};
use tokio::net::TcpListener;

/// LMQ: a lightweight message queue that speaks the Kafka protocol.
///
/// Example: lmq serve   (then: echo hello | lmq produce demo; lmq consume demo)
#[derive(Debug, Parser)]
#[command(name = "lmq", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker. With no flags: one node on ./lmq-data, Kafka clients on 127.0.0.1:9092.
    ///
    /// Example: lmq serve --data-dir /var/lib/lmq --listen 0.0.0.0:9092 --advertised-listener kafka.example:9092
    Serve(ServeArgs),
    /// List, describe, create, delete and alter topics (works against any Kafka-compatible broker).
    ///
    /// Example: lmq topics create orders --partitions 6
    Topics {
        #[command(subcommand)]
        command: cli::topics::TopicsCommand,
        #[command(flatten)]
        connect: cli::Connect,
    },
    /// List and describe consumer groups (members, lag) and reset their offsets.
    ///
    /// Example: lmq groups describe orders-readers
    Groups {
        #[command(subcommand)]
        command: cli::groups::GroupsCommand,
        #[command(flatten)]
        connect: cli::Connect,
    },
    /// Cluster-wide views.
    ///
    /// Example: lmq cluster status -o json
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        #[command(flatten)]
        connect: cli::Connect,
    },
    /// Send records: the given values, or one per line of standard input.
    ///
    /// Example: echo hello | lmq produce orders --key customer-7
    Produce {
        #[command(flatten)]
        args: cli::data::ProduceArgs,
        #[command(flatten)]
        connect: cli::Connect,
    },
    /// Print records of one partition from an offset, until idle or --max.
    ///
    /// Example: lmq consume orders --partition 0 --from earliest --max 10
    Consume {
        #[command(flatten)]
        args: cli::data::ConsumeArgs,
        #[command(flatten)]
        connect: cli::Connect,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Brokers, controller, topic/partition counts, offline and under-replicated partitions.
    ///
    /// Example: lmq cluster status
    Status,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Directory for partition logs and topic metadata [default: ./lmq-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds [default: 127.0.0.1:9092]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin HTTP address for /metrics, /health, /ready, /v1/status, or "off" [default: 127.0.0.1:9644]
    #[arg(long)]
    admin_listen: Option<String>,
    /// HOST:PORT clients are told to connect to [default: the listen address]
    #[arg(long)]
    advertised_listener: Option<String>,
    /// This broker's node id [default: 0]
    #[arg(long)]
    node_id: Option<i32>,
    /// TOML file with any setting (see docs/CONFIG.md); flags override it
    #[arg(long)]
    config: Option<PathBuf>,
    /// Join a replicated cluster through the Consul agent at this HTTP address
    /// (e.g. http://127.0.0.1:8500); every broker needs its own --node-id
    #[arg(long, value_name = "HTTP_ADDR")]
    consul: Option<String>,
    /// This broker's rack: replicas of a partition go to different racks
    #[arg(long)]
    rack: Option<String>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only for a terminal: log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    // The message and its causes, one line, never a backtrace: this is what a user reads.
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Topics { command, connect } => run_client(cli::topics::run(command, &connect)),
        Command::Groups { command, connect } => run_client(cli::groups::run(command, &connect)),
        Command::Cluster {
            command: ClusterCommand::Status,
            connect,
        } => run_client(cli::data::cluster_status(&connect)),
        Command::Produce { args, connect } => run_client(cli::data::produce(args, &connect)),
        Command::Consume { args, connect } => run_client(cli::data::consume(args, &connect)),
    }
}

/// Runs an admin verb on a small runtime.
fn run_client(verb: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(verb)
}

fn serve(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::from_toml_file(path).map_err(anyhow::Error::msg)?,
        None => BrokerConfig::default(),
    };
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(advertised) = args.advertised_listener {
        config.advertised_listener = Some(advertised);
    }
    if let Some(admin_listen) = args.admin_listen {
        config.admin_listen = match admin_listen.as_str() {
            "off" => None,
            address => Some(address.parse().with_context(|| {
                format!("--admin-listen {address:?} is not HOST:PORT or \"off\"")
            })?),
        };
    }
    if let Some(node_id) = args.node_id {
        config.node_id = node_id;
    }
    if let Some(consul) = args.consul {
        config.cluster.consul = Some(consul);
    }
    if let Some(rack) = args.rack {
        config.cluster.rack = Some(rack);
    }
    config.validate().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = config.listen;
        let data_dir = config.data_dir.clone();
        let node_id = config.node_id;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (is another broker running there? use --listen HOST:PORT)"))?;
        // With port 0 the kernel picks one: clients must be told the real address.
        config.listen = listener.local_addr().context("reading the bound address")?;
        let admin = match config.admin_listen {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| {
                format!("cannot listen on {address} for the admin endpoints (use --admin-listen HOST:PORT or off)")
            })?),
            None => None,
        };
        let admin_address = admin.as_ref().and_then(|admin| admin.local_addr().ok());
        let consul = config.cluster.consul.clone();
        let node = Node::start(config, Arc::new(SystemClock), listener, admin)
            .await
            .map_err(|error| {
                let hint = match (&error, &consul) {
                    (NodeError::DataDirInUse(_), _) => {
                        "stop the other lmq serve, or give this one another --data-dir".to_owned()
                    }
                    (NodeError::Open(_) | NodeError::Lock { .. }, _) => {
                        format!("data dir {}", data_dir.display())
                    }
                    (_, Some(address)) => format!(
                        "Consul at {address} (is the agent running? use --consul http://HOST:PORT)"
                    ),
                    (_, None) => format!(
                        "embedded coordinator in {} (is another lmq serve using this data dir? use --data-dir)",
                        data_dir.join(lmq_broker::cluster::EMBEDDED_DIR).display()
                    ),
                };
                anyhow::Error::new(error).context(format!("cannot start: {hint}"))
            })?;
        tracing::info!(
            listen = %node.broker.config.listen,
            node_id,
            data_dir = %data_dir.display(),
            admin = ?admin_address,
            cluster = consul.as_deref().unwrap_or("embedded"),
            "lmq ready"
        );
        wait_for_signal().await;
        tracing::info!("shutting down");
        node.stop().await;
        tracing::info!("stopped; logs flushed");
        Ok(())
    })
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
