//! The matrix test binary (tests/matrix.rs) driven as a subprocess, as cargo test and nextest
//! drive it: listing, filtering (substring, `--exact`, `--skip`, `--ignored`), exit codes and
//! JUnit XML, on recorded real results (`RPH_MATRIX_RESULTS=harness/tests/fixtures/results`), so
//! nothing here boots.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod workspace;
use workspace::root;

/// The matrix test binary, as cargo builds it (`cargo test --no-run` reports its path).
fn matrix_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(root())
            .args([
                "test",
                "-p",
                "harness",
                "--test",
                "matrix",
                "--no-run",
                "--message-format=json",
            ])
            .output()
            .expect("running cargo test --no-run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|m| m["target"]["name"] == "matrix" && m["executable"].is_string())
            .map(|m| PathBuf::from(m["executable"].as_str().unwrap()))
            .expect("cargo reported the matrix executable")
    })
}

const FIXTURES: &str = "harness/tests/fixtures/results";

fn matrix(group: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(matrix_binary());
    cmd.current_dir(root())
        .env("RPH_MATRIX_RESULTS", FIXTURES)
        .env("RPH_MATRIX_GROUP", group)
        .env_remove("RPH_JUNIT")
        .env_remove("RPH_MATRIX_CLAIMS")
        .env_remove("NEXTEST_RUN_ID")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn listed(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

fn claim_count() -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(root())
        .args(["list", "claims", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap()
        .len()
}

#[test]
fn lists_one_trial_per_kernel_and_claim_or_experiment_sorted() {
    let o = matrix("deb-6.1,host", &["--list"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = listed(&o);
    let per_kernel = claim_count() + wire::catalogue().len();
    assert_eq!(names.len(), 2 * per_kernel);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for name in [
        "deb-6.1::000.reuseaddr.one-server-per-address.udp",
        "host::002.time-wait.reuseport-on-both",
        "deb-6.1::steer.incoming-cpu.udp",
        "host::bind.tcp.v4lo+v4lo.bound.a-rp.b-rp.same-uid",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not listed");
    }
    assert!(names
        .iter()
        .all(|n| n.starts_with("deb-6.1::") || n.starts_with("host::")));
}

#[test]
fn listing_never_boots_nor_downloads() {
    // No recorded results: a run would boot. A kernel that is not in the cache, and the
    // default group's unreachable kernel.org builds, must list in moments all the same.
    let started = Instant::now();
    let o = Command::new(matrix_binary())
        .current_dir(root())
        .env_remove("RPH_MATRIX_RESULTS")
        .env("RPH_MATRIX_GROUP", "default,debian")
        .args(["--list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "listing took {:?}",
        started.elapsed()
    );
    let names = listed(&o);
    assert!(
        names.iter().any(|n| n.starts_with("3.8::"))
            && names.iter().any(|n| n.starts_with("deb-5.10::"))
    );
    assert!(!String::from_utf8_lossy(&o.stderr).contains("booting"));
}

#[test]
fn filters_like_cargo_test() {
    let substring = listed(&matrix("deb-6.1,host", &["--list", "deb-6.1::steer."], &[]));
    assert!(!substring.is_empty());
    assert!(
        substring.iter().all(|n| n.starts_with("deb-6.1::steer.")),
        "{substring:?}"
    );
    let exact = listed(&matrix(
        "deb-6.1,host",
        &["--list", "--exact", "host::steer.incoming-cpu.udp"],
        &[],
    ));
    assert_eq!(exact, ["host::steer.incoming-cpu.udp"]);
    let skipped = listed(&matrix(
        "deb-6.1,host",
        &["--list", "deb-6.1::steer.", "--skip", "tcp"],
        &[],
    ));
    assert!(!skipped.is_empty() && skipped.len() < substring.len());
    assert!(skipped.iter().all(|n| !n.contains("tcp")));
    // Untested claims are ignored trials, and `--ignored` selects exactly them.
    let ignored = listed(&matrix("deb-6.1", &["--list", "--ignored"], &[]));
    assert!(!ignored.is_empty());
    let run = matrix("deb-6.1", &["--ignored", "--exact", &ignored[0]], &[]);
    assert!(run.status.success());
}

#[test]
fn an_empty_selection_is_an_error() {
    for args in [
        &["no-such-trial"][..],
        &["--list", "no-such-trial"],
        &["--exact", "deb-6.1::steer"],
    ] {
        let o = matrix("deb-6.1,host", args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("matches none of the"),
            "{args:?}"
        );
    }
}

#[test]
fn recorded_runs_pass_with_their_expected_differences_and_write_junit() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let o = matrix("deb-6.1,host", &["deb-6.1::00"], &[("RPH_JUNIT", &junit)]);
    assert!(
        o.status.success(),
        "{}\n{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout(&o).contains(" passed; 0 failed;"), "{}", stdout(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuite name=\"deb-6.1\""), "{xml}");
    assert!(xml.contains("failures=\"0\""));
    assert!(xml.contains("name=\"000.reuseaddr.one-server-per-address.udp\""));
    // The wording of the matrix's trials since waivers name their cells (0d333d9).
    assert!(
        xml.contains("contradicted, only in known differences: "),
        "the known error is reported as such"
    );
    assert!(xml.contains("<skipped/>"), "untested claims are skipped");
}

#[test]
fn an_unmarked_contradiction_fails_naming_the_evidence() {
    // The same recorded results, judged by claims.yaml without its expected differences.
    let dir = tempfile::tempdir().unwrap();
    let claims = std::fs::read_to_string(root().join("claims.yaml")).unwrap();
    // Each waiver goes whole: its `expected_difference:` line and the lines indented under it.
    let mut stripped = String::new();
    let mut inside: Option<usize> = None;
    for l in claims.lines() {
        let indent = l.len() - l.trim_start().len();
        if let Some(depth) = inside {
            if l.trim().is_empty() || indent > depth {
                continue;
            }
            inside = None;
        }
        if l.trim_start().starts_with("expected_difference:") {
            inside = Some(indent);
            continue;
        }
        stripped.push_str(l);
        stripped.push('\n');
    }
    assert_ne!(
        stripped.len(),
        claims.len() + 1,
        "claims.yaml marks expected differences"
    );
    let path = dir.path().join("claims.yaml");
    std::fs::write(&path, stripped).unwrap();
    let junit = dir.path().join("junit.xml");
    let o = matrix(
        "deb-6.1,host",
        &["::000.reuseaddr.one-server-per-address."],
        &[("RPH_MATRIX_CLAIMS", &path), ("RPH_JUNIT", &junit)],
    );
    assert_eq!(o.status.code(), Some(101), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("000.reuseaddr.one-server-per-address.udp is contradicted on deb-6.1"),
        "{out}"
    );
    assert!(
        out.contains("bind.udp.v4lo+v4lo.bound.a-ra.b-ra.same-uid"),
        "{out}"
    );
    // tcp holds on both kernels, udp is contradicted on both.
    assert!(out.contains("2 passed; 2 failed"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("failures=\"2\"") && xml.contains("<failure message="),
        "{xml}"
    );
}

#[test]
fn an_experiment_trial_fails_when_the_kernel_never_produced_its_record() {
    // 3.8's recorded run: kernel.org was unreachable, so nothing was measured.
    let o = matrix("3.8", &["--exact", "3.8::steer.incoming-cpu.udp"], &[]);
    assert_eq!(o.status.code(), Some(101));
    let out = stdout(&o);
    assert!(out.contains("3.8 has no record of steer.incoming-cpu.udp (run unavailable: cdn.kernel.org unreachable"), "{out}");
    // Its claims are not measured, which is not a contradiction.
    let o = matrix("3.8", &["3.8::000."], &[]);
    assert!(o.status.success(), "{}", stdout(&o));
    // And a kernel's completed experiment passes.
    let o = matrix(
        "deb-6.1",
        &["--exact", "deb-6.1::steer.incoming-cpu.udp"],
        &[],
    );
    assert!(o.status.success(), "{}", stdout(&o));
}
