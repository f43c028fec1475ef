//! Property tests of the record line format: `decode_line` never panics, accepts nothing damaged
//! as a different record, and every record the guest can build comes back as it went out. Seeds
//! are the lines of a record channel captured from a real boot
//! (harness/tests/fixtures/transcripts/); cases proptest shrinks to on a failure are kept in
//! wire/proptest-regressions/ and belong in git.

use std::collections::BTreeMap;

use proptest::prelude::*;
use wire::{decode_line, encode_line, ExperimentRecord, Fact, Record, Status, Trailer};

const REAL_CHANNEL: &[u8] =
    include_bytes!("../../harness/tests/fixtures/transcripts/deb-6.1.records.log");

/// The lines that decode (the channel also holds the garbage self-test's stray bytes).
fn real_lines() -> Vec<String> {
    String::from_utf8_lossy(REAL_CHANNEL)
        .lines()
        .filter(|l| decode_line(l).is_ok())
        .map(str::to_string)
        .collect()
}

fn finite() -> impl Strategy<Value = f64> {
    // JSON has no NaN or infinity: serde_json writes them as null, which reads back as an error.
    // Guest code that can produce one must not put it in a fact (see docs/faults.md).
    any::<f64>().prop_filter("finite", |x| x.is_finite())
}

fn fact() -> impl Strategy<Value = Fact> {
    let text = ".{0,12}";
    prop_oneof![
        proptest::collection::vec(text, 0..4).prop_map(Fact::Outcomes),
        proptest::collection::vec(text, 0..4).prop_map(Fact::Receivers),
        any::<u64>().prop_map(Fact::Count),
        proptest::collection::vec(any::<u64>(), 0..4).prop_map(Fact::Counts),
        finite().prop_map(Fact::Number),
        proptest::collection::vec(finite(), 0..4).prop_map(Fact::Numbers),
        any::<bool>().prop_map(Fact::Flag),
        text.prop_map(Fact::Text),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Completed),
        ".{0,20}".prop_map(|reason| Status::Unsupported { reason }),
        "SIG[A-Z]{2,6}".prop_map(|signal| Status::Crashed { signal }),
        any::<u64>().prop_map(|after_ms| Status::TimedOut { after_ms }),
        ".{0,20}".prop_map(|error| Status::Failed { error }),
    ]
}

fn experiment() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        ".{0,40}",
        status(),
        any::<u64>(),
        proptest::collection::btree_map(".{0,10}", fact(), 0..5),
    )
        .prop_map(|(seq, id, status, elapsed_us, facts)| {
            Record::Experiment(ExperimentRecord {
                seq,
                id,
                status,
                elapsed_us,
                facts: facts.into_iter().collect::<BTreeMap<_, _>>(),
            })
        })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Integration tests have no `src/` beside them for proptest's default; cargo runs them
        // in the crate directory.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/fuzz.txt"),
        )),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn decode_survives_any_text(line in "(?s).{0,300}") {
        let _ = decode_line(&line);
        let _ = decode_line(&format!("{} {line}", wire::MARKER));
        let _ = decode_line(&format!("{} 00000000 {line}", wire::MARKER));
    }

    #[test]
    fn every_record_round_trips_on_one_line(record in experiment(), records in any::<u64>()) {
        for r in [record, Record::Trailer(Trailer { seq: 1, records, elapsed_us: 2 })] {
            let line = encode_line(&r);
            prop_assert_eq!(line.matches('\n').count(), 1, "one line: {:?}", line);
            prop_assert!(line.ends_with('\n'));
            let (back, back_numbers) = split_numbers(decode_line(&line).unwrap());
            let (sent, sent_numbers) = split_numbers(r);
            prop_assert_eq!(back, sent);
            // serde_json (without `float_roundtrip`) may read a float back 1 ulp off.
            for (b, s) in back_numbers.iter().zip(&sent_numbers) {
                prop_assert!((b - s).abs() <= s.abs() * 4.0 * f64::EPSILON, "{} read back as {}", s, b);
            }
        }
    }

    #[test]
    fn a_damaged_real_line_never_decodes_as_another_record(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let lines = real_lines();
        let line = &lines[which.index(lines.len())];
        let original = decode_line(line).unwrap();
        let mut bytes = line.as_bytes().to_vec();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        let flipped = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok(r) = decode_line(&flipped) {
            prop_assert_eq!(r, original.clone(), "a flipped byte produced another record");
        }
        let cut = &line[..cut.index(line.len())];
        if let Ok(r) = decode_line(cut) {
            prop_assert_eq!(r, original, "a truncated line produced another record");
        }
    }
}

/// The record with every float fact zeroed, and those floats in order.
fn split_numbers(record: Record) -> (Record, Vec<f64>) {
    let mut numbers = Vec::new();
    let record = match record {
        Record::Experiment(mut e) => {
            for fact in e.facts.values_mut() {
                match fact {
                    Fact::Number(x) => numbers.push(std::mem::take(x)),
                    Fact::Numbers(xs) => numbers.extend(xs.iter_mut().map(std::mem::take)),
                    _ => {}
                }
            }
            Record::Experiment(e)
        }
        other => other,
    };
    (record, numbers)
}

/// The first case proptest found: serde_json reads 6.602004303689995e140 back 1 ulp off.
#[test]
fn a_float_fact_reads_back_within_an_ulp() {
    let sent = 6.602004303689995e140;
    let record = Record::Experiment(ExperimentRecord {
        seq: 0,
        id: String::new(),
        status: Status::Completed,
        elapsed_us: 0,
        facts: [(String::new(), Fact::Number(sent))].into_iter().collect(),
    });
    let (_, back) = split_numbers(decode_line(&encode_line(&record)).unwrap());
    assert!((back[0] - sent).abs() <= sent * 4.0 * f64::EPSILON);
}

#[test]
fn the_seed_corpus_holds_a_header_experiments_and_a_trailer() {
    let kinds: Vec<&str> = real_lines()
        .iter()
        .map(|l| match decode_line(l).unwrap() {
            Record::Header(_) => "header",
            Record::Experiment(_) => "experiment",
            Record::Trailer(_) => "trailer",
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"header"));
    assert_eq!(kinds.last(), Some(&"trailer"));
    assert_eq!(kinds.len(), 10);
}
