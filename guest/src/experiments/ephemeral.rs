//! The ephemeral port range, in a network namespace of the experiment's own. See the fact list in
//! `wire::catalogue::ephemeral`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{SockAddr, Socket};
use wire::catalogue::{EphemeralCell, EphemeralKind, ExhaustedCall, SocketRange, Transport};

use super::group::Stop;
use super::sandbox::{Sandbox, Scope};
use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name, ipopt, outcome};
use crate::probe::CONNECT_TIMEOUT;

const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Where listeners and receivers sit: below every range the family sets, in a namespace where
/// nothing else runs.
const PEER_PORTS: [u16; 2] = [5001, 5002];

pub fn run(cell: &EphemeralCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    match measure(cell, lab, &mut facts) {
        Ok(()) => facts.done(),
        Err(stop) => facts.ended(stop.status()),
    }
}

fn measure(cell: &EphemeralCell, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let mut sandbox = Sandbox::enter(lab.initial_netns).map_err(Stop::Failed)?;
    let knob = sandbox.knob(PORT_RANGE).map_err(Stop::Unsupported)?;
    facts.outcome("knob", knob.scope.token());
    if knob.scope == Scope::Absent {
        return Err(Stop::Unsupported(format!("{PORT_RANGE} = ENOENT")));
    }
    let (lo, hi) = cell.range();
    let set = sandbox
        .write(&knob, &format!("{lo} {hi}"))
        .map_err(Stop::Failed)?;
    facts.outcome("range_set", set.clone());
    if set != "ok" {
        return Err(Stop::Unsupported(format!(
            "write {PORT_RANGE} \"{lo} {hi}\" = {set}"
        )));
    }
    let result = super::repeat_until_stop(lab, facts, |facts| once(cell, facts));
    drop(sandbox);
    result
}

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn fresh(transport: Transport) -> Result<Socket, Stop> {
    net::socket_for(transport, &loopback(), false)
        .map_err(|e| Stop::Failed(format!("socket = {}", errno_name(&e))))
}

fn local_port(sock: &Socket) -> u16 {
    sock.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(0, |a| a.port())
}

fn once(cell: &EphemeralCell, facts: &mut Facts) -> Result<(), Stop> {
    let (lo, hi) = cell.range();
    let size = usize::from(hi - lo) + 1;
    match cell.kind {
        EphemeralKind::Range | EphemeralKind::RangeOdd => {
            let taken = bind_until_failure(cell.transport, size + 5, |_| Ok(()))?;
            if let Some(first) = taken.ports.first() {
                facts.number("first_port", f64::from(*first));
            }
            facts.outcome("ports", runs(&taken.ports));
            facts.outcome("failure", taken.failure.clone());
            Ok(())
        }
        EphemeralKind::Exhausted(call) => exhausted(cell.transport, call, size, facts),
        EphemeralKind::SharedPort => shared_port(size, facts),
        EphemeralKind::BindNoPort => bind_no_port(cell.range(), size, facts),
        EphemeralKind::SocketRange(r) => socket_range(r, size, facts),
    }
}

/// Sockets bound by bind(127.0.0.1:0), the ports they got in order, and the errno of the bind that
/// failed (`none` when `at_most` succeeded).
struct Taken {
    sockets: Vec<Socket>,
    ports: Vec<u16>,
    failure: String,
}

fn bind_until_failure(
    transport: Transport,
    at_most: usize,
    prepare: impl Fn(&Socket) -> std::io::Result<()>,
) -> Result<Taken, Stop> {
    let mut taken = Taken {
        sockets: Vec::new(),
        ports: Vec::new(),
        failure: "none".into(),
    };
    for _ in 0..at_most {
        let sock = fresh(transport)?;
        prepare(&sock).map_err(|e| Stop::Failed(format!("setsockopt = {}", errno_name(&e))))?;
        if let Err(e) = net::bind(&sock, loopback(), 0) {
            taken.failure = errno_name(&e);
            break;
        }
        taken.ports.push(local_port(&sock));
        taken.sockets.push(sock);
    }
    Ok(taken)
}

/// A TCP listener on 127.0.0.1:`port` that takes every connection offered (and closes it
/// abortively), or a UDP socket bound there.
fn peer(transport: Transport, port: u16) -> Result<Socket, Stop> {
    let sock = fresh(transport)?;
    let _ = sock.set_reuse_address(true);
    net::bind(&sock, loopback(), port)
        .map_err(|e| Stop::Failed(format!("bind 127.0.0.1:{port} = {}", errno_name(&e))))?;
    if transport == Transport::Tcp {
        sock.listen(64)
            .map_err(|e| Stop::Failed(format!("listen = {}", errno_name(&e))))?;
    }
    Ok(sock)
}

