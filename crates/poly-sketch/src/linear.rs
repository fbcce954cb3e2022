//! Linear attention with a feature map (MATH.md §4): `Y = A (Bᵀ C)` with `A = φ(Q)`, `B = φ(K)`,
//! `C = [V | 1]`; the last column of `Y` is the normalizer.
//!
//! Causal attention uses the block lower-triangular product of PolySketchFormer (§4.1): rows are
//! split into blocks of `b` (the last may be shorter), and with the running state
//! `Z = Σ_{earlier blocks} B_lᵀ C_l`:  `Y_l = lt(A_l B_lᵀ) C_l + A_l Z`, then `Z += B_lᵀ C_l`.
//! Memory per head is `O(b·m + m·d_v)` beyond inputs and outputs; rayon runs the heads.

use crate::feature_map::FeatureMap;
use poly_core::gemm::{gemm_ab, gemm_abt, gemm_add_ab, gemm_add_atb};
use poly_core::layernorm_rows;
use poly_core::{
    AttentionConfig, Element, Error, Mask, Normalization, Result, RowPosition, Tensor, TensorRef,
    Threads, check_inputs, run_with_threads,
};
use rayon::prelude::*;
use std::borrow::Cow;

/// Configuration of [`linear_attention`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearAttentionConfig {
    pub mask: Mask,
    /// Rows per block of the block-causal algorithm (also the streaming unit when non-causal).
    pub block: usize,
    /// As for exact attention; with sketched features the normalizer is an estimate, so only a
    /// zero or non-finite one is an error.
    pub normalization: Normalization,
    /// Multiplies q before the feature map, so homogeneous kernels see `(s·q·k)^p`.
    pub scale: Option<f64>,
    /// LayerNorm q and k rows (no affine) before the feature map, as PolySketchFormer does.
    pub layernorm: bool,
    pub threads: Threads,
}

impl Default for LinearAttentionConfig {
    fn default() -> Self {
        LinearAttentionConfig {
            mask: Mask::None,
            block: 256,
            normalization: Normalization::OnePlusSum(1.0),
            scale: None,
            layernorm: false,
            threads: Threads::Global,
        }
    }
}

/// FLOPs of linear attention per MATH.md §4 (feature maps not counted): non-causal
/// `4·n·m·(d_v+1)`, block-causal `2·n·b·(m + d_v + 1) + 4·n·m·(d_v + 1)`, over all heads.
pub fn linear_attention_flops(
    dims: &poly_core::Dims,
    m: usize,
    cfg: &LinearAttentionConfig,
) -> f64 {
    let (n, m, dv1) = (dims.n_q as f64, m as f64, (dims.d_v + 1) as f64);
    let per_head = match cfg.mask {
        Mask::None => 2.0 * (dims.n_q + dims.n_k) as f64 * m * dv1,
        Mask::Causal => 2.0 * n * cfg.block.min(dims.n_q) as f64 * (m + dv1) + 4.0 * n * m * dv1,
    };
    dims.batch_heads() as f64 * per_head
}

