//! Lookup cost against group size: the time to deliver a connection or datagram to a port shared
//! by 1, 16, 256 and 1024 SO_REUSEPORT sockets, measured in one run so that ratios compare like
//! with like.
//!
//! Facts: `sizes` (Counts: the group sizes that could be built), `ns_per_flow` (Numbers: median
//! nanoseconds per connection or datagram, one per size), `bind` (Outcomes: the first failing bind
//! per size, `ok` otherwise).

use serde::{Deserialize, Serialize};

use super::Transport;

pub const GROUP_SIZES: [u32; 4] = [1, 16, 256, 1024];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LookupCostCell {
    pub transport: Transport,
}

impl LookupCostCell {
    pub(super) fn id_suffix(&self) -> String {
        self.transport.token().to_string()
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{}: time per {} to a loopback port shared by groups of {:?} SO_REUSEPORT sockets; record the median per size",
            self.transport.token().to_uppercase(),
            match self.transport {
                Transport::Tcp => "connection",
                Transport::Udp => "datagram",
            },
            GROUP_SIZES
        )
    }
}

pub(super) fn all() -> Vec<LookupCostCell> {
    Transport::ALL
        .iter()
        .map(|&transport| LookupCostCell { transport })
        .collect()
}
