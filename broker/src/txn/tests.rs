//! The transaction coordinator's state machine with a manual clock and a simulated driver:
//! stores and markers complete when the test says so.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::log::{Replayed, TxnLogValue, decode_value};
use super::state::{
    AddPartitionsRequest, EndTxnRequest, InitProducerIdRequest, ListFilter, Markers, Output,
    ProducerIdAndEpoch, ProducerIdSource, Reply, Store, Token, Transactions, TxnConfig, TxnError,
    TxnResult,
};
use super::{TopicPartition, TransactionVersion, TxnState};

/// Cluster-unique ids in order from 1000.
#[derive(Debug)]
struct Counter(i64);

impl ProducerIdSource for Counter {
    fn next_producer_id(&mut self) -> Result<i64, TxnError> {
        self.0 += 1;
        Ok(self.0)
    }
}

const TIMEOUT_MS: i32 = 60_000;

/// A state machine and the driver around it: outputs are collected, stores and markers
/// wait until completed, durable records are kept per id in order.
#[derive(Debug)]
struct Driver {
    txns: Transactions,
    ids: Counter,
    now_ms: i64,
    next_token: Token,
    replies: BTreeMap<Token, Reply>,
    stores: Vec<Store>,
    markers: Vec<Markers>,
    /// Every durable record, in log order.
    log: Vec<(String, Option<TxnLogValue>)>,
}

fn config(version: TransactionVersion) -> TxnConfig {
    TxnConfig {
        transaction_version: version,
        state_partitions: 1,
        ..TxnConfig::default()
    }
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn pe(producer_id: i64, producer_epoch: i16) -> ProducerIdAndEpoch {
    ProducerIdAndEpoch {
        producer_id,
        producer_epoch,
    }
}

impl Driver {
    fn new(config: TxnConfig) -> Self {
        let mut txns = Transactions::new(config);
        assert!(txns.load_begin(0, 1).is_empty());
        assert!(txns.restore(0, 1, Replayed::default(), 0).is_empty());
        Driver {
            txns,
            ids: Counter(999),
            now_ms: 0,
            next_token: 0,
            replies: BTreeMap::new(),
            stores: Vec::new(),
            markers: Vec::new(),
            log: Vec::new(),
        }
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    fn take(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Reply(token, reply) => {
                    assert!(
                        self.replies.insert(token, reply).is_none(),
                        "answered twice"
                    );
                }
                Output::Store(store) => {
                    assert!(
                        !self
                            .stores
                            .iter()
                            .any(|other| other.transactional_id == store.transactional_id),
                        "two stores in flight for {}",
                        store.transactional_id
                    );
                    self.stores.push(store);
                }
                Output::SendMarkers(markers) => self.markers.push(markers),
            }
        }
    }

    fn init(&mut self, id: &str, expected: Option<ProducerIdAndEpoch>) -> Token {
        let token = self.token();
        let request = InitProducerIdRequest {
            transactional_id: id.to_string(),
            timeout_ms: TIMEOUT_MS,
            expected,
        };
        let outputs = self
            .txns
            .init_producer_id(token, request, &mut self.ids, self.now_ms);
        self.take(outputs);
        token
    }

    fn add(
        &mut self,
        id: &str,
        producer: ProducerIdAndEpoch,
        partitions: &[TopicPartition],
        version: TransactionVersion,
    ) -> Token {
        let token = self.token();
        let request = AddPartitionsRequest {
            transactional_id: id.to_string(),
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            partitions: partitions.iter().cloned().collect(),
            client_version: version,
        };
        let outputs = self.txns.add_partitions(token, request, self.now_ms);
        self.take(outputs);
        token
    }

    fn end(
        &mut self,
        id: &str,
        producer: ProducerIdAndEpoch,
        result: TxnResult,
        version: TransactionVersion,
    ) -> Token {
        let token = self.token();
        let request = EndTxnRequest {
            transactional_id: id.to_string(),
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            result,
            client_version: version,
        };
        let outputs = self
            .txns
            .end_txn(token, request, &mut self.ids, self.now_ms);
        self.take(outputs);
        token
    }

    fn tick(&mut self) {
        let outputs = self.txns.tick(self.now_ms, &mut self.ids);
        self.take(outputs);
    }

    fn expire(&mut self) {
        let outputs = self.txns.expire_ids(self.now_ms);
        self.take(outputs);
    }

    /// Completes the oldest store in flight with `result`.
    fn complete_store(&mut self, result: Result<(), TxnError>) -> Store {
        assert!(!self.stores.is_empty(), "no store in flight");
        let store = self.stores.remove(0);
        if result.is_ok() {
            self.log
                .push((store.transactional_id.clone(), store.value.clone()));
        }
        let outputs = self.txns.stored(store.id, result, self.now_ms);
        self.take(outputs);
        store
    }

    /// Writes every marker asked for so far.
    fn write_markers(&mut self) -> Vec<Markers> {
        let markers = std::mem::take(&mut self.markers);
        for request in &markers {
            for partition in &request.partitions {
                let outputs = self.txns.marker_written(
                    &request.transactional_id,
                    pe(request.producer_id, request.producer_epoch),
                    partition,
                    self.now_ms,
                );
                self.take(outputs);
            }
        }
        markers
    }

    /// Completes stores and markers until none is left.
    fn settle(&mut self) {
        while !self.stores.is_empty() || !self.markers.is_empty() {
            while !self.stores.is_empty() {
                self.complete_store(Ok(()));
            }
            self.write_markers();
        }
    }

    fn reply(&mut self, token: Token) -> Reply {
        self.replies.remove(&token).expect("an answer")
    }

    fn state(&self, id: &str) -> TxnState {
        self.txns.get(id).expect("known id").state
    }

    fn producer(&self, id: &str) -> ProducerIdAndEpoch {
        let metadata = self.txns.get(id).expect("known id");
        pe(metadata.producer_id, metadata.producer_epoch)
    }

    /// InitProducerId settled: the producer it answered.
    fn initialised(&mut self, id: &str) -> ProducerIdAndEpoch {
        let token = self.init(id, None);
        self.settle();
        match self.reply(token) {
            Reply::InitProducerId(Ok(producer)) => producer,
            other => panic!("InitProducerId answered {other:?}"),
        }
    }

    fn replay(&self) -> Replayed {
        let mut replayed = Replayed::default();
        for (id, value) in &self.log {
            let key = super::log::encode_key(id);
            let value = value
                .as_ref()
                .map(|value| super::log::encode_value(value, 1));
            replayed.apply(&key, value.as_deref());
        }
        replayed
    }
}

