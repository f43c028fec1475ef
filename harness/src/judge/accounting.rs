//! Accounting for the documents, the cells and the waivers: every sentence of the four documents
//! that speaks of the subject is a claim or a listed not-a-claim; every claim covers every
//! catalogue dimension its sentence leaves open (the ones it fixes say why in `fixed`, or a
//! top-level convention takes the value for granted); and every waiver names only cells that the
//! recorded kernels really contradict where it applies.
//! Test-only: what these find is mended in claims.yaml, never at run time.

use std::collections::{BTreeMap, BTreeSet};

use wire::catalogue::Family;

use crate::judge::claims::{Claim, ClaimSet, Document};

/// The words that make a sentence speak of the subject: binding, addresses, ports, the two
/// options, TIME_WAIT, connect, multicast, lookups, load distribution (a word of the sentence
/// starting with one of them, case aside).
const TOPIC: &[&str] = &[
    "bind",
    "bound",
    "address",
    "so_reuse",
    "reuse",
    "time_wait",
    "timewait",
    "time-wait",
    "connect",
    "multicast",
    "lookup",
    "look up",
    "load",
    "distribut",
    "balanc",
    "listen",
    "linger",
    "5-tuple",
    "5\u{2011}tuple",
    "tuple",
];

/// Words that speak of the subject only as themselves ("port", not "portable").
const TOPIC_WORDS: &[&str] = &["port", "ports", "port's"];

/// The man pages' subject, narrower than the articles' because the pages document everything a
/// socket does: binding, address reuse and its options, the reuseport BPF options,
/// SO_INCOMING_CPU, IPV6_V6ONLY, TIME_WAIT, the ephemeral port range (the sysctl and the
/// per-socket option) and bind()'s and connect()'s address errors. "bound" is left out: in these
/// pages it is mostly the arithmetic word ("an upper bound"), and every sentence about a bound
/// socket also says bind, an address option or an errno of this list.
const MAN_TOPIC: &[&str] = &[
    "bind",
    "reuse",
    "so_reuse",
    "so_attach_reuseport",
    "so_detach_reuseport",
    "so_incoming_cpu",
    "ipv6_v6only",
    "v6only",
    "time_wait",
    "time-wait",
    "timewait",
    "tcp_tw",
    "ephemeral",
    "ip_local_port_range",
    "local_port_range",
    "eaddrinuse",
    "eaddrnotavail",
];

/// Abbreviations after which a period ends no sentence.
const ABBREVIATIONS: &[&str] = &[
    "e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "Fig.", "No.",
];

/// A document's text cut into sentences: every line is a block of its own (a heading, a table
/// row, a list item, a paragraph), and a paragraph is cut after `.`, `?` or `!` followed by a
/// space, except after the usual abbreviations.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut start = 0;
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            let ends = matches!(c, b'.' | b'?' | b'!')
                && bytes.get(i + 1) == Some(&b' ')
                && !ABBREVIATIONS.iter().any(|a| line[start..=i].ends_with(a));
            if ends {
                let sentence = line[start..=i].trim();
                if !sentence.is_empty() {
                    out.push(sentence.to_owned());
                }
                start = i + 1;
            }
            i += 1;
        }
        let rest = line[start..].trim();
        if !rest.is_empty() {
            out.push(rest.to_owned());
        }
    }
    out
}

/// Whether a sentence speaks of the subject.
pub fn on_topic(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    let topical =
        |word: &str| TOPIC.iter().any(|t| word.starts_with(t)) || TOPIC_WORDS.contains(&word);
    // Hyphenated words count whole ("time-wait") and by their parts ("try-10-times-to-bind").
    let whole =
        lower.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '\u{2011}'));
    let parts = lower.split(|c: char| !(c.is_alphanumeric() || c == '_'));
    whole.chain(parts).any(topical) || lower.contains("look up")
}

/// Whether a sentence of a man page speaks of the subject as the man pages' issue names it.
pub fn on_man_topic(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    let whole = lower.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'));
    let parts = lower.split(|c: char| !(c.is_alphanumeric() || c == '_'));
    whole
        .chain(parts)
        .any(|word| MAN_TOPIC.iter().any(|t| word.starts_with(t)))
        || lower.contains("port range")
}

/// Whether a sentence of `doc` speaks of the subject: the man pages' subject for a man page, the
/// articles' for an article.
pub fn speaks_of_subject(doc: Document, sentence: &str) -> bool {
    if Document::MAN_PAGES.contains(&doc) {
        on_man_topic(sentence)
    } else {
        on_topic(sentence)
    }
}

