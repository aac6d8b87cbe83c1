//! Property test: random sequences of append / read / roll / reopen / crash / truncate /
//! delete-records / retention against a plain in-memory model of a segmented log.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::path::Path;

use common::{batch, split};
use lmq_storage::batch::{BatchView, set_base_offset, set_partition_leader_epoch};
use lmq_storage::{
    FirstBatch, LogConfig, LogOptions, PartitionLog, ReadBound, ReadLimits, RetentionPolicy,
};
use proptest::prelude::*;

const SEGMENT_BYTES_MAX: u64 = 2 * 1024;

#[derive(Debug, Clone)]
enum Op {
    /// One append call with batches of (records, value bytes).
    Append(Vec<(usize, usize)>),
    /// Read at a position in the readable range (scaled), with max bytes and KIP-74 mode.
    Read {
        pick: u16,
        max_bytes: u64,
        whole: bool,
    },
    Roll,
    CloseAndReopen,
    CrashAndReopen,
    Truncate {
        pick: u16,
    },
    DeleteRecords {
        pick: u16,
    },
    RetainBytes(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((1usize..5, 0usize..300), 1..4).prop_map(Op::Append),
        4 => (any::<u16>(), 0u64..4_000, any::<bool>())
            .prop_map(|(pick, max_bytes, whole)| Op::Read { pick, max_bytes, whole }),
        1 => Just(Op::Roll),
        1 => Just(Op::CloseAndReopen),
        1 => Just(Op::CrashAndReopen),
        1 => any::<u16>().prop_map(|pick| Op::Truncate { pick }),
        1 => any::<u16>().prop_map(|pick| Op::DeleteRecords { pick }),
        1 => (0u64..8_000).prop_map(Op::RetainBytes),
    ]
}

#[derive(Debug, Clone)]
struct ModelBatch {
    base_offset: i64,
    last_offset: i64,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
struct ModelSegment {
    base_offset: i64,
    batches: Vec<ModelBatch>,
}

impl ModelSegment {
    fn size(&self) -> u64 {
        self.batches
            .iter()
            .map(|batch| batch.bytes.len() as u64)
            .sum()
    }
}

/// The log as a list of segments of batches: what the implementation must answer.
#[derive(Debug, Clone)]
struct Model {
    segments: Vec<ModelSegment>,
    log_start_offset: i64,
    log_end_offset: i64,
}

impl Model {
    fn new() -> Self {
        Model {
            segments: vec![ModelSegment {
                base_offset: 0,
                batches: Vec::new(),
            }],
            log_start_offset: 0,
            log_end_offset: 0,
        }
    }

    fn active(&mut self) -> &mut ModelSegment {
        self.segments
            .last_mut()
            .expect("a model always has a segment")
    }

    fn roll(&mut self) {
        if !self.active().batches.is_empty() {
            let base_offset = self.log_end_offset;
            self.segments.push(ModelSegment {
                base_offset,
                batches: Vec::new(),
            });
        }
    }

    fn append(&mut self, sent: &[u8]) {
        let records = BatchView::new(sent).unwrap().records_count() as i64;
        let active = self.active();
        if !active.batches.is_empty() && active.size() + sent.len() as u64 > SEGMENT_BYTES_MAX {
            self.roll();
        }
        let mut bytes = sent.to_vec();
        set_base_offset(&mut bytes, self.log_end_offset);
        set_partition_leader_epoch(&mut bytes, 0);
        let base_offset = self.log_end_offset;
        self.log_end_offset += records;
        let last_offset = self.log_end_offset - 1;
        self.active().batches.push(ModelBatch {
            base_offset,
            last_offset,
            bytes,
        });
    }

    /// Bytes a read at `offset` returns, Kafka style: from the batch holding the offset, whole
    /// batches of one segment within `max_bytes`.
    fn read(&self, offset: i64, max_bytes: u64, whole: bool) -> Option<Vec<u8>> {
        if offset >= self.log_end_offset {
            return None;
        }
        let start = self
            .segments
            .iter()
            .rposition(|segment| segment.base_offset <= offset)?;
        for segment in &self.segments[start..] {
            let Some(first) = segment
                .batches
                .iter()
                .position(|batch| batch.last_offset >= offset)
            else {
                continue;
            };
            let mut out: Vec<u8> = Vec::new();
            for (index, batch) in segment.batches[first..].iter().enumerate() {
                let fits = (out.len() + batch.bytes.len()) as u64 <= max_bytes;
                if !(fits || (index == 0 && whole)) {
                    break;
                }
                out.extend_from_slice(&batch.bytes);
            }
            return if out.is_empty() { None } else { Some(out) };
        }
        None
    }

    fn truncate(&mut self, offset: i64) {
        if offset >= self.log_end_offset {
            return;
        }
        if offset <= self.segments[0].base_offset {
            *self = Model {
                segments: vec![ModelSegment {
                    base_offset: offset,
                    batches: Vec::new(),
                }],
                log_start_offset: offset,
                log_end_offset: offset,
            };
            return;
        }
        self.segments.retain(|segment| segment.base_offset < offset);
        let active = self.active();
        active.batches.retain(|batch| batch.last_offset < offset);
        self.log_end_offset = active
            .batches
            .last()
            .map_or(active.base_offset, |batch| batch.last_offset + 1);
        self.log_start_offset = self.log_start_offset.min(self.log_end_offset);
    }

