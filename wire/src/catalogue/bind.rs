//! The bind matrix: socket A is bound (and brought into a state), then socket B binds the same port.
//!
//! Every cell repeats on fresh sockets and a fresh port (three times, 24 when those disagree).
//! Facts, one value per repetition:
//! `a_setup` (Outcomes: A's setsockopt+bind+state transition, `ok` or the first failing errno),
//! `a_flags`/`b_flags` (Outcomes: the setsockopt results for A's/B's reuse options, `ok` or errno,
//! `skipped` when no option was asked for), `b_bind` (Outcomes: B's bind, the fact under test) and,
//! for TCP when B's bind succeeded, `b_listen` (Outcomes: B's listen()). TCP cells whose A is in
//! TIME_WAIT also record `tw_overflows` (Count, once per cell): how often the kernel's TIME_WAIT
//! table overflowed meanwhile (TcpExt TCPTimeWaitOverflow), closing a socket outright instead.
//! Cells whose A is connected also record `a_local` (Outcomes: A's own address after its connect,
//! as getsockname() shows it: does a wildcard bind stay a wildcard?).
//!
//! Three smaller sets vary what the main matrix keeps fixed: `.other-port` cells (no option on
//! either socket) bind B to the port after A's, `.late` cells set A's options after A's bind
//! (before its listen or connect) instead of before it, and `other-process` cells (in the place of
//! `same-uid`/`other-uid`) create and bind B in a child process with A's effective UID.

use serde::{Deserialize, Serialize};

use super::{ReuseFlags, Transport, Uid};

/// The local addresses a bind cell uses. All live on the guest's own `lo`; `V6Doc` is an address
/// from the documentation prefix that the guest adds to `lo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindAddr {
    /// 0.0.0.0
    V4Any,
    /// 127.0.0.1
    V4Lo,
    /// 127.0.0.2
    V4Lo2,
    /// `::` with IPV6_V6ONLY off (Linux's default): also covers all IPv4 addresses.
    V6Any,
    /// `::` with IPV6_V6ONLY on.
    V6AnyOnly,
    /// ::1
    V6Lo,
    /// 2001:db8::1, added to `lo`.
    V6Doc,
    /// ::ffff:0.0.0.0 on an AF_INET6 socket.
    MappedAny,
    /// ::ffff:127.0.0.1 on an AF_INET6 socket.
    MappedLo,
}

impl BindAddr {
    pub fn token(self) -> &'static str {
        match self {
            BindAddr::V4Any => "v4any",
            BindAddr::V4Lo => "v4lo",
            BindAddr::V4Lo2 => "v4lo2",
            BindAddr::V6Any => "v6any",
            BindAddr::V6AnyOnly => "v6any-only",
            BindAddr::V6Lo => "v6lo",
            BindAddr::V6Doc => "v6doc",
            BindAddr::MappedAny => "mapped-any",
            BindAddr::MappedLo => "mapped-lo",
        }
    }

    /// The address as people write it.
    pub fn text(self) -> &'static str {
        match self {
            BindAddr::V4Any => "0.0.0.0",
            BindAddr::V4Lo => "127.0.0.1",
            BindAddr::V4Lo2 => "127.0.0.2",
            BindAddr::V6Any => "[::]",
            BindAddr::V6AnyOnly => "[::] v6only",
            BindAddr::V6Lo => "[::1]",
            BindAddr::V6Doc => "[2001:db8::1]",
            BindAddr::MappedAny => "[::ffff:0.0.0.0]",
            BindAddr::MappedLo => "[::ffff:127.0.0.1]",
        }
    }

    pub fn is_wildcard(self) -> bool {
        matches!(
            self,
            BindAddr::V4Any | BindAddr::V6Any | BindAddr::V6AnyOnly | BindAddr::MappedAny
        )
    }

    /// True for addresses bound through an AF_INET6 socket.
    pub fn is_inet6_socket(self) -> bool {
        !matches!(self, BindAddr::V4Any | BindAddr::V4Lo | BindAddr::V4Lo2)
    }
}

/// What socket A does after its bind, before B binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstState {
    /// Bound only.
    Bound,
    /// TCP only: listen().
    Listening,
    /// connect()ed to a peer on loopback (TCP: an established connection).
    Connected,
    /// TCP only: connected, then closed first so that it sits in TIME_WAIT.
    TimeWait,
}

impl FirstState {
    pub fn token(self) -> &'static str {
        match self {
            FirstState::Bound => "bound",
            FirstState::Listening => "listening",
            FirstState::Connected => "connected",
            FirstState::TimeWait => "time-wait",
        }
    }

    fn for_transport(t: Transport) -> &'static [FirstState] {
        match t {
            Transport::Tcp => &[
                FirstState::Bound,
                FirstState::Listening,
                FirstState::Connected,
                FirstState::TimeWait,
            ],
            Transport::Udp => &[FirstState::Bound, FirstState::Connected],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BindCell {
    pub transport: Transport,
    pub a: BindAddr,
    pub b: BindAddr,
    pub first: FirstState,
    pub a_flags: ReuseFlags,
    pub b_flags: ReuseFlags,
    pub uid: Uid,
    /// B binds A's port, or the next one.
    pub port: BindPort,
    /// A sets its options after its own bind (before its listen or connect).
    pub late: bool,
}

/// Which port B binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindPort {
    /// A's port: the matrix proper.
    Same,
    /// The port after A's.
    Other,
}

