//! Which addresses bind() accepts, and what it answers when it refuses. See the fact list in
//! `wire::catalogue::address`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::Socket;
use wire::catalogue::{
    display_addr, AddrCell, AddrError, AddrKind, IpFamily, NonlocalHow, Privilege, Transport,
    OTHER_UID,
};

use super::group::{self, Stop};
use super::sandbox::{Sandbox, Scope};
use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name, ipopt, outcome, sockopt, DOC6};
use crate::probe::{self, Watched};

pub fn run(cell: &AddrCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    let result = match cell.kind {
        AddrKind::Nonlocal(NonlocalHow::Sysctl) => nonlocal_sysctl(cell, lab, &mut facts),
        _ => super::repeat_until_stop(lab, &mut facts, |facts| once(cell, lab, facts)),
    };
    match result {
        Ok(()) => facts.done(),
        Err(stop) => facts.ended(stop.status()),
    }
}

fn once(cell: &AddrCell, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    match cell.kind {
        AddrKind::Wildcard => wildcard(cell, lab, facts),
        AddrKind::Broadcast => broadcast(cell.transport, lab, facts),
        AddrKind::Nonlocal(how) => nonlocal(cell, how, lab, facts),
        AddrKind::TransparentUnprivileged => {
            let sock = socket(cell.transport, cell.family)?;
            let (level, name) = transparent(cell.family);
            let set = net::as_euid(Some(OTHER_UID), || {
                net::setsockopt_at(sock.as_raw_fd(), level, name, &1 as &libc::c_int)
            })
            .map_err(Stop::Failed)?;
            facts.outcome("set", outcome(&set));
            Ok(())
        }
        AddrKind::Privileged(who) => privileged(cell.transport, who, facts),
        AddrKind::Error(error) => errors(cell, error, lab, facts),
    }
}

fn socket(transport: Transport, family: IpFamily) -> Result<Socket, Stop> {
    net::socket_for(transport, &group::loopback(family), true)
        .map_err(|e| Stop::Failed(format!("socket = {}", errno_name(&e))))
}

fn second_local(family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        IpFamily::V6 => IpAddr::V6(DOC6),
    }
}

fn nonlocal_address(family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(AddrCell::NONLOCAL_V4)),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(AddrCell::NONLOCAL_V6)),
    }
}

fn wildcard(cell: &AddrCell, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let port = lab.port();
    let any = group::wildcard(cell.family);
    let a = socket(cell.transport, cell.family)?;
    net::bind(&a, any, port)
        .map_err(|e| Stop::Failed(format!("bind {} = {}", display_addr(any), errno_name(&e))))?;
    if cell.transport == Transport::Tcp {
        a.listen(16)
            .map_err(|e| Stop::Failed(format!("listen = {}", errno_name(&e))))?;
    }
    let watched = [Watched {
        label: "A",
        socket: &a,
    }];
    for (name, ip) in [
        ("to_loopback", group::loopback(cell.family)),
        ("to_other", second_local(cell.family)),
    ] {
        let got = probe::probe(cell.transport, SocketAddr::new(ip, port), &watched)
            .map_err(Stop::Failed)?;
        facts.receiver(name, got);
    }
    Ok(())
}

