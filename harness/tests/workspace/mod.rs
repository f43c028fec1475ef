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
