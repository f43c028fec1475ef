//! Evolution: where in the version-ordered matrix each experiment's behaviour changes, set against
//! the change points the documents claim.
//!
//! Behaviour is compared through a [`Signature`]: the outcome facts as stable values (or as
//! `unstable(...)`), and distribution, steering and cost facts reduced to statistics (even or
//! uneven, sticky or not, flat or growing). Raw member indexes and raw counts never enter a
//! signature: which member gets a flow depends on a per-boot random hash secret.

use std::collections::BTreeMap;

use serde::Serialize;
use wire::{ExperimentRecord, Fact, Status};

use crate::judge::claims::ClaimSet;
use crate::judge::evaluate::{
    counted, is_bind_fact, kernel_version, ordered, time_wait_overflowed,
};
use crate::judge::stats;
use crate::results::KernelResult;
use crate::version::Version;

/// One aspect of an experiment's behaviour, as compared across kernels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Aspect {
    pub value: String,
    /// A borderline statistic (a p-value between the "even" and "uneven" thresholds, a cost ratio
    /// between flat and growing) is not firm, and a change to or from it is not a change.
    pub firm: bool,
}

/// An experiment's observable behaviour on one kernel, by aspect name. A record that measured
/// the environment rather than the kernel (an address that was not configured, a TIME_WAIT table
/// that overflowed) carries the
/// [`ENVIRONMENT`] aspect saying why, and is never compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Signature(pub BTreeMap<String, Aspect>);

/// The aspect that marks a signature as a measurement of the environment.
pub const ENVIRONMENT: &str = "environment";

/// Uniformity is judged "even" above this p-value and "uneven" below [`UNEVEN_P`]; between the two
/// it is borderline. The gap keeps chance fluctuations from showing up as behaviour changes.
pub const EVEN_P: f64 = 1e-3;
pub const UNEVEN_P: f64 = 1e-6;
/// Cost growth (largest group over a group of one) at or below this is flat, at or above
/// [`GROWS_RATIO`] it grows.
pub const FLAT_RATIO: f64 = 2.0;
pub const GROWS_RATIO: f64 = 4.0;

impl Signature {
    fn firm(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(
            name.to_owned(),
            Aspect {
                value: value.into(),
                firm: true,
            },
        );
    }

    fn soft(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(
            name.to_owned(),
            Aspect {
                value: value.into(),
                firm: false,
            },
        );
    }

    /// The aspects that differ firmly between `self` (before) and `other` (after).
    pub fn changes_to(&self, other: &Signature) -> Vec<AspectChange> {
        if self.0.contains_key(ENVIRONMENT) || other.0.contains_key(ENVIRONMENT) {
            return Vec::new();
        }
        let mut names: Vec<&String> = self.0.keys().chain(other.0.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| {
                let before = self.0.get(name);
                let after = other.0.get(name);
                let differs = match (before, after) {
                    (Some(b), Some(a)) => b.firm && a.firm && b.value != a.value,
                    (Some(only), None) | (None, Some(only)) => only.firm,
                    (None, None) => false,
                };
                differs.then(|| AspectChange {
                    aspect: name.clone(),
                    before: before.map_or_else(|| "absent".into(), |a| a.value.clone()),
                    after: after.map_or_else(|| "absent".into(), |a| a.value.clone()),
                })
            })
            .collect()
    }

