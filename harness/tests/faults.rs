//! Faults provoked for real against the real harness binary: a guest that hangs, a kernel that
//! panics, a kernel that dies before the guest speaks, an experiment that crashes, hangs or writes
//! garbage, a watchdog that cuts a run short, SIGINT mid-matrix and `--resume`, two runs sharing
//! a results directory, and the host failing the harness (no QEMU, no network, a read-only or
//! full results directory, malformed kernels.yaml and claims). docs/faults.md maps every fault to
//! its outcome and the test here that shows it.
//!
//! Boots use Debian's bookworm kernel (cached by the first run) under TCG. Kernels that must
//! misbehave get it from a test-local kernels.yaml: the guest reads every `rph.run=` on the
//! kernel command line, so `boot: { cmdline: "rph.run=selftest.hang-init" }` adds a self-test to
//! that kernel alone, and one harness run serves many faults. At most one booting harness runs at
//! a time in this file ([`BOOTS`]), each with at most two QEMUs. `RPH_SKIP_BOOT=1` skips the
//! tests that boot; CI never sets it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

mod workspace;
use workspace::{root, skip_boots};

/// One booting harness at a time, so this file never runs more than two QEMUs at once.
static BOOTS: Mutex<()> = Mutex::new(());

fn boot_slot() -> MutexGuard<'static, ()> {
    BOOTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh scratch directory under target/e2e/faults/.
fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target").join("e2e").join("faults").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const BOOKWORM: &str = "{ debian: { suite: bookworm, package: linux-image-cloud-amd64 } }";

/// A kernels.yaml whose rows are all Debian's bookworm kernel with the given boot settings.
fn kernels_yaml(dir: &Path, rows: &[(&str, &str)]) -> PathBuf {
    let mut text = String::from("kernels:\n");
    for (id, boot) in rows {
        text.push_str(&format!(
            "  - id: {id}\n    version: \"6.1\"\n    source: {BOOKWORM}\n"
        ));
        if !boot.is_empty() {
            text.push_str(&format!("    boot: {boot}\n"));
        }
    }
    text.push_str("groups:\n  default: [");
    text.push_str(
        &rows
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
            .join(", "),
    );
    text.push_str("]\n");
    let path = dir.join("kernels.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn harness() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.current_dir(root()).stdin(Stdio::null());
    cmd
}

/// `harness --kernels <kernels> run --out <dir>/results --report <dir>/report --accel tcg …`.
fn run_cmd(dir: &Path, kernels: &Path, extra: &[&str]) -> Command {
    let mut cmd = harness();
    cmd.arg("--kernels")
        .arg(kernels)
        .args(["run", "--accel", "tcg", "--out"])
        .arg(dir.join("results"))
        .arg("--report")
        .arg(dir.join("report"))
        .args(extra);
    cmd
}

fn output(mut cmd: Command) -> (Output, String) {
    let output = cmd.output().expect("running harness");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("{stderr}");
    (output, stderr)
}

fn load(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(result: &Value) -> Vec<String> {
    result["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn record<'a>(result: &'a Value, id: &str) -> &'a Value {
    result["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{}: no record {id}", result["kernel"]))
}

/// Live QEMU processes whose command line mentions `needle` (our runs put their output
/// directory in every QEMU's argv, through the serial log paths).
fn qemus_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("qemu-system") && cmdline.contains(&needle) {
            found.push(format!("{}: {cmdline}", name.to_string_lossy()));
        }
    }
    found
}

// -------------------------------------------------------------------------------------------
// One matrix, many faults: every row is bookworm's kernel, each misbehaving in its own way.
// -------------------------------------------------------------------------------------------

/// Watchdogs of the rows that must time out. A boot with `--only options` takes 3-5 s under TCG
/// (up to 12 s when the machine is busy); the whole catalogue over the serial port ~19 s, of
/// which the first records arrive after ~3 s: the hung guest gets time to say everything before
/// it hangs, the whole catalogue is cut short wherever it is.
const HANG_WATCHDOG_S: u64 = 30;
const CUT_WATCHDOG_S: u64 = 12;

