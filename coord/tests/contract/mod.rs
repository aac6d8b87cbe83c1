//! The coordinator contract: one set of tests, run against every implementation through a
//! `Harness` (tests/embedded.rs, tests/consul.rs).
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lmq_coord::{
    BrokerInfo, BrokerRegistration, CoordError, Coordinator, Endpoint, FencingToken, HealthCheck,
    HoldState, LossReason, Version,
};

/// What a holder does before it can be killed.
#[derive(Debug, Clone)]
pub enum HolderAction {
    Campaign { role: String, candidate: Vec<u8> },
    Lock { name: String },
    Register { broker_id: u32, ttl: Duration },
}

/// A holder that can die abruptly (Consul: a child process killed with SIGKILL; embedded: a
/// client dropped without releasing anything).
pub trait Holder: Send {
    /// The fencing token of what it holds (0 for a registration).
    fn token(&self) -> u64;
    fn kill(self) -> impl std::future::Future<Output = ()> + Send;
}

pub trait Harness: Sync {
    type Holder: Holder;
    /// A new, independent client (its own session) of the same cluster.
    fn client(&self) -> impl std::future::Future<Output = Box<dyn Coordinator>> + Send;
    /// A holder that has done `action` when this returns.
    fn holder(
        &self,
        action: HolderAction,
    ) -> impl std::future::Future<Output = Self::Holder> + Send;
    /// Longest time, after a holder died, until another campaigner leads (TTL + lock-delay,
    /// plus the latency of noticing).
    fn takeover_bound(&self) -> Duration;
}

/// A line on the test's real stderr (not captured by the harness): results worth seeing.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

const WAIT: Duration = Duration::from_secs(20);

async fn next_matching<T: Clone + std::fmt::Debug>(
    watch: &mut lmq_coord::Watch<T>,
    wait: Duration,
    what: &str,
    mut accept: impl FnMut(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match watch.next_within(remaining).await {
            Some(state) if accept(&state) => return state,
            Some(_) => {}
            None => panic!("{what}: not seen within {wait:?}"),
        }
    }
}

fn broker(broker_id: u32, health: HealthCheck) -> BrokerRegistration {
    let port = 9000 + u16::try_from(broker_id).unwrap();
    // Every listener comes back as registered (the contract test compares the whole info).
    let listeners = vec![
        Endpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port,
        },
        Endpoint {
            name: "SSL".into(),
            host: "kafka.example".into(),
            port: port + 1000,
        },
    ];
    BrokerRegistration {
        listeners,
        broker_id,
        host: "127.0.0.1".into(),
        port,
        rack: Some(format!("rack-{}", broker_id % 2)),
        health,
    }
}

fn ids(brokers: &[BrokerInfo]) -> Vec<u32> {
    brokers.iter().map(|broker| broker.broker_id).collect()
}

// ---------------------------------------------------------------- keys

pub async fn keys_get_put_list_delete<H: Harness>(harness: &H) {
    let a = harness.client().await;
    let b = harness.client().await;
    assert_eq!(a.get("cluster/id").await.unwrap(), None);
    let v1 = a.put("cluster/id", b"one").await.unwrap();
    let seen = b.get("cluster/id").await.unwrap().unwrap();
    assert_eq!((seen.value.as_slice(), seen.version), (&b"one"[..], v1));
    let v2 = b.put("cluster/id", &[0, 159, 146, 150, 255]).await.unwrap();
    assert!(v2 > v1, "versions grow: {v1:?} then {v2:?}");
    assert_eq!(
        a.get("cluster/id").await.unwrap().unwrap().value,
        vec![0, 159, 146, 150, 255],
        "binary values round-trip"
    );
    a.put("topics/a", b"{}").await.unwrap();
    a.put("topics/b", b"").await.unwrap();
    a.put("topicsx", b"no").await.unwrap();
    let listed = b.list("topics/").await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|entry| entry.key.as_str()).collect();
    assert_eq!(keys, ["topics/a", "topics/b"]);
    assert_eq!(listed[1].value, b"");
    assert_eq!(b.list("").await.unwrap().len(), 4);
    a.delete("topics/a").await.unwrap();
    assert_eq!(b.get("topics/a").await.unwrap(), None);
    a.delete("topics/a").await.unwrap();
    assert!(matches!(
        a.put("bad key", b"x").await,
        Err(CoordError::InvalidName { .. })
    ));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

