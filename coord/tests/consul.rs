//! The contract suite against a real Consul, and what only a real cluster can show.
//!
//! Needs running agents (scripts/test.sh starts them through scripts/consul.sh):
//! - `LMQ_CONSUL_HTTP`: http address of a dev agent (the contract suite);
//! - `LMQ_CONSUL_CLUSTER`: comma-separated http addresses of the 3-server cluster and
//!   `LMQ_CONSUL_CLUSTER_DIR`: its directory (for `consul.sh cluster kill-leader` etc.).
//!
//! - `LMQ_CONSUL_ACL_HTTP`, `LMQ_CONSUL_ACL_HTTPS`, `LMQ_CONSUL_ACL_TOKEN`,
//!   `LMQ_CONSUL_ACL_CA_FILE`, `LMQ_CONSUL_ACL_CERT_FILE`, `LMQ_CONSUL_ACL_KEY_FILE`: a dev
//!   agent with ACLs on (default deny) and an https listener that wants a client certificate,
//!   and the token of LMQ's policy (`scripts/consul.sh dev start DIR --acl --tls` writes them
//!   to `DIR/env`).
//!
//! Without them every test says on stderr that it did not run and why, and passes.
//! Run with `--test-threads=1`: the cluster tests kill and restart servers.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contract::{Harness, Holder, HolderAction, report};
use lmq_coord::{
    BrokerRegistration, ConsulConfig, ConsulCoordinator, CoordError, Coordinator, FencingToken,
    HealthCheck, HoldState, LossReason,
};

const SESSION_TTL: Duration = Duration::from_secs(10);
const LOCK_DELAY: Duration = Duration::from_secs(1);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn dev_agent(test: &str) -> Option<String> {
    let address = env("LMQ_CONSUL_HTTP");
    if address.is_none() {
        report(&format!(
            "consul test {test} NOT RUN: LMQ_CONSUL_HTTP is unset (scripts/test.sh starts a \
             dev agent with scripts/consul.sh and sets it)"
        ));
    }
    address
}

struct Cluster {
    addresses: Vec<String>,
    dir: String,
}

fn cluster(test: &str) -> Option<Cluster> {
    match (env("LMQ_CONSUL_CLUSTER"), env("LMQ_CONSUL_CLUSTER_DIR")) {
        (Some(addresses), Some(dir)) => Some(Cluster {
            addresses: addresses.split(',').map(str::to_owned).collect(),
            dir,
        }),
        _ => {
            report(&format!(
                "consul test {test} NOT RUN: LMQ_CONSUL_CLUSTER / LMQ_CONSUL_CLUSTER_DIR are \
                 unset (scripts/test.sh starts a 3-server cluster with scripts/consul.sh)"
            ));
            None
        }
    }
}

