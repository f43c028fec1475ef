//! IPv6 sockets and IPv4 traffic: IPV6_V6ONLY, `net.ipv6.bindv6only` and IPV6_ADDRFORM. See the
//! fact list in `wire::catalogue::dual_stack`.

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket};
use wire::catalogue::{display_addr, AddrformPeer, DualStackCell, DualStackKind, Transport};

use super::group::Stop;
use super::sandbox::{Sandbox, Scope};
use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name, ipopt, outcome, sockopt};
use crate::probe::{self, Watched, CONNECT_TIMEOUT, FIRST_ARRIVAL};

const BINDV6ONLY: &str = "/proc/sys/net/ipv6/bindv6only";

pub fn run(cell: &DualStackCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    let result = match cell.kind {
        DualStackKind::Default | DualStackKind::SysctlOne => sysctl(cell.kind, lab, &mut facts),
        _ => super::repeat_until_stop(lab, &mut facts, |facts| once(cell, lab, facts)),
    };
    match result {
        Ok(()) => facts.done(),
        Err(stop) => facts.ended(stop.status()),
    }
}

fn once(cell: &DualStackCell, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    match cell.kind {
        DualStackKind::On | DualStackKind::Off => {
            v6only(cell.transport, cell.kind == DualStackKind::On, lab, facts)
        }
        DualStackKind::Addrform(peer) => addrform(cell.transport, peer, lab, facts),
        DualStackKind::Default | DualStackKind::SysctlOne => Ok(()),
    }
}

fn inet6(transport: Transport) -> Result<Socket, Stop> {
    Socket::new(Domain::IPV6, net::sock_type(transport), None)
        .map_err(|e| Stop::Failed(format!("socket(AF_INET6) = {}", errno_name(&e))))
}

fn mapped_loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()), port)
}

/// An AF_INET socket on 127.0.0.1:`port` (TCP: listening) for something to arrive at.
fn receiver_v4(transport: Transport, port: u16) -> Result<Socket, Stop> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let sock = net::socket_for(transport, &ip, false)
        .map_err(|e| Stop::Failed(format!("socket(AF_INET) = {}", errno_name(&e))))?;
    net::bind(&sock, ip, port)
        .map_err(|e| Stop::Failed(format!("bind 127.0.0.1:{port} = {}", errno_name(&e))))?;
    if transport == Transport::Tcp {
        sock.listen(16)
            .map_err(|e| Stop::Failed(format!("listen = {}", errno_name(&e))))?;
    }
    Ok(sock)
}

