//! How many replicas must have a produced record before the broker answers: the `acks` field
//! of a Produce request, shared by the broker and the native client.

/// A produce's acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer at all (offsets are unknown: deliveries report -1). `acks=0`.
    None,
    /// The leader has written it. `acks=1`.
    Leader,
    /// Every in-sync replica has it; required for idempotence. `acks=-1` (or `all`).
    All,
}

impl Acks {
    /// The value on the wire.
    pub fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// The mode a request asks for; `None` for a value Kafka refuses (INVALID_REQUIRED_ACKS).
    pub fn from_code(code: i16) -> Option<Acks> {
        match code {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Acks;

    #[test]
    fn codes_round_trip_and_others_are_refused() {
        for acks in [Acks::None, Acks::Leader, Acks::All] {
            assert_eq!(Acks::from_code(acks.code()), Some(acks));
        }
        for code in [2, -2, 3, i16::MAX, i16::MIN] {
            assert_eq!(Acks::from_code(code), None);
        }
    }
}
