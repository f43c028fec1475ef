//! `harness bench --bisect`: what a commit bisection costs with incremental builds against the
//! same bisection with every step built from nothing, in one run.
//!
//! The subject is a git repository made from Debian's kernel source (`linux-source-6.1`): the
//! tree as one base commit, then `--commits` commits that each append a comment to one of a few
//! `net/` files, one of which also plants a regression in `reuseport_select_sock_by_hash()` (it
//! ignores SO_INCOMING_CPU, which `steer.incoming-cpu.udp` sees as `steering=partly steered`
//! instead of `all steered`). Every step is `harness check`'s own work, in process: obtain the
//! kernel of the tree's HEAD (build it), boot it, run the one experiment, judge it.
//!
//! Phases, each timed:
//! 1. **cold build**: the base commit in a fresh persistent build directory with an empty ccache;
//! 2. **one-file step**: the next commit (one `net/` file changed), built incrementally and booted;
//! 3. **step back**: the base commit again (already built: the image cache answers);
//! 4. **incremental bisection**: `git bisect` from the series' tip (bad) to the base (good), each
//!    step checked in that build directory;
//! 5. **cold bisection**: the same bisection, every step built from `git archive` in a fresh
//!    directory without ccache, into an image cache of its own (so nothing is reused).
//!
//! Ratios printed: the median incremental step (build + boot + experiment) over the cold build,
//! and the incremental bisection over the cold one. This is a benchmark: it prints figures and
//! checks only that both bisections named the planted commit.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::check::{self, BootArgs, CheckVerdict, Expected, Measurement};
use crate::matrix::{BuildSource, KernelSource, KernelSpec};
use crate::obtain::acquire::build::BuildMode;
use crate::obtain::acquire::{self, AcquireContext, Acquisition};

const EXPERIMENT: &str = "steer.incoming-cpu.udp";
const GOOD_OUTCOME: &str = "steering=all steered";

/// The regression: SO_INCOMING_CPU no longer decides which reuseport member gets a datagram.
const PLANTED_FILE: &str = "net/core/sock_reuseport.c";
const PLANTED_FROM: &str = "if (!READ_ONCE(reuse->incoming_cpu))";
const PLANTED_TO: &str = "if (1 || !READ_ONCE(reuse->incoming_cpu))";

/// The files the series' commits touch in turn: all built by the minimal config.
const SERIES_FILES: &[&str] = &[
    "net/ipv4/udp.c",
    "net/core/sock.c",
    "net/ipv4/tcp_ipv4.c",
    "net/ipv6/udp.c",
    "net/unix/af_unix.c",
    "net/core/sock_reuseport.c",
    "net/ipv4/inet_hashtables.c",
    "net/ipv4/af_inet.c",
];

pub struct BisectBenchOptions {
    pub repo_root: PathBuf,
    /// Where the repository, the two image caches and the results go.
    pub scratch: PathBuf,
    /// Debian's kernel source tarball.
    pub linux_source: PathBuf,
    /// Commits in the series after the base.
    pub commits: usize,
    /// Watchdog per boot, seconds.
    pub timeout: u32,
}

/// One checked commit.
#[derive(Debug, Clone)]
struct Step {
    commit: String,
    /// Position in the series (0 = base).
    position: usize,
    verdict: String,
    build: Duration,
    total: Duration,
    provenance: BTreeMap<String, String>,
}

/// The newest `/usr/src/linux-source-*.tar.xz` (Debian: `apt-get install linux-source-6.1`).
pub fn default_linux_source() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/src")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-source-") && n.ends_with(".tar.xz"))
        })
        .collect();
    found.sort();
    found.pop()
}

