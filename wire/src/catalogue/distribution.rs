//! SO_REUSEPORT load distribution, and steering a group with BPF or SO_INCOMING_CPU.
//!
//! Every flow comes from its own client socket bound to the loopback address of the group's family
//! (127.0.0.1 or ::1) on a source port the kernel chose and the experiment never used before; a
//! flow is a UDP datagram or a TCP connection to the group's port on that loopback address. The
//! member a flow reached is found by polling the members and reading the source port from
//! `recvfrom`/`accept`. TCP clients and accepted connections close with SO_LINGER 0 (no
//! TIME_WAIT). Members are labelled `m0`, `m1`, ... in join order; IPv6 members are IPV6_V6ONLY.
//!
//! Distribution facts (every cell):
//! - `reuseport`, `bind` (Outcomes, one per member in join order: setsockopt(SO_REUSEPORT, 1) and
//!   bind), `listen` (Outcomes per member, TCP only). Building stops at the first member that
//!   cannot bind or listen (3.8: `ENOPROTOOPT` then `EADDRINUSE`); the status is then
//!   `unsupported` and these are the only facts.
//! - `flows` (Count: flows sent), `counts` (Counts: flows received per member, in join order),
//!   `lost` (Count: flows nobody received), `send_failed` (Count: of the lost, those whose
//!   sendto/connect failed at once).
//!
//! Spread cells (`churn: false`) add the repeat test: the first [`DistributionCell::REPEAT_FLOWS`]
//! flows are sent again [`DistributionCell::REPEAT_ROUNDS`] more times from the same 4-tuple (UDP:
//! the same client socket; TCP: a new client bound to the same source port with SO_REUSEADDR).
//! - `repeat_flows` (Count), `repeat_same` (Count: of those, the flows that reached the same member
//!   in the first sending and in every repetition; a lost repetition counts as different).
//!
//! Churn cells (`churn: true`) map every flow three times from the same 4-tuples: with the full
//! group, after member [`DistributionCell::CLOSED_MEMBER`] is closed, and after a new member (the
//! next label, `m4` for a group of 4) has joined. `counts`, `lost` and `send_failed` describe the
//! first mapping; `flows` is the number of flows per mapping.
//! - `map_initial`, `map_after_close`, `map_after_join` (Receivers: the member label per flow, in
//!   sending order; `none` when lost), `join` (Outcomes: setsockopt, bind and, TCP, listen of the
//!   new member; when it cannot join, `map_after_join` is missing and the status `unsupported`).
//! - `tracked_flows` (Count: flows whose initial member was not the closed one),
//!   `moved_after_close` (Count: of those, the flows received by another member than initially
//!   after the close), `moved_after_join` (Count: of those, the flows received by another member
//!   than initially after the join), `closed_flows_to_new` (Count: flows initially on the closed
//!   member that reached the new member after the join).
//!
//! Steering, `cbpf` (a 4-member group on 127.0.0.1; the program is attached to `m0` after the
//! group is built). The kernel runs a reuseport program with the packet's data pointer advanced
//! past the transport header, so for UDP offset 0 is the first payload byte, while a TCP SYN has
//! no payload at all; the TCP program therefore reads the source port relative to the network
//! header (`SKF_NET_OFF + 20`) and names member `(sport >> 1) & 3` (bit 0 is skipped because
//! kernels that prefer odd ports for bind(0) would leave it constant). The UDP program names member
//! `payload[0]`, and flow `i` carries the byte `i % 4`.
//! - `reuseport`, `bind`, `listen` as above.
//! - `attach` (Outcomes: setsockopt(SO_ATTACH_REUSEPORT_CBPF) with the probe program, then with
//!   the steering program; ends the experiment as `unsupported` when the first fails).
//! - `probe_counts` (Counts per member for [`SteeringCell::PROBE_FLOWS`] flows under the probe
//!   program `ld len; jeq #0 → ret #0; ret #1`: all on `m0` means the program saw an empty packet,
//!   all on `m1` a non-empty one).
//! - `flows` (Count), `counts` (Counts per member), `expected` (Counts: what perfect steering would
//!   give), `steered` (Count: flows that reached the member the program named), `lost` (Count).
//!
//! Steering, `incoming-cpu` (a 2-member group on 127.0.0.1; `m0` sets SO_INCOMING_CPU 0 and `m1`
//! sets 1, after SO_REUSEPORT and before bind). The sender pins itself to CPU 0, sends
//! [`SteeringCell::FLOWS_PER_CPU`] flows, then pins itself to CPU 1 and sends as many again;
//! loopback delivers in the sender's context, so each flow is looked up on the sender's CPU. Needs
//! CPUs 0 and 1 in the guest's affinity mask, otherwise `unsupported` with no facts. (Why it is
//! worth measuring: SO_INCOMING_CPU only raises a socket's score in the lookup, and from 4.6 the
//! reuseport fast path picked a member by hash without looking at scores, until "soreuseport: Fix
//! socket selection for SO_INCOMING_CPU" made the group prefer members of the current CPU in 6.2;
//! Debian's 6.1 (a 6.1.y stable kernel) steers too, so the version alone does not say which
//! behaviour a kernel has.)
//! - `reuseport`, `bind`, `listen` as above; `attach` (Outcomes: the SO_INCOMING_CPU setsockopt
//!   per member; a failure ends the experiment as `unsupported` after the group is built).
//! - `affinity` (Outcomes: sched_setaffinity to CPU 0, then to CPU 1), `ran_on` (Counts: the CPU
//!   getcpu() reported after each pinning).
//! - `cpu0_counts`, `cpu1_counts` (Counts per member: flows sent from that CPU), `counts` (Counts
//!   per member: both CPUs together), `expected` (Counts: what perfect steering would give, the
//!   flows of CPU i on member i), `steered` (Count: flows that reached the member whose
//!   SO_INCOMING_CPU is the sending CPU), `flows` (Count: both CPUs together), `lost` (Count).
//!
//! Both steering kinds thus share `attach`, `counts`, `expected` and `steered`.

