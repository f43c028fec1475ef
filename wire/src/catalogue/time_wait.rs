//! Rebinding over a real TIME_WAIT made on loopback.
//!
//! `client`: the old socket binds 127.0.0.1:p (or [::1]:p), connects to a listener and closes
//! first, so its own port sits in TIME_WAIT. `server`: the old socket listens on p, accepts a
//! connection and closes it first, then closes the listener, so p sits in TIME_WAIT on the server
//! side (the classic "restart the server" case). Then a new socket binds p.
//!
//! Facts, one per repetition: `time_wait_seen` (Outcomes: `ok` when /proc/net/tcp{,6} showed the
//! port in TIME_WAIT before the rebind, `absent` otherwise), `old_flags`/`new_flags` (setsockopt
//! results), `new_bind` (Outcomes: the fact under test) and `new_listen` (Outcomes, after a
//! successful bind).

use serde::{Deserialize, Serialize};

use super::{IpFamily, ReuseFlags};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeWaitSide {
    Client,
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeWaitCell {
    pub family: IpFamily,
    pub side: TimeWaitSide,
    /// The new socket binds the wildcard instead of the same specific address.
    pub new_wildcard: bool,
    pub old_flags: ReuseFlags,
    pub new_flags: ReuseFlags,
}

impl TimeWaitCell {
    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}.{}.old-{}.new-{}",
            self.family.token(),
            match self.side {
                TimeWaitSide::Client => "client",
                TimeWaitSide::Server => "server",
            },
            if self.new_wildcard {
                "to-wildcard"
            } else {
                "to-same"
            },
            self.old_flags.token(),
            self.new_flags.token()
        )
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "TCP/{}: a {} socket with {} leaves its port in TIME_WAIT; a new socket with {} binds {} address and port; record the bind",
            self.family.token(),
            match self.side {
                TimeWaitSide::Client => "client",
                TimeWaitSide::Server => "server (listener plus accepted connection closed first)",
            },
            self.old_flags.describe(),
            self.new_flags.describe(),
            if self.new_wildcard { "the wildcard" } else { "the same" },
        )
    }
}

pub(super) fn all() -> Vec<TimeWaitCell> {
    let mut cells = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        for side in [TimeWaitSide::Client, TimeWaitSide::Server] {
            for new_wildcard in [false, true] {
                for old_flags in ReuseFlags::ALL {
                    for new_flags in ReuseFlags::ALL {
                        cells.push(TimeWaitCell {
                            family,
                            side,
                            new_wildcard,
                            old_flags,
                            new_flags,
                        });
                    }
                }
            }
        }
    }
    cells
}
