//! Gradients of exact attention with respect to q, k and v (docs/math.md §2.6), flash-style: the
//! forward keeps two numbers per row (the running maximum `m` and the output multiplier), the
//! backward recomputes score tiles and never holds `n_q × n_k` values.
//!
//! With `P_ij = w'_ij · multiplier_i` (the normalized weights) and `δ_i = dO_i · O_i`:
//! `dV_j = Σ_i P_ij dO_i`, `dS_ij = (dO_i · v_j − δ_i) · G_ij` (no `δ` under `None`), where
//! `G = ∂P/∂s` up to the normalizer: `β (s/m)^(β−1) · multiplier / m` for polynomial weights,
//! `P_ij` itself for softmax; then `dQ = scale · dS K` and `dK = scale · dSᵀ Q`. Everything stays
//! in the forward's scale-free form, so high degrees (β = 64 in f32) do not overflow.
//!
//! Work: five GEMM-shaped products per visible pair (S, dO Vᵀ, Pᵀ dO, dSᵀ Q, dS K). Each task
//! owns one k/v head's key tiles dealt round-robin ([`DQ_PARTIALS`] tasks per head, so the causal
//! triangle balances) and accumulates its dK, dV tiles and its own dQ partial; the partials are
//! summed in task order, so results never depend on the thread count.

use crate::config::{AttentionConfig, Kernel, Normalization};
use crate::element::Element;
use crate::engine::{RowStat, attend_validated, run_with_threads};
use crate::error::{Error, Result, RowPosition, TensorName};
use crate::gemm::{gemm_abt, gemm_add_ab, gemm_add_atb};
use crate::kernels::{exp_in_place, first_non_finite, power_in_place};
use crate::layernorm::{layernorm_backward, layernorm_rows};
use crate::resources::check_elements;
use crate::sequences::{Layout, Sequences, Visibility};
use crate::tensor::{Shape, Tensor, TensorRef};
use crate::validate::{Dims, check_inputs, check_shapes, check_values_in_pool};
use rayon::prelude::*;
use std::borrow::Cow;

/// Query rows per backward tile.
pub const BACKWARD_QUERY_TILE: usize = 64;
/// Keys per backward tile.
pub const BACKWARD_KEY_TILE: usize = 256;
/// Tasks per k/v head: each takes every `DQ_PARTIALS`-th key tile and keeps its own dQ partial
/// (memory: this many copies of dQ, O(n)).
pub const DQ_PARTIALS: usize = 4;

/// A forward pass that kept what its backward needs: the output and two f64 per query row.
#[derive(Clone, Debug)]
pub struct AttentionForward<T> {
    output: Tensor<T>,
    stats: Vec<RowStat>,
    dims: Dims,
    cfg: AttentionConfig,
    layout: OwnedLayout,
}

/// The forward's sequence layout, kept for its backward.
#[derive(Clone, Debug)]
enum OwnedLayout {
    Dense,
    Packed(Sequences),
    KeyPadded(Vec<usize>),
}

impl OwnedLayout {
    fn layout(&self) -> Layout<'_> {
        match self {
            OwnedLayout::Dense => Layout::Dense,
            OwnedLayout::Packed(s) => Layout::Packed(s),
            OwnedLayout::KeyPadded(l) => Layout::KeyPadded(l),
        }
    }
}

impl<T> AttentionForward<T> {
    /// The attention output, as [`crate::attention`] returns it.
    pub fn output(&self) -> &Tensor<T> {
        &self.output
    }

    /// The output, giving up the statistics.
    pub fn into_output(self) -> Tensor<T> {
        self.output
    }
}

/// The gradients of a scalar loss with respect to q, k and v, in their shapes.
#[derive(Clone, Debug)]
pub struct AttentionGradients<T> {
    /// `∂L/∂q`, `[batch, heads, n_q, d]`.
    pub dq: Tensor<T>,
    /// `∂L/∂k`, `[batch, kv_heads, n_k, d]` (summed over each group's query heads).
    pub dk: Tensor<T>,
    /// `∂L/∂v`, `[batch, kv_heads, n_k, d_v]`.
    pub dv: Tensor<T>,
}

