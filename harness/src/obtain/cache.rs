//! The download and build cache under `images/cache/` (git-ignored): content-addressed blobs plus
//! an index of named entries that point at them.
//!
//! Layout:
//! - `sha256/<hex>`: one blob per content hash. Written to a temporary file in the same directory,
//!   hashed while written, then renamed, so a blob is either whole or absent. Every use re-hashes
//!   the blob ([`Cache::valid_blob`]); a blob whose hash is wrong (a flipped byte) is deleted and
//!   the caller fetches or derives it again.
//! - `index/<sha256(key)>.json`: an [`Entry`] mapping a key (`url:<url>`, `debian-index:<suite>`,
//!   `deb-image:<deb sha>`, `build:<inputs hash>`, `kernel:<id>`) to a blob and its metadata. The
//!   file's mtime is its last use.
//! - `locks/`: one lock file per key ([`Cache::lock_key`]): two runs fetching or building the same
//!   thing wait for each other, different things proceed in parallel. `.lock` at the root is held
//!   shared by every [`Cache`] and exclusively by `prune`, so nothing is pruned under a run.
//! - `build/`: one-off build trees, deleted when a build ends; `logs/`: the output of each kernel
//!   build.
//! - `build-dirs/`: persistent build state, one checkout and one `O=` directory per git repository
//!   and configuration, reused across revisions (`acquire::build_dir`); `ccache/`: the compiler
//!   cache every such build uses (`obtain::ccache`).
//!
//! Offline mode: no network at all; a download that is not cached ends as
//! [`FetchError::Offline`] ("offline and not cached").
//!
//! Pruning ([`Cache::prune`]): an entry survives when it is `kernel:<id>` for an id in the current
//! kernels.yaml, or was used within `max_age` (30 days for `harness images prune`); blobs survive
//! when a surviving entry names them (as its blob or one of its inputs); everything else goes.
//! Build directories all go (they only make the next build faster; the next step of a bisection
//! then builds clean once), and the ccache is trimmed to a size limit the user sets
//! (`harness images prune --ccache-max-size`, 5G by default), which later builds keep to as well.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use fs2::FileExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How old an entry may get before `prune` drops it when no kernel of the matrix needs it.
pub const DEFAULT_PRUNE_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Persistent build directories under the cache root.
pub const BUILD_DIRS: &str = "build-dirs";

/// The ccache directory under the cache root.
pub const CCACHE_DIR: &str = "ccache";

/// The cache directory inside a checkout.
pub fn default_root(repo_root: &Path) -> PathBuf {
    repo_root.join("images").join("cache")
}

pub struct Cache {
    root: PathBuf,
    offline: bool,
    /// Held (shared, or exclusive for prune) for the life of this value.
    _root_lock: File,
}

/// A verified blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub sha256: String,
    pub path: PathBuf,
    pub size: u64,
}

/// A named pointer at a blob, with what is known about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub key: String,
    /// sha256 of the blob this key resolves to.
    pub blob: String,
    pub size: u64,
    /// Seconds since the epoch when the entry was written.
    pub created: u64,
    /// Blobs this one was derived from (the .deb an image came out of, a source tarball); kept
    /// alive by `prune` as long as this entry is.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Free-form provenance: url, package, version, suite, config hash, …
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// Why a download produced no blob. Every variant but `Local` is about the world, not the harness.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("offline and not cached: {url}")]
    Offline { url: String },
    #[error("{host} unreachable: {error}")]
    Unreachable {
        host: String,
        url: String,
        error: String,
    },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("sha256 mismatch for {url}: expected {expected}, got {actual}")]
    Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Local(#[from] anyhow::Error),
}

/// Copying into the store failed on the reading side (the network, for downloads) or ours.
enum CopyError {
    Read(std::io::Error),
    Local(anyhow::Error),
}

impl From<anyhow::Error> for CopyError {
    fn from(error: anyhow::Error) -> CopyError {
        CopyError::Local(error)
    }
}

