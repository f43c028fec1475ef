//! The CPU a kernel is booted on. It is part of the measuring environment, like the emulator: a
//! CPU feature an old kernel mishandles makes socket calls fail for reasons that are not socket
//! semantics (kernels before 3.12 fail every IPv6 UDP send with EFAULT when the CPU offers SMAP). So the
//! model is chosen per kernel *version* — a user's own 3.10 or 4.0 build gets what its version
//! needs, whatever its row is called — and the exact `-cpu` value and kernel command-line
//! additions go into the result of every attempt.
//!
//! A row's explicit `boot: { cpu: … }` wins: it is used verbatim and no adjustment is applied.
//! A kernel whose version cannot be told gets every adjustment: each one only hides a feature
//! that the experiments never need, so applying one where it is not needed costs nothing, while
//! leaving one out where it is needed records emulation faults as facts.

use crate::boot::accel::Accel;
use crate::version::{Version, VersionRange};

/// The CPU model and kernel arguments one boot gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuChoice {
    /// QEMU's `-cpu` value, exactly as passed.
    pub cpu: String,
    /// Kernel command-line arguments the choice adds (before the row's own `cmdline`).
    pub cmdline: Vec<String>,
    /// One line per adjustment applied, for people reading the result.
    pub reasons: Vec<String>,
}

/// One version-keyed adjustment: CPU features hidden from kernels in `kernels`, and why.
struct Adjustment {
    /// A version range as kernels.yaml and claims.yaml write them (`<3.10`, `*`).
    kernels: &'static str,
    /// Only under this accelerator (`None`: under every one).
    accel: Option<Accel>,
    /// Features removed from the base model (`-cpu max,-smap`).
    hide: &'static [&'static str],
    why: &'static str,
}

/// Every adjustment, measured on real kernels (see docs/faults.md, "The CPU model"): each of the
/// features `-cpu max` adds over `qemu64` under TCG (SMAP, SMEP, UMIP, FSGSBASE, LA57, PKU, MPX,
/// XSAVE, AVX/AVX2, …) was offered alone to 3.8, 3.9, 4.4, 4.5 and 4.6 with the whole catalogue;
/// only SMAP changed an outcome, on 3.8 and 3.9 (the 4.x images are built without
/// CONFIG_X86_SMAP, which the minimal config has from 3.7 to about 3.14).
const ADJUSTMENTS: &[Adjustment] = &[
    Adjustment {
        kernels: "*",
        accel: Some(Accel::Tcg),
        hide: &["cx16"],
        why: "TCG's cmpxchg16b let SLUB corrupt the heap of Debian's 6.12 and 7.2 (panics in \
              __kmalloc); without CX16 SLUB takes its locked path, which nothing measured depends on",
    },
    Adjustment {
        kernels: "<3.12",
        accel: None,
        hide: &["smap"],
        why: "with SMAP, kernels before 3.12 fail every IPv6 UDP send with EFAULT: the checksum-and-copy \
              path lacked STAC/CLAC until \"x86, smap: Handle csum_partial_copy_*_user()\" (7263dda41b5a, \
              v3.12; 3.10.13 by backport). Measured on 3.8 and 3.9; hiding it changed nothing on 4.4-4.6",
    },
];

/// The base model: every feature TCG can emulate, or the host's own CPU under KVM.
fn base(accel: Accel) -> &'static str {
    match accel {
        Accel::Tcg => "max",
        Accel::Kvm => "host",
    }
}

/// The CPU for a kernel of `version` (`None`: unknown) under `accel`, unless the row names one.
pub fn choose(accel: Accel, version: Option<&Version>, explicit: Option<&str>) -> CpuChoice {
    if let Some(cpu) = explicit {
        return CpuChoice {
            cpu: cpu.to_owned(),
            cmdline: Vec::new(),
            reasons: vec![format!("`-cpu {cpu}` from the kernel's row")],
        };
    }
    let mut hidden: Vec<&str> = Vec::new();
    let mut reasons = Vec::new();
    for adjustment in ADJUSTMENTS {
        if adjustment.accel.is_some_and(|a| a != accel) {
            continue;
        }
        let range = VersionRange::try_from(adjustment.kernels.to_owned())
            .expect("adjustment ranges are valid");
        let applies = match version {
            Some(v) => range.contains(v),
            None => true,
        };
        if !applies {
            continue;
        }
        for feature in adjustment.hide {
            if !hidden.contains(feature) {
                hidden.push(feature);
            }
        }
        let whom = match version {
            Some(_) if range.bounds.is_empty() => String::new(),
            Some(_) => format!(" (kernels {range})"),
            None => " (kernel version unknown: every adjustment applies)".to_owned(),
        };
        reasons.push(format!(
            "-{}{whom}: {}",
            adjustment.hide.join(",-"),
            adjustment.why
        ));
    }
    let mut cpu = base(accel).to_owned();
    for feature in hidden {
        cpu.push_str(",-");
        cpu.push_str(feature);
    }
    CpuChoice {
        cpu,
        cmdline: Vec::new(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::try_from(text.to_owned()).unwrap()
    }

    #[test]
    fn every_adjustment_range_parses() {
        for adjustment in ADJUSTMENTS {
            VersionRange::try_from(adjustment.kernels.to_owned()).unwrap();
        }
    }

    #[test]
    fn old_kernels_get_their_features_hidden_by_version() {
        assert_eq!(
            choose(Accel::Tcg, Some(&v("3.8")), None).cpu,
            "max,-cx16,-smap"
        );
        assert_eq!(
            choose(Accel::Tcg, Some(&v("3.9.11")), None).cpu,
            "max,-cx16,-smap"
        );
        assert_eq!(choose(Accel::Tcg, Some(&v("6.1")), None).cpu, "max,-cx16");
        assert_eq!(choose(Accel::Kvm, Some(&v("6.1")), None).cpu, "host");
        assert_eq!(choose(Accel::Kvm, Some(&v("3.8")), None).cpu, "host,-smap");
    }

    #[test]
    fn an_unknown_version_gets_every_adjustment_and_says_so() {
        let choice = choose(Accel::Tcg, None, None);
        assert_eq!(choice.cpu, "max,-cx16,-smap");
        assert!(choice.reasons.iter().all(|r| r.contains("version unknown")));
    }

    #[test]
    fn the_rows_own_cpu_wins() {
        let choice = choose(Accel::Tcg, Some(&v("3.8")), Some("Nehalem"));
        assert_eq!(choice.cpu, "Nehalem");
        assert!(choice.cmdline.is_empty());
    }
}
