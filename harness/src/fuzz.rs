//! Property tests: no input makes the record-stream parser or the YAML loaders panic, and what
//! they return keeps its invariants. Inputs are arbitrary bytes and text, and mutations
//! (truncations, splices, flipped bytes, deleted and repeated lines) of the real inputs: a
//! record channel captured from a real boot (tests/fixtures/transcripts/), and the repository's
//! kernels.yaml and claims.yaml. Those files are the seed corpus; cases proptest shrinks to on a
//! failure are kept in harness/proptest-regressions/ and belong in git.

use proptest::prelude::*;

use crate::boot::transcript;

const REAL_CHANNEL: &[u8] = include_bytes!("../tests/fixtures/transcripts/deb-6.1.records.log");
const KERNELS_YAML: &str = include_str!("../../kernels.yaml");
const CLAIMS_YAML: &str = include_str!("../../claims.yaml");

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Copies a range to another place (lines repeated, spliced into others).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Edit::Flip(at, mask)),
        (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..16),
                Just(b"\n".to_vec()),
                Just(wire::MARKER.as_bytes().to_vec()),
                Just(b": [{\n- ".to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 0usize..200).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), 0usize..400, any::<usize>()).prop_map(|(a, n, b)| Edit::Splice(a, n, b)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Truncate(i) => bytes.truncate(at(*i)),
            Edit::Flip(i, mask) if len > 0 => bytes[i % len] ^= mask,
            Edit::Flip(..) => {}
            Edit::Insert(i, new) => {
                let i = at(*i);
                bytes.splice(i..i, new.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = at(*i);
                bytes.drain(i..(i + n).min(len));
            }
            Edit::Splice(a, n, b) => {
                let a = at(*a);
                let piece: Vec<u8> = bytes[a..(a + n).min(len)].to_vec();
                let b = at(*b);
                bytes.splice(b..b, piece);
            }
        }
    }
    bytes
}

/// Mutates text; edits that split a UTF-8 sequence are repaired lossily, as a reader would.
fn mutate_text(text: &str, edits: &[Edit]) -> String {
    String::from_utf8_lossy(&apply(text.as_bytes().to_vec(), edits)).into_owned()
}

fn check_transcript(bytes: &[u8]) {
    let t = transcript::parse(bytes);
    let seqs: Vec<u64> = t.records.iter().map(|r| r.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "records sorted, unique: {seqs:?}"
    );
    if t.is_complete() {
        let h = t.header.as_ref().unwrap();
        assert_eq!(t.records.len() as u64, h.planned);
        assert_eq!(t.trailer.as_ref().unwrap().records, h.planned);
    }
    if t.header.is_none() {
        assert!(!t.is_complete());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn transcript_parse_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check_transcript(&bytes);
    }

    #[test]
    fn transcript_parse_survives_any_damage_to_a_real_channel(
        edits in proptest::collection::vec(edit(), 1..8)
    ) {
        let damaged = apply(REAL_CHANNEL.to_vec(), &edits);
        check_transcript(&damaged);
        // Whatever survived is what the guest sent: no record is invented.
        let real = transcript::parse(REAL_CHANNEL);
        for r in transcript::parse(&damaged).records {
            prop_assert!(real.records.contains(&r), "invented record {r:?}");
        }
    }

    #[test]
    fn console_helpers_survive_any_text(text in ".{0,2000}", n in 0usize..50) {
        let tail = transcript::tail(&text, n);
        prop_assert!(tail.lines().count() <= n);
        if let Some(line) = transcript::panic_line(&text) {
            prop_assert!(line.contains("Kernel panic - not syncing"));
        }
    }

    #[test]
    fn kernels_yaml_loader_survives_any_text(text in "(?s).{0,600}") {
        let _ = crate::matrix::parse(&text, "fuzz.yaml");
    }

    #[test]
    fn kernels_yaml_loader_survives_any_damage_to_the_real_file(
        edits in proptest::collection::vec(edit(), 1..6)
    ) {
        let text = mutate_text(KERNELS_YAML, &edits);
        if let Err(e) = crate::matrix::parse(&text, "kernels.yaml") {
            prop_assert!(e.to_string().starts_with("kernels.yaml"), "{e}");
        }
    }
}

proptest! {
    // claims.yaml is long and every parse resolves its patterns against the whole catalogue.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn claims_loader_survives_any_text(text in "(?s).{0,600}") {
        let _ = crate::judge::claims::parse(&text, "fuzz.yaml");
    }

    #[test]
    fn claims_loader_survives_any_damage_to_the_real_file(
        edits in proptest::collection::vec(edit(), 1..6)
    ) {
        let text = mutate_text(CLAIMS_YAML, &edits);
        if let Err(e) = crate::judge::claims::parse(&text, "claims.yaml") {
            prop_assert!(e.to_string().starts_with("claims.yaml"), "{e}");
        }
    }
}

#[test]
fn the_seed_corpus_is_what_it_claims_to_be() {
    assert!(transcript::parse(REAL_CHANNEL).header.is_some());
    crate::matrix::parse(KERNELS_YAML, "kernels.yaml").unwrap();
    crate::judge::claims::parse(CLAIMS_YAML, "claims.yaml").unwrap();
}
