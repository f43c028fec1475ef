//! Socket plumbing shared by the experiment families: making sockets for catalogue addresses,
//! setting reuse options, naming errnos, and the loopback peer that gives sockets something to
//! connect to. Every function returns the kernel's answer as a value; nothing here panics on an
//! errno.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, SockAddr, Socket, Type};
use wire::catalogue::{BindAddr, IpFamily, ReuseFlags, Transport};

/// `"ok"` or the errno's name (`"EADDRINUSE"`).
pub fn outcome<T>(result: &io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => errno_name(e),
    }
}

/// TcpExt `TCPTimeWaitOverflow` of this network namespace (/proc/net/netstat): how often a socket
/// that should have entered TIME_WAIT was closed outright because the TIME_WAIT table was full.
/// `None` when the kernel does not say.
pub fn time_wait_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    netstat_counter(&text, "TcpExt:", "TCPTimeWaitOverflow")
}

/// A counter from /proc/net/netstat's layout: per group, a line of names then a line of values.
fn netstat_counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(group));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let index = names.split_whitespace().position(|n| n == name);
        if let Some(i) = index {
            return values.split_whitespace().nth(i)?.parse().ok();
        }
    }
    None
}

pub fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let name = format!("{:?}", nix::errno::Errno::from_raw(code));
            if name == "UnknownErrno" {
                format!("errno{code}")
            } else {
                name
            }
        }
        None => format!("error: {e}"),
    }
}

pub fn sock_type(t: Transport) -> Type {
    match t {
        Transport::Tcp => Type::STREAM,
        Transport::Udp => Type::DGRAM,
    }
}

pub fn domain_of(addr: &IpAddr) -> Domain {
    match addr {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    }
}

pub const DOC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// The IP address a catalogue address binds, and whether the socket is IPv6-only.
pub fn resolve(addr: BindAddr) -> (IpAddr, bool) {
    let v4 = |a: Ipv4Addr| IpAddr::V4(a);
    match addr {
        BindAddr::V4Any => (v4(Ipv4Addr::UNSPECIFIED), false),
        BindAddr::V4Lo => (v4(Ipv4Addr::new(127, 0, 0, 1)), false),
        BindAddr::V4Lo2 => (v4(Ipv4Addr::new(127, 0, 0, 2)), false),
        BindAddr::V6Any => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), false),
        BindAddr::V6AnyOnly => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), true),
        BindAddr::V6Lo => (IpAddr::V6(Ipv6Addr::LOCALHOST), false),
        BindAddr::V6Doc => (IpAddr::V6(DOC6), false),
        BindAddr::MappedAny => (IpAddr::V6(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped()), false),
        BindAddr::MappedLo => (
            IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
            false,
        ),
    }
}

/// A socket of the right family for `ip`. AF_INET6 sockets get IPV6_V6ONLY set explicitly either
/// way, so the sysctl `bindv6only` cannot change an experiment.
pub fn socket_for(transport: Transport, ip: &IpAddr, v6only: bool) -> io::Result<Socket> {
    let sock = Socket::new(domain_of(ip), sock_type(transport), None)?;
    if ip.is_ipv6() {
        sock.set_only_v6(v6only)?;
    }
    Ok(sock)
}

/// Sets the requested reuse options. Returns `"skipped"` when none is asked for, `"ok"` when all
/// succeeded, otherwise the first errno (the rest are still attempted).
pub fn set_reuse(sock: &Socket, flags: ReuseFlags) -> String {
    let mut result = if flags == ReuseFlags::NONE {
        "skipped".to_string()
    } else {
        "ok".to_string()
    };
    if flags.reuse_addr {
        if let Err(e) = sock.set_reuse_address(true) {
            result = errno_name(&e);
        }
    }
    if flags.reuse_port {
        if let Err(e) = sock.set_reuse_port(true) {
            if result == "ok" {
                result = errno_name(&e);
            }
        }
    }
    result
}

pub fn bind(sock: &Socket, ip: IpAddr, port: u16) -> io::Result<()> {
    sock.bind(&SockAddr::from(SocketAddr::new(ip, port)))
}

/// What a socket made in another process answered: its reuse options, its bind and, when asked
/// for, its listen (`ok` or an errno name each; `skipped` for what was not tried).
pub struct ChildBind {
    pub flags: String,
    pub bind: String,
    pub listen: Option<String>,
}

