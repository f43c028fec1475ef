//! Runs the selected experiments, each isolated from the others.
//!
//! Worker processes (fork) claim experiments one at a time from a counter in shared memory, say
//! which one they start, and report its facts over a pipe when it finishes. The parent writes the
//! records. When a worker dies (a signal, an exit) or overruns the current experiment's budget
//! (it is then killed), that experiment is recorded as crashed or timed out and a fresh worker
//! takes its slot. A crash therefore costs exactly one experiment, and forks happen once per
//! worker and per crash, not once per experiment.
//!
//! Families whose measurements do not depend on timing or on having the machine to themselves
//! run in one worker per CPU; the distribution, steering and cost families run alone, one
//! experiment at a time, so that nothing else competes for the CPUs they measure.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};
use wire::{Experiment, ExperimentRecord, Family, Header, Record, Status, Trailer};

use crate::channel::Channel;
use crate::experiments::{self, Lab};
use crate::invocation::Invocation;

/// Concurrent workers for the families that tolerate them; more than the CPUs buys nothing.
const MAX_WORKERS: u32 = 4;

pub fn run(invocation: &Invocation, channel: &mut Channel, pid1: bool) -> std::io::Result<()> {
    let started = Instant::now();
    let selection = &invocation.selection;
    let plan = match wire::select(selection) {
        Ok(plan) => plan,
        Err(unknown) => {
            eprintln!("guest: no experiment matches {unknown:?}; running nothing");
            Vec::new()
        }
    };
    let cpus = online_cpus();
    let workers = invocation
        .workers
        .unwrap_or(cpus)
        .clamp(1, cpus.clamp(1, MAX_WORKERS));
    channel.send(&Record::Header(Header {
        seq: 0,
        format: wire::FORMAT,
        uname: uname(),
        pid1,
        netns: std::fs::read_link("/proc/self/ns/net")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cpus,
        workers: Some(workers),
        channel: Some(channel.kind().to_string()),
        selection: if selection.is_empty() {
            vec!["all".into()]
        } else {
            selection.to_vec()
        },
        planned: plan.len() as u64,
        guest_version: env!("CARGO_PKG_VERSION").to_string(),
        preflight: Some(crate::preflight::run()),
        repetitions: Some(
            invocation
                .repeat
                .map_or(experiments::REPETITIONS as u32, |n| n),
        ),
    }))?;

    let repetitions = invocation
        .repeat
        .map_or(experiments::REPETITIONS, |n| n as usize);
    let lab = Lab::new(channel.raw(), repetitions, pid1);
    let mut next = 0;
    while next < plan.len() {
        if let Some(record) = in_parent(&plan[next], pid1) {
            channel.send(&Record::Experiment(numbered(record, next)))?;
            next += 1;
            continue;
        }
        let parallel = tolerates_company(&plan[next]);
        let end = plan[next..]
            .iter()
            .position(|e| in_parent_only(e) || tolerates_company(e) != parallel)
            .map_or(plan.len(), |offset| next + offset);
        let width = if parallel { workers } else { 1 };
        supervise(&plan, next, end, width as usize, &lab, channel)?;
        next = end;
    }

    channel.send(&Record::Trailer(Trailer {
        seq: plan.len() as u64 + 1,
        records: plan.len() as u64,
        elapsed_us: started.elapsed().as_micros() as u64,
    }))
}

/// Whether an experiment's facts stay the same when other experiments run beside it: true for
/// everything that records errnos and receivers on ports of its own, false for what measures
/// spread over CPUs or time, and for what sets sysctls (a knob that is global on the kernel is set
/// for everyone while the experiment runs: see `experiments::sandbox`).
fn tolerates_company(e: &Experiment) -> bool {
    use wire::catalogue::{AddrKind, DualStackKind, NonlocalHow};
    match e {
        Experiment::Address(c) => c.kind != AddrKind::Nonlocal(NonlocalHow::Sysctl),
        Experiment::DualStack(c) => c.kind != DualStackKind::SysctlOne,
        Experiment::TwSysctl(c) => c.setting.is_none(),
        _ => match e.family() {
            Family::Options
            | Family::Bind
            | Family::TimeWait
            | Family::Connect
            | Family::Multicast
            | Family::Lookup
            | Family::Autobind
            | Family::Address
            | Family::DualStack => true,
            Family::Distribution
            | Family::Steering
            | Family::LookupCost
            | Family::Numbering
            | Family::Ephemeral
            | Family::TwSysctl
            | Family::SelfTest => false,
        },
    }
}

