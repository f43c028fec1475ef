//! The kernel matrix as a test suite (libtest-mimic): one trial per kernel × claim and one per
//! kernel × experiment, named `<kernel>::<claim id>` and `<kernel>::<experiment id>`, listed and
//! filtered exactly like `cargo test` (`--list`, a substring filter, `--exact`, `--skip`,
//! `--ignored`) and runnable under cargo-nextest.
//!
//! - Trials are data: kernels from `harness list --json --group G`, claims from
//!   `harness list claims --json`, experiments from the wire catalogue. Listing never boots or
//!   downloads anything. A selection of zero trials is an error, never a silent pass.
//! - Kernels: `RPH_MATRIX_GROUP` (a group of kernels.yaml or comma-separated ids and groups;
//!   default `deb-6.1,host`, what CI can afford: one TCG boot and the host row). For the Debian
//!   series: `RPH_MATRIX_GROUP=debian,host cargo test -p harness --test matrix`.
//! - One boot serves every trial of a kernel: the first trial of that kernel that runs calls
//!   `harness run --kernel K`, the rest wait for it. Under nextest (one process per trial) the
//!   processes of one run share the boot through `target/matrix/nextest-<run id>/` and a lock file.
//! - `RPH_MATRIX_RESULTS=DIR` judges recorded results in DIR instead of booting (the tests of this
//!   binary use harness/tests/fixtures/results). `RPH_SKIP_BOOT=1` marks booting trials ignored.
//! - `RPH_JUNIT=PATH` writes a JUnit XML report of the trials that ran. `RPH_MATRIX_CLAIMS=PATH`
//!   judges another claims file than claims.yaml.
//!
//! A claim trial fails only when the claim is contradicted on a kernel it speaks about in a cell
//! its `expected_difference` in claims.yaml does not name (a known error of the document names
//! its cells and the reason), and the failure message names those cells; every other verdict
//! (holds, out of scope, not measured, unstable) passes, and the JUnit report says which it was. Untested claims are ignored trials.
//! An experiment trial passes when the experiment completed (or found the kernel unsupported) and
//! fails with its status otherwise, or when the kernel never produced its record.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

mod workspace;
use workspace::root;

const DEFAULT_GROUP: &str = "deb-6.1,host";

/// The harness, run from the workspace root, judging `RPH_MATRIX_CLAIMS` when set (default
/// claims.yaml).
fn harness() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.current_dir(root());
    if let Some(claims) = std::env::var_os("RPH_MATRIX_CLAIMS") {
        cmd.arg("--claims").arg(claims);
    }
    cmd
}