fn v6only(transport: Transport, on: bool, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let port = lab.port();
    let a = inet6(transport)?;
    facts.outcome("set", outcome(&a.set_only_v6(on)));
    let bound = net::bind(&a, IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    facts.outcome("bind", outcome(&bound));
    if transport == Transport::Tcp {
        let listened = match bound {
            Ok(()) => outcome(&a.listen(16)),
            Err(_) => "skipped".into(),
        };
        facts.outcome("listen", listened);
    }
    let (got, peer) = v4_flow(transport, &a, port)?;
    facts.receiver("from_v4", got);
    facts.outcome("peer_v4", peer);
    let watched = [Watched {
        label: "A",
        socket: &a,
    }];
    let from_v6 = probe::probe(
        transport,
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        &watched,
    )
    .map_err(Stop::Failed)?;
    facts.receiver("from_v6", from_v6);

    let q = lab.port();
    let r = receiver_v4(transport, q)?;
    let sent = match transport {
        Transport::Udp => a
            .send_to(b"m", &SockAddr::from(mapped_loopback(q)))
            .map(|_| ()),
        Transport::Tcp => {
            let c = inet6(transport)?;
            c.set_only_v6(on).map_err(|e| {
                Stop::Failed(format!("IPV6_V6ONLY on the client = {}", errno_name(&e)))
            })?;
            let connected = c.connect_timeout(&SockAddr::from(mapped_loopback(q)), CONNECT_TIMEOUT);
            let _ = c.set_linger(Some(Duration::ZERO));
            connected
        }
    };
    facts.outcome("to_mapped", outcome(&sent));
    let watched = [Watched {
        label: "R",
        socket: &r,
    }];
    let arrivals = probe::collect(transport, &watched, Duration::ZERO).map_err(Stop::Failed)?;
    facts.receiver("mapped_arrived", arrivals.receivers(&watched));
    Ok(())
}

/// Sends one datagram or connection from a fresh AF_INET client to 127.0.0.1:`port` and takes it
/// at `a`: who got it (`A`, `none` or the client's errno) and the address `a` was told it came
/// from (`none` when nothing arrived).
fn v4_flow(transport: Transport, a: &Socket, port: u16) -> Result<(String, String), Stop> {
    let dest = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let client = net::socket_for(transport, &dest.ip(), false)
        .map_err(|e| Stop::Failed(format!("socket for the IPv4 client = {}", errno_name(&e))))?;
    let sent = match transport {
        Transport::Tcp => client.connect_timeout(&SockAddr::from(dest), CONNECT_TIMEOUT),
        Transport::Udp => client.send_to(b"v4", &SockAddr::from(dest)).map(|_| ()),
    };
    if let Err(e) = sent {
        return Ok((errno_name(&e), "none".into()));
    }
    let _ = client.set_linger(Some(Duration::ZERO));
    if !readable(a, FIRST_ARRIVAL) {
        return Ok(("none".into(), "none".into()));
    }
    let from = match transport {
        Transport::Tcp => a.accept().map(|(conn, from)| {
            let _ = conn.set_linger(Some(Duration::ZERO));
            from
        }),
        Transport::Udp => {
            let mut buf = [MaybeUninit::<u8>::uninit(); 16];
            a.recv_from(&mut buf).map(|(_, from)| from)
        }
    };
    Ok(match from {
        Ok(from) => (
            "A".into(),
            from.as_socket()
                .map_or_else(|| "unknown".to_owned(), |s| display_addr(s.ip())),
        ),
        Err(e) => (errno_name(&e), "none".into()),
    })
}

fn readable(sock: &Socket, within: Duration) -> bool {
    let mut fd = [libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: fd is a live array of one pollfd.
    let rc = unsafe { libc::poll(fd.as_mut_ptr(), 1, within.as_millis() as libc::c_int) };
    rc > 0 && fd[0].revents & libc::POLLIN != 0
}

/// `0` or `1` as getsockopt(IPV6_V6ONLY) reads on a new AF_INET6 socket, or the errno.
fn v6only_of(sock: &Socket) -> String {
    match net::getsockopt_at_int(sock.as_raw_fd(), libc::IPPROTO_IPV6, ipopt::IPV6_V6ONLY) {
        Ok(v) => v.to_string(),
        Err(e) => errno_name(&e),
    }
}

fn sysctl(kind: DualStackKind, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let mut sandbox = Sandbox::enter(lab.initial_netns).map_err(Stop::Failed)?;
    let knob = sandbox.knob(BINDV6ONLY).map_err(Stop::Unsupported)?;
    facts.outcome("knob", knob.scope.token());
    if knob.scope == Scope::Absent {
        return Err(Stop::Unsupported(format!("{BINDV6ONLY} = ENOENT")));
    }
    let old = sandbox.read(&knob).map_err(Stop::Failed)?;
    super::repeat_until_stop(lab, facts, |facts| {
        if kind == DualStackKind::Default {
            facts.outcome("sysctl", sandbox.read(&knob).map_err(Stop::Failed)?);
            facts.outcome("socket", v6only_of(&inet6(Transport::Udp)?));
            return Ok(());
        }
        let before = inet6(Transport::Udp)?;
        facts.outcome("write", sandbox.write(&knob, "1").map_err(Stop::Failed)?);
        let after = inet6(Transport::Udp)?;
        facts.outcome("socket_before", v6only_of(&before));
        facts.outcome("socket_after", v6only_of(&after));
        // The next repetition starts from the namespace's own value again.
        sandbox.write(&knob, &old).map_err(Stop::Failed)?;
        Ok(())
    })
}

fn addrform(
    transport: Transport,
    peer: AddrformPeer,
    lab: &Lab,
    facts: &mut Facts,
) -> Result<(), Stop> {
    let q = lab.port();
    let a = inet6(transport)?;
    a.set_only_v6(false)
        .map_err(|e| Stop::Failed(format!("IPV6_V6ONLY 0 = {}", errno_name(&e))))?;
    let (listener, target) = match peer {
        AddrformPeer::Mapped => (Some(receiver_v4(transport, q)?), Some(mapped_loopback(q))),
        AddrformPeer::Native => {
            let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
            let r = net::socket_for(transport, &ip, true)
                .map_err(|e| Stop::Failed(format!("socket(AF_INET6) = {}", errno_name(&e))))?;
            net::bind(&r, ip, q)
                .map_err(|e| Stop::Failed(format!("bind [::1]:{q} = {}", errno_name(&e))))?;
            if transport == Transport::Tcp {
                r.listen(16)
                    .map_err(|e| Stop::Failed(format!("listen = {}", errno_name(&e))))?;
            }
            (Some(r), Some(SocketAddr::new(ip, q)))
        }
        AddrformPeer::Unconnected => (None, None),
    };
    let connected = match target {
        Some(t) => outcome(&a.connect_timeout(&SockAddr::from(t), CONNECT_TIMEOUT)),
        None => "skipped".into(),
    };
    facts.outcome("connect", connected);
    let inet: libc::c_int = libc::AF_INET;
    let changed = net::setsockopt_at(
        a.as_raw_fd(),
        libc::IPPROTO_IPV6,
        ipopt::IPV6_ADDRFORM,
        &inet,
    );
    facts.outcome("addrform", outcome(&changed));
    if let Err(e) = &changed {
        if e.raw_os_error() == Some(libc::ENOPROTOOPT) {
            return Err(Stop::Unsupported(
                "setsockopt(IPV6_ADDRFORM) = ENOPROTOOPT".into(),
            ));
        }
    }
    let domain = match net::getsockopt_int(a.as_raw_fd(), sockopt::SO_DOMAIN) {
        Ok(libc::AF_INET) => "AF_INET".to_owned(),
        Ok(libc::AF_INET6) => "AF_INET6".to_owned(),
        Ok(other) => other.to_string(),
        Err(e) => errno_name(&e),
    };
    facts.outcome("domain_after", domain);
    if let (Some(l), Transport::Tcp) = (&listener, transport) {
        let _ = a.set_linger(Some(Duration::ZERO));
        if readable(l, Duration::from_millis(50)) {
            if let Ok((conn, _)) = l.accept() {
                let _ = conn.set_linger(Some(Duration::ZERO));
            }
        }
    }
    Ok(())
}
