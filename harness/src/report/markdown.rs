//! `report.md`: the report as GitHub renders it — summary, the claim × kernel matrix, the
//! contradictions with their measured facts, evolution, distribution, and the untested claims.

use std::fmt::Write;

use crate::judge::claims::{Check, Document};
use crate::judge::evaluate::{Evaluation, Verdict};
use crate::judge::evolution::Evolution;

use super::{cell, kernel_heading, DistributionTable};

/// Groups of change points listed before the rest are only counted.
const GROUPS_LISTED: usize = 40;

fn md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn symbol(v: &Verdict) -> &'static str {
    match cell(v).1 {
        "holds" => "✅ holds",
        "contradicted" => "❌ **contradicted**",
        "missing" => "⬜ not measured",
        "unstable" => "⚠️ unstable",
        "untested" => "· untested",
        "oos-agrees" => "↔ agrees",
        "oos-disagrees" => "≠ disagrees",
        _ => "? unknown",
    }
}

pub fn render(
    evaluation: &Evaluation,
    evolution: &Evolution,
    distribution: &DistributionTable,
) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# SO_REUSEADDR and SO_REUSEPORT: the documents against real kernels\n"
    );
    let _ = writeln!(
        w,
        "Every claim of the four documents, judged on every kernel from raw measurements. \
         A missing measurement is never a pass; an outcome that differs between repetitions is *unstable*. \
         Claims made for BSD, Windows, Solaris or another Linux version range are *out of scope* on a kernel, \
         and still say whether that kernel agrees.\n"
    );

    // Kernels.
    let _ = writeln!(w, "## Kernels\n");
    let _ = writeln!(w, "| kernel | version | measured release | measured as | run | holds | contradicted | unstable | not measured | other scope: agrees / disagrees |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for (i, k) in evaluation.kernels.iter().enumerate() {
        let t = evaluation.tally(i);
        let run = match &k.unavailable {
            Some(reason) => format!("**unavailable**: {}", md(reason)),
            None => k.run.clone(),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {run} | {} | {} | {} | {} | {} / {} |",
            k.kernel,
            k.version.as_deref().unwrap_or("–"),
            k.release.as_deref().unwrap_or("–"),
            k.measured_as.as_deref().unwrap_or("–"),
            t.holds,
            t.contradicted,
            t.unstable,
            t.not_measured,
            t.out_of_scope_agrees,
            t.out_of_scope_disagrees
        );
    }

    // Summary.
    let _ = writeln!(w, "\n## Summary\n");
    let _ = writeln!(
        w,
        "| document | claims | measured | untested | holds wherever it applies and was measured | contradicted where claimed | claimed for another OS/version: Linux disagrees |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for doc in Document::ALL {
        let rows: Vec<_> = evaluation
            .rows
            .iter()
            .filter(|r| r.claim.doc == doc)
            .collect();
        let measured = rows
            .iter()
            .filter(|r| matches!(r.claim.check, Check::Measured(_)))
            .count();
        let any = |class: &str| {
            rows.iter()
                .filter(|r| r.verdicts.iter().any(|v| cell(v).1 == class))
                .count()
        };
        let holds = rows
            .iter()
            .filter(|r| {
                let judged: Vec<&Verdict> = r
                    .verdicts
                    .iter()
                    .filter(|v| {
                        matches!(
                            v,
                            Verdict::Holds { .. }
                                | Verdict::Contradicted { .. }
                                | Verdict::Unstable { .. }
                        )
                    })
                    .collect();
                !judged.is_empty() && judged.iter().all(|v| matches!(v, Verdict::Holds { .. }))
            })
            .count();
        let _ = writeln!(
            w,
            "| `{}` {} | {} | {measured} | {} | {holds} | {} | {} |",
            doc.file_name(),
            doc.title(),
            rows.len(),
            rows.len() - measured,
            any("contradicted"),
            any("oos-disagrees")
        );
    }
    let contradicted: Vec<_> = evaluation
        .rows
        .iter()
        .filter(|r| {
            r.verdicts
                .iter()
                .any(|v| matches!(v, Verdict::Contradicted { .. }))
        })
        .collect();
    let disagrees: Vec<_> = evaluation
        .rows
        .iter()
        .filter(|r| !contradicted.iter().any(|c| c.claim.id == r.claim.id))
        .filter(|r| r.verdicts.iter().any(|v| cell(v).1 == "oos-disagrees"))
        .collect();
    let _ = writeln!(
        w,
        "\n**{} claims are contradicted by at least one kernel they are made for** ({} of them recorded as known differences), \
         and Linux disagrees with {} claims made for other systems or versions. Each is listed under *Contradictions* \
         with the measured fact. The matrix shows **{} unclaimed lasting behaviour changes** between kernels (see *Evolution*).\n",
        contradicted.len(),
        contradicted.iter().filter(|r| r.claim.expected_difference.is_some()).count(),
        disagrees.len(),
        evolution.unclaimed().count()
    );

    // Matrix.
    let _ = writeln!(w, "## Claim × kernel matrix\n");
    let _ = write!(w, "| claim | scope |");
    for k in &evaluation.kernels {
        let _ = write!(w, " {} |", md(&kernel_heading(k)));
    }
    let _ = writeln!(w);
    let _ = write!(w, "|---|---|");
    for _ in &evaluation.kernels {
        let _ = write!(w, "---|");
    }
    let _ = writeln!(w);
    for row in &evaluation.rows {
        let _ = write!(
            w,
            "| `{}` | {} |",
            row.claim.id,
            md(&row.claim.scope.to_string())
        );
        for (k, v) in evaluation.kernels.iter().zip(&row.verdicts) {
            match &k.unavailable {
                Some(_) if !matches!(v, Verdict::Untested { .. }) => {
                    let _ = write!(w, " unavailable |");
                }
                _ if row.claim.expected_difference.is_some()
                    && matches!(v, Verdict::Contradicted { .. }) =>
                {
                    let _ = write!(w, " ❌ contradicted (known) |");
                }
                _ => {
                    let _ = write!(w, " {} |", symbol(v));
                }
            }
        }
        let _ = writeln!(w);
    }

    // Contradictions.
    let _ = writeln!(w, "\n## Contradictions\n");
    for (title, rows) in [
        ("Contradicted where the claim applies", &contradicted),
        (
            "Claims for other systems or versions that Linux disagrees with",
            &disagrees,
        ),
    ] {
        let _ = writeln!(w, "### {title}\n");
        if rows.is_empty() {
            let _ = writeln!(w, "None.\n");
        }
        for row in rows.iter() {
            let _ = writeln!(
                w,
                "- **`{}`** ({}, {}): “{}”",
                row.claim.id,
                row.claim.doc.file_name(),
                row.claim.scope,
                md(&row.claim.quote)
            );
            if let Some(note) = &row.claim.note {
                let _ = writeln!(w, "  - *reading:* {}", md(note));
            }
            if let Some(known) = &row.claim.expected_difference {
                let _ = writeln!(w, "  - *known difference:* {}", md(known));
            }
            // One line per distinct verdict text, naming the kernels it applies to.
            let mut seen: Vec<(String, Vec<&str>)> = Vec::new();
            for (k, v) in evaluation.kernels.iter().zip(&row.verdicts) {
                if !matches!(cell(v).1, "contradicted" | "oos-disagrees") {
                    continue;
                }
                let text = v.summary();
                match seen.iter_mut().find(|(t, _)| *t == text) {
                    Some((_, ks)) => ks.push(&k.kernel),
                    None => seen.push((text, vec![&k.kernel])),
                }
            }
            for (text, kernels) in seen {
                let _ = writeln!(w, "  - {}: {}", kernels.join(", "), md(&text));
            }
        }
        let _ = writeln!(w);
    }

    // Evolution.
    let _ = writeln!(w, "## Evolution\n");
    let _ = writeln!(
        w,
        "Measured kernels in version order: {}.",
        evolution.kernels.join(" → ")
    );
    for (k, why) in &evolution.unmeasured {
        let _ = writeln!(w, "Not measured: {k} ({}).", md(why));
    }
    let _ = writeln!(w, "\n### Change points the documents claim\n");
    let _ = writeln!(w, "| claim | at | verdict | detail |");
    let _ = writeln!(w, "|---|---|---|---|");
    for c in &evolution.claimed {
        let _ = writeln!(
            w,
            "| `{}` | {} | {} | {} |",
            c.claim,
            c.at,
            c.overall(),
            md(&c.detail())
        );
    }
    let claimed_points: Vec<_> = evolution
        .changes
        .iter()
        .filter(|c| !c.claimed_by.is_empty())
        .collect();
    let unclaimed: Vec<_> = evolution.unclaimed().collect();
    let instability = evolution
        .changes
        .iter()
        .filter(|c| c.involves_instability)
        .count();
    let _ = writeln!(
        w,
        "\n### Observed change points\n\n{} change points in all: {} accounted for by a claim, **{} unclaimed lasting behaviour changes**, \
         {} experiments where one kernel alone differs from its neighbours, {} involving an unstable outcome.\n",
        evolution.changes.len(),
        claimed_points.len(),
        unclaimed.len(),
        evolution.lone().count(),
        instability
    );
    let groups = evolution.groups();
    if !groups.is_empty() {
        let _ = writeln!(w, "Grouped by where and how the behaviour changes (every change point is in `report.json`):\n");
        let _ = writeln!(w, "| between | experiments | what changed | claimed by |");
        let _ = writeln!(w, "|---|---|---|---|");
        for g in groups.iter().take(GROUPS_LISTED) {
            let who = if !g.claimed_by.is_empty() {
                g.claimed_by.join(", ")
            } else if g.involves_instability {
                "— (an unstable outcome)".into()
            } else {
                "**unclaimed**".into()
            };
            let which = match g.experiments.as_slice() {
                [one] => format!("`{one}`"),
                many => format!("{}: {}", many.len(), md(&g.pattern)),
            };
            let what = match &g.alone {
                Some(k) => format!("{} (only {k} differs; its neighbours agree)", g.what),
                None => g.what.clone(),
            };
            let _ = writeln!(
                w,
                "| {} → {} | {which} | {} | {who} |",
                g.from,
                g.to,
                md(&what)
            );
        }
        if groups.len() > GROUPS_LISTED {
            let rest: usize = groups[GROUPS_LISTED..]
                .iter()
                .map(|g| g.experiments.len())
                .sum();
            let _ = writeln!(
                w,
                "\n…and {} more groups ({rest} change points).",
                groups.len() - GROUPS_LISTED
            );
        }
    }

    // Distribution.
    let _ = writeln!(w, "\n## Distribution\n");
    let _ = writeln!(
        w,
        "Chi-square test of uniformity per group (even when p ≥ 0.001), spread = busiest / idlest member, \
         sticky = every re-sent 4-tuple reached the same member.\n"
    );
    let rows = distribution.rows.iter().map(|r| {
        (
            r.experiment.as_str(),
            r.cells
                .iter()
                .map(|c| c.as_ref().map(|c| c.summary()))
                .collect(),
        )
    });
    kernel_table(w, &distribution.kernels, rows);

    let _ = writeln!(w, "\n### Lookup cost against group size\n");
    let _ = writeln!(w, "Median time per connection (TCP) or datagram (UDP) to a port shared by groups of 1 to 1024 SO_REUSEPORT sockets, measured within one boot.\n");
    let rows = distribution.cost.iter().map(|r| {
        (
            r.experiment.as_str(),
            r.cells
                .iter()
                .map(|c| c.as_ref().map(|c| c.summary()))
                .collect(),
        )
    });
    kernel_table(w, &distribution.kernels, rows);

    // Untested.
    let _ = writeln!(w, "\n## Claims no experiment can test\n");
    for row in &evaluation.rows {
        if let Check::Untested(reason) = &row.claim.check {
            let _ = writeln!(
                w,
                "- `{}` ({}): “{}” — {}",
                row.claim.id,
                row.claim.doc.file_name(),
                md(&row.claim.quote),
                md(reason)
            );
        }
    }
    out
}

/// A table with one row per experiment and one column per kernel; `None` cells show as "–".
fn kernel_table<'a>(
    w: &mut String,
    kernels: &[String],
    rows: impl Iterator<Item = (&'a str, Vec<Option<String>>)>,
) {
    let _ = write!(w, "| experiment |");
    for k in kernels {
        let _ = write!(w, " {k} |");
    }
    let _ = writeln!(w);
    let _ = write!(w, "|---|");
    for _ in kernels {
        let _ = write!(w, "---|");
    }
    let _ = writeln!(w);
    for (experiment, cells) in rows {
        let _ = write!(w, "| `{experiment}` |");
        for cell in cells {
            let _ = write!(w, " {} |", cell.as_deref().unwrap_or("–"));
        }
        let _ = writeln!(w);
    }
}
