//! The documents' claims (`claims.yaml`): what each document says, for which system, and which
//! measured fact of which experiments would show it. Parsed once into types that cannot be wrong,
//! then checked against the experiment catalogue, with every error at `file:line:column`.
//!
//! A claim is *measured* (one or more tests, each a set of experiments, a fact and an expected
//! value) or *untested* (with the reason no experiment can test it). Claims made for BSD, Windows
//! or Solaris stay measured: on Linux they are judged as "claimed for another OS", and the report
//! still says whether Linux agrees.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use wire::catalogue::{display_addr, Experiment};

use crate::version::{Version, VersionRange};
use crate::yaml::{self, Location, YamlError};

/// The documents the claims come from, by their path under `docs/sources/`: four articles people
/// read, and the seven Linux man pages that are the documentation of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Document {
    #[serde(rename = "000_f525e833ba1f1436.txt")]
    UnixSocketFaq,
    #[serde(rename = "001_9f39c556cc2a774e.txt")]
    StackOverflowAnswer,
    #[serde(rename = "002_b21913d5ead863f6.txt")]
    Baeldung,
    #[serde(rename = "003_c882e691271ccdf3.txt")]
    LiangxuLinux,
    #[serde(rename = "man/socket.7.txt")]
    ManSocket,
    #[serde(rename = "man/ip.7.txt")]
    ManIp,
    #[serde(rename = "man/ipv6.7.txt")]
    ManIpv6,
    #[serde(rename = "man/tcp.7.txt")]
    ManTcp,
    #[serde(rename = "man/udp.7.txt")]
    ManUdp,
    #[serde(rename = "man/bind.2.txt")]
    ManBind,
    #[serde(rename = "man/connect.2.txt")]
    ManConnect,
}

/// The release of the man pages kept in `docs/sources/man/` (see the README there).
pub const MAN_PAGES_RELEASE: &str = "man-pages 6.9.1, Debian manpages and manpages-dev 6.9.1-1";

impl Document {
    /// The four articles.
    pub const ARTICLES: [Document; 4] = [
        Document::UnixSocketFaq,
        Document::StackOverflowAnswer,
        Document::Baeldung,
        Document::LiangxuLinux,
    ];

    /// The man pages, in the order of their sections' usual reading.
    pub const MAN_PAGES: [Document; 7] = [
        Document::ManSocket,
        Document::ManIp,
        Document::ManIpv6,
        Document::ManTcp,
        Document::ManUdp,
        Document::ManBind,
        Document::ManConnect,
    ];

    /// Every document: the articles, then the man pages.
    pub fn all() -> impl Iterator<Item = Document> {
        Document::ARTICLES.into_iter().chain(Document::MAN_PAGES)
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Document::UnixSocketFaq => "000_f525e833ba1f1436.txt",
            Document::StackOverflowAnswer => "001_9f39c556cc2a774e.txt",
            Document::Baeldung => "002_b21913d5ead863f6.txt",
            Document::LiangxuLinux => "003_c882e691271ccdf3.txt",
            Document::ManSocket => "man/socket.7.txt",
            Document::ManIp => "man/ip.7.txt",
            Document::ManIpv6 => "man/ipv6.7.txt",
            Document::ManTcp => "man/tcp.7.txt",
            Document::ManUdp => "man/udp.7.txt",
            Document::ManBind => "man/bind.2.txt",
            Document::ManConnect => "man/connect.2.txt",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Document::UnixSocketFaq => "UNIX Socket FAQ (Stevens et al.)",
            Document::StackOverflowAnswer => "Stack Overflow answer: SO_REUSEADDR and SO_REUSEPORT",
            Document::Baeldung => "Baeldung: SO_REUSEADDR vs SO_REUSEPORT",
            Document::LiangxuLinux => "Liangxu Linux: when do they actually take effect",
            Document::ManSocket => "socket(7)",
            Document::ManIp => "ip(7)",
            Document::ManIpv6 => "ipv6(7)",
            Document::ManTcp => "tcp(7)",
            Document::ManUdp => "udp(7)",
            Document::ManBind => "bind(2)",
            Document::ManConnect => "connect(2)",
        }
    }

    /// The source the report groups it under.
    pub fn source(self) -> Source {
        if Document::MAN_PAGES.contains(&self) {
            Source::ManPages
        } else {
            Source::Article(self)
        }
    }
}

/// What the report summarises and sections by: each article on its own, the man pages together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Article(Document),
    ManPages,
}

impl Source {
    /// The five sources: the four articles, then the man pages.
    pub fn all() -> Vec<Source> {
        Document::ARTICLES
            .into_iter()
            .map(Source::Article)
            .chain([Source::ManPages])
            .collect()
    }

    /// How the report names it: the article's file and title, or the man pages' release.
    pub fn label(self) -> String {
        match self {
            Source::Article(doc) => format!("`{}` {}", doc.file_name(), doc.title()),
            Source::ManPages => format!("Linux man pages ({MAN_PAGES_RELEASE})"),
        }
    }
}

/// A system other than Linux that a document makes a claim for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtherOs {
    /// 4.4BSD and its descendants (FreeBSD, OpenBSD, NetBSD, macOS, iOS).
    Bsd,
    Windows,
    Solaris,
}

/// Which systems a claim is made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every system, Linux included (`scope: any`).
    Any,
    /// Linux kernels in a version range (`scope: {linux: ">=3.9"}`).
    Linux(VersionRange),
    /// Another system (`scope: {os: bsd}`): on Linux the claim is out of scope, but still judged.
    Os(OtherOs),
}

impl Scope {
    /// Whether a Linux kernel of `version` is one the claim speaks about; `None` when the scope
    /// depends on a version that is unknown.
    pub fn covers_linux(&self, version: Option<&Version>) -> Option<bool> {
        match self {
            Scope::Any => Some(true),
            Scope::Os(_) => Some(false),
            Scope::Linux(range) if range.bounds.is_empty() => Some(true),
            Scope::Linux(range) => version.map(|v| range.contains(v)),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Any => f.write_str("any system"),
            Scope::Linux(r) if r.bounds.is_empty() => f.write_str("Linux"),
            Scope::Linux(r) => write!(f, "Linux {r}"),
            Scope::Os(OtherOs::Bsd) => f.write_str("BSD"),
            Scope::Os(OtherOs::Windows) => f.write_str("Windows"),
            Scope::Os(OtherOs::Solaris) => f.write_str("Solaris"),
        }
    }
}

