//! Judging: the documents' claims, and what results files say about them — verdicts per kernel
//! and claim, behaviour changes across versions, differences between two result sets, and the
//! statistics behind them. It reads results and claims; it never boots anything.

pub mod claims;
pub mod diff;
pub mod evaluate;
pub mod evolution;
pub mod stats;
