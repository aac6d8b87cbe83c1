//! The contract suite against the embedded coordinator, plus its own guarantees:
//! persistence across reopen, one process per data dir, poisoning after a failed write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use contract::{Harness, Holder, HolderAction};
use lmq_coord::{
    BrokerRegistration, CoordError, Coordinator, EmbeddedCoordinator, EmbeddedStore, HealthCheck,
    LeaderInfo, LockGuard,
};

struct Embedded {
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

impl Embedded {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Embedded {
            store: EmbeddedStore::open(dir.path()).unwrap(),
            _dir: dir,
        }
    }
}

/// Dies by dropping its client: everything it held is released at once.
struct EmbeddedHolder {
    client: Option<EmbeddedCoordinator>,
    held: Vec<Box<dyn std::any::Any + Send>>,
    token: u64,
}

impl Holder for EmbeddedHolder {
    fn token(&self) -> u64 {
        self.token
    }
    async fn kill(mut self) {
        // The client goes first, so nothing is released by the handles' own drops.
        drop(self.client.take());
        self.held.clear();
    }
}

impl Harness for Embedded {
    type Holder = EmbeddedHolder;

    async fn client(&self) -> Box<dyn Coordinator> {
        Box::new(self.store.client())
    }

    async fn holder(&self, action: HolderAction) -> EmbeddedHolder {
        let client = self.store.client();
        let wait = Duration::from_secs(5);
        let (held, token): (Box<dyn std::any::Any + Send>, u64) = match action {
            HolderAction::Campaign { role, candidate } => {
                let leadership = client.campaign(&role, &candidate, wait).await.unwrap();
                let token = leadership.token().value();
                (Box::new(leadership), token)
            }
            HolderAction::Lock { name } => {
                let guard: LockGuard = client.lock(&name, wait).await.unwrap();
                let token = guard.token().value();
                (Box::new(guard), token)
            }
            HolderAction::Register { broker_id, ttl } => {
                let registration = BrokerRegistration {
                    listeners: Vec::new(),
                    broker_id,
                    host: "127.0.0.1".into(),
                    port: 9000 + u16::try_from(broker_id).unwrap(),
                    rack: None,
                    health: HealthCheck::Ttl { ttl },
                };
                client.register_broker(&registration).await.unwrap();
                (Box::new(()), 0)
            }
        };
        EmbeddedHolder {
            client: Some(client),
            held: vec![held],
            token,
        }
    }

    fn takeover_bound(&self) -> Duration {
        // In-process death is noticed at once.
        Duration::from_millis(500)
    }
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                contract::$name(&Embedded::new()).await;
            }
        )*
    };
}

contract::for_every_contract_test!(contract_tests);

#[tokio::test]
async fn keys_versions_and_fencing_tokens_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (version, token) = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let client = store.client();
        client.put("cluster/id", b"abc").await.unwrap();
        let version = client.put("topics/t", &[1, 2, 3]).await.unwrap();
        let leadership = client
            .campaign("controller", b"1", Duration::from_secs(1))
            .await
            .unwrap();
        (version, leadership.token().value())
    };
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let client = store.client();
    let entry = client.get("topics/t").await.unwrap().unwrap();
    assert_eq!((entry.value, entry.version), (vec![1, 2, 3], version));
    assert_eq!(client.list("").await.unwrap().len(), 2);
    // Leadership is not persisted (its holder is gone with the process)...
    assert_eq!(
        client.leader("controller").await.unwrap(),
        None::<LeaderInfo>
    );
    // ...but the counter is: the next leader's token is larger than every earlier one.
    let leadership = client
        .campaign("controller", b"2", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(leadership.token().value() > token);
    assert!(client.put("x", b"y").await.unwrap().0 > leadership.token().value());
}

#[tokio::test]
async fn a_failed_write_poisons_the_store_and_is_not_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("coord")).unwrap();
    let client = store.client();
    client.put("k", b"durable").await.unwrap();
    std::fs::remove_dir_all(dir.path().join("coord")).unwrap();
    assert!(matches!(
        client.put("k", b"lost").await,
        Err(CoordError::Io { .. })
    ));
    assert_eq!(client.get("k").await.unwrap().unwrap().value, b"durable");
    assert!(matches!(
        client.put("k", b"again").await,
        Err(CoordError::Poisoned)
    ));
    assert!(matches!(
        client.campaign("r", b"", Duration::from_millis(10)).await,
        Err(CoordError::Poisoned)
    ));
}

const CHILD_ENV: &str = "LMQ_COORD_EMBEDDED_CHILD_DIR";

/// Not a test of its own: the body of the child process of `one_process_per_data_dir`
/// (the test binary re-executes itself with `CHILD_ENV` set).
#[test]
fn child_process_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let _store = EmbeddedStore::open(std::path::Path::new(&dir)).unwrap();
    println!("LMQ-CHILD-READY");
    // Bounded: an orphan does not outlive the test run by much.
    std::thread::sleep(Duration::from_secs(60));
}

fn spawn_child(dir: &std::path::Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if line.contains("LMQ-CHILD-READY") {
                let _ = sender.send(());
            }
        }
    });
    receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("child ready");
    child
}

#[test]
fn one_process_per_data_dir_and_a_killed_owner_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path());
    match EmbeddedStore::open(dir.path()) {
        Err(CoordError::DirLocked { .. }) => {}
        other => panic!("the child owns the dir: {other:?}"),
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    EmbeddedStore::open(dir.path()).expect("the kernel released the dead owner's lock");
}
