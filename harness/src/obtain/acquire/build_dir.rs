//! Persistent build state for one git repository and one configuration: the harness's own
//! checkout of the repository and one out-of-tree (`O=`) build directory, reused from revision to
//! revision so that `make` rebuilds only what changed between two bisection steps.
//!
//! Layout, under `images/cache/build-dirs/<key>/` (the key: the repository's git directory, the
//! config fragment, the toolchain, [`super::build::COMPAT_VERSION`]):
//! - `src/linux/` — the checkout. Its index is `index` beside it and its objects are read from the
//!   repository's own git directory (`git --git-dir=… --work-tree=…`, with `GIT_INDEX_FILE`), so
//!   nothing is written into the user's repository and the user's work tree is never built in or
//!   patched. Moving to another revision is `git read-tree -m -u OLD NEW`, which rewrites only the
//!   files that differ: their mtimes are what `make` compares.
//! - `out/` — `O=`.
//! - `state.json` — the commit the checkout holds, or none while a checkout is under way (an
//!   interrupted checkout is then redone from nothing).
//! - `build-unfinished` — written before `make` starts, removed when a build succeeds. Found at
//!   the next step, it means the last build failed or was interrupted: `out/` is thrown away and
//!   that step builds clean (with ccache, most of it is cache lookups), and the provenance says so.
//! - `lock` — held exclusively (flock) for the whole step: two runs never share a build directory.
//!
//! Compatibility fixes are local edits of the checkout. Before each checkout every local edit
//! (a changed tracked file, an untracked file) is undone, so a revision that does not need a
//! fix never sees it; after the fixes of the new revision are applied, a file whose fixed bytes
//! are exactly those of the previous step gets its previous mtime back, so a fix applied at both
//! revisions does not rebuild what depends on it.
//!
//! Every git command is an argument vector.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use anyhow::{Context, Result};
use fs2::FileExt;
use serde::{Deserialize, Serialize};

use super::OrReason;
use crate::obtain::cache::{sha256_hex, BUILD_DIRS};

const STATE: &str = "state.json";
const UNFINISHED: &str = "build-unfinished";

/// What the checkout holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// The repository's git directory this checkout reads from.
    git_dir: String,
    /// The commit the index and work tree hold (less local edits); `None` while a checkout runs.
    commit: Option<String>,
}

/// One persistent build directory, locked for as long as this value lives.
pub struct BuildDir {
    root: PathBuf,
    git_dir: PathBuf,
    _lock: File,
}

/// What the build directory held when this step began, which decides how much `make` redoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Nothing was built here before.
    Fresh,
    /// The objects of `previous` are reused; `changed` files differ from it.
    Reused { previous: String, changed: usize },
    /// The objects there were thrown away, for `reason`.
    Wiped { reason: String },
}

impl Start {
    /// Whether `make` starts from an empty `O=`.
    pub fn is_clean(&self) -> bool {
        !matches!(self, Start::Reused { .. })
    }

    /// In words, for the provenance.
    pub fn describe(&self) -> String {
        match self {
            Start::Fresh => "fresh build directory".to_owned(),
            Start::Reused { previous, changed } => format!(
                "objects of {} reused, {changed} file(s) changed",
                &previous[..previous.len().min(12)]
            ),
            Start::Wiped { reason } => format!("clean build: {reason}"),
        }
    }
}

/// Local edits undone before a checkout: (path, bytes, mtime), to give an identical re-edit its
/// old mtime back.
#[derive(Debug, Default)]
pub struct UndoneEdits(Vec<(PathBuf, Vec<u8>, SystemTime)>);

/// The key of a build directory: repository, configuration and toolchain.
pub fn key(git_dir: &Path, configuration: &str) -> String {
    let text = format!("git-dir {}\n{configuration}", git_dir.display());
    sha256_hex(text.as_bytes())[..16].to_owned()
}

/// The absolute git directory of `repo` (a work tree, a linked worktree or a bare mirror).
pub fn git_dir_of(repo: &Path) -> Result<OrReason<PathBuf>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--absolute-git-dir"])
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .context("running git rev-parse --absolute-git-dir")?;
    if !output.status.success() {
        return Ok(Err(format!(
            "{} is not a git repository: {}",
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    )))
}

