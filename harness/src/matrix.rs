//! The kernel matrix: `kernels.yaml` parsed once into types that cannot be wrong.
//!
//! ```yaml
//! kernels:
//!   - id: "3.9"                       # unique; names results/<id>.json and images/<id>/
//!     version: "3.9"                  # orders the matrix; omit for the host
//!     source: { build: { tarball: { url: https://cdn.kernel.org/pub/linux/kernel/v3.x/linux-3.9.11.tar.xz } } }
//!     boot: { timeout-s: 600 }        # optional: memory-mib, cpus, cpu, cmdline, timeout-s
//!   - id: current
//!     version: "7.2"
//!     source: { debian: { suite: sid, package: linux-image-cloud-amd64 } }
//!   - id: host
//!     source: { host: {} }
//! groups:
//!   default: ["3.9", current, host]   # required
//! ```
//!
//! Every struct denies unknown fields and every error names `kernels.yaml:line:column`. A `default`
//! group must exist, ids are unique, group members name existing kernels, and a group name is
//! never also a kernel id (so `select` is unambiguous).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::yaml::{self, YamlError};

/// The name of the group `harness run` uses when given nothing.
pub const DEFAULT_GROUP: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Matrix {
    pub kernels: Vec<KernelSpec>,
    /// Named lists of kernel ids; `default` is required.
    pub groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelSpec {
    /// Unique; names `results/<id>.json` and the override directory `images/<id>/`.
    pub id: String,
    /// The kernel version this row stands for (`"3.8"`, `"7.2"`), used to order the matrix. Absent
    /// for the host, whose version is whatever it measures.
    #[serde(default)]
    pub version: Option<String>,
    pub source: KernelSource,
    /// Defaults: all fields absent (the runner's own defaults apply).
    #[serde(default)]
    pub boot: BootSettings,
}

/// Per-kernel boot settings; every field is optional and absent means "the runner's default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootSettings {
    /// Guest memory in MiB.
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// Guest vCPUs.
    #[serde(default)]
    pub cpus: Option<u32>,
    /// QEMU's `-cpu` value, verbatim. Default: chosen by the kernel's version (`boot::cpu`:
    /// `max` under TCG, `host` under KVM, minus the features old kernels mishandle).
    #[serde(default)]
    pub cpu: Option<String>,
    /// Extra kernel command-line arguments, appended after the runner's own (e.g. `nosmap`).
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Watchdog for one boot, in seconds.
    #[serde(default)]
    pub timeout_s: Option<u32>,
}

/// Where a kernel image comes from. Externally tagged: `source: { debian: { ... } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum KernelSource {
    /// A package from Debian's archive, resolved through `dists/<suite>/main/binary-amd64/Packages.xz`.
    /// `package` may be a meta-package (`linux-image-cloud-amd64`): it is followed through
    /// `Depends` to the package that carries the image.
    Debian { suite: String, package: String },
    /// Vanilla sources built by the harness with `images/config/minimal.config`.
    Build(BuildSource),
    /// A prebuilt `.deb` or raw bzImage at a URL; the sha256 is pinned here or, on first
    /// download, in `kernels.lock`.
    Url {
        url: String,
        #[serde(default)]
        sha256: Option<String>,
        kind: UrlKind,
    },
    /// A local kernel image.
    Path { path: PathBuf },
    /// The host kernel: no image; the guest runs as a process in a fresh network namespace.
    Host {},
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UrlKind {
    /// A Debian package holding `boot/vmlinuz-*` or `usr/lib/modules/*/vmlinuz`.
    Deb,
    /// A kernel image as QEMU's `-kernel` takes it.
    Bzimage,
}

/// A kernel source tree to build.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum BuildSource {
    /// A release tarball (`.tar.xz`, `.tar.gz`, `.tar.bz2` is not supported) downloaded into the cache.
    Tarball {
        url: String,
        #[serde(default)]
        sha256: Option<String>,
    },
    /// A tarball already on disk, e.g. Debian's `/usr/src/linux-source-6.1.tar.xz`.
    LocalTarball(PathBuf),
    /// An unpacked source tree; it is copied before any compatibility patch touches it.
    Dir(PathBuf),
    /// A git repository (local path or URL) at a revision (tag, branch or commit).
    Git { repo: String, rev: String },
}

impl KernelSource {
    /// One word for listings: `debian`, `build`, `url`, `path`, `host`.
    pub fn kind(&self) -> &'static str {
        match self {
            KernelSource::Debian { .. } => "debian",
            KernelSource::Build(_) => "build",
            KernelSource::Url { .. } => "url",
            KernelSource::Path { .. } => "path",
            KernelSource::Host {} => "host",
        }
    }
}