/// How the two addresses of a cell relate, as the documents' tables name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    SameSpecific,
    DifferentSpecific,
    WildcardThenSpecific,
    SpecificThenWildcard,
    WildcardWildcard,
}

impl BindCell {
    pub fn relation(&self) -> Relation {
        match (self.a.is_wildcard(), self.b.is_wildcard()) {
            (true, true) => Relation::WildcardWildcard,
            (true, false) => Relation::WildcardThenSpecific,
            (false, true) => Relation::SpecificThenWildcard,
            (false, false) if self.a == self.b => Relation::SameSpecific,
            (false, false) => Relation::DifferentSpecific,
        }
    }

    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}+{}.{}.a-{}.b-{}.{}{}{}",
            self.transport.token(),
            self.a.token(),
            self.b.token(),
            self.first.token(),
            self.a_flags.token(),
            self.b_flags.token(),
            self.uid.token(),
            match self.port {
                BindPort::Same => "",
                BindPort::Other => ".other-port",
            },
            if self.late { ".late" } else { "" }
        )
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{}: A binds {} with {}{} and is {}; B ({}) binds {} with {} on {}; record B's bind",
            self.transport.token().to_uppercase(),
            self.a.text(),
            self.a_flags.describe(),
            if self.late {
                " (set after its bind)"
            } else {
                ""
            },
            self.first.token(),
            match self.uid {
                Uid::Same => "same euid",
                Uid::Different => "another euid",
                Uid::SameOtherProcess => "same euid, another process",
            },
            self.b.text(),
            self.b_flags.describe(),
            match self.port {
                BindPort::Same => "the same port",
                BindPort::Other => "the next port",
            }
        )
    }
}

/// The address pairs of the matrix: the plain IPv4 and IPv6 relations, then dual-stack pairs in
/// both orders.
pub fn address_pairs() -> Vec<(BindAddr, BindAddr)> {
    use BindAddr::*;
    let mut pairs = vec![
        (V4Lo, V4Lo),
        (V4Lo, V4Lo2),
        (V4Any, V4Lo),
        (V4Lo, V4Any),
        (V4Any, V4Any),
        (V6Lo, V6Lo),
        (V6Lo, V6Doc),
        (V6Any, V6Lo),
        (V6Lo, V6Any),
        (V6Any, V6Any),
    ];
    let inet6 = [V6Any, V6AnyOnly, MappedAny, MappedLo];
    for x in inet6 {
        for y in [V4Any, V4Lo] {
            pairs.push((x, y));
            pairs.push((y, x));
        }
    }
    for x in inet6 {
        for y in inet6 {
            if x != y {
                pairs.push((x, y));
            }
        }
    }
    pairs
}

pub(super) fn all() -> Vec<BindCell> {
    let cell = |transport, (a, b), first, a_flags, b_flags, uid, port, late| BindCell {
        transport,
        a,
        b,
        first,
        a_flags,
        b_flags,
        uid,
        port,
        late,
    };
    let mut cells = Vec::new();
    for transport in Transport::ALL {
        for pair in address_pairs() {
            for &first in FirstState::for_transport(transport) {
                for a_flags in ReuseFlags::ALL {
                    for b_flags in ReuseFlags::ALL {
                        for uid in [Uid::Same, Uid::Different] {
                            cells.push(cell(
                                transport,
                                pair,
                                first,
                                a_flags,
                                b_flags,
                                uid,
                                BindPort::Same,
                                false,
                            ));
                        }
                    }
                }
            }
        }
    }
    // Two sockets on one address and different ports: no option on either.
    for transport in Transport::ALL {
        for pair in address_pairs() {
            for &first in FirstState::for_transport(transport) {
                for uid in [Uid::Same, Uid::Different] {
                    let none = ReuseFlags::NONE;
                    cells.push(cell(
                        transport,
                        pair,
                        first,
                        none,
                        none,
                        uid,
                        BindPort::Other,
                        false,
                    ));
                }
            }
        }
    }
    // B in another process of the same user: the SO_REUSEPORT rule is about effective UIDs.
    for (transport, first) in [
        (Transport::Tcp, FirstState::Bound),
        (Transport::Tcp, FirstState::Listening),
        (Transport::Udp, FirstState::Bound),
    ] {
        for pair in [
            (BindAddr::V4Lo, BindAddr::V4Lo),
            (BindAddr::V6Lo, BindAddr::V6Lo),
        ] {
            for flags in [ReuseFlags::PORT, ReuseFlags::BOTH] {
                cells.push(cell(
                    transport,
                    pair,
                    first,
                    flags,
                    flags,
                    Uid::SameOtherProcess,
                    BindPort::Same,
                    false,
                ));
            }
        }
    }
    // Options set after bind: both sockets want the same options, A sets them late.
    use BindAddr::*;
    for transport in Transport::ALL {
        for pair in [(V4Lo, V4Lo), (V4Any, V4Lo), (V6Lo, V6Lo)] {
            let states: &[FirstState] = match transport {
                Transport::Tcp => &[FirstState::Bound, FirstState::Listening],
                Transport::Udp => &[FirstState::Bound],
            };
            for &first in states {
                for flags in [ReuseFlags::ADDR, ReuseFlags::PORT, ReuseFlags::BOTH] {
                    cells.push(cell(
                        transport,
                        pair,
                        first,
                        flags,
                        flags,
                        Uid::Same,
                        BindPort::Same,
                        true,
                    ));
                }
            }
        }
    }
    cells
}