    fn delete_records(&mut self, offset: i64) {
        if offset <= self.log_start_offset {
            return;
        }
        self.log_start_offset = offset;
        self.drop_below_log_start();
    }

    /// Segments wholly below the log start go at DeleteRecords, retention and reopen.
    fn drop_below_log_start(&mut self) {
        while self.segments.len() > 1 && self.segments[1].base_offset <= self.log_start_offset {
            self.segments.remove(0);
        }
    }

    fn retain_bytes(&mut self, retention_bytes: u64) {
        self.drop_below_log_start();
        let total: u64 = self.segments.iter().map(ModelSegment::size).sum();
        let mut excess = total.saturating_sub(retention_bytes);
        while self.segments.len() > 1 && self.segments[0].size() <= excess {
            excess -= self.segments.remove(0).size();
            self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset);
        }
    }

    fn readable_offset(&self, pick: u16) -> i64 {
        let span = self.log_end_offset - self.log_start_offset + 1;
        self.log_start_offset + i64::from(pick) % span
    }
}

fn config(retention_bytes: Option<u64>) -> LogConfig {
    LogConfig {
        segment_bytes_max: SEGMENT_BYTES_MAX,
        index_interval_bytes: 256,
        retention: RetentionPolicy {
            retention_ms: None,
            retention_bytes,
        },
        ..LogConfig::default()
    }
}

fn reopen(dir: &Path) -> PartitionLog {
    let (mut log, report) =
        PartitionLog::open(dir, config(None), LogOptions::default(), 0).unwrap();
    assert_eq!(report.truncation, None, "nothing was damaged");
    // A single-node leader's high watermark is its log end once it is back.
    log.set_high_watermark(log.log_end_offset());
    log
}

fn assert_same(log: &PartitionLog, model: &Model) {
    assert_eq!(log.log_end_offset(), model.log_end_offset, "log end offset");
    assert_eq!(
        log.log_start_offset(),
        model.log_start_offset,
        "log start offset"
    );
    let bases: Vec<i64> = model
        .segments
        .iter()
        .map(|segment| segment.base_offset)
        .collect();
    assert_eq!(log.segment_base_offsets(), bases, "segment layout");
    let stored = common::read_all(log);
    let expected: Vec<(i64, Vec<u8>)> = model
        .segments
        .iter()
        .flat_map(|segment| &segment.batches)
        .filter(|batch| batch.last_offset >= model.log_start_offset)
        .map(|batch| (batch.base_offset, batch.bytes.clone()))
        .collect();
    assert_eq!(stored, expected, "all batches");
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = reopen(dir.path());
    let mut model = Model::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append(shape) => {
                let mut sent = Vec::new();
                for (index, &(records, value_bytes)) in shape.iter().enumerate() {
                    let one = batch(
                        records,
                        value_bytes,
                        (step * 10 + index) as u64,
                        step as i64,
                    );
                    model.append(&one);
                    sent.extend(one);
                }
                log.append(&mut sent, 0, 0).unwrap();
                log.set_high_watermark(log.log_end_offset());
            }
            Op::Read {
                pick,
                max_bytes,
                whole,
            } => {
                let offset = model.readable_offset(pick);
                let first_batch = if whole {
                    FirstBatch::Whole
                } else {
                    FirstBatch::WithinMaxBytes
                };
                let limits = ReadLimits {
                    max_bytes,
                    bound: ReadBound::LogEnd,
                    first_batch,
                };
                let region = log.read(offset, limits).unwrap().region;
                let got = region.map(|region| region.read_to_vec().unwrap());
                assert_eq!(
                    got,
                    model.read(offset, max_bytes, whole),
                    "read at {offset}"
                );
                if let Some(bytes) = &got {
                    split(bytes);
                }
            }
            Op::Roll => {
                log.roll().unwrap();
                model.roll();
            }
            Op::CloseAndReopen => {
                log.close().unwrap();
                log = reopen(dir.path());
                model.drop_below_log_start();
                assert_same(&log, &model);
            }
            Op::CrashAndReopen => {
                drop(log);
                log = reopen(dir.path());
                model.drop_below_log_start();
                assert_same(&log, &model);
            }
            Op::Truncate { pick } => {
                let offset = model.readable_offset(pick);
                log.truncate_to(offset).unwrap();
                model.truncate(offset);
                log.set_high_watermark(log.log_end_offset());
            }
            Op::DeleteRecords { pick } => {
                let offset = model.readable_offset(pick);
                log.advance_log_start(offset).unwrap();
                model.delete_records(offset);
            }
            Op::RetainBytes(retention_bytes) => {
                log.set_config(config(Some(retention_bytes))).unwrap();
                log.apply_retention(0).unwrap();
                log.set_config(config(None)).unwrap();
                model.retain_bytes(retention_bytes);
            }
        }
        assert_eq!(
            log.log_end_offset(),
            model.log_end_offset,
            "after step {step}"
        );
        assert_eq!(
            log.log_start_offset(),
            model.log_start_offset,
            "after step {step}"
        );
    }
    assert_same(&log, &model);
    assert_eq!(log.check_indexes().unwrap(), Vec::<String>::new());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
