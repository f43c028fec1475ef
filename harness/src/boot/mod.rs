//! Booting: the initramfs around the guest, QEMU (or, for the host row, a fresh network
//! namespace) under a watchdog, and the transcript that turns the guest's channel into records.
//! Nothing here judges what the records say.

pub mod accel;
pub mod cpu;
pub mod initramfs;
pub mod namespace;
pub mod transcript;
pub mod vm;
