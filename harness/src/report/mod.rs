//! The compatibility report in four forms, all from the same values: Markdown for GitHub, one
//! self-contained HTML page, JSON for machines and JUnit XML for CI. Rendering is pure (values in,
//! strings out); [`write_all`] is the only function here that touches the file system.

mod html;
mod json;
mod junit;
pub mod kcidb;
mod markdown;
mod what_changed;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use wire::Fact;

use crate::judge::changes::Changes;
use crate::judge::evaluate::{self, Agreement, Evaluation, Verdict};
use crate::judge::stats;
use crate::results::{self, KernelResult};

pub use html::render as render_html;
pub use json::render as render_json;
pub use junit::render as render_junit;
pub use markdown::render as render_markdown;

/// Writes `report.md`, `report.html`, `report.json` and `junit.xml` into `dir` (created if
/// missing), each atomically; returns their paths in that order.
pub fn write_all(
    dir: &Path,
    evaluation: &Evaluation,
    changes: &Changes,
    results: &[KernelResult],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating report directory {}", dir.display()))?;
    let distribution = distribution_table(results);
    let outputs = [
        (
            "report.md",
            render_markdown(evaluation, changes, &distribution),
        ),
        (
            "report.html",
            render_html(evaluation, changes, &distribution),
        ),
        (
            "report.json",
            render_json(evaluation, changes, &distribution),
        ),
        ("junit.xml", render_junit(evaluation)),
    ];
    let mut paths = Vec::new();
    for (name, text) in outputs {
        let path = dir.join(name);
        results::write_atomically(&path, text.as_bytes())?;
        paths.push(path);
    }
    Ok(paths)
}

/// A verdict as one short word or two for a matrix cell, and its CSS class.
pub(crate) fn cell(verdict: &Verdict) -> (&'static str, &'static str) {
    match verdict {
        Verdict::Holds { .. } => ("holds", "holds"),
        Verdict::Contradicted { .. } => ("contradicted", "contradicted"),
        Verdict::NotMeasured { .. } => ("not measured", "missing"),
        Verdict::Unstable { .. } => ("unstable", "unstable"),
        Verdict::Untested { .. } => ("untested", "untested"),
        Verdict::OutOfScope { .. } => match verdict.agreement() {
            Some(Agreement::Agrees) => ("other OS/version: Linux agrees", "oos-agrees"),
            Some(Agreement::Disagrees) => ("other OS/version: Linux disagrees", "oos-disagrees"),
            _ => ("other OS/version: unknown", "oos-unknown"),
        },
    }
}

/// One distribution experiment on one kernel, reduced to what can be compared across boots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistributionCell {
    pub counts: Vec<u64>,
    pub chi_square: Option<stats::ChiSquare>,
    pub spread: Option<f64>,
    /// `repeat_same` of `repeat_flows`, when flows were repeated.
    pub sticky: Option<(u64, u64)>,
    pub lost: Option<u64>,
    /// Steering cells: flows that reached the member the program or CPU named, of all flows.
    pub steered: Option<(u64, u64)>,
}

impl DistributionCell {
    /// Whether the cell looks right: steered completely, or even.
    pub fn good(&self) -> bool {
        match (self.steered, &self.chi_square) {
            (Some((steered, total)), _) => total > 0 && steered == total,
            (None, Some(t)) => t.p_value >= crate::judge::signature::EVEN_P,
            (None, None) => false,
        }
    }

