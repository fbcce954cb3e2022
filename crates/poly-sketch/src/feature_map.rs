//! The feature-map abstraction shared by every sketch.

use poly_core::primitives::first_non_finite;
use poly_core::{Element, Error, Result, check_elements};

/// A map `φ: R^d → R^m` applied row by row, the same (same random draw) for queries and keys.
pub trait FeatureMap<T: Element>: Send + Sync {
    /// `d`: the length of an input row.
    fn input_dim(&self) -> usize;
    /// `m`: the length of a feature row.
    fn feature_dim(&self) -> usize;
    /// Writes `φ` of the `x.len() / d` rows of `x` (row-major) into `out` (`rows × m`, row-major).
    /// Callers guarantee the lengths; [`FeatureMap::map_rows`] checks them.
    fn map_into(&self, x: &[T], out: &mut [T]);

    /// The degree `p` of the polynomial kernel `(x·y)^p` the map estimates; `None` for maps of
    /// other kernels (FAVOR+). The mixed variant's exact local blocks use this degree.
    fn polynomial_degree(&self) -> Option<u32>;

    /// Multiply-adds to map one row: the feature map's share of the FLOP model.
    fn flops_per_row(&self) -> f64;

    /// Features of attention queries as the engines use them. A map may rescale each query row by
    /// a positive factor of its own (which cancels under `Sum` normalization) to keep values in
    /// range; it then reports [`FeatureMap::requires_sum_normalization`]. Default: `map_into`.
    fn map_queries_into(&self, x: &[T], out: &mut [T]) {
        self.map_into(x, out);
    }

    /// Features of attention keys as the engines use them. A map may rescale them by one constant
    /// that depends on the map alone — never on the data, so never on future tokens. Default:
    /// `map_into`.
    fn map_keys_into(&self, x: &[T], out: &mut [T]) {
        self.map_into(x, out);
    }

    /// Whether queries and keys are rescaled (see above) so that only `Sum` normalization gives
    /// the intended attention.
    fn requires_sum_normalization(&self) -> bool {
        false
    }

    /// Whether every weight `⟨φ(q), φ(k)⟩` is ≥ 0 by construction (a square, or positive
    /// features). A sum of such weights cannot cancel, so the engines judge only the normalizers
    /// of maps that answer `false` (signed sketches, odd degrees) for ill-conditioning.
    fn nonnegative_weights(&self) -> bool {
        false
    }

    /// Backpropagation through the map: adds `J_φ(x)ᵀ g` to `grad_x` row by row, given the input
    /// rows `x`, the features the engine computed from them (by `map_queries_into` or
    /// `map_keys_into`: a per-row stabilizing factor counts as a constant, which is exact under
    /// the normalization that cancels it) and `g`, the gradient with respect to those features.
    /// Returns `false` (and adds nothing) for a map without a backward.
    fn backward_into(
        &self,
        x: &[T],
        features: &[T],
        grad_features: &[T],
        grad_x: &mut [T],
    ) -> bool {
        let _ = (x, features, grad_features, grad_x);
        false
    }

    /// For `φ = pack(M ⊗ M)`: the inner map `M`. The engine then scores a block by
    /// `⟨M_q, M_k⟩²` over `r` columns instead of `r(r+1)/2` and packs `M` for the state.
    fn tensored_inner(&self) -> Option<&dyn FeatureMap<T>> {
        None
    }

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
        let m = self.feature_dim();
        check_elements("feature matrix", &[x.len() / d, m], size_of::<T>())?;
        let mut out = vec![T::ZERO; x.len() / d * m];
        self.map_into(x, &mut out);
        // A finite input can still overflow (|x| = 1e20 in f32 at degree 4): refuse it as the
        // engines refuse non-finite scores, naming the row.
        check_finite(
            &out,
            m,
            "feature value (the input is too large for this map: LayerNorm or scale it)",
        )?;
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
