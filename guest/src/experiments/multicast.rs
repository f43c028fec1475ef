//! Multicast over `lo`: three sockets bind one port, join the group, one datagram is sent to it,
//! and every socket that got a copy is recorded. See the fact list in `wire::catalogue::multicast`.
//!
//! Only calls a 3.8 kernel has: IP_ADD_MEMBERSHIP with the classic `struct ip_mreq` (interface
//! chosen by its address 127.0.0.1), IP_MULTICAST_IF with a `struct in_addr`, IP_MULTICAST_LOOP.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, SockAddr, Socket, Type};
use wire::catalogue::{MulticastCell, Transport, Uid, OTHER_UID};
use wire::Fact;

use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name, outcome};
use crate::probe::{self, Watched};

/// The interface every membership and every send uses, named by its address.
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

pub fn run(cell: &MulticastCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    let mut datagrams: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    if let Err(error) = super::repeat(
        lab,
        &mut facts,
        |_| true,
        |facts| once(cell, lab, facts, &mut datagrams),
    ) {
        return facts.ended(wire::Status::Failed { error });
    }
    for (label, counts) in datagrams {
        facts.set(&format!("datagrams.{label}"), Fact::Counts(counts));
    }
    facts.done()
}

fn once(
    cell: &MulticastCell,
    lab: &Lab,
    facts: &mut Facts,
    datagrams: &mut BTreeMap<&'static str, Vec<u64>>,
) -> Result<(), String> {
    let port = lab.port();
    let group = cell.group();
    let bind_ip = IpAddr::V4(cell.bind_addr());
    let mut bound: Vec<(&'static str, Socket)> = Vec::new();
    for (label, flags) in MulticastCell::LABELS.into_iter().zip(cell.socket_flags()) {
        // B of another user: its socket is created by that user (what SO_REUSEPORT compares).
        let other = (label == "B" && cell.uid == Uid::Different).then_some(OTHER_UID);
        let sock = net::as_euid(other, || net::socket_for(Transport::Udp, &bind_ip, false))?
            .map_err(|e| format!("socket for {label} = {}", errno_name(&e)))?;
        facts.outcome(&format!("flags.{label}"), net::set_reuse(&sock, flags));
        let bind = net::bind(&sock, bind_ip, port);
        facts.outcome(&format!("bind.{label}"), outcome(&bind));
        if bind.is_err() {
            facts.outcome(&format!("join.{label}"), "skipped");
            continue;
        }
        let join = sock.join_multicast_v4(&group, &LO);
        facts.outcome(&format!("join.{label}"), outcome(&join));
        bound.push((label, sock));
    }

    let sender = Socket::new(Domain::IPV4, Type::DGRAM, None)
        .map_err(|e| format!("socket for the sender = {}", errno_name(&e)))?;
    let configured = sender
        .set_multicast_if_v4(&LO)
        .and_then(|()| sender.set_multicast_loop_v4(true));
    facts.outcome("sender", outcome(&configured));
    let sent = sender.send_to(
        b"group",
        &SockAddr::from(SocketAddr::new(IpAddr::V4(group), port)),
    );
    facts.outcome("send", outcome(&sent));

    let watched: Vec<Watched<'_>> = bound
        .iter()
        .map(|(label, socket)| Watched { label, socket })
        .collect();
    let arrivals = if sent.is_ok() {
        probe::collect(Transport::Udp, &watched, probe::MULTICAST_GRACE)?
    } else {
        probe::Arrivals {
            counts: vec![0; watched.len()],
        }
    };
    facts.receiver("received", arrivals.receivers(&watched));
    for label in MulticastCell::LABELS {
        let n = watched
            .iter()
            .zip(&arrivals.counts)
            .find(|(w, _)| w.label == label)
            .map_or(0, |(_, &n)| n);
        datagrams.entry(label).or_default().push(n);
    }
    Ok(())
}
