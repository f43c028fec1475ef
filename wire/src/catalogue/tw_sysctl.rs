//! The TIME_WAIT sysctls of tcp(7): `tcp_tw_reuse` (a new connection takes over a TIME_WAIT
//! 4-tuple), `tcp_tw_recycle` (TIME_WAIT cut short; removed in 4.12), `tcp_max_tw_buckets` (a cap
//! on TIME_WAIT sockets) and `tcp_rfc1337` (whether a RST ends a TIME_WAIT).
//!
//! Ids are `twsys.<sysctl>.<setting>`: `default` reads the sysctl as a fresh network namespace
//! has it, a number sets it to that value. Every cell works on 127.0.0.1 in a network namespace of
//! its own. A sysctl the kernel keeps per network namespace is set there; one that only the guest's
//! initial namespace holds (a global knob, before it was made per namespace) is set there and
//! restored afterwards, while nothing else runs; on the host row a global knob is never changed
//! and the cell is unsupported. Every cell records `knob` (Outcomes: `per-netns`, `global`, or
//! `absent` when the initial namespace has no such sysctl either) and, where it sets the sysctl,
//! `set` (Outcomes: the write). A TIME_WAIT is always a client's: it connects to a listener,
//! closes first, and the server's close follows. Repetitions (three, or as many as the host asks
//! for) run side by side on distinct ports, and facts hold one value per repetition.
//!
//! The sysctls, and their facts:
//! - `tw-reuse.default`, `tw-recycle.default`, `rfc1337.default`: `value` (Outcomes: what the
//!   sysctl reads, or the errno of reading it: ENOENT where it does not exist).
//! - `tw-reuse.0`, `.1`, `.2`: `ip_local_port_range` is narrowed to the one port 40000
//!   (`range_set`, Outcomes; `range_knob` says where, as `knob` does), so a connection from a
//!   never-bound socket can only come from 40000. Such a connection to a listener is closed
//!   (`time_wait_seen`, Outcomes: `ok` when /proc/net/tcp shows 40000 in TIME_WAIT, else
//!   `absent`); after 2.1 s (reuse wants the TIME_WAIT's last timestamp more than a second old,
//!   which older kernels count in whole seconds: two ticks of the seconds clock) a new
//!   never-bound socket connects to the same listener (`reconnect`, Outcomes: `ok` when the
//!   TIME_WAIT 4-tuple was taken over, EADDRNOTAVAIL when not).
//! - `tw-recycle.1`: per repetition a TIME_WAIT made under the old value (0) and one made after the
//!   sysctl is set to 1; then /proc/net/tcp is read every 50 ms for 3 s. `recycled` and `control`
//!   (Outcomes: `gone` when the TIME_WAIT made under 1, resp. under 0, left within the 3 s, else
//!   `present`), `recycled_ms` (Numbers: when it was first seen gone). Unsupported where the
//!   sysctl does not exist.
//! - `max-tw-buckets.4`: the cap is set to the TIME_WAIT sockets the table already holds
//!   (`tw_in_table`, Numbers, from /proc/net/sockstat: zero in a namespace of its own at first,
//!   the guest's thousands where the table is global) plus 4, then eight connections are closed. `entered` (Outcomes: how
//!   many of the eight are in TIME_WAIT afterwards, in decimal), `overflows` (Outcomes: how much
//!   TcpExt TCPTimeWaitOverflow grew, in decimal), `warning` (Outcomes: `printed` when the kernel
//!   log (/dev/kmsg) got "time wait bucket table overflow" meanwhile, `not-printed`, or why the
//!   log could not be read: the errno of opening it, or `log-unreadable` when not even the record
//!   it already held could be read).
//! - `max-tw-buckets.0`: one connection is closed. `state_after_close` (Outcomes: what
//!   /proc/net/tcp shows at the client's address: `TIME_WAIT`, `none`, …), `rebind` (Outcomes:
//!   a new socket without SO_REUSEADDR binds that address), `overflows`, `warning` as above.
//! - `rfc1337.0`, `.1`: a raw IPPROTO_TCP socket watches the exchange and reads the sequence number
//!   after the server's FIN (`fin_seen`, Outcomes: `ok` or `absent`); once the client's address is
//!   in TIME_WAIT (`tw_before`, Outcomes: `ok` or `absent`), a second raw socket sends a RST
//!   from the server's address with exactly that sequence number, no options (`rst_sent`,
//!   Outcomes); 100 ms later `tw_after` (Outcomes: the state /proc/net/tcp shows, `TIME_WAIT` or
//!   `none`) and `rebind` (Outcomes: a new socket without SO_REUSEADDR binds the client's address).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TwKnob {
    TwReuse,
    TwRecycle,
    MaxTwBuckets,
    Rfc1337,
}

