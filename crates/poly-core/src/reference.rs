//! The test oracle: plain, readable f64 attention that materializes every score row.
//!
//! Written independently of the streaming engine (its own LayerNorm, powers and normalization) so
//! that a mistake in one is caught by the other. Only input validation is shared.

use crate::config::{AttentionConfig, Kernel, LAYERNORM_EPS, Normalization};
use crate::element::Element;
use crate::error::{Error, Result, RowPosition};
use crate::sequences::{Layout, Sequences, Visibility};
use crate::tensor::{Tensor, TensorRef};
use crate::validate::check_inputs;

/// Exact attention in f64, row by row. The error decisions (zero or ill-conditioned normalizers)
/// use `T`'s tolerance so that they match the engine's for the same input type.
///
/// # Errors
/// The same conditions as [`crate::attention`].
///
/// # Example
/// ```
/// use poly_core::{AttentionConfig, Tensor, attention, reference_attention};
/// let x = Tensor::from_vec([1, 1, 3, 2], vec![1.0f32, 0.5, -0.5, 1.0, 0.25, 0.75])?;
/// let cfg = AttentionConfig::polynomial(3).with_normalization(poly_core::Normalization::None);
/// let fast = attention(x.view(), x.view(), x.view(), &cfg)?;
/// let slow = reference_attention(x.view(), x.view(), x.view(), &cfg)?;
/// for (&a, &b) in fast.as_slice().iter().zip(slow.as_slice()) {
///     assert!((a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0));
/// }
/// # Ok::<(), poly_core::Error>(())
/// ```
pub fn reference_attention<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
) -> Result<Tensor<f64>> {
    reference(q, k, v, cfg, Layout::Dense)
}

/// [`reference_attention`] over packed sequences (see [`crate::attention_packed`]).
///
/// # Errors
/// As [`crate::attention_packed`].
pub fn reference_attention_packed<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    sequences: &Sequences,
) -> Result<Tensor<f64>> {
    reference(q, k, v, cfg, Layout::Packed(sequences))
}

/// [`reference_attention`] over a right-padded batch (see [`crate::attention_padded`]).
///
/// # Errors
/// As [`crate::attention_padded`].
pub fn reference_attention_padded<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    key_lengths: &[usize],
) -> Result<Tensor<f64>> {
    reference(q, k, v, cfg, Layout::KeyPadded(key_lengths))
}

fn reference<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    layout: Layout<'_>,
) -> Result<Tensor<f64>> {
    let dims = check_inputs(&q, &k, &v, cfg)?;
    layout.check(&dims)?;
    let visibility = Visibility {
        mask: cfg.mask,
        window: cfg.window,
        layout,
    };
    let scale = cfg.effective_scale(dims.d);
    let mut out = Vec::with_capacity(dims.batch_heads() * dims.n_q * dims.d_v);
    for batch in 0..dims.batch {
        for head in 0..dims.heads {
            let qs = rows_f64(q.head(batch, head)?, dims.d, cfg.layernorm);
            // Grouped-query attention: query head `head` reads k/v head `head / group`.
            let kv = head / dims.group();
            let ks = rows_f64(k.head(batch, kv)?, dims.d, cfg.layernorm);
            let vs = rows_f64(v.head(batch, kv)?, dims.d_v, false);
            for (i, qi) in qs.iter().enumerate() {
                if visibility.is_padding_row(&dims, batch, i) {
                    out.extend(std::iter::repeat_n(0.0, dims.d_v));
                    continue;
                }
                let visible = visibility.key_range(&dims, batch, i);
                let scores: Vec<f64> = ks[visible.clone()]
                    .iter()
                    .map(|kj| scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>())
                    .collect();
                let at = RowPosition {
                    batch,
                    head,
                    row: i,
                };
                let row = reference_row::<T>(&scores, &vs[visible], dims.d_v, cfg, at)?;
                out.extend(row);
            }
        }
    }
    Tensor::from_vec(dims.output_shape(), out)
}

fn rows_f64<T: Element>(data: &[T], dim: usize, layernorm: bool) -> Vec<Vec<f64>> {
    data.chunks_exact(dim)
        .map(|row| {
            let row: Vec<f64> = row.iter().map(|x| x.to_f64()).collect();
            if !layernorm {
                return row;
            }
            // Divide by the largest magnitude first when it exceeds 1, so that squares stay
            // finite; ε shrinks by the same factor squared (docs/math.md §1).
            let s = row.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let (row, eps) = if s > 1.0 {
                (row.iter().map(|x| x / s).collect(), LAYERNORM_EPS / (s * s))
            } else {
                (row, LAYERNORM_EPS)
            };
            let mean = row.iter().sum::<f64>() / dim as f64;
            let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / dim as f64;
            row.iter()
                .map(|x| (x - mean) / (var + eps).sqrt())
                .collect()
        })
        .collect()
}

/// One output row from its visible scores and values.
fn reference_row<T: Element>(
    scores: &[f64],
    values: &[Vec<f64>],
    d_v: usize,
    cfg: &AttentionConfig,
    at: RowPosition,
) -> Result<Vec<f64>> {
    // Weights relative to the largest one, w = factor · w', so nothing overflows.
    let (weights, log_factor): (Vec<f64>, f64) = match cfg.kernel {
        Kernel::Polynomial { degree } => {
            let m = scores.iter().fold(0.0f64, |m, s| m.max(s.abs()));
            let w = scores
                .iter()
                .map(|s| {
                    if m > 0.0 {
                        (s / m).powf(degree as f64)
                    } else {
                        0.0
                    }
                })
                .collect();
            (w, degree as f64 * m.ln())
        }
        Kernel::Softmax => {
            let m = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
            (scores.iter().map(|s| (s - m).exp()).collect(), m)
        }
    };
    let mut numerator = vec![0.0; d_v];
    for (w, value) in weights.iter().zip(values) {
        for (acc, x) in numerator.iter_mut().zip(value) {
            *acc += w * x;
        }
    }
    let sum: f64 = weights.iter().sum();
    let abs_sum: f64 = weights.iter().map(|w| w.abs()).sum();
    let divide_by = |den: f64, magnitude: f64| -> Result<Vec<f64>> {
        crate::normalize::check_normalizer::<T>(den, magnitude, at)?;
        Ok(numerator.iter().map(|x| x / den).collect())
    };
    match cfg.normalization {
        Normalization::Sum => divide_by(sum, abs_sum),
        Normalization::OnePlusSum(c) => {
            let bias = if c == 0.0 {
                0.0
            } else {
                c * (-log_factor).exp()
            };
            if bias.is_infinite() {
                Ok(vec![0.0; d_v])
            } else {
                divide_by(sum + bias, abs_sum + bias)
            }
        }
        Normalization::None => {
            let factor = log_factor.exp();
            let row: Vec<f64> = numerator.iter().map(|x| x * factor).collect();
            if row.iter().all(|x| x.is_finite()) && T::from_f64(factor).to_f64().is_finite() {
                Ok(row)
            } else {
                Err(Error::Overflow {
                    at,
                    what: "the un-normalized (None) output",
                })
            }
        }
    }
}
