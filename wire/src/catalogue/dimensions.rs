//! Every experiment's setup as named dimensions — transport, addresses, the first socket's state,
//! the options of each socket, the user — so that a set of experiments can be described in the
//! domain's words ("TCP, A listening with SO_REUSEADDR+SO_REUSEPORT, B with SO_REUSEADDR only")
//! rather than as a list of ids. The harness finds the fewest dimensions that pick out exactly the
//! experiments that changed; because the dimensions come from the catalogue's own types, the
//! description stays true as the catalogue grows.

use super::{
    AutobindHow, BindCell, BindPort, CloseMode, ConnectCell, Destinations, Experiment, FirstState,
    GroupAddr, IpFamily, LookupCase, MulticastBind, MulticastCell, MulticastFlags, Relation,
    ReuseFlags, SteeringKind, TimeWaitCell, TimeWaitSide, Transport, Uid,
};

/// One dimension of an experiment's setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimension {
    /// Stable within the family: `transport`, `a`, `a.flags`.
    pub name: &'static str,
    /// The value as compared: `tcp`, `v4any`, `ra-rp`.
    pub value: String,
    /// How the value reads in a description: `TCP`, `A on 0.0.0.0`.
    pub words: String,
    /// For the reuse options of a socket: whose they are (`A`), so that sets of values read as
    /// "A with SO_REUSEPORT" (see [`describe_values`]).
    pub flags_of: Option<&'static str>,
}

fn plain(name: &'static str, value: &str, words: impl Into<String>) -> Dimension {
    Dimension {
        name,
        value: value.to_owned(),
        words: words.into(),
        flags_of: None,
    }
}

fn flags(name: &'static str, whose: &'static str, flags: ReuseFlags) -> Dimension {
    Dimension {
        name,
        value: flags.token().to_owned(),
        words: format!("{whose} {}", flags_words(flags)),
        flags_of: Some(whose),
    }
}

fn flags_words(flags: ReuseFlags) -> &'static str {
    match (flags.reuse_addr, flags.reuse_port) {
        (false, false) => "with no option",
        (true, false) => "with SO_REUSEADDR only",
        (false, true) => "with SO_REUSEPORT only",
        (true, true) => "with SO_REUSEADDR+SO_REUSEPORT",
    }
}

fn transport(t: Transport) -> Dimension {
    plain("transport", t.token(), t.token().to_uppercase())
}

fn family(f: IpFamily) -> Dimension {
    plain(
        "family",
        f.token(),
        match f {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        },
    )
}

