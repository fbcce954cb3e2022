//! Seeded synthetic tensors for examples, benchmarks and tests: uniform, Gaussian, LayerNormed,
//! with a planted large feature, and correlated query/key pairs. The same seed gives the same
//! tensor on every machine and thread count.

use crate::error::{DataError, Result};
use poly_core::{Element, Shape, Tensor, layernorm_rows};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;

/// The element count of `shape`, within the memory budget.
fn checked_len<T>(shape: Shape) -> Result<usize> {
    poly_core::check_elements("synthetic tensor", &shape, size_of::<T>()).map_err(|e| {
        DataError::InvalidParameter {
            name: "shape",
            value: format!("{shape:?} ({e})"),
            expected: "a tensor within the memory budget",
        }
    })
}

fn invalid(name: &'static str, value: String, expected: &'static str) -> DataError {
    DataError::InvalidParameter {
        name,
        value,
        expected,
    }
}

/// A `[batch, heads, seq, dim]` tensor of i.i.d. uniform values in `[low, high)`.
///
/// The same seed gives the same tensor on every machine and thread count.
///
/// # Errors
/// [`DataError::InvalidParameter`] unless `low < high` are finite, or for a shape beyond the
/// memory budget.
pub fn uniform<T: Element>(shape: Shape, low: f64, high: f64, seed: u64) -> Result<Tensor<T>> {
    if !(low.is_finite() && high.is_finite() && low < high) {
        return Err(invalid(
            "uniform range",
            format!("[{low}, {high})"),
            "finite bounds with low < high",
        ));
    }
    let len = checked_len::<T>(shape)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..len)
        .map(|_| T::from_f64(rng.random_range(low..high)))
        .collect();
    Ok(Tensor::from_vec(shape, data).expect("length is the product of the shape"))
}

/// i.i.d. `N(0, std²)` entries.
///
/// # Errors
/// [`DataError::InvalidParameter`] unless `std` is finite and ≥ 0, or for a shape beyond the
/// memory budget.
pub fn gaussian<T: Element>(shape: Shape, std: f64, seed: u64) -> Result<Tensor<T>> {
    if !(std.is_finite() && std >= 0.0) {
        return Err(invalid(
            "std",
            std.to_string(),
            "a finite standard deviation ≥ 0",
        ));
    }
    let len = checked_len::<T>(shape)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..len)
        .map(|_| T::from_f64(std * rng.sample::<f64, _>(StandardNormal)))
        .collect();
    Ok(Tensor::from_vec(shape, data).expect("length is the product of the shape"))
}

/// Gaussian rows LayerNormed over the last axis (mean 0, variance 1): PolySketchFormer's q and k.
///
/// # Errors
/// [`DataError::InvalidParameter`] for an empty last axis or a shape beyond the memory budget.
pub fn layernormed_gaussian<T: Element>(shape: Shape, seed: u64) -> Result<Tensor<T>> {
    let raw = gaussian::<T>(shape, 1.0, seed)?;
    let rows = layernorm_rows(raw.as_slice(), shape[3])
        .map_err(|e| invalid("shape", format!("{shape:?} ({e})"), "a non-empty last axis"))?;
    Ok(Tensor::from_vec(shape, rows).expect("same length"))
}

/// A tensor with one planted entry per (batch, head), and the `(token, feature)` of each.
pub type Planted<T> = (Tensor<T>, Vec<(usize, usize)>);

/// Unit Gaussian entries plus, in every (batch, head), one entry set to `value` at a random
/// `(token, feature)`; the positions are returned in (batch, head) order.
///
/// # Errors
/// [`DataError::InvalidParameter`] for an empty axis (there is nowhere to plant), a non-finite
/// `value`, or a shape beyond the memory budget.
pub fn planted_feature<T: Element>(shape: Shape, value: f64, seed: u64) -> Result<Planted<T>> {
    let [batch, heads, seq, dim] = shape;
    if shape.contains(&0) {
        return Err(invalid(
            "shape",
            format!("{shape:?}"),
            "no empty axis: one entry is planted per head",
        ));
    }
    if !value.is_finite() {
        return Err(invalid(
            "planted value",
            value.to_string(),
            "a finite value",
        ));
    }
    let mut data = gaussian::<T>(shape, 1.0, seed)?.into_vec();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_F00D);
    let positions: Vec<(usize, usize)> = (0..batch * heads)
        .map(|bh| {
            let (token, feature) = (rng.random_range(0..seq), rng.random_range(0..dim));
            data[(bh * seq + token) * dim + feature] = T::from_f64(value);
            (token, feature)
        })
        .collect();
    Ok((
        Tensor::from_vec(shape, data).expect("same length"),
        positions,
    ))
}