fn numbered(mut record: ExperimentRecord, index: usize) -> ExperimentRecord {
    record.seq = index as u64 + 1;
    record
}

/// Self-tests that misbehave as PID 1 itself cannot run in a worker.
fn in_parent_only(e: &Experiment) -> bool {
    matches!(
        e,
        Experiment::SelfTest(
            wire::catalogue::SelfTest::ExitInit | wire::catalogue::SelfTest::HangInit
        )
    )
}

fn in_parent(e: &Experiment, pid1: bool) -> Option<ExperimentRecord> {
    use wire::catalogue::SelfTest;
    let Experiment::SelfTest(test @ (SelfTest::ExitInit | SelfTest::HangInit)) = e else {
        return None;
    };
    if pid1 {
        match test {
            SelfTest::ExitInit => std::process::exit(1),
            _ => loop {
                std::hint::spin_loop();
            },
        }
    }
    Some(ExperimentRecord {
        seq: 0,
        id: e.id(),
        status: Status::Unsupported {
            reason: "only meaningful as PID 1 in a VM".into(),
        },
        elapsed_us: 0,
        facts: Default::default(),
    })
}

/// One live worker as the parent sees it.
struct Worker {
    pid: Pid,
    pipe: OwnedFd,
    /// Bytes read but not yet a whole line.
    pending: Vec<u8>,
    /// The experiment it said it started, and when.
    current: Option<(usize, Instant)>,
}

/// Runs `plan[from..to]` in up to `width` concurrent workers until every experiment there has a
/// record.
fn supervise(
    plan: &[Experiment],
    from: usize,
    to: usize,
    width: usize,
    lab: &Lab,
    channel: &mut Channel,
) -> std::io::Result<()> {
    lab.next_claim
        .store(from as u32, std::sync::atomic::Ordering::SeqCst);
    let mut recorded = vec![false; to - from];
    let mut slots: Vec<Option<Worker>> = (0..width).map(|_| None).collect();
    let claims_left = || (lab.next_claim.load(std::sync::atomic::Ordering::SeqCst) as usize) < to;
    loop {
        for (slot, worker) in slots.iter_mut().enumerate() {
            if worker.is_none() && claims_left() {
                *worker = Some(spawn(plan, to, slot, lab)?);
            }
        }
        if slots.iter().all(Option::is_none) {
            break;
        }
        // Wait for output, or for the nearest budget to run out.
        let now = Instant::now();
        let nearest = slots
            .iter()
            .flatten()
            .filter_map(|w| {
                w.current
                    .map(|(i, t)| budget(&plan[i]).saturating_sub(now - t))
            })
            .min()
            .unwrap_or(Duration::from_secs(1));
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = slots
                .iter()
                .flatten()
                .map(|w| PollFd::new(w.pipe.as_fd(), PollFlags::POLLIN))
                .collect();
            let ms = nearest.as_millis().min(60_000) as u16;
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        let mut ready = ready.into_iter();
        for worker_slot in slots.iter_mut() {
            let Some(worker) = worker_slot else { continue };
            let readable = ready.next().unwrap_or(false);
            let gone = readable && !drain_lines(worker, plan, &mut recorded, from, channel)?;
            if gone {
                let status = match waitpid(worker.pid, None) {
                    Ok(WaitStatus::Signaled(_, signal, _)) => Status::Crashed {
                        signal: signal.as_str().to_string(),
                    },
                    Ok(WaitStatus::Exited(_, 0)) => Status::Completed,
                    Ok(WaitStatus::Exited(_, code)) => Status::Failed {
                        error: format!("worker exited with code {code} before finishing"),
                    },
                    other => Status::Failed {
                        error: format!("worker vanished: {other:?}"),
                    },
                };
                if let Some((i, t)) = worker.current {
                    // The experiment in progress is the one that ended the worker.
                    let status = if status == Status::Completed {
                        Status::Failed {
                            error: "worker exited mid-experiment".into(),
                        }
                    } else {
                        status
                    };
                    record_broken(plan, i, status, t, &mut recorded, from, channel)?;
                }
                *worker_slot = None;
                continue;
            }
            if let Some((i, t)) = worker.current {
                if t.elapsed() >= budget(&plan[i]) {
                    let _ = kill(worker.pid, Signal::SIGKILL);
                    let _ = waitpid(worker.pid, None);
                    let status = Status::TimedOut {
                        after_ms: budget(&plan[i]).as_millis() as u64,
                    };
                    record_broken(plan, i, status, t, &mut recorded, from, channel)?;
                    *worker_slot = None;
                }
            }
        }
    }
    // A worker that died between claiming an experiment and announcing it leaves a hole.
    for (offset, done) in recorded.iter().enumerate() {
        if !done {
            let i = from + offset;
            let status = Status::Failed {
                error: "its worker died before starting it".into(),
            };
            let record = broken(&plan[i], status, Instant::now());
            channel.send(&Record::Experiment(numbered(record, i)))?;
        }
    }
    Ok(())
}

