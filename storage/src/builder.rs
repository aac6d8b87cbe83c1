//! Encodes uncompressed RecordBatch v2 bytes, as a producer would send them.
//!
//! The broker uses it for batches it writes itself (internal topics); tests and benchmarks use
//! it to make real batches. Compressed batches come from clients or the wire crate's codecs.

use crate::batch::{BATCH_HEADER_BYTES, MAGIC_V2};

/// A header of a record: a UTF-8 key and optional bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// Builds one uncompressed batch, base offset 0 and leader epoch -1 as a producer sends it.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    records: Vec<u8>,
    records_count: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    /// Attribute bits beyond the codec: transactional (0x10), control (0x20).
    flags: i16,
}

impl BatchBuilder {
    pub fn new(base_timestamp_ms: i64) -> Self {
        BatchBuilder {
            base_timestamp_ms,
            max_timestamp_ms: base_timestamp_ms,
            records: Vec::new(),
            records_count: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            flags: 0,
        }
    }

    /// Marks the batch as part of a transaction (attribute 0x10); needs [`Self::producer`].
    pub fn transactional(mut self) -> Self {
        self.flags |= crate::batch::ATTRIBUTE_TRANSACTIONAL;
        self
    }

    /// A control batch holding one transaction marker (Kafka's `EndTransactionMarker`): key
    /// version 0 and type (0 abort, 1 commit), value version 0 and the coordinator epoch.
    /// Markers carry no sequence.
    pub fn marker(
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        kind: crate::control::MarkerKind,
        timestamp_ms: i64,
    ) -> Vec<u8> {
        let mut builder = BatchBuilder::new(timestamp_ms).producer(producer_id, producer_epoch, -1);
        builder.flags = crate::batch::ATTRIBUTE_TRANSACTIONAL | crate::batch::ATTRIBUTE_CONTROL;
        let (key, value) = crate::control::encode_marker(kind, coordinator_epoch);
        builder.push(Some(&key), Some(&value), timestamp_ms);
        builder.build()
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn push(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, timestamp_ms: i64) {
        self.push_with_headers(key, value, timestamp_ms, &[]);
    }

    pub fn push_with_headers(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: i64,
        headers: &[RecordHeader<'_>],
    ) {
        let mut body =
            Vec::with_capacity(16 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len));
        body.push(0); // record attributes, unused in v2
        put_varlong(&mut body, timestamp_ms - self.base_timestamp_ms);
        put_varlong(&mut body, i64::from(self.records_count));
        put_bytes(&mut body, key);
        put_bytes(&mut body, value);
        put_varlong(&mut body, headers.len() as i64);
        for header in headers {
            put_bytes(&mut body, Some(header.key.as_bytes()));
            put_bytes(&mut body, header.value);
        }
        put_varlong(&mut self.records, body.len() as i64);
        self.records.extend_from_slice(&body);
        self.records_count += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
    }

    pub fn records_count(&self) -> i32 {
        self.records_count
    }

    /// The encoded batch. A batch needs at least one record to be valid.
    pub fn build(&self) -> Vec<u8> {
        self.assemble(self.flags, &self.records)
    }

    /// The batch with its records compressed by `compress` under Kafka codec id `codec`
    /// (1 gzip, 2 snappy, 3 lz4, 4 zstd): the codecs themselves live in the wire crate.
    pub fn build_compressed<E>(
        &self,
        codec: i16,
        compress: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        if codec == 0 {
            return Ok(self.build());
        }
        let compressed = compress(&self.records)?;
        Ok(self.assemble(self.flags | (codec & 0x07), &compressed))
    }

    fn assemble(&self, attributes: i16, records: &[u8]) -> Vec<u8> {
        let total = BATCH_HEADER_BYTES + records.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&0i64.to_be_bytes()); // base offset: the log assigns it
        // Past i32::MAX the length saturates, and the log refuses the batch as malformed.
        let length = i32::try_from(total - 12).unwrap_or(i32::MAX);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&[0; 4]); // CRC, filled below
        out.extend_from_slice(&attributes.to_be_bytes()); // codec bits; CreateTime
        out.extend_from_slice(&(self.records_count - 1).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.records_count.to_be_bytes());
        out.extend_from_slice(records);
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

/// Zig-zag varint, as Kafka encodes every length and delta inside a v2 record.
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push(zigzag.to_le_bytes()[0] | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag.to_le_bytes()[0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_kafka_zigzag_encoding() {
        let cases: [(i64, &[u8]); 5] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (300, &[0xd8, 0x04]),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out, expected, "value {value}");
        }
    }

    #[test]
    fn a_single_record_batch_has_the_exact_kafka_layout() {
        let mut builder = BatchBuilder::new(5);
        builder.push(None, Some(b"hi"), 5);
        let bytes = builder.build();
        // record: length 8, attrs 0, ts delta 0, offset delta 0, key -1, len 2, "hi", 0 headers
        assert_eq!(&bytes[61..], &[16, 0, 0, 0, 1, 4, b'h', b'i', 0]);
        assert_eq!(bytes.len(), 70);
    }

    #[test]
    fn a_compressed_build_sets_the_codec_and_covers_the_payload_with_the_crc() {
        let mut builder = BatchBuilder::new(5).producer(7, 1, 40);
        builder.push(None, Some(b"hi"), 5);
        let plain = builder.build();
        let reversed = builder
            .build_compressed(4, |records| {
                Ok::<_, ()>(records.iter().rev().copied().collect())
            })
            .unwrap();
        let view = crate::batch::BatchView::validated(&reversed).unwrap();
        assert_eq!(view.compression(), crate::batch::Compression::Zstd);
        assert_eq!((view.producer_id(), view.base_sequence()), (7, 40));
        let mut payload = plain[61..].to_vec();
        payload.reverse();
        assert_eq!(view.records_bytes(), payload);
        assert_eq!(builder.build_compressed(0, |_| Err(())), Ok(plain));
        assert_eq!(
            builder.build_compressed(2, |_| Err("codec failed")),
            Err("codec failed")
        );
    }
}
