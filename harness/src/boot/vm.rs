//! The only module that starts QEMU.
//!
//! Pure parts build the argv from small pieces (machine, accelerator, boot, record log, serial
//! ports); the world-touching part runs QEMU in its own process group under a watchdog and a kill
//! guard, so a hung guest, an early return or a panic in the harness never leaves a QEMU behind.
//!
//! The guest gets no NIC (`-nic none`), the kernel log goes to the first serial port and the
//! guest's records to a shared-memory log (an ivshmem device whose memory is a file in the work
//! directory), or to the second serial port when it cannot use the log; `-no-reboot` with
//! `panic=-1` turns a kernel panic into a QEMU exit, and the guest powers off when it is done.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::boot::accel::Accel;
use crate::process_group;

/// Everything one boot needs.
#[derive(Debug, Clone)]
pub struct Boot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    /// QEMU's `-cpu` value (`boot::cpu` chooses it).
    pub cpu: String,
    /// Extra kernel arguments from kernels.yaml (e.g. `nosmap`).
    pub extra_cmdline: Option<String>,
    /// Experiment selection patterns; empty means the whole catalogue.
    pub selection: Vec<String>,
    pub timeout: Duration,
    /// Where the console and record logs go.
    pub workdir: PathBuf,
}

impl Boot {
    pub fn console_log(&self) -> PathBuf {
        self.workdir.join("console.log")
    }

    pub fn records_log(&self) -> PathBuf {
        self.workdir.join("records.log")
    }

    /// The file behind the guest's shared-memory record log (see `wire::shared_log`).
    pub fn records_shm(&self) -> PathBuf {
        self.workdir.join("records.shm")
    }
}

pub const QEMU: &str = "qemu-system-x86_64";

/// The kernel command line: console on ttyS0, panic ends the VM at once, a quiet log (every
/// console byte costs time under TCG), the guest's worker bound and its selection.
pub fn cmdline(boot: &Boot) -> String {
    let mut args = vec![
        "console=ttyS0".to_string(),
        "panic=-1".into(),
        "loglevel=4".into(),
        format!("rph.workers={}", boot.accel.guest_workers(boot.cpus)),
    ];
    if !boot.selection.is_empty() {
        args.push(format!("rph.run={}", boot.selection.join(",")));
    }
    if let Some(extra) = &boot.extra_cmdline {
        args.push(extra.clone());
    }
    args.join(" ")
}

fn machine_args(boot: &Boot) -> Vec<OsString> {
    to_os([
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-display",
        "none",
        "-accel",
        boot.accel.qemu_value(),
        "-cpu",
        &boot.cpu,
        "-smp",
        &boot.cpus.to_string(),
        "-m",
        &boot.memory_mib.to_string(),
        "-nic",
        "none",
    ])
}

fn boot_args(boot: &Boot) -> Vec<OsString> {
    vec![
        "-kernel".into(),
        boot.kernel.clone().into(),
        "-initrd".into(),
        boot.initrd.clone().into(),
        "-append".into(),
        cmdline(boot).into(),
    ]
}

/// The record log: an ivshmem device whose memory is a file in the work directory, so what the
/// guest appended survives QEMU however it ends.
fn log_args(boot: &Boot) -> Vec<OsString> {
    let mut backend = OsString::from(format!(
        "memory-backend-file,id=rph-log,share=on,size={},mem-path=",
        wire::shared_log::SIZE
    ));
    backend.push(option_value(boot.records_shm().as_os_str()));
    vec![
        "-object".into(),
        backend,
        "-device".into(),
        "ivshmem-plain,memdev=rph-log".into(),
    ]
}

