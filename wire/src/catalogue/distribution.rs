//! SO_REUSEPORT load distribution, and steering a group with BPF or SO_INCOMING_CPU.
//!
//! Distribution facts: `bind` (Outcomes: per member, setsockopt+bind+listen), `counts` (Counts:
//! flows received per member, in bind order), `flows` (Count: flows sent), `lost` (Count: flows
//! nobody received), `repeat_flows` (Count: flows re-sent from the same 4-tuple), `repeat_same`
//! (Count: of those, how many landed on the same member every time). Churn cells add
//! `moved_after_close` and `moved_after_join` (Count: flows, among those not owned by the closed
//! member, that changed member), `closed_flows_to_new` (Count) and `tracked_flows` (Count).
//!
//! Steering facts: `attach` (Outcomes), `counts` (Counts per member), `expected` (Counts: what
//! perfect steering would give), `steered` (Count: flows that landed where the steering said).

use serde::{Deserialize, Serialize};

use super::{IpFamily, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAddr {
    /// 127.0.0.1 or [::1].
    Specific,
    /// 0.0.0.0 or [::].
    Wildcard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DistributionCell {
    pub transport: Transport,
    pub family: IpFamily,
    pub addr: GroupAddr,
    pub members: u32,
    /// Close one member and add a new one, and record how the flow mapping moves.
    pub churn: bool,
}

/// Flows sent per member: enough for the chi-square test to see a 2:1 imbalance.
pub const FLOWS_PER_MEMBER: u32 = 48;

impl DistributionCell {
    pub fn flows(&self) -> u32 {
        self.members * FLOWS_PER_MEMBER
    }

    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}.{}.n{}{}",
            self.transport.token(),
            self.family.token(),
            match self.addr {
                GroupAddr::Specific => "specific",
                GroupAddr::Wildcard => "wildcard",
            },
            self.members,
            if self.churn { ".churn" } else { "" }
        )
    }

    pub(super) fn describe(&self) -> String {
        let what = if self.churn {
            "map flows, close a member, map again, add a member, map again; record how many flows moved".to_string()
        } else {
            format!("send {} {} from distinct source ports; record per-member counts and whether a repeated 4-tuple sticks", self.flows(), match self.transport {
                Transport::Tcp => "connections",
                Transport::Udp => "datagrams",
            })
        };
        format!(
            "{}/{}: {} SO_REUSEPORT sockets on the {} address; {}",
            self.transport.token().to_uppercase(),
            self.family.token(),
            self.members,
            match self.addr {
                GroupAddr::Specific => "loopback",
                GroupAddr::Wildcard => "wildcard",
            },
            what
        )
    }
}

pub(super) fn all() -> Vec<DistributionCell> {
    let mut cells = Vec::new();
    for transport in Transport::ALL {
        for family in [IpFamily::V4, IpFamily::V6] {
            for addr in [GroupAddr::Specific, GroupAddr::Wildcard] {
                for members in [2, 4, 8, 16] {
                    cells.push(DistributionCell {
                        transport,
                        family,
                        addr,
                        members,
                        churn: false,
                    });
                }
            }
        }
        cells.push(DistributionCell {
            transport,
            family: IpFamily::V4,
            addr: GroupAddr::Specific,
            members: 4,
            churn: true,
        });
    }
    cells
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SteeringKind {
    /// SO_ATTACH_REUSEPORT_CBPF with a program that picks the member named by the first payload
    /// byte (UDP) or by the source port (TCP).
    Cbpf,
    /// Members set SO_INCOMING_CPU to 0 and 1; senders pinned to each CPU in turn.
    IncomingCpu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SteeringCell {
    pub transport: Transport,
    pub kind: SteeringKind,
}

impl SteeringCell {
    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}",
            match self.kind {
                SteeringKind::Cbpf => "cbpf",
                SteeringKind::IncomingCpu => "incoming-cpu",
            },
            self.transport.token()
        )
    }

    pub(super) fn describe(&self) -> String {
        match self.kind {
            SteeringKind::Cbpf => format!(
                "{}: a 4-member SO_REUSEPORT group with a classic BPF program attached that names the member per flow; record how many flows it really steered",
                self.transport.token().to_uppercase()
            ),
            SteeringKind::IncomingCpu => format!(
                "{}: a 2-member SO_REUSEPORT group whose members set SO_INCOMING_CPU 0 and 1; senders pinned to each CPU; record which member each CPU's flows reach",
                self.transport.token().to_uppercase()
            ),
        }
    }
}

pub(super) fn all_steering() -> Vec<SteeringCell> {
    let mut cells = Vec::new();
    for kind in [SteeringKind::Cbpf, SteeringKind::IncomingCpu] {
        for transport in Transport::ALL {
            cells.push(SteeringCell { transport, kind });
        }
    }
    cells
}
