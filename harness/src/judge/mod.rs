//! Judging: the documents' claims, and what results files say about them — verdicts per kernel
//! and claim (`evaluate`), behaviour changes across versions (`changes`, described in the
//! catalogue's dimensions by `describe`), differences between two result sets (`diff`), and what
//! they compare (`signature`, `stats`). It reads results and claims; it never boots anything.

#[cfg(test)]
mod accounting;
pub mod changes;
pub mod claims;
pub mod describe;
pub mod diff;
pub mod evaluate;
pub mod signature;
pub mod stats;
