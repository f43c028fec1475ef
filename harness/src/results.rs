//! The result store: one JSON file per kernel (`results/<kernel-id>.json`), written atomically as
//! soon as that kernel finishes, so nothing measured is lost when a later kernel misbehaves.
//!
//! A [`KernelResult`] holds raw facts only (the guest's records plus how the boot went). Claims are
//! judged later, from these files, by `claims` and `evaluate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Bumped when [`KernelResult`] changes shape.
pub const RESULT_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelResult {
    pub format: u32,
    /// The id from kernels.yaml.
    pub kernel: String,
    /// The version kernels.yaml names (`7.2`, `3.8`), used to order the matrix; the measured
    /// `uname -r` is in `header`.
    pub version: Option<String>,
    /// Where the image came from: package and version, URL, build inputs; absent for the host row.
    pub provenance: Option<BTreeMap<String, String>>,
    pub run: RunOutcome,
    /// Every boot attempt, in order (more than one when an early crash was retried).
    pub attempts: Vec<Attempt>,
    /// The guest's header record: format, `uname`, CPUs. Absent when the guest never spoke.
    pub header: Option<wire::Header>,
    /// The guest's experiment records, in sequence order, from the attempt that counts (cells
    /// measured again replaced by their new records, see `remeasured`).
    pub records: Vec<wire::ExperimentRecord>,
    /// Cells measured again in a second boot because the first found some of them unstable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remeasured: Option<Remeasured>,
    /// Seconds since the epoch when the kernel finished.
    pub finished_at: u64,
}

/// How the run of one kernel ended, as far as the harness is concerned. Behaviour of the kernel
/// under test is never here: it is in the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RunOutcome {
    /// Header, every planned record and the trailer arrived intact.
    Complete,
    /// Some records arrived but the stream is not whole (no trailer, a gap, a corrupt line).
    Incomplete { reason: String },
    /// The watchdog fired; QEMU was killed.
    Timeout { after_s: u64, console_tail: String },
    /// The kernel panicked.
    Panic { line: String, console_tail: String },
    /// The kernel died before the guest wrote its first record, on every attempt.
    EarlyCrash { console_tail: String },
    /// The kernel could not be obtained here (unreachable source, failed build, missing image).
    Unavailable { reason: String },
    /// The guest's pre-flight check failed: plain loopback traffic did not work, so the
    /// environment (CPU model, emulator, guest set-up) is broken. The records are kept for
    /// diagnosis but never judged, and the run fails loudly.
    EnvironmentFault { failed: Vec<String> },
}

impl RunOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            RunOutcome::Complete => "complete",
            RunOutcome::Incomplete { .. } => "incomplete",
            RunOutcome::Timeout { .. } => "timeout",
            RunOutcome::Panic { .. } => "panic",
            RunOutcome::EarlyCrash { .. } => "early-crash",
            RunOutcome::Unavailable { .. } => "unavailable",
            RunOutcome::EnvironmentFault { .. } => "environment-fault",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// `kvm`, `tcg` or `host` (the guest ran as a process in a network namespace).
    pub accel: String,
    pub wall_ms: u64,
    /// What ended this attempt, in the words of [`RunOutcome::label`].
    pub ended: String,
    /// Guest-side time from the header to the trailer, when both arrived.
    pub guest_ms: Option<u64>,
    /// QEMU's `-cpu` value, exactly as passed (absent for the host row and in results written
    /// before it was recorded).
    #[serde(default)]
    pub cpu: Option<String>,
    /// The whole kernel command line, with every addition (`boot::cpu`'s and the row's).
    #[serde(default)]
    pub cmdline: Option<String>,
}

/// A second boot that measured again, with more repetitions, the families of cells a first boot
/// found unstable (`run::remeasure_patterns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remeasured {
    /// The selection patterns of the second boot.
    pub selection: Vec<String>,
    /// Its repetitions per cell (`rph.repeat=`).
    pub repetitions: u32,
    /// Records it replaced.
    pub records: usize,
    /// How the second boot ended (`complete`, or why its records were not taken).
    pub ended: String,
}

impl KernelResult {
    /// Why nothing this kernel's records say may be judged, if so: it could not be run, or its
    /// environment was broken.
    pub fn not_judgeable(&self) -> Option<String> {
        match &self.run {
            RunOutcome::Unavailable { reason } => Some(format!("kernel unavailable: {reason}")),
            RunOutcome::EnvironmentFault { failed } => Some(format!(
                "environment fault (pre-flight: {})",
                failed.join("; ")
            )),
            _ => None,
        }
    }

    pub fn record(&self, id: &str) -> Option<&wire::ExperimentRecord> {
        self.records.iter().find(|r| r.id == id)
    }

    /// The kernel release the guest measured, when it spoke.
    pub fn release(&self) -> Option<&str> {
        self.header.as_ref().map(|h| h.uname.release.as_str())
    }
}

/// Why `record` measured nothing about socket semantics, if it did not: the experiment crashed,
/// timed out or failed to set up, or one of its socket calls answered with an errno that no
/// socket rule produces (`wire::errno`; recordings made before the guest knew still carry those
/// as facts of a `completed` record).
pub fn measuring_problem(record: &wire::ExperimentRecord) -> Option<String> {
    match &record.status {
        wire::Status::Completed | wire::Status::Unsupported { .. } => {
            wire::errno::first_environment_fault(&record.facts)
                .map(|fault| format!("experiment failed: {fault}: not socket semantics"))
        }
        wire::Status::Crashed { signal } => Some(format!("experiment crashed ({signal})")),
        wire::Status::TimedOut { after_ms } => {
            Some(format!("experiment timed out after {after_ms} ms"))
        }
        wire::Status::Failed { error } => Some(format!("experiment failed: {error}")),
    }
}

pub fn path_for(dir: &Path, kernel: &str) -> PathBuf {
    dir.join(format!("{kernel}.json"))
}

/// Writes `result` to `dir/<kernel>.json` atomically (temporary file in the same directory, then
/// rename), so a reader or a concurrent run never sees half a file.
pub fn store(dir: &Path, result: &KernelResult) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating results directory {}", dir.display()))?;
    let path = path_for(dir, &result.kernel);
    // Compact: a full catalogue is thousands of records, and people read the report, not this.
    let json = serde_json::to_vec(result).expect("results serialize");
    write_atomically(&path, &json)?;
    Ok(path)
}

/// Writes a file atomically: a sibling temporary file, fsync, rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", tmp.path().display()))?;
    // Results, reports and cache entries are for everyone to read; the temporary file is 0600.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .with_context(|| format!("setting permissions of {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Reads a result file: `<kernel>.json`, or `<kernel>.json.xz` as results are archived (the
/// recordings the unit tests read are kept so: JSON of a full catalogue shrinks thirtyfold).
pub fn load(path: &Path) -> Result<KernelResult> {
    let mut bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "xz") {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(&bytes[..]), &mut plain)
            .with_context(|| format!("decompressing {}", path.display()))?;
        bytes = plain;
    }
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Whether `path` names a result file (`*.json`, `*.json.xz`).
fn is_result_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.ends_with(".json") || name.ends_with(".json.xz")
}

/// Loads every result (`*.json`, `*.json.xz`) in `dir`, sorted by kernel id.
pub fn load_dir(dir: &Path) -> Result<Vec<KernelResult>> {
    let mut results = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading results directory {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if is_result_file(&path) {
            results.push(load(&path)?);
        }
    }
    results.sort_by(|a, b| a.kernel.cmp(&b.kernel));
    Ok(results)
}