/// [`crate::attention`], keeping the per-row statistics [`attention_backward`] needs.
///
/// # Errors
/// As [`crate::attention`].
pub fn attention_forward<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
) -> Result<AttentionForward<T>> {
    forward_with_layout(q, k, v, cfg, OwnedLayout::Dense)
}

/// [`attention_forward`] over packed sequences (see [`crate::attention_packed`]).
///
/// # Errors
/// As [`crate::attention_packed`].
pub fn attention_forward_packed<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    sequences: &Sequences,
) -> Result<AttentionForward<T>> {
    forward_with_layout(q, k, v, cfg, OwnedLayout::Packed(sequences.clone()))
}

/// [`attention_forward`] over a right-padded batch (see [`crate::attention_padded`]): padding
/// query rows and padded keys get zero gradients.
///
/// # Errors
/// As [`crate::attention_padded`].
pub fn attention_forward_padded<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    key_lengths: &[usize],
) -> Result<AttentionForward<T>> {
    forward_with_layout(q, k, v, cfg, OwnedLayout::KeyPadded(key_lengths.to_vec()))
}

fn forward_with_layout<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    layout: OwnedLayout,
) -> Result<AttentionForward<T>> {
    let dims = check_shapes(&q, &k, &v, cfg)?;
    layout.layout().check(&dims)?;
    check_elements("attention output", &dims.output_shape(), size_of::<T>())?;
    check_elements(
        "row statistics",
        &[dims.batch_heads(), dims.n_q, 2],
        size_of::<f64>(),
    )?;
    let mut output = Tensor::zeros(dims.output_shape())?;
    let mut stats = vec![RowStat::default(); dims.batch_heads() * dims.n_q];
    let visibility = visibility(cfg, layout.layout());
    run_with_threads(cfg.threads, || {
        check_values_in_pool(&q, &k, &v, cfg, &dims)?;
        attend_validated(
            q,
            k,
            v,
            cfg,
            visibility,
            dims,
            output.as_mut_slice(),
            Some(&mut stats),
        )
    })??;
    Ok(AttentionForward {
        output,
        stats,
        dims,
        cfg: *cfg,
        layout,
    })
}

fn visibility<'a>(cfg: &AttentionConfig, layout: Layout<'a>) -> Visibility<'a> {
    Visibility {
        mask: cfg.mask,
        window: cfg.window,
        layout,
    }
}

/// The gradients of `L` with respect to q, k and v, given `grad_out = ∂L/∂O` for the output of
/// `forward` (computed from these q, k, v with [`attention_forward`], whose configuration is
/// used).
///
/// # Errors
/// Inputs whose shapes differ from the forward's; a `grad_out` of the wrong shape or with
/// non-finite values; buffers beyond the memory budget; a gradient that overflows the element
/// type ([`Error::Overflow`], at the first such row).
pub fn attention_backward<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    forward: &AttentionForward<T>,
    grad_out: TensorRef<'_, T>,
) -> Result<AttentionGradients<T>> {
    let cfg = &forward.cfg;
    let dims = check_inputs(&q, &k, &v, cfg)?;
    if dims != forward.dims {
        return Err(Error::InvalidParameter {
            name: "attention backward",
            value: format!("inputs of {dims:?}"),
            expected: "the q, k and v the forward pass was computed from",
        });
    }
    check_output_gradient(&grad_out, dims.output_shape())?;
    for (what, len) in [
        (
            "dq partials",
            DQ_PARTIALS * dims.batch_heads() * dims.n_q * dims.d,
        ),
        ("dk", dims.batch * dims.kv_heads * dims.n_k * dims.d),
        ("dv", dims.batch * dims.kv_heads * dims.n_k * dims.d_v),
    ] {
        check_elements(what, &[len], size_of::<T>())?;
    }
    let (q_hat, k_hat): (Cow<[T]>, Cow<[T]>) = if cfg.layernorm {
        (
            Cow::Owned(layernorm_rows(q.as_slice(), dims.d)?),
            Cow::Owned(layernorm_rows(k.as_slice(), dims.d)?),
        )
    } else {
        (Cow::Borrowed(q.as_slice()), Cow::Borrowed(k.as_slice()))
    };
    let job = Backward {
        q: &q_hat,
        k: &k_hat,
        v: v.as_slice(),
        grad_out: grad_out.as_slice(),
        deltas: &deltas(forward, grad_out.as_slice()),
        stats: &forward.stats,
        cfg,
        visibility: visibility(cfg, forward.layout.layout()),
        dims,
        scale: T::from_f64(cfg.effective_scale(dims.d)),
    };
    let tasks: Vec<(usize, usize, usize)> = (0..dims.batch)
        .flat_map(|b| {
            (0..dims.kv_heads).flat_map(move |kv| (0..DQ_PARTIALS).map(move |c| (b, kv, c)))
        })
        .collect();
    let parts: Vec<TaskOutput<T>> = run_with_threads(cfg.threads, || {
        tasks
            .into_par_iter()
            .map(|(b, kv, c)| job.task(b, kv, c))
            .collect()
    })?;
    let mut grads = job.assemble(parts)?;
    if cfg.layernorm {
        layernorm_backward(q.as_slice(), &q_hat, grads.dq.as_mut_slice(), dims.d);
        layernorm_backward(k.as_slice(), &k_hat, grads.dk.as_mut_slice(), dims.d);
    }
    grads.check_finite()?;
    Ok(grads)
}