#[test]
fn a_new_id_gets_its_producer_once_the_empty_record_is_durable() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let token = driver.init("t", None);
    assert!(
        driver.replies.is_empty(),
        "no answer before the record is durable"
    );
    let store = driver.stores[0].clone();
    assert_eq!(store.coordinator_epoch, 1);
    assert_eq!(store.value_version, 1);
    let value = store.value.clone().expect("a value");
    assert_eq!((value.producer_id, value.producer_epoch), (1000, 0));
    assert_eq!(value.state, TxnState::Empty);
    // The record the driver appends is the value in Kafka's layout.
    assert_eq!(
        decode_value(&store.value_bytes().expect("bytes")),
        Ok(value)
    );
    driver.complete_store(Ok(()));
    assert_eq!(driver.reply(token), Reply::InitProducerId(Ok(pe(1000, 0))));
    // A second InitProducerId without an expected producer bumps the epoch.
    assert_eq!(driver.initialised("t"), pe(1000, 1));
}

#[test]
fn a_committed_transaction_goes_through_every_state_and_marks_every_partition() {
    let mut driver = Driver::new(config(TransactionVersion::V1));
    let producer = driver.initialised("t");
    assert_eq!(driver.state("t"), TxnState::Empty);
    driver.now_ms = 100;
    let add = driver.add(
        "t",
        producer,
        &[tp("a", 0), tp("b", 1)],
        TransactionVersion::V0,
    );
    assert_eq!(
        driver.txns.get("t").and_then(|m| m.pending_state()),
        Some(TxnState::Ongoing)
    );
    driver.complete_store(Ok(()));
    assert_eq!(driver.reply(add), Reply::AddPartitions(Ok(())));
    assert_eq!(driver.state("t"), TxnState::Ongoing);
    assert_eq!(driver.txns.get("t").map(|m| m.start_ms), Some(100));
    // Partitions already in the transaction are answered at once.
    let again = driver.add("t", producer, &[tp("a", 0)], TransactionVersion::V0);
    assert_eq!(driver.reply(again), Reply::AddPartitions(Ok(())));
    assert!(driver.stores.is_empty());

    let end = driver.end("t", producer, TxnResult::Commit, TransactionVersion::V0);
    assert!(
        driver.markers.is_empty(),
        "no marker before PrepareCommit is durable"
    );
    let prepare = driver.complete_store(Ok(()));
    assert_eq!(
        prepare.value.map(|value| value.state),
        Some(TxnState::PrepareCommit)
    );
    assert_eq!(driver.reply(end), Reply::EndTxn(Ok(producer)));
    assert_eq!(driver.state("t"), TxnState::PrepareCommit);
    assert_eq!(
        driver.markers,
        vec![Markers {
            transactional_id: "t".to_string(),
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            coordinator_epoch: 1,
            result: TxnResult::Commit,
            partitions: [tp("a", 0), tp("b", 1)].into_iter().collect(),
        }]
    );
    // One marker written: still waiting for the other.
    let outputs = driver
        .txns
        .marker_written("t", producer, &tp("a", 0), driver.now_ms);
    assert!(outputs.is_empty());
    assert_eq!(
        driver.txns.pending_markers()[0].partitions,
        [tp("b", 1)].into_iter().collect()
    );
    let outputs = driver
        .txns
        .marker_written("t", producer, &tp("b", 1), driver.now_ms);
    driver.markers.clear();
    driver.take(outputs);
    let complete = driver.complete_store(Ok(()));
    let value = complete.value.expect("a value");
    assert_eq!(value.state, TxnState::CompleteCommit);
    assert!(value.partitions.is_empty());
    assert_eq!(driver.state("t"), TxnState::CompleteCommit);
    assert!(
        driver
            .txns
            .get("t")
            .is_some_and(|m| m.partitions.is_empty())
    );
    // Version 0 keeps the epoch across transactions.
    assert_eq!(driver.producer("t"), producer);
}

#[test]
fn one_transition_at_a_time_others_get_concurrent_transactions() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let producer = driver.initialised("t");
    let add = driver.add("t", producer, &[tp("a", 0)], TransactionVersion::V0);
    let concurrent = [
        driver.add("t", producer, &[tp("b", 0)], TransactionVersion::V0),
        driver.end("t", producer, TxnResult::Commit, TransactionVersion::V0),
        driver.init("t", None),
    ];
    assert_eq!(driver.stores.len(), 1);
    for token in concurrent {
        let error = match driver.reply(token) {
            Reply::AddPartitions(result) => result.err(),
            Reply::EndTxn(result) => result.err(),
            Reply::InitProducerId(result) => result.err(),
        };
        assert_eq!(error, Some(TxnError::ConcurrentTransactions));
    }
    driver.complete_store(Ok(()));
    assert_eq!(driver.reply(add), Reply::AddPartitions(Ok(())));
    // While the markers are written, the transaction is still busy.
    let end = driver.end("t", producer, TxnResult::Commit, TransactionVersion::V0);
    driver.complete_store(Ok(()));
    assert_eq!(driver.reply(end), Reply::EndTxn(Ok(producer)));
    let retry = driver.end("t", producer, TxnResult::Commit, TransactionVersion::V0);
    assert_eq!(
        driver.reply(retry),
        Reply::EndTxn(Err(TxnError::ConcurrentTransactions))
    );
    let init = driver.init("t", None);
    assert_eq!(
        driver.reply(init),
        Reply::InitProducerId(Err(TxnError::ConcurrentTransactions))
    );
    let add = driver.add("t", producer, &[tp("a", 0)], TransactionVersion::V0);
    assert_eq!(
        driver.reply(add),
        Reply::AddPartitions(Err(TxnError::ConcurrentTransactions))
    );
}

