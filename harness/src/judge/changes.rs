//! What changed, and in which version: the behaviour changes of the version-ordered matrix, set
//! against the change points the documents claim.
//!
//! Per experiment (a *cell*), the kernels' signatures (`signature::signature`) form runs of
//! equal behaviour; each boundary between two runs is a change of that cell. When the run after a
//! boundary gives way to the behaviour before it, the change has a closed window (a regression
//! later fixed, or something one kernel alone does); otherwise its window is open ("from 3.9 on")
//! or ends where the cell changes again. Cell changes are grouped — same family, same window, the
//! same facts moving the same way — into behaviour changes, each described by the fewest catalogue
//! dimensions that pick out exactly its cells among the cells that could have changed there
//! (`describe`).
//!
//! Two kinds of cell change are not behaviour changes of their own:
//! - *consequences*: a cell whose reuse-option setsockopt went from an errno to `ok`, or that went
//!   from `unsupported` to measured, changed because an option became available. It is counted
//!   inside that option's arrival (the `options.*` cell that changed at the same boundary), with
//!   everything else that moved in it then. An option the `options` family does not measure (a
//!   transport gaining support for one it has, like SO_ATTACH_REUSEPORT_CBPF on TCP at 4.6, or
//!   IP_LOCAL_PORT_RANGE) arrives, or goes, by the unsupported reason of the cells that need it:
//!   every cell of any family that became measurable, or stopped being measurable, at one
//!   boundary for want of the same option is one row, that option's arrival or departure.
//! - *instability*: a cell whose repetitions disagree on a kernel is "unstable on K", grouped the
//!   same way with how often each value came up; that kernel is left out of the cell's runs, so
//!   instability never shows as a change.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use wire::{Experiment, ExperimentRecord, Family, Status};

use crate::judge::claims::{Claim, ClaimSet};
use crate::judge::describe::{describe, Description};
use crate::judge::evaluate::{kernel_version, ordered};
use crate::judge::signature::{signature, AspectChange, Signature, ENVIRONMENT};
use crate::results::KernelResult;
use crate::version::Version;

/// A measured kernel, as the change model names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kernel {
    /// The id from kernels.yaml.
    pub id: String,
    /// How windows name it: its version (`6.1`), or its id where versions repeat or are unknown.
    pub label: String,
    #[serde(skip)]
    pub version: Option<Version>,
}

/// Where a change holds: the kernels `start..=end` of the measured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Window {
    pub start: usize,
    pub end: usize,
    pub then: After,
}

/// What follows a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// The window runs to the newest kernel measured.
    Open,
    /// The behaviour before the window comes back after it: a regression later fixed, or a
    /// property of a few kernels only.
    Reverts,
    /// The cell changes once more, to a third behaviour.
    ChangesAgain,
}

impl Window {
    /// "from 3.9 on", "6.1 only", "4.5 to 4.6 only", "3.9 to 4.6, then changed again".
    pub fn text(&self, kernels: &[Kernel]) -> String {
        let (a, b) = (&kernels[self.start].label, &kernels[self.end].label);
        match self.then {
            After::Open if self.start == 0 => "on every kernel".to_owned(),
            After::Open => format!("from {a} on"),
            After::Reverts if self.start == self.end => format!("{a} only"),
            After::Reverts => format!("{a} to {b} only"),
            After::ChangesAgain if self.start == self.end => {
                format!("{a}, then changed again")
            }
            After::ChangesAgain => format!("{a} to {b}, then changed again"),
        }
    }
}

/// One cell's change at one boundary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellChange {
    pub experiment: String,
    pub window: Window,
    pub changes: Vec<AspectChange>,
}

/// A behaviour change: the cells of one family where the same facts move the same way from the
/// same kernel on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BehaviourChange {
    /// The family's id prefix (`bind`, `tw`, …).
    pub family: String,
    /// The window of most of the cells (the first of `windows`).
    pub window: Window,
    /// `from 3.9 on`, `6.1 only`; with the other sub-windows when the cells' windows end
    /// differently: `from 4.4 on (18 of the cells 4.4 only)`.
    pub window_text: String,
    /// The cells by window, most cells first.
    pub windows: Vec<SubWindow>,
    /// The facts that move, before and after.
    pub moves: Vec<AspectChange>,
    /// The facts in words: "B's bind: EADDRINUSE → ok".
    pub moves_text: String,
    /// Which cells, in the catalogue's dimensions.
    pub description: Description,
    pub cells: Vec<String>,
    /// For an option's arrival: the cells that changed because of it, by family.
    pub consequences: Vec<Consequences>,
    /// Claims whose change point lies at the start of the window and that read one of the cells.
    pub claimed_by: Vec<String>,
}

impl BehaviourChange {
    /// Cells the change accounts for: its own and its consequences.
    pub fn all_cells(&self) -> impl Iterator<Item = &String> {
        self.cells
            .iter()
            .chain(self.consequences.iter().flat_map(|c| c.cells.iter()))
    }

    /// The change in one line: the family, the cells in words, what moved.
    pub fn headline(&self) -> String {
        self.headline_with(&self.description.text)
    }

    /// [`BehaviourChange::headline`] with the cells named by `cells`.
    pub fn headline_with(&self, cells: &str) -> String {
        if self.family == Family::Options.token() {
            let consequences: usize = self.consequences.iter().map(|c| c.cells.len()).sum();
            let follows = if consequences == 1 {
                "; 1 cell changes with it".to_owned()
            } else if consequences > 1 {
                format!("; {consequences} cells change with it")
            } else {
                String::new()
            };
            return format!("{cells}: {}{follows}", self.moves_text);
        }
        format!(
            "{}: {cells}: {}",
            family_words(&self.family),
            self.moves_text
        )
    }
}

/// The cells of a change that share one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubWindow {
    pub window: Window,
    pub text: String,
    pub cells: Vec<String>,
}

