//! Automatic binding: a socket used before it was bound to a port gets one from the kernel. See
//! the fact list in `wire::catalogue::autobind`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{SockAddr, Socket};
use wire::catalogue::{display_addr, AutobindCell, AutobindHow, IpFamily, Transport};

use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name, outcome};
use crate::probe::{self, Watched, CONNECT_TIMEOUT};

pub fn run(cell: &AutobindCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    let range = port_range(cell.family);
    if let Err(error) = super::repeat(
        lab,
        &mut facts,
        |_| true,
        |facts| once(cell, lab, range, facts),
    ) {
        return facts.ended(wire::Status::Failed { error });
    }
    facts.done()
}

/// This namespace's ephemeral range (`ip_local_port_range`, which IPv6 shares), or `None` when
/// it cannot be read.
fn port_range(_family: IpFamily) -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((parts.next()??, parts.next()??))
}

fn once(
    cell: &AutobindCell,
    lab: &Lab,
    range: Option<(u16, u16)>,
    facts: &mut Facts,
) -> Result<(), String> {
    let ip = match cell.family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let peer_addr = SocketAddr::new(ip, lab.port());
    // The peer A talks to: a listener (TCP) or a bound datagram socket (UDP).
    let peer = match cell.transport {
        Transport::Tcp => net::tcp_listener(peer_addr)?,
        Transport::Udp => {
            let s = net::socket_for(Transport::Udp, &ip, true)
                .map_err(|e| format!("socket for the peer = {}", errno_name(&e)))?;
            net::bind(&s, ip, peer_addr.port())
                .map_err(|e| format!("bind the peer {peer_addr} = {}", errno_name(&e)))?;
            s
        }
    };
    let a = net::socket_for(cell.transport, &ip, true)
        .map_err(|e| format!("socket for A = {}", errno_name(&e)))?;
    let call = match (cell.how, cell.transport) {
        (AutobindHow::SendUnbound, _) => a.send_to(b"a", &SockAddr::from(peer_addr)).map(|_| ()),
        (AutobindHow::ConnectUnbound, Transport::Tcp) => {
            a.connect_timeout(&SockAddr::from(peer_addr), CONNECT_TIMEOUT)
        }
        (AutobindHow::ConnectUnbound, Transport::Udp) => a.connect(&SockAddr::from(peer_addr)),
        (AutobindHow::ListenUnbound, _) => a.listen(16),
        (AutobindHow::BindPortZero, _) => net::bind(&a, ip, 0),
    };
    facts.outcome("call", outcome(&call));
    let local = a.local_addr().ok().and_then(|l| l.as_socket());
    let port = local.map_or(0, |l| l.port());
    facts.outcome(
        "local_port",
        match (port, range) {
            (0, _) => "zero",
            (p, Some((lo, hi))) if (lo..=hi).contains(&p) => "in-range",
            (_, Some(_)) => "out-of-range",
            (_, None) => "range-unknown",
        },
    );
    facts.outcome(
        "local_addr",
        local.map_or_else(|| "none".to_owned(), |l| display_addr(l.ip())),
    );
    if call.is_err() || port == 0 {
        facts.receiver("reply", "none");
        return Ok(());
    }
    let reached = match (cell.transport, cell.how) {
        // Something sent to A's own port on the loopback address.
        (Transport::Udp, AutobindHow::SendUnbound | AutobindHow::ConnectUnbound) => {
            let _ = peer.send_to(b"r", &SockAddr::from(SocketAddr::new(ip, port)));
            arrived(Transport::Udp, &a)?
        }
        (Transport::Udp, _) => {
            let sender = net::socket_for(Transport::Udp, &ip, true)
                .map_err(|e| format!("socket for a sender = {}", errno_name(&e)))?;
            let _ = sender.send_to(b"r", &SockAddr::from(SocketAddr::new(ip, port)));
            arrived(Transport::Udp, &a)?
        }
        (Transport::Tcp, AutobindHow::ConnectUnbound) => {
            // The connection's other end answers over it.
            let (accepted, _) = peer
                .accept()
                .map_err(|e| format!("accept = {}", errno_name(&e)))?;
            let _ = accepted.send(b"r");
            let _ = a.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4];
            let got = matches!(a.recv(&mut buf), Ok(n) if n > 0);
            let _ = a.set_linger(Some(Duration::ZERO));
            let _ = accepted.set_linger(Some(Duration::ZERO));
            got
        }
        (Transport::Tcp, _) => {
            if cell.how == AutobindHow::BindPortZero {
                let _ = a.listen(16);
            }
            let client = net::socket_for(Transport::Tcp, &ip, true)
                .map_err(|e| format!("socket for a client = {}", errno_name(&e)))?;
            let _ = client.set_linger(Some(Duration::ZERO));
            let _ =
                client.connect_timeout(&SockAddr::from(SocketAddr::new(ip, port)), CONNECT_TIMEOUT);
            arrived(Transport::Tcp, &a)?
        }
    };
    facts.receiver("reply", if reached { "A" } else { "none" });
    Ok(())
}

fn arrived(transport: Transport, sock: &Socket) -> Result<bool, String> {
    let watched = [Watched {
        label: "A",
        socket: sock,
    }];
    let arrivals = probe::collect(transport, &watched, Duration::ZERO)?;
    Ok(arrivals.counts[0] > 0)
}
