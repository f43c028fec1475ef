//! `harness kcidb DIR...`: results mapped onto KernelCI KCIDB I/O records (schema v4.5:
//! `checkouts`, `builds`, `tests`), for submission with `kcidb-submit`. The mapping is documented
//! in docs/kcidb.md; this module is a pure function from results and claims to one JSON document,
//! plus the thin command around it.
//!
//! Per kernel result: one checkout (where the kernel came from), one build (the image), and tests:
//! `<prefix>.boot` (how the run went), one per experiment record (`<prefix>.<experiment id>`,
//! status DONE: a measurement, not a judgement), one per numeric fact (`...<fact>`, DONE with
//! `number`), and one per claim (`<prefix>.claims.<claim id>`, PASS/FAIL by its verdict).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Map, Value};
use wire::{Fact, Status};

use crate::judge::claims::ClaimSet;
use crate::judge::evaluate::{self, Verdict};
use crate::results::{KernelResult, RunOutcome};
use crate::ExitKind;

/// The schema version written in `version`.
pub const SCHEMA: (u32, u32) = (4, 5);

#[derive(Debug, clap::Args)]
pub struct KcidbArgs {
    /// Result directories (CI shards); a kernel found in several is taken from the last.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The origin agreed with KernelCI: lowercase letters, digits and `_`.
    #[arg(long, default_value = "rph")]
    pub origin: String,
    /// First component of every test path.
    #[arg(long, default_value = "reuse")]
    pub prefix: String,
    /// Where the JSON goes (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn main(args: &KcidbArgs, claims_yaml: &std::path::Path) -> Result<ExitCode> {
    if args.origin.is_empty()
        || !args
            .origin
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ExitKind::Usage
            .wrap(format!(
                "--origin `{}`: KCIDB origins are lowercase letters, digits and _",
                args.origin
            ))
            .into());
    }
    if !args.prefix.bytes().all(path_byte) || args.prefix.is_empty() {
        return Err(ExitKind::Usage
            .wrap(format!(
                "--prefix `{}`: test paths are letters, digits, `.`, `_` and `-`",
                args.prefix
            ))
            .into());
    }
    let claims = crate::judge::claims::load(claims_yaml)
        .map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?;
    let mut merged: BTreeMap<String, KernelResult> = BTreeMap::new();
    for dir in &args.dirs {
        let results =
            crate::results::load_dir(dir).map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?;
        if results.is_empty() {
            return Err(ExitKind::Usage
                .wrap(format!("no results in {}", dir.display()))
                .into());
        }
        for r in results {
            merged.insert(r.kernel.clone(), r);
        }
    }
    let results: Vec<KernelResult> = merged.into_values().collect();
    let document = export(&results, &claims, &args.origin, &args.prefix);
    let text = serde_json::to_string_pretty(&document)?;
    match &args.out {
        Some(path) => {
            crate::results::write_atomically(path, text.as_bytes())?;
            eprintln!(
                "harness: kcidb: {} checkouts, {} builds, {} tests -> {}",
                document["checkouts"].as_array().map_or(0, Vec::len),
                document["builds"].as_array().map_or(0, Vec::len),
                document["tests"].as_array().map_or(0, Vec::len),
                path.display()
            );
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// An experiment or claim id as a KCIDB path component: `+` (and anything else the schema's
/// `^[.a-zA-Z0-9_-]*$` refuses) becomes `_`.
pub fn path_part(id: &str) -> String {
    id.bytes()
        .map(|b| if path_byte(b) { b as char } else { '_' })
        .collect()
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-21T05:52:07+00:00`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The whole KCIDB document for `results`.
pub fn export(results: &[KernelResult], claims: &ClaimSet, origin: &str, prefix: &str) -> Value {
    let mut checkouts = Vec::new();
    let mut builds = Vec::new();
    let mut tests = Vec::new();
    for r in results {
        let (c, b, t) = kernel_records(r, claims, origin, prefix);
        checkouts.push(c);
        builds.push(b);
        tests.extend(t);
    }
    json!({
        "version": {"major": SCHEMA.0, "minor": SCHEMA.1},
        "checkouts": checkouts,
        "builds": builds,
        "tests": tests,
    })
}

/// The part of an id that names this run of this kernel: the kernel id and when it finished.
fn run_key(r: &KernelResult) -> String {
    format!("{}:{}", r.kernel, r.finished_at)
}

fn kernel_records(
    r: &KernelResult,
    claims: &ClaimSet,
    origin: &str,
    prefix: &str,
) -> (Value, Value, Vec<Value>) {
    let provenance = r.provenance.clone().unwrap_or_default();
    let wall_ms: u64 = r.attempts.iter().map(|a| a.wall_ms).sum();
    let started = r.finished_at.saturating_sub(wall_ms / 1000);
    let start_time = rfc3339(started);
    let obtained = !matches!(r.run, RunOutcome::Unavailable { .. });
    let release = r.release().map(str::to_owned);
    let is_host = r.attempts.iter().any(|a| a.accel == "host");
    let source = provenance.get("source").cloned().unwrap_or_else(|| {
        if is_host {
            "host".into()
        } else {
            "unknown".into()
        }
    });

    let checkout_id = format!("{origin}:{}", run_key(r));
    let mut checkout = json!({
        "id": checkout_id,
        "origin": origin,
        "tree_name": source,
        "start_time": start_time,
        "valid": obtained,
        "misc": {"kernel": r.kernel, "version": r.version, "provenance": provenance},
    });
    if let Some(commit) = provenance.get("source_commit") {
        checkout["git_commit_hash"] = json!(commit);
    }
    if let Some(rel) = &release {
        checkout["comment"] = json!(format!("linux {rel}"));
    }
    let build_id = format!("{origin}:{}", run_key(r));
    let mut build = json!({
        "id": build_id,
        "origin": origin,
        "checkout_id": checkout_id,
        "architecture": "x86_64",
        "start_time": start_time,
        "valid": obtained,
        "misc": {"kernel": r.kernel, "release": release, "image_sha256": provenance.get("image_sha256")},
    });
    if let Some(compiler) = provenance.get("compiler") {
        build["compiler"] = json!(compiler);
    }
    if let Some(seconds) = provenance
        .get("build_seconds")
        .and_then(|s| s.parse::<f64>().ok())
    {
        build["duration"] = json!(seconds);
    }
    if let RunOutcome::Unavailable { reason } = &r.run {
        build["comment"] = json!(reason);
    }

    let environment = {
        let mut misc = Map::new();
        misc.insert("kernel".into(), json!(r.kernel));
        misc.insert(
            "accel".into(),
            json!(r.attempts.last().map(|a| a.accel.clone())),
        );
        if let Some(h) = &r.header {
            misc.insert("release".into(), json!(h.uname.release));
            misc.insert("cpus".into(), json!(h.cpus));
            misc.insert("pid1".into(), json!(h.pid1));
            misc.insert("guest_version".into(), json!(h.guest_version));
        }
        json!({
            "comment": if is_host { "the host kernel, guest in a fresh network namespace" } else { "QEMU guest, the harness's static guest as PID 1" },
            "misc": misc,
        })
    };
    let test = |path: String, status: &str| -> Value {
        json!({
            "id": format!("{origin}:{}:{path}", run_key(r)),
            "build_id": build_id,
            "origin": origin,
            "path": path,
            "status": status,
            "start_time": start_time,
            "environment": environment,
        })
    };

    let mut tests = Vec::new();
    let mut boot = test(format!("{prefix}.boot"), boot_status(&r.run));
    boot["duration"] = json!(wall_ms as f64 / 1000.0);
    boot["misc"] = json!({"run": r.run.label(), "attempts": r.attempts.len()});
    if let Some(excerpt) = run_excerpt(&r.run) {
        boot["log_excerpt"] = json!(excerpt);
    }
    tests.push(boot);
    if !obtained {
        return (checkout, build, tests);
    }

    for record in &r.records {
        let path = format!("{prefix}.{}", path_part(&record.id));
        let mut t = test(path.clone(), experiment_status(&record.status));
        t["duration"] = json!(record.elapsed_us as f64 / 1e6);
        let signature: BTreeMap<String, String> = crate::judge::signature::signature(record)
            .0
            .into_iter()
            .map(|(k, a)| (k, a.value))
            .collect();
        t["misc"] = json!({"experiment": record.id, "signature": signature});
        if let Status::Unsupported { reason } | Status::Failed { error: reason } = &record.status {
            t["comment"] = json!(reason);
        }
        tests.push(t);
        for (name, fact) in &record.facts {
            for (suffix, number) in numbers(name, fact) {
                let mut n = test(format!("{path}.{}", path_part(&suffix)), "DONE");
                n["number"] = number;
                tests.push(n);
            }
        }
    }

    for claim in &claims.claims {
        let verdict = evaluate::judge(claim, r);
        let status = claim_status(&verdict);
        // A known error of the document (claims.yaml `expected_difference`) is reported, waived.
        let waived = status == "FAIL" && verdict.is_known_contradiction();
        let mut t = test(format!("{prefix}.claims.{}", path_part(&claim.id)), status);
        t["comment"] = json!(verdict.summary());
        t["misc"] =
            json!({"claim": claim.id, "doc": claim.doc.file_name(), "verdict": verdict.label()});
        if waived {
            t["waived"] = json!(true);
        }
        tests.push(t);
    }
    (checkout, build, tests)
}

/// How the run went: PASS complete, FAIL the kernel panicked, ERROR the run broke off (timeout,
/// early crash, incomplete stream), MISS the kernel could not be obtained.
pub fn boot_status(run: &RunOutcome) -> &'static str {
    match run {
        RunOutcome::Complete => "PASS",
        RunOutcome::Panic { .. } => "FAIL",
        RunOutcome::Incomplete { .. }
        | RunOutcome::Timeout { .. }
        | RunOutcome::EarlyCrash { .. } => "ERROR",
        RunOutcome::Unavailable { .. } => "MISS",
        // The harness's environment broke, not the kernel.
        RunOutcome::EnvironmentFault { .. } => "ERROR",
    }
}

fn run_excerpt(run: &RunOutcome) -> Option<String> {
    let text = match run {
        RunOutcome::Complete => return None,
        RunOutcome::Incomplete { reason } | RunOutcome::Unavailable { reason } => reason.clone(),
        RunOutcome::Timeout { console_tail, .. } | RunOutcome::EarlyCrash { console_tail } => {
            console_tail.clone()
        }
        RunOutcome::Panic { line, console_tail } => format!("{line}\n{console_tail}"),
        RunOutcome::EnvironmentFault { failed } => {
            format!("pre-flight check failed: {}", failed.join("; "))
        }
    };
    // The schema caps log_excerpt at 16384 characters; keep the end, where the cause is.
    let chars: Vec<char> = text.chars().collect();
    Some(chars[chars.len().saturating_sub(16_000)..].iter().collect())
}

/// An experiment measured behaviour without judging it: DONE. The kernel lacked the feature:
/// SKIP. The measuring broke (crash, timeout, setup failure): ERROR.
pub fn experiment_status(status: &Status) -> &'static str {
    match status {
        Status::Completed => "DONE",
        Status::Unsupported { .. } => "SKIP",
        Status::Crashed { .. } | Status::TimedOut { .. } | Status::Failed { .. } => "ERROR",
    }
}

/// Holds PASS, Contradicted FAIL, Unstable ERROR (the outcome differs between repetitions),
/// NotMeasured MISS, Untested and OutOfScope SKIP.
pub fn claim_status(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Holds { .. } => "PASS",
        Verdict::Contradicted { .. } => "FAIL",
        Verdict::Unstable { .. } => "ERROR",
        Verdict::NotMeasured { .. } => "MISS",
        Verdict::OutOfScope { .. } | Verdict::Untested { .. } => "SKIP",
    }
}

/// Numeric facts as KCIDB numbers: counts dimensionless, `ns_*` lists in seconds with a metric
/// prefix, one per element (`ns_per_flow.0`, `ns_per_flow.1`, …). Per-member count lists are left
/// out: which member gets a flow depends on the boot's hash secret.
pub fn numbers(name: &str, fact: &Fact) -> Vec<(String, Value)> {
    let timed = name.starts_with("ns_");
    let number = |v: f64| {
        if timed {
            json!({"value": v / 1e9, "unit": "s", "prefix": "metric"})
        } else {
            json!({"value": v})
        }
    };
    match fact {
        Fact::Count(n) => vec![(name.to_owned(), number(*n as f64))],
        Fact::Number(v) if v.is_finite() => vec![(name.to_owned(), number(*v))],
        Fact::Numbers(vs) => vs
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| (format!("{name}.{i}"), number(*v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Loads the results the tests read (used by the unit tests below).
#[cfg(test)]
fn fixture(kernel: &str) -> KernelResult {
    let dir = crate::obtain::guest_binary::workspace_root().join("harness/tests/fixtures/results");
    let compressed = dir.join(format!("{kernel}.json.xz"));
    let path = if compressed.exists() {
        compressed
    } else {
        dir.join(format!("{kernel}.json"))
    };
    crate::results::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(rfc3339(1_795_240_285), "2026-11-21T05:51:25+00:00");
    }

    #[test]
    fn recorded_results_map_onto_valid_kcidb_records() {
        let claims = crate::judge::claims::load(
            &crate::obtain::guest_binary::workspace_root().join("claims.yaml"),
        )
        .unwrap();
        let results = vec![fixture("deb-6.1"), fixture("3.8")];
        let doc = export(&results, &claims, "rph", "reuse");
        assert_eq!(doc["version"], json!({"major": 4, "minor": 5}));
        let tests = doc["tests"].as_array().unwrap();
        let mut ids = std::collections::HashSet::new();
        for t in tests {
            let id = t["id"].as_str().unwrap();
            assert!(id.starts_with("rph:"), "{id}");
            assert!(ids.insert(id.to_owned()), "duplicate id {id}");
            let path = t["path"].as_str().unwrap();
            assert!(path.bytes().all(path_byte), "{path}");
            assert!(["FAIL", "ERROR", "MISS", "PASS", "DONE", "SKIP"]
                .contains(&t["status"].as_str().unwrap()));
            assert!(t["build_id"].as_str().unwrap().starts_with("rph:"));
        }
        let by_path = |p: &str| {
            tests
                .iter()
                .find(|t| t["path"] == p && t["id"].as_str().unwrap().contains("deb-6.1"))
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert_eq!(by_path("reuse.boot")["status"], "PASS");
        assert_eq!(
            by_path("reuse.bind.tcp.v4lo_v4lo.bound.a-rp.b-rp.same-uid")["status"],
            "DONE"
        );
        let cost = by_path("reuse.cost.tcp.ns_per_flow.0");
        assert_eq!(cost["number"]["unit"], "s");
        assert!(cost["number"]["value"].as_f64().unwrap() > 0.0);
        assert_eq!(
            by_path("reuse.claims.000.reuseaddr.one-server-per-address.udp")["status"],
            "FAIL"
        );
        // The unavailable kernel: an invalid build and a MISS boot, nothing else.
        let unavailable: Vec<&Value> = tests
            .iter()
            .filter(|t| t["id"].as_str().unwrap().starts_with("rph:3.8:"))
            .collect();
        assert_eq!(unavailable.len(), 1);
        assert_eq!(unavailable[0]["status"], "MISS");
        assert!(doc["builds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["valid"] == false));
    }
}
