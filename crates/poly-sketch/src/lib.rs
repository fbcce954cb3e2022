//! # poly-sketch: linear-time polynomial attention by feature maps
//!
//! A feature map `φ: R^d → R^m` approximates (or reproduces) a kernel: `⟨φ(x), φ(y)⟩ ≈ (x·y)^p`.
//! With `A = φ(Q)`, `B = φ(K)` and `C = [V | 1]`, attention becomes `A (Bᵀ C)`, linear in n, and
//! causal attention the block lower-triangular product of PolySketchFormer (docs/math.md §4.1).
//!
//! * [`FeatureMap`]: the abstraction (built once from a seed, shared by queries and keys);
//! * [`ExactDegree2`]: `x ⊗ x`, packed — deterministic, exact for `(x·y)²`;
//! * [`PolySketch`]: the Gaussian-tree sketch of any degree (Kacham, Mirrokni, Zhong; Ahle et al.);
//! * [`SelfTensoredSketch`]: `M ⊗ M` of a degree-p/2 PolySketch — non-negative weights, scored
//!   inside blocks as `⟨M_q, M_k⟩²` without forming `r²` features;
//! * [`TensorSketch`]: CountSketches combined by real FFTs;
//! * [`RandomMaclaurin`]: products of Rademacher projections;
//! * [`Favor`]: FAVOR+ positive orthogonal random features for softmax;
//! * [`linear_attention`]: the engine — non-causal, block-causal for any block size, the mixed
//!   variant with exact local blocks; rayon over heads and, with fewer heads than threads, across
//!   chunks of blocks (bit-identical whatever the thread count);
//! * [`DecodingState`]: prefill, then O(m·d_v) per generated token.

mod decoding;
mod element;
mod exact2;
mod favor;
mod feature_map;
mod linear;
mod maclaurin;
mod polysketch;
mod spec;
mod tensored;
mod tensorsketch;

pub use decoding::{DecodingSnapshot, DecodingState, decoding_flops, map_fingerprint};
pub use element::SketchElement;
pub use exact2::ExactDegree2;
pub use favor::Favor;
pub use feature_map::FeatureMap;
pub use linear::{
    LinearAttentionConfig, ShardInputs, ShardPlan, ShardTotals, linear_attention,
    linear_attention_backward, linear_attention_flops, linear_attention_packed, scan_chunks,
    state_len,
};
pub use maclaurin::RandomMaclaurin;
pub use polysketch::{PolySketch, SketchScale};
pub use spec::{MapKind, MapSpec};
pub use tensored::SelfTensoredSketch;
pub use tensorsketch::TensorSketch;