/// An exclusive lock on one cache key, released on drop.
pub struct KeyLock {
    _file: File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobListing {
    pub sha256: String,
    pub size: u64,
    /// Keys of the entries that point at this blob (empty: unreferenced).
    pub keys: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub good: usize,
    /// (sha256 named, sha256 found) of each deleted blob.
    pub corrupt: Vec<(String, String)>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub entries_removed: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub build_dirs_removed: usize,
    /// Bytes the ccache holds after trimming.
    pub ccache_bytes: u64,
}

impl Cache {
    /// Opens (creating) the cache at `root`, holding a shared lock so `prune` waits for this run.
    pub fn open(root: &Path, offline: bool) -> Result<Cache> {
        Cache::open_with(root, offline, false)
    }

    /// Opens the cache for pruning: waits until no other run has it open.
    pub fn open_exclusive(root: &Path) -> Result<Cache> {
        Cache::open_with(root, true, true)
    }

    fn open_with(root: &Path, offline: bool, exclusive: bool) -> Result<Cache> {
        for dir in ["sha256", "index", "locks", "build", "logs"] {
            let path = root.join(dir);
            fs::create_dir_all(&path)
                .with_context(|| format!("creating cache directory {}", path.display()))?;
        }
        let lock_path = root.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        // fs2's methods by path: std's File grew inherent methods of the same names (Rust 1.89).
        let try_lock = if exclusive {
            FileExt::try_lock_exclusive(&lock)
        } else {
            FileExt::try_lock_shared(&lock)
        };
        if try_lock.is_err() {
            let what = if exclusive {
                "every other harness run"
            } else {
                "`harness images prune`"
            };
            eprintln!(
                "cache: waiting for {what} to release {}",
                lock_path.display()
            );
            let locked = if exclusive {
                FileExt::lock_exclusive(&lock)
            } else {
                FileExt::lock_shared(&lock)
            };
            locked.with_context(|| format!("locking {}", lock_path.display()))?;
        }
        Ok(Cache {
            root: root.to_owned(),
            offline,
            _root_lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// A fresh directory for building or unpacking, on the cache's file system.
    pub fn work_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.root.join("build"))
            .with_context(|| {
                format!(
                    "creating a work directory in {}",
                    self.root.join("build").display()
                )
            })
    }

    /// Blocks until this process holds the lock of `key`.
    pub fn lock_key(&self, key: &str) -> Result<KeyLock> {
        let path = self
            .root
            .join("locks")
            .join(format!("{}.lock", &sha256_hex(key.as_bytes())[..24]));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        FileExt::lock_exclusive(&file)
            .with_context(|| format!("locking {} ({key})", path.display()))?;
        Ok(KeyLock { _file: file })
    }

    /// The blob with this hash, re-hashed now. A blob whose content no longer matches its name
    /// is deleted (and reported on stderr) and `None` returned, so the caller fetches it again.
    pub fn valid_blob(&self, sha256: &str) -> Result<Option<Blob>> {
        let path = self.blob_path(sha256);
        let (actual, size) = match hash_file(&path) {
            Ok(found) => found,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        if actual != sha256 {
            eprintln!(
                "cache: {} is corrupt (content hashes to {actual}); deleted, fetching again",
                path.display()
            );
            fs::remove_file(&path)
                .with_context(|| format!("deleting corrupt blob {}", path.display()))?;
            return Ok(None);
        }
        Ok(Some(Blob {
            sha256: actual,
            path,
            size,
        }))
    }

    /// Copies a file into the store (hashing as it goes) and returns its blob.
    pub fn insert_file(&self, source: &Path) -> Result<Blob> {
        let mut input =
            File::open(source).with_context(|| format!("opening {}", source.display()))?;
        self.insert_reader(&mut input)
            .with_context(|| format!("storing {} in the cache", source.display()))
    }

    #[cfg(test)]
    pub fn insert_bytes(&self, bytes: &[u8]) -> Result<Blob> {
        self.insert_reader(&mut &bytes[..])
    }

    /// Streams `reader` into a temporary blob file, then renames it to its hash.
    pub fn insert_reader(&self, reader: &mut dyn Read) -> Result<Blob> {
        let (tmp, sha256, size) = self.write_temp(reader, None).map_err(|error| match error {
            CopyError::Read(error) => anyhow::Error::new(error).context("reading"),
            CopyError::Local(error) => error,
        })?;
        self.persist(tmp, &sha256, size)
    }

    fn write_temp(
        &self,
        reader: &mut dyn Read,
        mut progress: Option<&mut Progress>,
    ) -> Result<(tempfile::NamedTempFile, String, u64), CopyError> {
        let dir = self.root.join("sha256");
        let mut tmp = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(CopyError::Read(error)),
            };
            hasher.update(&buffer[..n]);
            tmp.write_all(&buffer[..n])
                .with_context(|| format!("writing {}", tmp.path().display()))?;
            size += n as u64;
            if let Some(progress) = progress.as_deref_mut() {
                progress.advance(n as u64);
            }
        }
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("syncing {}", tmp.path().display()))?;
        Ok((tmp, hex::encode(hasher.finalize()), size))
    }