fn budget(e: &Experiment) -> Duration {
    Duration::from_millis(e.budget_ms())
}

fn spawn(plan: &[Experiment], to: usize, slot: usize, lab: &Lab) -> std::io::Result<Worker> {
    let (read_end, write_end) = pipe()?;
    // SAFETY: the guest is single-threaded, so the child may run arbitrary code after fork.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(read_end);
            worker(plan, to, slot, write_end, lab)
        }
        ForkResult::Parent { child } => Ok(Worker {
            pid: child,
            pipe: read_end,
            pending: Vec::new(),
            current: None,
        }),
    }
}

/// The worker's loop: claim, announce (`S <index>`), measure, report (one JSON line).
fn worker(plan: &[Experiment], to: usize, slot: usize, out: OwnedFd, lab: &Lab) -> ! {
    use std::io::Write;
    lab.slot.set(slot as u16);
    let mut out = std::fs::File::from(out);
    loop {
        let i = lab
            .next_claim
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst) as usize;
        if i >= to {
            std::process::exit(0);
        }
        if out.write_all(format!("S {i}\n").as_bytes()).is_err() {
            std::process::exit(2);
        }
        let started = Instant::now();
        let measured = experiments::run(&plan[i], lab);
        let record = ExperimentRecord {
            seq: 0,
            id: plan[i].id(),
            status: measured.status,
            elapsed_us: started.elapsed().as_micros() as u64,
            facts: measured.facts,
        };
        let mut line = serde_json::to_string(&record).expect("records serialize");
        line.push('\n');
        if out.write_all(line.as_bytes()).is_err() {
            std::process::exit(2);
        }
    }
}

/// Reads what the worker wrote and handles every complete line. Returns false at end of file.
fn drain_lines(
    worker: &mut Worker,
    plan: &[Experiment],
    recorded: &mut [bool],
    from: usize,
    channel: &mut Channel,
) -> std::io::Result<bool> {
    let mut buf = [0u8; 65536];
    let n = loop {
        match nix::unistd::read(worker.pipe.as_raw_fd(), &mut buf) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 {
        return Ok(false);
    }
    worker.pending.extend_from_slice(&buf[..n]);
    while let Some(end) = worker.pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = worker.pending.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        if let Some(index) = line.strip_prefix("S ") {
            let i = index.parse().unwrap_or(usize::MAX);
            if (from..recorded.len() + from).contains(&i) {
                worker.current = Some((i, Instant::now()));
            }
            continue;
        }
        let Some((i, t)) = worker.current.take() else {
            continue;
        };
        let record = match serde_json::from_str::<ExperimentRecord>(&line) {
            Ok(r) => r,
            Err(e) => broken(
                &plan[i],
                Status::Failed {
                    error: format!("unreadable worker report: {e}"),
                },
                t,
            ),
        };
        recorded[i - from] = true;
        channel.send(&Record::Experiment(numbered(record, i)))?;
    }
    Ok(true)
}

fn record_broken(
    plan: &[Experiment],
    i: usize,
    status: Status,
    started: Instant,
    recorded: &mut [bool],
    from: usize,
    channel: &mut Channel,
) -> std::io::Result<()> {
    recorded[i - from] = true;
    let record = broken(&plan[i], status, started);
    channel.send(&Record::Experiment(numbered(record, i)))
}

fn broken(experiment: &Experiment, status: Status, started: Instant) -> ExperimentRecord {
    ExperimentRecord {
        seq: 0,
        id: experiment.id(),
        status,
        elapsed_us: started.elapsed().as_micros() as u64,
        facts: Default::default(),
    }
}

fn uname() -> wire::Uname {
    let u = nix::sys::utsname::uname().expect("uname(2) cannot fail");
    let s = |x: &std::ffi::OsStr| x.to_string_lossy().into_owned();
    wire::Uname {
        sysname: s(u.sysname()),
        release: s(u.release()),
        version: s(u.version()),
        machine: s(u.machine()),
    }
}

fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as u32
}