    pub fn summary(&self) -> String {
        if let Some((steered, total)) = self.steered {
            return format!("steered {steered} of {total}");
        }
        let mut parts = Vec::new();
        match &self.chi_square {
            Some(t) => parts.push(format!(
                "{} (p {}, spread {})",
                if t.p_value >= crate::judge::signature::EVEN_P {
                    "even"
                } else {
                    "uneven"
                },
                evaluate::format_p(t.p_value),
                evaluate::format_spread(self.spread)
            )),
            None => parts.push("nothing to test".into()),
        }
        if let Some((same, flows)) = self.sticky {
            parts.push(if same == flows {
                "sticky".into()
            } else {
                format!("sticky {same}/{flows}")
            });
        }
        if let Some(lost) = self.lost.filter(|&l| l > 0) {
            parts.push(format!("{lost} lost"));
        }
        parts.join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistributionRow {
    pub experiment: String,
    pub description: String,
    /// One entry per kernel in evaluation order (absent when not measured there).
    pub cells: Vec<Option<DistributionCell>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DistributionTable {
    pub kernels: Vec<String>,
    pub rows: Vec<DistributionRow>,
    /// Lookup cost against group size (`cost.*`), same kernel order.
    pub cost: Vec<CostRow>,
}

/// Every distribution and steering experiment of the catalogue, per kernel in version order.
pub fn distribution_table(results: &[KernelResult]) -> DistributionTable {
    let kernels = evaluate::ordered(results);
    let rows = wire::catalogue()
        .into_iter()
        .filter(|e| {
            matches!(
                e.family(),
                wire::Family::Distribution | wire::Family::Steering
            )
        })
        .map(|e| {
            let id = e.id();
            let cells = kernels
                .iter()
                .map(|k| k.record(&id).and_then(distribution_cell))
                .collect();
            DistributionRow {
                experiment: id,
                description: e.describe(),
                cells,
            }
        })
        .collect();
    DistributionTable {
        kernels: kernels.iter().map(|k| k.kernel.clone()).collect(),
        rows,
        cost: cost_table(results),
    }
}

/// One lookup-cost experiment on one kernel: time per flow for each group size built.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostCell {
    pub sizes: Vec<u64>,
    pub ns_per_flow: Vec<f64>,
    /// Largest time over the time with a group of one.
    pub growth: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostRow {
    pub experiment: String,
    pub cells: Vec<Option<CostCell>>,
}

/// The lookup-cost experiments per kernel in version order.
pub fn cost_table(results: &[KernelResult]) -> Vec<CostRow> {
    let kernels = evaluate::ordered(results);
    wire::catalogue()
        .into_iter()
        .filter(|e| e.family() == wire::Family::LookupCost)
        .map(|e| {
            let id = e.id();
            let cells = kernels
                .iter()
                .map(|k| {
                    let r = k.record(&id)?;
                    let (Some(Fact::Counts(sizes)), Some(Fact::Numbers(ns))) =
                        (r.facts.get("sizes"), r.facts.get("ns_per_flow"))
                    else {
                        return None;
                    };
                    Some(CostCell {
                        sizes: sizes.clone(),
                        ns_per_flow: ns.clone(),
                        growth: stats::growth_over_first(ns),
                    })
                })
                .collect();
            CostRow {
                experiment: id,
                cells,
            }
        })
        .collect()
}

impl CostCell {
    pub fn summary(&self) -> String {
        let points: Vec<String> = self
            .sizes
            .iter()
            .zip(&self.ns_per_flow)
            .map(|(s, ns)| format!("{s}: {:.1} µs", ns / 1000.0))
            .collect();
        match self.growth {
            Some(g) => format!("{} (largest/first {g:.2})", points.join(", ")),
            None => points.join(", "),
        }
    }
}

fn distribution_cell(record: &wire::ExperimentRecord) -> Option<DistributionCell> {
    let counts = match record.facts.get("counts") {
        Some(Fact::Counts(c)) => c.clone(),
        _ => return None,
    };
    let count = |name: &str| match record.facts.get(name) {
        Some(Fact::Count(n)) => Some(*n),
        _ => None,
    };
    let sticky = match (count("repeat_same"), count("repeat_flows")) {
        (Some(same), Some(flows)) if flows > 0 => Some((same, flows)),
        _ => None,
    };
    let steered = match (count("steered"), record.facts.get("expected")) {
        (Some(steered), Some(Fact::Counts(expected))) => Some((steered, expected.iter().sum())),
        _ => None,
    };
    Some(DistributionCell {
        steered,
        chi_square: stats::chi_square_uniform(&counts),
        spread: stats::spread(&counts),
        counts,
        sticky,
        lost: count("lost"),
    })
}

pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Kernel column heading: id, and the measured release when it says more.
pub(crate) fn kernel_heading(k: &evaluate::KernelColumn) -> String {
    match (&k.version, &k.release) {
        (_, Some(release)) => format!("{} ({release})", k.kernel),
        (Some(v), None) => format!("{} ({v})", k.kernel),
        (None, None) => k.kernel.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;
    use crate::judge::changes::analyse;
    use crate::judge::evaluate::{evaluate, fixtures};

    /// `target/` of this build, found from the test binary (`target/<profile>/deps/harness-…`), so
    /// the screenshot lands there whatever CARGO_TARGET_DIR says.
    fn target_dir() -> PathBuf {
        let exe = std::env::current_exe().expect("test binary path");
        exe.ancestors()
            .nth(3)
            .expect("target/<profile>/deps/<binary>")
            .to_path_buf()
    }

    fn rendered() -> (Evaluation, Changes, Vec<KernelResult>) {
        let results = fixtures::results();
        let claims = fixtures::claims();
        (
            evaluate(&claims, &results),
            analyse(&results, &claims),
            results,
        )
    }

    #[test]
    fn markdown_has_every_section_kernel_and_claim() {
        let (evaluation, changes, results) = rendered();
        let md = render_markdown(&evaluation, &changes, &distribution_table(&results));
        // Five sources, the man pages with the release they were taken from, and per kernel how
        // much of each holds.
        assert!(
            md.contains(&format!(
                "| Linux man pages ({}) |",
                crate::judge::claims::MAN_PAGES_RELEASE
            )),
            "the man pages' summary row with their release"
        );
        assert!(md.contains("Per kernel, the claims that hold of those judged there"));
        for heading in [
            "## Kernels",
            "## Summary",
            "## Claim × kernel matrix",
            "## Contradictions",
            "## What changed",
            "## Unstable behaviour",
            "## Appendix: the cells behind each change",
            "## Distribution",
            "## Claims no experiment can test",
        ] {
            assert!(md.contains(heading), "missing {heading}");
        }
        for k in &evaluation.kernels {
            assert!(md.contains(&k.kernel), "missing kernel {}", k.kernel);
            if let Some(reason) = &k.unavailable {
                assert!(
                    md.contains(&format!("**unavailable**: {reason}")),
                    "unavailable reason not shown"
                );
            }
        }
        for row in &evaluation.rows {
            assert!(
                md.contains(&format!("`{}`", row.claim.id)),
                "missing claim {}",
                row.claim.id
            );
        }
        assert!(
            md.contains("❌ contradicted (known)") || md.contains("❌ **contradicted**"),
            "no contradiction rendered"
        );
        // How each recorded row was measured, for people reproducing it.
        assert!(
            md.contains("| tcg · -cpu max,-cx16 · 2 CPUs · 1 worker · shared-memory |"),
            "deb rows' measuring not shown"
        );
        assert!(
            md.contains("| host · 2 CPUs · 2 workers · stdout |"),
            "host row's measuring not shown"
        );
    }

    #[test]
    fn junit_has_one_case_per_kernel_and_claim() {
        let (evaluation, _, _) = rendered();
        let xml = render_junit(&evaluation);
        let cases = xml.matches("<testcase ").count();
        assert_eq!(cases, evaluation.kernels.len() * evaluation.rows.len());
        let contradicted: usize = evaluation
            .rows
            .iter()
            .map(|r| {
                r.verdicts
                    .iter()
                    .filter(|v| matches!(v, Verdict::Contradicted { .. }))
                    .count()
            })
            .sum();
        let expected: usize = evaluation
            .rows
            .iter()
            .map(|r| {
                r.verdicts
                    .iter()
                    .filter(|v| v.is_known_contradiction())
                    .count()
            })
            .sum();
        assert!(contradicted > 0);
        assert_eq!(
            xml.matches("<failure type=\"contradicted\"").count(),
            contradicted - expected
        );
        assert_eq!(
            xml.matches("contradicted, an expected difference: ")
                .count(),
            expected
        );
        assert!(xml.contains(&format!(
            "name=\"{}::001.linux.reuseport-same-euid\"",
            evaluation.kernels[0].kernel
        )));
    }

    #[test]
    fn json_round_trips_as_json() {
        let (evaluation, changes, results) = rendered();
        let text = render_json(&evaluation, &changes, &distribution_table(&results));
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["format"], 2);
        assert_eq!(
            value["evaluation"]["rows"].as_array().unwrap().len(),
            evaluation.rows.len()
        );
    }

    /// The ten recorded kernels, 3.8 to 7.2 and the host, rendered.
    fn rendered_ten() -> (Evaluation, Changes, Vec<KernelResult>) {
        let results = fixtures::recorded("ten");
        let claims = fixtures::claims();
        (
            evaluate(&claims, &results),
            analyse(&results, &claims),
            results,
        )
    }

    /// The first screen of `report.md` on the ten recorded kernels, against the snapshot kept
    /// beside this file (`RPH_UPDATE_SNAPSHOTS=1` rewrites it after a deliberate change).
    #[test]
    fn what_changed_table_matches_its_snapshot() {
        let (evaluation, changes, results) = rendered_ten();
        let md = render_markdown(&evaluation, &changes, &distribution_table(&results));
        let start = md.find("## What changed").expect("the section");
        let end = md[start..]
            .find("\n## ")
            .map_or(md.len(), |e| start + e + 1);
        let section = &md[start..end];
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/report/snapshots/what_changed.md");
        if std::env::var_os("RPH_UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, section).unwrap();
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (RPH_UPDATE_SNAPSHOTS=1 writes it)", path.display())
        });
        assert_eq!(
            section,
            kept,
            "the What changed section differs from {}",
            path.display()
        );
        let rows = section
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| when"))
            .count();
        assert!(rows <= 30, "{rows} rows: more than one screen");
    }

    /// Renders the HTML report from the ten recorded kernels, opens it in headless Chromium, and
    /// keeps the screenshot in `target/report-screenshot/`.
    #[test]
    fn html_report_renders_in_headless_chromium() {
        let (evaluation, changes, results) = rendered_ten();
        let html = render_html(&evaluation, &changes, &distribution_table(&results));
        for remote in [
            "src=\"http",
            "href=\"http",
            "@import",
            "url(http",
            "<script",
        ] {
            assert!(
                !html.contains(remote),
                "the report must not fetch anything: found {remote}"
            );
        }
        assert!(html.contains("<table class=\"matrix\">") && html.contains("<svg"));
        // The timeline: one bar per behaviour change over its window, the cells behind a click.
        assert!(html.contains("id=\"what-changed\""));
        assert_eq!(
            html.matches("class=\"tl-bar").count(),
            changes.changes.len(),
            "one bar per change"
        );
        assert!(html.contains("from 3.9 on") && html.contains("<details><summary>"));
        for k in evaluation
            .kernels
            .iter()
            .filter_map(|k| k.unavailable.as_ref())
        {
            assert!(html.contains(&format!("unavailable: {}", escape_html(k))));
        }

        let dir = target_dir().join("report-screenshot");
        let paths = write_all(&dir, &evaluation, &changes, &results).expect("writing the report");
        let page = &paths[1];
        let shot = dir.join("report.png");
        let _ = std::fs::remove_file(&shot);
        let profile = tempfile::tempdir().expect("temporary Chromium profile");
        let chromium = "/usr/bin/chromium";
        let output = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=1400,1000")
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap_or_else(|e| panic!("running {chromium} (apt-get install chromium): {e}"));
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 30_000,
            "screenshot {} is {size} bytes; chromium said: {}",
            shot.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let png = std::fs::read(&shot).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        eprintln!("screenshot: {}", shot.display());
    }
}