/// The on-topic sentences of `doc` that no claim quotes and no not-a-claim lists: a quote
/// accounts for a sentence when one contains the other.
pub fn unaccounted(set: &ClaimSet, doc: Document, text: &str) -> Vec<String> {
    let quotes: Vec<&str> = set
        .claims
        .iter()
        .filter(|c| c.doc == doc)
        .map(|c| c.quote.as_str())
        .chain(
            set.not_claims
                .iter()
                .filter(|n| n.doc == doc)
                .map(|n| n.quote.as_str()),
        )
        .collect();
    sentences(text)
        .into_iter()
        .filter(|s| speaks_of_subject(doc, s))
        .filter(|s| {
            !quotes
                .iter()
                .any(|q| s.contains(q) || q.contains(s.as_str()))
        })
        .collect()
}

/// The dimensions a claim is judged over, per family: the catalogue's own, with a bind cell's
/// two addresses (and what follows from them) counted as one, "the addresses".
fn coverage_dimensions(e: &wire::Experiment) -> Vec<(String, String)> {
    let dims = e.dimensions();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut addresses: Vec<String> = Vec::new();
    for d in dims {
        match (e.family(), d.name) {
            (Family::Bind, "a" | "b") => addresses.push(d.value.clone()),
            (Family::Bind, "relation" | "sockets") => {}
            _ => out.push((d.name.to_owned(), d.value.clone())),
        }
    }
    if !addresses.is_empty() {
        out.insert(1, ("addresses".to_owned(), addresses.join("+")));
    }
    out
}

