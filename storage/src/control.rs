//! Transaction markers: the one record of a control batch that ends a transaction (Kafka's
//! `EndTransactionMarker`). Key: version (i16, 0) and type (i16: 0 abort, 1 commit); value:
//! version (i16, 0) and the coordinator epoch (i32). Control batches are never compressed.

use crate::batch::{BatchView, parse_records};

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkerKind {
    Abort,
    Commit,
}

impl MarkerKind {
    fn control_type(self) -> i16 {
        match self {
            MarkerKind::Abort => 0,
            MarkerKind::Commit => 1,
        }
    }
}

/// A transaction marker as stored: who it ends and with what outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub kind: MarkerKind,
    pub timestamp_ms: i64,
}

/// What a control batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlContent {
    Marker(TxnMarker),
    /// No record (the cleaner emptied it) or a control type that ends no transaction (the
    /// KRaft types Kafka's metadata log uses): nothing for producer state.
    Other,
}

/// The key and value of a marker record.
pub(crate) fn encode_marker(kind: MarkerKind, coordinator_epoch: i32) -> ([u8; 4], [u8; 6]) {
    let mut key = [0u8; 4];
    key[2..4].copy_from_slice(&kind.control_type().to_be_bytes());
    let mut value = [0u8; 6];
    value[2..6].copy_from_slice(&coordinator_epoch.to_be_bytes());
    (key, value)
}

/// Reads the marker of a control batch; `Err` when its first record is malformed (a marker
/// with a short value, a compressed control batch).
pub fn decode_control(view: &BatchView<'_>) -> Result<ControlContent, String> {
    if view.compression() != crate::batch::Compression::None {
        return Err("compressed control batch".to_string());
    }
    let records = parse_records(view, view.records_bytes())
        .ok_or_else(|| "malformed control record".to_string())?;
    let Some(record) = records.first() else {
        return Ok(ControlContent::Other);
    };
    let key = record.key.ok_or("control record without a key")?;
    let field = |bytes: &[u8], at: usize| -> Option<i16> {
        Some(i16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    let control_type = field(key, 2).ok_or("control record key too short")?;
    let kind = match control_type {
        0 => MarkerKind::Abort,
        1 => MarkerKind::Commit,
        _ => return Ok(ControlContent::Other),
    };
    let value = record.value.ok_or("transaction marker without a value")?;
    let coordinator_epoch = value
        .get(2..6)
        .and_then(|bytes| bytes.try_into().ok())
        .map(i32::from_be_bytes)
        .ok_or("transaction marker value too short")?;
    Ok(ControlContent::Marker(TxnMarker {
        producer_id: view.producer_id(),
        producer_epoch: view.producer_epoch(),
        coordinator_epoch,
        kind,
        timestamp_ms: record.timestamp_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::BatchBuilder;

    #[test]
    fn a_marker_round_trips_through_a_control_batch() {
        for kind in [MarkerKind::Abort, MarkerKind::Commit] {
            let bytes = BatchBuilder::marker(7, 3, 11, kind, 1_000);
            let view = BatchView::validated(&bytes).unwrap();
            assert!(view.is_control() && view.is_transactional());
            assert_eq!(
                decode_control(&view),
                Ok(ControlContent::Marker(TxnMarker {
                    producer_id: 7,
                    producer_epoch: 3,
                    coordinator_epoch: 11,
                    kind,
                    timestamp_ms: 1_000,
                }))
            );
        }
    }
}