const FAULT_ROWS: [(&str, &str); 6] = [
    // PID 1 spins after the options experiments: the whole guest hangs.
    (
        "hang-init",
        "{ cmdline: \"rph.run=selftest.hang-init\", timeout-s: 30 }",
    ),
    // PID 1 exits after the options experiments: the kernel panics.
    ("exit-init", "{ cmdline: \"rph.run=selftest.exit-init\" }"),
    // The kernel finds no init in the initramfs and panics before the guest exists.
    ("early-death", "{ cmdline: \"rdinit=/nonexistent\" }"),
    // One experiment segfaults, one spins past its budget, one writes garbage on the channel.
    (
        "in-experiment",
        "{ cmdline: \"rph.run=selftest.crash,selftest.hang,selftest.garbage\" }",
    ),
    // The whole catalogue under a watchdog shorter than it needs; over the slower serial port, so
    // that a faster machine than this one still cannot finish in time.
    (
        "cut-short",
        "{ cmdline: \"rph.run=all rph.channel=serial\", timeout-s: 12 }",
    ),
    // The guest declines the shared-memory log: records take the serial port, its fallback.
    ("serial-channel", "{ cmdline: \"rph.channel=serial\" }"),
];

struct FaultRun {
    dir: PathBuf,
    stderr: String,
    wall: Duration,
}

fn fault_run() -> &'static FaultRun {
    static RUN: OnceLock<FaultRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let _slot = boot_slot();
        let dir = scratch("matrix");
        let kernels = kernels_yaml(&dir, &FAULT_ROWS);
        let started = Instant::now();
        let (out, stderr) = output(run_cmd(
            &dir,
            &kernels,
            &["--only", "options", "--jobs", "2", "--retries", "2"],
        ));
        assert!(
            out.status.success(),
            "a matrix of misbehaving kernels is still a successful run: {stderr}"
        );
        FaultRun {
            dir,
            stderr,
            wall: started.elapsed(),
        }
    })
}

fn fault_result(kernel: &str) -> Value {
    load(
        &fault_run()
            .dir
            .join("results")
            .join(format!("{kernel}.json")),
    )
}

const OPTIONS: [&str; 6] = [
    "options.so_reuseaddr",
    "options.so_reuseport",
    "options.so_attach_reuseport_cbpf",
    "options.so_attach_reuseport_ebpf",
    "options.so_detach_reuseport_bpf",
    "options.so_incoming_cpu",
];

#[test]
fn a_hung_guest_is_a_timeout_with_its_console_tail_and_no_qemu_left() {
    if skip_boots() {
        return;
    }
    let run = fault_run();
    eprintln!("fault matrix took {:.1} s", run.wall.as_secs_f64());
    let r = fault_result("hang-init");
    let timeout = &r["run"]["timeout"];
    assert_eq!(timeout["after_s"], HANG_WATCHDOG_S, "{}", r["run"]);
    let tail = timeout["console_tail"].as_str().unwrap();
    // The console is quiet (loglevel=4): its last line is all a hang may leave.
    assert!(
        tail.starts_with("[ ") && !tail.contains("Kernel panic"),
        "console tail: {tail:?}"
    );
    // The watchdog, not the guest, ended the boot: no earlier than the limit, and promptly.
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "a timeout is never retried: {attempts:?}"
    );
    assert_eq!(attempts[0]["ended"], "timeout");
    let wall_ms = attempts[0]["wall_ms"].as_u64().unwrap();
    assert!(
        (HANG_WATCHDOG_S * 1000..HANG_WATCHDOG_S * 1000 + 3000).contains(&wall_ms),
        "wall {wall_ms} ms"
    );
    // The guest spoke before it hung: what it said is kept.
    assert!(r["header"].is_object());
    assert_eq!(ids(&r), OPTIONS, "records that arrived before the hang");
    let left = qemus_mentioning(&run.dir);
    assert!(left.is_empty(), "QEMU outlived the run: {left:?}");
}