#[test]
fn end_txn_retries_after_completion_follow_kafkas_version_1_rules() {
    let mut driver = Driver::new(config(TransactionVersion::V1));
    let producer = driver.initialised("t");
    driver.add("t", producer, &[tp("a", 0)], TransactionVersion::V0);
    driver.settle();
    driver.end("t", producer, TxnResult::Commit, TransactionVersion::V0);
    driver.settle();
    driver.replies.clear();
    let v0 = TransactionVersion::V0;
    let cases = [
        (producer, TxnResult::Commit, Ok(producer)),
        (producer, TxnResult::Abort, Err(TxnError::InvalidTxnState)),
        (
            pe(producer.producer_id, 7),
            TxnResult::Commit,
            Err(TxnError::ProducerFenced),
        ),
        (
            pe(55, 0),
            TxnResult::Commit,
            Err(TxnError::InvalidProducerIdMapping),
        ),
    ];
    for (who, result, expected) in cases {
        let token = driver.end("t", who, result, v0);
        assert_eq!(
            driver.reply(token),
            Reply::EndTxn(expected),
            "{who:?} {result:?}"
        );
    }
    assert!(driver.stores.is_empty(), "retries store nothing");
    // From Empty, version 1 refuses both.
    let producer = driver.initialised("t");
    let token = driver.end("t", producer, TxnResult::Abort, v0);
    assert_eq!(
        driver.reply(token),
        Reply::EndTxn(Err(TxnError::InvalidTxnState))
    );
    let token = driver.end("u", producer, TxnResult::Abort, v0);
    assert_eq!(
        driver.reply(token),
        Reply::EndTxn(Err(TxnError::InvalidProducerIdMapping))
    );
}

#[test]
fn version_2_bumps_the_epoch_at_every_end_and_answers_retries_with_the_old_epoch() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let v2 = TransactionVersion::V2;
    let producer = driver.initialised("t");
    driver.add("t", producer, &[tp("a", 0)], v2);
    driver.settle();
    let end = driver.end("t", producer, TxnResult::Commit, v2);
    driver.complete_store(Ok(()));
    let bumped = pe(producer.producer_id, producer.producer_epoch + 1);
    assert_eq!(driver.reply(end), Reply::EndTxn(Ok(bumped)));
    // The markers carry the bumped epoch, so the old producer is fenced on the partition.
    assert_eq!(driver.markers[0].producer_epoch, bumped.producer_epoch);
    driver.settle();
    assert_eq!(driver.state("t"), TxnState::CompleteCommit);
    assert_eq!(driver.producer("t"), bumped);
    // A retry carries the epoch before the bump: answered with the current one.
    let retry = driver.end("t", producer, TxnResult::Commit, v2);
    assert_eq!(driver.reply(retry), Reply::EndTxn(Ok(bumped)));
    let wrong = driver.end("t", producer, TxnResult::Abort, v2);
    assert_eq!(
        driver.reply(wrong),
        Reply::EndTxn(Err(TxnError::InvalidTxnState))
    );
    let commit_current = driver.end("t", bumped, TxnResult::Commit, v2);
    assert_eq!(
        driver.reply(commit_current),
        Reply::EndTxn(Err(TxnError::InvalidTxnState))
    );
    let fenced = pe(producer.producer_id, bumped.producer_epoch + 5);
    let future = driver.end("t", fenced, TxnResult::Abort, v2);
    assert_eq!(
        driver.reply(future),
        Reply::EndTxn(Err(TxnError::ProducerFenced))
    );
    // An abort without partitions: stored, bumped, completed without markers.
    let abort = driver.end("t", bumped, TxnResult::Abort, v2);
    let prepare = driver.complete_store(Ok(()));
    let prepare = prepare.value.expect("a value");
    assert_eq!(prepare.state, TxnState::PrepareAbort);
    assert_eq!(prepare.start_ms, driver.now_ms);
    let again = pe(bumped.producer_id, bumped.producer_epoch + 1);
    assert_eq!(driver.reply(abort), Reply::EndTxn(Ok(again)));
    assert!(driver.markers.is_empty());
    let complete = driver.complete_store(Ok(()));
    assert_eq!(
        complete.value.map(|v| v.state),
        Some(TxnState::CompleteAbort)
    );
    assert_eq!(driver.producer("t"), again);
    let retry = driver.end("t", bumped, TxnResult::Abort, v2);
    assert_eq!(driver.reply(retry), Reply::EndTxn(Ok(again)));
}

/// A replayed record for id "t" in state `state` at `epoch`, with version-2 rules.
fn record(
    state: TxnState,
    producer_id: i64,
    epoch: i16,
    partitions: &[TopicPartition],
) -> TxnLogValue {
    TxnLogValue {
        producer_id,
        previous_producer_id: producer_id,
        next_producer_id: -1,
        producer_epoch: epoch,
        timeout_ms: TIMEOUT_MS,
        state,
        partitions: partitions.iter().cloned().collect(),
        last_update_ms: 0,
        start_ms: if partitions.is_empty() { -1 } else { 0 },
        client_transaction_version: 2,
    }
}

fn driver_with(version: TransactionVersion, value: TxnLogValue) -> (Driver, Vec<Output>) {
    let mut driver = Driver::new(config(version));
    let mut replayed = Replayed::default();
    replayed.transactions.insert("t".to_string(), value);
    driver.txns.load_begin(0, 2);
    let outputs = driver.txns.restore(0, 2, replayed, 0);
    (driver, outputs)
}

