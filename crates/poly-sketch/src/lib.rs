//! # poly-sketch: linear-time polynomial attention by feature maps
//!
//! A feature map `φ: R^d → R^m` approximates (or reproduces) a kernel: `⟨φ(x), φ(y)⟩ ≈ (x·y)^p`.
//! With `A = φ(Q)`, `B = φ(K)` and `C = [V | 1]`, attention becomes `A (Bᵀ C)`, linear in n, and
//! causal attention the block lower-triangular product of PolySketchFormer (MATH.md §4.1).
//!
//! * [`FeatureMap`]: the abstraction (built once from a seed, shared by queries and keys);
//! * [`ExactDegree2`]: `x ⊗ x`, packed — deterministic, exact for `(x·y)²`;
//! * [`PolySketch`]: the Gaussian-tree sketch of any degree (Kacham, Mirrokni, Zhong; Ahle et al.);
//! * [`SelfTensoredSketch`]: `M ⊗ M` of a degree-p/2 PolySketch — non-negative weights;
//! * [`linear_attention`]: the engine — non-causal, and block-causal for any block size;
//! * [`DecodingState`]: prefill, then O(m·d_v) per generated token.
//!
//! Still to come (issue 3): TensorSketch, Random Maclaurin, FAVOR+, the tensored engine path that
//! never forms `r²` features inside a block, the mixed variant (exact local blocks), and the
//! cross-block parallel scan.

mod decoding;
mod exact2;
mod feature_map;
mod linear;
mod polysketch;
mod tensored;

pub use decoding::DecodingState;
pub use exact2::ExactDegree2;
pub use feature_map::FeatureMap;
pub use linear::{LinearAttentionConfig, linear_attention, linear_attention_flops};
pub use polysketch::{PolySketch, SketchScale};
pub use tensored::SelfTensoredSketch;