#[test]
fn a_kernel_panic_is_a_panic_cell_with_the_panic_line() {
    if skip_boots() {
        return;
    }
    let r = fault_result("exit-init");
    let panic = &r["run"]["panic"];
    let line = panic["line"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", r["run"]));
    assert!(
        line.contains("Kernel panic - not syncing") && line.contains("Attempted to kill init"),
        "{line}"
    );
    let tail = panic["console_tail"].as_str().unwrap();
    assert!(
        tail.contains(line) && tail.contains("Call Trace:"),
        "{tail}"
    );
    // The guest had spoken, so the panic is a result and not retried.
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["ended"], "panic");
    assert_eq!(ids(&r), OPTIONS);
}

#[test]
fn a_kernel_dying_before_the_guest_speaks_is_retried_and_every_attempt_recorded() {
    if skip_boots() {
        return;
    }
    let r = fault_result("early-death");
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "1 boot + --retries 2: {attempts:?}");
    for a in attempts {
        assert_eq!(a["ended"], "panic", "{a}");
        assert_eq!(a["accel"], "tcg");
        assert!(a["guest_ms"].is_null(), "the guest never ran: {a}");
    }
    let line = r["run"]["panic"]["line"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", r["run"]));
    assert!(line.contains("Kernel panic - not syncing"), "{line}");
    assert!(r["header"].is_null());
    assert!(r["records"].as_array().unwrap().is_empty());
    assert!(
        fault_run().stderr.contains("early-death boot") && fault_run().stderr.contains("attempt 3"),
        "each attempt is announced"
    );
}

#[test]
fn a_crash_hang_or_garbage_inside_one_experiment_costs_only_that_experiment() {
    if skip_boots() {
        return;
    }
    let r = fault_result("in-experiment");
    let planned = r["header"]["planned"].as_u64().unwrap();
    assert_eq!(planned, 9);
    assert_eq!(r["records"].as_array().unwrap().len() as u64, planned);
    assert_eq!(
        record(&r, "selftest.crash")["status"]["crashed"]["signal"],
        "SIGSEGV"
    );
    assert_eq!(
        record(&r, "selftest.hang")["status"]["timed_out"]["after_ms"],
        2000
    );
    assert_eq!(record(&r, "selftest.garbage")["status"], "completed");
    // The garbage went through the shared-memory log, from a worker process.
    assert_eq!(r["header"]["channel"], "shared-memory");
    for id in OPTIONS {
        assert_eq!(record(&r, id)["status"], "completed", "{id}");
    }
    // The garbage carried the record marker: the stream is precisely marked, nothing is lost.
    let reason = r["run"]["incomplete"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", r["run"]));
    assert!(
        reason.contains("checksum mismatch") && !reason.contains("missing"),
        "{reason}"
    );
    assert_eq!(r["attempts"].as_array().unwrap().len(), 1);
}

#[test]
fn without_the_shared_memory_log_records_take_the_serial_port_complete() {
    if skip_boots() {
        return;
    }
    let r = fault_result("serial-channel");
    assert_eq!(r["run"], "complete", "{}", r["run"]);
    assert_eq!(r["header"]["channel"], "serial");
    assert_eq!(ids(&r), OPTIONS.map(String::from).to_vec());
}

#[test]
fn a_run_cut_short_by_the_watchdog_keeps_the_records_that_arrived() {
    if skip_boots() {
        return;
    }
    let r = fault_result("cut-short");
    assert_eq!(
        r["run"]["timeout"]["after_s"], CUT_WATCHDOG_S,
        "{}",
        r["run"]
    );
    let planned = r["header"]["planned"].as_u64().unwrap();
    let records = r["records"].as_array().unwrap();
    assert!(planned > 1000, "the whole catalogue was planned: {planned}");
    assert!(
        !records.is_empty() && (records.len() as u64) < planned,
        "{} of {planned} records",
        records.len()
    );
    let mut seqs: Vec<u64> = records.iter().map(|x| x["seq"].as_u64().unwrap()).collect();
    let n = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "sorted, no duplicate sequence numbers");
    assert!(seqs.iter().all(|&s| (1..=planned).contains(&s)));
}

