//! The TIME_WAIT sysctls of tcp(7), each in a network namespace of the experiment's own. See the
//! fact list in `wire::catalogue::tw_sysctl`.
//!
//! The RFC 1337 cells need the exact sequence number a TIME_WAIT expects next. No kernel of the
//! matrix lets a program read it from a closed socket, and the minimal kernels have no AF_PACKET,
//! so a raw IPPROTO_TCP socket (which gets a copy of every TCP segment the namespace receives, on
//! every kernel since long before 3.8) reads it off the server's FIN, and a second raw socket
//! sends the RST: a plain 20-byte TCP header, its checksum computed here.

use std::io::Read;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use wire::catalogue::{Transport, TwKnob, TwSysctlCell};

use super::group::Stop;
use super::sandbox::{Knob, Sandbox, Scope};
use super::time_wait::state_of;
use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name, outcome};
use crate::probe::CONNECT_TIMEOUT;

const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Listeners sit on these ports and up, explicitly bound clients on [`CLIENT_PORT`] and up: below
/// every ephemeral range, in a namespace where nothing else runs.
const LISTEN_PORT: u16 = 5001;
const CLIENT_PORT: u16 = 6001;

/// What the kernel logs when the TIME_WAIT table is full (before it stopped saying so).
const OVERFLOW_MESSAGE: &str = "time wait bucket table overflow";

pub fn run(cell: &TwSysctlCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    match measure(cell, lab, &mut facts) {
        Ok(()) => facts.done(),
        Err(stop) => facts.ended(stop.status()),
    }
}

fn measure(cell: &TwSysctlCell, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let mut sandbox = Sandbox::enter(lab.initial_netns).map_err(Stop::Failed)?;
    let path = cell.knob.path();
    let knob = sandbox.knob(path).map_err(Stop::Unsupported)?;
    facts.outcome("knob", knob.scope.token());
    let Some(setting) = cell.setting else {
        for _ in 0..lab.repetitions {
            facts.outcome("value", sandbox.read(&knob).map_err(Stop::Failed)?);
        }
        return Ok(());
    };
    if knob.scope == Scope::Absent {
        return Err(Stop::Unsupported(format!("{path} = ENOENT")));
    }
    let reps = lab.repetitions;
    match cell.knob {
        TwKnob::TwReuse => reuse(&mut sandbox, &knob, setting, reps, facts),
        TwKnob::TwRecycle => recycle(&mut sandbox, &knob, setting, reps, facts),
        TwKnob::MaxTwBuckets => buckets(&mut sandbox, &knob, setting, reps, facts),
        TwKnob::Rfc1337 => rfc1337(&mut sandbox, &knob, setting, reps, facts),
    }
}

/// Writes the sysctl and records `set`; a refused write ends the cell as unsupported (the
/// kernel does not take that value).
fn set(
    sandbox: &mut Sandbox,
    knob: &Knob,
    value: &str,
    name: &str,
    facts: &mut Facts,
) -> Result<(), Stop> {
    let written = sandbox.write(knob, value).map_err(Stop::Failed)?;
    facts.outcome(name, written.clone());
    if written != "ok" {
        return Err(Stop::Unsupported(format!(
            "write {} \"{value}\" = {written}",
            knob.path
        )));
    }
    Ok(())
}

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn tcp_socket() -> Result<Socket, Stop> {
    net::socket_for(Transport::Tcp, &loopback(), false)
        .map_err(|e| Stop::Failed(format!("socket = {}", errno_name(&e))))
}

fn listener(port: u16) -> Result<Socket, Stop> {
    let sock = tcp_socket()?;
    let _ = sock.set_reuse_address(true);
    net::bind(&sock, loopback(), port)
        .and_then(|()| sock.listen(64))
        .map_err(|e| Stop::Failed(format!("listener on 127.0.0.1:{port} = {}", errno_name(&e))))?;
    Ok(sock)
}

/// A client (bound to 127.0.0.1:`from` when given, never bound otherwise) connects to the listener
/// on `port` and closes first; the server reads the end of file and closes too, so the client's
/// address goes to TIME_WAIT. Returns that address, or the errno of the client's bind or connect.
fn client_close(
    listener: &Socket,
    port: u16,
    from: Option<u16>,
) -> Result<Result<SocketAddr, String>, Stop> {
    let client = tcp_socket()?;
    if let Some(p) = from {
        if let Err(e) = net::bind(&client, loopback(), p) {
            return Ok(Err(errno_name(&e)));
        }
    }
    let dest = SockAddr::from(SocketAddr::new(loopback(), port));
    if let Err(e) = client.connect_timeout(&dest, CONNECT_TIMEOUT) {
        return Ok(Err(errno_name(&e)));
    }
    let local = client
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| Stop::Failed("getsockname of the client".into()))?;
    let (server, _) = listener
        .accept()
        .map_err(|e| Stop::Failed(format!("accept = {}", errno_name(&e))))?;
    drop(client);
    let _ = server.set_read_timeout(Some(CONNECT_TIMEOUT));
    let mut buf = [MaybeUninit::<u8>::uninit(); 16];
    let _ = server.recv(&mut buf);
    drop(server);
    Ok(Ok(local))
}