#[test]
fn an_overflowing_version_2_commit_hands_over_to_a_new_producer_id() {
    let exhausted = super::state::EPOCH_EXHAUSTED;
    let (mut driver, outputs) = driver_with(
        TransactionVersion::V2,
        record(TxnState::Ongoing, 77, exhausted, &[tp("a", 0)]),
    );
    assert!(outputs.is_empty());
    let v2 = TransactionVersion::V2;
    let end = driver.end("t", pe(77, exhausted), TxnResult::Commit, v2);
    let prepare = driver.complete_store(Ok(())).value.expect("a value");
    assert_eq!(prepare.next_producer_id, 1000);
    assert_eq!(prepare.producer_epoch, i16::MAX);
    assert_eq!(driver.reply(end), Reply::EndTxn(Ok(pe(1000, 0))));
    assert_eq!(
        (
            driver.markers[0].producer_id,
            driver.markers[0].producer_epoch
        ),
        (77, i16::MAX)
    );
    driver.settle();
    let metadata = driver.txns.get("t").expect("known");
    assert_eq!(
        (
            metadata.producer_id,
            metadata.producer_epoch,
            metadata.previous_producer_id
        ),
        (1000, 0, 77)
    );
    // The retry with the old id at the last epoch is answered with the new producer.
    let retry = driver.end("t", pe(77, exhausted), TxnResult::Commit, v2);
    assert_eq!(driver.reply(retry), Reply::EndTxn(Ok(pe(1000, 0))));
}

#[test]
fn a_new_producer_fences_the_zombies_ongoing_transaction() {
    // One bump for the fence, with version 2 too (KAFKA-19367).
    for (version, fenced_epoch) in [(TransactionVersion::V2, 1), (TransactionVersion::V0, 1)] {
        let mut driver = Driver::new(config(version));
        let zombie = driver.initialised("t");
        driver.add("t", zombie, &[tp("a", 0)], TransactionVersion::V0);
        driver.settle();
        driver.replies.clear();
        let init = driver.init("t", None);
        let prepare = driver.complete_store(Ok(())).value.expect("a value");
        assert_eq!(prepare.state, TxnState::PrepareAbort, "{version:?}");
        assert_eq!(prepare.producer_epoch, fenced_epoch, "{version:?}");
        assert_eq!(
            driver.reply(init),
            Reply::InitProducerId(Err(TxnError::ConcurrentTransactions))
        );
        assert_eq!(driver.markers[0].result, TxnResult::Abort);
        assert_eq!(driver.markers[0].producer_epoch, fenced_epoch);
        // The zombie is fenced: its EndTxn at once, its AddPartitions once the abort is
        // complete (before, a transition is pending: retry, as Kafka since KAFKA-18660).
        let add = driver.add("t", zombie, &[tp("b", 0)], TransactionVersion::V0);
        assert_eq!(
            driver.reply(add),
            Reply::AddPartitions(Err(TxnError::ConcurrentTransactions))
        );
        let end = driver.end("t", zombie, TxnResult::Commit, TransactionVersion::V0);
        assert_eq!(
            driver.reply(end),
            Reply::EndTxn(Err(TxnError::ProducerFenced))
        );
        driver.settle();
        let add = driver.add("t", zombie, &[tp("b", 0)], TransactionVersion::V0);
        assert_eq!(
            driver.reply(add),
            Reply::AddPartitions(Err(TxnError::ProducerFenced))
        );
        assert_eq!(driver.state("t"), TxnState::CompleteAbort);
        // The new producer's retry gets the next epoch.
        let fresh = driver.initialised("t");
        assert_eq!(fresh, pe(zombie.producer_id, fenced_epoch + 1));
        let check = driver
            .txns
            .verify_partitions("t", zombie, &[tp("a", 0)].into_iter().collect());
        assert_eq!(check, Err(TxnError::ProducerFenced));
    }
}

#[test]
fn fencing_at_an_exhausted_epoch_hands_over_to_a_new_producer_id_with_version_2() {
    let exhausted = super::state::EPOCH_EXHAUSTED;
    let (mut driver, _) = driver_with(
        TransactionVersion::V2,
        record(TxnState::Ongoing, 77, exhausted, &[tp("a", 0)]),
    );
    let init = driver.init("t", None);
    let prepare = driver.complete_store(Ok(())).value.expect("a value");
    assert_eq!(prepare.state, TxnState::PrepareAbort);
    assert_eq!(
        (prepare.producer_epoch, prepare.next_producer_id),
        (i16::MAX, 1000)
    );
    assert_eq!(
        driver.reply(init),
        Reply::InitProducerId(Err(TxnError::ConcurrentTransactions))
    );
    assert_eq!(
        (
            driver.markers[0].producer_id,
            driver.markers[0].producer_epoch
        ),
        (77, i16::MAX)
    );
    driver.settle();
    assert_eq!(driver.producer("t"), pe(1000, 0));
    assert_eq!(driver.initialised("t"), pe(1000, 1));
    // Version 0 keeps the id: the abort ends at i16::MAX, the next InitProducerId rotates.
    let (mut driver, _) = driver_with(
        TransactionVersion::V0,
        record(TxnState::Ongoing, 77, exhausted, &[tp("a", 0)]),
    );
    driver.init("t", None);
    driver.settle();
    assert_eq!(driver.producer("t"), pe(77, i16::MAX));
    driver.replies.clear();
    assert_eq!(driver.initialised("t"), pe(1000, 0));
}

#[test]
fn after_an_overflow_the_new_id_is_told_to_retry_while_the_old_transaction_completes() {
    let exhausted = super::state::EPOCH_EXHAUSTED;
    let (mut driver, _) = driver_with(
        TransactionVersion::V2,
        record(TxnState::Ongoing, 77, exhausted, &[tp("a", 0)]),
    );
    let v2 = TransactionVersion::V2;
    let end = driver.end("t", pe(77, exhausted), TxnResult::Commit, v2);
    driver.complete_store(Ok(()));
    let Reply::EndTxn(Ok(next)) = driver.reply(end) else {
        panic!("EndTxn failed")
    };
    // Markers still being written: the next transaction's first partition waits (not
    // INVALID_PRODUCER_ID_MAPPING, which would fence the producer: KAFKA-18660).
    let add = driver.add("t", next, &[tp("b", 0)], v2);
    assert_eq!(
        driver.reply(add),
        Reply::AddPartitions(Err(TxnError::ConcurrentTransactions))
    );
    driver.settle();
    let add = driver.add("t", next, &[tp("b", 0)], v2);
    driver.settle();
    assert_eq!(driver.reply(add), Reply::AddPartitions(Ok(())));
}