/// What a measured fact must show. Every repetition of every matched experiment must agree: one
/// repetition that differs makes the fact unstable, which is never a pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expect {
    /// Every repetition of an Outcomes fact is this (`ok` or an errno name).
    Outcome(String),
    /// Every repetition of an Outcomes fact is an errno, whichever (`expect: fails`).
    Fails,
    /// Every repetition of a Receivers fact names this socket.
    Receiver(String),
    /// Every repetition of a Receivers fact names one of these sockets (a reuseport group).
    ReceiverIn(Vec<String>),
    /// A Counts fact passes Pearson's chi-square test of uniformity at family-wise level `alpha`
    /// (Bonferroni-corrected over the claim's experiments).
    Uniform { alpha: f64 },
    /// Whether every re-sent 4-tuple landed on the same member (`repeat_same == repeat_flows`).
    Sticky(bool),
    /// Time per flow at the largest group is at most `max_ratio` times that of a group of one.
    Flat { max_ratio: f64 },
    /// Time per flow at the largest group is at least `min_ratio` times that of a group of one
    /// (for "the cost grows with the group").
    Grows { min_ratio: f64 },
    /// Every value of a Numbers fact lies in `[min, max]` (for durations read from the kernel).
    Within { min: f64, max: f64 },
    /// The fact equals the same fact of the partner experiment whose id is this one's with every
    /// `replace` turned into `with` (for "X behaves exactly like Y").
    SameAs { replace: String, with: String },
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Outcome(o) => write!(f, "{o}"),
            Expect::Fails => f.write_str("an error"),
            Expect::Receiver(r) => write!(f, "received by {r}"),
            Expect::ReceiverIn(s) => write!(f, "received by one of {}", s.join("/")),
            Expect::Uniform { alpha } => write!(f, "uniform (chi-square, alpha {alpha})"),
            Expect::Sticky(true) => f.write_str("a 4-tuple always reaches the same member"),
            Expect::Sticky(false) => f.write_str("a 4-tuple does not always reach the same member"),
            Expect::Flat { max_ratio } => write!(
                f,
                "cost at the largest group <= {max_ratio}x a group of one"
            ),
            Expect::Grows { min_ratio } => write!(
                f,
                "cost at the largest group >= {min_ratio}x a group of one"
            ),
            Expect::Within { min, max } => write!(f, "between {min} and {max}"),
            Expect::SameAs { replace, with } => {
                write!(f, "same as with `{replace}` replaced by `{with}`")
            }
        }
    }
}

/// One test of a claim: a fact of some experiments, and what it must show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Test {
    /// Exact catalogue ids, or patterns where `*` matches any run of characters.
    pub experiments: Vec<String>,
    pub fact: String,
    pub expect: Expect,
    /// The catalogue ids the patterns resolve to, in catalogue order (filled by [`load`]).
    #[serde(skip_deserializing, default)]
    pub resolved: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// Judged from measurements; every test must hold.
    Measured(Vec<Test>),
    /// No experiment can test the claim; the reason says why.
    Untested(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Stable id: `<doc number>.<topic>.<what>`, lowercase, dots and dashes.
    pub id: String,
    pub doc: Document,
    /// Short and exact: a substring of the document.
    pub quote: String,
    pub scope: Scope,
    /// The claim says behaviour changes at this version; the change model (`changes`) compares it
    /// with the behaviour changes observed in the matrix. Default: no change claimed.
    #[serde(default)]
    pub changes_at: Option<Version>,
    /// Why the test reads the claim the way it does. Default: none.
    #[serde(default)]
    pub note: Option<String>,
    /// Where the claim is known to be wrong, and why: the cells named are still shown
    /// contradicted, as known, and a nightly run does not fail on them (a change is caught by
    /// `diff` and the change model instead). A contradicted cell it does not name fails like any
    /// other. Default: none, every contradiction fails.
    #[serde(default)]
    pub expected_difference: Option<Waiver>,
    /// For each catalogue dimension the claim's cells leave at one value (the transport, the
    /// addresses, the first socket's state, each socket's options, the user…), why that value is
    /// the only one the sentence speaks of — `transport: "the sentence is about listeners"`.
    /// A test requires one entry per such dimension. Default: none.
    #[serde(default)]
    pub fixed: BTreeMap<String, String>,
    pub check: Check,
}

/// A known difference between a claim and Linux: the cells it excuses, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// What Linux does instead, in words.
    pub why: String,
    /// The cells it excuses: ids or globs (`*` any run of characters), each matching cells the
    /// claim's tests read.
    pub cells: Vec<String>,
    /// The kernels it excuses them on (`<4.7`, `>=3.9,<5.10`), for a difference that came with a
    /// version or went with one: the same cell contradicted on a kernel outside the range fails.
    /// A list of ranges (`[">=3.9,<5.10", ">=6.1,<6.12"]`) excuses the cells on a kernel in any
    /// of them, for cells that two version-bound differences share. Default (empty): every
    /// kernel. A kernel whose version is unknown is outside any bounded range.
    #[serde(default, deserialize_with = "one_or_more_ranges")]
    pub on: Vec<VersionRange>,
}

/// `on:` is one version range or a list of them.
fn one_or_more_ranges<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<VersionRange>, D::Error> {
    struct Ranges;
    impl<'de> serde::de::Visitor<'de> for Ranges {
        type Value = Vec<VersionRange>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a version range or a list of version ranges")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            VersionRange::try_from(v.to_owned())
                .map(|r| vec![r])
                .map_err(E::custom)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut ranges = Vec::new();
            while let Some(range) = seq.next_element::<VersionRange>()? {
                ranges.push(range);
            }
            if ranges.is_empty() {
                return Err(serde::de::Error::custom(
                    "name at least one version range, or leave `on` out",
                ));
            }
            Ok(ranges)
        }
    }
    d.deserialize_any(Ranges)
}

