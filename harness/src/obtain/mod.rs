//! Obtaining what a boot needs: the kernel image (downloaded, built or found, verified and cached
//! by content), the static guest binary, and the host programs (QEMU) that booting requires.
//! Nothing here boots a kernel or reads a record.

pub mod acquire;
pub mod cache;
#[cfg(test)]
mod cache_faults;
pub mod ccache;
pub mod guest_binary;
pub mod prereq;