#[test]
fn kip_360_bumps_for_the_current_producer_and_repeats_for_a_retry() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let producer = driver.initialised("t");
    let bump = driver.init("t", Some(producer));
    driver.settle();
    let bumped = pe(producer.producer_id, producer.producer_epoch + 1);
    assert_eq!(driver.reply(bump), Reply::InitProducerId(Ok(bumped)));
    // The same request again (its answer was lost): the same answer, nothing bumped.
    let retry = driver.init("t", Some(producer));
    driver.settle();
    assert_eq!(driver.reply(retry), Reply::InitProducerId(Ok(bumped)));
    let stale = driver.init("t", Some(pe(producer.producer_id, 40)));
    assert_eq!(
        driver.reply(stale),
        Reply::InitProducerId(Err(TxnError::ProducerFenced))
    );
    let other = driver.init("t", Some(pe(4, 0)));
    assert_eq!(
        driver.reply(other),
        Reply::InitProducerId(Err(TxnError::ProducerFenced))
    );
    // A new producer (no expected id) clears the last epoch: the old retry is fenced now.
    let fresh = driver.initialised("t");
    let old = driver.init("t", Some(producer));
    assert_eq!(
        driver.reply(old),
        Reply::InitProducerId(Err(TxnError::ProducerFenced))
    );
    assert_eq!(fresh.producer_epoch, bumped.producer_epoch + 1);
}

#[test]
fn an_exhausted_epoch_rotates_the_producer_id_and_a_retry_gets_the_same_answer() {
    let exhausted = super::state::EPOCH_EXHAUSTED;
    let (mut driver, _) = driver_with(
        TransactionVersion::V2,
        record(TxnState::CompleteCommit, 77, exhausted, &[]),
    );
    let init = driver.init("t", Some(pe(77, exhausted)));
    let stored = driver.complete_store(Ok(())).value.expect("a value");
    assert_eq!(
        (stored.producer_id, stored.previous_producer_id),
        (1000, 77)
    );
    assert_eq!(driver.reply(init), Reply::InitProducerId(Ok(pe(1000, 0))));
    let retry = driver.init("t", Some(pe(77, exhausted)));
    driver.settle();
    assert_eq!(driver.reply(retry), Reply::InitProducerId(Ok(pe(1000, 0))));
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let producer = driver.initialised("t");
    driver.now_ms = 1_000;
    driver.add("t", producer, &[tp("a", 0)], TransactionVersion::V0);
    driver.settle();
    driver.now_ms = 1_000 + i64::from(TIMEOUT_MS);
    driver.tick();
    assert!(
        driver.stores.is_empty(),
        "not before the timeout has passed"
    );
    driver.now_ms += 1;
    driver.tick();
    let prepare = driver.complete_store(Ok(())).value.expect("a value");
    assert_eq!(prepare.state, TxnState::PrepareAbort);
    assert!(prepare.producer_epoch > producer.producer_epoch);
    assert_eq!(driver.markers[0].result, TxnResult::Abort);
    driver.settle();
    assert_eq!(driver.state("t"), TxnState::CompleteAbort);
    let late = driver.end("t", producer, TxnResult::Commit, TransactionVersion::V0);
    assert_eq!(
        driver.reply(late),
        Reply::EndTxn(Err(TxnError::ProducerFenced))
    );
}

#[test]
fn an_idle_id_expires_by_a_tombstone_but_not_during_a_transaction() {
    let mut driver = Driver::new(TxnConfig {
        transactional_id_expiration_ms: 10_000,
        transaction_max_timeout_ms: i32::MAX,
        ..config(TransactionVersion::V2)
    });
    let idle = driver.initialised("idle");
    let busy = driver.initialised("busy");
    let _ = idle;
    let token = driver.token();
    let outputs = driver.txns.init_producer_id(
        token,
        InitProducerIdRequest {
            transactional_id: "busy".to_string(),
            timeout_ms: i32::MAX,
            expected: Some(busy),
        },
        &mut driver.ids,
        0,
    );
    driver.take(outputs);
    driver.settle();
    let busy = driver.producer("busy");
    driver.add("busy", busy, &[tp("a", 0)], TransactionVersion::V0);
    driver.settle();
    driver.now_ms = 9_999;
    driver.expire();
    assert!(driver.stores.is_empty());
    driver.now_ms = 10_000;
    driver.tick();
    assert!(driver.stores.is_empty(), "expiry is its own pass");
    driver.expire();
    assert_eq!(driver.stores.len(), 1, "only the idle id expires");
    let tombstone = driver.complete_store(Ok(()));
    assert_eq!(tombstone.transactional_id, "idle");
    assert_eq!(tombstone.value, None);
    assert_eq!(tombstone.value_bytes(), None);
    assert!(driver.txns.get("idle").is_none());
    assert_eq!(
        driver.txns.describe("idle"),
        Err(TxnError::TransactionalIdNotFound)
    );
    // The id starts again from a new producer id.
    assert_eq!(driver.initialised("idle").producer_epoch, 0);
    assert_eq!(driver.replay().transactions.len(), 2);
}

