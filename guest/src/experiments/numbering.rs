//! How a reuseport group numbers its members, read through classic BPF programs that return one
//! fixed index. See the fact list in `wire::catalogue::numbering`.

use std::os::fd::AsRawFd;

use socket2::Socket;
use wire::catalogue::{NumberingCell, NumberingKind, Transport};
use wire::Fact;

use super::group::{self, Client, Courier, Group, Place, Sources, Stop, BACKLOG};
use super::{Facts, Lab, Measured};
use crate::net::{self, bpf_stmt, errno_name, outcome, sockopt, ClassicBpf};

const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

pub fn run(cell: &NumberingCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    match measure(cell, lab, &mut facts) {
        Ok(()) => facts.done(),
        Err(stop) => facts.ended(stop.status()),
    }
}

fn measure(cell: &NumberingCell, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let members = match cell.kind {
        NumberingKind::Inherit => 2,
        _ => NumberingCell::MEMBERS,
    };
    let order: Vec<usize> = match cell.kind {
        NumberingKind::Order => NumberingCell::ADD_ORDER.to_vec(),
        _ => (0..members).collect(),
    };
    let mut group = assemble(cell, lab.port(), &order, facts)?;
    let mut reader = Reader {
        sources: Sources::new(cell.transport, cell.family, group.port),
        courier: Courier::default(),
        lost: 0,
        attached_once: false,
    };
    let result = match cell.kind {
        NumberingKind::Order => (0..NumberingCell::MEMBERS as u32).try_for_each(|k| {
            let flows = reader.read(&group, 0, k, facts)?;
            receivers(facts, &format!("index{k}"), &flows);
            Ok(())
        }),
        NumberingKind::CloseFirst | NumberingKind::CloseMiddle | NumberingKind::CloseLast => {
            close(cell.kind, &mut group, &mut reader, facts)
        }
        NumberingKind::Invalid => invalid(&group, &mut reader, facts),
        NumberingKind::Inherit => inherit(&mut group, &mut reader, facts),
        NumberingKind::Replace => {
            [(0, 0), (2, 3), (3, 1)]
                .iter()
                .enumerate()
                .try_for_each(|(step, &(from, k))| {
                    let flows = reader.read(&group, from, k, facts)?;
                    receivers(facts, &format!("step{}", step + 1), &flows);
                    Ok(())
                })
        }
    };
    facts.set("lost", Fact::Count(reader.lost));
    result
}

/// Creates the members in label order, each with SO_REUSEPORT, then adds them to the group in
/// `order`: UDP members by binding, TCP members by listening (bound first, in label order). The
/// facts record each step in the order made.
fn assemble(
    cell: &NumberingCell,
    port: u16,
    order: &[usize],
    facts: &mut Facts,
) -> Result<Group, Stop> {
    let ip = group::loopback(cell.family);
    let mut sockets: Vec<Socket> = Vec::with_capacity(order.len());
    let mut reuseport = Vec::new();
    for label in 0..order.len() {
        let sock = group::nonblocking_socket(cell.transport, &ip, ip.is_ipv6())
            .map_err(|e| Stop::Failed(format!("socket for member {label} = {}", errno_name(&e))))?;
        let one: libc::c_int = 1;
        let set = outcome(&net::setsockopt_raw(
            sock.as_raw_fd(),
            sockopt::SO_REUSEPORT,
            &one,
        ));
        facts.outcome("reuseport", set.clone());
        reuseport.push(set);
        sockets.push(sock);
    }
    let bind_order: Vec<usize> = match cell.transport {
        Transport::Udp => order.to_vec(),
        Transport::Tcp => (0..order.len()).collect(),
    };
    for &label in &bind_order {
        let bound = outcome(&net::bind(&sockets[label], ip, port));
        facts.outcome("bind", bound.clone());
        if bound != "ok" {
            return Err(Stop::Unsupported(format!(
                "member m{label} could not join: bind: {bound} (setsockopt SO_REUSEPORT: {})",
                reuseport[label]
            )));
        }
    }
    if cell.transport == Transport::Tcp {
        for &label in order {
            let listened = outcome(&sockets[label].listen(BACKLOG));
            facts.outcome("listen", listened.clone());
            if listened != "ok" {
                return Err(Stop::Unsupported(format!(
                    "member m{label} could not join: listen: {listened}"
                )));
            }
        }
    }
    Ok(Group::adopt(cell.transport, Place::On(ip), port, sockets))
}

/// Attaches programs and sends flows under them.
struct Reader {
    sources: Sources,
    courier: Courier,
    lost: u64,
    attached_once: bool,
}

