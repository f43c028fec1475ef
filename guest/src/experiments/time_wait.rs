//! Rebinding over a real TIME_WAIT made on loopback. See the fact list in
//! `wire::catalogue::time_wait`.
//!
//! Whether the TIME_WAIT really exists is read from /proc/net/tcp (or tcp6), the one view every
//! kernel since 3.8 has without modules (sock_diag's inet part is a module on Debian kernels).
//! That file lists every socket of the namespace, and by the time this family runs the bind matrix
//! has left thousands of TIME_WAIT sockets behind, which would make each read cost milliseconds
//! natively and far more under TCG. So the family works in a network namespace of its own, made
//! once per worker and entered only for the length of one experiment: its file holds only this
//! family's own sockets. Where a kernel cannot make one (no CONFIG_NET_NS) the family stays in the
//! guest's namespace and says so in `private_netns`.

use std::cell::OnceCell;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};
use socket2::{SockAddr, Socket};
use wire::catalogue::{CloseMode, IpFamily, TimeWaitCell, TimeWaitSide, Transport};

use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name, outcome};
use crate::probe::CONNECT_TIMEOUT;

/// How long the closing handshake may take to leave a socket in TIME_WAIT before the rebind is
/// tried anyway (and `time_wait_seen` says `absent`). On loopback it is usually done before
/// close() returns.
const TIME_WAIT_DEADLINE: Duration = Duration::from_millis(500);

pub fn run(cell: &TimeWaitCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    let guard = match PrivateNetns::enter() {
        Ok(guard) => {
            facts.outcome("private_netns", "ok");
            Some(guard)
        }
        Err(why) => {
            facts.outcome("private_netns", why);
            None
        }
    };
    let result = super::repeat(lab, &mut facts, |_| true, |facts| once(cell, lab, facts));
    drop(guard);
    match result {
        Ok(()) => facts.done(),
        Err(error) => facts.ended(wire::Status::Failed { error }),
    }
}

