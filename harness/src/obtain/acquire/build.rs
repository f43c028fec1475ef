//! Kernels built from vanilla sources, all the same way: `allnoconfig` plus the one fragment
//! `images/config/minimal.config`, built out of tree (`O=`) into a `bzImage`.
//!
//! Sources: a kernel.org tarball (downloaded into the cache, sha256 pinned in kernels.yaml or
//! `kernels.lock`), a tarball on disk (Debian's `/usr/src/linux-source-*.tar.xz`), a directory
//! (copied first: its owner's tree is never patched or built in), or a git repository at a
//! revision (a remote URL is mirrored into the cache first).
//!
//! How: a git revision is built incrementally ([`BuildMode::Incremental`]) in the persistent build
//! directory of its repository and configuration ([`super::build_dir`]) with ccache, so `make`
//! redoes only what changed since the last revision built there; everything else, and a git
//! revision under [`BuildMode::Cold`], is unpacked into a fresh directory and built from nothing.
//!
//! The image is cached under a key made of: the source's identity (tarball sha256, git commit, or
//! a listing of the directory's paths, sizes and mtimes), the fragment's sha256, [`COMPAT_VERSION`],
//! and the first lines of `gcc --version` and `ld --version`. The provenance records the exact
//! kernel version and release, the sha256 of the resulting `.config` (kept in the cache), the
//! compatibility fixes applied, the compiler, the build time, and how the build was made:
//! `build_mode` (`cold`, `incremental`, or `ccache` for an empty `O=` filled mostly from ccache),
//! `build_start` (what the build directory held, or why it was thrown away) and the ccache hit
//! rate.
//!
//! Old trees and today's toolchain (gcc 12, binutils 2.40, perl 5.36): [`compat_fixes`] applies,
//! keyed by version and by what the tree contains, each fix that upstream made later:
//! no PIE (`-fno-pie`, `-no-pie`) before the tree asks for it itself (4.9), `-std=gnu89` for 3.x
//! before 3.18, a `compiler-gcc<major>.h` that 3.x looks up by gcc major version, `__init` instead
//! of `__initdata` on `acpi_os_initialize`'s declaration, `-mno-mmx -mno-sse` for the boot
//! decompressor, fixed-size padding of the early exception stubs in `head_64.S` (3.9 hangs
//! silently without it), `R_X86_64_PLT32` treated as `R_X86_64_PC32` by the relocs tool, and
//! `defined(@array)` dropped from 3.8's `kernel/timeconst.pl`. A fix whose anchor text is missing
//! where its version says it must be makes the kernel unavailable with that reason, rather than
//! building something silently different.
//!
//! Every command is an argument vector (`std::process::Command`), never a shell string.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};

use super::build_dir::{self, BuildDir};
use super::{
    unpack_tar_safely, url::pinned_download, AcquireContext, Acquisition, KernelImage, OrReason,
};
use crate::matrix::{BuildSource, KernelSpec};
use crate::obtain::cache::{hash_file, sha256_hex, Cache, Progress, CCACHE_DIR};
use crate::obtain::ccache::{self, Ccache};

/// Bumped whenever [`compat_fixes`] changes what it does, so cached builds are redone.
pub const COMPAT_VERSION: u32 = 1;

/// Options the guest cannot do without; a configuration lacking one is refused.
const REQUIRED_OPTIONS: &[&str] = &[
    "CONFIG_64BIT",
    "CONFIG_SMP",
    "CONFIG_SERIAL_8250_CONSOLE",
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_RD_GZIP",
    "CONFIG_BINFMT_ELF",
    "CONFIG_DEVTMPFS",
    "CONFIG_PROC_FS",
    "CONFIG_SYSFS",
    "CONFIG_INET",
    "CONFIG_IPV6",
    "CONFIG_UNIX",
    "CONFIG_NET_NS",
];

/// Options wanted where the version has them; their absence is recorded, not refused.
const OPTIONAL_OPTIONS: &[&str] = &[
    "CONFIG_USER_NS",
    "CONFIG_BPF_SYSCALL",
    "CONFIG_IP_MULTICAST",
    "CONFIG_ACPI",
    "CONFIG_FUTEX",
];

/// `VERSION.PATCHLEVEL.SUBLEVEL` from a tree's top Makefile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl KernelVersion {
    fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Reads `VERSION`, `PATCHLEVEL` and `SUBLEVEL` from the top Makefile.
    pub fn of_tree(tree: &Path) -> Result<KernelVersion, String> {
        let makefile = tree.join("Makefile");
        let text =
            fs::read_to_string(&makefile).map_err(|e| format!("{}: {e}", makefile.display()))?;
        let field = |name: &str| -> Result<u32, String> {
            text.lines()
                .find_map(|line| {
                    let (key, value) = line.split_once('=')?;
                    (key.trim() == name).then(|| value.trim().to_owned())
                })
                .ok_or_else(|| {
                    format!(
                        "{}: no {name} line; is this a kernel tree?",
                        makefile.display()
                    )
                })?
                .parse::<u32>()
                .map_err(|e| format!("{}: {name}: {e}", makefile.display()))
        };
        Ok(KernelVersion {
            major: field("VERSION")?,
            minor: field("PATCHLEVEL")?,
            patch: field("SUBLEVEL").unwrap_or(0),
        })
    }
}

/// What [`compat_fixes`] decided: extra make variables and the names of the fixes applied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompatPlan {
    pub make_vars: Vec<String>,
    pub applied: Vec<String>,
}

/// The toolchain the build uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// First line of `gcc --version`.
    pub gcc: String,
    pub gcc_major: u32,
    /// First line of `ld --version`.
    pub ld: String,
    /// gcc builds position-independent executables unless told not to.
    pub default_pie: bool,
}

impl Toolchain {
    pub fn probe() -> Result<Toolchain, String> {
        let first_line = |program: &str, args: &[&str]| -> Result<String, String> {
            let output = Command::new(program)
                .args(args)
                .output()
                .map_err(|e| format!("running {program}: {e}"))?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            Ok(text.lines().next().unwrap_or("").trim().to_owned())
        };
        let gcc = first_line("gcc", &["--version"])?;
        let ld = first_line("ld", &["--version"])?;
        let major = first_line("gcc", &["-dumpversion"])?;
        let gcc_major = major
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| format!("gcc -dumpversion said `{major}`"))?;
        let verbose = Command::new("gcc")
            .arg("-v")
            .output()
            .map_err(|e| format!("running gcc -v: {e}"))?;
        let default_pie = String::from_utf8_lossy(&verbose.stderr).contains("--enable-default-pie");
        Ok(Toolchain {
            gcc,
            gcc_major,
            ld,
            default_pie,
        })
    }
}