/// A path as the value of a QEMU `key=value,...` option: commas are doubled.
fn option_value(path: &std::ffi::OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::with_capacity(path.len());
    for &b in path.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn serial_args(boot: &Boot) -> Vec<OsString> {
    let file = |p: PathBuf| {
        let mut s = OsString::from("file:");
        s.push(p);
        s
    };
    vec![
        "-serial".into(),
        file(boot.console_log()),
        "-serial".into(),
        file(boot.records_log()),
    ]
}

/// The complete argv after the program name.
pub fn qemu_argv(boot: &Boot) -> Vec<OsString> {
    let mut argv = machine_args(boot);
    argv.extend(boot_args(boot));
    argv.extend(log_args(boot));
    argv.extend(serial_args(boot));
    argv
}

fn to_os<const N: usize>(items: [&str; N]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// How a process under the watchdog ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exited by itself (for QEMU: the guest powered off, or the kernel panicked with panic=-1).
    Code(i32),
    /// Killed by a signal it was not sent by us.
    Signal(i32),
    /// The watchdog fired and the process group was killed.
    TimedOut,
}

/// What a guest run left behind.
#[derive(Debug, Clone)]
pub struct GuestRun {
    pub exit: Exit,
    pub wall: Duration,
    /// The kernel log (VM) or the guest's stderr (host row).
    pub console: String,
    /// The raw bytes of the record channel.
    pub channel: Vec<u8>,
}

pub fn boot(boot: &Boot) -> Result<GuestRun> {
    std::fs::create_dir_all(&boot.workdir)
        .with_context(|| format!("creating {}", boot.workdir.display()))?;
    // A stale log file would be taken up by QEMU with its old contents.
    for log in [boot.console_log(), boot.records_log(), boot.records_shm()] {
        let _ = std::fs::remove_file(&log);
    }
    let stderr = std::fs::File::create(boot.workdir.join("qemu.stderr"))
        .with_context(|| format!("creating {}", boot.workdir.join("qemu.stderr").display()))?;
    let mut cmd = Command::new(QEMU);
    cmd.args(qemu_argv(boot))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let (exit, wall) = run_watched(cmd, boot.timeout).with_context(|| format!("running {QEMU}"))?;
    let stderr = std::fs::read_to_string(boot.workdir.join("qemu.stderr")).unwrap_or_default();
    if let Exit::Code(code) = exit {
        if code != 0 && !Path::new(&boot.console_log()).exists() {
            bail!("{QEMU} failed to start (exit {code}): {}", stderr.trim());
        }
    }
    let console = String::from_utf8_lossy(&std::fs::read(boot.console_log()).unwrap_or_default())
        .into_owned();
    // The guest writes to the shared log first and to the serial port only without it or once
    // it is full, so the channel is the one followed by the other.
    let shm = std::fs::read(boot.records_shm()).unwrap_or_default();
    let mut channel = wire::shared_log::contents(&shm)
        .unwrap_or_default()
        .to_vec();
    channel.extend(std::fs::read(boot.records_log()).unwrap_or_default());
    Ok(GuestRun {
        exit,
        wall,
        console,
        channel,
    })
}

/// Runs `cmd` in its own process group, killing the group if it outlives `timeout`.
pub fn run_watched(mut cmd: Command, timeout: Duration) -> Result<(Exit, Duration)> {
    use std::os::unix::process::ExitStatusExt;
    let started = Instant::now();
    let mut child = process_group::spawn(&mut cmd)?;
    let pid = child.id() as i32;
    let mut guard = process_group::Guard::new(pid);
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(sig)) => Exit::Signal(sig),
                (None, None) => Exit::Code(-1),
            };
        }
        if started.elapsed() >= timeout {
            process_group::kill(pid);
            let _ = child.wait();
            break Exit::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The leader is gone; anything left in the group is killed by the guard.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    guard.disarm();
    process_group::unregister(pid);
    Ok((exit, started.elapsed()))
}

/// Whether QEMU's KVM works here. `/dev/kvm` existing is not enough: without nested
/// virtualisation a KVM guest can spin forever. So boot `kernel` with an initramfs whose guest
/// runs nothing, under KVM, for at most `limit`, and call KVM usable only if the guest's trailer
/// arrived.
pub fn kvm_works(kernel: &Path, initrd: &Path, workdir: &Path, limit: Duration) -> Result<bool> {
    if !Path::new("/dev/kvm").exists() {
        return Ok(false);
    }
    let probe = Boot {
        kernel: kernel.to_path_buf(),
        initrd: initrd.to_path_buf(),
        accel: Accel::Kvm,
        memory_mib: 256,
        cpus: 1,
        cpu: crate::boot::cpu::choose(Accel::Kvm, None, None).cpu,
        extra_cmdline: None,
        selection: vec!["options.so_reuseaddr".into()],
        timeout: limit,
        workdir: workdir.to_path_buf(),
    };
    let run = boot(&probe)?;
    let transcript = crate::boot::transcript::parse(&run.channel);
    Ok(run.exit != Exit::TimedOut && transcript.trailer.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Boot {
        Boot {
            kernel: "/k/bzImage".into(),
            initrd: "/c/init.cpio".into(),
            accel: Accel::Tcg,
            memory_mib: 512,
            cpus: 2,
            cpu: "max,-cx16".into(),
            extra_cmdline: Some("nosmap".into()),
            selection: vec!["bind".into(), "options".into()],
            timeout: Duration::from_secs(60),
            workdir: "/w".into(),
        }
    }

    #[test]
    fn argv_has_no_nic_and_two_serials() {
        let argv: Vec<String> = qemu_argv(&sample())
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let joined = argv.join(" ");
        assert_eq!(
            joined,
            "-nodefaults -no-user-config -no-reboot -display none -accel tcg,thread=single -cpu max,-cx16 -smp 2 -m 512 -nic none \
             -kernel /k/bzImage -initrd /c/init.cpio \
             -append console=ttyS0 panic=-1 loglevel=4 rph.workers=1 rph.run=bind,options nosmap \
             -object memory-backend-file,id=rph-log,share=on,size=16777216,mem-path=/w/records.shm \
             -device ivshmem-plain,memdev=rph-log \
             -serial file:/w/console.log -serial file:/w/records.log"
        );
    }

    #[test]
    fn commas_in_paths_are_doubled_for_qemu() {
        let boot = Boot {
            workdir: "/runs/a,b".into(),
            ..sample()
        };
        let argv = qemu_argv(&boot);
        assert!(argv.iter().any(|a| a
            .to_string_lossy()
            .ends_with("mem-path=/runs/a,,b/records.shm")));
    }

    #[test]
    fn workers_follow_the_accelerator() {
        let kvm = Boot {
            accel: Accel::Kvm,
            ..sample()
        };
        let argv = qemu_argv(&kvm);
        let argv: Vec<_> = argv.iter().map(|s| s.to_string_lossy()).collect();
        assert!(argv.windows(2).any(|w| w[0] == "-accel" && w[1] == "kvm"));
        assert!(cmdline(&kvm).contains("rph.workers=2"));
        assert!(cmdline(&sample()).contains("rph.workers=1"));
    }
}
