//! Topic set-up, log-end counts and start-up timing.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use lmq::{Admin, ClientConfig, OffsetSpec};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub topic: TopicArgs,
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Topic config `NAME=VALUE` (repeatable), e.g. `flush.messages=1` on Apache Kafka.
    #[arg(long = "config")]
    pub configs: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[arg(long, default_value_t = 120.0)]
    pub timeout_s: f64,
}

#[derive(Debug, clap::Args)]
pub struct StartupArgs {
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Where the broker's stdout and stderr go.
    #[arg(long)]
    pub log: PathBuf,
    /// The broker command line, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn client_config(bootstrap: &str) -> ClientConfig {
    ClientConfig {
        brokers: vec![bootstrap.to_string()],
        client_id: "lmq-perf".to_string(),
        request_timeout: Duration::from_secs(30),
        allow_auto_create_topics: false,
        ..ClientConfig::default()
    }
}

pub async fn create_topic(args: CreateArgs) -> Result<String> {
    let mut configs = BTreeMap::new();
    for config in &args.configs {
        let (name, value) = config
            .split_once('=')
            .with_context(|| format!("--config {config}: expected NAME=VALUE"))?;
        configs.insert(name.to_string(), value.to_string());
    }
    create_and_wait(
        &args.topic.bootstrap,
        &args.topic.topic,
        args.partitions,
        &configs,
    )
    .await?;
    Ok(json!({"topic": args.topic.topic, "partitions": args.partitions}).to_string())
}

/// Creates `topic` (it must be new) and waits until metadata shows every partition led and
/// every leader answers ListOffsets for it (Apache Kafka names leaders before they serve).
pub async fn create_and_wait(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &BTreeMap<String, String>,
) -> Result<()> {
    let admin = Admin::connect(client_config(bootstrap)).await?;
    admin
        .create_topic(topic, partitions, 1, configs)
        .await
        .with_context(|| format!("creating topic {topic} on {bootstrap}"))?;
    let deadline = crate::now() + Duration::from_secs(30);
    loop {
        if let Ok(info) = admin.describe_topic(topic).await
            && info.partitions.len() == usize::try_from(partitions).unwrap_or(0)
            && info
                .partitions
                .iter()
                .all(|partition| partition.leader >= 0)
        {
            return Ok(());
        }
        if crate::now() > deadline {
            bail!("topic {topic} has no leader for every partition after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sum of the log end offsets of `topic`'s partitions: records stored (topics start at 0).
pub async fn log_end_total(bootstrap: &str, topic: &str) -> Result<i64> {
    let admin = Admin::connect(client_config(bootstrap)).await?;
    let offsets = admin.list_offsets(topic, OffsetSpec::Latest).await?;
    Ok(offsets.iter().map(|(_, offset)| offset).sum())
}

pub async fn offsets(args: TopicArgs) -> Result<String> {
    let total = log_end_total(&args.bootstrap, &args.topic).await?;
    Ok(json!({"topic": args.topic, "log_end_total": total}).to_string())
}

/// One Metadata round trip on a new connection that names at least one broker.
async fn metadata_answers(bootstrap: &str) -> bool {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(2),
        ..client_config(bootstrap)
    };
    match Admin::connect(config).await {
        Ok(admin) => !admin.cluster().brokers().await.is_empty(),
        Err(_) => false,
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "printed for scripts that compare it with other processes' wall clocks"
)]
fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros())
}

pub async fn wait_metadata(args: WaitArgs) -> Result<String> {
    let deadline = crate::now() + Duration::from_secs_f64(args.timeout_s);
    while !metadata_answers(&args.bootstrap).await {
        if crate::now() > deadline {
            bail!(
                "{} did not answer Metadata within {} s",
                args.bootstrap,
                args.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(json!({"ready_unix_us": unix_micros().to_string()}).to_string())
}

pub async fn startup(args: StartupArgs) -> Result<String> {
    let (program, rest) = args
        .command
        .split_first()
        .context("no broker command given")?;
    // Another broker already on the address would answer for this one.
    if tokio::net::TcpStream::connect(&args.wait.bootstrap)
        .await
        .is_ok()
    {
        bail!(
            "{} is already in use: pick a free port",
            args.wait.bootstrap
        );
    }
    let log = File::create(&args.log).with_context(|| format!("creating {:?}", args.log))?;
    let started = crate::now();
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let deadline = started + Duration::from_secs_f64(args.wait.timeout_s);
    while !metadata_answers(&args.wait.bootstrap).await {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{program} exited during start-up ({status}); its output is in {:?}",
                args.log
            );
        }
        if crate::now() > deadline {
            child.kill()?;
            bail!(
                "{program} did not answer Metadata within {} s",
                args.wait.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = started.elapsed();
    Ok(json!({
        "startup_ms": elapsed.as_secs_f64() * 1e3,
        "pid": child.id(),
    })
    .to_string())
}
