//! Reading what a guest left on its record channel and console.
//!
//! The channel is trusted for nothing: lines without the marker are noise, a line whose checksum
//! or JSON is wrong is corrupt, and the sequence numbers and the trailer's count tell whether
//! anything is missing. Nothing read here is ever executed or used as a path.

use std::collections::BTreeMap;

use wire::{DecodeError, ExperimentRecord, Header, Record, Trailer};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    pub header: Option<Header>,
    /// Experiment records by sequence number (duplicates keep the first).
    pub records: Vec<ExperimentRecord>,
    pub trailer: Option<Trailer>,
    /// Every way the stream is not whole, in words for people.
    pub problems: Vec<String>,
}

impl Transcript {
    /// Whole: header, trailer, every planned record, no damage.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty() && self.header.is_some() && self.trailer.is_some()
    }
}

pub fn parse(channel: &[u8]) -> Transcript {
    let text = String::from_utf8_lossy(channel);
    let mut t = Transcript::default();
    let mut by_seq = BTreeMap::new();
    let mut corrupt = 0usize;
    for (index, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match wire::decode_line(line) {
            Ok(Record::Header(h)) if t.header.is_none() => {
                if h.format != wire::FORMAT {
                    t.problems.push(format!(
                        "record format {} (this harness reads {})",
                        h.format,
                        wire::FORMAT
                    ));
                }
                t.header = Some(h);
            }
            Ok(Record::Header(_)) => t
                .problems
                .push(format!("line {}: a second header", index + 1)),
            Ok(Record::Experiment(e)) => {
                by_seq.entry(e.seq).or_insert(e);
            }
            Ok(Record::Trailer(tr)) => t.trailer = Some(tr),
            Err(DecodeError::NotARecord) => {}
            Err(DecodeError::Corrupt(why)) => {
                corrupt += 1;
                if corrupt <= 5 {
                    t.problems.push(format!("line {}: {why}", index + 1));
                }
            }
        }
    }
    if corrupt > 5 {
        t.problems
            .push(format!("{} more corrupt lines", corrupt - 5));
    }
    t.records = by_seq.into_values().collect();

    match (&t.header, &t.trailer) {
        (None, _) => t.problems.push("no header: the guest never spoke".into()),
        (Some(_), None) => t
            .problems
            .push("no trailer: the stream was cut short".into()),
        (Some(h), Some(tr)) => {
            if tr.records != h.planned {
                t.problems.push(format!(
                    "trailer counts {} records, header planned {}",
                    tr.records, h.planned
                ));
            }
        }
    }
    if let Some(h) = &t.header {
        let expected: Vec<u64> = (1..=h.planned).collect();
        let seen: Vec<u64> = t.records.iter().map(|r| r.seq).collect();
        let missing: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|s| seen.binary_search(s).is_err())
            .collect();
        if !missing.is_empty() && t.trailer.is_some() {
            t.problems.push(format!(
                "{} records missing (first: seq {})",
                missing.len(),
                missing[0]
            ));
        }
        if let Some(extra) = seen.iter().find(|&&s| s > h.planned) {
            t.problems.push(format!(
                "record seq {extra} beyond the {} planned",
                h.planned
            ));
        }
    }
    t
}

/// The last `lines` lines of a console log, for reports.
pub fn tail(console: &str, lines: usize) -> String {
    let all: Vec<&str> = console.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The kernel's panic line, if it panicked.
pub fn panic_line(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains("Kernel panic - not syncing"))
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(records: &[Record]) -> Vec<u8> {
        records
            .iter()
            .map(wire::encode_line)
            .collect::<String>()
            .into_bytes()
    }

    fn header(planned: u64) -> Record {
        Record::Header(Header {
            seq: 0,
            format: wire::FORMAT,
            uname: wire::Uname {
                sysname: "Linux".into(),
                release: "6.1.0".into(),
                version: "#1".into(),
                machine: "x86_64".into(),
            },
            pid1: true,
            netns: "net:[1]".into(),
            cpus: 2,
            selection: vec!["all".into()],
            planned,
            guest_version: "0".into(),
        })
    }

    fn experiment(seq: u64) -> Record {
        Record::Experiment(ExperimentRecord {
            seq,
            id: format!("x.{seq}"),
            status: wire::Status::Completed,
            elapsed_us: 1,
            facts: Default::default(),
        })
    }

    fn trailer(records: u64) -> Record {
        Record::Trailer(Trailer {
            seq: records + 1,
            records,
            elapsed_us: 5,
        })
    }

    #[test]
    fn whole_stream_with_console_noise_is_complete() {
        let mut bytes = b"[    1.0] random: crng init done\n".to_vec();
        bytes.extend(stream(&[
            header(2),
            experiment(1),
            experiment(2),
            trailer(2),
        ]));
        let t = parse(&bytes);
        assert!(t.is_complete(), "{:?}", t.problems);
        assert_eq!(t.records.len(), 2);
    }

    #[test]
    fn cut_stream_keeps_what_arrived() {
        let bytes = stream(&[header(3), experiment(1), experiment(2)]);
        let t = parse(&bytes[..bytes.len() - 10]);
        assert!(!t.is_complete());
        assert_eq!(t.records.len(), 1);
        assert!(t.problems.iter().any(|p| p.contains("no trailer")));
    }

    #[test]
    fn gap_and_corruption_are_reported() {
        let good = stream(&[
            header(3),
            experiment(1),
            experiment(2),
            experiment(3),
            trailer(3),
        ]);
        let text = String::from_utf8(good).unwrap();
        let damaged = text.replacen("\"x.2\"", "\"y.2\"", 1);
        let t = parse(damaged.as_bytes());
        assert!(!t.is_complete());
        assert!(
            t.problems.iter().any(|p| p.contains("checksum mismatch")),
            "{:?}",
            t.problems
        );
        assert!(
            t.problems.iter().any(|p| p.contains("1 records missing")),
            "{:?}",
            t.problems
        );
    }
}
