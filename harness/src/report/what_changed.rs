//! The report's first screen, "What changed", as rows both the Markdown and the HTML render: one
//! per behaviour change in window order, then one per change point the documents claim that the
//! kernels do not bear out where the documents put it.

use crate::judge::changes::{After, Changes, ClaimedVerdict};

/// How a row stands against the documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Documents {
    /// Claims whose change point is at the start of the window.
    ClaimedBy(Vec<String>),
    Unclaimed,
    /// A claimed change point no observed change starts at (`detail` says what was seen).
    ClaimedNotObserved {
        claim: String,
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Kernel indexes of the window (`None` for a claimed change nobody observed).
    pub span: Option<(usize, usize, After)>,
    /// `from 3.9 on`, `6.1 only`, `claimed at 4.6`.
    pub when: String,
    /// The change in one line, the cells named by the first group of dimensions.
    pub what: String,
    /// The change with every group of cells named.
    pub what_in_full: String,
    /// Cells the change accounts for, consequences included.
    pub cells: usize,
    pub documents: Documents,
    /// Index into `Changes::changes`, for the detail behind the row.
    pub change: Option<usize>,
}

pub fn rows(changes: &Changes) -> Vec<Row> {
    let mut rows: Vec<Row> = changes
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| Row {
            span: Some((c.window.start, c.window.end, c.window.then)),
            when: c.window_text.clone(),
            what: c.headline_with(&c.description.short()),
            what_in_full: c.headline(),
            cells: c.all_cells().count(),
            documents: if c.claimed_by.is_empty() {
                Documents::Unclaimed
            } else {
                Documents::ClaimedBy(c.claimed_by.clone())
            },
            change: Some(i),
        })
        .collect();
    for claimed in changes.claimed_not_observed() {
        let change = match &claimed.verdict {
            ClaimedVerdict::OffByOne { change, .. }
            | ClaimedVerdict::ObservedInstead { change, .. } => Some(*change),
            _ => None,
        };
        rows.push(Row {
            span: None,
            when: format!("claimed at {}", claimed.at),
            what: format!("{}: {}", claimed.label(), claimed.detail()),
            what_in_full: format!("{}: {}", claimed.label(), claimed.detail()),
            cells: 0,
            documents: Documents::ClaimedNotObserved {
                claim: claimed.claim.clone(),
                detail: claimed.detail(),
            },
            change,
        });
    }
    rows
}

impl Documents {
    /// "claimed by `001.x`", "**unclaimed**", "*claimed by `002.y`, not observed there*", with
    /// `code` wrapping a claim id.
    pub fn text(&self, code: impl Fn(&str) -> String, strong: impl Fn(&str) -> String) -> String {
        match self {
            Documents::ClaimedBy(ids) if ids.len() > 3 => format!(
                "claimed by {} and {} more",
                ids[..2]
                    .iter()
                    .map(|i| code(i))
                    .collect::<Vec<_>>()
                    .join(", "),
                ids.len() - 2
            ),
            Documents::ClaimedBy(ids) => format!(
                "claimed by {}",
                ids.iter().map(|i| code(i)).collect::<Vec<_>>().join(", ")
            ),
            Documents::Unclaimed => strong("unclaimed"),
            Documents::ClaimedNotObserved { claim, .. } => {
                format!("claimed by {}, not observed there", code(claim))
            }
        }
    }
}
