//! SIGINT and SIGTERM during a matrix: every QEMU (or guest) process group still running is
//! killed, and the harness exits with 130. Results of finished kernels are already on disk
//! (written atomically as each kernel finishes), so `harness run --resume` continues from there.

use std::sync::Mutex;

static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

pub fn register(pgid: i32) {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
}

pub fn unregister(pgid: i32) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&p| p != pgid);
}

/// Installs the handler thread. Call once, early in `main`.
pub fn install() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let groups: Vec<i32> = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for pgid in groups {
                crate::vm::kill_group(pgid);
            }
            eprintln!("harness: interrupted (signal {signal}); finished kernels are saved, `harness run --resume` continues");
            std::process::exit(130);
        }
    });
    Ok(())
}
