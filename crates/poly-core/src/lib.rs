//! # poly-core: exact polynomial and softmax attention
//!
//! Polynomial attention replaces `exp(q·k)` by `(q·k)^β`. This crate computes it exactly, for any
//! integer degree β ≥ 1, and softmax attention, on row-major `[batch, heads, seq, dim]` tensors:
//!
//! * [`attention`]: the streaming tiled engine (faer GEMMs per tile, pulp SIMD for the power, exp,
//!   maxima and sums, rayon over (batch, head, query tile)); no `n × n` memory; overflow-proof for
//!   any degree because weights are evaluated relative to the running row maximum (docs/math.md §2.3);
//! * [`reference_attention`]: a plain f64 implementation, the oracle of the tests;
//! * [`AttentionConfig`]: kernel, mask, normalization, scale, LayerNorm and thread count as data.
//!
//! Coming from NumPy: `attention(q, k, v, &AttentionConfig::polynomial(4))` is
//! `w = (q @ k.T) ** 4; (w @ v) / w.sum(-1, keepdims=True)` per head, without the `n × n` `w`.
//!
//! Every bad input is an [`Error`] naming the tensor, index or row; nothing panics or returns NaN.

mod backward;
mod config;
mod element;
mod engine;
mod error;
mod flops;
mod gemm;
mod kernels;
mod kv_cache;
mod layernorm;
mod normalize;
mod online;
mod pack;
mod pages;
mod partial;
mod reference;
mod resources;
mod sequences;
mod simd;
mod tensor;
mod validate;
mod warm_up;

/// Building blocks that poly-sketch and the benchmarks share with the exact engine: the
/// sequential GEMM shapes (faer, `Par::Seq`) and the SIMD row kernels (pulp). They are total for
/// any length and degree; a shape that disagrees with the slices it describes panics, as each
/// function's `# Panics` says. The engines above them are what a user normally calls.
pub mod primitives {
    pub use crate::gemm::{gemm_ab, gemm_abt, gemm_add_ab, gemm_add_atb};
    pub use crate::kernels::{
        WeightSums, abs_max, add_row_dots, exp_in_place, first_non_finite, power_in_place, powi,
        rank_one_update, row_max, scale_in_place, weighted_row_sum,
    };
    pub use crate::pack::{
        pack_symmetric_square, pack_symmetric_square_backward, pack_symmetric_square_transposed,
    };
}

pub use backward::{
    AttentionForward, AttentionGradients, BACKWARD_KEY_TILE, BACKWARD_QUERY_TILE, DQ_PARTIALS,
    attention_backward, attention_forward, attention_forward_packed, attention_forward_padded,
    attention_gradients, check_output_gradient,
};
pub use config::{AttentionConfig, Kernel, LAYERNORM_EPS, Mask, Normalization, Threads};
pub use element::Element;
pub use engine::{
    KEY_TILE, QUERY_TILE, SMALL_KEYS, WIDE_QUERY_TILE, attention, attention_into, attention_packed,
    attention_padded, run_with_threads,
};
pub use error::{Error, Result, RowPosition, TensorName};
pub use flops::{
    exact_attention_flops, exact_attention_flops_in_window, visible_pairs, visible_pairs_in_window,
};
pub use kv_cache::{DECODE_CHUNK, KvCache, KvCacheSnapshot};
pub use layernorm::{layernorm_backward, layernorm_in_place, layernorm_rows};
pub use normalize::check_normalizer;
pub use partial::PartialAttention;
pub use reference::{reference_attention, reference_attention_packed, reference_attention_padded};
pub use resources::{
    check_allocation, check_elements, check_threads, checked_product, default_memory_budget,
    max_threads, memory_budget, set_memory_budget,
};
pub use sequences::{Layout, Sequences};
pub use tensor::{Shape, Tensor, TensorRef, element_count, unravel};
pub use validate::{Dims, check_inputs, check_shapes, check_values_in_pool};
pub use warm_up::warm_up;

/// The SIMD instruction set pulp selects on this machine (`"x86-64-v4 (AVX-512)"`, …), for records.
pub fn simd_level() -> &'static str {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        match pulp::Arch::new() {
            pulp::Arch::V4(_) => "x86-64-v4 (AVX-512)",
            pulp::Arch::V3(_) => "x86-64-v3 (AVX2+FMA)",
            _ => "scalar",
        }
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        "portable"
    }
}
