//! Linear attention with a feature map (docs/math.md §4): `Y = A (Bᵀ C)` with `A = φ(Q)`, `B = φ(K)`,
//! `C = [V | 1]`; the last column of `Y` is the normalizer.
//!
//! Causal attention uses the block lower-triangular product of PolySketchFormer (§4.1): rows are
//! split into blocks of `b` (the last may be shorter); block `l` gets its local part
//! `lt(W_l) C_l` plus `A_l Z_l` with `Z_l = Σ_{j<l} B_jᵀ C_j`. The local weights `W_l` come from
//! the features (`A_l B_lᵀ`), from the inner sketch of a self-tensored map (`(M_q M_kᵀ)^∘2`, §4.2,
//! never forming `r²` features inside a block), or — the mixed variant, §4.3 — from the exact
//! kernel `(q·k)^p`.
//!
//! * [`block`]: one block's features and local weights;
//! * [`scan`]: the order of the blocks — a sequential scan per head, or, when there are fewer
//!   heads than threads, a two-pass scan across chunks of blocks. Both add the states in the same
//!   order, so results are bit-identical whatever the thread count.

mod backward;
mod block;
mod packed;
mod scan;
mod shard;

pub use backward::linear_attention_backward;
pub use packed::linear_attention_packed;
pub use shard::{ShardInputs, ShardPlan, ShardTotals, scan_chunks, state_len};

use crate::feature_map::FeatureMap;
use poly_core::{
    AttentionConfig, Dims, Element, Error, Mask, Normalization, Result, RowPosition, Tensor,
    TensorRef, Threads, check_elements, check_inputs, check_values_in_pool, run_with_threads,
};

/// Configuration of [`linear_attention`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct LinearAttentionConfig {
    /// Non-causal or block-causal.
    pub mask: Mask,
    /// Rows per block of the block-causal algorithm (also the streaming unit when non-causal).
    pub block: usize,
    /// As for exact attention, with the same rule for zero and ill-conditioned normalizers
    /// (see [`linear_attention`]'s errors).
    pub normalization: Normalization,
    /// Multiplies q before the feature map, so homogeneous kernels see `(s·q·k)^p`.
    pub scale: Option<f64>,
    /// LayerNorm q and k rows (no affine) before the feature map, as PolySketchFormer does.
    pub layernorm: bool,
    /// The mixed variant (causal only): exact `(q·k)^p` weights inside each diagonal block, the
    /// sketch for the blocks below it. The output then depends on the block size.
    pub local_exact: bool,
    /// How many threads run the engine.
    pub threads: Threads,
}

impl LinearAttentionConfig {
    /// The same configuration with another mask.
    pub fn with_mask(self, mask: Mask) -> Self {
        LinearAttentionConfig { mask, ..self }
    }
    /// The same configuration with another block size.
    pub fn with_block(self, block: usize) -> Self {
        LinearAttentionConfig { block, ..self }
    }
    /// The same configuration with another normalization.
    pub fn with_normalization(self, normalization: Normalization) -> Self {
        LinearAttentionConfig {
            normalization,
            ..self
        }
    }
    /// The same configuration with `q` multiplied by `scale` before the feature map.
    pub fn with_scale(self, scale: f64) -> Self {
        LinearAttentionConfig {
            scale: Some(scale),
            ..self
        }
    }
    /// The same configuration with LayerNorm of q and k on or off.
    pub fn with_layernorm(self, layernorm: bool) -> Self {
        LinearAttentionConfig { layernorm, ..self }
    }
    /// The same configuration with the mixed variant (exact local blocks) on or off.
    pub fn with_local_exact(self, local_exact: bool) -> Self {
        LinearAttentionConfig {
            local_exact,
            ..self
        }
    }
    /// The same configuration on another thread count.
    pub fn with_threads(self, threads: Threads) -> Self {
        LinearAttentionConfig { threads, ..self }
    }
}

/// Non-causal, blocks of 256, `OnePlusSum(1)` (PolySketchFormer's normalization), scale 1, no
/// LayerNorm, the global rayon pool.
impl Default for LinearAttentionConfig {
    fn default() -> Self {
        LinearAttentionConfig {
            mask: Mask::None,
            block: 256,
            normalization: Normalization::OnePlusSum(1.0),
            scale: None,
            layernorm: false,
            local_exact: false,
            threads: Threads::Global,
        }
    }
}

