//! The integration tests of poly-sketch, one module per subject, linked into one test binary.

mod backward;
mod common;
mod decoding_and_tensored;
mod feature_maps;
mod grouped_heads;
mod linear_attention;
mod normalizer;
mod packed;
mod shards;
