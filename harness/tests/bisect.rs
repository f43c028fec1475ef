//! `harness bisect`, `harness check` and `harness build-kernel` for real: Debian kernels booted
//! under QEMU, on the experiment whose outcome really changes between them
//! (`steer.incoming-cpu.udp`: 5.10 steers part of the flows to the socket of the receiving CPU,
//! 6.1 and later steer all of them), random bytes as images that cannot boot (refused before
//! QEMU, and loaded by QEMU behind a real boot header), and a directory that is not a kernel tree.
//!
//! The booting tests take a lock so this binary never runs more than one QEMU at a time.
//! `RPH_SKIP_BOOT=1` skips them for a quick inner loop; CI never sets it.

use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Instant;

mod workspace;
use workspace::{root, skip_boots};

const EXPERIMENT: &str = "steer.incoming-cpu.udp";

static ONE_QEMU: Mutex<()> = Mutex::new(());

fn harness(args: &[&str]) -> Output {
    let _one = ONE_QEMU.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(root())
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

/// Deterministic noise (xorshift), so a failure reproduces.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bisection_over_debian_kernels_names_the_first_that_steers_every_flow() {
    if skip_boots() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let o = harness(&[
        "bisect",
        "--experiment",
        EXPERIMENT,
        "--good",
        "deb-5.10",
        "--bad",
        "deb-7.2",
        "--kernels-list",
        "deb-5.10,deb-6.1,deb-6.12,deb-7.2",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.contains(&format!(
            "first kernel whose {EXPERIMENT} outcome differs from deb-5.10's: deb-6.1 "
        )),
        "{text}"
    );
    assert!(
        text.contains("steering: partly steered -> all steered"),
        "{text}"
    );
    // Good and bad, then the middle of the two left (deb-6.1, which differs): three boots, each
    // of the one experiment only; deb-6.12 is never booted.
    let booted: Vec<&str> = text.lines().filter(|l| l.starts_with("deb-")).collect();
    assert_eq!(booted.len(), 3, "{text}");
    assert!(!out.path().join("deb-6.12.json").exists());
    for kernel in ["deb-5.10", "deb-6.1", "deb-7.2"] {
        let result: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.path().join(format!("{kernel}.json"))).unwrap(),
        )
        .unwrap();
        let records = result["records"].as_array().unwrap();
        assert_eq!(records.len(), 1, "{kernel} ran more than the experiment");
        assert_eq!(records[0]["id"], EXPERIMENT);
    }
}

#[test]
fn bisection_over_the_matrix_boots_logarithmically_many() {
    if skip_boots() {
        return;
    }
    // The whole matrix in version order: 3.8 … 4.6 (not reachable here, never booted: they lie
    // outside the range), deb-5.10, deb-6.1, deb-6.12, the host (6.18), current and deb-7.2.
    let out = tempfile::tempdir().unwrap();
    let o = harness(&[
        "bisect",
        "--experiment",
        EXPERIMENT,
        "--good",
        "deb-5.10",
        "--bad",
        "current",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.contains("differs from deb-5.10's: deb-6.1 ("),
        "{text}"
    );
    let booted = std::fs::read_dir(out.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    // Five kernels from deb-5.10 to current: 2 + ceil(log2(3)) = 4 at most.
    assert!(booted <= 4, "{booted} boots:\n{text}");
}

#[test]
fn check_exits_0_when_the_outcome_is_the_expected_one_and_1_when_not() {
    if skip_boots() {
        return;
    }
    let o = harness(&[
        "check",
        "--kernel",
        "deb-6.1",
        "--experiment",
        EXPERIMENT,
        "--expect",
        "steering=all steered",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("good: steering=all steered"));
    let o = harness(&[
        "check",
        "--kernel",
        "deb-5.10",
        "--experiment",
        EXPERIMENT,
        "--expect",
        "steering=all steered",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("bad: steering=partly steered (expected all steered)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_exits_125_for_an_image_that_cannot_boot() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("bzImage");
    std::fs::write(&image, random_bytes(1 << 20)).unwrap();
    let o = harness(&[
        "check",
        "--kernel",
        image.to_str().unwrap(),
        "--experiment",
        EXPERIMENT,
        "--expect",
        "steering=all steered",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stdout(&o).contains("skip: kernel unavailable"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("is not an x86 kernel image"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_exits_125_when_qemu_loads_an_image_that_never_boots() {
    if skip_boots() {
        return;
    }
    // Random bytes behind a real boot header: the harness's own check lets it through, QEMU loads
    // it and executes garbage, the guest never speaks, the watchdog ends it.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("bzImage");
    let mut bytes = random_bytes(600 * 1024);
    bytes[0x1f1] = 4; // setup sectors
    bytes[0x202..0x206].copy_from_slice(b"HdrS");
    bytes[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes()); // boot protocol 2.15
    std::fs::write(&image, &bytes).unwrap();
    let o = harness(&[
        "check",
        "--kernel",
        image.to_str().unwrap(),
        "--experiment",
        EXPERIMENT,
        "--expect",
        "steering=all steered",
        "--timeout",
        "15",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stdout(&o).contains("skip: boot timed out after 15 s"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn build_kernel_exits_125_for_a_tree_that_cannot_be_built() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README"), "not a kernel").unwrap();
    let o = harness(&["build-kernel", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot build"));
    assert!(o.stdout.is_empty(), "no image path on stdout");
}

#[test]
fn check_stops_a_bisection_when_the_harness_itself_fails() {
    // An unknown experiment is the harness's usage error: 128 + 2, which `git bisect run` takes
    // as "stop", never as "bad".
    let o = harness(&[
        "check",
        "--kernel",
        "deb-6.1",
        "--experiment",
        "no.such.experiment",
        "--expect",
        "a=b",
    ]);
    assert_eq!(o.status.code(), Some(130));
    let o = harness(&[
        "check",
        "--kernel",
        "deb-6.1",
        "--experiment",
        EXPERIMENT,
        "--expect",
        "no-equals-sign",
    ]);
    assert_eq!(o.status.code(), Some(130));
}
