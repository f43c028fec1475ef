//! connect() collisions: two sockets A and B share a source address and port (made possible by
//! reuse options) and connect to the same or to different destinations.
//!
//! Source 127.0.0.1:p (IPv4) or [::1]:p (IPv6); destinations on the same address, ports q1 (and q2
//! for different destinations), or on another address and the same port (`other-address`:
//! 127.0.0.1:q and 127.0.0.2:q, [::1]:q and [2001:db8::1]:q). `.unbound` cells bind neither socket:
//! both connect to one destination and the kernel picks their source ports. For TCP the guest listens on the destinations first; for UDP
//! connect() only sets the peer, so nothing listens. A binds, then B binds, then A connects, then B
//! connects.
//!
//! Facts, one value per repetition (three, each on fresh sockets and fresh ports; 24 when the
//! three disagree):
//! - `flags.A`, `flags.B` (Outcomes): setsockopt results, `ok`, `skipped` when nothing is set, or
//!   the first errno.
//! - `bind.A`, `bind.B` (Outcomes): the binds of the shared source address.
//! - `connect.A`, `connect.B` (Outcomes): the connects, `skipped` when that socket's bind failed
//!   (connecting it would bind an ephemeral port, which is not the question); `connect.B` is the
//!   fact under test.
//! - `reply` (Receivers, UDP only): a responder bound to A's destination sends one datagram to the
//!   shared source address; the label of the socket that received it (`A`, `B`, both joined by
//!   `+`, or `none`), or the responder's errno.

use serde::{Deserialize, Serialize};

use super::{IpFamily, ReuseFlags, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destinations {
    Same,
    Different,
    /// The same port on another address.
    OtherAddress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnectCell {
    pub transport: Transport,
    pub family: IpFamily,
    pub destinations: Destinations,
    /// The options both sockets set before binding the shared source address.
    pub flags: ReuseFlags,
    /// Whether the sockets bind a shared source address at all (`false`: neither binds).
    pub bound: bool,
}

impl ConnectCell {
    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.transport.token(),
            self.family.token(),
            match self.destinations {
                Destinations::Same => "same-dest",
                Destinations::Different => "different-dest",
                Destinations::OtherAddress => "other-address",
            },
            self.flags.token()
        ) + if self.bound { "" } else { ".unbound" }
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{}/{}: two sockets with {} {}, then connect to {}; record both connects",
            self.transport.token().to_uppercase(),
            self.family.token(),
            self.flags.describe(),
            if self.bound {
                "bind one loopback source address and port"
            } else {
                "bind nothing"
            },
            match self.destinations {
                Destinations::Same => "the same destination",
                Destinations::Different => "two different destinations",
                Destinations::OtherAddress => "the same port on two addresses",
            }
        )
    }
}

pub(super) fn all() -> Vec<ConnectCell> {
    let mut cells = Vec::new();
    for transport in Transport::ALL {
        for family in [IpFamily::V4, IpFamily::V6] {
            for destinations in [
                Destinations::Same,
                Destinations::Different,
                Destinations::OtherAddress,
            ] {
                for flags in ReuseFlags::ALL {
                    cells.push(ConnectCell {
                        transport,
                        family,
                        destinations,
                        flags,
                        bound: true,
                    });
                }
            }
            cells.push(ConnectCell {
                transport,
                family,
                destinations: Destinations::Same,
                flags: ReuseFlags::NONE,
                bound: false,
            });
        }
    }
    cells
}
