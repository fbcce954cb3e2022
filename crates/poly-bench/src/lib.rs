//! # poly-bench: honest numbers for polyattn
//!
//! * [`scenario`]: one measured configuration (kernel × mask × n × d × heads × threads × sketch)
//!   with its FLOP model;
//! * [`timing`]: warm-up, repeats, median/min/spread;
//! * [`peers`]: candle behind the `candle` cargo feature;
//! * [`sweeps`]: sequence-length scaling and thread scaling, with [`records`] (CSV/JSON) and
//!   [`plot`] (SVG);
//! * [`accuracy`]: the sketch accuracy study;
//! * [`roofline`]: faer's f32 GEMM rate measured in the same process, the yardstick of every
//!   "% of the GEMM rate" claim;
//! * [`machine`]: the metadata every record carries (CPU, SIMD level, threads, git revision, rustc,
//!   peak memory);
//! * [`memory`]: peak resident memory of the `polyattn` command as n grows;
//! * [`gradients`]: the exact backward against the forward and the GEMM rate;
//! * [`variants`]: sliding windows, grouped-query attention and the KV-cache decode step;
//! * [`criterion_results`]: reading criterion's estimates back to compute ratios within one run;

pub mod accuracy;
pub mod criterion_results;
pub mod gradients;
pub mod machine;
pub mod memory;
pub mod methods;
pub mod peers;
pub mod plot;
pub mod records;
pub mod report;
pub mod roofline;
pub mod scenario;
pub mod sweeps;
pub mod timing;
pub mod variants;
