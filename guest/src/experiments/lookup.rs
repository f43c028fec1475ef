//! Which socket a lookup picks: the scenario's sockets share a fresh port, every probe address
//! gets one connection or datagram, and the socket that got it is recorded. See the fact list in
//! `wire::catalogue::lookup`.

use std::net::SocketAddr;

use socket2::Socket;
use wire::catalogue::{display_addr, LookupCase, LookupSocket, Transport};

use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name, outcome};
use crate::probe::{self, Watched};

pub fn run(case: &LookupCase, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    // Which member of a reuseport group gets a probe is hash luck: in scenarios with a group,
    // only the set-up outcomes say whether the repetitions disagree.
    let sockets = case.sockets();
    let has_group = sockets.iter().enumerate().any(|(i, a)| {
        sockets[i + 1..].iter().any(|b| {
            a.flags.reuse_port && b.flags.reuse_port && a.addr == b.addr && a.v6only == b.v6only
        })
    });
    if let Err(error) = super::repeat(
        lab,
        &mut facts,
        |fact| !(has_group && fact.starts_with("to.")),
        |facts| once(case, lab, facts),
    ) {
        return facts.ended(wire::Status::Failed { error });
    }
    facts.done()
}

fn once(case: &LookupCase, lab: &Lab, facts: &mut Facts) -> Result<(), String> {
    let port = lab.port();
    let mut bound: Vec<(&'static str, Socket)> = Vec::new();
    for spec in case.sockets() {
        if let Some(sock) = set_up(case.transport, &spec, port, facts)? {
            bound.push((spec.label, sock));
        }
    }
    let watched: Vec<Watched<'_>> = bound
        .iter()
        .map(|(label, socket)| Watched { label, socket })
        .collect();
    for ip in case.probes() {
        let got = probe::probe(case.transport, SocketAddr::new(ip, port), &watched)?;
        facts.receiver(&format!("to.{}", display_addr(ip)), got);
    }
    Ok(())
}

/// Creates, configures, binds and (TCP) listens one socket, recording each step. Returns the
/// socket when it is bound (and, for TCP, listening): only those can receive anything.
fn set_up(
    transport: Transport,
    spec: &LookupSocket,
    port: u16,
    facts: &mut Facts,
) -> Result<Option<Socket>, String> {
    let sock = net::socket_for(transport, &spec.addr, spec.v6only)
        .map_err(|e| format!("socket for {} = {}", spec.label, errno_name(&e)))?;
    facts.outcome(
        &format!("flags.{}", spec.label),
        net::set_reuse(&sock, spec.flags),
    );
    let bind = net::bind(&sock, spec.addr, port);
    facts.outcome(&format!("bind.{}", spec.label), outcome(&bind));
    if transport == Transport::Udp {
        return Ok(bind.is_ok().then_some(sock));
    }
    if bind.is_err() {
        facts.outcome(&format!("listen.{}", spec.label), "skipped");
        return Ok(None);
    }
    let listen = sock.listen(64);
    facts.outcome(&format!("listen.{}", spec.label), outcome(&listen));
    Ok(listen.is_ok().then_some(sock))
}
