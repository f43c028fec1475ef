//! The experiment catalogue: every experiment's stable id, its exact setup as data, and a one-line
//! description. The guest maps each [`Experiment`] to code with one exhaustive `match`; the harness
//! uses the same list to validate claims and to label reports without booting anything.
//!
//! Ids are dotted paths, family first (`bind.tcp.v4any+v4lo.listening.a-ra.b-ra.same-uid`), so a
//! prefix selects a family or any sub-tree of it.

mod address;
mod autobind;
mod bind;
mod connect;
mod cost;
mod dimensions;
mod distribution;
mod dual_stack;
mod ephemeral;
mod lookup;
mod multicast;
mod numbering;
mod options;
mod selftest;
mod time_wait;
mod tw_sysctl;

pub use address::{AddrCell, AddrError, AddrKind, NonlocalHow, Privilege};
pub use autobind::{AutobindCell, AutobindHow};
pub use bind::{address_pairs, BindAddr, BindCell, BindPort, FirstState, Relation};
pub use connect::{ConnectCell, Destinations};
pub use cost::{LookupCostCell, GROUP_SIZES};
pub use dimensions::{describe_values, Dimension};
pub use distribution::{DistributionCell, GroupAddr, SteeringCell, SteeringKind, FLOWS_PER_MEMBER};
pub use dual_stack::{AddrformPeer, DualStackCell, DualStackKind};
pub use ephemeral::{EphemeralCell, EphemeralKind, ExhaustedCall, SocketRange};
pub use lookup::{display as display_addr, LookupCase, LookupScenario, LookupSocket, DOC6};
pub use multicast::{MulticastBind, MulticastCell, MulticastFlags};
pub use numbering::{NumberingCell, NumberingKind};
pub use options::SockOpt;
pub use selftest::SelfTest;
pub use time_wait::{CloseMode, TimeWaitCell, TimeWaitSide};
pub use tw_sysctl::{TwKnob, TwSysctlCell};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Tcp, Transport::Udp];
    pub fn token(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn token(self) -> &'static str {
        match self {
            IpFamily::V4 => "v4",
            IpFamily::V6 => "v6",
        }
    }
}

/// SO_REUSEADDR and SO_REUSEPORT as set on one socket before its bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReuseFlags {
    pub reuse_addr: bool,
    pub reuse_port: bool,
}

impl ReuseFlags {
    pub const NONE: ReuseFlags = ReuseFlags {
        reuse_addr: false,
        reuse_port: false,
    };
    pub const ADDR: ReuseFlags = ReuseFlags {
        reuse_addr: true,
        reuse_port: false,
    };
    pub const PORT: ReuseFlags = ReuseFlags {
        reuse_addr: false,
        reuse_port: true,
    };
    pub const BOTH: ReuseFlags = ReuseFlags {
        reuse_addr: true,
        reuse_port: true,
    };
    pub const ALL: [ReuseFlags; 4] = [Self::NONE, Self::ADDR, Self::PORT, Self::BOTH];

    /// `none`, `ra`, `rp` or `ra-rp`.
    pub fn token(self) -> &'static str {
        match (self.reuse_addr, self.reuse_port) {
            (false, false) => "none",
            (true, false) => "ra",
            (false, true) => "rp",
            (true, true) => "ra-rp",
        }
    }

    pub fn describe(self) -> &'static str {
        match (self.reuse_addr, self.reuse_port) {
            (false, false) => "no reuse option",
            (true, false) => "SO_REUSEADDR",
            (false, true) => "SO_REUSEPORT",
            (true, true) => "SO_REUSEADDR+SO_REUSEPORT",
        }
    }
}

/// Whether the second socket is created by a process with the same effective UID as the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Uid {
    /// The same process, the same effective UID.
    Same,
    /// The same process with its effective UID switched to [`OTHER_UID`] for the second socket.
    Different,
    /// The same effective UID, in another process (a child forked for the second socket): the
    /// rule is about users, not processes.
    SameOtherProcess,
}

impl Uid {
    pub fn token(self) -> &'static str {
        match self {
            Uid::Same => "same-uid",
            Uid::Different => "other-uid",
            Uid::SameOtherProcess => "other-process",
        }
    }
}