/// Creates a socket in a forked child (same effective UID), sets `flags`, binds `ip:port` and,
/// when `listen`, listens; then the child exits and its socket with it. The child makes raw
/// system calls only and allocates nothing: the guest may have other threads, and memory locks
/// one of them held at the fork would never be released in the child. `Err` when the child could
/// not be run or did not report.
pub fn bind_in_child(
    transport: Transport,
    ip: IpAddr,
    v6only: bool,
    flags: ReuseFlags,
    port: u16,
    listen: bool,
) -> Result<ChildBind, String> {
    use std::os::fd::AsRawFd;
    // Everything the child needs is prepared before the fork.
    let addr = SockAddr::from(SocketAddr::new(ip, port));
    let domain = if ip.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let kind = match transport {
        Transport::Tcp => libc::SOCK_STREAM,
        Transport::Udp => libc::SOCK_DGRAM,
    };
    let (reader, writer) = nix::unistd::pipe().map_err(|e| format!("pipe = {e}"))?;
    // SAFETY: the child only makes async-signal-safe system calls on prepared data and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!(
            "fork = {}",
            errno_name(&io::Error::last_os_error())
        ));
    }
    if pid == 0 {
        // 0 = not tried, -1 = ok, otherwise the errno: options, bind, listen.
        let mut report = [0i32; 3];
        // SAFETY: raw system calls on values prepared before the fork; no allocation.
        unsafe {
            let errno = || *libc::__errno_location();
            let fd = libc::socket(domain, kind, 0);
            if fd >= 0 {
                let one: libc::c_int = 1;
                let set = |name| {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        name,
                        &one as *const libc::c_int as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if domain == libc::AF_INET6 {
                    let only: libc::c_int = v6only.into();
                    libc::setsockopt(
                        fd,
                        libc::IPPROTO_IPV6,
                        libc::IPV6_V6ONLY,
                        &only as *const libc::c_int as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
                if flags.reuse_addr && report[0] <= 0 {
                    report[0] = if set(libc::SO_REUSEADDR) == 0 {
                        -1
                    } else {
                        errno()
                    };
                }
                if flags.reuse_port && report[0] <= 0 {
                    report[0] = if set(libc::SO_REUSEPORT) == 0 {
                        -1
                    } else {
                        errno()
                    };
                }
                report[1] = if libc::bind(fd, addr.as_ptr(), addr.len()) == 0 {
                    -1
                } else {
                    errno()
                };
                if listen && report[1] == -1 {
                    report[2] = if libc::listen(fd, 16) == 0 {
                        -1
                    } else {
                        errno()
                    };
                }
            } else {
                report[1] = errno();
            }
            libc::write(
                writer.as_raw_fd(),
                report.as_ptr() as *const libc::c_void,
                std::mem::size_of_val(&report),
            );
            libc::_exit(0);
        }
    }
    drop(writer);
    let mut bytes = [0u8; 12];
    let read = nix::unistd::read(reader.as_raw_fd(), &mut bytes);
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if read != Ok(12) {
        return Err(format!("the child for B did not report ({read:?})"));
    }
    let code = |i: usize| {
        i32::from_ne_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    let name = |c: i32| match c {
        0 => "skipped".to_string(),
        -1 => "ok".to_string(),
        c => errno_name(&io::Error::from_raw_os_error(c)),
    };
    Ok(ChildBind {
        flags: name(code(0)),
        bind: name(code(1)),
        listen: listen.then(|| name(code(2))),
    })
}

/// Runs `f` with the effective UID switched to `uid` (and back). Sockets created inside belong to
/// that user, which is what SO_REUSEPORT's same-user rule looks at.
pub fn as_euid<T>(uid: Option<u32>, f: impl FnOnce() -> T) -> Result<T, String> {
    let Some(uid) = uid else { return Ok(f()) };
    let root = nix::unistd::geteuid();
    nix::unistd::seteuid(nix::unistd::Uid::from_raw(uid))
        .map_err(|e| format!("seteuid({uid}) = {e}"))?;
    let value = f();
    nix::unistd::seteuid(root).map_err(|e| format!("seteuid({root}) = {e}"))?;
    Ok(value)
}

/// A plain TCP listener (no reuse option) on `addr`, which an experiment needs as a connection's
/// other end. `Err` names the call that failed: without it the experiment cannot measure.
pub fn tcp_listener(addr: SocketAddr) -> Result<Socket, String> {
    let sock = socket_for(Transport::Tcp, &addr.ip(), false)
        .map_err(|e| format!("socket for the listener on {addr} = {}", errno_name(&e)))?;
    bind(&sock, addr.ip(), addr.port())
        .and_then(|()| sock.listen(16))
        .map_err(|e| format!("bind+listen {addr} = {}", errno_name(&e)))?;
    Ok(sock)
}

/// Listeners on fixed ports below the experiments' range that sockets connect to when an
/// experiment needs a connected or TIME_WAIT socket: one per worker and family, at this port
/// minus the worker's slot.
pub const PEER_PORT: u16 = 9999;

pub struct Peer {
    listener: Socket,
    pub addr: SocketAddr,
}

impl Peer {
    pub fn new(family: IpFamily, port: u16) -> io::Result<Peer> {
        let ip = match family {
            IpFamily::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpFamily::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let listener = socket_for(Transport::Tcp, &ip, true)?;
        listener.set_reuse_address(true)?;
        bind(&listener, ip, port)?;
        listener.listen(1024)?;
        Ok(Peer {
            listener,
            addr: SocketAddr::new(ip, port),
        })
    }

    pub fn accept(&self) -> io::Result<Socket> {
        self.listener.accept().map(|(s, _)| s)
    }
}

/// Where a socket bound to `ip` should connect to reach the peer of its family: IPv4 and
/// IPv4-mapped addresses reach 127.0.0.1, everything else [::1] (a worker's two peers share a
/// port number).
pub fn peer_target(ip: &IpAddr, v4_peer: SocketAddr) -> (IpFamily, SocketAddr) {
    match ip {
        IpAddr::V4(_) => (IpFamily::V4, v4_peer),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            let IpAddr::V4(v4) = v4_peer.ip() else {
                unreachable!("v4 peer")
            };
            (
                IpFamily::V4,
                SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), v4_peer.port()),
            )
        }
        IpAddr::V6(_) => (
            IpFamily::V6,
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), v4_peer.port()),
        ),
    }
}

