//! Kernels from Debian's archive: `dists/<suite>/main/binary-amd64/Packages.xz` → the package
//! (a meta-package is followed through `Depends`) → its `.deb`, verified against the index's
//! SHA256 → the image inside, extracted safely and cached.
//!
//! Resolution follows only dependencies named `linux-image-*` or `linux-binary-*` (first such
//! alternative of each `|` group). The image is carried by the `linux-binary-<release>` package
//! when one is reachable (sid's 7.x packaging: `usr/lib/modules/<release>/vmlinuz`), otherwise by
//! the reachable `linux-image-*` package that depends on no further image package (older
//! packaging: `boot/vmlinuz-<release>`). So `current` follows sid's newest kernel without naming
//! a versioned package that the archive drops at its next upload.
//!
//! The index is cached with a time to live ([`INDEX_TTL`]); past it, it is fetched again, and
//! when that fails (or offline) the cached copy is used and the provenance says how old it is.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{fetch_failure, image_from_deb, AcquireContext, Acquisition, KernelImage, OrReason};

/// Provenance about an index: its URL, sha256 and age.
type IndexFacts = BTreeMap<String, String>;
use crate::obtain::cache::{Blob, Cache, FetchError};

pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// How long a downloaded Packages index is trusted before it is fetched again.
pub const INDEX_TTL: Duration = Duration::from_secs(6 * 3600);

/// The fields of one Packages stanza that resolution needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    pub package: String,
    pub version: String,
    pub depends: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
}

/// A parsed Packages index: one stanza per package name (the highest version when several).
#[derive(Debug, Default)]
pub struct PackageIndex {
    packages: HashMap<String, Stanza>,
}

/// The outcome of following a package to the one that carries the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The requested package first, then each package followed, in order.
    pub chain: Vec<String>,
    pub carrier: Stanza,
}

impl PackageIndex {
    pub fn parse(text: &str) -> PackageIndex {
        let mut packages: HashMap<String, Stanza> = HashMap::new();
        for block in text.split("\n\n") {
            let mut fields: HashMap<&str, &str> = HashMap::new();
            for line in block.lines() {
                if line.starts_with([' ', '\t']) {
                    continue; // continuation of a multi-line field (Description); not needed
                }
                if let Some((name, value)) = line.split_once(':') {
                    fields.insert(name, value.trim());
                }
            }
            let Some(package) = fields.get("Package") else {
                continue;
            };
            let stanza = Stanza {
                package: (*package).to_owned(),
                version: fields
                    .get("Version")
                    .copied()
                    .unwrap_or_default()
                    .to_owned(),
                depends: fields
                    .get("Depends")
                    .copied()
                    .unwrap_or_default()
                    .to_owned(),
                filename: fields
                    .get("Filename")
                    .copied()
                    .unwrap_or_default()
                    .to_owned(),
                sha256: fields.get("SHA256").copied().unwrap_or_default().to_owned(),
                size: fields.get("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
            };
            match packages.get(&stanza.package) {
                Some(existing) if compare_versions(&existing.version, &stanza.version).is_ge() => {}
                _ => {
                    packages.insert(stanza.package.clone(), stanza);
                }
            }
        }
        PackageIndex { packages }
    }

    pub fn get(&self, package: &str) -> Option<&Stanza> {
        self.packages.get(package)
    }

    /// Follows `package` to the package that carries the kernel image (see the module doc).
    pub fn resolve(&self, package: &str) -> Result<Resolution, String> {
        let root = self
            .get(package)
            .ok_or_else(|| format!("package {package} is not in the index"))?;
        let mut chain = vec![root.package.clone()];
        let mut queue = VecDeque::from([root]);
        let mut leaves = Vec::new();
        let mut binary = None;
        while let Some(stanza) = queue.pop_front() {
            let next = image_dependencies(&stanza.depends)
                .into_iter()
                .filter_map(|name| self.get(&name))
                .collect::<Vec<_>>();
            if stanza.package.starts_with("linux-binary-") {
                binary.get_or_insert(stanza);
            }
            if next.is_empty() {
                leaves.push(stanza);
            }
            for dependency in next {
                if !chain.contains(&dependency.package) {
                    chain.push(dependency.package.clone());
                    queue.push_back(dependency);
                }
            }
        }
        let carrier = match (binary, leaves.as_slice()) {
            (Some(binary), _) => binary,
            (None, [leaf]) => leaf,
            (None, []) => return Err(format!("{package}: no image package reachable through Depends")),
            (None, several) => {
                return Err(format!(
                    "{package}: several image packages reachable ({}); name one of them in kernels.yaml",
                    several.iter().map(|s| s.package.as_str()).collect::<Vec<_>>().join(", ")
                ))
            }
        };
        if carrier.filename.is_empty() || !crate::matrix::is_sha256_hex(&carrier.sha256) {
            return Err(format!(
                "{}: the index gives no Filename or SHA256",
                carrier.package
            ));
        }
        Ok(Resolution {
            chain,
            carrier: carrier.clone(),
        })
    }
}

/// Names in a `Depends` field that may lead to an image: the first `linux-image-*` or
/// `linux-binary-*` alternative of each group, without version constraints or arch qualifiers.
fn image_dependencies(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|group| {
            group
                .split('|')
                .map(|alternative| {
                    let name = alternative
                        .trim()
                        .split([' ', '(', '['])
                        .next()
                        .unwrap_or("");
                    name.split(':').next().unwrap_or("").to_owned()
                })
                .find(|name| name.starts_with("linux-image-") || name.starts_with("linux-binary-"))
        })
        .collect()
}

