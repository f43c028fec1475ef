//! A kernel image already on this machine: checked (it must exist and carry the x86 boot
//! header) and hashed for the provenance, never copied.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::{is_bzimage, Acquisition, KernelImage};
use crate::obtain::cache::{hash_file, Blob};

pub(super) fn acquire(path: &Path) -> Result<Acquisition> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Ok(Acquisition::Unavailable {
                reason: format!("{} is not a file", path.display()),
            })
        }
        Err(error) => {
            return Ok(Acquisition::Unavailable {
                reason: format!("{}: {error}", path.display()),
            })
        }
    }
    if !is_bzimage(path).with_context(|| format!("reading {}", path.display()))? {
        return Ok(Acquisition::Unavailable {
            reason: format!(
                "{} is not an x86 kernel image (no HdrS boot header)",
                path.display()
            ),
        });
    }
    let (sha256, size) = hash_file(path).with_context(|| format!("hashing {}", path.display()))?;
    let provenance = BTreeMap::from([
        ("source".to_owned(), "path".to_owned()),
        ("path".to_owned(), path.display().to_string()),
    ]);
    let image = Blob {
        sha256,
        path: path.to_owned(),
        size,
    };
    Ok(KernelImage::from_blob(image, provenance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_kernel_files_are_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("bzImage");
        let Acquisition::Unavailable { reason } = acquire(&missing).unwrap() else {
            panic!("missing file accepted")
        };
        assert!(reason.contains("No such file"), "{reason}");
        std::fs::write(&missing, vec![0u8; 4096]).unwrap();
        let Acquisition::Unavailable { reason } = acquire(&missing).unwrap() else {
            panic!("zeros accepted")
        };
        assert!(reason.contains("no HdrS boot header"), "{reason}");
    }

    #[test]
    fn a_boot_image_is_taken_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("bzImage");
        let mut bytes = vec![0u8; 4096];
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&image, &bytes).unwrap();
        let Acquisition::Image(found) = acquire(&image).unwrap() else {
            panic!("image refused")
        };
        assert_eq!(found.path, image);
        assert_eq!(
            found.provenance["image_sha256"],
            crate::obtain::cache::sha256_hex(&bytes)
        );
    }
}
