//! `harness check` and `harness build-kernel`: one kernel, one experiment, one answer in the exit
//! code, so that `git bisect run` can drive the harness over a kernel git tree (docs/bisect.md).
//!
//! An experiment's outcome is its [`Signature`] (crate::judge::signature): outcome facts as stable values,
//! distribution and steering facts reduced to statistics, never raw member labels or counts (which
//! member gets a flow depends on a per-boot hash secret). OUTCOME names aspects of it:
//! `--expect b_bind=EADDRINUSE`, `--expect 'steering=all steered'`; every one given must match.
//!
//! Exit codes, as `git bisect run` reads them: 0 the outcome is OUTCOME (good), 1 it is not (bad),
//! 125 the outcome could not be measured here (the kernel could not be obtained or built, did not
//! boot, died before the experiment's record, the experiment itself crashed or timed out, or the
//! aspect is a borderline statistic): skip. When the harness fails at its own job (bad flags, QEMU
//! missing, a full disk, a bug) `check` exits 128 + its usual code, which stops a bisection instead
//! of marking a commit bad.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::boot::accel::Accel;
use crate::judge::signature::{self, Signature};
use crate::matrix::{BuildSource, KernelSource, KernelSpec};
use crate::obtain::acquire::build::BuildMode;
use crate::results::{KernelResult, RunOutcome};
use crate::run::{self, AccelChoice, RunOptions};
use crate::ExitKind;

/// `check`'s "skip" exit, as `git bisect run` reads it.
pub const SKIP: u8 = 125;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A kernel image (bzImage), a kernel source tree (built first, as `build-kernel` does), or a
    /// kernel id from kernels.yaml.
    #[arg(long)]
    pub kernel: String,
    /// The experiment id (exact, from the catalogue).
    #[arg(long)]
    pub experiment: String,
    /// `aspect=value` of the experiment's outcome signature; repeatable, all must match.
    #[arg(long = "expect", required = true, value_name = "OUTCOME")]
    pub expect: Vec<String>,
    #[command(flatten)]
    pub boot: BootArgs,
    #[command(flatten)]
    pub build: BuildArgs,
}

/// How a kernel tree is built by `check` and `build-kernel`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Build a git revision from nothing (`git archive` into a fresh directory, no ccache)
    /// instead of incrementally in the repository's persistent build directory.
    #[arg(long)]
    pub cold_build: bool,
}

impl BuildArgs {
    pub fn mode(&self) -> BuildMode {
        if self.cold_build {
            BuildMode::Cold
        } else {
            BuildMode::Incremental
        }
    }
}

/// How kernels are booted by `check` and `bisect`.
#[derive(Debug, Clone, clap::Args)]
pub struct BootArgs {
    /// Where each boot's <kernel>.json goes (default: a temporary directory for `check`,
    /// `results/bisect` for `bisect`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Accelerator: auto probes KVM (bounded) and falls back to TCG.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: String,
    /// Extra boots for a kernel that dies before the guest's first record.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Watchdog for one boot, in seconds (default: the kernel's own from kernels.yaml, else 300).
    /// An image that loads but never reaches the guest ends here as "could not measure".
    #[arg(long)]
    pub timeout: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct BuildKernelArgs {
    /// A kernel source tree (a clean git checkout is built at its HEAD commit, in the harness's
    /// own checkout of the repository, so each commit is cached once and built incrementally).
    pub dir: PathBuf,
    #[command(flatten)]
    pub build: BuildArgs,
}

/// One `aspect=value` of an expected outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub aspect: String,
    pub value: String,
}

impl Expected {
    pub fn parse(text: &str) -> Result<Expected, String> {
        match text.split_once('=') {
            Some((aspect, value)) if !aspect.trim().is_empty() => Ok(Expected {
                aspect: aspect.trim().to_owned(),
                value: value.trim().to_owned(),
            }),
            _ => Err(format!(
                "--expect `{text}`: write aspect=value, e.g. b_bind=EADDRINUSE or 'steering=all steered'"
            )),
        }
    }
}

/// What one boot showed for one experiment.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    Measured {
        release: Option<String>,
        signature: Signature,
    },
    /// Nothing to judge: why, in words.
    Untestable { reason: String },
}

