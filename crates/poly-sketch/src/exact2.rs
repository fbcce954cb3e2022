//! Exact degree-2 features: `φ(x) = x ⊗ x`, packed to `d(d+1)/2` coordinates (MATH.md §3.6).

use crate::feature_map::FeatureMap;
use poly_core::Element;

/// `φ(x)` holds `x_i²` and `√2·x_i·x_j` for `i < j`, so `⟨φ(x), φ(y)⟩ = (x·y)²` exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactDegree2 {
    d: usize,
}

impl ExactDegree2 {
    pub fn new(d: usize) -> Self {
        ExactDegree2 { d }
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
        let sqrt2 = T::from_f64(std::f64::consts::SQRT_2);
        let m = FeatureMap::<T>::feature_dim(self);
        for (row, features) in x.chunks_exact(self.d).zip(out.chunks_exact_mut(m)) {
            let mut slot = features.iter_mut();
            for i in 0..self.d {
                *slot.next().expect("m slots") = row[i] * row[i];
                for j in i + 1..self.d {
                    *slot.next().expect("m slots") = sqrt2 * row[i] * row[j];
                }
            }
        }
    }
}
