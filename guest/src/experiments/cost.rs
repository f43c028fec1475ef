//! Lookup cost against group size: the median time of one send (UDP) or connect (TCP) to groups of
//! 1, 16, 256 and 1024 SO_REUSEPORT sockets, all alive at once and measured in interleaved rounds.
//! See the fact list in `wire::catalogue::cost`.

use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};
use wire::catalogue::{IpFamily, LookupCostCell, Transport, GROUP_SIZES};
use wire::Fact;

use super::group::{self, Group, Place};
use super::{Facts, Lab, Measured};
use crate::net::{self, errno_name};

/// How long the datagrams or connections of one batch may take to arrive after it.
const DRAIN_WAIT: Duration = Duration::from_millis(200);

pub fn run(cell: &LookupCostCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    facts.set(
        "fd_limit",
        Fact::Count(raise_fd_limit(LookupCostCell::FD_LIMIT)),
    );

    let mut groups = Vec::new();
    let mut sizes = Vec::new();
    let mut refused = Vec::new();
    for &size in &GROUP_SIZES {
        let (group, first_error) = build(cell.transport, lab.port(), size);
        if group.is_none() && !refused.contains(&first_error) {
            refused.push(first_error.clone());
        }
        facts.outcome("bind", first_error);
        if let Some(group) = group {
            sizes.push(u64::from(size));
            groups.push(group);
        }
    }
    facts.set("sizes", Fact::Counts(sizes.clone()));

    let measured = match cell.transport {
        Transport::Udp => time_udp(cell, &groups),
        Transport::Tcp => Ok(time_tcp(cell, &groups)),
    };
    let timings = match measured {
        Ok(t) => t,
        Err(error) => return facts.ended(wire::Status::Failed { error }),
    };
    // A size that got no sample has no median, and JSON has no NaN: such a size leaves `sizes`
    // and every per-size fact together (keeping them aligned) and is named in `unmeasured`.
    let unmeasured: Vec<u64> = sizes
        .iter()
        .zip(&timings)
        .filter(|(_, t)| t.samples.is_empty())
        .map(|(&s, _)| s)
        .collect();
    if !unmeasured.is_empty() {
        let measured: Vec<u64> = sizes
            .iter()
            .copied()
            .filter(|s| !unmeasured.contains(s))
            .collect();
        facts.set("sizes", Fact::Counts(measured));
        facts.set("unmeasured", Fact::Counts(unmeasured));
    }
    facts.set(
        "ns_per_flow",
        Fact::Numbers(
            timings
                .iter()
                .filter(|t| !t.samples.is_empty())
                .map(|t| median(&t.samples))
                .collect(),
        ),
    );
    let timed = || timings.iter().filter(|t| !t.samples.is_empty());
    facts.set(
        "samples",
        Fact::Counts(timed().map(|t| t.samples.len() as u64).collect()),
    );
    facts.set("failed", Fact::Counts(timed().map(|t| t.failed).collect()));
    if sizes.len() < 2 {
        return facts.ended(wire::Status::Unsupported {
            reason: format!(
                "only groups of {sizes:?} could be built (the kernel answered {})",
                refused.join(", ")
            ),
        });
    }
    facts.done()
}

/// A group of `size` on 127.0.0.1 and the first errno met while building it (`ok` when none).
/// The group is returned when every member is bound (and listening), even if SO_REUSEPORT failed.
fn build(transport: Transport, port: u16, size: u32) -> (Option<Group>, String) {
    let mut group = Group::new(transport, Place::On(group::loopback(IpFamily::V4)), port);
    let mut first_error = None;
    for _ in 0..size {
        match group.join(|_| {}) {
            Err(e) => return (None, errno_name(&e)),
            Ok(joined) => {
                let steps = [
                    Some(&joined.reuseport),
                    Some(&joined.bind),
                    joined.listen.as_ref(),
                ];
                if first_error.is_none() {
                    first_error = steps
                        .into_iter()
                        .flatten()
                        .find(|s| *s != "ok" && *s != "skipped")
                        .cloned();
                }
                if !joined.ok() {
                    return (None, first_error.unwrap_or_else(|| "failed".into()));
                }
            }
        }
    }
    (Some(group), first_error.unwrap_or_else(|| "ok".into()))
}

struct Timing {
    samples: Vec<u64>,
    failed: u64,
}

/// Group `k` of round `round`, rotating the starting group every round.
fn visit_order(round: usize, groups: usize) -> impl Iterator<Item = usize> {
    (0..groups).map(move |k| (round + k) % groups)
}