/// Groups the cell changes of one behaviour change by window, most cells first (ties: the
/// earlier end first).
fn sub_windows(
    members: &[&CellChange],
    kernels: &[Kernel],
    order: &BTreeMap<String, usize>,
) -> Vec<SubWindow> {
    let mut by: BTreeMap<Window, Vec<String>> = BTreeMap::new();
    for c in members {
        by.entry(c.window).or_default().push(c.experiment.clone());
    }
    let mut windows: Vec<SubWindow> = by
        .into_iter()
        .map(|(window, mut cells)| {
            cells.sort_by_key(|id| order.get(id).copied().unwrap_or(usize::MAX));
            SubWindow {
                text: window.text(kernels),
                window,
                cells,
            }
        })
        .collect();
    windows.sort_by(|a, b| {
        b.cells
            .len()
            .cmp(&a.cells.len())
            .then(a.window.cmp(&b.window))
    });
    windows
}

/// "from 4.4 on", or with the other sub-windows: "from 4.4 on (23 of the cells 4.4 only)".
fn window_text(windows: &[SubWindow]) -> String {
    match windows {
        [one] => one.text.clone(),
        [main, rest @ ..] => format!(
            "{} ({})",
            main.text,
            rest.iter()
                .map(|w| format!("{} of the cells {}", w.cells.len(), w.text))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        [] => unreachable!("a group has cells"),
    }
}

/// Cells of one family that changed because an option became available.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Consequences {
    pub family: String,
    pub description: Description,
    pub cells: Vec<String>,
}

/// Cells of one family whose repetitions disagree in the same facts, on some kernels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instability {
    pub family: String,
    /// Labels of the kernels where these cells were unstable.
    pub kernels: Vec<String>,
    /// How many of the cells were unstable on each of those kernels.
    pub per_kernel: Vec<(String, usize)>,
    /// The facts that disagreed.
    pub facts: Vec<String>,
    /// Every value seen, with how often, over every repetition of every cell on the kernels where
    /// it was unstable: `EADDRINUSE 71, ok 37`.
    pub values: String,
    pub description: Description,
    pub cells: Vec<String>,
}

