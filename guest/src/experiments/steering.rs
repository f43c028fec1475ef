//! Steering a reuseport group: a classic BPF program attached with SO_ATTACH_REUSEPORT_CBPF that
//! names the member per flow, and SO_INCOMING_CPU with the sender pinned to each CPU in turn. See
//! the fact list in `wire::catalogue::distribution`.

use std::os::fd::AsRawFd;

use wire::catalogue::{IpFamily, SteeringCell, SteeringKind, Transport};
use wire::Fact;

use super::group::{self, Client, Courier, Group, Place, Sources, Stop};
use super::{Facts, Lab, Measured};
use crate::net::{self, bpf_stmt, errno_name, outcome, sockopt, ClassicBpf};

/// Every steered group lives on IPv4 loopback: the programs' offsets assume a 20-byte IPv4 header.
const FAMILY: IpFamily = IpFamily::V4;

pub fn run(cell: &SteeringCell, lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    let result = match cell.kind {
        SteeringKind::Cbpf => cbpf(cell, lab, &mut facts),
        SteeringKind::IncomingCpu => incoming_cpu(cell, lab, &mut facts),
    };
    match result {
        Ok(()) => facts.done(),
        Err(stop) => facts.ended(stop.status()),
    }
}

/// The group on 127.0.0.1, or on [::] with IPV6_V6ONLY off; the flows come from 127.0.0.1 either
/// way (into the dual-stack group as IPv4-mapped traffic, whose packets a program reads as IPv4).
fn place(cell: &SteeringCell) -> Place {
    if cell.dual_stack {
        Place::DualStack
    } else {
        Place::On(group::loopback(FAMILY))
    }
}

fn cbpf(cell: &SteeringCell, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let members = cell.members() as usize;
    let group = Group::build(
        cell.transport,
        place(cell),
        lab.port(),
        cell.members(),
        facts,
        |_, _, _| {},
    )?;
    let fd = group
        .first()
        .ok_or_else(|| Stop::Failed("an empty group".into()))?
        .as_raw_fd();
    let mut sources = Sources::new(cell.transport, FAMILY, group.port);
    let mut courier = Courier::default();

    let attached = probe_program().attach_reuseport(fd);
    facts.outcome("attach", outcome(&attached));
    if let Err(e) = attached {
        return Err(Stop::Unsupported(format!(
            "SO_ATTACH_REUSEPORT_CBPF = {}",
            errno_name(&e)
        )));
    }
    let clients = fresh(&mut sources, SteeringCell::PROBE_FLOWS as usize)?;
    let delivery = courier.deliver(&group, &clients, |_| 1);
    drop(clients);
    facts.set(
        "probe_counts",
        Fact::Counts(counts(&delivery.receivers, members)),
    );

    let program = match cell.transport {
        Transport::Udp => first_payload_byte(),
        Transport::Tcp => source_port_bits(),
    };
    facts.outcome("attach", outcome(&program.attach_reuseport(fd)));
    let flows = (SteeringCell::FLOWS_PER_MEMBER * cell.members()) as usize;
    let clients = fresh(&mut sources, flows)?;
    let wanted: Vec<usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| match cell.transport {
            Transport::Udp => i % members,
            Transport::Tcp => usize::from(c.port >> 1) & 3,
        })
        .collect();
    let mut receivers = Vec::with_capacity(flows);
    for (chunk, want) in clients.chunks(64).zip(wanted.chunks(64)) {
        let delivery = courier.deliver(&group, chunk, |i| want[i] as u8);
        receivers.extend(delivery.receivers);
    }
    let mut expected = vec![0u64; members];
    for &w in &wanted {
        expected[w] += 1;
    }
    let steered = receivers
        .iter()
        .zip(&wanted)
        .filter(|(r, w)| **r == Some(**w))
        .count();
    facts.set("flows", Fact::Count(flows as u64));
    facts.set("counts", Fact::Counts(counts(&receivers, members)));
    facts.set("expected", Fact::Counts(expected));
    facts.set("steered", Fact::Count(steered as u64));
    facts.set(
        "lost",
        Fact::Count(receivers.iter().filter(|r| r.is_none()).count() as u64),
    );
    Ok(())
}

