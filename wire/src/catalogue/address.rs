//! Which addresses bind() accepts, and what it answers when it refuses: the wildcard, the
//! broadcast address, addresses that are not local (and the three ways to bind them anyway), the
//! privileged ports, and the errors bind(2), connect(2), ip(7), ipv6(7) and tcp(7) list for a bad
//! address.
//!
//! Every cell repeats on fresh sockets and a fresh port (three times, 24 when those disagree);
//! facts are Outcomes or Receivers, one value per repetition. IPv6 sockets are IPV6_V6ONLY.
//! Addresses: the loopback 127.0.0.1 / [::1], a second local one 127.0.0.2 / [2001:db8::1] (on
//! `lo`), and the addresses no interface has, 192.0.2.1 / [2001:db8::99].
//!
//! The kinds, and their facts:
//! - `wildcard`: A binds 0.0.0.0 / [::] (TCP: and listens). `to_loopback` and `to_other`
//!   (Receivers: `A`, `none`, or the client's errno): a datagram or connection to the loopback
//!   address and to the second local address, on A's port.
//! - `broadcast` (IPv4): X binds 255.255.255.255 (`x_bind`; TCP: `x_listen`); `x_name` (Outcomes:
//!   X's address as getsockname() shows it, `0.0.0.0` if the bind had made it a wildcard);
//!   `to_loopback` (Receivers: `X` or `none`/errno, a flow to 127.0.0.1 on X's port); then Y, with no
//!   option, binds 127.0.0.1 on the same port (`y_bind`: EADDRINUSE if X held the wildcard).
//! - `nonlocal`, `freebind`, `transparent`, `nonlocal-sysctl`: A binds the address no interface
//!   has, with no option, with IP_FREEBIND / IPV6_FREEBIND, with IP_TRANSPARENT /
//!   IPV6_TRANSPARENT (as root), or with the sysctl `net.ipv4.ip_nonlocal_bind` /
//!   `net.ipv6.ip_nonlocal_bind` set to 1 in a network namespace of the experiment's own. `set`
//!   (Outcomes: the setsockopt or the sysctl write; `skipped` for `nonlocal`), `bind` (Outcomes),
//!   `listen` (Outcomes, TCP; `skipped` when the bind failed). `nonlocal-sysctl` also records
//!   `knob` (Outcomes: `per-netns` when the namespace has its own copy of the sysctl, `global`
//!   when the guest's initial namespace holds the only one, which is then set there and restored).
//!   Unsupported when the option is unknown (ENOPROTOOPT: IPV6_FREEBIND before 4.15) or the sysctl
//!   does not exist (ENOENT: `net.ipv6.ip_nonlocal_bind` before 4.3), or on a row where the sysctl
//!   is global to the host's kernel (never changed).
//! - `transparent-unprivileged`: `set` (Outcomes): setsockopt(IP_TRANSPARENT / IPV6_TRANSPARENT, 1)
//!   with the effective UID switched to 65534, which drops every capability.
//! - `privileged-root`, `privileged-other-uid`, `privileged-userns`, `privileged-userns-only`
//!   (IPv4): `low` (Outcomes: bind to a port below 1024) and `high` (Outcomes: bind to a port at
//!   or above 1024), as root (ports 1021 and 1026), with the effective UID 65534 (1023 and 1024),
//!   in a child that became UID 65534 and then unshared a user namespace and a network namespace
//!   with `lo` up (1023 and 1024 there), or a user namespace only (1022 and 1025, in the guest's
//!   network namespace). Each cell has its own ports, so cells running side by side never meet.
//!   `unprivileged_port_start` (Outcomes: `net.ipv4.ip_unprivileged_port_start` as read, or the
//!   errno: ENOENT before 4.11). The user-namespace cells are unsupported when unshare() is refused
//!   (no user namespaces, or unprivileged ones disabled), with the errno in the reason.
//! - The errors, each one call (`call`, Outcomes) after `setup` (Outcomes: what came before it, `ok`
//!   or the errno; `skipped` when nothing did): `rebind` (bind the loopback address, then bind the
//!   same socket again to the next port), `short-addrlen` (bind with the family's address structure
//!   one byte too short for it: 15 bytes for AF_INET, 23 for AF_INET6), `other-family` (bind an
//!   AF_INET socket to a 28-byte sockaddr_in6 [::1], or an AF_INET6 socket to a 28-byte buffer
//!   holding a sockaddr_in 127.0.0.1), `connect-other-family` (the same addresses given to
//!   connect()), `unspec-any` and `unspec-loopback` (IPv4: bind a sockaddr_in whose sin_family is
//!   AF_UNSPEC, address 0.0.0.0 or 127.0.0.1), `linklocal-bad-scope` and `linklocal-no-scope`
//!   (IPv6: bind [fe80::1] with sin6_scope_id 9999, an index no interface has, or 0), and
//!   `reuseaddr-two` (setsockopt(SO_REUSEADDR) with the int 2; `value`, Outcomes: what getsockopt
//!   reads back).