#[test]
fn the_fault_matrix_summary_names_every_outcome() {
    if skip_boots() {
        return;
    }
    let stderr = &fault_run().stderr;
    for (kernel, label) in [
        ("hang-init", "timeout"),
        ("exit-init", "panic"),
        ("early-death", "panic"),
        ("in-experiment", "incomplete"),
        ("cut-short", "timeout"),
        ("serial-channel", "complete"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(kernel) && l.contains(&format!(" {label}"))),
            "{kernel}: {label} not in the summary"
        );
    }
    // The logs of kernels that did not complete stay for a person to read.
    let work = fault_run().dir.join("results").join(".work");
    let runs: Vec<_> = std::fs::read_dir(&work).unwrap().flatten().collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0]
        .path()
        .join("exit-init")
        .join("console.log")
        .is_file());
}

// -------------------------------------------------------------------------------------------
// SIGINT and --resume; two runs at once.
// -------------------------------------------------------------------------------------------

#[test]
fn sigint_mid_matrix_keeps_finished_kernels_kills_qemu_exits_130_and_resume_finishes() {
    if skip_boots() {
        return;
    }
    let _slot = boot_slot();
    let dir = scratch("sigint");
    let kernels = kernels_yaml(&dir, &[("first", ""), ("second", "")]);
    let args = [
        "--only", "options", "--jobs", "1", "--kernel", "first", "--kernel", "second",
    ];
    let mut cmd = run_cmd(&dir, &kernels, &args);
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let first = dir.join("results").join("first.json");
    // Wait for the first kernel's result and the second kernel's QEMU.
    let second_logs = dir.join("results").join(".work");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "the second kernel never started");
        assert!(child.try_wait().unwrap().is_none(), "harness ended early");
        if first.is_file()
            && qemus_mentioning(&second_logs)
                .iter()
                .any(|q| q.contains("/second/"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left = qemus_mentioning(&dir);
    assert!(
        left.is_empty(),
        "QEMU outlived the interrupted harness: {left:?}"
    );
    let kept = std::fs::read(&first).unwrap();
    assert_eq!(load(&first)["run"], "complete");
    assert!(!dir.join("results").join("second.json").exists());

    let mut resume = run_cmd(&dir, &kernels, &args);
    resume.arg("--resume");
    let (out, stderr) = output(resume);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("first      kept from the previous run"),
        "{stderr}"
    );
    assert!(!stderr.contains("first      boot"), "{stderr}");
    assert_eq!(
        std::fs::read(&first).unwrap(),
        kept,
        "the kept result is untouched"
    );
    assert_eq!(
        load(&dir.join("results").join("second.json"))["run"],
        "complete"
    );
}

/// Processes whose parent is `ppid`, with their process group and state, from /proc.
fn children_of(ppid: u32) -> Vec<(u32, u32, char)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((_, parent, pgrp, state)) = stat(pid) {
            if parent == ppid {
                found.push((pid, pgrp, state));
            }
        }
    }
    found
}

/// (pid, ppid, pgrp, state) of a live process.
fn stat(pid: u32) -> Option<(u32, u32, u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; the fields after it are plain.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((pid, ppid, pgrp, state))
}

/// Live (not zombie) processes in process group `pgrp`.
fn live_in_group(pgrp: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter_map(stat)
        .filter(|&(_, _, g, state)| g == pgrp && state != 'Z')
        .map(|(pid, ..)| pid)
        .collect()
}