fn once(cell: &TimeWaitCell, lab: &Lab, facts: &mut Facts) -> Result<(), String> {
    let ip = match cell.family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let old_addr = SocketAddr::new(ip, lab.port());
    let other_addr = SocketAddr::new(ip, lab.port());

    let old = net::socket_for(Transport::Tcp, &ip, false)
        .map_err(|e| format!("socket for the old socket = {}", errno_name(&e)))?;
    facts.outcome("old_flags", net::set_reuse(&old, cell.old_flags));
    let setup = match (cell.side, cell.close) {
        (TimeWaitSide::Client, CloseMode::Close) => client_time_wait(old, old_addr, other_addr)?,
        (TimeWaitSide::Client, mode) => client_close(old, old_addr, other_addr, mode, facts)?,
        (TimeWaitSide::Server, _) => server_time_wait(old, old_addr, other_addr)?,
        (TimeWaitSide::Passive, _) => passive_close(old, old_addr, other_addr)?,
    };
    let set_up = setup == "ok";
    facts.outcome("old_setup", setup);
    if !set_up {
        for name in ["time_wait_seen", "new_flags", "new_bind", "new_listen"] {
            facts.outcome(name, "skipped");
        }
        return Ok(());
    }
    // Where no TIME_WAIT is due (the old socket closed second, or abortively, or its peer reset
    // it over unread data), looking briefly is enough: the answer is on loopback at once.
    let due = !matches!(
        (cell.side, cell.close),
        (TimeWaitSide::Passive, _) | (_, CloseMode::Linger0 | CloseMode::Unsent)
    );
    let deadline = if due {
        TIME_WAIT_DEADLINE
    } else {
        Duration::from_millis(50)
    };
    let (seen, left) = time_wait_within(&old_addr, deadline);
    facts.outcome("time_wait_seen", seen);
    if let Some(ms) = left {
        facts.number("time_wait_left_ms", ms);
    }

    let new_ip = match (cell.new_wildcard, cell.family) {
        (false, _) => ip,
        (true, IpFamily::V4) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (true, IpFamily::V6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let new = net::socket_for(Transport::Tcp, &new_ip, false)
        .map_err(|e| format!("socket for the new socket = {}", errno_name(&e)))?;
    facts.outcome("new_flags", net::set_reuse(&new, cell.new_flags));
    let bind = net::bind(&new, new_ip, old_addr.port());
    facts.outcome("new_bind", outcome(&bind));
    let listen = match bind {
        Ok(()) => outcome(&new.listen(16)),
        Err(_) => "skipped".to_string(),
    };
    facts.outcome("new_listen", listen);
    Ok(())
}

/// The old socket binds `old_addr`, connects to a listener on `listener_addr` and closes first, so
/// its own address ends in TIME_WAIT. Returns `ok` or the errno of its bind or connect.
fn client_time_wait(
    old: Socket,
    old_addr: SocketAddr,
    listener_addr: SocketAddr,
) -> Result<String, String> {
    let listener = net::tcp_listener(listener_addr)?;
    if let Err(e) = net::bind(&old, old_addr.ip(), old_addr.port()) {
        return Ok(errno_name(&e));
    }
    if let Err(e) = old.connect_timeout(&SockAddr::from(listener_addr), CONNECT_TIMEOUT) {
        return Ok(errno_name(&e));
    }
    let accepted = accept_one(&listener)?;
    // The old socket's close sends the first FIN (active close); the peer's close answers it.
    drop(old);
    drop(accepted);
    Ok("ok".into())
}

/// The old socket listens on `old_addr`, accepts a connection from a client bound to
/// `client_addr`, closes that connection first and then itself, so `old_addr` ends in TIME_WAIT on
/// the server side. Returns `ok` or the errno of the old socket's bind or listen.
fn server_time_wait(
    old: Socket,
    old_addr: SocketAddr,
    client_addr: SocketAddr,
) -> Result<String, String> {
    if let Err(e) = net::bind(&old, old_addr.ip(), old_addr.port()) {
        return Ok(errno_name(&e));
    }
    if let Err(e) = old.listen(16) {
        return Ok(errno_name(&e));
    }
    let client = net::socket_for(Transport::Tcp, &client_addr.ip(), false)
        .map_err(|e| format!("socket for the client = {}", errno_name(&e)))?;
    net::bind(&client, client_addr.ip(), client_addr.port())
        .map_err(|e| format!("bind client {client_addr} = {}", errno_name(&e)))?;
    client
        .connect_timeout(&SockAddr::from(old_addr), CONNECT_TIMEOUT)
        .map_err(|e| format!("client connect {old_addr} = {}", errno_name(&e)))?;
    let accepted = accept_one(&old)?;
    drop(accepted);
    drop(client);
    drop(old);
    Ok("ok".into())
}

/// The old socket connects to a listener on `listener_addr`; its peer closes first, then the old
/// socket closes (a passive close: LAST_ACK, then gone). Returns `ok` or the errno of its bind or
/// connect.
fn passive_close(
    old: Socket,
    old_addr: SocketAddr,
    listener_addr: SocketAddr,
) -> Result<String, String> {
    let listener = net::tcp_listener(listener_addr)?;
    if let Err(e) = net::bind(&old, old_addr.ip(), old_addr.port()) {
        return Ok(errno_name(&e));
    }
    if let Err(e) = old.connect_timeout(&SockAddr::from(listener_addr), CONNECT_TIMEOUT) {
        return Ok(errno_name(&e));
    }
    let accepted = accept_one(&listener)?;
    drop(accepted);
    // The peer's FIN arrives (the old socket reads end of file), then the old socket answers.
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
    let _ = old.set_read_timeout(Some(CONNECT_TIMEOUT));
    let _ = old.recv(&mut buf);
    drop(old);
    Ok("ok".into())
}

/// A client's old socket ends `mode`'s way; `state_after_close` and `peer_saw` say what then
/// happened, and the peer's close afterwards lets any TIME_WAIT follow. Returns `ok` or the errno
/// of its bind or connect.
fn client_close(
    old: Socket,
    old_addr: SocketAddr,
    listener_addr: SocketAddr,
    mode: CloseMode,
    facts: &mut Facts,
) -> Result<String, String> {
    let listener = net::tcp_listener(listener_addr)?;
    if let Err(e) = net::bind(&old, old_addr.ip(), old_addr.port()) {
        return Ok(errno_name(&e));
    }
    if let Err(e) = old.connect_timeout(&SockAddr::from(listener_addr), CONNECT_TIMEOUT) {
        return Ok(errno_name(&e));
    }
    let accepted = accept_one(&listener)?;
    match mode {
        CloseMode::Close => drop(old),
        CloseMode::Unsent => {
            // Fill the old socket's send queue and the peer's receive queue: the peer never reads.
            old.set_nonblocking(true)
                .map_err(|e| format!("O_NONBLOCK = {}", errno_name(&e)))?;
            let chunk = [0u8; 65536];
            while old.send(&chunk).is_ok() {}
            drop(old);
        }
        CloseMode::Linger0 | CloseMode::Linger2 => {
            let linger = if mode == CloseMode::Linger0 { 0 } else { 2 };
            old.set_linger(Some(Duration::from_secs(linger)))
                .map_err(|e| format!("SO_LINGER = {}", errno_name(&e)))?;
            drop(old);
        }
        CloseMode::Exit | CloseMode::Kill => in_a_child_that_ends(old, mode)?,
    }
    facts.outcome("state_after_close", settled_state(&old_addr));
    facts.outcome("peer_saw", peer_reads(&accepted));
    // A peer that got the FIN closes too: the old socket's TIME_WAIT, if any, follows. A peer
    // left with unread data resets instead.
    drop(accepted);
    Ok("ok".into())
}

/// Hands `old` to a child process that then exits (`Exit`) or is killed (`Kill`) while holding
/// it: the kernel closes it when the last holder goes.
fn in_a_child_that_ends(old: Socket, mode: CloseMode) -> Result<(), String> {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::waitpid;
    use nix::unistd::{fork, pipe, read, ForkResult};
    let (rx, tx) = pipe().map_err(|e| format!("pipe = {e}"))?;
    // SAFETY: the worker is single-threaded; the child only reads a pipe and exits.
    match unsafe { fork() }.map_err(|e| format!("fork = {e}"))? {
        ForkResult::Child => {
            drop(tx);
            let mut byte = [0u8; 1];
            let _ = read(rx.as_raw_fd(), &mut byte);
            if mode == CloseMode::Exit {
                // SAFETY: ends the child at once without running the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        ForkResult::Parent { child } => {
            drop(rx);
            drop(old);
            match mode {
                CloseMode::Kill => {
                    let _ = kill(child, Signal::SIGKILL);
                }
                _ => {
                    let _ = nix::unistd::write(&tx, &[1]);
                }
            }
            drop(tx);
            waitpid(child, None).map_err(|e| format!("waitpid = {e}"))?;
            Ok(())
        }
    }
}

/// What the peer's read shows right after the old socket's close: `eof`, `data` (unread data
/// still queued) or the errno (`ECONNRESET` after an abortive close).
fn peer_reads(peer: &Socket) -> String {
    let _ = peer.set_nonblocking(true);
    std::thread::sleep(Duration::from_millis(5));
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
    match peer.recv(&mut buf) {
        Ok(0) => "eof".into(),
        Ok(_) => "data".into(),
        Err(e) => errno_name(&e),
    }
}

/// Accepts the one connection a client just made, waiting at most [`CONNECT_TIMEOUT`].
fn accept_one(listener: &Socket) -> Result<Socket, String> {
    let mut fd = [libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let ms = CONNECT_TIMEOUT.as_millis() as libc::c_int;
    // SAFETY: fd is a live array of one pollfd.
    let rc = unsafe { libc::poll(fd.as_mut_ptr(), 1, ms) };
    if rc <= 0 {
        return Err(format!(
            "no connection to accept within {ms} ms (poll = {rc})"
        ));
    }
    listener
        .accept()
        .map(|(s, _)| s)
        .map_err(|e| format!("accept = {}", errno_name(&e)))
}

/// `ok` once /proc/net/tcp{,6} lists `local` in TIME_WAIT, `absent` if it never does within
/// `deadline`, or the errno of reading the file; with it, how long the kernel will keep it in
/// TIME_WAIT (ms), read from its timer.
fn time_wait_within(local: &SocketAddr, deadline: Duration) -> (String, Option<f64>) {
    let until = Instant::now() + deadline;
    loop {
        match read_entry(local) {
            Ok(Some(entry)) if entry.state == TIME_WAIT_STATE => {
                return ("ok".into(), entry.timer_ms);
            }
            Ok(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
            Ok(_) => return ("absent".into(), None),
            Err(e) => return (errno_name(&e), None),
        }
    }
}

/// The state of `local` once the close has been answered: FIN_WAIT1 lasts until the peer
/// acknowledges the FIN, which loopback does at once unless data is still queued, so a FIN_WAIT1
/// is looked at again for up to 50 ms.
fn settled_state(local: &SocketAddr) -> String {
    let until = Instant::now() + Duration::from_millis(50);
    loop {
        let state = state_of(local);
        if state != "FIN_WAIT1" || Instant::now() >= until {
            return state;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The state /proc/net/tcp{,6} lists for `local` now, by name (`TIME_WAIT`, `FIN_WAIT2`, …), or
/// `none` when it lists no socket there.
pub(super) fn state_of(local: &SocketAddr) -> String {
    match read_entry(local) {
        Ok(Some(entry)) => state_name(&entry.state).to_owned(),
        Ok(None) => "none".into(),
        Err(e) => errno_name(&e),
    }
}

fn read_entry(local: &SocketAddr) -> io::Result<Option<Entry>> {
    let path = match local {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let file = std::fs::File::open(path)?;
    find_entry(
        BufReader::with_capacity(64 * 1024, file),
        &proc_address(local),
    )
}

/// TCP_TIME_WAIT as /proc/net/tcp prints the state column.
const TIME_WAIT_STATE: &str = "06";

/// The names of the states /proc/net/tcp prints as numbers (include/net/tcp_states.h).
fn state_name(state: &str) -> &'static str {
    match state {
        "01" => "ESTABLISHED",
        "02" => "SYN_SENT",
        "03" => "SYN_RECV",
        "04" => "FIN_WAIT1",
        "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE_WAIT",
        "09" => "LAST_ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "unknown",
    }
}

/// One line of /proc/net/tcp{,6}: the state, and for a TIME_WAIT socket the time left on its
/// timer.
struct Entry {
    state: String,
    timer_ms: Option<f64>,
}

/// Clock ticks per second as /proc/net/tcp prints timers (USER_HZ, 100 on every architecture the
/// guest runs on).
const USER_HZ: f64 = 100.0;

/// The first line of a /proc/net/tcp{,6} table whose local address is `wanted` (as
/// [`proc_address`] spells it), preferring a TIME_WAIT one when several sockets share it.
fn find_entry(table: impl BufRead, wanted: &str) -> io::Result<Option<Entry>> {
    let mut found = None;
    for line in table.lines() {
        let line = line?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            continue;
        };
        if *local != wanted {
            continue;
        }
        // `tr:tm->when`: timer kind 3 is TIME_WAIT's, the rest its ticks left, in hex.
        let timer_ms = fields
            .get(5)
            .and_then(|t| t.split_once(':'))
            .filter(|(kind, _)| *kind == "03")
            .and_then(|(_, when)| u64::from_str_radix(when, 16).ok())
            .map(|ticks| ticks as f64 * 1000.0 / USER_HZ);
        let entry = Entry {
            state: (*state).to_owned(),
            timer_ms,
        };
        if entry.state == TIME_WAIT_STATE {
            return Ok(Some(entry));
        }
        found.get_or_insert(entry);
    }
    Ok(found)
}

/// A local address as /proc/net/tcp{,6} prints it: the address as the kernel's 32-bit words in
/// host byte order, `%08X` each, then `:%04X` of the port.
fn proc_address(addr: &SocketAddr) -> String {
    let words: Vec<String> = match addr.ip() {
        IpAddr::V4(a) => vec![format!("{:08X}", u32::from_ne_bytes(a.octets()))],
        IpAddr::V6(a) => a
            .octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    format!("{}:{:04X}", words.concat(), addr.port())
}

/// Whether a /proc/net/tcp{,6} table lists a socket with local address `wanted` in TIME_WAIT.
#[cfg(test)]
fn lists_time_wait(table: impl BufRead, wanted: &str) -> io::Result<bool> {
    Ok(find_entry(table, wanted)?.is_some_and(|e| e.state == TIME_WAIT_STATE))
}

/// The family's own network namespace, entered for the length of one experiment.
struct PrivateNetns {
    home: &'static OwnedFd,
}

struct Namespaces {
    home: OwnedFd,
    private: OwnedFd,
}

thread_local! {
    /// Made on first use in a worker and kept for the worker's life (leaked once per worker, so
    /// the guard can hold a plain reference).
    static NAMESPACES: OnceCell<Result<&'static Namespaces, String>> = const { OnceCell::new() };
}

impl PrivateNetns {
    /// Enters the family's namespace, making it first if this worker has none yet. `Err` is the
    /// failing call with its errno; the caller then stays where it is.
    fn enter() -> Result<PrivateNetns, String> {
        let spaces = NAMESPACES.with(|cell| cell.get_or_init(make_namespaces).clone())?;
        setns(spaces.private.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns(private) = {e}"))?;
        Ok(PrivateNetns { home: &spaces.home })
    }
}

impl Drop for PrivateNetns {
    fn drop(&mut self) {
        if let Err(e) = setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Every later experiment of this worker would measure in the wrong namespace. Ending
            // the worker makes the runner record this experiment as failed and start a fresh one.
            eprintln!("guest: setns(home) = {e}; ending this worker");
            std::process::exit(4);
        }
    }
}

/// Opens the current namespace as home, unshares a new one with `lo` up, and returns to home.
fn make_namespaces() -> Result<&'static Namespaces, String> {
    let open = || {
        std::fs::File::open("/proc/self/ns/net")
            .map(OwnedFd::from)
            .map_err(|e| format!("open(/proc/self/ns/net) = {}", errno_name(&e)))
    };
    let home = open()?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET) = {e}"))?;
    let private = open();
    let lo = super::sandbox::loopback_up();
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns(home) = {e}"))?;
    let private = private?;
    lo.map_err(|e| format!("ioctl(SIOCSIFFLAGS, lo, IFF_UP) = {}", errno_name(&e)))?;
    Ok(Box::leak(Box::new(Namespaces { home, private })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from Linux 6.18 in a fresh namespace: 127.0.0.1:10001 connected to
    /// 127.0.0.1:9999 and closed first.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 0100007F:2711 0100007F:270F 06 00000000:00000000 03:00001770 00000000     0        0 0 3 000000007e5f8a5e                                      
";

    /// Captured likewise for [::1]:10001, beside the still listening [::1]:9999.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:270F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 151127 1 000000004300692d 100 0 0 10 0
   1: 00000000000000000000000001000000:2711 00000000000000000000000001000000:270F 06 00000000:00000000 03:00001770 00000000     0        0 0 3 00000000dbeeea8e
";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_spelled_as_the_kernel_prints_them() {
        assert_eq!(proc_address(&addr("127.0.0.1:10001")), "0100007F:2711");
        assert_eq!(
            proc_address(&addr("[::1]:9999")),
            "00000000000000000000000001000000:270F"
        );
    }

    #[test]
    fn finds_time_wait_by_local_address_only_in_state_06() {
        let found = |table: &str, a: &str| {
            lists_time_wait(table.as_bytes(), &proc_address(&addr(a))).unwrap()
        };
        assert!(found(TCP, "127.0.0.1:10001"));
        // The remote end of the same line is not a local TIME_WAIT.
        assert!(!found(TCP, "127.0.0.1:9999"));
        assert!(found(TCP6, "[::1]:10001"));
        // Listed, but listening (0A), not in TIME_WAIT.
        assert!(!found(TCP6, "[::1]:9999"));
        assert!(!found("", "[::1]:10001"));
    }
}