/// Applies to `tree` (a private copy) every compatibility fix that `version` needs with
/// `toolchain`; returns the make variables to pass. `Err` names a fix that should apply but
/// whose anchor text is missing.
pub fn compat_fixes(
    tree: &Path,
    version: KernelVersion,
    toolchain: &Toolchain,
) -> Result<CompatPlan, String> {
    let mut plan = CompatPlan::default();
    let mut cc_flags: Vec<&str> = Vec::new();
    let top_makefile = read(tree, "Makefile")?;

    // PIE: trees before 4.9 do not pass -fno-PIE themselves; Debian's gcc defaults to PIE.
    if toolchain.default_pie
        && !top_makefile.contains("-fno-PIE")
        && !top_makefile.contains("-fno-pie")
    {
        cc_flags.extend(["-fno-pie", "-no-pie"]);
        plan.applied.push("no-pie".into());
    }
    // 3.x before 3.18 predates the explicit -std=gnu89; gcc >= 5 defaults to gnu11.
    if version.major == 3 && !version.at_least(3, 18) && !top_makefile.contains("-std=gnu89") {
        cc_flags.push("-std=gnu89");
        plan.applied.push("std-gnu89".into());
    }
    if !cc_flags.is_empty() {
        plan.make_vars
            .push(format!("CC=gcc {}", cc_flags.join(" ")));
    }

    // 3.x includes linux/compiler-gcc<major>.h by gcc's major version.
    let headers = tree.join("include/linux");
    let wanted = headers.join(format!("compiler-gcc{}.h", toolchain.gcc_major));
    if headers.join("compiler-gcc4.h").exists() && !wanted.exists() {
        let newest = (4..toolchain.gcc_major)
            .rev()
            .map(|n| headers.join(format!("compiler-gcc{n}.h")))
            .find(|p| p.exists());
        let newest = newest.expect("compiler-gcc4.h exists");
        fs::copy(&newest, &wanted)
            .map_err(|e| format!("copying {} to {}: {e}", newest.display(), wanted.display()))?;
        plan.applied
            .push(format!("compiler-gcc{}.h", toolchain.gcc_major));
    }

    // A section attribute for data on a function declaration: gcc >= 8 rejects the conflict.
    replace_if_present(
        tree,
        "include/acpi/acpiosxf.h",
        "acpi_status __initdata acpi_os_initialize(void);",
        "acpi_status __init acpi_os_initialize(void);",
        "acpi-os-initialize-init",
        &mut plan,
    )?;

    // The decompressor resets KBUILD_CFLAGS; without these gcc may emit SSE before it is usable.
    let compressed = "arch/x86/boot/compressed/Makefile";
    if tree.join(compressed).exists() {
        let text = read(tree, compressed)?;
        if !text.contains("-mno-mmx") {
            let anchor = text
                .lines()
                .find(|l| l.starts_with("KBUILD_CFLAGS := "))
                .ok_or_else(|| {
                    format!("fix decompressor-no-sse: no `KBUILD_CFLAGS := ` line in {compressed}")
                })?;
            let patched = text.replacen(
                anchor,
                &format!("{anchor}\nKBUILD_CFLAGS += -mno-mmx -mno-sse"),
                1,
            );
            write(tree, compressed, &patched)?;
            plan.applied.push("decompressor-no-sse".into());
        }
    }

    // Early exception stubs: C indexes them as fixed-size array rows, but newer binutils
    // shortens some jumps; pad each stub to its row size (upstream did so in 4.2).
    pad_early_idt_stubs(tree, &mut plan)?;

    // binutils >= 2.31 emits R_X86_64_PLT32 for calls; the relocs tool must treat it as PC32.
    let relocs = "arch/x86/tools/relocs.c";
    if tree.join(relocs).exists() {
        let text = read(tree, relocs)?;
        if text.contains("case R_X86_64_PC32:") && !text.contains("R_X86_64_PLT32") {
            write(
                tree,
                relocs,
                &text.replace(
                    "case R_X86_64_PC32:",
                    "case R_X86_64_PC32:\n\tcase R_X86_64_PLT32:",
                ),
            )?;
            plan.applied.push("relocs-plt32".into());
        }
    }

    // Perl >= 5.22 rejects defined(@array).
    replace_if_present(
        tree,
        "kernel/timeconst.pl",
        "if (!defined(@val)) {",
        "if (!@val) {",
        "timeconst-defined-array",
        &mut plan,
    )?;

    Ok(plan)
}

fn read(tree: &Path, relative: &str) -> Result<String, String> {
    fs::read_to_string(tree.join(relative))
        .map_err(|e| format!("{}: {e}", tree.join(relative).display()))
}

fn write(tree: &Path, relative: &str, text: &str) -> Result<(), String> {
    fs::write(tree.join(relative), text)
        .map_err(|e| format!("{}: {e}", tree.join(relative).display()))
}

fn replace_if_present(
    tree: &Path,
    relative: &str,
    from: &str,
    to: &str,
    name: &str,
    plan: &mut CompatPlan,
) -> Result<(), String> {
    if !tree.join(relative).exists() {
        return Ok(());
    }
    let text = read(tree, relative)?;
    if text.contains(from) {
        write(tree, relative, &text.replace(from, to))?;
        plan.applied.push(name.into());
    }
    Ok(())
}

/// Finds `early_idt_handlers[NUM_EXCEPTION_VECTORS][<size>]` in the x86 headers and pads each
/// stub in `head_64.S` to that size.
fn pad_early_idt_stubs(tree: &Path, plan: &mut CompatPlan) -> Result<(), String> {
    let head = "arch/x86/kernel/head_64.S";
    if !tree.join(head).exists() {
        return Ok(());
    }
    let text = read(tree, head)?;
    if !text.contains("early_idt_handlers") || text.contains(".fill early_idt_handler") {
        return Ok(());
    }
    let mut size = None;
    for header in [
        "arch/x86/include/asm/segment.h",
        "arch/x86/include/asm/desc.h",
        "arch/x86/include/asm/processor.h",
    ] {
        let Ok(contents) = fs::read_to_string(tree.join(header)) else {
            continue;
        };
        let marker = "early_idt_handlers[NUM_EXCEPTION_VECTORS][";
        if let Some(at) = contents.find(marker) {
            let expression = contents[at + marker.len()..]
                .split(']')
                .next()
                .unwrap_or("");
            size = expression
                .split('+')
                .map(|term| term.trim().parse::<u32>().ok())
                .sum::<Option<u32>>();
            break;
        }
    }
    let size = size.ok_or("fix early-idt-padding: no `early_idt_handlers[NUM_EXCEPTION_VECTORS][N]` declaration found")?;
    let mut out = String::with_capacity(text.len() + 64);
    let mut in_stubs = false;
    let mut padded = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim();
        if trimmed == ".rept NUM_EXCEPTION_VECTORS" {
            in_stubs = true;
        } else if trimmed == ".endr" {
            in_stubs = false;
        } else if in_stubs && trimmed.replace(' ', "") == "i=i+1" {
            out.push_str(&format!(
                "\t.fill early_idt_handlers + i*{size} - ., 1, 0xcc\n"
            ));
            padded = true;
        }
    }
    if !padded {
        return Err(format!(
            "fix early-idt-padding: no `i = i + 1` inside `.rept NUM_EXCEPTION_VECTORS` in {head}"
        ));
    }
    write(tree, head, &out)?;
    plan.applied.push(format!("early-idt-padding-{size}"));
    Ok(())
}

/// A source, identified, ready to unpack.
enum Unpack {
    Archive(PathBuf),
    Dir(PathBuf),
    Git { repo: PathBuf, commit: String },
}

struct SourceInput {
    /// Stable identity for the cache key.
    identity: String,
    unpack: Unpack,
    provenance: BTreeMap<String, String>,
}

