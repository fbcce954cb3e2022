//! The integration tests of poly-core, one module per subject, linked into one test binary.

mod accuracy;
mod backward;
mod common;
mod errors;
mod grouped_heads;
mod kv_cache;
mod overflow;
mod packed;
mod partial;
mod properties;
mod proptests;
mod variant_matrix;
mod windows;
