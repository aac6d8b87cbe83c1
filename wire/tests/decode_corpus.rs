#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]
//! The fuzz seeds (`fuzz/seeds/`, recorded from real clients by `scripts/fuzz.sh --capture`)
//! as a normal test: every recorded request frame and broker answer decodes, every recorded
//! record batch is a valid v2 batch whose records LMQ's decompression reads back, and deterministic
//! mutations of each seed (bit flips, truncations, length-field edits, shifted bytes) are
//! errors or values, never panics.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use lmq_wire::protocol::messages::ApiKey;
use lmq_wire::protocol::records::RecordBatchDecoder;
use lmq_wire::records::{Codec, decompress};
use lmq_wire::{decode_request, decode_response};

/// Mutations per seed: a few thousand in all, well under a second in a debug build.
const MUTATIONS_PER_SEED: usize = 200;
/// The broker's bound is 64 MiB; the logic under test is the same at 1 MiB.
const DECOMPRESSED_BYTES_MAX: usize = 1024 * 1024;

/// Batch layout offsets (Kafka RecordBatch v2), as in `lmq_storage::batch`.
const BATCH_HEADER_BYTES: usize = 61;
const OFFSET_LENGTH: usize = 8;
const OFFSET_MAGIC: usize = 16;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_RECORDS_COUNT: usize = 57;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

/// One pseudo-random edit of `seed`.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    if out.is_empty() {
        return out;
    }
    match rng.below(5) {
        // Bit flips.
        0 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
        }
        // Truncation.
        1 => out.truncate(rng.below(out.len())),
        // A length or count field (i16 or i32, big-endian) set to an edge value. Values
        // stay small: see `request_mutations_do_not_panic` for why.
        2 => {
            let length = out.len() as i32;
            let values = [
                -2,
                -1,
                0,
                1,
                2,
                127,
                128,
                255,
                length - 1,
                length,
                length + 1,
            ];
            let value = values[rng.below(values.len())];
            let at = rng.below(out.len());
            if rng.below(2) == 0 {
                let field = (value as i16).to_be_bytes();
                for (index, byte) in field.iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + index) {
                        *slot = *byte;
                    }
                }
            } else {
                for (index, byte) in value.to_be_bytes().iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + index) {
                        *slot = *byte;
                    }
                }
            }
        }
        // One byte set to an edge value.
        3 => {
            let values = [0x00, 0x01, 0x7f, 0x80, 0xff];
            let at = rng.below(out.len());
            out[at] = values[rng.below(values.len())];
        }
        // Bytes removed or duplicated: every later field shifts.
        _ => {
            let at = rng.below(out.len());
            let span = 1 + rng.below(8.min(out.len() - at));
            if rng.below(2) == 0 {
                out.drain(at..at + span);
            } else {
                let copy = out[at..at + span].to_vec();
                out.splice(at..at, copy);
            }
        }
    }
    out
}