/// What a client of a secured agent carries: ACL token and TLS files (none for the others).
#[derive(Debug, Clone, Default)]
struct Access {
    token: Option<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// The dev agent with ACLs (default deny) and TLS (client certificates required on https).
#[derive(Debug, Clone)]
struct Secured {
    http: String,
    https: String,
    token: String,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Secured {
    /// The TLS files without a token.
    fn tls(&self) -> Access {
        Access {
            token: None,
            ca_file: Some(self.ca_file.clone()),
            cert_file: Some(self.cert_file.clone()),
            key_file: Some(self.key_file.clone()),
        }
    }

    fn full(&self) -> Access {
        Access {
            token: Some(self.token.clone()),
            ..self.tls()
        }
    }

    /// A contract harness on the https address with token and certificates. Keys live under
    /// `lmq/`, services start with `lmq-broker`: what LMQ's policy allows.
    fn harness(&self) -> Consul {
        Consul {
            address: self.https.clone(),
            prefix: format!("lmq/{}", unique("test")),
            service: unique("lmq-broker"),
            access: self.full(),
        }
    }
}

const SECURED_VARS: [&str; 6] = [
    "LMQ_CONSUL_ACL_HTTP",
    "LMQ_CONSUL_ACL_HTTPS",
    "LMQ_CONSUL_ACL_TOKEN",
    "LMQ_CONSUL_ACL_CA_FILE",
    "LMQ_CONSUL_ACL_CERT_FILE",
    "LMQ_CONSUL_ACL_KEY_FILE",
];

fn secured_agent(test: &str) -> Option<Secured> {
    let values: Vec<Option<String>> = SECURED_VARS.iter().map(|name| env(name)).collect();
    if let [
        Some(http),
        Some(https),
        Some(token),
        Some(ca_file),
        Some(cert_file),
        Some(key_file),
    ] = values.as_slice()
    {
        return Some(Secured {
            http: http.clone(),
            https: https.clone(),
            token: token.clone(),
            ca_file: ca_file.into(),
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        });
    }
    report(&format!(
        "consul test {test} NOT RUN: {} unset (scripts/test.sh starts an ACL + TLS dev agent \
         with scripts/consul.sh dev start DIR --acl --tls and sources DIR/env)",
        SECURED_VARS.join(" / ")
    ));
    None
}

fn config(address: &str, prefix: &str, service: &str) -> ConsulConfig {
    config_with(address, prefix, service, &Access::default())
}

fn config_with(address: &str, prefix: &str, service: &str, access: &Access) -> ConsulConfig {
    ConsulConfig {
        token: access.token.clone(),
        ca_file: access.ca_file.clone(),
        cert_file: access.cert_file.clone(),
        key_file: access.key_file.clone(),
        key_prefix: prefix.into(),
        service_name: service.into(),
        session_ttl: SESSION_TTL,
        lock_delay: LOCK_DELAY,
        step_down_margin: Duration::from_secs(1),
        watch_wait: Duration::from_secs(5),
        request_timeout: Duration::from_secs(3),
        retry_backoff_max: Duration::from_secs(1),
        ..ConsulConfig::new(address)
    }
}

fn unique(what: &str) -> String {
    format!(
        "{what}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

struct Consul {
    address: String,
    prefix: String,
    service: String,
    access: Access,
}

impl Consul {
    fn new(address: String) -> Self {
        Consul {
            address,
            prefix: unique("lmq-test"),
            service: unique("lmq-broker"),
            access: Access::default(),
        }
    }

    fn config(&self) -> ConsulConfig {
        config_with(&self.address, &self.prefix, &self.service, &self.access)
    }

    async fn connect(&self) -> ConsulCoordinator {
        ConsulCoordinator::connect(self.config()).await.unwrap()
    }
}

/// A child process (this test binary, re-executed) holding a session; killed with SIGKILL.
struct ChildHolder {
    child: Child,
    token: u64,
}

impl Holder for ChildHolder {
    fn token(&self) -> u64 {
        self.token
    }
    async fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no cleanup of any kind
        self.child.wait().unwrap();
    }
}

impl Drop for ChildHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Harness for Consul {
    type Holder = ChildHolder;

    async fn client(&self) -> Box<dyn Coordinator> {
        Box::new(self.connect().await)
    }

    async fn holder(&self, action: HolderAction) -> ChildHolder {
        let spec = match action {
            HolderAction::Campaign { role, candidate } => {
                format!("campaign:{role}:{}", String::from_utf8(candidate).unwrap())
            }
            HolderAction::Lock { name } => format!("lock:{name}"),
            HolderAction::Register { broker_id, ttl } => {
                format!("register:{broker_id}:{}", ttl.as_millis())
            }
        };
        spawn_child(&self.config(), &spec)
    }

    fn takeover_bound(&self) -> Duration {
        // The session's check turns critical TTL after the child's last pass (before the
        // kill), the lock-delay follows; one second for the agent's sync, our blocking query
        // and the lock-delay retry.
        SESSION_TTL + LOCK_DELAY + Duration::from_secs(1)
    }
}

const CHILD_ENV: &str = "LMQ_COORD_CONSUL_CHILD";

fn spawn_child(config: &ConsulConfig, spec: &str) -> ChildHolder {
    let path = |file: &Option<PathBuf>| file.clone().unwrap_or_default();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .env("LMQ_COORD_CHILD_ADDRESS", &config.address)
        .env("LMQ_COORD_CHILD_PREFIX", &config.key_prefix)
        .env("LMQ_COORD_CHILD_SERVICE", &config.service_name)
        .env(
            "LMQ_COORD_CHILD_TOKEN",
            config.token.clone().unwrap_or_default(),
        )
        .env("LMQ_COORD_CHILD_CA_FILE", path(&config.ca_file))
        .env("LMQ_COORD_CHILD_CERT_FILE", path(&config.cert_file))
        .env("LMQ_COORD_CHILD_KEY_FILE", path(&config.key_file))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // The harness prints "test child_process_entry ... " before it on the line.
            if let Some((_, token)) = line.split_once("LMQ-CHILD-READY token=") {
                let _ = sender.send(token.trim().parse::<u64>().unwrap());
            }
        }
    });
    let token = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("child ready within 30 s");
    ChildHolder { child, token }
}

