//! Option support: can each reuse-related socket option be set, and what does reading it back say.
//!
//! Facts: `set` (Outcomes: setsockopt result), `get` (Outcomes: getsockopt result) and, when the
//! read succeeded, `value` (Count: the value read back).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SockOpt {
    ReuseAddr,
    ReusePort,
    AttachReuseportCbpf,
    AttachReuseportEbpf,
    DetachReuseportBpf,
    IncomingCpu,
}

impl SockOpt {
    pub const ALL: [SockOpt; 6] = [
        SockOpt::ReuseAddr,
        SockOpt::ReusePort,
        SockOpt::AttachReuseportCbpf,
        SockOpt::AttachReuseportEbpf,
        SockOpt::DetachReuseportBpf,
        SockOpt::IncomingCpu,
    ];

    /// The C name of the option.
    pub fn name(self) -> &'static str {
        match self {
            SockOpt::ReuseAddr => "SO_REUSEADDR",
            SockOpt::ReusePort => "SO_REUSEPORT",
            SockOpt::AttachReuseportCbpf => "SO_ATTACH_REUSEPORT_CBPF",
            SockOpt::AttachReuseportEbpf => "SO_ATTACH_REUSEPORT_EBPF",
            SockOpt::DetachReuseportBpf => "SO_DETACH_REUSEPORT_BPF",
            SockOpt::IncomingCpu => "SO_INCOMING_CPU",
        }
    }

    pub(super) fn id_suffix(&self) -> String {
        self.name().to_ascii_lowercase()
    }

    pub(super) fn describe(&self) -> String {
        let what = match self {
            SockOpt::ReuseAddr | SockOpt::ReusePort | SockOpt::IncomingCpu => "set to 1 on a fresh UDP socket",
            SockOpt::AttachReuseportCbpf => "attach a one-instruction classic BPF program to a fresh SO_REUSEPORT UDP socket",
            SockOpt::AttachReuseportEbpf => "load a trivial eBPF socket filter with bpf(2) and attach its fd to a fresh SO_REUSEPORT UDP socket",
            SockOpt::DetachReuseportBpf => "detach the reuseport program of a fresh SO_REUSEPORT UDP socket that has a classic one attached",
        };
        format!(
            "{}: {what}; record setsockopt's result, getsockopt's result and the value read back",
            self.name()
        )
    }
}

pub(super) fn all() -> Vec<SockOpt> {
    SockOpt::ALL.to_vec()
}