impl fmt::Display for KernelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelSource::Debian { suite, package } => write!(f, "debian {suite}/{package}"),
            KernelSource::Build(BuildSource::Tarball { url, .. }) => write!(f, "build {url}"),
            KernelSource::Build(BuildSource::LocalTarball(path)) => {
                write!(f, "build {}", path.display())
            }
            KernelSource::Build(BuildSource::Dir(path)) => write!(f, "build {}", path.display()),
            KernelSource::Build(BuildSource::Git { repo, rev }) => write!(f, "build {repo}@{rev}"),
            KernelSource::Url { url, .. } => write!(f, "url {url}"),
            KernelSource::Path { path } => write!(f, "path {}", path.display()),
            KernelSource::Host {} => f.write_str("host"),
        }
    }
}

/// Orders kernel versions numerically: `3.8 < 3.9 < 3.10 < 4.4 < 7.2`; a missing version (the
/// host) sorts after every numbered one. Non-numeric parts (`-rc1`) compare as text after the
/// numbers, so `6.1 < 6.1-rc1` is not guaranteed to be meaningful, only total.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionKey {
    unknown: bool,
    numbers: Vec<u64>,
    rest: String,
}

impl VersionKey {
    /// The key for a version string such as `3.8`, `4.4.302` or a measured `uname -r`
    /// (`6.1.0-50-cloud-amd64`): the leading dotted numbers count, the rest breaks ties.
    pub fn parse(version: Option<&str>) -> VersionKey {
        let Some(version) = version else {
            return VersionKey {
                unknown: true,
                numbers: Vec::new(),
                rest: String::new(),
            };
        };
        let end = version
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(version.len());
        let numbers = version[..end]
            .split('.')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect();
        VersionKey {
            unknown: false,
            numbers,
            rest: version[end..].to_owned(),
        }
    }
}

impl KernelSpec {
    #[cfg(test)]
    /// Sorts `3.8 < 3.9 < 4.4 < … < 7.2`, then kernels without a version (the host), then by id.
    pub fn version_key(&self) -> (VersionKey, &str) {
        (VersionKey::parse(self.version.as_deref()), &self.id)
    }

    pub fn is_host(&self) -> bool {
        matches!(self.source, KernelSource::Host {})
    }
}

/// Reads, parses and validates a kernels.yaml.
pub fn load(path: &Path) -> Result<Matrix> {
    let (text, name) = crate::yaml::read_named(path)?;
    Ok(parse(&text, &name)?)
}

/// Parses and validates kernels.yaml text; `name` starts every error message.
pub fn parse(text: &str, name: &str) -> Result<Matrix, YamlError> {
    let matrix: Matrix = yaml::from_str_named(text, name)?;
    matrix.validate(text, name)?;
    Ok(matrix)
}

