//! Which socket receives a TCP connection or a UDP datagram when several sockets match.
//!
//! Each repetition uses a fresh port: the sockets are created, given their options, bound and (TCP)
//! put into listen() one after the other in the order given, then every probe destination gets one
//! connection or datagram from a fresh unbound client socket. The sockets that bound are watched
//! with a bounded poll; TCP connections are accepted, datagrams read.
//!
//! Facts, one value per repetition (three; 24 when the three disagree):
//! - `flags.<label>` (Outcomes): that socket's setsockopt results, `ok`, `skipped` when it sets
//!   nothing, or the first errno (for example `ENOPROTOOPT` for SO_REUSEPORT on 3.8).
//! - `bind.<label>` (Outcomes): its bind().
//! - `listen.<label>` (Outcomes, TCP only): its listen(), `skipped` when the bind failed.
//! - `to.<probe address>` (Receivers): the label of the socket that accepted the connection or
//!   received the datagram; several joined by `+` if more than one did; `none` when nothing
//!   arrived; or the client's errno (`ECONNREFUSED`) when its connect or send failed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::{ReuseFlags, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LookupScenario {
    /// A on 127.0.0.1, then B on 0.0.0.0, both SO_REUSEADDR.
    SpecificThenWildcard,
    /// A on 0.0.0.0, then B on 127.0.0.1, both SO_REUSEADDR.
    WildcardThenSpecific,
    /// As above with SO_REUSEADDR and SO_REUSEPORT on both.
    WildcardThenSpecificReuseport,
    /// A on [::1], then B on [::], both SO_REUSEADDR.
    SpecificThenWildcardV6,
    /// A on [::], then B on [::1], both SO_REUSEADDR and SO_REUSEPORT.
    WildcardThenSpecificV6Reuseport,
    /// P on 0.0.0.0 with SO_REUSEADDR only, then a reuseport group R1, R2 on 127.0.0.1.
    GroupBesidePlainWildcard,
    /// A reuseport group R1, R2 on 0.0.0.0, and P on 127.0.0.1 with SO_REUSEADDR only, P first.
    PlainSpecificBesideGroup,
    /// The example of 003: four listeners on one port, A (0.0.0.0) and B (127.0.0.1) with
    /// SO_REUSEPORT, C (127.0.0.2) and D (127.0.0.3) without; bound C, D, B, A.
    FourListeners,
    /// As [`LookupScenario::FourListeners`] but C and D also set SO_REUSEPORT, so that on Linux,
    /// where a listening TCP socket without SO_REUSEPORT conflicts with a wildcard one, all four
    /// can listen and B (exact address) competes with A (wildcard) for 127.0.0.1.
    FourListenersAllReuseport,
    /// A on 0.0.0.0 (AF_INET) then B on [::] dual-stack, both with SO_REUSEADDR+SO_REUSEPORT.
    InetThenDualStack,
    /// B on [::] dual-stack then A on 0.0.0.0 (AF_INET), both with SO_REUSEADDR+SO_REUSEPORT.
    DualStackThenInet,
    /// A on 127.0.0.1, then B on 0.0.0.0, both SO_REUSEADDR and SO_REUSEPORT (the other order of
    /// `WildcardThenSpecificReuseport`).
    SpecificThenWildcardReuseport,
    /// A on [::1], then B on [::], both SO_REUSEADDR and SO_REUSEPORT.
    SpecificThenWildcardV6Reuseport,
    /// As `FourListenersAllReuseport`, the wildcard bound first: A, B, C, D.
    FourListenersAllReuseportWildcardFirst,
}

impl LookupScenario {
    pub const ALL: [LookupScenario; 14] = [
        LookupScenario::SpecificThenWildcard,
        LookupScenario::WildcardThenSpecific,
        LookupScenario::WildcardThenSpecificReuseport,
        LookupScenario::SpecificThenWildcardV6,
        LookupScenario::WildcardThenSpecificV6Reuseport,
        LookupScenario::GroupBesidePlainWildcard,
        LookupScenario::PlainSpecificBesideGroup,
        LookupScenario::FourListeners,
        LookupScenario::FourListenersAllReuseport,
        LookupScenario::InetThenDualStack,
        LookupScenario::DualStackThenInet,
        LookupScenario::SpecificThenWildcardReuseport,
        LookupScenario::SpecificThenWildcardV6Reuseport,
        LookupScenario::FourListenersAllReuseportWildcardFirst,
    ];
}

/// One socket of a lookup scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupSocket {
    pub label: &'static str,
    pub addr: IpAddr,
    /// IPV6_V6ONLY for AF_INET6 sockets.
    pub v6only: bool,
    pub flags: ReuseFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LookupCase {
    pub transport: Transport,
    pub scenario: LookupScenario,
}

const LO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const LO2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LO3: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const LO4: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
const ANY4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
/// 2001:db8::1, the documentation-prefix address the guest adds to `lo`.
pub const DOC6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