fn fresh(sources: &mut Sources, count: usize) -> Result<Vec<Client>, Stop> {
    (0..count).map(|_| sources.fresh()).collect()
}

fn counts(receivers: &[Option<usize>], members: usize) -> Vec<u64> {
    let mut counts = vec![0u64; members];
    for m in receivers.iter().flatten() {
        if let Some(c) = counts.get_mut(*m) {
            *c += 1;
        }
    }
    counts
}

const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LD_W_LEN: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_LEN) as u16;
const RSH_K: u16 = (libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// `ld len; jeq #0, m0, m1`: member 0 when the program sees an empty packet, else member 1.
fn probe_program() -> ClassicBpf {
    ClassicBpf(vec![
        bpf_stmt(LD_W_LEN, 0),
        libc::sock_filter {
            code: JEQ_K,
            jt: 0,
            jf: 1,
            k: 0,
        },
        bpf_stmt(RET_K, 0),
        bpf_stmt(RET_K, 1),
    ])
}

/// `ldb [0]; ret a`: the member named by the first payload byte.
fn first_payload_byte() -> ClassicBpf {
    ClassicBpf(vec![bpf_stmt(LD_B_ABS, 0), bpf_stmt(RET_A, 0)])
}

/// `ldh [SKF_NET_OFF + 20]; rsh #1; and #3; ret a`: bits 1-2 of the TCP source port, read behind
/// a 20-byte IPv4 header, because the data pointer sits past the TCP header of a SYN that carries
/// no payload.
fn source_port_bits() -> ClassicBpf {
    let net_off = libc::SKF_NET_OFF as u32;
    ClassicBpf(vec![
        bpf_stmt(LD_H_ABS, net_off.wrapping_add(20)),
        bpf_stmt(RSH_K, 1),
        bpf_stmt(AND_K, 3),
        bpf_stmt(RET_A, 0),
    ])
}

fn incoming_cpu(cell: &SteeringCell, lab: &Lab, facts: &mut Facts) -> Result<(), Stop> {
    let original = Affinity::current()
        .map_err(|e| Stop::Failed(format!("sched_getaffinity = {}", errno_name(&e))))?;
    if !(original.has(0) && original.has(1)) {
        return Err(Stop::Unsupported(format!(
            "needs CPUs 0 and 1; the affinity mask allows {:?}",
            original.cpus()
        )));
    }
    let mut set_failed = None;
    let group = Group::build(
        cell.transport,
        place(cell),
        lab.port(),
        cell.members(),
        facts,
        |index, sock, facts| {
            let cpu = index as libc::c_int;
            let set = net::setsockopt_raw(sock.as_raw_fd(), sockopt::SO_INCOMING_CPU, &cpu);
            if let Err(e) = &set {
                set_failed.get_or_insert_with(|| errno_name(e));
            }
            facts.outcome("attach", outcome(&set));
        },
    )?;
    if let Some(errno) = set_failed {
        return Err(Stop::Unsupported(format!(
            "setsockopt(SO_INCOMING_CPU) = {errno}"
        )));
    }
    let measured = steer_by_cpu(cell, &group, facts);
    if let Err(e) = original.apply() {
        // The worker goes on to other experiments: it must not stay pinned.
        return Err(Stop::Failed(format!(
            "restoring the affinity mask = {}",
            errno_name(&e)
        )));
    }
    measured
}

fn steer_by_cpu(cell: &SteeringCell, group: &Group, facts: &mut Facts) -> Result<(), Stop> {
    let per_cpu = SteeringCell::FLOWS_PER_CPU as usize;
    let members = cell.members() as usize;
    let mut sources = Sources::new(cell.transport, FAMILY, group.port);
    let mut courier = Courier::default();
    let mut steered = 0;
    let mut lost = 0;
    let mut ran_on = Vec::new();
    let mut total = vec![0u64; members];
    for cpu in 0..2usize {
        let pinned = Affinity::only(cpu).apply();
        facts.outcome("affinity", outcome(&pinned));
        if let Err(e) = pinned {
            return Err(Stop::Failed(format!(
                "sched_setaffinity(CPU {cpu}) = {}",
                errno_name(&e)
            )));
        }
        let cpu_now =
            current_cpu().map_err(|e| Stop::Failed(format!("getcpu = {}", errno_name(&e))))?;
        ran_on.push(u64::from(cpu_now));
        facts.set("ran_on", Fact::Counts(ran_on.clone()));
        let clients = fresh(&mut sources, per_cpu)?;
        let delivery = courier.deliver(group, &clients, |_| 0);
        let counts = counts(&delivery.receivers, members);
        steered += counts.get(cpu).copied().unwrap_or(0);
        for (t, c) in total.iter_mut().zip(&counts) {
            *t += c;
        }
        lost += delivery.receivers.iter().filter(|r| r.is_none()).count() as u64;
        facts.set(&format!("cpu{cpu}_counts"), Fact::Counts(counts));
    }
    facts.set("flows", Fact::Count(2 * per_cpu as u64));
    facts.set("counts", Fact::Counts(total));
    // Member i should receive exactly the flows sent from CPU i.
    facts.set("expected", Fact::Counts(vec![per_cpu as u64; members]));
    facts.set("steered", Fact::Count(steered));
    facts.set("lost", Fact::Count(lost));
    Ok(())
}

/// A CPU affinity mask for this process (sched_setaffinity(2), in Linux since 2.5).
struct Affinity(libc::cpu_set_t);

impl Affinity {
    fn current() -> std::io::Result<Affinity> {
        // SAFETY: cpu_set_t is plain old data; the kernel fills at most its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Affinity(set))
        }
    }

    fn only(cpu: usize) -> Affinity {
        // SAFETY: cpu_set_t is plain old data and `cpu` is below CPU_SETSIZE.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            Affinity(set)
        }
    }

    fn has(&self, cpu: usize) -> bool {
        // SAFETY: reads a bit of a live cpu_set_t.
        unsafe { libc::CPU_ISSET(cpu, &self.0) }
    }

    fn cpus(&self) -> Vec<usize> {
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| self.has(c))
            .collect()
    }

    /// Applies the mask to this process; the kernel migrates it before returning.
    fn apply(&self) -> std::io::Result<()> {
        // SAFETY: self.0 is a live cpu_set_t of the size passed.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// The CPU this process runs on, by getcpu(2) (Linux 2.6.19), not the vDSO.
fn current_cpu() -> std::io::Result<u32> {
    let mut cpu: libc::c_uint = 0;
    // SAFETY: getcpu writes one unsigned int; the other two arguments may be NULL.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &mut cpu as *mut libc::c_uint,
            std::ptr::null_mut::<libc::c_uint>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_port_program_reads_behind_the_ipv4_header() {
        let prog = source_port_bits().0;
        assert_eq!(prog[0].code, LD_H_ABS);
        assert_eq!(prog[0].k, 0xfff0_0014, "SKF_NET_OFF + 20");
        assert_eq!((prog[1].code, prog[1].k), (RSH_K, 1));
        assert_eq!((prog[2].code, prog[2].k), (AND_K, 3));
        assert_eq!(prog[3].code, RET_A);
    }

    #[test]
    fn probe_program_jumps_to_member_one_when_not_empty() {
        let prog = probe_program().0;
        assert_eq!((prog[1].code, prog[1].jt, prog[1].jf), (JEQ_K, 0, 1));
        assert_eq!((prog[2].code, prog[2].k), (RET_K, 0));
        assert_eq!((prog[3].code, prog[3].k), (RET_K, 1));
    }

    #[test]
    fn counts_ignore_lost_flows() {
        assert_eq!(counts(&[Some(0), None, Some(1), Some(1)], 2), [1, 2]);
    }
}