impl BuildDir {
    /// Opens (creating) the build directory `key` for the repository at `git_dir`, waiting for
    /// any other run using it.
    pub fn open(cache_root: &Path, git_dir: &Path, key: &str) -> Result<BuildDir> {
        let root = cache_root.join(BUILD_DIRS).join(key);
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let lock_path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        if FileExt::try_lock_exclusive(&lock).is_err() {
            eprintln!(
                "build: waiting for another run to release {}",
                root.display()
            );
            FileExt::lock_exclusive(&lock)
                .with_context(|| format!("locking {}", lock_path.display()))?;
        }
        Ok(BuildDir {
            root,
            git_dir: git_dir.to_owned(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The checkout (the kernel tree `make -C` builds from).
    pub fn tree(&self) -> PathBuf {
        self.root.join("src").join("linux")
    }

    /// `O=`.
    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    fn index(&self) -> PathBuf {
        self.root.join("index")
    }

    /// git on this checkout: the repository's objects, our index and work tree.
    fn git(&self, args: &[&OsStr]) -> Result<Output> {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir")
            .arg(&self.git_dir)
            .arg("--work-tree")
            .arg(self.tree())
            .args(args)
            .current_dir(&self.root)
            .env("GIT_INDEX_FILE", self.index())
            // Whatever a caller (`git bisect run`) put in the environment names the user's
            // repository and index, never ours.
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_COMMON_DIR")
            .env_remove("GIT_OBJECT_DIRECTORY")
            .env("LC_ALL", "C");
        cmd.output()
            .with_context(|| format!("running git {:?} in {}", args, self.root.display()))
    }

    fn git_ok(&self, args: &[&str]) -> Result<OrReason<Vec<u8>>> {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let output = self.git(&args)?;
        if output.status.success() {
            Ok(Ok(output.stdout))
        } else {
            Ok(Err(format!(
                "git {}: {}",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    fn read_state(&self) -> Option<State> {
        let bytes = fs::read(self.root.join(STATE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write_state(&self, commit: Option<&str>) -> Result<()> {
        let state = State {
            git_dir: self.git_dir.display().to_string(),
            commit: commit.map(str::to_owned),
        };
        crate::results::write_atomically(
            &self.root.join(STATE),
            &serde_json::to_vec_pretty(&state).expect("state serializes"),
        )
    }

    /// Brings the checkout to `commit`, touching only the files that differ from the revision it
    /// held, and says what `make` may reuse. `Err` inside: the revision cannot be checked out.
    pub fn checkout(&self, commit: &str) -> Result<OrReason<(Start, UndoneEdits)>> {
        let unfinished = fs::read_to_string(self.root.join(UNFINISHED)).ok();
        let state = self
            .read_state()
            .filter(|s| s.git_dir == self.git_dir.display().to_string());
        let previous = state.and_then(|s| s.commit);
        let mut start = Start::Fresh;
        let mut undone = UndoneEdits::default();
        let mut moved = false;
        if let Some(previous) = previous.filter(|_| self.tree().is_dir()) {
            match self.undo_local_edits()? {
                Ok(edits) => {
                    undone = edits;
                    self.write_state(None)?;
                    match self.move_to(&previous, commit)? {
                        Ok(changed) => {
                            start = Start::Reused { previous, changed };
                            moved = true;
                        }
                        Err(reason) => {
                            start = Start::Wiped {
                                reason: format!("moving the checkout failed ({reason})"),
                            }
                        }
                    }
                }
                Err(reason) => {
                    start = Start::Wiped {
                        reason: format!("undoing the last step's edits failed ({reason})"),
                    }
                }
            }
        } else if self.tree().exists() || self.out().exists() {
            start = Start::Wiped {
                reason: "the last checkout did not finish".to_owned(),
            };
        }
        if !moved {
            self.write_state(None)?;
            for dir in [self.root.join("src"), self.out()] {
                remove_dir_if_present(&dir)?;
            }
            let _ = fs::remove_file(self.index());
            fs::create_dir_all(self.tree())
                .with_context(|| format!("creating {}", self.tree().display()))?;
            if let Err(reason) = self.git_ok(&["read-tree", "--reset", "-u", commit])? {
                return Ok(Err(reason));
            }
            // Files written in the same instant as the index are "racily clean" to git, which
            // then re-reads all of them at the next refresh (14 s for a 6.1 tree); refreshing
            // now, once, moves that cost into this first, whole-tree build.
            let _ = self.git_ok(&["update-index", "-q", "--refresh"])?;
            undone = UndoneEdits::default();
        }
        if let Some(unfinished) = unfinished {
            if !start.is_clean() {
                start = Start::Wiped {
                    reason: format!(
                        "the last build here ({}) failed or was interrupted, its objects were thrown away",
                        unfinished.trim()
                    ),
                };
            }
            remove_dir_if_present(&self.out())?;
            let _ = fs::remove_file(self.root.join(UNFINISHED));
        }
        fs::create_dir_all(self.out())
            .with_context(|| format!("creating {}", self.out().display()))?;
        self.write_state(Some(commit))?;
        Ok(Ok((start, undone)))
    }

    /// `read-tree -m -u`: the two-tree merge `git checkout` does, on our index. Returns how many
    /// files differ between the two revisions.
    fn move_to(&self, previous: &str, commit: &str) -> Result<OrReason<usize>> {
        let changed =
            match self.git_ok(&["diff-tree", "-r", "--name-only", "-z", previous, commit])? {
                Ok(names) => names.split(|b| *b == 0).filter(|n| !n.is_empty()).count(),
                Err(reason) => return Ok(Err(reason)),
            };
        if previous == commit {
            return Ok(Ok(0));
        }
        Ok(self
            .git_ok(&["read-tree", "-m", "-u", previous, commit])?
            .map(|_| changed))
    }

    /// Undoes every local edit of the checkout (the last step's compatibility fixes, or what an
    /// interrupted checkout left): changed tracked files are restored from the index, untracked
    /// files removed. Returns what was undone.
    fn undo_local_edits(&self) -> Result<OrReason<UndoneEdits>> {
        // A refresh makes the index's stat data current, so only real edits show.
        let _ = self.git_ok(&["update-index", "-q", "--refresh"])?;
        let changed = match self.git_ok(&["diff-files", "--name-only", "-z"])? {
            Ok(names) => split_z(&names),
            Err(reason) => return Ok(Err(reason)),
        };
        let untracked = match self.git_ok(&["ls-files", "--others", "-z"])? {
            Ok(names) => split_z(&names),
            Err(reason) => return Ok(Err(reason)),
        };
        let mut undone = UndoneEdits::default();
        for name in changed.iter().chain(&untracked) {
            let path = self.tree().join(name);
            if let (Ok(bytes), Ok(meta)) = (fs::read(&path), fs::metadata(&path)) {
                let mtime = meta
                    .modified()
                    .with_context(|| format!("{}", path.display()))?;
                undone.0.push((PathBuf::from(name), bytes, mtime));
            }
        }
        for name in &untracked {
            let path = self.tree().join(name);
            fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        }
        if !changed.is_empty() {
            let mut args: Vec<&str> = vec!["checkout-index", "-f", "-u", "-q", "--"];
            args.extend(changed.iter().map(String::as_str));
            if let Err(reason) = self.git_ok(&args)? {
                return Ok(Err(reason));
            }
        }
        Ok(Ok(undone))
    }

    /// After this step's fixes: a file whose bytes are exactly what they were at the last step
    /// gets its last mtime back, so `make` does not rebuild what depends on it.
    pub fn keep_unchanged_edits(&self, undone: UndoneEdits) -> Result<usize> {
        let mut kept = 0;
        for (name, bytes, mtime) in undone.0 {
            let path = self.tree().join(&name);
            if fs::read(&path).is_ok_and(|now| now == bytes) {
                File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(mtime))
                    .with_context(|| format!("setting the mtime of {}", path.display()))?;
                kept += 1;
            }
        }
        Ok(kept)
    }

    /// Before `make`: a build of `commit` is under way.
    pub fn begin_build(&self, commit: &str) -> Result<()> {
        let path = self.root.join(UNFINISHED);
        fs::write(&path, commit).with_context(|| format!("writing {}", path.display()))
    }

    /// After a successful build: nothing in `out/` is half made.
    pub fn finish_build(&self) -> Result<()> {
        let path = self.root.join(UNFINISHED);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error).with_context(|| format!("deleting {}", path.display())),
        }
    }
}

fn split_z(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("deleting {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Repo(tempfile::TempDir);

    impl Repo {
        fn new() -> Repo {
            let repo = Repo(tempfile::tempdir().unwrap());
            repo.git(&["init", "-q"]);
            repo
        }

        fn git(&self, args: &[&str]) -> String {
            let output = Command::new("git")
                .arg("-C")
                .arg(self.0.path())
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

        fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
            for (name, text) in files {
                let path = self.0.path().join(name);
                match text {
                    Some(text) => {
                        fs::create_dir_all(path.parent().unwrap()).unwrap();
                        fs::write(&path, text).unwrap();
                        self.git(&["add", name]);
                    }
                    None => {
                        self.git(&["rm", "-q", name]);
                    }
                }
            }
            self.git(&["commit", "-q", "-m", message]);
            self.git(&["rev-parse", "HEAD"])
        }

        fn git_dir(&self) -> PathBuf {
            git_dir_of(self.0.path()).unwrap().unwrap()
        }
    }

    fn mtime(path: &Path) -> SystemTime {
        fs::metadata(path).unwrap().modified().unwrap()
    }

    fn set_mtime_past(path: &Path) {
        let past = SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(past)
            .unwrap();
    }

    #[test]
    fn moving_between_revisions_rewrites_only_the_files_that_differ() {
        let repo = Repo::new();
        let first = repo.commit(
            &[
                ("Makefile", Some("VERSION = 6\n")),
                ("net/a.c", Some("a1\n")),
                ("net/b.c", Some("b\n")),
            ],
            "one",
        );
        let second = repo.commit(
            &[("net/a.c", Some("a2\n")), ("net/c.c", Some("c\n"))],
            "two",
        );
        let cache = tempfile::tempdir().unwrap();
        let dir = BuildDir::open(cache.path(), &repo.git_dir(), "k").unwrap();
        let (start, _) = dir.checkout(&first).unwrap().unwrap();
        assert_eq!(start, Start::Fresh);
        let tree = dir.tree();
        assert_eq!(fs::read_to_string(tree.join("net/a.c")).unwrap(), "a1\n");
        set_mtime_past(&tree.join("net/a.c"));
        set_mtime_past(&tree.join("net/b.c"));
        let b_before = mtime(&tree.join("net/b.c"));
        let a_before = mtime(&tree.join("net/a.c"));

        let (start, _) = dir.checkout(&second).unwrap().unwrap();
        assert_eq!(
            start,
            Start::Reused {
                previous: first.clone(),
                changed: 2
            }
        );
        assert_eq!(fs::read_to_string(tree.join("net/a.c")).unwrap(), "a2\n");
        assert!(tree.join("net/c.c").exists());
        assert_eq!(
            mtime(&tree.join("net/b.c")),
            b_before,
            "an unchanged file is not touched"
        );
        assert!(
            mtime(&tree.join("net/a.c")) > a_before,
            "a changed file is newer"
        );

        // And back: the file the second revision added is gone again.
        let (start, _) = dir.checkout(&first).unwrap().unwrap();
        assert!(
            matches!(start, Start::Reused { changed: 2, .. }),
            "{start:?}"
        );
        assert!(!tree.join("net/c.c").exists());
        assert_eq!(fs::read_to_string(tree.join("net/a.c")).unwrap(), "a1\n");

        // The user's repository was never written to: its index and work tree are as committed.
        assert_eq!(repo.git(&["status", "--porcelain"]), "");
        assert_eq!(repo.git(&["rev-parse", "HEAD"]), second);
    }

    #[test]
    fn a_fix_applied_at_both_revisions_keeps_its_mtime_and_one_not_needed_is_undone() {
        let repo = Repo::new();
        let first = repo.commit(&[("Makefile", Some("old\n")), ("h.h", Some("x\n"))], "one");
        let second = repo.commit(&[("README", Some("doc\n"))], "two");
        let third = repo.commit(&[("Makefile", Some("new\n"))], "three");
        let cache = tempfile::tempdir().unwrap();
        let dir = BuildDir::open(cache.path(), &repo.git_dir(), "k").unwrap();
        let tree = dir.tree();
        // A "fix": patch h.h and create an untracked header, as compat_fixes does for old trees.
        let fix = || {
            fs::write(tree.join("h.h"), "x fixed\n").unwrap();
            fs::write(tree.join("gcc12.h"), "copy\n").unwrap();
        };
        let (_, undone) = dir.checkout(&first).unwrap().unwrap();
        fix();
        assert_eq!(dir.keep_unchanged_edits(undone).unwrap(), 0);
        set_mtime_past(&tree.join("h.h"));
        let fixed_at = mtime(&tree.join("h.h"));

        let (_, undone) = dir.checkout(&second).unwrap().unwrap();
        assert_eq!(
            fs::read_to_string(tree.join("h.h")).unwrap(),
            "x\n",
            "undone before the move"
        );
        assert!(!tree.join("gcc12.h").exists());
        fix();
        assert_eq!(dir.keep_unchanged_edits(undone).unwrap(), 2);
        assert_eq!(
            mtime(&tree.join("h.h")),
            fixed_at,
            "the same fix, the same mtime"
        );

        // The third revision needs no fix: the tree is exactly the commit's.
        let (_, undone) = dir.checkout(&third).unwrap().unwrap();
        assert_eq!(dir.keep_unchanged_edits(undone).unwrap(), 0);
        assert_eq!(fs::read_to_string(tree.join("h.h")).unwrap(), "x\n");
        assert!(!tree.join("gcc12.h").exists());
        assert_eq!(fs::read_to_string(tree.join("Makefile")).unwrap(), "new\n");
    }

    #[test]
    fn an_unfinished_build_throws_the_objects_away() {
        let repo = Repo::new();
        let first = repo.commit(&[("Makefile", Some("1\n"))], "one");
        let second = repo.commit(&[("Makefile", Some("2\n"))], "two");
        let cache = tempfile::tempdir().unwrap();
        let dir = BuildDir::open(cache.path(), &repo.git_dir(), "k").unwrap();
        dir.checkout(&first).unwrap().unwrap();
        dir.begin_build(&first).unwrap();
        fs::write(dir.out().join("half.o"), "partial").unwrap();
        // The build "dies" here: no finish_build.
        let (start, _) = dir.checkout(&second).unwrap().unwrap();
        let Start::Wiped { reason } = &start else {
            panic!("{start:?}")
        };
        assert!(
            reason.contains(&first) && reason.contains("interrupted"),
            "{reason}"
        );
        assert!(start.is_clean());
        assert!(!dir.out().join("half.o").exists());
        assert!(dir.out().is_dir());

        // A finished build leaves its objects for the next step.
        dir.begin_build(&second).unwrap();
        fs::write(dir.out().join("whole.o"), "done").unwrap();
        dir.finish_build().unwrap();
        let (start, _) = dir.checkout(&first).unwrap().unwrap();
        assert!(!start.is_clean(), "{start:?}");
        assert!(dir.out().join("whole.o").exists());
    }

    #[test]
    fn an_interrupted_checkout_is_redone_from_nothing() {
        let repo = Repo::new();
        let first = repo.commit(&[("Makefile", Some("1\n"))], "one");
        let cache = tempfile::tempdir().unwrap();
        let dir = BuildDir::open(cache.path(), &repo.git_dir(), "k").unwrap();
        dir.checkout(&first).unwrap().unwrap();
        dir.write_state(None).unwrap();
        fs::write(dir.out().join("x.o"), "").unwrap();
        let (start, _) = dir.checkout(&first).unwrap().unwrap();
        assert!(matches!(start, Start::Wiped { .. }), "{start:?}");
        assert!(!dir.out().join("x.o").exists());
        assert_eq!(
            fs::read_to_string(dir.tree().join("Makefile")).unwrap(),
            "1\n"
        );
    }

    #[test]
    fn a_bare_mirror_is_checked_out_like_a_work_tree() {
        let repo = Repo::new();
        let first = repo.commit(&[("Makefile", Some("1\n"))], "one");
        let second = repo.commit(&[("Makefile", Some("2\n"))], "two");
        let mirror = tempfile::tempdir().unwrap();
        let status = Command::new("git")
            .args(["clone", "--quiet", "--mirror"])
            .arg(repo.0.path())
            .arg(mirror.path().join("m.git"))
            .status()
            .unwrap();
        assert!(status.success());
        let git_dir = git_dir_of(&mirror.path().join("m.git")).unwrap().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let dir = BuildDir::open(cache.path(), &git_dir, "k").unwrap();
        dir.checkout(&first).unwrap().unwrap();
        let (start, _) = dir.checkout(&second).unwrap().unwrap();
        assert!(
            matches!(start, Start::Reused { changed: 1, .. }),
            "{start:?}"
        );
        assert_eq!(
            fs::read_to_string(dir.tree().join("Makefile")).unwrap(),
            "2\n"
        );
    }

    #[test]
    fn a_second_user_waits_for_the_lock() {
        let repo = Repo::new();
        let cache = tempfile::tempdir().unwrap();
        let first = BuildDir::open(cache.path(), &repo.git_dir(), "k").unwrap();
        let lock = File::open(first.root().join("lock")).unwrap();
        assert!(
            FileExt::try_lock_exclusive(&lock).is_err(),
            "the directory is locked while in use"
        );
        drop(first);
        assert!(FileExt::try_lock_exclusive(&lock).is_ok());
    }
}
