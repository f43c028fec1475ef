//! A commit bisection with incremental builds, for real: a git repository made from Debian's
//! kernel source (`/usr/src/linux-source-*.tar.xz`) plus three commits — a comment in a header
//! that much of `net/` includes, the planted regression (`reuseport_select_sock_by_hash()`
//! ignores SO_INCOMING_CPU, which `steer.incoming-cpu.udp` shows as `steering=partly steered`),
//! and a comment in `net/ipv4/udp.c` — bisected with `git bisect run harness check`.
//!
//! Before the bisection, the base commit's first build is interrupted with SIGINT in the middle
//! of `make bzImage`; the next run must see that, throw the half-made objects away and build
//! that step clean. The bisection's two steps must then build incrementally on top of it.
//!
//! Cost: the one clean build of the tree (minutes on 2 cores; ccache answers what the interrupted
//! build had compiled), two incremental steps and three one-experiment boots. The speed targets
//! are the benchmark's (`harness bench --bisect`), not this test's.
//! `RPH_SKIP_BOOT=1` or `RPH_SKIP_BUILD=1` skips it for a quick inner loop; CI sets neither.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod workspace;
use workspace::{root, skip_boots, skip_builds};

const EXPERIMENT: &str = "steer.incoming-cpu.udp";
const GOOD: &str = "steering=all steered";

fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
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
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn linux_source() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/src")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("linux-source-") && n.ends_with(".tar.xz"))
    });
    found.sort();
    found.pop().expect(
        "no /usr/src/linux-source-*.tar.xz: install one (Debian: apt-get install linux-source-6.1)",
    )
}

/// Replaces `from` by `to` in `file` (which must contain it) and commits.
fn commit_edit(
    repo: &Path,
    file: &str,
    edit: impl FnOnce(String) -> String,
    message: &str,
) -> String {
    let path = repo.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "{file}: the edit changed nothing");
    std::fs::write(&path, edited).unwrap();
    git(repo, &["commit", "--quiet", "-am", message]);
    git(repo, &["rev-parse", "HEAD"])
}

fn harness(repo: &Path, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(repo)
        .args(args)
        .output()
        .unwrap();
    eprintln!(
        "harness {args:?}: {:?} in {:.1} s\n{}{}",
        out.status.code(),
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The test's own directory, deleted however the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The build directory whose `state.json` names the git directory `git_dir`.
fn build_dir_of(git_dir: &Path) -> Option<PathBuf> {
    let dirs = root().join("images/cache/build-dirs");
    std::fs::read_dir(dirs).ok()?.find_map(|entry| {
        let dir = entry.ok()?.path();
        let state = std::fs::read_to_string(dir.join("state.json")).ok()?;
        let state: serde_json::Value = serde_json::from_str(&state).ok()?;
        (state["git_dir"].as_str()? == git_dir.to_str()?).then_some(dir)
    })
}

/// Object files under `dir`.
fn objects_under(dir: &Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "o") {
                count += 1;
            }
        }
    }
    count
}

/// Deletes the test's build directory (named in the build lines) however the test ends.
struct RemoveBuildDir(Option<PathBuf>);

impl Drop for RemoveBuildDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The build directory a `build …: … in DIR` line names.
fn build_dir_in(text: &str) -> Option<PathBuf> {
    text.lines()
        .filter(|l| l.starts_with("build ") && l.contains(" built in "))
        .find_map(|l| {
            l.rsplit_once(" in /")
                .map(|(_, dir)| PathBuf::from(format!("/{dir}")))
        })
}

