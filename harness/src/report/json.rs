//! `report.json`: the evaluation, the behaviour changes (every cell behind each) and the
//! distribution table as one document, for
//! dashboards and for KCIDB-style exports. Field names are those of the Rust types.

use serde::Serialize;

use crate::judge::changes::Changes;
use crate::judge::evaluate::Evaluation;

use super::DistributionTable;

/// Bumped when the shape of `report.json` changes.
pub const REPORT_FORMAT: u32 = 2;

#[derive(Serialize)]
struct Report<'a> {
    format: u32,
    evaluation: &'a Evaluation,
    changes: &'a Changes,
    distribution: &'a DistributionTable,
}

pub fn render(
    evaluation: &Evaluation,
    changes: &Changes,
    distribution: &DistributionTable,
) -> String {
    let report = Report {
        format: REPORT_FORMAT,
        evaluation,
        changes,
        distribution,
    };
    // Non-finite numbers (an infinite spread) become null, which serde_json does on its own.
    serde_json::to_string_pretty(&report).expect("report values always serialize")
}