fn sock(label: &'static str, addr: IpAddr, flags: ReuseFlags) -> LookupSocket {
    LookupSocket {
        label,
        addr,
        v6only: false,
        flags,
    }
}

impl LookupCase {
    pub fn sockets(&self) -> Vec<LookupSocket> {
        use LookupScenario::*;
        use ReuseFlags as F;
        match self.scenario {
            SpecificThenWildcard => vec![sock("A", LO, F::ADDR), sock("B", ANY4, F::ADDR)],
            WildcardThenSpecific => vec![sock("A", ANY4, F::ADDR), sock("B", LO, F::ADDR)],
            WildcardThenSpecificReuseport => vec![sock("A", ANY4, F::BOTH), sock("B", LO, F::BOTH)],
            SpecificThenWildcardV6 => vec![sock("A", LO6, F::ADDR), sock("B", ANY6, F::ADDR)],
            WildcardThenSpecificV6Reuseport => {
                vec![sock("A", ANY6, F::BOTH), sock("B", LO6, F::BOTH)]
            }
            GroupBesidePlainWildcard => vec![
                sock("P", ANY4, F::ADDR),
                sock("R1", LO, F::BOTH),
                sock("R2", LO, F::BOTH),
            ],
            PlainSpecificBesideGroup => vec![
                sock("P", LO, F::ADDR),
                sock("R1", ANY4, F::BOTH),
                sock("R2", ANY4, F::BOTH),
            ],
            FourListeners => vec![
                sock("C", LO2, F::ADDR),
                sock("D", LO3, F::ADDR),
                sock("B", LO, F::BOTH),
                sock("A", ANY4, F::BOTH),
            ],
            FourListenersAllReuseport => vec![
                sock("C", LO2, F::BOTH),
                sock("D", LO3, F::BOTH),
                sock("B", LO, F::BOTH),
                sock("A", ANY4, F::BOTH),
            ],
            InetThenDualStack => vec![sock("A", ANY4, F::BOTH), sock("B", ANY6, F::BOTH)],
            DualStackThenInet => vec![sock("B", ANY6, F::BOTH), sock("A", ANY4, F::BOTH)],
            SpecificThenWildcardReuseport => vec![sock("A", LO, F::BOTH), sock("B", ANY4, F::BOTH)],
            SpecificThenWildcardV6Reuseport => {
                vec![sock("A", LO6, F::BOTH), sock("B", ANY6, F::BOTH)]
            }
            FourListenersAllReuseportWildcardFirst => vec![
                sock("A", ANY4, F::BOTH),
                sock("B", LO, F::BOTH),
                sock("C", LO2, F::BOTH),
                sock("D", LO3, F::BOTH),
            ],
        }
    }

    /// Destinations probed, each on the scenario's port.
    pub fn probes(&self) -> Vec<IpAddr> {
        use LookupScenario::*;
        match self.scenario {
            SpecificThenWildcard
            | WildcardThenSpecific
            | WildcardThenSpecificReuseport
            | SpecificThenWildcardReuseport => vec![LO, LO2],
            SpecificThenWildcardV6
            | WildcardThenSpecificV6Reuseport
            | SpecificThenWildcardV6Reuseport => vec![LO6, DOC6],
            GroupBesidePlainWildcard | PlainSpecificBesideGroup => vec![LO, LO2],
            FourListeners | FourListenersAllReuseport | FourListenersAllReuseportWildcardFirst => {
                vec![LO, LO2, LO3, LO4]
            }
            InetThenDualStack | DualStackThenInet => vec![LO, LO6],
        }
    }

    pub(super) fn id_suffix(&self) -> String {
        let scenario = serde_json::to_value(self.scenario).expect("scenario serializes");
        format!(
            "{}.{}",
            self.transport.token(),
            scenario.as_str().expect("unit variant")
        )
    }

    pub(super) fn describe(&self) -> String {
        let sockets: Vec<String> = self
            .sockets()
            .iter()
            .map(|s| format!("{}={} ({})", s.label, display(s.addr), s.flags.describe()))
            .collect();
        let probes: Vec<String> = self.probes().iter().map(|a| display(*a)).collect();
        format!(
            "{}: bind {} in that order{}; send to {}; record who receives each",
            self.transport.token().to_uppercase(),
            sockets.join(", "),
            if self.transport == Transport::Tcp {
                " and listen"
            } else {
                ""
            },
            probes.join(", ")
        )
    }
}

/// An address as people write it, IPv6 in brackets.
pub fn display(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

pub(super) fn all() -> Vec<LookupCase> {
    let mut cases = Vec::new();
    for transport in Transport::ALL {
        for scenario in LookupScenario::ALL {
            cases.push(LookupCase {
                transport,
                scenario,
            });
        }
    }
    cases
}