use serde::{Deserialize, Serialize};

use super::{IpFamily, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAddr {
    /// 127.0.0.1 or [::1].
    Specific,
    /// 0.0.0.0, or [::] IPV6_V6ONLY.
    Wildcard,
    /// IPv6 only: [::] with IPV6_V6ONLY off, as a plain IPv6 server is by default; flows come
    /// from 127.0.0.1 (IPv4-mapped) and [::1] in turn.
    DualStack,
    /// IPv4 flows into a group of half AF_INET members on 0.0.0.0 and half dual-stack AF_INET6
    /// members on [::] (IPV6_V6ONLY off), in turns: one port, two kinds of socket.
    Mixed,
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

/// Flows sent per member, with at least [`MIN_FLOWS`] per cell. At alpha 0.001 the chi-square
/// test against uniform then finds a 2:1 imbalance (half the members receiving twice as many flows
/// as the other half) with power >= 0.93 for every group size (2: 0.98, 4: 0.94, 8: 0.99, 16: 1.0),
/// and one member receiving a double share with power >= 0.83; a group where one member takes
/// everything is found with certainty.
pub const FLOWS_PER_MEMBER: u32 = 48;

/// The fewest flows a distribution cell sends, so that groups of 2 and 4 get the same power.
pub const MIN_FLOWS: u32 = 256;

impl DistributionCell {
    /// Flows re-sent from the same 4-tuple in spread cells.
    pub const REPEAT_FLOWS: u32 = 16;
    /// How many more times each of those is sent.
    pub const REPEAT_ROUNDS: u32 = 3;
    /// The member a churn cell closes (not the last, so that a kernel that fills the gap with the
    /// last member shows it).
    pub const CLOSED_MEMBER: u32 = 1;

    /// Flows per cell: `members * FLOWS_PER_MEMBER`, at least `MIN_FLOWS`.
    pub fn flows(&self) -> u32 {
        (self.members * FLOWS_PER_MEMBER).max(MIN_FLOWS)
    }

    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}.{}.n{}{}",
            self.transport.token(),
            self.family.token(),
            match self.addr {
                GroupAddr::Specific => "specific",
                GroupAddr::Wildcard => "wildcard",
                GroupAddr::DualStack => "dual-stack",
                GroupAddr::Mixed => "mixed",
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
                GroupAddr::DualStack => "dual-stack wildcard",
                GroupAddr::Mixed => "IPv4 and dual-stack wildcards (AF_INET and AF_INET6 members)",
            },
            what
        )
    }
}

