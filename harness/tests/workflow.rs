//! The GitHub Actions workflow (.github/workflows/matrix.yml) is valid YAML, runs nothing but cargo
//! builds and the harness's own commands (each one a real subcommand with real flags, as the
//! harness binary's own `--help` says), uses only the checkout, cache, artifact and Pages actions,
//! and generates its job matrix from `harness list --json`. The list and report steps are run for
//! real: the list step against kernels.yaml, the report steps on shards made of recorded results.

use std::collections::BTreeMap;
use std::process::Command;

use serde_yaml::Value;

mod workspace;
use workspace::root;

fn workflow() -> Value {
    let path = root().join(".github/workflows/matrix.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn jobs(w: &Value) -> &serde_yaml::Mapping {
    w["jobs"].as_mapping().expect("jobs is a mapping")
}

fn steps(job: &Value) -> Vec<&Value> {
    job["steps"]
        .as_sequence()
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// Splits a command line as the shell would for these simple lines: words, double quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quotes in `{line}`");
    if any {
        out.push(word);
    }
    out
}

/// Every command line of every `run:` step, with its job name.
fn run_lines(w: &Value) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for (name, job) in jobs(w) {
        for step in steps(job) {
            if let Some(run) = step["run"].as_str() {
                for line in run.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    lines.push((name.as_str().unwrap().to_owned(), line.to_owned()));
                }
            }
        }
    }
    lines
}

const HARNESS: &str = "target/release/harness";

/// The harness's argv in a line, after an optional `sudo --preserve-env=...`.
fn harness_args(line: &str) -> Option<Vec<String>> {
    let mut w = words(line);
    if w.first().map(String::as_str) == Some("sudo") {
        w.remove(0);
        while w.first().is_some_and(|a| a.starts_with("--preserve-env=")) {
            w.remove(0);
        }
    }
    (w.first().map(String::as_str) == Some(HARNESS)).then(|| w[1..].to_vec())
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "harness {args:?} --help: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_steps_are_cargo_builds_or_real_harness_commands() {
    let w = workflow();
    let lines = run_lines(&w);
    assert!(lines.len() >= 5, "{lines:?}");
    let top = help(&[]);
    for (job, line) in &lines {
        if let Some(args) = harness_args(line) {
            let sub = &args[0];
            assert!(
                top.lines()
                    .any(|l| l.split_whitespace().next() == Some(sub.as_str())),
                "{job}: `{line}`: `{sub}` is not a harness subcommand:\n{top}"
            );
            let sub_help = help(&[sub.as_str()]);
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                let flag = flag.split('=').next().unwrap();
                assert!(
                    sub_help.contains(flag),
                    "{job}: `{line}`: harness {sub} has no {flag}:\n{sub_help}"
                );
            }
            continue;
        }
        let w = words(line);
        assert!(
            w.len() >= 2 && w[0] == "cargo" && w[1] == "build",
            "{job}: `{line}` is neither a cargo build nor a harness command"
        );
    }
}

#[test]
fn only_checkout_cache_artifact_and_pages_actions_are_used() {
    let allowed = [
        "actions/checkout@",
        "actions/cache@",
        "actions/upload-artifact@",
        "actions/download-artifact@",
        "actions/upload-pages-artifact@",
        "actions/deploy-pages@",
    ];
    let w = workflow();
    let mut used = 0;
    for (name, job) in jobs(&w) {
        for step in steps(job) {
            if let Some(uses) = step["uses"].as_str() {
                used += 1;
                assert!(
                    allowed.iter().any(|a| uses.starts_with(a)),
                    "{name:?}: uses {uses}"
                );
            }
            assert!(
                step["run"].is_string() ^ step["uses"].is_string(),
                "{name:?}: a step runs or uses: {step:?}"
            );
        }
    }
    assert!(used >= 5);
}

/// `${{ steps.<id>.outputs.<name> }}` → (id, name).
fn step_output(expr: &str) -> Option<(String, String)> {
    let inner = expr.trim().strip_prefix("${{")?.strip_suffix("}}")?.trim();
    let rest = inner.strip_prefix("steps.")?;
    let (id, name) = rest.split_once(".outputs.")?;
    Some((id.to_owned(), name.to_owned()))
}