#[test]
fn a_new_coordinator_resumes_a_prepared_commit_and_sends_its_markers_again() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let producer = driver.initialised("t");
    driver.add(
        "t",
        producer,
        &[tp("a", 0), tp("b", 0)],
        TransactionVersion::V2,
    );
    driver.settle();
    driver.end("t", producer, TxnResult::Commit, TransactionVersion::V2);
    driver.complete_store(Ok(()));
    assert_eq!(driver.state("t"), TxnState::PrepareCommit);
    let prepared_epoch = driver.producer("t").producer_epoch;
    // The coordinator moves before any marker is written.
    let replayed = driver.replay();
    let mut moved = Driver::new(config(TransactionVersion::V2));
    assert!(moved.txns.load_begin(0, 5).is_empty());
    let init = moved.init("t", None);
    assert_eq!(
        moved.reply(init),
        Reply::InitProducerId(Err(TxnError::CoordinatorLoadInProgress))
    );
    assert_eq!(
        moved.txns.list(&ListFilter::default(), 0),
        Err(TxnError::CoordinatorLoadInProgress)
    );
    let outputs = moved.txns.restore(0, 5, replayed, 0);
    moved.take(outputs);
    assert_eq!(moved.markers.len(), 1);
    let markers = &moved.markers[0];
    assert_eq!(markers.coordinator_epoch, 5, "the new leader epoch");
    assert_eq!(markers.result, TxnResult::Commit);
    assert_eq!(markers.producer_epoch, prepared_epoch);
    assert_eq!(markers.partitions.len(), 2);
    // Busy until completed.
    let busy = moved.init("t", None);
    assert_eq!(
        moved.reply(busy),
        Reply::InitProducerId(Err(TxnError::ConcurrentTransactions))
    );
    moved.settle();
    assert_eq!(moved.state("t"), TxnState::CompleteCommit);
    assert_eq!(
        moved
            .log
            .last()
            .and_then(|(_, v)| v.as_ref())
            .map(|v| v.state),
        Some(TxnState::CompleteCommit)
    );
    // A stale restore (older epoch, or after an unload) changes nothing.
    assert!(moved.txns.restore(0, 4, Replayed::default(), 0).is_empty());
}

#[test]
fn failed_stores_answer_the_error_and_leave_the_id_as_it_was() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let init = driver.init("t", None);
    driver.complete_store(Err(TxnError::CoordinatorNotAvailable));
    assert_eq!(
        driver.reply(init),
        Reply::InitProducerId(Err(TxnError::CoordinatorNotAvailable))
    );
    assert_eq!(driver.producer("t").producer_epoch, -1);
    let producer = driver.initialised("t");
    assert_eq!(producer.producer_epoch, 0);
    let add = driver.add("t", producer, &[tp("a", 0)], TransactionVersion::V0);
    driver.complete_store(Err(TxnError::NotCoordinator));
    assert_eq!(
        driver.reply(add),
        Reply::AddPartitions(Err(TxnError::NotCoordinator))
    );
    assert_eq!(driver.state("t"), TxnState::Empty);
    driver.add("t", producer, &[tp("a", 0)], TransactionVersion::V0);
    driver.settle();
    driver.end("t", producer, TxnResult::Commit, TransactionVersion::V0);
    driver.complete_store(Ok(()));
    driver.write_markers();
    // The Complete record fails: stored again at the next tick.
    driver.complete_store(Err(TxnError::CoordinatorNotAvailable));
    assert_eq!(driver.state("t"), TxnState::PrepareCommit);
    driver.tick();
    let complete = driver.complete_store(Ok(()));
    assert_eq!(
        complete.value.map(|v| v.state),
        Some(TxnState::CompleteCommit)
    );
    assert_eq!(driver.state("t"), TxnState::CompleteCommit);
}

#[test]
fn unloading_answers_waiting_requests_not_coordinator_and_ignores_late_reports() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let producer = driver.initialised("t");
    let add = driver.add("t", producer, &[tp("a", 0)], TransactionVersion::V0);
    let store = driver.stores.remove(0);
    let outputs = driver.txns.unload(0, Some(1));
    driver.take(outputs);
    assert_eq!(
        driver.reply(add),
        Reply::AddPartitions(Err(TxnError::NotCoordinator))
    );
    assert!(driver.txns.stored(store.id, Ok(()), 0).is_empty());
    assert!(driver.txns.get("t").is_none());
    let init = driver.init("t", None);
    assert_eq!(
        driver.reply(init),
        Reply::InitProducerId(Err(TxnError::NotCoordinator))
    );
    // An unload for an older election leaves a newer one alone.
    driver.txns.load_begin(0, 3);
    assert!(driver.txns.unload(0, Some(2)).is_empty());
    assert_eq!(
        driver.txns.owner("t"),
        Err(TxnError::CoordinatorLoadInProgress)
    );
}

#[test]
fn requests_outside_the_limits_are_refused() {
    let mut driver = Driver::new(TxnConfig {
        transactional_ids_max: 1,
        record_bytes_max: 200,
        ..config(TransactionVersion::V2)
    });
    for (id, timeout_ms, error) in [
        ("", TIMEOUT_MS, TxnError::InvalidRequest),
        ("t", 0, TxnError::InvalidTransactionTimeout),
        ("t", 900_001, TxnError::InvalidTransactionTimeout),
    ] {
        let token = driver.token();
        let request = InitProducerIdRequest {
            transactional_id: id.to_string(),
            timeout_ms,
            expected: None,
        };
        let outputs = driver
            .txns
            .init_producer_id(token, request, &mut driver.ids, 0);
        driver.take(outputs);
        assert_eq!(driver.reply(token), Reply::InitProducerId(Err(error)));
    }
    let producer = driver.initialised("t");
    let token = driver.init("u", None);
    assert_eq!(
        driver.reply(token),
        Reply::InitProducerId(Err(TxnError::LimitExceeded))
    );
    let many: Vec<TopicPartition> = (0..100).map(|partition| tp("topic", partition)).collect();
    let token = driver.add("t", producer, &many, TransactionVersion::V0);
    assert_eq!(
        driver.reply(token),
        Reply::AddPartitions(Err(TxnError::RecordTooLarge))
    );
    let token = driver.add("t", producer, &many[..3], TransactionVersion::V0);
    driver.settle();
    assert_eq!(driver.reply(token), Reply::AddPartitions(Ok(())));
    // Ids of partitions this broker does not lead.
    let mut two = Driver::new(TxnConfig {
        state_partitions: 2,
        ..config(TransactionVersion::V2)
    });
    let foreign = (0..100)
        .map(|n| format!("id-{n}"))
        .find(|id| two.txns.state_partition(id) == 1)
        .expect("an id of partition 1");
    let token = two.init(&foreign, None);
    assert_eq!(
        two.reply(token),
        Reply::InitProducerId(Err(TxnError::NotCoordinator))
    );
}

