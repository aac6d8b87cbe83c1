//! `lmq`: the LMQ broker binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use lmq_broker::BrokerConfig;
use lmq_broker::cli;
use lmq_broker::clock::SystemClock;
use lmq_broker::config::{ConsulAccess, Secret};
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
    Serve(Box<ServeArgs>),
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
    /// SCRAM users of SASL listeners: list, set a password, delete.
    ///
    /// Example: lmq users set-scram alice --password-file alice.pw
    Users {
        #[command(subcommand)]
        command: cli::users::UsersCommand,
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
    /// File whose first line is the bearer token /metrics and /v1/status require
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Kafka's listeners, replacing --listen: NAME://HOST:PORT,... (e.g.
    /// PLAINTEXT://127.0.0.1:9092,SSL://0.0.0.0:9093)
    #[arg(long, value_delimiter = ',')]
    listeners: Vec<String>,
    /// Kafka's advertised.listeners: NAME://HOST:PORT,... [default: each listener's address]
    #[arg(long, value_delimiter = ',')]
    advertised_listeners: Vec<String>,
    /// Kafka's listener.security.protocol.map: NAME:PROTOCOL,... (PLAINTEXT, SSL)
    #[arg(long, value_delimiter = ',')]
    listener_security_protocol_map: Vec<String>,
    /// The listener other brokers use [default: the first]
    #[arg(long)]
    inter_broker_listener_name: Option<String>,
    /// PEM certificate chain of the SSL listeners
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file
    #[arg(long)]
    tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that sign client certificates (mutual TLS)
    #[arg(long)]
    tls_ca_file: Option<PathBuf>,
    /// Client certificates: none, requested or required (Kafka's ssl.client.auth)
    #[arg(long)]
    tls_client_auth: Option<String>,
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
    /// Consul ACL token [env: CONSUL_HTTP_TOKEN]; --consul-token-file keeps it out of the
    /// process list
    #[arg(long, value_name = "TOKEN")]
    consul_token: Option<String>,
    /// File holding the Consul ACL token [env: CONSUL_HTTP_TOKEN_FILE]
    #[arg(long, value_name = "FILE")]
    consul_token_file: Option<PathBuf>,
    /// PEM CA file for an https:// Consul address [env: CONSUL_CACERT]
    #[arg(long, value_name = "FILE")]
    consul_ca_file: Option<PathBuf>,
    /// PEM client certificate for Consul [env: CONSUL_CLIENT_CERT]
    #[arg(long, value_name = "FILE")]
    consul_cert_file: Option<PathBuf>,
    /// PEM key of the client certificate [env: CONSUL_CLIENT_KEY]
    #[arg(long, value_name = "FILE")]
    consul_key_file: Option<PathBuf>,
    /// This broker's rack: replicas of a partition go to different racks
    #[arg(long)]
    rack: Option<String>,
    /// Check requests against ACLs: "none" or "standard" (Kafka's StandardAuthorizer)
    /// [default: none]
    #[arg(long, value_name = "KIND")]
    authorizer: Option<String>,
    /// Principals allowed everything, separated by ';' as Kafka's super.users
    /// (e.g. "User:admin;User:ops")
    #[arg(long, value_name = "PRINCIPALS")]
    super_users: Option<String>,
    /// Open resources that have no ACL at all to everyone (allow.everyone.if.no.acl.found)
    #[arg(long)]
    allow_everyone_if_no_acl_found: bool,
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
        Command::Serve(args) => serve(*args),
        Command::Topics { command, connect } => run_client(cli::topics::run(command, &connect)),
        Command::Groups { command, connect } => run_client(cli::groups::run(command, &connect)),
        Command::Users { command, connect } => run_client(cli::users::run(command, &connect)),
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
    serve_with(serve_config(args, &|name| std::env::var(name).ok())?)
}

