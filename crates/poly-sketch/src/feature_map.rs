//! The feature-map abstraction shared by every sketch.

use poly_core::kernels::first_non_finite;
use poly_core::{Element, Error, Result};

/// A map `φ: R^d → R^m` applied row by row, the same (same random draw) for queries and keys.
pub trait FeatureMap<T: Element>: Send + Sync {
    /// `d`: the length of an input row.
    fn input_dim(&self) -> usize;
    /// `m`: the length of a feature row.
    fn feature_dim(&self) -> usize;
    /// Writes `φ` of the `x.len() / d` rows of `x` (row-major) into `out` (`rows × m`, row-major).
    /// Callers guarantee the lengths; [`FeatureMap::map_rows`] checks them.
    fn map_into(&self, x: &[T], out: &mut [T]);

    /// `φ` of the rows of `x`, as a new `rows × m` buffer.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `x.len()` is not a multiple of the input dimension, or if
    /// `x` holds a NaN or infinity (which would otherwise spread silently through the features).
    fn map_rows(&self, x: &[T]) -> Result<Vec<T>> {
        let d = self.input_dim();
        if !x.len().is_multiple_of(d) {
            return Err(Error::InvalidParameter {
                name: "feature-map input",
                value: format!("{} values", x.len()),
                expected: "a whole number of rows of the map's input dimension",
            });
        }
        check_finite(x, d, "feature-map input")?;
        let mut out = vec![T::ZERO; x.len() / d * self.feature_dim()];
        self.map_into(x, &mut out);
        Ok(out)
    }
}

/// An error naming the first non-finite value of row-major `data` (rows of length `dim`).
pub(crate) fn check_finite<T: Element>(data: &[T], dim: usize, name: &'static str) -> Result<()> {
    match first_non_finite(data) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidParameter {
            name,
            value: format!(
                "{} at row {}, column {}",
                data[i].to_f64(),
                i / dim,
                i % dim
            ),
            expected: "finite values",
        }),
    }
}
