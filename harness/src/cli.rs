//! The command line: flags parsed by clap into typed commands, each dispatched to the module that
//! owns the work. Nothing here measures or judges.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::run::{self, AccelChoice, RunOptions};
use crate::vm::Accel;
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
    /// Print the kernel matrix (ids, versions, sources), for people or (--json) a CI engine.
    List {
        #[arg(long)]
        json: bool,
        /// Group to list (all kernels when absent).
        #[arg(long)]
        group: Option<String>,
    },
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
        Command::List { json, group } => {
            let m = load()?;
            let kernels = match &group {
                Some(g) => m
                    .group(g)
                    .map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?,
                None => m.kernels.iter().collect(),
            };
            if json {
                let rows: Vec<serde_json::Value> = kernels
                    .iter()
                    .map(|k| serde_json::json!({"id": k.id, "version": k.version, "source": k.source.kind()}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for k in kernels {
                    println!(
                        "{:<10} {:<6} {}",
                        k.id,
                        k.version.as_deref().unwrap_or("-"),
                        k.source.kind()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
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
            crate::prereq::ensure_qemu()?;
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
                acquire: crate::acquire::AcquireContext::new(
                    &crate::guest_binary::workspace_root(),
                    cli.offline,
                )?,
            };
            run::run_matrix(&kernels, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
