//! `harness diff OLD NEW` and `harness run --baseline`: what changed between two result sets, in
//! the words of the change model — behaviour changes per kernel, each the cells where the same
//! facts moved the same way, named by the catalogue dimensions that pick them out (`describe`),
//! with how many cells — then every changed cell, one grep-friendly line each. The nightly
//! regression view: a real regression is one line at the top, not one among thousands.
//!
//! Outcomes are compared through [`signature::signature`], so distribution facts are compared as
//! statistics (even or not, sticky or not), never as raw counts or member indexes, which change
//! with every boot's hash secret.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::judge::changes::family_words;
use crate::judge::describe::{describe, Description};
use crate::judge::signature::{self, AspectChange, Signature};
use crate::results::KernelResult;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The experiment was measured in both runs and behaves differently.
    Changed { changes: Vec<AspectChange> },
    /// Measured only in the new run.
    Appeared,
    /// Measured only in the old run.
    Disappeared,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentChange {
    pub kernel: String,
    pub experiment: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunChange {
    pub kernel: String,
    pub before: String,
    pub after: String,
}

/// Cells of one kernel and family whose facts moved the same way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BehaviourDiff {
    pub kernel: String,
    pub family: String,
    /// What moved; empty for cells newly measured or no longer measured (`what` says which).
    pub moves: Vec<AspectChange>,
    /// "B's bind: EADDRINUSE → ok", "newly measured", "no longer measured".
    pub what: String,
    pub description: Description,
    pub cells: Vec<String>,
}