#[test]
fn git_bisect_run_finds_the_planted_commit_with_incremental_builds_after_an_interrupted_build() {
    if skip_boots() || skip_builds() {
        return;
    }
    let started = Instant::now();
    let tarball = linux_source();
    // On the cache's file system, beside the image cache, so nothing crosses devices.
    // The same path every run: the build directory is new each time (it is removed at the
    // end), but the compiler sees the same paths, so a second run's builds find the first run's
    // objects in ccache, as a user's repository would.
    let work = Scratch(root().join("images/cache/build/incremental-bisect-test"));
    if work.0.exists() {
        std::fs::remove_dir_all(&work.0).unwrap();
    }
    std::fs::create_dir_all(&work.0).unwrap();
    let status = Command::new("tar")
        .arg("-xJf")
        .arg(&tarball)
        .arg("-C")
        .arg(work.path())
        .status()
        .unwrap();
    assert!(status.success(), "tar -xJf {}", tarball.display());
    let top = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("Makefile").is_file())
        .expect("a kernel tree in the tarball");
    let repo = work.path().join("linux");
    std::fs::rename(&top, &repo).unwrap();
    git(&repo, &["init", "--quiet"]);
    // Real dates: every run's commits are new to the image cache, so every step really builds.
    git(&repo, &["add", "--force", "."]);
    git(&repo, &["commit", "--quiet", "-m", "base"]);
    let base = git(&repo, &["rev-parse", "HEAD"]);
    let header = commit_edit(
        &repo,
        "include/net/sock_reuseport.h",
        |t| t + "/* a comment in a header many files include */\n",
        "sock_reuseport.h: a comment",
    );
    let planted = commit_edit(
        &repo,
        "net/core/sock_reuseport.c",
        |t| {
            t.replacen(
                "if (!READ_ONCE(reuse->incoming_cpu))",
                "if (1 || !READ_ONCE(reuse->incoming_cpu))",
                1,
            )
        },
        "reuseport: ignore SO_INCOMING_CPU (the planted regression)",
    );
    let last = commit_edit(
        &repo,
        "net/ipv4/udp.c",
        |t| t + "/* a comment */\n",
        "udp: a comment",
    );
    git(&repo, &["checkout", "--quiet", &base]);
    eprintln!(
        "repository ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // 1. The base's first build, interrupted in the middle of `make bzImage`.
    let stderr_path = work.path().join("interrupted.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(&repo)
        .args(["build-kernel", "."])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // SIGINT once make has written a hundred objects (of about 1300): in the middle of it,
    // however fast ccache makes it.
    let git_dir = repo.join(".git").canonicalize().unwrap();
    let waited = Instant::now();
    loop {
        let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let objects = build_dir_of(&git_dir).map_or(0, |dir| objects_under(&dir.join("out")));
        if text.contains("(olddefconfig): done") && objects >= 100 {
            eprintln!("SIGINT with {objects} objects made");
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "build-kernel ended before it was interrupted:\n{text}"
        );
        assert!(
            waited.elapsed() < Duration::from_secs(1800),
            "no objects in 30 minutes:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut interrupted = String::new();
    std::fs::File::open(&stderr_path)
        .unwrap()
        .read_to_string(&mut interrupted)
        .unwrap();
    eprintln!("interrupted build-kernel: {status:?}\n{interrupted}");
    assert_eq!(status.code(), Some(130), "{interrupted}");
    assert!(
        !interrupted.contains(" built in "),
        "the build finished before SIGINT"
    );

    // 2. The next run at the same commit: the half-made objects are thrown away, the step is
    //    built clean and the kernel measured (the base is good).
    let o = harness(
        &repo,
        &[
            "check",
            "--kernel",
            ".",
            "--experiment",
            EXPERIMENT,
            "--expect",
            GOOD,
        ],
    );
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    let _cleanup = RemoveBuildDir(build_dir_in(&text));
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "clean build: the last build here ({base}) failed or was interrupted"
        )),
        "{text}"
    );

    // 3. The bisection: two steps, each on top of the objects of the step before.
    git(&repo, &["bisect", "start", &last, &base]);
    let o = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["bisect", "run"])
        .arg(env!("CARGO_BIN_EXE_harness"))
        .args([
            "check",
            "--kernel",
            ".",
            "--experiment",
            EXPERIMENT,
            "--expect",
            GOOD,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!("git bisect run:\n{stdout}{stderr}");
    assert!(o.status.success());
    assert!(
        stdout.contains(&format!("{planted} is the first bad commit")),
        "{stdout}"
    );
    let incremental: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("build check: ") && l.contains(", incremental (objects of "))
        .collect();
    assert_eq!(
        incremental.len(),
        2,
        "both steps built incrementally:\n{stderr}"
    );
    assert!(
        stdout.contains("bad: steering=partly steered (expected all steered)"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("good: {GOOD}")), "{stdout}");
    let log = git(&repo, &["bisect", "log"]);
    assert!(log.contains(&format!("# good: [{header}]")), "{log}");

    // The user's tree was never built in or patched.
    git(&repo, &["bisect", "reset"]);
    assert_eq!(git(&repo, &["status", "--porcelain", "--ignored"]), "");
    assert!(!repo.join(".config").exists());
    eprintln!("whole test: {:.0} s", started.elapsed().as_secs_f64());
}
