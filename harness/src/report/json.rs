//! `report.json`: the evaluation, the behaviour changes (every cell behind each) and the
//! distribution table as one document, for
//! dashboards and for KCIDB-style exports. Field names are those of the Rust types.

use serde::Serialize;

use crate::judge::changes::Changes;
use crate::judge::claims::{Document, Source, MAN_PAGES_RELEASE};
use crate::judge::evaluate::Evaluation;

use super::markdown::holds_of;
use super::DistributionTable;

/// Bumped when the shape of `report.json` changes.
pub const REPORT_FORMAT: u32 = 2;

#[derive(Serialize)]
struct Report<'a> {
    format: u32,
    /// Per source (each article, the man pages together): its documents and, per kernel, how
    /// many of its claims judged there hold.
    sources: Vec<SourceSummary>,
    evaluation: &'a Evaluation,
    changes: &'a Changes,
    distribution: &'a DistributionTable,
}

#[derive(Serialize)]
struct SourceSummary {
    label: String,
    /// The release of the documents, where they have one (the man pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<&'static str>,
    documents: Vec<&'static str>,
    kernels: Vec<KernelSummary>,
}

#[derive(Serialize)]
struct KernelSummary {
    kernel: String,
    holds: usize,
    judged: usize,
}

pub fn render(
    evaluation: &Evaluation,
    changes: &Changes,
    distribution: &DistributionTable,
) -> String {
    let sources = Source::all()
        .into_iter()
        .map(|source| SourceSummary {
            label: source.label().replace('`', ""),
            release: (source == Source::ManPages).then_some(MAN_PAGES_RELEASE),
            documents: Document::all()
                .filter(|d| d.source() == source)
                .map(Document::file_name)
                .collect(),
            kernels: evaluation
                .kernels
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let (holds, judged) = holds_of(evaluation, source, i);
                    KernelSummary {
                        kernel: k.kernel.clone(),
                        holds,
                        judged,
                    }
                })
                .collect(),
        })
        .collect();
    let report = Report {
        format: REPORT_FORMAT,
        sources,
        evaluation,
        changes,
        distribution,
    };
    // Non-finite numbers (an infinite spread) become null, which serde_json does on its own.
    serde_json::to_string_pretty(&report).expect("report values always serialize")
}