use serde::{Deserialize, Serialize};

use super::{IpFamily, Transport};

/// How a cell binds an address no interface has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonlocalHow {
    /// No option: the plain refusal.
    Plain,
    /// IP_FREEBIND / IPV6_FREEBIND.
    Freebind,
    /// IP_TRANSPARENT / IPV6_TRANSPARENT, set as root.
    Transparent,
    /// `ip_nonlocal_bind` = 1 in a network namespace of the experiment's own.
    Sysctl,
}

/// Who binds the privileged port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Privilege {
    Root,
    /// The effective UID switched to 65534 (capabilities dropped with it).
    OtherUid,
    /// A child of UID 65534 in a user namespace of its own that owns a network namespace of its
    /// own.
    UserNamespace,
    /// A child of UID 65534 in a user namespace of its own, still in the guest's network
    /// namespace (owned by the initial user namespace).
    UserNamespaceOnly,
}

impl Privilege {
    /// The ports the cell binds: one below 1024 and one at or above it, distinct from every other
    /// cell's in the same network namespace.
    pub fn ports(self) -> (u16, u16) {
        match self {
            Privilege::Root => (1021, 1026),
            Privilege::OtherUid | Privilege::UserNamespace => (1023, 1024),
            Privilege::UserNamespaceOnly => (1022, 1025),
        }
    }
}

/// One call that bind(2), connect(2) and the section 7 pages say fails in a given way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddrError {
    Rebind,
    ShortAddrlen,
    OtherFamily,
    ConnectOtherFamily,
    UnspecAny,
    UnspecLoopback,
    LinklocalBadScope,
    LinklocalNoScope,
    ReuseaddrTwo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddrKind {
    Wildcard,
    Broadcast,
    Nonlocal(NonlocalHow),
    TransparentUnprivileged,
    Privileged(Privilege),
    Error(AddrError),
}

