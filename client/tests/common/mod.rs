//! The brokers the client tests run against: always an in-process LMQ on port 0, and Apache
//! Kafka too when `LMQ_KAFKA_BOOTSTRAP` names one (scripts/test.sh starts one with
//! scripts/kafka.sh). The same test bodies run against each.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lmq::ClientConfig;
use lmq_broker::BrokerConfig;
use lmq_broker::clock::SystemClock;
use lmq_broker::node::Node;
use tokio::net::TcpListener;

pub enum Target {
    Lmq {
        address: String,
        node: Node,
        _dir: tempfile::TempDir,
    },
    Kafka {
        address: String,
    },
}

impl Target {
    pub fn address(&self) -> &str {
        match self {
            Target::Lmq { address, .. } | Target::Kafka { address } => address,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Lmq { .. } => "lmq",
            Target::Kafka { .. } => "kafka",
        }
    }

    pub fn client(&self) -> ClientConfig {
        ClientConfig {
            brokers: vec![self.address().to_string()],
            ..ClientConfig::default()
        }
    }

    pub async fn finish(self) {
        if let Target::Lmq { node, .. } = self {
            node.stop().await;
        }
    }
}

pub async fn lmq() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: address,
        ..BrokerConfig::default()
    };
    config.group.initial_rebalance_delay_ms = 0;
    let node = Node::start(config, Arc::new(SystemClock), vec![listener], None)
        .await
        .unwrap();
    Target::Lmq {
        address: address.to_string(),
        node,
        _dir: dir,
    }
}

/// LMQ, then Kafka when configured.
pub async fn targets() -> Vec<Target> {
    let mut targets = vec![lmq().await];
    if let Ok(address) = std::env::var("LMQ_KAFKA_BOOTSTRAP") {
        targets.push(Target::Kafka { address });
    }
    targets
}

/// A name no earlier run used on a long-lived broker (Kafka keeps topics between runs).
pub fn unique(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "{name}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
