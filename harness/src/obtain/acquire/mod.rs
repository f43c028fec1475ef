//! Obtaining a kernel image for one row of the matrix: [`acquire`] turns a [`KernelSpec`] into a
//! bzImage on disk plus its provenance, or says precisely why it cannot.
//!
//! Order of precedence:
//! 1. **A user's own image.** A file `images/<id>/bzImage`, `images/<id>/vmlinuz` or a single
//!    `images/<id>/vmlinuz-*` overrides whatever `kernels.yaml` says for that id (except `host`):
//!    nothing is downloaded or built, and the provenance says `source: override`.
//! 2. The spec's source: [`debian`] (Packages index → meta-package → `.deb` → image), [`build`]
//!    (vanilla sources + `images/config/minimal.config`), [`url`] (prebuilt `.deb` or bzImage,
//!    sha256-pinned in kernels.yaml or `kernels.lock`), [`path`] (a local image), or the host.
//!
//! The world failing is data, not an error: an unreachable host, a missing file, a failed build,
//! a hash mismatch all end as [`Acquisition::Unavailable`] with a reason that names the host,
//! URL, path or compiler error (the reason does not repeat the word "unavailable"). `Err` is for
//! the harness failing at its own job (a full disk, an unwritable cache).
//!
//! Every image that came through the cache is recorded under the cache key `kernel:<id>`, which
//! is what `harness images list` shows and what `prune` keeps.

pub mod build;
pub mod build_dir;
pub mod debian;
pub mod path;
pub mod url;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::matrix::{KernelSource, KernelSpec};
use crate::obtain::cache::{Blob, Cache, FetchError};

/// A value, or the reason this machine cannot have it (an unreachable host, a missing file):
/// the inner layer of `anyhow::Result<OrReason<T>>`, whose outer `Err` is the harness failing.
pub type OrReason<T> = std::result::Result<T, String>;

/// What a run needs to obtain kernels.
pub struct AcquireContext {
    /// The checkout: `images/<id>/` overrides, `images/config/minimal.config`, `kernels.lock`;
    /// relative paths in kernels.yaml are relative to it.
    pub repo_root: PathBuf,
    pub cache: Cache,
    /// `make -j` for kernel builds.
    pub jobs: usize,
    /// Base URL of the Debian archive (`http://deb.debian.org/debian`).
    pub debian_mirror: String,
    /// How git revisions are built: incrementally in a persistent build directory (default), or
    /// each from nothing.
    pub build_mode: build::BuildMode,
}

impl AcquireContext {
    /// A context with defaults: cache at `images/cache`, one make job per CPU, Debian's CDN.
    pub fn new(repo_root: &Path, offline: bool) -> Result<AcquireContext> {
        AcquireContext::with_cache(
            repo_root,
            &crate::obtain::cache::default_root(repo_root),
            offline,
        )
    }

    /// The same with the cache at `cache_root` (the benchmark keeps its cold and incremental
    /// runs apart this way).
    pub fn with_cache(
        repo_root: &Path,
        cache_root: &Path,
        offline: bool,
    ) -> Result<AcquireContext> {
        let cache = Cache::open(cache_root, offline)?;
        let jobs = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Ok(AcquireContext {
            repo_root: repo_root.to_owned(),
            cache,
            jobs,
            debian_mirror: debian::DEFAULT_MIRROR.to_owned(),
            build_mode: build::BuildMode::default(),
        })
    }

    pub fn images_dir(&self) -> PathBuf {
        self.repo_root.join("images")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.repo_root.join("kernels.lock")
    }

    pub fn config_fragment(&self) -> PathBuf {
        self.repo_root
            .join("images")
            .join("config")
            .join("minimal.config")
    }