impl AddrKind {
    pub fn token(self) -> &'static str {
        match self {
            AddrKind::Wildcard => "wildcard",
            AddrKind::Broadcast => "broadcast",
            AddrKind::Nonlocal(NonlocalHow::Plain) => "nonlocal",
            AddrKind::Nonlocal(NonlocalHow::Freebind) => "freebind",
            AddrKind::Nonlocal(NonlocalHow::Transparent) => "transparent",
            AddrKind::Nonlocal(NonlocalHow::Sysctl) => "nonlocal-sysctl",
            AddrKind::TransparentUnprivileged => "transparent-unprivileged",
            AddrKind::Privileged(Privilege::Root) => "privileged-root",
            AddrKind::Privileged(Privilege::OtherUid) => "privileged-other-uid",
            AddrKind::Privileged(Privilege::UserNamespace) => "privileged-userns",
            AddrKind::Privileged(Privilege::UserNamespaceOnly) => "privileged-userns-only",
            AddrKind::Error(AddrError::Rebind) => "rebind",
            AddrKind::Error(AddrError::ShortAddrlen) => "short-addrlen",
            AddrKind::Error(AddrError::OtherFamily) => "other-family",
            AddrKind::Error(AddrError::ConnectOtherFamily) => "connect-other-family",
            AddrKind::Error(AddrError::UnspecAny) => "unspec-any",
            AddrKind::Error(AddrError::UnspecLoopback) => "unspec-loopback",
            AddrKind::Error(AddrError::LinklocalBadScope) => "linklocal-bad-scope",
            AddrKind::Error(AddrError::LinklocalNoScope) => "linklocal-no-scope",
            AddrKind::Error(AddrError::ReuseaddrTwo) => "reuseaddr-two",
        }
    }

    /// What the cell does, in words.
    pub fn what(self, family: IpFamily) -> &'static str {
        let v4 = family == IpFamily::V4;
        match self {
            AddrKind::Wildcard => {
                if v4 {
                    "A binds 0.0.0.0; record whether flows to 127.0.0.1 and 127.0.0.2 reach it"
                } else {
                    "A binds [::]; record whether flows to [::1] and [2001:db8::1] reach it"
                }
            }
            AddrKind::Broadcast => {
                "X binds 255.255.255.255; record its bind, its address, whether a flow to 127.0.0.1 reaches it, and a bind of 127.0.0.1 on the same port"
            }
            AddrKind::Nonlocal(NonlocalHow::Plain) => {
                if v4 {
                    "bind 192.0.2.1 (no interface has it) with no option; record the bind"
                } else {
                    "bind [2001:db8::99] (no interface has it) with no option; record the bind"
                }
            }
            AddrKind::Nonlocal(NonlocalHow::Freebind) => {
                if v4 {
                    "bind 192.0.2.1 (no interface has it) with IP_FREEBIND; record the option and the bind"
                } else {
                    "bind [2001:db8::99] (no interface has it) with IPV6_FREEBIND; record the option and the bind"
                }
            }
            AddrKind::Nonlocal(NonlocalHow::Transparent) => {
                if v4 {
                    "bind 192.0.2.1 (no interface has it) with IP_TRANSPARENT set as root; record the option and the bind"
                } else {
                    "bind [2001:db8::99] (no interface has it) with IPV6_TRANSPARENT set as root; record the option and the bind"
                }
            }
            AddrKind::Nonlocal(NonlocalHow::Sysctl) => {
                if v4 {
                    "bind 192.0.2.1 (no interface has it) with net.ipv4.ip_nonlocal_bind=1 in a namespace of its own; record the sysctl write and the bind"
                } else {
                    "bind [2001:db8::99] (no interface has it) with net.ipv6.ip_nonlocal_bind=1 in a namespace of its own; record the sysctl write and the bind"
                }
            }
            AddrKind::TransparentUnprivileged => {
                if v4 {
                    "set IP_TRANSPARENT with the effective UID 65534; record the setsockopt"
                } else {
                    "set IPV6_TRANSPARENT with the effective UID 65534; record the setsockopt"
                }
            }
            AddrKind::Privileged(Privilege::Root) => {
                "bind port 1021 and port 1026 as root; record both binds"
            }
            AddrKind::Privileged(Privilege::OtherUid) => {
                "bind port 1023 and port 1024 with the effective UID 65534; record both binds"
            }
            AddrKind::Privileged(Privilege::UserNamespace) => {
                "bind port 1023 and port 1024 as UID 65534 in a user and network namespace of its own; record both binds"
            }
            AddrKind::Privileged(Privilege::UserNamespaceOnly) => {
                "bind port 1022 and port 1025 as UID 65534 in a user namespace of its own (the guest's network namespace); record both binds"
            }
            AddrKind::Error(AddrError::Rebind) => {
                "bind the loopback address, then bind the same socket to the next port; record the second bind"
            }
            AddrKind::Error(AddrError::ShortAddrlen) => {
                "bind with an address length one byte short of the family's structure; record the bind"
            }
            AddrKind::Error(AddrError::OtherFamily) => {
                "bind to an address of the other family; record the bind"
            }
            AddrKind::Error(AddrError::ConnectOtherFamily) => {
                "connect to an address of the other family; record the connect"
            }
            AddrKind::Error(AddrError::UnspecAny) => {
                "bind a sockaddr_in of family AF_UNSPEC and address 0.0.0.0; record the bind"
            }
            AddrKind::Error(AddrError::UnspecLoopback) => {
                "bind a sockaddr_in of family AF_UNSPEC and address 127.0.0.1; record the bind"
            }
            AddrKind::Error(AddrError::LinklocalBadScope) => {
                "bind [fe80::1] with a scope id no interface has; record the bind"
            }
            AddrKind::Error(AddrError::LinklocalNoScope) => {
                "bind [fe80::1] with scope id 0; record the bind"
            }
            AddrKind::Error(AddrError::ReuseaddrTwo) => {
                "set SO_REUSEADDR to the int 2; record the setsockopt and the value read back"
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddrCell {
    pub transport: Transport,
    pub family: IpFamily,
    pub kind: AddrKind,
}

impl AddrCell {
    /// The address no interface has (never configured anywhere the guest runs).
    pub const NONLOCAL_V4: [u8; 4] = [192, 0, 2, 1];
    pub const NONLOCAL_V6: [u16; 8] = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99];
    /// An interface index no interface has.
    pub const NO_SUCH_SCOPE: u32 = 9999;

    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}.{}",
            self.kind.token(),
            self.transport.token(),
            self.family.token()
        )
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{}/{}: {}",
            self.transport.token().to_uppercase(),
            self.family.token(),
            self.kind.what(self.family)
        )
    }
}