impl Instability {
    /// "4.5 (163 cells), 4.6 (189 cells)".
    pub fn on_text(&self) -> String {
        self.per_kernel
            .iter()
            .map(|(k, n)| format!("{k} ({n} cell{})", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How a claimed change point compares with the behaviour changes observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ClaimedVerdict {
    /// A behaviour change of the claim's cells starts at the claimed version.
    Agrees { change: usize, window: String },
    /// It starts at the next or the previous boundary of the measured kernels.
    OffByOne { change: usize, window: String },
    /// It starts elsewhere.
    ObservedInstead { change: usize, window: String },
    /// Kernels on both sides were measured and none of the claim's cells changed there.
    NotObserved { between: String },
    /// No measured kernel on one side of the version.
    NotObservable { why: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimedChange {
    pub claim: String,
    pub at: String,
    pub verdict: ClaimedVerdict,
}

impl ClaimedChange {
    pub fn label(&self) -> &'static str {
        match self.verdict {
            ClaimedVerdict::Agrees { .. } => "agrees",
            ClaimedVerdict::OffByOne { .. } => "off by one version",
            ClaimedVerdict::ObservedInstead { .. } => "observed at another version",
            ClaimedVerdict::NotObserved { .. } => "claimed but not observed",
            ClaimedVerdict::NotObservable { .. } => "not observable here",
        }
    }

    /// One line for people.
    pub fn detail(&self) -> String {
        match &self.verdict {
            ClaimedVerdict::Agrees { window, .. } => format!("observed {window}"),
            ClaimedVerdict::OffByOne { window, .. } => {
                format!("claimed at {}, observed {window}", self.at)
            }
            ClaimedVerdict::ObservedInstead { window, .. } => {
                format!("claimed at {}, observed {window}", self.at)
            }
            ClaimedVerdict::NotObserved { between } => {
                format!(
                    "claimed at {}; nothing the claim reads changes {between}",
                    self.at
                )
            }
            ClaimedVerdict::NotObservable { why } => why.clone(),
        }
    }
}

/// The change model of a matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    /// Measured kernels, in version order.
    pub kernels: Vec<Kernel>,
    /// Kernels that could not be judged, with the reason.
    pub unmeasured: Vec<(String, String)>,
    /// Behaviour changes, in window order (earliest start first, then largest).
    pub changes: Vec<BehaviourChange>,
    pub unstable: Vec<Instability>,
    pub claimed: Vec<ClaimedChange>,
    /// Every cell change, in catalogue order: the detail behind the rows.
    pub cells: Vec<CellChange>,
}

impl Changes {
    /// Claimed change points that no observed change bears out where the claim puts them.
    pub fn claimed_not_observed(&self) -> impl Iterator<Item = &ClaimedChange> {
        self.claimed.iter().filter(|c| {
            !matches!(
                c.verdict,
                ClaimedVerdict::Agrees { .. } | ClaimedVerdict::NotObservable { .. }
            )
        })
    }

    /// Claimed change points no measured pair of kernels brackets (a man page's "since Linux
    /// 2.2"): said once under the table, never a row of it.
    pub fn claimed_unobservable(&self) -> impl Iterator<Item = &ClaimedChange> {
        self.claimed
            .iter()
            .filter(|c| matches!(c.verdict, ClaimedVerdict::NotObservable { .. }))
    }
}

/// The family's name as a description starts.
pub fn family_words(family: &str) -> &'static str {
    match family {
        "options" => "Option",
        "bind" => "bind()",
        "tw" => "Rebinding over TIME_WAIT",
        "connect" => "connect()",
        "mcast" => "Multicast",
        "lookup" => "Lookup",
        "dist" => "Distribution",
        "steer" => "Steering",
        "cost" => "Lookup cost",
        "autobind" => "Automatic binding",
        "numbering" => "Reuseport group numbering",
        "addr" => "Addresses bind() accepts",
        "ephemeral" => "Ephemeral ports",
        "v6only" => "IPV6_V6ONLY",
        "twsys" => "TIME_WAIT sysctls",
        _ => "Experiment",
    }
}

/// A fact's name in words (`b_bind` → "B's bind").
pub fn fact_words(fact: &str) -> String {
    let fixed = match fact {
        "status" => "the experiment",
        "b_bind" => "B's bind",
        "b_listen" => "B's listen",
        "a_setup" => "A's set-up",
        "a_flags" => "A's options",
        "b_flags" => "B's options",
        "new_bind" => "the new bind",
        "new_listen" => "the new listen",
        "old_setup" => "the old socket's set-up",
        "old_flags" => "the old socket's options",
        "new_flags" => "the new socket's options",
        "time_wait_seen" => "TIME_WAIT seen",
        "reply" => "the reply reaches",
        "received" => "received by",
        "set" => "setsockopt",
        "get" => "getsockopt",
        "value" => "the value read back",
        "spread" => "the spread",
        "sticky" => "a 4-tuple",
        "steering" => "steering",
        "cost" => "the cost",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    if fact == "to.*" {
        return "which socket a probe reaches".to_owned();
    }
    if let Some(to) = fact.strip_prefix("to.") {
        return format!("a probe to {to} reaches");
    }
    if let Some((what, label)) = fact.split_once('.') {
        let what = match what {
            "bind" => "bind",
            "connect" => "connect",
            "listen" => "listen",
            "flags" => "options",
            "join" => "join",
            "datagrams" => "copies received",
            other => other,
        };
        return format!("{label}'s {what}");
    }
    fact.replace('_', " ")
}

/// One cell's change in the change model's words: the family, the cell's whole setup, what
/// moved ("bind(): TCP, A on 0.0.0.0, …, B of another user: B's bind: ok → EADDRINUSE").
pub fn cell_change_text(id: &str, moves: &[AspectChange]) -> String {
    let family = id.split('.').next().unwrap_or_default();
    let setup = wire::find(id)
        .map(|e| {
            e.dimensions()
                .iter()
                .map(|d| d.words.clone())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| id.to_owned());
    format!("{}: {setup}: {}", family_words(family), moves_text(moves))
}

pub fn moves_text(moves: &[AspectChange]) -> String {
    moves
        .iter()
        .map(|m| match m.before.as_str() {
            "*" => format!("{} changes", fact_words(&m.aspect)),
            _ => format!("{}: {} → {}", fact_words(&m.aspect), m.before, m.after),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Facts that say whether a reuse option could be set (not behaviour of their own).
fn is_option_fact(aspect: &str) -> bool {
    aspect.ends_with("_flags")
        || aspect.starts_with("flags.")
        || aspect.starts_with("attach")
        || matches!(aspect, "flags" | "reuseport")
}

fn is_errno(value: &str) -> bool {
    value.len() > 1 && value.starts_with('E') && value[1..].chars().all(|c| c.is_ascii_uppercase())
}

/// Whether a cell change only follows from an option becoming available.
fn follows_from_an_option(changes: &[AspectChange]) -> bool {
    changes.iter().any(|c| {
        (is_option_fact(&c.aspect)
            && is_errno(&c.before)
            && (c.after == "ok" || c.before == "ENOPROTOOPT"))
            || (c.aspect == "status" && c.before == "unsupported" && c.after == "completed")
    })
}

/// Whether an `options.*` cell change is the option itself becoming available: setsockopt went
/// from an errno to `ok`.
fn is_arrival(change: &CellChange) -> bool {
    change.experiment.starts_with("options.")
        && change
            .changes
            .iter()
            .any(|c| c.aspect == "set" && is_errno(&c.before) && c.after == "ok")
}

/// Labels for the measured kernels: the version where it is unique, else the id.
fn kernels(measured: &[&KernelResult]) -> Vec<Kernel> {
    let versions: Vec<Option<Version>> = measured.iter().map(|k| kernel_version(k)).collect();
    let short: Vec<Option<String>> = measured
        .iter()
        .zip(&versions)
        .map(|(k, v)| {
            k.version.clone().or_else(|| {
                v.as_ref()
                    .map(|v| format!("{}.{}", v.0[0], v.0.get(1).unwrap_or(&0)))
            })
        })
        .collect();
    measured
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let unique = short[i]
                .as_ref()
                .is_some_and(|s| short.iter().filter(|o| o.as_ref() == Some(s)).count() == 1);
            let label = match &short[i] {
                Some(s) if unique && k.version.is_some() => s.clone(),
                Some(s) if unique => format!("{s} ({})", k.kernel),
                _ => k.kernel.clone(),
            };
            Kernel {
                id: k.kernel.clone(),
                label,
                version: versions[i].clone(),
            }
        })
        .collect()
}

/// Per kernel, per cell: its signature when it measured behaviour (no environment mark).
type Signatures<'a> = Vec<BTreeMap<&'a str, Signature>>;

/// The cell's signature on every kernel, ready to compare: `None` where it was not measured.
/// From the first kernel where the cell's repetitions disagreed to the last, its behaviour facts
/// are soft — a reading in between that happened to agree is no evidence either, and facts that
/// follow from the unstable one (B's listen after B's bind) move with it — so instability never
/// shows as a change. Whether the options could be set stays firm: an option's arrival inside
/// such a stretch is still seen.
fn readings(id: &str, signatures: &Signatures<'_>) -> Vec<Option<Signature>> {
    let mut seq: Vec<Option<Signature>> = signatures.iter().map(|s| s.get(id).cloned()).collect();
    let unstable: Vec<usize> = (0..seq.len())
        .filter(|&k| seq[k].as_ref().is_some_and(Signature::is_unstable))
        .collect();
    let (Some(&first), Some(&last)) = (unstable.first(), unstable.last()) else {
        return seq;
    };
    for sig in seq[first..=last].iter_mut().flatten() {
        let names: Vec<String> = sig.0.keys().cloned().collect();
        for name in names {
            if !is_option_fact(&name) && name != "status" {
                sig.soften(&name);
            }
        }
    }
    seq
}

/// The runs of one cell: maximal stretches of kernels that behave alike, each as (first, last,
/// what the run's kernels firmly showed).
fn runs(id: &str, signatures: &Signatures<'_>) -> Vec<(usize, usize, Signature)> {
    let mut runs: Vec<(usize, usize, Signature)> = Vec::new();
    for (k, sig) in readings(id, signatures).into_iter().enumerate() {
        let Some(sig) = sig else { continue };
        match runs.last_mut() {
            Some((_, last, known)) if known.changes_to(&sig).is_empty() => {
                *last = k;
                known.absorb(&sig);
            }
            _ => runs.push((k, k, sig)),
        }
    }
    runs
}

/// Every cell change of one cell. A run bracketed by two runs that behave alike is a *blip*: one
/// change with a closed window, the way back included. Where blips overlap (A B A B: either the
/// Bs or the middle A could be the blip), the shorter wins, so "ok from 4.4 on, EADDRINUSE again
/// on 4.6 only" is read as a lasting change and a 4.6-only regression rather than the other way
/// round. Every other boundary starts a change that lasts until the next one (or to the newest
/// kernel).
fn cell_changes(id: &str, signatures: &Signatures<'_>, newest: usize) -> Vec<CellChange> {
    let runs = runs(id, signatures);
    let n = runs.len();
    let alike = |a: usize, b: usize| runs[a].2.changes_to(&runs[b].2).is_empty();
    let mut candidates: Vec<usize> = (1..n.saturating_sub(1))
        .filter(|&j| alike(j - 1, j + 1))
        .collect();
    candidates.sort_by_key(|&j| (runs[j].1 - runs[j].0, j));
    let mut blips: Vec<usize> = Vec::new();
    for j in candidates {
        if !blips.contains(&(j - 1)) && !blips.contains(&(j + 1)) {
            blips.push(j);
        }
    }
    // Boundary b lies between runs b-1 and b; a blip j takes boundaries j and j+1.
    let taken = |b: usize| blips.iter().any(|&j| b == j || b == j + 1);
    let starts: Vec<usize> = (1..n).filter(|&b| !taken(b)).collect();
    let mut changes = Vec::new();
    for &j in &blips {
        changes.push(CellChange {
            experiment: id.to_owned(),
            window: Window {
                start: runs[j].0,
                end: runs[j].1,
                then: After::Reverts,
            },
            changes: runs[j - 1].2.changes_to(&runs[j].2),
        });
    }
    for (i, &b) in starts.iter().enumerate() {
        let (end, then) = match starts.get(i + 1) {
            Some(&next) => (runs[next].0 - 1, After::ChangesAgain),
            None => (newest, After::Open),
        };
        changes.push(CellChange {
            experiment: id.to_owned(),
            window: Window {
                start: runs[b].0,
                end,
                then,
            },
            changes: runs[b - 1].2.changes_to(&runs[b].2),
        });
    }
    changes.sort_by_key(|c| c.window.start);
    changes
}

/// What cell changes are grouped by: the facts under test that moved. B's listen is tried only
/// when B's bind succeeded (and the new socket's listen only after its bind), so it moves with
/// the bind and is left out when the bind moved; which socket a lookup probe reaches is one fact
/// whatever the probe.
fn grouping_key(family: &str, moves: &[AspectChange]) -> Vec<AspectChange> {
    let moved = |name: &str| moves.iter().any(|m| m.aspect == name);
    let follow_on = |name: &str| match family {
        "bind" => name == "b_listen" && moved("b_bind"),
        "tw" => name == "new_listen" && moved("new_bind"),
        _ => false,
    };
    let mut key: Vec<AspectChange> = Vec::new();
    for m in moves.iter().filter(|m| !follow_on(&m.aspect)) {
        let m = if family == "lookup" && m.aspect.starts_with("to.") {
            AspectChange {
                aspect: "to.*".into(),
                before: "*".into(),
                after: "*".into(),
            }
        } else {
            m.clone()
        };
        if !key.contains(&m) {
            key.push(m);
        }
    }
    key
}

/// Finds every behaviour change of the matrix and judges every claimed change point.
pub fn analyse(results: &[KernelResult], claims: &ClaimSet) -> Changes {
    let all = ordered(results);
    let (measured, unmeasured): (Vec<&KernelResult>, Vec<&KernelResult>) = all
        .into_iter()
        .partition(|k| !k.records.is_empty() && k.not_judgeable().is_none());
    let kernels = kernels(&measured);
    let signatures: Signatures<'_> = measured
        .iter()
        .map(|k| {
            k.records
                .iter()
                .map(|r| (r.id.as_str(), signature(r)))
                .filter(|(_, s)| !s.0.contains_key(ENVIRONMENT))
                .collect()
        })
        .collect();
    let catalogue = wire::catalogue();
    let newest = kernels.len().saturating_sub(1);

    let mut cells: Vec<CellChange> = Vec::new();
    for experiment in &catalogue {
        cells.extend(cell_changes(&experiment.id(), &signatures, newest));
    }

    // Options that became available, by the first kernel that has them.
    let arrivals: Vec<&CellChange> = cells.iter().filter(|c| is_arrival(c)).collect();
    let arrival_for = |c: &CellChange| -> Option<String> {
        if is_arrival(c) || !follows_from_an_option(&c.changes) {
            return None;
        }
        let at: Vec<&&CellChange> = arrivals
            .iter()
            .filter(|a| a.window.start == c.window.start)
            .collect();
        let named = at.iter().find(|a| {
            let option = a
                .experiment
                .trim_start_matches("options.")
                .to_ascii_uppercase();
            reason_before(&measured, c).is_some_and(|r| r.contains(&option))
        });
        if named.is_none()
            && reason_before(&measured, c)
                .and_then(option_of_reason)
                .is_some()
        {
            // The reason names an option none of these arrivals is: that option's own row.
            return None;
        }
        named.or(at.first()).map(|a| a.experiment.clone())
    };

    // Group: family, first kernel of the window and what moved; consequences go to their
    // option. Cells of a group whose windows end differently are sub-windows of one change.
    type Key = (usize, String, usize, Vec<AspectChange>);
    let order: BTreeMap<String, usize> = catalogue
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id(), i))
        .collect();
    let mut groups: BTreeMap<Key, Vec<&CellChange>> = BTreeMap::new();
    let mut consequences: BTreeMap<String, Vec<&CellChange>> = BTreeMap::new();
    // (start, arrives, option, errno) → the cells that need it.
    type Implied = (usize, bool, String, String);
    let mut implied: BTreeMap<Implied, Vec<&CellChange>> = BTreeMap::new();
    for c in &cells {
        if let Some(option) = arrival_for(c) {
            consequences.entry(option).or_default().push(c);
            continue;
        }
        if !is_arrival(c) {
            if let Some((arrives, option, errno)) = implied_option(&measured, c) {
                implied
                    .entry((c.window.start, arrives, option, errno))
                    .or_default()
                    .push(c);
                continue;
            }
        }
        let family = c
            .experiment
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let rank = catalogue
            .iter()
            .position(|e| e.family().token() == family)
            .unwrap_or(usize::MAX);
        let key = grouping_key(&family, &c.changes);
        groups
            .entry((rank, family, c.window.start, key))
            .or_default()
            .push(c);
    }

    let by_family = |family: &str| -> Vec<&Experiment> {
        catalogue
            .iter()
            .filter(|e| e.family().token() == family)
            .collect()
    };
    // The cells that could have shown a change starting at `start`: measured there and on some
    // kernel before.
    let measured_on = |k: usize, id: &str| signatures[k].contains_key(id);
    let comparable = |family: &str, start: usize| -> Vec<&Experiment> {
        by_family(family)
            .into_iter()
            .filter(|e| {
                let id = e.id();
                measured_on(start, &id) && (0..start).any(|k| measured_on(k, &id))
            })
            .collect()
    };

    // Cells that changed with an option, by family, each family's described among the cells
    // that could have changed at `start`.
    let by_family = |cells: &[&CellChange], start: usize| -> Vec<Consequences> {
        let mut per_family: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for c in cells {
            let f = c
                .experiment
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            per_family
                .entry(f)
                .or_default()
                .insert(c.experiment.clone());
        }
        per_family
            .into_iter()
            .map(|(f, chosen)| {
                let description = describe(&comparable(&f, start), &chosen);
                let mut cells: Vec<String> = chosen.into_iter().collect();
                cells.sort_by_key(|id| order.get(id).copied().unwrap_or(usize::MAX));
                Consequences {
                    family: f,
                    description,
                    cells,
                }
            })
            .collect()
    };
    let sort_by_family = |rows: &mut Vec<Consequences>| {
        rows.sort_by_key(|c| {
            catalogue
                .iter()
                .position(|e| e.family().token() == c.family)
                .unwrap_or(usize::MAX)
        });
    };

    let mut changes: Vec<BehaviourChange> = Vec::new();
    for ((_, family, _, moves), members) in groups {
        let mut ids: Vec<String> = members.iter().map(|c| c.experiment.clone()).collect();
        ids.sort_by_key(|id| order.get(id).copied().unwrap_or(usize::MAX));
        let windows = sub_windows(&members, &kernels, &order);
        let window = windows[0].window;
        let chosen: BTreeSet<String> = ids.iter().cloned().collect();
        let description = describe(&comparable(&family, window.start), &chosen);
        let mut consequence_rows = Vec::new();
        if family == "options" {
            for id in &ids {
                if let Some(cs) = consequences.get(id) {
                    consequence_rows.extend(by_family(cs, window.start));
                }
            }
            sort_by_family(&mut consequence_rows);
        }
        changes.push(BehaviourChange {
            window_text: window_text(&windows),
            windows,
            moves_text: moves_text(&moves),
            family,
            window,
            moves,
            description,
            cells: ids,
            consequences: consequence_rows,
            claimed_by: Vec::new(),
        });
    }
    for ((_, arrives, option, errno), members) in implied {
        let windows = sub_windows(&members, &kernels, &order);
        let window = windows[0].window;
        let mut consequence_rows = by_family(&members, window.start);
        sort_by_family(&mut consequence_rows);
        let moves = vec![if arrives {
            AspectChange {
                aspect: "the cells' option".into(),
                before: errno,
                after: "ok".into(),
            }
        } else {
            AspectChange {
                aspect: "the cells' option".into(),
                before: "ok".into(),
                after: errno,
            }
        }];
        let text = if arrives {
            format!("usable where the cells need it ({} → ok)", moves[0].before)
        } else {
            format!(
                "no longer usable where the cells need it (ok → {})",
                moves[0].after
            )
        };
        changes.push(BehaviourChange {
            window_text: window_text(&windows),
            windows,
            moves_text: text,
            family: Family::Options.token().to_owned(),
            window,
            moves,
            description: Description {
                boxes: Vec::new(),
                text: option,
            },
            cells: Vec::new(),
            consequences: consequence_rows,
            claimed_by: Vec::new(),
        });
    }
    changes.sort_by(|a, b| {
        a.window
            .start
            .cmp(&b.window.start)
            .then(b.all_cells().count().cmp(&a.all_cells().count()))
    });

    for change in &mut changes {
        change.claimed_by = claims
            .claims
            .iter()
            .filter(|claim| starts_at_claim(change.window.start, claim, &kernels))
            .filter(|claim| {
                let read: BTreeSet<String> = claim.experiments().into_iter().collect();
                change.all_cells().any(|c| read.contains(c))
            })
            .map(|claim| claim.id.clone())
            .collect();
    }

    let claimed = claims
        .claims
        .iter()
        .filter(|c| c.changes_at.is_some())
        .map(|claim| judge_claimed(claim, &changes, &kernels, &signatures))
        .collect();

    Changes {
        unstable: instabilities(
            &measured,
            &kernels,
            &signatures,
            &catalogue,
            &comparable_all(&catalogue),
        ),
        unmeasured: unmeasured
            .iter()
            .map(|k| {
                let why = k
                    .not_judgeable()
                    .unwrap_or_else(|| format!("{}: no records", k.run.label()));
                (k.kernel.clone(), why)
            })
            .collect(),
        kernels,
        changes,
        claimed,
        cells,
    }
}

fn comparable_all(catalogue: &[Experiment]) -> BTreeMap<String, Vec<&Experiment>> {
    let mut by: BTreeMap<String, Vec<&Experiment>> = BTreeMap::new();
    for e in catalogue {
        by.entry(e.family().token().to_owned()).or_default().push(e);
    }
    by
}

/// The unsupported reason the cell gave on the kernel before its change.
fn reason_before<'a>(measured: &[&'a KernelResult], c: &CellChange) -> Option<&'a str> {
    let before = measured.get(c.window.start.checked_sub(1)?)?;
    match &before.record(&c.experiment)?.status {
        Status::Unsupported { reason } => Some(reason.as_str()),
        _ => None,
    }
}

/// The unsupported reason the cell gave on the first kernel of its change.
fn reason_after<'a>(measured: &[&'a KernelResult], c: &CellChange) -> Option<&'a str> {
    match &measured.get(c.window.start)?.record(&c.experiment)?.status {
        Status::Unsupported { reason } => Some(reason.as_str()),
        _ => None,
    }
}

