//! The guest's initramfs: a newc cpio archive, written here in a few lines rather than by an
//! external `cpio`, holding `/init` (the static guest), the directories it mounts on, and
//! `/dev/console` so PID 1 has a console before devtmpfs is mounted.
//!
//! Archives are cached by content under `images/cache/initramfs/`: the same guest binary always
//! gives the same bytes (fixed mtimes and inode numbers), so a warm run builds nothing.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Bumped when the archive's layout changes, so cached archives of an older layout are not used.
const LAYOUT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    Dir {
        path: &'a str,
        mode: u32,
    },
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    CharDevice {
        path: &'a str,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

/// Writes a complete newc archive (entries, then the trailer) to `out`.
pub fn write_newc(out: &mut impl Write, entries: &[Entry<'_>]) -> io::Result<()> {
    let mut written = 0usize;
    for (index, entry) in entries.iter().enumerate() {
        let ino = index as u32 + 1;
        let (path, mode, data, rdev): (&str, u32, &[u8], (u32, u32)) = match *entry {
            Entry::Dir { path, mode } => (path, 0o040000 | mode, &[], (0, 0)),
            Entry::File { path, mode, data } => (path, 0o100000 | mode, data, (0, 0)),
            Entry::CharDevice {
                path,
                mode,
                major,
                minor,
            } => (path, 0o020000 | mode, &[], (major, minor)),
        };
        let nlink = if matches!(entry, Entry::Dir { .. }) {
            2
        } else {
            1
        };
        written += write_member(out, ino, mode, nlink, rdev, path, data)?;
    }
    written += write_member(out, 0, 0, 1, (0, 0), "TRAILER!!!", &[])?;
    // The kernel reads the archive in 512-byte blocks, as cpio(1) pads it.
    let pad = (512 - written % 512) % 512;
    out.write_all(&vec![0; pad])
}

fn write_member(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    (rdev_major, rdev_minor): (u32, u32),
    path: &str,
    data: &[u8],
) -> io::Result<usize> {
    let name_size = path.len() + 1;
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        rdev_major,
        rdev_minor,
        name_size as u32,
        0,
    ];
    let mut header = String::with_capacity(110);
    header.push_str("070701");
    for f in fields {
        header.push_str(&format!("{f:08x}"));
    }
    out.write_all(header.as_bytes())?;
    out.write_all(path.as_bytes())?;
    out.write_all(&[0])?;
    let head = 110 + name_size;
    let head_pad = (4 - head % 4) % 4;
    out.write_all(&[0; 3][..head_pad])?;
    out.write_all(data)?;
    let data_pad = (4 - data.len() % 4) % 4;
    out.write_all(&[0; 3][..data_pad])?;
    Ok(head + head_pad + data.len() + data_pad)
}

/// The archive for `guest` (its bytes), as a list of entries.
pub fn guest_entries(guest: &[u8]) -> Vec<Entry<'_>> {
    vec![
        Entry::Dir {
            path: "dev",
            mode: 0o755,
        },
        Entry::CharDevice {
            path: "dev/console",
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        Entry::Dir {
            path: "proc",
            mode: 0o755,
        },
        Entry::Dir {
            path: "sys",
            mode: 0o755,
        },
        Entry::File {
            path: "init",
            mode: 0o755,
            data: guest,
        },
    ]
}

/// Returns the cached initramfs for the guest binary at `guest`, building it on a miss.
pub fn for_guest(guest: &Path, cache_dir: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(guest)
        .with_context(|| format!("reading guest binary {}", guest.display()))?;
    let digest = Sha256::new()
        .chain_update(LAYOUT.to_le_bytes())
        .chain_update(&bytes)
        .finalize();
    let dir = cache_dir.join("initramfs");
    let path = dir.join(format!("{}.cpio", hex::encode(digest)));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut archive = Vec::with_capacity(bytes.len() + 4096);
    write_newc(&mut archive, &guest_entries(&bytes)).expect("writing to a Vec cannot fail");
    crate::results::write_atomically(&path, &archive)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archive must be what GNU cpio reads back: listing it with `cpio -t` (when installed)
    /// names every entry. Without cpio, check the structure by hand.
    #[test]
    fn archive_is_valid_newc() {
        let data = b"\x7fELF-not-really";
        let mut archive = Vec::new();
        write_newc(&mut archive, &guest_entries(data)).unwrap();
        assert_eq!(archive.len() % 512, 0);
        assert!(archive.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&archive);
        for name in ["dev/console", "proc", "sys", "init", "TRAILER!!!"] {
            assert!(text.contains(name), "{name} missing");
        }
        if let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            child.stdin.take().unwrap().write_all(&archive).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            let listed = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                listed.lines().collect::<Vec<_>>(),
                ["dev", "dev/console", "proc", "sys", "init"]
            );
        }
    }

    #[test]
    fn same_guest_same_bytes() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_newc(&mut a, &guest_entries(b"x")).unwrap();
        write_newc(&mut b, &guest_entries(b"x")).unwrap();
        assert_eq!(a, b);
    }
}
