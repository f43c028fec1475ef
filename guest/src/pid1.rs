//! What the guest does to its environment before measuring, and how it leaves.
//!
//! As PID 1: mount the pseudo file systems (a table), bring `lo` up with IFF_MULTICAST, add the
//! documentation-prefix address 2001:db8::1 to `lo`, and set the sysctls the experiments rely on.
//! As a process: `unshare(CLONE_NEWNET)` first, then the same network set-up inside the namespace,
//! so nothing is ever sent on, or changed in, the host's own network.
//!
//! Every failing step is collected, not fatal: its message is the call with its arguments.

use std::ffi::CString;
use std::process::ExitCode;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Ports the experiments choose themselves live below this; the kernel's ephemeral range starts
/// here, so an implicit bind can never steal a port an experiment is about to use.
pub const EPHEMERAL_FIRST: u16 = 50000;

const MOUNTS: &[(&str, &str, &str)] = &[
    ("proc", "/proc", "proc"),
    ("sysfs", "/sys", "sysfs"),
    ("devtmpfs", "/dev", "devtmpfs"),
];

const SYSCTLS: &[(&str, &str)] = &[
    ("/proc/sys/net/ipv4/ip_local_port_range", "50000 65000"),
    ("/proc/sys/net/core/somaxconn", "4096"),
    ("/proc/sys/net/ipv4/tcp_max_syn_backlog", "4096"),
    // Loopback floods of connections must never be answered with cookies: that would hide which
    // listener the kernel chose.
    ("/proc/sys/net/ipv4/tcp_syncookies", "0"),
    // The catalogue leaves thousands of sockets in TIME_WAIT within a minute. Past this limit
    // (2048 in a 512 MiB guest) the kernel closes an actively closed socket outright instead,
    // and a "TIME_WAIT" bind cell would measure a closed socket: 188 cells of bookworm's 6.1
    // did, before this line.
    ("/proc/sys/net/ipv4/tcp_max_tw_buckets", "1048576"),
];

pub fn init() -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (source, target, fstype) in MOUNTS {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = mount(
            Some(*source),
            *target,
            Some(*fstype),
            MsFlags::empty(),
            None::<&str>,
        ) {
            problems.push(format!("mount({source:?}, {target:?}, {fstype:?}) = {e}"));
        }
    }
    network(&mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

pub fn enter_namespace() -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
        // Without our own namespace nothing may be measured: experiments would touch the host's
        // network. Stop here, loudly.
        eprintln!("guest: unshare(CLONE_NEWNET) = {e}; refusing to measure in the host's network namespace (run as root)");
        std::process::exit(3);
    }
    network(&mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn network(problems: &mut Vec<String>) {
    if let Err(e) = set_link_flags("lo", libc::IFF_UP | libc::IFF_MULTICAST) {
        problems.push(format!(
            "ioctl(SIOCSIFFLAGS, lo, IFF_UP|IFF_MULTICAST) = {e}"
        ));
    }
    // Without this a fresh address is "tentative" until duplicate address detection finishes,
    // and binds to it fail with EADDRNOTAVAIL: on the host row the experiments start sooner
    // than DAD ends. Nothing else is on this `lo` to collide with.
    let no_dad = "/proc/sys/net/ipv6/conf/lo/accept_dad";
    if let Err(e) = std::fs::write(no_dad, "0") {
        problems.push(format!("write({no_dad:?}, \"0\") = {e}"));
    }
    if let Err(e) = add_inet6_address("lo", [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 128) {
        problems.push(format!("ioctl(SIOCSIFADDR, lo, 2001:db8::1/128) = {e}"));
    } else if !wait_until_usable("20010db8000000000000000000000001") {
        problems.push("2001:db8::1 on lo stayed tentative for 2 s".into());
    }
    for (path, value) in SYSCTLS {
        if let Err(e) = std::fs::write(path, value) {
            problems.push(format!("write({path:?}, {value:?}) = {e}"));
        }
    }
}

/// Waits (bounded) until /proc/net/if_inet6 lists the address without the tentative flag.
fn wait_until_usable(hex: &str) -> bool {
    const IFA_F_TENTATIVE: u32 = 0x40;
    for _ in 0..200 {
        let table = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
        let usable = table.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.first() == Some(&hex)
                && fields
                    .get(4)
                    .and_then(|f| u32::from_str_radix(f, 16).ok())
                    .is_some_and(|flags| flags & IFA_F_TENTATIVE == 0)
        });
        if usable {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

fn ifreq_socket(family: libc::c_int) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); the descriptor is owned by the returned OwnedFd.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn set_link_flags(name: &str, flags: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = ifreq_socket(libc::AF_INET)?;
    // SAFETY: ifreq is plain old data; the name fits (checked by the caller's constant names).
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= flags as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `struct in6_ifreq` from <linux/ipv6.h>, which libc does not carry.
#[repr(C)]
struct In6Ifreq {
    addr: libc::in6_addr,
    prefixlen: u32,
    ifindex: libc::c_int,
}

fn add_inet6_address(name: &str, segments: [u16; 8], prefixlen: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let cname = CString::new(name).expect("interface names have no NUL");
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let sock = ifreq_socket(libc::AF_INET6)?;
    let octets = std::net::Ipv6Addr::from(segments).octets();
    let req = In6Ifreq {
        addr: libc::in6_addr { s6_addr: octets },
        prefixlen,
        ifindex: ifindex as libc::c_int,
    };
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket takes a struct in6_ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// As PID 1: flush and power off (QEMU runs with -no-reboot, so this ends the VM). As a process:
/// exit with `code`.
pub fn finish(pid1: bool, code: ExitCode) -> ExitCode {
    if pid1 {
        nix::unistd::sync();
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        // Only reached if power-off failed: exiting PID 1 panics the kernel, which with panic=-1
        // and -no-reboot also ends the VM.
    }
    code
}
