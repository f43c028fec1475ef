//! End-to-end on the kernels the documents talk about: 3.8, 3.9, 4.4, 4.5 and 4.6, built by the
//! harness's own build path from vanilla trees (`../shared/old-kernels`, see its README), booted
//! under QEMU with the whole catalogue. The assertions are what the documents and the kernels'
//! history make stable facts, and that no emulation fault is ever recorded as one.
//!
//! One matrix run of the five serves most tests; one more boots 3.8 on the CPU model it
//! mishandles, which must end as an environment fault, never as facts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

mod workspace;
use workspace::{old_kernels, root, skip_boots, OLD_VERSIONS};

/// A kernels file with one `path` row per old kernel (id = version) and `extra` rows appended.
fn kernels_file(dir: &Path, extra: &str) -> PathBuf {
    let images = old_kernels();
    let mut text = String::from("kernels:\n");
    for v in OLD_VERSIONS {
        text.push_str(&format!(
            "  - id: \"{v}\"\n    version: \"{v}\"\n    source: {{ path: {{ path: {} }} }}\n",
            images.join(v).join("bzImage").display()
        ));
    }
    text.push_str(extra);
    text.push_str("groups:\n  default: [\"3.8\", \"3.9\", \"4.4\", \"4.5\", \"4.6\"]\n");
    let path = dir.join("kernels.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn scratch(name: &str) -> PathBuf {
    let dir = root()
        .join("target")
        .join("e2e")
        .join("old-kernels")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn harness(dir: &Path, kernels: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(root())
        .arg("--kernels")
        .arg(kernels)
        .arg("run")
        .arg("--out")
        .arg(dir.join("results"))
        .arg("--report")
        .arg(dir.join("report"))
        .args(args)
        .output()
        .expect("running harness");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The five kernels, whole catalogue, once per test process.
fn results() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("matrix");
        let kernels = kernels_file(&dir, "");
        let output = harness(&dir, &kernels, &[]);
        assert!(
            output.status.success(),
            "harness run over the old kernels failed ({})",
            output.status
        );
        dir.join("results")
    })
}

fn result(version: &str) -> Value {
    load(&results().join(format!("{version}.json")))
}

fn load(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn records(result: &Value) -> &Vec<Value> {
    result["records"].as_array().unwrap()
}

fn record<'a>(result: &'a Value, id: &str) -> &'a Value {
    records(result)
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{}: no record {id}", result["kernel"]))
}

fn values(record: &Value, fact: &str) -> Vec<String> {
    let fact = &record["facts"][fact];
    fact["outcomes"]
        .as_array()
        .or_else(|| fact["receivers"].as_array())
        .unwrap_or_else(|| panic!("{}: no fact {fact}", record["id"]))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_old_kernel_ran_the_whole_catalogue_on_the_cpu_its_version_needs() {
    if skip_boots() {
        return;
    }
    for v in OLD_VERSIONS {
        let r = result(v);
        assert_eq!(r["run"], "complete", "{v}: {}", r["run"]);
        let release = r["header"]["uname"]["release"].as_str().unwrap();
        assert!(
            release.starts_with(&format!("{v}.")),
            "{v}: uname -r {release}"
        );
        assert_eq!(
            records(&r).len() as u64,
            r["header"]["planned"].as_u64().unwrap(),
            "{v}"
        );
        let preflight = r["header"]["preflight"].as_array().expect("pre-flight ran");
        assert_eq!(preflight.len(), 12, "{v}: {preflight:?}");
        assert!(
            preflight.iter().all(|c| c["outcome"] == "ok"),
            "{v}: {preflight:?}"
        );
        let attempt = &r["attempts"][0];
        let cpu = attempt["cpu"].as_str().unwrap();
        let smap_hidden = cpu.split(',').any(|f| f == "-smap");
        assert_eq!(smap_hidden, v == "3.8" || v == "3.9", "{v}: -cpu {cpu}");
        assert!(
            attempt["cmdline"]
                .as_str()
                .unwrap()
                .contains("console=ttyS0"),
            "{v}: {attempt}"
        );
    }
}

#[test]
fn every_experiment_completes_or_is_unsupported_for_a_reason_the_kernel_gives() {
    if skip_boots() {
        return;
    }
    for v in OLD_VERSIONS {
        let r = result(v);
        for rec in records(&r) {
            let status = &rec["status"];
            if *status == "completed" {
                continue;
            }
            let reason = status["unsupported"]["reason"]
                .as_str()
                .unwrap_or_else(|| panic!("{v}: {} ended {status}", rec["id"]));
            assert!(
                reason
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|word| {
                        word.len() > 2
                            && word.starts_with('E')
                            && word[1..].chars().all(|c| c.is_ascii_uppercase())
                    }),
                "{v}: {} is unsupported without the kernel's errno: {reason}",
                rec["id"]
            );
        }
    }
}

#[test]
fn no_record_of_any_old_kernel_carries_an_emulation_fault() {
    if skip_boots() {
        return;
    }
    for v in OLD_VERSIONS {
        let r = result(v);
        for rec in records(&r) {
            let parsed: wire::ExperimentRecord = serde_json::from_value(rec.clone()).unwrap();
            assert_eq!(
                wire::errno::first_environment_fault(&parsed.facts),
                None,
                "{v}: {}",
                parsed.id
            );
        }
    }
}

#[test]
fn so_reuseport_is_enoprotoopt_on_3_8_and_available_from_3_9() {
    if skip_boots() {
        return;
    }
    for v in OLD_VERSIONS {
        let r = result(v);
        let set = values(record(&r, "options.so_reuseport"), "set");
        let expected = if v == "3.8" { "ENOPROTOOPT" } else { "ok" };
        assert_eq!(set, [expected], "{v}");
    }
}

