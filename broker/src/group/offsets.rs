//! Committed offsets: the in-memory table and the records that persist it in the internal
//! `__consumer_offsets` topic, in Kafka's own layout (key v1, value v3), so the table can be
//! rebuilt by replaying the topic after a restart; and the groups' metadata records (key v2,
//! value v3 as Kafka writes them; v0 to v4 read), from which a replay restores each group:
//! its generation, protocol, leader and members.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{GroupRecord, RecordedMember};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

const KEY_VERSION_OFFSET_COMMIT: i16 = 1;
const VALUE_VERSION: i16 = 3;
const KEY_VERSION_GROUP_METADATA: i16 = 2;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OffsetKey {
    pub group_id: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// All committed offsets, by group, topic and partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetTable {
    offsets: BTreeMap<OffsetKey, CommittedOffset>,
}

impl OffsetTable {
    pub fn get(&self, key: &OffsetKey) -> Option<&CommittedOffset> {
        self.offsets.get(key)
    }

    pub fn put(&mut self, key: OffsetKey, value: CommittedOffset) {
        self.offsets.insert(key, value);
    }

    /// Takes every entry of `other`.
    pub fn merge(&mut self, other: OffsetTable) {
        self.offsets.extend(other.offsets);
    }

    /// Drops every entry whose group `keep` rejects.
    pub fn retain_groups(&mut self, keep: impl Fn(&str) -> bool) {
        self.offsets.retain(|key, _| keep(&key.group_id));
    }

    pub fn remove(&mut self, key: &OffsetKey) -> bool {
        self.offsets.remove(key).is_some()
    }

    /// Every committed partition of a group: a range of the ordered table (keys sort by
    /// group first), not a pass over every group's offsets.
    pub fn of_group<'a>(
        &'a self,
        group_id: &'a str,
    ) -> impl Iterator<Item = (&'a OffsetKey, &'a CommittedOffset)> {
        let first = OffsetKey {
            group_id: group_id.to_string(),
            topic: String::new(),
            partition: i32::MIN,
        };
        self.offsets
            .range(first..)
            .take_while(move |(key, _)| key.group_id == group_id)
    }

    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .offsets
            .keys()
            .map(|key| key.group_id.clone())
            .collect();
        groups.dedup();
        groups
    }

    /// Applies one record replayed from the offsets topic; other record kinds are skipped.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Some(key) = decode_key(key) else { return };
        match value.map(decode_value) {
            Some(Some(value)) => self.put(key, value),
            Some(None) => {}
            None => {
                self.remove(&key);
            }
        }
    }
}

/// What replaying `__consumer_offsets` rebuilds: the committed offsets, the last stored
/// metadata record of each group, and the transactional offset commits whose transaction
/// has no marker yet (by producer id; they count once its COMMIT marker comes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub offsets: OffsetTable,
    pub groups: BTreeMap<String, GroupRecord>,
    pub transactional: BTreeMap<i64, TransactionalOffsets>,
}

/// Offset commits of one producer's ongoing transaction (Kafka's
/// `pendingTransactionalOffsetCommits`): the latest per partition.
pub type TransactionalOffsets = BTreeMap<OffsetKey, CommittedOffset>;

/// The transaction marker a control record's key names: `Some(true)` COMMIT, `Some(false)`
/// ABORT (key: version i16, type i16: 0 abort, 1 commit).
pub fn control_commit(key: &[u8]) -> Option<bool> {
    match key.get(2..4) {
        Some([0, 0]) => Some(false),
        Some([0, 1]) => Some(true),
        _ => None,
    }
}