    fn persist(&self, tmp: tempfile::NamedTempFile, sha256: &str, size: u64) -> Result<Blob> {
        let path = self.blob_path(sha256);
        // tempfile creates 0600; blobs are not secrets, and QEMU may run as another user.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .with_context(|| format!("chmod {}", tmp.path().display()))?;
        tmp.persist(&path)
            .with_context(|| format!("renaming into {}", path.display()))?;
        Ok(Blob {
            sha256: sha256.to_owned(),
            path,
            size,
        })
    }

    /// The blob at `url`: from the cache when a valid copy is known (by `expected` hash, or by a
    /// previous download of the same URL), else downloaded, hashed and, when `expected` is given,
    /// refused unless it matches. `label` names the download in progress output.
    pub fn download(
        &self,
        url: &str,
        label: &str,
        expected: Option<&str>,
    ) -> Result<Blob, FetchError> {
        let key = format!("url:{url}");
        let _lock = self.lock_key(&key)?;
        if let Some(expected) = expected {
            if let Some(blob) = self.valid_blob(expected)? {
                return Ok(blob);
            }
        } else if let Some(entry) = self.entry(&key)? {
            if let Some(blob) = self.valid_blob(&entry.blob)? {
                return Ok(blob);
            }
        }
        if self.offline {
            return Err(FetchError::Offline {
                url: url.to_owned(),
            });
        }
        let blob = self.fetch(url, label, expected)?;
        let mut meta = BTreeMap::new();
        meta.insert("url".to_owned(), url.to_owned());
        self.put_entry(&key, &blob, Vec::new(), meta)?;
        Ok(blob)
    }

