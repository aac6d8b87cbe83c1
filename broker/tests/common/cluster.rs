//! Several brokers in one process, sharing one embedded coordinator: a replicated cluster
//! without Consul, for tests of what followers do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lmq_broker::clock::SystemClock;
use lmq_broker::{Broker, BrokerConfig};
use lmq_coord::{Coordinator, EmbeddedStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::TestClient;

pub struct ClusterBroker {
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
    pub cluster: Arc<lmq_broker::cluster::ClusterNode>,
    server: JoinHandle<()>,
    tasks: tokio::task::JoinSet<()>,
}

impl ClusterBroker {
    pub async fn client(&self) -> TestClient {
        TestClient {
            stream: tokio::net::TcpStream::connect(self.addr).await.unwrap(),
            next_correlation: 1,
        }
    }
}

pub struct TestCluster {
    pub brokers: Vec<ClusterBroker>,
    stop: watch::Sender<bool>,
    _store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// `count` brokers (node ids 0..count), topics created with `count` replicas.
    pub async fn start(count: i32) -> TestCluster {
        Self::start_with(count, |_, config| config).await
    }

    /// Like [`TestCluster::start`], each broker's config (data dir under the cluster's temp
    /// dir) changed by `adjust` first.
    pub async fn start_with(
        count: i32,
        adjust: impl Fn(i32, BrokerConfig) -> BrokerConfig,
    ) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("coordinator")).unwrap();
        let (stop, shutdown) = watch::channel(false);
        let mut brokers = Vec::new();
        for node_id in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut config = BrokerConfig {
                data_dir: dir.path().join(format!("broker-{node_id}")),
                listen: addr,
                node_id,
                ..BrokerConfig::default()
            };
            config.cluster.default_replication_factor = i16::try_from(count).unwrap();
            let config = adjust(node_id, config);
            let broker = Arc::new(Broker::open(config, Arc::new(SystemClock)).unwrap());
            let coordinator: Arc<dyn Coordinator> = Arc::new(store.client());
            let mut tasks = tokio::task::JoinSet::new();
            let cluster = lmq_broker::cluster::join(
                Arc::clone(&broker),
                coordinator,
                shutdown.clone(),
                &mut tasks,
            )
            .await
            .unwrap();
            let listeners =
                lmq_broker::node::bind_listeners(&broker.config, vec![listener]).unwrap();
            let server = tokio::spawn(lmq_broker::server::run(
                Arc::clone(&broker),
                Arc::clone(&cluster),
                listeners,
                None,
                shutdown.clone(),
            ));
            brokers.push(ClusterBroker {
                addr,
                broker,
                cluster,
                server,
                tasks,
            });
        }
        TestCluster {
            brokers,
            stop,
            _store: store,
            _dir: dir,
        }
    }

    /// Waits (up to 20 s) until every broker sees all `count` brokers alive.
    pub async fn wait_for_brokers(&self) {
        let count = self.brokers.len();
        for _ in 0..200 {
            if self
                .brokers
                .iter()
                .all(|member| member.cluster.view().live_brokers().len() == count)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the brokers never saw each other");
    }

    /// The broker leading `topic`'s partition `index` once one does, and a follower of it.
    pub async fn leader_and_follower(&self, topic: &str, index: i32) -> (usize, usize) {
        for _ in 0..200 {
            let leader = self.brokers.iter().position(|member| {
                member
                    .broker
                    .topics
                    .get(topic)
                    .and_then(|topic| {
                        topic
                            .partitions
                            .get(usize::try_from(index).unwrap())
                            .cloned()
                    })
                    .is_some_and(|partition| partition.is_leader())
            });
            if let Some(leader) = leader {
                return (leader, (leader + 1) % self.brokers.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{topic}-{index} never got a leader");
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for member in self.brokers {
            let _ = member.server.await;
            member.tasks.join_all().await;
        }
    }
}