pub(super) fn all() -> Vec<DistributionCell> {
    let mut cells = Vec::new();
    for transport in Transport::ALL {
        for family in [IpFamily::V4, IpFamily::V6] {
            let addrs: &[GroupAddr] = match family {
                IpFamily::V4 => &[GroupAddr::Specific, GroupAddr::Wildcard],
                IpFamily::V6 => &[
                    GroupAddr::Specific,
                    GroupAddr::Wildcard,
                    GroupAddr::DualStack,
                ],
            };
            for &addr in addrs {
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
            addr: GroupAddr::Mixed,
            members: 4,
            churn: false,
        });
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
    /// The group on 127.0.0.1 (`false`), or on [::] with IPV6_V6ONLY off, its flows from
    /// 127.0.0.1 (`true`).
    pub dual_stack: bool,
}

impl SteeringCell {
    /// Members of a steered group: 4 for `cbpf`, 2 for `incoming-cpu`.
    pub fn members(&self) -> u32 {
        match self.kind {
            SteeringKind::Cbpf => 4,
            SteeringKind::IncomingCpu => 2,
        }
    }

    /// Flows sent under the probe program of a `cbpf` cell.
    pub const PROBE_FLOWS: u32 = 16;
    /// Flows per member under the steering program of a `cbpf` cell.
    pub const FLOWS_PER_MEMBER: u32 = 32;
    /// Flows sent from each CPU in an `incoming-cpu` cell.
    pub const FLOWS_PER_CPU: u32 = 32;

    pub(super) fn id_suffix(&self) -> String {
        format!(
            "{}.{}{}",
            match self.kind {
                SteeringKind::Cbpf => "cbpf",
                SteeringKind::IncomingCpu => "incoming-cpu",
            },
            self.transport.token(),
            if self.dual_stack { ".dual-stack" } else { "" }
        )
    }

    pub(super) fn describe(&self) -> String {
        match self.kind {
            SteeringKind::Cbpf => format!(
                "{}: a 4-member SO_REUSEPORT group{} with a classic BPF program attached that names the member per flow; record how many flows it really steered",
                self.transport.token().to_uppercase(),
                if self.dual_stack { " on [::] dual-stack" } else { "" }
            ),
            SteeringKind::IncomingCpu => format!(
                "{}: a 2-member SO_REUSEPORT group{} whose members set SO_INCOMING_CPU 0 and 1; senders pinned to each CPU; record which member each CPU's flows reach",
                self.transport.token().to_uppercase(),
                if self.dual_stack { " on [::] dual-stack" } else { "" }
            ),
        }
    }
}

pub(super) fn all_steering() -> Vec<SteeringCell> {
    let mut cells = Vec::new();
    for dual_stack in [false, true] {
        for kind in [SteeringKind::Cbpf, SteeringKind::IncomingCpu] {
            for transport in Transport::ALL {
                cells.push(SteeringCell {
                    transport,
                    kind,
                    dual_stack,
                });
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_sends_enough_flows_for_the_chi_square_test() {
        for cell in all() {
            assert!(cell.flows() >= MIN_FLOWS, "{cell:?}");
            assert!(cell.flows() >= cell.members * FLOWS_PER_MEMBER, "{cell:?}");
            assert!(DistributionCell::REPEAT_FLOWS <= cell.flows());
            if cell.churn {
                // The closed member is not the last one.
                assert!(DistributionCell::CLOSED_MEMBER + 1 < cell.members);
            }
        }
    }
}