/// Runs the harness and returns stdout, or the failure in words.
fn harness_stdout(args: &[&str]) -> Result<String, String> {
    let output = harness()
        .args(args)
        .output()
        .map_err(|e| format!("running harness {args:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "harness {args:?} exited {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[derive(Debug, Clone)]
struct ClaimInfo {
    id: String,
    measured: bool,
    /// Why a contradiction is expected (claims.yaml `expected_difference`).
    expected_difference: Option<String>,
}

/// What one kernel showed, as the trials read it.
#[derive(Debug, Default)]
struct KernelOutcome {
    /// Why nothing could be read at all (the harness failed).
    broken: Option<String>,
    /// `complete`, `unavailable`, ... and the reason when there is one.
    run: String,
    /// Experiment id → `None` when completed or unsupported, `Some(status)` otherwise.
    records: BTreeMap<String, Option<String>>,
    /// Claim id → verdict object from report.json.
    verdicts: BTreeMap<String, Value>,
    /// Where the result and the report are, for failure messages.
    evidence: String,
}

/// Where the trials' facts come from.
#[derive(Debug, Clone)]
enum Source {
    Recorded(PathBuf),
    Boot(PathBuf),
}

struct Kernel {
    id: String,
    source: Source,
    outcome: OnceLock<KernelOutcome>,
}

impl Kernel {
    fn outcome(&self) -> &KernelOutcome {
        self.outcome.get_or_init(|| match &self.source {
            Source::Recorded(dir) => read_outcome(&self.id, dir, &recorded_report(dir)),
            Source::Boot(session) => boot(&self.id, session),
        })
    }
}

/// `harness report DIR` once per process for recorded results.
fn recorded_report(dir: &Path) -> Result<PathBuf, String> {
    static REPORT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    REPORT
        .get_or_init(|| {
            let out =
                std::env::temp_dir().join(format!("rph-matrix-report-{}", std::process::id()));
            harness_stdout(&[
                "report",
                &dir.display().to_string(),
                "--out",
                &out.display().to_string(),
            ])?;
            Ok(out.join("report.json"))
        })
        .clone()
}

/// Boots `kernel` (or waits for another process of the same nextest run that does) and reads it.
fn boot(kernel: &str, session: &Path) -> KernelOutcome {
    let dir = session.join(kernel);
    let broken = |why: String| KernelOutcome {
        broken: Some(why),
        ..Default::default()
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return broken(format!("creating {}: {e}", dir.display()));
    }
    let lock_path = dir.join(".lock");
    let lock = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
    {
        Ok(f) => f,
        Err(e) => return broken(format!("opening {}: {e}", lock_path.display())),
    };
    if let Err(e) = fs2::FileExt::lock_exclusive(&lock) {
        return broken(format!("locking {}: {e}", lock_path.display()));
    }
    let done = dir.join(".done");
    let report = dir.join("report");
    if !done.exists() {
        let started = Instant::now();
        eprintln!(
            "matrix: booting {kernel} (harness run --kernel {kernel} --out {})",
            dir.display()
        );
        let run = harness()
            .args(["run", "--kernel", kernel, "--out"])
            .arg(&dir)
            .arg("--report")
            .arg(&report)
            .output();
        let run = match run {
            Ok(o) => o,
            Err(e) => return broken(format!("running harness run: {e}")),
        };
        eprintln!(
            "matrix: {kernel} done in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if !dir.join(format!("{kernel}.json")).exists() {
            return broken(format!(
                "harness run --kernel {kernel} exited {} without a result: {}",
                run.status,
                String::from_utf8_lossy(&run.stderr).trim()
            ));
        }
        // A run that could not obtain its kernel exits non-zero but still stores the result;
        // judge it the same way as any other.
        if let Err(e) = harness_stdout(&[
            "report",
            &dir.display().to_string(),
            "--out",
            &report.display().to_string(),
        ]) {
            return broken(e);
        }
        let _ = std::fs::write(&done, b"");
    }
    read_outcome(kernel, &dir, &Ok(report.join("report.json")))
}

fn read_json(path: &Path) -> Result<Value, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "xz") {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(&bytes[..]), &mut plain)
            .map_err(|e| format!("decompressing {}: {e}", path.display()))?;
        bytes = plain;
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("parsing {}: {e}", path.display()))
}

/// A kernel's stored result: `<kernel>.json`, or `<kernel>.json.xz` as recorded results are
/// archived.
fn result_file(dir: &Path, kernel: &str) -> PathBuf {
    let plain = dir.join(format!("{kernel}.json"));
    let archived = dir.join(format!("{kernel}.json.xz"));
    if !plain.exists() && archived.exists() {
        archived
    } else {
        plain
    }
}

fn read_outcome(kernel: &str, dir: &Path, report: &Result<PathBuf, String>) -> KernelOutcome {
    let broken = |why: String| KernelOutcome {
        broken: Some(why),
        ..Default::default()
    };
    let result_path = result_file(dir, kernel);
    let result = match read_json(&result_path) {
        Ok(r) => r,
        Err(e) => return broken(format!("no result for {kernel}: {e}")),
    };
    let report_path = match report {
        Ok(p) => p.clone(),
        Err(e) => return broken(e.clone()),
    };
    let report = match read_json(&report_path) {
        Ok(r) => r,
        Err(e) => return broken(e),
    };
    let run = match &result["run"] {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .iter()
            .next()
            .map(
                |(label, detail)| match detail.get("reason").and_then(Value::as_str) {
                    Some(reason) => format!("{label}: {reason}"),
                    None => label.clone(),
                },
            )
            .unwrap_or_default(),
        other => other.to_string(),
    };
    let records = result["records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .map(|r| {
                    let id = r["id"].as_str().unwrap_or_default().to_owned();
                    let status = match &r["status"] {
                        Value::String(s) if s == "completed" => None,
                        Value::Object(o) if o.contains_key("unsupported") => None,
                        other => Some(other.to_string()),
                    };
                    (id, status)
                })
                .collect()
        })
        .unwrap_or_default();
    let evaluation = &report["evaluation"];
    let column = evaluation["kernels"]
        .as_array()
        .and_then(|ks| ks.iter().position(|k| k["kernel"] == kernel));
    let mut verdicts = BTreeMap::new();
    if let (Some(column), Some(rows)) = (column, evaluation["rows"].as_array()) {
        for row in rows {
            if let Some(id) = row["claim"]["id"].as_str() {
                verdicts.insert(id.to_owned(), row["verdicts"][column].clone());
            }
        }
    }
    KernelOutcome {
        broken: None,
        run,
        records,
        verdicts,
        evidence: format!("{} and {}", result_path.display(), report_path.display()),
    }
}

