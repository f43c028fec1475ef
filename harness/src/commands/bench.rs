//! `harness bench`: the harness held next to the floor, a bare QEMU boot of the same image whose
//! init powers off at once. For each kernel it measures, in one run:
//!
//! - **cold**: an empty image cache (download or build, initramfs) and the whole catalogue;
//! - **warm**: the same with the cache filled — nothing may be downloaded or rebuilt (median of
//!   `--repeat` runs, three by default);
//! - **floor**: the same kernel and initramfs booted with `rph-poweroff` (median of as many);
//! - **catalogue**: the guest's own time from its header to its trailer;
//! - **harness**: warm wall − VM wall, everything the harness does outside the VM;
//! - **VM extra**: VM wall − floor − catalogue, the guest's set-up and power-off and the spread
//!   of the boot itself.
//!
//! With several kernels it also times one warm run of all of them with parallel boots, against
//! the bound (Σ floor + Σ catalogue) / cores × 1.2.
//!
//! This is a benchmark, not a test: it prints figures and asserts nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::boot::accel::Accel;
use crate::boot::vm::{self, Exit};
use crate::matrix::KernelSpec;
use crate::obtain::acquire::{self, AcquireContext, Acquisition};
use crate::run::{self, AccelChoice, RunOptions};

pub struct BenchOptions {
    pub repo_root: PathBuf,
    pub scratch: PathBuf,
    pub accel: AccelChoice,
    /// Skip the cold runs (they download every image again).
    pub warm_only: bool,
    /// Warm runs and bare boots per kernel; medians are reported.
    pub repeat: usize,
}

struct Row {
    kernel: String,
    accel: String,
    cold: Option<Duration>,
    warm: Duration,
    floor: Duration,
    catalogue: Duration,
    /// The experiments' own time summed over the guest's workers: the catalogue's work. Equal
    /// to the catalogue's wall time (less the guest's bookkeeping) with one worker, more with
    /// several.
    catalogue_work: Duration,
    /// Concurrent workers the guest used (one under single-threaded TCG).
    workers: Option<u32>,
    vm_wall: Duration,
    cache_changed: bool,
}

