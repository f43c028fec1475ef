//! Where the end-to-end tests find the checkout, and the one switch that turns their boots off.
//! Shared by the test binaries with `mod workspace;`.

use std::path::{Path, PathBuf};

/// The workspace root (the checkout), where kernels.yaml and claims.yaml live.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `RPH_SKIP_BOOT=1` skips tests that boot kernels, for a quick inner loop; CI never sets it.
#[allow(dead_code, reason = "not every test binary boots")]
pub fn skip_boots() -> bool {
    if std::env::var_os("RPH_SKIP_BOOT").is_some() {
        eprintln!("RPH_SKIP_BOOT is set: not booting kernels");
        return true;
    }
    false
}

/// The five old kernels (3.8, 3.9, 4.4, 4.5, 4.6) built by the harness's own build path from
/// vanilla trees: `RPH_OLD_KERNELS`, else `../shared/old-kernels` beside the checkout. Missing,
/// the tests that need them fail: an old kernel not booted is never a pass.
#[allow(dead_code, reason = "not every test binary boots old kernels")]
pub fn old_kernels() -> PathBuf {
    let dir = std::env::var_os("RPH_OLD_KERNELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("..").join("shared").join("old-kernels"));
    assert!(
        dir.join("3.8").join("bzImage").is_file(),
        "the old kernels are not at {} (set RPH_OLD_KERNELS to the folder holding 3.8/bzImage … 4.6/bzImage)",
        dir.display()
    );
    dir
}

/// The versions of [`old_kernels`], oldest first.
#[allow(dead_code, reason = "not every test binary boots old kernels")]
pub const OLD_VERSIONS: [&str; 5] = ["3.8", "3.9", "4.4", "4.5", "4.6"];

/// `RPH_SKIP_BUILD=1` skips tests that build kernels, for a quick inner loop; CI never sets it.
#[allow(dead_code, reason = "not every test binary builds kernels")]
pub fn skip_builds() -> bool {
    if std::env::var_os("RPH_SKIP_BUILD").is_some() {
        eprintln!("RPH_SKIP_BUILD is set: not building kernels");
        return true;
    }
    false
}
