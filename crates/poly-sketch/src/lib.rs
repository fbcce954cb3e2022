//! # poly-sketch: linear-time polynomial attention by feature maps
//!
//! A feature map `φ: R^d → R^m` approximates (or reproduces) a kernel: `⟨φ(x), φ(y)⟩ ≈ (x·y)^p`.
//! With `A = φ(Q)`, `B = φ(K)` and `C = [V | 1]`, attention becomes `A (Bᵀ C)`, linear in n, and
//! causal attention the block lower-triangular product of PolySketchFormer (MATH.md §4.1).
//!
//! * [`FeatureMap`]: the abstraction (built once from a seed, shared by queries and keys);
//! * [`ExactDegree2`]: `x ⊗ x`, packed — deterministic, exact for `(x·y)²`;
//! * [`PolySketch`]: the Gaussian-tree sketch of any degree (Kacham, Mirrokni, Zhong; Ahle et al.);
//! * [`linear_attention`]: the engine — non-causal, and block-causal for any block size.
//!
//! Still to come (issue 3): TensorSketch, Random Maclaurin, FAVOR+, the self-tensored and mixed
//! (exact local blocks) variants, decoding, and the cross-block parallel scan.

mod exact2;
mod feature_map;
mod linear;
mod polysketch;

pub use exact2::ExactDegree2;
pub use feature_map::FeatureMap;
pub use linear::{LinearAttentionConfig, linear_attention};
pub use polysketch::{PolySketch, SketchScale};