/// Queries and keys whose matching entries have correlation `correlation` ∈ [−1, 1]:
/// `k = c·q + √(1 − c²)·z` with `q`, `z` i.i.d. standard normal (`correlation` is clamped to
/// [−1, 1]).
///
/// # Errors
/// [`DataError::InvalidParameter`] for a NaN correlation or a shape beyond the memory budget.
pub fn correlated_qk<T: Element>(
    shape: Shape,
    correlation: f64,
    seed: u64,
) -> Result<(Tensor<T>, Tensor<T>)> {
    if correlation.is_nan() {
        return Err(invalid("correlation", "NaN".into(), "a number in [−1, 1]"));
    }
    let c = correlation.clamp(-1.0, 1.0);
    let q = gaussian::<f64>(shape, 1.0, seed)?;
    let z = gaussian::<f64>(shape, 1.0, seed ^ 0xC0FF_EE00)?;
    let noise = (1.0 - c * c).sqrt();
    let k: Vec<T> = q
        .as_slice()
        .iter()
        .zip(z.as_slice())
        .map(|(q, z)| T::from_f64(c * q + noise * z))
        .collect();
    Ok((
        q.map(|&x| T::from_f64(x)),
        Tensor::from_vec(shape, k).expect("same length"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_out_of_their_domain_are_errors() {
        assert!(uniform::<f32>([1, 1, 2, 2], 1.0, -1.0, 0).is_err());
        assert!(uniform::<f32>([1, 1, 2, 2], 0.0, f64::INFINITY, 0).is_err());
        assert!(gaussian::<f64>([1, 1, 2, 2], f64::NAN, 0).is_err());
        assert!(gaussian::<f64>([1, 1, 2, 2], -1.0, 0).is_err());
        assert!(planted_feature::<f64>([1, 1, 0, 4], 5.0, 0).is_err());
        assert!(planted_feature::<f64>([1, 1, 3, 4], f64::NAN, 0).is_err());
        assert!(correlated_qk::<f64>([1, 1, 2, 2], f64::NAN, 0).is_err());
        assert!(uniform::<f32>([1 << 20, 1 << 20, 1 << 20, 2], -1.0, 1.0, 0).is_err());
        assert!(layernormed_gaussian::<f32>([1, 1, 2, 0], 0).is_err());
    }

    #[test]
    fn seeded_and_in_range() {
        let a = uniform::<f32>([1, 2, 30, 4], -1.0, 1.0, 7).unwrap();
        let b = uniform::<f32>([1, 2, 30, 4], -1.0, 1.0, 7).unwrap();
        let c = uniform::<f32>([1, 2, 30, 4], -1.0, 1.0, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.as_slice().iter().all(|&x| (-1.0..1.0).contains(&x)));
        let mean = a.as_slice().iter().map(|&x| x as f64).sum::<f64>() / 240.0;
        // Standard error of the mean of 240 U(−1, 1) draws is 0.037: allow 4 of them.
        assert!(mean.abs() < 0.15, "mean {mean}");
    }

    fn mean_var(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        (mean, x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n)
    }

    #[test]
    fn gaussian_moments_are_within_four_standard_errors() {
        let x = gaussian::<f64>([2, 2, 500, 10], 3.0, 1).unwrap();
        let (mean, var) = mean_var(x.as_slice());
        let n = 20_000f64;
        // SE of the mean: σ/√n; SE of the variance: σ²·√(2/n).
        assert!(mean.abs() < 4.0 * 3.0 / n.sqrt(), "mean {mean}");
        assert!(
            (var - 9.0).abs() < 4.0 * 9.0 * (2.0 / n).sqrt(),
            "variance {var}"
        );
    }

    #[test]
    fn layernormed_rows_have_mean_zero_and_unit_variance() {
        let x = layernormed_gaussian::<f32>([1, 3, 40, 16], 2).unwrap();
        for row in x.as_slice().chunks_exact(16) {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let (mean, var) = mean_var(&row);
            assert!(
                mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4,
                "{mean} {var}"
            );
        }
    }

    #[test]
    fn planted_values_sit_at_the_reported_positions() {
        let (x, positions) = planted_feature::<f64>([2, 3, 50, 8], 40.0, 3).unwrap();
        assert_eq!(positions.len(), 6);
        for (bh, &(token, feature)) in positions.iter().enumerate() {
            assert_eq!(x.as_slice()[(bh * 50 + token) * 8 + feature], 40.0);
        }
        assert_eq!(x.as_slice().iter().filter(|&&v| v == 40.0).count(), 6);
    }

    #[test]
    fn correlation_is_as_requested() {
        for c in [-0.5, 0.0, 0.9] {
            let (q, k) = correlated_qk::<f64>([1, 1, 2000, 10], c, 4).unwrap();
            let n = 20_000f64;
            let r = q
                .as_slice()
                .iter()
                .zip(k.as_slice())
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / n;
            // SE of the sample correlation ≈ (1 − c²)/√n, and at most 1/√n.
            assert!((r - c).abs() < 4.0 / n.sqrt(), "c = {c}: measured {r}");
        }
    }
}