impl TwKnob {
    pub fn token(self) -> &'static str {
        match self {
            TwKnob::TwReuse => "tw-reuse",
            TwKnob::TwRecycle => "tw-recycle",
            TwKnob::MaxTwBuckets => "max-tw-buckets",
            TwKnob::Rfc1337 => "rfc1337",
        }
    }

    /// The sysctl's file.
    pub fn path(self) -> &'static str {
        match self {
            TwKnob::TwReuse => "/proc/sys/net/ipv4/tcp_tw_reuse",
            TwKnob::TwRecycle => "/proc/sys/net/ipv4/tcp_tw_recycle",
            TwKnob::MaxTwBuckets => "/proc/sys/net/ipv4/tcp_max_tw_buckets",
            TwKnob::Rfc1337 => "/proc/sys/net/ipv4/tcp_rfc1337",
        }
    }

    pub fn sysctl(self) -> &'static str {
        match self {
            TwKnob::TwReuse => "net.ipv4.tcp_tw_reuse",
            TwKnob::TwRecycle => "net.ipv4.tcp_tw_recycle",
            TwKnob::MaxTwBuckets => "net.ipv4.tcp_max_tw_buckets",
            TwKnob::Rfc1337 => "net.ipv4.tcp_rfc1337",
        }
    }
}

/// `None` reads the sysctl; a value sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TwSysctlCell {
    pub knob: TwKnob,
    pub setting: Option<u32>,
}

impl TwSysctlCell {
    /// The one port `tw-reuse` cells leave in the ephemeral range.
    pub const REUSE_PORT: u16 = 40000;
    /// How long `tw-reuse` cells wait before connecting again.
    pub const REUSE_WAIT_MS: u64 = 2100;
    /// How long `tw-recycle.1` watches its TIME_WAIT sockets.
    pub const RECYCLE_WATCH_MS: u64 = 3000;
    /// Connections `max-tw-buckets.4` closes.
    pub const OVERFLOW_CLOSES: u64 = 8;

    pub fn setting_token(&self) -> String {
        self.setting
            .map_or_else(|| "default".to_owned(), |v| v.to_string())
    }

    pub(super) fn id_suffix(&self) -> String {
        format!("{}.{}", self.knob.token(), self.setting_token())
    }

    pub(super) fn describe(&self) -> String {
        let name = self.knob.sysctl();
        match (self.knob, self.setting) {
            (_, None) => format!("{name} in a fresh network namespace: record its value"),
            (TwKnob::TwReuse, Some(v)) => format!(
                "{name}={v}, one ephemeral port: a client closes first, and 2.1 s later a new never-bound client connects to the same listener; record the connect"
            ),
            (TwKnob::TwRecycle, Some(v)) => format!(
                "{name}={v}: record whether a client's TIME_WAIT ends within 3 s, beside one made under 0"
            ),
            (TwKnob::MaxTwBuckets, Some(0)) => format!(
                "{name}=0: a client closes first; record its state, a rebind of its address, the overflow counter and the kernel log"
            ),
            (TwKnob::MaxTwBuckets, Some(v)) => format!(
                "{name}=<TIME_WAIT sockets already there>+{v}: eight clients close first; record how many enter TIME_WAIT, the overflow counter and the kernel log"
            ),
            (TwKnob::Rfc1337, Some(v)) => format!(
                "{name}={v}: a RST with the exact sequence number reaches a client's TIME_WAIT; record the TIME_WAIT after it and a rebind of the address"
            ),
        }
    }
}

pub(super) fn all() -> Vec<TwSysctlCell> {
    let cell = |knob, setting| TwSysctlCell { knob, setting };
    vec![
        cell(TwKnob::TwReuse, None),
        cell(TwKnob::TwReuse, Some(0)),
        cell(TwKnob::TwReuse, Some(1)),
        cell(TwKnob::TwReuse, Some(2)),
        cell(TwKnob::TwRecycle, None),
        cell(TwKnob::TwRecycle, Some(1)),
        cell(TwKnob::MaxTwBuckets, Some(4)),
        cell(TwKnob::MaxTwBuckets, Some(0)),
        cell(TwKnob::Rfc1337, None),
        cell(TwKnob::Rfc1337, Some(0)),
        cell(TwKnob::Rfc1337, Some(1)),
    ]
}