    /// A path from kernels.yaml: absolute as given, relative to the checkout otherwise.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.repo_root.join(path)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquisition {
    Image(KernelImage),
    /// The host kernel: run the guest as a process in a network namespace.
    Host,
    /// This machine cannot obtain the kernel; `reason` says why, precisely.
    Unavailable {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    /// A bzImage, as QEMU's `-kernel` takes it.
    pub path: PathBuf,
    /// Where it came from: `source` (debian, build, url, path, override) and per source the
    /// package, version, suite, URL, sha256 of inputs and of the image, config hash, ….
    pub provenance: BTreeMap<String, String>,
}

impl KernelImage {
    /// The release the image says it is (`3.8.0`, `6.1.0-28-cloud-amd64`): the first word of
    /// the version string the x86 boot protocol's `kernel_version` field points at. `None` for
    /// an image too old or too odd to carry one.
    pub fn release(&self) -> Option<String> {
        image_release(&self.path).ok().flatten()
    }
}

/// See [`KernelImage::release`].
pub fn image_release(path: &Path) -> std::io::Result<Option<String>> {
    let mut header = vec![0u8; 0x210];
    let mut file = fs::File::open(path)?;
    file.read_exact(&mut header)?;
    let protocol = u16::from_le_bytes([header[0x206], header[0x207]]);
    if &header[0x202..0x206] != b"HdrS" || protocol < 0x0200 {
        return Ok(None);
    }
    let pointer = u16::from_le_bytes([header[0x20e], header[0x20f]]);
    if pointer == 0 {
        return Ok(None);
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(u64::from(pointer) + 0x200))?;
    let mut text = [0u8; 128];
    let n = file.read(&mut text)?;
    let text = String::from_utf8_lossy(&text[..n]);
    let release = text.split(['\0', ' ']).next().unwrap_or_default();
    Ok(
        (!release.is_empty() && release.starts_with(|c: char| c.is_ascii_digit()))
            .then(|| release.to_owned()),
    )
}

/// The provenance key of the image's own digest, which `record_kernel` reads back.
const IMAGE_SHA256: &str = "image_sha256";

impl KernelImage {
    /// The image `blob` (cached, or a file of the user's), its provenance completed with its own
    /// digest.
    fn from_blob(blob: Blob, mut provenance: BTreeMap<String, String>) -> Acquisition {
        provenance.insert(IMAGE_SHA256.to_owned(), blob.sha256);
        Acquisition::Image(KernelImage {
            path: blob.path,
            provenance,
        })
    }
}

/// Obtains the kernel of `spec` (see the module documentation for the order of precedence).
pub fn acquire(spec: &KernelSpec, ctx: &AcquireContext) -> Result<Acquisition> {
    if matches!(spec.source, KernelSource::Host {}) {
        return Ok(Acquisition::Host);
    }
    if let Some(image) = user_override(&spec.id, ctx)? {
        return Ok(image);
    }
    let acquisition = match &spec.source {
        KernelSource::Debian { suite, package } => debian::acquire(&spec.id, suite, package, ctx)?,
        KernelSource::Build(source) => build::acquire(spec, source, ctx)?,
        KernelSource::Url { url, sha256, kind } => {
            url::acquire(&spec.id, url, sha256.as_deref(), *kind, ctx)?
        }
        KernelSource::Path { path } => path::acquire(&ctx.resolve_path(path))?,
        KernelSource::Host {} => unreachable!("handled above"),
    };
    if let Acquisition::Image(image) = &acquisition {
        if image.path.starts_with(ctx.cache.root()) {
            record_kernel(&spec.id, image, ctx)?;
        }
    }
    Ok(acquisition)
}

/// Remembers which image `id` resolved to last, for `harness images list` and `prune`.
fn record_kernel(id: &str, image: &KernelImage, ctx: &AcquireContext) -> Result<()> {
    let sha256 = image
        .provenance
        .get(IMAGE_SHA256)
        .cloned()
        .unwrap_or_default();
    let size = fs::metadata(&image.path)
        .with_context(|| format!("reading {}", image.path.display()))?
        .len();
    let blob = Blob {
        sha256,
        path: image.path.clone(),
        size,
    };
    let inputs = ["deb_sha256", "source_sha256", "config_sha256"]
        .iter()
        .filter_map(|k| image.provenance.get(*k))
        .filter(|sha| ctx.cache.blob_path(sha).exists())
        .cloned()
        .collect();
    // How old the package index was is a fact of this run, not of the image.
    let mut meta = image.provenance.clone();
    meta.remove("index_age_s");
    ctx.cache
        .put_entry(&format!("kernel:{id}"), &blob, inputs, meta)?;
    Ok(())
}

/// `images/<id>/bzImage`, `vmlinuz` or a single `vmlinuz-*`, when the user put one there.
fn user_override(id: &str, ctx: &AcquireContext) -> Result<Option<Acquisition>> {
    let dir = ctx.images_dir().join(id);
    let Ok(read) = fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut candidates = Vec::new();
    for item in read {
        let item = item.with_context(|| format!("reading {}", dir.display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name == "bzImage" || name == "vmlinuz" || name.starts_with("vmlinuz-") {
            candidates.push(item.path());
        }
    }
    candidates.sort();
    let chosen = match candidates.as_slice() {
        [] => return Ok(None),
        [one] => one.clone(),
        several => match several
            .iter()
            .find(|p| p.ends_with("bzImage") || p.ends_with("vmlinuz"))
        {
            Some(preferred) => preferred.clone(),
            None => {
                return Ok(Some(Acquisition::Unavailable {
                    reason: format!(
                        "{} holds several images ({}); keep one, or name it bzImage",
                        dir.display(),
                        several
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }))
            }
        },
    };
    let acquisition = path::acquire(&chosen)?;
    Ok(Some(match acquisition {
        Acquisition::Image(mut image) => {
            image.provenance.insert("source".into(), "override".into());
            Acquisition::Image(image)
        }
        other => other,
    }))
}

/// The reason a failed download gives, or the harness error it really is.
pub(crate) fn fetch_failure(error: FetchError) -> Result<Acquisition> {
    match error {
        FetchError::Local(error) => Err(error),
        world => Ok(Acquisition::Unavailable {
            reason: world.to_string(),
        }),
    }
}

/// Whether `path` holds a Linux x86 boot image (the `HdrS` magic of the boot protocol at 0x202).
pub fn is_bzimage(path: &Path) -> std::io::Result<bool> {
    let mut header = [0u8; 0x206];
    let mut file = fs::File::open(path)?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..])? {
            0 => return Ok(false),
            n => read += n,
        }
    }
    Ok(&header[0x202..0x206] == b"HdrS")
}

/// A path inside an archive, made relative and checked: absolute paths and `..` are refused.
pub fn archive_relative_path(raw: &Path) -> Result<PathBuf> {
    let mut clean = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => clean.push(part),
            Component::ParentDir => bail!(
                "archive entry `{}` climbs out of the destination (`..`)",
                raw.display()
            ),
            Component::RootDir | Component::Prefix(_) => {
                bail!("archive entry `{}` is an absolute path", raw.display())
            }
        }
    }
    Ok(clean)
}