/// The effective UID the guest switches to for "another user" (nobody).
pub const OTHER_UID: u32 = 65534;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Options,
    Bind,
    TimeWait,
    Connect,
    Multicast,
    Lookup,
    Distribution,
    Steering,
    LookupCost,
    Autobind,
    Numbering,
    Address,
    Ephemeral,
    DualStack,
    TwSysctl,
    SelfTest,
}

impl Family {
    pub const ALL: [Family; 16] = [
        Family::Options,
        Family::Bind,
        Family::TimeWait,
        Family::Connect,
        Family::Multicast,
        Family::Lookup,
        Family::Distribution,
        Family::Steering,
        Family::LookupCost,
        Family::Autobind,
        Family::Numbering,
        Family::Address,
        Family::Ephemeral,
        Family::DualStack,
        Family::TwSysctl,
        Family::SelfTest,
    ];

    /// The id prefix of the family.
    pub fn token(self) -> &'static str {
        match self {
            Family::Options => "options",
            Family::Bind => "bind",
            Family::TimeWait => "tw",
            Family::Connect => "connect",
            Family::Multicast => "mcast",
            Family::Lookup => "lookup",
            Family::Distribution => "dist",
            Family::Steering => "steer",
            Family::LookupCost => "cost",
            Family::Autobind => "autobind",
            Family::Numbering => "numbering",
            Family::Address => "addr",
            Family::Ephemeral => "ephemeral",
            Family::DualStack => "v6only",
            Family::TwSysctl => "twsys",
            Family::SelfTest => "selftest",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Family::Options => "Option support",
            Family::Bind => "The bind matrix",
            Family::TimeWait => "Rebinding over TIME_WAIT",
            Family::Connect => "connect() collisions",
            Family::Multicast => "Multicast",
            Family::Lookup => "Which socket a lookup picks",
            Family::Distribution => "SO_REUSEPORT load distribution",
            Family::Steering => "Steering a reuseport group",
            Family::LookupCost => "Lookup cost against group size",
            Family::Autobind => "Automatic binding and port 0",
            Family::Numbering => "How a reuseport group numbers its members",
            Family::Address => "Which addresses bind() accepts, and its errors",
            Family::Ephemeral => "The ephemeral port range",
            Family::DualStack => "IPv6 sockets and IPv4 traffic",
            Family::TwSysctl => "The TIME_WAIT sysctls",
            Family::SelfTest => "Guest self-tests (never in a default run)",
        }
    }
}

/// One experiment with its complete setup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Experiment {
    Options(SockOpt),
    Bind(BindCell),
    TimeWait(TimeWaitCell),
    Connect(ConnectCell),
    Multicast(MulticastCell),
    Lookup(LookupCase),
    Distribution(DistributionCell),
    Steering(SteeringCell),
    LookupCost(LookupCostCell),
    Autobind(AutobindCell),
    Numbering(NumberingCell),
    Address(AddrCell),
    Ephemeral(EphemeralCell),
    DualStack(DualStackCell),
    TwSysctl(TwSysctlCell),
    SelfTest(SelfTest),
}

impl Experiment {
    pub fn family(&self) -> Family {
        match self {
            Experiment::Options(_) => Family::Options,
            Experiment::Bind(_) => Family::Bind,
            Experiment::TimeWait(_) => Family::TimeWait,
            Experiment::Connect(_) => Family::Connect,
            Experiment::Multicast(_) => Family::Multicast,
            Experiment::Lookup(_) => Family::Lookup,
            Experiment::Distribution(_) => Family::Distribution,
            Experiment::Steering(_) => Family::Steering,
            Experiment::LookupCost(_) => Family::LookupCost,
            Experiment::Autobind(_) => Family::Autobind,
            Experiment::Numbering(_) => Family::Numbering,
            Experiment::Address(_) => Family::Address,
            Experiment::Ephemeral(_) => Family::Ephemeral,
            Experiment::DualStack(_) => Family::DualStack,
            Experiment::TwSysctl(_) => Family::TwSysctl,
            Experiment::SelfTest(_) => Family::SelfTest,
        }
    }