/// For a measured claim: the dimensions its cells leave at one value (while the family has more
/// than one), with that value, per family read. A dimension whose value is fixed by the family
/// itself (a family with one cell) is left out.
pub fn single_valued(claim: &Claim) -> BTreeMap<String, String> {
    let catalogue = wire::catalogue();
    let read: BTreeSet<String> = claim.experiments().into_iter().collect();
    let mut per_family: BTreeMap<Family, Vec<&wire::Experiment>> = BTreeMap::new();
    for e in &catalogue {
        if read.contains(&e.id()) {
            per_family.entry(e.family()).or_default().push(e);
        }
    }
    let mut fixed = BTreeMap::new();
    for (family, cells) in per_family {
        let all: Vec<Vec<(String, String)>> = catalogue
            .iter()
            .filter(|e| e.family() == family)
            .map(coverage_dimensions)
            .collect();
        let mine: Vec<Vec<(String, String)>> =
            cells.iter().map(|e| coverage_dimensions(e)).collect();
        for (i, (name, _)) in all[0].iter().enumerate() {
            let values_all: BTreeSet<&str> = all.iter().map(|d| d[i].1.as_str()).collect();
            let values_mine: BTreeSet<&str> = mine.iter().map(|d| d[i].1.as_str()).collect();
            if values_all.len() > 1 && values_mine.len() == 1 {
                fixed.insert(
                    name.clone(),
                    values_mine
                        .into_iter()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    }
    fixed
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::judge::evaluate::{evaluate, fixtures, kernel_version, ordered, Match};

    fn document(doc: Document) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../docs/sources")
                .join(doc.file_name()),
        )
        .unwrap()
    }

    #[test]
    fn sentences_are_cut_at_their_ends_but_not_after_abbreviations() {
        let cut = sentences("One, e.g. this. Two? Three!\n\n# Heading\nA row 0.0.0.0:21 OK");
        assert_eq!(
            cut,
            [
                "One, e.g. this.",
                "Two?",
                "Three!",
                "# Heading",
                "A row 0.0.0.0:21 OK"
            ]
        );
        assert!(on_topic("SO_REUSEADDR lets it bind."));
        assert!(!on_topic("Welcome to the wonderful world of portability."));
        assert!(on_man_topic("SO_REUSEPORT (since Linux 3.9)"));
        assert!(on_man_topic("the range used for ephemeral ports."));
        assert!(!on_man_topic(
            "Bound the size of the advertised window to this value."
        ));
    }

    /// Every sentence of the four documents that speaks of binding, addresses, ports, the options,
    /// TIME_WAIT, connect, multicast, lookups or load distribution is quoted by a claim or listed
    /// as a not-a-claim with what it is.
    #[test]
    fn every_sentence_on_the_subject_is_a_claim_or_a_listed_not_a_claim() {
        let seen = assert_accounted(&Document::ARTICLES);
        assert!(seen > 200, "only {seen} sentences on the subject");
    }

    /// The same for the man pages, on their subject: binding, address reuse, SO_REUSEADDR,
    /// SO_REUSEPORT, the reuseport BPF options, SO_INCOMING_CPU, IPV6_V6ONLY, TIME_WAIT and the
    /// ephemeral port range.
    #[test]
    fn every_man_page_sentence_on_the_subject_is_a_claim_or_a_listed_not_a_claim() {
        let seen = assert_accounted(&Document::MAN_PAGES);
        assert!(seen > 80, "only {seen} man-page sentences on the subject");
    }

    /// Fails naming every on-topic sentence of `docs` that no claim quotes and no not-a-claim
    /// lists, and every document that says nothing on its subject; returns how many sentences
    /// were on the subject.
    fn assert_accounted(docs: &[Document]) -> usize {
        let set = fixtures::claims();
        let mut missing = Vec::new();
        let mut seen = 0;
        for &doc in docs {
            let text = document(doc);
            let on = sentences(&text)
                .iter()
                .filter(|s| speaks_of_subject(doc, s))
                .count();
            assert!(on > 0, "{} says nothing on the subject", doc.file_name());
            seen += on;
            for s in unaccounted(&set, doc, &text) {
                missing.push(format!("{}: {s}", doc.file_name()));
            }
        }
        assert!(
            missing.is_empty(),
            "{} sentence(s) neither claimed nor listed in not_claims:\n{}",
            missing.len(),
            missing.join("\n")
        );
        seen
    }

    /// For every measured claim, each catalogue dimension its cells leave at one value is named in
    /// `fixed`, saying why the sentence speaks of that value only, or is that value of a
    /// convention (options set before bind(), ...); and `fixed` names no dimension the cells
    /// cover.
    #[test]
    fn every_dimension_a_claim_leaves_at_one_value_is_justified() {
        let set = fixtures::claims();
        let mut problems = Vec::new();
        for claim in &set.claims {
            if claim.tests().is_empty() {
                continue;
            }
            let single = single_valued(claim);
            for (dimension, value) in &single {
                let conventional = set
                    .conventions
                    .iter()
                    .any(|c| &c.dimension == dimension && &c.value == value);
                if !claim.fixed.contains_key(dimension) && !conventional {
                    problems.push(format!(
                        "{}: every cell has {dimension} = {value}; cover the others or say why in fixed.{dimension}",
                        claim.id
                    ));
                }
            }
            for dimension in claim.fixed.keys() {
                if !single.contains_key(dimension) {
                    problems.push(format!(
                        "{}: fixed.{dimension}, but the cells take several values of it",
                        claim.id
                    ));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "{} problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }

    /// A waiver excuses what its text describes and nothing else. On the ten recorded kernels,
    /// every cell a claim's `expected_difference` covers among the claim's cells is contradicted
    /// on at least one kernel the claim speaks about and the waiver's `on` range includes, and
    /// every pattern of the waiver names such a cell: a waiver as wide as its claim, or one that
    /// names a situation no kernel shows, fails here.
    #[test]
    fn no_waiver_covers_a_cell_its_text_does_not_describe() {
        let set = fixtures::claims();
        let results = fixtures::recorded("ten");
        assert_eq!(results.len(), 10, "the ten recorded kernels");
        let evaluation = evaluate(&set, &results);
        let versions: Vec<_> = ordered(&results)
            .iter()
            .map(|k| kernel_version(k))
            .collect();
        let mut problems = Vec::new();
        let mut waivers = 0;
        for row in &evaluation.rows {
            let Some(waiver) = &row.claim.expected_difference else {
                continue;
            };
            waivers += 1;
            // The cells the waiver excused somewhere: contradicted (never missing, unstable or
            // matching) on a kernel in the claim's scope, inside the waiver's range.
            let mut excused = BTreeSet::new();
            for (verdict, version) in row.verdicts.iter().zip(&versions) {
                if row.claim.scope.covers_linux(version.as_ref()) != Some(true) {
                    continue;
                }
                for o in verdict.observations() {
                    if o.status == Match::Differs && waiver.covers(&o.experiment, version.as_ref())
                    {
                        excused.insert(o.experiment.clone());
                    }
                }
            }
            for cell in row.claim.experiments() {
                let covered = waiver.cells.iter().any(|p| wire::glob_matches(p, &cell));
                if covered && !excused.contains(&cell) {
                    problems.push(format!(
                        "{}: the waiver covers {cell}, which no recorded kernel it applies to contradicts",
                        row.claim.id
                    ));
                }
            }
            for pattern in &waiver.cells {
                if !excused.iter().any(|c| wire::glob_matches(pattern, c)) {
                    problems.push(format!(
                        "{}: the waiver's `{pattern}` names no contradicted cell",
                        row.claim.id
                    ));
                }
            }
        }
        assert!(
            waivers > 0,
            "no claim carries a waiver: the test tests nothing"
        );
        assert!(
            problems.is_empty(),
            "{} problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
}