#[test]
fn verification_answers_per_partition_whether_it_is_in_the_transaction() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let producer = driver.initialised("t");
    let partitions: BTreeSet<TopicPartition> = [tp("a", 0), tp("b", 0)].into_iter().collect();
    let check = driver.txns.verify_partitions("t", producer, &partitions);
    assert_eq!(
        check,
        Ok(partitions
            .iter()
            .map(|p| (p.clone(), Err(TxnError::TransactionAbortable)))
            .collect())
    );
    driver.add("t", producer, &[tp("a", 0)], TransactionVersion::V2);
    // Pending: not yet part of it.
    assert_eq!(
        driver
            .txns
            .verify_partitions("t", producer, &partitions)
            .map(|r| r[&tp("a", 0)]),
        Ok(Err(TxnError::TransactionAbortable))
    );
    driver.settle();
    let check = driver
        .txns
        .verify_partitions("t", producer, &partitions)
        .expect("answers");
    assert_eq!(check[&tp("a", 0)], Ok(()));
    assert_eq!(check[&tp("b", 0)], Err(TxnError::TransactionAbortable));
    assert_eq!(
        driver.txns.verify_partitions("t", pe(3, 0), &partitions),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        driver.txns.verify_partitions("x", producer, &partitions),
        Err(TxnError::InvalidProducerIdMapping)
    );
    driver.end("t", producer, TxnResult::Abort, TransactionVersion::V0);
    driver.complete_store(Ok(()));
    assert_eq!(
        driver.txns.verify_partitions("t", producer, &partitions),
        Err(TxnError::ConcurrentTransactions)
    );
}