impl Waiver {
    /// Whether the waiver names `experiment` on a kernel of `version`.
    pub fn covers(&self, experiment: &str, version: Option<&Version>) -> bool {
        let on_kernel = self.on.is_empty()
            || self.on.iter().any(|range| match version {
                _ if range.bounds.is_empty() => true,
                Some(v) => range.contains(v),
                None => false,
            });
        on_kernel && self.cells.iter().any(|p| wire::glob_matches(p, experiment))
    }

    /// Where it applies, for people: `` `cell`, `cell` on Linux <4.7 ``.
    pub fn applies_to(&self) -> String {
        let cells = self
            .cells
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let bounded: Vec<String> = self
            .on
            .iter()
            .filter(|r| !r.bounds.is_empty())
            .map(|r| r.to_string())
            .collect();
        if bounded.is_empty() || bounded.len() < self.on.len() {
            cells
        } else {
            format!("{cells} on Linux {}", bounded.join(" or "))
        }
    }
}

/// A sentence of a document that speaks of the subject but makes no statement a kernel could
/// show, with what it is instead: every such sentence is listed (a test walks the documents).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotClaim {
    pub doc: Document,
    /// Short and exact: a substring of the sentence.
    pub quote: String,
    pub is: NotClaimKind,
    /// Why, in a few words.
    pub why: String,
    /// For a restatement: the claim that tests the statement it repeats.
    #[serde(default)]
    pub of: Option<String>,
}

/// What a sentence that is not a claim is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotClaimKind {
    /// A title or section heading.
    Heading,
    /// A question (the document's own, or a reader's).
    Question,
    /// A judgement, a hedge or advice, not a behaviour.
    Opinion,
    /// Points elsewhere ("see above", "as I said").
    CrossReference,
    /// Announces what follows and states nothing itself.
    Introduction,
    /// An illustration whose statement another sentence makes (and a claim tests).
    Example,
    /// Defines a term.
    Definition,
    /// Repeats a statement a claim (`of`) already tests.
    Restatement,
    /// A line of a synopsis or a code example (the man pages').
    Code,
    /// Names the standards or the history of a call, and no behaviour.
    Standards,
    /// Shares a word with the subject but speaks of something else (binding to a device, a
    /// socket domain or an option the harness does not measure).
    OtherSubject,
}

/// A value of a catalogue dimension that the documents take for granted: options are set before
/// bind() unless a sentence says otherwise, B binds A's port, a TIME_WAIT is left by a plain
/// close(). A claim whose cells all take this value needs no `fixed` entry for it; a claim about
/// another value (the sentence that speaks of setting an option after bind) covers or fixes it
/// itself. Never for what a sentence speaks of or ranges over: see [`UNCONVENTIONAL`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Convention {
    /// A dimension name of the catalogue (`when`, `port`, `close`).
    pub dimension: String,
    /// The value every claim reads unless it says otherwise (`before-bind`).
    pub value: String,
    /// Why the documents take it for granted.
    pub why: String,
}

/// Dimensions no convention may fix: the transport, the addresses and families, the sockets'
/// states and sides, the options, the user, the group and the scenario — what sentences speak of
/// and what their quantifiers ("all", "any", "only if") range over. Each claim covers these or
/// says in `fixed` why its sentence speaks of one value only.
pub const UNCONVENTIONAL: &[&str] = &[
    "transport",
    "family",
    "addresses",
    "a",
    "b",
    "addr",
    "bind",
    "relation",
    "sockets",
    "new",
    "destinations",
    "source",
    "scenario",
    "first",
    "side",
    "how",
    "uid",
    "members",
    "kind",
    "option",
];

impl Claim {
    pub fn tests(&self) -> &[Test] {
        match &self.check {
            Check::Measured(tests) => tests,
            Check::Untested(_) => &[],
        }
    }

    /// Every experiment id the claim's tests read, in order, without repeats.
    pub fn experiments(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.tests()
            .iter()
            .flat_map(|t| t.resolved.iter())
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsFile {
    claims: Vec<Claim>,
    #[serde(default)]
    not_claims: Vec<NotClaim>,
    #[serde(default)]
    conventions: Vec<Convention>,
}

/// A validated claims file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimSet {
    pub source: PathBuf,
    pub claims: Vec<Claim>,
    /// The documents' sentences that are no claims, each with what it is.
    pub not_claims: Vec<NotClaim>,
    /// The dimension values every claim reads unless its sentence says otherwise.
    pub conventions: Vec<Convention>,
}

/// What a claims file holds, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub claims: Vec<Claim>,
    pub not_claims: Vec<NotClaim>,
    pub conventions: Vec<Convention>,
}

/// Reads, parses and validates a claims file against the catalogue.
pub fn load(path: &Path) -> Result<ClaimSet> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading claims file {}: {e}", path.display()))?;
    let parsed = parse(&text, &path.display().to_string())?;
    Ok(ClaimSet {
        source: path.to_owned(),
        claims: parsed.claims,
        not_claims: parsed.not_claims,
        conventions: parsed.conventions,
    })
}

