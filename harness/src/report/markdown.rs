//! `report.md`: the report as GitHub renders it — what changed between the kernels (one screen),
//! the kernels, the summary, the claim × kernel matrix, the contradictions with their measured
//! facts, unstable behaviour, distribution, the untested claims, and an appendix with the cells
//! behind every change.

use std::fmt::Write;

use crate::judge::changes::Changes;
use crate::judge::claims::{Check, Source};
use crate::judge::evaluate::{Evaluation, Verdict};

use super::what_changed::{self, Documents};
use super::{cell, kernel_heading, DistributionTable};

/// Cell ids listed per behaviour change in the appendix; the rest are in report.json.
const CELLS_LISTED: usize = 40;

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
    changes: &Changes,
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
        "Every claim of the four documents and of the Linux man pages, judged on every kernel from raw measurements. \
         A missing measurement is never a pass; an outcome that differs between repetitions is *unstable*. \
         Claims made for BSD, Windows, Solaris or another Linux version range are *out of scope* on a kernel, \
         and still say whether that kernel agrees.\n"
    );

    what_changed_section(w, changes);

    // Kernels.
    let _ = writeln!(w, "## Kernels\n");
    let _ = writeln!(w, "| kernel | version | measured release | measured as | run | holds | contradicted | unstable | not measured | other scope: agrees / disagrees |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for (i, k) in evaluation.kernels.iter().enumerate() {
        let t = evaluation.tally(i);
        let run = match k.not_judged() {
            Some((what, reason)) => format!("**{what}**: {}", md(reason)),
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
        "| source | claims | measured | untested | holds wherever it applies and was measured | contradicted where claimed | claimed for another OS/version: Linux disagrees |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for source in Source::all() {
        let rows: Vec<_> = evaluation
            .rows
            .iter()
            .filter(|r| r.claim.doc.source() == source)
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
            "| {} | {} | {measured} | {} | {holds} | {} | {} |",
            source.label(),
            rows.len(),
            rows.len() - measured,
            any("contradicted"),
            any("oos-disagrees")
        );
    }
    // How much of each source holds on each kernel.
    let _ = writeln!(
        w,
        "\nPer kernel, the claims that hold of those judged there (in scope and measured):\n"
    );
    let _ = write!(w, "| source |");
    for k in &evaluation.kernels {
        let _ = write!(w, " {} |", k.kernel);
    }
    let _ = write!(w, "\n|---|");
    for _ in &evaluation.kernels {
        let _ = write!(w, "---|");
    }
    let _ = writeln!(w);
    for source in Source::all() {
        let _ = write!(w, "| {} |", source.label());
        for i in 0..evaluation.kernels.len() {
            let (holds, judged) = holds_of(evaluation, source, i);
            let _ = write!(w, " {holds}/{judged} |");
        }
        let _ = writeln!(w);
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
         with the measured fact. Between the kernels, **{} behaviour changes no document claims** (see *What changed*).\n",
        contradicted.len(),
        contradicted
            .iter()
            .filter(|r| {
                r.verdicts
                    .iter()
                    .all(|v| !matches!(v, Verdict::Contradicted { .. }) || v.is_known_contradiction())
            })
            .count(),
        disagrees.len(),
        changes.changes.iter().filter(|c| c.claimed_by.is_empty()).count()
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
                _ if v.is_known_contradiction() => {
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
                let _ = writeln!(
                    w,
                    "  - *known difference* ({}): {}",
                    known.applies_to(),
                    md(&known.why)
                );
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

    unstable_section(w, changes);

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
    appendix(w, changes);
    out
}

/// "What changed": one row per behaviour change, for a reader who has one screen.
fn what_changed_section(w: &mut String, changes: &Changes) {
    let first = changes.kernels.first().map_or("–", |k| k.label.as_str());
    let last = changes.kernels.last().map_or("–", |k| k.label.as_str());
    let _ = writeln!(w, "## What changed, {first} → {last}\n");
    let labels: Vec<&str> = changes.kernels.iter().map(|k| k.label.as_str()).collect();
    let _ = writeln!(
        w,
        "Measured, oldest first: {}.{}\n",
        labels.join(", "),
        if changes.unmeasured.is_empty() {
            String::new()
        } else {
            format!(
                " Not measured: {}.",
                changes
                    .unmeasured
                    .iter()
                    .map(|(k, why)| format!("{k} ({})", md(why)))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    );
    let rows = what_changed::rows(changes);
    if rows.is_empty() {
        let _ = writeln!(w, "Nothing changed between the kernels measured.\n");
        return;
    }
    let _ = writeln!(w, "| when | what changed | cells | documents |");
    let _ = writeln!(w, "|---|---|---|---|");
    for row in &rows {
        let cells = if row.cells == 0 {
            "–".to_owned()
        } else {
            row.cells.to_string()
        };
        let documents = match &row.documents {
            Documents::ClaimedNotObserved { .. } => format!(
                "*{}*",
                row.documents
                    .text(|c| format!("`{c}`"), |t| format!("**{t}**"))
            ),
            other => other.text(|c| format!("`{c}`"), |t| format!("**{t}**")),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {cells} | {documents} |",
            md(&row.when),
            md(&row.what)
        );
    }
    let unobservable: Vec<String> = changes
        .claimed_unobservable()
        .map(|c| format!("`{}` at {}", c.claim, c.at))
        .collect();
    if !unobservable.is_empty() {
        let _ = writeln!(
            w,
            "\nNot observable with these kernels ({} claimed change points, no measured pair of kernels brackets them): {}.",
            unobservable.len(),
            unobservable.join(", ")
        );
    }
    let unstable: usize = changes.unstable.iter().map(|u| u.cells.len()).sum();
    if unstable > 0 {
        let _ = writeln!(
            w,
            "\nNever a change: {unstable} cells whose repetitions disagree on some kernel (see *Unstable behaviour*). \
             Every cell behind each row is in the appendix and in `report.json`.\n"
        );
    } else {
        let _ = writeln!(
            w,
            "\nEvery cell behind each row is in the appendix and in `report.json`.\n"
        );
    }
}

/// Cells whose repetitions disagree, grouped like the changes.
fn unstable_section(w: &mut String, changes: &Changes) {
    let _ = writeln!(w, "## Unstable behaviour\n");
    if changes.unstable.is_empty() {
        let _ = writeln!(w, "No cell's repetitions disagreed on any kernel.\n");
        return;
    }
    let _ = writeln!(
        w,
        "Cells whose repetitions disagree on a kernel: a property of that kernel, never a change. \
         Values are counted over every repetition of every cell on those kernels.\n"
    );
    let _ = writeln!(
        w,
        "| unstable on | cells | which | what disagreed | values seen |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|");
    for u in &changes.unstable {
        let _ = writeln!(
            w,
            "| {} | {} | {}: {} | {} | {} |",
            u.on_text(),
            u.cells.len(),
            crate::judge::changes::family_words(&u.family),
            md(&u.description.short()),
            u.facts
                .iter()
                .map(|f| crate::judge::changes::fact_words(f))
                .collect::<Vec<_>>()
                .join(", "),
            md(&u.values)
        );
    }
    let _ = writeln!(w);
}

/// Every behaviour change with its cells named in full, and the first cell ids.
fn appendix(w: &mut String, changes: &Changes) {
    let _ = writeln!(w, "\n## Appendix: the cells behind each change\n");
    for (i, c) in changes.changes.iter().enumerate() {
        let _ = writeln!(
            w,
            "### {}. {} — {}\n",
            i + 1,
            md(&c.window_text),
            md(&c.moves_text)
        );
        let _ = writeln!(w, "{}\n", md(&c.headline()));
        list_cells(w, &c.cells);
        for q in &c.consequences {
            let _ = writeln!(
                w,
                "With it, {} {} cells: {}\n",
                q.cells.len(),
                crate::judge::changes::family_words(&q.family),
                md(&q.description.text)
            );
            list_cells(w, &q.cells);
        }
    }
}

fn list_cells(w: &mut String, cells: &[String]) {
    let shown: Vec<String> = cells
        .iter()
        .take(CELLS_LISTED)
        .map(|c| format!("`{c}`"))
        .collect();
    let more = cells.len().saturating_sub(CELLS_LISTED);
    let _ = writeln!(
        w,
        "<details><summary>{} cells</summary>\n\n{}{}\n\n</details>\n",
        cells.len(),
        shown.join(", "),
        if more > 0 {
            format!(", and {more} more (report.json)")
        } else {
            String::new()
        }
    );
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

/// Of the claims of `source` judged on kernel `i` (holds, contradicted or unstable there): how
/// many hold, and how many were judged.
pub fn holds_of(evaluation: &Evaluation, source: Source, i: usize) -> (usize, usize) {
    let mut holds = 0;
    let mut judged = 0;
    for row in evaluation
        .rows
        .iter()
        .filter(|r| r.claim.doc.source() == source)
    {
        match &row.verdicts[i] {
            Verdict::Holds { .. } => {
                holds += 1;
                judged += 1;
            }
            Verdict::Contradicted { .. } | Verdict::Unstable { .. } => judged += 1,
            _ => {}
        }
    }
    (holds, judged)
}