/// Unpacks the entries of a tar stream that `wanted` selects into `dest`, refusing any entry
/// (selected or not) with an absolute path or `..`, and any selected link that would point
/// outside `dest`. Regular files, directories and in-tree symlinks are written; other kinds
/// (devices, fifos) are skipped. Returns the relative paths written.
pub fn unpack_tar_safely(
    reader: impl Read,
    dest: &Path,
    wanted: impl Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>> {
    let mut archive = tar::Archive::new(reader);
    let mut written = Vec::new();
    for entry in archive.entries().context("reading tar archive")? {
        let mut entry = entry.context("reading tar entry")?;
        let raw = entry.path().context("reading tar entry name")?.into_owned();
        let relative = archive_relative_path(&raw)?;
        if relative.as_os_str().is_empty() || !wanted(&relative) {
            continue;
        }
        let target = dest.join(&relative);
        ensure_no_symlink_between(dest, &relative)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            fs::create_dir_all(&target)
                .with_context(|| format!("creating {}", target.display()))?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
            let mtime = entry.header().mtime().ok();
            let mut file = fs::File::create(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            std::io::copy(&mut entry, &mut file)
                .with_context(|| format!("writing {}", target.display()))?;
            // Scripts in kernel trees must stay executable; mtimes keep make's view of the tree.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {}", target.display()))?;
            if let Some(mtime) = mtime {
                let _ = file
                    .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
            }
        } else if kind.is_symlink() || kind.is_hard_link() {
            let link = entry
                .link_name()
                .context("reading link target")?
                .with_context(|| {
                    format!(
                        "archive entry `{}` is a link without a target",
                        raw.display()
                    )
                })?;
            let link = link.into_owned();
            let resolved = if kind.is_symlink() {
                if link.is_absolute() {
                    bail!(
                        "archive entry `{}` links outside the destination (to `{}`)",
                        raw.display(),
                        link.display()
                    );
                }
                lexical_join(relative.parent().unwrap_or(Path::new("")), &link)
            } else {
                lexical_join(Path::new(""), &link)
            };
            let Some(resolved) = resolved else {
                bail!(
                    "archive entry `{}` links outside the destination (to `{}`)",
                    raw.display(),
                    link.display()
                );
            };
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            if kind.is_symlink() {
                std::os::unix::fs::symlink(&link, &target)
                    .with_context(|| format!("creating symlink {}", target.display()))?;
            } else {
                let source = dest.join(&resolved);
                fs::hard_link(&source, &target).with_context(|| {
                    format!("linking {} to {}", target.display(), source.display())
                })?;
            }
        } else {
            continue;
        }
        written.push(relative);
    }
    Ok(written)
}

/// `base/link` with `.` and `..` resolved lexically; `None` when it climbs above the root.
fn lexical_join(base: &Path, link: &Path) -> Option<PathBuf> {
    let mut parts: Vec<std::ffi::OsString> = base
        .components()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    for component in link.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(part) => parts.push(part.to_owned()),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Refuses to write through a symlink that an earlier entry planted in the destination.
fn ensure_no_symlink_between(dest: &Path, relative: &Path) -> Result<()> {
    let mut current = dest.to_owned();
    let components: Vec<_> = relative.components().collect();
    for component in &components[..components.len().saturating_sub(1)] {
        current.push(component);
        if let Ok(meta) = fs::symlink_metadata(&current) {
            if meta.file_type().is_symlink() {
                bail!(
                    "archive entry `{}` would be written through the symlink {}",
                    relative.display(),
                    current.display()
                );
            }
        }
    }
    Ok(())
}

/// Opens the data member of a `.deb` (`data.tar`, `.xz`, `.zst`, `.gz`) and hands its tar
/// stream to `use_tar`.
pub fn with_deb_data<T>(deb: &Path, use_tar: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
    let file = fs::File::open(deb).with_context(|| format!("opening {}", deb.display()))?;
    let mut archive = ar::Archive::new(file);
    while let Some(member) = archive.next_entry() {
        let mut member =
            member.with_context(|| format!("reading ar member of {}", deb.display()))?;
        let name = String::from_utf8_lossy(member.header().identifier())
            .trim_end_matches('/')
            .to_owned();
        let result = match name.as_str() {
            "data.tar" => use_tar(&mut member),
            "data.tar.xz" => use_tar(&mut xz2::read::XzDecoder::new(member)),
            "data.tar.zst" => {
                use_tar(&mut zstd::stream::read::Decoder::new(member).context("starting zstd")?)
            }
            "data.tar.gz" => use_tar(&mut flate2::read::GzDecoder::new(member)),
            other if other.starts_with("data.tar") => {
                bail!("{}: unsupported data member {other}", deb.display())
            }
            _ => continue,
        };
        return result.with_context(|| format!("unpacking {name} of {}", deb.display()));
    }
    bail!("{} has no data.tar member; is it a .deb?", deb.display())
}

/// Whether a path inside a kernel package is where Debian-style packages keep the image:
/// `boot/vmlinuz-<release>` (up to Debian 13, Ubuntu) or `usr/lib/modules/<release>/vmlinuz`
/// (Debian's 7.x `linux-binary-*` packages; also `lib/modules/...`).
pub fn is_packaged_image_path(relative: &Path) -> bool {
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        ["boot", name] => name.starts_with("vmlinuz-"),
        ["usr", "lib", "modules", _, "vmlinuz"] | ["lib", "modules", _, "vmlinuz"] => true,
        _ => false,
    }
}

/// The kernel image inside a `.deb`: extracted (safely) into a cache blob. Returns the blob, the
/// member's path and the release its path names. `Ok(Err(reason))` when the package holds no image.
pub fn image_from_deb(deb: &Path, cache: &Cache) -> Result<OrReason<(Blob, String, String)>> {
    let work = cache.work_dir("deb-")?;
    let written = with_deb_data(deb, |tar| {
        unpack_tar_safely(tar, work.path(), is_packaged_image_path)
    })?;
    let mut images: Vec<&PathBuf> = written
        .iter()
        .filter(|p| {
            is_packaged_image_path(p)
                && fs::symlink_metadata(work.path().join(p)).is_ok_and(|m| m.is_file())
        })
        .collect();
    images.sort();
    images.dedup();
    let member = match images.as_slice() {
        [] => {
            return Ok(Err(format!(
            "{} holds no kernel image (looked for boot/vmlinuz-* and usr/lib/modules/*/vmlinuz)",
            deb.display()
        )))
        }
        [one] => (*one).clone(),
        several => {
            return Ok(Err(format!(
                "{} holds several kernel images: {}",
                deb.display(),
                several
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let path = work.path().join(&member);
    if !is_bzimage(&path).with_context(|| format!("reading {}", path.display()))? {
        return Ok(Err(format!(
            "{} in {} is not an x86 boot image",
            member.display(),
            deb.display()
        )));
    }
    let release = release_from_member(&member);
    let blob = cache.insert_file(&path)?;
    Ok(Ok((blob, member.display().to_string(), release)))
}

fn release_from_member(member: &Path) -> String {
    let parts: Vec<&str> = member.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        ["boot", name] => name.trim_start_matches("vmlinuz-").to_owned(),
        [.., release, "vmlinuz"] => (*release).to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        builder.into_inner().unwrap()
    }

    fn file_header(size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header
    }

    /// tar::Builder refuses to write `..` itself, so the name goes straight into the header bytes.
    fn raw_name(header: &mut tar::Header, name: &str) {
        let bytes = header.as_old_mut();
        bytes.name = [0; 100];
        bytes.name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
    }

    #[test]
    fn entry_climbing_out_with_dotdot_is_refused() {
        let bytes = tar_with(|b| {
            let mut header = file_header(4);
            raw_name(&mut header, "boot/../../evil");
            b.append(&header, &b"evil"[..]).unwrap();
        });
        let dest = tempfile::tempdir().unwrap();
        let error = unpack_tar_safely(&bytes[..], &dest.path().join("out"), |_| true).unwrap_err();
        assert!(
            format!("{error:#}").contains("climbs out of the destination"),
            "{error:#}"
        );
        assert!(!dest.path().join("evil").exists());
    }

    #[test]
    fn absolute_entry_is_refused() {
        let bytes = tar_with(|b| {
            let mut header = file_header(4);
            raw_name(&mut header, "/tmp/evil-absolute");
            b.append(&header, &b"evil"[..]).unwrap();
        });
        let dest = tempfile::tempdir().unwrap();
        let error = unpack_tar_safely(&bytes[..], dest.path(), |_| true).unwrap_err();
        assert!(
            format!("{error:#}").contains("is an absolute path"),
            "{error:#}"
        );
    }

    #[test]
    fn symlink_escaping_then_written_through_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let bytes = tar_with(|b| {
            let mut link = tar::Header::new_gnu();
            link.set_entry_type(tar::EntryType::Symlink);
            link.set_size(0);
            b.append_link(
                &mut link,
                "boot",
                "../../../../../../../..".to_owned() + outside.path().to_str().unwrap(),
            )
            .unwrap();
            let mut header = file_header(4);
            b.append_data(&mut header, "boot/vmlinuz-evil", &b"evil"[..])
                .unwrap();
        });
        let dest = tempfile::tempdir().unwrap();
        let error = unpack_tar_safely(&bytes[..], dest.path(), |_| true).unwrap_err();
        assert!(
            format!("{error:#}").contains("links outside the destination"),
            "{error:#}"
        );
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn in_tree_symlink_is_kept_and_not_written_through() {
        let bytes = tar_with(|b| {
            let mut link = tar::Header::new_gnu();
            link.set_entry_type(tar::EntryType::Symlink);
            link.set_size(0);
            b.append_link(&mut link, "a/link", "../b").unwrap();
            let mut header = file_header(2);
            b.append_data(&mut header, "a/link/x", &b"hi"[..]).unwrap();
        });
        let dest = tempfile::tempdir().unwrap();
        let error = unpack_tar_safely(&bytes[..], dest.path(), |_| true).unwrap_err();
        assert!(
            format!("{error:#}").contains("written through the symlink"),
            "{error:#}"
        );
    }

    #[test]
    fn selected_files_are_unpacked_and_others_skipped() {
        let bytes = tar_with(|b| {
            b.append_data(&mut file_header(3), "./boot/vmlinuz-6.1.0-x", &b"img"[..])
                .unwrap();
            b.append_data(&mut file_header(3), "./usr/share/doc/x", &b"doc"[..])
                .unwrap();
        });
        let dest = tempfile::tempdir().unwrap();
        let written = unpack_tar_safely(&bytes[..], dest.path(), is_packaged_image_path).unwrap();
        assert_eq!(written, [PathBuf::from("boot/vmlinuz-6.1.0-x")]);
        assert_eq!(
            fs::read(dest.path().join("boot/vmlinuz-6.1.0-x")).unwrap(),
            b"img"
        );
        assert!(!dest.path().join("usr").exists());
    }

    #[test]
    fn packaged_image_paths() {
        assert!(is_packaged_image_path(Path::new(
            "boot/vmlinuz-6.1.0-50-cloud-amd64"
        )));
        assert!(is_packaged_image_path(Path::new(
            "usr/lib/modules/7.2.13+deb14-cloud-amd64/vmlinuz"
        )));
        assert!(!is_packaged_image_path(Path::new(
            "boot/config-6.1.0-50-cloud-amd64"
        )));
        assert!(!is_packaged_image_path(Path::new(
            "usr/lib/modules/7.2/kernel/vmlinuz"
        )));
        assert_eq!(
            release_from_member(Path::new(
                "usr/lib/modules/7.2.13+deb14-cloud-amd64/vmlinuz"
            )),
            "7.2.13+deb14-cloud-amd64"
        );
        assert_eq!(
            release_from_member(Path::new("boot/vmlinuz-6.1.0-50-cloud-amd64")),
            "6.1.0-50-cloud-amd64"
        );
    }

    fn fake_bzimage(path: &Path) -> Vec<u8> {
        let mut bytes = vec![0u8; 4096];
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        bytes[100] = path.as_os_str().len() as u8;
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, &bytes).unwrap();
        bytes
    }

    #[test]
    fn an_image_in_images_id_overrides_the_source() {
        let root = tempfile::tempdir().unwrap();
        let ctx = AcquireContext {
            repo_root: root.path().to_owned(),
            cache: Cache::open(&root.path().join("images/cache"), true).unwrap(),
            jobs: 1,
            debian_mirror: debian::DEFAULT_MIRROR.to_owned(),
            build_mode: Default::default(),
        };
        let spec = KernelSpec {
            id: "3.8".into(),
            version: Some("3.8".into()),
            source: KernelSource::Build(crate::matrix::BuildSource::Tarball {
                url: "https://cdn.kernel.org/pub/linux/kernel/v3.x/linux-3.8.13.tar.xz".into(),
                sha256: None,
            }),
            boot: Default::default(),
        };
        let fragment = root.path().join("images/config/minimal.config");
        fs::create_dir_all(fragment.parent().unwrap()).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        fs::copy(repo.join("images/config/minimal.config"), &fragment).unwrap();
        // Offline with nothing cached: the source itself is unavailable…
        let Acquisition::Unavailable { reason } = acquire(&spec, &ctx).unwrap() else {
            panic!("acquired from nothing")
        };
        assert_eq!(reason, "offline and not cached: https://cdn.kernel.org/pub/linux/kernel/v3.x/linux-3.8.13.tar.xz");
        // …but a user's image at images/3.8/vmlinuz-… is taken as it is, without any fetch.
        let placed = root.path().join("images/3.8/vmlinuz-3.8.13");
        let bytes = fake_bzimage(&placed);
        let Acquisition::Image(image) = acquire(&spec, &ctx).unwrap() else {
            panic!("override ignored")
        };
        assert_eq!(image.path, placed);
        assert_eq!(image.provenance["source"], "override");
        assert_eq!(
            image.provenance["image_sha256"],
            crate::obtain::cache::sha256_hex(&bytes)
        );
        // bzImage wins over other names.
        let preferred = root.path().join("images/3.8/bzImage");
        fake_bzimage(&preferred);
        let Acquisition::Image(image) = acquire(&spec, &ctx).unwrap() else {
            panic!("override ignored")
        };
        assert_eq!(image.path, preferred);
    }

    #[test]
    fn the_host_is_never_overridden() {
        let root = tempfile::tempdir().unwrap();
        fake_bzimage(&root.path().join("images/host/bzImage"));
        let ctx = AcquireContext {
            repo_root: root.path().to_owned(),
            cache: Cache::open(&root.path().join("images/cache"), true).unwrap(),
            jobs: 1,
            debian_mirror: debian::DEFAULT_MIRROR.to_owned(),
            build_mode: Default::default(),
        };
        let spec = KernelSpec {
            id: "host".into(),
            version: None,
            source: KernelSource::Host {},
            boot: Default::default(),
        };
        assert_eq!(acquire(&spec, &ctx).unwrap(), Acquisition::Host);
    }
}
