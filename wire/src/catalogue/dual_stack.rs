//! IPv6 sockets and IPv4 traffic: whether an AF_INET6 socket on [::] receives IPv4 flows with
//! IPV6_V6ONLY off and on, the address it sees them come from, sending to an IPv4-mapped address,
//! where the option's default comes from (`net.ipv6.bindv6only`), and turning a socket into an
//! AF_INET one with IPV6_ADDRFORM.
//!
//! Every cell repeats on fresh sockets and fresh ports (three times, 24 when those disagree);
//! facts are one value per repetition.
//!
//! The kinds, and their facts:
//! - `on`, `off`: A, an AF_INET6 socket with IPV6_V6ONLY set to 1 or 0 (`set`, Outcomes), binds
//!   [::] (`bind`; TCP: and listens, `listen`). `from_v4` and `from_v6` (Receivers: `A`, `none`,
//!   or the client's errno): a datagram or connection from a fresh AF_INET client to 127.0.0.1,
//!   and from a fresh AF_INET6 client to [::1], on A's port. `peer_v4` (Outcomes): the address
//!   recvfrom() or accept() gave for the IPv4 flow (`[::ffff:127.0.0.1]`, `127.0.0.1`), `none`
//!   when it did not arrive. `to_mapped` (Outcomes): A (UDP) sends a datagram to
//!   [::ffff:127.0.0.1] on the port of R, an AF_INET socket bound to 127.0.0.1 (TCP: a fresh
//!   AF_INET6 socket with A's IPV6_V6ONLY connects there, R listening); `mapped_arrived`
//!   (Receivers: `R` or `none`).
//! - `default` (in a network namespace of its own, fresh): `sysctl` (Outcomes: what
//!   `net.ipv6.bindv6only` reads), `socket` (Outcomes: getsockopt(IPV6_V6ONLY) of a new AF_INET6
//!   socket, `0` or `1`).
//! - `sysctl-one` (in a network namespace of its own): a socket S0 is made, `net.ipv6.bindv6only`
//!   is set to 1 (`write`, Outcomes), a socket S1 is made; `socket_before` and `socket_after`
//!   (Outcomes: getsockopt(IPV6_V6ONLY) of S0 and S1). Both record `knob` (Outcomes: `per-netns`
//!   when the namespace has its own copy of the sysctl; `global` when only the guest's initial
//!   namespace has it, where `sysctl-one` then writes and restores it; on the host row a global
//!   knob is never changed and the cell is unsupported).
//! - `addrform-mapped`, `addrform-native`, `addrform-unconnected`: an AF_INET6 socket (IPV6_V6ONLY
//!   off) connected to [::ffff:127.0.0.1] (an AF_INET peer), connected to [::1], or never
//!   connected (`connect`, Outcomes; `skipped` for the last), then
//!   setsockopt(IPV6_ADDRFORM, AF_INET): `addrform` (Outcomes), `domain_after` (Outcomes: the
//!   socket's SO_DOMAIN afterwards, `AF_INET` or `AF_INET6`, or the errno). Unsupported when the
//!   kernel does not know the option (ENOPROTOOPT).

use serde::{Deserialize, Serialize};

use super::Transport;

/// What an AF_INET6 socket is connected to before IPV6_ADDRFORM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddrformPeer {
    Mapped,
    Native,
    Unconnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DualStackKind {
    /// IPV6_V6ONLY = 1.
    On,
    /// IPV6_V6ONLY = 0.
    Off,
    Default,
    SysctlOne,
    Addrform(AddrformPeer),
}

impl DualStackKind {
    pub fn token(self) -> &'static str {
        match self {
            DualStackKind::On => "on",
            DualStackKind::Off => "off",
            DualStackKind::Default => "default",
            DualStackKind::SysctlOne => "sysctl-one",
            DualStackKind::Addrform(AddrformPeer::Mapped) => "addrform-mapped",
            DualStackKind::Addrform(AddrformPeer::Native) => "addrform-native",
            DualStackKind::Addrform(AddrformPeer::Unconnected) => "addrform-unconnected",
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            DualStackKind::On => {
                "an AF_INET6 socket with IPV6_V6ONLY on binds [::]; record IPv4 and IPv6 flows to it, the IPv4 peer address, and sending to an IPv4-mapped address"
            }
            DualStackKind::Off => {
                "an AF_INET6 socket with IPV6_V6ONLY off binds [::]; record IPv4 and IPv6 flows to it, the IPv4 peer address, and sending to an IPv4-mapped address"
            }
            DualStackKind::Default => {
                "in a fresh network namespace, read net.ipv6.bindv6only and the IPV6_V6ONLY of a new AF_INET6 socket"
            }
            DualStackKind::SysctlOne => {
                "set net.ipv6.bindv6only to 1 in a namespace of its own; record IPV6_V6ONLY of a socket made before and of one made after"
            }
            DualStackKind::Addrform(AddrformPeer::Mapped) => {
                "an AF_INET6 socket connected to [::ffff:127.0.0.1] sets IPV6_ADDRFORM to AF_INET; record the setsockopt and the socket's domain after"
            }
            DualStackKind::Addrform(AddrformPeer::Native) => {
                "an AF_INET6 socket connected to [::1] sets IPV6_ADDRFORM to AF_INET; record the setsockopt and the socket's domain after"
            }
            DualStackKind::Addrform(AddrformPeer::Unconnected) => {
                "an AF_INET6 socket never connected sets IPV6_ADDRFORM to AF_INET; record the setsockopt and the socket's domain after"
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DualStackCell {
    pub transport: Transport,
    pub kind: DualStackKind,
}

impl DualStackCell {
    pub(super) fn id_suffix(&self) -> String {
        format!("{}.{}", self.kind.token(), self.transport.token())
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{}: {}",
            self.transport.token().to_uppercase(),
            self.kind.what()
        )
    }
}

pub(super) fn all() -> Vec<DualStackCell> {
    let mut cells = Vec::new();
    for kind in [
        DualStackKind::On,
        DualStackKind::Off,
        DualStackKind::Addrform(AddrformPeer::Mapped),
        DualStackKind::Addrform(AddrformPeer::Native),
        DualStackKind::Addrform(AddrformPeer::Unconnected),
    ] {
        for transport in Transport::ALL {
            cells.push(DualStackCell { transport, kind });
        }
    }
    // The sysctl applies to every AF_INET6 socket alike: one transport is enough.
    for kind in [DualStackKind::Default, DualStackKind::SysctlOne] {
        cells.push(DualStackCell {
            transport: Transport::Udp,
            kind,
        });
    }
    cells
}
