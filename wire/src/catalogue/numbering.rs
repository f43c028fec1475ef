//! How a SO_REUSEPORT group numbers its members, read through a classic BPF program attached with
//! SO_ATTACH_REUSEPORT_CBPF that returns one fixed index (`ret #k`): every flow goes to the member
//! at index `k`, whatever the packet holds, so which member received the flows *is* the member at
//! that index. socket(7) says the members "are numbered in the order in which they are added to
//! the group (that is, the order of bind(2) calls for UDP sockets or the order of listen(2) calls
//! for TCP sockets)", that on close "the last socket in the group will be moved into the closed
//! socket's position", that an invalid index falls back to plain SO_REUSEPORT, that members
//! added later inherit the program, and that any member may replace it.
//!
//! Members are labelled in creation order, `m0` to `m3`, every one with SO_REUSEPORT (and nothing
//! else) before its bind; the group is on 127.0.0.1 (or [::1], IPV6_V6ONLY) and a flow is a UDP
//! datagram or a TCP connection from a fresh loopback client, as in the distribution family.
//! [`NumberingCell::PROBE_FLOWS`] flows are sent under each program; a fact about an index lists,
//! per flow, the label of the member that received it (`none` when nobody did).
//!
//! The kinds, and their facts (besides `reuseport`, `bind` and, TCP, `listen`: Outcomes per
//! member, as the members were set up; and `attach`: Outcomes, one per SO_ATTACH_REUSEPORT_CBPF
//! in the order made):
//! - `order`: UDP members are bound in the order m2, m0, m3, m1; TCP members are bound in creation
//!   order and then listen in the order m2, m0, m3, m1. `index0` … `index3` (Receivers per flow,
//!   program `ret #k` attached from m0): who is at each index. Bind (UDP) or listen (TCP) order
//!   gives m2, m0, m3, m1; creation order would give m0, m1, m2, m3.
//! - `close-first`, `close-middle`, `close-last`: members join in creation order (bind for UDP,
//!   listen for TCP), `index0` … `index3` are read as above, then the member at index 0, 1 or 3
//!   (m0, m1 or m3) is closed and `after0` … `after2` are read the same way (attached from the
//!   first member still open); `counts_past_end` (Counts per open member, in label order) holds where the flows under
//!   `ret #3`, now one past the last index, went.
//! - `invalid`: a group of four in creation order; `valid` (Receivers per flow under `ret #2`, the
//!   control: the program is in force), then `counts_n` (under `ret #4`, one past the last
//!   member) and `counts_max` (under `ret #0xffffffff`): Counts per member. Falling back to plain
//!   SO_REUSEPORT spreads them by hash, as with no program.
//! - `inherit`: m0 and m1 form the group and m0 attaches `ret #2`, an index no member has yet
//!   (`counts_before_join`, Counts per member); then m2 joins without any BPF option of its own
//!   (`join`: Outcomes, SO_REUSEPORT then bind then listen) and `after_join` (Receivers per flow)
//!   shows whether the group's program now sends everything to it.
//! - `replace`: a group of four in creation order; `ret #0` attached from m0 (`step1`), `ret #3`
//!   from m2 (`step2`), `ret #1` from m3 (`step3`): Receivers per flow after each.
//!
//! Every kind also records `lost` (Count): flows no member received.
//!
//! An experiment ends as `unsupported` when a member cannot join (no SO_REUSEPORT: 3.8) or the
//! first attach fails (no SO_ATTACH_REUSEPORT_CBPF before 4.5: ENOPROTOOPT; a TCP listener before
//! 4.6: EINVAL), with the errno in the reason.

use serde::{Deserialize, Serialize};

use super::{IpFamily, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NumberingKind {
    Order,
    CloseFirst,
    CloseMiddle,
    CloseLast,
    Invalid,
    Inherit,
    Replace,
}

impl NumberingKind {
    pub const ALL: [NumberingKind; 7] = [
        NumberingKind::Order,
        NumberingKind::CloseFirst,
        NumberingKind::CloseMiddle,
        NumberingKind::CloseLast,
        NumberingKind::Invalid,
        NumberingKind::Inherit,
        NumberingKind::Replace,
    ];

    pub fn token(self) -> &'static str {
        match self {
            NumberingKind::Order => "order",
            NumberingKind::CloseFirst => "close-first",
            NumberingKind::CloseMiddle => "close-middle",
            NumberingKind::CloseLast => "close-last",
            NumberingKind::Invalid => "invalid",
            NumberingKind::Inherit => "inherit",
            NumberingKind::Replace => "replace",
        }
    }

    /// For the close kinds: the index (and creation label) of the member closed.
    pub fn closed(self) -> Option<usize> {
        match self {
            NumberingKind::CloseFirst => Some(0),
            NumberingKind::CloseMiddle => Some(1),
            NumberingKind::CloseLast => Some(3),
            _ => None,
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            NumberingKind::Order => {
                "members added in an order other than their creation (UDP: bind order, TCP: listen order)"
            }
            NumberingKind::CloseFirst => "the member at index 0 closed",
            NumberingKind::CloseMiddle => "the member at index 1 closed",
            NumberingKind::CloseLast => "the member at the last index closed",
            NumberingKind::Invalid => "a program returning an index past the last member",
            NumberingKind::Inherit => "a member added after the program was attached",
            NumberingKind::Replace => "the program replaced from other members",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NumberingCell {
    pub transport: Transport,
    pub family: IpFamily,
    pub kind: NumberingKind,
}

impl NumberingCell {
    /// Members of every group (the inherit kind starts with two and adds the third).
    pub const MEMBERS: usize = 4;

    /// Flows sent under each program: enough that a fixed index is seen on every one of them, and
    /// that a hash fallback over four members spreads them (all 32 on one member by chance: 4^-31).
    pub const PROBE_FLOWS: usize = 32;

    /// The order members are added to the group in the `order` kind, by creation label.
    pub const ADD_ORDER: [usize; 4] = [2, 0, 3, 1];

    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}.{}",
            self.transport.token(),
            self.family.token(),
            self.kind.token()
        )
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{} {}: a SO_REUSEPORT group on {} read through classic BPF programs returning a fixed index, {}; record which member receives the flows of each index",
            self.transport.token().to_uppercase(),
            self.family.token(),
            match self.family {
                IpFamily::V4 => "127.0.0.1",
                IpFamily::V6 => "[::1]",
            },
            self.kind.what()
        )
    }
}

pub(super) fn all() -> Vec<NumberingCell> {
    let mut cells = Vec::new();
    for transport in Transport::ALL {
        for kind in NumberingKind::ALL {
            // The numbering itself on both families; its other rules are the group's, on IPv4.
            let families: &[IpFamily] = if kind == NumberingKind::Order {
                &[IpFamily::V4, IpFamily::V6]
            } else {
                &[IpFamily::V4]
            };
            for &family in families {
                cells.push(NumberingCell {
                    transport,
                    family,
                    kind,
                });
            }
        }
    }
    cells
}