/// dpkg's version ordering (epoch, upstream, revision; `~` sorts before everything).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) if e.bytes().all(|c| c.is_ascii_digit()) => {
                (e.parse().unwrap_or(0), rest)
            }
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((upstream, revision)) => (epoch, upstream, revision),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    }
    fn part(mut a: &[u8], mut b: &[u8]) -> std::cmp::Ordering {
        while !a.is_empty() || !b.is_empty() {
            loop {
                let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
                let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
                if ca.is_none() && cb.is_none() {
                    break;
                }
                let (oa, ob) = (order(ca), order(cb));
                if oa != ob {
                    return oa.cmp(&ob);
                }
                a = &a[1..];
                b = &b[1..];
            }
            let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
            let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
            let na = std::str::from_utf8(&a[..da])
                .unwrap()
                .trim_start_matches('0');
            let nb = std::str::from_utf8(&b[..db])
                .unwrap()
                .trim_start_matches('0');
            let by_number = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if by_number.is_ne() {
                return by_number;
            }
            a = &a[da..];
            b = &b[db..];
        }
        std::cmp::Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| part(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| part(ra.as_bytes(), rb.as_bytes()))
}

#[cfg(test)]
/// The suite's Packages index: cached within [`INDEX_TTL`], else fetched; a stale copy when the
/// archive cannot be reached. `Ok(Err(reason))` when there is neither.
pub fn package_index(
    suite: &str,
    mirror: &str,
    cache: &Cache,
) -> Result<OrReason<(PackageIndex, IndexFacts)>> {
    Ok(match index_blob(suite, mirror, cache)? {
        Ok((blob, meta)) => Ok((parse_index_blob(suite, &blob)?, meta)),
        Err(reason) => Err(reason),
    })
}

/// The compressed index as a cache blob, and provenance about it (URL, sha256, age).
fn index_blob(suite: &str, mirror: &str, cache: &Cache) -> Result<OrReason<(Blob, IndexFacts)>> {
    let url = format!("{mirror}/dists/{suite}/main/binary-amd64/Packages.xz");
    let key = format!("debian-index:{url}");
    let _lock = cache.lock_key(&key)?;
    let cached = match cache.entry(&key)? {
        Some(entry) => cache
            .valid_blob(&entry.blob)?
            .map(|blob| (blob, Cache::entry_age(&entry))),
        None => None,
    };
    let mut meta = BTreeMap::new();
    meta.insert("index_url".to_owned(), url.clone());
    let blob: Blob = match cached {
        Some((blob, age)) if age < INDEX_TTL || cache.is_offline() => {
            meta.insert("index_age_s".to_owned(), age.as_secs().to_string());
            blob
        }
        cached => match cache.fetch(&url, &format!("{suite} Packages index"), None) {
            Ok(blob) => {
                let mut entry_meta = BTreeMap::new();
                entry_meta.insert("url".to_owned(), url.clone());
                cache.put_entry(&key, &blob, Vec::new(), entry_meta)?;
                meta.insert("index_age_s".to_owned(), "0".to_owned());
                blob
            }
            Err(FetchError::Local(error)) => return Err(error),
            Err(world) => match cached {
                Some((blob, age)) => {
                    eprintln!(
                        "debian: {world}; using the cached {suite} index from {} s ago",
                        age.as_secs()
                    );
                    meta.insert("index_age_s".to_owned(), age.as_secs().to_string());
                    meta.insert("index_stale".to_owned(), world.to_string());
                    blob
                }
                None => return Ok(Err(world.to_string())),
            },
        },
    };
    meta.insert("index_sha256".to_owned(), blob.sha256.clone());
    Ok(Ok((blob, meta)))
}

