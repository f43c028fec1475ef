//! End-to-end: the real harness boots real Debian kernels under QEMU (and runs the host row in a
//! network namespace), then these tests assert on measured outcomes that are stable Linux facts.
//!
//! One matrix run (deb-6.1, deb-7.2 and the host, whole catalogue plus one self-test that crashes
//! on purpose) serves every test in this file. `RPH_SKIP_BOOT=1` skips them for a quick inner loop;
//! CI never sets it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

mod workspace;
use workspace::{root, skip_boots};

const KERNELS: [&str; 3] = ["deb-6.1", "deb-7.2", "host"];

/// Runs the matrix once per test process and returns the results directory.
fn results() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = root().join("target").join("e2e").join("boot");
        let _ = std::fs::remove_dir_all(&out);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
        cmd.current_dir(root())
            .args(["run", "--only", "all,selftest.crash", "--out"])
            .arg(&out);
        for k in KERNELS {
            cmd.args(["--kernel", k]);
        }
        let output = cmd.output().expect("running harness");
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("{stderr}");
        assert!(output.status.success(), "harness run failed: {stderr}");
        out
    })
}

fn result(kernel: &str) -> Value {
    let path = results().join(format!("{kernel}.json"));
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn record<'a>(result: &'a Value, id: &str) -> &'a Value {
    result["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{}: no record {id}", result["kernel"]))
}

/// Every repetition of an outcome fact.
fn outcomes(result: &Value, id: &str, fact: &str) -> Vec<String> {
    let rec = record(result, id);
    let values = rec["facts"][fact]["outcomes"]
        .as_array()
        .or_else(|| rec["facts"][fact]["receivers"].as_array())
        .unwrap_or_else(|| panic!("{}: {id} has no fact {fact}: {rec}", result["kernel"]));
    values
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn assert_all(kernel: &str, id: &str, fact: &str, expected: &str) {
    let r = result(kernel);
    let seen = outcomes(&r, id, fact);
    assert!(
        seen.len() >= 3,
        "{kernel}: {id}.{fact} measured {} times: {seen:?}",
        seen.len()
    );
    assert!(
        seen.iter().all(|v| v == expected),
        "{kernel}: {id}.{fact} = {seen:?}, expected {expected} every time"
    );
}

/// An experiment completed, or is unsupported for a reason the kernel gave (its errno: a sysctl
/// gone, an option it lacks); on the host row also because the row cannot look (a global
/// sysctl its namespaces do not show), which the reason says.
fn assert_measured(kernel: &str, rec: &Value) {
    let status = &rec["status"];
    if *status == "completed" {
        return;
    }
    let reason = status["unsupported"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{kernel}: {} ended {status}", rec["id"]));
    let names_errno = reason.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        w.len() > 2 && w.starts_with('E') && w[1..].chars().all(|c| c.is_ascii_uppercase())
    });
    let the_row = kernel == "host" && reason.contains("this row's");
    assert!(
        names_errno || the_row,
        "{kernel}: {} is unsupported without the kernel's errno: {reason}",
        rec["id"]
    );
}

#[test]
fn every_kernel_ran_the_whole_catalogue() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        let r = result(kernel);
        assert_eq!(r["run"], "complete", "{kernel}: {}", r["run"]);
        let records = r["records"].as_array().unwrap();
        assert_eq!(
            records.len() as u64,
            r["header"]["planned"].as_u64().unwrap(),
            "{kernel}"
        );
        for rec in records {
            if rec["id"] == "selftest.crash" {
                continue;
            }
            assert_measured(kernel, rec);
        }
    }
}

