//! Signatures: an experiment's behaviour on one kernel, reduced to what can be compared across
//! kernels and boots. The change model (`changes`), `diff`, `bisect` and `check` compare through
//! them.
//!
//! Behaviour is compared through a [`Signature`]: the outcome facts as stable values (or as
//! `unstable(...)`), and distribution, steering and cost facts reduced to statistics (even or
//! uneven, sticky or not, flat or growing). Raw member indexes and raw counts never enter a
//! signature: which member gets a flow depends on a per-boot random hash secret.

use std::collections::BTreeMap;

use serde::Serialize;
use wire::{ExperimentRecord, Fact, Status};

use crate::judge::evaluate::{counted, is_bind_fact, time_wait_overflowed};
use crate::judge::stats;

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

    /// Makes `name` soft: a change to or from it is then not a change.
    pub fn soften(&mut self, name: &str) {
        if let Some(aspect) = self.0.get_mut(name) {
            aspect.firm = false;
        }
    }

    /// Takes over every firm aspect of `later` (and the soft ones this lacks): the behaviour of
    /// a run of kernels as known so far, where a soft reading never overwrites a firm one.
    pub fn absorb(&mut self, later: &Signature) {
        for (name, aspect) in &later.0 {
            if aspect.firm || !self.0.contains_key(name) {
                self.0.insert(name.clone(), aspect.clone());
            }
        }
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
                // Two readings that both disagreed between repetitions say the same thing (the
                // cell is unstable), however often each value came up.
                let differs = match (before, after) {
                    (Some(b), Some(a))
                        if b.value.starts_with("unstable(") && a.value.starts_with("unstable(") =>
                    {
                        false
                    }
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

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
    // A kernel that lacks something answers with an errno, and the guest names it in the reason
    // ("setsockopt(IP_LOCAL_PORT_RANGE) = ENOPROTOOPT"); a reason without one is the row unable
    // to look (the host row's namespaces do not show a global sysctl), not the kernel.
    if let Status::Unsupported { reason } = &record.status {
        let names_errno = reason.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
            w.len() > 2 && w.starts_with('E') && w[1..].chars().all(|c| c.is_ascii_uppercase())
        });
        if !names_errno {
            s.soft(ENVIRONMENT, format!("unsupported here: {reason}"));
        }
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
            // In the group families an outcome list holds one value per member (SO_REUSEPORT,
            // bind, listen as the group was built), not repetitions: the list is the value.
            Fact::Outcomes(values) if matches!(family, "dist" | "steer" | "cost" | "numbering") => {
                let mut distinct: Vec<&str> = Vec::new();
                for v in values {
                    if !distinct.contains(&v.as_str()) {
                        distinct.push(v);
                    }
                }
                s.firm(name, distinct.join("/"))
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
        "numbering" => numbering_aspects(record, &mut s),
        // Where a sysctl lives (a copy per network namespace, or one in the initial namespace
        // that the guest set there) is how the cell was set up, not what it measured: shown,
        // never a change.
        "addr" | "ephemeral" | "v6only" | "twsys" => {
            s.soften("knob");
            s.soften("range_knob");
        }
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

/// A numbering experiment's fixed-index readings are deterministic member labels (compared as
/// outcomes, above); where a fallback spreads flows by hash, only the spread is compared.
fn numbering_aspects(record: &ExperimentRecord, s: &mut Signature) {
    for (name, fact) in &record.facts {
        match (name.as_str(), fact) {
            (_, Fact::Counts(counts)) => uniformity_as(name, counts, s),
            ("lost", Fact::Count(lost)) => {
                s.firm("lost", if *lost == 0 { "none lost" } else { "some lost" })
            }
            _ => {}
        }
    }
}

fn uniformity(counts: &[u64], s: &mut Signature) {
    uniformity_as("spread", counts, s)
}

fn uniformity_as(aspect: &str, counts: &[u64], s: &mut Signature) {
    match stats::chi_square_uniform(counts) {
        None => s.firm(aspect, "nothing to test"),
        Some(t) if t.p_value >= EVEN_P => s.firm(aspect, "even"),
        Some(t) if t.p_value < UNEVEN_P => {
            let idle = counts.iter().filter(|&&c| c == 0).count();
            s.firm(
                aspect,
                if idle > 0 {
                    "uneven, some members idle"
                } else {
                    "uneven"
                },
            );
        }
        Some(_) => s.soft(aspect, "borderline"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::KernelResult;

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

    /// A sysctl that became per network namespace changes where the guest sets it, not what the
    /// cell measures.
    #[test]
    fn where_a_sysctl_lives_is_no_change() {
        let record = |knob: &str| ExperimentRecord {
            seq: 1,
            id: "ephemeral.range.tcp".into(),
            status: Status::Completed,
            elapsed_us: 0,
            facts: [
                ("knob".to_string(), Fact::Outcomes(vec![knob.into()])),
                (
                    "failure".to_string(),
                    Fact::Outcomes(vec!["EADDRINUSE".into()]),
                ),
            ]
            .into_iter()
            .collect(),
        };
        let (old, new) = (
            signature(&record("global")),
            signature(&record("per-netns")),
        );
        assert!(old.changes_to(&new).is_empty());
        assert_eq!(new.0["knob"].value, "per-netns");
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
}
