//! A running broker: its data dir opened, joined to its cluster (the embedded coordinator by
//! default, Consul when configured) and serving on its listeners. What `lmq serve` runs, and
//! what the in-process tests start.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lmq_coord::{CoordError, Coordinator};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::broker::Broker;
use crate::clock::Clock;
use crate::cluster::ClusterNode;
use crate::cluster::store::StoreError;
use crate::config::BrokerConfig;
use crate::topics::TopicError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {0} is in use by another lmq process")]
    DataDirInUse(PathBuf),
    #[error("cannot lock the data dir at {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the coordinator")]
    Coordinator(#[source] CoordError),
    #[error("cannot open the data dir")]
    Open(#[from] TopicError),
    #[error("cannot join the cluster")]
    Join(#[from] StoreError),
    #[error("listeners: {0}")]
    Listeners(String),
    #[error("TLS listener")]
    Tls(#[from] crate::security::tls::TlsError),
}

impl NodeError {
    /// The coordinator's error behind this one, if that is what stopped the start.
    pub fn coordinator_error(&self) -> Option<&CoordError> {
        match self {
            NodeError::Coordinator(error) | NodeError::Join(StoreError::Coordinator(error)) => {
                Some(error)
            }
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Node {
    pub broker: Arc<Broker>,
    /// The cluster this node serves in (a cluster of one with the embedded coordinator).
    pub cluster: Arc<ClusterNode>,
    pub coordinator: Arc<dyn Coordinator>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    /// The cluster's tasks (watches, controller campaign, ISR persistence, fetchers).
    cluster_tasks: JoinSet<()>,
    /// Held while the node runs (the process's death releases it too).
    _data_dir_lock: Flock<File>,
}

/// The file a node locks in its data dir.
const DATA_DIR_LOCK_FILE: &str = "lmq.lock";

impl Node {
    /// Locks the data dir, opens the coordinator, then the data dir, and joins the cluster
    /// before serving, so the first answers already describe the cluster. The lock comes
    /// first: a second broker on the data dir (embedded or with Consul) stops there, before it
    /// registers or could recover (and truncate) logs the first one is writing. `sockets`
    /// are bound for the config's listeners, in their order (`listeners::resolve`).
    pub async fn start(
        config: BrokerConfig,
        clock: Arc<dyn Clock>,
        sockets: Vec<TcpListener>,
        admin: Option<TcpListener>,
    ) -> Result<Node, NodeError> {
        let listeners = bind_listeners(&config, sockets)?;
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let coordinator = crate::cluster::open_coordinator(&config)
            .await
            .map_err(NodeError::Coordinator)?;
        let broker = Arc::new(Broker::open(config, clock)?);
        let (stop, shutdown) = watch::channel(false);
        let mut cluster_tasks = JoinSet::new();
        let cluster = crate::cluster::join(
            Arc::clone(&broker),
            Arc::clone(&coordinator),
            shutdown.clone(),
            &mut cluster_tasks,
        )
        .await?;
        let server = tokio::spawn(crate::server::run(
            Arc::clone(&broker),
            Arc::clone(&cluster),
            listeners,
            admin,
            shutdown,
        ));
        Ok(Node {
            broker,
            cluster,
            coordinator,
            stop,
            server,
            cluster_tasks,
            _data_dir_lock: data_dir_lock,
        })
    }

    /// Graceful stop: every connection finishes its request, every log is closed, and the
    /// node leaves the cluster at once (others need not wait for its registration to expire).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        crate::upkeep::join_within(
            self.cluster_tasks,
            Duration::from_millis(crate::upkeep::STOP_TASKS_MS_MAX),
        )
        .await;
        if let Err(error) = self.coordinator.close().await {
            tracing::warn!(%error, "leaving the cluster coordinator failed");
        }
        release(self.broker, self.coordinator).await;
    }

    /// A crash as far as the logs know (tests): the server is dropped mid-flight and no log is
    /// closed or checkpointed. The background tasks end and the coordinator is released, as
    /// the death of the process would, so the data dir can be opened again.
    pub async fn crash(mut self) {
        self.server.abort();
        let _ = self.server.await;
        let _ = self.stop.send(true);
        self.cluster_tasks.shutdown().await;
        if let Err(error) = self.coordinator.close().await {
            tracing::warn!(%error, "releasing the cluster coordinator failed");
        }
        release(self.broker, self.coordinator).await;
    }
}

/// Pairs each socket with its listener, and builds the TLS of the SSL listeners (one
/// certificate for all).
pub fn bind_listeners(
    config: &BrokerConfig,
    sockets: Vec<TcpListener>,
) -> Result<Vec<crate::server::Bound>, NodeError> {
    let listeners = config.listeners().map_err(NodeError::Listeners)?;
    if listeners.len() != sockets.len() {
        return Err(NodeError::Listeners(format!(
            "{} listeners configured, {} sockets bound",
            listeners.len(),
            sockets.len()
        )));
    }
    for listener in &listeners {
        if listener.protocol == crate::listeners::SecurityProtocol::Plaintext
            && !listener.bind.ip().is_loopback()
        {
            tracing::warn!(
                listener = listener.name,
                bind = %listener.bind,
                "PLAINTEXT listener on a non-loopback address: anyone who reaches it can read, \
                 write and delete every topic (no authentication, no ACLs); bind 127.0.0.1 or \
                 use an SSL listener"
            );
        }
    }
    let tls = if listeners.iter().any(|listener| listener.protocol.tls()) {
        Some(Arc::new(crate::security::tls::TlsServer::new(&config.tls)?))
    } else {
        None
    };
    Ok(listeners
        .into_iter()
        .zip(sockets)
        .map(|(listener, socket)| crate::server::Bound {
            tls: tls.clone().filter(|_| listener.protocol.tls()),
            socket,
            listener,
        })
        .collect())
}

/// Locks `dir` (creating it) for this node; refused while another process, or another node
/// of this one, holds it.
fn lock_data_dir(dir: &Path) -> Result<Flock<File>, NodeError> {
    let path = dir.join(DATA_DIR_LOCK_FILE);
    let failed = |source: std::io::Error| NodeError::Lock {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(failed)?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(failed)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => NodeError::DataDirInUse(dir.to_path_buf()),
        other => failed(other.into()),
    })
}

/// How often, and how many times, a stopped node checks that its tasks let go of the broker
/// (5 s in all).
const RELEASE_POLL_INTERVAL: Duration = Duration::from_millis(10);
const RELEASE_POLLS_MAX: u32 = 500;

/// Waits (boundedly) for the background tasks to drop their handles on the broker, which
/// holds the embedded coordinator's lock on the data dir.
async fn release(broker: Arc<Broker>, coordinator: Arc<dyn Coordinator>) {
    drop(coordinator);
    for _ in 0..RELEASE_POLLS_MAX {
        if Arc::strong_count(&broker) == 1 {
            return;
        }
        tokio::time::sleep(RELEASE_POLL_INTERVAL).await;
    }
    tracing::warn!("background tasks still hold the broker after its stop");
}