/// Parses and validates claims from `text`; `name` starts every error message.
pub fn parse(text: &str, name: &str) -> Result<Parsed, YamlError> {
    let file: ClaimsFile = yaml::from_str_named(text, name)?;
    let mut claims = file.claims;
    let not_claims = file.not_claims;
    let conventions = file.conventions;
    let catalogue = catalogue_ids();
    let mut ids = HashSet::new();
    let mut occurrences = std::collections::HashMap::<String, usize>::new();
    for (index, claim) in claims.iter_mut().enumerate() {
        let occurrence = occurrences.entry(claim.id.clone()).or_default();
        let at = yaml::locate_key_value(text, "id", &claim.id, *occurrence);
        *occurrence += 1;
        let fail = |field: &str, message: String| {
            YamlError::invalid(
                name,
                at,
                format!("claims[{index}] ({}).{field}: {message}", claim.id),
            )
        };
        if !valid_id(&claim.id) {
            return Err(fail(
                "id",
                "ids are lowercase letters, digits, `.` and `-`".into(),
            ));
        }
        if !ids.insert(claim.id.clone()) {
            return Err(fail("id", format!("duplicate claim id `{}`", claim.id)));
        }
        if claim.quote.trim().is_empty() {
            return Err(fail("quote", "empty quote".into()));
        }
        if claim.expected_difference.is_some() && !matches!(claim.check, Check::Measured(_)) {
            return Err(fail(
                "expected_difference",
                "only a measured claim can be contradicted".into(),
            ));
        }
        if claim.expected_difference.is_some() && matches!(claim.scope, Scope::Os(_)) {
            return Err(fail(
                "expected_difference",
                "a claim made for another system is never judged as Linux's error: it is out of scope there".into(),
            ));
        }
        if claim.changes_at.is_some() && matches!(claim.scope, Scope::Os(_)) {
            return Err(fail(
                "changes_at",
                "a version change point needs a Linux or `any` scope".into(),
            ));
        }
        let id = claim.id.clone();
        match &mut claim.check {
            Check::Untested(reason) if reason.trim().is_empty() => {
                return Err(fail(
                    "check.untested",
                    "give the reason no experiment can test the claim".into(),
                ));
            }
            Check::Untested(_) => {}
            Check::Measured(tests) if tests.is_empty() => {
                return Err(fail(
                    "check.measured",
                    "a measured claim needs at least one test".into(),
                ));
            }
            Check::Measured(tests) => {
                let mut read: Vec<String> = Vec::new();
                for (t, test) in tests.iter_mut().enumerate() {
                    let field = format!("check.measured[{t}]");
                    let fact = test.fact.clone();
                    resolve_test(test, catalogue).map_err(|(culprit, message)| {
                        let needle = match culprit {
                            Culprit::Pattern(p) => p,
                            Culprit::Fact => format!("fact: {fact}"),
                            Culprit::Test => String::new(),
                        };
                        let located = locate_after(text, at, &needle).or(at);
                        YamlError::invalid(
                            name,
                            located,
                            format!("claims[{index}] ({id}).{field}: {message}"),
                        )
                    })?;
                    read.extend(test.resolved.iter().cloned());
                }
                if let Some(waiver) = &claim.expected_difference {
                    if waiver.why.trim().is_empty() {
                        return Err(fail("expected_difference.why", "say why".into()));
                    }
                    if waiver.cells.is_empty() {
                        return Err(fail(
                            "expected_difference.cells",
                            "name the cells the difference excuses".into(),
                        ));
                    }
                    for pattern in &waiver.cells {
                        if !read.iter().any(|id| wire::glob_matches(pattern, id)) {
                            let located = locate_after(text, at, pattern).or(at);
                            return Err(YamlError::invalid(
                                name,
                                located,
                                format!(
                                    "claims[{index}] ({id}).expected_difference.cells: `{pattern}` names no cell the claim's tests read"
                                ),
                            ));
                        }
                    }
                }
            }
        }
        for (dimension, why) in &claim.fixed {
            if why.trim().is_empty() {
                return Err(fail(
                    &format!("fixed.{dimension}"),
                    "say why the sentence speaks of this value only".into(),
                ));
            }
        }
    }
    for (index, not_claim) in not_claims.iter().enumerate() {
        let at = yaml::locate_key_value(text, "quote", &not_claim.quote, 0);
        let fail = |field: &str, message: String| {
            YamlError::invalid(name, at, format!("not_claims[{index}].{field}: {message}"))
        };
        if not_claim.quote.trim().is_empty() {
            return Err(fail("quote", "empty quote".into()));
        }
        if not_claim.why.trim().is_empty() {
            return Err(fail("why", "say what the sentence is instead".into()));
        }
        match (&not_claim.is, &not_claim.of) {
            (NotClaimKind::Restatement, None) => {
                return Err(fail(
                    "of",
                    "a restatement names the claim that tests it".into(),
                ))
            }
            (NotClaimKind::Restatement, Some(of)) if !ids.contains(of) => {
                return Err(fail("of", format!("no claim `{of}`")))
            }
            (NotClaimKind::Restatement, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(fail("of", "only a restatement names a claim".into())),
        }
    }
    let mut seen = HashSet::new();
    for (index, convention) in conventions.iter().enumerate() {
        let at = yaml::locate_key_value(text, "dimension", &convention.dimension, 0);
        let fail = |field: &str, message: String| {
            YamlError::invalid(name, at, format!("conventions[{index}].{field}: {message}"))
        };
        let dimension = convention.dimension.as_str();
        if UNCONVENTIONAL.contains(&dimension) || dimension.ends_with("flags") {
            return Err(fail(
                "dimension",
                format!(
                    "`{dimension}` is what sentences speak of or range over; each claim covers it or says why in `fixed`"
                ),
            ));
        }
        let values = dimension_values(dimension);
        if values.is_empty() {
            return Err(fail(
                "dimension",
                format!("no experiment of the catalogue has a dimension `{dimension}`"),
            ));
        }
        if !values.contains(convention.value.as_str()) {
            return Err(fail(
                "value",
                format!(
                    "`{dimension}` takes {}, not `{}`",
                    values.into_iter().collect::<Vec<_>>().join(", "),
                    convention.value
                ),
            ));
        }
        if convention.why.trim().is_empty() {
            return Err(fail(
                "why",
                "say why the documents take it for granted".into(),
            ));
        }
        if !seen.insert(dimension) {
            return Err(fail(
                "dimension",
                format!("a second convention for `{dimension}`"),
            ));
        }
    }
    Ok(Parsed {
        claims,
        not_claims,
        conventions,
    })
}

/// What a test's error is about, so that the error can point at it.
enum Culprit {
    Pattern(String),
    Fact,
    Test,
}

/// The first occurrence of `needle` at or after `from` (the claim's own line), so errors inside a
/// claim point at the offending scalar rather than at the claim.
fn locate_after(text: &str, from: Option<Location>, needle: &str) -> Option<Location> {
    let from = from?;
    if needle.is_empty() {
        return None;
    }
    text.lines()
        .enumerate()
        .skip(from.line - 1)
        .find_map(|(index, line)| {
            line.find(needle).map(|column| Location {
                line: index + 1,
                column: column + 1,
            })
        })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

/// Every value the catalogue's experiments give the dimension `name` (empty when none has it).
fn dimension_values(name: &str) -> BTreeSet<&'static str> {
    static VALUES: OnceLock<BTreeMap<&'static str, BTreeSet<String>>> = OnceLock::new();
    let all = VALUES.get_or_init(|| {
        let mut all: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
        for (_, e) in catalogue_ids() {
            for d in e.dimensions() {
                all.entry(d.name).or_default().insert(d.value);
            }
        }
        all
    });
    all.get(name)
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

fn catalogue_ids() -> &'static [(String, Experiment)] {
    static IDS: OnceLock<Vec<(String, Experiment)>> = OnceLock::new();
    IDS.get_or_init(|| wire::catalogue().into_iter().map(|e| (e.id(), e)).collect())
}

/// Resolves the test's patterns and checks its fact and expectation against every experiment.
/// The error names the offending pattern, when there is one, and says what is wrong.
fn resolve_test(
    test: &mut Test,
    catalogue: &[(String, Experiment)],
) -> Result<(), (Culprit, String)> {
    if test.experiments.is_empty() {
        return Err((
            Culprit::Test,
            "experiments: list at least one experiment id or pattern".into(),
        ));
    }
    let mut resolved = BTreeSet::new();
    for pattern in &test.experiments {
        let matched: Vec<usize> = catalogue
            .iter()
            .enumerate()
            .filter(|(_, (id, _))| wire::glob_matches(pattern, id))
            .map(|(i, _)| i)
            .collect();
        if matched.is_empty() {
            let hint = if pattern.contains('*') {
                "pattern matches no experiment"
            } else {
                "no experiment has this id"
            };
            return Err((
                Culprit::Pattern(pattern.clone()),
                format!("experiments: `{pattern}`: {hint} in the catalogue"),
            ));
        }
        for i in matched {
            let (id, experiment) = &catalogue[i];
            let kind = fact_kind(experiment, &test.fact).map_err(|m| {
                (
                    Culprit::Fact,
                    format!("fact: `{}` is not recorded by {id}: {m}", test.fact),
                )
            })?;
            check_expectation(&test.expect, experiment, &test.fact, kind)
                .map_err(|m| (Culprit::Fact, format!("expect: {m} (experiment {id})")))?;
            if let Expect::SameAs { replace, with } = &test.expect {
                let partner = id.replace(replace.as_str(), with);
                if partner == *id || !catalogue.iter().any(|(other, _)| *other == partner) {
                    return Err((
                        Culprit::Pattern(pattern.clone()),
                        format!("expect.same_as: {id} has no partner `{partner}` in the catalogue"),
                    ));
                }
            }
            resolved.insert(i);
        }
    }
    test.resolved = resolved
        .into_iter()
        .map(|i| catalogue[i].0.clone())
        .collect();
    Ok(())
}

/// The shape of a recorded fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKind {
    Outcomes,
    Receivers,
    Count,
    Counts,
    Numbers,
}

