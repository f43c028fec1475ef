//! One record per line: `MARKER <crc32 of json, 8 hex digits> <json>`.
//!
//! The first record is a [`Header`] (format version and `uname`), then one [`ExperimentRecord`] per
//! experiment, then a [`Trailer`] carrying the count. Every record has a sequence number, so a
//! truncated stream, a lost line or a line garbled by stray console bytes is visible to the host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped whenever a record changes shape; the host refuses streams of another format.
pub const FORMAT: u32 = 1;

/// Every record line starts with this marker, so kernel messages that leak onto the channel can
/// never be mistaken for a record.
pub const MARKER: &str = "@rph1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Header(Header),
    Experiment(ExperimentRecord),
    Trailer(Trailer),
}

impl Record {
    pub fn seq(&self) -> u64 {
        match self {
            Record::Header(h) => h.seq,
            Record::Experiment(e) => e.seq,
            Record::Trailer(t) => t.seq,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uname {
    pub sysname: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always 0.
    pub seq: u64,
    pub format: u32,
    pub uname: Uname,
    /// True when the guest ran as PID 1 inside a VM, false when it ran as a process in a fresh
    /// network namespace on the host.
    pub pid1: bool,
    /// The network namespace the experiments ran in (`readlink /proc/self/ns/net`), so a host
    /// row can be shown to have run outside the host's own namespace.
    pub netns: String,
    /// Online CPUs as the guest saw them (the distribution experiments need to know).
    pub cpus: u32,
    /// How many experiments ran at once in the families that tolerate company. The host asks
    /// for one under single-threaded TCG, where a second worker only takes turns on the same
    /// host thread. `None` in recordings made before the guest said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// Where the records travel: `shared-memory` (the ivshmem log), `serial` (`/dev/ttyS1`,
    /// when the log cannot be mapped or was declined) or `stdout` (a process on the host). `None`
    /// in recordings made before the guest said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The selection patterns the guest was given (`all` when none).
    pub selection: Vec<String>,
    /// How many experiments the selection resolved to: the trailer must count exactly these.
    pub planned: u64,
    /// The guest binary's own version, so results name the code that measured them.
    pub guest_version: String,
    /// How many times each repeated cell ran at least (24 where its repetitions disagreed).
    /// `None` in recordings made before the guest said so (then 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetitions: Option<u32>,
    /// The pre-flight checks the guest ran before the catalogue, in order. `None` in recordings
    /// made before the guest ran them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<Vec<PreflightCheck>>,
}

/// One pre-flight check: plain loopback traffic that every kernel the harness knows carries (a
/// TCP connection with data, or a UDP datagram and its reply). A failure says the environment is
/// broken — the CPU model, the emulator, the guest's set-up — so nothing measured on that boot
/// says anything about socket semantics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightCheck {
    /// What was tried: `udp [::1] SO_REUSEADDR`.
    pub name: String,
    /// `ok`, or the call that failed and its errno: `sendto: EFAULT`.
    pub outcome: String,
}

impl Header {
    /// The checks that failed, as `name: outcome`.
    pub fn preflight_failures(&self) -> Vec<String> {
        self.preflight
            .iter()
            .flatten()
            .filter(|c| c.outcome != "ok")
            .map(|c| format!("{}: {}", c.name, c.outcome))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentRecord {
    pub seq: u64,
    /// A catalogue id, see [`crate::catalogue`].
    pub id: String,
    pub status: Status,
    /// Wall time the experiment took inside the guest.
    pub elapsed_us: u64,
    /// Raw facts by name. Which names an experiment records is documented in its family module.
    pub facts: BTreeMap<String, Fact>,
}

/// How an experiment ended. Kernel behaviour (an errno from bind) is never a status: it is a fact.
/// A status says whether the measuring itself worked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Status {
    /// Every fact the experiment promises is recorded.
    Completed,
    /// The kernel lacks something the experiment needs (for example SO_REUSEPORT on 3.8); the facts
    /// recorded so far say what was tried and what the kernel answered.
    Unsupported { reason: String },
    /// The experiment's worker died from a signal; facts are whatever was recorded before.
    Crashed { signal: String },
    /// The experiment exceeded its time budget and its worker was killed.
    TimedOut { after_ms: u64 },
    /// The experiment could not set itself up for a reason that is not the behaviour under test
    /// (for example socket() failing with EMFILE).
    Failed { error: String },
}

/// One raw observation. Repeated measurements are kept as lists, every value as seen, so the host
/// can tell a stable outcome from an unstable one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact {
    /// Results of a syscall, one per repetition: `"ok"` or an errno name such as `"EADDRINUSE"`.
    Outcomes(Vec<String>),
    /// Which socket (by its label in the experiment's setup) received something, one per
    /// repetition or per probe; `"none"` when nobody did.
    Receivers(Vec<String>),
    Count(u64),
    Counts(Vec<u64>),
    Number(f64),
    Numbers(Vec<f64>),
    Flag(bool),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    pub seq: u64,
    /// Experiment records written before this trailer.
    pub records: u64,
    pub elapsed_us: u64,
}

/// Encodes one record as a line (with trailing newline).
pub fn encode_line(record: &Record) -> String {
    let json = serde_json::to_string(record).expect("records always serialize");
    format!("{MARKER} {:08x} {json}\n", crc32(json.as_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The line does not carry the marker: console noise, not a record.
    NotARecord,
    /// The marker is there but the line is damaged.
    Corrupt(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NotARecord => f.write_str("not a record line"),
            DecodeError::Corrupt(why) => write!(f, "corrupt record line: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one line. The marker may be preceded by stray bytes (a serial line can carry a partial
/// kernel message before the guest's write); anything after the JSON is an error.
pub fn decode_line(line: &str) -> Result<Record, DecodeError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let start = line.find(MARKER).ok_or(DecodeError::NotARecord)?;
    let rest = &line[start + MARKER.len()..];
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| DecodeError::Corrupt("no space after marker".into()))?;
    let (crc, json) = rest
        .split_once(' ')
        .ok_or_else(|| DecodeError::Corrupt("no checksum".into()))?;
    let crc = u32::from_str_radix(crc, 16)
        .map_err(|_| DecodeError::Corrupt(format!("checksum {crc:?} is not hex")))?;
    if crc32(json.as_bytes()) != crc {
        return Err(DecodeError::Corrupt("checksum mismatch".into()));
    }
    serde_json::from_str(json).map_err(|e| DecodeError::Corrupt(e.to_string()))
}

/// CRC-32 (IEEE), bitwise: records are short and this keeps the crate dependency-free.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let mut facts = BTreeMap::new();
        facts.insert(
            "bind_b".to_string(),
            Fact::Outcomes(vec!["EADDRINUSE".into(), "ok".into()]),
        );
        Record::Experiment(ExperimentRecord {
            seq: 3,
            id: "options.so_reuseport".into(),
            status: Status::Crashed {
                signal: "SIGSEGV".into(),
            },
            elapsed_us: 12,
            facts,
        })
    }

    #[test]
    fn round_trips() {
        let line = encode_line(&sample());
        assert!(line.starts_with(MARKER));
        assert_eq!(decode_line(&line).unwrap(), sample());
    }

    #[test]
    fn stray_prefix_is_tolerated_but_damage_is_not() {
        let line = encode_line(&sample());
        assert_eq!(decode_line(&format!("[  1.2] x{line}")).unwrap(), sample());
        let damaged = line.replacen("EADDRINUSE", "EADDRINUSF", 1);
        assert!(matches!(
            decode_line(&damaged),
            Err(DecodeError::Corrupt(_))
        ));
        assert_eq!(
            decode_line("[    0.1] Linux version"),
            Err(DecodeError::NotARecord)
        );
    }

    #[test]
    fn crc_matches_reference() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