/// setsockopt(2) at SOL_SOCKET with an arbitrary value, for options socket2 does not wrap.
pub fn setsockopt_raw<T>(fd: std::os::fd::RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    setsockopt_at(fd, libc::SOL_SOCKET, name, value)
}

/// setsockopt(2) at any level with an arbitrary value.
pub fn setsockopt_at<T>(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: value points to a live T of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// getsockopt(2) at SOL_SOCKET for an int-valued option.
pub fn getsockopt_int(fd: std::os::fd::RawFd, name: libc::c_int) -> io::Result<i32> {
    getsockopt_at_int(fd, libc::SOL_SOCKET, name)
}

/// getsockopt(2) at any level for an int-valued (or 32-bit) option.
pub fn getsockopt_at_int(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live and sized for an int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut value as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Option numbers from <asm-generic/socket.h>, spelled out because old libc headers lack some.
pub mod sockopt {
    pub const SO_REUSEADDR: libc::c_int = 2;
    pub const SO_REUSEPORT: libc::c_int = 15;
    pub const SO_INCOMING_CPU: libc::c_int = 49;
    pub const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
    pub const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
    pub const SO_DETACH_REUSEPORT_BPF: libc::c_int = 68;
    pub const SO_DOMAIN: libc::c_int = 39;
}

/// IPPROTO_IP and IPPROTO_IPV6 option numbers from <linux/in.h> and <linux/in6.h>, spelled out
/// because old libc headers lack some.
pub mod ipopt {
    pub const IP_FREEBIND: libc::c_int = 15;
    pub const IP_TRANSPARENT: libc::c_int = 19;
    pub const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;
    pub const IP_LOCAL_PORT_RANGE: libc::c_int = 51;
    pub const IPV6_ADDRFORM: libc::c_int = 1;
    pub const IPV6_V6ONLY: libc::c_int = 26;
    pub const IPV6_TRANSPARENT: libc::c_int = 75;
    pub const IPV6_FREEBIND: libc::c_int = 78;
}

/// A classic BPF program as `struct sock_fprog` wants it.
pub struct ClassicBpf(pub Vec<libc::sock_filter>);

impl ClassicBpf {
    pub fn attach_reuseport(&self, fd: std::os::fd::RawFd) -> io::Result<()> {
        let prog = libc::sock_fprog {
            len: self.0.len() as u16,
            filter: self.0.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt_raw(fd, sockopt::SO_ATTACH_REUSEPORT_CBPF, &prog)
    }
}

pub fn bpf_stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstat_counters_are_found_by_name() {
        let text = "TcpExt: SyncookiesSent TCPTimeWaitOverflow TWRecycled\n\
                    TcpExt: 0 17 3\n\
                    IpExt: InNoRoutes TCPTimeWaitOverflow\n\
                    IpExt: 5 99\n";
        assert_eq!(
            netstat_counter(text, "TcpExt:", "TCPTimeWaitOverflow"),
            Some(17)
        );
        assert_eq!(netstat_counter(text, "IpExt:", "InNoRoutes"), Some(5));
        assert_eq!(netstat_counter(text, "TcpExt:", "Missing"), None);
    }
}
