//! The cleaner's key → latest offset map, bounded by a memory budget like Kafka's
//! `SkimpyOffsetMap`: each key is stored as a 128-bit hash (two SipHash digests with
//! different seeds) plus its offset, 24 bytes a slot, open addressing with linear probing.
//! Two keys whose 128-bit hashes collide count as one key (as MD5 collisions do in Kafka).

use std::hash::{DefaultHasher, Hasher};

/// Bytes one slot takes: a 16-byte hash and an 8-byte offset.
pub const SLOT_BYTES: u64 = 24;
/// Fill the map to at most this share of its slots (`log.cleaner.io.buffer.load.factor`).
const LOAD_PERCENT: u64 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    hash: [u64; 2],
    /// -1 marks an empty slot.
    offset: i64,
}

const EMPTY: Slot = Slot {
    hash: [0, 0],
    offset: -1,
};

/// Key hash → offset of the latest record with that key, over a prefix of the dirty range.
#[derive(Debug)]
pub struct OffsetMap {
    /// Allocated by the first [`OffsetMap::clear`]: a broker whose cleaner never runs a
    /// pass does not hold the dedupe buffer.
    slots: Vec<Slot>,
    slots_count: usize,
    entries: usize,
    entries_max: usize,
    /// The last offset the map covers: records after it were not looked at.
    latest_offset: i64,
}

impl OffsetMap {
    /// A map within `memory_bytes` (at least two slots).
    pub fn with_memory(memory_bytes: u64) -> Self {
        let slots = usize::try_from((memory_bytes / SLOT_BYTES).max(2)).unwrap_or(usize::MAX);
        let entries_max = usize::try_from(slots as u64 * LOAD_PERCENT / 100)
            .unwrap_or(usize::MAX)
            .max(1);
        OffsetMap {
            slots: Vec::new(),
            slots_count: slots,
            entries: 0,
            entries_max,
            latest_offset: -1,
        }
    }

    /// Empties the map; it covers nothing after `latest_offset`.
    pub fn clear(&mut self, latest_offset: i64) {
        if self.slots.is_empty() {
            self.slots = vec![EMPTY; self.slots_count];
        } else {
            self.slots.fill(EMPTY);
        }
        self.entries = 0;
        self.latest_offset = latest_offset;
    }

    pub fn len(&self) -> usize {
        self.entries
    }
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
    /// Keys it holds at most.
    pub fn capacity(&self) -> usize {
        self.entries_max
    }
    /// The buffer's size once allocated.
    pub fn memory_bytes(&self) -> u64 {
        self.slots_count as u64 * SLOT_BYTES
    }
    pub fn latest_offset(&self) -> i64 {
        self.latest_offset
    }
    pub fn update_latest_offset(&mut self, offset: i64) {
        self.latest_offset = self.latest_offset.max(offset);
    }
    /// Share of the key capacity used.
    pub fn utilization(&self) -> f64 {
        self.entries as f64 / self.slots_count as f64
    }

    /// Records `offset` as the latest for `key`. `false` when the key is new and the map is
    /// full: nothing is changed then.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        if self.slots.is_empty() {
            self.clear(self.latest_offset);
        }
        let hash = hash_key(key);
        let index = self.probe(hash);
        let slot = &mut self.slots[index];
        if slot.offset < 0 {
            if self.entries >= self.entries_max {
                return false;
            }
            self.entries += 1;
            *slot = Slot { hash, offset };
        } else {
            slot.offset = slot.offset.max(offset);
        }
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        if self.slots.is_empty() {
            return None;
        }
        let slot = self.slots[self.probe(hash_key(key))];
        (slot.offset >= 0).then_some(slot.offset)
    }

    /// The slot holding `hash`, or the empty slot where it would go. The map is never full
    /// (entries_max < slots), so the probe ends.
    fn probe(&self, hash: [u64; 2]) -> usize {
        let length = self.slots.len();
        let mut index = usize::try_from(hash[0] % length as u64).unwrap_or(0);
        loop {
            let slot = &self.slots[index];
            if slot.offset < 0 || slot.hash == hash {
                return index;
            }
            index = (index + 1) % length;
        }
    }
}

fn hash_key(key: &[u8]) -> [u64; 2] {
    let mut first = DefaultHasher::new();
    first.write_u8(1);
    first.write(key);
    let mut second = DefaultHasher::new();
    second.write_u8(2);
    second.write(key);
    [first.finish(), second.finish()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_per_key_and_refuses_new_keys_when_full() {
        // 10 slots of 24 bytes: 9 keys at most.
        let mut map = OffsetMap::with_memory(240);
        assert_eq!(map.capacity(), 9);
        assert!(map.slots.is_empty(), "allocated on first use");
        map.clear(-1);
        for key in 0..9u32 {
            assert!(map.put(&key.to_be_bytes(), i64::from(key)));
        }
        assert!(!map.put(b"one too many", 100), "a tenth key does not fit");
        assert_eq!(map.get(b"one too many"), None);
        // A known key still updates when full.
        assert!(map.put(&3u32.to_be_bytes(), 50));
        assert_eq!(map.get(&3u32.to_be_bytes()), Some(50));
        assert_eq!(map.len(), 9);
        assert_eq!(map.memory_bytes(), 240);
        map.clear(7);
        assert!(map.is_empty());
        assert_eq!(map.latest_offset(), 7);
        assert_eq!(map.get(&3u32.to_be_bytes()), None);
    }
}
