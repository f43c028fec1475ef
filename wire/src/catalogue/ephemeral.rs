//! The ephemeral port range: which ports the kernel picks when a program lets it choose, what each
//! call answers when the range is used up, when one port serves several connections, and the
//! per-socket options that change the choice (IP_BIND_ADDRESS_NO_PORT, IP_LOCAL_PORT_RANGE).
//!
//! Every cell works in a network namespace of its own (its sockets see no other experiment's
//! ports) with `net.ipv4.ip_local_port_range` narrowed to [`EphemeralCell::RANGE`] (10 ports), to
//! [`EphemeralCell::ODD_RANGE`] (5) for `range-odd`, or to [`EphemeralCell::WIDE_RANGE`] (20) for
//! the `socket-range` kinds. Ranges have an even number of ports except in `range-odd`: from 4.6,
//! TCP's search for a free port steps through a range's ports two at a time over an even count,
//! so with an odd count each bind(0) leaves one end of the range untried, a random one. Where the kernel keeps that
//! sysctl per network namespace it is written in the experiment's own; where the guest's initial
//! namespace holds the only copy (a global knob), it is written there and restored afterwards,
//! and on the host row, whose global knobs are never changed, the cell is unsupported. Every cell
//! records `knob` (Outcomes: `per-netns` or `global`) and `range_set` (Outcomes: the write).
//! Listeners and receivers use ports outside the range. Each cell repeats (three times, 24 when
//! those disagree) with every socket of a repetition closed before the next (TCP abortively, so no
//! TIME_WAIT holds a port). Lists of ports are written as sorted runs: `40000-40009`,
//! `40000-40004,40006`.
//!
//! The kinds, and their facts:
//! - `range`: bind(127.0.0.1:0) on fresh sockets until one fails (at most the range plus five).
//!   `ports` (Outcomes: the ports obtained), `failure` (Outcomes: the errno that ended it, `none`
//!   when none did), `first_port` (Numbers: the first port obtained, a random choice on every
//!   kernel, so never an outcome). `range-odd` the same over five ports.
//! - `exhausted-bind`, `exhausted-listen` (TCP), `exhausted-connect`, `exhausted-sendto` (UDP):
//!   every port of the range is taken first, by bind(127.0.0.1:0) sockets or, for TCP connect,
//!   by connections from never-bound sockets to one listener; then a fresh socket makes the call
//!   under test: bind(127.0.0.1:0), listen() or connect() unbound, sendto() unbound. `filled`
//!   (Outcomes: the ports the fillers hold), `call` (Outcomes).
//! - `shared-port` (TCP): as many connections as the range has ports, from never-bound sockets to
//!   a listener L1, then as many to a second listener L2. `first`, `second` (Outcomes: the
//!   connects' outcomes tallied, `ok x10` or `ok x5, EADDRNOTAVAIL x5`), `shared` (Outcomes: how
//!   many source ports of the second set the first set used too, in decimal).
//! - `bind-no-port` (TCP): twice as many sockets as the range has ports, each with
//!   IP_BIND_ADDRESS_NO_PORT, bind 127.0.0.1:0; half connect to L1, half to L2. `set`, `bind`,
//!   `connect` (Outcomes: the sockets' outcomes tallied as in `shared-port`), `port_after_bind`
//!   and `port_after_connect` (Outcomes: the sockets' ports tallied as `zero`, `in-range` or
//!   `out-of-range`: `zero x20`), `distinct_ports` (Outcomes: how many
//!   different source ports the connected sockets have, in decimal), `plain_bind` (Outcomes: a
//!   bind(127.0.0.1:0) without the option afterwards). Unsupported when the option is unknown
//!   (ENOPROTOOPT, before 4.2).
//! - `socket-range-clamp`, `-equal`, `-inverted`, `-low-zero`, `-low-below`, `-high-zero`,
//!   `-reset` (TCP): IP_LOCAL_PORT_RANGE on every socket before its bind(127.0.0.1:0), with the
//!   bounds of [`SocketRange::bounds`] (the global range is [`EphemeralCell::WIDE_RANGE`]);
//!   `-reset` sets the clamp's bounds and then 0. `set` (Outcomes: the (last) setsockopt), `get`
//!   (Outcomes: getsockopt as `low-high`), then, when `set` succeeded, `ports` and `failure` as in
//!   `range`. Unsupported when the option is unknown (ENOPROTOOPT, before 6.3).

use serde::{Deserialize, Serialize};

use super::Transport;

/// The call made once the range is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExhaustedCall {
    Bind,
    Listen,
    Connect,
    Sendto,
}

/// Bounds given to IP_LOCAL_PORT_RANGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketRange {
    /// A narrower range inside the global one.
    Clamp,
    /// Lower bound equal to the upper.
    Equal,
    /// Lower bound above the upper.
    Inverted,
    /// Lower bound zero.
    LowZero,
    /// Lower bound below the global range.
    LowBelow,
    /// Upper bound zero.
    HighZero,
    /// The clamp's bounds, then zero for both.
    Reset,
}

impl SocketRange {
    pub const ALL: [SocketRange; 7] = [
        SocketRange::Clamp,
        SocketRange::Equal,
        SocketRange::Inverted,
        SocketRange::LowZero,
        SocketRange::LowBelow,
        SocketRange::HighZero,
        SocketRange::Reset,
    ];

    /// The (low, high) bounds set last; `Reset` sets [`SocketRange::Clamp`]'s first.
    pub fn bounds(self) -> (u16, u16) {
        match self {
            SocketRange::Clamp => (40010, 40015),
            SocketRange::Equal => (40010, 40010),
            SocketRange::Inverted => (40015, 40010),
            SocketRange::LowZero => (0, 40005),
            SocketRange::LowBelow => (39000, 40005),
            SocketRange::HighZero => (40006, 0),
            SocketRange::Reset => (0, 0),
        }
    }

