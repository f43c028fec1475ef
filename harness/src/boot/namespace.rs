//! The host row: the static guest runs as an ordinary process on this machine's kernel. It moves
//! itself into a fresh network namespace before touching any socket (see guest/src/pid1.rs), so
//! the host's own network is never used; here it only gets the same watchdog as a VM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::boot::vm::{run_watched, GuestRun};

pub fn run(
    guest: &Path,
    selection: &[String],
    timeout: Duration,
    workdir: &Path,
) -> Result<GuestRun> {
    std::fs::create_dir_all(workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let records = workdir.join("records.log");
    let console = workdir.join("console.log");
    let mut cmd = Command::new(guest);
    cmd.args(selection)
        .stdin(Stdio::null())
        .stdout(
            std::fs::File::create(&records)
                .with_context(|| format!("creating {}", records.display()))?,
        )
        .stderr(
            std::fs::File::create(&console)
                .with_context(|| format!("creating {}", console.display()))?,
        );
    let (exit, wall) =
        run_watched(cmd, timeout).with_context(|| format!("running {}", guest.display()))?;
    Ok(GuestRun {
        exit,
        wall,
        console: std::fs::read_to_string(&console).unwrap_or_default(),
        channel: std::fs::read(&records).unwrap_or_default(),
    })
}