/// A connection from `sock` to the listener `to` at `port`: the connect's outcome, and the
/// accepted end (kept so the connection stays up; closed abortively with it).
fn connect(sock: &Socket, to: &Socket, port: u16) -> (String, Option<Socket>) {
    let dest = SockAddr::from(SocketAddr::new(loopback(), port));
    let result = sock.connect_timeout(&dest, CONNECT_TIMEOUT);
    let _ = sock.set_linger(Some(Duration::ZERO));
    if result.is_err() {
        return (outcome(&result), None);
    }
    let accepted = to.accept().ok().map(|(conn, _)| {
        let _ = conn.set_linger(Some(Duration::ZERO));
        conn
    });
    (outcome(&result), accepted)
}

fn exhausted(
    transport: Transport,
    call: ExhaustedCall,
    size: usize,
    facts: &mut Facts,
) -> Result<(), Stop> {
    let target = SockAddr::from(SocketAddr::new(loopback(), PEER_PORTS[0]));
    let listener = peer(transport, PEER_PORTS[0])?;
    let mut held = Vec::new();
    let mut ports = Vec::new();
    if (transport, call) == (Transport::Tcp, ExhaustedCall::Connect) {
        for _ in 0..size {
            let sock = fresh(transport)?;
            let (result, accepted) = connect(&sock, &listener, PEER_PORTS[0]);
            if result != "ok" {
                break;
            }
            ports.push(local_port(&sock));
            held.push(sock);
            held.extend(accepted);
        }
    } else {
        let taken = bind_until_failure(transport, size, |_| Ok(()))?;
        ports = taken.ports.clone();
        held.extend(taken.sockets);
    }
    facts.outcome("filled", runs(&ports));
    let sock = fresh(transport)?;
    let result = match call {
        ExhaustedCall::Bind => net::bind(&sock, loopback(), 0),
        ExhaustedCall::Listen => sock.listen(16),
        ExhaustedCall::Connect => match transport {
            Transport::Tcp => {
                let r = sock.connect_timeout(&target, CONNECT_TIMEOUT);
                let _ = sock.set_linger(Some(Duration::ZERO));
                r
            }
            Transport::Udp => sock.connect(&target),
        },
        ExhaustedCall::Sendto => sock.send_to(b"x", &target).map(|_| ()),
    };
    facts.outcome("call", outcome(&result));
    if transport == Transport::Tcp && result.is_ok() && call == ExhaustedCall::Connect {
        let _ = listener.accept();
    }
    Ok(())
}

fn shared_port(size: usize, facts: &mut Facts) -> Result<(), Stop> {
    let listeners = [
        peer(Transport::Tcp, PEER_PORTS[0])?,
        peer(Transport::Tcp, PEER_PORTS[1])?,
    ];
    let mut held = Vec::new();
    let mut used: [BTreeSet<u16>; 2] = Default::default();
    for (i, (name, listener)) in ["first", "second"].iter().zip(&listeners).enumerate() {
        let mut results = Vec::new();
        for _ in 0..size {
            let sock = fresh(Transport::Tcp)?;
            let (result, accepted) = connect(&sock, listener, PEER_PORTS[i]);
            if result == "ok" {
                used[i].insert(local_port(&sock));
            }
            results.push(result);
            held.push(sock);
            held.extend(accepted);
        }
        facts.outcome(name, tally(&results));
    }
    facts.outcome("shared", used[1].intersection(&used[0]).count().to_string());
    Ok(())
}

fn port_class(port: u16, (lo, hi): (u16, u16)) -> &'static str {
    match port {
        0 => "zero",
        p if (lo..=hi).contains(&p) => "in-range",
        _ => "out-of-range",
    }
}