    pub fn id(&self) -> String {
        let rest = match self {
            Experiment::Options(o) => o.id_suffix(),
            Experiment::Bind(c) => c.id_suffix(),
            Experiment::TimeWait(c) => c.id_suffix(),
            Experiment::Connect(c) => c.id_suffix(),
            Experiment::Multicast(c) => c.id_suffix(),
            Experiment::Lookup(c) => c.id_suffix(),
            Experiment::Distribution(c) => c.id_suffix(),
            Experiment::Steering(c) => c.id_suffix(),
            Experiment::LookupCost(c) => c.id_suffix(),
            Experiment::Autobind(c) => c.id_suffix(),
            Experiment::Numbering(c) => c.id_suffix(),
            Experiment::Address(c) => c.id_suffix(),
            Experiment::Ephemeral(c) => c.id_suffix(),
            Experiment::DualStack(c) => c.id_suffix(),
            Experiment::TwSysctl(c) => c.id_suffix(),
            Experiment::SelfTest(c) => c.id_suffix(),
        };
        format!("{}.{rest}", self.family().token())
    }

    /// One line saying what is set up and what is recorded.
    pub fn describe(&self) -> String {
        match self {
            Experiment::Options(o) => o.describe(),
            Experiment::Bind(c) => c.describe(),
            Experiment::TimeWait(c) => c.describe(),
            Experiment::Connect(c) => c.describe(),
            Experiment::Multicast(c) => c.describe(),
            Experiment::Lookup(c) => c.describe(),
            Experiment::Distribution(c) => c.describe(),
            Experiment::Steering(c) => c.describe(),
            Experiment::LookupCost(c) => c.describe(),
            Experiment::Autobind(c) => c.describe(),
            Experiment::Numbering(c) => c.describe(),
            Experiment::Address(c) => c.describe(),
            Experiment::Ephemeral(c) => c.describe(),
            Experiment::DualStack(c) => c.describe(),
            Experiment::TwSysctl(c) => c.describe(),
            Experiment::SelfTest(c) => c.describe(),
        }
    }

    /// The guest kills an experiment's worker after this long.
    pub fn budget_ms(&self) -> u64 {
        match self {
            Experiment::Distribution(_)
            | Experiment::Steering(_)
            | Experiment::LookupCost(_)
            | Experiment::Numbering(_) => 30_000,
            Experiment::SelfTest(_) => 2_000,
            // Waits of 2.1 s and 3 s, and TIME_WAIT sockets made one by one.
            Experiment::TwSysctl(_) => 15_000,
            // A network namespace per cell, and up to forty sockets per repetition.
            Experiment::Ephemeral(_) => 10_000,
            _ => 5_000,
        }
    }
}

/// Every experiment a default run performs, in run order. Self-tests are not in it.
pub fn catalogue() -> Vec<Experiment> {
    let mut all = Vec::new();
    all.extend(options::all().into_iter().map(Experiment::Options));
    all.extend(bind::all().into_iter().map(Experiment::Bind));
    all.extend(time_wait::all().into_iter().map(Experiment::TimeWait));
    all.extend(connect::all().into_iter().map(Experiment::Connect));
    all.extend(multicast::all().into_iter().map(Experiment::Multicast));
    all.extend(lookup::all().into_iter().map(Experiment::Lookup));
    all.extend(
        distribution::all()
            .into_iter()
            .map(Experiment::Distribution),
    );
    all.extend(
        distribution::all_steering()
            .into_iter()
            .map(Experiment::Steering),
    );
    all.extend(cost::all().into_iter().map(Experiment::LookupCost));
    all.extend(autobind::all().into_iter().map(Experiment::Autobind));
    all.extend(numbering::all().into_iter().map(Experiment::Numbering));
    all.extend(address::all().into_iter().map(Experiment::Address));
    all.extend(ephemeral::all().into_iter().map(Experiment::Ephemeral));
    all.extend(dual_stack::all().into_iter().map(Experiment::DualStack));
    all.extend(tw_sysctl::all().into_iter().map(Experiment::TwSysctl));
    all
}

fn with_self_tests() -> Vec<Experiment> {
    let mut all = catalogue();
    all.extend(selftest::all().into_iter().map(Experiment::SelfTest));
    all
}

/// Finds an experiment by exact id, self-tests included.
pub fn find(id: &str) -> Option<Experiment> {
    with_self_tests().into_iter().find(|e| e.id() == id)
}

