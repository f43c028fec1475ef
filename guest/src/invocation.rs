//! What the guest was asked to do. As PID 1 it reads the kernel command line (`rph.run=a,b`,
//! `rph.workers=N`, `rph.repeat=N`, `rph.channel=serial`; everything else there belongs to the
//! kernel); as a process the arguments are selection patterns, and `rph.workers=N` and
//! `rph.repeat=N` may be among them.

/// The kernel argument (and process argument) that bounds the concurrent workers.
const WORKERS: &str = "rph.workers=";
const RUN: &str = "rph.run=";
/// How many times each cell repeats at least (the host asks for more when it re-measures cells
/// a first boot found unstable).
const REPEAT: &str = "rph.repeat=";
/// Skips the shared-memory log and sends records over the serial port: the fallback path, on
/// purpose (for tests, and for a kernel whose log misbehaves).
const SERIAL_ONLY: &str = "rph.channel=serial";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    /// Experiment id prefixes; empty means the whole catalogue.
    pub selection: Vec<String>,
    /// At most this many experiments at once; `None` means one per online CPU.
    pub workers: Option<u32>,
    /// Repetitions of every repeated cell; `None` means the default.
    pub repeat: Option<u32>,
    /// Records go over the serial port even when the shared-memory log is there.
    pub serial_only: bool,
}

impl Invocation {
    pub fn from_cmdline(cmdline: &str) -> Invocation {
        let mut inv = Invocation::default();
        for arg in cmdline.split_whitespace() {
            if let Some(list) = arg.strip_prefix(RUN) {
                inv.add_patterns(list);
            } else if arg == SERIAL_ONLY {
                inv.serial_only = true;
            } else if !inv.take_workers(arg) {
                inv.take_repeat(arg);
            }
        }
        inv
    }

    pub fn from_args(args: impl IntoIterator<Item = String>) -> Invocation {
        let mut inv = Invocation::default();
        for arg in args {
            if !inv.take_workers(&arg) && !inv.take_repeat(&arg) {
                inv.selection.push(arg);
            }
        }
        inv
    }

    fn add_patterns(&mut self, list: &str) {
        self.selection.extend(
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }

    /// A repetition count that is not a positive number is ignored (the default), and said so.
    fn take_repeat(&mut self, arg: &str) -> bool {
        let Some(n) = arg.strip_prefix(REPEAT) else {
            return false;
        };
        match n.parse::<u32>() {
            Ok(n) if n > 0 => self.repeat = Some(n),
            _ => eprintln!("guest: ignoring {arg}: not a positive number"),
        }
        true
    }

    /// A worker bound that is not a positive number is ignored (one per CPU), and said so on the
    /// console: the guest has nobody else to tell.
    fn take_workers(&mut self, arg: &str) -> bool {
        let Some(n) = arg.strip_prefix(WORKERS) else {
            return false;
        };
        match n.parse::<u32>() {
            Ok(n) if n > 0 => self.workers = Some(n),
            _ => eprintln!("guest: ignoring {arg}: not a positive number"),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_command_line() {
        let inv = Invocation::from_cmdline(
            "console=ttyS0 panic=-1 rph.run=bind,options, rph.workers=1 nosmap rph.run=lookup\n",
        );
        assert_eq!(inv.selection, ["bind", "options", "lookup"]);
        assert_eq!(inv.workers, Some(1));
        assert!(!inv.serial_only);
        assert!(Invocation::from_cmdline("quiet rph.channel=serial").serial_only);
        assert_eq!(
            Invocation::from_cmdline("console=ttyS0"),
            Invocation::default()
        );
    }

    #[test]
    fn process_arguments() {
        let args = ["bind.tcp", "rph.workers=3", "options"].map(String::from);
        let inv = Invocation::from_args(args);
        assert_eq!(inv.selection, ["bind.tcp", "options"]);
        assert_eq!(inv.workers, Some(3));
    }

    #[test]
    fn nonsense_worker_counts_are_ignored() {
        for bad in ["rph.workers=0", "rph.workers=two", "rph.workers="] {
            assert_eq!(Invocation::from_cmdline(bad).workers, None, "{bad}");
        }
    }
}