    fn token(self) -> &'static str {
        match self {
            SocketRange::Clamp => "socket-range-clamp",
            SocketRange::Equal => "socket-range-equal",
            SocketRange::Inverted => "socket-range-inverted",
            SocketRange::LowZero => "socket-range-low-zero",
            SocketRange::LowBelow => "socket-range-low-below",
            SocketRange::HighZero => "socket-range-high-zero",
            SocketRange::Reset => "socket-range-reset",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EphemeralKind {
    Range,
    /// `range` over an odd number of ports.
    RangeOdd,
    Exhausted(ExhaustedCall),
    SharedPort,
    BindNoPort,
    SocketRange(SocketRange),
}

impl EphemeralKind {
    pub fn token(self) -> &'static str {
        match self {
            EphemeralKind::Range => "range",
            EphemeralKind::RangeOdd => "range-odd",
            EphemeralKind::Exhausted(ExhaustedCall::Bind) => "exhausted-bind",
            EphemeralKind::Exhausted(ExhaustedCall::Listen) => "exhausted-listen",
            EphemeralKind::Exhausted(ExhaustedCall::Connect) => "exhausted-connect",
            EphemeralKind::Exhausted(ExhaustedCall::Sendto) => "exhausted-sendto",
            EphemeralKind::SharedPort => "shared-port",
            EphemeralKind::BindNoPort => "bind-no-port",
            EphemeralKind::SocketRange(r) => r.token(),
        }
    }

    pub fn what(self) -> String {
        match self {
            EphemeralKind::Range | EphemeralKind::RangeOdd => {
                "bind port 0 until it fails; record the ports obtained and the error".into()
            }
            EphemeralKind::Exhausted(call) => format!(
                "every port of the range taken, then {}; record the call",
                match call {
                    ExhaustedCall::Bind => "bind() to port 0",
                    ExhaustedCall::Listen => "listen() on a socket never bound",
                    ExhaustedCall::Connect => "connect() from a socket never bound",
                    ExhaustedCall::Sendto => "sendto() from a socket never bound",
                }
            ),
            EphemeralKind::SharedPort => {
                "a connection per port of the range to one listener, then as many to a second; record the connects and the source ports shared".into()
            }
            EphemeralKind::BindNoPort => {
                "twice the range's ports of sockets with IP_BIND_ADDRESS_NO_PORT bind port 0 and connect to two listeners; record the ports before and after connect".into()
            }
            EphemeralKind::SocketRange(SocketRange::Reset) => {
                let (lo, hi) = SocketRange::Clamp.bounds();
                format!(
                    "IP_LOCAL_PORT_RANGE set to low {lo} high {hi} and then to 0 on each socket, then bind port 0 until it fails; record the option and the ports"
                )
            }
            EphemeralKind::SocketRange(r) => {
                let (lo, hi) = r.bounds();
                format!(
                    "IP_LOCAL_PORT_RANGE low {lo} high {hi} on each socket, then bind port 0 until it fails; record the option and the ports"
                )
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EphemeralCell {
    pub transport: Transport,
    pub kind: EphemeralKind,
}

impl EphemeralCell {
    /// The ephemeral range of every kind but `socket-range`.
    pub const RANGE: (u16, u16) = (40000, 40009);
    /// The global range under the `socket-range` kinds.
    pub const WIDE_RANGE: (u16, u16) = (40000, 40019);
    /// The global range of `range-odd`: five ports.
    pub const ODD_RANGE: (u16, u16) = (40000, 40004);

    /// The global range this cell sets.
    pub fn range(&self) -> (u16, u16) {
        match self.kind {
            EphemeralKind::SocketRange(_) => Self::WIDE_RANGE,
            EphemeralKind::RangeOdd => Self::ODD_RANGE,
            _ => Self::RANGE,
        }
    }

    pub(super) fn id_suffix(&self) -> String {
        format!("{}.{}", self.kind.token(), self.transport.token())
    }

    pub(super) fn describe(&self) -> String {
        let (lo, hi) = self.range();
        format!(
            "{} with ip_local_port_range {lo}-{hi} in a namespace of its own: {}",
            self.transport.token().to_uppercase(),
            self.kind.what()
        )
    }
}

pub(super) fn all() -> Vec<EphemeralCell> {
    use Transport::{Tcp, Udp};
    let mut cells = vec![
        (Tcp, EphemeralKind::Range),
        (Udp, EphemeralKind::Range),
        (Tcp, EphemeralKind::RangeOdd),
        (Udp, EphemeralKind::RangeOdd),
        (Tcp, EphemeralKind::Exhausted(ExhaustedCall::Bind)),
        (Tcp, EphemeralKind::Exhausted(ExhaustedCall::Listen)),
        (Tcp, EphemeralKind::Exhausted(ExhaustedCall::Connect)),
        (Udp, EphemeralKind::Exhausted(ExhaustedCall::Bind)),
        (Udp, EphemeralKind::Exhausted(ExhaustedCall::Connect)),
        (Udp, EphemeralKind::Exhausted(ExhaustedCall::Sendto)),
        (Tcp, EphemeralKind::SharedPort),
        (Tcp, EphemeralKind::BindNoPort),
    ];
    cells.extend(
        SocketRange::ALL
            .into_iter()
            .map(|r| (Tcp, EphemeralKind::SocketRange(r))),
    );
    cells
        .into_iter()
        .map(|(transport, kind)| EphemeralCell { transport, kind })
        .collect()
}