/// socket(7)'s numbering of a reuseport group, read through a cBPF program that returns a fixed
/// index: unsupported with the kernel's errno before the option (UDP 4.5, TCP 4.6), and from
/// there in the order the page says: bind order for UDP, listen order for TCP (the experiment
/// adds m0..m3 so that the order differs from creation: m2 m0 m3 m1).
#[test]
fn reuseport_numbering_is_unsupported_with_an_errno_before_4_5_and_follows_the_page_after() {
    if skip_boots() {
        return;
    }
    for (id, first) in [
        ("numbering.udp.v4.order", "4.5"),
        ("numbering.tcp.v4.order", "4.6"),
    ] {
        for v in OLD_VERSIONS {
            let r = result(v);
            let rec = record(&r, id);
            let supported = version_at_least(v, first);
            if supported {
                assert_eq!(rec["status"], "completed", "{v}: {id} {rec}");
                let order: Vec<String> = (0..4)
                    .map(|i| {
                        let seen = values(rec, &format!("index{i}"));
                        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{v}: {id} {seen:?}");
                        seen[0].clone()
                    })
                    .collect();
                assert_eq!(order, ["m2", "m0", "m3", "m1"], "{v}: {id}");
            } else {
                let reason = rec["status"]["unsupported"]["reason"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{v}: {id} is not unsupported: {rec}"));
                assert!(
                    ["ENOPROTOOPT", "EINVAL"].iter().any(|e| reason.contains(e)),
                    "{v}: {id}: {reason}"
                );
            }
        }
    }
}

fn version_at_least(v: &str, first: &str) -> bool {
    let parse = |s: &str| -> (u32, u32) {
        let mut it = s.split('.').map(|p| p.parse::<u32>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    parse(v) >= parse(first)
}

#[test]
fn two_so_reuseport_sockets_share_127_0_0_1_and_a_port_from_3_9_on() {
    if skip_boots() {
        return;
    }
    for id in [
        "bind.udp.v4lo+v4lo.bound.a-rp.b-rp.same-uid",
        "bind.tcp.v4lo+v4lo.listening.a-rp.b-rp.same-uid",
    ] {
        for v in OLD_VERSIONS {
            let r = result(v);
            let rec = record(&r, id);
            let (flags, bind) = (values(rec, "b_flags"), values(rec, "b_bind"));
            assert_eq!(flags.len(), 3, "{v}: {id}");
            if v == "3.8" {
                assert!(
                    flags.iter().all(|f| f == "ENOPROTOOPT"),
                    "{v}: {id} {flags:?}"
                );
                assert!(bind.iter().all(|b| b == "EADDRINUSE"), "{v}: {id} {bind:?}");
            } else {
                assert!(flags.iter().all(|f| f == "ok"), "{v}: {id} {flags:?}");
                assert!(bind.iter().all(|b| b == "ok"), "{v}: {id} {bind:?}");
            }
        }
    }
}

#[test]
fn booting_3_8_on_the_cpu_it_mishandles_is_an_environment_fault_never_facts() {
    if skip_boots() {
        return;
    }
    let dir = scratch("3.8-smap");
    let row = format!(
        "  - id: smap\n    version: \"3.8\"\n    source: {{ path: {{ path: {} }} }}\n    boot: {{ cpu: \"max,-cx16\" }}\n",
        old_kernels().join("3.8").join("bzImage").display()
    );
    let kernels = kernels_file(&dir, &row);
    let output = harness(
        &dir,
        &kernels,
        &["--kernel", "smap", "--only", "connect.udp.v6,options"],
    );
    assert_eq!(
        output.status.code(),
        Some(6),
        "a broken environment fails the run"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("smap") && stderr.contains("EFAULT"),
        "{stderr}"
    );
    let r = load(&dir.join("results").join("smap.json"));
    assert_eq!(r["attempts"][0]["cpu"], "max,-cx16");
    let failed: Vec<String> = r["run"]["environment_fault"]["failed"]
        .as_array()
        .unwrap_or_else(|| panic!("not an environment fault: {}", r["run"]))
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    assert!(
        failed
            .iter()
            .all(|f| f.starts_with("udp [::1]") || f.starts_with("udp [::ffff")),
        "{failed:?}"
    );
    assert!(failed.iter().any(|f| f.contains("EFAULT")), "{failed:?}");
    // The records are kept, and every one that met the fault says it failed.
    let udp6: Vec<&Value> = records(&r)
        .iter()
        .filter(|rec| rec["id"].as_str().unwrap().starts_with("connect.udp.v6"))
        .collect();
    assert_eq!(
        udp6.len(),
        wire::select(&["connect.udp.v6".into()]).unwrap().len()
    );
    let mut failed = 0;
    for rec in udp6 {
        if rec["status"] == "completed" {
            // A cell that never sends over IPv6 (`.unbound` only connects) meets no fault; it
            // must not carry one as a fact either.
            assert!(!rec["facts"].to_string().contains("EFAULT"), "{rec}");
            continue;
        }
        let error = rec["status"]["failed"]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{} ended {}", rec["id"], rec["status"]));
        assert!(
            error.contains("EFAULT") && error.contains("not socket semantics"),
            "{error}"
        );
        failed += 1;
    }
    assert!(failed >= 12, "{failed} cells met the fault");
    // Nothing of it is judged: every claim on this kernel is not measured, with the reason.
    let report = std::fs::read_to_string(dir.join("report").join("report.json")).unwrap();
    assert!(
        report.contains("environment fault"),
        "the report names the fault"
    );
}
