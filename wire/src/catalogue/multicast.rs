//! Multicast: three UDP sockets A, B, C bind the same group (or the wildcard) and port with a mix
//! of reuse options, each bound one joins 239.255.0.1 on `lo` (IP_ADD_MEMBERSHIP with interface
//! 127.0.0.1), and a fourth socket sends one datagram to the group with IP_MULTICAST_IF 127.0.0.1
//! and IP_MULTICAST_LOOP on. Every socket is then drained within a bounded wait.
//!
//! Facts, one value per repetition (three, each on fresh sockets and a fresh port; 24 when the
//! three disagree):
//! - `flags.<label>` (Outcomes): setsockopt results, `ok`, `skipped` when nothing is set, or the
//!   first errno.
//! - `bind.<label>` (Outcomes): its bind().
//! - `join.<label>` (Outcomes): its IP_ADD_MEMBERSHIP, `skipped` when the bind failed.
//! - `sender` (Outcomes): IP_MULTICAST_IF then IP_MULTICAST_LOOP on the sending socket, `ok` or the
//!   first errno.
//! - `send` (Outcomes): the sendto() to 239.255.0.1.
//! - `received` (Receivers): the labels of every socket that got the datagram, joined by `+` in
//!   A, B, C order, or `none`.
//! - `datagrams.<label>` (Counts): how many datagrams that socket read (a copy delivered twice
//!   shows as 2); 0 for a socket that is not bound.
//!
//! Besides the sets where all three sockets agree, the mixes `first-none` (A without options, B
//! and C with SO_REUSEADDR), `last-none` (C without), `first-none-rp` (A without, B and C with
//! SO_REUSEPORT), and `.other-uid` cells where B belongs to another user.

use std::net::Ipv4Addr;

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
    /// A sets nothing, B and C SO_REUSEADDR.
    FirstNone,
    /// A and B SO_REUSEADDR, C nothing.
    LastNone,
    /// A sets nothing, B and C SO_REUSEPORT.
    FirstNoneReuseport,
}

impl MulticastFlags {
    pub fn token(self) -> &'static str {
        match self {
            MulticastFlags::AddrOnly => "ra",
            MulticastFlags::PortOnly => "rp",
            MulticastFlags::Both => "ra-rp",
            MulticastFlags::Mixed => "mixed",
            MulticastFlags::Neither => "none",
            MulticastFlags::FirstNone => "first-none",
            MulticastFlags::LastNone => "last-none",
            MulticastFlags::FirstNoneReuseport => "first-none-rp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MulticastCell {
    pub bind: MulticastBind,
    pub flags: MulticastFlags,
    /// Whether B belongs to another user than A and C.
    pub uid: super::Uid,
}

/// The group every multicast cell joins and sends to: organisation-local scope, never routed.
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 0, 1);

impl MulticastCell {
    /// The multicast group (239.255.0.1).
    pub fn group(&self) -> Ipv4Addr {
        GROUP
    }

    /// The address the three sockets bind: the group itself or 0.0.0.0.
    pub fn bind_addr(&self) -> Ipv4Addr {
        match self.bind {
            MulticastBind::Group => GROUP,
            MulticastBind::Wildcard => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The labels of the three sockets, in bind order.
    pub const LABELS: [&'static str; 3] = ["A", "B", "C"];

    pub fn socket_flags(&self) -> [super::ReuseFlags; 3] {
        use super::ReuseFlags as F;
        match self.flags {
            MulticastFlags::AddrOnly => [F::ADDR; 3],
            MulticastFlags::PortOnly => [F::PORT; 3],
            MulticastFlags::Both => [F::BOTH; 3],
            MulticastFlags::Mixed => [F::ADDR, F::PORT, F::ADDR],
            MulticastFlags::Neither => [F::NONE; 3],
            MulticastFlags::FirstNone => [F::NONE, F::ADDR, F::ADDR],
            MulticastFlags::LastNone => [F::ADDR, F::ADDR, F::NONE],
            MulticastFlags::FirstNoneReuseport => [F::NONE, F::PORT, F::PORT],
        }
    }

    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}",
            match self.bind {
                MulticastBind::Group => "group",
                MulticastBind::Wildcard => "wildcard",
            },
            self.flags.token()
        ) + match self.uid {
            super::Uid::Same | super::Uid::SameOtherProcess => "",
            super::Uid::Different => ".other-uid",
        }
    }

    pub(super) fn describe(&self) -> String {
        let [a, b, c] = self.socket_flags();
        format!(
            "UDP multicast: sockets A ({}), B ({}{}), C ({}) bind {}:p and join 239.255.0.1 on lo; one datagram to the group; record binds and receivers",
            a.describe(),
            b.describe(),
            match self.uid {
                super::Uid::Same | super::Uid::SameOtherProcess => "",
                super::Uid::Different => ", another user",
            },
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
            MulticastFlags::FirstNone,
            MulticastFlags::LastNone,
            MulticastFlags::FirstNoneReuseport,
        ] {
            cells.push(MulticastCell {
                bind,
                flags,
                uid: super::Uid::Same,
            });
        }
        for flags in [MulticastFlags::AddrOnly, MulticastFlags::PortOnly] {
            cells.push(MulticastCell {
                bind,
                flags,
                uid: super::Uid::Different,
            });
        }
    }
    cells
}