#[test]
fn sigterm_during_the_host_row_kills_the_guest_group_and_exits_143() {
    if skip_boots() {
        return;
    }
    let _slot = boot_slot();
    let dir = scratch("sigterm");
    let kernels = dir.join("kernels.yaml");
    std::fs::write(
        &kernels,
        "kernels:\n  - id: host\n    source: { host: {} }\ngroups:\n  default: [host]\n",
    )
    .unwrap();
    // The whole catalogue keeps the host-row guest and its workers busy for many seconds.
    let mut child = run_cmd(&dir, &kernels, &["--kernel", "host"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let guest_group = loop {
        assert!(
            Instant::now() < deadline,
            "the host-row guest never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "harness ended early");
        // The guest leads its own process group; its workers are in it.
        if let Some(&(pid, _, _)) = children_of(child.id())
            .iter()
            .find(|&&(pid, pgrp, _)| pgrp == pid && !children_of(pid).is_empty())
        {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!live_in_group(guest_group).is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("1 process group(s) killed"), "{stderr}");
    let left = live_in_group(guest_group);
    assert!(
        left.is_empty(),
        "guest processes outlived the harness: {left:?}"
    );
    assert!(!dir.join("results").join("host.json").exists());
}

#[test]
fn two_runs_at_once_on_one_cache_and_results_directory_both_complete_intact() {
    if skip_boots() {
        return;
    }
    let _slot = boot_slot();
    let dir = scratch("concurrent");
    let kernels = kernels_yaml(&dir, &[("shared", "")]);
    let yaml = std::fs::read_to_string(&kernels).unwrap();
    std::fs::write(
        &kernels,
        yaml.replace(
            "kernels:\n",
            "kernels:\n  - id: host\n    source: { host: {} }\n",
        )
        .replace("default: [", "default: [host, "),
    )
    .unwrap();
    let args = [
        "--only", "options", "--jobs", "1", "--kernel", "shared", "--kernel", "host",
    ];
    let children: Vec<_> = (0..2)
        .map(|_| {
            run_cmd(&dir, &kernels, &args)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stderr}");
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            stderr.matches(" complete |").count(),
            2,
            "both kernels complete in each run: {stderr}"
        );
    }
    for kernel in ["shared", "host"] {
        let r = load(&dir.join("results").join(format!("{kernel}.json")));
        assert_eq!(r["run"], "complete", "{kernel}");
        assert_eq!(ids(&r), OPTIONS, "{kernel}");
    }
    load(&dir.join("report").join("report.json"));
    let stray: Vec<_> = std::fs::read_dir(dir.join("results"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".work" && !n.ends_with(".json"))
        .collect();
    assert!(stray.is_empty(), "half-written files left: {stray:?}");
    verify_cache_blobs();
}

/// Every blob in the cache is named by the sha256 of its content.
fn verify_cache_blobs() {
    use sha2::Digest;
    let blobs = root().join("images").join("cache").join("sha256");
    let mut checked = 0;
    for entry in std::fs::read_dir(&blobs).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() != 64 || !entry.file_type().unwrap().is_file() {
            continue;
        }
        let mut hasher = sha2::Sha256::new();
        let mut file = std::fs::File::open(entry.path()).unwrap();
        std::io::copy(&mut file, &mut hasher).unwrap();
        assert_eq!(hex::encode(hasher.finalize()), name, "corrupt cache blob");
        checked += 1;
    }
    assert!(checked > 0, "no blob in {}", blobs.display());
}

// -------------------------------------------------------------------------------------------
// The host failing the harness: no QEMU, no network, nowhere to write. Nothing here boots.
// -------------------------------------------------------------------------------------------

#[test]
fn qemu_missing_exits_3_with_the_install_command() {
    let dir = scratch("no-qemu");
    let kernels = kernels_yaml(&dir, &[("k", "")]);
    let mut cmd = run_cmd(&dir, &kernels, &[]);
    cmd.env("PATH", dir.join("empty-path"));
    let (out, stderr) = output(cmd);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("qemu-system-x86_64 is not installed")
            && stderr.contains("apt-get install -y qemu-system-x86"),
        "{stderr}"
    );
    assert!(!dir.join("results").exists(), "nothing was started");
}

#[test]
fn qemu_missing_as_an_ordinary_user_never_tries_to_install_it() {
    // apt-get is on PATH, QEMU is not: root would install QEMU; anyone else must be told how.
    let dir = scratch("no-qemu-nobody");
    let kernels = kernels_yaml(&dir, &[("k", "")]);
    let path = dir.join("path");
    std::fs::create_dir(&path).unwrap();
    std::os::unix::fs::symlink("/usr/bin/apt-get", path.join("apt-get")).unwrap();
    for p in [&dir, &path] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let mut cmd = run_cmd(&dir, &kernels, &[]);
    cmd.env("PATH", &path).uid(65534).gid(65534);
    let (out, stderr) = output(cmd);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("qemu-system-x86_64 is not installed"),
        "{stderr}"
    );
    assert!(!stderr.contains("installing"), "{stderr}");
}

#[test]
fn a_missing_kernel_toolchain_is_named_once_for_the_run_and_each_build_row_says_why() {
    // A PATH that has everything this machine has but flex, bison, bc and apt-get: the harness
    // cannot install them, so it must say exactly what to install, once, and still run.
    let dir = scratch("no-toolchain");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let withheld = ["flex", "bison", "bc", "apt-get"];
    for entry in std::fs::read_dir("/usr/bin").unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if !withheld.iter().any(|w| name == *w) {
            std::os::unix::fs::symlink(entry.path(), bin.join(&name)).unwrap();
        }
    }
    let mut path = std::ffi::OsString::from(bin.as_os_str());
    for own in std::env::split_paths(&std::env::var_os("PATH").unwrap()) {
        if own != Path::new("/usr/bin") && own != Path::new("/bin") {
            path.push(":");
            path.push(own);
        }
    }
    let kernels = dir.join("kernels.yaml");
    let missing_tarball = dir.join("linux-3.8.13.tar.xz");
    std::fs::write(
        &kernels,
        format!(
            "kernels:\n  - id: old-a\n    version: \"3.8\"\n    source: {{ build: {{ local-tarball: {0} }} }}\n  - id: old-b\n    version: \"3.9\"\n    source: {{ build: {{ local-tarball: {0} }} }}\ngroups:\n  default: [old-a, old-b]\n",
            missing_tarball.display()
        ),
    )
    .unwrap();
    let mut cmd = run_cmd(&dir, &kernels, &["--only", "options"]);
    cmd.env("PATH", &path);
    let (out, stderr) = output(cmd);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    let advice = "harness: building old-a, old-b needs bc, flex, bison — install them with: sudo apt-get install -y bc flex bison";
    assert_eq!(stderr.matches(advice).count(), 1, "{stderr}");
    assert!(!stderr.contains("installing"), "{stderr}");
    for id in ["old-a", "old-b"] {
        let r = load(&dir.join("results").join(format!("{id}.json")));
        let reason = r["run"]["unavailable"]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("kernel build tools missing: bc, flex, bison"),
            "{id}: {reason}"
        );
    }
}

