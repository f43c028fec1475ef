//! Prerequisites the harness cannot do without: QEMU. When it is missing and we are root on
//! Debian or Ubuntu, install it with apt-get (saying so); otherwise stop with the exact command
//! for the common distributions.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::boot::vm::QEMU;

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn debian_like() -> bool {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        (l.starts_with("id=") || l.starts_with("id_like="))
            && (l.contains("debian") || l.contains("ubuntu"))
    })
}

pub const INSTALL_HELP: &str = "install QEMU for x86-64:
  Debian/Ubuntu: sudo apt-get install -y qemu-system-x86
  Fedora/RHEL:   sudo dnf install -y qemu-system-x86-core
  Arch:          sudo pacman -S qemu-system-x86
  openSUSE:      sudo zypper install qemu-x86";

pub fn ensure_qemu() -> Result<()> {
    if on_path(QEMU) {
        return Ok(());
    }
    if !(nix::unistd::geteuid().is_root() && debian_like() && on_path("apt-get")) {
        bail!(
            crate::ExitKind::Prerequisite.wrap(format!("{QEMU} is not installed; {INSTALL_HELP}"))
        );
    }
    eprintln!("harness: {QEMU} is missing; installing qemu-system-x86 with apt-get (root on a Debian-like system)");
    for args in [
        &["update", "-qq"][..],
        &[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "qemu-system-x86",
        ][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("running apt-get {}", args.join(" ")))?;
        if !status.success() {
            bail!(crate::ExitKind::Prerequisite.wrap(format!(
                "apt-get {} failed ({status}); {INSTALL_HELP}",
                args.join(" ")
            )));
        }
    }
    if !on_path(QEMU) {
        bail!(crate::ExitKind::Prerequisite.wrap(format!(
            "apt-get installed qemu-system-x86 but {QEMU} is still not on PATH"
        )));
    }
    Ok(())
}
