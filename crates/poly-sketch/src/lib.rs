//! Sketched linear-time polynomial attention (PolySketch, TensorSketch, Random Maclaurin, FAVOR+):
//! planned in its own issue. This crate intentionally exports nothing yet.
