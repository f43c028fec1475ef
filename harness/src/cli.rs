//! The command line: flags parsed by clap into typed commands, each dispatched to the module that
//! owns the work. Nothing here measures or judges.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::boot::accel::Accel;
use crate::run::{self, AccelChoice, RunOptions};
use crate::{matrix, ExitKind};

#[derive(Debug, Parser)]
#[command(
    name = "harness",
    version,
    about = "Kernel socket-behaviour regression harness"
)]
struct Cli {
    /// The kernel matrix.
    #[arg(long, global = true, default_value = "kernels.yaml")]
    kernels: PathBuf,
    /// The documents' claims.
    #[arg(long, global = true, default_value = "claims.yaml")]
    claims: PathBuf,
    /// Never touch the network: only cached images are used, anything else is unavailable.
    #[arg(long, global = true)]
    offline: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot each kernel of a group (default: `default`) and record what the guest measures.
    Run(RunArgs),
    /// Judge the claims against stored results (one or more result directories, e.g. CI shards)
    /// and write the report.
    Report {
        /// Result directories; a kernel found in several is taken from the last.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where report.md, report.html, report.json and junit.xml go.
        #[arg(long, default_value = "report")]
        out: PathBuf,
    },
    /// Every outcome that changed between two result directories (the nightly regression view).
    /// Exits 1 when anything changed.
    Diff { old: PathBuf, new: PathBuf },
    /// The image cache (`images/cache/`): list what is cached, re-hash every blob, or prune what no
    /// kernel of kernels.yaml uses and nothing used for 30 days, every build directory, and the
    /// ccache beyond its size limit.
    Images {
        #[arg(value_parser = ["list", "verify", "prune"], default_value = "list")]
        action: String,
        /// `prune`: the ccache's size limit (ccache's syntax: 5G, 500M), kept for later builds.
        #[arg(long, default_value = crate::obtain::ccache::DEFAULT_MAX_SIZE)]
        ccache_max_size: String,
    },
    /// Time the harness against a bare QEMU boot of the same image (floor), cold against warm.
    Bench {
        /// Kernels to measure (default: the `debian` group).
        #[arg(long = "kernel")]
        kernel: Vec<String>,
        /// Skip the cold runs, which download every image again.
        #[arg(long)]
        warm_only: bool,
        /// Warm runs and bare boots per kernel; the median is reported (a single boot under TCG
        /// now and then takes 0.3–0.5 s longer than its neighbours).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        repeat: u32,
        /// Where the benchmark's own results and logs go.
        #[arg(long, default_value = "target/bench")]
        scratch: PathBuf,
        /// Instead: time a commit bisection over a git repository made from Debian's kernel
        /// source, with incremental builds against cold ones (docs/bisect.md).
        #[arg(long)]
        bisect: bool,
        /// `--bisect`: commits in the series after the base (about log2 of it are built).
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(2..=100_000))]
        commits: u32,
        /// `--bisect`: the kernel source tarball (default: the newest /usr/src/linux-source-*.tar.xz).
        #[arg(long)]
        linux_source: Option<PathBuf>,
    },
    /// Print the kernel matrix (ids, versions, sources), for people or (--json) a CI engine.
    List(crate::commands::list::ListArgs),
    /// Find the first kernel, in an ordered list of kernels, where one experiment's outcome differs
    /// from a good kernel's; boots only O(log n) kernels.
    Bisect(crate::commands::bisect::BisectArgs),
    /// Boot one kernel, run one experiment and exit 0 when its outcome is OUTCOME, 1 when it is
    /// not, 125 when it could not be measured (for `git bisect run`).
    Check(crate::commands::check::CheckArgs),
    /// Build the kernel tree DIR at its current checkout with the minimal guest config and print
    /// the bzImage path; exits 125 when the tree cannot be built (for `git bisect run`).
    BuildKernel(crate::commands::check::BuildKernelArgs),
    /// Export result directories as KernelCI KCIDB v4 JSON (checkouts, builds, tests).
    Kcidb(crate::report::kcidb::KcidbArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Kernel group from kernels.yaml.
    #[arg(long, default_value = matrix::DEFAULT_GROUP)]
    group: String,
    /// Run only these kernels (ids; repeatable). Overrides --group.
    #[arg(long = "kernel")]
    kernel: Vec<String>,
    /// Run only experiments matching these id prefixes (repeatable or comma-separated).
    #[arg(long = "only", value_delimiter = ',')]
    only: Vec<String>,
    /// Where results/<kernel>.json go.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Parallel boots (default: cores, bounded by memory).
    #[arg(long)]
    jobs: Option<usize>,
    /// Accelerator: auto probes KVM (bounded) and falls back to TCG.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    accel: String,
    /// Extra boots for a kernel that dies before the guest's first record.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Keep complete results already in --out and run only the rest.
    #[arg(long)]
    resume: bool,
    /// Where the report goes after the run.
    #[arg(long, default_value = "report")]
    report: PathBuf,
    /// Compare with a stored run and fail (exit 1) naming every changed outcome.
    #[arg(long)]
    baseline: Option<PathBuf>,
}