pub fn bench(opts: &BisectBenchOptions) -> Result<()> {
    fs::create_dir_all(&opts.scratch)
        .with_context(|| format!("creating {}", opts.scratch.display()))?;
    let scratch = std::path::absolute(&opts.scratch)
        .with_context(|| format!("resolving {}", opts.scratch.display()))?;
    let load_before = load_average();
    let repo = scratch.join("linux");
    let series = make_series(&repo, &scratch, &opts.linux_source, opts.commits)?;
    eprintln!(
        "bench: {} commits over {}; the regression is commit {} ({})",
        opts.commits,
        &series.base[..12],
        series.planted_position,
        &series.planted[..12]
    );
    let boot = BootArgs {
        out: None,
        accel: "auto".to_owned(),
        retries: 2,
        timeout: Some(opts.timeout),
    };
    let expected = vec![Expected::parse(GOOD_OUTCOME).map_err(anyhow::Error::msg)?];
    let incremental_cache = scratch.join("cache-incremental");
    let cold_cache = scratch.join("cache-cold");
    for dir in [&incremental_cache, &cold_cache] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
    }
    let bench = Bench {
        repo: &repo,
        scratch: &scratch,
        repo_root: &opts.repo_root,
        boot: &boot,
        expected: &expected,
        series: &series,
    };

    // 1–3: one build directory, from nothing, then one file changed, then back.
    let cold = bench.step(&series.base, 0, &incremental_cache, BuildMode::Incremental)?;
    report_step("cold build (base)", &cold);
    let one_file = bench.step(
        &series.commits[0],
        1,
        &incremental_cache,
        BuildMode::Incremental,
    )?;
    report_step("one-file step", &one_file);
    let back = bench.step(&series.base, 0, &incremental_cache, BuildMode::Incremental)?;
    report_step("step back (base)", &back);

    // 4–5: the same bisection, incremental then cold.
    let incremental = bench.bisection(&incremental_cache, BuildMode::Incremental)?;
    let cold_bisection = bench.bisection(&cold_cache, BuildMode::Cold)?;
    let load_after = load_average();

    println!();
    println!(
        "bisection of {} commits from linux {} ({}), experiment {EXPERIMENT}:",
        opts.commits,
        cold.provenance
            .get("kernel_version")
            .map_or("?", String::as_str),
        opts.linux_source.display()
    );
    for (name, run) in [("incremental", &incremental), ("cold", &cold_bisection)] {
        println!("  {name}:");
        for s in &run.steps {
            println!(
                "    #{:<4} {} {:<5} build {:>6.1} s  step {:>6.1} s  {:<11} {}",
                s.position,
                &s.commit[..12],
                s.verdict,
                s.build.as_secs_f64(),
                s.total.as_secs_f64(),
                s.provenance
                    .get("build_mode")
                    .map_or("cached", String::as_str),
                s.provenance
                    .get("ccache")
                    .map_or(String::new(), |c| format!("ccache {c}")),
            );
        }
        println!(
            "    first bad commit: {} ({}) in {:.1} s",
            &run.found[..12],
            if run.found == series.planted {
                "the planted one"
            } else {
                "NOT the planted one"
            },
            run.wall.as_secs_f64()
        );
    }
    let mut incremental_steps: Vec<Duration> = incremental.steps.iter().map(|s| s.total).collect();
    incremental_steps.sort();
    let median = incremental_steps[incremental_steps.len() / 2];
    let cold_build = cold.build.as_secs_f64();
    let step_ratio = median.as_secs_f64() / cold_build;
    let bisection_ratio = incremental.wall.as_secs_f64() / cold_bisection.wall.as_secs_f64();
    let from_nothing = (incremental.wall + cold.total).as_secs_f64();
    println!();
    println!(
        "cold build of the base:          {:>7.1} s (step with boot {:.1} s; {})",
        cold_build,
        cold.total.as_secs_f64(),
        cold.provenance.get("ccache").map_or("", String::as_str)
    );
    println!(
        "one-file step:                   {:>7.1} s (build {:.1} s, {})",
        one_file.total.as_secs_f64(),
        one_file.build.as_secs_f64(),
        one_file
            .provenance
            .get("build_start")
            .map_or("", String::as_str)
    );
    println!(
        "step back to the built base:     {:>7.1} s (build {:.1} s: {})",
        back.total.as_secs_f64(),
        back.build.as_secs_f64(),
        if back.provenance.contains_key("build_mode") && back.build.as_secs() > 1 {
            "rebuilt"
        } else {
            "from the image cache"
        }
    );
    println!(
        "median incremental step:         {:>7.1} s = {step_ratio:.3} × cold build (target ≤ 0.25: {})",
        median.as_secs_f64(),
        verdict(step_ratio <= 0.25)
    );
    println!(
        "bisection, incremental:          {:>7.1} s ({} steps)",
        incremental.wall.as_secs_f64(),
        incremental.steps.len()
    );
    println!(
        "bisection, cold per step:        {:>7.1} s ({} steps)",
        cold_bisection.wall.as_secs_f64(),
        cold_bisection.steps.len()
    );
    println!(
        "incremental / cold bisection:    {bisection_ratio:>7.3} (target ≤ 0.35: {}); with the cold build of the base counted too: {:.3}",
        verdict(bisection_ratio <= 0.35),
        from_nothing / cold_bisection.wall.as_secs_f64()
    );
    println!(
        "machine: {} cores; load average {load_before} before, {load_after} after",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if incremental.found != series.planted || cold_bisection.found != series.planted {
        bail!(
            "a bisection did not name the planted commit {}",
            series.planted
        );
    }
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn report_step(name: &str, step: &Step) {
    eprintln!(
        "bench: {name}: {} {} build {:.1} s, step {:.1} s ({}; {})",
        &step.commit[..12],
        step.verdict,
        step.build.as_secs_f64(),
        step.total.as_secs_f64(),
        step.provenance
            .get("build_mode")
            .map_or("image cache", String::as_str),
        step.provenance.get("ccache").map_or("", String::as_str)
    );
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

struct Bench<'a> {
    repo: &'a Path,
    scratch: &'a Path,
    repo_root: &'a Path,
    boot: &'a BootArgs,
    expected: &'a [Expected],
    series: &'a Series,
}

struct Bisection {
    steps: Vec<Step>,
    found: String,
    wall: Duration,
}

impl Bench<'_> {
    /// `harness check` on `commit`, with the kernel obtained through the cache at `cache_root`.
    fn step(
        &self,
        commit: &str,
        position: usize,
        cache_root: &Path,
        mode: BuildMode,
    ) -> Result<Step> {
        let spec = KernelSpec {
            id: "bench-bisect".to_owned(),
            version: None,
            source: KernelSource::Build(BuildSource::Git {
                repo: self.repo.display().to_string(),
                rev: commit.to_owned(),
            }),
            boot: Default::default(),
        };
        let context = || -> Result<AcquireContext> {
            let mut ctx = AcquireContext::with_cache(self.repo_root, cache_root, false)?;
            ctx.build_mode = mode;
            Ok(ctx)
        };
        let started = Instant::now();
        // The build alone, timed; the boot that follows finds the image in the cache.
        let provenance = match acquire::acquire(&spec, &context()?)? {
            Acquisition::Image(image) => image.provenance,
            other => bail!("{}: no image for {commit}: {other:?}", spec.id),
        };
        let build = started.elapsed();
        let out = self.scratch.join("results");
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let measurement = check::measure_with(&spec, EXPERIMENT, self.boot, &out, context()?)?;
        let verdict = match check::judge(&measurement, self.expected) {
            CheckVerdict::Good => "good",
            CheckVerdict::Bad { .. } => "bad",
            CheckVerdict::Skip { .. } => "skip",
        };
        if let Measurement::Untestable { reason } = &measurement {
            eprintln!("bench: {commit}: could not measure: {reason}");
        }
        // Only a build reports how it was made; an image from the cache has the first build's.
        let mut provenance = provenance;
        if build.as_secs_f64() < 1.0 {
            provenance.retain(|k, _| !k.starts_with("build_") && !k.starts_with("ccache"));
        }
        Ok(Step {
            commit: commit.to_owned(),
            position,
            verdict: verdict.to_owned(),
            build,
            total: started.elapsed(),
            provenance,
        })
    }

    /// `git bisect` from the series' tip (bad) to its base (good), each step [`Bench::step`].
    fn bisection(&self, cache_root: &Path, mode: BuildMode) -> Result<Bisection> {
        let _ = git(self.repo, &["bisect", "reset"]);
        git(
            self.repo,
            &["checkout", "--quiet", "--force", &self.series.base],
        )?;
        let started = Instant::now();
        let mut out = git(
            self.repo,
            &["bisect", "start", self.series.tip(), &self.series.base],
        )?;
        let mut steps = Vec::new();
        let found = loop {
            if let Some(found) = first_bad(&out) {
                break found;
            }
            if steps.len() > 40 {
                bail!("git bisect did not end after 40 steps:\n{out}");
            }
            let head = git(self.repo, &["rev-parse", "HEAD"])?;
            let position = self.series.position(&head);
            let step = self.step(&head, position, cache_root, mode)?;
            report_step(&format!("bisect step {}", steps.len() + 1), &step);
            out = git(self.repo, &["bisect", &step.verdict])?;
            steps.push(step);
        };
        let wall = started.elapsed();
        git(self.repo, &["bisect", "reset"])?;
        Ok(Bisection { steps, found, wall })
    }
}

