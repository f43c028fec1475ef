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
use wire::catalogue::{IpFamily, TimeWaitCell, TimeWaitSide, Transport};

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
    let setup = match cell.side {
        TimeWaitSide::Client => client_time_wait(old, old_addr, other_addr)?,
        TimeWaitSide::Server => server_time_wait(old, old_addr, other_addr)?,
    };
    let set_up = setup == "ok";
    facts.outcome("old_setup", setup);
    if !set_up {
        for name in ["time_wait_seen", "new_flags", "new_bind", "new_listen"] {
            facts.outcome(name, "skipped");
        }
        return Ok(());
    }
    facts.outcome("time_wait_seen", wait_for_time_wait(&old_addr));

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
/// [`TIME_WAIT_DEADLINE`], or the errno of reading the file.
fn wait_for_time_wait(local: &SocketAddr) -> String {
    let path = match local {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let wanted = proc_address(local);
    let deadline = Instant::now() + TIME_WAIT_DEADLINE;
    loop {
        let found = std::fs::File::open(path)
            .and_then(|f| lists_time_wait(BufReader::with_capacity(64 * 1024, f), &wanted));
        match found {
            Ok(true) => return "ok".into(),
            Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(false) => return "absent".into(),
            Err(e) => return errno_name(&e),
        }
    }
}

/// TCP_TIME_WAIT as /proc/net/tcp prints the state column.
const TIME_WAIT_STATE: &str = "06";

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

/// Whether a /proc/net/tcp{,6} table lists a socket with local address `wanted` (as
/// [`proc_address`] spells it) in TIME_WAIT. Stops reading at the first hit.
fn lists_time_wait(table: impl BufRead, wanted: &str) -> io::Result<bool> {
    for line in table.lines() {
        let line = line?;
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if local == wanted && state == TIME_WAIT_STATE {
            return Ok(true);
        }
    }
    Ok(false)
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
    let lo = loopback_up();
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns(home) = {e}"))?;
    let private = private?;
    lo.map_err(|e| format!("ioctl(SIOCSIFFLAGS, lo, IFF_UP) = {}", errno_name(&e)))?;
    Ok(Box::leak(Box::new(Namespaces { home, private })))
}

/// Brings `lo` up in the current namespace (a new namespace starts with it down).
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data and "lo" fits its name; fd is the socket made above.
    let result = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    result
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
