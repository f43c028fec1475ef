//! The record channel: `/dev/ttyS1` as PID 1, stdout as a process. One `write` per record line, so
//! a line is never interleaved with another writer's bytes.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};

pub struct Channel {
    out: Box<dyn Write>,
    fd: RawFd,
}

impl Channel {
    pub fn open(pid1: bool) -> io::Result<Channel> {
        if pid1 {
            let tty = OpenOptions::new().write(true).open("/dev/ttyS1")?;
            raw_mode(tty.as_raw_fd());
            let fd = tty.as_raw_fd();
            Ok(Channel {
                out: Box::new(tty),
                fd,
            })
        } else {
            Ok(Channel {
                out: Box::new(io::stdout()),
                fd: 1,
            })
        }
    }

    pub fn send(&mut self, record: &wire::Record) -> io::Result<()> {
        let line = wire::encode_line(record);
        self.out.write_all(line.as_bytes())?;
        self.out.flush()
    }

    /// The raw descriptor, for the self-test that writes garbage onto the channel on purpose.
    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }
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
