//! The last step of the streaming engine: turning one row's scale-free accumulators into its output,
//! and deciding when a row's normalizer is too ill-conditioned to trust.

use crate::config::{Kernel, Normalization};
use crate::element::Element;
use crate::error::{Error, Result, RowPosition};

/// What the streaming pass leaves for one row. The true weights are `w = F · w'` with
/// `F = max^degree` (polynomial, `max` = largest visible |score|) or `F = e^max` (softmax).
#[derive(Clone, Copy, Debug)]
pub struct RowTotals {
    pub max: f64,
    /// `Σ w'`.
    pub sum: f64,
    /// `Σ |w'|`.
    pub abs_sum: f64,
}

/// `F` or `1/F` of [`RowTotals`], in f64 (it may be ±∞ or 0 — both limits are handled).
fn weight_factor(kernel: Kernel, max: f64, inverse: bool) -> f64 {
    match kernel {
        Kernel::Polynomial { degree } => {
            let base = if inverse { 1.0 / max } else { max };
            base.powf(degree as f64)
        }
        Kernel::Softmax => (if inverse { -max } else { max }).exp(),
    }
}

/// The number each accumulated `Σ w' v` of a row is multiplied by.
///
/// # Errors
/// Overflowed scores, a zero `Sum` normalizer, an ill-conditioned one (`|den| ≤ tol · Σ|w|`), or a
/// `None` factor that does not fit f64.
pub fn row_multiplier<T: Element>(
    totals: RowTotals,
    kernel: Kernel,
    normalization: Normalization,
    at: RowPosition,
) -> Result<f64> {
    let max_ok = match kernel {
        Kernel::Polynomial { .. } => totals.max.is_finite(),
        // −∞ means no visible key, which OnePlusSum and None define as output 0.
        Kernel::Softmax => totals.max < f64::INFINITY,
    };
    if !(max_ok && totals.sum.is_finite() && totals.abs_sum.is_finite()) {
        return Err(Error::Overflow {
            at,
            what: "a score q·k",
        });
    }
    let bias = match normalization {
        Normalization::None => {
            let factor = weight_factor(kernel, totals.max, false);
            if !factor.is_finite() {
                return Err(Error::Overflow {
                    at,
                    what: "the un-normalized (None) output",
                });
            }
            return Ok(factor);
        }
        Normalization::Sum => 0.0,
        Normalization::OnePlusSum(0.0) => 0.0,
        Normalization::OnePlusSum(c) => c * weight_factor(kernel, totals.max, true),
    };
    if bias.is_infinite() {
        // The weights are negligible next to the bias: the output is 0 to within f64.
        return Ok(0.0);
    }
    let den = totals.sum + bias;
    check_normalizer::<T>(den, totals.abs_sum + bias, at)?;
    Ok(1.0 / den)
}

/// The rule every engine judges a normalizer by (docs/math.md §2.1, §4.5): `den` is the computed
/// sum of terms (plus the OnePlusSum bias), `magnitude` the sum of their absolute values (plus
/// the bias). A zero magnitude means every term is zero; `|den| ≤ tol · magnitude` means the
/// terms cancelled so far that rounding dominates what is left.
///
/// # Errors
/// [`Error::AllScoresZero`] or [`Error::IllConditionedNormalizer`] for the row `at`.
pub fn check_normalizer<T: Element>(den: f64, magnitude: f64, at: RowPosition) -> Result<()> {
    if magnitude == 0.0 {
        return Err(Error::AllScoresZero { at });
    }
    let tolerance = T::NORMALIZER_TOLERANCE;
    // Callers pass finite values, so a plain comparison is exact.
    if den.abs() <= tolerance * magnitude {
        return Err(Error::IllConditionedNormalizer {
            at,
            ratio: den.abs() / magnitude,
            tolerance,
        });
    }
    Ok(())
}

/// Multiplies the accumulated row by its multiplier, checks that the result is finite, and
/// returns the multiplier (the backward pass turns scale-free weights into `P` with it).
///
/// # Errors
/// As [`row_multiplier`], plus [`Error::Overflow`] if an output value is not finite.
pub fn finalize_row<T: Element>(
    acc: &mut [T],
    totals: RowTotals,
    kernel: Kernel,
    normalization: Normalization,
    at: RowPosition,
) -> Result<f64> {
    let multiplier = row_multiplier::<T>(totals, kernel, normalization, at)?;
    for x in acc.iter_mut() {
        let y = x.to_f64() * multiplier;
        *x = T::from_f64(y);
        if !x.to_f64().is_finite() {
            return Err(Error::Overflow {
                at,
                what: "the output",
            });
        }
    }
    Ok(multiplier)
}
