//! Committed offsets: the in-memory table and the records that persist it in the internal
//! `__consumer_offsets` topic, in Kafka's own layout (key v1, value v3), so the table can be
//! rebuilt by replaying the topic after a restart; and the groups' metadata records (key v2,
//! value v3), whose generation a replay restores.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::GroupRecord;

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

/// What replaying `__consumer_offsets` rebuilds: the committed offsets, and the last stored
/// generation of each group with a metadata record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub offsets: OffsetTable,
    pub generations: BTreeMap<String, i32>,
}

impl Replayed {
    /// Applies one record, in log order; unknown record kinds are skipped.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        if let Some(group_id) = decode_group_key(key) {
            match value.map(decode_group_generation) {
                Some(Some(generation)) => {
                    self.generations.insert(group_id, generation);
                }
                Some(None) => {}
                None => {
                    self.generations.remove(&group_id);
                }
            }
        } else {
            self.offsets.apply(key, value);
        }
    }

    /// Every group either kind of record names.
    pub fn groups(&self) -> Vec<String> {
        let mut groups = self.offsets.groups();
        groups.extend(self.generations.keys().cloned());
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

/// The generation of a group metadata value (any version: the generation follows the
/// protocol type in all of them).
pub fn decode_group_generation(mut bytes: &[u8]) -> Option<i32> {
    if bytes.remaining() < 2 || !(0..=4).contains(&bytes.get_i16()) {
        return None;
    }
    get_string(&mut bytes)?;
    (bytes.remaining() >= 4).then(|| bytes.get_i32())
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

/// The offsets topic partition that holds a group's records (Kafka's rule: hash of the
/// group id modulo the partition count; Java's `String.hashCode` so the layout matches).
pub fn partition_for(group_id: &str, partitions: usize) -> usize {
    let hash = group_id.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    // Kafka's Utils.abs maps i32::MIN to 0.
    let positive = if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    };
    usize::try_from(positive).unwrap_or(0) % partitions.max(1)
}

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

    #[test]
    fn group_records_round_trip_their_generation_and_tombstones_delete() {
        let record = GroupRecord {
            group_id: "g".to_string(),
            protocol_type: "consumer".to_string(),
            generation_id: 7,
            protocol_name: Some("range".to_string()),
            leader: None,
            state_timestamp_ms: 1_000,
            members: vec![crate::group::state::RecordedMember {
                member_id: "m-1".to_string(),
                group_instance_id: None,
                client_id: "c".to_string(),
                client_host: "/127.0.0.1".to_string(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 2,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"assigned"),
            }],
        };
        let value = encode_group_value(&record);
        assert_eq!(value.len(), record.value_bytes());
        let mut replayed = Replayed::default();
        replayed.apply(&encode_group_key("g"), Some(&value));
        assert_eq!(replayed.generations.get("g"), Some(&7));
        assert_eq!(replayed.groups(), ["g"]);
        replayed.apply(&encode_group_key("g"), None);
        assert_eq!(replayed, Replayed::default());
        assert_eq!(decode_group_generation(&value[..12]), None);
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
    fn groups_map_to_partitions_like_kafka() {
        // Java: "test-group".hashCode() == 627841412, % 50 == 12.
        assert_eq!(partition_for("test-group", 50), 12);
        assert_eq!(partition_for("anything", 1), 0);
    }
}
