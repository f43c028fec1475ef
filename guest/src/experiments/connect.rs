//! connect() collisions: A and B bind one source address and port, then connect to the same or to
//! different destinations. See the fact list in `wire::catalogue::connect`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{SockAddr, Socket};
use wire::catalogue::{ConnectCell, Destinations, IpFamily, Transport};

use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name, outcome};
use crate::probe::{self, Watched, CONNECT_TIMEOUT};

pub fn run(cell: &ConnectCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    if let Err(error) = super::repeat(lab, &mut facts, |_| true, |facts| once(cell, lab, facts)) {
        return facts.ended(wire::Status::Failed { error });
    }
    facts.done()
}

fn once(cell: &ConnectCell, lab: &Lab, facts: &mut Facts) -> Result<(), String> {
    let ip = match cell.family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let source = lab.port();
    let first = SocketAddr::new(ip, lab.port());
    let other_ip = match cell.family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        IpFamily::V6 => IpAddr::V6(net::DOC6),
    };
    let dests = match cell.destinations {
        Destinations::Same => [first, first],
        Destinations::Different => [first, SocketAddr::new(ip, lab.port())],
        Destinations::OtherAddress => [first, SocketAddr::new(other_ip, first.port())],
    };
    // For TCP something must listen on every destination; kept open until both connects are done.
    let mut listeners = Vec::new();
    if cell.transport == Transport::Tcp {
        for dest in dests.iter().take(match cell.destinations {
            Destinations::Same => 1,
            Destinations::Different | Destinations::OtherAddress => 2,
        }) {
            listeners.push(net::tcp_listener(*dest)?);
        }
    }

    let mut sockets: Vec<(&str, Option<Socket>)> = Vec::new();
    for label in ["A", "B"] {
        let sock = net::socket_for(cell.transport, &ip, false)
            .map_err(|e| format!("socket for {label} = {}", errno_name(&e)))?;
        facts.outcome(&format!("flags.{label}"), net::set_reuse(&sock, cell.flags));
        if !cell.bound {
            // Neither socket binds: the kernel gives each a source port when it connects.
            facts.outcome(&format!("bind.{label}"), "skipped");
            sockets.push((label, Some(sock)));
            continue;
        }
        let bind = net::bind(&sock, ip, source);
        facts.outcome(&format!("bind.{label}"), outcome(&bind));
        sockets.push((label, bind.is_ok().then_some(sock)));
    }
    for ((label, sock), dest) in sockets.iter().zip(dests) {
        let name = format!("connect.{label}");
        let Some(sock) = sock else {
            facts.outcome(&name, "skipped");
            continue;
        };
        let connected = match cell.transport {
            Transport::Tcp => sock.connect_timeout(&SockAddr::from(dest), CONNECT_TIMEOUT),
            Transport::Udp => sock.connect(&SockAddr::from(dest)),
        };
        facts.outcome(&name, outcome(&connected));
        if cell.transport == Transport::Tcp {
            // Abortive close: no TIME_WAIT left behind to crowd the namespace.
            let _ = sock.set_linger(Some(Duration::ZERO));
        }
    }
    if cell.transport == Transport::Udp && cell.bound {
        reply(&sockets, dests[0], SocketAddr::new(ip, source), facts)?;
    }
    drop(sockets);
    drop(listeners);
    Ok(())
}

/// UDP only: a responder on A's destination sends one datagram back to the shared source address;
/// which of the bound sockets gets it is the `reply` fact.
fn reply(
    sockets: &[(&str, Option<Socket>)],
    from: SocketAddr,
    to: SocketAddr,
    facts: &mut Facts,
) -> Result<(), String> {
    let responder = net::socket_for(Transport::Udp, &from.ip(), false)
        .map_err(|e| format!("socket for the responder = {}", errno_name(&e)))?;
    net::bind(&responder, from.ip(), from.port())
        .map_err(|e| format!("bind responder {from} = {}", errno_name(&e)))?;
    if let Err(e) = responder.send_to(b"reply", &SockAddr::from(to)) {
        facts.receiver("reply", errno_name(&e));
        return Ok(());
    }
    let watched: Vec<Watched<'_>> = sockets
        .iter()
        .filter_map(|(label, sock)| sock.as_ref().map(|socket| Watched { label, socket }))
        .collect();
    let arrivals = probe::collect(Transport::Udp, &watched, Duration::ZERO)?;
    facts.receiver("reply", arrivals.receivers(&watched));
    Ok(())
}
