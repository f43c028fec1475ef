//! SO_REUSEPORT load distribution: per-member counts over many distinct flows, whether a repeated
//! 4-tuple sticks to its member, and how the mapping moves when a member leaves and another joins.
//! See the fact list in `wire::catalogue::distribution`.

use wire::catalogue::{DistributionCell, GroupAddr, Transport};
use wire::Fact;

use super::group::{self, Client, Courier, Group, Place, Sources, Stop};
use super::{Facts, Lab, Measured};

/// Flows sent before their members are looked for: bounds open descriptors and queued
/// connections, and lets one poll() attribute many flows.
const BATCH: usize = 64;

pub fn run(cell: &DistributionCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    let place = match cell.addr {
        GroupAddr::Specific => Place::On(group::loopback(cell.family)),
        GroupAddr::Wildcard => Place::On(group::wildcard(cell.family)),
        GroupAddr::DualStack => Place::DualStack,
        GroupAddr::Mixed => Place::Mixed,
    };
    let built = Group::build(
        cell.transport,
        place,
        lab.port(),
        cell.members,
        &mut facts,
        |_, _, _| {},
    );
    let result = match built {
        Ok(mut group) if cell.churn => churn(cell, &mut group, &mut facts),
        Ok(group) => spread(cell, &group, &mut facts),
        Err(stop) => Err(stop),
    };
    match result {
        Ok(()) => facts.done(),
        Err(stop) => facts.ended(stop.status()),
    }
}

/// Tallies of one mapping of flows to members.
struct Tally {
    counts: Vec<u64>,
    lost: u64,
    send_failed: u64,
}

impl Tally {
    fn new(members: usize) -> Tally {
        Tally {
            counts: vec![0; members],
            lost: 0,
            send_failed: 0,
        }
    }

    fn add(&mut self, delivery: &group::Delivery) {
        for r in &delivery.receivers {
            match r {
                Some(m) if *m < self.counts.len() => self.counts[*m] += 1,
                Some(_) => {}
                None => self.lost += 1,
            }
        }
        self.send_failed += delivery.send_failed;
    }

    fn record(self, facts: &mut Facts) {
        facts.set("counts", Fact::Counts(self.counts));
        facts.set("lost", Fact::Count(self.lost));
        facts.set("send_failed", Fact::Count(self.send_failed));
    }
}

/// Where the flows of a cell come from: 127.0.0.1 and [::1] in turns for a dual-stack group,
/// otherwise the cell's family (IPv4 for a mixed group).
fn sources_for(cell: &DistributionCell, group: &Group) -> Sources {
    match cell.addr {
        GroupAddr::DualStack => Sources::alternating(cell.transport, group.port),
        _ => Sources::new(cell.transport, cell.family, group.port),
    }
}

/// Per-member counts for `cell.flows()` fresh flows, then the repeat test on the first few.
fn spread(cell: &DistributionCell, group: &Group, facts: &mut Facts) -> Result<(), Stop> {
    let flows = cell.flows() as usize;
    let repeat = DistributionCell::REPEAT_FLOWS as usize;
    let mut sources = sources_for(cell, group);
    let mut courier = Courier::default();
    let mut tally = Tally::new(group.labels());
    // The first flows' clients (kept open for UDP) and the member each reached first.
    let mut kept: Vec<Client> = Vec::new();
    let mut first: Vec<Option<usize>> = Vec::new();
    let mut sent = 0;
    while sent < flows {
        let clients = (0..BATCH.min(flows - sent))
            .map(|_| sources.fresh())
            .collect::<Result<Vec<_>, _>>()?;
        let delivery = courier.deliver(group, &clients, |_| 0);
        tally.add(&delivery);
        for (client, receiver) in clients.into_iter().zip(&delivery.receivers) {
            if kept.len() < repeat {
                first.push(*receiver);
                kept.push(client);
            }
        }
        sent += BATCH.min(flows - sent);
    }
    facts.set("flows", Fact::Count(flows as u64));
    tally.record(facts);

    let mut same = vec![true; kept.len()];
    for _ in 0..DistributionCell::REPEAT_ROUNDS {
        if cell.transport == Transport::Tcp {
            // A TCP flow is repeated from a new socket bound to the same port, once the old one
            // (reset by its linger-0 peer) is closed.
            let ports: Vec<u16> = kept.iter().map(|c| c.port).collect();
            drop(kept);
            kept = ports
                .into_iter()
                .map(|p| sources.again(p))
                .collect::<Result<_, _>>()?;
        }
        let delivery = courier.deliver(group, &kept, |_| 0);
        for ((s, now), then) in same.iter_mut().zip(&delivery.receivers).zip(&first) {
            *s &= now.is_some() && now == then;
        }
    }
    facts.set("repeat_flows", Fact::Count(kept.len() as u64));
    facts.set(
        "repeat_same",
        Fact::Count(same.iter().filter(|&&s| s).count() as u64),
    );
    Ok(())
}