/// Not a test of its own: the body of the child processes (see `spawn_child`).
#[test]
fn child_process_entry() {
    let Some(spec) = env(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let address = env("LMQ_COORD_CHILD_ADDRESS").unwrap();
        let prefix = env("LMQ_COORD_CHILD_PREFIX").unwrap();
        let service = env("LMQ_COORD_CHILD_SERVICE").unwrap();
        let access = Access {
            token: env("LMQ_COORD_CHILD_TOKEN"),
            ca_file: env("LMQ_COORD_CHILD_CA_FILE").map(PathBuf::from),
            cert_file: env("LMQ_COORD_CHILD_CERT_FILE").map(PathBuf::from),
            key_file: env("LMQ_COORD_CHILD_KEY_FILE").map(PathBuf::from),
        };
        let client = ConsulCoordinator::connect(config_with(&address, &prefix, &service, &access))
            .await
            .unwrap();
        let parts: Vec<&str> = spec.split(':').collect();
        let wait = Duration::from_secs(30);
        let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
        let token = match parts.as_slice() {
            ["campaign", role, candidate] => {
                let leadership = client
                    .campaign(role, candidate.as_bytes(), wait)
                    .await
                    .unwrap();
                let token = leadership.token().value();
                held.push(Box::new(leadership));
                token
            }
            ["lock", name] => {
                let guard = client.lock(name, wait).await.unwrap();
                let token = guard.token().value();
                held.push(Box::new(guard));
                token
            }
            ["register", broker_id, ttl_ms] => {
                let broker_id: u32 = broker_id.parse().unwrap();
                let registration = BrokerRegistration {
                    listeners: Vec::new(),
                    broker_id,
                    host: "127.0.0.1".into(),
                    port: 9000 + u16::try_from(broker_id).unwrap(),
                    rack: None,
                    health: HealthCheck::Ttl {
                        ttl: Duration::from_millis(ttl_ms.parse().unwrap()),
                    },
                };
                client.register_broker(&registration).await.unwrap();
                0
            }
            other => panic!("unknown child action {other:?}"),
        };
        println!("LMQ-CHILD-READY token={token}");
        // Bounded: an orphan does not outlive the test run by much.
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(held);
    });
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(address) = dev_agent(stringify!($name)) else { return };
                contract::$name(&Consul::new(address)).await;
            }
        )*
    };
}

contract::for_every_contract_test!(contract_tests);

/// The whole contract again on an agent with ACLs (default deny) and TLS with client
/// certificates, through LMQ's policy and token: every call carries what it must.
mod secured {
    use super::{contract, secured_agent};

    macro_rules! secured_contract_tests {
        ($($name:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let test = concat!("secured::", stringify!($name));
                    let Some(agent) = secured_agent(test) else { return };
                    contract::$name(&agent.harness()).await;
                }
            )*
        };
    }

    contract::for_every_contract_test!(secured_contract_tests);
}

// ---------------------------------------------------------------- ACLs and TLS

fn registration(broker_id: u32) -> BrokerRegistration {
    BrokerRegistration {
        listeners: Vec::new(),
        broker_id,
        host: "127.0.0.1".into(),
        port: 9000,
        rack: None,
        health: HealthCheck::Ttl {
            ttl: Duration::from_secs(10),
        },
    }
}

