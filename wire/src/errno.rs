//! Errnos that no socket rule produces. When a socket call in an experiment answers one of these,
//! the experiment measured a fault of its environment (the CPU, the emulator, memory, the guest
//! itself), not how the kernel binds, looks up or spreads sockets: the guest records it as
//! `failed`, and the host never reads it as a fact, whichever side it is found on (recordings made
//! before the guest knew are judged the same way).
//!
//! The list comes from the kernel paths the experiments reach (`inet_bind`/`inet6_bind`,
//! `inet_csk_get_port`, `udp_lib_get_port`, `__inet_hash_connect`, `tcp_v4_connect`/
//! `tcp_v6_connect`, `ip4_datagram_connect`/`ip6_datagram_connect`, `udp_sendmsg`/
//! `udpv6_sendmsg`, `sock_setsockopt`, `inet_csk_accept`, `ip_mc_join_group`): those answer with
//! EADDRINUSE, EADDRNOTAVAIL, EINVAL, EACCES, EAFNOSUPPORT, ENOPROTOOPT, EISCONN, EALREADY,
//! EINPROGRESS, ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EDESTADDRREQ, ENOTCONN, EOPNOTSUPP,
//! EAGAIN, EPERM, EMSGSIZE, EPIPE, ECONNRESET, ETIMEDOUT or ENODEV by rule. The errnos below come
//! only from something else failing. ENOSYS is not among them: a kernel that lacks a system call
//! (bpf(2) before 3.18) lacks a feature, which the experiment reports as `unsupported`.

/// Errno names (as the guest writes them) that are never socket semantics, each with why.
pub const NOT_SOCKET_SEMANTICS: &[(&str, &str)] = &[
    (
        "EFAULT",
        "a copy to or from user memory failed; the guest's buffers are valid, so the CPU or the \
         kernel's handling of it faulted (3.8 and 3.9 under a CPU offering SMAP)",
    ),
    (
        "ENOMEM",
        "a kernel allocation failed: the guest's memory, not a rule",
    ),
    (
        "ENOBUFS",
        "no buffer space for an skb or a socket: memory, not a rule",
    ),
    ("EINTR", "a signal interrupted the call"),
    (
        "EIO",
        "an I/O error, which no socket rule on loopback produces",
    ),
    (
        "EBADF",
        "the guest passed a closed descriptor: a bug in the guest",
    ),
    (
        "ENOTSOCK",
        "the guest passed a descriptor that is no socket: a bug in the guest",
    ),
    ("EMFILE", "the guest ran out of descriptors"),
    ("ENFILE", "the system ran out of files"),
    ("ENOSPC", "no space left, which no socket rule produces"),
];

/// Why `name` cannot be socket semantics, if it cannot.
pub fn not_socket_semantics(name: &str) -> Option<&'static str> {
    NOT_SOCKET_SEMANTICS
        .iter()
        .find(|(errno, _)| *errno == name)
        .map(|(_, why)| *why)
}

/// The first fact of `facts` that carries an errno of [`NOT_SOCKET_SEMANTICS`], as
/// `"<fact> = <errno>"`. Outcomes and receivers are where the guest writes errnos.
pub fn first_environment_fault(
    facts: &std::collections::BTreeMap<String, crate::Fact>,
) -> Option<String> {
    facts.iter().find_map(|(name, fact)| {
        let values = match fact {
            crate::Fact::Outcomes(v) | crate::Fact::Receivers(v) => v,
            _ => return None,
        };
        values
            .iter()
            .find(|v| not_socket_semantics(v).is_some())
            .map(|errno| format!("{name} = {errno}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fact;
    use std::collections::BTreeMap;

    #[test]
    fn socket_rules_are_not_faults_and_faults_are_found() {
        for rule in [
            "EADDRINUSE",
            "EADDRNOTAVAIL",
            "ENOPROTOOPT",
            "EINVAL",
            "ok",
            "none",
        ] {
            assert_eq!(not_socket_semantics(rule), None, "{rule}");
        }
        let mut facts = BTreeMap::new();
        facts.insert("bind.A".into(), Fact::Outcomes(vec!["ok".into()]));
        assert_eq!(first_environment_fault(&facts), None);
        facts.insert(
            "reply".into(),
            Fact::Receivers(vec!["A".into(), "EFAULT".into()]),
        );
        assert_eq!(
            first_environment_fault(&facts).as_deref(),
            Some("reply = EFAULT")
        );
    }
}