fn bind_no_port(range: (u16, u16), size: usize, facts: &mut Facts) -> Result<(), Stop> {
    let listeners = [
        peer(Transport::Tcp, PEER_PORTS[0])?,
        peer(Transport::Tcp, PEER_PORTS[1])?,
    ];
    let one: libc::c_int = 1;
    let mut held = Vec::new();
    let mut connected_ports = BTreeSet::new();
    let mut each: [Vec<String>; 5] = Default::default();
    let [sets, binds, after_bind, connects, after_connect] = &mut each;
    for i in 0..2 * size {
        let sock = fresh(Transport::Tcp)?;
        let set = net::setsockopt_at(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            ipopt::IP_BIND_ADDRESS_NO_PORT,
            &one,
        );
        sets.push(outcome(&set));
        if let Err(e) = &set {
            if e.raw_os_error() == Some(libc::ENOPROTOOPT) {
                facts.outcome("set", outcome(&set));
                return Err(Stop::Unsupported(
                    "setsockopt(IP_BIND_ADDRESS_NO_PORT) = ENOPROTOOPT".into(),
                ));
            }
        }
        binds.push(outcome(&net::bind(&sock, loopback(), 0)));
        after_bind.push(port_class(local_port(&sock), range).into());
        let which = i / size;
        let (result, accepted) = connect(&sock, &listeners[which], PEER_PORTS[which]);
        connects.push(result.clone());
        let port = local_port(&sock);
        after_connect.push(port_class(port, range).into());
        if result == "ok" {
            connected_ports.insert(port);
        }
        held.push(sock);
        held.extend(accepted);
    }
    for (name, values) in [
        "set",
        "bind",
        "port_after_bind",
        "connect",
        "port_after_connect",
    ]
    .iter()
    .zip(&each)
    {
        facts.outcome(name, tally(values));
    }
    facts.outcome("distinct_ports", connected_ports.len().to_string());
    let plain = fresh(Transport::Tcp)?;
    facts.outcome("plain_bind", outcome(&net::bind(&plain, loopback(), 0)));
    Ok(())
}

/// IP_LOCAL_PORT_RANGE's value: the upper bound in the high 16 bits, the lower in the low.
fn set_socket_range(sock: &Socket, (lo, hi): (u16, u16)) -> std::io::Result<()> {
    let value: u32 = (u32::from(hi) << 16) | u32::from(lo);
    net::setsockopt_at(
        sock.as_raw_fd(),
        libc::IPPROTO_IP,
        ipopt::IP_LOCAL_PORT_RANGE,
        &value,
    )
}

fn socket_range(r: SocketRange, size: usize, facts: &mut Facts) -> Result<(), Stop> {
    let prepare = |sock: &Socket| -> std::io::Result<()> {
        if r == SocketRange::Reset {
            set_socket_range(sock, SocketRange::Clamp.bounds())?;
        }
        set_socket_range(sock, r.bounds())
    };
    let probe = fresh(Transport::Tcp)?;
    let set = prepare(&probe);
    facts.outcome("set", outcome(&set));
    let got = match net::getsockopt_at_int(
        probe.as_raw_fd(),
        libc::IPPROTO_IP,
        ipopt::IP_LOCAL_PORT_RANGE,
    ) {
        Ok(v) => {
            let v = v as u32;
            format!("{}-{}", v & 0xffff, v >> 16)
        }
        Err(e) => errno_name(&e),
    };
    facts.outcome("get", got);
    match &set {
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
            return Err(Stop::Unsupported(
                "setsockopt(IP_LOCAL_PORT_RANGE) = ENOPROTOOPT".into(),
            ))
        }
        Err(_) => return Ok(()),
        Ok(()) => {}
    }
    drop(probe);
    let taken = bind_until_failure(Transport::Tcp, size + 5, prepare)?;
    facts.outcome("ports", runs(&taken.ports));
    facts.outcome("failure", taken.failure.clone());
    Ok(())
}

/// Outcomes of many sockets as one value: each distinct outcome with how many had it, in order
/// of first appearance (`ok x10`, `ok x5, EADDRNOTAVAIL x5`).
fn tally(values: &[String]) -> String {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for v in values {
        match seen.iter_mut().find(|(s, _)| s == v) {
            Some((_, n)) => *n += 1,
            None => seen.push((v, 1)),
        }
    }
    if seen.is_empty() {
        return "none".into();
    }
    seen.iter()
        .map(|(v, n)| format!("{v} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ports as sorted runs: `40000-40009`, `40000-40004,40006`; `none` for no port.
fn runs(ports: &[u16]) -> String {
    let set: BTreeSet<u16> = ports.iter().copied().collect();
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end.wrapping_add(1))) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_read_as_sorted_runs() {
        assert_eq!(runs(&[40003, 40001, 40002, 40009]), "40001-40003,40009");
        assert_eq!(runs(&[40000]), "40000");
        assert_eq!(runs(&[]), "none");
        assert_eq!(runs(&[65535, 65534]), "65534-65535");
    }

    #[test]
    fn outcomes_are_tallied_in_order_of_appearance() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(tally(&v(&["ok", "ok"])), "ok x2");
        assert_eq!(
            tally(&v(&["ok", "EADDRNOTAVAIL", "ok"])),
            "ok x2, EADDRNOTAVAIL x1"
        );
        assert_eq!(tally(&[]), "none");
    }
}
