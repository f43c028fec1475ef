//! harness: boots kernels in QEMU, runs the guest, judges the documents' claims and writes the
//! compatibility report. See ARCHITECTURE.md for the map.

mod boot;
mod cli;
mod commands;
#[cfg(test)]
mod fuzz;
mod interrupt;
mod judge;
mod matrix;
mod obtain;
mod process_group;
mod report;
mod results;
mod run;
mod version;
mod yaml;

use std::process::ExitCode;

/// Documented exit codes (README, "Exit codes"; docs/faults.md). Anything else the harness fails
/// at exits 70; an interrupted run exits 128 + the signal (130 for SIGINT), see `interrupt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// A claim was contradicted, an outcome changed against a baseline, or `check` found "bad".
    Failed = 1,
    /// Bad input: command-line flags, kernels.yaml, claims.
    Usage = 2,
    /// A prerequisite (QEMU) is missing and could not be installed.
    Prerequisite = 3,
    /// The results or cache directory cannot be written (permissions, disk full).
    Storage = 4,
    /// Not one kernel of the run could be obtained (offline with nothing cached, no network);
    /// each kernel's reason is in the message and in its result file.
    Unavailable = 5,
    /// A kernel's pre-flight check failed: the measuring environment (CPU model, emulator, guest
    /// set-up) is broken, so its records were kept but not judged. Results and reports are
    /// written; the run still fails, since nothing can be said about that kernel.
    EnvironmentFault = 6,
    /// The harness failed at its own job (a bug, an unexpected host error).
    Internal = 70,
}

/// An error that carries its exit code through `anyhow` chains.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Classified {
    pub kind: ExitKind,
    pub message: String,
}

impl ExitKind {
    pub fn wrap(self, message: impl Into<String>) -> Classified {
        Classified {
            kind: self,
            message: message.into(),
        }
    }
}

fn exit_kind(error: &anyhow::Error) -> ExitKind {
    for cause in error.chain() {
        if let Some(c) = cause.downcast_ref::<Classified>() {
            return c.kind;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if matches!(
                io.raw_os_error(),
                Some(libc::ENOSPC | libc::EACCES | libc::EROFS | libc::EDQUOT)
            ) {
                return ExitKind::Storage;
            }
        }
    }
    ExitKind::Internal
}

fn main() -> ExitCode {
    // Printing into a closed pipe (`harness diff a b | head`) ends the process quietly, as for any
    // Unix tool, instead of a panic on the failed write.
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            ExitCode::from(exit_kind(&e) as u8)
        }
    }
}
