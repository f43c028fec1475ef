//! `harness bisect`: across an ordered list of kernels, the first one whose outcome of one
//! experiment differs from a good kernel's, booting O(log n) kernels.
//!
//! The list is the matrix in version order (the host row placed by the release it runs) or an
//! explicit `--kernels-list` of ids and image files. Every boot runs only the experiment (`--only
//! X`). Outcomes are compared as [`Signature`]s, firm aspects only: the per-boot hash secret
//! changes which reuseport member gets a flow, so raw member labels and counts never decide.
//!
//! Like `git bisect`, a kernel that cannot be measured (unavailable, no boot, the experiment
//! crashed) is skipped and another one near the middle is tried; when skipped kernels sit right
//! before the first differing one, all of them are named as candidates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use crate::commands::check::{self, BootArgs, Measurement};
use crate::judge::signature::Signature;
use crate::matrix::{KernelSpec, VersionKey};
use crate::ExitKind;

#[derive(Debug, clap::Args)]
pub struct BisectArgs {
    /// The experiment id (exact, from the catalogue).
    #[arg(long)]
    pub experiment: String,
    /// A kernel (id or image file) with the reference outcome.
    #[arg(long)]
    pub good: String,
    /// A later kernel whose outcome differs.
    #[arg(long)]
    pub bad: String,
    /// The ordered list to bisect over: kernel ids or image files, comma-separated (default: every
    /// kernel of kernels.yaml in version order).
    #[arg(long, value_delimiter = ',')]
    pub kernels_list: Vec<String>,
    #[command(flatten)]
    pub boot: BootArgs,
}

/// The state of one kernel of the list during the search.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Same,
    Differs(Vec<crate::judge::signature::AspectChange>),
    Skipped(String),
}

/// The bisection proper, over `n` kernels where `good` is known to have the reference outcome and
/// `bad` to differ from it: `probe(i)` measures kernel `i`. Returns the first differing index and
/// the skipped indexes right before it (which could be the first instead).
pub fn search(
    good: usize,
    bad: usize,
    mut probe: impl FnMut(usize) -> Result<Step>,
) -> Result<(usize, Vec<usize>)> {
    let (mut lo, mut hi) = (good, bad);
    let mut skipped: Vec<usize> = Vec::new();
    loop {
        let open: Vec<usize> = (lo + 1..hi).filter(|i| !skipped.contains(i)).collect();
        if open.is_empty() {
            break;
        }
        // The open index nearest the middle of what is left: a skip does not stall the search.
        let middle = (lo + hi) as f64 / 2.0;
        let pick = *open
            .iter()
            .min_by(|a, b| {
                (**a as f64 - middle)
                    .abs()
                    .total_cmp(&(**b as f64 - middle).abs())
            })
            .expect("open is not empty");
        match probe(pick)? {
            Step::Same => lo = pick,
            Step::Differs(_) => hi = pick,
            Step::Skipped(_) => skipped.push(pick),
        }
    }
    let mut before: Vec<usize> = skipped.into_iter().filter(|i| *i > lo && *i < hi).collect();
    before.sort_unstable();
    Ok((hi, before))
}

/// The matrix in version order; the host by the release it runs now.
fn matrix_order(kernels_yaml: &Path) -> Result<Vec<KernelSpec>> {
    let m =
        crate::matrix::load(kernels_yaml).map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?;
    let host_release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .ok();
    let mut kernels = m.kernels.clone();
    kernels.sort_by_cached_key(|k| {
        let version = if k.is_host() {
            host_release.clone()
        } else {
            k.version.clone()
        };
        (VersionKey::parse(version.as_deref()), k.id.clone())
    });
    Ok(kernels)
}

fn explicit_order(names: &[String], kernels_yaml: &Path) -> Result<Vec<KernelSpec>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| check::kernel_spec(name, &format!("image-{i}"), kernels_yaml))
        .collect()
}