/// The facts each family records, as its module documentation in `wire` lists them. A name
/// ending in `.*` stands for one fact per socket label (`bind.A`, `bind.B`).
pub fn fact_kind(experiment: &Experiment, fact: &str) -> Result<FactKind, String> {
    use FactKind::*;
    let (table, labels): (&[(&str, FactKind)], Vec<String>) = match experiment {
        Experiment::Options(_) => (
            &[("set", Outcomes), ("get", Outcomes), ("value", Count)],
            vec![],
        ),
        Experiment::Bind(_) => (
            &[
                ("a_setup", Outcomes),
                ("a_flags", Outcomes),
                ("b_flags", Outcomes),
                ("b_bind", Outcomes),
                ("b_listen", Outcomes),
                ("a_local", Outcomes),
            ],
            vec![],
        ),
        Experiment::TimeWait(_) => (
            &[
                ("time_wait_seen", Outcomes),
                ("old_flags", Outcomes),
                ("new_flags", Outcomes),
                ("new_bind", Outcomes),
                ("new_listen", Outcomes),
                ("time_wait_left_ms", Numbers),
                ("state_after_close", Outcomes),
                ("peer_saw", Outcomes),
            ],
            vec![],
        ),
        Experiment::Connect(_) => (
            &[
                ("flags.*", Outcomes),
                ("bind.*", Outcomes),
                ("connect.*", Outcomes),
                ("reply", Receivers),
            ],
            vec!["A".into(), "B".into()],
        ),
        Experiment::Multicast(_) => (
            &[
                ("flags.*", Outcomes),
                ("bind.*", Outcomes),
                ("join.*", Outcomes),
                ("sender", Outcomes),
                ("send", Outcomes),
                ("received", Receivers),
                ("datagrams.*", Counts),
            ],
            vec!["A".into(), "B".into(), "C".into()],
        ),
        Experiment::Lookup(case) => {
            if let Some(probe) = fact.strip_prefix("to.") {
                let probes: Vec<String> = case.probes().iter().map(|a| display_addr(*a)).collect();
                return if probes.iter().any(|p| p == probe) {
                    Ok(Receivers)
                } else {
                    Err(format!("the scenario probes only {}", probes.join(", ")))
                };
            }
            (
                &[
                    ("flags.*", Outcomes),
                    ("bind.*", Outcomes),
                    ("listen.*", Outcomes),
                ],
                case.sockets().iter().map(|s| s.label.to_string()).collect(),
            )
        }
        Experiment::Distribution(_) => (
            &[
                ("bind", Outcomes),
                ("counts", Counts),
                ("flows", Count),
                ("lost", Count),
                ("repeat_flows", Count),
                ("repeat_same", Count),
                ("moved_after_close", Count),
                ("moved_after_join", Count),
                ("closed_flows_to_new", Count),
                ("tracked_flows", Count),
            ],
            vec![],
        ),
        Experiment::Steering(_) => (
            &[
                ("attach", Outcomes),
                ("counts", Counts),
                ("expected", Counts),
                ("steered", Count),
            ],
            vec![],
        ),
        Experiment::LookupCost(_) => (
            &[
                ("sizes", Counts),
                ("ns_per_flow", Numbers),
                ("samples", Counts),
                ("failed", Counts),
                ("unmeasured", Counts),
                ("bind", Outcomes),
            ],
            vec![],
        ),
        Experiment::Autobind(_) => (
            &[
                ("call", Outcomes),
                ("local_port", Outcomes),
                ("local_addr", Outcomes),
                ("reply", Receivers),
            ],
            vec!["A".into()],
        ),
        Experiment::Numbering(_) => (
            &[
                ("reuseport", Outcomes),
                ("bind", Outcomes),
                ("listen", Outcomes),
                ("attach", Outcomes),
                ("join", Outcomes),
                ("index0", Receivers),
                ("index1", Receivers),
                ("index2", Receivers),
                ("index3", Receivers),
                ("after0", Receivers),
                ("after1", Receivers),
                ("after2", Receivers),
                ("after3", Receivers),
                ("valid", Receivers),
                ("index_n", Receivers),
                ("index_max", Receivers),
                ("counts_n", Counts),
                ("counts_max", Counts),
                ("counts_past_end", Counts),
                ("counts_before_join", Counts),
                ("lost", Count),
                ("before_join", Receivers),
                ("after_join", Receivers),
                ("step1", Receivers),
                ("step2", Receivers),
                ("step3", Receivers),
            ],
            (0..wire::catalogue::NumberingCell::MEMBERS)
                .map(|i| format!("m{i}"))
                .collect(),
        ),
        Experiment::Address(_) => (
            &[
                ("to_loopback", Receivers),
                ("to_other", Receivers),
                ("x_bind", Outcomes),
                ("x_listen", Outcomes),
                ("x_name", Outcomes),
                ("y_bind", Outcomes),
                ("knob", Outcomes),
                ("set", Outcomes),
                ("bind", Outcomes),
                ("listen", Outcomes),
                ("low", Outcomes),
                ("high", Outcomes),
                ("unprivileged_port_start", Outcomes),
                ("setup", Outcomes),
                ("call", Outcomes),
                ("value", Outcomes),
            ],
            vec!["A".into(), "X".into()],
        ),
        Experiment::Ephemeral(_) => (
            &[
                ("knob", Outcomes),
                ("range_set", Outcomes),
                ("ports", Outcomes),
                ("failure", Outcomes),
                ("first_port", Numbers),
                ("filled", Outcomes),
                ("call", Outcomes),
                ("first", Outcomes),
                ("second", Outcomes),
                ("shared", Outcomes),
                ("set", Outcomes),
                ("get", Outcomes),
                ("bind", Outcomes),
                ("connect", Outcomes),
                ("port_after_bind", Outcomes),
                ("port_after_connect", Outcomes),
                ("distinct_ports", Outcomes),
                ("plain_bind", Outcomes),
            ],
            vec![],
        ),
        Experiment::DualStack(_) => (
            &[
                ("set", Outcomes),
                ("bind", Outcomes),
                ("listen", Outcomes),
                ("from_v4", Receivers),
                ("peer_v4", Outcomes),
                ("from_v6", Receivers),
                ("to_mapped", Outcomes),
                ("mapped_arrived", Receivers),
                ("knob", Outcomes),
                ("sysctl", Outcomes),
                ("socket", Outcomes),
                ("write", Outcomes),
                ("socket_before", Outcomes),
                ("socket_after", Outcomes),
                ("connect", Outcomes),
                ("addrform", Outcomes),
                ("domain_after", Outcomes),
            ],
            vec!["A".into(), "R".into()],
        ),
        Experiment::TwSysctl(_) => (
            &[
                ("knob", Outcomes),
                ("value", Outcomes),
                ("set", Outcomes),
                ("range_knob", Outcomes),
                ("range_set", Outcomes),
                ("time_wait_seen", Outcomes),
                ("reconnect", Outcomes),
                ("recycled", Outcomes),
                ("control", Outcomes),
                ("recycled_ms", Numbers),
                ("tw_in_table", Numbers),
                ("entered", Outcomes),
                ("overflows", Outcomes),
                ("warning", Outcomes),
                ("state_after_close", Outcomes),
                ("rebind", Outcomes),
                ("tw_before", Outcomes),
                ("fin_seen", Outcomes),
                ("rst_sent", Outcomes),
                ("tw_after", Outcomes),
            ],
            vec![],
        ),
        Experiment::SelfTest(_) => (&[], vec![]),
    };
    for (name, kind) in table {
        if let Some(prefix) = name.strip_suffix('*') {
            if let Some(label) = fact.strip_prefix(prefix) {
                return if labels.iter().any(|l| l == label) {
                    Ok(*kind)
                } else {
                    Err(format!(
                        "the experiment's sockets are {}",
                        labels.join(", ")
                    ))
                };
            }
        } else if *name == fact {
            return Ok(*kind);
        }
    }
    let names: Vec<String> = table
        .iter()
        .map(|(n, _)| {
            n.strip_suffix('*')
                .map(|p| format!("{p}<label>"))
                .unwrap_or_else(|| n.to_string())
        })
        .collect();
    Err(format!("its family records {}", names.join(", ")))
}