/// Attention with weights `⟨φ(q), φ(k)⟩`, in time linear in n.
///
/// # Errors
/// The input errors of exact attention (shapes, empty axes, non-finite values); block size 0;
/// a map whose input dimension is not the head dimension; causal masks with `n_q ≠ n_k`; a zero
/// or non-finite normalizer; a non-finite output.
pub fn linear_attention<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
) -> Result<Tensor<T>> {
    // The exact engine's checks cover shapes, finiteness and the parameters shared with it.
    let mut exact_view = AttentionConfig::polynomial(1)
        .with_mask(cfg.mask)
        .with_normalization(cfg.normalization);
    exact_view.scale = cfg.scale;
    let dims = check_inputs(&q, &k, &v, &exact_view)?;
    if cfg.block == 0 {
        return Err(Error::InvalidParameter {
            name: "block",
            value: "0".into(),
            expected: "a block size ≥ 1",
        });
    }
    if map.input_dim() != dims.d {
        return Err(Error::InvalidParameter {
            name: "feature map input dimension",
            value: map.input_dim().to_string(),
            expected: "the head dimension d of q and k",
        });
    }
    if cfg.mask == Mask::Causal && dims.n_q != dims.n_k {
        return Err(Error::InvalidParameter {
            name: "mask",
            value: format!("causal with n_q = {} ≠ n_k = {}", dims.n_q, dims.n_k),
            expected: "n_q = n_k for block-causal linear attention",
        });
    }
    let mut out = Tensor::zeros(dims.output_shape())?;
    let (d, d_v, n_q, n_k) = (dims.d, dims.d_v, dims.n_q, dims.n_k);
    let (q_data, k_data) = prepare_qk(q.as_slice(), k.as_slice(), d, cfg);
    run_with_threads(cfg.threads, || {
        out.as_mut_slice()
            .par_chunks_mut(n_q * d_v)
            .enumerate()
            .map(|(bh, head_out)| {
                let head = Head {
                    q: &q_data[bh * n_q * d..(bh + 1) * n_q * d],
                    k: &k_data[bh * n_k * d..(bh + 1) * n_k * d],
                    v: &v.as_slice()[bh * n_k * d_v..(bh + 1) * n_k * d_v],
                    d,
                    d_v,
                    map,
                    cfg,
                    batch: bh / dims.heads,
                    head: bh % dims.heads,
                };
                match cfg.mask {
                    Mask::None => head.non_causal(head_out),
                    Mask::Causal => head.block_causal(head_out),
                }
            })
            .collect::<Vec<Result<()>>>()
            .into_iter()
            .collect::<Result<()>>()
    })??;
    Ok(out)
}

/// q and k after the optional LayerNorm and scale (borrowed when neither applies).
fn prepare_qk<'a, T: Element>(
    q: &'a [T],
    k: &'a [T],
    d: usize,
    cfg: &LinearAttentionConfig,
) -> (Cow<'a, [T]>, Cow<'a, [T]>) {
    let (mut q, k): (Cow<[T]>, Cow<[T]>) = if cfg.layernorm {
        (
            Cow::Owned(layernorm_rows(q, d)),
            Cow::Owned(layernorm_rows(k, d)),
        )
    } else {
        (Cow::Borrowed(q), Cow::Borrowed(k))
    };
    if let Some(s) = cfg.scale {
        let s = T::from_f64(s);
        q.to_mut().iter_mut().for_each(|x| *x *= s);
    }
    (q, k)
}

/// One (batch, head) of the computation.
struct Head<'a, T: Element> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    d: usize,
    d_v: usize,
    map: &'a dyn FeatureMap<T>,
    cfg: &'a LinearAttentionConfig,
    batch: usize,
    head: usize,
}