#[test]
fn the_job_matrix_is_generated_by_harness_list_json() {
    let w = workflow();
    let jobs = jobs(&w);
    let (matrix_job, job) = jobs
        .iter()
        .find(|(_, j)| !j["strategy"]["matrix"].is_null())
        .expect("a job with a matrix");
    let include = job["strategy"]["matrix"]["include"]
        .as_str()
        .expect("matrix.include is an expression");
    let inner = include
        .trim()
        .strip_prefix("${{")
        .and_then(|s| s.strip_suffix("}}"))
        .unwrap()
        .trim();
    let arg = inner
        .strip_prefix("fromJSON(")
        .and_then(|s| s.strip_suffix(')'))
        .expect("fromJSON(...)");
    let (needed, output) = arg
        .strip_prefix("needs.")
        .and_then(|s| s.split_once(".outputs."))
        .expect("needs.<job>.outputs.<name>");
    let needs: Vec<&str> = match &job["needs"] {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(s) => s.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    assert!(
        needs.contains(&needed),
        "{matrix_job:?} does not need {needed}"
    );
    let lister = &jobs[needed];
    let (step_id, step_out) = step_output(
        lister["outputs"][output]
            .as_str()
            .expect("the lister declares the output"),
    )
    .unwrap();
    let step = steps(lister)
        .into_iter()
        .find(|s| s["id"].as_str() == Some(&step_id))
        .expect("the listing step");
    let line = step["run"].as_str().unwrap().trim();
    let args = harness_args(line).unwrap_or_else(|| panic!("`{line}` is not a harness command"));
    assert_eq!(&args[..2], ["list", "--json"], "{line}");
    let at = args
        .iter()
        .position(|a| a == "--github-output")
        .expect("--github-output");
    assert_eq!(args[at + 1], step_out);

    // Run the listing for real, as the job would, and check the matrix rows name kernels that
    // the matrix job's steps read as `matrix.kernel`.
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let real: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains("${{") {
                "default".to_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    let run = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(root())
        .args(&real)
        .env("GITHUB_OUTPUT", out_file.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = std::fs::read_to_string(out_file.path()).unwrap();
    let (name, json) = written.trim_end().split_once('=').unwrap();
    assert_eq!(name, step_out);
    assert_eq!(written.lines().count(), 1, "one line: {written}");
    let rows: Vec<BTreeMap<String, serde_json::Value>> = serde_json::from_str(json).unwrap();
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(rows.iter().any(|r| r["kernel"] == "host"));
    // Every row names its kernel under the key the matrix job reads.
    assert!(rows.iter().all(|r| r["kernel"].is_string()), "{rows:?}");
    let run_step = steps(job)
        .into_iter()
        .filter_map(|s| s["run"].as_str())
        .find_map(harness_args)
        .expect("the matrix job runs the harness");
    assert_eq!(run_step[0], "run");
    assert!(
        run_step
            .windows(2)
            .any(|w| w[0] == "--kernel" && w[1] == "${{ matrix.kernel }}"),
        "{run_step:?}"
    );
}

#[test]
fn the_report_job_merges_shards_made_of_recorded_results() {
    let w = workflow();
    let lines: Vec<Vec<String>> = run_lines(&w)
        .iter()
        .filter_map(|(_, l)| harness_args(l))
        .collect();
    let report = lines
        .iter()
        .find(|a| a[0] == "report")
        .expect("a harness report step");
    let kcidb = lines
        .iter()
        .find(|a| a[0] == "kcidb")
        .expect("a harness kcidb step");
    assert!(report.iter().any(|a| a == "shard-*/"), "{report:?}");
    // Shards as download-artifact lays them out (shard-<kernel>/<kernel>.json), from real runs.
    let scratch = tempfile::tempdir().unwrap();
    let fixtures = root().join("harness/tests/fixtures/results");
    let mut shards = Vec::new();
    for kernel in ["deb-6.1", "host", "3.8"] {
        let dir = scratch.path().join(format!("shard-{kernel}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Recordings of a whole catalogue are kept xz-compressed; the report reads both forms.
        let name = ["json", "json.xz"]
            .iter()
            .map(|ext| format!("{kernel}.{ext}"))
            .find(|name| fixtures.join(name).exists())
            .unwrap_or_else(|| panic!("no recorded result for {kernel}"));
        std::fs::copy(fixtures.join(&name), dir.join(&name)).unwrap();
        shards.push(dir);
    }
    for step in [report, kcidb] {
        let mut argv: Vec<String> = Vec::new();
        for a in step {
            if a == "shard-*/" {
                argv.extend(shards.iter().map(|s| s.display().to_string()));
            } else {
                argv.push(a.clone());
            }
        }
        let out = Command::new(env!("CARGO_BIN_EXE_harness"))
            .current_dir(scratch.path())
            .arg("--claims")
            .arg(root().join("claims.yaml"))
            .args(&argv)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "harness {argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let html = std::fs::read_to_string(scratch.path().join("report/report.html")).unwrap();
    assert!(html.contains("deb-6.1") && html.contains("host"));
    let kcidb: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scratch.path().join("report/kcidb.json")).unwrap())
            .unwrap();
    assert_eq!(kcidb["builds"].as_array().unwrap().len(), 3);
}
