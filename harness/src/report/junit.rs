//! `junit.xml`: one test suite per kernel, one test case per claim (`<kernel>::<claim>`).
//!
//! Holds passes; contradicted and unstable fail (an unstable outcome is never a pass), except a
//! contradiction the claims file records as an expected difference, which is skipped with that
//! reason; not measured, untested and out-of-scope are skipped, with the reason and, out of scope,
//! whether the kernel agrees. An unavailable kernel's cases are all skipped with its reason.

use std::fmt::Write;

use crate::judge::evaluate::{Evaluation, Verdict};

use super::escape_html as xml;

pub fn render(evaluation: &Evaluation) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total = evaluation.kernels.len() * evaluation.rows.len();
    let failures_all: usize = (0..evaluation.kernels.len())
        .map(|i| failures(evaluation, i))
        .sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"reuseport-claims\" tests=\"{total}\" failures=\"{failures_all}\">"
    );
    for (i, kernel) in evaluation.kernels.iter().enumerate() {
        let skipped = evaluation
            .rows
            .iter()
            .filter(|r| {
                kernel.environment_fault.is_none()
                    && is_skipped(&r.verdicts[i], kernel.unavailable.is_some())
            })
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{skipped}\">",
            xml(&kernel.kernel),
            evaluation.rows.len(),
            failures(evaluation, i)
        );
        for row in &evaluation.rows {
            let verdict = &row.verdicts[i];
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}::{}\">",
                xml(&kernel.kernel),
                xml(&kernel.kernel),
                xml(&row.claim.id)
            );
            match (&kernel.unavailable, verdict) {
                (Some(reason), _) => {
                    let _ = write!(out, "<skipped message=\"unavailable: {}\"/>", xml(reason));
                }
                // The harness's environment broke: every case fails, loudly.
                (None, _) if kernel.environment_fault.is_some() => {
                    let reason = kernel.environment_fault.as_deref().unwrap_or_default();
                    let _ = write!(
                        out,
                        "<failure type=\"environment-fault\" message=\"{}\"/>",
                        xml(reason)
                    );
                }
                (None, Verdict::Holds { .. }) => {}
                (None, v) if v.is_known_contradiction() => {
                    let reason = row
                        .claim
                        .expected_difference
                        .as_ref()
                        .map_or("", |w| w.why.as_str());
                    let _ = write!(
                        out,
                        "<skipped message=\"contradicted, an expected difference: {}. {}\"/>",
                        xml(reason),
                        xml(&verdict.summary())
                    );
                }
                (None, Verdict::Contradicted { .. } | Verdict::Unstable { .. }) => {
                    let _ = write!(
                        out,
                        "<failure type=\"{}\" message=\"{}\"/>",
                        verdict.label(),
                        xml(&verdict.summary())
                    );
                }
                (None, _) => {
                    let _ = write!(out, "<skipped message=\"{}\"/>", xml(&verdict.summary()));
                }
            }
            let _ = writeln!(out, "</testcase>");
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

fn failures(evaluation: &Evaluation, column: usize) -> usize {
    if evaluation.kernels[column].unavailable.is_some() {
        return 0;
    }
    if evaluation.kernels[column].environment_fault.is_some() {
        return evaluation.rows.len();
    }
    evaluation
        .rows
        .iter()
        .filter(|r| fails(&r.verdicts[column]))
        .count()
}

/// A contradiction fails unless every contradicting cell is a known difference; an unstable
/// verdict fails.
fn fails(verdict: &Verdict) -> bool {
    match verdict {
        Verdict::Contradicted { .. } => !verdict.is_known_contradiction(),
        Verdict::Unstable { .. } => true,
        _ => false,
    }
}

fn is_skipped(verdict: &Verdict, unavailable: bool) -> bool {
    unavailable || !(matches!(verdict, Verdict::Holds { .. }) || fails(verdict))
}