impl Matrix {
    fn validate(&self, text: &str, name: &str) -> Result<(), YamlError> {
        let mut ids = BTreeSet::new();
        let mut occurrences: BTreeMap<&str, usize> = BTreeMap::new();
        for kernel in &self.kernels {
            let seen = occurrences.entry(kernel.id.as_str()).or_default();
            if !ids.insert(kernel.id.as_str()) {
                let location = yaml::locate_key_value(text, "id", &kernel.id, *seen);
                return Err(YamlError::invalid(
                    name,
                    location,
                    format!("kernels: duplicate id `{}`", kernel.id),
                ));
            }
            *seen += 1;
            if kernel.id.is_empty() || kernel.id.contains(['/', '\\']) || kernel.id.starts_with('.')
            {
                let location = yaml::locate_key_value(text, "id", &kernel.id, 0);
                return Err(YamlError::invalid(
                    name,
                    location,
                    format!(
                        "kernels: id `{}` must be a plain file name (it names results/<id>.json)",
                        kernel.id
                    ),
                ));
            }
            if let KernelSource::Url {
                sha256: Some(sha), ..
            }
            | KernelSource::Build(BuildSource::Tarball {
                sha256: Some(sha), ..
            }) = &kernel.source
            {
                if !is_sha256_hex(sha) {
                    let location = yaml::locate_key_value(text, "sha256", sha, 0);
                    return Err(YamlError::invalid(
                        name,
                        location,
                        format!(
                            "kernels: `{}`: sha256 must be 64 lowercase hex digits, got `{sha}`",
                            kernel.id
                        ),
                    ));
                }
            }
        }
        if !self.groups.contains_key(DEFAULT_GROUP) {
            let location = yaml::locate_key_value(text, "groups", "", 0);
            return Err(YamlError::invalid(
                name,
                location,
                format!("groups: a `{DEFAULT_GROUP}` group is required"),
            ));
        }
        for (group, members) in &self.groups {
            if ids.contains(group.as_str()) {
                let location = yaml::locate_sequence_item(
                    text,
                    group,
                    members.first().map_or("", |m| m.as_str()),
                )
                .map(|l| yaml::Location {
                    line: l.line,
                    column: 1,
                });
                return Err(YamlError::invalid(
                    name,
                    location,
                    format!("groups: `{group}` is also a kernel id; selections would be ambiguous"),
                ));
            }
            for member in members {
                if !ids.contains(member.as_str()) {
                    let location = yaml::locate_sequence_item(text, group, member);
                    return Err(YamlError::invalid(
                        name,
                        location,
                        format!("groups.{group}: `{member}` is not the id of any kernel"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn kernel(&self, id: &str) -> Option<&KernelSpec> {
        self.kernels.iter().find(|k| k.id == id)
    }

    /// The kernels of a group, in the group's order.
    pub fn group(&self, name: &str) -> Result<Vec<&KernelSpec>> {
        let Some(members) = self.groups.get(name) else {
            bail!(
                "no group `{name}` in kernels.yaml (groups: {})",
                self.groups.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        Ok(members
            .iter()
            .map(|id| self.kernel(id).expect("validated: group members exist"))
            .collect())
    }

    /// Kernels named by ids or group names, in the order given, each once. Empty means the
    /// `default` group.
    pub fn select<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<&KernelSpec>> {
        if names.is_empty() {
            return self.group(DEFAULT_GROUP);
        }
        let mut chosen: Vec<&KernelSpec> = Vec::new();
        for name in names {
            let name = name.as_ref();
            let found = if let Some(kernel) = self.kernel(name) {
                vec![kernel]
            } else if self.groups.contains_key(name) {
                self.group(name)?
            } else {
                bail!(
                    "`{name}` is neither a kernel id nor a group in kernels.yaml (kernels: {}; groups: {})",
                    self.kernels.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", "),
                    self.groups.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            };
            for kernel in found {
                if !chosen.iter().any(|k| k.id == kernel.id) {
                    chosen.push(kernel);
                }
            }
        }
        Ok(chosen)
    }
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
kernels:
  - id: "3.8"
    version: "3.8"
    source: { build: { tarball: { url: https://cdn.kernel.org/pub/linux/kernel/v3.x/linux-3.8.13.tar.xz } } }
  - id: "3.10"
    version: "3.10"
    source:
      build:
        local-tarball: /usr/src/linux-3.10.tar.xz
  - id: current
    version: "7.2"
    source: { debian: { suite: sid, package: linux-image-cloud-amd64 } }
    boot: { memory-mib: 512, cpu: "max,-smap", cmdline: nosmap }
  - id: mine
    version: 3.9
    source: { path: { path: /boot/vmlinuz } }
  - id: dl
    source: { url: { url: "http://example.invalid/k.deb", kind: deb } }
  - id: git
    source: { build: { git: { repo: /src/linux, rev: v6.1 } } }
  - id: dir
    source: { build: { dir: /src/linux } }
  - id: host
    source: { host: {} }
groups:
  default: ["3.8", current, host]
  everything: [host, "3.8", "3.10", current, mine, dl, git, dir]
"#;

    #[test]
    fn parses_every_source_kind() {
        let matrix = parse(GOOD, "kernels.yaml").unwrap();
        assert_eq!(matrix.kernels.len(), 8);
        assert_eq!(
            matrix.kernel("current").unwrap().source,
            KernelSource::Debian {
                suite: "sid".into(),
                package: "linux-image-cloud-amd64".into()
            }
        );
        assert_eq!(matrix.kernel("current").unwrap().boot.memory_mib, Some(512));
        assert_eq!(
            matrix.kernel("current").unwrap().boot.cpu.as_deref(),
            Some("max,-smap")
        );
        assert_eq!(
            matrix.kernel("current").unwrap().boot.cmdline.as_deref(),
            Some("nosmap")
        );
        // An unquoted 3.9 is still the text "3.9", not a float.
        assert_eq!(
            matrix.kernel("mine").unwrap().version.as_deref(),
            Some("3.9")
        );
        assert_eq!(
            matrix.kernel("3.10").unwrap().source,
            KernelSource::Build(BuildSource::LocalTarball(
                "/usr/src/linux-3.10.tar.xz".into()
            ))
        );
        assert!(matrix.kernel("host").unwrap().is_host());
        assert_eq!(
            matrix.kernel("dl").unwrap().source,
            KernelSource::Url {
                url: "http://example.invalid/k.deb".into(),
                sha256: None,
                kind: UrlKind::Deb
            }
        );
    }

    #[test]
    fn versions_order_numerically_with_host_last() {
        let matrix = parse(GOOD, "kernels.yaml").unwrap();
        let mut kernels: Vec<&KernelSpec> = matrix.kernels.iter().collect();
        kernels.sort_by(|a, b| a.version_key().cmp(&b.version_key()));
        let ids: Vec<&str> = kernels.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(
            ids,
            ["3.8", "mine", "3.10", "current", "dir", "dl", "git", "host"]
        );
        assert!(VersionKey::parse(Some("4.4")) < VersionKey::parse(Some("4.4.302")));
        assert!(
            VersionKey::parse(Some("6.1.0-50-cloud-amd64"))
                < VersionKey::parse(Some("6.12.107+deb13-cloud-amd64"))
        );
        assert!(VersionKey::parse(Some("7.2")) < VersionKey::parse(None));
    }

    #[test]
    fn select_takes_ids_and_groups_once_each_in_order() {
        let matrix = parse(GOOD, "kernels.yaml").unwrap();
        let ids = |names: &[&str]| {
            matrix
                .select(names)
                .unwrap()
                .iter()
                .map(|k| k.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&[]), ["3.8", "current", "host"]);
        assert_eq!(ids(&["host", "default"]), ["host", "3.8", "current"]);
        let error = matrix.select(&["nope"]).unwrap_err().to_string();
        assert!(
            error.contains("`nope` is neither a kernel id nor a group"),
            "{error}"
        );
    }

    fn error_of(text: &str) -> String {
        parse(text, "kernels.yaml").unwrap_err().to_string()
    }

    #[test]
    fn misspelt_field_names_file_line_column() {
        let text = "kernels:\n  - id: a\n    source: { host: {} }\n    bot: { cpus: 2 }\ngroups: { default: [a] }\n";
        let error = error_of(text);
        assert!(error.starts_with("kernels.yaml:4:5: "), "{error}");
        assert!(error.contains("unknown field `bot`"), "{error}");
    }

    #[test]
    fn misspelt_source_kind_names_file_line_column() {
        let text = "kernels:\n  - id: a\n    source: { debain: { suite: sid, package: p } }\ngroups: { default: [a] }\n";
        let error = error_of(text);
        assert!(error.starts_with("kernels.yaml:3:"), "{error}");
        assert!(error.contains("unknown variant `debain`"), "{error}");
    }

    #[test]
    fn wrong_type_names_file_line_column() {
        let text = "kernels:\n  - id: a\n    source: { host: {} }\n    boot:\n      cpus: two\ngroups: { default: [a] }\n";
        let error = error_of(text);
        assert!(error.starts_with("kernels.yaml:5:13: "), "{error}");
        assert!(error.contains("invalid type"), "{error}");
    }

    #[test]
    fn duplicate_id_points_at_the_second_one() {
        let text = "kernels:\n  - id: a\n    source: { host: {} }\n  - id: b\n    source: { host: {} }\n  - id: a\n    source: { host: {} }\ngroups: { default: [a] }\n";
        let error = error_of(text);
        assert_eq!(error, "kernels.yaml:6:9: kernels: duplicate id `a`");
    }

    #[test]
    fn unknown_group_member_is_located() {
        let text = "kernels:\n  - id: a\n    source: { host: {} }\ngroups:\n  default: [a, b]\n";
        assert_eq!(
            error_of(text),
            "kernels.yaml:5:16: groups.default: `b` is not the id of any kernel"
        );
    }

    #[test]
    fn default_group_is_required() {
        let text = "kernels:\n  - id: a\n    source: { host: {} }\ngroups:\n  other: [a]\n";
        let error = error_of(text);
        assert!(error.starts_with("kernels.yaml:4:"), "{error}");
        assert!(error.contains("a `default` group is required"), "{error}");
    }

    #[test]
    fn bad_pinned_hash_is_refused() {
        let text = "kernels:\n  - id: a\n    source: { url: { url: http://x/k, sha256: abc, kind: bzimage } }\ngroups: { default: [a] }\n";
        let error = error_of(text);
        assert!(error.starts_with("kernels.yaml:3:"), "{error}");
        assert!(error.contains("64 lowercase hex digits"), "{error}");
    }

    #[test]
    fn the_repository_kernels_yaml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels.yaml");
        let matrix = load(&path).unwrap();
        let default: Vec<&str> = matrix
            .group("default")
            .unwrap()
            .iter()
            .map(|k| k.id.as_str())
            .collect();
        assert_eq!(
            default,
            ["3.8", "3.9", "4.4", "4.5", "4.6", "current", "host"]
        );
        let debian: Vec<&str> = matrix
            .group("debian")
            .unwrap()
            .iter()
            .map(|k| k.id.as_str())
            .collect();
        assert_eq!(debian, ["deb-5.10", "deb-6.1", "deb-6.12", "deb-7.2"]);
        // The CPU model follows the kernel's version (`boot::cpu`): no row needs its own.
        assert!(matrix
            .kernels
            .iter()
            .all(|k| k.boot.cpu.is_none() && k.boot.cmdline.is_none()));
    }
}