/// Whether `id` matches `pattern`, where `*` matches any run of characters (dots included) and
/// everything else matches itself.
pub fn glob_matches(pattern: &str, id: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == id;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if id.len() < first.len() + last.len() || !id.starts_with(first) || !id.ends_with(last) {
        return false;
    }
    let mut rest = &id[first.len()..id.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Resolves selection patterns, in catalogue order. A pattern is `all`, an exact id (that
/// experiment alone, even where other ids continue it: `steer.incoming-cpu.udp` is not
/// `steer.incoming-cpu.udp.dual-stack`), an id prefix ending at a dot boundary (`bind` or
/// `bind.tcp`), or a glob (`bind.tcp.*.time-wait.*`).
/// Self-tests run only when a pattern names them. Returns the patterns that matched nothing as
/// the error.
pub fn select(patterns: &[String]) -> Result<Vec<Experiment>, Vec<String>> {
    if patterns.is_empty() {
        return Ok(catalogue());
    }
    let everything = with_self_tests();
    let ids: Vec<String> = everything.iter().map(Experiment::id).collect();
    let exact: std::collections::HashSet<String> = ids.iter().cloned().collect();
    let matches = |pattern: &str, id: &str, exp: &Experiment| -> bool {
        if pattern == "all" {
            return exp.family() != Family::SelfTest;
        }
        if pattern.contains('*') {
            return glob_matches(pattern, id)
                && (exp.family() != Family::SelfTest || pattern.starts_with("selftest"));
        }
        id == pattern
            || (!exact.contains(pattern)
                && id.starts_with(pattern)
                && (pattern.ends_with('.') || id.as_bytes().get(pattern.len()) == Some(&b'.')))
    };
    let unmatched: Vec<String> = patterns
        .iter()
        .filter(|p| !everything.iter().zip(&ids).any(|(e, id)| matches(p, id, e)))
        .cloned()
        .collect();
    if !unmatched.is_empty() {
        return Err(unmatched);
    }
    Ok(everything
        .into_iter()
        .zip(ids)
        .filter(|(e, id)| patterns.iter().any(|p| matches(p, id, e)))
        .map(|(e, _)| e)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_round_trip() {
        let all = with_self_tests();
        let mut seen = HashSet::new();
        for e in &all {
            let id = e.id();
            assert!(seen.insert(id.clone()), "duplicate id {id}");
            assert!(!id.contains(' ') && !id.contains("::"), "bad id {id}");
            assert!(!e.describe().is_empty());
        }
    }

    #[test]
    fn globs() {
        assert!(glob_matches(
            "bind.*.same-uid",
            "bind.tcp.v4lo+v4lo.bound.a-rp.b-rp.same-uid"
        ));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxcyyb"));
        assert!(!glob_matches("ab*ba", "aba"));
        assert!(glob_matches("options.so_reuseport", "options.so_reuseport"));
        assert!(!glob_matches("options.so_reuse", "options.so_reuseport"));
    }

    #[test]
    fn selection_is_by_dotted_prefix() {
        let bind = select(&["bind.tcp".into()]).unwrap();
        assert!(!bind.is_empty());
        assert!(bind.iter().all(|e| e.id().starts_with("bind.tcp.")));
        assert_eq!(select(&["bin".into()]), Err(vec!["bin".to_string()]));
        let all = select(&["all".into()]).unwrap();
        assert_eq!(all, catalogue());
        assert!(select(&["selftest.crash".into()]).unwrap().len() == 1);
        // An exact id is that experiment alone, though another id continues it.
        let one = select(&["steer.incoming-cpu.udp".into()]).unwrap();
        assert_eq!(
            one.iter().map(Experiment::id).collect::<Vec<_>>(),
            ["steer.incoming-cpu.udp"]
        );
        assert_eq!(select(&["steer.incoming-cpu".into()]).unwrap().len(), 4);
        // The main matrix only: its ids end in the uid (`.other-port` and `.late` cells do not).
        let tw = select(&["bind.tcp.*.time-wait.*-uid".into()]).unwrap();
        assert_eq!(tw.len(), address_pairs().len() * 16 * 2);
        assert!(tw.iter().all(|e| e.id().contains(".time-wait.")));
        assert!(select(&["*".into()])
            .unwrap()
            .iter()
            .all(|e| e.family() != Family::SelfTest));
    }
}
