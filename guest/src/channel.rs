//! The record channel. As PID 1: the shared-memory log of `wire::shared_log` when the ivshmem
//! device can be mapped, `/dev/ttyS1` otherwise and once the log is full; as a process: stdout.
//!
//! Every record line is appended whole (one reservation in the log, one `write` elsewhere), so a
//! line is never interleaved with another writer's bytes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wire::shared_log::{self, SEALED};

pub struct Channel {
    raw: RawChannel,
    /// The serial port, kept open (stdout needs no keeping); with no log, records go there.
    tty: Option<File>,
}

impl Channel {
    pub fn open(pid1: bool, serial_only: bool) -> io::Result<Channel> {
        if !pid1 {
            return Ok(Channel {
                raw: RawChannel { log: None, fd: 1 },
                tty: None,
            });
        }
        let tty = OpenOptions::new().write(true).open("/dev/ttyS1")?;
        raw_mode(tty.as_raw_fd());
        let found = if serial_only {
            Err("rph.channel=serial".to_string())
        } else {
            SharedLog::find()
        };
        let log = match found {
            Ok(log) => Some(log),
            Err(why) => {
                eprintln!("guest: records go to /dev/ttyS1: no shared-memory log ({why})");
                None
            }
        };
        Ok(Channel {
            raw: RawChannel {
                log,
                fd: tty.as_raw_fd(),
            },
            tty: Some(tty),
        })
    }

    pub fn send(&mut self, record: &wire::Record) -> io::Result<()> {
        self.raw.write(wire::encode_line(record).as_bytes())
    }

    /// Where records go, as the header names it: the first line's channel. (A log that fills up
    /// sends what follows to the serial port; the host reads both in order.)
    pub fn kind(&self) -> &'static str {
        match (self.raw.log, &self.tty) {
            (Some(_), _) => "shared-memory",
            (None, Some(_)) => "serial",
            (None, None) => "stdout",
        }
    }

    /// The channel as workers may use it after fork, for the self-test that writes garbage onto
    /// it on purpose.
    pub fn raw(&self) -> RawChannel {
        self.raw
    }
}

/// The channel without ownership: plain values that stay valid in forked workers (the log is a
/// shared mapping, the descriptor is inherited).
#[derive(Clone, Copy)]
pub struct RawChannel {
    log: Option<SharedLog>,
    fd: RawFd,
}

impl RawChannel {
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        if let Some(log) = &self.log {
            if log.append(bytes) {
                return Ok(());
            }
        }
        write_all(self.fd, bytes)
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: writing from a live byte slice to a descriptor; the length is the slice's.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// The ivshmem device's memory, mapped shared. Never unmapped: it lives as long as the guest.
#[derive(Clone, Copy)]
struct SharedLog {
    base: *mut u8,
    len: usize,
}

impl SharedLog {
    fn find() -> Result<SharedLog, String> {
        let dir = ivshmem_device()?;
        let path = dir.join("resource2");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len() as usize;
        if len < shared_log::DATA_OFFSET + 4096 {
            return Err(format!("{}: only {len} bytes", path.display()));
        }
        // SAFETY: a fresh shared mapping of the whole BAR file, checked for failure below and
        // never unmapped; the file may be closed once it is mapped.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "mmap {}: {}",
                path.display(),
                io::Error::last_os_error()
            ));
        }
        // SAFETY: as above; the mapping is writable and at least DATA_OFFSET bytes long.
        Ok(unsafe { SharedLog::start(base.cast(), len) })
    }

    /// Takes `len` bytes at `base` into use as an empty log.
    ///
    /// # Safety
    /// `base` must be 8-aligned, writable for `len >= DATA_OFFSET` bytes, and stay so for as long
    /// as the returned log or a copy of it is used.
    unsafe fn start(base: *mut u8, len: usize) -> SharedLog {
        let log = SharedLog { base, len };
        log.used().store(0, Ordering::SeqCst);
        std::ptr::copy_nonoverlapping(shared_log::MAGIC.as_ptr(), log.base, 8);
        log
    }

    fn used(&self) -> &AtomicU64 {
        // SAFETY: USED_OFFSET is 8-aligned inside a page-aligned mapping of at least
        // DATA_OFFSET bytes that lives for the rest of the process (and its forks).
        unsafe { &*self.base.add(shared_log::USED_OFFSET).cast::<AtomicU64>() }
    }

    /// Reserves room for `bytes` and copies them; false (and sealed) when they do not fit.
    fn append(&self, bytes: &[u8]) -> bool {
        let room = (self.len - shared_log::DATA_OFFSET) as u64;
        let used = self.used();
        let mut current = used.load(Ordering::SeqCst);
        let start = loop {
            if current & SEALED != 0 {
                return false;
            }
            let end = current + bytes.len() as u64;
            let (next, fits) = if end <= room {
                (end, true)
            } else {
                (current | SEALED, false)
            };
            match used.compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) if fits => break current,
                Ok(_) => return false,
                Err(seen) => current = seen,
            }
        };
        // SAFETY: [start, start + len) was reserved for this writer alone and lies inside the
        // mapping (end <= room).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.add(shared_log::DATA_OFFSET + start as usize),
                bytes.len(),
            );
        }
        true
    }
}

/// The sysfs directory of the ivshmem device, found by its PCI vendor and device ids.
fn ivshmem_device() -> Result<PathBuf, String> {
    let root = Path::new("/sys/bus/pci/devices");
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let id = |dir: &Path, name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|s| u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
    };
    entries
        .flatten()
        .map(|e| e.path())
        .find(|dir| {
            id(dir, "vendor") == Some(shared_log::PCI_VENDOR)
                && id(dir, "device") == Some(shared_log::PCI_DEVICE)
        })
        .ok_or_else(|| "no ivshmem PCI device".to_string())
}

/// Turns off the tty's output processing (no `\n` → `\r\n`, no flow control): the host reads
/// exactly the bytes the guest wrote.
fn raw_mode(fd: RawFd) {
    // SAFETY: tcgetattr/tcsetattr on a descriptor we own, with a zeroed termios they fill in.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_takes_whole_lines_until_one_does_not_fit_then_seals() {
        let mut memory = vec![0u64; (shared_log::DATA_OFFSET + 8) / 8];
        let len = memory.len() * 8;
        // SAFETY: the vector is 8-aligned, `len` bytes long and outlives `log`.
        let log = unsafe { SharedLog::start(memory.as_mut_ptr().cast(), len) };
        assert!(log.append(b"abc\n"));
        assert!(!log.append(b"too long\n"), "8 bytes of room, 4 used");
        assert!(
            !log.append(b"x"),
            "sealed: later lines follow the first one to serial"
        );
        let bytes: Vec<u8> = memory.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(shared_log::contents(&bytes), Some(&b"abc\n"[..]));
    }
}
