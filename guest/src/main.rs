//! The guest: a static binary that measures how the running kernel binds, looks up and spreads
//! sockets, and reports raw facts as records (see the `wire` crate).
//!
//! As PID 1 in a VM it mounts proc, sys and devtmpfs, brings `lo` up, reads the experiments to run
//! from the kernel command line (`rph.run=bind,options`; all by default; see `invocation`), writes records to the
//! shared-memory log (or the second serial port, `/dev/ttyS1`; see `channel`), leaving the console
//! to the kernel log, and powers off.
//!
//! As an ordinary process on a host it first moves itself into a fresh network namespace, so the
//! host kernel becomes a row of the matrix without touching the host's network: experiments are
//! the arguments, records go to stdout.

mod channel;
mod experiments;
mod invocation;
mod net;
mod pid1;
mod preflight;
mod probe;
mod runner;

use std::process::ExitCode;

/// Kernel argument (no `=`, so the kernel hands it to init as an argument) that makes PID 1 power
/// off at once: the trivial init that `harness bench` boots to measure the floor.
const POWER_OFF_AT_ONCE: &str = "rph-poweroff";

fn main() -> ExitCode {
    let pid1 = std::process::id() == 1;
    if pid1 && std::env::args().any(|a| a == POWER_OFF_AT_ONCE) {
        return pid1::finish(true, ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    // PID 1 must mount /proc before it can read its command line.
    let setup = if pid1 {
        pid1::init()
    } else {
        pid1::enter_namespace()
    };
    let invocation = if pid1 {
        invocation::Invocation::from_cmdline(
            &std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
        )
    } else {
        invocation::Invocation::from_args(std::env::args().skip(1))
    };
    let mut channel = match channel::Channel::open(pid1, invocation.serial_only) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("guest: cannot open the record channel: {e}");
            return pid1::finish(pid1, ExitCode::FAILURE);
        }
    };
    if let Err(problems) = setup {
        // Set-up problems are facts about this environment; the experiments that depend on what
        // failed will record their own errors. Say it on stderr (the console) for people.
        for p in problems {
            eprintln!("guest: setup: {p}");
        }
    }
    // On the console, for people reading a boot log and for `harness bench`'s breakdown.
    eprintln!("guest: set up in {} ms", started.elapsed().as_millis());
    let code = match runner::run(&invocation, &mut channel, pid1) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guest: {e}");
            ExitCode::FAILURE
        }
    };
    pid1::finish(pid1, code)
}
