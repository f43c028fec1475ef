//! Rebinding over a real TIME_WAIT made on loopback.
//!
//! `client`: the old socket (with the old flags) binds 127.0.0.1:p (or [::1]:p), connects to a
//! listener on a second fresh port of the same address and closes first, so its own address sits
//! in TIME_WAIT. `server`: the old socket (with the old flags) binds 127.0.0.1:p and listens, accepts
//! a connection from a client bound to a second fresh port, closes that connection first and then
//! the listener, so p sits in TIME_WAIT on the server side (the classic "restart the server" case).
//! Then a new socket with the new flags binds p on the same address or on the wildcard (0.0.0.0, or
//! `::` with IPV6_V6ONLY off) and listens.
//!
//! The family works in a network namespace of its own (one per guest worker), so that reading
//! /proc/net/tcp stays cheap however many TIME_WAIT sockets other families left behind.
//!
//! Facts:
//! - `private_netns` (Outcomes, one value per experiment): `ok`, or the failing call and errno
//!   when the kernel could not give the family its own namespace (it then measures in the
//!   guest's).
//! - One value per repetition (three, each on fresh sockets and fresh ports; 24 when the three
//!   disagree):
//!   `old_flags` (Outcomes: the old socket's setsockopt results, `ok`, `skipped` when nothing is
//!   set, or the first errno), `old_setup` (Outcomes: `ok`, or the errno of the old socket's bind,
//!   connect or listen), `time_wait_seen` (Outcomes: `ok` when /proc/net/tcp{,6} listed the old
//!   address in state 06 before the rebind, `absent` when it never did within 500 ms, or the
//!   errno of reading it), `new_flags` (Outcomes, as `old_flags`), `new_bind` (Outcomes: the fact
//!   under test) and `new_listen` (Outcomes; `skipped` when the bind failed). When `old_setup` is
//!   not `ok`, the four later facts are `skipped`.
//! - `time_wait_left_ms` (Numbers, one per repetition whose TIME_WAIT was seen): how long the
//!   kernel will keep it, read from the TIME_WAIT timer /proc/net/tcp{,6} prints beside the
//!   socket (`tr` 3, `tm->when` in clock ticks) — how long TIME_WAIT lasts, without waiting for
//!   it.
//!
//! Two more sides and five ways to close vary the active close of a client:
//! - `passive`: the old socket connects and its peer closes first (the old socket closes second),
//!   so TIME_WAIT, if any, is the peer's.
//! - `.close-unsent` (the old socket closes with data its peer has not read still queued),
//!   `.close-linger0` (SO_LINGER on with a zero timeout: an abortive close), `.close-linger2`
//!   (SO_LINGER on, 2 s), `.close-exit` (its process exits without closing it),
//!   `.close-kill` (its process is killed). These record `state_after_close` (Outcomes: the state
//!   /proc/net/tcp{,6} lists for the old address right after the close — `TIME_WAIT`, `FIN_WAIT1`,
//!   `FIN_WAIT2`, `CLOSING`, `LAST_ACK`, `CLOSE_WAIT`, or `none`) and `peer_saw` (Outcomes: what
//!   the peer's read returned then: `eof`, `data` or an errno such as `ECONNRESET`).

use serde::{Deserialize, Serialize};

use super::{IpFamily, ReuseFlags};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeWaitSide {
    Client,
    Server,
    /// The old socket's peer closes first.
    Passive,
}

/// How the old socket of a client ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseMode {
    /// close(), nothing pending: the matrix proper.
    Close,
    /// close() with data the peer has not read still queued.
    Unsent,
    /// SO_LINGER {on, 0 s}, then close().
    Linger0,
    /// SO_LINGER {on, 2 s}, then close().
    Linger2,
    /// The process holding it exits without closing it.
    Exit,
    /// The process holding it is killed (SIGKILL).
    Kill,
}

impl CloseMode {
    pub fn token(self) -> &'static str {
        match self {
            CloseMode::Close => "close",
            CloseMode::Unsent => "unsent",
            CloseMode::Linger0 => "linger0",
            CloseMode::Linger2 => "linger2",
            CloseMode::Exit => "exit",
            CloseMode::Kill => "kill",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeWaitCell {
    pub family: IpFamily,
    pub side: TimeWaitSide,
    /// The new socket binds the wildcard instead of the same specific address.
    pub new_wildcard: bool,
    pub old_flags: ReuseFlags,
    pub new_flags: ReuseFlags,
    /// How a client's old socket ends (`Close` for every other cell).
    pub close: CloseMode,
}

impl TimeWaitCell {
    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}.{}.old-{}.new-{}",
            self.family.token(),
            match self.side {
                TimeWaitSide::Client => "client",
                TimeWaitSide::Server => "server",
                TimeWaitSide::Passive => "passive",
            },
            if self.new_wildcard {
                "to-wildcard"
            } else {
                "to-same"
            },
            self.old_flags.token(),
            self.new_flags.token()
        ) + &match self.close {
            CloseMode::Close => String::new(),
            other => format!(".close-{}", other.token()),
        }
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "TCP/{}: a {} socket with {} leaves its port in TIME_WAIT; a new socket with {} binds {} address and port; record the bind",
            self.family.token(),
            match (self.side, self.close) {
                (TimeWaitSide::Client, CloseMode::Close) => "client",
                (TimeWaitSide::Client, CloseMode::Unsent) => "client closing with unsent data",
                (TimeWaitSide::Client, CloseMode::Linger0) => "client closing with SO_LINGER 0",
                (TimeWaitSide::Client, CloseMode::Linger2) => "client closing with SO_LINGER 2 s",
                (TimeWaitSide::Client, CloseMode::Exit) => "client whose process exits",
                (TimeWaitSide::Client, CloseMode::Kill) => "client whose process is killed",
                (TimeWaitSide::Server, _) => "server (listener plus accepted connection closed first)",
                (TimeWaitSide::Passive, _) => "client whose peer closes first",
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
                            close: CloseMode::Close,
                        });
                    }
                }
            }
        }
    }
    for family in [IpFamily::V4, IpFamily::V6] {
        for flags in [ReuseFlags::NONE, ReuseFlags::ADDR] {
            cells.push(TimeWaitCell {
                family,
                side: TimeWaitSide::Passive,
                new_wildcard: false,
                old_flags: flags,
                new_flags: flags,
                close: CloseMode::Close,
            });
        }
        for close in [
            CloseMode::Unsent,
            CloseMode::Linger0,
            CloseMode::Linger2,
            CloseMode::Exit,
            CloseMode::Kill,
        ] {
            cells.push(TimeWaitCell {
                family,
                side: TimeWaitSide::Client,
                new_wildcard: false,
                old_flags: ReuseFlags::NONE,
                new_flags: ReuseFlags::NONE,
                close,
            });
        }
    }
    cells
}