/// Finds, downloads or mirrors the source; `Err(Acquisition)` is an unavailable kernel.
fn source_input(
    spec: &KernelSpec,
    source: &BuildSource,
    ctx: &AcquireContext,
) -> Result<std::result::Result<SourceInput, Acquisition>> {
    let unavailable = |reason: String| Ok(Err(Acquisition::Unavailable { reason }));
    match source {
        BuildSource::Tarball { url, sha256 } => {
            let (blob, pinned_in) = match pinned_download(&spec.id, url, sha256.as_deref(), ctx)? {
                Ok(found) => found,
                Err(unavailable) => return Ok(Err(unavailable)),
            };
            Ok(Ok(SourceInput {
                identity: format!("tarball {}", blob.sha256),
                provenance: BTreeMap::from([
                    ("source_url".to_owned(), url.clone()),
                    ("source_sha256".to_owned(), blob.sha256.clone()),
                    ("sha256_pinned_in".to_owned(), pinned_in.to_owned()),
                ]),
                unpack: Unpack::Archive(blob.path),
            }))
        }
        BuildSource::LocalTarball(path) => {
            let path = ctx.resolve_path(path);
            let (sha256, _) = match hash_file(&path) {
                Ok(found) => found,
                Err(error) => return unavailable(format!("{}: {error}", path.display())),
            };
            Ok(Ok(SourceInput {
                identity: format!("tarball {sha256}"),
                provenance: BTreeMap::from([
                    ("source_path".to_owned(), path.display().to_string()),
                    ("source_sha256".to_owned(), sha256),
                ]),
                unpack: Unpack::Archive(path),
            }))
        }
        BuildSource::Dir(path) => {
            let path = ctx.resolve_path(path);
            if !path.join("Makefile").is_file() {
                return unavailable(format!(
                    "{} is not a kernel tree (no Makefile)",
                    path.display()
                ));
            }
            let listing =
                tree_fingerprint(&path).with_context(|| format!("listing {}", path.display()))?;
            Ok(Ok(SourceInput {
                identity: format!("dir {} {listing}", path.display()),
                provenance: BTreeMap::from([
                    ("source_dir".to_owned(), path.display().to_string()),
                    ("source_listing_sha256".to_owned(), listing),
                ]),
                unpack: Unpack::Dir(path),
            }))
        }
        BuildSource::Git { repo, rev } => {
            let local = ctx.resolve_path(Path::new(repo));
            let repo_dir = if local.exists() {
                local
            } else {
                match git_mirror(repo, &ctx.cache)? {
                    Ok(mirror) => mirror,
                    Err(reason) => return unavailable(reason),
                }
            };
            let output = Command::new("git")
                .arg("-C")
                .arg(&repo_dir)
                .args(["rev-parse", "--verify", "--quiet"])
                .arg(format!("{rev}^{{commit}}"))
                .output()
                .context("running git rev-parse")?;
            if !output.status.success() {
                return unavailable(format!("git: no commit `{rev}` in {repo}"));
            }
            let commit = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            Ok(Ok(SourceInput {
                identity: format!("git {commit}"),
                provenance: BTreeMap::from([
                    ("source_git".to_owned(), repo.clone()),
                    ("source_rev".to_owned(), rev.clone()),
                    ("source_commit".to_owned(), commit.clone()),
                ]),
                unpack: Unpack::Git {
                    repo: repo_dir,
                    commit,
                },
            }))
        }
    }
}

/// A bare mirror of a remote repository in the cache, created or updated now.
fn git_mirror(url: &str, cache: &Cache) -> Result<OrReason<PathBuf>> {
    let mirror = cache
        .root()
        .join("git")
        .join(format!("{}.git", &sha256_hex(url.as_bytes())[..16]));
    let _lock = cache.lock_key(&format!("git:{url}"))?;
    let host = crate::obtain::cache::host_of(url);
    if mirror.exists() {
        if !cache.is_offline() {
            let output = Command::new("git")
                .arg("-C")
                .arg(&mirror)
                .args(["fetch", "--quiet", "--prune", "origin"])
                .output();
            if let Ok(output) = output {
                if !output.status.success() {
                    eprintln!(
                        "git: updating the mirror of {url} failed ({}); using it as it is",
                        last_line(&output.stderr)
                    );
                }
            }
        }
        return Ok(Ok(mirror));
    }
    if cache.is_offline() {
        return Ok(Err(format!("offline and not cached: {url}")));
    }
    fs::create_dir_all(mirror.parent().expect("mirror has a parent"))
        .context("creating the git mirror directory")?;
    let output = Command::new("git")
        .args(["clone", "--mirror", "--quiet", url])
        .arg(&mirror)
        .output()
        .context("running git clone")?;
    if !output.status.success() {
        let _ = fs::remove_dir_all(&mirror);
        return Ok(Err(format!(
            "{host} unreachable: git clone {url}: {}",
            last_line(&output.stderr)
        )));
    }
    Ok(Ok(mirror))
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// sha256 over the sorted (path, size, mtime, mode) of every file under `root`, `.git` excluded.
fn tree_fingerprint(root: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let mut lines = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir)? {
            let item = item?;
            let path = item.path();
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                if item.file_name() != ".git" {
                    stack.push(path);
                }
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            lines.push(format!(
                "{relative}\t{}\t{}.{}\t{:o}",
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.mode()
            ));
        }
    }
    lines.sort();
    Ok(sha256_hex(lines.join("\n").as_bytes()))
}

/// How a git revision is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuildMode {
    /// In the persistent build directory of its repository and configuration
    /// ([`super::build_dir`]), with ccache: `make` redoes what changed since the last revision.
    #[default]
    Incremental,
    /// From `git archive` into a fresh directory, without ccache: every revision from nothing.
    Cold,
}

/// What every build of one acquisition shares.
struct Job<'a> {
    spec: &'a KernelSpec,
    ctx: &'a AcquireContext,
    toolchain: &'a Toolchain,
    fragment: &'a Path,
    log_path: PathBuf,
}

/// A finished build in `out`, before it is stored.
struct Built {
    version: KernelVersion,
    image_path: PathBuf,
    config_path: PathBuf,
    release: String,
}

