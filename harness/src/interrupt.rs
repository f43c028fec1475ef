//! SIGINT and SIGTERM during a matrix: every child's process group still running is killed
//! ([`crate::process_group`]), and the harness exits with 128 + the signal (130 for SIGINT, 143 for
//! SIGTERM). Results of finished kernels are already on disk (written atomically as each kernel
//! finishes), so `harness run --resume` continues from there.

use anyhow::Result;

/// Installs the handler thread. Call once, early in `main`.
pub fn install() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            crate::process_group::kill_all_and_exit(
                |killed| {
                    format!("harness: interrupted (signal {signal}); {killed} process group(s) killed; finished kernels are saved, `harness run --resume` continues")
                },
                128 + signal,
            );
        }
    });
    Ok(())
}