fn broadcast(transport: Transport, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let port = lab.port();
    let x = socket(transport, IpFamily::V4)?;
    let bound = net::bind(&x, IpAddr::V4(Ipv4Addr::BROADCAST), port);
    facts.outcome("x_bind", outcome(&bound));
    if transport == Transport::Tcp {
        let listened = match bound {
            Ok(()) => outcome(&x.listen(16)),
            Err(_) => "skipped".into(),
        };
        facts.outcome("x_listen", listened);
    }
    let name = x
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or_else(|| "none".to_owned(), |a| display_addr(a.ip()));
    facts.outcome("x_name", name);
    let watched = [Watched {
        label: "X",
        socket: &x,
    }];
    let got = probe::probe(
        transport,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        &watched,
    )
    .map_err(Stop::Failed)?;
    facts.receiver("to_loopback", got);
    let y = socket(transport, IpFamily::V4)?;
    facts.outcome(
        "y_bind",
        outcome(&net::bind(&y, IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
    );
    Ok(())
}

/// The option that lets a socket bind an address no interface has, at its level, and its name.
fn freebind(family: IpFamily) -> (libc::c_int, libc::c_int, &'static str) {
    match family {
        IpFamily::V4 => (libc::IPPROTO_IP, ipopt::IP_FREEBIND, "IP_FREEBIND"),
        IpFamily::V6 => (libc::IPPROTO_IPV6, ipopt::IPV6_FREEBIND, "IPV6_FREEBIND"),
    }
}

fn transparent(family: IpFamily) -> (libc::c_int, libc::c_int) {
    match family {
        IpFamily::V4 => (libc::IPPROTO_IP, ipopt::IP_TRANSPARENT),
        IpFamily::V6 => (libc::IPPROTO_IPV6, ipopt::IPV6_TRANSPARENT),
    }
}

fn nonlocal(cell: &AddrCell, how: NonlocalHow, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let sock = socket(cell.transport, cell.family)?;
    let one: libc::c_int = 1;
    let set = match how {
        NonlocalHow::Plain | NonlocalHow::Sysctl => None,
        NonlocalHow::Freebind => {
            let (level, name, text) = freebind(cell.family);
            Some((
                net::setsockopt_at(sock.as_raw_fd(), level, name, &one),
                text,
            ))
        }
        NonlocalHow::Transparent => {
            let (level, name) = transparent(cell.family);
            let text = match cell.family {
                IpFamily::V4 => "IP_TRANSPARENT",
                IpFamily::V6 => "IPV6_TRANSPARENT",
            };
            Some((
                net::setsockopt_at(sock.as_raw_fd(), level, name, &one),
                text,
            ))
        }
    };
    match &set {
        None if how == NonlocalHow::Plain => facts.outcome("set", "skipped"),
        None => {}
        Some((result, text)) => {
            facts.outcome("set", outcome(result));
            if let Err(e) = result {
                if e.raw_os_error() == Some(libc::ENOPROTOOPT) {
                    return Err(Stop::Unsupported(format!(
                        "setsockopt({text}) = ENOPROTOOPT"
                    )));
                }
            }
        }
    }
    bind_and_listen(
        &sock,
        cell.transport,
        nonlocal_address(cell.family),
        lab.port(),
        facts,
    );
    Ok(())
}

/// `bind` and, TCP, `listen` (`skipped` when the bind failed).
fn bind_and_listen(sock: &Socket, transport: Transport, ip: IpAddr, port: u16, facts: &mut Facts) {
    let bound = net::bind(sock, ip, port);
    facts.outcome("bind", outcome(&bound));
    if transport == Transport::Tcp {
        let listened = match bound {
            Ok(()) => outcome(&sock.listen(16)),
            Err(_) => "skipped".into(),
        };
        facts.outcome("listen", listened);
    }
}

fn nonlocal_sysctl(cell: &AddrCell, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let path = match cell.family {
        IpFamily::V4 => "/proc/sys/net/ipv4/ip_nonlocal_bind",
        IpFamily::V6 => "/proc/sys/net/ipv6/ip_nonlocal_bind",
    };
    let mut sandbox = Sandbox::enter(lab.initial_netns).map_err(Stop::Failed)?;
    let knob = sandbox.knob(path).map_err(Stop::Unsupported)?;
    facts.outcome("knob", knob.scope.token());
    if knob.scope == Scope::Absent {
        return Err(Stop::Unsupported(format!("{path} = ENOENT")));
    }
    super::repeat_until_stop(lab, facts, |facts| {
        let set = sandbox.write(&knob, "1").map_err(Stop::Failed)?;
        facts.outcome("set", set);
        let sock = socket(cell.transport, cell.family)?;
        bind_and_listen(
            &sock,
            cell.transport,
            nonlocal_address(cell.family),
            lab.port(),
            facts,
        );
        Ok(())
    })
}

fn privileged(transport: Transport, who: Privilege, facts: &mut Facts) -> Result<(), Stop> {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|e| errno_name(&e));
    facts.outcome("unprivileged_port_start", start);
    let (low, high) = who.ports();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let bind_at = |port: u16| -> Result<String, Stop> {
        let sock = socket(transport, IpFamily::V4)?;
        Ok(outcome(&net::bind(&sock, lo, port)))
    };
    let (low_bind, high_bind) = match who {
        Privilege::Root => (bind_at(low)?, bind_at(high)?),
        Privilege::OtherUid => net::as_euid(Some(OTHER_UID), || -> Result<_, Stop> {
            Ok((bind_at(low)?, bind_at(high)?))
        })
        .map_err(Stop::Failed)??,
        Privilege::UserNamespace | Privilege::UserNamespaceOnly => {
            in_user_namespace(transport, who == Privilege::UserNamespace, [low, high])?
        }
    };
    facts.outcome("low", low_bind);
    facts.outcome("high", high_bind);
    Ok(())
}

/// Binds 127.0.0.1 on each of `ports` from a child that became UID 65534 (every capability
/// dropped) and then unshared a user namespace and, when `with_netns`, a network namespace with
/// `lo` up. The child makes raw system calls only and reports the errnos over a pipe.
fn in_user_namespace(
    transport: Transport,
    with_netns: bool,
    ports: [u16; 2],
) -> Result<(String, String), Stop> {
    let flags = if with_netns {
        libc::CLONE_NEWUSER | libc::CLONE_NEWNET
    } else {
        libc::CLONE_NEWUSER
    };
    let kind = match transport {
        Transport::Tcp => libc::SOCK_STREAM,
        Transport::Udp => libc::SOCK_DGRAM,
    };
    let addrs =
        ports.map(|p| socket2::SockAddr::from(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)));
    let (reader, writer) = nix::unistd::pipe().map_err(|e| Stop::Failed(format!("pipe = {e}")))?;
    // SAFETY: the worker is single-threaded; the child makes system calls on prepared data and
    // _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Stop::Failed(format!(
            "fork = {}",
            errno_name(&io::Error::last_os_error())
        )));
    }
    if pid == 0 {
        // 0 = ok, otherwise the errno: drop to 65534, unshare, lo up, bind each port.
        let mut report = [0i32; 5];
        // SAFETY: raw system calls on values prepared before the fork; no allocation.
        unsafe {
            let errno = || *libc::__errno_location();
            let nobody = OTHER_UID;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(nobody, nobody, nobody) != 0
                || libc::setresuid(nobody, nobody, nobody) != 0
            {
                report[0] = errno();
            } else if libc::unshare(flags) != 0 {
                report[1] = errno();
            } else {
                if with_netns {
                    if let Err(e) = super::sandbox::loopback_up() {
                        report[2] = e.raw_os_error().unwrap_or(libc::EIO);
                    }
                }
                for (i, addr) in addrs.iter().enumerate() {
                    let fd = libc::socket(libc::AF_INET, kind, 0);
                    report[3 + i] = if fd >= 0 && libc::bind(fd, addr.as_ptr(), addr.len()) == 0 {
                        0
                    } else {
                        errno()
                    };
                }
            }
            libc::write(
                std::os::fd::AsRawFd::as_raw_fd(&writer),
                report.as_ptr() as *const libc::c_void,
                std::mem::size_of_val(&report),
            );
            libc::_exit(0);
        }
    }
    drop(writer);
    let mut bytes = [0u8; 20];
    let read = nix::unistd::read(reader.as_raw_fd(), &mut bytes);
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if read != Ok(20) {
        return Err(Stop::Failed(format!("the child did not report ({read:?})")));
    }
    let code = |i: usize| i32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let name = |c: i32| {
        if c == 0 {
            "ok".to_owned()
        } else {
            errno_name(&io::Error::from_raw_os_error(c))
        }
    };
    if code(0) != 0 {
        return Err(Stop::Failed(format!(
            "setresuid(65534) in the child = {}",
            name(code(0))
        )));
    }
    if code(1) != 0 {
        return Err(Stop::Unsupported(format!(
            "unshare({}) as UID 65534 = {}",
            if with_netns {
                "CLONE_NEWUSER|CLONE_NEWNET"
            } else {
                "CLONE_NEWUSER"
            },
            name(code(1))
        )));
    }
    if code(2) != 0 {
        return Err(Stop::Failed(format!(
            "ioctl(SIOCSIFFLAGS, lo, IFF_UP) in the new namespace = {}",
            name(code(2))
        )));
    }
    Ok((name(code(3)), name(code(4))))
}

