//! `report.html`: one self-contained page — inline CSS, inline SVG, no script, nothing fetched
//! from the network. The claim × kernel matrix is a heat map whose cells carry their evidence in a
//! tooltip and whose rows open (`<details>`) onto the quote and every kernel's verdict; an
//! unavailable kernel is a grey column saying why, never passes or failures.

use std::fmt::Write;

use crate::judge::changes::{After, Changes};
use crate::judge::claims::{Check, Source};
use crate::judge::evaluate::{Evaluation, Verdict};

use super::what_changed::{self, Documents};
use super::{
    cell, escape_html as h, kernel_heading, CostCell, DistributionCell, DistributionTable,
};

const STYLE: &str = r#"
:root { --holds:#2e9d5b; --contra:#d1343a; --unstable:#e69a1c; --missing:#c9ced6; --untested:#eef0f3;
        --agree:#a8d8b9; --disagree:#f2a9ab; --unknown:#dde1e6; --ink:#1d232b; --muted:#5f6b7a; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0; background: #f7f8fa; }
header { background: #1d232b; color: #fff; padding: 22px 32px 18px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 0; color: #c3cad4; max-width: 1000px; }
main { padding: 8px 32px 48px; }
h2 { font-size: 18px; margin: 30px 0 10px; border-bottom: 1px solid #dde1e6; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 8px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 16px; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 10px 14px; flex: 1 1 200px; max-width: 320px; }
.card.unavailable { background: #eceef1; color: var(--muted); }
.card .k { font-weight: 600; }
.card .r { color: var(--muted); font-size: 12px; overflow: hidden; display: -webkit-box; -webkit-line-clamp: 3;
           -webkit-box-orient: vertical; word-break: break-word; }
.bar { display: flex; height: 8px; border-radius: 4px; overflow: hidden; margin: 8px 0 4px; background: #eceef1; }
.bar span { display: block; height: 100%; }
.nums { font-size: 12px; color: var(--muted); }
.legend { display: flex; gap: 14px; flex-wrap: wrap; font-size: 12px; margin: 8px 0 12px; color: var(--muted); }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 3px; vertical-align: -2px; margin-right: 4px; }
table { border-collapse: collapse; background: #fff; }
table.matrix { width: 100%; table-layout: fixed; }
.matrix th, .matrix td { border: 1px solid #e3e6ea; padding: 0; }
.matrix th { font-size: 12px; font-weight: 600; padding: 6px 4px; background: #fafbfc; position: sticky; top: 0; z-index: 1; }
.matrix th.claim { width: 44%; text-align: left; padding-left: 8px; }
.matrix th.unavailable { background: #eceef1; color: var(--muted); font-weight: 400; }
.matrix td.claim { padding: 3px 8px; font-size: 12.5px; }
.matrix td.claim code { font-size: 12px; }
.matrix td.claim .scope { color: var(--muted); font-size: 11px; margin-left: 6px; }
.matrix tr.doc td { background: #1d232b; color: #fff; font-weight: 600; padding: 5px 8px; font-size: 12.5px; }
.matrix td.v { text-align: center; font-size: 11px; height: 26px; color: #fff; font-weight: 600; }
td.holds { background: var(--holds); } td.contradicted { background: var(--contra); }
td.known { background: repeating-linear-gradient(135deg, var(--contra), var(--contra) 7px, #b92b31 7px, #b92b31 14px); }
td.unstable { background: var(--unstable); } td.missing { background: var(--missing); color: var(--ink) !important; }
td.untested { background: var(--untested); color: var(--muted) !important; font-weight: 400 !important; }
td.oos-agrees { background: var(--agree); color: #17492b !important; }
td.oos-disagrees { background: var(--disagree); color: #6b1417 !important; }
td.oos-unknown { background: var(--unknown); color: var(--muted) !important; }
td.unavailable { background: repeating-linear-gradient(45deg, #eceef1, #eceef1 6px, #e2e5e9 6px, #e2e5e9 12px);
                 color: var(--muted) !important; font-weight: 400 !important; }
details > summary { cursor: pointer; list-style: none; }
details > summary::-webkit-details-marker { display: none; }
details > summary::before { content: "▸ "; color: var(--muted); }
details[open] > summary::before { content: "▾ "; }
.detail { margin: 6px 0 6px 14px; font-size: 12px; color: #333; }
.detail blockquote { margin: 4px 0; padding: 4px 10px; border-left: 3px solid #c9ced6; background: #f7f8fa; font-style: italic; }
.detail ul { margin: 4px 0; padding-left: 18px; }
.detail .note { color: var(--muted); }
table.plain th, table.plain td { border: 1px solid #e3e6ea; padding: 4px 8px; font-size: 12.5px; text-align: left; vertical-align: top; }
table.plain th { background: #fafbfc; }
.dist td { text-align: center; }
.dist td.name { text-align: left; font-size: 12px; white-space: nowrap; }
.dist svg { display: block; margin: 0 auto; }
.dist .cap { font-size: 10.5px; color: var(--muted); }
.findings { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 10px; }
.finding { background: #fff; border: 1px solid #dde1e6; border-left: 4px solid var(--contra); border-radius: 6px;
           padding: 8px 12px; font-size: 12.5px; }
.finding.oos-disagrees { border-left-color: var(--disagree); }
.finding blockquote { margin: 6px 0; padding: 2px 10px; border-left: 3px solid #c9ced6; font-style: italic; }
.finding ul { margin: 4px 0 0; padding-left: 18px; }
.ok { color: var(--holds); font-weight: 600; } .bad { color: var(--contra); font-weight: 600; }
.muted { color: var(--muted); }
.timeline { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 8px 12px; }
.tl-row { display: grid; grid-template-columns: 150px 1fr 70px 230px; gap: 10px; align-items: start;
          border-bottom: 1px solid #eef0f3; padding: 5px 0; }
.tl-row:last-child { border-bottom: none; }
.tl-head { font-size: 11.5px; color: var(--muted); font-weight: 600; }
.tl-when { font-size: 12.5px; font-weight: 600; }
.tl-what { font-size: 12.5px; }
.tl-what summary { line-height: 1.35; }
.tl-axis, .tl-track { display: grid; gap: 2px; }
.tl-axis span { font-size: 10.5px; color: var(--muted); text-align: center; overflow: hidden; white-space: nowrap; }
.tl-track { height: 12px; margin: 5px 0 3px; background: #f2f4f7; border-radius: 6px; }
.tl-bar { height: 12px; border-radius: 6px; background: #3b6fd1; }
.tl-bar.unclaimed { background: var(--contra); }
.tl-bar.reverts { border-radius: 6px; }
.tl-bar.open { border-top-right-radius: 0; border-bottom-right-radius: 0; }
.tl-cells { font-size: 12.5px; text-align: right; }
.tl-docs { font-size: 12px; }
.tl-docs .unclaimed { color: var(--contra); font-weight: 600; }
.tl-docs .missing { color: var(--unstable); }
.nowrap { white-space: nowrap; }
"#;

pub fn render(
    evaluation: &Evaluation,
    changes: &Changes,
    distribution: &DistributionTable,
) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>SO_REUSEADDR / SO_REUSEPORT: documents against kernels</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        o,
        "<header><h1>SO_REUSEADDR and SO_REUSEPORT: the documents against real kernels</h1>\
         <p>{} claims from {} sources, judged on {} kernels from raw measurements. A missing measurement is never a pass; \
         an outcome that differs between repetitions is unstable; a claim for another system or version still shows whether the kernel agrees.</p>",
        evaluation.rows.len(),
        Source::all().len(),
        evaluation.kernels.len()
    );
    o.push_str("</header><main>");
    timeline(&mut o, changes);
    o.push_str("<h2>Kernels</h2>");
    kernel_cards(&mut o, evaluation);
    matrix(&mut o, evaluation);
    contradictions(&mut o, evaluation);
    unstable_section(&mut o, changes);
    distribution_section(&mut o, distribution);
    cost_section(&mut o, distribution);
    untested(&mut o, evaluation);
    o.push_str("</main></body></html>\n");
    o
}

fn kernel_cards(o: &mut String, evaluation: &Evaluation) {
    o.push_str("<div class=\"cards\">");
    for (i, k) in evaluation.kernels.iter().enumerate() {
        if let Some((what, reason)) = k.not_judged() {
            let _ = write!(
                o,
                "<div class=\"card unavailable\" title=\"{}\"><div class=\"k\">{}</div><div class=\"r\">{what}: {}</div></div>",
                h(reason),
                h(&k.kernel),
                h(reason)
            );
            continue;
        }
        let t = evaluation.tally(i);
        let total = evaluation.rows.len().max(1) as f64;
        let seg = |n: usize, colour: &str| {
            format!(
                "<span style=\"width:{:.2}%;background:var({colour})\"></span>",
                100.0 * n as f64 / total
            )
        };
        let _ = write!(
            o,
            "<div class=\"card\" style=\"color:var(--ink)\"><div class=\"k\">{}</div><div class=\"r\">{} · run {}</div><div class=\"r\">{}</div><div class=\"bar\">{}{}{}{}{}{}{}</div>\
             <div class=\"nums\"><span class=\"ok\">{} hold</span> · <span class=\"bad\">{} contradicted</span> · {} unstable · {} not measured<br>other OS/version: {} agree, {} disagree</div></div>",
            h(&k.kernel),
            h(k.release.as_deref().or(k.version.as_deref()).unwrap_or("?")),
            h(&k.run),
            h(k.measured_as.as_deref().unwrap_or("")),
            seg(t.holds, "--holds"),
            seg(t.contradicted, "--contra"),
            seg(t.unstable, "--unstable"),
            seg(t.out_of_scope_agrees, "--agree"),
            seg(t.out_of_scope_disagrees, "--disagree"),
            seg(t.not_measured, "--missing"),
            seg(t.untested + t.out_of_scope_unknown, "--untested"),
            t.holds,
            t.contradicted,
            t.unstable,
            t.not_measured,
            t.out_of_scope_agrees,
            t.out_of_scope_disagrees
        );
    }
    o.push_str("</div>");
}

/// The claims the measurements contradict where they apply, and those for other systems or
/// versions that Linux disagrees with: quote, reading, and the measured fact per kernel.
fn contradictions(o: &mut String, evaluation: &Evaluation) {
    for (title, class) in [
        ("Contradicted where the claim applies", "contradicted"),
        (
            "Claimed for another OS or version: Linux disagrees",
            "oos-disagrees",
        ),
    ] {
        let rows: Vec<_> = evaluation
            .rows
            .iter()
            .filter(|r| r.verdicts.iter().any(|v| cell(v).1 == class))
            .filter(|r| {
                class == "contradicted"
                    || !r
                        .verdicts
                        .iter()
                        .any(|v| matches!(v, Verdict::Contradicted { .. }))
            })
            .collect();
        let _ = write!(
            o,
            "<h2>{title} ({})</h2><div class=\"findings\">",
            rows.len()
        );
        for row in rows {
            let c = &row.claim;
            let _ = write!(
                o,
                "<div class=\"finding {class}\"><div><code>{}</code> <span class=\"muted\">{} · {}</span></div><blockquote>{}</blockquote>",
                h(&c.id),
                h(c.doc.file_name()),
                h(&c.scope.to_string()),
                h(&c.quote)
            );
            if let Some(known) = &c.expected_difference {
                let _ = write!(
                    o,
                    "<div class=\"muted\">Known difference ({}): {}</div>",
                    h(&known.applies_to().replace('`', "")),
                    h(&known.why)
                );
            }
            let mut seen: Vec<(String, Vec<&str>)> = Vec::new();
            for (k, v) in evaluation.kernels.iter().zip(&row.verdicts) {
                if cell(v).1 != class {
                    continue;
                }
                let text = v.summary();
                match seen.iter_mut().find(|(t, _)| *t == text) {
                    Some((_, ks)) => ks.push(&k.kernel),
                    None => seen.push((text, vec![&k.kernel])),
                }
            }
            o.push_str("<ul>");
            for (text, kernels) in seen {
                let _ = write!(
                    o,
                    "<li><b>{}</b>: {}</li>",
                    h(&kernels.join(", ")),
                    h(&text)
                );
            }
            o.push_str("</ul></div>");
        }
        o.push_str("</div>");
    }
}

fn short(v: &Verdict) -> &'static str {
    match cell(v).1 {
        "holds" => "✓ holds",
        "contradicted" => "✗ contradicted",
        "missing" => "not measured",
        "unstable" => "~ unstable",
        "untested" => "untested",
        "oos-agrees" => "↔ agrees",
        "oos-disagrees" => "≠ disagrees",
        _ => "?",
    }
}

fn matrix(o: &mut String, evaluation: &Evaluation) {
    o.push_str("<h2>Claim × kernel matrix</h2><div class=\"legend\">");
    for (class, label) in [
        ("--holds", "holds"),
        (
            "--contra",
            "contradicted (✗ known: the claims file records it as a known difference)",
        ),
        ("--unstable", "unstable (differs between repetitions)"),
        ("--missing", "not measured"),
        (
            "--agree",
            "claimed for another OS/version: this kernel agrees",
        ),
        ("--disagree", "…: this kernel disagrees"),
        ("--untested", "no experiment can test it"),
    ] {
        let _ = write!(
            o,
            "<span><i style=\"background:var({class})\"></i>{label}</span>"
        );
    }
    o.push_str("</div><table class=\"matrix\"><thead><tr><th class=\"claim\">claim (open a row for the quote and the evidence)</th>");
    for k in &evaluation.kernels {
        match k.not_judged() {
            Some((what, reason)) => {
                let _ = write!(
                    o,
                    "<th class=\"unavailable\" title=\"{}\">{}<br>{what}</th>",
                    h(reason),
                    h(&k.kernel)
                );
            }
            None => {
                let _ = write!(
                    o,
                    "<th title=\"{}\">{}</th>",
                    h(&kernel_heading(k)),
                    h(&k.kernel)
                );
            }
        }
    }
    o.push_str("</tr></thead><tbody>");
    let columns = evaluation.kernels.len() + 1;
    for source in Source::all() {
        let _ = write!(
            o,
            "<tr class=\"doc\"><td colspan=\"{columns}\">{}</td></tr>",
            h(&source.label().replace('`', ""))
        );
        for row in evaluation
            .rows
            .iter()
            .filter(|r| r.claim.doc.source() == source)
        {
            let c = &row.claim;
            let _ = write!(
                o,
                "<tr><td class=\"claim\"><details><summary><code>{}</code><span class=\"scope\">{}</span></summary><div class=\"detail\"><blockquote>{}</blockquote>",
                h(&c.id),
                h(&c.scope.to_string()),
                h(&c.quote)
            );
            if let Some(note) = &c.note {
                let _ = write!(o, "<div class=\"note\">Reading: {}</div>", h(note));
            }
            if let Some(known) = &c.expected_difference {
                let _ = write!(
                    o,
                    "<div class=\"note\">Known difference ({}): {}</div>",
                    h(&known.applies_to().replace('`', "")),
                    h(&known.why)
                );
            }
            match &c.check {
                Check::Untested(reason) => {
                    let _ = write!(o, "<div class=\"note\">Untested: {}</div>", h(reason));
                }
                Check::Measured(tests) => {
                    o.push_str("<ul>");
                    for t in tests {
                        let _ = write!(
                            o,
                            "<li>{} = {} on {} experiment(s): <code>{}</code></li>",
                            h(&t.fact),
                            h(&t.expect.to_string()),
                            t.resolved.len(),
                            h(&t.experiments.join(", "))
                        );
                    }
                    o.push_str("</ul><ul>");
                    for (k, v) in evaluation.kernels.iter().zip(&row.verdicts) {
                        let text = match k.not_judged() {
                            Some((what, reason)) => format!("{what}: {reason}"),
                            None => v.summary(),
                        };
                        let _ = write!(o, "<li><b>{}</b>: {}</li>", h(&k.kernel), h(&text));
                    }
                    o.push_str("</ul>");
                }
            }
            o.push_str("</div></details></td>");
            for (k, v) in evaluation.kernels.iter().zip(&row.verdicts) {
                match (k.not_judged(), v) {
                    (Some((what, reason)), v) if !matches!(v, Verdict::Untested { .. }) => {
                        let _ = write!(
                            o,
                            "<td class=\"v unavailable\" title=\"{what}: {}\">{what}</td>",
                            h(reason)
                        );
                    }
                    (None, v) if v.is_known_contradiction() => {
                        let _ = write!(
                            o,
                            "<td class=\"v contradicted known\" title=\"known difference: {}. {}\">✗ known</td>",
                            h(c.expected_difference.as_ref().map_or("", |w| w.why.as_str())),
                            h(&v.summary())
                        );
                    }
                    _ => {
                        let _ = write!(
                            o,
                            "<td class=\"v {}\" title=\"{}\">{}</td>",
                            cell(v).1,
                            h(&v.summary()),
                            short(v)
                        );
                    }
                }
            }
            o.push_str("</tr>");
        }
    }
    o.push_str("</tbody></table>");
}

/// "What changed" as a timeline: versions across, each behaviour change a bar over its window,
/// the cells behind a click.
fn timeline(o: &mut String, changes: &Changes) {
    let labels: Vec<&str> = changes.kernels.iter().map(|k| k.label.as_str()).collect();
    let _ = write!(
        o,
        "<h2 id=\"what-changed\">What changed, {} → {}</h2>",
        h(labels.first().copied().unwrap_or("–")),
        h(labels.last().copied().unwrap_or("–"))
    );
    if !changes.unmeasured.is_empty() {
        let _ = write!(o, "<p class=\"muted\">Not measured: ");
        for (k, why) in &changes.unmeasured {
            let _ = write!(o, "{} ({}). ", h(k), h(why));
        }
        o.push_str("</p>");
    }
    let rows = what_changed::rows(changes);
    if rows.is_empty() {
        o.push_str("<p>Nothing changed between the kernels measured.</p>");
        return;
    }
    let columns = format!(
        "grid-template-columns: repeat({}, 1fr)",
        labels.len().max(1)
    );
    let _ = write!(
        o,
        "<div class=\"timeline\"><div class=\"tl-row tl-head\"><div>when</div><div><div class=\"tl-axis\" style=\"{columns}\">{}</div></div><div style=\"text-align:right\">cells</div><div>documents</div></div>",
        labels
            .iter()
            .map(|l| format!("<span title=\"{0}\">{0}</span>", h(l)))
            .collect::<String>()
    );
    for row in &rows {
        let unclaimed = matches!(row.documents, Documents::Unclaimed);
        let bar = match row.span {
            Some((start, end, then)) => format!(
                "<div class=\"tl-track\" style=\"{columns}\"><div class=\"tl-bar{}{}\" style=\"grid-column: {} / {}\"></div></div>",
                if unclaimed { " unclaimed" } else { "" },
                match then {
                    After::Open => " open",
                    After::Reverts => " reverts",
                    After::ChangesAgain => "",
                },
                start + 1,
                end + 2
            ),
            None => format!("<div class=\"tl-track\" style=\"{columns}\"></div>"),
        };
        let detail = match row.change.map(|i| &changes.changes[i]) {
            Some(c) if row.span.is_some() => {
                let mut d = format!("<div class=\"detail\"><p>{}</p>", h(&row.what_in_full));
                cell_list(&mut d, "", &c.cells);
                for q in &c.consequences {
                    cell_list(
                        &mut d,
                        &format!(
                            "With it, {} cells: {}",
                            crate::judge::changes::family_words(&q.family),
                            q.description.text
                        ),
                        &q.cells,
                    );
                }
                d.push_str("</div>");
                d
            }
            _ => String::new(),
        };
        let documents = row.documents.text(
            |c| format!("<code>{}</code>", h(c)),
            |t| format!("<span class=\"unclaimed\">{}</span>", h(t)),
        );
        let documents = match row.documents {
            Documents::ClaimedNotObserved { .. } => {
                format!("<span class=\"missing\">{documents}</span>")
            }
            _ => documents,
        };
        let _ = write!(
            o,
            "<div class=\"tl-row\"><div class=\"tl-when\">{}</div><div class=\"tl-what\">{bar}<details><summary>{}</summary>{detail}</details></div><div class=\"tl-cells\">{}</div><div class=\"tl-docs\">{documents}</div></div>",
            h(&row.when),
            h(&row.what),
            if row.cells == 0 { "–".to_owned() } else { row.cells.to_string() },
        );
    }
    o.push_str("</div>");
    let unobservable: Vec<String> = changes
        .claimed_unobservable()
        .map(|c| format!("<code>{}</code> at {}", h(&c.claim), h(&c.at.to_string())))
        .collect();
    if !unobservable.is_empty() {
        let _ = write!(
            o,
            "<p class=\"muted\">Not observable with these kernels ({} claimed change points, no measured pair of kernels brackets them): {}.</p>",
            unobservable.len(),
            unobservable.join(", ")
        );
    }
}

fn cell_list(o: &mut String, title: &str, cells: &[String]) {
    let _ = write!(
        o,
        "<p class=\"muted\">{}{} cells:</p><p>{}</p>",
        if title.is_empty() {
            String::new()
        } else {
            format!("{} — ", h(title))
        },
        cells.len(),
        cells
            .iter()
            .map(|c| format!("<code>{}</code>", h(c)))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// Cells whose repetitions disagree, grouped like the changes.
fn unstable_section(o: &mut String, changes: &Changes) {
    o.push_str("<h2>Unstable behaviour</h2>");
    if changes.unstable.is_empty() {
        o.push_str("<p>No cell's repetitions disagreed on any kernel.</p>");
        return;
    }
    o.push_str("<p>Cells whose repetitions disagree on a kernel: a property of that kernel, never a change. Values are counted over every repetition of every cell on those kernels.</p><table class=\"plain\"><tr><th>unstable on</th><th>cells (open for the list)</th><th>what disagreed</th><th>values seen</th></tr>");
    for u in &changes.unstable {
        let _ = write!(
            o,
            "<tr><td class=\"nowrap\">{}</td><td><details><summary>{} {}: {}</summary><div class=\"detail\">{}</div></details></td><td>{}</td><td>{}</td></tr>",
            h(&u.on_text()),
            u.cells.len(),
            h(crate::judge::changes::family_words(&u.family)),
            h(&u.description.short()),
            u.cells.iter().map(|c| format!("<code>{}</code>", h(c))).collect::<Vec<_>>().join(" "),
            h(&u.facts.iter().map(|f| crate::judge::changes::fact_words(f)).collect::<Vec<_>>().join(", ")),
            h(&u.values)
        );
    }
    o.push_str("</table>");
}

/// A bar chart of per-member counts with the even share as a dashed line.
fn bars(c: &DistributionCell) -> String {
    let (width, height) = (150.0, 44.0);
    let n = c.counts.len().max(1) as f64;
    let max = c.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let total: u64 = c.counts.iter().sum();
    let even = total as f64 / n;
    let top = max.max(even) * 1.1;
    let gap = if n > 8.0 { 1.0 } else { 2.0 };
    let bar_w = width / n - gap;
    let colour = if c.good() { "#2e9d5b" } else { "#d1343a" };
    let mut s = format!("<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"counts {:?}\">", c.counts);
    for (i, &count) in c.counts.iter().enumerate() {
        let bh = (count as f64 / top) * height;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" rx=\"1\"><title>member {i}: {count}</title></rect>",
            i as f64 * (bar_w + gap),
            height - bh,
            bar_w.max(1.0),
            bh
        );
    }
    let y = height - (even / top) * height;
    let _ = write!(s, "<line x1=\"0\" x2=\"{width}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#1d232b\" stroke-dasharray=\"3 2\" stroke-width=\"1\"/></svg>");
    s
}

fn distribution_section(o: &mut String, distribution: &DistributionTable) {
    o.push_str(
        "<h2>Distribution</h2><p>Flows received per member of each SO_REUSEPORT group (bars; the dashed line is the even share). \
         Green: the chi-square test cannot reject uniformity at p ≥ 0.001 (steering cells: every flow reached the member the program or CPU named); red: otherwise. Member order is bind order; \
         which member gets a flow depends on a per-boot hash secret, so only the statistics compare across kernels.</p>\
         <table class=\"plain dist\"><tr><th>experiment</th>",
    );
    for k in &distribution.kernels {
        let _ = write!(o, "<th>{}</th>", h(k));
    }
    o.push_str("</tr>");
    for row in &distribution.rows {
        let _ = write!(
            o,
            "<tr><td class=\"name\" title=\"{}\"><code>{}</code></td>",
            h(&row.description),
            h(&row.experiment)
        );
        chart_cells(o, &row.cells, |c| (bars(c), c.summary()));
        o.push_str("</tr>");
    }
    o.push_str("</table>");
}

/// One `<td>` per kernel: the chart and its one-line summary, or a dash where nothing was measured.
fn chart_cells<T>(o: &mut String, cells: &[Option<T>], render: impl Fn(&T) -> (String, String)) {
    for cell in cells {
        match cell {
            Some(c) => {
                let (chart, summary) = render(c);
                let _ = write!(
                    o,
                    "<td>{chart}<div class=\"cap\">{}</div></td>",
                    h(&summary)
                );
            }
            None => o.push_str("<td class=\"muted\">–</td>"),
        }
    }
}

/// Time per flow against group size, one bar per size, scaled to the largest.
fn cost_bars(c: &CostCell) -> String {
    let (width, height) = (150.0, 44.0);
    let n = c.ns_per_flow.len().max(1) as f64;
    let top = c.ns_per_flow.iter().copied().fold(0.0, f64::max).max(1.0) * 1.1;
    let bar_w = width / n - 6.0;
    let colour = match c.growth {
        Some(g) if g <= crate::judge::signature::FLAT_RATIO => "#2e9d5b",
        Some(g) if g >= crate::judge::signature::GROWS_RATIO => "#d1343a",
        _ => "#e69a1c",
    };
    let mut s = format!(
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">"
    );
    for (i, (size, ns)) in c.sizes.iter().zip(&c.ns_per_flow).enumerate() {
        let bh = ns / top * (height - 10.0);
        let x = i as f64 * (bar_w + 6.0);
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{bh:.1}\" fill=\"{colour}\" rx=\"1\"><title>{size} sockets: {:.0} ns</title></rect>\
             <text x=\"{:.1}\" y=\"{height}\" font-size=\"8\" text-anchor=\"middle\" fill=\"#5f6b7a\">{size}</text>",
            height - 10.0 - bh,
            ns,
            x + bar_w / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

fn cost_section(o: &mut String, distribution: &DistributionTable) {
    o.push_str(
        "<h3>Lookup cost against group size</h3><p>Median time per connection (TCP) or datagram (UDP) to a port shared by \
         1, 16, 256 and 1024 SO_REUSEPORT sockets, measured within one boot (bars by group size). Green: flat (largest at most \
         twice a group of one).</p><table class=\"plain dist\"><tr><th>experiment</th>",
    );
    for k in &distribution.kernels {
        let _ = write!(o, "<th>{}</th>", h(k));
    }
    o.push_str("</tr>");
    for row in &distribution.cost {
        let _ = write!(
            o,
            "<tr><td class=\"name\"><code>{}</code></td>",
            h(&row.experiment)
        );
        chart_cells(o, &row.cells, |c| (cost_bars(c), c.summary()));
        o.push_str("</tr>");
    }
    o.push_str("</table>");
}

fn untested(o: &mut String, evaluation: &Evaluation) {
    o.push_str("<h2>Claims no experiment can test</h2><table class=\"plain\"><tr><th>claim</th><th>quote</th><th>why</th></tr>");
    for row in &evaluation.rows {
        if let Check::Untested(reason) = &row.claim.check {
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td><i>{}</i></td><td>{}</td></tr>",
                h(&row.claim.id),
                h(&row.claim.quote),
                h(reason)
            );
        }
    }
    o.push_str("</table>");
}