/// Runs `cmd` in a private mount namespace where `dir` is replaced by `mount` (prepared before
/// the fork: nothing allocates between fork and exec).
fn in_mount_namespace(cmd: &mut Command, dir: &Path, mount: MountFault) {
    use std::ffi::CString;
    let target = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let filler = CString::new(dir.join("filler").as_os_str().as_encoded_bytes()).unwrap();
    let root = CString::new("/").unwrap();
    let tmpfs = CString::new("tmpfs").unwrap();
    let tiny = CString::new("size=4k").unwrap();
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: only async-signal-safe system calls on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            match mount {
                MountFault::ReadOnly => {
                    check(libc::mount(
                        target.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                    check(libc::mount(
                        std::ptr::null(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                        std::ptr::null(),
                    ))?;
                }
                MountFault::Full => {
                    check(libc::mount(
                        tmpfs.as_ptr(),
                        target.as_ptr(),
                        tmpfs.as_ptr(),
                        0,
                        tiny.as_ptr() as *const libc::c_void,
                    ))?;
                    // Fill it: one page is all a 4k tmpfs holds.
                    let fd = libc::open(filler.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let page = [0u8; 4096];
                    while libc::write(fd, page.as_ptr() as *const libc::c_void, page.len()) > 0 {}
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
}

#[derive(Clone, Copy)]
enum MountFault {
    ReadOnly,
    Full,
}

fn storage_fault(name: &str, fault: MountFault, errno_text: &str) {
    let dir = scratch(name);
    let kernels = kernels_yaml(&dir, &[("k", "")]);
    let results = dir.join("results");
    std::fs::create_dir(&results).unwrap();
    let mut cmd = run_cmd(&dir, &kernels, &["--only", "options"]);
    in_mount_namespace(&mut cmd, &results, fault);
    let (out, stderr) = output(cmd);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "results directory {} is not writable",
            results.display()
        )) && stderr.contains(errno_text),
        "{stderr}"
    );
    assert!(!stderr.contains("boot "), "nothing was booted: {stderr}");
}

#[test]
fn a_read_only_results_directory_exits_4_before_booting() {
    storage_fault("read-only", MountFault::ReadOnly, "Read-only file system");
}

#[test]
fn a_full_results_directory_exits_4_before_booting() {
    storage_fault("full", MountFault::Full, "No space left on device");
}

#[test]
fn offline_with_nothing_cached_exits_5_naming_what_is_missing() {
    let dir = scratch("offline");
    let url = "https://deb.debian.org/debian/pool/main/l/linux-fault-test/never-cached.deb";
    let kernels = dir.join("kernels.yaml");
    std::fs::write(
        &kernels,
        format!(
            "kernels:\n  - id: uncached\n    version: \"6.1\"\n    source: {{ url: {{ url: {url}, kind: deb }} }}\ngroups:\n  default: [uncached]\n"
        ),
    )
    .unwrap();
    let cmd = run_cmd(&dir, &kernels, &["--only", "options", "--offline"]);
    let (out, stderr) = output(cmd);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("no kernel of this run could be obtained")
            && stderr.contains("uncached: ")
            && stderr.contains(url),
        "{stderr}"
    );
    let r = load(&dir.join("results").join("uncached.json"));
    assert!(
        r["run"]["unavailable"]["reason"]
            .as_str()
            .unwrap()
            .contains("offline"),
        "{}",
        r["run"]
    );
}

#[test]
fn no_network_at_all_exits_5_naming_the_host() {
    let dir = scratch("no-network");
    let url = "https://deb.debian.org/debian/pool/main/l/linux-fault-test/never-cached.deb";
    let kernels = dir.join("kernels.yaml");
    std::fs::write(
        &kernels,
        format!(
            "kernels:\n  - id: unreachable\n    version: \"6.1\"\n    source: {{ url: {{ url: {url}, kind: deb }} }}\ngroups:\n  default: [unreachable]\n"
        ),
    )
    .unwrap();
    let mut cmd = run_cmd(&dir, &kernels, &["--only", "options"]);
    // A network namespace of its own has no route anywhere; the guest build must not need one.
    cmd.env("CARGO_NET_OFFLINE", "true");
    // SAFETY: unshare is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (out, stderr) = output(cmd);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("no kernel of this run could be obtained")
            && stderr.contains("deb.debian.org"),
        "{stderr}"
    );
}

// -------------------------------------------------------------------------------------------
// Bad input: every error names file:line:column and exits 2. Nothing here boots.
// -------------------------------------------------------------------------------------------

/// The line (1-based) of the `occurrence`-th (0-based) appearance of `needle` in `text`.
fn line_of(text: &str, needle: &str, occurrence: usize) -> usize {
    let (at, _) = text
        .match_indices(needle)
        .nth(occurrence)
        .unwrap_or_else(|| panic!("{needle:?} does not occur {} times", occurrence + 1));
    text[..at].matches('\n').count() + 1
}

/// Runs `args` and asserts exit 2 with an error at `file:line:column` (the column may differ by
/// the parser's choice of token start; the line must match).
fn assert_located(args: &[&std::ffi::OsStr], file: &Path, line: usize, what: &str) {
    let mut cmd = harness();
    cmd.args(args);
    let (out, stderr) = output(cmd);
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    let prefix = format!("{}:{line}:", file.display());
    let located = stderr.find(&prefix).unwrap_or_else(|| {
        panic!("{what}: no {prefix}<column> in: {stderr}");
    });
    let column: String = stderr[located + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(
        !column.is_empty(),
        "{what}: no column after {prefix}: {stderr}"
    );
}

#[test]
fn malformed_kernels_yaml_exits_2_naming_file_line_column() {
    let dir = scratch("bad-kernels");
    let good =
        std::fs::read_to_string(kernels_yaml(&dir, &[("a", "{ cpus: 2 }"), ("b", "")])).unwrap();
    let cases = [
        (
            "misspelt field",
            good.replacen("    source:", "    sorce:", 1),
            "sorce:",
        ),
        (
            "wrong type",
            good.replacen("cpus: 2", "cpus: many", 1),
            "many",
        ),
        (
            "duplicate id",
            good.replacen("id: b", "id: a", 1),
            "id: a\n",
        ),
        (
            "unknown group member",
            good.replacen("default: [a, b]", "default: [a, c]", 1),
            "c]",
        ),
        (
            "id as a path",
            good.replacen("id: b", "id: ../b", 1),
            "../b",
        ),
    ];
    for (what, text, needle) in cases {
        assert_ne!(text, good, "{what}: the fault was not injected");
        let file = dir.join(format!("{}.yaml", what.replace(' ', "-")));
        std::fs::write(&file, &text).unwrap();
        // A duplicate is reported where it occurs the second time.
        let occurrence = usize::from(what == "duplicate id");
        let line = line_of(&text, needle, occurrence);
        for sub in [&["list"][..], &["run", "--only", "options"][..]] {
            let mut args: Vec<&std::ffi::OsStr> = vec!["--kernels".as_ref(), file.as_os_str()];
            args.extend(sub.iter().map(|s| std::ffi::OsStr::new(*s)));
            assert_located(&args, &file, line, what);
        }
    }
}

#[test]
fn malformed_claims_exit_2_naming_file_line_column() {
    let dir = scratch("bad-claims");
    let good = std::fs::read_to_string(root().join("claims.yaml")).unwrap();
    let first_pattern = "\"tw.*.server.*.old-ra.new-ra\"";
    let second_id = "id: 000.reuseaddr.one-server-per-address.tcp";
    let cases = [
        (
            "misspelt field",
            good.replacen("    quote:", "    quot:", 1),
            "quot:",
        ),
        (
            "wrong type",
            good.replacen("    scope: any", "    scope: [any]", 1),
            "[any]",
        ),
        (
            "unknown experiment",
            good.replacen(first_pattern, "\"tw.nonexistent\"", 1),
            "\"tw.nonexistent\"",
        ),
        (
            "duplicate id",
            good.replacen(second_id, "id: 000.reuseaddr.time-wait-rebind", 1),
            "id: 000.reuseaddr.time-wait-rebind\n",
        ),
    ];
    let results = root().join("harness/tests/fixtures/results");
    for (what, text, needle) in cases {
        assert_ne!(text, good, "{what}: the fault was not injected");
        let file = dir.join(format!("{}.yaml", what.replace(' ', "-")));
        std::fs::write(&file, &text).unwrap();
        let line = line_of(&text, needle, usize::from(what == "duplicate id"));
        let args: Vec<&std::ffi::OsStr> = vec![
            "--claims".as_ref(),
            file.as_os_str(),
            "report".as_ref(),
            results.as_os_str(),
            "--out".as_ref(),
            dir.as_os_str(),
        ];
        assert_located(&args, &file, line, what);
    }
}

#[test]
fn an_unknown_experiment_in_only_exits_2_before_anything_starts() {
    let mut cmd = harness();
    cmd.args([
        "run",
        "--kernel",
        "host",
        "--only",
        "options,nosuch.experiment",
    ]);
    let (out, stderr) = output(cmd);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nosuch.experiment"), "{stderr}");
}
