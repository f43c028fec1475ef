//! `harness run`: the matrix, kernel by kernel. Data flows one way: a kernels.yaml row → an image
//! → a guest run → a transcript → a [`KernelResult`] on disk, written as soon as that kernel is
//! done. Boots run in parallel, bounded by cores and memory.
//!
//! Retries: a kernel that dies before the guest's first record (seen here: Debian's 6.12 under TCG
//! oopses in roughly one boot of three) is booted again, up to `retries` more times, and every
//! attempt is recorded. Once the guest has spoken, nothing is retried: a crash then is a result.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::boot::accel::Accel;
use crate::boot::transcript::{self, Transcript};
use crate::boot::vm::{self, Exit, GuestRun};
use crate::matrix::KernelSpec;
use crate::obtain::acquire::{self, Acquisition, KernelImage};
use crate::results::{self, Attempt, KernelResult, RunOutcome};
use crate::version::Version;
use crate::ExitKind;

/// Which accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// Probe KVM once (bounded), fall back to TCG.
    Auto,
    Force(Accel),
}

pub struct RunOptions {
    pub selection: Vec<String>,
    pub out: PathBuf,
    pub jobs: usize,
    pub accel: AccelChoice,
    pub retries: u32,
    pub resume: bool,
    pub acquire: acquire::AcquireContext,
}

pub const DEFAULT_MEMORY_MIB: u32 = 512;
pub const DEFAULT_CPUS: u32 = 2;
pub const DEFAULT_TIMEOUT_S: u32 = 300;
const KVM_PROBE_LIMIT: Duration = Duration::from_secs(15);

/// Parallel boots: one per core, fewer when memory would not hold them.
pub fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kib| kib / 1024);
    let by_memory = (mem_mib / (u64::from(DEFAULT_MEMORY_MIB) * 2)).max(1) as usize;
    cores.min(by_memory).max(1)
}

/// Everything shared by the boots of one matrix run.
struct Shared<'a> {
    opts: &'a RunOptions,
    guest: PathBuf,
    initrd: PathBuf,
    accel: Mutex<Option<Accel>>,
    scratch: PathBuf,
}

pub fn run_matrix(kernels: &[&KernelSpec], opts: &RunOptions) -> Result<Vec<KernelResult>> {
    // Each run its own scratch directory: two runs sharing a results directory never write the
    // same console or record log.
    let scratch = opts
        .out
        .join(".work")
        .join(format!("run-{}", std::process::id()));
    check_writable(&opts.out, &scratch)?;
    let guest = crate::obtain::guest_binary::static_guest()?;
    let initrd = crate::boot::initramfs::for_guest(&guest, opts.acquire.cache.root())?;
    let shared = Shared {
        opts,
        guest,
        initrd,
        accel: Mutex::new(None),
        scratch,
    };
    if let AccelChoice::Force(a) = opts.accel {
        *shared.accel.lock().unwrap() = Some(a);
    }

    let queue: Mutex<VecDeque<&KernelSpec>> = Mutex::new(kernels.iter().copied().collect());
    let done: Mutex<Vec<KernelResult>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let jobs = opts.jobs.max(1).min(kernels.len().max(1));
    eprintln!(
        "harness: {} kernel(s), {jobs} at a time, results in {}",
        kernels.len(),
        opts.out.display()
    );
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let Some(spec) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                match one_kernel(spec, &shared) {
                    Ok(result) => done.lock().unwrap().push(result),
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(e.context(format!("kernel {}", spec.id))),
                }
            });
        }
    });
    if let Some(e) = failures.into_inner().unwrap().into_iter().next() {
        return Err(e);
    }
    let mut done = done.into_inner().unwrap();
    done.sort_by(|a, b| a.kernel.cmp(&b.kernel));
    keep_logs_of_failures(&shared.scratch, &done);
    nothing_unavailable_everywhere(&done)?;
    Ok(done)
}