    /// Downloads `url` into the store regardless of what is cached (used for indexes with a TTL).
    pub fn fetch(
        &self,
        url: &str,
        label: &str,
        expected: Option<&str>,
    ) -> Result<Blob, FetchError> {
        if self.offline {
            return Err(FetchError::Offline {
                url: url.to_owned(),
            });
        }
        let host = host_of(url);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(120))
            .user_agent(concat!("reuseport-harness/", env!("CARGO_PKG_VERSION")))
            .build();
        let response = match agent.get(url).call() {
            Ok(response) => response,
            Err(ureq::Error::Status(status, _)) => {
                return Err(FetchError::Http {
                    url: url.to_owned(),
                    status,
                })
            }
            Err(ureq::Error::Transport(error)) => {
                return Err(FetchError::Unreachable {
                    host,
                    url: url.to_owned(),
                    error: error.to_string(),
                })
            }
        };
        let total = response
            .header("Content-Length")
            .and_then(|v| v.parse::<u64>().ok());
        let mut progress = Progress::start("download", label, total);
        let mut reader = response.into_reader();
        let (tmp, actual, size) = match self.write_temp(&mut reader, Some(&mut progress)) {
            Ok(written) => written,
            Err(CopyError::Read(error)) => {
                // A read error mid-body is the network's fault, not ours.
                progress.finish_failed();
                return Err(FetchError::Unreachable {
                    host,
                    url: url.to_owned(),
                    error: error.to_string(),
                });
            }
            Err(CopyError::Local(error)) => {
                progress.finish_failed();
                return Err(FetchError::Local(
                    error.context(format!("downloading {url}")),
                ));
            }
        };
        if let Some(expected) = expected {
            if actual != expected {
                progress.finish_failed();
                // The temporary file is dropped, and with it the bad bytes.
                return Err(FetchError::Mismatch {
                    url: url.to_owned(),
                    expected: expected.to_owned(),
                    actual,
                });
            }
        }
        progress.finish(size);
        Ok(self.persist(tmp, &actual, size)?)
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.root
            .join("index")
            .join(format!("{}.json", sha256_hex(key.as_bytes())))
    }

    /// The entry for `key`, marking it used now.
    pub fn entry(&self, key: &str) -> Result<Option<Entry>> {
        let path = self.entry_path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let entry: Entry = match serde_json::from_slice(&bytes) {
            Ok(entry) => entry,
            Err(error) => {
                eprintln!(
                    "cache: {} is unreadable ({error}); ignoring it",
                    path.display()
                );
                return Ok(None);
            }
        };
        if let Ok(file) = File::options().append(true).open(&path) {
            // Best effort: mtime is the last use, which only `prune` reads.
            let _ = file.set_modified(SystemTime::now());
        }
        Ok(Some(entry))
    }

    /// The entry's age since it was written.
    pub fn entry_age(entry: &Entry) -> Duration {
        Duration::from_secs(now_secs().saturating_sub(entry.created))
    }

    /// Records `key → blob` (atomically replacing any previous entry).
    pub fn put_entry(
        &self,
        key: &str,
        blob: &Blob,
        inputs: Vec<String>,
        meta: BTreeMap<String, String>,
    ) -> Result<Entry> {
        // An identical entry is left as it is: a warm run writes nothing to the cache.
        if let Some(existing) = self.entry(key)? {
            if existing.blob == blob.sha256 && existing.inputs == inputs && existing.meta == meta {
                return Ok(existing);
            }
        }
        let entry = Entry {
            key: key.to_owned(),
            blob: blob.sha256.clone(),
            size: blob.size,
            created: now_secs(),
            inputs,
            meta,
        };
        let json = serde_json::to_vec_pretty(&entry).expect("entries serialize");
        crate::results::write_atomically(&self.entry_path(key), &json)?;
        Ok(entry)
    }

    pub fn remove_entry(&self, key: &str) -> Result<()> {
        let path = self.entry_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error).with_context(|| format!("deleting {}", path.display())),
        }
    }

    /// Every entry, sorted by key.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let dir = self.root.join("index");
        let mut entries = Vec::new();
        for item in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = item?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes =
                    fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                match serde_json::from_slice::<Entry>(&bytes) {
                    Ok(entry) => entries.push(entry),
                    Err(error) => eprintln!(
                        "cache: {} is unreadable ({error}); ignoring it",
                        path.display()
                    ),
                }
            }
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    /// Every blob on disk with the keys that point at it, sorted by hash.
    pub fn blobs(&self) -> Result<Vec<BlobListing>> {
        let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in self.entries()? {
            keys.entry(entry.blob.clone())
                .or_default()
                .push(entry.key.clone());
            for input in &entry.inputs {
                keys.entry(input.clone())
                    .or_default()
                    .push(format!("{} (input)", entry.key));
            }
        }
        let dir = self.root.join("sha256");
        let mut listing = Vec::new();
        for item in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            if !crate::matrix::is_sha256_hex(&name) {
                continue;
            }
            let size = item.metadata()?.len();
            listing.push(BlobListing {
                keys: keys.remove(&name).unwrap_or_default(),
                sha256: name,
                size,
            });
        }
        listing.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Ok(listing)
    }

    /// Re-hashes every blob; corrupt ones are deleted (their entries then miss and refetch).
    pub fn verify_all(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for blob in self.blobs()? {
            let path = self.blob_path(&blob.sha256);
            let (actual, _) =
                hash_file(&path).with_context(|| format!("reading {}", path.display()))?;
            if actual == blob.sha256 {
                report.good += 1;
            } else {
                fs::remove_file(&path)
                    .with_context(|| format!("deleting corrupt blob {}", path.display()))?;
                report.corrupt.push((blob.sha256, actual));
            }
        }
        Ok(report)
    }

    /// Drops entries neither needed by `keep_kernels` (ids of the current kernels.yaml) nor used
    /// within `max_age`, then every blob no remaining entry names, then leftover temporary files,
    /// build trees and persistent build directories, and trims the ccache to `ccache_max_size`
    /// (ccache's own size syntax: `5G`, `500M`). Needs a cache opened with
    /// [`Cache::open_exclusive`], so no build is using what goes.
    pub fn prune(
        &self,
        keep_kernels: &BTreeSet<String>,
        max_age: Duration,
        ccache_max_size: &str,
    ) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let mut live_blobs = BTreeSet::new();
        let now = SystemTime::now();
        for entry in self.entries()? {
            let needed = entry
                .key
                .strip_prefix("kernel:")
                .is_some_and(|id| keep_kernels.contains(id));
            let used = fs::metadata(self.entry_path(&entry.key))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age < max_age);
            if needed || used {
                live_blobs.insert(entry.blob.clone());
                live_blobs.extend(entry.inputs.iter().cloned());
            } else {
                self.remove_entry(&entry.key)?;
                report.entries_removed += 1;
            }
        }
        for blob in self.blobs()? {
            if !live_blobs.contains(&blob.sha256) {
                let path = self.blob_path(&blob.sha256);
                fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
                report.blobs_removed += 1;
                report.bytes_freed += blob.size;
            }
        }
        let sha_dir = self.root.join("sha256");
        for item in fs::read_dir(&sha_dir)? {
            let item = item?;
            if item.file_name().to_string_lossy().starts_with(".incoming-") {
                report.bytes_freed += item.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(item.path())
                    .with_context(|| format!("deleting {}", item.path().display()))?;
            }
        }
        let build_dir = self.root.join("build");
        for item in fs::read_dir(&build_dir)? {
            let path = item?.path();
            fs::remove_dir_all(&path).with_context(|| format!("deleting {}", path.display()))?;
        }
        let build_dirs = self.root.join(BUILD_DIRS);
        if build_dirs.exists() {
            for item in fs::read_dir(&build_dirs)
                .with_context(|| format!("reading {}", build_dirs.display()))?
            {
                let path = item?.path();
                report.bytes_freed += crate::obtain::ccache::size_of(&path)?;
                fs::remove_dir_all(&path)
                    .with_context(|| format!("deleting {}", path.display()))?;
                report.build_dirs_removed += 1;
            }
        }
        let ccache = self.root.join(CCACHE_DIR);
        let before = crate::obtain::ccache::size_of(&ccache)?;
        report.ccache_bytes = crate::obtain::ccache::trim(&ccache, ccache_max_size)?;
        report.bytes_freed += before.saturating_sub(report.ccache_bytes);
        Ok(report)
    }
}

