//! The pre-flight check, run once before the catalogue: plain loopback traffic that every kernel
//! since 3.8 carries, over 127.0.0.1, [::1] and the IPv4-mapped ::ffff:127.0.0.1 (a dual-stack
//! IPv6 socket), without and with SO_REUSEADDR: a TCP connection that carries a byte, and a UDP
//! datagram answered by its receiver.
//!
//! None of this is under test: if any of it fails, the environment is broken (a CPU feature the
//! kernel mishandles, the emulator, the guest's own set-up) and the host judges nothing from this
//! boot. The results go into the header; the catalogue still runs, so its records are there for
//! whoever diagnoses the fault.
//!
//! Ports are the kernel's own (port 0), above the experiments' range, so nothing here collides
//! with an experiment. Only calls every kernel since 3.8 has: socket, setsockopt, bind, listen,
//! connect, accept, sendto, recvfrom, poll.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{SockAddr, Socket};
use wire::catalogue::Transport;
use wire::PreflightCheck;

use crate::net::{errno_name, socket_for};

/// Longest wait for a connection or datagram that loopback delivers inside the sending call.
const WAIT: Duration = Duration::from_millis(2000);

/// Every check, in a fixed order.
pub fn run() -> Vec<PreflightCheck> {
    let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
    let places: [(&str, IpAddr, bool); 3] = [
        ("127.0.0.1", IpAddr::V4(Ipv4Addr::LOCALHOST), false),
        ("[::1]", IpAddr::V6(Ipv6Addr::LOCALHOST), true),
        ("[::ffff:127.0.0.1]", mapped, false),
    ];
    let mut checks = Vec::new();
    for transport in Transport::ALL {
        for (shown, ip, v6only) in places {
            for reuse in [false, true] {
                let name = format!(
                    "{} {shown}{}",
                    transport.token(),
                    if reuse { " SO_REUSEADDR" } else { "" }
                );
                let result = match transport {
                    Transport::Tcp => tcp_round_trip(ip, v6only, reuse),
                    Transport::Udp => udp_round_trip(ip, v6only, reuse),
                };
                checks.push(PreflightCheck {
                    name,
                    outcome: match result {
                        Ok(()) => "ok".into(),
                        Err(failed) => failed,
                    },
                });
            }
        }
    }
    checks
}

/// `call: ERRNO` for a failed call.
fn named<T>(call: &str, result: io::Result<T>) -> Result<T, String> {
    result.map_err(|e| format!("{call}: {}", errno_name(&e)))
}

fn fresh(transport: Transport, ip: IpAddr, v6only: bool, reuse: bool) -> Result<Socket, String> {
    let sock = named("socket", socket_for(transport, &ip, v6only))?;
    if reuse {
        named("setsockopt(SO_REUSEADDR)", sock.set_reuse_address(true))?;
    }
    Ok(sock)
}

fn bound(
    transport: Transport,
    ip: IpAddr,
    v6only: bool,
    reuse: bool,
) -> Result<(Socket, SocketAddr), String> {
    let sock = fresh(transport, ip, v6only, reuse)?;
    named("bind", sock.bind(&SockAddr::from(SocketAddr::new(ip, 0))))?;
    let local = named("getsockname", sock.local_addr())?
        .as_socket()
        .ok_or_else(|| "getsockname: not an IP address".to_string())?;
    Ok((sock, local))
}

/// Waits until `sock` is readable; `Err` names `what` when nothing came.
fn readable(sock: &Socket, what: &str) -> Result<(), String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::BorrowedFd;
    // SAFETY: the descriptor belongs to `sock`, which outlives this call.
    let fd = unsafe { BorrowedFd::borrow_raw(sock.as_raw_fd()) };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(WAIT.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(format!(
            "{what}: nothing arrived within {} ms",
            WAIT.as_millis()
        )),
        Err(e) => Err(format!("poll: {e:?}")),
    }
}

fn receive(sock: &Socket, what: &str) -> Result<(usize, Option<SocketAddr>), String> {
    readable(sock, what)?;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
    let (n, from) = named("recvfrom", sock.recv_from(&mut buf))?;
    Ok((n, from.as_socket()))
}

fn tcp_round_trip(ip: IpAddr, v6only: bool, reuse: bool) -> Result<(), String> {
    let (listener, at) = bound(Transport::Tcp, ip, v6only, reuse)?;
    named("listen", listener.listen(4))?;
    let client = fresh(Transport::Tcp, ip, v6only, reuse)?;
    named("connect", client.connect(&SockAddr::from(at)))?;
    readable(&listener, "accept")?;
    let (accepted, _) = named("accept", listener.accept())?;
    named("send", client.send(b"x"))?;
    let (n, _) = receive(&accepted, "recv")?;
    if n != 1 {
        return Err(format!("recv: {n} bytes instead of 1"));
    }
    Ok(())
}

fn udp_round_trip(ip: IpAddr, v6only: bool, reuse: bool) -> Result<(), String> {
    let (server, at) = bound(Transport::Udp, ip, v6only, reuse)?;
    let (client, _) = bound(Transport::Udp, ip, v6only, reuse)?;
    named("sendto", client.send_to(b"q", &SockAddr::from(at)))?;
    let (_, from) = receive(&server, "recvfrom at the server")?;
    let from = from.ok_or_else(|| "recvfrom: no sender address".to_string())?;
    named(
        "sendto (reply)",
        server.send_to(b"r", &SockAddr::from(from)),
    )?;
    let (n, _) = receive(&client, "recvfrom at the client")?;
    if n != 1 {
        return Err(format!("recvfrom: {n} bytes instead of 1"));
    }
    Ok(())
}
