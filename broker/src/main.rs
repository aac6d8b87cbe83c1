//! `lmq`: the LMQ broker binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use lmq_broker::clock::SystemClock;
use lmq_broker::{Broker, BrokerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// LMQ: a lightweight message queue that speaks the Kafka protocol.
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
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
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
        let admin = match config.admin_listen {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| {
                format!("cannot listen on {address} for the admin endpoints (use --admin-listen HOST:PORT or off)")
            })?),
            None => None,
        };
        let admin_address = admin.as_ref().and_then(|admin| admin.local_addr().ok());
        let broker = Arc::new(
            Broker::open(config, Arc::new(SystemClock))
                .with_context(|| format!("cannot open data dir {}", data_dir.display()))?,
        );
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        tracing::info!(
            listen = %listener.local_addr().unwrap_or(listen),
            node_id,
            data_dir = %data_dir.display(),
            admin = ?admin_address,
            "lmq ready"
        );
        lmq_broker::server::run(broker, listener, admin, shutdown).await;
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