pub fn main() -> Result<ExitCode> {
    let cli = Cli::try_parse().map_err(|e| {
        if matches!(
            e.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
        ) {
            e.exit();
        }
        anyhow::Error::new(ExitKind::Usage.wrap(e.to_string().trim_end().to_string()))
    })?;
    crate::interrupt::install()?;
    let load = || {
        matrix::load(&cli.kernels)
            .map_err(|e| anyhow::Error::new(ExitKind::Usage.wrap(format!("{e:#}"))))
    };
    match cli.command {
        Command::List(args) => crate::commands::list::main(&args, &cli.kernels, &cli.claims),
        Command::Bisect(args) => crate::commands::bisect::main(&args, &cli.kernels, cli.offline),
        Command::Check(args) => Ok(crate::commands::check::main(
            &args,
            &cli.kernels,
            cli.offline,
        )),
        Command::BuildKernel(args) => crate::commands::check::build_kernel_main(&args, cli.offline),
        Command::Kcidb(args) => crate::report::kcidb::main(&args, &cli.claims),
        Command::Run(args) => {
            let m = load()?;
            let kernels = if args.kernel.is_empty() {
                m.group(&args.group)
            } else {
                m.select(&args.kernel)
            }
            .map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?;
            if let Err(unknown) = wire::select(&args.only) {
                return Err(ExitKind::Usage
                    .wrap(format!("--only: no experiment id matches {unknown:?}"))
                    .into());
            }
            crate::obtain::prereq::ensure_qemu()?;
            crate::obtain::prereq::ensure_kernel_toolchain(&kernels);
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("creating results directory {}", args.out.display()))?;
            let opts = RunOptions {
                selection: args.only,
                out: args.out,
                jobs: args.jobs.unwrap_or_else(run::default_jobs),
                accel: match args.accel.as_str() {
                    "kvm" => AccelChoice::Force(Accel::Kvm),
                    "tcg" => AccelChoice::Force(Accel::Tcg),
                    _ => AccelChoice::Auto,
                },
                retries: args.retries,
                resume: args.resume,
                acquire: crate::obtain::acquire::AcquireContext::new(
                    &crate::obtain::guest_binary::workspace_root(),
                    cli.offline,
                )?,
            };
            let claims = load_claims(&cli.claims)?;
            let baseline = args.baseline.as_deref().map(load_results).transpose()?;
            let results = run::run_matrix(&kernels, &opts)?;
            write_report(&claims, &results, &args.report)?;
            let faults: Vec<String> = results
                .iter()
                .filter(|r| matches!(r.run, crate::results::RunOutcome::EnvironmentFault { .. }))
                .filter_map(|r| Some(format!("{}: {}", r.kernel, r.not_judgeable()?)))
                .collect();
            if !faults.is_empty() {
                return Err(ExitKind::EnvironmentFault
                    .wrap(format!(
                        "the measuring environment broke; these kernels' records were kept but not judged:\n  {}",
                        faults.join("\n  ")
                    ))
                    .into());
            }
            if let Some(old) = baseline {
                let changes = crate::judge::diff::diff(&old, &results);
                if !changes.is_empty() {
                    eprintln!("{changes}");
                    return Err(ExitKind::Failed
                        .wrap("outcomes changed against the baseline (listed above)")
                        .into());
                }
                eprintln!("harness: no outcome changed against the baseline");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { dirs, out } => {
            let claims = load_claims(&cli.claims)?;
            let mut merged: std::collections::BTreeMap<String, crate::results::KernelResult> =
                Default::default();
            for dir in &dirs {
                for r in load_results(dir)? {
                    merged.insert(r.kernel.clone(), r);
                }
            }
            let results: Vec<_> = merged.into_values().collect();
            write_report(&claims, &results, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Images {
            action,
            ccache_max_size,
        } => {
            let root =
                crate::obtain::cache::default_root(&crate::obtain::guest_binary::workspace_root());
            match action.as_str() {
                "verify" => {
                    let (text, clean) = crate::obtain::cache::verify_command(&root)?;
                    println!("{text}");
                    Ok(if clean {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(ExitKind::Failed as u8)
                    })
                }
                "prune" => {
                    let ids = load()?.kernels.iter().map(|k| k.id.clone()).collect();
                    println!(
                        "{}",
                        crate::obtain::cache::prune_command(
                            &root,
                            &ids,
                            crate::obtain::cache::DEFAULT_PRUNE_AGE,
                            &ccache_max_size,
                        )?
                    );
                    Ok(ExitCode::SUCCESS)
                }
                _ => {
                    println!("{}", crate::obtain::cache::list_command(&root)?);
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Bench {
            bisect: true,
            scratch,
            commits,
            linux_source,
            ..
        } => {
            let linux_source = linux_source
                .or_else(crate::commands::bench_bisect::default_linux_source)
                .ok_or_else(|| {
                    ExitKind::Usage.wrap(
                        "--bisect needs Debian's kernel source: apt-get install linux-source-6.1, or --linux-source FILE",
                    )
                })?;
            crate::obtain::prereq::ensure_qemu()?;
            let opts = crate::commands::bench_bisect::BisectBenchOptions {
                repo_root: crate::obtain::guest_binary::workspace_root(),
                scratch: scratch.join("bisect"),
                linux_source,
                commits: commits as usize,
                timeout: 120,
            };
            crate::commands::bench_bisect::bench(&opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            kernel,
            warm_only,
            repeat,
            scratch,
            ..
        } => {
            let m = load()?;
            let kernels = if kernel.is_empty() {
                m.group("debian")
            } else {
                m.select(&kernel)
            }
            .map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?;
            crate::obtain::prereq::ensure_qemu()?;
            let opts = crate::commands::bench::BenchOptions {
                repo_root: crate::obtain::guest_binary::workspace_root(),
                scratch,
                accel: AccelChoice::Auto,
                warm_only,
                repeat: repeat as usize,
            };
            crate::commands::bench::bench(&kernels, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { old, new } => {
            let changes = crate::judge::diff::diff(&load_results(&old)?, &load_results(&new)?);
            println!("{changes}");
            Ok(if changes.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(ExitKind::Failed as u8)
            })
        }
    }
}

fn load_claims(path: &std::path::Path) -> Result<crate::judge::claims::ClaimSet> {
    crate::judge::claims::load(path).map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")).into())
}

fn load_results(dir: &std::path::Path) -> Result<Vec<crate::results::KernelResult>> {
    let results =
        crate::results::load_dir(dir).map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?;
    if results.is_empty() {
        return Err(ExitKind::Usage
            .wrap(format!("no results in {}", dir.display()))
            .into());
    }
    Ok(results)
}

/// Judges, renders and prints where the report went with a one-line tally.
fn write_report(
    claims: &crate::judge::claims::ClaimSet,
    results: &[crate::results::KernelResult],
    out: &std::path::Path,
) -> Result<()> {
    let evaluation = crate::judge::evaluate::evaluate(claims, results);
    let changes = crate::judge::changes::analyse(results, claims);
    let paths = crate::report::write_all(out, &evaluation, &changes, results)?;
    eprintln!(
        "harness: report: {}",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
