//! The kept sources are what their provenance says: the rendered man pages hash to the values in
//! `docs/sources/man/SHA256SUMS` (made by `render.sh` from the pinned Debian packages), so a quote
//! checked against them is checked against the man pages of record.

use sha2::{Digest, Sha256};

mod workspace;
use workspace::root;

#[test]
fn the_rendered_man_pages_are_the_ones_of_record() {
    let dir = root().join("docs/sources/man");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (want, file) = line
            .split_once("  ")
            .unwrap_or_else(|| panic!("SHA256SUMS: malformed line {line:?}"));
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let got = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(got, want, "{file} is not the rendered page of record");
        assert!(bytes.is_ascii(), "{file}: the rendering is ASCII only");
        checked += 1;
    }
    assert_eq!(
        checked, 7,
        "seven pages: socket.7 ip.7 ipv6.7 tcp.7 udp.7 bind.2 connect.2"
    );
}
