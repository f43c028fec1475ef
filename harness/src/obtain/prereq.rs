//! Host programs the harness needs: QEMU for every boot, and a kernel toolchain for the `build`
//! rows. When something is missing and we are root on Debian or Ubuntu, it is installed with
//! apt-get (saying so); otherwise the exact install command is printed once for the whole run.
//! Missing QEMU stops the run (nothing can be measured); a missing toolchain does not (the
//! kernels that need it are reported unavailable, with that reason, and the rest run).

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::boot::vm::QEMU;
use crate::matrix::{KernelSource, KernelSpec};

/// Something the host must have, how to tell, and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A program on `PATH`.
    Program(&'static str, &'static str),
    /// A header under `/usr/include`.
    Header(&'static str, &'static str),
}

impl Need {
    pub fn package(self) -> &'static str {
        match self {
            Need::Program(_, package) | Need::Header(_, package) => package,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Need::Program(name, _) | Need::Header(name, _) => name,
        }
    }
}

/// What building any kernel from 3.8 to today with the minimal config needs: make and the
/// compiler, bc (timeconst), perl (3.x headers), flex and bison (Kconfig from 4.16), xz for the
/// tarballs, libelf (objtool from 4.14) and OpenSSL (certificate tooling from 4.3).
pub const KERNEL_TOOLCHAIN: &[Need] = &[
    Need::Program("make", "make"),
    Need::Program("gcc", "gcc"),
    Need::Program("ld", "binutils"),
    Need::Program("bc", "bc"),
    Need::Program("perl", "perl"),
    Need::Program("flex", "flex"),
    Need::Program("bison", "bison"),
    Need::Program("xz", "xz-utils"),
    Need::Header("gelf.h", "libelf-dev"),
    Need::Header("openssl/ssl.h", "libssl-dev"),
];

/// What makes kernel builds faster without being needed by any: ccache (the build says in its
/// provenance when it ran without). Installed with the toolchain when it can be; its absence
/// never makes a kernel unavailable.
pub const OPTIONAL_BUILD_TOOLS: &[Need] = &[Need::Program(CCACHE, "ccache")];

/// The ccache program: named here, where the toolchain is, so that `obtain::ccache`, which asks
/// this module whether it is on the PATH, is the only one of the two to import the other.
pub const CCACHE: &str = "ccache";

const QEMU_NEED: &[Need] = &[Need::Program(QEMU, "qemu-system-x86")];

pub fn on_path(program: &str) -> bool {
    on_search_path(program, std::env::var_os("PATH").as_deref())
}

fn on_search_path(program: &str, path: Option<&OsStr>) -> bool {
    path.is_some_and(|paths| std::env::split_paths(paths).any(|dir| dir.join(program).is_file()))
}

/// The needs of `needs` that this host lacks, looking for programs on `path` and headers under
/// `include`.
pub fn missing_from(needs: &[Need], path: Option<&OsStr>, include: &Path) -> Vec<Need> {
    needs
        .iter()
        .copied()
        .filter(|need| match need {
            Need::Program(program, _) => !on_search_path(program, path),
            Need::Header(header, _) => !include.join(header).is_file(),
        })
        .collect()
}

/// The needs of `needs` that this host lacks.
pub fn missing(needs: &[Need]) -> Vec<Need> {
    missing_from(
        needs,
        std::env::var_os("PATH").as_deref(),
        Path::new("/usr/include"),
    )
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

/// The Debian packages of `needs`, without repeats, in order.
fn packages(needs: &[Need]) -> Vec<&'static str> {
    let mut packages: Vec<&str> = Vec::new();
    for need in needs {
        if !packages.contains(&need.package()) {
            packages.push(need.package());
        }
    }
    packages
}

/// The command a person runs to install `needs` on Debian or Ubuntu.
pub fn install_command(needs: &[Need]) -> String {
    format!("sudo apt-get install -y {}", packages(needs).join(" "))
}

/// Whether this process may install packages itself: root, a Debian-like system, apt-get.
fn can_install() -> bool {
    nix::unistd::geteuid().is_root() && debian_like() && on_path("apt-get")
}

/// apt-get update, then install the packages of `needs`. `Err` carries apt-get's failure.
fn apt_install(needs: &[Need]) -> Result<(), String> {
    let mut install: Vec<OsString> = ["install", "-y", "-qq", "--no-install-recommends"]
        .iter()
        .map(OsString::from)
        .collect();
    install.extend(packages(needs).into_iter().map(OsString::from));
    let update: Vec<OsString> = vec!["update".into(), "-qq".into()];
    for args in [update, install] {
        let shown = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let status = Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("running apt-get {shown}: {e}"))?;
        if !status.success() {
            return Err(format!("apt-get {shown} failed ({status})"));
        }
    }
    Ok(())
}