fn parse_index_blob(suite: &str, blob: &Blob) -> Result<PackageIndex> {
    let mut text = String::new();
    let file = std::fs::File::open(&blob.path)
        .with_context(|| format!("opening {}", blob.path.display()))?;
    std::io::Read::read_to_string(&mut xz2::read::XzDecoder::new(file), &mut text)
        .with_context(|| format!("decompressing the {suite} index {}", blob.path.display()))?;
    Ok(PackageIndex::parse(&text))
}

pub(super) fn acquire(
    id: &str,
    suite: &str,
    package: &str,
    ctx: &AcquireContext,
) -> Result<Acquisition> {
    let cache = &ctx.cache;
    let (index, index_meta) = match index_blob(suite, &ctx.debian_mirror, cache)? {
        Ok(found) => found,
        Err(reason) => return Ok(Acquisition::Unavailable { reason }),
    };
    // What this very index resolved `package` to last time: saves decompressing and parsing it.
    let resolved_key = format!("debian-resolved:{}:{package}", index.sha256);
    if let Some(entry) = cache.entry(&resolved_key)? {
        if let Some(blob) = cache.valid_blob(&entry.blob)? {
            let mut provenance = entry.meta;
            provenance.extend(index_meta);
            return Ok(KernelImage::from_blob(blob, provenance));
        }
    }
    let index = parse_index_blob(suite, &index)?;
    let resolution = match index.resolve(package) {
        Ok(resolution) => resolution,
        Err(reason) => {
            return Ok(Acquisition::Unavailable {
                reason: format!("debian {suite}: {reason}"),
            })
        }
    };
    let carrier = &resolution.carrier;
    let deb_url = format!("{}/{}", ctx.debian_mirror, carrier.filename);
    let mut provenance = BTreeMap::from([
        ("source".to_owned(), "debian".to_owned()),
        ("suite".to_owned(), suite.to_owned()),
        ("package".to_owned(), package.to_owned()),
        ("resolved_package".to_owned(), carrier.package.clone()),
        ("resolved_version".to_owned(), carrier.version.clone()),
        ("resolution_chain".to_owned(), resolution.chain.join(" -> ")),
        ("deb_url".to_owned(), deb_url.clone()),
        ("deb_sha256".to_owned(), carrier.sha256.clone()),
    ]);

    let image_key = format!("deb-image:{}", carrier.sha256);
    let _lock = cache.lock_key(&image_key)?;
    let image = match cache
        .entry(&image_key)?
        .map(|entry| (cache.valid_blob(&entry.blob), entry.meta))
    {
        Some((Ok(Some(blob)), meta)) => {
            provenance.extend(meta);
            blob
        }
        Some((Err(error), _)) => return Err(error),
        _ => {
            let deb = match cache.download(&deb_url, id, Some(&carrier.sha256)) {
                Ok(deb) => deb,
                Err(error) => return fetch_failure(error),
            };
            let (image, member, release) = match image_from_deb(&deb.path, cache)? {
                Ok(found) => found,
                Err(reason) => {
                    return Ok(Acquisition::Unavailable {
                        reason: format!("{} ({deb_url}): {reason}", carrier.package),
                    })
                }
            };
            let meta = BTreeMap::from([
                ("image_member".to_owned(), member),
                ("kernel_release".to_owned(), release),
            ]);
            cache.put_entry(&image_key, &image, vec![deb.sha256.clone()], meta.clone())?;
            provenance.extend(meta);
            image
        }
    };
    cache.put_entry(
        &resolved_key,
        &image,
        vec![carrier.sha256.clone()],
        provenance.clone(),
    )?;
    provenance.extend(index_meta);
    Ok(KernelImage::from_blob(image, provenance))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;
    use std::path::Path;

    const SID_SHAPE: &str = "\
Package: linux-image-cloud-amd64
Version: 7.2.13-1
Depends: linux-base-cloud-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)
Filename: pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_7.2.13-1_amd64.deb
SHA256: 1111111111111111111111111111111111111111111111111111111111111111