impl Reader {
    /// Attaches `ret #k` from member `from` and sends [`NumberingCell::PROBE_FLOWS`] fresh flows:
    /// the member each reached. The first attach of the experiment failing ends it as
    /// `unsupported` (the kernel has no such option, or not for this kind of socket); a later one
    /// failing is recorded and the flows show what the group does instead.
    fn read(
        &mut self,
        group: &Group,
        from: usize,
        k: u32,
        facts: &mut Facts,
    ) -> Result<Vec<Option<usize>>, Stop> {
        let sock = group
            .member(from)
            .ok_or_else(|| Stop::Failed(format!("member m{from} is closed")))?;
        let attached = ClassicBpf(vec![bpf_stmt(RET_K, k)]).attach_reuseport(sock.as_raw_fd());
        facts.outcome("attach", outcome(&attached));
        if let Err(e) = &attached {
            if !self.attached_once {
                return Err(Stop::Unsupported(format!(
                    "SO_ATTACH_REUSEPORT_CBPF = {}",
                    errno_name(e)
                )));
            }
        }
        self.attached_once = true;
        self.flows(group)
    }

    /// Sends fresh flows under whatever program the group has.
    fn flows(&mut self, group: &Group) -> Result<Vec<Option<usize>>, Stop> {
        let clients = (0..NumberingCell::PROBE_FLOWS)
            .map(|_| self.sources.fresh())
            .collect::<Result<Vec<Client>, Stop>>()?;
        let delivery = self.courier.deliver(group, &clients, |_| 0);
        self.lost += delivery.receivers.iter().filter(|r| r.is_none()).count() as u64;
        Ok(delivery.receivers)
    }
}

fn receivers(facts: &mut Facts, name: &str, flows: &[Option<usize>]) {
    for r in flows {
        facts.receiver(name, group::label(*r));
    }
}

/// Flows per open member, in label order (a closed member can receive nothing, and a zero for it
/// would read as a member left idle).
fn counts(facts: &mut Facts, name: &str, flows: &[Option<usize>], group: &Group) {
    let open: Vec<usize> = (0..group.labels())
        .filter(|&l| group.member(l).is_some())
        .collect();
    let counts = open
        .iter()
        .map(|l| flows.iter().filter(|r| **r == Some(*l)).count() as u64)
        .collect();
    facts.set(name, Fact::Counts(counts));
}

fn close(
    kind: NumberingKind,
    group: &mut Group,
    reader: &mut Reader,
    facts: &mut Facts,
) -> Result<(), Stop> {
    let closed = kind.closed().unwrap_or(0);
    for k in 0..NumberingCell::MEMBERS as u32 {
        let flows = reader.read(group, 0, k, facts)?;
        receivers(facts, &format!("index{k}"), &flows);
    }
    group.close(closed);
    let from = (0..group.labels())
        .find(|&l| group.member(l).is_some())
        .unwrap_or(0);
    for k in 0..NumberingCell::MEMBERS as u32 - 1 {
        let flows = reader.read(group, from, k, facts)?;
        receivers(facts, &format!("after{k}"), &flows);
    }
    let past_end = reader.read(group, from, NumberingCell::MEMBERS as u32 - 1, facts)?;
    counts(facts, "counts_past_end", &past_end, group);
    Ok(())
}

fn invalid(group: &Group, reader: &mut Reader, facts: &mut Facts) -> Result<(), Stop> {
    let valid = reader.read(group, 0, 2, facts)?;
    receivers(facts, "valid", &valid);
    let past_end = reader.read(group, 0, NumberingCell::MEMBERS as u32, facts)?;
    counts(facts, "counts_n", &past_end, group);
    let max = reader.read(group, 0, u32::MAX, facts)?;
    counts(facts, "counts_max", &max, group);
    Ok(())
}

fn inherit(group: &mut Group, reader: &mut Reader, facts: &mut Facts) -> Result<(), Stop> {
    let before = reader.read(group, 0, 2, facts)?;
    counts(facts, "counts_before_join", &before, group);
    let joined = group
        .join(|_| {})
        .map_err(|e| Stop::Failed(format!("socket for member m2 = {}", errno_name(&e))))?;
    facts.outcome("join", joined.reuseport.clone());
    facts.outcome("join", joined.bind.clone());
    if let Some(listen) = &joined.listen {
        facts.outcome("join", listen.clone());
    }
    if !joined.ok() {
        return Err(Stop::Failed(format!(
            "member m2 could not join: {}",
            joined.failure()
        )));
    }
    let after = reader.flows(group)?;
    receivers(facts, "after_join", &after);
    Ok(())
}