pub(super) fn all() -> Vec<AddrCell> {
    use AddrError::*;
    let both: &[IpFamily] = &[IpFamily::V4, IpFamily::V6];
    let v4: &[IpFamily] = &[IpFamily::V4];
    let v6: &[IpFamily] = &[IpFamily::V6];
    let kinds: Vec<(AddrKind, &[IpFamily])> = vec![
        (AddrKind::Wildcard, both),
        (AddrKind::Broadcast, v4),
        (AddrKind::Nonlocal(NonlocalHow::Plain), both),
        (AddrKind::Nonlocal(NonlocalHow::Freebind), both),
        (AddrKind::Nonlocal(NonlocalHow::Transparent), both),
        (AddrKind::Nonlocal(NonlocalHow::Sysctl), both),
        (AddrKind::TransparentUnprivileged, both),
        (AddrKind::Privileged(Privilege::Root), v4),
        (AddrKind::Privileged(Privilege::OtherUid), v4),
        (AddrKind::Privileged(Privilege::UserNamespace), v4),
        (AddrKind::Privileged(Privilege::UserNamespaceOnly), v4),
        (AddrKind::Error(Rebind), both),
        (AddrKind::Error(ShortAddrlen), both),
        (AddrKind::Error(OtherFamily), both),
        (AddrKind::Error(ConnectOtherFamily), both),
        (AddrKind::Error(UnspecAny), v4),
        (AddrKind::Error(UnspecLoopback), v4),
        (AddrKind::Error(LinklocalBadScope), v6),
        (AddrKind::Error(LinklocalNoScope), v6),
        (AddrKind::Error(ReuseaddrTwo), v4),
    ];
    let mut cells = Vec::new();
    for (kind, families) in kinds {
        for transport in Transport::ALL {
            for &family in families {
                cells.push(AddrCell {
                    transport,
                    family,
                    kind,
                });
            }
        }
    }
    cells
}
