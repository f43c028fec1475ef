//! Runs the selected experiments, each isolated from the others.
//!
//! A worker process (fork) runs experiments in catalogue order and reports each one's facts over a
//! pipe as it finishes. The parent writes the records. When the worker dies (a signal, an exit) or
//! overruns the current experiment's budget (it is then killed), that experiment is recorded as
//! crashed or timed out and a fresh worker carries on with the next one. A crash therefore costs
//! exactly one experiment, and the fork happens once per crash rather than once per experiment.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};
use wire::{Experiment, ExperimentRecord, Header, Record, Status, Trailer};

use crate::channel::Channel;
use crate::experiments::{self, Lab};

pub fn run(selection: &[String], channel: &mut Channel, pid1: bool) -> std::io::Result<()> {
    let started = Instant::now();
    let plan = match wire::select(selection) {
        Ok(plan) => plan,
        Err(unknown) => {
            eprintln!("guest: no experiment matches {unknown:?}; running nothing");
            Vec::new()
        }
    };
    channel.send(&Record::Header(Header {
        seq: 0,
        format: wire::FORMAT,
        uname: uname(),
        pid1,
        cpus: online_cpus(),
        selection: if selection.is_empty() {
            vec!["all".into()]
        } else {
            selection.to_vec()
        },
        planned: plan.len() as u64,
        guest_version: env!("CARGO_PKG_VERSION").to_string(),
    }))?;

    let lab = Lab::new(channel.raw_fd(), pid1);
    let mut next = 0;
    while next < plan.len() {
        if let Some(record) = in_parent(&plan[next], pid1) {
            channel.send(&Record::Experiment(numbered(record, next)))?;
            next += 1;
            continue;
        }
        let end = plan[next..]
            .iter()
            .position(|e| in_parent_only(e))
            .map_or(plan.len(), |offset| next + offset);
        next = supervise(&plan, next, end, &lab, channel)?;
    }

    channel.send(&Record::Trailer(Trailer {
        seq: plan.len() as u64 + 1,
        records: plan.len() as u64,
        elapsed_us: started.elapsed().as_micros() as u64,
    }))
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

/// Runs `plan[from..to]` in workers until every experiment there has a record; returns `to`.
fn supervise(
    plan: &[Experiment],
    from: usize,
    to: usize,
    lab: &Lab,
    channel: &mut Channel,
) -> std::io::Result<usize> {
    let mut next = from;
    while next < to {
        let (read_end, write_end) = pipe()?;
        // SAFETY: the guest is single-threaded, so the child may run arbitrary code after fork.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(read_end);
                worker(&plan[next..to], write_end, lab)
            }
            ForkResult::Parent { child } => {
                drop(write_end);
                next = collect(plan, next, to, child, read_end, channel)?;
            }
        }
    }
    Ok(to)
}

fn worker(plan: &[Experiment], out: OwnedFd, lab: &Lab) -> ! {
    use std::io::Write;
    let mut out = std::fs::File::from(out);
    for experiment in plan {
        let started = Instant::now();
        let measured = experiments::run(experiment, lab);
        let record = ExperimentRecord {
            seq: 0,
            id: experiment.id(),
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
    std::process::exit(0)
}

/// Reads the worker's records, enforcing each experiment's budget. Returns the index of the first
/// experiment without a record when the worker is gone (or `to` when all are done).
fn collect(
    plan: &[Experiment],
    mut next: usize,
    to: usize,
    child: Pid,
    read_end: OwnedFd,
    channel: &mut Channel,
) -> std::io::Result<usize> {
    let fd = read_end.as_raw_fd();
    let mut reader = BufReader::new(std::fs::File::from(read_end));
    let mut started = Instant::now();
    loop {
        if next >= to {
            let _ = waitpid(child, None);
            return Ok(next);
        }
        let budget = Duration::from_millis(plan[next].budget_ms());
        let left = budget.saturating_sub(started.elapsed());
        if reader.buffer().is_empty() {
            let mut fds = [PollFd::new(
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                PollFlags::POLLIN,
            )];
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            let ready = match poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if ready == 0 {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                let record = broken(
                    &plan[next],
                    Status::TimedOut {
                        after_ms: budget.as_millis() as u64,
                    },
                    started,
                );
                channel.send(&Record::Experiment(numbered(record, next)))?;
                return Ok(next + 1);
            }
        }
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            // The worker is gone: the experiment in progress is the one that killed it.
            let status = match waitpid(child, None) {
                Ok(WaitStatus::Signaled(_, signal, _)) => Status::Crashed {
                    signal: signal.as_str().to_string(),
                },
                Ok(WaitStatus::Exited(_, code)) => Status::Failed {
                    error: format!("worker exited with code {code} before finishing"),
                },
                other => Status::Failed {
                    error: format!("worker vanished: {other:?}"),
                },
            };
            let record = broken(&plan[next], status, started);
            channel.send(&Record::Experiment(numbered(record, next)))?;
            drain(&mut reader);
            return Ok(next + 1);
        }
        let record: ExperimentRecord = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => broken(
                &plan[next],
                Status::Failed {
                    error: format!("unreadable worker report: {e}"),
                },
                started,
            ),
        };
        channel.send(&Record::Experiment(numbered(record, next)))?;
        next += 1;
        started = Instant::now();
    }
}

fn drain(reader: &mut impl Read) {
    let mut sink = Vec::new();
    let _ = reader.read_to_end(&mut sink);
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