pub(super) fn acquire(
    spec: &KernelSpec,
    source: &BuildSource,
    ctx: &AcquireContext,
) -> Result<Acquisition> {
    if let Some(reason) = crate::obtain::prereq::toolchain_missing_reason() {
        return Ok(Acquisition::Unavailable { reason });
    }
    let toolchain = match Toolchain::probe() {
        Ok(toolchain) => toolchain,
        Err(reason) => return Ok(Acquisition::Unavailable { reason }),
    };
    let fragment = ctx.config_fragment();
    let fragment = fragment
        .canonicalize()
        .with_context(|| format!("reading the config fragment {}", fragment.display()))?;
    let (fragment_sha256, _) =
        hash_file(&fragment).with_context(|| format!("hashing {}", fragment.display()))?;

    let input = match source_input(spec, source, ctx)? {
        Ok(input) => input,
        Err(unavailable) => return Ok(unavailable),
    };
    // What makes two builds of one source the same build: also the persistent build
    // directory's configuration, so a new fragment, compiler or fix set never reuses objects.
    let configuration = format!(
        "compat {COMPAT_VERSION}\nfragment {fragment_sha256}\ngcc {}\nld {}\n",
        toolchain.gcc, toolchain.ld
    );
    let key_text = format!(
        "compat {COMPAT_VERSION}\nsource {}\nfragment {fragment_sha256}\ngcc {}\nld {}\n",
        input.identity, toolchain.gcc, toolchain.ld
    );
    let build_key = format!("build:{}", sha256_hex(key_text.as_bytes()));
    let mut provenance = input.provenance.clone();
    provenance.insert("source".to_owned(), "build".to_owned());
    provenance.insert("config_fragment_sha256".to_owned(), fragment_sha256);
    provenance.insert("compiler".to_owned(), toolchain.gcc.clone());
    provenance.insert("linker".to_owned(), toolchain.ld.clone());

    let _lock = ctx.cache.lock_key(&build_key)?;
    if let Some(entry) = ctx.cache.entry(&build_key)? {
        if let Some(blob) = ctx.cache.valid_blob(&entry.blob)? {
            provenance.extend(entry.meta);
            return Ok(KernelImage::from_blob(blob, provenance));
        }
    }

    let started = Instant::now();
    let job = Job {
        spec,
        ctx,
        toolchain: &toolchain,
        fragment: &fragment,
        log_path: ctx.cache.root().join("logs").join(format!(
            "build-{}-{}.log",
            spec.id,
            &build_key[6..18]
        )),
    };
    // Both hold their directory (and, for a build directory, its lock) until the image is stored.
    let built = match (&input.unpack, ctx.build_mode) {
        (Unpack::Git { repo, commit }, BuildMode::Incremental) => {
            build_incremental(&job, repo, commit, &configuration, &mut provenance)?
        }
        _ => build_once(&job, &input.unpack, &mut provenance)?,
    };
    let (built, _held) = match built {
        Ok(built) => built,
        Err(reason) => return Ok(Acquisition::Unavailable { reason }),
    };
    let image = ctx.cache.insert_file(&built.image_path)?;
    let config_blob = ctx.cache.insert_file(&built.config_path)?;
    let seconds = started.elapsed().as_secs();
    provenance.insert("build_seconds".to_owned(), seconds.to_string());
    eprintln!(
        "build {}: linux {} ({}) built in {seconds} s, {} ({}; ccache {}){}",
        spec.id,
        built.version,
        built.release,
        provenance["build_mode"],
        provenance["build_start"],
        provenance["ccache"],
        provenance
            .get("build_dir")
            .map_or(String::new(), |dir| format!(" in {dir}")),
    );

    let mut meta = BTreeMap::from([
        ("kernel_version".to_owned(), built.version.to_string()),
        ("kernel_release".to_owned(), built.release),
        ("config_sha256".to_owned(), config_blob.sha256.clone()),
        (
            "config_path".to_owned(),
            config_blob.path.display().to_string(),
        ),
        ("build_log".to_owned(), job.log_path.display().to_string()),
    ]);
    for key in [
        "compat",
        "build_seconds",
        "build_mode",
        "build_start",
        "build_dir",
        "ccache",
        "ccache_hits",
        "ccache_misses",
        "config_absent",
    ] {
        if let Some(value) = provenance.get(key) {
            meta.insert(key.to_owned(), value.clone());
        }
    }
    let mut inputs = vec![config_blob.sha256.clone()];
    if let Some(source_sha) = provenance.get("source_sha256") {
        if ctx.cache.blob_path(source_sha).exists() {
            inputs.push(source_sha.clone());
        }
    }
    ctx.cache
        .put_entry(&build_key, &image, inputs, meta.clone())?;
    provenance.extend(meta);
    Ok(KernelImage::from_blob(image, provenance))
}

/// What keeps a build's directory alive (a temporary directory, or a locked build directory)
/// until its image is stored: held for its `Drop` only.
type Held = Box<dyn std::any::Any>;

/// A one-off build: the source unpacked (archived, copied) into a fresh directory, built from
/// nothing without ccache (its absolute paths are new each time, so ccache could never hit).
fn build_once(
    job: &Job,
    unpack_from: &Unpack,
    provenance: &mut BTreeMap<String, String>,
) -> Result<OrReason<(Built, Held)>> {
    let work = job.ctx.cache.work_dir(&format!("build-{}-", job.spec.id))?;
    let src_parent = work.path().join("src");
    let out = work.path().join("out");
    fs::create_dir_all(&src_parent).context("creating the build directory")?;
    fs::create_dir_all(&out).context("creating the build directory")?;

    let unpack_progress = Progress::start("unpack", &job.spec.id, None);
    let tree = match unpack(unpack_from, &src_parent)? {
        Ok(tree) => tree,
        Err(reason) => {
            unpack_progress.finish_failed();
            return Ok(Err(reason));
        }
    };
    unpack_progress.finish_with("source tree ready");
    let (version, plan) = match version_and_fixes(job, &tree, provenance)? {
        Ok(found) => found,
        Err(reason) => return Ok(Err(reason)),
    };
    provenance.insert("build_mode".to_owned(), "cold".to_owned());
    provenance.insert(
        "build_start".to_owned(),
        "fresh directory, one-off build".to_owned(),
    );
    provenance.insert("ccache".to_owned(), "off (one-off build)".to_owned());
    Ok(
        make_image(job, &tree, &out, version, &plan, None, provenance)?
            .map(|built| (built, Box::new(work) as Held)),
    )
}

/// A git revision built in the persistent build directory of its repository: checked out over
/// the last revision built there, fixed, and made with ccache; `make` redoes what changed.
fn build_incremental(
    job: &Job,
    repo: &Path,
    commit: &str,
    configuration: &str,
    provenance: &mut BTreeMap<String, String>,
) -> Result<OrReason<(Built, Held)>> {
    let git_dir = match build_dir::git_dir_of(repo)? {
        Ok(git_dir) => git_dir,
        Err(reason) => return Ok(Err(reason)),
    };
    let cache_root = job.ctx.cache.root();
    let dir = BuildDir::open(
        cache_root,
        &git_dir,
        &build_dir::key(&git_dir, configuration),
    )?;
    provenance.insert("build_dir".to_owned(), dir.root().display().to_string());
    let checkout_progress = Progress::start("checkout", &job.spec.id, None);
    let (start, undone) = match dir.checkout(commit)? {
        Ok(found) => found,
        Err(reason) => {
            checkout_progress.finish_failed();
            return Ok(Err(reason));
        }
    };
    checkout_progress.finish_with(&start.describe());
    let tree = dir.tree();
    let (version, plan) = match version_and_fixes(job, &tree, provenance)? {
        Ok(found) => found,
        Err(reason) => return Ok(Err(reason)),
    };
    dir.keep_unchanged_edits(undone)?;
    let ccache = ccache::available().then(|| Ccache {
        dir: cache_root.join(CCACHE_DIR),
        stats_log: dir.root().join("ccache-stats.log"),
    });
    if let Some(ccache) = &ccache {
        ccache.reset_stats()?;
    }
    dir.begin_build(commit)?;
    let built = make_image(
        job,
        &tree,
        &dir.out(),
        version,
        &plan,
        ccache.as_ref(),
        provenance,
    )?;
    if built.is_ok() {
        dir.finish_build()?;
    }
    let stats = ccache.as_ref().map(Ccache::stats).transpose()?;
    let mode = match (&start, stats.and_then(|s| s.hit_rate())) {
        (start, _) if !start.is_clean() => "incremental",
        (_, Some(rate)) if rate >= 0.5 => "ccache",
        _ => "cold",
    };
    provenance.insert("build_mode".to_owned(), mode.to_owned());
    provenance.insert("build_start".to_owned(), start.describe());
    match stats {
        Some(stats) => {
            provenance.insert("ccache".to_owned(), stats.describe());
            provenance.insert("ccache_hits".to_owned(), stats.hits.to_string());
            provenance.insert("ccache_misses".to_owned(), stats.misses.to_string());
        }
        None => {
            provenance.insert(
                "ccache".to_owned(),
                "off (not installed; apt-get install ccache)".to_owned(),
            );
        }
    }
    Ok(built.map(|built| (built, Box::new(dir) as Held)))
}

