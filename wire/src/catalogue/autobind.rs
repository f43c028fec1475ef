//! Automatic binding: a socket the program never binds to a port gets one from the kernel when it
//! is used — a UDP datagram sent, a connect(), a TCP listen() — and bind() to port 0 asks for the
//! same choice explicitly. Where does the kernel put it?
//!
//! Each repetition uses a fresh socket A of the cell's transport and family (IPv4 sockets talk to
//! 127.0.0.1, IPv6 ones to [::1]; IPv6 sockets are IPV6_V6ONLY, so nothing here is about
//! dual-stack) and a fresh loopback peer. Facts, one value per repetition:
//! - `call` (Outcomes): the call that should bind A: `sendto` (send-unbound), `connect`
//!   (connect-unbound), `listen` (listen-unbound), `bind` of port 0 (bind-port0).
//! - `local_port` (Outcomes): A's port afterwards (getsockname): `in-range` when it lies in this
//!   namespace's `ip_local_port_range`, `zero` when A has none, `out-of-range` otherwise.
//! - `local_addr` (Outcomes): A's address afterwards, as `display_addr` writes it (`0.0.0.0`,
//!   `127.0.0.1`, `[::]`, `[::1]`).
//! - `reply` (Receivers): `A` when a datagram (UDP) or connection (TCP listen-unbound,
//!   bind-port0 then listen) sent to A's port on the loopback address reaches A, `none` when not;
//!   TCP connect-unbound records whether data sent back over the connection reaches A.

use serde::{Deserialize, Serialize};

use super::{IpFamily, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutobindHow {
    /// UDP: sendto() from a socket never bound.
    SendUnbound,
    /// connect() of a socket never bound.
    ConnectUnbound,
    /// TCP: listen() on a socket never bound.
    ListenUnbound,
    /// bind() to the loopback address and port 0.
    BindPortZero,
}

impl AutobindHow {
    pub fn token(self) -> &'static str {
        match self {
            AutobindHow::SendUnbound => "send-unbound",
            AutobindHow::ConnectUnbound => "connect-unbound",
            AutobindHow::ListenUnbound => "listen-unbound",
            AutobindHow::BindPortZero => "bind-port0",
        }
    }

    /// What the `call` fact records.
    pub fn call(self) -> &'static str {
        match self {
            AutobindHow::SendUnbound => "sendto",
            AutobindHow::ConnectUnbound => "connect",
            AutobindHow::ListenUnbound => "listen",
            AutobindHow::BindPortZero => "bind",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AutobindCell {
    pub transport: Transport,
    pub family: IpFamily,
    pub how: AutobindHow,
}

impl AutobindCell {
    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}.{}",
            self.transport.token(),
            self.family.token(),
            self.how.token()
        )
    }

    pub(super) fn describe(&self) -> String {
        let what = match self.how {
            AutobindHow::SendUnbound => "sends a datagram from a socket never bound",
            AutobindHow::ConnectUnbound => "connects a socket never bound",
            AutobindHow::ListenUnbound => "listens on a socket never bound",
            AutobindHow::BindPortZero => "binds the loopback address and port 0",
        };
        format!(
            "{}/{}: {what}; record the local address and port the kernel gave it and whether traffic to them reaches it",
            self.transport.token().to_uppercase(),
            self.family.token()
        )
    }
}

pub(super) fn all() -> Vec<AutobindCell> {
    let mut cells = Vec::new();
    for transport in Transport::ALL {
        let hows: &[AutobindHow] = match transport {
            Transport::Udp => &[
                AutobindHow::SendUnbound,
                AutobindHow::ConnectUnbound,
                AutobindHow::BindPortZero,
            ],
            Transport::Tcp => &[
                AutobindHow::ConnectUnbound,
                AutobindHow::ListenUnbound,
                AutobindHow::BindPortZero,
            ],
        };
        for family in [IpFamily::V4, IpFamily::V6] {
            for &how in hows {
                cells.push(AutobindCell {
                    transport,
                    family,
                    how,
                });
            }
        }
    }
    cells
}