/// Fails before any work when the results directory cannot take a file (read-only, full, not
/// ours), instead of after the first boot. Exits with [`ExitKind::Storage`].
fn check_writable(out: &Path, scratch: &Path) -> Result<()> {
    let attempt = || -> Result<()> {
        std::fs::create_dir_all(scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let probe = scratch.join("writable");
        results::write_atomically(&probe, &[b'\n'; 4096])?;
        std::fs::remove_file(&probe).with_context(|| format!("removing {}", probe.display()))?;
        Ok(())
    };
    attempt().map_err(|e| {
        anyhow::Error::new(ExitKind::Storage.wrap(format!(
            "results directory {} is not writable: {e:#}",
            out.display()
        )))
    })
}

/// Console and record logs of a kernel that completed are not needed (its result holds
/// everything); those of any other outcome stay for a person to read, and the summary said where.
fn keep_logs_of_failures(scratch: &Path, done: &[KernelResult]) {
    for r in done {
        if r.run == RunOutcome::Complete {
            let _ = std::fs::remove_dir_all(scratch.join(&r.kernel));
        }
    }
    // Succeeds only when nothing was kept.
    let _ = std::fs::remove_dir(scratch);
}

/// A run in which not one kernel could be obtained (offline with nothing cached, an unreachable
/// archive) measured nothing: that is an error with its own exit code, not an empty success. A
/// run where only some kernels are unavailable succeeds; their cells say why.
fn nothing_unavailable_everywhere(done: &[KernelResult]) -> Result<()> {
    let reasons: Vec<String> = done
        .iter()
        .map(|r| match &r.run {
            RunOutcome::Unavailable { reason } => Some(format!("{}: {reason}", r.kernel)),
            _ => None,
        })
        .collect::<Option<_>>()
        .unwrap_or_default();
    if reasons.is_empty() {
        return Ok(());
    }
    Err(ExitKind::Unavailable
        .wrap(format!(
            "no kernel of this run could be obtained:\n  {}",
            reasons.join("\n  ")
        ))
        .into())
}

fn one_kernel(spec: &KernelSpec, shared: &Shared<'_>) -> Result<KernelResult> {
    let opts = shared.opts;
    if opts.resume {
        if let Ok(previous) = results::load(&results::path_for(&opts.out, &spec.id)) {
            if previous.run == RunOutcome::Complete {
                eprintln!("{:<10} kept from the previous run (--resume)", spec.id);
                return Ok(previous);
            }
        }
    }
    let mut result = KernelResult {
        format: results::RESULT_FORMAT,
        kernel: spec.id.clone(),
        version: spec.version.clone(),
        provenance: None,
        run: RunOutcome::Unavailable {
            reason: String::new(),
        },
        attempts: Vec::new(),
        header: None,
        records: Vec::new(),
        remeasured: None,
        finished_at: 0,
    };
    let acquired = acquire::acquire(spec, &opts.acquire)?;
    let workdir = shared.scratch.join(&spec.id);
    let timeout = Duration::from_secs(u64::from(spec.boot.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S)));
    match acquired {
        Acquisition::Unavailable { reason } => {
            result.run = RunOutcome::Unavailable { reason };
        }
        Acquisition::Host => {
            let run =
                crate::boot::namespace::run(&shared.guest, &opts.selection, timeout, &workdir)?;
            judge(&mut result, None, &run, timeout, true);
            let patterns = remeasure_patterns(&result);
            if !patterns.is_empty() {
                eprintln!(
                    "{:<10} unstable cells: measuring {} again, {REMEASURE_REPETITIONS} repetitions each",
                    spec.id,
                    patterns.join(",")
                );
                let mut args = patterns.clone();
                args.push(format!("rph.repeat={REMEASURE_REPETITIONS}"));
                let run = crate::boot::namespace::run(
                    &shared.guest,
                    &args,
                    timeout,
                    &workdir.join("remeasure"),
                )?;
                take_remeasured(&mut result, None, &run, patterns);
            }
        }
        Acquisition::Image(image) => {
            result.provenance = Some(image.provenance.clone());
            let accel = pick_accel(shared, &image.path, &workdir)?;
            let boot = boot_for(spec, &image, &shared.initrd, accel, &[], workdir.clone());
            let boot = vm::Boot {
                selection: opts.selection.clone(),
                timeout,
                ..boot
            };
            for attempt in 0..=opts.retries {
                eprintln!(
                    "{:<10} boot {} ({}, -cpu {}, attempt {})",
                    spec.id,
                    image.path.display(),
                    accel.name(),
                    boot.cpu,
                    attempt + 1
                );
                let run = vm::boot(&boot)?;
                let last = attempt == opts.retries;
                if judge(&mut result, Some(&boot), &run, timeout, last) {
                    break;
                }
            }
            let patterns = remeasure_patterns(&result);
            if !patterns.is_empty() {
                eprintln!(
                    "{:<10} unstable cells: measuring {} again, {REMEASURE_REPETITIONS} repetitions each",
                    spec.id,
                    patterns.join(",")
                );
                let again = vm::Boot {
                    selection: patterns.clone(),
                    extra_cmdline: Some(
                        boot.extra_cmdline
                            .iter()
                            .cloned()
                            .chain([format!("rph.repeat={REMEASURE_REPETITIONS}")])
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    workdir: workdir.join("remeasure"),
                    ..boot.clone()
                };
                let run = vm::boot(&again)?;
                take_remeasured(&mut result, Some(&again), &run, patterns);
            }
        }
    }
    result.finished_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = results::store(&opts.out, &result)?;
    eprintln!("{}", summary_line(&result, &path));
    Ok(result)
}

/// Repetitions per cell when a kernel's unstable families are measured again. The figures: on
/// 4.5 and 4.6 the TIME_WAIT cells whose repetitions disagree show their minority value 22% of
/// the time (EADDRINUSE 962, ok 262 over 51 cells of 4.5), so three repetitions agree by chance
/// 48% of the time and twelve still 5% — enough nondeterministic cells pass for stable to read
/// as behaviour changes between kernels — while 24 leave 0.3%. A fresh boot gives the
/// repetitions a fresh port space (a whole catalogue at 24 repetitions would run out of ports
/// while its own TIME_WAIT sockets still hold them).
pub const REMEASURE_REPETITIONS: u32 = 24;

/// What to measure again, when a complete run found cells whose repetitions disagree: every cell
/// of the same kind, since a nondeterministic kernel may make any of them look stable three
/// times in a row. A bind cell's kind is its transport and first-socket state
/// (`bind.tcp.*.time-wait.*`); any other cell's, its family (`tw`).
pub fn remeasure_patterns(result: &KernelResult) -> Vec<String> {
    if result.run != RunOutcome::Complete
        || result
            .header
            .as_ref()
            .and_then(|h| h.repetitions)
            .is_some_and(|r| r >= REMEASURE_REPETITIONS)
    {
        return Vec::new();
    }
    let mut patterns: Vec<String> = Vec::new();
    for record in &result.records {
        if !crate::judge::signature::signature(record).is_unstable() {
            continue;
        }
        let parts: Vec<&str> = record.id.split('.').collect();
        let pattern = match parts.as_slice() {
            ["bind", transport, _, first, ..] => format!("bind.{transport}.*.{first}.*"),
            [family, ..] => (*family).to_owned(),
            [] => continue,
        };
        if !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
    }
    patterns
}

/// Takes the records of a second boot over `patterns` into `result`, replacing the first boot's
/// records of the same cells, when the second run is complete and its pre-flight clean;
/// otherwise keeps the first boot's and says why.
fn take_remeasured(
    result: &mut KernelResult,
    boot: Option<&vm::Boot>,
    run: &GuestRun,
    patterns: Vec<String>,
) {
    let t: Transcript = transcript::parse(&run.channel);
    let faults = t
        .header
        .as_ref()
        .map(|h| h.preflight_failures())
        .unwrap_or_default();
    let ended = if !t.is_complete() {
        format!("not taken: {}", t.problems.join("; "))
    } else if !faults.is_empty() {
        format!("not taken: pre-flight failed: {}", faults.join("; "))
    } else {
        "complete".to_owned()
    };
    result.attempts.push(Attempt {
        accel: boot.map_or("host", |b| b.accel.name()).into(),
        wall_ms: run.wall.as_millis() as u64,
        ended: format!("remeasure {ended}"),
        guest_ms: t.trailer.as_ref().map(|tr| tr.elapsed_us / 1000),
        cpu: boot.map(|b| b.cpu.clone()),
        cmdline: boot.map(vm::cmdline),
    });
    let mut replaced = 0;
    if ended == "complete" {
        for again in t.records {
            if let Some(old) = result.records.iter_mut().find(|r| r.id == again.id) {
                let seq = old.seq;
                *old = wire::ExperimentRecord { seq, ..again };
                replaced += 1;
            }
        }
    }
    result.remeasured = Some(crate::results::Remeasured {
        selection: patterns,
        repetitions: REMEASURE_REPETITIONS,
        records: replaced,
        ended,
    });
}

/// The boot of `image` as `spec` asks for it: memory, vCPUs, the CPU model its version needs
/// (`boot::cpu`), the row's command line after `extra` arguments; the whole catalogue, the
/// default watchdog.
pub fn boot_for(
    spec: &KernelSpec,
    image: &KernelImage,
    initrd: &Path,
    accel: Accel,
    extra: &[&str],
    workdir: PathBuf,
) -> vm::Boot {
    let version = image
        .release()
        .as_deref()
        .and_then(Version::parse_prefix)
        .or_else(|| spec.version.as_deref().and_then(Version::parse_prefix));
    let choice = crate::boot::cpu::choose(accel, version.as_ref(), spec.boot.cpu.as_deref());
    let additions: Vec<String> = choice
        .cmdline
        .iter()
        .cloned()
        .chain(spec.boot.cmdline.clone())
        .chain(extra.iter().map(|e| e.to_string()))
        .collect();
    vm::Boot {
        kernel: image.path.clone(),
        initrd: initrd.to_path_buf(),
        accel,
        memory_mib: spec.boot.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
        cpus: spec.boot.cpus.unwrap_or(DEFAULT_CPUS),
        cpu: choice.cpu,
        extra_cmdline: (!additions.is_empty()).then(|| additions.join(" ")),
        selection: Vec::new(),
        timeout: Duration::from_secs(u64::from(DEFAULT_TIMEOUT_S)),
        workdir,
    }
}

/// Records one attempt in `result` (`boot`: the VM's settings; `None` for the host row).
/// Returns false when the attempt died before the guest spoke and may be retried (unless
/// `last`).
fn judge(
    result: &mut KernelResult,
    boot: Option<&vm::Boot>,
    run: &GuestRun,
    timeout: Duration,
    last: bool,
) -> bool {
    let t: Transcript = transcript::parse(&run.channel);
    let tail = transcript::tail(&run.console, 30);
    let panic = transcript::panic_line(&run.console);
    let outcome = match (&run.exit, &t.header, panic) {
        (Exit::TimedOut, _, _) => RunOutcome::Timeout {
            after_s: timeout.as_secs(),
            console_tail: tail,
        },
        (_, None, Some(line)) | (_, Some(_), Some(line)) if t.trailer.is_none() => {
            RunOutcome::Panic {
                line,
                console_tail: transcript::panic_tail(&run.console, 30),
            }
        }
        (_, None, _) => RunOutcome::EarlyCrash { console_tail: tail },
        (_, Some(header), _) if !header.preflight_failures().is_empty() => {
            RunOutcome::EnvironmentFault {
                failed: header.preflight_failures(),
            }
        }
        _ if t.is_complete() => RunOutcome::Complete,
        _ => RunOutcome::Incomplete {
            reason: t.problems.join("; "),
        },
    };
    let guest_ms = t.trailer.as_ref().map(|tr| tr.elapsed_us / 1000);
    result.attempts.push(Attempt {
        accel: boot.map_or("host", |b| b.accel.name()).into(),
        cpu: boot.map(|b| b.cpu.clone()),
        cmdline: boot.map(vm::cmdline),
        wall_ms: run.wall.as_millis() as u64,
        ended: outcome.label().into(),
        guest_ms,
    });
    let retry = t.header.is_none() && !matches!(outcome, RunOutcome::Timeout { .. }) && !last;
    if !retry || result.records.is_empty() {
        result.header = t.header;
        result.records = t.records;
        result.run = outcome;
    }
    !retry
}

fn pick_accel(shared: &Shared<'_>, kernel: &Path, workdir: &Path) -> Result<Accel> {
    let mut chosen = shared.accel.lock().unwrap();
    if let Some(a) = *chosen {
        return Ok(a);
    }
    let verdict_file = shared.opts.acquire.cache.root().join("kvm-probe.json");
    let host = host_fingerprint();
    let remembered = std::fs::read(&verdict_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<KvmVerdict>(&b).ok())
        .filter(|v| {
            v.host == host
                && crate::obtain::cache::now_secs().saturating_sub(v.at) < KVM_VERDICT_TTL.as_secs()
        });
    let cached = remembered.is_some();
    let works = match remembered {
        Some(v) => v.works,
        None => {
            eprintln!(
                "harness: probing KVM (at most {} s)",
                KVM_PROBE_LIMIT.as_secs()
            );
            let works = vm::kvm_works(
                kernel,
                &shared.initrd,
                &workdir.join("kvm-probe"),
                KVM_PROBE_LIMIT,
            )?;
            let verdict = KvmVerdict {
                host,
                works,
                at: crate::obtain::cache::now_secs(),
            };
            results::write_atomically(&verdict_file, &serde_json::to_vec(&verdict)?)?;
            works
        }
    };
    let accel = if works { Accel::Kvm } else { Accel::Tcg };
    eprintln!(
        "harness: KVM {}; using {}{}",
        if works { "works" } else { "does not work here" },
        accel.name(),
        if cached {
            " (remembered probe result: images/cache/kvm-probe.json)"
        } else {
            ""
        }
    );
    *chosen = Some(accel);
    Ok(accel)
}

/// A KVM probe's verdict, remembered so that every run does not pay for a probe that times out
/// on machines where KVM hangs. Keyed by the host kernel and QEMU, so an upgrade re-probes.
#[derive(serde::Serialize, serde::Deserialize)]
struct KvmVerdict {
    host: String,
    works: bool,
    at: u64,
}

const KVM_VERDICT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn host_fingerprint() -> String {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let qemu = std::process::Command::new(vm::QEMU)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    format!("{release} | {qemu}")
}

pub fn summary_line(r: &KernelResult, path: &Path) -> String {
    let release = r.release().unwrap_or("-");
    let accel = r.attempts.last().map_or("-", |a| a.accel.as_str());
    let wall: u64 = r.attempts.iter().map(|a| a.wall_ms).sum();
    let mut by_status = std::collections::BTreeMap::<&str, usize>::new();
    for rec in &r.records {
        let key = match rec.status {
            wire::Status::Completed => "completed",
            wire::Status::Unsupported { .. } => "unsupported",
            wire::Status::Crashed { .. } => "crashed",
            wire::Status::TimedOut { .. } => "timed-out",
            wire::Status::Failed { .. } => "failed",
        };
        *by_status.entry(key).or_default() += 1;
    }
    let statuses: Vec<String> = by_status.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let detail = match &r.run {
        RunOutcome::Unavailable { reason } => format!(": {reason}"),
        RunOutcome::Incomplete { reason } => format!(": {reason}"),
        RunOutcome::EnvironmentFault { failed } => {
            format!(": pre-flight failed, nothing judged: {}", failed.join("; "))
        }
        RunOutcome::Panic { line, .. } => format!(": {line}"),
        _ => String::new(),
    };
    format!(
        "{:<10} {:<24} {:<4} {}{} | {} records ({}) | {:.1} s, {} attempt(s) -> {}",
        r.kernel,
        release,
        accel,
        r.run.label(),
        detail,
        r.records.len(),
        statuses.join(", "),
        wall as f64 / 1000.0,
        r.attempts.len(),
        path.display()
    )
}
