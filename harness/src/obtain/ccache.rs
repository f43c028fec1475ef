//! ccache for kernel builds: the compiler prefix and environment a build runs `make` with, the
//! per-build statistics (read from ccache's own stats log, so concurrent builds sharing one cache
//! directory never mix their counts), and trimming the cache to a size the user sets.
//!
//! The cache directory is `images/cache/ccache/` (one for every build, so a header change that
//! touches many files, or a step back to sources compiled before, costs a cache lookup per
//! object instead of a compile). ccache is optional: without it builds run as before and the
//! provenance says so.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The program, looked up on `PATH`.
pub const PROGRAM: &str = crate::obtain::prereq::CCACHE;

/// The size `harness images prune` trims the cache to unless told otherwise.
pub const DEFAULT_MAX_SIZE: &str = "5G";

/// How one build uses ccache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ccache {
    /// `CCACHE_DIR`.
    pub dir: PathBuf,
    /// `CCACHE_STATSLOG`: this build's counters only, truncated when the build starts.
    pub stats_log: PathBuf,
}

/// What ccache did for one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Compilations answered from the cache (direct or preprocessed hits).
    pub hits: u64,
    /// Compilations that ran the compiler and stored the result.
    pub misses: u64,
}

impl Stats {
    /// Hits over cacheable compilations; `None` when nothing was compiled.
    pub fn hit_rate(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }

    /// `97.5% (1520 of 1559 compilations)`, or `no compilation` for a build that compiled nothing.
    pub fn describe(&self) -> String {
        match self.hit_rate() {
            Some(rate) => format!(
                "{:.1}% ({} of {} compilations)",
                100.0 * rate,
                self.hits,
                self.hits + self.misses
            ),
            None => "no compilation".to_owned(),
        }
    }
}

/// Whether ccache is installed.
pub fn available() -> bool {
    crate::obtain::prereq::on_path(PROGRAM)
}

impl Ccache {
    /// Starts a build's statistics afresh.
    pub fn reset_stats(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        fs::write(&self.stats_log, b"")
            .with_context(|| format!("truncating {}", self.stats_log.display()))
    }

    /// The environment `make` runs with.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("CCACHE_DIR", self.dir.clone().into_os_string()),
            ("CCACHE_STATSLOG", self.stats_log.clone().into_os_string()),
        ]
    }

    /// This build's counters, from its stats log.
    pub fn stats(&self) -> Result<Stats> {
        let text = match fs::read_to_string(&self.stats_log) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", self.stats_log.display()))
            }
        };
        Ok(parse_stats_log(&text))
    }
}

/// Counts hits and misses in a ccache stats log: a `# <file>` line per compilation, then one
/// counter name per line (`direct_cache_hit`, `preprocessed_cache_hit`, `cache_miss`, …).
pub fn parse_stats_log(text: &str) -> Stats {
    let mut stats = Stats::default();
    for line in text.lines().map(str::trim) {
        match line {
            "direct_cache_hit" | "preprocessed_cache_hit" => stats.hits += 1,
            "cache_miss" => stats.misses += 1,
            _ => {}
        }
    }
    stats
}

/// `harness images prune`: sets the cache's size limit (kept in its `ccache.conf`, so later builds
/// evict at the same limit) and evicts the oldest entries beyond it. Returns the bytes left.
pub fn trim(dir: &Path, max_size: &str) -> Result<u64> {
    if !available() {
        // Without the program the cache cannot be trimmed entry by entry; it is dropped whole.
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("deleting {}", dir.display()))?;
        }
        return Ok(0);
    }
    // Created if need be, so the limit holds for the builds that fill it later.
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for args in [vec!["--max-size", max_size], vec!["--cleanup"]] {
        let output = Command::new(PROGRAM)
            .args(&args)
            .env("CCACHE_DIR", dir)
            .output()
            .with_context(|| format!("running {PROGRAM} {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "{PROGRAM} {} in {}: {}",
                args.join(" "),
                dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    size_of(dir)
}

/// Bytes in the files under `dir`.
pub fn size_of(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let meta = entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_log_counts_hits_and_misses_per_compilation() {
        // As ccache 4.7 writes it: one miss, then two direct hits of the same file.
        let log =
            "# a.c\ncache_miss\ndirect_cache_miss\nlocal_storage_miss\npreprocessed_cache_miss\n\
                   # a.c\ndirect_cache_hit\nlocal_storage_hit\n# b.c\npreprocessed_cache_hit\n";
        let stats = parse_stats_log(log);
        assert_eq!(stats, Stats { hits: 2, misses: 1 });
        assert_eq!(stats.describe(), "66.7% (2 of 3 compilations)");
        assert_eq!(parse_stats_log("").describe(), "no compilation");
    }

    /// The real program, on a real compilation: a miss, then a hit, counted from the stats log.
    #[test]
    fn a_second_identical_compilation_is_a_hit() {
        if !available() {
            panic!("ccache is not installed (Debian: apt-get install ccache); ./test installs it");
        }
        let dir = tempfile::tempdir().unwrap();
        let ccache = Ccache {
            dir: dir.path().join("cache"),
            stats_log: dir.path().join("stats.log"),
        };
        ccache.reset_stats().unwrap();
        let source = dir.path().join("f.c");
        fs::write(&source, "int f(void) { return 1; }\n").unwrap();
        for _ in 0..2 {
            let status = Command::new(PROGRAM)
                .args(["gcc", "-c"])
                .arg(&source)
                .arg("-o")
                .arg(dir.path().join("f.o"))
                .envs(ccache.env())
                .status()
                .unwrap();
            assert!(status.success());
        }
        assert_eq!(ccache.stats().unwrap(), Stats { hits: 1, misses: 1 });
        assert!(
            trim(&ccache.dir, "1G").unwrap() > 0,
            "the cache kept its entry"
        );
    }
}