fn check_expectation(
    expect: &Expect,
    experiment: &Experiment,
    fact: &str,
    kind: FactKind,
) -> Result<(), String> {
    let needs = |wanted: FactKind, what: &str| {
        if kind == wanted {
            Ok(())
        } else {
            Err(format!(
                "{what} needs a {wanted:?} fact, `{fact}` is {kind:?}"
            ))
        }
    };
    match expect {
        Expect::Outcome(_) | Expect::Fails => needs(FactKind::Outcomes, "outcome"),
        Expect::Receiver(_) | Expect::ReceiverIn(_) => needs(FactKind::Receivers, "receiver"),
        Expect::Uniform { alpha } => {
            if alpha.is_nan() || *alpha <= 0.0 || *alpha >= 1.0 {
                return Err(format!(
                    "uniform.alpha must lie between 0 and 1, not {alpha}"
                ));
            }
            needs(FactKind::Counts, "uniform")
        }
        Expect::Sticky(_) => match experiment {
            Experiment::Distribution(cell) if !cell.churn && fact == "repeat_same" => Ok(()),
            _ => Err(
                "sticky reads `repeat_same` (against `repeat_flows`) of a distribution cell".into(),
            ),
        },
        Expect::Flat { max_ratio } => {
            if max_ratio.is_nan() || *max_ratio < 1.0 {
                return Err(format!(
                    "flat.max_ratio must be at least 1, not {max_ratio}"
                ));
            }
            needs(FactKind::Numbers, "flat")
        }
        Expect::Grows { min_ratio } => {
            if min_ratio.is_nan() || *min_ratio <= 1.0 {
                return Err(format!(
                    "grows.min_ratio must be more than 1, not {min_ratio}"
                ));
            }
            needs(FactKind::Numbers, "grows")
        }
        Expect::Within { min, max } => {
            if min.is_nan() || max.is_nan() || min > max {
                return Err(format!("within needs min <= max, not {min}..{max}"));
            }
            needs(FactKind::Numbers, "within")
        }
        Expect::SameAs { replace, .. } => {
            if replace.is_empty() {
                return Err("same_as.replace must not be empty".into());
            }
            if matches!(kind, FactKind::Outcomes | FactKind::Receivers) {
                Ok(())
            } else {
                Err(format!(
                    "same_as compares outcomes or receivers, `{fact}` is {kind:?}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
claims:
  - id: t.tcp-wildcard-blocks
    doc: 001_9f39c556cc2a774e.txt
    quote: "no other TCP socket can be bound to the same port"
    scope: {linux: "*"}
    check:
      measured:
        - experiments: [bind.tcp.v4any+v4lo.listening.a-ra.b-ra.same-uid]
          fact: b_bind
          expect: {outcome: EADDRINUSE}
  - id: t.reuseport-appears
    doc: 002_b21913d5ead863f6.txt
    quote: "Linux kernel version 3.9"
    scope: {linux: ">=3.9"}
    changes_at: "3.9"
    check:
      measured:
        - experiments: [options.so_reuseport]
          fact: set
          expect: {outcome: ok}
  - id: t.windows
    doc: 001_9f39c556cc2a774e.txt
    quote: "SO_EXCLUSIVEADDRUSE"
    scope: {os: windows}
    check: {untested: Windows only}
  - id: t.glob
    doc: 000_f525e833ba1f1436.txt
    quote: "all of them use the SO_REUSEPORT option"
    scope: any
    check:
      measured:
        - experiments: ["bind.*.v4lo+v4lo.bound.a-rp.b-rp.same-uid"]
          fact: b_bind
          expect: {outcome: ok}
"#;

    const CONVENTIONS: &str = r#"
conventions:
  - dimension: when
    value: before-bind
    why: options are set before bind() unless a sentence says otherwise
"#;

    #[test]
    fn conventions_parse_and_name_real_dimensions_never_what_sentences_range_over() {
        let text = format!("{GOOD}{CONVENTIONS}");
        let parsed = parse(&text, "claims.yaml").unwrap();
        assert_eq!(parsed.conventions.len(), 1);
        assert_eq!(parsed.conventions[0].value, "before-bind");
        let error = error_of(&text.replace("value: before-bind", "value: sometimes"));
        assert!(error.contains("conventions[0].value"), "{error}");
        assert!(error.contains("late"), "{error}");
        let error = error_of(&text.replace("dimension: when", "dimension: colour"));
        assert!(error.contains("no experiment of the catalogue"), "{error}");
        for forbidden in ["transport", "uid", "a.flags", "first", "addresses"] {
            let error =
                error_of(&text.replace("dimension: when", &format!("dimension: {forbidden}")));
            assert!(
                error.contains("what sentences speak of or range over"),
                "{forbidden}: {error}"
            );
        }
        let twice = format!("{text}  - dimension: when\n    value: late\n    why: again\n");
        assert!(error_of(&twice).contains("a second convention"));
    }

    #[test]
    fn a_claim_for_another_system_carries_no_waiver() {
        let text = GOOD.replacen(
            "    scope: any\n",
            "    scope: {os: bsd}\n    expected_difference: {why: x, cells: [\"bind.*\"]}\n",
            1,
        );
        let error = error_of(&text);
        assert!(error.contains("never judged as Linux's error"), "{error}");
    }

    fn error_of(text: &str) -> String {
        parse(text, "claims.yaml").unwrap_err().to_string()
    }

    #[test]
    fn parses_scopes_checks_and_resolves_patterns() {
        let claims = parse(GOOD, "claims.yaml").unwrap().claims;
        assert_eq!(claims.len(), 4);
        assert_eq!(claims[1].changes_at, Some(Version(vec![3, 9])));
        assert_eq!(claims[2].check, Check::Untested("Windows only".into()));
        assert_eq!(
            claims[3].tests()[0].resolved,
            vec![
                "bind.tcp.v4lo+v4lo.bound.a-rp.b-rp.same-uid".to_string(),
                "bind.udp.v4lo+v4lo.bound.a-rp.b-rp.same-uid".to_string()
            ]
        );
        assert_eq!(claims[0].scope.covers_linux(None), Some(true));
        assert_eq!(
            claims[1].scope.covers_linux(Some(&Version(vec![3, 8]))),
            Some(false)
        );
        assert_eq!(
            claims[1].scope.covers_linux(Some(&Version(vec![3, 9, 0]))),
            Some(true)
        );
        assert_eq!(
            claims[2].scope.covers_linux(Some(&Version(vec![6, 1]))),
            Some(false)
        );
    }

    #[test]
    fn unknown_field_is_located_and_named() {
        let text = GOOD.replacen(
            "    quote: \"Linux kernel",
            "    qoute: x\n    quote: \"Linux kernel",
            1,
        );
        let error = error_of(&text);
        assert!(error.starts_with("claims.yaml:14:5: "), "{error}");
        assert!(error.contains("unknown field `qoute`"), "{error}");
    }

    #[test]
    fn bad_scope_and_version_are_located() {
        let error = error_of(&GOOD.replacen("{os: windows}", "{os: plan9}", 1));
        assert!(error.starts_with("claims.yaml:25:17: "), "{error}");
        assert!(error.contains("plan9"), "{error}");
        let error = error_of(&GOOD.replacen("\">=3.9\"", "\"=>3.9\"", 1));
        assert!(error.starts_with("claims.yaml:15:20: "), "{error}");
        assert!(error.contains("claims[1].scope.linux"), "{error}");
        assert!(error.contains("not a version range"), "{error}");
    }

    #[test]
    fn unknown_experiment_points_at_the_pattern() {
        let error = error_of(&GOOD.replacen("[options.so_reuseport]", "[options.so_reuseprot]", 1));
        assert!(error.starts_with("claims.yaml:19:25: "), "{error}");
        assert!(
            error.contains("claims[1] (t.reuseport-appears).check.measured[0]"),
            "{error}"
        );
        assert!(error.contains("options.so_reuseprot"), "{error}");
        let error = error_of(&GOOD.replacen("bind.*.v4lo+v4lo.bound", "bind.*.v4lo+v4lo.bund", 1));
        assert!(error.contains("pattern matches no experiment"), "{error}");
    }

    #[test]
    fn unknown_fact_and_mismatched_expectation_are_rejected() {
        let error = error_of(&GOOD.replacen("fact: b_bind", "fact: b_bnd", 1));
        assert!(error.starts_with("claims.yaml:10:11: "), "{error}");
        assert!(error.contains("fact: `b_bnd` is not recorded"), "{error}");
        assert!(error.contains("b_bind"), "{error}");
        let error =
            error_of(&GOOD.replacen("{outcome: EADDRINUSE}", "{uniform: {alpha: 0.001}}", 1));
        assert!(error.contains("uniform needs a Counts fact"), "{error}");
    }

    #[test]
    fn duplicate_ids_point_at_the_second() {
        let error = error_of(&GOOD.replacen("id: t.glob", "id: t.windows", 1));
        assert!(error.starts_with("claims.yaml:27:9: "), "{error}");
        assert!(error.contains("duplicate claim id `t.windows`"), "{error}");
    }

    fn repository_claims() -> (String, Vec<Claim>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../claims.yaml");
        let claims = load(&path).unwrap_or_else(|e| panic!("{e:#}")).claims;
        (std::fs::read_to_string(&path).unwrap(), claims)
    }

    #[test]
    fn the_repository_claims_file_is_valid_and_covers_every_document() {
        let (_, claims) = repository_claims();
        for doc in Document::ARTICLES {
            let measured = claims
                .iter()
                .filter(|c| c.doc == doc && !c.tests().is_empty())
                .count();
            let untested = claims
                .iter()
                .filter(|c| c.doc == doc && c.tests().is_empty())
                .count();
            assert!(
                measured >= 5,
                "{}: only {measured} measured claims",
                doc.file_name()
            );
            assert!(
                untested >= 1,
                "{}: no untested claim listed",
                doc.file_name()
            );
        }
        for claim in &claims {
            for test in claim.tests() {
                assert!(
                    !test.resolved.is_empty(),
                    "{} resolves to nothing",
                    claim.id
                );
            }
        }
    }

    /// The documents are kept in `docs/sources/` (or `$SEEDS_DIR`); every quote must be an exact
    /// substring of its document.
    #[test]
    fn every_quote_is_exact() {
        let dir = std::env::var_os("SEEDS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/sources"));
        let (_, claims) = repository_claims();
        let not_claims = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../claims.yaml"))
            .unwrap()
            .not_claims;
        let mut wrong = Vec::new();
        for doc in Document::all() {
            let path = dir.join(doc.file_name());
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {} (set SEEDS_DIR): {e}", path.display()));
            for claim in claims.iter().filter(|c| c.doc == doc) {
                if !text.contains(&claim.quote) {
                    wrong.push(format!("{}: {:?}", claim.id, claim.quote));
                }
            }
            for not_claim in not_claims.iter().filter(|n| n.doc == doc) {
                if !text.contains(&not_claim.quote) {
                    wrong.push(format!("not_claims: {:?}", not_claim.quote));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "quotes not found in their documents:\n{}",
            wrong.join("\n")
        );
    }

    /// `load` names the file as given, then line and column, then the field.
    #[test]
    fn load_names_the_file_line_column_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims.yaml");
        std::fs::write(&path, GOOD.replacen("fact: set", "fact: [set]", 1)).unwrap();
        let error = format!("{:#}", load(&path).unwrap_err());
        let prefix = format!(
            "{}:20:17: claims[1].check.measured[0].fact: ",
            path.display()
        );
        assert!(error.starts_with(&prefix), "{error}");
        let missing = format!("{:#}", load(&dir.path().join("absent.yaml")).unwrap_err());
        assert!(missing.contains("absent.yaml"), "{missing}");
    }

    #[test]
    fn versions_order_numerically() {
        let v = |s: &str| Version::parse_prefix(s).unwrap();
        assert!(v("6.12") > v("6.1"));
        assert!(v("3.9") < v("3.10"));
        assert_eq!(v("6.1.0-28-amd64"), Version(vec![6, 1, 0]));
        assert_eq!(v("6.18.44-fc-v470"), Version(vec![6, 18, 44]));
        assert_eq!(Version::parse_prefix("host"), None);
        assert_eq!(v("5.10"), v("5.10.0"));
    }
}