/// The option and the errno an unsupported reason names: `SO_ATTACH_REUSEPORT_CBPF = EINVAL`,
/// `setsockopt(IP_LOCAL_PORT_RANGE) = ENOPROTOOPT`. The option is the first upper-case name
/// with an underscore (a socket option or a sysctl-like constant), the errno the last word that
/// is one.
fn option_of_reason(reason: &str) -> Option<(String, String)> {
    let words: Vec<&str> = reason
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let option = words.iter().find(|w| {
        w.contains('_')
            && w.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })?;
    let errno = words.iter().rev().find(|w| is_errno(w))?;
    Some(((*option).to_owned(), (*errno).to_owned()))
}

/// For a cell that became measurable, or stopped being, at its change without an `options.*`
/// arrival to count it in: which way, the option its unsupported reason names and that errno.
fn implied_option(measured: &[&KernelResult], c: &CellChange) -> Option<(bool, String, String)> {
    let status = c.changes.iter().find(|m| m.aspect == "status")?;
    let arrives = match (status.before.as_str(), status.after.as_str()) {
        ("unsupported", "completed") => true,
        ("completed", "unsupported") => false,
        _ => return None,
    };
    let reason = if arrives {
        reason_before(measured, c)?
    } else {
        reason_after(measured, c)?
    };
    let (option, errno) = option_of_reason(reason)?;
    Some((arrives, option, errno))
}