#[test]
fn debian_kernel_reports_the_release_of_its_package() {
    if skip_boots() {
        return;
    }
    for kernel in ["deb-6.1", "deb-7.2"] {
        let r = result(kernel);
        let release = r["header"]["uname"]["release"].as_str().unwrap();
        assert_eq!(
            r["provenance"]["kernel_release"].as_str(),
            Some(release),
            "{kernel}"
        );
        assert!(
            r["provenance"]["resolved_package"]
                .as_str()
                .unwrap()
                .contains(release)
                || kernel == "deb-7.2"
        );
        assert_eq!(r["header"]["pid1"], true);
        // Single-threaded TCG takes the vCPUs in turns on one host thread, so the guest runs one
        // experiment at a time; under KVM one per vCPU. Both vCPUs are there either way (the
        // steering experiments need two).
        let accel = &r["attempts"].as_array().unwrap().last().unwrap()["accel"];
        let cpus = r["header"]["cpus"].as_u64().unwrap();
        let workers = r["header"]["workers"].as_u64();
        assert_eq!(cpus, 2, "{kernel}");
        match accel.as_str() {
            Some("tcg") => assert_eq!(workers, Some(1), "{kernel}"),
            Some("kvm") => assert_eq!(workers, Some(cpus), "{kernel}"),
            other => panic!("{kernel}: accelerator {other:?}"),
        }
    }
    assert!(result("deb-6.1")["header"]["uname"]["release"]
        .as_str()
        .unwrap()
        .starts_with("6.1."));
    assert!(result("deb-7.2")["header"]["uname"]["release"]
        .as_str()
        .unwrap()
        .starts_with("7."));
}

#[test]
fn host_row_reports_the_host_release_from_its_own_namespace() {
    if skip_boots() {
        return;
    }
    let r = result("host");
    let uname = nix::sys::utsname::uname().unwrap();
    assert_eq!(
        r["header"]["uname"]["release"].as_str().unwrap(),
        uname.release().to_str().unwrap()
    );
    assert_eq!(r["header"]["pid1"], false);
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let theirs = r["header"]["netns"].as_str().unwrap();
    assert!(theirs.starts_with("net:["), "{theirs}");
    assert_ne!(
        theirs,
        ours.to_str().unwrap(),
        "the host row ran in the test's own network namespace"
    );
}

#[test]
fn reuseport_on_both_shares_a_loopback_port() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        assert_all(
            kernel,
            "bind.tcp.v4lo+v4lo.bound.a-rp.b-rp.same-uid",
            "b_bind",
            "ok",
        );
        assert_all(
            kernel,
            "bind.tcp.v4lo+v4lo.listening.a-rp.b-rp.same-uid",
            "b_listen",
            "ok",
        );
        assert_all(
            kernel,
            "bind.udp.v4lo+v4lo.bound.a-rp.b-rp.same-uid",
            "b_bind",
            "ok",
        );
    }
}

#[test]
fn a_wildcard_listener_blocks_a_specific_bind_even_with_reuseaddr_on_both() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        assert_all(
            kernel,
            "bind.tcp.v4any+v4lo.listening.a-ra.b-ra.same-uid",
            "b_bind",
            "EADDRINUSE",
        );
        // Not listening, SO_REUSEADDR on both lets the specific bind through.
        assert_all(
            kernel,
            "bind.tcp.v4any+v4lo.bound.a-ra.b-ra.same-uid",
            "b_bind",
            "ok",
        );
    }
}

#[test]
fn reuseport_needs_the_same_effective_uid() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        assert_all(
            kernel,
            "bind.tcp.v4lo+v4lo.listening.a-rp.b-rp.other-uid",
            "b_bind",
            "EADDRINUSE",
        );
        assert_all(
            kernel,
            "bind.udp.v4lo+v4lo.bound.a-rp.b-rp.other-uid",
            "b_bind",
            "EADDRINUSE",
        );
    }
}

#[test]
fn option_support_on_modern_kernels() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        for opt in [
            "so_reuseaddr",
            "so_reuseport",
            "so_attach_reuseport_cbpf",
            "so_incoming_cpu",
        ] {
            assert_all_once(kernel, &format!("options.{opt}"), "set", "ok");
        }
    }
}

fn assert_all_once(kernel: &str, id: &str, fact: &str, expected: &str) {
    let seen = outcomes(&result(kernel), id, fact);
    assert_eq!(seen, vec![expected.to_string()], "{kernel}: {id}.{fact}");
}

#[test]
fn time_wait_is_real_and_reuseaddr_on_both_rebinds_over_it() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        for id in [
            "tw.v4.server.to-same.old-ra.new-ra",
            "tw.v6.client.to-same.old-ra.new-ra",
        ] {
            assert_all(kernel, id, "time_wait_seen", "ok");
            assert_all(kernel, id, "new_bind", "ok");
        }
        assert_all(
            kernel,
            "tw.v4.client.to-same.old-none.new-none",
            "new_bind",
            "EADDRINUSE",
        );
    }
}