/// `<sha> is the first bad commit` in git bisect's output.
fn first_bad(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_suffix(" is the first bad commit"))
        .map(|sha| sha.trim().to_owned())
}

/// The repository the bench bisects: base, series, and where the regression is.
struct Series {
    base: String,
    /// The series' commits after the base, oldest first.
    commits: Vec<String>,
    planted: String,
    planted_position: usize,
}

impl Series {
    fn tip(&self) -> &str {
        self.commits.last().expect("a series has commits")
    }

    fn position(&self, commit: &str) -> usize {
        if commit == self.base {
            return 0;
        }
        self.commits
            .iter()
            .position(|c| c == commit)
            .map_or(0, |i| i + 1)
    }
}

/// Runs git in `repo` with a fixed identity and dates (the series is the same on every run).
fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let output = git_command(repo, args)
        .output()
        .with_context(|| format!("running git {args:?}"))?;
    if !output.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn git_command(repo: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=harness bench",
            "-c",
            "user.email=bench@harness.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    cmd
}

/// The repository at `repo`: the tarball's tree as the base commit (made once, then reused),
/// and the series rewritten on the branch `series` (deterministic, so the same commits each run).
fn make_series(repo: &Path, scratch: &Path, tarball: &Path, commits: usize) -> Result<Series> {
    if commits < 2 {
        bail!("--commits: a series needs at least 2 commits");
    }
    if git(
        repo,
        &["rev-parse", "--verify", "--quiet", "bench-base^{commit}"],
    )
    .is_err()
    {
        eprintln!(
            "bench: making a git repository of {} at {}",
            tarball.display(),
            repo.display()
        );
        let unpack = scratch.join("unpack");
        for dir in [repo, unpack.as_path()] {
            if dir.exists() {
                fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
            }
        }
        fs::create_dir_all(&unpack).with_context(|| format!("creating {}", unpack.display()))?;
        let status = Command::new("tar")
            .arg("-xJf")
            .arg(tarball)
            .arg("-C")
            .arg(&unpack)
            .status()
            .context("running tar")?;
        if !status.success() {
            bail!("tar -xJf {} failed ({status})", tarball.display());
        }
        let top = fs::read_dir(&unpack)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.join("Makefile").is_file())
            .with_context(|| format!("{} holds no kernel tree", tarball.display()))?;
        fs::rename(&top, repo).with_context(|| format!("moving the tree to {}", repo.display()))?;
        let _ = fs::remove_dir_all(&unpack);
        git(repo, &["init", "--quiet"])?;
        // Debian's tree ignores much of itself (its .gitignore is the upstream one): add it all.
        git(repo, &["add", "--force", "."])?;
        git(repo, &["commit", "--quiet", "-m", "linux-source base"])?;
        git(repo, &["tag", "bench-base"])?;
    }
    let base = git(repo, &["rev-parse", "bench-base^{commit}"])?;
    let _ = git(repo, &["bisect", "reset"]);
    git(repo, &["checkout", "--quiet", "--force", &base])?;

    // One commit per step through fast-import: each appends a comment to one file, and one of
    // them also plants the regression, which every later commit keeps.
    let planted_position = (commits * 3 / 8).max(1);
    let mut contents: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for file in SERIES_FILES {
        let path = repo.join(file);
        contents.insert(
            file,
            fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    let planted_source = String::from_utf8_lossy(&contents[PLANTED_FILE]).into_owned();
    if !planted_source.contains(PLANTED_FROM) {
        bail!("{PLANTED_FILE} has no `{PLANTED_FROM}` to plant the regression in");
    }
    let mut stream = Vec::new();
    for n in 1..=commits {
        let mut touched = vec![SERIES_FILES[(n - 1) % SERIES_FILES.len()]];
        if n == planted_position {
            let text = String::from_utf8_lossy(&contents[PLANTED_FILE]).replacen(
                PLANTED_FROM,
                PLANTED_TO,
                1,
            );
            contents.insert(PLANTED_FILE, text.into_bytes());
            touched.push(PLANTED_FILE);
        }
        let file = touched[0];
        contents
            .get_mut(file)
            .expect("a series file")
            .extend_from_slice(format!("/* bisect series commit {n} */\n").as_bytes());
        let message = if n == planted_position {
            format!("series {n}: {file} comment; reuseport ignores SO_INCOMING_CPU\n")
        } else {
            format!("series {n}: {file} comment\n")
        };
        writeln!(stream, "commit refs/heads/series\nmark :{n}")?;
        writeln!(
            stream,
            "committer harness bench <bench@harness.invalid> 1704067200 +0000"
        )?;
        writeln!(stream, "data {}\n{message}", message.len())?;
        if n == 1 {
            writeln!(stream, "from {base}")?;
        } else {
            writeln!(stream, "from :{}", n - 1)?;
        }
        touched.dedup();
        for file in touched {
            let bytes = &contents[file];
            writeln!(stream, "M 100644 inline {file}\ndata {}", bytes.len())?;
            stream.extend_from_slice(bytes);
            stream.push(b'\n');
        }
        stream.push(b'\n');
    }
    let mut child = git_command(repo, &["fast-import", "--quiet", "--force"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running git fast-import")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(&stream)
        .context("writing to git fast-import")?;
    let status = child.wait().context("waiting for git fast-import")?;
    if !status.success() {
        bail!("git fast-import failed ({status})");
    }
    let listed = git(repo, &["rev-list", "--reverse", &format!("{base}..series")])?;
    let commits: Vec<String> = listed.lines().map(str::to_owned).collect();
    let planted = commits
        .get(planted_position - 1)
        .context("the series is shorter than asked")?
        .clone();
    Ok(Series {
        base,
        commits,
        planted,
        planted_position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bad_commit_is_read_from_git_bisects_words() {
        let out = "abc123 is the first bad commit\ncommit abc123\nAuthor: x";
        assert_eq!(first_bad(out).as_deref(), Some("abc123"));
        assert_eq!(
            first_bad("Bisecting: 3 revisions left to test after this"),
            None
        );
    }
}