/// Whether the claim's change point lies between the kernel before `start` and `start`.
fn starts_at_claim(start: usize, claim: &Claim, kernels: &[Kernel]) -> bool {
    let Some(at) = &claim.changes_at else {
        return false;
    };
    bracket(start, kernels).is_some_and(|(from, to)| from < at && at <= to)
}

/// The versions on both sides of the boundary before kernel `start`.
fn bracket(start: usize, kernels: &[Kernel]) -> Option<(&Version, &Version)> {
    let to = kernels.get(start)?.version.as_ref()?;
    let from = kernels.get(start.checked_sub(1)?)?.version.as_ref()?;
    Some((from, to))
}

fn judge_claimed(
    claim: &Claim,
    changes: &[BehaviourChange],
    kernels: &[Kernel],
    signatures: &Signatures<'_>,
) -> ClaimedChange {
    let at = claim
        .changes_at
        .as_ref()
        .expect("claims with a change point");
    let read: BTreeSet<String> = claim.experiments().into_iter().collect();
    // The boundary the claimed version falls in: the first kernel at or above it.
    let boundary = kernels
        .iter()
        .position(|k| k.version.as_ref().is_some_and(|v| v >= at));
    let relevant: Vec<(usize, &BehaviourChange)> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.all_cells().any(|id| read.contains(id)))
        .collect();
    let verdict = match boundary {
        Some(b) if b > 0 => {
            let found = |offset: usize| {
                relevant
                    .iter()
                    .find(|(_, c)| c.window.start.abs_diff(b) == offset)
                    .map(|(i, c)| (*i, c.window_text.clone()))
            };
            if let Some((change, window)) = found(0) {
                ClaimedVerdict::Agrees { change, window }
            } else if let Some((change, window)) = found(1) {
                ClaimedVerdict::OffByOne { change, window }
            } else if let Some((change, c)) = relevant.first() {
                ClaimedVerdict::ObservedInstead {
                    change: *change,
                    window: c.window_text.clone(),
                }
            } else if read.iter().any(|id| {
                signatures[b - 1].contains_key(id.as_str())
                    && signatures[b].contains_key(id.as_str())
            }) {
                ClaimedVerdict::NotObserved {
                    between: format!("between {} and {}", kernels[b - 1].label, kernels[b].label),
                }
            } else {
                ClaimedVerdict::NotObservable {
                    why: format!(
                        "the cells the claim reads were not measured on both {} and {}",
                        kernels[b - 1].label,
                        kernels[b].label
                    ),
                }
            }
        }
        Some(_) => ClaimedVerdict::NotObservable {
            why: format!("no kernel below {at} was measured"),
        },
        None => ClaimedVerdict::NotObservable {
            why: format!("no kernel at or above {at} was measured"),
        },
    };
    ClaimedChange {
        claim: claim.id.clone(),
        at: at.to_string(),
        verdict,
    }
}