impl<T: Element> AttentionGradients<T> {
    /// An [`Error::Overflow`] at the first gradient row that is not finite.
    ///
    /// # Errors
    /// That row, in (dq, dk, dv) order.
    pub fn check_finite(&self) -> Result<()> {
        for t in [&self.dq, &self.dk, &self.dv] {
            if let Some(flat) = first_non_finite(t.as_slice()) {
                let [b, h, row, _] = crate::tensor::unravel(t.shape(), flat);
                return Err(Error::Overflow {
                    at: RowPosition::new(b, h, row),
                    what: "a gradient",
                });
            }
        }
        Ok(())
    }
}

/// Checks a gradient with respect to an attention output: the output's `shape` and finite.
///
/// # Errors
/// [`Error::ShapeMismatch`] naming the axis, or [`Error::NonFinite`] naming the element.
pub fn check_output_gradient<T: Element>(grad_out: &TensorRef<'_, T>, shape: Shape) -> Result<()> {
    for (axis, (&want, found)) in shape.iter().zip(grad_out.shape()).enumerate() {
        if want != found {
            return Err(Error::ShapeMismatch {
                tensor: TensorName::Output,
                axis: ["batch", "heads", "n_q", "d_v"][axis],
                expected: want,
                found,
            });
        }
    }
    if let Some(flat) = first_non_finite(grad_out.as_slice()) {
        return Err(Error::NonFinite {
            tensor: TensorName::Output,
            index: crate::tensor::unravel(shape, flat),
            value: grad_out.as_slice()[flat].to_f64(),
        });
    }
    Ok(())
}

/// [`attention_forward`] then [`attention_backward`]: the output and the gradients of
/// `Σ grad_out ⊙ output`.
///
/// # Errors
/// As the two.
pub fn attention_gradients<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    grad_out: TensorRef<'_, T>,
    cfg: &AttentionConfig,
) -> Result<(Tensor<T>, AttentionGradients<T>)> {
    let forward = attention_forward(q, k, v, cfg)?;
    let grads = attention_backward(q, k, v, &forward, grad_out)?;
    Ok((forward.into_output(), grads))
}

/// `δ_i = dO_i · O_i` per query row (0 under `None`, whose output does not divide by the weights).
fn deltas<T: Element>(forward: &AttentionForward<T>, grad_out: &[T]) -> Vec<T> {
    let d_v = forward.dims.d_v;
    if forward.cfg.normalization == Normalization::None {
        return vec![T::ZERO; forward.stats.len()];
    }
    forward
        .output
        .as_slice()
        .chunks_exact(d_v)
        .zip(grad_out.chunks_exact(d_v))
        .map(|(o, g)| {
            T::from_f64(
                o.iter()
                    .zip(g)
                    .map(|(&a, &b)| a.to_f64() * b.to_f64())
                    .sum(),
            )
        })
        .collect()
}

