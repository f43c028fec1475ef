//! connect() collisions: two sockets share a source address and port (made possible by reuse
//! options) and connect to the same or to different destinations.
//!
//! Facts, one per repetition: `flags` (setsockopt results), `bind_a`, `bind_b`, `connect_a`,
//! `connect_b` (Outcomes; `connect_b` is the fact under test).

use serde::{Deserialize, Serialize};

use super::{IpFamily, ReuseFlags, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destinations {
    Same,
    Different,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnectCell {
    pub transport: Transport,
    pub family: IpFamily,
    pub destinations: Destinations,
    /// The options both sockets set before binding the shared source address.
    pub flags: ReuseFlags,
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
            },
            self.flags.token()
        )
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{}/{}: two sockets with {} bind one loopback source address and port, then connect to {}; record both connects",
            self.transport.token().to_uppercase(),
            self.family.token(),
            self.flags.describe(),
            match self.destinations {
                Destinations::Same => "the same destination",
                Destinations::Different => "two different destinations",
            }
        )
    }
}

pub(super) fn all() -> Vec<ConnectCell> {
    let mut cells = Vec::new();
    for transport in Transport::ALL {
        for family in [IpFamily::V4, IpFamily::V6] {
            for destinations in [Destinations::Same, Destinations::Different] {
                for flags in ReuseFlags::ALL {
                    cells.push(ConnectCell {
                        transport,
                        family,
                        destinations,
                        flags,
                    });
                }
            }
        }
    }
    cells
}
