//! Option support: set each reuse-related option on a fresh socket and read it back.

use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};
use wire::catalogue::SockOpt;

use super::{Facts, Lab, Measured};
use crate::net::{self, bpf_stmt, errno_name, outcome, sockopt, ClassicBpf};

pub fn run(opt: SockOpt, _lab: &Lab) -> Measured {
    let mut facts = Facts::default();
    let sock = match Socket::new(Domain::IPV4, Type::DGRAM, None) {
        Ok(s) => s,
        Err(e) => {
            return facts.ended(wire::Status::Failed {
                error: format!("socket(AF_INET, SOCK_DGRAM) = {}", errno_name(&e)),
            })
        }
    };
    let fd = sock.as_raw_fd();
    let one: libc::c_int = 1;
    let name = match opt {
        SockOpt::ReuseAddr => sockopt::SO_REUSEADDR,
        SockOpt::ReusePort => sockopt::SO_REUSEPORT,
        SockOpt::IncomingCpu => sockopt::SO_INCOMING_CPU,
        SockOpt::AttachReuseportCbpf => sockopt::SO_ATTACH_REUSEPORT_CBPF,
        SockOpt::AttachReuseportEbpf => sockopt::SO_ATTACH_REUSEPORT_EBPF,
        SockOpt::DetachReuseportBpf => sockopt::SO_DETACH_REUSEPORT_BPF,
    };
    let set = match opt {
        SockOpt::ReuseAddr | SockOpt::ReusePort | SockOpt::IncomingCpu => {
            net::setsockopt_raw(fd, name, &one)
        }
        SockOpt::AttachReuseportCbpf => {
            facts.outcome(
                "reuseport",
                outcome(&net::setsockopt_raw(fd, sockopt::SO_REUSEPORT, &one)),
            );
            accept_everything().attach_reuseport(fd)
        }
        SockOpt::AttachReuseportEbpf => {
            facts.outcome(
                "reuseport",
                outcome(&net::setsockopt_raw(fd, sockopt::SO_REUSEPORT, &one)),
            );
            let prog = load_trivial_ebpf();
            facts.outcome("bpf_prog_load", outcome(&prog));
            match prog {
                Ok(prog_fd) => {
                    let r = net::setsockopt_raw(fd, name, &prog_fd);
                    // SAFETY: prog_fd came from bpf(2) and is closed once.
                    unsafe { libc::close(prog_fd) };
                    r
                }
                Err(e) => Err(e),
            }
        }
        SockOpt::DetachReuseportBpf => {
            facts.outcome(
                "reuseport",
                outcome(&net::setsockopt_raw(fd, sockopt::SO_REUSEPORT, &one)),
            );
            facts.outcome(
                "attach_cbpf",
                outcome(&accept_everything().attach_reuseport(fd)),
            );
            net::setsockopt_raw(fd, name, &one)
        }
    };
    facts.outcome("set", outcome(&set));
    let got = net::getsockopt_int(fd, name);
    facts.outcome("get", outcome(&got));
    if let Ok(v) = got {
        facts.set("value", wire::Fact::Count(v as u64));
    }
    facts.done()
}

/// `ret #0`: always pick member 0. The smallest valid reuseport program.
fn accept_everything() -> ClassicBpf {
    ClassicBpf(vec![bpf_stmt((libc::BPF_RET | libc::BPF_K) as u16, 0)])
}

/// Loads `r0 = 0; exit` as a socket filter. On kernels without bpf(2) this is ENOSYS, recorded.
fn load_trivial_ebpf() -> std::io::Result<libc::c_int> {
    // struct bpf_insn: code u8, dst:4|src:4 u8, off i16, imm i32.
    #[repr(C)]
    struct Insn {
        code: u8,
        regs: u8,
        off: i16,
        imm: i32,
    }
    let insns = [
        Insn {
            code: 0xb7,
            regs: 0,
            off: 0,
            imm: 0,
        }, // BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0
        Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        }, // BPF_JMP | BPF_EXIT
    ];
    let license = b"GPL\0";
    // The BPF_PROG_LOAD part of union bpf_attr, zero-padded to a size every kernel accepts.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        pad: [u8; 68],
    }
    let attr = ProgLoad {
        prog_type: 1, // BPF_PROG_TYPE_SOCKET_FILTER
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        pad: [0; 68],
    };
    const BPF_PROG_LOAD: libc::c_long = 5;
    // SAFETY: attr and the buffers it points to outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(fd as libc::c_int)
    }
}