/// The tree's version, then the compatibility fixes it needs, recorded in the provenance.
fn version_and_fixes(
    job: &Job,
    tree: &Path,
    provenance: &mut BTreeMap<String, String>,
) -> Result<OrReason<(KernelVersion, CompatPlan)>> {
    let version = match KernelVersion::of_tree(tree) {
        Ok(version) => version,
        Err(reason) => return Ok(Err(reason)),
    };
    provenance.insert("kernel_version".to_owned(), version.to_string());
    if version.at_least(4, 14) && !Path::new("/usr/include/gelf.h").exists() {
        return Ok(Err(format!("building {version} needs libelf headers (on Debian or Ubuntu: apt-get install libelf-dev)")));
    }
    let plan = match compat_fixes(tree, version, job.toolchain) {
        Ok(plan) => plan,
        Err(reason) => return Ok(Err(format!("linux {version}: {reason}"))),
    };
    provenance.insert(
        "compat".to_owned(),
        if plan.applied.is_empty() {
            "none".to_owned()
        } else {
            plan.applied.join(",")
        },
    );
    provenance.insert("compat_version".to_owned(), COMPAT_VERSION.to_string());
    Ok(Ok((version, plan)))
}

/// The make variables of `plan`, with the compiler behind ccache when there is one.
fn make_vars(plan: &CompatPlan, ccache: bool) -> Vec<String> {
    let mut vars = plan.make_vars.clone();
    if ccache {
        match vars.iter_mut().find(|v| v.starts_with("CC=")) {
            Some(cc) => *cc = format!("CC=ccache {}", &cc["CC=".len()..]),
            None => vars.push("CC=ccache gcc".to_owned()),
        }
    }
    vars
}