/// The whole catalogue leaves thousands of sockets in TIME_WAIT within a minute; with the
/// kernel's default limit (2048 in a 512 MiB guest) the later TIME_WAIT cells measured closed
/// sockets. The guest raises the limit, and every such cell proves the table never overflowed.
#[test]
fn every_time_wait_bind_cell_had_its_socket_in_time_wait() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        let r = result(kernel);
        let cells: Vec<&Value> = r["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| {
                let id = x["id"].as_str().unwrap();
                id.starts_with("bind.tcp.") && id.contains(".time-wait.")
            })
            .collect();
        // The main matrix (ids ending in the uid), then the `.late`, `.other-port` and
        // other-process cells.
        let main = cells
            .iter()
            .filter(|x| x["id"].as_str().unwrap().ends_with("-uid"))
            .count();
        assert_eq!(main, 1216, "{kernel}");
        assert!(cells.len() > main, "{kernel}: {}", cells.len());
        for cell in cells {
            assert_eq!(
                cell["facts"]["tw_overflows"]["count"], 0,
                "{kernel}: {}",
                cell["id"]
            );
        }
    }
}

#[test]
fn the_exact_address_wins_over_the_wildcard() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        // Document 003's example: B listens on the exact address and gets the connection.
        assert_all(
            kernel,
            "lookup.tcp.four-listeners-all-reuseport",
            "to.127.0.0.1",
            "B",
        );
        assert_all(
            kernel,
            "lookup.udp.specific-then-wildcard",
            "to.127.0.0.1",
            "A",
        );
        assert_all(
            kernel,
            "lookup.udp.specific-then-wildcard",
            "to.127.0.0.2",
            "B",
        );
    }
}

#[test]
fn multicast_with_reuseaddr_delivers_to_every_member() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        assert_all(kernel, "mcast.group.ra", "received", "A+B+C");
    }
}

#[test]
fn reuseport_groups_spread_udp_over_every_member() {
    if skip_boots() {
        return;
    }
    for kernel in KERNELS {
        let r = result(kernel);
        let rec = record(&r, "dist.udp.v4.specific.n4");
        let counts: Vec<u64> = rec["facts"]["counts"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        let flows = rec["facts"]["flows"]["count"].as_u64().unwrap();
        assert_eq!(counts.len(), 4, "{kernel}: {counts:?}");
        assert_eq!(
            counts.iter().sum::<u64>(),
            flows,
            "{kernel}: every datagram lands somewhere"
        );
        assert!(
            counts.iter().all(|&c| c > 0),
            "{kernel}: a member got nothing: {counts:?}"
        );
    }
}

#[test]
fn a_crashing_experiment_costs_no_other_experiment_its_result() {
    if skip_boots() {
        return;
    }
    for kernel in ["deb-6.1", "host"] {
        let r = result(kernel);
        let crash = record(&r, "selftest.crash");
        assert_eq!(
            crash["status"]["crashed"]["signal"], "SIGSEGV",
            "{kernel}: {crash}"
        );
        let others = r["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["id"] != "selftest.crash");
        assert!(others.clone().count() > 1000);
        for rec in others {
            assert_measured(kernel, rec);
        }
    }
}

/// The build path end to end: Debian's kernel source, configured with the minimal guest config,
/// built by the harness (or taken from the cache the build unit test filled), booted, measured.
#[test]
fn a_kernel_built_from_debian_source_boots_and_runs_the_guest() {
    if skip_boots() || std::env::var_os("RPH_SKIP_BUILD").is_some() {
        return;
    }
    let out = root().join("target").join("e2e").join("linux-source");
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(root())
        .args([
            "run",
            "--kernel",
            "linux-source",
            "--only",
            "options,bind.tcp.v4any+v4lo",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("running harness");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "harness run failed: {stderr}");
    let r: Value =
        serde_json::from_slice(&std::fs::read(out.join("linux-source.json")).unwrap()).unwrap();
    assert_eq!(r["run"], "complete", "{stderr}");
    assert_eq!(r["provenance"]["source"], "build");
    let release = r["header"]["uname"]["release"].as_str().unwrap();
    assert_eq!(r["provenance"]["kernel_release"].as_str(), Some(release));
    assert!(release.starts_with("6.1."), "{release}");
    assert_eq!(r["header"]["pid1"], true);
    assert_eq!(
        outcomes(
            &r,
            "bind.tcp.v4any+v4lo.listening.a-ra.b-ra.same-uid",
            "b_bind"
        ),
        ["EADDRINUSE"; 3]
    );
}