/// The differing observations of a contradicted verdict, a few of them, for the failure message.
/// The cells that contradict the claim and no `expected_difference` names, in words.
fn unwaived(verdict: &Value) -> Vec<String> {
    let observed = verdict["observed"].as_array().cloned().unwrap_or_default();
    observed
        .iter()
        .filter(|o| o["status"]["status"] == "differs" || o["status"] == "differs")
        .filter(|o| o["known"] != true)
        .map(|o| {
            format!(
                "{}: {} expected {}, observed {}",
                o["experiment"].as_str().unwrap_or_default(),
                o["fact"].as_str().unwrap_or_default(),
                o["expected"].as_str().unwrap_or_default(),
                o["observed"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn contradiction(verdict: &Value) -> String {
    let differs = unwaived(verdict);
    let shown = differs
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n  ");
    let more = differs.len().saturating_sub(5);
    format!(
        "expected {}\n  {shown}{}",
        verdict["expected"].as_str().unwrap_or_default(),
        if more > 0 {
            format!("\n  ... and {more} more")
        } else {
            String::new()
        }
    )
}

/// A trial's outcome as the JUnit report tells it.
#[derive(Debug, Clone)]
struct Ran {
    name: String,
    seconds: f64,
    failure: Option<String>,
    note: String,
}

type Log = Arc<Mutex<Vec<Ran>>>;

fn claim_trial(kernel: &Arc<Kernel>, claim: &ClaimInfo) -> Result<String, String> {
    let outcome = kernel.outcome();
    if let Some(why) = &outcome.broken {
        return Err(format!("the harness failed on {}: {why}", kernel.id));
    }
    let Some(verdict) = outcome.verdicts.get(&claim.id) else {
        return Err(format!(
            "no verdict for {} in {}",
            claim.id, outcome.evidence
        ));
    };
    let label = verdict["verdict"].as_str().unwrap_or("?").to_owned();
    if label != "contradicted" {
        return Ok(label);
    }
    match (&claim.expected_difference, unwaived(verdict).is_empty()) {
        (Some(reason), true) => Ok(format!("contradicted, only in known differences: {reason}")),
        _ => Err(format!(
            "{} is contradicted on {} (run {}) in cells no expected_difference names:\n  {}\n(evidence: {})",
            claim.id,
            kernel.id,
            outcome.run,
            contradiction(verdict),
            outcome.evidence
        )),
    }
}

fn experiment_trial(kernel: &Arc<Kernel>, experiment: &str) -> Result<String, String> {
    let outcome = kernel.outcome();
    if let Some(why) = &outcome.broken {
        return Err(format!("the harness failed on {}: {why}", kernel.id));
    }
    match outcome.records.get(experiment) {
        None => Err(format!(
            "{} has no record of {experiment} (run {}; {})",
            kernel.id, outcome.run, outcome.evidence
        )),
        Some(Some(status)) => Err(format!(
            "{experiment} on {} ended {status} ({})",
            kernel.id, outcome.evidence
        )),
        Some(None) => Ok("completed".into()),
    }
}

fn trial(
    name: String,
    log: &Log,
    body: impl FnOnce() -> Result<String, String> + Send + 'static,
) -> Trial {
    let log = Arc::clone(log);
    let recorded = name.clone();
    Trial::test(name, move || {
        let started = Instant::now();
        let result = body();
        let seconds = started.elapsed().as_secs_f64();
        let (failure, note) = match &result {
            Ok(note) => (None, note.clone()),
            Err(message) => (Some(message.clone()), String::new()),
        };
        log.lock().unwrap().push(Ran {
            name: recorded,
            seconds,
            failure,
            note,
        });
        result.map(|_| ()).map_err(Failed::from)
    })
}

/// Mirrors libtest-mimic's own filtering (trials have no kind), to count what a run selects.
fn selected(args: &Arguments, name: &str, ignored: bool) -> bool {
    if let Some(filter) = &args.filter {
        if args.exact && name != filter || !args.exact && !name.contains(filter.as_str()) {
            return false;
        }
    }
    if args.skip.iter().any(|s| {
        if args.exact {
            name == s
        } else {
            name.contains(s.as_str())
        }
    }) {
        return false;
    }
    !args.ignored || ignored
}

fn xml_escape(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn write_junit(
    path: &Path,
    ran: &[Ran],
    ignored: &[String],
    elapsed: Duration,
) -> std::io::Result<()> {
    let failures = ran.iter().filter(|r| r.failure.is_some()).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"matrix\" tests=\"{}\" failures=\"{failures}\" skipped=\"{}\" time=\"{:.3}\">\n",
        ran.len() + ignored.len(),
        ignored.len(),
        elapsed.as_secs_f64()
    ));
    let mut by_kernel: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let split = |name: &str| -> (String, String) {
        match name.split_once("::") {
            Some((k, rest)) => (k.to_owned(), rest.to_owned()),
            None => (String::new(), name.to_owned()),
        }
    };
    let mut sorted: Vec<&Ran> = ran.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for r in sorted {
        let (kernel, case) = split(&r.name);
        let body = match &r.failure {
            Some(message) => {
                let first = message.lines().next().unwrap_or_default();
                format!(
                    "<failure message=\"{}\">{}</failure>",
                    xml_escape(first),
                    xml_escape(message)
                )
            }
            None => format!("<system-out>{}</system-out>", xml_escape(&r.note)),
        };
        let line = format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">{body}</testcase>\n",
            xml_escape(&kernel),
            xml_escape(&case),
            r.seconds
        );
        by_kernel.entry(kernel).or_default().push(line);
    }
    for name in ignored {
        let (kernel, case) = split(name);
        by_kernel.entry(kernel.clone()).or_default().push(format!(
            "    <testcase classname=\"{}\" name=\"{}\"><skipped/></testcase>\n",
            xml_escape(&kernel),
            xml_escape(&case)
        ));
    }
    for (kernel, cases) in by_kernel {
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\">\n",
            xml_escape(&kernel),
            cases.len()
        ));
        for c in cases {
            xml.push_str(&c);
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    let mut file = std::fs::File::create(path)?;
    file.write_all(xml.as_bytes())
}

/// The session directory boots write into: shared by every process of one nextest run, private
/// to this process otherwise (stale private ones of dead processes are removed).
fn session_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("matrix");
    // Leftovers: private directories of processes that are gone, nextest runs over a day old.
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = match name.strip_prefix("pid-") {
                Some(pid) => !Path::new("/proc").join(pid).exists(),
                None => {
                    name.starts_with("nextest-")
                        && entry
                            .metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age > Duration::from_secs(24 * 3600))
                }
            };
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    match std::env::var_os("NEXTEST_RUN_ID") {
        Some(run) => base.join(format!("nextest-{}", run.to_string_lossy())),
        None => base.join(format!("pid-{}", std::process::id())),
    }
}

/// The trials' inputs: kernel ids, claims, experiment ids.
struct Plan {
    kernels: Vec<String>,
    claims: Vec<ClaimInfo>,
    experiments: Vec<String>,
}

fn plan() -> Result<Plan, String> {
    let group = std::env::var("RPH_MATRIX_GROUP").unwrap_or_else(|_| DEFAULT_GROUP.to_owned());
    let kernels: Value =
        serde_json::from_str(&harness_stdout(&["list", "--json", "--group", &group])?)
            .map_err(|e| format!("harness list --json: {e}"))?;
    let kernels: Vec<String> = kernels
        .as_array()
        .ok_or("harness list --json: not an array")?
        .iter()
        .filter_map(|k| k["kernel"].as_str().map(str::to_owned))
        .collect();
    let claims: Value = serde_json::from_str(&harness_stdout(&["list", "claims", "--json"])?)
        .map_err(|e| format!("harness list claims --json: {e}"))?;
    let claims = claims
        .as_array()
        .ok_or("harness list claims --json: not an array")?
        .iter()
        .map(|c| ClaimInfo {
            id: c["claim"].as_str().unwrap_or_default().to_owned(),
            measured: c["measured"].as_bool().unwrap_or(true),
            expected_difference: c["expected_difference"]["why"].as_str().map(str::to_owned),
        })
        .collect();
    let experiments = wire::catalogue().iter().map(|e| e.id()).collect();
    Ok(Plan {
        kernels,
        claims,
        experiments,
    })
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let Plan {
        kernels,
        claims,
        experiments,
    } = match plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("matrix: cannot build the trials: {e}");
            return ExitCode::from(2);
        }
    };
    let recorded = std::env::var_os("RPH_MATRIX_RESULTS").map(|d| {
        let d = PathBuf::from(d);
        if d.is_absolute() {
            d
        } else {
            root().join(d)
        }
    });
    let skip_boot = recorded.is_none() && std::env::var_os("RPH_SKIP_BOOT").is_some();
    let session = if recorded.is_none() && !args.list {
        Some(session_dir())
    } else {
        None
    };
    let log: Log = Arc::default();
    let mut trials = Vec::new();
    for id in &kernels {
        let source = match (&recorded, &session) {
            (Some(dir), _) => Source::Recorded(dir.clone()),
            (None, Some(s)) => Source::Boot(s.clone()),
            (None, None) => Source::Boot(PathBuf::new()), // listing: never used
        };
        let kernel = Arc::new(Kernel {
            id: id.clone(),
            source,
            outcome: OnceLock::new(),
        });
        for claim in &claims {
            let (k, c) = (Arc::clone(&kernel), claim.clone());
            trials.push(
                trial(format!("{id}::{}", claim.id), &log, move || {
                    claim_trial(&k, &c)
                })
                .with_ignored_flag(!claim.measured || skip_boot),
            );
        }
        for experiment in &experiments {
            let (k, e) = (Arc::clone(&kernel), experiment.clone());
            trials.push(
                trial(format!("{id}::{experiment}"), &log, move || {
                    experiment_trial(&k, &e)
                })
                .with_ignored_flag(skip_boot),
            );
        }
    }
    trials.sort_by(|a, b| a.name().cmp(b.name()));

    let chosen = trials
        .iter()
        .filter(|t| selected(&args, t.name(), t.has_ignored_flag()))
        .count();
    let listing_everything = args.list && args.filter.is_none() && args.skip.is_empty();
    if chosen == 0 && !listing_everything {
        eprintln!(
            "matrix: the selection matches none of the {} trials (kernels: {}; filter {:?}, skip {:?}); \
             names are <kernel>::<claim id> or <kernel>::<experiment id>, see --list",
            trials.len(),
            kernels.join(", "),
            args.filter,
            args.skip
        );
        return ExitCode::from(2);
    }
    let ignored: Vec<String> = if args.ignored || args.include_ignored {
        Vec::new()
    } else {
        trials
            .iter()
            .filter(|t| t.has_ignored_flag() && selected(&args, t.name(), true))
            .map(|t| t.name().to_owned())
            .collect()
    };
    let started = Instant::now();
    let conclusion = libtest_mimic::run(&args, trials);
    if let (Some(path), false) = (std::env::var_os("RPH_JUNIT"), args.list) {
        let ran = log.lock().unwrap().clone();
        if let Err(e) = write_junit(Path::new(&path), &ran, &ignored, started.elapsed()) {
            eprintln!(
                "matrix: writing JUnit XML to {}: {e}",
                Path::new(&path).display()
            );
            return ExitCode::from(2);
        }
    }
    if let Some(s) = &session {
        if std::env::var_os("NEXTEST_RUN_ID").is_none() && !conclusion.has_failed() {
            let _ = std::fs::remove_dir_all(s);
        }
    }
    conclusion.exit_code()
}