/// `ok` once /proc/net/tcp shows `local` in TIME_WAIT (looking for up to 500 ms), else `absent`.
fn time_wait_seen(local: &SocketAddr) -> &'static str {
    let until = Instant::now() + Duration::from_millis(500);
    loop {
        if state_of(local) == "TIME_WAIT" {
            return "ok";
        }
        if Instant::now() >= until {
            return "absent";
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn reuse(
    sandbox: &mut Sandbox,
    knob: &Knob,
    setting: u32,
    reps: usize,
    facts: &mut Facts,
) -> Result<(), Stop> {
    let range = sandbox.knob(PORT_RANGE).map_err(Stop::Unsupported)?;
    facts.outcome("range_knob", range.scope.token());
    let only = TwSysctlCell::REUSE_PORT;
    set(
        sandbox,
        &range,
        &format!("{only} {only}"),
        "range_set",
        facts,
    )?;
    set(sandbox, knob, &setting.to_string(), "set", facts)?;
    // The repetitions side by side: one listener each, all clients from the one port.
    let ports: Vec<u16> = (0..reps as u16).map(|i| LISTEN_PORT + i).collect();
    let listeners = ports
        .iter()
        .map(|&p| listener(p))
        .collect::<Result<Vec<_>, _>>()?;
    for (l, &p) in listeners.iter().zip(&ports) {
        let seen = match client_close(l, p, None)? {
            Ok(local) => time_wait_seen(&local),
            Err(errno) => {
                return Err(Stop::Failed(format!(
                    "the first connection to 127.0.0.1:{p} = {errno}"
                )))
            }
        };
        facts.outcome("time_wait_seen", seen);
    }
    std::thread::sleep(Duration::from_millis(TwSysctlCell::REUSE_WAIT_MS));
    for (l, &p) in listeners.iter().zip(&ports) {
        let client = tcp_socket()?;
        let dest = SockAddr::from(SocketAddr::new(loopback(), p));
        let again = client.connect_timeout(&dest, CONNECT_TIMEOUT);
        facts.outcome("reconnect", outcome(&again));
        let _ = client.set_linger(Some(Duration::ZERO));
        if again.is_ok() {
            if let Ok((server, _)) = l.accept() {
                let _ = server.set_linger(Some(Duration::ZERO));
            }
        }
    }
    Ok(())
}

fn recycle(
    sandbox: &mut Sandbox,
    knob: &Knob,
    setting: u32,
    reps: usize,
    facts: &mut Facts,
) -> Result<(), Stop> {
    let ports: Vec<u16> = (0..reps as u16).map(|i| LISTEN_PORT + i).collect();
    let listeners = ports
        .iter()
        .map(|&p| listener(p))
        .collect::<Result<Vec<_>, _>>()?;
    let closes = |facts_name: &str| -> Result<Vec<SocketAddr>, Stop> {
        listeners
            .iter()
            .zip(&ports)
            .map(|(l, &p)| {
                client_close(l, p, None)?.map_err(|errno| {
                    Stop::Failed(format!("{facts_name}: connect to 127.0.0.1:{p} = {errno}"))
                })
            })
            .collect()
    };
    let controls = closes("the control connection")?;
    set(sandbox, knob, &setting.to_string(), "set", facts)?;
    let recycled = closes("the connection under the new value")?;
    let started = Instant::now();
    let watch = Duration::from_millis(TwSysctlCell::RECYCLE_WATCH_MS);
    let mut gone_at: Vec<Option<Duration>> = vec![None; recycled.len()];
    while started.elapsed() < watch && gone_at.iter().any(Option::is_none) {
        for (at, local) in gone_at.iter_mut().zip(&recycled) {
            if at.is_none() && state_of(local) != "TIME_WAIT" {
                *at = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for at in &gone_at {
        facts.outcome("recycled", if at.is_some() { "gone" } else { "present" });
        if let Some(at) = at {
            facts.number("recycled_ms", at.as_secs_f64() * 1000.0);
        }
    }
    for local in &controls {
        let state = state_of(local);
        facts.outcome(
            "control",
            if state == "TIME_WAIT" {
                "present"
            } else {
                "gone"
            },
        );
    }
    Ok(())
}

/// The TIME_WAIT sockets the kernel counts against `tcp_max_tw_buckets` (/proc/net/sockstat's
/// `tw`: this namespace's where the count is per namespace, the machine's where it is global).
fn sockstat_time_wait() -> Result<u64, Stop> {
    let text = std::fs::read_to_string("/proc/net/sockstat")
        .map_err(|e| Stop::Failed(format!("read /proc/net/sockstat = {}", errno_name(&e))))?;
    text.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == "tw")?;
            fields.get(at + 1)?.parse().ok()
        })
        .ok_or_else(|| Stop::Failed("/proc/net/sockstat has no TCP tw count".into()))
}

fn overflows() -> Result<u64, Stop> {
    net::time_wait_overflows()
        .ok_or_else(|| Stop::Failed("/proc/net/netstat has no TCPTimeWaitOverflow".into()))
}

fn buckets(
    sandbox: &mut Sandbox,
    knob: &Knob,
    setting: u32,
    reps: usize,
    facts: &mut Facts,
) -> Result<(), Stop> {
    let mut log = KernelLog::open();
    let listen = listener(LISTEN_PORT)?;
    for rep in 0..reps as u16 {
        let before = overflows()?;
        if setting == 0 {
            set(sandbox, knob, "0", "set", facts)?;
            let from = CLIENT_PORT + rep;
            let local = client_close(&listen, LISTEN_PORT, Some(from))?.map_err(|errno| {
                Stop::Failed(format!("the client from 127.0.0.1:{from} = {errno}"))
            })?;
            std::thread::sleep(Duration::from_millis(20));
            facts.outcome("state_after_close", state_of(&local));
            let again = tcp_socket()?;
            facts.outcome(
                "rebind",
                outcome(&net::bind(&again, loopback(), local.port())),
            );
        } else {
            let already = sockstat_time_wait()?;
            facts.number("tw_in_table", already as f64);
            let cap = already + u64::from(setting);
            set(sandbox, knob, &cap.to_string(), "set", facts)?;
            let mut locals = Vec::new();
            for _ in 0..TwSysctlCell::OVERFLOW_CLOSES {
                let local = client_close(&listen, LISTEN_PORT, None)?.map_err(|errno| {
                    Stop::Failed(format!("a client to 127.0.0.1:{LISTEN_PORT} = {errno}"))
                })?;
                locals.push(local);
            }
            std::thread::sleep(Duration::from_millis(20));
            let entered = locals.iter().filter(|l| state_of(l) == "TIME_WAIT").count();
            facts.outcome("entered", entered.to_string());
        }
        facts.outcome("overflows", (overflows()? - before).to_string());
        facts.outcome("warning", log.saw(OVERFLOW_MESSAGE));
    }
    Ok(())
}

/// The kernel log from the moment it was opened (/dev/kmsg, read from its end).
struct KernelLog(Result<std::fs::File, String>);

impl KernelLog {
    /// Opens the log and skips what it already holds. A log whose first record cannot be read
    /// (so that "not printed" would mean nothing) is `log-unreadable`.
    fn open() -> KernelLog {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map_err(|e| errno_name(&e))
            .and_then(|mut f| {
                let mut first = vec![0u8; 8192];
                match f.read(&mut first) {
                    Ok(n) if n > 0 => {
                        // SAFETY: lseek on a descriptor we own.
                        unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_END) };
                        Ok(f)
                    }
                    _ => Err("log-unreadable".to_owned()),
                }
            });
        KernelLog(file)
    }

    /// `printed` when a record logged since the last look contains `needle`, `not-printed` when
    /// none does, or the errno of opening the log.
    fn saw(&mut self, needle: &str) -> String {
        let file = match &mut self.0 {
            Ok(f) => f,
            Err(errno) => return errno.clone(),
        };
        let mut found = false;
        let mut record = vec![0u8; 8192];
        // Bounded: one record per read, and the loop ends at the first EAGAIN.
        for _ in 0..10_000 {
            match file.read(&mut record) {
                Ok(0) => break,
                Ok(n) => found |= String::from_utf8_lossy(&record[..n]).contains(needle),
                // Records overwritten before they were read: keep reading.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        if found { "printed" } else { "not-printed" }.into()
    }
}

fn rfc1337(
    sandbox: &mut Sandbox,
    knob: &Knob,
    setting: u32,
    reps: usize,
    facts: &mut Facts,
) -> Result<(), Stop> {
    set(sandbox, knob, &setting.to_string(), "set", facts)?;
    let listen = listener(LISTEN_PORT)?;
    for rep in 0..reps as u16 {
        let watcher = raw_tcp()?;
        let from = CLIENT_PORT + rep;
        let local = client_close(&listen, LISTEN_PORT, Some(from))?
            .map_err(|errno| Stop::Failed(format!("the client from 127.0.0.1:{from} = {errno}")))?;
        facts.outcome("tw_before", time_wait_seen(&local));
        let next = fin_sequence(&watcher, LISTEN_PORT, from);
        facts.outcome("fin_seen", if next.is_some() { "ok" } else { "absent" });
        let Some(next) = next else {
            for name in ["rst_sent", "tw_after", "rebind"] {
                facts.outcome(name, "skipped");
            }
            continue;
        };
        let sender = raw_tcp()?;
        let rst = rst_segment(LISTEN_PORT, from, next);
        let to = SockAddr::from(SocketAddr::new(loopback(), 0));
        facts.outcome("rst_sent", outcome(&sender.send_to(&rst, &to)));
        std::thread::sleep(Duration::from_millis(100));
        facts.outcome("tw_after", state_of(&local));
        let again = tcp_socket()?;
        facts.outcome("rebind", outcome(&net::bind(&again, loopback(), from)));
    }
    Ok(())
}

fn raw_tcp() -> Result<Socket, Stop> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).map_err(|e| {
        Stop::Failed(format!(
            "socket(AF_INET, SOCK_RAW, IPPROTO_TCP) = {}",
            errno_name(&e)
        ))
    })?;
    sock.set_nonblocking(true)
        .map_err(|e| Stop::Failed(format!("O_NONBLOCK = {}", errno_name(&e))))?;
    Ok(sock)
}