fn time_udp(cell: &LookupCostCell, groups: &[Group]) -> Result<Vec<Timing>, String> {
    let lo = group::loopback(IpFamily::V4);
    let mut clients = Vec::with_capacity(groups.len());
    for g in groups {
        let client = net::socket_for(Transport::Udp, &lo, false)
            .map_err(|e| format!("socket for a client = {}", errno_name(&e)))?;
        client
            .connect(&SockAddr::from(g.target(IpFamily::V4)))
            .map_err(|e| format!("connect({}) = {}", g.target(IpFamily::V4), errno_name(&e)))?;
        // A full send buffer must show as a failed send, never as a blocked one.
        client
            .set_nonblocking(true)
            .map_err(|e| format!("O_NONBLOCK on a client = {}", errno_name(&e)))?;
        clients.push(client);
    }
    let mut timings: Vec<Timing> = groups
        .iter()
        .map(|_| Timing {
            samples: Vec::new(),
            failed: 0,
        })
        .collect();
    for round in 0..cell.rounds() as usize {
        for gi in visit_order(round, groups.len()) {
            let timing = &mut timings[gi];
            let mut sent = 0;
            for _ in 0..cell.batch() {
                let started = Instant::now();
                let result = clients[gi].send(&[0]);
                let took = started.elapsed();
                match result {
                    Ok(_) => {
                        timing.samples.push(took.as_nanos() as u64);
                        sent += 1;
                    }
                    Err(_) => timing.failed += 1,
                }
            }
            timing.failed += sent - group::drain(&groups[gi], sent, DRAIN_WAIT);
        }
    }
    Ok(timings)
}

fn time_tcp(cell: &LookupCostCell, groups: &[Group]) -> Vec<Timing> {
    let lo = group::loopback(IpFamily::V4);
    let mut timings: Vec<Timing> = groups
        .iter()
        .map(|_| Timing {
            samples: Vec::new(),
            failed: 0,
        })
        .collect();
    // Per group, the source ports its first batch got; later batches bind them again, so every
    // round sends the same 4-tuples and reaches the same few members.
    let mut sources: Vec<Vec<u16>> = vec![Vec::new(); groups.len()];
    for round in 0..cell.rounds() as usize {
        for gi in visit_order(round, groups.len()) {
            let timing = &mut timings[gi];
            let target = SockAddr::from(groups[gi].target(IpFamily::V4));
            let ports: Vec<u16> = if sources[gi].is_empty() {
                vec![0; cell.batch() as usize]
            } else {
                sources[gi].clone()
            };
            let mut clients: Vec<Socket> = Vec::with_capacity(ports.len());
            for port in ports {
                match tcp_client(&lo, port) {
                    Ok(c) => clients.push(c),
                    Err(_) => timing.failed += 1,
                }
            }
            if sources[gi].is_empty() {
                sources[gi] = clients
                    .iter()
                    .filter_map(|c| c.local_addr().ok()?.as_socket())
                    .map(|a| a.port())
                    .collect();
            }
            let mut connected = 0;
            for client in &clients {
                let started = Instant::now();
                let result = client.connect(&target);
                let took = started.elapsed();
                match result {
                    Ok(()) => {
                        timing.samples.push(took.as_nanos() as u64);
                        connected += 1;
                    }
                    Err(_) => timing.failed += 1,
                }
            }
            timing.failed += connected - group::drain(&groups[gi], connected, DRAIN_WAIT);
            drop(clients);
        }
    }
    timings
}

/// A blocking TCP client on 127.0.0.1:`port` (SO_REUSEADDR, so a port of an earlier, reset
/// connection binds again) that resets on close and cannot block longer than a second in connect.
fn tcp_client(lo: &std::net::IpAddr, port: u16) -> std::io::Result<Socket> {
    let client = net::socket_for(Transport::Tcp, lo, false)?;
    client.set_linger(Some(Duration::ZERO))?;
    client.set_write_timeout(Some(Duration::from_secs(1)))?;
    client.set_reuse_address(true)?;
    net::bind(&client, *lo, port)?;
    Ok(client)
}

fn median(samples: &[u64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid] as f64
    } else {
        (sorted[mid - 1] + sorted[mid]) as f64 / 2.0
    }
}

/// Raises the soft RLIMIT_NOFILE to `want` (and the hard limit, when lower and allowed). Returns
/// the soft limit in force afterwards.
fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) < 0 {
            return 0;
        }
        if limit.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: limit.rlim_max.max(want),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) < 0 {
                let capped = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &capped);
            }
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[5, 1, 3]), 3.0);
        assert_eq!(median(&[4, 1, 3, 2]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn every_round_visits_every_group_once_starting_one_later() {
        let orders: Vec<Vec<usize>> = (0..3).map(|r| visit_order(r, 3).collect()).collect();
        assert_eq!(orders, [[0, 1, 2], [1, 2, 0], [2, 0, 1]]);
    }
}