/// A refusal by the ACLs is its own error, and its text tells the operator what to do.
fn assert_acl_denied<T: std::fmt::Debug>(what: &str, result: Result<T, CoordError>) {
    match result {
        Err(error @ CoordError::AclDenied { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("ACL token") && text.contains("docs/OPERATIONS.md"),
                "{what}: the message does not say to set the token: {text}"
            );
        }
        other => panic!("{what}: expected CoordError::AclDenied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_calls_without_a_valid_token_fail_with_an_error_that_says_to_set_it() {
    let test = "acl_calls_without_a_valid_token_fail_with_an_error_that_says_to_set_it";
    let Some(agent) = secured_agent(test) else {
        return;
    };
    let prefix = format!("lmq/{}", unique("test"));
    let service = unique("lmq-broker");
    // No token (the anonymous one, denied everything), then a token Consul does not know.
    let unknown = "00000000-0000-4000-8000-000000000000".to_owned();
    for (address, token) in [(&agent.http, None), (&agent.https, Some(unknown))] {
        let access = match address.starts_with("https://") {
            true => Access {
                token: token.clone(),
                ..agent.tls()
            },
            false => Access::default(),
        };
        let what = |call: &str| format!("{call} on {address} with token {token:?}");
        // Connecting only asks for the raft leader, which needs no ACL.
        let client = ConsulCoordinator::connect(config_with(address, &prefix, &service, &access))
            .await
            .unwrap();
        assert_acl_denied(
            &what("register_broker"),
            client.register_broker(&registration(1)).await,
        );
        assert_acl_denied(&what("put"), client.put("k", b"v").await);
        assert_acl_denied(&what("get"), client.get("k").await);
        assert_acl_denied(
            &what("campaign"),
            client
                .campaign("controller", b"c", Duration::from_secs(5))
                .await,
        );
        client.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_with_the_token_register_campaign_cas_and_watch_work_and_other_keys_stay_denied() {
    let test = "acl_with_the_token_register_campaign_cas_and_watch_work_and_other_keys_stay_denied";
    let Some(agent) = secured_agent(test) else {
        return;
    };
    let harness = agent.harness();
    let client = harness.connect().await;
    let watcher = harness.connect().await;
    client.register_broker(&registration(7)).await.unwrap();
    let mut brokers = watcher.watch_brokers().await.unwrap();
    let seen = brokers.next_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        seen.iter()
            .map(|broker| broker.broker_id)
            .collect::<Vec<_>>(),
        vec![7],
        "the policy's node and service read show the registered broker"
    );
    let leadership = client
        .campaign("controller", b"broker-7", Duration::from_secs(10))
        .await
        .unwrap();
    let mut watch = watcher.watch("meta").await.unwrap();
    assert_eq!(watch.next_within(Duration::from_secs(5)).await, Some(None));
    let first = client.compare_and_set("meta", None, b"v1").await.unwrap();
    assert!(matches!(
        client.compare_and_set("meta", None, b"again").await,
        Err(CoordError::CasConflict { .. })
    ));
    client
        .compare_and_set_fenced("meta", Some(first), b"v2", leadership.token())
        .await
        .unwrap();
    let mut values = Vec::new();
    while values.last().map(Vec::as_slice) != Some(b"v2".as_slice()) {
        let entry = watch
            .next_within(Duration::from_secs(10))
            .await
            .expect("the watch sees the writes")
            .expect("the key exists");
        values.push(entry.value);
    }
    // Least privilege: the same token may not touch keys outside LMQ's prefix.
    let outside = ConsulCoordinator::connect(config_with(
        &agent.https,
        &unique("other"),
        &harness.service,
        &agent.full(),
    ))
    .await
    .unwrap();
    // Inside a transaction Consul reports the refusal as a failed operation (409), which
    // must not read as a CAS conflict, a stale fencing token or a lock held by another.
    assert_acl_denied("put outside lmq/", outside.put("k", b"v").await);
    assert_acl_denied(
        "compare_and_set outside lmq/",
        outside.compare_and_set("k", None, b"v").await,
    );
    assert_acl_denied(
        "campaign outside lmq/",
        outside
            .campaign("controller", b"x", Duration::from_secs(3))
            .await,
    );
    assert_acl_denied(
        "fenced write outside lmq/",
        outside.put_fenced("k", b"v", leadership.token()).await,
    );
    outside.close().await.unwrap();
    leadership.resign().await.unwrap();
    client.deregister_broker(7).await.unwrap();
    for client in [client, watcher] {
        client.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_needs_the_ca_and_the_client_certificate_and_refuses_half_configurations() {
    let test = "tls_needs_the_ca_and_the_client_certificate_and_refuses_half_configurations";
    let Some(agent) = secured_agent(test) else {
        return;
    };
    let (prefix, service) = (format!("lmq/{}", unique("test")), unique("lmq-broker"));
    let connect = async |address: &str, access: Access| {
        ConsulCoordinator::connect(config_with(address, &prefix, &service, &access)).await
    };
    // The agent's certificate is signed by its own CA, unknown to the public roots.
    let no_ca = Access {
        token: Some(agent.token.clone()),
        ..Access::default()
    };
    let error = connect(&agent.https, no_ca).await.unwrap_err();
    assert!(
        matches!(error, CoordError::Transport { .. }),
        "without the CA: {error:?}"
    );
    // The https listener wants a client certificate.
    let no_cert = Access {
        cert_file: None,
        key_file: None,
        ..agent.full()
    };
    let error = connect(&agent.https, no_cert).await.unwrap_err();
    assert!(
        matches!(error, CoordError::Transport { .. }),
        "without a client certificate: {error:?}"
    );
    // Half or misdirected configurations are refused before any request.
    let cert_without_key = Access {
        key_file: None,
        ..agent.full()
    };
    let error = connect(&agent.https, cert_without_key).await.unwrap_err();
    assert!(matches!(error, CoordError::InvalidConfig(_)), "{error:?}");
    let error = connect(&agent.http, agent.full()).await.unwrap_err();
    assert!(
        matches!(error, CoordError::InvalidConfig(_)),
        "TLS files with an http:// address: {error:?}"
    );
    let missing = Access {
        ca_file: Some(agent.ca_file.with_extension("missing")),
        ..agent.full()
    };
    let error = connect(&agent.https, missing).await.unwrap_err();
    assert!(matches!(error, CoordError::TlsFile { .. }), "{error:?}");
    // All of it: the agent answers.
    let client = connect(&agent.https, agent.full()).await.unwrap();
    client.put("tls", b"ok").await.unwrap();
    assert_eq!(client.get("tls").await.unwrap().unwrap().value, b"ok");
    client.close().await.unwrap();
}

// ---------------------------------------------------------------- dev agent only

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_block_instead_of_polling() {
    let Some(address) = dev_agent("watches_block_instead_of_polling") else {
        return;
    };
    let consul = Consul::new(address);
    let watcher = consul.connect().await;
    let writer = consul.connect().await;
    let mut watch = watcher.watch("idle").await.unwrap();
    let mut brokers = watcher.watch_brokers().await.unwrap();
    let mut leader = watcher.watch_leader("controller").await.unwrap();
    assert_eq!(watch.next_within(Duration::from_secs(5)).await, Some(None));
    assert_eq!(
        brokers.next_within(Duration::from_secs(5)).await,
        Some(vec![])
    );
    assert_eq!(leader.next_within(Duration::from_secs(5)).await, Some(None));
    let before = watcher.requests_sent();
    let idle = Duration::from_secs(6);
    tokio::time::sleep(idle).await;
    let during_idle = watcher.requests_sent() - before;
    report(&format!(
        "consul: 3 idle watches sent {during_idle} requests in {idle:?} (blocking wait 5 s)"
    ));
    // One blocking query per watch per wait period, at most: no polling.
    assert!(during_idle <= 6, "{during_idle} requests while idle");
    let started = Instant::now();
    writer.put("idle", b"changed").await.unwrap();
    let entry = watch
        .next_within(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.value, b"changed");
    let latency = started.elapsed();
    report(&format!(
        "consul: a change reached the blocked watch in {latency:?}"
    ));
    assert!(latency < Duration::from_secs(1));
    watcher.close().await.unwrap();
    writer.close().await.unwrap();
}

/// A PUT with std only, to act on Consul behind the coordinator's back.
fn raw_put(address: &str, path: &str) -> String {
    let host = address.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_session_is_reported_to_the_holder_at_once() {
    let Some(address) = dev_agent("a_destroyed_session_is_reported_to_the_holder_at_once") else {
        return;
    };
    let consul = Consul::new(address.clone());
    let holder = consul.connect().await;
    let mut leadership = holder
        .campaign("controller", b"h", Duration::from_secs(10))
        .await
        .unwrap();
    let session = holder.session_id().await.unwrap();
    let started = Instant::now();
    let answer = raw_put(&address, &format!("/v1/session/destroy/{session}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let reason = tokio::time::timeout(Duration::from_secs(5), leadership.lost())
        .await
        .unwrap();
    let took = started.elapsed();
    report(&format!(
        "consul: session destroyed → holder told in {took:?} ({reason})"
    ));
    // Whichever the client notices first: the session gone, or its key released by it.
    assert!(
        matches!(reason, LossReason::SessionInvalidated | LossReason::Deposed),
        "{reason:?}"
    );
    assert!(took < Duration::from_secs(2));
    // The client recovers with a new session.
    let again = holder
        .campaign("controller", b"h", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(again.token().value() > leadership.token().value());
    holder.close().await.unwrap();
}

// ---------------------------------------------------------------- 3-server cluster

/// The http address of the raft leader, by mapping its raft ip to the cluster's addresses.
async fn leader_http(cluster: &Cluster, any: &ConsulCoordinator) -> String {
    let raft = any.raft_leader().await.unwrap();
    let ip = raft.split(':').next().unwrap().to_owned();
    cluster
        .addresses
        .iter()
        .find(|address| address.contains(&format!("//{ip}:")))
        .unwrap_or_else(|| panic!("leader {raft} is none of {:?}", cluster.addresses))
        .clone()
}

fn consul_script(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/consul.sh");
    let output = Command::new(script).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "consul.sh {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn retry<T>(what: &str, mut attempt: impl AsyncFnMut() -> Result<T, CoordError>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) if Instant::now() < deadline => {
                report(&format!("consul: {what} failed ({error}); retrying"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("{what}: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader_loss_keeps_leadership_and_data_and_a_restart_keeps_watches() {
    let test = "cluster_leader_loss_keeps_leadership_and_data_and_a_restart_keeps_watches";
    let Some(cluster) = cluster(test) else { return };
    let (prefix, service) = (unique("lmq-test"), unique("lmq-broker"));
    let probe = ConsulCoordinator::connect(config(&cluster.addresses[0], &prefix, &service))
        .await
        .unwrap();
    let leader_address = leader_http(&cluster, &probe).await;
    let followers: Vec<&String> = cluster
        .addresses
        .iter()
        .filter(|address| **address != leader_address)
        .collect();
    let connect = async |address: &str| {
        ConsulCoordinator::connect(config(address, &prefix, &service))
            .await
            .unwrap()
    };
    // The broker talks to a server that stays up; the watcher to the one that is killed.
    let holder = connect(followers[0]).await;
    let writer = connect(followers[1]).await;
    let watcher = connect(&leader_address).await;
    let leadership = holder
        .campaign("controller", b"broker-1", Duration::from_secs(10))
        .await
        .unwrap();
    let token = leadership.token().clone();
    let status = leadership.status();
    holder
        .put_fenced("data/a", b"before", &token)
        .await
        .unwrap();
    let mut watch = watcher.watch("data/w").await.unwrap();
    assert_eq!(watch.next_within(Duration::from_secs(5)).await, Some(None));

    let killed_at = Instant::now();
    let new_leader = consul_script(&["cluster", "kill-leader", &cluster.dir]);
    report(&format!(
        "consul: killed the raft leader {leader_address}; new leader {new_leader} after {:?}",
        killed_at.elapsed()
    ));
    // Data written before is there, the leadership is intact and its token still valid.
    let read = retry("read after the leader change", async || {
        writer.get("data/a").await
    })
    .await;
    assert_eq!(read.unwrap().value, b"before");
    retry("fenced write after the leader change", async || {
        holder.put_fenced("data/a", b"after", &token).await
    })
    .await;
    writer.put("data/w", b"while-down").await.unwrap();
    // Longer than the session TTL: the session survived the leader change.
    tokio::time::sleep(SESSION_TTL + Duration::from_secs(2)).await;
    assert!(leadership.is_leader());
    assert_eq!(*status.borrow(), HoldState::Held);
    assert!(
        !status.has_changed().unwrap(),
        "the leadership never flickered"
    );
    let still = writer.leader("controller").await.unwrap().unwrap();
    assert_eq!(still.token, token);
    holder.put_fenced("data/a", b"later", &token).await.unwrap();

    // Restart the killed server: the watch that used it goes on.
    let node = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .position(|ip| leader_address.contains(&format!("//{ip}:")))
        .unwrap()
        + 1;
    consul_script(&["cluster", "start-node", &cluster.dir, &node.to_string()]);
    let entry = watch
        .next_within(Duration::from_secs(30))
        .await
        .expect("watch alive after the restart")
        .unwrap();
    assert_eq!(
        entry.value, b"while-down",
        "the change made while it was down"
    );
    for i in 0..3 {
        let value = format!("after-restart-{i}");
        writer.put("data/w", value.as_bytes()).await.unwrap();
        let entry = watch
            .next_within(Duration::from_secs(10))
            .await
            .expect("change delivered")
            .unwrap();
        assert_eq!(entry.value, value.into_bytes());
    }
    report("consul: leadership, data and watches survived a leader kill and a server restart");
    leadership.resign().await.unwrap();
    for client in [holder, writer, watcher, probe] {
        client.close().await.unwrap();
    }
}

/// A TCP proxy that can be cut: existing connections dropped, new ones accepted and left
/// hanging (a black hole, as a partition looks to the client).
struct Proxy {
    address: String,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let target = target.trim_start_matches("http://").to_owned();
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (accept_cut, accept_connections) = (Arc::clone(&cut), Arc::clone(&connections));
        let accept = tokio::spawn(async move {
            let mut parked = Vec::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if accept_cut.load(Ordering::SeqCst) {
                    parked.push(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_connections.lock().unwrap().push(task);
            }
        });
        Proxy {
            address,
            cut,
            connections,
            _accept: accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_unreachable_agent_makes_the_holder_step_down_before_a_takeover() {
    let test = "cluster_unreachable_agent_makes_the_holder_step_down_before_a_takeover";
    let Some(cluster) = cluster(test) else { return };
    let (prefix, service) = (unique("lmq-test"), unique("lmq-broker"));
    let proxy = Proxy::start(&cluster.addresses[0]).await;
    let holder = ConsulCoordinator::connect(config(&proxy.address, &prefix, &service))
        .await
        .unwrap();
    let contender = ConsulCoordinator::connect(config(&cluster.addresses[1], &prefix, &service))
        .await
        .unwrap();
    let mut leadership = holder
        .campaign("controller", b"holder", Duration::from_secs(10))
        .await
        .unwrap();
    let old = leadership.token().clone();
    let contender_task = tokio::spawn(async move {
        let leadership = contender
            .campaign("controller", b"contender", Duration::from_secs(60))
            .await
            .unwrap();
        (contender, leadership, Instant::now())
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(leadership.is_leader());

    let cut_at = Instant::now();
    proxy.cut();
    let reason = tokio::time::timeout(SESSION_TTL * 2, leadership.lost())
        .await
        .expect("the holder steps down");
    let stepped_down = Instant::now();
    let (contender, new_leadership, took_over) = contender_task.await.unwrap();
    report(&format!(
        "consul: agent unreachable → holder stepped down after {:?} ({reason}), contender led \
         after {:?} (TTL {SESSION_TTL:?}, lock-delay {LOCK_DELAY:?})",
        stepped_down.duration_since(cut_at),
        took_over.duration_since(cut_at)
    ));
    assert_eq!(reason, LossReason::LeaseExpired);
    assert!(
        stepped_down < took_over,
        "the holder must stop acting before another leads"
    );
    assert!(stepped_down.duration_since(cut_at) <= SESSION_TTL);
    assert!(new_leadership.token().value() > old.value());
    assert!(matches!(
        contender.put_fenced("data/x", b"zombie", &old).await,
        Err(CoordError::Fenced { .. })
    ));
    contender
        .put_fenced("data/x", b"new", new_leadership.token())
        .await
        .unwrap();
    let _ = FencingToken::leadership("controller", 0);
    new_leadership.resign().await.unwrap();
    contender.close().await.unwrap();
    drop(leadership);
    drop(holder);
}