/// The broker's settings: defaults, the config file, the environment (Consul's variables),
/// then the flags.
fn serve_config(args: ServeArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<BrokerConfig> {
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
    if let Some(file) = args.admin_token_file {
        config.admin_token_file = Some(file);
    }
    if !args.listeners.is_empty() {
        config.listeners = args.listeners;
    }
    if !args.advertised_listeners.is_empty() {
        config.advertised_listeners = args.advertised_listeners;
    }
    for entry in args.listener_security_protocol_map {
        let (name, protocol) = entry.split_once(':').with_context(|| {
            format!("--listener-security-protocol-map item {entry:?} is not NAME:PROTOCOL")
        })?;
        config
            .listener_security_protocol_map
            .insert(name.to_string(), protocol.to_string());
    }
    if let Some(name) = args.inter_broker_listener_name {
        config.inter_broker_listener_name = Some(name);
    }
    let tls_files = [
        (args.tls_cert_file, &mut config.tls.cert_file),
        (args.tls_key_file, &mut config.tls.key_file),
        (args.tls_ca_file, &mut config.tls.ca_file),
    ];
    for (file, setting) in tls_files {
        if file.is_some() {
            *setting = file;
        }
    }
    if let Some(auth) = args.tls_client_auth {
        config.tls.client_auth = match auth.as_str() {
            "none" => lmq_broker::security::tls::ClientAuth::None,
            "requested" => lmq_broker::security::tls::ClientAuth::Requested,
            "required" => lmq_broker::security::tls::ClientAuth::Required,
            other => {
                anyhow::bail!("--tls-client-auth {other:?} is not none, requested or required")
            }
        };
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
    if let Some(kind) = args.authorizer {
        config.authorizer = match kind.as_str() {
            "none" => lmq_broker::security::acl::AuthorizerKind::None,
            "standard" => lmq_broker::security::acl::AuthorizerKind::Standard,
            other => anyhow::bail!("--authorizer {other:?} is not \"none\" or \"standard\""),
        };
    }
    if let Some(principals) = args.super_users {
        config.super_users = principals
            .split(';')
            .map(str::trim)
            .filter(|principal| !principal.is_empty())
            .map(str::to_string)
            .collect();
    }
    if args.allow_everyone_if_no_acl_found {
        config.allow_everyone_if_no_acl_found = true;
    }
    // Flag > environment > config file. The environment counts only with Consul: a
    // CONSUL_HTTP_TOKEN exported for the consul CLI must not stop a single node.
    if config.cluster.consul.is_some() {
        config
            .cluster
            .override_consul_access(ConsulAccess::from_env(env));
    }
    config.cluster.override_consul_access(ConsulAccess {
        token: args.consul_token.map(Secret::new),
        token_file: args.consul_token_file,
        ca_file: args.consul_ca_file,
        cert_file: args.consul_cert_file,
        key_file: args.consul_key_file,
    });
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

fn serve_with(mut config: BrokerConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let node_id = config.node_id;
        let mut sockets = Vec::new();
        let listeners = config.listeners().map_err(anyhow::Error::msg)?;
        for (index, listener) in listeners.iter().enumerate() {
            let bind = listener.bind;
            let socket = TcpListener::bind(bind).await.with_context(|| {
                format!(
                    "cannot listen on {bind} for listener {} (is another broker running there? \
                     use --listen HOST:PORT or --listeners NAME://HOST:PORT)",
                    listener.name
                )
            })?;
            // With port 0 the kernel picks one: clients must be told the real address.
            let bound = socket.local_addr().context("reading the bound address")?;
            config.record_bound(index, bound);
            sockets.push(socket);
        }
        let admin = match config.admin_listen {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| {
                format!("cannot listen on {address} for the admin endpoints (use --admin-listen HOST:PORT or off)")
            })?),
            None => None,
        };
        let admin_address = admin.as_ref().and_then(|admin| admin.local_addr().ok());
        let consul = config.cluster.consul.clone();
        let node = Node::start(config, Arc::new(SystemClock), sockets, admin)
            .await
            .map_err(|error| {
                let coord_error = error.coordinator_error();
                let hint = match (&error, &consul) {
                    (_, Some(address))
                        if matches!(coord_error, Some(lmq_coord::CoordError::AclDenied { .. })) =>
                    {
                        format!(
                            "Consul at {address} refused the request (give lmq serve an ACL \
                             token: --consul-token-file, --consul-token, CONSUL_HTTP_TOKEN or \
                             cluster.consul_token)"
                        )
                    }
                    (_, Some(address))
                        if matches!(
                            coord_error,
                            Some(lmq_coord::CoordError::TlsFile { .. })
                        ) =>
                    {
                        format!(
                            "TLS to Consul at {address} (check --consul-ca-file, \
                             --consul-cert-file, --consul-key-file)"
                        )
                    }
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
        // What was bound, ports the kernel chose included (scripts read `listen=`).
        let listeners = node.broker.config.listeners().unwrap_or_default();
        tracing::info!(
            listen = %listeners.first().map(|listener| listener.bind.to_string()).unwrap_or_default(),
            listeners = %listeners
                .iter()
                .map(|listener| format!("{}://{}", listener.name, listener.bind))
                .collect::<Vec<_>>()
                .join(","),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let line = ["lmq", "serve"].iter().chain(flags);
        match Cli::try_parse_from(line).unwrap().command {
            Command::Serve(args) => *args,
            other => panic!("not serve: {other:?}"),
        }
    }

    /// The authorizer's settings from the config file, and the flags over them.
    #[test]
    fn authorizer_settings_from_the_config_file_and_flags() {
        use lmq_broker::security::acl::AuthorizerKind;
        let no_env = |_: &str| None;
        let defaults = serve_config(serve_args(&[]), &no_env).unwrap();
        assert_eq!(defaults.authorizer, AuthorizerKind::None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lmq.toml");
        std::fs::write(
            &file,
            "authorizer = \"standard\"\nsuper_users = [\"User:admin\"]\n",
        )
        .unwrap();
        let from_file =
            serve_config(serve_args(&["--config", file.to_str().unwrap()]), &no_env).unwrap();
        assert_eq!(from_file.authorizer, AuthorizerKind::Standard);
        assert_eq!(from_file.super_users, vec!["User:admin".to_string()]);
        assert!(!from_file.allow_everyone_if_no_acl_found);
        let flags = [
            "--config",
            file.to_str().unwrap(),
            "--authorizer",
            "none",
            "--super-users",
            "User:a; User:b",
            "--allow-everyone-if-no-acl-found",
        ];
        let flagged = serve_config(serve_args(&flags), &no_env).unwrap();
        assert_eq!(flagged.authorizer, AuthorizerKind::None);
        assert_eq!(
            flagged.super_users,
            vec!["User:a".to_string(), "User:b".to_string()]
        );
        assert!(flagged.allow_everyone_if_no_acl_found);
        // A super user that is not TYPE:NAME, an unknown kind: refused.
        assert!(serve_config(serve_args(&["--super-users", "admin"]), &no_env).is_err());
        assert!(serve_config(serve_args(&["--authorizer", "acl"]), &no_env).is_err());
    }

    /// The token (and TLS files) reach the Consul client's settings: flag over environment
    /// over config file, the environment only with Consul.
    #[test]
    fn consul_token_flag_beats_the_environment_which_beats_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lmq.toml");
        std::fs::write(
            &file,
            "[cluster]\nconsul_token = \"from-file\"\nconsul_ca_file = \"/file/ca.pem\"\n",
        )
        .unwrap();
        let config_flag = file.to_str().unwrap();
        let env = |name: &str| match name {
            "CONSUL_HTTP_TOKEN" => Some("from-env".to_string()),
            "CONSUL_CLIENT_CERT" => Some("/env/client.pem".to_string()),
            "CONSUL_CLIENT_KEY" => Some("/env/client-key.pem".to_string()),
            _ => None,
        };
        let no_env = |_: &str| None;
        let address = "https://127.0.0.1:8501";
        let consul = |flags: &[&str], env: &dyn Fn(&str) -> Option<String>| {
            let config = serve_config(serve_args(flags), env).unwrap();
            let cluster = &config.cluster;
            lmq_broker::cluster::consul_config(cluster, cluster.consul.as_deref().unwrap()).unwrap()
        };

        let with_flag = consul(
            &[
                "--config",
                config_flag,
                "--consul",
                address,
                "--consul-token",
                "T",
                "--consul-key-file",
                "/flag/key.pem",
            ],
            &env,
        );
        assert_eq!(with_flag.address, address);
        assert_eq!(with_flag.token.as_deref(), Some("T"));
        assert_eq!(with_flag.ca_file, Some(PathBuf::from("/file/ca.pem")));
        assert_eq!(with_flag.cert_file, Some(PathBuf::from("/env/client.pem")));
        assert_eq!(with_flag.key_file, Some(PathBuf::from("/flag/key.pem")));

        let from_env = consul(&["--config", config_flag, "--consul", address], &env);
        assert_eq!(from_env.token.as_deref(), Some("from-env"));
        let from_file = consul(&["--config", config_flag, "--consul", address], &no_env);
        assert_eq!(from_file.token.as_deref(), Some("from-file"));

        // A token file given by flag wins over the environment's token and is read.
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "from-token-file\n").unwrap();
        let from_token_file = consul(
            &[
                "--consul",
                address,
                "--consul-token-file",
                token_file.to_str().unwrap(),
            ],
            &env,
        );
        assert_eq!(from_token_file.token.as_deref(), Some("from-token-file"));

        // Without Consul the environment is not read (a single node starts), a flag is refused.
        let single = serve_config(serve_args(&[]), &env).unwrap();
        assert_eq!(single.cluster.consul_token, None);
        assert!(serve_config(serve_args(&["--consul-token", "T"]), &no_env).is_err());
    }
}
