//! `docs/catalogue.md` lists every experiment id with what it sets up and what it records. It is
//! generated from the catalogue itself and the fact lists in the `wire` family modules' docs, so
//! it cannot drift: this test fails when the file is stale, and `UPDATE_DOCS=1` rewrites it.

use std::fmt::Write;
use std::path::Path;

use wire::{Experiment, Family};

fn module_source(family: Family) -> &'static str {
    match family {
        Family::Options => include_str!("../../wire/src/catalogue/options.rs"),
        Family::Bind => include_str!("../../wire/src/catalogue/bind.rs"),
        Family::TimeWait => include_str!("../../wire/src/catalogue/time_wait.rs"),
        Family::Connect => include_str!("../../wire/src/catalogue/connect.rs"),
        Family::Multicast => include_str!("../../wire/src/catalogue/multicast.rs"),
        Family::Lookup => include_str!("../../wire/src/catalogue/lookup.rs"),
        Family::Distribution | Family::Steering => {
            include_str!("../../wire/src/catalogue/distribution.rs")
        }
        Family::LookupCost => include_str!("../../wire/src/catalogue/cost.rs"),
        Family::Autobind => include_str!("../../wire/src/catalogue/autobind.rs"),
        Family::Numbering => include_str!("../../wire/src/catalogue/numbering.rs"),
        Family::Address => include_str!("../../wire/src/catalogue/address.rs"),
        Family::Ephemeral => include_str!("../../wire/src/catalogue/ephemeral.rs"),
        Family::DualStack => include_str!("../../wire/src/catalogue/dual_stack.rs"),
        Family::TwSysctl => include_str!("../../wire/src/catalogue/tw_sysctl.rs"),
        Family::SelfTest => include_str!("../../wire/src/catalogue/selftest.rs"),
    }
}

/// The `//!` lines of a module: what the family sets up and which facts it records.
fn module_doc(source: &str) -> String {
    source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.trim_start_matches("//!")
                .strip_prefix(' ')
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render() -> String {
    let mut all: Vec<Experiment> = wire::catalogue();
    all.extend(wire::select(&["selftest".to_string()]).expect("self-tests exist"));
    let mut out = String::new();
    writeln!(
        out,
        "# Experiment catalogue\n\nGenerated from `wire/src/catalogue/` by `harness/tests/catalogue_doc.rs` \
         (`UPDATE_DOCS=1 cargo test -p harness --test catalogue_doc` rewrites it). {} experiments in a \
         default run; self-tests run only when selected by id.\n\nSelect experiments with id prefixes at dot \
         boundaries: `harness run --only bind.tcp,options`.\n",
        wire::catalogue().len()
    )
    .unwrap();
    for family in Family::ALL {
        let members: Vec<&Experiment> = all.iter().filter(|e| e.family() == family).collect();
        writeln!(
            out,
            "## {} (`{}.`, {} experiments)\n",
            family.title(),
            family.token(),
            members.len()
        )
        .unwrap();
        writeln!(out, "{}\n", module_doc(module_source(family))).unwrap();
        if family == Family::Bind {
            writeln!(
                out,
                "Ids: `bind.<tcp|udp>.<A address>+<B address>.<A state>.a-<A options>.b-<B options>.<same-uid|other-uid>`; \
                 addresses `v4any` 0.0.0.0, `v4lo` 127.0.0.1, `v4lo2` 127.0.0.2, `v6any` [::] dual-stack, \
                 `v6any-only` [::] IPV6_V6ONLY, `v6lo` [::1], `v6doc` [2001:db8::1], `mapped-any` [::ffff:0.0.0.0], \
                 `mapped-lo` [::ffff:127.0.0.1]; states `bound`, `listening`, `connected`, `time-wait` (TCP) and \
                 `bound`, `connected` (UDP); options `none`, `ra` (SO_REUSEADDR), `rp` (SO_REUSEPORT), `ra-rp`.\n\n\
                 Every id, with the description of the first as an example: {}\n",
                members[0].describe()
            )
            .unwrap();
            writeln!(out, "```").unwrap();
            for e in &members {
                writeln!(out, "{}", e.id()).unwrap();
            }
            writeln!(out, "```\n").unwrap();
            continue;
        }
        writeln!(out, "| id | what it sets up and records |\n|---|---|").unwrap();
        for e in &members {
            writeln!(
                out,
                "| `{}` | {} |",
                e.id(),
                e.describe().replace('|', "\\|")
            )
            .unwrap();
        }
        writeln!(out).unwrap();
    }
    out
}

#[test]
fn catalogue_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/catalogue.md");
    let fresh = render();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "docs/catalogue.md is stale: run `UPDATE_DOCS=1 cargo test -p harness --test catalogue_doc`"
    );
}