/// The sequence number a TIME_WAIT on `to_port` expects next: one past the FIN it got from
/// `from_port`, as the raw socket `watcher` saw that segment. `None` when it saw no such FIN.
fn fin_sequence(watcher: &Socket, from_port: u16, to_port: u16) -> Option<u32> {
    let mut found = None;
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    // Bounded: the watcher holds the few segments of one connection.
    for _ in 0..256 {
        let Ok(n) = watcher.recv(&mut buf) else { break };
        // SAFETY: recv initialised the first n bytes.
        let packet: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if let Some(seg) = parse_segment(&packet) {
            if seg.from == from_port && seg.to == to_port && seg.flags & FIN != 0 {
                found = Some(seg.seq.wrapping_add(seg.payload).wrapping_add(1));
            }
        }
    }
    found
}

const FIN: u8 = 0x01;
const RST: u8 = 0x04;

struct Segment {
    from: u16,
    to: u16,
    seq: u32,
    flags: u8,
    payload: u32,
}

/// A TCP segment in an IPv4 packet as a raw socket delivers it (IP header included).
fn parse_segment(packet: &[u8]) -> Option<Segment> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if *packet.get(9)? != libc::IPPROTO_TCP as u8 || ihl < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    let tcp = packet.get(ihl..)?;
    let offset = usize::from(tcp.get(12)? >> 4) * 4;
    Some(Segment {
        from: u16::from_be_bytes([tcp[0], tcp[1]]),
        to: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13],
        payload: total.checked_sub(ihl + offset)? as u32,
    })
}