#[test]
fn describe_and_list_show_the_transactions_with_kafkas_filters() {
    let mut driver = Driver::new(config(TransactionVersion::V2));
    let a = driver.initialised("a");
    driver.initialised("b");
    driver.now_ms = 500;
    driver.add("a", a, &[tp("x", 1)], TransactionVersion::V0);
    driver.settle();
    let description = driver.txns.describe("a").expect("described");
    assert_eq!(description.state, TxnState::Ongoing);
    assert_eq!(description.start_ms, 500);
    assert_eq!(description.partitions, [tp("x", 1)].into_iter().collect());
    assert_eq!(driver.txns.describe(""), Err(TxnError::InvalidRequest));
    assert_eq!(
        driver.txns.describe("c"),
        Err(TxnError::TransactionalIdNotFound)
    );
    let names = |listing: super::state::TxnListing| -> Vec<String> {
        listing
            .transactions
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    };
    let all = driver
        .txns
        .list(&ListFilter::default(), 1_000)
        .expect("listed");
    assert_eq!(names(all), vec!["a", "b"]);
    let ongoing = ListFilter {
        states: vec!["Ongoing".to_string(), "Nonsense".to_string()],
        ..ListFilter::default()
    };
    let listing = driver.txns.list(&ongoing, 1_000).expect("listed");
    assert_eq!(listing.unknown_state_filters, vec!["Nonsense".to_string()]);
    assert_eq!(names(listing), vec!["a"]);
    let by_producer = ListFilter {
        producer_ids: [a.producer_id].into_iter().collect(),
        ..ListFilter::default()
    };
    assert_eq!(
        names(driver.txns.list(&by_producer, 1_000).expect("listed")),
        vec!["a"]
    );
    // Running longer than 600 ms: "a" started at 500, so not at 1000; at 1101 it is.
    // "b" (no transaction, start -1) passes, as in Kafka.
    let long = ListFilter {
        duration_ms: 600,
        ..ListFilter::default()
    };
    assert_eq!(
        names(driver.txns.list(&long, 1_000).expect("listed")),
        vec!["b"]
    );
    assert_eq!(
        names(driver.txns.list(&long, 1_101).expect("listed")),
        vec!["a", "b"]
    );
    let pattern = ListFilter {
        transactional_id_pattern: Some(regex::Regex::new("^(?:b)$").expect("regex")),
        ..ListFilter::default()
    };
    assert_eq!(
        names(driver.txns.list(&pattern, 1_000).expect("listed")),
        vec!["b"]
    );
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Init {
        id: usize,
        recover: bool,
    },
    Add {
        id: usize,
        partition: i32,
        version_2: bool,
    },
    End {
        id: usize,
        commit: bool,
        version_2: bool,
        stale: bool,
    },
    CompleteStore {
        fail: bool,
    },
    WriteMarker,
    Advance {
        ms: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    // Weighted so that transactions often get through several partitions to a commit.
    prop_oneof![
        2 => (0..2usize, prop::bool::weighted(0.2)).prop_map(|(id, recover)| Step::Init { id, recover }),
        4 => (0..2usize, 0..4i32, any::<bool>())
            .prop_map(|(id, partition, version_2)| Step::Add { id, partition, version_2 }),
        2 => (0..2usize, prop::bool::weighted(0.7), any::<bool>(), prop::bool::weighted(0.1)).prop_map(
            |(id, commit, version_2, stale)| Step::End { id, commit, version_2, stale }
        ),
        6 => prop::bool::weighted(0.1).prop_map(|fail| Step::CompleteStore { fail }),
        4 => Just(Step::WriteMarker),
        1 => (1..40_000i64).prop_map(|ms| Step::Advance { ms }),
    ]
}

/// The producer each client last heard of, per id.
fn last_known(driver: &Driver, id: &str) -> ProducerIdAndEpoch {
    driver.txns.get(id).map_or(pe(-1, -1), |metadata| {
        pe(metadata.producer_id, metadata.producer_epoch)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Invariants over random requests, store outcomes, markers and time: never two stores
    /// in flight for one id (checked as outputs arrive), every partition of a committed
    /// transaction gets its COMMIT marker before CompleteCommit is stored, and an id's
    /// durable producer epochs only grow (a new producer id starts again).
    #[test]
    fn random_runs_keep_the_coordinators_invariants(steps in proptest::collection::vec(step(), 1..120)) {
        let ids = ["a", "b"];
        let mut driver = Driver::new(TxnConfig {
            transactional_id_expiration_ms: 100_000,
            ..config(TransactionVersion::V2)
        });
        // Per id: partitions marked for the transaction being completed, by result.
        let mut marked: BTreeMap<String, (TxnResult, BTreeSet<TopicPartition>)> = BTreeMap::new();
        let mut durable: BTreeMap<String, Vec<TxnLogValue>> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Init { id, recover } => {
                    let expected = recover.then(|| last_known(&driver, ids[id])).filter(|p| p.producer_id >= 0);
                    driver.init(ids[id], expected);
                }
                Step::Add { id, partition, version_2 } => {
                    let version = if version_2 { TransactionVersion::V2 } else { TransactionVersion::V0 };
                    let producer = last_known(&driver, ids[id]);
                    driver.add(ids[id], producer, &[tp("p", partition)], version);
                }
                Step::End { id, commit, version_2, stale } => {
                    let version = if version_2 { TransactionVersion::V2 } else { TransactionVersion::V0 };
                    let mut producer = last_known(&driver, ids[id]);
                    if stale {
                        producer.producer_epoch -= 1;
                    }
                    let result = if commit { TxnResult::Commit } else { TxnResult::Abort };
                    driver.end(ids[id], producer, result, version);
                }
                Step::CompleteStore { fail } => {
                    if !driver.stores.is_empty() {
                        let result = if fail { Err(TxnError::CoordinatorNotAvailable) } else { Ok(()) };
                        let store = driver.complete_store(result);
                        if !fail && let Some(value) = store.value.clone() {
                            if value.state == TxnState::CompleteCommit {
                                let (result, partitions) = marked.remove(&store.transactional_id).unwrap_or((TxnResult::Abort, BTreeSet::new()));
                                let prepared = durable[&store.transactional_id]
                                    .iter()
                                    .rev()
                                    .find(|v| v.state == TxnState::PrepareCommit)
                                    .expect("a PrepareCommit before CompleteCommit");
                                prop_assert!(prepared.partitions.is_empty() || result == TxnResult::Commit);
                                prop_assert_eq!(&partitions, &prepared.partitions);
                            }
                            if value.state == TxnState::CompleteAbort {
                                marked.remove(&store.transactional_id);
                            }
                            let history = durable.entry(store.transactional_id.clone()).or_default();
                            if let Some(last) = history.last() {
                                if last.producer_id == value.producer_id {
                                    prop_assert!(value.producer_epoch >= last.producer_epoch,
                                        "epoch went back: {:?} -> {:?}", last, value);
                                } else {
                                    prop_assert_eq!(value.producer_epoch, 0);
                                }
                            }
                            history.push(value);
                        }
                        if store.value.is_none() && !fail {
                            durable.remove(&store.transactional_id);
                        }
                    }
                }
                Step::WriteMarker => {
                    if let Some(markers) = driver.markers.first().cloned() {
                        let partition = markers.partitions.iter().next().cloned();
                        match partition {
                            Some(partition) => {
                                let entry = marked
                                    .entry(markers.transactional_id.clone())
                                    .or_insert((markers.result, BTreeSet::new()));
                                prop_assert_eq!(entry.0, markers.result);
                                entry.1.insert(partition.clone());
                                driver.markers[0].partitions.remove(&partition);
                                let outputs = driver.txns.marker_written(
                                    &markers.transactional_id,
                                    pe(markers.producer_id, markers.producer_epoch),
                                    &partition,
                                    driver.now_ms,
                                );
                                driver.take(outputs);
                            }
                            None => {
                                driver.markers.remove(0);
                            }
                        }
                    }
                }
                Step::Advance { ms } => {
                    driver.now_ms += ms;
                    driver.tick();
                    driver.expire();
                }
            }
            // Every id with a store in flight has exactly one, and nothing else is pending.
            for id in ids {
                let in_flight = driver.stores.iter().filter(|s| s.transactional_id == id).count();
                prop_assert!(in_flight <= 1);
                if in_flight == 1 {
                    prop_assert!(driver.txns.get(id).and_then(|m| m.pending_state()).is_some());
                }
            }
        }
        // Everything completes: no transaction stays half done (a Complete record that
        // failed is stored again by the next tick).
        driver.settle();
        driver.tick();
        driver.settle();
        for id in ids {
            if let Some(metadata) = driver.txns.get(id) {
                prop_assert!(metadata.pending_state().is_none());
                prop_assert!(!matches!(metadata.state, TxnState::PrepareCommit | TxnState::PrepareAbort));
            }
        }
    }
}

#[test]
fn states_and_versions_map_as_kafka_names_them() {
    for state in TxnState::ALL {
        assert_eq!(TxnState::from_id(state.id()), Some(state));
        assert_eq!(TxnState::from_name(state.name()), Some(state));
    }
    assert_eq!(TxnState::from_id(8), None);
    assert_eq!(TxnState::PrepareEpochFence.id(), 7);
    assert!(TxnState::PrepareAbort.may_follow(TxnState::CompleteCommit));
    assert!(!TxnState::PrepareCommit.may_follow(TxnState::Empty));
    // EndTxn v5 and AddPartitionsToTxn v4 are the first version-2 requests.
    assert_eq!(TransactionVersion::for_end_txn(4), TransactionVersion::V0);
    assert_eq!(TransactionVersion::for_end_txn(5), TransactionVersion::V2);
    assert_eq!(
        TransactionVersion::for_add_partitions(3),
        TransactionVersion::V0
    );
    assert_eq!(
        TransactionVersion::for_add_partitions(4),
        TransactionVersion::V2
    );
    assert_eq!(TransactionVersion::V0.log_value_version(), 0);
    assert_eq!(TransactionVersion::V1.log_value_version(), 1);
    assert_eq!(
        TransactionVersion::from_feature_level(7),
        TransactionVersion::V2
    );
    // Java: "copier-1".hashCode() is -520220682; Utils.abs % 50 == 32.
    assert_eq!(super::partition_for("copier-1", 50), 32);
}
