//! Multicast: three UDP sockets bind the same group (or the wildcard) and port with a mix of reuse
//! options, join 239.255.0.1 on `lo`, and one datagram is sent to the group.
//!
//! Facts: `flags` (setsockopt results per socket), `bind` (Outcomes: each socket's bind, in
//! order), `join` (Outcomes: IP_ADD_MEMBERSHIP per bound socket), `received` (Receivers: every
//! socket label that got the datagram, repeated per repetition as `rep:label`), `send` (Outcomes).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MulticastBind {
    /// Bind the group address itself.
    Group,
    /// Bind 0.0.0.0.
    Wildcard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MulticastFlags {
    /// All three with SO_REUSEADDR only.
    AddrOnly,
    /// All three with SO_REUSEPORT only.
    PortOnly,
    /// All three with both.
    Both,
    /// SO_REUSEADDR, SO_REUSEPORT, SO_REUSEADDR: the mixed case.
    Mixed,
    /// None of them sets anything (the baseline).
    Neither,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MulticastCell {
    pub bind: MulticastBind,
    pub flags: MulticastFlags,
}

impl MulticastCell {
    pub fn socket_flags(&self) -> [super::ReuseFlags; 3] {
        use super::ReuseFlags as F;
        match self.flags {
            MulticastFlags::AddrOnly => [F::ADDR; 3],
            MulticastFlags::PortOnly => [F::PORT; 3],
            MulticastFlags::Both => [F::BOTH; 3],
            MulticastFlags::Mixed => [F::ADDR, F::PORT, F::ADDR],
            MulticastFlags::Neither => [F::NONE; 3],
        }
    }

    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}",
            match self.bind {
                MulticastBind::Group => "group",
                MulticastBind::Wildcard => "wildcard",
            },
            match self.flags {
                MulticastFlags::AddrOnly => "ra",
                MulticastFlags::PortOnly => "rp",
                MulticastFlags::Both => "ra-rp",
                MulticastFlags::Mixed => "mixed",
                MulticastFlags::Neither => "none",
            }
        )
    }

    pub(super) fn describe(&self) -> String {
        let [a, b, c] = self.socket_flags();
        format!(
            "UDP multicast: sockets A ({}), B ({}), C ({}) bind {}:p and join 239.255.0.1 on lo; one datagram to the group; record binds and receivers",
            a.describe(),
            b.describe(),
            c.describe(),
            match self.bind {
                MulticastBind::Group => "239.255.0.1",
                MulticastBind::Wildcard => "0.0.0.0",
            }
        )
    }
}

pub(super) fn all() -> Vec<MulticastCell> {
    let mut cells = Vec::new();
    for bind in [MulticastBind::Group, MulticastBind::Wildcard] {
        for flags in [
            MulticastFlags::Neither,
            MulticastFlags::AddrOnly,
            MulticastFlags::PortOnly,
            MulticastFlags::Both,
            MulticastFlags::Mixed,
        ] {
            cells.push(MulticastCell { bind, flags });
        }
    }
    cells
}