/// Model FLOPs of linear attention as docs/math.md §4 counts them, over all heads: the feature maps of
/// queries and keys, plus non-causal `4·n·m·(d_v+1)`, or block-causal
/// `2·n·b·(w + d_v + 1) + 4·n·m·(d_v + 1)` where `w` is the width the local weights are computed
/// over (`m`; `r` for a self-tensored map; `d` for exact local blocks). For a self-tensored map
/// `m` counts as `r²` (§4.2), although the packed state does about half of that work.
pub fn linear_attention_flops<T: Element>(
    dims: &Dims,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
) -> f64 {
    let (n_q, n_k) = (dims.n_q as f64, dims.n_k as f64);
    let dv1 = (dims.d_v + 1) as f64;
    let (m, width) = match map.tensored_inner() {
        Some(inner) => {
            let r = inner.feature_dim() as f64;
            (r * r, r)
        }
        None => (map.feature_dim() as f64, map.feature_dim() as f64),
    };
    let width = if cfg.local_exact {
        dims.d as f64
    } else {
        width
    };
    let maps = map.flops_per_row() * (n_q + n_k);
    let per_head = maps
        + match cfg.mask {
            Mask::Causal => {
                2.0 * n_q * cfg.block.min(dims.n_q) as f64 * (width + dv1) + 4.0 * n_q * m * dv1
            }
            _ => 2.0 * (n_q + n_k) * m * dv1,
        };
    dims.batch_heads() as f64 * per_head
}

/// Attention with weights `⟨φ(q), φ(k)⟩`, in time linear in n.
///
/// # Errors
/// The input errors of exact attention (shapes, empty axes, non-finite values); block size 0;
/// a map whose input dimension is not the head dimension; causal masks with `n_q ≠ n_k`; the mixed
/// variant without a causal mask or with a non-polynomial map; a map that needs `Sum`
/// normalization under another one; buffers beyond the memory budget ([`poly_core::memory_budget`]); a zero normalizer; an
/// ill-conditioned one ([`Error::IllConditionedNormalizer`]: `|c + Σ w| ≤ tol · (c + Σ_f |φ(q)_f|
/// Σ_j |φ(k_j)_f|)`, the exact engine's rule applied to the feature products this engine sums, so
/// odd degrees and signed sketches whose weights cancel are refused rather than returned as
/// noise); a non-finite normalizer or output.
///
/// # Example
/// With exact degree-2 features, linear attention *is* degree-2 attention:
/// ```
/// use poly_core::{AttentionConfig, Mask, Normalization, Tensor, attention};
/// use poly_sketch::{ExactDegree2, LinearAttentionConfig, linear_attention};
/// let data: Vec<f64> = (0..2 * 5 * 3).map(|i| ((i * 7) % 11) as f64 / 11.0 - 0.4).collect();
/// let x = Tensor::from_vec([1, 2, 5, 3], data)?;
/// let cfg = LinearAttentionConfig::default()
///     .with_mask(Mask::Causal)
///     .with_block(2)
///     .with_normalization(Normalization::Sum);
/// let linear = linear_attention(x.view(), x.view(), x.view(), &ExactDegree2::new(3)?, &cfg)?;
/// let exact_cfg = AttentionConfig::polynomial(2).with_mask(Mask::Causal);
/// let exact = attention(x.view(), x.view(), x.view(), &exact_cfg)?;
/// for (a, b) in linear.as_slice().iter().zip(exact.as_slice()) {
///     assert!((a - b).abs() < 1e-12);
/// }
/// # Ok::<(), poly_core::Error>(())
/// ```
pub fn linear_attention<T: crate::SketchElement>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
) -> Result<Tensor<T>> {
    T::linear_attention_compiled(q, k, v, map, cfg)
}

/// [`linear_attention`] for one element type (see [`crate::SketchElement`]).
pub(crate) fn linear_attention_generic<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
) -> Result<Tensor<T>> {
    let exact_view = exact_view(cfg);
    let dims = poly_core::check_shapes(&q, &k, &v, &exact_view)?;
    check_parameters(&dims, map, cfg)?;
    // A block longer than the sequence is one block covering it: the same result, and no buffer
    // sized by a block the data never fills.
    let cfg = &cfg.with_block(cfg.block.min(dims.n_q.max(dims.n_k)));
    let mut out = Tensor::zeros(dims.output_shape())?;
    let problem = scan::Problem {
        q: q.as_slice(),
        k: k.as_slice(),
        v: v.as_slice(),
        dims,
        map,
        cfg: *cfg,
    };
    // The value scan runs on the call's threads, like the exact engine's.
    run_with_threads(cfg.threads, || {
        check_values_in_pool(&q, &k, &v, &exact_view, &dims)?;
        // `check_parameters` admits only these two masks.
        match cfg.mask {
            Mask::Causal => scan::block_causal(&problem, out.as_mut_slice()),
            _ => scan::non_causal(&problem, out.as_mut_slice()),
        }
    })??;
    Ok(out)
}

fn invalid(name: &'static str, value: String, expected: &'static str) -> Error {
    Error::InvalidParameter {
        name,
        value,
        expected,
    }
}

/// Every check of a call's inputs on the calling thread (for callers outside a pool): the exact
/// engine's shape and value checks, then [`check_parameters`].
fn validate<T: Element>(
    q: &TensorRef<'_, T>,
    k: &TensorRef<'_, T>,
    v: &TensorRef<'_, T>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
) -> Result<Dims> {
    let dims = check_inputs(q, k, v, &exact_view(cfg))?;
    check_parameters(&dims, map, cfg)?;
    Ok(dims)
}

