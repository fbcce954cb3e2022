//! Exact degree-2 features: `φ(x) = x ⊗ x`, packed to `d(d+1)/2` coordinates (docs/math.md §3.6).

use crate::feature_map::FeatureMap;
use poly_core::primitives::{pack_symmetric_square, pack_symmetric_square_backward};
use poly_core::{Element, Error, Result, checked_product};

/// `φ(x)` holds `x_i²` and `√2·x_i·x_j` for `i < j`, so `⟨φ(x), φ(y)⟩ = (x·y)²` exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactDegree2 {
    d: usize,
}

impl ExactDegree2 {
    /// The map for inputs of dimension `d`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for `d = 0`; [`Error::ResourceLimit`] when `d(d+1)/2`
    /// overflows.
    pub fn new(d: usize) -> Result<Self> {
        if d == 0 {
            return Err(Error::InvalidParameter {
                name: "input dimension",
                value: "0".into(),
                expected: "d ≥ 1",
            });
        }
        checked_product("exact degree-2 features", &[d, d.saturating_add(1)])?;
        Ok(ExactDegree2 { d })
    }
}

impl<T: Element> FeatureMap<T> for ExactDegree2 {
    fn input_dim(&self) -> usize {
        self.d
    }
    fn feature_dim(&self) -> usize {
        self.d * (self.d + 1) / 2
    }
    fn map_into(&self, x: &[T], out: &mut [T]) {
        pack_symmetric_square(x, self.d, out, None);
    }
    /// `(q·k)²`.
    fn nonnegative_weights(&self) -> bool {
        true
    }
    fn polynomial_degree(&self) -> Option<u32> {
        Some(2)
    }
    fn backward_into(&self, x: &[T], _features: &[T], grad: &[T], grad_x: &mut [T]) -> bool {
        pack_symmetric_square_backward(x, self.d, grad, grad_x);
        true
    }
    fn flops_per_row(&self) -> f64 {
        (self.d * (self.d + 1) / 2) as f64
    }
}
