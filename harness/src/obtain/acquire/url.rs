//! Prebuilt kernels at a URL (a `.deb`, e.g. Ubuntu's mainline builds, or a raw bzImage), and the
//! `kernels.lock` file that pins what a URL served the first time.
//!
//! The expected sha256 is, in order: the one in kernels.yaml, the one `kernels.lock` recorded at
//! the first download, or none (first download: the hash is recorded in `kernels.lock`, which
//! users commit). A later download that does not match is refused, naming both hashes. Build
//! tarballs without a pinned hash go through the same lock file.
//!
//! `kernels.lock` is JSON: `{ "format": 1, "sha256": { "<url>": "<hex>" } }`, sorted by URL.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{fetch_failure, image_from_deb, is_bzimage, AcquireContext, Acquisition, KernelImage};
use crate::matrix::UrlKind;
use crate::obtain::cache::{Blob, Cache, FetchError};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    format: u32,
    sha256: BTreeMap<String, String>,
}

const LOCK_FORMAT: u32 = 1;

fn read_lock(path: &Path) -> Result<LockFile> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let lock: LockFile = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?;
            if lock.format != LOCK_FORMAT {
                bail!(
                    "{}: format {} is not the {LOCK_FORMAT} this harness writes",
                    path.display(),
                    lock.format
                );
            }
            Ok(lock)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(LockFile {
            format: LOCK_FORMAT,
            ..Default::default()
        }),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// The hash `kernels.lock` holds for `url`.
pub fn locked_sha256(lock_path: &Path, url: &str) -> Result<Option<String>> {
    Ok(read_lock(lock_path)?.sha256.remove(url))
}

/// Adds `url → sha256` to `kernels.lock` (atomically, under a lock so parallel runs don't lose
/// each other's lines).
pub fn record_sha256(lock_path: &Path, cache: &Cache, url: &str, sha256: &str) -> Result<()> {
    let _guard = cache.lock_key(&format!("lockfile:{}", lock_path.display()))?;
    let mut lock = read_lock(lock_path)?;
    lock.sha256.insert(url.to_owned(), sha256.to_owned());
    let mut json = serde_json::to_vec_pretty(&lock).expect("lock file serializes");
    json.push(b'\n');
    crate::results::write_atomically(lock_path, &json)
}

/// A pinned download: the blob, and where its hash was pinned (`kernels.yaml`, `kernels.lock`, or
/// `kernels.lock (recorded now)`). A mismatch becomes the reason of an unavailable kernel.
pub(super) fn pinned_download(
    label: &str,
    url: &str,
    pinned: Option<&str>,
    ctx: &AcquireContext,
) -> Result<std::result::Result<(Blob, &'static str), Acquisition>> {
    let lock_path = ctx.lock_file();
    let (expected, pinned_in) = match pinned {
        Some(sha) => (Some(sha.to_owned()), "kernels.yaml"),
        None => match locked_sha256(&lock_path, url)? {
            Some(sha) => (Some(sha), "kernels.lock"),
            None => (None, "kernels.lock (recorded now)"),
        },
    };
    let blob = match ctx.cache.download(url, label, expected.as_deref()) {
        Ok(blob) => blob,
        Err(FetchError::Mismatch { url, expected, actual }) => {
            return Ok(Err(Acquisition::Unavailable {
                reason: format!(
                    "sha256 mismatch for {url}: expected {expected} (pinned in {pinned_in}), got {actual}; refusing it"
                ),
            }))
        }
        Err(error) => return fetch_failure(error).map(Err),
    };
    if expected.is_none() {
        record_sha256(&lock_path, &ctx.cache, url, &blob.sha256)?;
        eprintln!("kernels.lock: pinned {url} to sha256 {}", blob.sha256);
    }
    Ok(Ok((blob, pinned_in)))
}