/// One line of `harness images list`: a kernel's current image, or another blob (a download, an
/// index, a config) with `id` "-".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    pub id: String,
    pub size: u64,
    pub sha256: String,
    pub source: String,
}

impl Cache {
    /// Kernel images first (from the `kernel:<id>` entries, by id), then every other blob.
    pub fn image_rows(&self) -> Result<Vec<ImageRow>> {
        let entries = self.entries()?;
        let mut rows = Vec::new();
        let mut shown = BTreeSet::new();
        for entry in &entries {
            let Some(id) = entry.key.strip_prefix("kernel:") else {
                continue;
            };
            if !self.blob_path(&entry.blob).exists() {
                continue;
            }
            shown.insert(entry.blob.clone());
            rows.push(ImageRow {
                id: id.to_owned(),
                size: entry.size,
                sha256: entry.blob.clone(),
                source: describe_kernel(&entry.meta),
            });
        }
        for blob in self.blobs()? {
            if shown.contains(&blob.sha256) {
                continue;
            }
            let source = if blob.keys.is_empty() {
                "unreferenced (prune removes it)".to_owned()
            } else {
                blob.keys
                    .iter()
                    .map(|k| describe_key(k))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            rows.push(ImageRow {
                id: "-".to_owned(),
                size: blob.size,
                sha256: blob.sha256,
                source,
            });
        }
        Ok(rows)
    }
}

fn describe_kernel(meta: &BTreeMap<String, String>) -> String {
    let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("?");
    match get("source") {
        "debian" => format!(
            "debian {} {} {}",
            get("suite"),
            get("resolved_package"),
            get("resolved_version")
        ),
        "build" => {
            let from = ["source_url", "source_path", "source_dir", "source_git"]
                .iter()
                .find_map(|k| meta.get(*k))
                .map_or("?", |s| s);
            format!(
                "build linux {} from {from} (compat: {})",
                get("kernel_version"),
                get("compat")
            )
        }
        "url" => format!("url {}", get("url")),
        other => other.to_owned(),
    }
}

fn describe_key(key: &str) -> String {
    match key.split_once(':') {
        Some(("url", url)) => format!("download {url}"),
        Some(("debian-index", url)) => format!("index {url}"),
        Some(("deb-image", deb)) => format!("image from .deb {}", &deb[..deb.len().min(12)]),
        Some(("build", _)) => "kernel build output".to_owned(),
        _ => key.to_owned(),
    }
}

/// `harness images list` as a table: id, size, sha256 (first 16 digits), source.
pub fn render_image_rows(rows: &[ImageRow]) -> String {
    let width = rows.iter().map(|r| r.id.len()).max().unwrap_or(2).max(2);
    let mut out = format!(
        "{:<width$}  {:>9}  {:<16}  source\n",
        "id", "size", "sha256"
    );
    for row in rows {
        let size = format!("{:.1} MiB", row.size as f64 / (1024.0 * 1024.0));
        out.push_str(&format!(
            "{:<width$}  {:>9}  {:<16}  {}\n",
            row.id,
            size,
            &row.sha256[..16],
            row.source
        ));
    }
    let total: u64 = rows.iter().map(|r| r.size).sum();
    out.push_str(&format!(
        "{} blobs, {:.1} MiB\n",
        rows.len(),
        total as f64 / (1024.0 * 1024.0)
    ));
    out
}

/// `harness images list`: the table of kernel images and other blobs in the cache at `root`.
pub fn list_command(root: &Path) -> Result<String> {
    let cache = Cache::open(root, true)?;
    Ok(render_image_rows(&cache.image_rows()?))
}

/// `harness images verify`: re-hashes every blob, deletes corrupt ones (the next run fetches or
/// builds them again). Returns the report and whether every blob was intact.
pub fn verify_command(root: &Path) -> Result<(String, bool)> {
    let cache = Cache::open(root, true)?;
    let report = cache.verify_all()?;
    let mut text = format!("verified {} blobs", report.good + report.corrupt.len());
    if report.corrupt.is_empty() {
        text.push_str(": all intact\n");
    } else {
        text.push_str(&format!(
            ": {} corrupt, deleted (the next run fetches them again)\n",
            report.corrupt.len()
        ));
        for (named, found) in &report.corrupt {
            text.push_str(&format!("  {named}: content hashes to {found}\n"));
        }
    }
    Ok((text, report.corrupt.is_empty()))
}

/// `harness images prune`: keeps the images of `keep_kernels` (the ids of the current
/// kernels.yaml) and whatever was used within `max_age` ([`DEFAULT_PRUNE_AGE`] by default).
/// Waits for running harness processes to finish first; the caller must not hold a [`Cache`]
/// (or an `AcquireContext`) itself, or it waits forever.
pub fn prune_command(
    root: &Path,
    keep_kernels: &BTreeSet<String>,
    max_age: Duration,
    ccache_max_size: &str,
) -> Result<String> {
    let cache = Cache::open_exclusive(root)?;
    let report = cache.prune(keep_kernels, max_age, ccache_max_size)?;
    Ok(format!(
        "pruned {} index entries, {} blobs and {} build directories, {:.1} MiB freed; ccache {:.1} MiB (limit {ccache_max_size})\n",
        report.entries_removed,
        report.blobs_removed,
        report.build_dirs_removed,
        report.bytes_freed as f64 / (1024.0 * 1024.0),
        report.ccache_bytes as f64 / (1024.0 * 1024.0),
    ))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// (sha256, size) of a file's content.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), size))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority).to_owned()
}

/// Progress of one long step: an indicatif bar when stderr is a terminal, otherwise one quiet
/// line at the end (`download current: 12.3 MiB done (4.1 s)`).
pub struct Progress {
    verb: &'static str,
    label: String,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn start(verb: &'static str, label: &str, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => indicatif::ProgressBar::new(total).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("valid template"),
                ),
                None => indicatif::ProgressBar::new_spinner().with_style(
                    indicatif::ProgressStyle::with_template("{prefix} {spinner} {bytes} {msg}")
                        .expect("valid template"),
                ),
            };
            bar.set_prefix(format!("{verb} {label}"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            verb,
            label: label.to_owned(),
            started: Instant::now(),
            bar,
        }
    }