impl Replayed {
    /// Applies one record, in log order; unknown record kinds are skipped.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        if let Some(group_id) = decode_group_key(key) {
            match value.map(|value| decode_group_value(&group_id, value)) {
                Some(Some(record)) => {
                    self.groups.insert(group_id, record);
                }
                Some(None) => {
                    tracing::warn!(group = %group_id, "skipped an unreadable group metadata record");
                }
                None => {
                    self.groups.remove(&group_id);
                }
            }
        } else {
            self.offsets.apply(key, value);
        }
    }

    /// Applies an offset commit of producer `producer_id`'s transaction: held until its
    /// marker.
    pub fn apply_transactional(&mut self, producer_id: i64, key: &[u8], value: Option<&[u8]>) {
        if let (Some(key), Some(Some(value))) = (decode_key(key), value.map(decode_value)) {
            self.transactional
                .entry(producer_id)
                .or_default()
                .insert(key, value);
        }
    }

    /// Producer `producer_id`'s transaction ended: its offsets count (commit) or go.
    pub fn end_transaction(&mut self, producer_id: i64, commit: bool) {
        if let Some(offsets) = self.transactional.remove(&producer_id)
            && commit
        {
            for (key, value) in offsets {
                self.offsets.put(key, value);
            }
        }
    }

    /// Every group either kind of record names.
    pub fn group_ids(&self) -> Vec<String> {
        let mut groups = self.offsets.groups();
        groups.extend(self.groups.keys().cloned());
        groups.sort();
        groups.dedup();
        groups
    }
}

fn put_string(out: &mut BytesMut, text: &str) {
    // Group ids, topics and metadata are bounded well below i16::MAX by the handlers.
    out.put_i16(i16::try_from(text.len()).unwrap_or(i16::MAX));
    out.put_slice(&text.as_bytes()[..text.len().min(i16::MAX as usize)]);
}

fn put_nullable_string(out: &mut BytesMut, text: Option<&str>) {
    match text {
        Some(text) => put_string(out, text),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    // Bounded by the group metadata limit, far below i32::MAX.
    out.put_i32(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
    out.put_slice(&bytes[..bytes.len().min(i32::MAX as usize)]);
}

fn get_string(bytes: &mut &[u8]) -> Option<String> {
    if bytes.remaining() < 2 {
        return None;
    }
    let length = usize::try_from(bytes.get_i16()).ok()?;
    let text = bytes.get(..length)?;
    let text = String::from_utf8(text.to_vec()).ok()?;
    bytes.advance(length);
    Some(text)
}

pub fn encode_key(key: &OffsetKey) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(KEY_VERSION_OFFSET_COMMIT);
    put_string(&mut out, &key.group_id);
    put_string(&mut out, &key.topic);
    out.put_i32(key.partition);
    out.freeze()
}

pub fn encode_value(value: &CommittedOffset) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(VALUE_VERSION);
    out.put_i64(value.offset);
    out.put_i32(value.leader_epoch);
    put_string(&mut out, &value.metadata);
    out.put_i64(value.commit_timestamp_ms);
    out.freeze()
}

pub fn encode_group_key(group_id: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(KEY_VERSION_GROUP_METADATA);
    put_string(&mut out, group_id);
    out.freeze()
}

pub fn encode_group_value(record: &GroupRecord) -> Bytes {
    let mut out = BytesMut::with_capacity(record.value_bytes());
    out.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut out, &record.protocol_type);
    out.put_i32(record.generation_id);
    put_nullable_string(&mut out, record.protocol_name.as_deref());
    put_nullable_string(&mut out, record.leader.as_deref());
    out.put_i64(record.state_timestamp_ms);
    out.put_i32(i32::try_from(record.members.len()).unwrap_or(i32::MAX));
    for member in &record.members {
        put_string(&mut out, &member.member_id);
        put_nullable_string(&mut out, member.group_instance_id.as_deref());
        put_string(&mut out, &member.client_id);
        put_string(&mut out, &member.client_host);
        out.put_i32(member.rebalance_timeout_ms);
        out.put_i32(member.session_timeout_ms);
        put_bytes(&mut out, &member.subscription);
        put_bytes(&mut out, &member.assignment);
    }
    out.freeze()
}

pub fn decode_group_key(mut bytes: &[u8]) -> Option<String> {
    if bytes.remaining() < 2 || bytes.get_i16() != KEY_VERSION_GROUP_METADATA {
        return None;
    }
    get_string(&mut bytes)
}

