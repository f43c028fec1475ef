//! The contract between host and guest: the record format that travels on the guest's own
//! channel (a shared-memory log or a serial port), and the catalogue of experiments those records
//! are about.
//!
//! This crate is plain data. It does no I/O, knows nothing about QEMU or sockets, and never
//! interprets a measurement: the guest fills records with raw facts, the harness judges them.

pub mod catalogue;
pub mod errno;
pub mod record;
pub mod shared_log;

pub use catalogue::{catalogue, find, glob_matches, select, Experiment, Family};
pub use record::{
    decode_line, encode_line, DecodeError, ExperimentRecord, Fact, Header, PreflightCheck, Record,
    Status, Trailer, Uname, FORMAT, MARKER,
};
