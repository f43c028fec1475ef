//! SIGINT and SIGTERM during a matrix: every QEMU (or guest) process group still running is
//! killed, and the harness exits with 128 + the signal (130 for SIGINT, 143 for SIGTERM). Results
//! of finished kernels are already on disk (written atomically as each kernel finishes), so
//! `harness run --resume` continues from there.
//!
//! Spawning and registering a process group happen under the same lock the handler takes, and the
//! handler marks the run interrupted before it lets go: so no child can start between the handler
//! collecting the groups and the process exiting, and none outlives the harness. A job whose child
//! the handler killed blocks in [`unregister`] until the exit, so it never stores a result that
//! the interrupt cut short: a kernel is either finished on disk or absent.

use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, Result};

struct Running {
    /// Set by the handler; from then on nothing new starts.
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

/// Spawns `cmd`, which must lead its own process group (`process_group(0)`), and registers that
/// group to be killed on an interrupt. Refuses once the harness has been interrupted.
pub fn spawn_registered(cmd: &mut Command) -> Result<Child> {
    let mut running = running();
    if running.interrupted {
        bail!("interrupted: not starting {:?}", cmd.get_program());
    }
    let child = cmd.spawn()?;
    running.groups.push(child.id() as i32);
    Ok(child)
}

pub fn unregister(pgid: i32) {
    running().groups.retain(|&p| p != pgid);
}

/// Installs the handler thread. Call once, early in `main`.
pub fn install() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Held until exit: a job thread about to spawn waits here and never starts.
            let mut running = running();
            running.interrupted = true;
            for &pgid in &running.groups {
                crate::boot::vm::kill_group(pgid);
            }
            eprintln!(
                "harness: interrupted (signal {signal}); {} process group(s) killed; finished kernels are saved, `harness run --resume` continues",
                running.groups.len()
            );
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}