/// A bare RST from 127.0.0.1:`from` to 127.0.0.1:`to` with sequence number `seq`: a 20-byte TCP
/// header with no options (so no timestamp for PAWS to judge), checksum over the pseudo-header.
fn rst_segment(from: u16, to: u16, seq: u32) -> [u8; 20] {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&from.to_be_bytes());
    tcp[2..4].copy_from_slice(&to.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = RST;
    let lo = Ipv4Addr::LOCALHOST.octets();
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&lo);
    pseudo.extend_from_slice(&lo);
    pseudo.extend_from_slice(&[0, libc::IPPROTO_TCP as u8, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    let sum = internet_checksum(&pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    tcp
}

/// RFC 1071: the one's complement of the one's complement sum of 16-bit words.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_follow_rfc_1071() {
        // RFC 1071's example words sum to 0xddf2; the checksum is its complement.
        let words = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&words), !0xddf2);
        // A segment with its checksum in place sums to zero.
        let rst = rst_segment(5001, 6001, 0x1234_5678);
        let lo = Ipv4Addr::LOCALHOST.octets();
        let mut whole = lo.to_vec();
        whole.extend_from_slice(&lo);
        whole.extend_from_slice(&[0, 6, 0, 20]);
        whole.extend_from_slice(&rst);
        assert_eq!(internet_checksum(&whole), 0);
    }

    #[test]
    fn segments_are_read_from_raw_ipv4_packets() {
        let mut packet = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        let mut tcp = rst_segment(5001, 6001, 41);
        tcp[13] = FIN | 0x10;
        packet.extend_from_slice(&tcp);
        let seg = parse_segment(&packet).unwrap();
        assert_eq!(
            (seg.from, seg.to, seg.seq, seg.payload),
            (5001, 6001, 41, 0)
        );
        assert_ne!(seg.flags & FIN, 0);
        assert!(parse_segment(&packet[..10]).is_none());
    }
}