fn rng_for(path: &Path) -> Rng {
    // FNV-1a of the file name: each seed its own stream, the same on every run.
    let name = path.file_name().unwrap().as_encoded_bytes();
    let hash = name.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    Rng(hash | 1)
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn recorded_requests_decode() {
    let seeds = seeds("request");
    assert!(
        seeds.len() >= 10,
        "fuzz/seeds/request holds {} files; re-record with scripts/fuzz.sh --capture",
        seeds.len()
    );
    for (path, bytes) in &seeds {
        let request = decode_request(Bytes::copy_from_slice(bytes))
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(
            request.correlation_id(),
            i32_at(bytes, 4),
            "{}",
            path.display()
        );
    }
}

#[test]
fn every_truncation_of_a_recorded_request_is_an_error() {
    for (path, bytes) in seeds("request") {
        for cut in 0..bytes.len() {
            // Cut inside its fields, a request does not decode (and nothing panics).
            assert!(
                decode_request(Bytes::copy_from_slice(&bytes[..cut])).is_err(),
                "{} cut at {cut} decoded",
                path.display()
            );
        }
    }
}

/// Bit flips, length edits and shifted bytes in requests. A mutated array count used to make
/// `kafka-protocol` preallocate up to 2^32 elements and abort the process (found by
/// `scripts/fuzz.sh`, target `request`); the patched copy in `third_party/kafka-protocol`
/// bounds the preallocation by the bytes present.
#[test]
fn request_mutations_do_not_panic() {
    for (path, bytes) in seeds("request") {
        let mut rng = rng_for(&path);
        for _ in 0..MUTATIONS_PER_SEED {
            let _ = decode_request(Bytes::from(mutate(&mut rng, &bytes)));
        }
    }
}

/// A `response` seed: the API key and version the client expects (the first 4 bytes, as
/// the fuzz target reads them) and the frame body.
fn response_seed(path: &Path, bytes: &[u8]) -> (ApiKey, i16, Bytes) {
    assert!(bytes.len() >= 4, "{}: no selector", path.display());
    let api_key = ApiKey::try_from(i16::from_be_bytes([bytes[0], bytes[1]]))
        .unwrap_or_else(|()| panic!("{}: unknown API key", path.display()));
    let version = i16::from_be_bytes([bytes[2], bytes[3]]);
    (api_key, version, Bytes::copy_from_slice(&bytes[4..]))
}

#[test]
fn recorded_responses_decode() {
    let seeds = seeds("response");
    assert!(
        seeds.len() >= 10,
        "fuzz/seeds/response holds {} files; re-record with scripts/fuzz.sh --capture",
        seeds.len()
    );
    for (path, bytes) in &seeds {
        let (api_key, version, frame) = response_seed(path, bytes);
        let (correlation_id, _) = decode_response(frame, api_key, version)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(correlation_id, i32_at(bytes, 4), "{}", path.display());
    }
}

/// What a broker that stops mid-answer sends: every cut of a recorded answer is an error.
#[test]
fn every_truncation_of_a_recorded_response_is_an_error() {
    for (path, bytes) in seeds("response") {
        let (api_key, version, frame) = response_seed(&path, &bytes);
        for cut in 0..frame.len() {
            assert!(
                decode_response(frame.slice(..cut), api_key, version).is_err(),
                "{} cut at {cut} decoded",
                path.display()
            );
        }
    }
}

/// Bit flips, length edits and shifted bytes in answers: what the replica fetcher may read
/// from a broken peer. An answer or an error, never a panic.
#[test]
fn response_mutations_do_not_panic() {
    for (path, bytes) in seeds("response") {
        let (api_key, version, frame) = response_seed(&path, &bytes);
        let mut rng = rng_for(&path);
        for _ in 0..MUTATIONS_PER_SEED {
            let mutated = Bytes::from(mutate(&mut rng, &frame));
            let _ = decode_response(mutated, api_key, version);
        }
    }
}

/// The framing `BatchView::new` requires. lmq-storage is not a dependency of this crate;
/// `fuzz/tests/seeds.rs` runs `BatchView::validated` itself on the same seeds.
fn check_framing(path: &Path, batch: &[u8]) {
    let name = path.display();
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "{name}: shorter than a header"
    );
    assert_eq!(
        i64::from(i32_at(batch, OFFSET_LENGTH)) + 12,
        batch.len() as i64,
        "{name}: length field"
    );
    assert_eq!(batch[OFFSET_MAGIC], 2, "{name}: magic");
    assert!(
        i32_at(batch, OFFSET_LAST_OFFSET_DELTA) >= 0,
        "{name}: last offset delta"
    );
    assert!(
        i32_at(batch, OFFSET_RECORDS_COUNT) >= 0,
        "{name}: records count"
    );
}

fn attributes(batch: &[u8]) -> i16 {
    i16::from_be_bytes([batch[OFFSET_ATTRIBUTES], batch[OFFSET_ATTRIBUTES + 1]])
}

#[test]
fn recorded_batches_are_valid_and_decompress() {
    let seeds = seeds("record_batch");
    assert!(
        seeds.len() >= 5,
        "fuzz/seeds/record_batch holds {} files; re-record with scripts/fuzz.sh --capture",
        seeds.len()
    );
    for (path, batch) in &seeds {
        let name = path.display();
        check_framing(path, batch);
        let codec = Codec::from_attributes(attributes(batch))
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        // kafka-protocol's decoder checks the CRC-32C and parses every record; LMQ's
        // decompression (what ListOffsets uses) stands in for its own codecs.
        let mut bytes = Bytes::copy_from_slice(batch);
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut bytes,
            Some(|records: &mut Bytes, _compression| {
                let out = decompress(codec, records, DECOMPRESSED_BYTES_MAX)
                    .unwrap_or_else(|error| panic!("{name}: decompress: {error}"));
                Ok(Bytes::from(out))
            }),
        )
        .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(bytes.is_empty(), "{name}: bytes after the batch");
        assert_eq!(
            set.records.len(),
            i32_at(batch, OFFSET_RECORDS_COUNT) as usize,
            "{name}: records"
        );
    }
}

#[test]
fn batch_mutations_do_not_panic() {
    for (path, batch) in seeds("record_batch") {
        let mut rng = rng_for(&path);
        for _ in 0..MUTATIONS_PER_SEED {
            let mutant = mutate(&mut rng, &batch);
            // What the broker does with a stored batch: header reads, then (ListOffsets)
            // decompression of the records under the codec its attributes name.
            let _ = RecordBatchDecoder::decode_batch_info(&mut Bytes::copy_from_slice(&mutant));
            if mutant.len() < BATCH_HEADER_BYTES {
                continue;
            }
            let records = &mutant[BATCH_HEADER_BYTES..];
            if let Ok(codec) = Codec::from_attributes(attributes(&mutant)) {
                if let Ok(out) = decompress(codec, records, DECOMPRESSED_BYTES_MAX) {
                    assert!(out.len() <= DECOMPRESSED_BYTES_MAX.max(records.len()));
                }
            }
            // Every codec over the same bytes: the decoders see foreign formats too.
            for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
                let _ = decompress(codec, records, DECOMPRESSED_BYTES_MAX);
            }
        }
    }
}
