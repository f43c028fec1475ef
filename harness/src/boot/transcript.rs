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

const PANIC: &str = "Kernel panic - not syncing";

/// The kernel's panic line, if it panicked.
pub fn panic_line(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains(PANIC))
        .map(|l| l.trim().to_string())
}

/// The end of a console log that holds a panic: from a few lines before the panic line (where an
/// oops that caused it is) to the end, however long the call trace after it; at least the last
/// `lines` lines, and never more than `lines` lines before the panic line.
pub fn panic_tail(console: &str, lines: usize) -> String {
    let all: Vec<&str> = console.lines().collect();
    let from_tail = all.len().saturating_sub(lines);
    let start = match all.iter().position(|l| l.contains(PANIC)) {
        Some(at) => from_tail.min(at.saturating_sub(lines)),
        None => from_tail,
    };
    all[start..].join("\n")
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
            workers: Some(1),
            channel: Some("shared-memory".into()),
            selection: vec!["all".into()],
            planned,
            guest_version: "0".into(),
            repetitions: None,
            preflight: None,
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

    /// A record channel captured from a real boot (Debian 6.1 under TCG, `--only
    /// options,selftest.crash,selftest.garbage`): 8 records, one of them a crash, and the garbage
    /// self-test's stray line that carries the record marker and a wrong checksum.
    const REAL: &[u8] = include_bytes!("../../tests/fixtures/transcripts/deb-6.1.records.log");

    fn lines(bytes: &[u8]) -> Vec<&[u8]> {
        bytes.split_inclusive(|&b| b == b'\n').collect()
    }

    /// The real transcript without the lines the garbage self-test wrote (the ones that do not
    /// decode), so what remains is exactly what the guest's record writer sent.
    fn clean() -> Vec<u8> {
        lines(REAL)
            .into_iter()
            .filter(|l| wire::decode_line(&String::from_utf8_lossy(l)).is_ok())
            .flatten()
            .copied()
            .collect()
    }

    #[test]
    fn real_transcript_with_stray_garbage_keeps_every_record_and_names_the_line() {
        let t = parse(REAL);
        assert_eq!(t.records.len(), 8);
        assert_eq!(t.header.as_ref().unwrap().planned, 8);
        assert_eq!(t.trailer.as_ref().unwrap().records, 8);
        assert_eq!(t.problems, ["line 9: checksum mismatch"]);
        assert!(!t.is_complete());
        let crash = t.records.iter().find(|r| r.id == "selftest.crash").unwrap();
        assert!(matches!(crash.status, wire::Status::Crashed { .. }));
    }

    #[test]
    fn real_transcript_as_the_guest_wrote_it_is_complete_in_any_order() {
        let clean = clean();
        assert_eq!(lines(&clean).len(), lines(REAL).len() - 2);
        let t = parse(&clean);
        assert!(t.is_complete(), "{:?}", t.problems);
        let seqs: Vec<u64> = t.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
        // The guest writes records as workers finish; order and repeats change nothing.
        let mut shuffled = lines(&clean);
        shuffled.reverse();
        shuffled.push(shuffled[3]);
        let t2 = parse(&shuffled.concat());
        assert!(t2.is_complete(), "{:?}", t2.problems);
        assert_eq!(t2.records, t.records);
    }

    #[test]
    fn every_truncation_of_a_real_transcript_keeps_what_arrived_and_is_not_complete() {
        let clean = clean();
        let whole = parse(&clean);
        // The trailer line is whole once every byte but its newline arrived.
        let trailer_end = clean.len() - 1;
        for cut in 0..clean.len() {
            let t = parse(&clean[..cut]);
            assert_eq!(t.is_complete(), cut >= trailer_end, "cut at byte {cut}");
            for r in &t.records {
                assert!(whole.records.contains(r), "cut at {cut}: {} changed", r.id);
            }
            let whole_lines = clean[..cut].iter().filter(|&&b| b == b'\n').count();
            // Every line that arrived whole counts; the cut one at most as a corrupt line.
            assert!(
                t.records.len() + usize::from(t.header.is_some()) >= whole_lines.min(9),
                "cut at {cut}: {} records from {whole_lines} whole lines",
                t.records.len()
            );
            if cut < trailer_end {
                assert!(!t.problems.is_empty(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_lost_line_of_a_real_transcript_is_a_named_gap() {
        let clean = clean();
        let all = lines(&clean);
        for lost in 1..all.len() - 1 {
            let mut kept = all.clone();
            let gone = kept.remove(lost);
            let t = parse(&kept.concat());
            assert!(!t.is_complete());
            let Ok(Record::Experiment(e)) = wire::decode_line(&String::from_utf8_lossy(gone))
            else {
                panic!("line {lost} is not an experiment record");
            };
            assert!(
                t.problems
                    .iter()
                    .any(|p| p == &format!("1 records missing (first: seq {})", e.seq)),
                "{:?}",
                t.problems
            );
            assert_eq!(t.records.len(), 7);
        }
        let headless = parse(&all[1..].concat());
        assert!(headless.problems.iter().any(|p| p.contains("no header")));
        let tailless = parse(&all[..all.len() - 1].concat());
        assert!(tailless.problems.iter().any(|p| p.contains("no trailer")));
        assert_eq!(
            tailless.records.len(),
            8,
            "records before a lost trailer are kept"
        );
    }

    #[test]
    fn any_flipped_bit_in_a_real_transcript_is_detected_or_harmless() {
        let clean = clean();
        let whole = parse(&clean);
        let mut harmless = 0;
        for at in 0..clean.len() {
            for bit in [0x01u8, 0x20, 0x80] {
                let mut damaged = clean.clone();
                damaged[at] ^= bit;
                let t = parse(&damaged);
                if t.is_complete() {
                    // Only a flip that changes no data may pass: the case of a checksum digit.
                    assert_eq!(t, whole, "byte {at} ^ {bit:#x} changed data unnoticed");
                    assert!(clean[at].is_ascii_hexdigit() && bit == 0x20);
                    harmless += 1;
                }
            }
        }
        assert!(
            harmless > 0 && harmless < 10 * 8,
            "{harmless} harmless flips"
        );
    }

    #[test]
    fn a_header_of_another_format_is_named() {
        let clean = clean();
        let all = lines(&clean);
        let Ok(Record::Header(mut h)) = wire::decode_line(&String::from_utf8_lossy(all[0])) else {
            panic!("the first line is the header");
        };
        h.format = wire::FORMAT + 1;
        let mut text = wire::encode_line(&Record::Header(h)).into_bytes();
        text.extend(all[1..].concat());
        let t = parse(&text);
        assert!(!t.is_complete());
        assert_eq!(
            t.problems,
            [format!(
                "record format {} (this harness reads {})",
                wire::FORMAT + 1,
                wire::FORMAT
            )]
        );
    }

    #[test]
    fn a_panic_tail_holds_the_panic_line_however_long_the_trace() {
        let mut console: Vec<String> = (0..50).map(|i| format!("[ {i}] boot")).collect();
        console.push("[ 50] Kernel panic - not syncing: Attempted to kill init!".into());
        console.extend((51..120).map(|i| format!("[ {i}] trace")));
        let console = console.join("\n");
        let kept = panic_tail(&console, 30);
        assert!(kept.starts_with("[ 20] boot"), "{kept}");
        assert!(kept.ends_with("[ 119] trace"));
        assert!(
            !tail(&console, 30).contains(PANIC),
            "the plain tail misses it"
        );
        assert_eq!(panic_tail("a\nb\nc", 2), "b\nc");
    }

    const CLEAN_CONSOLE: &str =
        include_str!("../../tests/fixtures/transcripts/deb-6.1.clean.console.log");
    const EXIT_INIT_CONSOLE: &str =
        include_str!("../../tests/fixtures/transcripts/deb-6.1.exit-init.console.log");
    const EARLY_DEATH_CONSOLE: &str =
        include_str!("../../tests/fixtures/transcripts/deb-6.1.early-death.console.log");

    #[test]
    fn panic_lines_and_tails_of_real_consoles() {
        assert_eq!(panic_line(CLEAN_CONSOLE), None);
        let exit = panic_line(EXIT_INIT_CONSOLE).unwrap();
        assert!(
            exit.ends_with(
                "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"
            ),
            "{exit}"
        );
        let early = panic_line(EARLY_DEATH_CONSOLE).unwrap();
        assert!(
            early.ends_with(
                "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
            ),
            "{early}"
        );
        for (console, line) in [(EXIT_INIT_CONSOLE, exit), (EARLY_DEATH_CONSOLE, early)] {
            let kept = panic_tail(console, 30);
            assert!(kept.contains(&line));
            assert!(kept.ends_with(console.lines().last().unwrap()));
        }
        // The exit-init trace is longer than 30 lines: a plain tail would lose the panic line.
        assert!(!tail(EXIT_INIT_CONSOLE, 30).contains(PANIC));
    }
}