/// Reads a group metadata value of any version Kafka has written (0 to 4; 4 is the first
/// flexible one: compact strings and arrays, tagged fields). Total: `None` for anything
/// malformed, and nothing is allocated beyond the bytes present.
pub fn decode_group_value(group_id: &str, bytes: &[u8]) -> Option<GroupRecord> {
    let mut reader = Reader {
        bytes,
        flexible: false,
    };
    let version = reader.i16()?;
    if !(0..=4).contains(&version) {
        return None;
    }
    reader.flexible = version >= 4;
    let protocol_type = reader.string()?;
    let generation_id = reader.i32()?;
    let protocol_name = reader.nullable_string()?;
    let leader = reader.nullable_string()?;
    let state_timestamp_ms = if version >= 2 { reader.i64()? } else { -1 };
    let count = reader.array_length()?;
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = reader.string()?;
        let group_instance_id = if version >= 3 {
            reader.nullable_string()?
        } else {
            None
        };
        let client_id = reader.string()?;
        let client_host = reader.string()?;
        let rebalance_timeout_ms = if version >= 1 { reader.i32()? } else { -1 };
        let session_timeout_ms = reader.i32()?;
        let subscription = reader.bytes()?;
        let assignment = reader.bytes()?;
        reader.tagged_fields()?;
        members.push(RecordedMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            // v0 had one timeout for both.
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    reader.tagged_fields()?;
    Some(GroupRecord {
        group_id: group_id.to_string(),
        protocol_type,
        generation_id,
        protocol_name,
        leader,
        state_timestamp_ms,
        members,
    })
}

/// A cursor over a record value in Kafka's message encoding (`flexible`: compact lengths as
/// unsigned varints plus one, tagged fields).
struct Reader<'a> {
    bytes: &'a [u8],
    flexible: bool,
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Option<&[u8]> {
        let taken = self.bytes.get(..count)?;
        self.bytes = &self.bytes[count..];
        Some(taken)
    }

    fn i16(&mut self) -> Option<i16> {
        (self.bytes.remaining() >= 2).then(|| self.bytes.get_i16())
    }

    fn i32(&mut self) -> Option<i32> {
        (self.bytes.remaining() >= 4).then(|| self.bytes.get_i32())
    }

    fn i64(&mut self) -> Option<i64> {
        (self.bytes.remaining() >= 8).then(|| self.bytes.get_i64())
    }

    fn unsigned_varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = *self.take(1)?.first()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A length; `None` inside for null (-1, or 0 when compact).
    fn length(&mut self, wide: bool) -> Option<Option<usize>> {
        if self.flexible {
            let plus_one = self.unsigned_varint()?;
            return Some(usize::try_from(plus_one.checked_sub(1)?).ok());
        }
        let length = if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        if length < -1 {
            return None;
        }
        Some(usize::try_from(length).ok())
    }

    fn nullable_string(&mut self) -> Option<Option<String>> {
        match self.length(false)? {
            None => Some(None),
            Some(length) => {
                let text = self.take(length)?;
                Some(Some(String::from_utf8(text.to_vec()).ok()?))
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        self.nullable_string()?
    }

    fn bytes(&mut self) -> Option<Bytes> {
        let length = self.length(true)?.unwrap_or(0);
        Some(Bytes::copy_from_slice(self.take(length)?))
    }

    fn array_length(&mut self) -> Option<usize> {
        Some(self.length(true)?.unwrap_or(0))
    }

    /// Skips a flexible struct's tagged fields (none before v4).
    fn tagged_fields(&mut self) -> Option<()> {
        if !self.flexible {
            return Some(());
        }
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            self.unsigned_varint()?;
            let size = usize::try_from(self.unsigned_varint()?).ok()?;
            self.take(size)?;
        }
        Some(())
    }
}

pub fn decode_key(mut bytes: &[u8]) -> Option<OffsetKey> {
    if bytes.remaining() < 2 || bytes.get_i16() != KEY_VERSION_OFFSET_COMMIT {
        return None;
    }
    let group_id = get_string(&mut bytes)?;
    let topic = get_string(&mut bytes)?;
    if bytes.remaining() < 4 {
        return None;
    }
    Some(OffsetKey {
        group_id,
        topic,
        partition: bytes.get_i32(),
    })
}

pub fn decode_value(mut bytes: &[u8]) -> Option<CommittedOffset> {
    if bytes.remaining() < 2 || bytes.get_i16() != VALUE_VERSION || bytes.remaining() < 12 {
        return None;
    }
    let offset = bytes.get_i64();
    let leader_epoch = bytes.get_i32();
    let metadata = get_string(&mut bytes)?;
    if bytes.remaining() < 8 {
        return None;
    }
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms: bytes.get_i64(),
    })
}