/// A sockaddr_in of any family value, in a buffer as long as a sockaddr_in6.
fn sockaddr_in(family: libc::c_int, ip: Ipv4Addr, port: u16) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[0..2].copy_from_slice(&(family as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&port.to_be_bytes());
    b[4..8].copy_from_slice(&ip.octets());
    b
}

fn sockaddr_in6(ip: Ipv6Addr, port: u16, scope_id: u32) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&port.to_be_bytes());
    b[8..24].copy_from_slice(&ip.octets());
    b[24..28].copy_from_slice(&scope_id.to_ne_bytes());
    b
}

fn bind_bytes(sock: &Socket, addr: &[u8]) -> io::Result<()> {
    // SAFETY: addr is a live buffer of addr.len() bytes; the kernel copies it.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            addr.as_ptr() as *const libc::sockaddr,
            addr.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn connect_bytes(sock: &Socket, addr: &[u8]) -> io::Result<()> {
    // SAFETY: addr is a live buffer of addr.len() bytes; the kernel copies it.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            addr.as_ptr() as *const libc::sockaddr,
            addr.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The address of the other family than `family`'s socket: a sockaddr_in6 [::1] for an AF_INET
/// socket, a sockaddr_in 127.0.0.1 (in 28 bytes) for an AF_INET6 one.
fn other_family(family: IpFamily, port: u16) -> [u8; 28] {
    match family {
        IpFamily::V4 => sockaddr_in6(Ipv6Addr::LOCALHOST, port, 0),
        IpFamily::V6 => sockaddr_in(libc::AF_INET, Ipv4Addr::LOCALHOST, port),
    }
}

fn errors(cell: &AddrCell, error: AddrError, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let sock = socket(cell.transport, cell.family)?;
    let port = lab.port();
    let link_local = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    let (setup, call) = match error {
        AddrError::Rebind => {
            let ip = group::loopback(cell.family);
            let setup = net::bind(&sock, ip, port);
            (outcome(&setup), outcome(&net::bind(&sock, ip, lab.port())))
        }
        AddrError::ShortAddrlen => {
            let (addr, len) = match cell.family {
                IpFamily::V4 => (sockaddr_in(libc::AF_INET, Ipv4Addr::LOCALHOST, port), 15),
                IpFamily::V6 => (sockaddr_in6(Ipv6Addr::LOCALHOST, port, 0), 23),
            };
            ("skipped".into(), outcome(&bind_bytes(&sock, &addr[..len])))
        }
        AddrError::OtherFamily => (
            "skipped".into(),
            outcome(&bind_bytes(&sock, &other_family(cell.family, port))),
        ),
        AddrError::ConnectOtherFamily => (
            "skipped".into(),
            outcome(&connect_bytes(&sock, &other_family(cell.family, port))),
        ),
        AddrError::UnspecAny | AddrError::UnspecLoopback => {
            let ip = if error == AddrError::UnspecAny {
                Ipv4Addr::UNSPECIFIED
            } else {
                Ipv4Addr::LOCALHOST
            };
            let addr = sockaddr_in(libc::AF_UNSPEC, ip, port);
            ("skipped".into(), outcome(&bind_bytes(&sock, &addr[..16])))
        }
        AddrError::LinklocalBadScope | AddrError::LinklocalNoScope => {
            let scope = if error == AddrError::LinklocalBadScope {
                AddrCell::NO_SUCH_SCOPE
            } else {
                0
            };
            let addr = sockaddr_in6(link_local, port, scope);
            ("skipped".into(), outcome(&bind_bytes(&sock, &addr)))
        }
        AddrError::ReuseaddrTwo => {
            let two: libc::c_int = 2;
            let set = net::setsockopt_raw(sock.as_raw_fd(), sockopt::SO_REUSEADDR, &two);
            let value = match net::getsockopt_int(sock.as_raw_fd(), sockopt::SO_REUSEADDR) {
                Ok(v) => v.to_string(),
                Err(e) => errno_name(&e),
            };
            facts.outcome("value", value);
            ("skipped".into(), outcome(&set))
        }
    };
    facts.outcome("setup", setup);
    facts.outcome("call", call);
    Ok(())
}
