//! Lookup cost against group size: the time to deliver a connection or datagram to a port shared
//! by 1, 16, 256 and 1024 SO_REUSEPORT sockets, measured in one run so that ratios compare like
//! with like.
//!
//! Set-up: RLIMIT_NOFILE is raised to [`LookupCostCell::FD_LIMIT`] first (the hard limit too, when
//! it is lower and the guest may), then one group per size is built on 127.0.0.1, each on its own
//! port, all alive at once. Measuring goes in rounds; each round visits every built group (starting
//! one group later each round, so drift cannot favour a size) and times
//! [`LookupCostCell::BATCH`] flows to it, one by one:
//! - UDP: `send()` of a 1-byte datagram from a client connected to the group's port. Loopback
//!   delivers inside the sender's call, so the receive-side socket lookup is inside the timed call.
//!   The datagrams are drained after the batch, outside the timing.
//! - TCP: a blocking `connect()` from a client created before the timing (SO_LINGER 0, a 1 s
//!   SO_SNDTIMEO guard), which covers the SYN's listener lookup and the whole handshake. The
//!   connections are accepted and closed after the batch, outside the timing.
//!
//! Both keep the flows' 4-tuples fixed per group: UDP sends from one client, TCP clients bind
//! (SO_REUSEADDR) the source ports the group's first batch got. Every round therefore reaches the
//! same few members, so what can grow with the group size is the lookup itself, not the cost of
//! touching many members whose sockets are cold in the cache (natively that alone adds ~10% at
//! 1024 members on 6.18).
//!
//! Facts: `fd_limit` (Count: the soft RLIMIT_NOFILE the groups were built under), `bind`
//! (Outcomes, one per size of [`GROUP_SIZES`]: the first errno while building that group, from
//! socket(), setsockopt(SO_REUSEPORT), bind() or listen(); `ok` otherwise), `sizes` (Counts: the
//! sizes whose every member is bound, and listening for TCP: a failed SO_REUSEPORT on a group of 1
//! still builds it), `ns_per_flow` (Numbers: median nanoseconds per timed call, one per built
//! size), `samples` (Counts: timed calls that succeeded, per built size), `failed` (Counts: per
//! built size, timed calls that failed plus flows no member received). A built size whose every
//! timed call failed has no median: it is dropped from `sizes` and from every per-size fact, and
//! listed in `unmeasured` (Counts). Fewer than two built sizes end the experiment as
//! `unsupported`.

use serde::{Deserialize, Serialize};

use super::Transport;

pub const GROUP_SIZES: [u32; 4] = [1, 16, 256, 1024];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LookupCostCell {
    pub transport: Transport,
}

impl LookupCostCell {
    /// The soft descriptor limit the experiment asks for: every group of every size at once, plus
    /// clients.
    pub const FD_LIMIT: u64 = 4096;

    /// Rounds over all sizes.
    pub fn rounds(&self) -> u32 {
        match self.transport {
            Transport::Tcp => 12,
            Transport::Udp => 16,
        }
    }

    /// Timed flows per size and round.
    pub fn batch(&self) -> u32 {
        match self.transport {
            Transport::Tcp => 16,
            Transport::Udp => 32,
        }
    }

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