/// `allnoconfig` + the fragment, the configuration checked, then `bzImage`, in `out`.
fn make_image(
    job: &Job,
    tree: &Path,
    out: &Path,
    version: KernelVersion,
    plan: &CompatPlan,
    ccache: Option<&Ccache>,
    provenance: &mut BTreeMap<String, String>,
) -> Result<OrReason<Built>> {
    let log_path = &job.log_path;
    let mut log =
        fs::File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    writeln!(
        log,
        "# build of {} (linux {version}) with {}; compat: {}",
        job.spec.id,
        job.toolchain.gcc,
        plan.applied.join(",")
    )
    .context("writing the build log")?;
    let log = Arc::new(Mutex::new(log));
    let vars = make_vars(plan, ccache.is_some());
    let env = ccache.map(Ccache::env).unwrap_or_default();
    let make = |targets: &[&str], jobs: usize| -> Result<MakeOutcome> {
        let mut args: Vec<String> = vec![
            "-C".into(),
            tree.display().to_string(),
            format!("O={}", out.display()),
            "ARCH=x86_64".into(),
            format!("KCONFIG_ALLCONFIG={}", job.fragment.display()),
            "KBUILD_BUILD_USER=harness".into(),
            "KBUILD_BUILD_HOST=harness".into(),
            format!("-j{jobs}"),
        ];
        args.extend(vars.iter().cloned());
        args.extend(targets.iter().map(|t| (*t).to_owned()));
        run_make(&args, &env, &job.spec.id, &log)
    };

    // Every revision is configured afresh, exactly as a cold build would be: a .config carried
    // over from another revision could differ in a symbol that revision added or dropped.
    let mut configure = make(&["allnoconfig"], 1)?;
    if configure.success {
        configure = make(&["olddefconfig"], 1)?;
    }
    if !configure.success {
        return Ok(Err(
            configure.failure(&format!("configuring linux {version}"), log_path)
        ));
    }
    let config_path = out.join(".config");
    let config = fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let missing: Vec<&str> = REQUIRED_OPTIONS
        .iter()
        .copied()
        .filter(|o| !config_enabled(&config, o))
        .collect();
    if !missing.is_empty() {
        return Ok(Err(format!(
            "linux {version}: allnoconfig + minimal.config lacks {}",
            missing.join(", ")
        )));
    }
    let absent: Vec<&str> = OPTIONAL_OPTIONS
        .iter()
        .copied()
        .filter(|o| !config_enabled(&config, o))
        .collect();
    if !absent.is_empty() {
        provenance.insert("config_absent".to_owned(), absent.join(","));
    }

    let build = make(&["bzImage"], job.ctx.jobs.max(1))?;
    if !build.success {
        return Ok(Err(
            build.failure(&format!("building linux {version}"), log_path)
        ));
    }
    let image_path = out.join("arch/x86/boot/bzImage");
    if !super::is_bzimage(&image_path)
        .with_context(|| format!("reading {}", image_path.display()))?
    {
        return Ok(Err(format!("{} is not a boot image", image_path.display())));
    }
    let release = fs::read_to_string(out.join("include/config/kernel.release"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(Ok(Built {
        version,
        image_path,
        config_path,
        release,
    }))
}

fn config_enabled(config: &str, option: &str) -> bool {
    config
        .lines()
        .any(|line| line.strip_prefix(option).is_some_and(|rest| rest == "=y"))
}

/// Unpacks the source under `parent`; returns the tree's root (the directory with the Makefile).
fn unpack(unpack: &Unpack, parent: &Path) -> Result<OrReason<PathBuf>> {
    match unpack {
        Unpack::Archive(path) => {
            let mut file =
                fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let mut magic = [0u8; 6];
            let n = file
                .read(&mut magic)
                .with_context(|| format!("reading {}", path.display()))?;
            let file =
                fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let reader: Box<dyn Read> = match &magic[..n] {
                [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Box::new(xz2::read::XzDecoder::new(file)),
                [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
                [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(file)?),
                _ if is_plain_tar(path)? => Box::new(file),
                _ => {
                    return Ok(Err(format!(
                        "{}: not a .tar, .tar.xz, .tar.gz or .tar.zst",
                        path.display()
                    )))
                }
            };
            if let Err(error) = unpack_tar_safely(
                std::io::BufReader::with_capacity(1 << 20, reader),
                parent,
                |_| true,
            ) {
                return Ok(Err(format!("unpacking {}: {error:#}", path.display())));
            }
        }
        Unpack::Dir(dir) => {
            let target = parent.join("linux");
            let output = Command::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg(dir.join("."))
                .arg(&target)
                .output()
                .context("running cp")?;
            if !output.status.success() {
                return Ok(Err(format!(
                    "copying {}: {}",
                    dir.display(),
                    last_line(&output.stderr)
                )));
            }
            if target.join(".config").exists() || target.join("include/config").exists() {
                // An in-tree build was made there; out-of-tree builds refuse such trees.
                let output = Command::new("make")
                    .arg("-C")
                    .arg(&target)
                    .arg("mrproper")
                    .output()
                    .context("running make mrproper")?;
                if !output.status.success() {
                    return Ok(Err(format!(
                        "make mrproper in the copy of {}: {}",
                        dir.display(),
                        last_line(&output.stderr)
                    )));
                }
            }
        }
        Unpack::Git { repo, commit } => {
            let target = parent.join("linux");
            fs::create_dir_all(&target).context("creating the source directory")?;
            let mut child = Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["archive", "--format=tar", commit])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("running git archive")?;
            let stdout = child.stdout.take().expect("piped");
            let unpacked = unpack_tar_safely(
                std::io::BufReader::with_capacity(1 << 20, stdout),
                &target,
                |_| true,
            );
            let output = child
                .wait_with_output()
                .context("waiting for git archive")?;
            if !output.status.success() {
                return Ok(Err(format!(
                    "git archive {commit} in {}: {}",
                    repo.display(),
                    last_line(&output.stderr)
                )));
            }
            if let Err(error) = unpacked {
                return Ok(Err(format!("unpacking git archive {commit}: {error:#}")));
            }
        }
    }
    if parent.join("Makefile").is_file() {
        return Ok(Ok(parent.to_owned()));
    }
    let mut roots = Vec::new();
    for item in fs::read_dir(parent).with_context(|| format!("reading {}", parent.display()))? {
        let path = item?.path();
        if path.join("Makefile").is_file() {
            roots.push(path);
        }
    }
    match roots.as_slice() {
        [one] => Ok(Ok(one.clone())),
        _ => Ok(Err(
            "the source holds no single top-level directory with a Makefile".to_owned(),
        )),
    }
}

fn is_plain_tar(path: &Path) -> Result<bool> {
    let mut header = [0u8; 262];
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(file.read_exact(&mut header).is_ok() && &header[257..262] == b"ustar")
}

struct MakeOutcome {
    success: bool,
    status: String,
    /// Lines that look like the compiler's or make's own errors, in order, at most 20.
    errors: Vec<String>,
    /// The last lines of output.
    tail: Vec<String>,
}

impl MakeOutcome {
    fn failure(&self, what: &str, log: &Path) -> String {
        let mut lines = if self.errors.is_empty() {
            self.tail.clone()
        } else {
            self.errors.clone()
        };
        if lines.len() > 20 {
            lines.drain(..lines.len() - 20);
        }
        format!(
            "{what} failed ({}); full log: {}\n{}",
            self.status,
            log.display(),
            lines.join("\n")
        )
    }
}

fn is_error_line(line: &str) -> bool {
    line.contains("error:")
        || line.contains("Error:")
        || line.contains("Error ")
        || line.contains("undefined reference")
        || line.contains("*** ")
        || line.contains("No rule to make target")
}

/// Runs make with `args`, sending stdout and stderr to `log` line by line and showing progress.
fn run_make(
    args: &[String],
    env: &[(&str, std::ffi::OsString)],
    label: &str,
    log: &Arc<Mutex<fs::File>>,
) -> Result<MakeOutcome> {
    let target = args.last().cloned().unwrap_or_default();
    let progress = Arc::new(Progress::start(
        "build",
        &format!("{label} ({target})"),
        None,
    ));
    {
        let mut file = log.lock().expect("log lock");
        writeln!(file, "$ make {}", args.join(" ")).context("writing the build log")?;
    }
    let mut cmd = Command::new("make");
    cmd.args(args)
        .env("LC_ALL", "C")
        // Settings from the caller's environment that would change what gets built.
        .env_remove("KBUILD_OUTPUT")
        .env_remove("KCONFIG_CONFIG")
        .env_remove("KCFLAGS")
        .env_remove("CROSS_COMPILE")
        .env_remove("ARCH")
        .env_remove("MAKEFLAGS")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A group of its own, registered for the interrupt handler: a harness stopped by SIGINT or
    // SIGTERM (a CI timeout) takes `make -j` and every compiler under it down too.
    let mut child = crate::process_group::spawn(&mut cmd).context("running make")?;
    let shared = Arc::new(Mutex::new((
        Vec::<String>::new(),
        std::collections::VecDeque::<String>::new(),
    )));
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let log = Arc::clone(log);
        let shared = Arc::clone(&shared);
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut file) = log.lock() {
                    let _ = writeln!(file, "{line}");
                }
                progress.message(line.trim());
                let mut state = shared.lock().expect("make output lock");
                if is_error_line(&line) && state.0.len() < 40 {
                    state.0.push(line.clone());
                }
                state.1.push_back(line);
                if state.1.len() > 20 {
                    state.1.pop_front();
                }
            }
        })
    })
    .collect();
    let status = child.wait().context("waiting for make");
    crate::process_group::unregister(child.id() as i32);
    let status = status?;
    for reader in readers {
        let _ = reader.join();
    }
    let progress = Arc::try_unwrap(progress).ok();
    let (errors, tail) = std::mem::take(&mut *shared.lock().expect("make output lock"));
    if let Some(progress) = progress {
        if status.success() {
            progress.finish_with("done");
        } else {
            progress.finish_failed();
        }
    }
    Ok(MakeOutcome {
        success: status.success(),
        status: format!("make {target}: {status}"),
        errors,
        tail: tail.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toolchain() -> Toolchain {
        Toolchain {
            gcc: "gcc (Debian 12.2.0-14) 12.2.0".into(),
            gcc_major: 12,
            ld: "GNU ld 2.40".into(),
            default_pie: true,
        }
    }

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    const MAKEFILE_3_9: &str =
        "VERSION = 3\nPATCHLEVEL = 9\nSUBLEVEL = 11\nEXTRAVERSION =\nNAME = Unicycling Gorilla\n";

    /// The shape of 3.9's early exception stubs and their C declaration.
    const HEAD_64_3_9: &str = "ENTRY(early_idt_handlers)\n\ti = 0\n\t.rept NUM_EXCEPTION_VECTORS\n\t.if (EXCEPTION_ERRCODE_MASK >> i) & 1\n\tASM_NOP2\n\t.else\n\tpushq $0\n\t.endif\n\tpushq $i\n\tjmp early_idt_handler\n\ti = i + 1\n\t.endr\nENDPROC(early_idt_handlers)\n";
    const SEGMENT_3_9: &str = "#ifndef __ASSEMBLY__\nextern const char early_idt_handlers[NUM_EXCEPTION_VECTORS][2+2+5];\n#endif\n";

    #[test]
    fn reads_the_version_from_the_makefile() {
        let dir = tree(&[("Makefile", MAKEFILE_3_9)]);
        assert_eq!(
            KernelVersion::of_tree(dir.path()).unwrap(),
            KernelVersion {
                major: 3,
                minor: 9,
                patch: 11
            }
        );
        assert_eq!(
            KernelVersion::of_tree(dir.path()).unwrap().to_string(),
            "3.9.11"
        );
    }

    #[test]
    fn old_tree_gets_every_fix() {
        let dir = tree(&[
            ("Makefile", MAKEFILE_3_9),
            ("include/linux/compiler-gcc4.h", "/* gcc4 */\n"),
            ("include/acpi/acpiosxf.h", "acpi_status __initdata acpi_os_initialize(void);\n"),
            ("arch/x86/boot/compressed/Makefile", "KBUILD_CFLAGS := -m$(BITS) -D__KERNEL__ $(LINUX_INCLUDE) -O2\nKBUILD_CFLAGS += -fno-strict-aliasing -fPIC\n"),
            ("arch/x86/kernel/head_64.S", HEAD_64_3_9),
            ("arch/x86/include/asm/segment.h", SEGMENT_3_9),
            ("arch/x86/tools/relocs.c", "\tswitch (r_type) {\n\tcase R_X86_64_PC32:\n\t\tbreak;\n"),
            ("kernel/timeconst.pl", "\t@val = @{$canned_values{$hz}};\n\tif (!defined(@val)) {\n"),
        ]);
        let version = KernelVersion::of_tree(dir.path()).unwrap();
        let plan = compat_fixes(dir.path(), version, &toolchain()).unwrap();
        assert_eq!(plan.make_vars, ["CC=gcc -fno-pie -no-pie -std=gnu89"]);
        assert_eq!(
            plan.applied,
            [
                "no-pie",
                "std-gnu89",
                "compiler-gcc12.h",
                "acpi-os-initialize-init",
                "decompressor-no-sse",
                "early-idt-padding-9",
                "relocs-plt32",
                "timeconst-defined-array"
            ]
        );
        let read = |p: &str| fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("include/linux/compiler-gcc12.h"), "/* gcc4 */\n");
        assert!(read("include/acpi/acpiosxf.h")
            .contains("acpi_status __init acpi_os_initialize(void);"));
        assert!(read("arch/x86/boot/compressed/Makefile")
            .contains("-O2\nKBUILD_CFLAGS += -mno-mmx -mno-sse\n"));
        assert!(read("arch/x86/kernel/head_64.S")
            .contains("\ti = i + 1\n\t.fill early_idt_handlers + i*9 - ., 1, 0xcc\n\t.endr\n"));
        assert!(
            read("arch/x86/tools/relocs.c").contains("case R_X86_64_PC32:\n\tcase R_X86_64_PLT32:")
        );
        assert!(read("kernel/timeconst.pl").contains("if (!@val) {"));

        // Applying again changes nothing: every fix recognises its own work.
        let again = compat_fixes(dir.path(), version, &toolchain()).unwrap();
        assert_eq!(again.applied, ["no-pie", "std-gnu89"]);
    }

    #[test]
    fn modern_tree_needs_no_fix() {
        let dir = tree(&[
            (
                "Makefile",
                "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nKBUILD_CFLAGS += -fno-PIE\n",
            ),
            (
                "arch/x86/boot/compressed/Makefile",
                "KBUILD_CFLAGS := -m$(BITS) -O2\nKBUILD_CFLAGS += -mno-mmx -mno-sse\n",
            ),
            (
                "arch/x86/tools/relocs.c",
                "\tcase R_X86_64_PC32:\n\tcase R_X86_64_PLT32:\n",
            ),
        ]);
        let version = KernelVersion::of_tree(dir.path()).unwrap();
        assert_eq!(
            compat_fixes(dir.path(), version, &toolchain()).unwrap(),
            CompatPlan::default()
        );
    }

    #[test]
    fn stubs_without_their_anchor_are_refused() {
        let dir = tree(&[
            ("Makefile", MAKEFILE_3_9),
            ("arch/x86/kernel/head_64.S", "early_idt_handlers:\n\t.rept NUM_EXCEPTION_VECTORS\n\tjmp early_idt_handler\n\t.endr\n"),
            ("arch/x86/include/asm/segment.h", SEGMENT_3_9),
        ]);
        let version = KernelVersion::of_tree(dir.path()).unwrap();
        let error = compat_fixes(dir.path(), version, &toolchain()).unwrap_err();
        assert!(error.contains("no `i = i + 1`"), "{error}");
    }

    #[test]
    fn config_options_must_be_built_in() {
        let config = "CONFIG_IPV6=y\n# CONFIG_NET_NS is not set\nCONFIG_UNIX=m\n";
        assert!(config_enabled(config, "CONFIG_IPV6"));
        assert!(!config_enabled(config, "CONFIG_NET_NS"));
        assert!(!config_enabled(config, "CONFIG_UNIX"));
        assert!(!config_enabled(config, "CONFIG_IPV"));
    }

    /// The kernel source Debian ships for this machine's release (`apt-get install linux-source-6.1`
    /// on bookworm gives `/usr/src/linux-source-6.1.tar.xz`).
    fn debian_linux_source() -> PathBuf {
        let mut found: Vec<PathBuf> = fs::read_dir("/usr/src")
            .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        found.retain(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-source-") && n.ends_with(".tar.xz"))
        });
        found.sort();
        found.pop().expect("no /usr/src/linux-source-*.tar.xz: install one (Debian: apt-get install linux-source-6.1)")
    }

    /// Builds Debian's kernel source through the real build path with the minimal config. Takes
    /// about 5 minutes on 2 cores the first time; then the image comes from the shared cache.
    /// RPH_SKIP_BUILD=1 skips it for a quick inner loop (CI never sets it).
    #[test]
    fn builds_debian_linux_source_with_the_minimal_config() {
        if std::env::var_os("RPH_SKIP_BUILD").is_some() {
            eprintln!("RPH_SKIP_BUILD is set: not building a kernel");
            return;
        }
        let tarball = debian_linux_source();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned();
        let ctx = AcquireContext::new(&root, false).unwrap();
        let spec = KernelSpec {
            id: "linux-source".into(),
            version: None,
            source: crate::matrix::KernelSource::Build(BuildSource::LocalTarball(tarball.clone())),
            boot: Default::default(),
        };
        let started = Instant::now();
        let acquisition = crate::obtain::acquire::acquire(&spec, &ctx).unwrap();
        let Acquisition::Image(image) = acquisition else {
            panic!("building {} failed: {acquisition:?}", tarball.display())
        };
        eprintln!(
            "{} -> {} in {:.0} s",
            tarball.display(),
            image.path.display(),
            started.elapsed().as_secs_f64()
        );
        let p = &image.provenance;
        assert_eq!(p["source"], "build");
        assert_eq!(p["source_sha256"], hash_file(&tarball).unwrap().0);
        assert!(
            p["kernel_release"].starts_with(&p["kernel_version"]),
            "{p:?}"
        );
        assert_eq!(
            p["compat"], "none",
            "a current tree needs no compatibility fix: {p:?}"
        );
        assert!(crate::obtain::acquire::is_bzimage(&image.path).unwrap());
        let config = fs::read_to_string(&p["config_path"]).unwrap();
        assert_eq!(sha256_hex(config.as_bytes()), p["config_sha256"]);
        for option in REQUIRED_OPTIONS.iter().chain(OPTIONAL_OPTIONS) {
            assert!(
                config_enabled(&config, option),
                "{option} missing from the built config"
            );
        }
        assert!(
            config.contains("# CONFIG_MODULES is not set"),
            "modules must be off"
        );
        assert!(!p.contains_key("config_absent"), "{p:?}");
    }

    fn context_at(root: &Path) -> AcquireContext {
        AcquireContext {
            repo_root: root.to_owned(),
            cache: Cache::open(&root.join("cache"), true).unwrap(),
            jobs: 1,
            debian_mirror: crate::obtain::acquire::debian::DEFAULT_MIRROR.to_owned(),
            build_mode: Default::default(),
        }
    }

    fn spec_of(source: BuildSource) -> KernelSpec {
        KernelSpec {
            id: "t".into(),
            version: None,
            source: crate::matrix::KernelSource::Build(source.clone()),
            boot: Default::default(),
        }
    }

    fn prepare(
        source: BuildSource,
        ctx: &AcquireContext,
    ) -> (SourceInput, PathBuf, tempfile::TempDir) {
        let input = match source_input(&spec_of(source.clone()), &source, ctx).unwrap() {
            Ok(input) => input,
            Err(unavailable) => panic!("{unavailable:?}"),
        };
        let work = tempfile::tempdir().unwrap();
        let tree = unpack(&input.unpack, work.path()).unwrap().unwrap();
        (input, tree, work)
    }

    #[test]
    fn a_directory_source_is_copied_cleaned_and_keyed_by_its_listing() {
        let root = tempfile::tempdir().unwrap();
        let ctx = context_at(root.path());
        let dir = tree(&[
            ("Makefile", MAKEFILE_3_9),
            ("kernel/fork.c", "int x;\n"),
            (".config", "CONFIG_X=y\n"),
        ]);
        // `make mrproper` on the copy needs a real kernel Makefile; without the in-tree build
        // marker the copy is used as it is.
        fs::remove_file(dir.path().join(".config")).unwrap();
        let (input, tree, _work) = prepare(BuildSource::Dir(dir.path().to_owned()), &ctx);
        assert_eq!(
            fs::read_to_string(tree.join("kernel/fork.c")).unwrap(),
            "int x;\n"
        );
        assert_eq!(KernelVersion::of_tree(&tree).unwrap().to_string(), "3.9.11");
        let (again, _, _work2) = prepare(BuildSource::Dir(dir.path().to_owned()), &ctx);
        assert_eq!(input.identity, again.identity, "same tree, same key");
        fs::write(dir.path().join("kernel/fork.c"), "int y; /* longer */\n").unwrap();
        let (changed, _, _work3) = prepare(BuildSource::Dir(dir.path().to_owned()), &ctx);
        assert_ne!(
            input.identity, changed.identity,
            "an edited tree is a different build"
        );
    }

    #[test]
    fn a_git_source_is_archived_at_its_commit() {
        let root = tempfile::tempdir().unwrap();
        let ctx = context_at(root.path());
        let repo = tree(&[("Makefile", MAKEFILE_3_9)]);
        let git = |args: &[&str]| {
            let status = Command::new("git")
                .arg("-C")
                .arg(repo.path())
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "commit.gpgsign=false",
                ])
                .args(args)
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&status.stderr)
            );
            String::from_utf8_lossy(&status.stdout).trim().to_owned()
        };
        git(&["init", "-q"]);
        git(&["add", "Makefile"]);
        git(&["commit", "-q", "-m", "v3.9.11"]);
        git(&["tag", "v3.9.11"]);
        let commit = git(&["rev-parse", "HEAD"]);
        fs::write(
            repo.path().join("Makefile"),
            "VERSION = 4\nPATCHLEVEL = 4\nSUBLEVEL = 0\n",
        )
        .unwrap();
        git(&["commit", "-q", "-am", "v4.4"]);

        let source = BuildSource::Git {
            repo: repo.path().display().to_string(),
            rev: "v3.9.11".into(),
        };
        let (input, tree, _work) = prepare(source, &ctx);
        assert_eq!(input.identity, format!("git {commit}"));
        assert_eq!(input.provenance["source_commit"], commit);
        assert_eq!(
            KernelVersion::of_tree(&tree).unwrap().to_string(),
            "3.9.11",
            "the tagged tree, not the work tree"
        );

        let missing = BuildSource::Git {
            repo: repo.path().display().to_string(),
            rev: "v9.9".into(),
        };
        let Err(Acquisition::Unavailable { reason }) =
            source_input(&spec_of(missing.clone()), &missing, &ctx).unwrap()
        else {
            panic!("a missing revision was found")
        };
        assert!(reason.starts_with("git: no commit `v9.9` in "), "{reason}");
    }

    #[test]
    fn a_missing_local_tarball_is_unavailable() {
        let root = tempfile::tempdir().unwrap();
        let ctx = context_at(root.path());
        let source = BuildSource::LocalTarball(root.path().join("linux-nothing.tar.xz"));
        let Err(Acquisition::Unavailable { reason }) =
            source_input(&spec_of(source.clone()), &source, &ctx).unwrap()
        else {
            panic!("a missing tarball was found")
        };
        assert!(
            reason.contains("linux-nothing.tar.xz: No such file"),
            "{reason}"
        );
    }

    /// A tree whose make targets are tiny: configuration writes every required option, and
    /// `bzImage` runs the real compiler on a file with a syntax error.
    const FAILING_MAKEFILE: &str = "VERSION = 3\nPATCHLEVEL = 9\nSUBLEVEL = 0\n\
allnoconfig:\n\tfor o in $(OPTIONS); do echo \"$$o=y\"; done > $(O)/.config\n\
olddefconfig:\n\t@true\n\
bzImage:\n\t$(CC) -c $(CURDIR)/broken.c -o $(O)/broken.o\n";

    #[test]
    fn a_failed_build_is_unavailable_with_the_compilers_own_error() {
        let root = tempfile::tempdir().unwrap();
        let fragment = root.path().join("images/config/minimal.config");
        fs::create_dir_all(fragment.parent().unwrap()).unwrap();
        fs::write(&fragment, "CONFIG_64BIT=y\n").unwrap();
        let ctx = context_at(root.path());
        let options = REQUIRED_OPTIONS.join(" ");
        let makefile = format!("OPTIONS = {options}\n{FAILING_MAKEFILE}");
        let dir = tree(&[
            ("Makefile", &makefile),
            ("broken.c", "int main(void) { return 0 }\n"),
        ]);
        let spec = spec_of(BuildSource::Dir(dir.path().to_owned()));
        let Acquisition::Unavailable { reason } =
            crate::obtain::acquire::acquire(&spec, &ctx).unwrap()
        else {
            panic!("a broken tree built")
        };
        let first = reason.lines().next().unwrap();
        assert!(
            first.starts_with(
                "building linux 3.9.0 failed (make bzImage: exit status: 2); full log: "
            ),
            "{reason}"
        );
        assert!(
            reason.contains("broken.c:1:26: error: expected ';' before '}' token"),
            "{reason}"
        );
        let log = first.rsplit("full log: ").next().unwrap();
        let log = fs::read_to_string(log).unwrap();
        assert!(
            log.contains("CC=gcc -fno-pie -no-pie -std=gnu89"),
            "the 3.x compatibility flags reached make: {log}"
        );
    }
}
