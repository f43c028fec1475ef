//! `report.json`: the evaluation, the evolution and the distribution table as one document, for
//! dashboards and for KCIDB-style exports. Field names are those of the Rust types.

use serde::Serialize;

use crate::judge::evaluate::Evaluation;
use crate::judge::evolution::Evolution;

use super::DistributionTable;

/// Bumped when the shape of `report.json` changes.
pub const REPORT_FORMAT: u32 = 1;

#[derive(Serialize)]
struct Report<'a> {
    format: u32,
    evaluation: &'a Evaluation,
    evolution: &'a Evolution,
    distribution: &'a DistributionTable,
}

pub fn render(
    evaluation: &Evaluation,
    evolution: &Evolution,
    distribution: &DistributionTable,
) -> String {
    let report = Report {
        format: REPORT_FORMAT,
        evaluation,
        evolution,
        distribution,
    };
    // Non-finite numbers (an infinite spread) become null, which serde_json does on its own.
    serde_json::to_string_pretty(&report).expect("report values always serialize")
}
