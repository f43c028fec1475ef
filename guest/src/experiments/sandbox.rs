//! A network namespace of one experiment's own, and the sysctls the experiment reads and sets.
//!
//! The experiment's sockets live in the sandbox, so they meet no other experiment's ports or
//! TIME_WAIT sockets, and a sysctl the kernel keeps per network namespace is set there and dies
//! with it. Since Linux 3.5 a `net.*` sysctl the kernel does not keep per namespace (a global
//! knob) shows only in the initial network namespace: a file absent from a fresh namespace but
//! present in the initial one is such a knob. It is then set from the initial namespace (its
//! value applies to the sandbox too) and restored when the sandbox ends; the runner gives every
//! experiment that sets sysctls the machine to itself (`runner::tolerates_company`). The guest
//! changes global knobs only as PID 1 of its own VM: on the host row its home is a namespace of its
//! own, never the host's initial one, so a global knob is neither visible nor ever changed there,
//! and the experiment ends as unsupported saying so.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::sched::{setns, unshare, CloneFlags};

use crate::net::errno_name;

/// Where a sysctl lives, as the `knob` facts spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The namespace has its own copy.
    PerNetns,
    /// Only the initial namespace has it; setting it changes it for every namespace.
    Global,
    /// The initial namespace has no such file either: this kernel lacks the sysctl.
    Absent,
}

impl Scope {
    pub fn token(self) -> &'static str {
        match self {
            Scope::PerNetns => "per-netns",
            Scope::Global => "global",
            Scope::Absent => "absent",
        }
    }
}

/// A sysctl as the sandbox found it.
#[derive(Debug, Clone, Copy)]
pub struct Knob {
    pub path: &'static str,
    pub scope: Scope,
}

pub struct Sandbox {
    home: OwnedFd,
    private: OwnedFd,
    /// Whether home is the machine's initial network namespace (the guest is PID 1 of a VM).
    initial: bool,
    /// Global knobs changed, with the value each had first, restored on drop.
    changed: Vec<(&'static str, String)>,
}

impl Sandbox {
    /// Makes a fresh network namespace with `lo` up and enters it. `initial` says whether the
    /// namespace left behind is the machine's initial one. `Err` is the failing call.
    pub fn enter(initial: bool) -> Result<Sandbox, String> {
        let open = || {
            std::fs::File::open("/proc/self/ns/net")
                .map(OwnedFd::from)
                .map_err(|e| format!("open(/proc/self/ns/net) = {}", errno_name(&e)))
        };
        let home = open()?;
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET) = {e}"))?;
        let private = match open() {
            Ok(fd) => fd,
            Err(e) => {
                setns(home.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|back| format!("{e}, then setns(home) = {back}"))?;
                return Err(e);
            }
        };
        let sandbox = Sandbox {
            home,
            private,
            initial,
            changed: Vec::new(),
        };
        loopback_up()
            .map_err(|e| format!("ioctl(SIOCSIFFLAGS, lo, IFF_UP) = {}", errno_name(&e)))?;
        Ok(sandbox)
    }

    /// Runs `f` in the home namespace and comes back.
    pub fn at_home<T>(&self, f: impl FnOnce() -> T) -> Result<T, String> {
        setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns(home) = {e}"))?;
        let value = f();
        if let Err(e) = setns(self.private.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Whatever came next would run in the wrong namespace.
            eprintln!("guest: setns(sandbox) = {e}; ending this worker");
            std::process::exit(4);
        }
        Ok(value)
    }

    /// Finds the sysctl at `path` (`/proc/sys/net/…`). `Err` is why the experiment cannot use it:
    /// a global knob on the host row, or a file this row cannot tell missing from global.
    pub fn knob(&self, path: &'static str) -> Result<Knob, String> {
        if std::path::Path::new(path).exists() {
            return Ok(Knob {
                path,
                scope: Scope::PerNetns,
            });
        }
        let at_home = self.at_home(|| std::path::Path::new(path).exists())?;
        match (at_home, self.initial) {
            (true, true) => Ok(Knob {
                path,
                scope: Scope::Global,
            }),
            (false, true) => Ok(Knob {
                path,
                scope: Scope::Absent,
            }),
            (true, false) => Err(format!(
                "{path} is not per network namespace here, and this row never changes a global sysctl"
            )),
            (false, false) => Err(format!(
                "{path} is absent from this row's network namespaces, which do not show global sysctls: a missing sysctl cannot be told from a global one"
            )),
        }
    }

    /// What the sysctl reads (trimmed, tabs as spaces), or the errno (ENOENT when absent).
    pub fn read(&self, knob: &Knob) -> Result<String, String> {
        let read = || std::fs::read_to_string(knob.path);
        let text = match knob.scope {
            Scope::PerNetns => read(),
            Scope::Global | Scope::Absent => self.at_home(read)?,
        };
        Ok(match text {
            Ok(t) => t.split_whitespace().collect::<Vec<_>>().join(" "),
            Err(e) => errno_name(&e),
        })
    }

    /// Sets the sysctl: `ok` or the errno. A global knob's first value is kept for the restore.
    pub fn write(&mut self, knob: &Knob, value: &str) -> Result<String, String> {
        let write = || std::fs::write(knob.path, value);
        let written = match knob.scope {
            Scope::PerNetns => write(),
            Scope::Absent => Err(io::Error::from_raw_os_error(libc::ENOENT)),
            Scope::Global => {
                if !self.changed.iter().any(|(p, _)| *p == knob.path) {
                    let old = self.at_home(|| std::fs::read_to_string(knob.path))?;
                    let old =
                        old.map_err(|e| format!("read {} = {}", knob.path, errno_name(&e)))?;
                    self.changed.push((knob.path, old.trim().to_owned()));
                }
                self.at_home(write)?
            }
        };
        Ok(match written {
            Ok(()) => "ok".into(),
            Err(e) => errno_name(&e),
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET) {
            eprintln!("guest: setns(home) = {e}; ending this worker");
            std::process::exit(4);
        }
        for (path, old) in self.changed.drain(..).rev() {
            if let Err(e) = std::fs::write(path, &old) {
                // Every later experiment would measure under a changed kernel: say so loudly.
                eprintln!("guest: restoring {path} to {old:?} = {e}");
            }
        }
    }
}

/// Brings `lo` up in the current namespace (a new namespace starts with it down).
pub fn loopback_up() -> io::Result<()> {
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