/// How a set of values of one dimension reads: one value's words, a named set of reuse options
/// ("A with SO_REUSEPORT"), or the values' words joined by "or".
pub fn describe_values(values: &[&Dimension]) -> String {
    if let [one] = values {
        return one.words.clone();
    }
    if let Some(whose) = values.first().and_then(|d| d.flags_of) {
        let set: Vec<ReuseFlags> = values
            .iter()
            .filter_map(|d| ReuseFlags::ALL.into_iter().find(|f| f.token() == d.value))
            .collect();
        let all_with = |pick: fn(&ReuseFlags) -> bool, wanted: bool| {
            let members: Vec<ReuseFlags> = ReuseFlags::ALL
                .into_iter()
                .filter(|f| pick(f) == wanted)
                .collect();
            set.len() == members.len() && members.iter().all(|m| set.contains(m))
        };
        let named = if all_with(|f| f.reuse_addr, true) {
            Some("with SO_REUSEADDR")
        } else if all_with(|f| f.reuse_port, true) {
            Some("with SO_REUSEPORT")
        } else if all_with(|f| f.reuse_addr, false) {
            Some("without SO_REUSEADDR")
        } else if all_with(|f| f.reuse_port, false) {
            Some("without SO_REUSEPORT")
        } else if set.len() == 3 && !set.contains(&ReuseFlags::NONE) {
            Some("with at least one option")
        } else if set.len() == 3 && !set.contains(&ReuseFlags::BOTH) {
            Some("without both options together")
        } else {
            None
        };
        if let Some(named) = named {
            return format!("{whose} {named}");
        }
        let each: Vec<&str> = set.iter().map(|f| flags_words(*f)).collect();
        return format!("{whose} {}", each.join(" or "));
    }
    values
        .iter()
        .map(|d| d.words.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

impl Experiment {
    /// The experiment's setup as dimensions, in the order a description names them.
    pub fn dimensions(&self) -> Vec<Dimension> {
        match self {
            Experiment::Options(o) => vec![plain("option", &o.id_suffix(), o.name())],
            Experiment::Bind(c) => bind(c),
            Experiment::TimeWait(c) => time_wait(c),
            Experiment::Connect(c) => connect(c),
            Experiment::Multicast(c) => multicast(c),
            Experiment::Lookup(c) => lookup(c),
            Experiment::Distribution(c) => vec![
                transport(c.transport),
                family(c.family),
                plain(
                    "addr",
                    match c.addr {
                        GroupAddr::Specific => "specific",
                        GroupAddr::Wildcard => "wildcard",
                        GroupAddr::DualStack => "dual-stack",
                        GroupAddr::Mixed => "mixed",
                    },
                    match c.addr {
                        GroupAddr::Specific => "a group on the loopback address",
                        GroupAddr::Wildcard => "a group on the wildcard",
                        GroupAddr::DualStack => "a group on [::] dual-stack",
                        GroupAddr::Mixed => "a group of IPv4 and dual-stack IPv6 sockets",
                    },
                ),
                plain(
                    "members",
                    &c.members.to_string(),
                    format!("{} members", c.members),
                ),
                plain(
                    "churn",
                    if c.churn { "churn" } else { "steady" },
                    if c.churn {
                        "a member closed and one added"
                    } else {
                        "a steady group"
                    },
                ),
            ],
            Experiment::Steering(c) => vec![
                transport(c.transport),
                plain(
                    "kind",
                    match c.kind {
                        SteeringKind::Cbpf => "cbpf",
                        SteeringKind::IncomingCpu => "incoming-cpu",
                    },
                    match c.kind {
                        SteeringKind::Cbpf => "steered by a classic BPF program",
                        SteeringKind::IncomingCpu => "steered by SO_INCOMING_CPU",
                    },
                ),
                plain(
                    "addr",
                    if c.dual_stack {
                        "dual-stack"
                    } else {
                        "loopback"
                    },
                    if c.dual_stack {
                        "a group on [::] dual-stack"
                    } else {
                        "a group on 127.0.0.1"
                    },
                ),
            ],
            Experiment::LookupCost(c) => vec![transport(c.transport)],
            Experiment::Numbering(c) => vec![
                transport(c.transport),
                family(c.family),
                plain("kind", c.kind.token(), c.kind.what()),
            ],
            Experiment::Autobind(c) => vec![
                transport(c.transport),
                family(c.family),
                plain(
                    "how",
                    c.how.token(),
                    match c.how {
                        AutobindHow::SendUnbound => "sending from a socket never bound",
                        AutobindHow::ConnectUnbound => "connecting a socket never bound",
                        AutobindHow::ListenUnbound => "listening on a socket never bound",
                        AutobindHow::BindPortZero => "binding port 0",
                    },
                ),
            ],
            Experiment::Address(c) => vec![
                transport(c.transport),
                family(c.family),
                plain("kind", c.kind.token(), c.kind.what(c.family)),
            ],
            Experiment::Ephemeral(c) => vec![
                transport(c.transport),
                plain("kind", c.kind.token(), c.kind.what()),
            ],
            Experiment::DualStack(c) => vec![
                transport(c.transport),
                plain("kind", c.kind.token(), c.kind.what()),
            ],
            Experiment::TwSysctl(c) => vec![
                plain("sysctl", c.knob.token(), c.knob.sysctl()),
                plain(
                    "setting",
                    &c.setting_token(),
                    match c.setting {
                        None => "as a fresh namespace has it".to_owned(),
                        Some(v) => format!("set to {v}"),
                    },
                ),
            ],
            Experiment::SelfTest(t) => vec![plain("test", &t.id_suffix(), t.id_suffix())],
        }
    }
}

fn bind(c: &BindCell) -> Vec<Dimension> {
    vec![
        transport(c.transport),
        plain(
            "relation",
            match c.relation() {
                Relation::SameSpecific => "same-specific",
                Relation::DifferentSpecific => "different-specific",
                Relation::WildcardThenSpecific => "wildcard-then-specific",
                Relation::SpecificThenWildcard => "specific-then-wildcard",
                Relation::WildcardWildcard => "wildcard-wildcard",
            },
            match c.relation() {
                Relation::SameSpecific => "both on the same specific address",
                Relation::DifferentSpecific => "on two different specific addresses",
                Relation::WildcardThenSpecific => "A on a wildcard, B on a specific address",
                Relation::SpecificThenWildcard => "A on a specific address, B on a wildcard",
                Relation::WildcardWildcard => "both on wildcards",
            },
        ),
        plain(
            "sockets",
            match (c.a.is_inet6_socket(), c.b.is_inet6_socket()) {
                (false, false) => "inet",
                (true, true) => "inet6",
                (false, true) => "inet-then-inet6",
                (true, false) => "inet6-then-inet",
            },
            match (c.a.is_inet6_socket(), c.b.is_inet6_socket()) {
                (false, false) => "both IPv4 sockets",
                (true, true) => "both IPv6 sockets",
                (false, true) => "A an IPv4 socket, B an IPv6 one",
                (true, false) => "A an IPv6 socket, B an IPv4 one",
            },
        ),
        plain("a", c.a.token(), format!("A on {}", c.a.text())),
        plain("b", c.b.token(), format!("B on {}", c.b.text())),
        plain(
            "first",
            c.first.token(),
            match c.first {
                FirstState::Bound => "A bound",
                FirstState::Listening => "A listening",
                FirstState::Connected => "A connected",
                FirstState::TimeWait => "A in TIME_WAIT",
            },
        ),
        flags("a.flags", "A", c.a_flags),
        flags("b.flags", "B", c.b_flags),
        plain(
            "uid",
            c.uid.token(),
            match c.uid {
                Uid::Same => "B of the same user",
                Uid::Different => "B of another user",
                Uid::SameOtherProcess => "B of the same user in another process",
            },
        ),
        plain(
            "port",
            match c.port {
                BindPort::Same => "same-port",
                BindPort::Other => "other-port",
            },
            match c.port {
                BindPort::Same => "on the same port",
                BindPort::Other => "B on the next port",
            },
        ),
        plain(
            "when",
            if c.late { "late" } else { "before-bind" },
            if c.late {
                "A's options set after its bind"
            } else {
                "options set before bind"
            },
        ),
    ]
}

fn time_wait(c: &TimeWaitCell) -> Vec<Dimension> {
    vec![
        family(c.family),
        plain(
            "side",
            match c.side {
                TimeWaitSide::Client => "client",
                TimeWaitSide::Server => "server",
                TimeWaitSide::Passive => "passive",
            },
            match c.side {
                TimeWaitSide::Client => "TIME_WAIT left by a client",
                TimeWaitSide::Server => "TIME_WAIT left by a server",
                TimeWaitSide::Passive => "the old socket's peer closing first",
            },
        ),
        plain(
            "close",
            c.close.token(),
            match c.close {
                CloseMode::Close => "closed plainly",
                CloseMode::Unsent => "closed with unsent data",
                CloseMode::Linger0 => "closed with SO_LINGER 0",
                CloseMode::Linger2 => "closed with SO_LINGER 2 s",
                CloseMode::Exit => "its process exiting",
                CloseMode::Kill => "its process killed",
            },
        ),
        plain(
            "new",
            if c.new_wildcard {
                "to-wildcard"
            } else {
                "to-same"
            },
            if c.new_wildcard {
                "the new socket on the wildcard"
            } else {
                "the new socket on the same address"
            },
        ),
        flags("old.flags", "the old socket", c.old_flags),
        flags("new.flags", "the new socket", c.new_flags),
    ]
}

fn connect(c: &ConnectCell) -> Vec<Dimension> {
    vec![
        transport(c.transport),
        family(c.family),
        plain(
            "destinations",
            match c.destinations {
                Destinations::Same => "same-dest",
                Destinations::Different => "different-dest",
                Destinations::OtherAddress => "other-address",
            },
            match c.destinations {
                Destinations::Same => "connecting to the same destination",
                Destinations::Different => "connecting to different destinations",
                Destinations::OtherAddress => "connecting to one port on two addresses",
            },
        ),
        flags("flags", "both", c.flags),
        plain(
            "source",
            if c.bound { "bound" } else { "unbound" },
            if c.bound {
                "sharing a bound source address"
            } else {
                "neither bound"
            },
        ),
    ]
}

fn multicast(c: &MulticastCell) -> Vec<Dimension> {
    vec![
        plain(
            "bind",
            match c.bind {
                MulticastBind::Group => "group",
                MulticastBind::Wildcard => "wildcard",
            },
            match c.bind {
                MulticastBind::Group => "bound to the group address",
                MulticastBind::Wildcard => "bound to 0.0.0.0",
            },
        ),
        plain(
            "flags",
            c.flags.token(),
            match c.flags {
                MulticastFlags::AddrOnly => "all with SO_REUSEADDR only",
                MulticastFlags::PortOnly => "all with SO_REUSEPORT only",
                MulticastFlags::Both => "all with SO_REUSEADDR+SO_REUSEPORT",
                MulticastFlags::Mixed => "SO_REUSEADDR and SO_REUSEPORT mixed",
                MulticastFlags::Neither => "none with an option",
                MulticastFlags::FirstNone => "A without options, B and C with SO_REUSEADDR",
                MulticastFlags::LastNone => "A and B with SO_REUSEADDR, C without options",
                MulticastFlags::FirstNoneReuseport => {
                    "A without options, B and C with SO_REUSEPORT"
                }
            },
        ),
        plain(
            "uid",
            c.uid.token(),
            match c.uid {
                Uid::Same | Uid::SameOtherProcess => "all of one user",
                Uid::Different => "B of another user",
            },
        ),
    ]
}

fn lookup(c: &LookupCase) -> Vec<Dimension> {
    let sockets: Vec<String> = c
        .sockets()
        .iter()
        .map(|s| format!("{} on {}", s.label, super::display_addr(s.addr)))
        .collect();
    let scenario = c.id_suffix();
    let scenario = scenario.split_once('.').map_or("", |(_, s)| s).to_owned();
    vec![
        transport(c.transport),
        plain(
            "scenario",
            &scenario,
            format!("{} ({})", scenario, sockets.join(", ")),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_experiment_of_a_family_has_the_same_dimensions_and_distinct_values() {
        let mut by_family: std::collections::BTreeMap<String, Vec<Vec<Dimension>>> =
            Default::default();
        for e in super::super::catalogue() {
            by_family
                .entry(e.family().token().to_owned())
                .or_default()
                .push(e.dimensions());
        }
        for (family, all) in by_family {
            let names: Vec<&str> = all[0].iter().map(|d| d.name).collect();
            let mut seen = std::collections::HashSet::new();
            for dims in &all {
                assert_eq!(
                    dims.iter().map(|d| d.name).collect::<Vec<_>>(),
                    names,
                    "{family}"
                );
                let key: Vec<&str> = dims.iter().map(|d| d.value.as_str()).collect();
                assert!(seen.insert(key.join("/")), "{family}: {key:?} twice");
            }
        }
    }

    #[test]
    fn sets_of_reuse_options_read_as_the_option_they_share() {
        let dims: Vec<Dimension> = ReuseFlags::ALL
            .into_iter()
            .map(|f| flags("a.flags", "A", f))
            .collect();
        let pick = |tokens: &[&str]| -> Vec<&Dimension> {
            dims.iter()
                .filter(|d| tokens.contains(&d.value.as_str()))
                .collect()
        };
        assert_eq!(
            describe_values(&pick(&["rp", "ra-rp"])),
            "A with SO_REUSEPORT"
        );
        assert_eq!(
            describe_values(&pick(&["none", "ra"])),
            "A without SO_REUSEPORT"
        );
        assert_eq!(describe_values(&pick(&["ra"])), "A with SO_REUSEADDR only");
        assert_eq!(
            describe_values(&pick(&["none", "ra-rp"])),
            "A with no option or with SO_REUSEADDR+SO_REUSEPORT"
        );
    }
}
