//! Commands built on the pipeline rather than part of it: bisection over kernels, `check` and
//! `build-kernel` for `git bisect run`, the benchmarks (booting, and commit bisection), and `harness list`.

pub mod bench;
pub mod bench_bisect;
pub mod bisect;
pub mod check;
pub mod list;
