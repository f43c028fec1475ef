//! The experiment families, one module each, and the one exhaustive `match` from a catalogue
//! [`Experiment`] to the code that measures it.

mod address;
mod autobind;
mod bind;
mod connect;
mod cost;
mod distribution;
mod dual_stack;
mod ephemeral;
mod group;
mod lookup;
mod multicast;
mod numbering;
mod options;
mod sandbox;
mod selftest;
mod steering;
mod time_wait;
mod tw_sysctl;

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use wire::catalogue::IpFamily;
use wire::{Experiment, Fact, Status};

use crate::net::Peer;

/// What one experiment measured.
pub struct Measured {
    pub status: Status,
    pub facts: BTreeMap<String, Fact>,
}

/// Facts under construction. Repeated measurements append to the same name.
#[derive(Default)]
pub struct Facts(BTreeMap<String, Fact>);

impl Facts {
    pub fn outcome(&mut self, name: &str, value: impl Into<String>) {
        match self
            .0
            .entry(name.to_string())
            .or_insert_with(|| Fact::Outcomes(Vec::new()))
        {
            Fact::Outcomes(v) => v.push(value.into()),
            other => panic!("fact {name} is {other:?}, not outcomes"),
        }
    }

    pub fn receiver(&mut self, name: &str, value: impl Into<String>) {
        match self
            .0
            .entry(name.to_string())
            .or_insert_with(|| Fact::Receivers(Vec::new()))
        {
            Fact::Receivers(v) => v.push(value.into()),
            other => panic!("fact {name} is {other:?}, not receivers"),
        }
    }

    /// Whether some repetitions disagree: an outcome or a receiver fact that `counts` holding
    /// more than one value.
    fn disagree(&self, counts: impl Fn(&str) -> bool) -> bool {
        self.0.iter().any(|(name, fact)| match fact {
            Fact::Outcomes(v) | Fact::Receivers(v) => counts(name) && v.iter().any(|x| *x != v[0]),
            _ => false,
        })
    }

    /// Appends one number to a Numbers fact (one per repetition).
    pub fn number(&mut self, name: &str, value: f64) {
        match self
            .0
            .entry(name.to_string())
            .or_insert_with(|| Fact::Numbers(Vec::new()))
        {
            Fact::Numbers(v) => v.push(value),
            other => panic!("fact {name} is {other:?}, not numbers"),
        }
    }

    pub fn set(&mut self, name: &str, fact: Fact) {
        self.0.insert(name.to_string(), fact);
    }

    pub fn done(self) -> Measured {
        Measured {
            status: Status::Completed,
            facts: self.0,
        }
    }

    pub fn ended(self, status: Status) -> Measured {
        Measured {
            status,
            facts: self.0,
        }
    }
}

/// Repetitions of a cell, each on fresh sockets and a fresh port: some old kernels decide a few
/// cells from state that is not reset, and that must show as instability, not as a flake.
pub const REPETITIONS: usize = 3;

/// Repetitions of a cell whose own repetitions disagree, so that how often each value comes up
/// means something: 24 put a 40% frequency within ±0.2 (95%) for one cell, and much closer for
/// the dozens of cells a behaviour groups. Under TCG a repetition costs ~0.5 ms in the bind
/// matrix, ~12 ms in the TIME_WAIT family.
pub const REPETITIONS_WHEN_UNSTABLE: usize = 24;

/// Runs `once` [`Lab::repetitions`] times, and up to [`REPETITIONS_WHEN_UNSTABLE`] when this
/// cell's repetitions disagree in a fact that `counts` (receivers that are members of one
/// reuseport group may differ by hash, and are left out by the caller). `Err` from `once` (the
/// measuring broke) stops at once.
pub fn repeat(
    lab: &Lab,
    facts: &mut Facts,
    counts: impl Fn(&str) -> bool,
    mut once: impl FnMut(&mut Facts) -> Result<(), String>,
) -> Result<(), String> {
    let base = lab.repetitions;
    for _ in 0..base {
        once(facts)?;
    }
    if facts.disagree(&counts) {
        for _ in base..REPETITIONS_WHEN_UNSTABLE.max(base) {
            once(facts)?;
        }
    }
    Ok(())
}

/// [`repeat`] for experiments that may end as unsupported: `once` stops with a [`group::Stop`],
/// which ends the repetitions and is handed back as it was.
pub fn repeat_until_stop(
    lab: &Lab,
    facts: &mut Facts,
    mut once: impl FnMut(&mut Facts) -> Result<(), group::Stop>,
) -> Result<(), group::Stop> {
    let mut stopped = None;
    let result = repeat(
        lab,
        facts,
        |_| true,
        |facts| {
            once(facts).map_err(|stop| {
                let why = match &stop {
                    group::Stop::Unsupported(why) | group::Stop::Failed(why) => why.clone(),
                };
                stopped = Some(stop);
                why
            })
        },
    );
    match (result, stopped) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(stop)) => Err(stop),
        (Err(why), None) => Err(group::Stop::Failed(why)),
    }
}