pub fn bench(kernels: &[&KernelSpec], opts: &BenchOptions) -> Result<()> {
    std::fs::create_dir_all(&opts.scratch)
        .with_context(|| format!("creating {}", opts.scratch.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for spec in kernels {
        if spec.is_host() {
            eprintln!("bench: {} has no image to boot bare; skipped", spec.id);
            continue;
        }
        rows.push(one(spec, opts)?);
    }
    println!();
    println!(
        "{:<10} {:<5} {:>7} {:>7} {:>7} {:>9} {:>8} {:>7} {:>8} {:>7} {:>5}",
        "kernel",
        "accel",
        "floor",
        "cold",
        "warm",
        "catalogue",
        "harness",
        "% floor",
        "VM extra",
        "% floor",
        "clean"
    );
    for r in &rows {
        let floor = r.floor.as_secs_f64();
        // Everything the harness itself does around the VM: acquisition checks, initramfs
        // lookup, parsing the channel, judging, writing the result.
        let harness = r.warm.as_secs_f64() - r.vm_wall.as_secs_f64();
        // Inside the VM beyond a bare boot and the catalogue: the guest's set-up, power-off,
        // and the boot-to-boot spread of the kernel itself.
        let vm_extra = r.vm_wall.as_secs_f64() - floor - r.catalogue.as_secs_f64();
        println!(
            "{:<10} {:<5} {:>7.2} {:>7} {:>7.2} {:>9.2} {:>8.2} {:>6.0}% {:>8.2} {:>6.0}% {:>5}",
            r.kernel,
            r.accel,
            floor,
            r.cold
                .map_or("-".to_string(), |c| format!("{:.2}", c.as_secs_f64())),
            r.warm.as_secs_f64(),
            r.catalogue.as_secs_f64(),
            harness,
            100.0 * harness / floor,
            vm_extra,
            100.0 * vm_extra / floor,
            if r.cache_changed { "NO" } else { "yes" },
        );
        println!(
            "{:<10}       (VM wall {:.2} s; catalogue work {:.2} s over {} worker(s))",
            "",
            r.vm_wall.as_secs_f64(),
            r.catalogue_work.as_secs_f64(),
            r.workers.map_or("?".to_string(), |w| w.to_string()),
        );
    }
    println!("seconds, medians of {} runs; harness = warm − VM wall; VM extra = VM wall − floor − catalogue", opts.repeat.max(1));
    println!("clean = the warm run downloaded and rebuilt nothing (images/cache unchanged)");

    if rows.len() > 1 {
        let specs: Vec<&KernelSpec> = kernels
            .iter()
            .copied()
            .filter(|k| rows.iter().any(|r| r.kernel == k.id))
            .collect();
        let ctx = AcquireContext::new(&opts.repo_root, false)?;
        let out = opts.scratch.join("parallel");
        let started = Instant::now();
        run::run_matrix(&specs, &run_options(out, ctx, opts.accel, cores))?;
        let wall = started.elapsed().as_secs_f64();
        let work: f64 = rows
            .iter()
            .map(|r| r.floor.as_secs_f64() + r.catalogue.as_secs_f64())
            .sum();
        let bound = 1.2 * work / cores as f64;
        println!(
            "parallel warm run of {} kernels on {cores} cores: {wall:.2} s; bound 1.2 × (Σ floor + Σ catalogue) / cores = {bound:.2} s ({})",
            rows.len(),
            if wall <= bound { "within" } else { "over" }
        );
    }
    Ok(())
}

fn run_options(
    out: PathBuf,
    acquire: AcquireContext,
    accel: AccelChoice,
    jobs: usize,
) -> RunOptions {
    RunOptions {
        selection: Vec::new(),
        out,
        jobs,
        accel,
        retries: 0,
        resume: false,
        acquire,
    }
}

fn one(spec: &KernelSpec, opts: &BenchOptions) -> Result<Row> {
    let kernels = [spec];
    let cache_root = crate::obtain::cache::default_root(&opts.repo_root);
    // Warm: run until a run leaves the cache untouched (the first may still fill it).
    let attempt_warm = || -> Result<(Duration, bool, crate::results::KernelResult)> {
        let before = snapshot(&cache_root);
        let ctx = AcquireContext::new(&opts.repo_root, false)?;
        let started = Instant::now();
        let results = run::run_matrix(
            &kernels,
            &run_options(opts.scratch.join("warm"), ctx, opts.accel, 1),
        )?;
        let wall = started.elapsed();
        let result = results
            .into_iter()
            .next()
            .context("the warm run returned no result")?;
        Ok((wall, snapshot(&cache_root) != before, result))
    };
    let (mut warm, mut cache_changed, mut result) = attempt_warm()?;
    if cache_changed {
        eprintln!(
            "bench: {}: the first run filled the cache; timing warm ones",
            spec.id
        );
        (warm, cache_changed, result) = attempt_warm()?;
    }
    let mut warm_runs = vec![(warm, result)];
    for _ in 1..opts.repeat.max(1) {
        let (wall, changed, result) = attempt_warm()?;
        cache_changed |= changed;
        warm_runs.push((wall, result));
    }
    warm_runs.sort_by_key(|(wall, _)| *wall);
    let (warm, result) = warm_runs.swap_remove(warm_runs.len() / 2);
    let attempt = result
        .attempts
        .last()
        .context("the warm run booted nothing")?
        .clone();
    let guest_ms = attempt
        .guest_ms
        .context("the warm run's guest sent no trailer")?;
    let accel = match attempt.accel.as_str() {
        "kvm" => Accel::Kvm,
        _ => Accel::Tcg,
    };

    let cold = if opts.warm_only {
        None
    } else {
        let cold_root = opts.scratch.join("cold-checkout");
        let _ = std::fs::remove_dir_all(&cold_root);
        std::fs::create_dir_all(cold_root.join("images"))?;
        // A checkout with an empty cache but the same config fragment and lock file.
        link_into(
            &opts.repo_root,
            &cold_root,
            &["images/config", "kernels.lock"],
        )?;
        let ctx = AcquireContext::new(&cold_root, false)?;
        let started = Instant::now();
        run::run_matrix(
            &kernels,
            &run_options(opts.scratch.join("cold"), ctx, AccelChoice::Force(accel), 1),
        )?;
        Some(started.elapsed())
    };

    let ctx = AcquireContext::new(&opts.repo_root, true)?;
    let Acquisition::Image(image) = acquire::acquire(spec, &ctx)? else {
        bail!("{}: no image after a successful run", spec.id);
    };
    let guest = crate::obtain::guest_binary::static_guest()?;
    let initrd = crate::boot::initramfs::for_guest(&guest, ctx.cache.root())?;
    let mut floors = Vec::new();
    for i in 0..opts.repeat.max(1) {
        let workdir = opts
            .scratch
            .join("floor")
            .join(&spec.id)
            .join(i.to_string());
        let boot = vm::Boot {
            timeout: Duration::from_secs(120),
            ..run::boot_for(spec, &image, &initrd, accel, &["rph-poweroff"], workdir)
        };
        let run = vm::boot(&boot)?;
        if run.exit != Exit::Code(0) {
            bail!(
                "{}: the bare boot did not power off cleanly ({:?})",
                spec.id,
                run.exit
            );
        }
        floors.push(run.wall);
    }
    floors.sort();
    Ok(Row {
        kernel: spec.id.clone(),
        accel: accel.name().into(),
        cold,
        warm,
        floor: floors[floors.len() / 2],
        catalogue: Duration::from_millis(guest_ms),
        catalogue_work: Duration::from_micros(result.records.iter().map(|r| r.elapsed_us).sum()),
        workers: result.header.as_ref().and_then(|h| h.workers),
        vm_wall: Duration::from_millis(attempt.wall_ms),
        cache_changed,
    })
}

fn link_into(from: &Path, to: &Path, entries: &[&str]) -> Result<()> {
    for entry in entries {
        let source = from.join(entry);
        if source.exists() {
            let target = to.join(entry);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::os::unix::fs::symlink(&source, &target)
                .with_context(|| format!("linking {} to {}", target.display(), source.display()))?;
        }
    }
    Ok(())
}

/// What a warm run must not change: the cached blobs, initramfs archives and index entries, by
/// name and size, and index entries by content. Modification times are left out on purpose:
/// reading an entry marks its last use (for `harness images prune`), which is neither a download
/// nor a rebuild. Build directories and logs are scratch space another run may be using.
fn snapshot(root: &Path) -> Vec<(PathBuf, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["sha256", "index", "initramfs"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if !path.to_string_lossy().ends_with(".lock") {
                let content = if path.extension().is_some_and(|e| e == "json") {
                    std::fs::read(&path).unwrap_or_default()
                } else {
                    Vec::new()
                };
                out.push((path, meta.len(), content));
            }
        }
    }
    out.sort();
    out
}