pub fn ensure_qemu() -> Result<()> {
    if missing(QEMU_NEED).is_empty() {
        return Ok(());
    }
    if !can_install() {
        bail!(
            crate::ExitKind::Prerequisite.wrap(format!("{QEMU} is not installed; {INSTALL_HELP}"))
        );
    }
    eprintln!("harness: {QEMU} is missing; installing qemu-system-x86 with apt-get (root on a Debian-like system)");
    if let Err(failure) = apt_install(QEMU_NEED) {
        bail!(crate::ExitKind::Prerequisite.wrap(format!("{failure}; {INSTALL_HELP}")));
    }
    if !on_path(QEMU) {
        bail!(crate::ExitKind::Prerequisite.wrap(format!(
            "apt-get installed qemu-system-x86 but {QEMU} is still not on PATH"
        )));
    }
    Ok(())
}

/// Before a run: when any of `kernels` is built from source, installs the missing parts of
/// [`KERNEL_TOOLCHAIN`] and [`OPTIONAL_BUILD_TOOLS`] if it can, and otherwise says once, for the
/// whole run, exactly what to install. Never fails the run: a kernel that needs a build then
/// reports the missing tool as its reason, and the others run; without ccache builds run uncached.
pub fn ensure_kernel_toolchain(kernels: &[&KernelSpec]) {
    let built: Vec<&str> = kernels
        .iter()
        .filter(|k| matches!(k.source, KernelSource::Build(_)))
        .map(|k| k.id.as_str())
        .collect();
    let required = missing(KERNEL_TOOLCHAIN);
    let optional = missing(OPTIONAL_BUILD_TOOLS);
    if built.is_empty() || (required.is_empty() && optional.is_empty()) {
        return;
    }
    let kernels = built.join(", ");
    let lacking: Vec<Need> = required.iter().chain(&optional).copied().collect();
    let names: Vec<&str> = lacking.iter().map(|n| n.name()).collect();
    if !can_install() {
        eprintln!(
            "harness: building {kernels} needs {} — install them with: {}",
            names.join(", "),
            install_command(&lacking)
        );
        return;
    }
    eprintln!(
        "harness: building {kernels} needs {}; installing {} with apt-get (root on a Debian-like system)",
        names.join(", "),
        packages(&lacking).join(" ")
    );
    if let Err(failure) = apt_install(&lacking) {
        // An optional tool this system cannot install must not cost the toolchain.
        let retried =
            !optional.is_empty() && !required.is_empty() && apt_install(&required).is_ok();
        if !retried {
            eprintln!(
                "harness: {failure}; install them with: {}",
                install_command(&lacking)
            );
        }
    }
    let still = missing(KERNEL_TOOLCHAIN);
    if !still.is_empty() {
        eprintln!(
            "harness: still missing after apt-get: {}",
            still
                .iter()
                .map(|n| n.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !missing(OPTIONAL_BUILD_TOOLS).is_empty() {
        eprintln!("harness: ccache could not be installed; kernels are built without it");
    }
}

/// Why no kernel build can start here, if none can: the toolchain's missing programs and the
/// command that installs them. (Headers are needed only by some versions; the build checks
/// those per version.)
pub fn toolchain_missing_reason() -> Option<String> {
    let lacking: Vec<Need> = missing(KERNEL_TOOLCHAIN)
        .into_iter()
        .filter(|n| matches!(n, Need::Program(..)))
        .collect();
    (!lacking.is_empty()).then(|| {
        format!(
            "kernel build tools missing: {} (on Debian or Ubuntu: {})",
            lacking
                .iter()
                .map(|n| n.name())
                .collect::<Vec<_>>()
                .join(", "),
            install_command(&lacking)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_without_the_toolchain_misses_every_program_and_names_the_packages() {
        let empty = tempfile::tempdir().unwrap();
        let lacking = missing_from(
            KERNEL_TOOLCHAIN,
            Some(empty.path().as_os_str()),
            empty.path(),
        );
        assert_eq!(lacking, KERNEL_TOOLCHAIN);
        assert_eq!(
            install_command(&lacking),
            "sudo apt-get install -y make gcc binutils bc perl flex bison xz-utils libelf-dev libssl-dev"
        );
    }

    #[test]
    fn programs_are_found_on_the_path_given_and_headers_under_the_include_dir() {
        let bin = tempfile::tempdir().unwrap();
        for program in ["make", "flex"] {
            std::fs::write(bin.path().join(program), "").unwrap();
        }
        let include = tempfile::tempdir().unwrap();
        std::fs::create_dir(include.path().join("openssl")).unwrap();
        std::fs::write(include.path().join("openssl/ssl.h"), "").unwrap();
        let lacking = missing_from(
            KERNEL_TOOLCHAIN,
            Some(bin.path().as_os_str()),
            include.path(),
        );
        let names: Vec<&str> = lacking.iter().map(|n| n.name()).collect();
        assert_eq!(names, ["gcc", "ld", "bc", "perl", "bison", "xz", "gelf.h"]);
    }
}
