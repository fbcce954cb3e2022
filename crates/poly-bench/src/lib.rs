//! # poly-bench: honest numbers for polyattn
//!
//! * [`scenario`]: one measured configuration (kernel × mask × n × d × heads × threads × sketch)
//!   with its FLOP model;
//! * [`timing`]: warm-up, repeats, median/min/spread;
//! * [`peers`]: candle behind the `candle` cargo feature;
//! * [`roofline`]: faer's f32 GEMM rate measured in the same process, the yardstick of every
//!   "% of the GEMM rate" claim;
//! * [`machine`]: the metadata every record carries (CPU, SIMD level, threads, git revision, rustc,
//!   peak memory);
//! * [`criterion_results`]: reading criterion's estimates back to compute ratios within one run;
//! * [`reproduction`]: the Song–Xu–Yin experiment as a report (`polyattn reproduce`).

pub mod criterion_results;
pub mod machine;
pub mod methods;
pub mod peers;
pub mod reproduction;
pub mod roofline;
pub mod scenario;
pub mod timing;
