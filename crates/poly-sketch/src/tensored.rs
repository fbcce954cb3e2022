//! The non-negative self-tensored PolySketch of even degree p (docs/math.md §3.2):
//! `M = sketch(x, p/2) ∈ R^r` and `φ(x) = M ⊗ M`, so `⟨φ(q), φ(k)⟩ = ⟨M_q, M_k⟩² ≥ 0`.
//! The `r²` tensor is symmetric and packs into `r(r+1)/2` coordinates (off-diagonal × √2).

use crate::exact2::ExactDegree2;
use crate::feature_map::FeatureMap;
use crate::polysketch::{PolySketch, SketchScale};
use poly_core::{Element, Error, Result};

/// `φ(x) = pack(M ⊗ M)` with `M` a PolySketch of degree `p/2`.
#[derive(Clone, Debug)]
pub struct SelfTensoredSketch<T> {
    inner: PolySketch<T>,
    pack: ExactDegree2,
}

impl<T: Element> SelfTensoredSketch<T> {
    /// # Errors
    /// An odd or zero degree, or the errors of [`PolySketch::new`].
    pub fn new(d: usize, degree: u32, r: usize, seed: u64, scale: SketchScale) -> Result<Self> {
        if degree == 0 || degree % 2 == 1 {
            return Err(Error::InvalidParameter {
                name: "degree",
                value: degree.to_string(),
                expected: "an even degree ≥ 2 for the self-tensored sketch",
            });
        }
        let inner = PolySketch::new(d, degree / 2, r, seed, scale)?;
        let pack = ExactDegree2::new(FeatureMap::<T>::feature_dim(&inner))?;
        Ok(SelfTensoredSketch { inner, pack })
    }

    /// The inner sketch `M` (width `r`).
    pub fn inner(&self) -> &PolySketch<T> {
        &self.inner
    }
}

impl<T: Element> FeatureMap<T> for SelfTensoredSketch<T> {
    fn input_dim(&self) -> usize {
        self.inner.input_dim()
    }
    fn feature_dim(&self) -> usize {
        FeatureMap::<T>::feature_dim(&self.pack)
    }
    fn map_into(&self, x: &[T], out: &mut [T]) {
        let rows = x.len() / self.inner.input_dim();
        let mut m = vec![T::ZERO; rows * self.inner.feature_dim()];
        self.inner.map_into(x, &mut m);
        self.pack.map_into(&m, out);
    }
    fn polynomial_degree(&self) -> Option<u32> {
        Some(2 * self.inner.degree())
    }
    /// The inner sketch's cost only, as docs/math.md §4.2 counts it (the engine never forms the full
    /// features inside a block).
    fn flops_per_row(&self) -> f64 {
        self.inner.flops_per_row()
    }
    fn backward_into(&self, x: &[T], _features: &[T], grad: &[T], grad_x: &mut [T]) -> bool {
        // φ = pack(M x): through the packing to M x, then through M.
        let r = self.inner.feature_dim();
        let rows = x.len() / self.inner.input_dim();
        let mut inner = vec![T::ZERO; rows * r];
        self.inner.map_into(x, &mut inner);
        let mut grad_inner = vec![T::ZERO; rows * r];
        poly_core::primitives::pack_symmetric_square_backward(&inner, r, grad, &mut grad_inner);
        self.inner.backward_into(x, &inner, &grad_inner, grad_x)
    }
    fn tensored_inner(&self) -> Option<&dyn FeatureMap<T>> {
        Some(&self.inner)
    }
    /// `⟨M q, M k⟩²`.
    fn nonnegative_weights(&self) -> bool {
        true
    }
}