impl BehaviourDiff {
    pub fn headline(&self) -> String {
        format!(
            "{}: {}: {}: {} ({} cell{})",
            self.kernel,
            family_words(&self.family),
            self.description.short(),
            self.what,
            self.cells.len(),
            if self.cells.len() == 1 { "" } else { "s" }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Diff {
    /// When the two sets share no kernel id and hold one kernel each, those two are compared
    /// (`old id`, `new id`), as in `harness diff results-4.4/ results-4.6/`.
    pub paired: Option<(String, String)>,
    /// Kernels only in the new set.
    pub kernels_added: Vec<String>,
    /// Kernels only in the old set.
    pub kernels_removed: Vec<String>,
    /// Kernels whose run ended differently (`complete` before, `timeout` now).
    pub runs: Vec<RunChange>,
    /// Kernels whose measured release changed (a new package build of the same series).
    pub releases: Vec<RunChange>,
    pub experiments: Vec<ExperimentChange>,
    /// The experiments' changes grouped into behaviour changes, largest first.
    pub behaviour: Vec<BehaviourDiff>,
}

impl Diff {
    /// No changed outcome and no changed run: nothing for a nightly run to report.
    pub fn is_empty(&self) -> bool {
        self.kernels_added.is_empty()
            && self.kernels_removed.is_empty()
            && self.runs.is_empty()
            && self.experiments.is_empty()
    }
}

/// Compares two result sets kernel by kernel (matched by kernel id; two sets of one kernel each
/// with different ids are compared with each other).
pub fn diff(old: &[KernelResult], new: &[KernelResult]) -> Diff {
    let paired = match (old, new) {
        ([a], [b]) if a.kernel != b.kernel => Some((a.kernel.clone(), b.kernel.clone())),
        _ => None,
    };
    let renamed: Vec<KernelResult>;
    let new = match &paired {
        Some((old_id, _)) => {
            let mut b = new[0].clone();
            b.kernel = old_id.clone();
            renamed = vec![b];
            &renamed[..]
        }
        None => new,
    };
    let old_by: BTreeMap<&str, &KernelResult> =
        old.iter().map(|k| (k.kernel.as_str(), k)).collect();
    let new_by: BTreeMap<&str, &KernelResult> =
        new.iter().map(|k| (k.kernel.as_str(), k)).collect();
    let mut d = Diff {
        paired: paired.clone(),
        kernels_added: new_by
            .keys()
            .filter(|k| !old_by.contains_key(*k))
            .map(|k| k.to_string())
            .collect(),
        kernels_removed: old_by
            .keys()
            .filter(|k| !new_by.contains_key(*k))
            .map(|k| k.to_string())
            .collect(),
        ..Diff::default()
    };
    // Catalogue order reads better than alphabetical order in a report.
    let order: BTreeMap<String, usize> = wire::catalogue()
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id(), i))
        .collect();
    for (kernel, before) in &old_by {
        let Some(after) = new_by.get(kernel) else {
            continue;
        };
        if before.run.label() != after.run.label() {
            d.runs.push(RunChange {
                kernel: kernel.to_string(),
                before: before.run.label().into(),
                after: after.run.label().into(),
            });
        }
        if before.release() != after.release() {
            d.releases.push(RunChange {
                kernel: kernel.to_string(),
                before: before.release().unwrap_or("none").into(),
                after: after.release().unwrap_or("none").into(),
            });
        }
        // A kernel whose environment broke recorded nothing to compare; the run change says so.
        if before.not_judgeable().is_some() || after.not_judgeable().is_some() {
            continue;
        }
        let sig_before: BTreeMap<&str, Signature> = before
            .records
            .iter()
            .map(|r| (r.id.as_str(), signature::signature(r)))
            .collect();
        let sig_after: BTreeMap<&str, Signature> = after
            .records
            .iter()
            .map(|r| (r.id.as_str(), signature::signature(r)))
            .collect();
        let ids: BTreeSet<&str> = sig_before.keys().chain(sig_after.keys()).copied().collect();
        let mut ids: Vec<&str> = ids.into_iter().collect();
        ids.sort_by_key(|id| {
            (
                order.get(*id).copied().unwrap_or(usize::MAX),
                id.to_string(),
            )
        });
        for id in ids {
            let change = match (sig_before.get(id), sig_after.get(id)) {
                (Some(b), Some(a)) => {
                    let changes = b.changes_to(a);
                    if changes.is_empty() {
                        continue;
                    }
                    Change::Changed { changes }
                }
                (None, Some(_)) => Change::Appeared,
                (Some(_), None) => Change::Disappeared,
                (None, None) => continue,
            };
            d.experiments.push(ExperimentChange {
                kernel: kernel.to_string(),
                experiment: id.to_string(),
                change,
            });
        }
        let comparable: BTreeSet<String> = sig_before
            .keys()
            .filter(|id| sig_after.contains_key(*id))
            .map(|id| id.to_string())
            .collect();
        d.behaviour
            .extend(group(kernel, &d.experiments, &comparable));
    }
    if let Some((_, new_id)) = &paired {
        // Say the new kernel's own id where the pairing put the old one's.
        for b in &mut d.behaviour {
            b.kernel = format!("{} → {new_id}", b.kernel);
        }
    }
    d.behaviour.sort_by(|a, b| {
        b.cells
            .len()
            .cmp(&a.cells.len())
            .then(a.kernel.cmp(&b.kernel))
    });
    d
}

fn unstable_as_such(value: &str) -> String {
    if value.starts_with("unstable(") {
        "unstable".to_owned()
    } else {
        value.to_owned()
    }
}

/// The changed experiments of `kernel` grouped by family and by what moved, each group described
/// among the cells of its family measured in both sets.
fn group(
    kernel: &str,
    changes: &[ExperimentChange],
    comparable: &BTreeSet<String>,
) -> Vec<BehaviourDiff> {
    let mut groups: BTreeMap<(String, Vec<AspectChange>, String), Vec<String>> = BTreeMap::new();
    for e in changes.iter().filter(|e| e.kernel == kernel) {
        let family = e
            .experiment
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let (moves, what) = match &e.change {
            Change::Changed { changes } => {
                // How often each value came up differs from cell to cell; that the cell is
                // unstable is the behaviour (the counts are in the cell lines).
                let moves: Vec<AspectChange> = changes
                    .iter()
                    .map(|c| AspectChange {
                        aspect: c.aspect.clone(),
                        before: unstable_as_such(&c.before),
                        after: unstable_as_such(&c.after),
                    })
                    .collect();
                let what = crate::judge::changes::moves_text(&moves);
                (moves, what)
            }
            Change::Appeared => (Vec::new(), "newly measured".to_owned()),
            Change::Disappeared => (Vec::new(), "no longer measured".to_owned()),
        };
        groups
            .entry((family, moves, what))
            .or_default()
            .push(e.experiment.clone());
    }
    let catalogue = wire::catalogue();
    groups
        .into_iter()
        .map(|((family, moves, what), cells)| {
            let universe: Vec<&wire::Experiment> = catalogue
                .iter()
                .filter(|e| e.family().token() == family)
                .filter(|e| moves.is_empty() || comparable.contains(&e.id()))
                .collect();
            let chosen: BTreeSet<String> = cells.iter().cloned().collect();
            BehaviourDiff {
                kernel: kernel.to_owned(),
                description: describe(&universe, &chosen),
                family,
                moves,
                what,
                cells,
            }
        })
        .collect()
}

impl fmt::Display for Diff {
    /// One line per change, `kernel :: experiment: aspect before -> after`, grep-friendly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((old, new)) = &self.paired {
            writeln!(f, "comparing {old} (old) with {new} (new)")?;
        }
        if self.is_empty() {
            return writeln!(f, "no changed outcome");
        }
        for k in &self.kernels_added {
            writeln!(f, "{k}: kernel added")?;
        }
        for k in &self.kernels_removed {
            writeln!(f, "{k}: kernel removed")?;
        }
        for r in &self.runs {
            writeln!(f, "{}: run {} -> {}", r.kernel, r.before, r.after)?;
        }
        for r in &self.releases {
            writeln!(f, "{}: release {} -> {}", r.kernel, r.before, r.after)?;
        }
        if !self.behaviour.is_empty() {
            writeln!(f, "\nBehaviour changes ({}):", self.behaviour.len())?;
            for b in &self.behaviour {
                writeln!(f, "  {}", b.headline())?;
            }
            writeln!(f, "\nCells:")?;
        }
        for e in &self.experiments {
            match &e.change {
                Change::Appeared => {
                    writeln!(f, "{} :: {}: newly measured", e.kernel, e.experiment)?
                }
                Change::Disappeared => {
                    writeln!(f, "{} :: {}: no longer measured", e.kernel, e.experiment)?
                }
                Change::Changed { changes } => {
                    for c in changes {
                        writeln!(
                            f,
                            "{} :: {}: {} {} -> {}",
                            e.kernel, e.experiment, c.aspect, c.before, c.after
                        )?;
                    }
                }
            }
        }
        let changed = self.experiments.len();
        writeln!(f, "{changed} experiment(s) changed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::evaluate::fixtures;

    #[test]
    fn a_run_compared_with_itself_has_no_change() {
        let results = fixtures::results();
        let d = diff(&results, &results);
        assert!(d.is_empty(), "{d}");
        assert_eq!(d.to_string(), "no changed outcome\n");
    }

    /// A kernel upgrade seen as a nightly diff: the results of one recorded kernel stand for the
    /// old run and those of the next for the new run of the same kernel id. Every reported change
    /// is real (it is also a cell change of the change model), and distribution cells never differ
    /// by raw counts alone.
    #[test]
    fn an_upgrade_shows_as_changed_outcomes_by_kernel_and_experiment() {
        let results = fixtures::results();
        let measured: Vec<&KernelResult> = crate::judge::evaluate::ordered(&results)
            .into_iter()
            .filter(|k| !k.records.is_empty())
            .collect();
        let removed = {
            let mut fewer = measured[0].clone();
            let gone = fewer.records.pop().expect("records").id;
            let d = diff(&[measured[0].clone()], &[fewer]);
            assert_eq!(d.experiments.len(), 1);
            assert_eq!(d.experiments[0].change, Change::Disappeared);
            gone
        };
        assert!(!removed.is_empty());
        if measured.len() < 2 {
            return;
        }
        let old = measured[0].clone();
        let mut new = measured[1].clone();
        new.kernel = old.kernel.clone();
        let d = diff(&[old], &[new]);
        for e in &d.experiments {
            if let Change::Changed { changes } = &e.change {
                assert!(
                    changes.iter().all(|c| c.aspect != "counts"),
                    "raw counts compared in {}",
                    e.experiment
                );
            }
        }
        let text = d.to_string();
        for e in d.experiments.iter().take(5) {
            assert!(
                text.contains(&format!("{} :: {}", e.kernel, e.experiment)),
                "{text}"
            );
        }
    }

    /// `harness diff` between the 4.4 and the 4.6 recordings: two sets of one kernel each, so the
    /// two kernels are compared; the behaviour changes come first, each a line a person reads in a
    /// terminal, then the cells.
    #[test]
    fn diff_between_two_kernels_prints_the_behaviour_changes_first() {
        let ten = fixtures::recorded("ten");
        let one = |id: &str| ten.iter().find(|k| k.kernel == id).unwrap().clone();
        let d = diff(&[one("4.4")], &[one("4.6")]);
        assert_eq!(d.paired, Some(("4.4".to_owned(), "4.6".to_owned())));
        let text = d.to_string();
        let (behaviour, cells) = (
            text.find("Behaviour changes").expect("behaviour changes"),
            text.find("\nCells:").expect("cells"),
        );
        assert!(behaviour < cells, "{text}");
        assert!(
            text.starts_with("comparing 4.4 (old) with 4.6 (new)"),
            "{text}"
        );
        assert!(!d.behaviour.is_empty());
        let total: usize = d.behaviour.iter().map(|b| b.cells.len()).sum();
        assert_eq!(
            total,
            d.experiments.len(),
            "every changed cell in one behaviour change"
        );
        assert!(
            d.behaviour.len() * 10 < d.experiments.len(),
            "{} behaviour changes for {} cells",
            d.behaviour.len(),
            d.experiments.len()
        );
        // The lookup change of 4.5–4.6 and the cBPF arrival at 4.5 are among them, in words.
        let lines: Vec<String> = d.behaviour.iter().map(|b| b.headline()).collect();
        assert!(
            lines.iter().any(|l| l.starts_with("4.4 → 4.6: Lookup: ")),
            "{lines:#?}"
        );
        for line in &lines {
            assert!(line.len() < 600, "{line}");
        }
    }

    /// Debian 6.1 then 7.2 under one kernel id, as a nightly run would see an upgrade: the
    /// IPv4-mapped listener cells that stopped sharing a port across users are named, by kernel
    /// and experiment, with the outcome before and after.
    #[test]
    fn debian_upgrade_names_the_mapped_address_change() {
        let results = fixtures::results();
        let (Some(old), Some(new)) = (
            results.iter().find(|k| k.kernel == "deb-6.1"),
            results.iter().find(|k| k.kernel == "deb-7.2"),
        ) else {
            panic!("the fixtures hold deb-6.1 and deb-7.2");
        };
        let mut upgraded = new.clone();
        upgraded.kernel = old.kernel.clone();
        let d = diff(std::slice::from_ref(old), &[upgraded]);
        assert!(
            d.releases.iter().any(|r| r.kernel == "deb-6.1"),
            "the release changed"
        );
        let line = "deb-6.1 :: bind.tcp.mapped-any+mapped-lo.listening.a-ra-rp.b-ra-rp.other-uid: b_bind ok -> EADDRINUSE";
        assert!(d.to_string().contains(line), "{d}");
        assert!(!d.is_empty());
    }
}