Package: linux-image-7.2.13+deb14-cloud-amd64
Version: 7.2.13-1
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), linux-modules-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)
Description: a kernel
 with a continuation line: that has a colon
Filename: pool/main/l/linux-signed-amd64/linux-image-7.2.13+deb14-cloud-amd64_7.2.13-1_amd64.deb
SHA256: 2222222222222222222222222222222222222222222222222222222222222222

Package: linux-binary-7.2.13+deb14-cloud-amd64
Version: 7.2.13-1
Depends: linux-base-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)
Filename: pool/main/l/linux-signed-amd64/linux-binary-7.2.13+deb14-cloud-amd64_7.2.13-1_amd64.deb
Size: 13717736
SHA256: 3333333333333333333333333333333333333333333333333333333333333333
";

    #[test]
    fn follows_meta_package_to_linux_binary() {
        let index = PackageIndex::parse(SID_SHAPE);
        let resolution = index.resolve("linux-image-cloud-amd64").unwrap();
        assert_eq!(
            resolution.carrier.package,
            "linux-binary-7.2.13+deb14-cloud-amd64"
        );
        assert_eq!(resolution.carrier.size, 13717736);
        assert_eq!(
            resolution.chain,
            [
                "linux-image-cloud-amd64",
                "linux-image-7.2.13+deb14-cloud-amd64",
                "linux-binary-7.2.13+deb14-cloud-amd64"
            ]
        );
    }

    #[test]
    fn older_packaging_resolves_to_the_versioned_image() {
        let text = "Package: linux-image-cloud-amd64\nVersion: 6.1.176-1\nDepends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)\nSHA256: 1111111111111111111111111111111111111111111111111111111111111111\nFilename: a.deb\n\nPackage: linux-image-6.1.0-50-cloud-amd64\nVersion: 6.1.176-1\nDepends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\nFilename: b.deb\nSHA256: 2222222222222222222222222222222222222222222222222222222222222222\n";
        let resolution = PackageIndex::parse(text)
            .resolve("linux-image-cloud-amd64")
            .unwrap();
        assert_eq!(
            resolution.carrier.package,
            "linux-image-6.1.0-50-cloud-amd64"
        );
        assert_eq!(resolution.carrier.filename, "b.deb");
    }

    #[test]
    fn missing_package_is_a_reason() {
        let error = PackageIndex::parse(SID_SHAPE)
            .resolve("linux-image-nope")
            .unwrap_err();
        assert_eq!(error, "package linux-image-nope is not in the index");
    }

    #[test]
    fn debian_version_order() {
        assert_eq!(
            compare_versions("6.12.95-1~bpo12+1", "6.12.95-1"),
            Ordering::Less
        );
        assert_eq!(compare_versions("7.2.13-1", "7.2.9-1"), Ordering::Greater);
        assert_eq!(compare_versions("1:1.0", "2.0"), Ordering::Greater);
        assert_eq!(compare_versions("1.0a", "1.0"), Ordering::Greater);
        assert_eq!(compare_versions("1.0-1", "1.0-1"), Ordering::Equal);
    }

    // The tests below talk to Debian's archive (deb.debian.org) for real; what they fetch stays
    // in the shared cache images/cache, so a second run downloads nothing.

    fn shared_context() -> AcquireContext {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_owned();
        AcquireContext::new(&root, false).unwrap()
    }

    #[test]
    fn current_sid_meta_package_resolves_through_the_real_archive() {
        let ctx = shared_context();
        let (index, meta) = package_index("sid", DEFAULT_MIRROR, &ctx.cache)
            .unwrap()
            .unwrap();
        let resolution = index.resolve("linux-image-cloud-amd64").unwrap();
        // sid's packaging since 7.x: meta → linux-image-<release> → linux-binary-<release>.
        let carrier = &resolution.carrier;
        assert!(
            carrier.package.starts_with("linux-binary-"),
            "{resolution:?}"
        );
        let release = carrier.package.trim_start_matches("linux-binary-");
        assert!(
            resolution.chain.contains(&format!("linux-image-{release}")),
            "{resolution:?}"
        );
        assert!(carrier.filename.starts_with("pool/main/"), "{carrier:?}");
        assert!(meta["index_url"].ends_with("/dists/sid/main/binary-amd64/Packages.xz"));
    }

    #[test]
    fn bookworm_6_1_downloads_verifies_and_extracts() {
        let ctx = shared_context();
        let started = std::time::Instant::now();
        let Acquisition::Image(image) =
            acquire("deb-6.1", "bookworm", "linux-image-cloud-amd64", &ctx).unwrap()
        else {
            panic!("bookworm's 6.1 kernel is unavailable")
        };
        eprintln!(
            "deb-6.1 acquired in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let p = &image.provenance;
        assert!(
            p["resolved_package"].starts_with("linux-image-6.1."),
            "{p:?}"
        );
        assert!(p["kernel_release"].starts_with("6.1."), "{p:?}");
        assert!(p["image_member"].starts_with("boot/vmlinuz-6.1."), "{p:?}");
        assert_eq!(
            crate::obtain::cache::hash_file(&image.path).unwrap().0,
            p["image_sha256"]
        );
        let deb = ctx.cache.blob_path(&p["deb_sha256"]);
        assert_eq!(
            crate::obtain::cache::hash_file(&deb).unwrap().0,
            p["deb_sha256"],
            "the .deb matches the index's SHA256"
        );
        assert!(super::super::is_bzimage(&image.path).unwrap());
    }

    /// A private cache holding copies of what the shared cache has for `keys`, so corrupting it
    /// cannot disturb other tests using the shared images.
    fn private_copy(shared: &Cache, keys: &[String]) -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir_in(shared.root().join("build")).unwrap();
        let private = Cache::open(dir.path(), false).unwrap();
        for key in keys {
            let entry = shared
                .entry(key)
                .unwrap()
                .unwrap_or_else(|| panic!("shared cache lacks {key}"));
            let blob = private.insert_file(&shared.blob_path(&entry.blob)).unwrap();
            private
                .put_entry(key, &blob, entry.inputs.clone(), entry.meta.clone())
                .unwrap();
        }
        (dir, private)
    }

    fn flip_a_byte(path: &Path) {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_flipped_byte_in_a_cached_blob_is_detected_and_fetched_again() {
        let shared = shared_context();
        let Acquisition::Image(image) =
            acquire("deb-6.1", "bookworm", "linux-image-cloud-amd64", &shared).unwrap()
        else {
            panic!("bookworm's 6.1 kernel is unavailable")
        };
        let p = &image.provenance;
        let index_key = format!("debian-index:{}", p["index_url"]);
        let deb_key = format!("url:{}", p["deb_url"]);
        let image_key = format!("deb-image:{}", p["deb_sha256"]);
        let (_dir, private) = private_copy(&shared.cache, &[index_key, deb_key, image_key]);
        let ctx = AcquireContext {
            cache: private,
            ..shared_context()
        };

        // The extracted image: corrupted, detected, extracted again from the cached .deb.
        flip_a_byte(&ctx.cache.blob_path(&p["image_sha256"]));
        let Acquisition::Image(again) =
            acquire("deb-6.1", "bookworm", "linux-image-cloud-amd64", &ctx).unwrap()
        else {
            panic!("re-extraction failed")
        };
        assert_eq!(again.provenance["image_sha256"], p["image_sha256"]);
        assert_eq!(
            crate::obtain::cache::hash_file(&again.path).unwrap().0,
            p["image_sha256"]
        );

        // The downloaded .deb: corrupted, detected, downloaded again from the archive.
        let deb = ctx.cache.blob_path(&p["deb_sha256"]);
        flip_a_byte(&deb);
        let before = std::fs::metadata(&deb).unwrap().modified().unwrap();
        let blob = ctx
            .cache
            .download(&p["deb_url"], "deb-6.1", Some(&p["deb_sha256"]))
            .unwrap();
        assert_eq!(blob.sha256, p["deb_sha256"]);
        assert_eq!(
            crate::obtain::cache::hash_file(&blob.path).unwrap().0,
            p["deb_sha256"]
        );
        assert_ne!(
            std::fs::metadata(&blob.path).unwrap().modified().unwrap(),
            before,
            "fetched anew"
        );
    }

    #[test]
    fn offline_with_nothing_cached_is_unavailable_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = AcquireContext {
            cache: Cache::open(dir.path(), true).unwrap(),
            ..shared_context()
        };
        let Acquisition::Unavailable { reason } =
            acquire("deb-6.1", "bookworm", "linux-image-cloud-amd64", &ctx).unwrap()
        else {
            panic!("acquired offline from an empty cache")
        };
        assert_eq!(reason, format!("offline and not cached: {DEFAULT_MIRROR}/dists/bookworm/main/binary-amd64/Packages.xz"));
    }
}