pub async fn cas_conflicts_are_reported_not_retried<H: Harness>(harness: &H) {
    let a = harness.client().await;
    let b = harness.client().await;
    let v1 = a
        .compare_and_set("meta/assignment", None, b"v1")
        .await
        .unwrap();
    // Creating again: the key exists.
    match b.compare_and_set("meta/assignment", None, b"other").await {
        Err(CoordError::CasConflict { key, expected }) => {
            assert_eq!((key.as_str(), expected), ("meta/assignment", None));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Two writers from the same version: exactly one wins, the other hears about it.
    let (ra, rb) = tokio::join!(
        a.compare_and_set("meta/assignment", Some(v1), b"from-a"),
        b.compare_and_set("meta/assignment", Some(v1), b"from-b"),
    );
    let (winner, loser) = match (&ra, &rb) {
        (Ok(version), Err(CoordError::CasConflict { expected, .. })) => {
            assert_eq!(*expected, Some(v1));
            (*version, b"from-a")
        }
        (Err(CoordError::CasConflict { expected, .. }), Ok(version)) => {
            assert_eq!(*expected, Some(v1));
            (*version, b"from-b")
        }
        other => panic!("exactly one CAS must win: {other:?}"),
    };
    let current = a.get("meta/assignment").await.unwrap().unwrap();
    assert_eq!(current.version, winner);
    assert_eq!(
        current.value,
        loser.to_vec(),
        "the winner's value, written once"
    );
    // A stale version never overwrites.
    assert!(matches!(
        b.compare_and_set("meta/assignment", Some(v1), b"stale")
            .await,
        Err(CoordError::CasConflict { .. })
    ));
    assert!(matches!(
        b.compare_and_set("meta/absent", Some(Version(1)), b"x")
            .await,
        Err(CoordError::CasConflict { .. })
    ));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

pub async fn watch_delivers_every_change_in_order<H: Harness>(harness: &H) {
    let writer = harness.client().await;
    let reader = harness.client().await;
    let mut watch = reader.watch("config/broker").await.unwrap();
    assert_eq!(watch.next_within(WAIT).await, Some(None), "absent at first");
    // Paced changes: each one is delivered, in order.
    let mut written = Vec::new();
    for i in 0..10 {
        let version = writer
            .put("config/broker", format!("v{i}").as_bytes())
            .await
            .unwrap();
        written.push(version);
        let seen = watch.next_within(WAIT).await.expect("change delivered");
        let seen = seen.expect("present");
        assert_eq!(seen.value, format!("v{i}").into_bytes());
        assert_eq!(seen.version, version);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.delete("config/broker").await.unwrap();
    assert_eq!(
        watch.next_within(WAIT).await,
        Some(None),
        "deletion delivered"
    );

    // A burst: states come in version order, never repeated, and the last one arrives.
    let mut last = Version(0);
    for i in 0..30 {
        last = writer
            .put("config/broker", format!("burst{i}").as_bytes())
            .await
            .unwrap();
    }
    let mut previous: Option<Version> = None;
    let mut observed = 0;
    loop {
        let state = watch.next_within(WAIT).await.expect("burst delivered");
        let entry = state.expect("present");
        if let Some(previous) = previous {
            assert!(entry.version > previous, "in order, no repeats");
        }
        previous = Some(entry.version);
        observed += 1;
        if entry.version == last {
            assert_eq!(entry.value, b"burst29");
            break;
        }
    }
    report(&format!(
        "contract: burst of 30 writes observed as {observed} states, in order, ending at the last"
    ));
    writer.close().await.unwrap();
    reader.close().await.unwrap();
}

// ---------------------------------------------------------------- membership

pub async fn registration_visible_and_removed_when_holder_dies<H: Harness>(harness: &H) {
    let observer = harness.client().await;
    let registrar = harness.client().await;
    let mut watch = observer.watch_brokers().await.unwrap();
    assert_eq!(watch.next_within(WAIT).await, Some(vec![]));

    let ttl = Duration::from_secs(3);
    registrar
        .register_broker(&broker(1, HealthCheck::Ttl { ttl }))
        .await
        .unwrap();
    let seen = next_matching(&mut watch, WAIT, "broker 1", |b| ids(b) == [1]).await;
    assert_eq!(seen[0], broker(1, HealthCheck::Ttl { ttl }).info());
    assert_eq!(ids(&observer.brokers().await.unwrap()), [1]);
    // Still there after several TTLs: the registering client keeps it alive.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(ids(&observer.brokers().await.unwrap()), [1]);
    registrar.deregister_broker(1).await.unwrap();
    next_matching(&mut watch, WAIT, "broker 1 deregistered", |b| b.is_empty()).await;

    // A holder that dies without a word.
    let holder = harness
        .holder(HolderAction::Register { broker_id: 2, ttl })
        .await;
    next_matching(&mut watch, WAIT, "broker 2", |b| ids(b) == [2]).await;
    let killed = Instant::now();
    holder.kill().await;
    next_matching(
        &mut watch,
        ttl + Duration::from_secs(10),
        "broker 2 gone",
        |b| b.is_empty(),
    )
    .await;
    let took = killed.elapsed();
    report(&format!(
        "contract: a killed broker left the healthy list {took:?} after the kill (TTL {ttl:?})"
    ));
    assert!(took <= ttl + Duration::from_secs(5), "{took:?}");
    observer.close().await.unwrap();
    registrar.close().await.unwrap();
}

/// `pass_ttl_check` passes the TTL check of a broker this client registered, and fails for
/// one it did not register (or deregistered): a lease renewed by it is renewed only by a pass
/// that reached the registration.
pub async fn ttl_pass_only_for_this_clients_registration<H: Harness>(harness: &H) {
    let registrar = harness.client().await;
    let other = harness.client().await;
    let ttl = Duration::from_secs(3);
    registrar
        .register_broker(&broker(4, HealthCheck::Ttl { ttl }))
        .await
        .unwrap();
    registrar.pass_ttl_check(4).await.unwrap();
    assert!(matches!(
        other.pass_ttl_check(4).await,
        Err(CoordError::NotRegistered { broker_id: 4 })
    ));
    assert!(matches!(
        registrar.pass_ttl_check(5).await,
        Err(CoordError::NotRegistered { broker_id: 5 })
    ));
    assert_eq!(ids(&other.brokers().await.unwrap()), [4]);
    registrar.deregister_broker(4).await.unwrap();
    assert!(matches!(
        registrar.pass_ttl_check(4).await,
        Err(CoordError::NotRegistered { broker_id: 4 })
    ));
    // A check that is not a TTL check cannot be passed by hand.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let health = HealthCheck::Tcp {
        address: listener.local_addr().unwrap().to_string(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
    };
    registrar.register_broker(&broker(6, health)).await.unwrap();
    assert!(matches!(
        registrar.pass_ttl_check(6).await,
        Err(CoordError::NotRegistered { broker_id: 6 })
    ));
    registrar.deregister_broker(6).await.unwrap();
    registrar.close().await.unwrap();
    assert!(matches!(
        registrar.pass_ttl_check(4).await,
        Err(CoordError::Closed)
    ));
    other.close().await.unwrap();
}

pub async fn tcp_health_check<H: Harness>(harness: &H) {
    let observer = harness.client().await;
    let registrar = harness.client().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let health = HealthCheck::Tcp {
        address,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
    };
    registrar.register_broker(&broker(7, health)).await.unwrap();
    let mut watch = observer.watch_brokers().await.unwrap();
    next_matching(&mut watch, WAIT, "broker 7", |b| ids(b) == [7]).await;
    // Healthy while the port answers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ids(&observer.brokers().await.unwrap()), [7]);
    drop(listener);
    next_matching(
        &mut watch,
        Duration::from_secs(10),
        "broker 7 unhealthy",
        |b| b.is_empty(),
    )
    .await;
    observer.close().await.unwrap();
    registrar.close().await.unwrap();
}

// ---------------------------------------------------------------- leadership

pub async fn exactly_one_leader_among_campaigners<H: Harness>(harness: &H) {
    const CAMPAIGNERS: usize = 3;
    const TERMS_EACH: usize = 3;
    let observer = harness.client().await;
    let mut leader_watch = observer.watch_leader("controller").await.unwrap();
    assert_eq!(leader_watch.next_within(WAIT).await, Some(None));
    let in_office = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for id in 0..CAMPAIGNERS {
        let client = harness.client().await;
        let in_office = Arc::clone(&in_office);
        let tokens = Arc::clone(&tokens);
        tasks.push(tokio::spawn(async move {
            for _ in 0..TERMS_EACH {
                let candidate = format!("broker-{id}");
                let leadership = client
                    .campaign("controller", candidate.as_bytes(), Duration::from_secs(60))
                    .await
                    .unwrap();
                assert_eq!(in_office.fetch_add(1, Ordering::SeqCst), 0, "two leaders");
                tokens.lock().unwrap().push(leadership.token().value());
                let info = client.leader("controller").await.unwrap().unwrap();
                assert_eq!(info.candidate, candidate.into_bytes());
                assert_eq!(&info.token, leadership.token());
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(leadership.is_leader());
                in_office.fetch_sub(1, Ordering::SeqCst);
                leadership.resign().await.unwrap();
            }
            client.close().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), CAMPAIGNERS * TERMS_EACH);
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "tokens grow with every term: {tokens:?}"
    );
    next_matching(
        &mut leader_watch,
        WAIT,
        "no leader at the end",
        Option::is_none,
    )
    .await;
    observer.close().await.unwrap();
}

pub async fn resign_flips_the_handle_and_fences_the_old_token<H: Harness>(harness: &H) {
    let a = harness.client().await;
    let b = harness.client().await;
    let leadership = a.campaign("partition-7", b"a", WAIT).await.unwrap();
    let old = leadership.token().clone();
    let mut status = leadership.status();
    a.put_fenced("meta/p7", b"by-a", &old).await.unwrap();
    match a.campaign("partition-7", b"a", WAIT).await {
        Err(CoordError::AlreadyHeld { .. }) => {}
        other => panic!("a second campaign of the same client must fail: {other:?}"),
    }
    leadership.resign().await.unwrap();
    status
        .wait_for(|state| *state == HoldState::Lost(LossReason::Released))
        .await
        .unwrap();
    let next = b.campaign("partition-7", b"b", WAIT).await.unwrap();
    assert!(next.token().value() > old.value());
    match a.put_fenced("meta/p7", b"stale", &old).await {
        Err(CoordError::Fenced { role, token }) => {
            assert_eq!((role.as_str(), token), ("partition-7", old.value()));
        }
        other => panic!("stale token must be refused: {other:?}"),
    }
    let version = b
        .put_fenced("meta/p7", b"by-b", next.token())
        .await
        .unwrap();
    // Fenced compare-and-set: both conditions checked in one step.
    assert!(matches!(
        b.compare_and_set_fenced("meta/p7", Some(Version(version.0 - 1)), b"x", next.token())
            .await,
        Err(CoordError::CasConflict { .. })
    ));
    b.compare_and_set_fenced("meta/p7", Some(version), b"by-b2", next.token())
        .await
        .unwrap();
    assert_eq!(a.get("meta/p7").await.unwrap().unwrap().value, b"by-b2");
    // A token of a role nobody ever led is refused too.
    assert!(matches!(
        b.put_fenced("meta/p7", b"x", &FencingToken::leadership("nobody", 1))
            .await,
        Err(CoordError::Fenced { .. })
    ));
    drop(next);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

pub async fn killed_leader_is_replaced_and_its_token_rejected<H: Harness>(harness: &H) {
    let role = "controller";
    let observer = harness.client().await;
    let holder = harness
        .holder(HolderAction::Campaign {
            role: role.into(),
            candidate: b"old".to_vec(),
        })
        .await;
    let old_token = holder.token();
    let leader = observer.leader(role).await.unwrap().unwrap();
    assert_eq!(
        (leader.candidate.as_slice(), leader.token.value()),
        (&b"old"[..], old_token)
    );
    let old = FencingToken::leadership(role, old_token);
    let version = observer
        .put_fenced("meta/controller", b"old", &old)
        .await
        .unwrap();

    let contender = harness.client().await;
    let bound = harness.takeover_bound();
    let campaign = tokio::spawn(async move {
        let result = contender.campaign(role, b"new", bound * 3).await;
        (contender, result, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!campaign.is_finished(), "the holder still leads");

    let killed = Instant::now();
    holder.kill().await;
    let (contender, leadership, led_at) = campaign.await.unwrap();
    let leadership = leadership.unwrap();
    let took = led_at.duration_since(killed);
    report(&format!(
        "contract: killed leader replaced {took:?} after the kill (bound {bound:?})"
    ));
    assert!(took <= bound, "takeover took {took:?}, bound {bound:?}");
    assert!(leadership.token().value() > old_token);
    let now = observer.leader(role).await.unwrap().unwrap();
    assert_eq!(now.candidate, b"new");

    // The deposed leader's token is refused by fenced and fenced-CAS writes.
    assert!(matches!(
        observer
            .put_fenced("meta/controller", b"zombie", &old)
            .await,
        Err(CoordError::Fenced { .. })
    ));
    assert!(matches!(
        observer
            .compare_and_set_fenced("meta/controller", Some(version), b"zombie", &old)
            .await,
        Err(CoordError::Fenced { .. })
    ));
    contender
        .compare_and_set_fenced("meta/controller", Some(version), b"new", leadership.token())
        .await
        .unwrap();
    leadership.resign().await.unwrap();
    contender.close().await.unwrap();
    observer.close().await.unwrap();
}

// ---------------------------------------------------------------- locks

pub async fn locks_are_exclusive<H: Harness>(harness: &H) {
    let a = harness.client().await;
    let b = harness.client().await;
    let guard = a.lock("reassign", WAIT).await.unwrap();
    match b.lock("reassign", Duration::from_millis(500)).await {
        Err(CoordError::NotAcquired { what, .. }) => assert_eq!(what, "reassign"),
        other => panic!("the lock is held: {other:?}"),
    }
    // Another name is independent.
    let other = b.lock("other", WAIT).await.unwrap();
    let waiter = tokio::spawn(async move {
        let result = b.lock("reassign", WAIT).await.map(|g| g.token().value());
        (b, result)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    let first = guard.token().value();
    guard.release().await.unwrap();
    let (b, second) = waiter.await.unwrap();
    assert!(second.unwrap() > first);
    drop(other);

    // Across a holder that dies: the lock comes back.
    let holder = harness
        .holder(HolderAction::Lock {
            name: "exclusive".into(),
        })
        .await;
    assert!(matches!(
        a.lock("exclusive", Duration::from_secs(1)).await,
        Err(CoordError::NotAcquired { .. })
    ));
    holder.kill().await;
    let started = Instant::now();
    let guard = a
        .lock("exclusive", harness.takeover_bound() * 2)
        .await
        .unwrap();
    report(&format!(
        "contract: lock of a killed holder acquired after {:?}",
        started.elapsed()
    ));
    assert!(guard.is_held());
    drop(guard);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

pub async fn close_releases_everything<H: Harness>(harness: &H) {
    let a = harness.client().await;
    let b = harness.client().await;
    let mut leadership = a.campaign("controller", b"a", WAIT).await.unwrap();
    let mut guard = a.lock("l", WAIT).await.unwrap();
    a.register_broker(&broker(
        3,
        HealthCheck::Ttl {
            ttl: Duration::from_secs(5),
        },
    ))
    .await
    .unwrap();
    assert_eq!(ids(&b.brokers().await.unwrap()), [3]);
    a.close().await.unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, leadership.lost()).await.unwrap(),
        LossReason::ClientClosed
    );
    assert_eq!(
        tokio::time::timeout(WAIT, guard.lost()).await.unwrap(),
        LossReason::ClientClosed
    );
    assert!(!leadership.is_leader());
    b.campaign("controller", b"b", Duration::from_secs(5))
        .await
        .unwrap();
    b.lock("l", Duration::from_secs(5)).await.unwrap();
    assert_eq!(b.brokers().await.unwrap(), vec![]);
    assert!(matches!(a.get("x").await, Err(CoordError::Closed)));
    b.close().await.unwrap();
}

/// Calls `$make!` with the name of every contract test, so each store's test file
/// instantiates all of them and a new contract test cannot be left out of one store.
macro_rules! for_every_contract_test {
    ($make:ident) => {
        $make!(
            keys_get_put_list_delete,
            cas_conflicts_are_reported_not_retried,
            watch_delivers_every_change_in_order,
            registration_visible_and_removed_when_holder_dies,
            ttl_pass_only_for_this_clients_registration,
            tcp_health_check,
            exactly_one_leader_among_campaigners,
            resign_flips_the_handle_and_fences_the_old_token,
            killed_leader_is_replaced_and_its_token_rejected,
            locks_are_exclusive,
            close_releases_everything,
        );
    };
}
pub(crate) use for_every_contract_test;