/// Cells unstable on some kernels, grouped by family and the facts that disagreed.
fn instabilities(
    measured: &[&KernelResult],
    kernels: &[Kernel],
    signatures: &Signatures<'_>,
    catalogue: &[Experiment],
    by_family: &BTreeMap<String, Vec<&Experiment>>,
) -> Vec<Instability> {
    type Key = (usize, String, Vec<String>);
    let mut groups: BTreeMap<Key, Vec<(String, Vec<usize>)>> = BTreeMap::new();
    for (rank, e) in catalogue.iter().enumerate() {
        let id = e.id();
        let unstable: Vec<usize> = (0..signatures.len())
            .filter(|&k| {
                signatures[k]
                    .get(id.as_str())
                    .is_some_and(Signature::is_unstable)
            })
            .collect();
        if unstable.is_empty() {
            continue;
        }
        let mut facts: BTreeSet<String> = BTreeSet::new();
        for &k in &unstable {
            for (name, aspect) in &signatures[k][id.as_str()].0 {
                if aspect.value.starts_with("unstable(") {
                    facts.insert(name.clone());
                }
            }
        }
        let family = e.family().token().to_owned();
        let first_of_family = catalogue
            .iter()
            .position(|x| x.family() == e.family())
            .unwrap_or(rank);
        groups
            .entry((first_of_family, family, facts.into_iter().collect()))
            .or_default()
            .push((id, unstable));
    }
    groups
        .into_iter()
        .map(|((_, family, facts), members)| {
            let on: Vec<usize> = members
                .iter()
                .flat_map(|(_, ks)| ks.iter().copied())
                .collect::<BTreeSet<usize>>()
                .into_iter()
                .collect();
            let per_kernel: Vec<(String, usize)> = on
                .iter()
                .map(|&k| {
                    (
                        kernels[k].label.clone(),
                        members.iter().filter(|(_, ks)| ks.contains(&k)).count(),
                    )
                })
                .collect();
            let cells: Vec<String> = members.iter().map(|(id, _)| id.clone()).collect();
            let chosen: BTreeSet<String> = cells.iter().cloned().collect();
            let universe: Vec<&Experiment> = by_family
                .get(&family)
                .map(|all| {
                    all.iter()
                        .copied()
                        .filter(|e| {
                            let id = e.id();
                            on.iter().any(|&k| signatures[k].contains_key(id.as_str()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut tally: Vec<(String, usize)> = Vec::new();
            for (id, unstable_on) in &members {
                for &k in unstable_on {
                    let Some(record) = measured[k].record(id) else {
                        continue;
                    };
                    for value in unstable_values(record, &facts) {
                        match tally.iter_mut().find(|(v, _)| *v == value) {
                            Some((_, n)) => *n += 1,
                            None => tally.push((value, 1)),
                        }
                    }
                }
            }
            tally.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Instability {
                description: describe(&universe, &chosen),
                kernels: on.iter().map(|&k| kernels[k].label.clone()).collect(),
                per_kernel,
                values: tally
                    .iter()
                    .map(|(v, n)| format!("{v} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                family,
                facts,
                cells,
            }
        })
        .collect()
}

/// Every repetition's value of the facts named, as recorded.
fn unstable_values(record: &ExperimentRecord, facts: &[String]) -> Vec<String> {
    facts
        .iter()
        .filter_map(|f| match record.facts.get(f) {
            Some(wire::Fact::Outcomes(v) | wire::Fact::Receivers(v)) => Some(v.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::judge::evaluate::fixtures;
    use crate::judge::signature::Aspect;

    /// The ten recorded kernels (3.8 … 4.6 from ../shared/old-kernels, Debian's 5.10, 6.1,
    /// 6.12 and 7.2, the host) and their change model, computed once per test binary.
    fn ten() -> &'static (Vec<KernelResult>, Changes) {
        static TEN: OnceLock<(Vec<KernelResult>, Changes)> = OnceLock::new();
        TEN.get_or_init(|| {
            let results = fixtures::recorded("ten");
            let changes = analyse(&results, &fixtures::claims());
            (results, changes)
        })
    }

    fn changes() -> &'static Changes {
        &ten().1
    }

    #[test]
    fn what_changed_fits_on_one_screen() {
        let c = changes();
        assert_eq!(c.kernels.len(), 10, "{:?}", c.kernels);
        // One screen: about 30 rows. Over the ten kernels the catalogue of 8223 cells shows 27
        // behaviour changes (the families of the man pages added sysctls that went away, options
        // that arrived and bind()'s address checks) and one claimed change not observed.
        let rows = c.changes.len() + c.claimed_not_observed().count();
        assert!(
            rows <= 30,
            "{rows} rows: {:#?}",
            c.changes.iter().map(|c| c.headline()).collect::<Vec<_>>()
        );
        assert!(
            rows >= 5,
            "{rows} rows: the old kernels differ in more than that"
        );
    }

    /// Every cell change is accounted for by exactly one row: as one of its cells (same window)
    /// or as a consequence of an option that arrived at the same kernel.
    #[test]
    fn every_cell_change_belongs_to_exactly_one_row() {
        let c = changes();
        assert!(c.cells.len() > 1000, "only {} cell changes", c.cells.len());
        for cell in &c.cells {
            let owners: Vec<usize> = c
                .changes
                .iter()
                .enumerate()
                .filter(|(_, b)| {
                    b.windows
                        .iter()
                        .any(|w| w.window == cell.window && w.cells.contains(&cell.experiment))
                        || (b.window.start == cell.window.start
                            && b.consequences
                                .iter()
                                .any(|q| q.cells.contains(&cell.experiment)))
                })
                .map(|(i, _)| i)
                .collect();
            assert_eq!(owners.len(), 1, "{cell:?} belongs to rows {owners:?}");
        }
        // And no row claims a cell that did not change there.
        let all: usize = c.changes.iter().map(|b| b.all_cells().count()).sum();
        assert_eq!(all, c.cells.len());
    }

    #[test]
    fn an_unsupported_reason_names_its_option_and_errno() {
        assert_eq!(
            option_of_reason("setsockopt(IP_LOCAL_PORT_RANGE) = ENOPROTOOPT"),
            Some(("IP_LOCAL_PORT_RANGE".into(), "ENOPROTOOPT".into()))
        );
        assert_eq!(
            option_of_reason("SO_ATTACH_REUSEPORT_CBPF = EINVAL"),
            Some(("SO_ATTACH_REUSEPORT_CBPF".into(), "EINVAL".into()))
        );
        assert_eq!(
            option_of_reason("/proc/sys/net/ipv4/tcp_tw_recycle = ENOENT"),
            None
        );
    }

    /// TCP gained SO_ATTACH_REUSEPORT_CBPF at 4.6, a release after UDP: every cell that needs it
    /// on TCP (steering, numbering) changes at 4.6 in one row, that option's arrival.
    #[test]
    fn an_option_without_an_options_cell_arrives_in_one_row() {
        let c = changes();
        let rows: Vec<&BehaviourChange> = c
            .changes
            .iter()
            .filter(|b| b.all_cells().any(|id| id.starts_with("numbering.tcp.")))
            .filter(|b| c.kernels[b.window.start].label == "4.6")
            .collect();
        assert_eq!(
            rows.len(),
            1,
            "{:?}",
            rows.iter().map(|r| r.headline()).collect::<Vec<_>>()
        );
        let row = rows[0];
        assert_eq!(row.window_text, "from 4.6 on");
        assert_eq!(row.description.text, "SO_ATTACH_REUSEPORT_CBPF");
        assert!(row.all_cells().any(|id| id == "steer.cbpf.tcp"));
        assert!(
            row.all_cells().all(|id| id.contains(".tcp")),
            "TCP's cells only"
        );
    }

    #[test]
    fn so_reuseports_arrival_is_one_row_with_its_consequences_inside() {
        let c = changes();
        let rows: Vec<&BehaviourChange> = c
            .changes
            .iter()
            .filter(|b| b.all_cells().any(|id| id == "options.so_reuseport"))
            .collect();
        assert_eq!(rows.len(), 1);
        let row = rows[0];
        assert_eq!(row.window_text, "from 3.9 on");
        assert_eq!(row.description.text, "SO_REUSEPORT");
        // Every bind cell that sets SO_REUSEPORT changed with it, and nothing else of the bind
        // matrix did.
        let bind = row
            .consequences
            .iter()
            .find(|q| q.family == "bind")
            .expect("bind consequences");
        assert_eq!(
            bind.description.text,
            "A with SO_REUSEPORT; or B with SO_REUSEPORT"
        );
        assert!(bind.cells.len() > 5000, "{}", bind.cells.len());
        assert!(row
            .claimed_by
            .contains(&"001.linux.reuseport-added-3.9".to_owned()));
        // No other row starts at 3.9 but the other thing 3.8 lacks that cells need: user
        // namespaces for an unprivileged user (`unshare(CLONE_NEWUSER) = EINVAL`), whose cells
        // are that row's, never SO_REUSEPORT's.
        assert!(
            c.changes
                .iter()
                .filter(|b| b.window.start == 1)
                .all(|b| std::ptr::eq(b, row) || b.description.text == "CLONE_NEWUSER"),
            "{:?}",
            c.changes
                .iter()
                .filter(|b| b.window.start == 1)
                .map(|b| b.headline())
                .collect::<Vec<_>>()
        );
    }

    /// Debian's 6.1 lets a TCP socket bind ::ffff:127.0.0.1 beside a listener or bound socket on
    /// ::ffff:0.0.0.0, 5.10 and 6.12 do not: one change whose window closes, not two.
    #[test]
    fn a_change_that_comes_and_goes_is_one_change_with_a_closed_window() {
        let c = changes();
        let rows: Vec<&BehaviourChange> = c
            .changes
            .iter()
            .filter(|b| {
                b.cells.iter().any(|id| {
                    id == "bind.tcp.mapped-any+mapped-lo.listening.a-none.b-none.same-uid"
                })
            })
            .collect();
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0].window_text, "6.1 only");
        assert_eq!(rows[0].window.then, After::Reverts);
        assert_eq!(rows[0].moves_text, "B's bind: EADDRINUSE → ok");
        // Nothing starts at 6.12 to undo it.
        let at_612 = c.kernels.iter().position(|k| k.label == "6.12").unwrap();
        assert!(c.changes.iter().all(|b| b.window.start != at_612));
    }

    /// Cells whose repetitions disagree are reported as unstable, with how often each value came
    /// up, and never read as a change.
    #[test]
    fn instability_is_its_own_kind_never_a_change() {
        let c = changes();
        assert!(
            !c.unstable.is_empty(),
            "4.5 and 4.6 have nondeterministic TIME_WAIT cells"
        );
        let tw = c
            .unstable
            .iter()
            .find(|u| u.family == "bind")
            .expect("unstable bind cells");
        assert!(tw.kernels.contains(&"4.5".to_owned()) && tw.kernels.contains(&"4.6".to_owned()));
        assert!(
            tw.values.contains("EADDRINUSE") && tw.values.contains("ok"),
            "{}",
            tw.values
        );
        for cell in &c.cells {
            for m in &cell.changes {
                assert!(
                    !m.before.starts_with("unstable(") && !m.after.starts_with("unstable("),
                    "{cell:?}"
                );
            }
        }
    }

    #[test]
    fn no_row_needs_a_cell_id_to_be_understood() {
        let ids: Vec<String> = wire::catalogue().iter().map(|e| e.id()).collect();
        for b in &changes().changes {
            let line = b.headline();
            assert!(
                !ids.iter().any(|id| line.contains(id.as_str())),
                "a cell id in {line}"
            );
        }
    }

    /// The documents place TCP reuseport groups at 4.6 (003); the kernels show the lookup change
    /// already on 4.5: judged against the change model, off by one version, and SO_REUSEPORT's
    /// arrival at 3.9 agrees.
    #[test]
    fn claimed_change_points_are_judged_by_the_change_model() {
        let c = changes();
        let verdict = |claim: &str| {
            c.claimed
                .iter()
                .find(|x| x.claim == claim)
                .unwrap_or_else(|| panic!("no {claim}"))
        };
        assert_eq!(verdict("001.linux.reuseport-added-3.9").label(), "agrees");
        let tcp = verdict("003.linux.reuseport-groups-tcp-4.6");
        assert!(
            matches!(
                tcp.verdict,
                ClaimedVerdict::OffByOne { .. } | ClaimedVerdict::Agrees { .. }
            ),
            "{tcp:?}"
        );
    }

    fn sig(value: &str) -> Signature {
        Signature(BTreeMap::from([(
            "b_bind".to_owned(),
            Aspect {
                value: value.to_owned(),
                firm: true,
            },
        )]))
    }

    /// E, ok, ok, E, ok: read as "ok from the second kernel on" and "E on the fourth only",
    /// not as "ok on the second and third only" plus another change.
    #[test]
    fn overlapping_blips_read_as_the_shorter_one() {
        let values = ["EADDRINUSE", "ok", "ok", "EADDRINUSE", "ok"];
        let owned: Vec<Signature> = values.iter().map(|v| sig(v)).collect();
        let signatures: Signatures<'_> = owned
            .iter()
            .map(|s| BTreeMap::from([("cell", s.clone())]))
            .collect();
        let changes = cell_changes("cell", &signatures, 4);
        let windows: Vec<(usize, usize, After)> = changes
            .iter()
            .map(|c| (c.window.start, c.window.end, c.window.then))
            .collect();
        assert_eq!(windows, [(1, 4, After::Open), (3, 3, After::Reverts)]);
    }
}