/// The configuration under which the exact engine's checks cover this call's shapes, values and
/// the parameters it shares with the exact engine.
fn exact_view(cfg: &LinearAttentionConfig) -> AttentionConfig {
    let mut exact_view = AttentionConfig::polynomial(1)
        .with_mask(cfg.mask)
        .with_normalization(cfg.normalization);
    exact_view.scale = cfg.scale;
    exact_view
}

/// This engine's checks beyond the exact engine's, for inputs of dimensions `dims`: its
/// parameters against the map and the shapes, and its buffers against the memory budget.
fn check_parameters<T: Element>(
    dims: &Dims,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
) -> Result<()> {
    if !matches!(cfg.mask, Mask::None | Mask::Causal) {
        return Err(invalid(
            "mask",
            format!("{:?}", cfg.mask),
            "Mask::None or Mask::Causal",
        ));
    }
    if !matches!(
        cfg.normalization,
        Normalization::None | Normalization::Sum | Normalization::OnePlusSum(_)
    ) {
        return Err(invalid(
            "normalization",
            format!("{:?}", cfg.normalization),
            "Sum, OnePlusSum or None",
        ));
    }
    if cfg.block == 0 {
        return Err(invalid("block", "0".into(), "a block size ≥ 1"));
    }
    if map.input_dim() != dims.d {
        return Err(invalid(
            "feature map input dimension",
            map.input_dim().to_string(),
            "the head dimension d of q and k",
        ));
    }
    if cfg.mask == Mask::Causal && dims.n_q != dims.n_k {
        return Err(invalid(
            "mask",
            format!("causal with n_q = {} ≠ n_k = {}", dims.n_q, dims.n_k),
            "n_q = n_k for block-causal linear attention",
        ));
    }
    if cfg.local_exact {
        if cfg.mask != Mask::Causal {
            return Err(invalid(
                "local-exact",
                "a non-causal mask".into(),
                "a causal mask: exact local blocks are the diagonal blocks",
            ));
        }
        if map.polynomial_degree().is_none() {
            return Err(invalid(
                "local-exact",
                "a map of a non-polynomial kernel".into(),
                "a polynomial feature map (polysketch, tensorsketch, maclaurin, exact2)",
            ));
        }
    }
    if map.requires_sum_normalization() && cfg.normalization != Normalization::Sum {
        return Err(invalid(
            "normalization",
            format!("{:?}", cfg.normalization),
            "Sum: this map rescales query rows, which only Sum normalization cancels",
        ));
    }
    let m = map.feature_dim();
    let block = cfg.block.min(dims.n_q.max(dims.n_k));
    // Per task: features, values and local weights of one block; per head: the chunk states.
    check_elements("block features", &[block, m, 2], size_of::<T>())?;
    check_elements("block weights", &[block, block], size_of::<T>())?;
    check_elements(
        "linear-attention states",
        &[m, dims.d_v + 2, scan::CHUNKS + 3],
        size_of::<T>(),
    )?;
    check_elements("attention output", &dims.output_shape(), size_of::<T>())?;
    Ok(())
}

/// One row's `Σ w v` (`num`) and `Σ w` (`sum`) → its output: the single definition of the
/// normalizations for linear attention, shared by the engine and decoding.
///
/// `magnitude` is the sum of the absolute values of the terms whose sum is the row's `Σ w`: for
/// sketched weights `⟨|φ(q)|, Σ_j |φ(k_j)|⟩` (each weight is a sum of feature products), for the
/// exact weights of the mixed variant's local block `Σ_j |w_j|`. Rows are judged by the exact
/// engine's rule (docs/math.md §3.3): a zero normalizer, or `|c + Σ w| ≤ tol · (c + magnitude)`
/// (`c` the OnePlusSum bias, 0 for Sum), is an error — cancellation has left the normalizer
/// mostly rounding noise, as odd degrees and signed sketches do. A non-finite output is an error.
pub(crate) fn normalize_row<A: Element, T: Element>(
    num: &[A],
    sum: A,
    normalization: Normalization,
    magnitude: f64,
    at: RowPosition,
    out: &mut [T],
) -> Result<()> {
    let bias = match normalization {
        Normalization::None => None,
        Normalization::Sum => Some(0.0),
        Normalization::OnePlusSum(c) => Some(c),
        other => {
            return Err(invalid(
                "normalization",
                format!("{other:?}"),
                "Sum, OnePlusSum or None",
            ));
        }
    };
    let den = match bias {
        None => 1.0,
        Some(c) => {
            let den = c + sum.to_f64();
            let magnitude = c + magnitude;
            if !(den.is_finite() && magnitude.is_finite()) {
                return Err(Error::Overflow {
                    at,
                    what: "the linear-attention normalizer",
                });
            }
            poly_core::check_normalizer::<T>(den, magnitude, at)?;
            den
        }
    };
    let inv = 1.0 / den;
    for (o, x) in out.iter_mut().zip(num) {
        *o = T::from_f64(x.to_f64() * inv);
        if !o.to_f64().is_finite() {
            return Err(Error::Overflow {
                at,
                what: "the linear-attention output",
            });
        }
    }
    Ok(())
}
