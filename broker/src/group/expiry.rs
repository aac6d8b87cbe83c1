//! Offset expiry (`offsets.retention.minutes`), Kafka's rules since 2.1 (KIP-211) as a pure
//! decision: which committed offsets of a group are past their retention at `now_ms`, and
//! whether the group itself goes. The coordinator writes the tombstones.

use super::offsets::{CommittedOffset, OffsetKey};
use super::state::{Group, GroupState};

/// From when an offset's retention runs, for a group in this state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Since {
    /// Each offset from its own commit: a group without a protocol (simple commits only).
    Commit,
    /// Every offset from the moment the group became Empty (its commit time when that moment
    /// is unknown: a record of an old format).
    Emptied(Option<i64>),
}

fn since(group: Option<&Group>) -> Option<Since> {
    let Some(group) = group else {
        return Some(Since::Commit);
    };
    match (&group.protocol_type, group.state) {
        (None, _) => Some(Since::Commit),
        (Some(_), GroupState::Empty) => Some(Since::Emptied(group.state_timestamp_ms)),
        // A group with members keeps its offsets (Kafka also expires those of topics a
        // Stable consumer group no longer subscribes to, KIP-496; LMQ does not read
        // subscriptions).
        (Some(_), _) => None,
    }
}

/// The offsets of `group` (its committed ones are `offsets`) whose retention passed at
/// `now_ms`. Offsets with a commit still on its way to the log are not passed in.
pub fn expired_offsets<'a>(
    group: Option<&Group>,
    offsets: impl Iterator<Item = (&'a OffsetKey, &'a CommittedOffset)>,
    now_ms: i64,
    retention_ms: i64,
) -> Vec<OffsetKey> {
    let Some(since) = since(group) else {
        return Vec::new();
    };
    offsets
        .filter(|(_, committed)| {
            let from = match since {
                Since::Commit | Since::Emptied(None) => committed.commit_timestamp_ms,
                Since::Emptied(Some(emptied_ms)) => emptied_ms,
            };
            now_ms.saturating_sub(from) >= retention_ms
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// Whether a group whose offsets are all gone (or never were) is deleted: an Empty one is
/// (Kafka's group becomes Dead and its metadata record gets a tombstone).
pub fn group_is_removable(group: &Group) -> bool {
    group.state == GroupState::Empty && group.members.is_empty()
}
