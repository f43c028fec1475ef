//! Sending one connection or datagram and finding out which of several sockets got it.
//!
//! Every wait here is a bounded poll(2): the first arrival is waited for at most
//! [`FIRST_ARRIVAL`], later ones (a second copy of a multicast datagram, a second listener that
//! should not have been chosen) for a caller-chosen grace after the last one seen. On loopback the
//! kernel delivers inside the sending syscall, so the long wait is only ever spent when nothing
//! arrives.
//!
//! Only syscalls every kernel since 3.8 has: poll, accept, recv, connect, sendto.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};
use wire::catalogue::Transport;

use crate::net::{self, errno_name};

/// Longest wait for the first connection or datagram to show up.
pub const FIRST_ARRIVAL: Duration = Duration::from_millis(250);
/// How long after the last arrival further copies of a multicast datagram are still looked for.
pub const MULTICAST_GRACE: Duration = Duration::from_millis(3);
/// Longest a probing client's connect() may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// A socket under observation and the label the experiment's setup gives it.
pub struct Watched<'a> {
    pub label: &'a str,
    pub socket: &'a Socket,
}

/// What one probe found: per watched socket, how many connections it accepted or datagrams it
/// received (in the order the sockets were given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrivals {
    pub counts: Vec<u64>,
}

impl Arrivals {
    /// The labels of every socket that got something, joined by `+`, or `none`.
    pub fn receivers(&self, watched: &[Watched<'_>]) -> String {
        let got: Vec<&str> = watched
            .iter()
            .zip(&self.counts)
            .filter(|(_, &n)| n > 0)
            .map(|(w, _)| w.label)
            .collect();
        if got.is_empty() {
            "none".to_string()
        } else {
            got.join("+")
        }
    }
}

/// Connects a fresh client to `dest` (TCP) or sends it one datagram from a fresh unbound socket
/// (UDP), then reports who among `watched` got it. The client's failure (an errno such as
/// `ECONNREFUSED`) is the answer when it fails: nothing can have arrived then. A unicast probe
/// reaches at most one socket, so after the first arrival the others are only looked at once,
/// without waiting. `Err` only when the measuring broke (no socket, poll failed).
pub fn probe(
    transport: Transport,
    dest: SocketAddr,
    watched: &[Watched<'_>],
) -> Result<String, String> {
    let client = net::socket_for(transport, &dest.ip(), false)
        .map_err(|e| format!("socket for the probing client = {}", errno_name(&e)))?;
    let sent = match transport {
        Transport::Tcp => client.connect_timeout(&SockAddr::from(dest), CONNECT_TIMEOUT),
        Transport::Udp => client.send_to(b"probe", &SockAddr::from(dest)).map(|_| ()),
    };
    if let Err(e) = sent {
        return Ok(errno_name(&e));
    }
    let arrivals = collect(transport, watched, Duration::ZERO)?;
    if transport == Transport::Tcp {
        // An abortive close leaves no TIME_WAIT behind to crowd the namespace.
        let _ = client.set_linger(Some(Duration::ZERO));
    }
    Ok(arrivals.receivers(watched))
}

/// Waits for arrivals on `watched` and takes them: accepts every pending connection (closing it
/// at once, abortively) or drains every datagram. Bounded by [`FIRST_ARRIVAL`] for the first
/// arrival and by `grace` after each later one.
pub fn collect(
    transport: Transport,
    watched: &[Watched<'_>],
    grace: Duration,
) -> Result<Arrivals, String> {
    for w in watched {
        w.socket
            .set_nonblocking(true)
            .map_err(|e| format!("fcntl(O_NONBLOCK) on {} = {}", w.label, errno_name(&e)))?;
    }
    let mut counts = vec![0u64; watched.len()];
    let mut deadline = Instant::now() + FIRST_ARRIVAL;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ready = poll_readable(watched, left)?;
        if ready.iter().all(|r| !r) {
            if Instant::now() >= deadline {
                return Ok(Arrivals { counts });
            }
            continue;
        }
        let mut taken = 0;
        for (i, _) in ready.iter().enumerate().filter(|(_, &r)| r) {
            let n = take_all(transport, watched[i].socket);
            counts[i] += n;
            taken += n;
        }
        if taken > 0 {
            deadline = Instant::now() + grace;
        } else if Instant::now() >= deadline {
            return Ok(Arrivals { counts });
        }
    }
}

/// poll(2) for POLLIN on every socket, at most `timeout`; EINTR counts as nothing ready.
fn poll_readable(watched: &[Watched<'_>], timeout: Duration) -> Result<Vec<bool>, String> {
    let mut fds: Vec<libc::pollfd> = watched
        .iter()
        .map(|w| libc::pollfd {
            fd: w.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: fds is a live array of fds.len() pollfd structures.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(vec![false; watched.len()]);
        }
        return Err(format!("poll({} sockets) = {}", fds.len(), errno_name(&e)));
    }
    Ok(fds.iter().map(|p| p.revents & libc::POLLIN != 0).collect())
}

/// Accepts or receives until the socket has nothing more; returns how many it took. Errors (a
/// pending ICMP error on a UDP socket, a connection reset before accept) end the draining.
fn take_all(transport: Transport, socket: &Socket) -> u64 {
    let mut n = 0;
    // Bounded: a socket cannot hold more than its queue, and the probes send one thing each.
    for _ in 0..1024 {
        match transport {
            Transport::Tcp => match socket.accept() {
                Ok((conn, _)) => {
                    let _ = conn.set_linger(Some(Duration::ZERO));
                    n += 1;
                }
                Err(_) => break,
            },
            Transport::Udp => {
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
                match socket.recv(&mut buf) {
                    Ok(_) => n += 1,
                    Err(_) => break,
                }
            }
        }
    }
    n
}