fn position(list: &[KernelSpec], names: &[String], name: &str, flag: &str) -> Result<usize> {
    let by_name = names.iter().position(|n| n == name);
    let by_id = list.iter().position(|k| k.id == name);
    by_name.or(by_id).ok_or_else(|| {
        ExitKind::Usage
            .wrap(format!(
                "--{flag} `{name}` is not in the list ({})",
                list.iter()
                    .map(|k| k.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into()
    })
}

pub fn main(args: &BisectArgs, kernels_yaml: &Path, offline: bool) -> Result<ExitCode> {
    check::known_experiment(&args.experiment)?;
    let list = if args.kernels_list.is_empty() {
        matrix_order(kernels_yaml)?
    } else {
        explicit_order(&args.kernels_list, kernels_yaml)?
    };
    let names: Vec<String> = if args.kernels_list.is_empty() {
        list.iter().map(|k| k.id.clone()).collect()
    } else {
        args.kernels_list.clone()
    };
    let good = position(&list, &names, &args.good, "good")?;
    let bad = position(&list, &names, &args.bad, "bad")?;
    if good >= bad {
        return Err(ExitKind::Usage
            .wrap(format!(
                "--good `{}` must come before --bad `{}` in the list (order: {}); give --kernels-list to choose the order",
                args.good,
                args.bad,
                names.join(", ")
            ))
            .into());
    }
    crate::obtain::prereq::ensure_qemu()?;
    crate::obtain::prereq::ensure_kernel_toolchain(&list[good..=bad].iter().collect::<Vec<_>>());
    let out: PathBuf = args
        .boot
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results/bisect"));
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!(e).context(format!("creating {}", out.display())))?;
    let span = bad - good + 1;
    eprintln!(
        "harness: bisecting {} over {span} kernel(s) from {} to {}: {}",
        args.experiment,
        names[good],
        names[bad],
        names[good..=bad].join(", ")
    );
    let mut boots = 0usize;
    let mut measure = |i: usize| -> Result<Measurement> {
        boots += 1;
        let m = check::measure(&list[i], &args.experiment, &args.boot, &out, offline)?;
        match &m {
            Measurement::Measured { release, signature } => println!(
                "{:<12} {:<28} {}",
                names[i],
                release.as_deref().unwrap_or("-"),
                check::render_signature(signature)
            ),
            Measurement::Untestable { reason } => {
                println!("{:<12} {:<28} skipped: {reason}", names[i], "-")
            }
        }
        Ok(m)
    };
    let reference: Signature = match measure(good)? {
        Measurement::Measured { signature, .. } => signature,
        Measurement::Untestable { reason } => {
            return Err(ExitKind::Failed
                .wrap(format!(
                    "the good kernel {} could not be measured: {reason}",
                    names[good]
                ))
                .into())
        }
    };
    let step = |m: Measurement| -> Step {
        match m {
            Measurement::Untestable { reason } => Step::Skipped(reason),
            Measurement::Measured { signature, .. } => {
                let changes = reference.changes_to(&signature);
                if changes.is_empty() {
                    Step::Same
                } else {
                    Step::Differs(changes)
                }
            }
        }
    };
    let bad_changes = match step(measure(bad)?) {
        Step::Differs(changes) => changes,
        Step::Same => {
            return Err(ExitKind::Failed
                .wrap(format!(
                    "{} shows the same outcome on {} as on {}: nothing to bisect",
                    args.experiment, names[bad], names[good]
                ))
                .into())
        }
        Step::Skipped(reason) => {
            return Err(ExitKind::Failed
                .wrap(format!(
                    "the bad kernel {} could not be measured: {reason}",
                    names[bad]
                ))
                .into())
        }
    };
    let mut first_changes = bad_changes;
    let mut last_differs = bad;
    let (first, skipped) = search(good, bad, |i| {
        let s = step(measure(i)?);
        if let Step::Differs(changes) = &s {
            if i < last_differs {
                last_differs = i;
                first_changes = changes.clone();
            }
        }
        Ok(s)
    })?;
    println!(
        "first kernel whose {} outcome differs from {}'s: {} ({} of {} kernels booted)",
        args.experiment, names[good], names[first], boots, span
    );
    println!(
        "  behaviour change: {}",
        crate::judge::changes::cell_change_text(&args.experiment, &first_changes)
    );
    for change in &first_changes {
        println!("  {}: {} -> {}", change.aspect, change.before, change.after);
    }
    if !skipped.is_empty() {
        println!(
            "  (or one of the skipped kernels before it: {})",
            skipped
                .iter()
                .map(|i| names[*i].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!("harness: results in {}", out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernels 0..n, behaviour changes at `at`; `skip` cannot be measured.
    fn run(n: usize, at: usize, skip: &[usize]) -> ((usize, Vec<usize>), Vec<usize>) {
        let mut probed = Vec::new();
        let found = search(0, n - 1, |i| {
            probed.push(i);
            Ok(if skip.contains(&i) {
                Step::Skipped("no boot".into())
            } else if i >= at {
                Step::Differs(vec![])
            } else {
                Step::Same
            })
        })
        .unwrap();
        (found, probed)
    }

    #[test]
    fn finds_the_first_differing_kernel_in_logarithmic_probes() {
        for n in 2..40 {
            for at in 1..n {
                let ((first, skipped), probed) = run(n, at, &[]);
                assert_eq!(first, at, "n {n} at {at}");
                assert!(skipped.is_empty());
                let bound = (n as f64).log2().ceil() as usize;
                assert!(probed.len() <= bound, "n {n} at {at}: {probed:?}");
            }
        }
    }

    #[test]
    fn skipped_kernels_are_worked_around_or_named() {
        let ((first, skipped), _) = run(10, 6, &[5]);
        assert_eq!((first, skipped), (6, vec![5]));
        let ((first, skipped), _) = run(10, 6, &[4]);
        assert_eq!((first, skipped), (6, vec![]));
    }
}