    pub fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Shows a short status (e.g. the last line of make's output) next to a spinner.
    pub fn message(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_owned());
        }
    }

    pub fn finish(self, bytes: u64) {
        self.finish_with(&format!("{:.1} MiB done", bytes as f64 / (1024.0 * 1024.0)));
    }

    pub fn finish_with(self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{} {}: {what} ({:.1} s)",
            self.verb,
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }

    pub fn finish_failed(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{} {}: failed after {:.1} s",
            self.verb,
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), true).unwrap();
        (dir, cache)
    }

    #[test]
    fn blobs_are_named_by_content_and_corruption_is_caught() {
        let (_dir, cache) = temp_cache();
        let blob = cache.insert_bytes(b"kernel image bytes").unwrap();
        assert_eq!(blob.sha256, sha256_hex(b"kernel image bytes"));
        assert_eq!(cache.valid_blob(&blob.sha256).unwrap(), Some(blob.clone()));

        let mut bytes = fs::read(&blob.path).unwrap();
        bytes[3] ^= 0x01;
        fs::write(&blob.path, &bytes).unwrap();
        assert_eq!(cache.valid_blob(&blob.sha256).unwrap(), None);
        assert!(!blob.path.exists(), "a corrupt blob is deleted");
    }

    #[test]
    fn offline_download_of_uncached_url_is_unavailable() {
        let (_dir, cache) = temp_cache();
        let error = cache
            .download("http://deb.debian.org/debian/nothing", "x", None)
            .unwrap_err();
        assert!(matches!(error, FetchError::Offline { .. }));
        assert_eq!(
            error.to_string(),
            "offline and not cached: http://deb.debian.org/debian/nothing"
        );
    }

    #[test]
    fn entries_round_trip_and_prune_keeps_what_the_matrix_needs() {
        let (dir, cache) = temp_cache();
        let kept = cache.insert_bytes(b"needed").unwrap();
        let input = cache.insert_bytes(b"the deb it came from").unwrap();
        let stale = cache.insert_bytes(b"stale").unwrap();
        let orphan = cache.insert_bytes(b"orphan").unwrap();
        cache
            .put_entry(
                "kernel:current",
                &kept,
                vec![input.sha256.clone()],
                BTreeMap::new(),
            )
            .unwrap();
        cache
            .put_entry("kernel:gone", &stale, Vec::new(), BTreeMap::new())
            .unwrap();
        assert_eq!(
            cache.entry("kernel:current").unwrap().unwrap().blob,
            kept.sha256
        );
        let listing = cache.blobs().unwrap();
        assert_eq!(listing.len(), 4);
        assert!(listing
            .iter()
            .any(|b| b.sha256 == orphan.sha256 && b.keys.is_empty()));
        drop(cache);

        let cache = Cache::open_exclusive(dir.path()).unwrap();
        let keep: BTreeSet<String> = ["current".to_owned()].into();
        let report = cache.prune(&keep, Duration::ZERO, "1G").unwrap();
        assert_eq!(report.entries_removed, 1);
        assert_eq!(report.blobs_removed, 2);
        let left: BTreeSet<String> = cache
            .blobs()
            .unwrap()
            .into_iter()
            .map(|b| b.sha256)
            .collect();
        assert_eq!(left, [kept.sha256, input.sha256].into());
    }

    #[test]
    fn prune_removes_build_directories_and_trims_the_ccache() {
        let dir = tempfile::tempdir().unwrap();
        let build_dir = dir.path().join(BUILD_DIRS).join("0123456789abcdef");
        fs::create_dir_all(build_dir.join("out")).unwrap();
        fs::write(build_dir.join("out/vmlinux.o"), vec![0u8; 4096]).unwrap();
        let cache = Cache::open_exclusive(dir.path()).unwrap();
        let report = cache.prune(&BTreeSet::new(), Duration::ZERO, "1G").unwrap();
        assert_eq!(report.build_dirs_removed, 1);
        assert!(report.bytes_freed >= 4096);
        assert!(!build_dir.exists());
        if crate::obtain::ccache::available() {
            let conf = fs::read_to_string(dir.path().join(CCACHE_DIR).join("ccache.conf"));
            assert!(
                conf.as_deref().unwrap_or("").contains("max_size = 1G"),
                "the limit is kept for later builds: {conf:?}"
            );
        }
    }

    #[test]
    fn verify_all_deletes_corrupt_blobs() {
        let (_dir, cache) = temp_cache();
        let good = cache.insert_bytes(b"good").unwrap();
        let bad = cache.insert_bytes(b"bad!").unwrap();
        fs::write(&bad.path, b"bad?").unwrap();
        let report = cache.verify_all().unwrap();
        assert_eq!(report.good, 1);
        assert_eq!(
            report.corrupt,
            vec![(bad.sha256.clone(), sha256_hex(b"bad?"))]
        );
        assert!(good.path.exists() && !bad.path.exists());
    }

    #[test]
    fn listing_shows_kernels_first_then_other_blobs() {
        let (_dir, cache) = temp_cache();
        let image = cache.insert_bytes(b"image").unwrap();
        let deb = cache.insert_bytes(b"deb").unwrap();
        let meta = BTreeMap::from([
            ("source".to_owned(), "debian".to_owned()),
            ("suite".to_owned(), "sid".to_owned()),
            (
                "resolved_package".to_owned(),
                "linux-binary-7.2.13+deb14-cloud-amd64".to_owned(),
            ),
            ("resolved_version".to_owned(), "7.2.13-1".to_owned()),
        ]);
        cache
            .put_entry("kernel:current", &image, vec![deb.sha256.clone()], meta)
            .unwrap();
        cache
            .put_entry(
                "url:http://deb.debian.org/debian/pool/x.deb",
                &deb,
                Vec::new(),
                BTreeMap::new(),
            )
            .unwrap();
        let rows = cache.image_rows().unwrap();
        assert_eq!(rows[0].id, "current");
        assert_eq!(
            rows[0].source,
            "debian sid linux-binary-7.2.13+deb14-cloud-amd64 7.2.13-1"
        );
        assert_eq!(rows[1].id, "-");
        assert_eq!(
            rows[1].source,
            "kernel:current (input); download http://deb.debian.org/debian/pool/x.deb"
        );
        let table = render_image_rows(&rows);
        assert!(table.starts_with("id       "), "{table}");
        assert!(table.ends_with("2 blobs, 0.0 MiB\n"), "{table}");
    }

    #[test]
    fn commands_report_in_words() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = Cache::open(dir.path(), true).unwrap();
            let blob = cache.insert_bytes(b"x").unwrap();
            cache
                .put_entry("kernel:a", &blob, Vec::new(), BTreeMap::new())
                .unwrap();
            let bad = cache.insert_bytes(b"y").unwrap();
            fs::write(&bad.path, b"z").unwrap();
        }
        assert!(
            list_command(dir.path()).unwrap().contains("\na "),
            "kernel a listed"
        );
        let (text, intact) = verify_command(dir.path()).unwrap();
        assert!(!intact);
        assert!(
            text.starts_with("verified 2 blobs: 1 corrupt, deleted"),
            "{text}"
        );
        let keep = BTreeSet::from(["a".to_owned()]);
        assert_eq!(
            prune_command(dir.path(), &keep, Duration::ZERO, "1G").unwrap(),
            "pruned 0 index entries, 0 blobs and 0 build directories, 0.0 MiB freed; ccache 0.0 MiB (limit 1G)\n"
        );
        let text = prune_command(dir.path(), &BTreeSet::new(), Duration::ZERO, "1G").unwrap();
        assert!(
            text.starts_with("pruned 1 index entries, 1 blobs and 0 build directories"),
            "{text}"
        );
    }

    #[test]
    fn hosts_are_taken_from_urls() {
        assert_eq!(
            host_of("https://cdn.kernel.org/pub/linux/x.tar.xz"),
            "cdn.kernel.org"
        );
        assert_eq!(
            host_of("http://user@deb.debian.org:80/debian"),
            "deb.debian.org:80"
        );
    }
}
