//! # poly-bench: honest numbers for polyattn
//!
//! * [`timing`]: warm-up, repeats, median/min/spread;
//! * [`roofline`]: faer's f32 GEMM rate measured in the same process, the yardstick of every
//!   "% of the GEMM rate" claim;
//! * [`machine`]: the metadata every record carries (CPU, SIMD level, threads, git revision, rustc,
//!   peak memory);
//! * [`criterion_results`]: reading criterion's estimates back to compute ratios within one run;
//! * [`reproduction`]: the Song–Xu–Yin experiment as a report (`polyattn reproduce`).

pub mod criterion_results;
pub mod machine;
pub mod reproduction;
pub mod roofline;
pub mod timing;