/// Maps every flow with the full group, after closing a member, and after a new one joins.
fn churn(cell: &DistributionCell, group: &mut Group, facts: &mut Facts) -> Result<(), Stop> {
    let flows = cell.flows() as usize;
    let closed = DistributionCell::CLOSED_MEMBER as usize;
    let mut sources = sources_for(cell, group);
    let mut courier = Courier::default();
    let mut ports = Vec::with_capacity(flows);
    // UDP clients stay open across the three mappings; TCP ones are bound again per mapping.
    let mut udp_clients: Vec<Client> = Vec::new();
    for _ in 0..flows {
        let client = sources.fresh()?;
        ports.push(client.port);
        if cell.transport == Transport::Udp {
            udp_clients.push(client);
        }
    }
    let mut map = |group: &Group| -> Result<(Vec<Option<usize>>, Tally), Stop> {
        let mut tally = Tally::new(group.labels());
        let mut receivers = Vec::with_capacity(flows);
        for chunk in ports.chunks(BATCH) {
            let delivery = match cell.transport {
                Transport::Udp => {
                    let start = receivers.len();
                    courier.deliver(group, &udp_clients[start..start + chunk.len()], |_| 0)
                }
                Transport::Tcp => {
                    let clients = chunk
                        .iter()
                        .map(|&p| sources.again(p))
                        .collect::<Result<Vec<_>, _>>()?;
                    courier.deliver(group, &clients, |_| 0)
                }
            };
            tally.add(&delivery);
            receivers.extend(delivery.receivers);
        }
        Ok((receivers, tally))
    };
    // TCP: the first mapping binds the fresh ports again, like every later one; the sockets that
    // found the ports are closed by now.
    let (initial, tally) = map(group)?;
    facts.set("flows", Fact::Count(flows as u64));
    tally.record(facts);
    record_map(facts, "map_initial", &initial);

    group.close(closed);
    let (after_close, _) = map(group)?;
    record_map(facts, "map_after_close", &after_close);

    let joined = group
        .join(|_| {})
        .map_err(|e| Stop::Failed(format!("socket for the new member = {e}")))?;
    facts.outcome("join", joined.reuseport.clone());
    facts.outcome("join", joined.bind.clone());
    if let Some(listen) = &joined.listen {
        facts.outcome("join", listen.clone());
    }
    if !joined.ok() {
        return Err(Stop::Unsupported(format!(
            "the new member could not join: {}",
            joined.failure()
        )));
    }
    let new_member = group.labels() - 1;
    let (after_join, _) = map(group)?;
    record_map(facts, "map_after_join", &after_join);

    let stayed: Vec<usize> = (0..flows).filter(|&i| initial[i] != Some(closed)).collect();
    let moved =
        |later: &[Option<usize>]| stayed.iter().filter(|&&i| later[i] != initial[i]).count();
    facts.set("tracked_flows", Fact::Count(stayed.len() as u64));
    facts.set("moved_after_close", Fact::Count(moved(&after_close) as u64));
    facts.set("moved_after_join", Fact::Count(moved(&after_join) as u64));
    let to_new = (0..flows)
        .filter(|&i| initial[i] == Some(closed) && after_join[i] == Some(new_member))
        .count();
    facts.set("closed_flows_to_new", Fact::Count(to_new as u64));
    Ok(())
}

fn record_map(facts: &mut Facts, name: &str, receivers: &[Option<usize>]) {
    facts.set(
        name,
        Fact::Receivers(receivers.iter().map(|&r| group::label(r)).collect()),
    );
}
