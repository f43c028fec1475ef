//! Finding the static guest binary: `$RPH_GUEST` when set, otherwise built from this workspace
//! with `cargo build --release -p guest` (into `target/guest/`) for the gnu target with `+crt-static` (the stock
//! toolchain's glibc supports kernels from 3.2, so the binary runs on 3.8). The flag is passed
//! through the per-target variable so build scripts and proc-macros stay dynamic.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The workspace this harness was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

pub fn static_guest() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("RPH_GUEST") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("RPH_GUEST={} is not a file", path.display());
        }
        return Ok(path);
    }
    let root = workspace_root();
    // A target directory of its own: the static flags never invalidate the host build, and a
    // nested build from inside `cargo test` never waits on the outer cargo's lock.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "guest",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir)
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        )
        .output()
        .with_context(|| format!("running {} build -p guest", Path::new(&cargo).display()))?;
    if !output.status.success() {
        bail!(
            "building the static guest failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = target_dir.join(TARGET).join("release").join("guest");
    if !path.is_file() {
        bail!("cargo built the guest but {} is missing", path.display());
    }
    Ok(path)
}