pub use crate::coordinator_log::partition_for;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_tombstones_delete() {
        let key = OffsetKey {
            group_id: "g".to_string(),
            topic: "t".to_string(),
            partition: 3,
        };
        let value = CommittedOffset {
            offset: 42,
            leader_epoch: 0,
            metadata: "meta".to_string(),
            commit_timestamp_ms: 1_000,
        };
        let mut table = OffsetTable::default();
        table.apply(&encode_key(&key), Some(&encode_value(&value)));
        assert_eq!(table.get(&key), Some(&value));
        assert_eq!(table.groups(), ["g"]);
        table.apply(&encode_key(&key), None);
        assert_eq!(table.get(&key), None);
        table.apply(b"\x00\x02garbage", Some(b"x"));
        assert_eq!(table, OffsetTable::default());
        assert_eq!(decode_value(&encode_value(&value)[..10]), None);
    }

    fn recorded_group() -> GroupRecord {
        GroupRecord {
            group_id: "g".to_string(),
            protocol_type: "consumer".to_string(),
            generation_id: 7,
            protocol_name: Some("range".to_string()),
            leader: Some("m-1".to_string()),
            state_timestamp_ms: 1_000,
            members: vec![RecordedMember {
                member_id: "m-1".to_string(),
                group_instance_id: Some("instance".to_string()),
                client_id: "c".to_string(),
                client_host: "/127.0.0.1".to_string(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 2,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"assigned"),
            }],
        }
    }

    #[test]
    fn group_records_round_trip_whole_and_tombstones_delete() {
        let record = recorded_group();
        let value = encode_group_value(&record);
        assert_eq!(value.len(), record.value_bytes());
        let mut replayed = Replayed::default();
        replayed.apply(&encode_group_key("g"), Some(&value));
        assert_eq!(replayed.groups.get("g"), Some(&record));
        assert_eq!(replayed.group_ids(), ["g"]);
        replayed.apply(&encode_group_key("g"), None);
        assert_eq!(replayed, Replayed::default());
        // Every cut of the value is refused, never read as something else.
        for cut in 0..value.len() {
            assert_eq!(decode_group_value("g", &value[..cut]), None, "cut at {cut}");
        }
    }

    /// Version 4 (flexible: compact strings, arrays and bytes, tagged fields), as Kafka's
    /// generated `GroupMetadataValue` writes it, and version 0 (no rebalance timeout, state
    /// timestamp or instance id).
    #[test]
    fn group_records_of_older_and_flexible_versions_are_read() {
        let mut v4 = BytesMut::new();
        v4.put_i16(4);
        let compact = |out: &mut BytesMut, bytes: &[u8]| {
            out.put_u8(u8::try_from(bytes.len() + 1).unwrap());
            out.put_slice(bytes);
        };
        compact(&mut v4, b"consumer");
        v4.put_i32(7);
        compact(&mut v4, b"range");
        compact(&mut v4, b"m-1");
        v4.put_i64(1_000);
        v4.put_u8(2); // one member
        compact(&mut v4, b"m-1");
        compact(&mut v4, b"instance");
        compact(&mut v4, b"c");
        compact(&mut v4, b"/127.0.0.1");
        v4.put_i32(1);
        v4.put_i32(2);
        compact(&mut v4, b"sub");
        compact(&mut v4, b"assigned");
        v4.put_u8(1); // one tagged field in the member: tag 5, 2 bytes
        v4.put_slice(&[5, 2, 0xab, 0xcd]);
        v4.put_u8(0); // no tagged fields at the top
        assert_eq!(decode_group_value("g", &v4), Some(recorded_group()));

        let mut v0 = BytesMut::new();
        v0.put_i16(0);
        put_string(&mut v0, "consumer");
        v0.put_i32(3);
        put_nullable_string(&mut v0, None);
        put_nullable_string(&mut v0, None);
        v0.put_i32(1);
        put_string(&mut v0, "m-1");
        put_string(&mut v0, "c");
        put_string(&mut v0, "/h");
        v0.put_i32(10_000);
        put_bytes(&mut v0, b"s");
        put_bytes(&mut v0, b"a");
        let read = decode_group_value("g", &v0).unwrap();
        assert_eq!((read.generation_id, read.state_timestamp_ms), (3, -1));
        assert_eq!(read.members[0].rebalance_timeout_ms, 10_000);
        assert_eq!(read.members[0].group_instance_id, None);
        // An unknown version and an absurd member count are refused, not allocated.
        assert_eq!(decode_group_value("g", &[0, 5, 0, 0]), None);
        let mut huge = BytesMut::new();
        huge.put_i16(3);
        put_string(&mut huge, "consumer");
        huge.put_i32(1);
        huge.put_i16(-1);
        huge.put_i16(-1);
        huge.put_i64(0);
        huge.put_i32(i32::MAX);
        assert_eq!(decode_group_value("g", &huge), None);
    }

    #[test]
    fn a_group_s_offsets_are_its_own_only() {
        let mut table = OffsetTable::default();
        let value = CommittedOffset {
            offset: 1,
            leader_epoch: 0,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        };
        for (group, topic, partition) in [
            ("f", "t", 0),
            ("g", "", -5),
            ("g", "a", 2),
            ("g", "b", 0),
            ("g0", "a", 0),
            ("h", "a", 0),
        ] {
            let key = OffsetKey {
                group_id: group.to_string(),
                topic: topic.to_string(),
                partition,
            };
            table.put(key, value.clone());
        }
        let of_g: Vec<(&str, i32)> = table
            .of_group("g")
            .map(|(key, _)| (key.topic.as_str(), key.partition))
            .collect();
        assert_eq!(of_g, [("", -5), ("a", 2), ("b", 0)]);
        assert_eq!(table.of_group("e").count(), 0);
        assert_eq!(table.of_group("h").count(), 1);
    }

    #[test]
    fn transactional_commits_count_only_after_their_commit_marker() {
        let key = |partition: i32| OffsetKey {
            group_id: "g".to_string(),
            topic: "t".to_string(),
            partition,
        };
        let value = |offset: i64| CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 1,
        };
        let mut replayed = Replayed::default();
        replayed.apply_transactional(7, &encode_key(&key(0)), Some(&encode_value(&value(5))));
        replayed.apply_transactional(8, &encode_key(&key(1)), Some(&encode_value(&value(9))));
        replayed.apply(&encode_key(&key(2)), Some(&encode_value(&value(3))));
        assert_eq!(replayed.offsets.get(&key(0)), None, "not before the marker");
        replayed.end_transaction(7, true);
        replayed.end_transaction(8, false);
        assert_eq!(replayed.offsets.get(&key(0)).map(|v| v.offset), Some(5));
        assert_eq!(replayed.offsets.get(&key(1)), None, "aborted");
        assert_eq!(replayed.offsets.get(&key(2)).map(|v| v.offset), Some(3));
        assert!(replayed.transactional.is_empty());
        // Control record keys: version 0, type 0 abort, 1 commit.
        assert_eq!(control_commit(&[0, 0, 0, 1]), Some(true));
        assert_eq!(control_commit(&[0, 0, 0, 0]), Some(false));
        assert_eq!(control_commit(&[0, 0]), None);
    }
}
