//! `harness list`: the kernel matrix (or the claims) as people or a CI engine read it. Nothing is
//! booted or downloaded.
//!
//! `--json` prints one line of JSON, an array with one object per kernel
//! (`{"kernel": "deb-6.1", "version": "6.1", "source": "debian"}`), which is what a CI engine's
//! job matrix takes as `include:`. `--github-output NAME` also appends `NAME=<that line>` to the
//! file GitHub Actions names in `$GITHUB_OUTPUT`, so a workflow needs no shell plumbing.
//! `list claims --json` lists the claims instead (id, document, scope, whether measured, and the
//! `expected_difference` when claims.yaml records one): the matrix test binary builds its trials from it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::{matrix, ExitKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListWhat {
    /// The kernels of kernels.yaml (or of --group).
    Kernels,
    /// The claims of claims.yaml.
    Claims,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// What to list.
    #[arg(value_enum, default_value = "kernels")]
    what: ListWhat,
    /// One line of JSON for a CI engine instead of a table.
    #[arg(long)]
    json: bool,
    /// Groups or kernel ids to list, comma-separated or repeated (all kernels when absent).
    #[arg(long, value_delimiter = ',')]
    group: Vec<String>,
    /// Also append `NAME=<json>` to the file named by `$GITHUB_OUTPUT` (implies --json).
    #[arg(long, value_name = "NAME")]
    github_output: Option<String>,
}

pub fn main(args: &ListArgs, kernels_yaml: &Path, claims_yaml: &Path) -> Result<ExitCode> {
    match list(args, kernels_yaml, claims_yaml) {
        // `harness list | head` closes the pipe early: that is the reader's choice, not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

fn list(args: &ListArgs, kernels_yaml: &Path, claims_yaml: &Path) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let json = args.json || args.github_output.is_some();
    let line = if args.what == ListWhat::Claims {
        let claims = crate::judge::claims::load(claims_yaml)
            .map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?;
        let rows: Vec<serde_json::Value> = claims
            .claims
            .iter()
            .map(|c| {
                serde_json::json!({
                    "claim": c.id,
                    "doc": c.doc.file_name(),
                    "scope": c.scope.to_string(),
                    "measured": matches!(c.check, crate::judge::claims::Check::Measured(_)),
                    "expected_difference": c.expected_difference,
                })
            })
            .collect();
        if !json {
            for row in &rows {
                writeln!(
                    stdout,
                    "{:<56} {}",
                    row["claim"].as_str().unwrap_or_default(),
                    row["scope"].as_str().unwrap_or_default()
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        serde_json::to_string(&rows)?
    } else {
        let m = matrix::load(kernels_yaml).map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?;
        let kernels = if args.group.is_empty() {
            m.kernels.iter().collect()
        } else {
            m.select(&args.group)
                .map_err(|e| ExitKind::Usage.wrap(format!("{e:#}")))?
        };
        if !json {
            for k in kernels {
                writeln!(
                    stdout,
                    "{:<10} {:<6} {}",
                    k.id,
                    k.version.as_deref().unwrap_or("-"),
                    k.source.kind()
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        let rows: Vec<serde_json::Value> = kernels
            .iter()
            .map(|k| serde_json::json!({"kernel": k.id, "version": k.version, "source": k.source.kind()}))
            .collect();
        serde_json::to_string(&rows)?
    };
    writeln!(stdout, "{line}")?;
    if let Some(name) = &args.github_output {
        let Some(file) = std::env::var_os("GITHUB_OUTPUT") else {
            return Err(ExitKind::Usage
                .wrap(
                    "--github-output: $GITHUB_OUTPUT is not set (it is set inside GitHub Actions)",
                )
                .into());
        };
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&file)
            .with_context(|| format!("opening {}", Path::new(&file).display()))?;
        writeln!(out, "{name}={line}")
            .with_context(|| format!("writing {}", Path::new(&file).display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