    /// Whether any aspect is an unstable outcome (differing between repetitions).
    pub fn is_unstable(&self) -> bool {
        self.0.values().any(|a| a.value.starts_with("unstable("))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AspectChange {
    pub aspect: String,
    pub before: String,
    pub after: String,
}

/// Reduces one record to the behaviour it shows.
pub fn signature(record: &ExperimentRecord) -> Signature {
    let mut s = Signature::default();
    s.firm(
        "status",
        match &record.status {
            Status::Completed => "completed".to_string(),
            Status::Unsupported { .. } => "unsupported".to_string(),
            Status::Crashed { signal } => format!("crashed ({signal})"),
            Status::TimedOut { .. } => "timed out".to_string(),
            Status::Failed { .. } => "failed".to_string(),
        },
    );
    let family = record.id.split('.').next().unwrap_or_default();
    if let Some(why) = time_wait_overflowed(record) {
        s.soft(ENVIRONMENT, why);
    }
    // A socket call that answered with an errno no socket rule produces measured the
    // environment (`wire::errno`), and so did an experiment that failed to set itself up.
    if let Some(fault) = wire::errno::first_environment_fault(&record.facts) {
        s.soft(ENVIRONMENT, format!("{fault}: not socket semantics"));
    }
    if let Status::Failed { error } = &record.status {
        s.soft(ENVIRONMENT, format!("failed: {error}"));
    }
    for (name, fact) in &record.facts {
        match fact {
            // A bind that found its address missing says nothing about behaviour (see
            // `evaluate::is_bind_fact`), and neither does anything recorded after it.
            Fact::Outcomes(values)
                if is_bind_fact(name) && values.iter().any(|v| v == "EADDRNOTAVAIL") =>
            {
                s.soft(
                    ENVIRONMENT,
                    format!(
                        "{name} = {}: address not available",
                        stable_or_unstable(values)
                    ),
                );
                s.soft(name, stable_or_unstable(values))
            }
            Fact::Outcomes(values) => s.firm(name, stable_or_unstable(values)),
            // Which member got each flow depends on the boot's hash secret: never compared.
            Fact::Receivers(_) if matches!(family, "dist" | "steer" | "cost") => {}
            Fact::Receivers(values) => {
                if family == "lookup" {
                    s.firm(name, lookup_receivers(&record.id, values));
                } else {
                    s.firm(name, stable_or_unstable(values));
                }
            }
            Fact::Count(n) if family == "options" => s.firm(name, n.to_string()),
            Fact::Flag(b) => s.firm(name, b.to_string()),
            Fact::Text(t) if family == "options" => s.firm(name, t.clone()),
            _ => {}
        }
    }
    match family {
        "dist" => distribution_aspects(record, &mut s),
        "steer" => steering_aspects(record, &mut s),
        "cost" => cost_aspects(record, &mut s),
        "mcast" => {
            for (name, fact) in &record.facts {
                if let (Some(_), Fact::Counts(c)) = (name.strip_prefix("datagrams."), fact) {
                    let copies: Vec<u64> = c.iter().map(|&n| n.min(2)).collect();
                    let shown: Vec<String> = copies
                        .iter()
                        .map(|n| if *n >= 2 { "2+".into() } else { n.to_string() })
                        .collect();
                    s.firm(name, stable_or_unstable(&shown));
                }
            }
        }
        _ => {}
    }
    s
}

fn stable_or_unstable(values: &[String]) -> String {
    let mut d: Vec<&String> = values.iter().collect();
    d.sort();
    d.dedup();
    match d.as_slice() {
        [] => "none recorded".into(),
        [one] => (*one).clone(),
        _ => format!("unstable({})", counted(values).unwrap_or_default()),
    }
}

/// Receivers of a lookup probe, with the members of a reuseport group (sockets sharing one address
/// with SO_REUSEPORT) read as the group: which member gets a flow is hash luck, not behaviour.
fn lookup_receivers(id: &str, values: &[String]) -> String {
    let groups = wire::find(id)
        .and_then(|e| match e {
            wire::Experiment::Lookup(case) => Some(case.sockets()),
            _ => None,
        })
        .map(|sockets| {
            let mut by_addr: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
            for s in &sockets {
                if s.flags.reuse_port {
                    by_addr
                        .entry(format!("{}{}", s.addr, s.v6only))
                        .or_default()
                        .push(s.label);
                }
            }
            by_addr
                .into_values()
                .filter(|g| g.len() > 1)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let canonical: Vec<String> = values
        .iter()
        .map(|v| match groups.iter().find(|g| g.contains(&v.as_str())) {
            Some(g) => format!("group({})", g.join("|")),
            None => v.clone(),
        })
        .collect();
    stable_or_unstable(&canonical)
}

fn distribution_aspects(record: &ExperimentRecord, s: &mut Signature) {
    if let Some(Fact::Counts(counts)) = record.facts.get("counts") {
        uniformity(counts, s);
    }
    let count = |name: &str| match record.facts.get(name) {
        Some(Fact::Count(n)) => Some(*n),
        _ => None,
    };
    if let (Some(same), Some(flows)) = (count("repeat_same"), count("repeat_flows")) {
        if flows > 0 {
            s.firm(
                "sticky",
                if same == flows {
                    "sticky"
                } else {
                    "not sticky"
                },
            );
        }
    }
    if let Some(lost) = count("lost") {
        s.firm("lost", if lost == 0 { "none lost" } else { "some lost" });
    }
    for name in [
        "moved_after_close",
        "moved_after_join",
        "closed_flows_to_new",
    ] {
        if let Some(n) = count(name) {
            s.firm(name, if n == 0 { "none" } else { "some" });
        }
    }
}

fn uniformity(counts: &[u64], s: &mut Signature) {
    match stats::chi_square_uniform(counts) {
        None => s.firm("spread", "nothing to test"),
        Some(t) if t.p_value >= EVEN_P => s.firm("spread", "even"),
        Some(t) if t.p_value < UNEVEN_P => {
            let idle = counts.iter().filter(|&&c| c == 0).count();
            s.firm(
                "spread",
                if idle > 0 {
                    "uneven, some members idle"
                } else {
                    "uneven"
                },
            );
        }
        Some(_) => s.soft("spread", "borderline"),
    }
}

fn steering_aspects(record: &ExperimentRecord, s: &mut Signature) {
    let steered = match record.facts.get("steered") {
        Some(Fact::Count(n)) => *n,
        _ => return,
    };
    let expected: u64 = match record.facts.get("expected") {
        Some(Fact::Counts(c)) => c.iter().sum(),
        _ => return,
    };
    s.firm(
        "steering",
        if expected == 0 {
            "nothing to steer"
        } else if steered == expected {
            "all steered"
        } else if steered == 0 {
            "none steered"
        } else {
            "partly steered"
        },
    );
}

fn cost_aspects(record: &ExperimentRecord, s: &mut Signature) {
    if let Some(Fact::Counts(sizes)) = record.facts.get("sizes") {
        s.firm("sizes built", format!("{sizes:?}"));
    }
    if let Some(Fact::Numbers(ns)) = record.facts.get("ns_per_flow") {
        match stats::growth_over_first(ns) {
            Some(r) if r <= FLAT_RATIO => s.firm("cost", "flat"),
            Some(r) if r >= GROWS_RATIO => s.firm("cost", "grows with group size"),
            Some(_) => s.soft("cost", "borderline"),
            None => {}
        }
    }
}

/// Where an experiment's behaviour differs between two neighbouring measured kernels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangePoint {
    pub experiment: String,
    pub from: String,
    pub to: String,
    pub changes: Vec<AspectChange>,
    /// Either side is unstable: a change in stability, not necessarily in behaviour.
    pub involves_instability: bool,
    /// Claims whose change point lies between `from` and `to` and that read this experiment.
    pub claimed_by: Vec<String>,
    /// When the kernel on one side differs from both its neighbours, which agree with each
    /// other, that kernel: a property of one build (or of the host row's environment) rather
    /// than a change that stays.
    pub alone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ClaimedChangeVerdict {
    /// The behaviour changes between the last measured kernel below the version and the first at
    /// or above it.
    Agrees { from: String, to: String },
    /// Kernels on both sides were measured and the behaviour is the same.
    NotObserved { from: String, to: String },
    /// No measured kernel on one side of the version.
    NotObservable { why: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimedChangeOutcome {
    pub experiment: String,
    pub verdict: ClaimedChangeVerdict,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimedChange {
    pub claim: String,
    pub at: String,
    pub outcomes: Vec<ClaimedChangeOutcome>,
}

impl ClaimedChange {
    /// Agrees when the change shows in at least one of the claim's experiments; not observed when
    /// it shows in none though it could have; not observable otherwise.
    pub fn overall(&self) -> &'static str {
        if self
            .outcomes
            .iter()
            .any(|o| matches!(o.verdict, ClaimedChangeVerdict::Agrees { .. }))
        {
            "agrees"
        } else if self
            .outcomes
            .iter()
            .any(|o| matches!(o.verdict, ClaimedChangeVerdict::NotObserved { .. }))
        {
            "claimed change not observed"
        } else {
            "not observable here"
        }
    }
}

impl ClaimedChange {
    /// The outcomes grouped for people: `changes between 3.8 and 5.10: options.so_reuseport`,
    /// `no kernel below 3.9 was measured (7 experiments)`.
    pub fn detail(&self) -> String {
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for o in &self.outcomes {
            let key = match &o.verdict {
                ClaimedChangeVerdict::Agrees { from, to } => {
                    format!("changes between {from} and {to}")
                }
                ClaimedChangeVerdict::NotObserved { from, to } => {
                    format!("the same on {from} and {to}")
                }
                ClaimedChangeVerdict::NotObservable { why } => why.clone(),
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ids)) => ids.push(&o.experiment),
                None => groups.push((key, vec![&o.experiment])),
            }
        }
        groups
            .iter()
            .map(|(key, ids)| match ids.as_slice() {
                [one] => format!("{key}: {one}"),
                [first, ..] => format!("{key}: {} experiments (e.g. {first})", ids.len()),
                [] => key.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evolution {
    /// Measured kernels in version order (those with records).
    pub kernels: Vec<String>,
    /// Kernels that could not be measured, with the reason.
    pub unmeasured: Vec<(String, String)>,
    /// Every change point of every experiment, in catalogue order then version order.
    pub changes: Vec<ChangePoint>,
    pub claimed: Vec<ClaimedChange>,
}

impl Evolution {
    /// Lasting change points no claim accounts for: not instability, and not one kernel that
    /// differs from both neighbours.
    pub fn unclaimed(&self) -> impl Iterator<Item = &ChangePoint> {
        self.changes
            .iter()
            .filter(|c| c.claimed_by.is_empty() && !c.involves_instability && c.alone.is_none())
    }

    /// Change points where one kernel alone differs from its neighbours (counted once per pair).
    pub fn lone(&self) -> impl Iterator<Item = &ChangePoint> {
        self.changes
            .iter()
            .filter(|c| c.alone.as_deref() == Some(c.to.as_str()) && !c.involves_instability)
    }

    /// Change points grouped by where they happen and what changes, largest group first, so
    /// that 49 bind cells flipping the same way read as one line.
    pub fn groups(&self) -> Vec<ChangeGroup> {
        let mut groups: Vec<ChangeGroup> = Vec::new();
        for c in &self.changes {
            let what = c
                .changes
                .iter()
                .map(|a| format!("{}: {} → {}", a.aspect, a.before, a.after))
                .collect::<Vec<_>>()
                .join("; ");
            let family = c
                .experiment
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            match groups.iter_mut().find(|g| {
                g.from == c.from
                    && g.to == c.to
                    && g.what == what
                    && g.family == family
                    && g.claimed_by == c.claimed_by
                    && g.alone == c.alone
            }) {
                Some(g) => g.experiments.push(c.experiment.clone()),
                None => groups.push(ChangeGroup {
                    from: c.from.clone(),
                    to: c.to.clone(),
                    family,
                    what,
                    claimed_by: c.claimed_by.clone(),
                    involves_instability: c.involves_instability,
                    alone: c.alone.clone(),
                    experiments: vec![c.experiment.clone()],
                    pattern: String::new(),
                }),
            }
        }
        for g in &mut groups {
            g.pattern = sub_patterns(&g.experiments);
        }
        // Largest first; ties in matrix order.
        let order: Vec<&String> = self.kernels.iter().collect();
        let at = |k: &String| order.iter().position(|o| *o == k).unwrap_or(usize::MAX);
        groups.sort_by(|a, b| {
            b.experiments
                .len()
                .cmp(&a.experiments.len())
                .then(at(&a.from).cmp(&at(&b.from)))
        });
        groups
    }
}

/// Change points that happen between the same kernels, in one family, in the same way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeGroup {
    pub from: String,
    pub to: String,
    pub family: String,
    /// `b_bind: ok → EADDRINUSE; b_listen: ok → absent`.
    pub what: String,
    pub claimed_by: Vec<String>,
    pub involves_instability: bool,
    /// See [`ChangePoint::alone`].
    pub alone: Option<String>,
    pub experiments: Vec<String>,
    /// The experiments' ids summarised: up to four sub-groups (same first four id components),
    /// each as a [`common_pattern`] with its size.
    pub pattern: String,
}

/// Groups ids by their first four components and names each sub-group by its pattern, largest
/// first: `32 × bind.tcp.v6any+v4any.time-wait.*.*.*, 16 × …`.
pub fn sub_patterns(ids: &[String]) -> String {
    let mut subs: Vec<(String, Vec<String>)> = Vec::new();
    for id in ids {
        let key: String = id.split('.').take(4).collect::<Vec<_>>().join(".");
        match subs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(id.clone()),
            None => subs.push((key, vec![id.clone()])),
        }
    }
    subs.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    let mut parts: Vec<String> = subs
        .iter()
        .take(4)
        .map(|(_, v)| {
            if v.len() == 1 {
                v[0].clone()
            } else {
                format!("{} × {}", v.len(), common_pattern(v))
            }
        })
        .collect();
    if subs.len() > 4 {
        parts.push(format!(
            "{} more",
            subs[4..].iter().map(|(_, v)| v.len()).sum::<usize>()
        ));
    }
    parts.join(", ")
}

/// `bind.tcp.mapped-any+mapped-lo.listening.a-ra-rp.b-ra-rp.other-uid` and
/// `bind.tcp.v6any+v4any.listening.a-ra.b-ra.other-uid` give `bind.tcp.*.listening.*.*.other-uid`.
pub fn common_pattern(ids: &[String]) -> String {
    let split: Vec<Vec<&str>> = ids.iter().map(|id| id.split('.').collect()).collect();
    let Some(first) = split.first() else {
        return String::new();
    };
    if split.iter().any(|p| p.len() != first.len()) {
        return format!("{}.*", first[0]);
    }
    (0..first.len())
        .map(|i| {
            if split.iter().all(|p| p[i] == first[i]) {
                first[i]
            } else {
                "*"
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Finds every change point in the matrix and judges every claimed one.
pub fn analyse(results: &[KernelResult], claims: &ClaimSet) -> Evolution {
    let all = ordered(results);
    let (measured, unmeasured): (Vec<&KernelResult>, Vec<&KernelResult>) = all
        .into_iter()
        .partition(|k| !k.records.is_empty() && k.not_judgeable().is_none());
    let versions: Vec<Option<Version>> = measured.iter().map(|k| kernel_version(k)).collect();
    let signatures: Vec<BTreeMap<&str, Signature>> = measured
        .iter()
        .map(|k| {
            k.records
                .iter()
                .map(|r| (r.id.as_str(), signature(r)))
                .collect()
        })
        .collect();

    // Claimed change points, by experiment: (claim id, version).
    let mut claimed_at: BTreeMap<&str, Vec<(&str, &Version)>> = BTreeMap::new();
    for claim in &claims.claims {
        if let Some(at) = &claim.changes_at {
            for test in claim.tests() {
                for id in &test.resolved {
                    claimed_at
                        .entry(id.as_str())
                        .or_default()
                        .push((claim.id.as_str(), at));
                }
            }
        }
    }

    let mut changes = Vec::new();
    for experiment in wire::catalogue() {
        let id = experiment.id();
        let mut previous: Option<(usize, &Signature)> = None;
        for (k, sigs) in signatures.iter().enumerate() {
            let Some(sig) = sigs.get(id.as_str()) else {
                continue;
            };
            if let Some((p, before)) = previous {
                let diff = before.changes_to(sig);
                if !diff.is_empty() {
                    let claimed_by = claimed_at
                        .get(id.as_str())
                        .map(|cs| {
                            cs.iter()
                                .filter(|(_, at)| {
                                    between(versions[p].as_ref(), versions[k].as_ref(), at)
                                })
                                .map(|(c, _)| c.to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    changes.push(ChangePoint {
                        experiment: id.clone(),
                        from: measured[p].kernel.clone(),
                        to: measured[k].kernel.clone(),
                        changes: diff,
                        involves_instability: before.is_unstable() || sig.is_unstable(),
                        claimed_by,
                        alone: None,
                    });
                }
            }
            previous = Some((k, sig));
        }
    }
    mark_lone_kernels(&mut changes, &signatures, &measured);

    let claimed = claims
        .claims
        .iter()
        .filter_map(|claim| {
            let at = claim.changes_at.as_ref()?;
            let outcomes = claim
                .experiments()
                .into_iter()
                .map(|experiment| {
                    let verdict =
                        judge_claimed_change(&experiment, at, &measured, &versions, &signatures);
                    ClaimedChangeOutcome {
                        experiment,
                        verdict,
                    }
                })
                .collect();
            Some(ClaimedChange {
                claim: claim.id.clone(),
                at: at.to_string(),
                outcomes,
            })
        })
        .collect();

    Evolution {
        kernels: measured.iter().map(|k| k.kernel.clone()).collect(),
        unmeasured: unmeasured
            .iter()
            .map(|k| {
                let why = k
                    .not_judgeable()
                    .unwrap_or_else(|| format!("{}: no records", k.run.label()));
                (k.kernel.clone(), why)
            })
            .collect(),
        changes,
        claimed,
    }
}

/// Marks pairs of change points `a → b`, `b → c` of one experiment where `a` and `c` behave
/// alike: `b` alone differs.
fn mark_lone_kernels(
    changes: &mut [ChangePoint],
    signatures: &[BTreeMap<&str, Signature>],
    measured: &[&KernelResult],
) {
    let index = |kernel: &str| measured.iter().position(|k| k.kernel == kernel);
    for i in 1..changes.len() {
        let (left, right) = changes.split_at_mut(i);
        let (first, second) = (&mut left[i - 1], &mut right[0]);
        if first.experiment != second.experiment || first.to != second.from {
            continue;
        }
        let (Some(a), Some(c)) = (index(&first.from), index(&second.to)) else {
            continue;
        };
        let id = first.experiment.as_str();
        if signatures[a][id].changes_to(&signatures[c][id]).is_empty() {
            first.alone = Some(first.to.clone());
            second.alone = Some(second.from.clone());
        }
    }
}

/// `from < at <= to`.
fn between(from: Option<&Version>, to: Option<&Version>, at: &Version) -> bool {
    matches!((from, to), (Some(f), Some(t)) if f < at && at <= t)
}

fn judge_claimed_change(
    experiment: &str,
    at: &Version,
    measured: &[&KernelResult],
    versions: &[Option<Version>],
    signatures: &[BTreeMap<&str, Signature>],
) -> ClaimedChangeVerdict {
    let with_record: Vec<usize> = (0..measured.len())
        .filter(|&k| signatures[k].contains_key(experiment) && versions[k].is_some())
        .collect();
    let below = with_record
        .iter()
        .rev()
        .find(|&&k| versions[k].as_ref().is_some_and(|v| v < at));
    let above = with_record
        .iter()
        .find(|&&k| versions[k].as_ref().is_some_and(|v| v >= at));
    match (below, above) {
        (Some(&b), Some(&a)) => {
            let (from, to) = (measured[b].kernel.clone(), measured[a].kernel.clone());
            if signatures[b][experiment]
                .changes_to(&signatures[a][experiment])
                .is_empty()
            {
                ClaimedChangeVerdict::NotObserved { from, to }
            } else {
                ClaimedChangeVerdict::Agrees { from, to }
            }
        }
        (None, _) => ClaimedChangeVerdict::NotObservable {
            why: format!("no kernel below {at} was measured"),
        },
        (_, None) => ClaimedChangeVerdict::NotObservable {
            why: format!("no kernel at or above {at} was measured"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(
        results: &'a [KernelResult],
        kernel: &str,
        id: &str,
    ) -> Option<&'a ExperimentRecord> {
        results.iter().find(|k| k.kernel == kernel)?.record(id)
    }

    /// On the recorded 6.1 row a probe to 127.0.0.2 reached both members of the reuseport group
    /// across repetitions, on 7.2 always the same one: hash luck, not behaviour, so the
    /// signatures agree.
    #[test]
    fn reuseport_members_are_read_as_their_group() {
        let results = crate::judge::evaluate::fixtures::results();
        let id = "lookup.udp.plain-specific-beside-group";
        let sigs: Vec<Signature> = ["deb-6.1", "host", "deb-7.2"]
            .iter()
            .filter_map(|k| record(&results, k, id))
            .map(signature)
            .collect();
        assert!(sigs.len() >= 2, "fixtures lack {id}");
        for s in &sigs {
            assert_eq!(s.0["to.127.0.0.2"].value, "group(R1|R2)");
            assert!(sigs[0].changes_to(s).is_empty());
        }
    }

    /// Different boots give different counts; the signatures compare the statistics only.
    #[test]
    fn distribution_compares_statistics_not_counts() {
        let results = crate::judge::evaluate::fixtures::results();
        for id in ["dist.udp.v4.specific.n4", "dist.tcp.v6.wildcard.n16"] {
            let records: Vec<&ExperimentRecord> = ["deb-6.1", "host", "deb-7.2"]
                .iter()
                .filter_map(|k| record(&results, k, id))
                .collect();
            assert!(records.len() >= 2);
            assert_ne!(
                records[0].facts["counts"], records[1].facts["counts"],
                "identical counts in {id}?"
            );
            let (a, b) = (signature(records[0]), signature(records[1]));
            assert!(a.changes_to(&b).is_empty(), "{:?}", a.changes_to(&b));
            assert!(!a.0.contains_key("counts"));
            assert_eq!(a.0["spread"].value, "even");
        }
    }

    /// Repetitions that disagree are named with their counts. The recorded rows have no such
    /// bind cell (the two they had were TIME_WAIT cells measured as the TIME_WAIT table
    /// overflowed), so one real record gets disagreeing repetitions planted.
    #[test]
    fn unstable_outcomes_are_named() {
        let results = crate::judge::evaluate::fixtures::results();
        let id = "bind.tcp.v6any+v4any.time-wait.a-ra.b-none.other-uid";
        let mut planted = record(&results, "deb-6.1", id).unwrap().clone();
        assert!(!signature(&planted).is_unstable());
        planted.facts.insert(
            "b_bind".into(),
            Fact::Outcomes(vec!["EADDRINUSE".into(), "ok".into(), "ok".into()]),
        );
        let s = signature(&planted);
        assert!(s.is_unstable());
        assert_eq!(s.0["b_bind"].value, "unstable(EADDRINUSE x1, ok x2)");
    }

    #[test]
    fn patterns_star_the_differing_components() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            common_pattern(&ids(&[
                "bind.tcp.a+b.listening.a-ra.b-ra.other-uid",
                "bind.tcp.c+d.listening.a-rp.b-ra.other-uid"
            ])),
            "bind.tcp.*.listening.*.b-ra.other-uid"
        );
        assert_eq!(common_pattern(&ids(&["lookup.udp.x"])), "lookup.udp.x");
        assert_eq!(
            common_pattern(&ids(&[
                "dist.udp.v4.specific.n4",
                "dist.udp.v4.specific.n4.churn"
            ])),
            "dist.*"
        );
    }

    #[test]
    fn between_is_half_open() {
        let v = |s: &str| Version::parse_prefix(s).unwrap();
        assert!(between(Some(&v("3.8")), Some(&v("3.9")), &v("3.9")));
        assert!(between(Some(&v("3.8")), Some(&v("5.10")), &v("4.5")));
        assert!(!between(Some(&v("3.9")), Some(&v("5.10")), &v("3.9")));
        assert!(!between(None, Some(&v("5.10")), &v("3.9")));
    }

    #[test]
    fn claimed_change_points_on_the_recorded_matrix() {
        let results = crate::judge::evaluate::fixtures::results();
        let claims = crate::judge::evaluate::fixtures::claims();
        let evolution = analyse(&results, &claims);
        let added = evolution
            .claimed
            .iter()
            .find(|c| c.claim == "001.linux.reuseport-added-3.9")
            .expect("claimed change");
        let below: Vec<&KernelResult> = results
            .iter()
            .filter(|k| {
                !k.records.is_empty() && kernel_version(k).is_some_and(|v| v < Version(vec![3, 9]))
            })
            .collect();
        match &added.outcomes[0].verdict {
            ClaimedChangeVerdict::NotObservable { why } => {
                assert!(below.is_empty(), "{why}");
                assert!(why.contains("no kernel below 3.9 was measured"), "{why}");
            }
            ClaimedChangeVerdict::Agrees { .. } => assert!(!below.is_empty()),
            other => panic!("SO_REUSEPORT did not appear at 3.9: {other:?}"),
        }
        // Every change point lies between neighbours in version order.
        let order: Vec<&str> = evolution.kernels.iter().map(String::as_str).collect();
        for c in &evolution.changes {
            let (f, t) = (
                order.iter().position(|k| *k == c.from).unwrap(),
                order.iter().position(|k| *k == c.to).unwrap(),
            );
            assert!(f < t, "{c:?}");
            assert!(!c.changes.is_empty());
        }
    }

    /// Between Debian's 6.1 and 7.2 a TCP socket bound to ::ffff:127.0.0.1 by another user stops
    /// sharing a port with one on ::ffff:0.0.0.0 even with both options: no document says so, and
    /// the evolution names it as an unclaimed, lasting change. The host row's dual-stack
    /// TIME_WAIT cells differ from both Debian neighbours: marked as one kernel alone.
    #[test]
    fn unclaimed_and_lone_changes_on_the_recorded_matrix() {
        let results = crate::judge::evaluate::fixtures::results();
        let evolution = analyse(&results, &crate::judge::evaluate::fixtures::claims());
        for c in evolution.changes.iter().filter(|c| c.alone.is_some()) {
            let k = c.alone.as_deref().unwrap();
            assert!(k == c.from || k == c.to, "{c:?}");
        }
        let has = |k: &str| evolution.kernels.iter().any(|m| m == k);
        if has("deb-6.1") && has("deb-7.2") {
            let id = "bind.tcp.mapped-any+mapped-lo.listening.a-ra-rp.b-ra-rp.other-uid";
            let lasting: Vec<&ChangePoint> = evolution
                .unclaimed()
                .filter(|c| c.experiment == id)
                .collect();
            assert_eq!(
                lasting.len(),
                1,
                "{:?}",
                evolution
                    .changes
                    .iter()
                    .filter(|c| c.experiment == id)
                    .collect::<Vec<_>>()
            );
            assert_eq!(lasting[0].from, "deb-6.1");
            assert!(lasting[0]
                .changes
                .iter()
                .any(|a| a.aspect == "b_bind" && a.before == "ok" && a.after == "EADDRINUSE"));
        }
    }
}
