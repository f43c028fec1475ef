//! The bind matrix: A is bound and brought into a state, then B binds the same port. See the fact
//! list in `wire::catalogue::bind`.

use std::cell::Cell;
use std::net::IpAddr;

use socket2::Socket;
use wire::catalogue::{BindCell, BindPort, FirstState, Transport, Uid, OTHER_UID};

use super::{Facts, Lab, Measured};
use crate::net::{self, outcome, peer_target, resolve};

pub fn run(cell: &BindCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    // Whether A really was in TIME_WAIT: a full TIME_WAIT table closes it outright instead, and
    // then the cell measured a closed socket. The host discards cells where that happened.
    let checks_time_wait = cell.first == FirstState::TimeWait && cell.transport == Transport::Tcp;
    if checks_time_wait {
        start_watching_time_wait_overflows();
    }
    if let Err(error) = super::repeat(lab, &mut facts, |_| true, |facts| once(cell, lab, facts)) {
        return facts.ended(wire::Status::Failed { error });
    }
    if checks_time_wait {
        if let Some(n) = time_wait_overflows_since_last_look() {
            facts.set("tw_overflows", wire::Fact::Count(n));
        }
    }
    facts.done()
}

thread_local! {
    /// TCPTimeWaitOverflow as this worker last read it.
    static OVERFLOWS_SEEN: Cell<Option<u64>> = const { Cell::new(None) };
}

/// This worker's first reading, so that its first TIME_WAIT cell has a "before".
fn start_watching_time_wait_overflows() {
    if OVERFLOWS_SEEN.with(|seen| seen.get().is_none()) {
        time_wait_overflows_since_last_look();
    }
}

/// Overflows of the TIME_WAIT table since this worker last looked (`None` when the kernel does
/// not say). Reading /proc/net/netstat costs ~0.4 ms under TCG, so a TIME_WAIT cell reads it
/// once, after its repetitions, and is charged with every overflow since the reading before:
/// an overflow is never missed, at worst blamed on a later cell too.
fn time_wait_overflows_since_last_look() -> Option<u64> {
    let now = net::time_wait_overflows()?;
    let before = OVERFLOWS_SEEN.with(|seen| seen.replace(Some(now)));
    Some(now.saturating_sub(before.unwrap_or(now)))
}

/// One repetition. `Err` only when the measuring itself broke (a peer could not be set up).
fn once(cell: &BindCell, lab: &Lab, facts: &mut Facts) -> Result<(), String> {
    let port = lab.port();
    // B's port: A's, or a second fresh one (never a neighbour some other cell may hold).
    let b_port = match cell.port {
        BindPort::Same => port,
        BindPort::Other => lab.port(),
    };
    let (a_ip, a_v6only) = resolve(cell.a);
    let (b_ip, b_v6only) = resolve(cell.b);

    // A, with whatever it is kept alive by (an accepted peer connection).
    let a = match net::socket_for(cell.transport, &a_ip, a_v6only) {
        Ok(s) => s,
        Err(e) => return Err(format!("socket for A = {}", net::errno_name(&e))),
    };
    if !cell.late {
        facts.outcome("a_flags", net::set_reuse(&a, cell.a_flags));
    }
    let bound = net::bind(&a, a_ip, port);
    if cell.late {
        // After its bind, before its listen or connect.
        facts.outcome("a_flags", net::set_reuse(&a, cell.a_flags));
    }
    let (a_setup, _keep) = match bound {
        Ok(()) => bring_into_state(cell, &a, &a_ip, lab)?,
        Err(e) => (net::errno_name(&e), None),
    };
    let a_ok = a_setup == "ok";
    facts.outcome("a_setup", a_setup);
    if a_ok && cell.first == FirstState::Connected {
        let local = a.local_addr().ok().and_then(|a| a.as_socket()).map_or_else(
            || "unknown".to_owned(),
            |a| wire::catalogue::display_addr(a.ip()),
        );
        facts.outcome("a_local", local);
    }
    if !a_ok {
        facts.outcome("b_flags", "skipped");
        facts.outcome("b_bind", "skipped");
        return Ok(());
    }
    if cell.first == FirstState::TimeWait {
        drop(a);
    }

    if cell.uid == Uid::SameOtherProcess {
        let listen = cell.transport == Transport::Tcp;
        let b = net::bind_in_child(cell.transport, b_ip, b_v6only, cell.b_flags, b_port, listen)?;
        facts.outcome("b_flags", b.flags);
        facts.outcome("b_bind", b.bind.clone());
        if let Some(listened) = b.listen.filter(|_| b.bind == "ok") {
            facts.outcome("b_listen", listened);
        }
        return Ok(());
    }
    let uid = (cell.uid == Uid::Different).then_some(OTHER_UID);
    let b = net::as_euid(
        uid,
        || -> std::io::Result<(String, std::io::Result<()>, Socket)> {
            let b = net::socket_for(cell.transport, &b_ip, b_v6only)?;
            let flags = net::set_reuse(&b, cell.b_flags);
            let bind = net::bind(&b, b_ip, b_port);
            Ok((flags, bind, b))
        },
    )?;
    match b {
        Err(e) => return Err(format!("socket for B = {}", net::errno_name(&e))),
        Ok((flags, bind, b)) => {
            facts.outcome("b_flags", flags);
            facts.outcome("b_bind", outcome(&bind));
            if bind.is_ok() && cell.transport == Transport::Tcp {
                facts.outcome("b_listen", outcome(&b.listen(16)));
            }
        }
    }
    Ok(())
}

/// Puts A into the cell's first state. Returns `ok` or the errno that stopped it, and the peer's
/// end of A's connection, which must stay open while B binds (except for TIME_WAIT, where it is
/// closed after A so that A, the active closer, ends in TIME_WAIT).
fn bring_into_state(
    cell: &BindCell,
    a: &Socket,
    a_ip: &IpAddr,
    lab: &Lab,
) -> Result<(String, Option<Socket>), String> {
    match cell.first {
        FirstState::Bound => Ok(("ok".into(), None)),
        FirstState::Listening => Ok((outcome(&a.listen(16)), None)),
        FirstState::Connected | FirstState::TimeWait => {
            let v4 = lab
                .peer(wire::catalogue::IpFamily::V4)
                .map_err(|e| format!("v4 peer = {}", net::errno_name(&e)))?;
            let (family, target) = peer_target(a_ip, v4.addr);
            let peer = lab
                .peer(family)
                .map_err(|e| format!("peer = {}", net::errno_name(&e)))?;
            let connected = a.connect(&target.into());
            if connected.is_err() || cell.transport == Transport::Udp {
                return Ok((outcome(&connected), None));
            }
            let accepted = peer
                .accept()
                .map_err(|e| format!("peer accept = {}", net::errno_name(&e)))?;
            if cell.first == FirstState::TimeWait {
                // A closes first (active close → TIME_WAIT), then the peer answers with its FIN.
                let _ = a.shutdown(std::net::Shutdown::Both);
                drop(accepted);
                return Ok(("ok".into(), None));
            }
            // Closed with a reset when the repetition ends (it is dropped before A): one packet
            // instead of a FIN exchange, and no TIME_WAIT left on the peer's port.
            let _ = accepted.set_linger(Some(std::time::Duration::ZERO));
            Ok(("ok".into(), Some(accepted)))
        }
    }
}