impl<T: Element> Head<'_, T> {
    /// `[V | 1]` of key rows `start..start + rows`.
    fn values_with_ones(&self, start: usize, rows: usize) -> Vec<T> {
        let mut c = Vec::with_capacity(rows * (self.d_v + 1));
        for row in self.v[start * self.d_v..(start + rows) * self.d_v].chunks_exact(self.d_v) {
            c.extend_from_slice(row);
            c.push(T::ONE);
        }
        c
    }

    fn features(&self, x: &[T], start: usize, rows: usize) -> Vec<T> {
        let mut out = vec![T::ZERO; rows * self.map.feature_dim()];
        self.map
            .map_into(&x[start * self.d..(start + rows) * self.d], &mut out);
        out
    }

    /// `H = Σ_blocks φ(K_l)ᵀ [V_l | 1]`, then every query block reads `φ(Q_l) H`.
    fn non_causal(&self, out: &mut [T]) -> Result<()> {
        let (m, dv1, b) = (self.map.feature_dim(), self.d_v + 1, self.cfg.block);
        let n_k = self.k.len() / self.d;
        let mut state = vec![T::ZERO; m * dv1];
        for start in (0..n_k).step_by(b) {
            let rows = b.min(n_k - start);
            gemm_add_atb(
                &mut state,
                &self.features(self.k, start, rows),
                &self.values_with_ones(start, rows),
                m,
                dv1,
                rows,
            );
        }
        let n_q = self.q.len() / self.d;
        let mut y = vec![T::ZERO; b * dv1];
        for start in (0..n_q).step_by(b) {
            let rows = b.min(n_q - start);
            gemm_ab(
                &mut y,
                &self.features(self.q, start, rows),
                &state,
                rows,
                dv1,
                m,
            );
            self.normalize(
                &y[..rows * dv1],
                start,
                &mut out[start * self.d_v..(start + rows) * self.d_v],
            )?;
        }
        Ok(())
    }

    /// The block lower-triangular product with one running state.
    fn block_causal(&self, out: &mut [T]) -> Result<()> {
        let (m, dv1, b) = (self.map.feature_dim(), self.d_v + 1, self.cfg.block);
        let n = self.q.len() / self.d;
        let mut state = vec![T::ZERO; m * dv1];
        let mut scores = vec![T::ZERO; b * b];
        let mut y = vec![T::ZERO; b * dv1];
        for start in (0..n).step_by(b) {
            let rows = b.min(n - start);
            let a = self.features(self.q, start, rows);
            let keys = self.features(self.k, start, rows);
            let c = self.values_with_ones(start, rows);
            // Local part: lt(A_l B_lᵀ) C_l, the mask keeping key j ≤ query i inside the block.
            gemm_abt(&mut scores, &a, &keys, rows, rows, m, T::ONE);
            for (i, row) in scores[..rows * rows].chunks_exact_mut(rows).enumerate() {
                row[i + 1..].fill(T::ZERO);
            }
            gemm_ab(&mut y, &scores[..rows * rows], &c, rows, dv1, rows);
            // Earlier blocks: A_l Z.
            gemm_add_ab(&mut y, &a, &state, rows, dv1, m);
            self.normalize(
                &y[..rows * dv1],
                start,
                &mut out[start * self.d_v..(start + rows) * self.d_v],
            )?;
            gemm_add_atb(&mut state, &keys, &c, m, dv1, rows);
        }
        Ok(())
    }

    /// Rows of `[Σ w v | Σ w]` → outputs, with the configured normalization.
    fn normalize(&self, y: &[T], first_row: usize, out: &mut [T]) -> Result<()> {
        let dv1 = self.d_v + 1;
        for (r, (row, o)) in y
            .chunks_exact(dv1)
            .zip(out.chunks_exact_mut(self.d_v))
            .enumerate()
        {
            let at = RowPosition {
                batch: self.batch,
                head: self.head,
                row: first_row + r,
            };
            normalize_row(row, self.cfg.normalization, at, o)?;
        }
        Ok(())
    }
}

/// One row `[Σ w v | Σ w]` → its output: the single definition of the normalizations for linear
/// attention, shared by the engine and decoding. With sketched features the normalizer is an
/// estimate, so only a zero one (`Sum`/`OnePlusSum`) or a non-finite output is an error.
pub(crate) fn normalize_row<A: Element, T: Element>(
    row: &[A],
    normalization: Normalization,
    at: RowPosition,
    out: &mut [T],
) -> Result<()> {
    let (num, sum) = row.split_at(out.len());
    let den = match normalization {
        Normalization::None => 1.0,
        Normalization::Sum => sum[0].to_f64(),
        Normalization::OnePlusSum(c) => c + sum[0].to_f64(),
    };
    if den == 0.0 {
        return Err(Error::AllScoresZero { at });
    }
    for (o, x) in out.iter_mut().zip(num) {
        *o = T::from_f64(x.to_f64() / den);
        if !o.to_f64().is_finite() {
            return Err(Error::Overflow {
                at,
                what: "the linear-attention output",
            });
        }
    }
    Ok(())
}