pub(super) fn acquire(
    id: &str,
    url: &str,
    pinned: Option<&str>,
    kind: UrlKind,
    ctx: &AcquireContext,
) -> Result<Acquisition> {
    let (blob, pinned_in) = match pinned_download(id, url, pinned, ctx)? {
        Ok(found) => found,
        Err(unavailable) => return Ok(unavailable),
    };
    let mut provenance = BTreeMap::from([
        ("source".to_owned(), "url".to_owned()),
        ("url".to_owned(), url.to_owned()),
        ("sha256_pinned_in".to_owned(), pinned_in.to_owned()),
    ]);
    match kind {
        UrlKind::Bzimage => {
            if !is_bzimage(&blob.path)
                .with_context(|| format!("reading {}", blob.path.display()))?
            {
                return Ok(Acquisition::Unavailable {
                    reason: format!("{url} is not an x86 kernel image (no HdrS boot header)"),
                });
            }
            Ok(KernelImage::from_blob(blob, provenance))
        }
        UrlKind::Deb => {
            provenance.insert("deb_sha256".to_owned(), blob.sha256.clone());
            let key = format!("deb-image:{}", blob.sha256);
            let _lock = ctx.cache.lock_key(&key)?;
            if let Some(entry) = ctx.cache.entry(&key)? {
                if let Some(image) = ctx.cache.valid_blob(&entry.blob)? {
                    provenance.extend(entry.meta);
                    return Ok(KernelImage::from_blob(image, provenance));
                }
            }
            let (image, member, release) = match image_from_deb(&blob.path, &ctx.cache)? {
                Ok(found) => found,
                Err(reason) => {
                    return Ok(Acquisition::Unavailable {
                        reason: format!("{url}: {reason}"),
                    })
                }
            };
            let meta = BTreeMap::from([
                ("image_member".to_owned(), member),
                ("kernel_release".to_owned(), release),
            ]);
            ctx.cache
                .put_entry(&key, &image, vec![blob.sha256.clone()], meta.clone())?;
            provenance.extend(meta);
            Ok(KernelImage::from_blob(image, provenance))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_records_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache"), true).unwrap();
        let lock = dir.path().join("kernels.lock");
        assert_eq!(locked_sha256(&lock, "http://a/k").unwrap(), None);
        record_sha256(&lock, &cache, "http://b/k", &"b".repeat(64)).unwrap();
        record_sha256(&lock, &cache, "http://a/k", &"a".repeat(64)).unwrap();
        assert_eq!(
            locked_sha256(&lock, "http://a/k").unwrap(),
            Some("a".repeat(64))
        );
        let text = std::fs::read_to_string(&lock).unwrap();
        assert!(
            text.find("http://a/k").unwrap() < text.find("http://b/k").unwrap(),
            "sorted by URL: {text}"
        );
    }

    fn context_in(repo_root: &Path, cache_root: &Path) -> AcquireContext {
        AcquireContext {
            repo_root: repo_root.to_owned(),
            cache: Cache::open(cache_root, false).unwrap(),
            jobs: 1,
            debian_mirror: crate::obtain::acquire::debian::DEFAULT_MIRROR.to_owned(),
            build_mode: Default::default(),
        }
    }

    /// A small real .deb (sid's linux-base-cloud-amd64, about a kilobyte) and its index SHA256.
    fn small_real_deb() -> (String, String) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned();
        let shared = AcquireContext::new(&root, false).unwrap();
        let (index, _) = crate::obtain::acquire::debian::package_index(
            "sid",
            &shared.debian_mirror,
            &shared.cache,
        )
        .unwrap()
        .unwrap();
        let stanza = index
            .get("linux-base-cloud-amd64")
            .expect("sid has linux-base-cloud-amd64");
        (
            format!("{}/{}", shared.debian_mirror, stanza.filename),
            stanza.sha256.clone(),
        )
    }

    #[test]
    fn a_download_not_matching_its_pinned_sha256_is_refused() {
        let (url, real_sha256) = small_real_deb();
        let dir = tempfile::tempdir().unwrap();
        let ctx = context_in(dir.path(), &dir.path().join("cache"));
        let wrong = "0".repeat(64);
        let Acquisition::Unavailable { reason } =
            acquire("x", &url, Some(&wrong), UrlKind::Deb, &ctx).unwrap()
        else {
            panic!("a mismatching download was accepted")
        };
        assert_eq!(
            reason,
            format!("sha256 mismatch for {url}: expected {wrong} (pinned in kernels.yaml), got {real_sha256}; refusing it")
        );
        assert!(
            ctx.cache.blobs().unwrap().is_empty(),
            "nothing of the refused download is stored"
        );
    }

    #[test]
    fn first_download_is_pinned_in_kernels_lock_and_a_later_mismatch_refused() {
        let (url, real_sha256) = small_real_deb();
        let dir = tempfile::tempdir().unwrap();
        let ctx = context_in(dir.path(), &dir.path().join("cache"));
        // This package holds no kernel, so the row is unavailable, but the pin is recorded.
        let Acquisition::Unavailable { reason } =
            acquire("x", &url, None, UrlKind::Deb, &ctx).unwrap()
        else {
            panic!("a package without a kernel gave an image")
        };
        assert!(reason.contains("holds no kernel image"), "{reason}");
        assert_eq!(
            locked_sha256(&ctx.lock_file(), &url).unwrap(),
            Some(real_sha256.clone())
        );

        // Someone (or something) changed what the lock says: the next download is refused.
        let wrong = "f".repeat(64);
        record_sha256(&ctx.lock_file(), &ctx.cache, &url, &wrong).unwrap();
        let fresh = context_in(dir.path(), &dir.path().join("cache2"));
        let Acquisition::Unavailable { reason } =
            acquire("x", &url, None, UrlKind::Deb, &fresh).unwrap()
        else {
            panic!("a mismatching download was accepted")
        };
        assert_eq!(
            reason,
            format!("sha256 mismatch for {url}: expected {wrong} (pinned in kernels.lock), got {real_sha256}; refusing it")
        );
    }
}
