//! Every child the harness starts (QEMU, the host-row guest, `make`) leads a process group of its
//! own, registered here: one call kills a child with everything it started, and an interrupt
//! ([`crate::interrupt`]) kills them all. The VM runner and the signal handler both use this
//! module; neither knows the other.
//!
//! Spawning and registering happen under the same lock [`kill_all_and_exit`] takes, and it marks
//! the harness interrupted before it lets go (it never does: it exits holding the lock). So no
//! child can start between the handler collecting the groups and the process exiting, and a job
//! whose child was killed blocks in [`unregister`] until the exit: it never stores a result that
//! the interrupt cut short.

use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Result};

struct Running {
    /// Set by [`kill_all_and_exit`]; from then on nothing new starts.
    interrupted: bool,
    /// Process groups of live children, each led by the child itself.
    groups: Vec<i32>,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    interrupted: false,
    groups: Vec::new(),
});

fn running() -> MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns `cmd` as the leader of a new process group and registers that group to be killed on an
/// interrupt. Refuses once the harness has been interrupted.
pub fn spawn(cmd: &mut Command) -> Result<Child> {
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let mut running = running();
    if running.interrupted {
        bail!("interrupted: not starting {:?}", cmd.get_program());
    }
    let child = cmd.spawn()?;
    running.groups.push(child.id() as i32);
    Ok(child)
}

/// Forgets a group whose leader has been waited for.
pub fn unregister(pgid: i32) {
    running().groups.retain(|&p| p != pgid);
}

/// SIGTERM to the group, a short grace, then SIGKILL.
pub fn kill(pgid: i32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(pgid);
    if killpg(pid, Signal::SIGTERM).is_ok() {
        std::thread::sleep(Duration::from_millis(200));
        let _ = killpg(pid, Signal::SIGKILL);
    }
}

/// Kills a whole process group when dropped, so no child outlives an early return or a panic.
pub struct Guard {
    pgid: Option<i32>,
}

impl Guard {
    pub fn new(pgid: i32) -> Guard {
        Guard { pgid: Some(pgid) }
    }

    pub fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            kill(pgid);
            unregister(pgid);
        }
    }
}

/// Marks the harness interrupted, kills every registered group, prints `message` (given how many
/// it killed) and exits with `code`, still holding the registry (see the module doc for why).
pub fn kill_all_and_exit(message: impl FnOnce(usize) -> String, code: i32) -> ! {
    let mut running = running();
    running.interrupted = true;
    for &pgid in &running.groups {
        kill(pgid);
    }
    eprintln!("{}", message(running.groups.len()));
    std::process::exit(code)
}
