//! The accelerator a VM runs under — KVM, or TCG when KVM does not work here — and what each
//! implies for QEMU's arguments and the guest's concurrency.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// QEMU's `-accel` value. TCG runs single-threaded: with one host thread per vCPU (MTTCG)
    /// Debian's 7.2 took an int3 oops in `__inet_hash_connect` while another vCPU live-patched
    /// a static branch there, a race in emulating cross-modifying code that says nothing about
    /// the kernel. One thread takes the vCPUs in turns, so that race cannot happen, and parallel
    /// boots then use one host core each instead of fighting over them.
    pub fn qemu_value(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg,thread=single",
        }
    }

    /// Experiments the guest runs at once in the families that tolerate company: one per vCPU
    /// where vCPUs are real threads, one under single-threaded TCG, where a second worker only
    /// takes turns on the same host thread (measured: slower, not faster).
    pub fn guest_workers(self, cpus: u32) -> u32 {
        match self {
            Accel::Kvm => cpus.max(1),
            Accel::Tcg => 1,
        }
    }
}