/// What one task computed: its dQ partial (the group's query heads, `[g, n_q, d]`) and the dK, dV
/// rows of its key tiles.
struct TaskOutput<T> {
    batch: usize,
    kv: usize,
    dq: Vec<T>,
    tiles: Vec<(usize, Vec<T>, Vec<T>)>,
}

/// Everything the tasks share.
struct Backward<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    grad_out: &'a [T],
    deltas: &'a [T],
    stats: &'a [RowStat],
    cfg: &'a AttentionConfig,
    visibility: Visibility<'a>,
    dims: Dims,
    scale: T,
}

impl<T: Element> Backward<'_, T> {
    /// Key tiles `c, c + DQ_PARTIALS, …` of k/v head `kv` in batch entry `b`, against every query
    /// tile of the group's query heads that sees them.
    fn task(&self, b: usize, kv: usize, c: usize) -> TaskOutput<T> {
        let Dims {
            heads,
            kv_heads,
            n_q,
            n_k,
            d,
            d_v,
            ..
        } = self.dims;
        let group = heads / kv_heads;
        let vis = self.visibility;
        let mut dq = vec![T::ZERO; group * n_q * d];
        let mut tiles = Vec::new();
        let tile = BACKWARD_QUERY_TILE.min(n_q) * BACKWARD_KEY_TILE.min(n_k);
        let (mut s, mut dp) = (vec![T::ZERO; tile], vec![T::ZERO; tile]);
        let mut lower = vec![T::ZERO; BACKWARD_KEY_TILE.min(n_k)];
        let kv_row = (b * kv_heads + kv) * n_k;
        for t in (c..n_k.div_ceil(BACKWARD_KEY_TILE)).step_by(DQ_PARTIALS) {
            let k0 = t * BACKWARD_KEY_TILE;
            let cols = BACKWARD_KEY_TILE.min(n_k - k0);
            let k_tile = &self.k[(kv_row + k0) * d..(kv_row + k0 + cols) * d];
            let v_tile = &self.v[(kv_row + k0) * d_v..(kv_row + k0 + cols) * d_v];
            let mut dk = vec![T::ZERO; cols * d];
            let mut dv = vec![T::ZERO; cols * d_v];
            for g in 0..group {
                let bh = b * heads + kv * group + g;
                for r0 in (0..n_q).step_by(BACKWARD_QUERY_TILE) {
                    let rows = BACKWARD_QUERY_TILE.min(n_q - r0);
                    // Ranges never move back: the tile's rows see keys from its first row's
                    // first key to its last row's last one.
                    let first = vis.key_range(&self.dims, b, r0).start;
                    let last = vis.key_range(&self.dims, b, r0 + rows - 1).end;
                    if last <= k0 || first >= k0 + cols {
                        continue;
                    }
                    let row0 = bh * n_q + r0;
                    let q_tile = &self.q[row0 * d..(row0 + rows) * d];
                    let go_tile = &self.grad_out[row0 * d_v..(row0 + rows) * d_v];
                    let (s, dp) = (&mut s[..rows * cols], &mut dp[..rows * cols]);
                    gemm_abt(s, q_tile, k_tile, rows, cols, d, self.scale);
                    gemm_abt(dp, go_tile, v_tile, rows, cols, d_v, T::ONE);
                    for (r, (s_row, dp_row)) in s
                        .chunks_exact_mut(cols)
                        .zip(dp.chunks_exact_mut(cols))
                        .enumerate()
                    {
                        let visible = vis.key_range(&self.dims, b, r0 + r);
                        let lo = visible.start.clamp(k0, k0 + cols) - k0;
                        let hi = visible.end.clamp(k0, k0 + cols) - k0;
                        let (lo, hi) = (lo, hi.max(lo));
                        self.row_gradients(
                            &mut s_row[lo..hi],
                            &mut dp_row[lo..hi],
                            &mut lower,
                            self.stats[row0 + r],
                            self.deltas[row0 + r],
                        );
                        for row in [&mut *s_row, &mut *dp_row] {
                            row[..lo].fill(T::ZERO);
                            row[hi..].fill(T::ZERO);
                        }
                    }
                    // s now holds P, dp holds dS.
                    gemm_add_atb(&mut dv, s, go_tile, cols, d_v, rows);
                    gemm_add_atb(&mut dk, dp, q_tile, cols, d, rows);
                    let dq_rows = &mut dq[(g * n_q + r0) * d..(g * n_q + r0 + rows) * d];
                    gemm_add_ab(dq_rows, dp, k_tile, rows, d, cols);
                }
            }
            tiles.push((k0, dk, dv));
        }
        TaskOutput {
            batch: b,
            kv,
            dq,
            tiles,
        }
    }

    /// One row's visible scores `s` become `P` and `dO·vᵀ` in `dp` becomes `dS`.
    fn row_gradients(&self, s: &mut [T], dp: &mut [T], lower: &mut [T], stat: RowStat, delta: T) {
        let multiplier = T::from_f64(stat.multiplier);
        match self.cfg.kernel {
            Kernel::Polynomial { degree } if stat.max > 0.0 => {
                let inv = T::from_f64(1.0 / stat.max);
                let g = T::from_f64(f64::from(degree) * stat.multiplier / stat.max);
                // (s/m)^(β−1) by the forward's SIMD power kernel, then one pass for P and dS.
                let lower = &mut lower[..s.len()];
                lower.copy_from_slice(s);
                if degree == 0 {
                    lower.fill(T::ZERO);
                } else {
                    power_in_place(lower, inv, degree - 1);
                }
                for ((s, dp), &lower) in s.iter_mut().zip(dp.iter_mut()).zip(lower.iter()) {
                    *dp = (*dp - delta) * lower * g;
                    *s = lower * (*s * inv) * multiplier;
                }
            }
            Kernel::Polynomial { degree } => {
                // Every visible score is 0: P = 0, and ∂P/∂s is 1/D for β = 1 (else 0).
                let slope = match (degree, self.cfg.normalization) {
                    (1, Normalization::OnePlusSum(c)) => T::from_f64(1.0 / c),
                    (1, Normalization::None) => T::ONE,
                    _ => T::ZERO,
                };
                s.fill(T::ZERO);
                dp.iter_mut().for_each(|dp| *dp = (*dp - delta) * slope);
            }
            Kernel::Softmax => {
                exp_in_place(s, T::from_f64(stat.max));
                for (s, dp) in s.iter_mut().zip(dp.iter_mut()) {
                    *s *= multiplier;
                    *dp = (*dp - delta) * *s;
                }
            }
        }
    }

    /// Sums the dQ partials in task order, places the dK and dV tiles, applies the scale.
    fn assemble(&self, parts: Vec<TaskOutput<T>>) -> Result<AttentionGradients<T>> {
        let Dims {
            batch,
            heads,
            kv_heads,
            n_q,
            n_k,
            d,
            d_v,
        } = self.dims;
        let group = heads / kv_heads;
        let mut dq = Tensor::zeros([batch, heads, n_q, d])?;
        let mut dk = Tensor::zeros([batch, kv_heads, n_k, d])?;
        let mut dv = Tensor::zeros([batch, kv_heads, n_k, d_v])?;
        for part in parts {
            let first = (part.batch * heads + part.kv * group) * n_q * d;
            let dst = &mut dq.as_mut_slice()[first..first + group * n_q * d];
            dst.iter_mut().zip(&part.dq).for_each(|(a, &b)| *a += b);
            let kv_row = (part.batch * kv_heads + part.kv) * n_k;
            for (k0, k_rows, v_rows) in part.tiles {
                let rows = k_rows.len() / d;
                dk.as_mut_slice()[(kv_row + k0) * d..(kv_row + k0 + rows) * d]
                    .copy_from_slice(&k_rows);
                dv.as_mut_slice()[(kv_row + k0) * d_v..(kv_row + k0 + rows) * d_v]
                    .copy_from_slice(&v_rows);
            }
        }
        for x in dq.as_mut_slice().iter_mut().chain(dk.as_mut_slice()) {
            *x *= self.scale;
        }
        Ok(AttentionGradients { dq, dk, dv })
    }
}