/// The verdict of [`judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckVerdict {
    Good,
    Bad { differing: Vec<String> },
    Skip { reason: String },
}

/// One line: `aspect=value, aspect=value`, borderline aspects marked with `~`.
pub fn render_signature(signature: &Signature) -> String {
    signature
        .0
        .iter()
        .map(|(name, aspect)| {
            format!(
                "{name}={}{}",
                aspect.value,
                if aspect.firm { "" } else { " (~borderline)" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares a measurement with the expected aspects.
pub fn judge(measurement: &Measurement, expected: &[Expected]) -> CheckVerdict {
    let signature = match measurement {
        Measurement::Untestable { reason } => {
            return CheckVerdict::Skip {
                reason: reason.clone(),
            }
        }
        Measurement::Measured { signature, .. } => signature,
    };
    let mut differing = Vec::new();
    for e in expected {
        match signature.0.get(&e.aspect) {
            None => differing.push(format!("{} is absent (expected {})", e.aspect, e.value)),
            Some(a) if !a.firm => {
                return CheckVerdict::Skip {
                    reason: format!("{} is borderline ({})", e.aspect, a.value),
                }
            }
            Some(a) if a.value != e.value => {
                differing.push(format!("{}={} (expected {})", e.aspect, a.value, e.value))
            }
            Some(_) => {}
        }
    }
    if differing.is_empty() {
        CheckVerdict::Good
    } else {
        CheckVerdict::Bad { differing }
    }
}

/// Reduces a kernel's result to the measurement of `experiment`.
pub fn measurement_of(result: &KernelResult, experiment: &str) -> Measurement {
    if let Some(reason) = result.not_judgeable() {
        return Measurement::Untestable { reason };
    }
    let Some(record) = result.record(experiment) else {
        let detail = match &result.run {
            RunOutcome::Incomplete { reason } => format!("run incomplete: {reason}"),
            RunOutcome::Timeout { after_s, .. } => format!("boot timed out after {after_s} s"),
            RunOutcome::Panic { line, .. } => format!("kernel panicked: {line}"),
            RunOutcome::EarlyCrash { console_tail } => format!(
                "kernel died before the guest spoke; console ends: {}",
                console_tail.lines().last().unwrap_or("(empty)").trim()
            ),
            // Unavailable and environment faults returned above.
            RunOutcome::Complete
            | RunOutcome::Unavailable { .. }
            | RunOutcome::EnvironmentFault { .. } => "no record of the experiment".to_owned(),
        };
        return Measurement::Untestable { reason: detail };
    };
    match crate::results::measuring_problem(record) {
        Some(reason) => Measurement::Untestable { reason },
        None => Measurement::Measured {
            release: result.release().map(str::to_owned),
            signature: signature::signature(record),
        },
    }
}

/// Boots `spec` once with only `experiment` selected and measures it.
pub fn measure(
    spec: &KernelSpec,
    experiment: &str,
    boot: &BootArgs,
    out: &Path,
    offline: bool,
) -> Result<Measurement> {
    let acquire = crate::obtain::acquire::AcquireContext::new(
        &crate::obtain::guest_binary::workspace_root(),
        offline,
    )?;
    measure_with(spec, experiment, boot, out, acquire)
}

/// [`measure`] with the kernel obtained through `acquire` (its cache, its build mode).
pub fn measure_with(
    spec: &KernelSpec,
    experiment: &str,
    boot: &BootArgs,
    out: &Path,
    acquire: crate::obtain::acquire::AcquireContext,
) -> Result<Measurement> {
    let mut spec = spec.clone();
    if let Some(timeout) = boot.timeout {
        spec.boot.timeout_s = Some(timeout);
    }
    let spec = &spec;
    let opts = RunOptions {
        selection: vec![experiment.to_owned()],
        out: out.to_owned(),
        jobs: 1,
        accel: match boot.accel.as_str() {
            "kvm" => AccelChoice::Force(Accel::Kvm),
            "tcg" => AccelChoice::Force(Accel::Tcg),
            _ => AccelChoice::Auto,
        },
        retries: boot.retries,
        resume: false,
        acquire,
    };
    let stored = crate::results::path_for(out, &spec.id);
    let _ = std::fs::remove_file(&stored);
    let result = match run::run_matrix(&[spec], &opts) {
        Ok(results) => results
            .into_iter()
            .find(|r| r.kernel == spec.id)
            .with_context(|| format!("harness run returned no result for {}", spec.id))?,
        // A run whose only kernel could not be obtained is an error for `harness run`; here it is
        // the "cannot measure" answer, and the stored result says why.
        Err(error) => match crate::results::load(&stored) {
            Ok(result) if result.run != RunOutcome::Complete => result,
            _ => return Err(error),
        },
    };
    Ok(measurement_of(&result, experiment))
}

/// The exact catalogue id, or a usage error naming what is wrong.
pub fn known_experiment(id: &str) -> Result<()> {
    if wire::find(id).is_none() {
        return Err(ExitKind::Usage
            .wrap(format!("--experiment: no experiment `{id}` in the catalogue (exact ids, see results/*.json)"))
            .into());
    }
    Ok(())
}

/// A kernel named on the command line: an image file, a source tree, or a kernels.yaml id.
pub fn kernel_spec(name: &str, id: &str, kernels_yaml: &Path) -> Result<KernelSpec> {
    let path = Path::new(name);
    let source = if path.is_file() {
        KernelSource::Path {
            path: std::path::absolute(path).with_context(|| format!("resolving {name}"))?,
        }
    } else if path.is_dir() {
        tree_source(path)?
    } else {
        let m = crate::matrix::load(kernels_yaml)
            .map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?;
        return match m.kernel(name) {
            Some(spec) => Ok(spec.clone()),
            None => Err(ExitKind::Usage
                .wrap(format!(
                    "--kernel `{name}` is neither a file, a directory nor a kernel id in {}",
                    kernels_yaml.display()
                ))
                .into()),
        };
    };
    Ok(KernelSpec {
        id: id.to_owned(),
        version: None,
        source,
        boot: Default::default(),
    })
}

/// A clean git checkout is built at its HEAD commit (cached per commit; built in the harness's own
/// checkout of the repository, never in the user's); any other directory is copied and built.
pub fn tree_source(dir: &Path) -> Result<KernelSource> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let head = std::process::Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .output();
    let is_git_root = dir.join(".git").exists();
    Ok(match head {
        Ok(out) if out.status.success() && is_git_root => {
            let dirty = std::process::Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(["status", "--porcelain", "--untracked-files=no"])
                .output()
                .with_context(|| format!("running git status in {}", dir.display()))?;
            if dirty.stdout.is_empty() {
                KernelSource::Build(BuildSource::Git {
                    repo: dir.display().to_string(),
                    rev: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                })
            } else {
                // Local changes (a revert, a fix applied during bisection) must be built too.
                KernelSource::Build(BuildSource::Dir(dir))
            }
        }
        _ => KernelSource::Build(BuildSource::Dir(dir)),
    })
}

pub fn main(args: &CheckArgs, kernels_yaml: &Path, offline: bool) -> ExitCode {
    match check(args, kernels_yaml, offline) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            let kind = crate::exit_kind(&e) as u8;
            // 128 + the usual code: `git bisect run` stops rather than marking the commit bad.
            ExitCode::from(128u8.saturating_add(kind))
        }
    }
}

fn check(args: &CheckArgs, kernels_yaml: &Path, offline: bool) -> Result<ExitCode> {
    known_experiment(&args.experiment)?;
    let expected: Vec<Expected> = args
        .expect
        .iter()
        .map(|e| Expected::parse(e).map_err(|m| ExitKind::Usage.wrap(m)))
        .collect::<Result<_, _>>()?;
    let spec = kernel_spec(&args.kernel, "check", kernels_yaml)?;
    crate::obtain::prereq::ensure_qemu()?;
    crate::obtain::prereq::ensure_kernel_toolchain(&[&spec]);
    let temporary;
    let out = match &args.boot.out {
        Some(out) => out.clone(),
        None => {
            temporary = tempfile::tempdir().context("creating a temporary results directory")?;
            temporary.path().to_owned()
        }
    };
    let mut acquire = crate::obtain::acquire::AcquireContext::new(
        &crate::obtain::guest_binary::workspace_root(),
        offline,
    )?;
    acquire.build_mode = args.build.mode();
    let measurement = measure_with(&spec, &args.experiment, &args.boot, &out, acquire)?;
    if let Measurement::Measured { release, signature } = &measurement {
        println!(
            "{} on {} ({}): {}",
            args.experiment,
            args.kernel,
            release.as_deref().unwrap_or("release unknown"),
            render_signature(signature)
        );
    }
    Ok(match judge(&measurement, &expected) {
        CheckVerdict::Good => {
            println!("good: {}", args.expect.join(", "));
            ExitCode::SUCCESS
        }
        CheckVerdict::Bad { differing } => {
            println!("bad: {}", differing.join("; "));
            ExitCode::from(ExitKind::Failed as u8)
        }
        CheckVerdict::Skip { reason } => {
            println!("skip: {reason}");
            ExitCode::from(SKIP)
        }
    })
}

/// `harness build-kernel DIR`: prints the image path on stdout; 125 when the tree cannot be built.
pub fn build_kernel_main(args: &BuildKernelArgs, offline: bool) -> Result<ExitCode> {
    if !args.dir.is_dir() {
        return Err(ExitKind::Usage
            .wrap(format!("{} is not a directory", args.dir.display()))
            .into());
    }
    let spec = KernelSpec {
        id: "build-kernel".to_owned(),
        version: None,
        source: tree_source(&args.dir)?,
        boot: Default::default(),
    };
    crate::obtain::prereq::ensure_kernel_toolchain(&[&spec]);
    let mut ctx = crate::obtain::acquire::AcquireContext::new(
        &crate::obtain::guest_binary::workspace_root(),
        offline,
    )?;
    ctx.build_mode = args.build.mode();
    match crate::obtain::acquire::acquire(&spec, &ctx)? {
        crate::obtain::acquire::Acquisition::Image(image) => {
            for (key, value) in &image.provenance {
                eprintln!("harness: {key}: {value}");
            }
            println!("{}", image.path.display());
            Ok(ExitCode::SUCCESS)
        }
        crate::obtain::acquire::Acquisition::Unavailable { reason } => {
            eprintln!("harness: cannot build {}: {reason}", args.dir.display());
            Ok(ExitCode::from(SKIP))
        }
        crate::obtain::acquire::Acquisition::Host => {
            unreachable!("a build source is never the host")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::signature::Aspect;

    fn signature(aspects: &[(&str, &str, bool)]) -> Signature {
        Signature(
            aspects
                .iter()
                .map(|(n, v, firm)| {
                    (
                        n.to_string(),
                        Aspect {
                            value: v.to_string(),
                            firm: *firm,
                        },
                    )
                })
                .collect(),
        )
    }

    fn measured(aspects: &[(&str, &str, bool)]) -> Measurement {
        Measurement::Measured {
            release: None,
            signature: signature(aspects),
        }
    }

    #[test]
    fn outcome_syntax() {
        assert_eq!(
            Expected::parse("steering=all steered").unwrap(),
            Expected {
                aspect: "steering".into(),
                value: "all steered".into()
            }
        );
        assert!(Expected::parse("EADDRINUSE").is_err());
        assert!(Expected::parse("=x").is_err());
    }

    #[test]
    fn verdicts() {
        let m = measured(&[
            ("b_bind", "EADDRINUSE", true),
            ("spread", "borderline", false),
        ]);
        let e = |s: &str| vec![Expected::parse(s).unwrap()];
        assert_eq!(judge(&m, &e("b_bind=EADDRINUSE")), CheckVerdict::Good);
        assert!(matches!(
            judge(&m, &e("b_bind=ok")),
            CheckVerdict::Bad { .. }
        ));
        assert!(matches!(
            judge(&m, &e("missing=ok")),
            CheckVerdict::Bad { .. }
        ));
        assert!(matches!(
            judge(&m, &e("spread=even")),
            CheckVerdict::Skip { .. }
        ));
        let u = Measurement::Untestable {
            reason: "no boot".into(),
        };
        assert!(matches!(
            judge(&u, &e("b_bind=ok")),
            CheckVerdict::Skip { .. }
        ));
    }
}