/// First explicit port experiments use; below it sit the peers, above [`LAST_PORT`] the kernel's
/// ephemeral range.
pub const FIRST_PORT: u32 = 10000;
pub const LAST_PORT: u32 = crate::pid1::EPHEMERAL_FIRST as u32 - 1;

/// The experiments' shared equipment. The port counter lives in memory shared with every worker,
/// so a worker that replaces a crashed one never reuses a port still in TIME_WAIT.
pub struct Lab {
    next_port: &'static AtomicU32,
    /// The next experiment index a worker may claim (see `runner`).
    pub next_claim: &'static AtomicU32,
    /// How many times each repeated cell runs at least: [`REPETITIONS`], or what the host asked
    /// for (`rph.repeat=`) when it re-measures cells a first boot found unstable.
    pub repetitions: usize,
    /// Which worker slot this process is; keeps concurrent workers' peers on distinct ports.
    pub slot: std::cell::Cell<u16>,
    pub channel: crate::channel::RawChannel,
    /// Whether the guest's network namespace is the machine's initial one (the guest is PID 1 of
    /// its own VM): only then may an experiment change a global sysctl (see `sandbox`).
    pub initial_netns: bool,
    peer4: OnceCell<Peer>,
    peer6: OnceCell<Peer>,
}

impl Lab {
    pub fn new(
        channel: crate::channel::RawChannel,
        repetitions: usize,
        initial_netns: bool,
    ) -> Lab {
        let shared = shared_page();
        Lab {
            next_port: &shared[0],
            next_claim: &shared[16],
            repetitions,
            slot: std::cell::Cell::new(0),
            channel,
            initial_netns,
            peer4: OnceCell::new(),
            peer6: OnceCell::new(),
        }
    }

    /// A port no other experiment of this run has used (until the range wraps).
    pub fn port(&self) -> u16 {
        let n = self.next_port.fetch_add(1, Ordering::Relaxed);
        (FIRST_PORT + n % (LAST_PORT - FIRST_PORT + 1)) as u16
    }

    /// The loopback listener of `family`, created on first use in this worker.
    pub fn peer(&self, family: IpFamily) -> std::io::Result<&Peer> {
        let cell = match family {
            IpFamily::V4 => &self.peer4,
            IpFamily::V6 => &self.peer6,
        };
        if let Some(p) = cell.get() {
            return Ok(p);
        }
        let peer = Peer::new(family, crate::net::PEER_PORT - self.slot.get())?;
        Ok(cell.get_or_init(|| peer))
    }
}

fn shared_page() -> &'static [AtomicU32] {
    // SAFETY: an anonymous shared mapping of one page, never unmapped and zero-filled (a valid
    // AtomicU32 array), so the slice is valid for the life of the process and of every child
    // forked from it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(p != libc::MAP_FAILED, "mmap of one shared page failed");
        std::slice::from_raw_parts(p as *const AtomicU32, 4096 / 4)
    }
}

/// Measures `experiment`. A socket call that answered with an errno no socket rule produces
/// (`wire::errno`) makes the experiment `failed`, its facts kept: it measured its environment.
pub fn run(experiment: &Experiment, lab: &Lab) -> Measured {
    let measured = by_family(experiment, lab);
    match (
        &measured.status,
        wire::errno::first_environment_fault(&measured.facts),
    ) {
        (Status::Completed | Status::Unsupported { .. }, Some(fault)) => Measured {
            status: Status::Failed {
                error: format!("{fault}: not socket semantics"),
            },
            facts: measured.facts,
        },
        _ => measured,
    }
}

fn by_family(experiment: &Experiment, lab: &Lab) -> Measured {
    match experiment {
        Experiment::Options(opt) => options::run(*opt, lab),
        Experiment::Bind(cell) => bind::run(cell, lab),
        Experiment::TimeWait(cell) => time_wait::run(cell, lab),
        Experiment::Connect(cell) => connect::run(cell, lab),
        Experiment::Multicast(cell) => multicast::run(cell, lab),
        Experiment::Lookup(case) => lookup::run(case, lab),
        Experiment::Distribution(cell) => distribution::run(cell, lab),
        Experiment::Steering(cell) => steering::run(cell, lab),
        Experiment::LookupCost(cell) => cost::run(cell, lab),
        Experiment::Autobind(cell) => autobind::run(cell, lab),
        Experiment::Numbering(cell) => numbering::run(cell, lab),
        Experiment::Address(cell) => address::run(cell, lab),
        Experiment::Ephemeral(cell) => ephemeral::run(cell, lab),
        Experiment::DualStack(cell) => dual_stack::run(cell, lab),
        Experiment::TwSysctl(cell) => tw_sysctl::run(cell, lab),
        Experiment::SelfTest(test) => selftest::run(*test, lab),
    }
}
