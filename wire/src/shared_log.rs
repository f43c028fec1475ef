//! The layout of the shared-memory record log: the fast channel of a guest in a VM.
//!
//! Under TCG every byte through an emulated 16550 costs an I/O exit and a host `write(2)`:
//! 2.4 MB of records took 2.6 s of a 15 s catalogue. An `ivshmem-plain` PCI device backed by a
//! host file costs nothing per byte: the guest maps the device's memory and appends record lines,
//! and what it wrote is in the host's file even if the kernel panics mid-run. A guest that cannot
//! map the device (no PCI, a kernel that refuses the mapping) uses the serial port instead, and
//! so does one that fills the log: the channel is the log's lines followed by the serial port's.
//!
//! Layout: [`MAGIC`] (8 bytes), then the number of bytes appended (`u64`, little endian, advanced
//! atomically by each writer *before* it copies its bytes; its top bit is [`SEALED`]), then the
//! bytes.

/// The ivshmem device's PCI identity (Red Hat, Inc. / Inter-VM shared memory).
pub const PCI_VENDOR: u16 = 0x1af4;
pub const PCI_DEVICE: u16 = 0x1110;

/// Size of the shared memory; ivshmem wants a power of two. The whole catalogue writes ~2.4 MB.
pub const SIZE: usize = 16 << 20;

/// Written by the guest when it takes the log into use.
pub const MAGIC: [u8; 8] = *b"rph-log1";

/// Set in the counter once a line did not fit: later lines go to the serial port even if they
/// would fit, so "the log, then the serial port" is the order they were written in.
pub const SEALED: u64 = 1 << 63;

/// Byte offset of the appended-length counter, and of the first record byte.
pub const USED_OFFSET: usize = 8;
pub const DATA_OFFSET: usize = 16;

/// The record bytes of a log file the guest wrote, or `None` when the guest never used it
/// (no magic). A counter beyond the file (a torn write of the counter itself cannot happen, a
/// corrupted file can) is clamped to what is there.
pub fn contents(file: &[u8]) -> Option<&[u8]> {
    if file.len() < DATA_OFFSET || file[..8] != MAGIC {
        return None;
    }
    let used = u64::from_le_bytes(file[USED_OFFSET..DATA_OFFSET].try_into().ok()?) & !SEALED;
    let end = DATA_OFFSET.saturating_add(usize::try_from(used).unwrap_or(usize::MAX));
    Some(&file[DATA_OFFSET..end.min(file.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(used: u64, data: &[u8]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.extend(used.to_le_bytes());
        f.extend(data);
        f.resize(64, 0);
        f
    }

    #[test]
    fn reads_what_was_appended() {
        assert_eq!(contents(&log(3, b"abc")), Some(&b"abc"[..]));
        assert_eq!(contents(&log(0, b"")), Some(&b""[..]));
        assert_eq!(contents(&log(SEALED | 3, b"abc")), Some(&b"abc"[..]));
    }

    #[test]
    fn an_unused_or_short_file_is_no_log() {
        assert_eq!(contents(&[0; 64]), None);
        assert_eq!(contents(b"rph-lo"), None);
    }

    #[test]
    fn a_counter_past_the_end_is_clamped() {
        assert_eq!(contents(&log(!SEALED, b"abc")).map(<[u8]>::len), Some(48));
    }
}
