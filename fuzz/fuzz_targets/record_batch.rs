//! Any bytes as one record batch: `BatchView::new` / `validated` accept or refuse them, and
//! every accessor and the timestamp search on an accepted view stay within the bytes. The
//! ListOffsets path that looks inside compressed batches (`lmq_wire::records::decompress`,
//! then `first_offset_in_records`) runs too, with a smaller output bound than the broker's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmq_storage::batch::{
    BatchView, batch_total_bytes, first_offset_at_or_after, first_offset_in_records,
};
use lmq_wire::records::{Codec, decompress};

/// The broker bounds decompression at 64 MiB; the bound logic is the same at 1 MiB and the
/// fuzzer stays fast.
const DECOMPRESSED_BYTES_MAX: usize = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Some(total) = batch_total_bytes(data) {
        assert!(total >= 12);
    }
    let Ok(view) = BatchView::new(data) else {
        assert!(BatchView::validated(data).is_err());
        return;
    };
    let crc_ok = view.verify_crc().is_ok();
    assert_eq!(BatchView::validated(data).is_ok(), crc_ok);
    assert_eq!(view.bytes().len(), data.len());
    assert_eq!(view.total_bytes(), data.len());
    assert_eq!(batch_total_bytes(data), Some(data.len() as u64));
    assert!(view.last_offset() >= view.base_offset());
    assert!(view.last_offset_delta() >= 0 && view.records_count() >= 0);
    assert_eq!(view.magic(), 2);
    let _ = (
        view.partition_leader_epoch(),
        view.crc(),
        view.attributes(),
        view.compression(),
        view.is_log_append_time(),
        view.is_transactional(),
        view.is_control(),
        view.producer_id(),
        view.producer_epoch(),
        view.base_sequence(),
    );
    assert_eq!(view.records_bytes().len(), data.len() - 61);
    let records = Codec::from_attributes(view.attributes())
        .ok()
        .and_then(|codec| decompress(codec, view.records_bytes(), DECOMPRESSED_BYTES_MAX).ok());
    if let Some(records) = &records {
        assert!(records.len() <= DECOMPRESSED_BYTES_MAX.max(view.records_bytes().len()));
    }
    let base = view.base_timestamp();
    let max = view.max_timestamp();
    for target in [
        i64::MIN,
        -1,
        0,
        base,
        base.saturating_add(1),
        max,
        max.saturating_add(1),
        i64::MAX,
    ] {
        // The offset of a match is the batch's base offset plus the record's own offset
        // delta, which nothing bounds for arbitrary bytes; only the timestamp is promised.
        if let Some((timestamp, _offset)) = first_offset_at_or_after(&view, target) {
            assert!(timestamp >= target);
        }
        if let Some(records) = &records
            && let Some((timestamp, _offset)) = first_offset_in_records(&view, records, target)
        {
            assert!(timestamp >= target);
        }
    }
});
