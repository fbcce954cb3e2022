//! Row-wise LayerNorm without affine parameters (PolySketchFormer normalizes q and k this way).
//!
//! Overflow-safe: a row whose variance overflows is normalized as `y = x / s` (`s` its largest
//! magnitude), with `(x − mean) / √(var + ε) = (y − mean_y) / √(var_y + ε/s²)`, so rows near the
//! top of the f64 range (|x| ≈ 1e300) normalize like any other instead of turning into zeros
//! through an infinite variance. Other rows take the plain formula at its plain cost.

use crate::config::LAYERNORM_EPS;
use crate::element::Element;
use crate::error::{Error, Result};

/// Normalizes every row of length `dim` to mean 0 and variance 1 (biased variance, eps 1e-5),
/// accumulating in f64 so that f32 rows with large means lose no precision.
///
/// # Errors
/// [`Error::InvalidParameter`] when `dim` is 0 or does not divide `data.len()`.
pub fn layernorm_rows<T: Element>(data: &[T], dim: usize) -> Result<Vec<T>> {
    let mut out = data.to_vec();
    layernorm_in_place(&mut out, dim)?;
    Ok(out)
}

/// [`layernorm_rows`] without the copy, for engines that normalize one block at a time.
///
/// # Errors
/// [`Error::InvalidParameter`] when `dim` is 0 or does not divide `data.len()`.
pub fn layernorm_in_place<T: Element>(data: &mut [T], dim: usize) -> Result<()> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(Error::InvalidParameter {
            name: "layernorm row length",
            value: format!("{dim} for {} elements", data.len()),
            expected: "a length ≥ 1 that divides the data",
        });
    }
    for row in data.chunks_exact_mut(dim) {
        let m = RowMoments::of(row);
        standardize(row, m.scale, m.mean, m.denominator());
    }
    Ok(())
}

/// The statistics LayerNorm divides a row by, shared by the forward and the backward so both use
/// the same σ.
struct RowMoments {
    /// 1, or `1 / max|x|` for a row whose squares overflow f64.
    scale: f64,
    /// Mean and variance of `x · scale`.
    mean: f64,
    var: f64,
}

impl RowMoments {
    fn of<T: Element>(row: &[T]) -> Self {
        let moments = |scale: f64| {
            let mean = sum_f64(row, |x| x * scale) / row.len() as f64;
            let var = sum_f64(row, |x| (x * scale - mean).powi(2)) / row.len() as f64;
            (mean, var)
        };
        let (mean, var) = moments(1.0);
        if var.is_finite() {
            return RowMoments {
                scale: 1.0,
                mean,
                var,
            };
        }
        // Squares (or the sum) overflowed: divide by the largest magnitude first. Costs nothing
        // for the rows that do not need it.
        let scale = 1.0 / row.iter().fold(0.0f64, |m, x| m.max(x.to_f64().abs()));
        let (mean, var) = moments(scale);
        RowMoments { scale, mean, var }
    }

    /// `var + ε` in the scaled units (ε shrinks with the scale squared).
    fn denominator(&self) -> f64 {
        self.var + LAYERNORM_EPS * self.scale * self.scale
    }
}

/// `Σ f(x)` over a row in f64, in eight interleaved partial sums: one running sum is a chain of
/// dependent additions (4 cycles each), which made LayerNorm about a tenth of sketched attention's
/// time; eight chains fill two vector registers and run in parallel (512 rows of 64: 79 → 42 µs).
#[inline(always)]
fn sum_f64<T: Element>(row: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += f(x.to_f64());
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|x| f(x.to_f64())).sum();
    lanes.iter().sum::<f64>() + tail
}

/// `x ← (x·scale − mean) / √denominator` over one row (`scale = 1` is exact: no rounding).
#[inline(always)]
fn standardize<T: Element>(row: &mut [T], scale: f64, mean: f64, denominator: f64) {
    let inv_std = 1.0 / denominator.sqrt();
    for x in row.iter_mut() {
        *x = T::from_f64((x.to_f64() * scale - mean) * inv_std);
    }
}

/// Turns gradients with respect to LayerNormed rows `y = LN(x)` into gradients with respect to
/// `x`, in place: `dx = (dy − mean(dy) − y · mean(dy ⊙ y)) / σ`, `σ = √(var(x) + ε)` as the
/// forward computed it ([`RowMoments`]).
pub fn layernorm_backward<T: Element>(x: &[T], y: &[T], grad: &mut [T], d: usize) {
    for ((x, y), g) in x
        .chunks_exact(d)
        .zip(y.chunks_exact(d))
        .zip(grad.chunks_exact_mut(d))
    {
        // σ of the unscaled row is σ_scaled / scale.
        let m = RowMoments::of(x);
        let sigma = m.denominator().sqrt() / m.scale;
        let mean_g = g.iter().map(|v| v.to_f64()).sum::<f64>() / d as f64;
        let mean_gy = g
            .iter()
            .zip(y)
            .map(|(a, b)| a.to_f64() * b.to_f64())
            .sum::<f64>()
            / d as f64;
        for (g, y) in g.iter_mut().zip(y) {
            *g = T::from_f64((g.to_f64() - mean_g - y.to_f64() * mean_gy) / sigma);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_rows_normalize_like_their_scaled_copies() {
        let base = [1.0f64, -2.0, 3.5, 0.25];
        // At these scales ε is negligible: the result is (x − mean)/std of the base row.
        let mean = base.iter().sum::<f64>() / 4.0;
        let std = (base.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        let want: Vec<f64> = base.iter().map(|x| (x - mean) / std).collect();
        for s in [1e150, 1e200, 1e300] {
            let row: Vec<f64> = base.iter().map(|x| x * s).collect();
            let got = layernorm_rows(&row, 4).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    g.is_finite() && (g - w).abs() < 1e-9,
                    "scale {s}: {g} vs {w}"
                );
            }
        }
        let row32: Vec<f32> = base.iter().map(|x| (x * 1e37) as f32).collect();
        let got32 = layernorm_rows(&row32, 4).unwrap();
        for (g, w) in got32.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn small_rows_keep_the_epsilon() {
        // Variance 1e-12 ≪ ε: the output is (x − mean)/√ε, not a unit-variance row.
        let row = [1e-6f64, -1e-6];
        let got = layernorm_rows(&row, 2).unwrap();
        let want = 1e-6 / (1e-12 + LAYERNORM_EPS).sqrt();
        assert!((got[0] - want).abs() < 1e-15 && (got[1] + want).abs() < 1e-15);
    }

    #[test]
    fn a_row_length_that_does_not_fit_is_an_error() {
        assert!(matches!(
            layernorm_rows(&[1.0f32, 2.0], 0),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(layernorm_rows(&[1.0f32, 2.0, 3.0], 2).is_err());
        assert_eq!(layernorm_rows::<f32>(&[], 3).unwrap(), Vec::<f32>::new());
    }
}
