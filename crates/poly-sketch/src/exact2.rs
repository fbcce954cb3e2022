//! Exact degree-2 features: `φ(x) = x ⊗ x`, packed to `d(d+1)/2` coordinates (docs/math.md §3.6).

use crate::feature_map::FeatureMap;
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
        pack_symmetric_square(x, self.d, out);
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

/// `pack(x ⊗ x)` of each row of length `dim`: `x_i²` and `√2·x_i·x_j` for `j > i`, row `i`'s run
/// contiguous so that each is one vectorizable scaled copy.
pub(crate) fn pack_symmetric_square<T: Element>(x: &[T], dim: usize, out: &mut [T]) {
    let sqrt2 = T::from_f64(std::f64::consts::SQRT_2);
    let m = dim * (dim + 1) / 2;
    for (row, features) in x.chunks_exact(dim).zip(out.chunks_exact_mut(m)) {
        let mut at = 0;
        for (i, &xi) in row.iter().enumerate() {
            features[at] = xi * xi;
            let scaled = sqrt2 * xi;
            let run = &mut features[at + 1..at + dim - i];
            for (o, &xj) in run.iter_mut().zip(&row[i + 1..]) {
                *o = scaled * xj;
            }
            at += dim - i;
        }
    }
}

/// [`pack_symmetric_square`] of `rows` rows of `m` (row-major, `rows × dim`), written transposed:
/// `out` is `dim(dim+1)/2 × rows`, feature-major in the same feature order. Each output row is
/// then one contiguous product of two columns of `m` (transposed into `columns` first), which
/// vectorizes, and the engines' GEMMs read the transpose at no cost.
/// The backward of [`pack_symmetric_square`]: `grad_x += Jᵀ grad` for features `x_i²` and
/// `√2 x_i x_j` (`i < j`).
pub(crate) fn pack_symmetric_square_backward<T: Element>(
    x: &[T],
    dim: usize,
    grad: &[T],
    grad_x: &mut [T],
) {
    let sqrt2 = T::from_f64(std::f64::consts::SQRT_2);
    let two = T::from_f64(2.0);
    let m = dim * (dim + 1) / 2;
    for ((row, g), dx) in x
        .chunks_exact(dim)
        .zip(grad.chunks_exact(m))
        .zip(grad_x.chunks_exact_mut(dim))
    {
        let mut at = 0;
        for i in 0..dim {
            dx[i] += two * row[i] * g[at];
            for j in i + 1..dim {
                let gij = sqrt2 * g[at + j - i];
                dx[i] += gij * row[j];
                dx[j] += gij * row[i];
            }
            at += dim - i;
        }
    }
}

pub(crate) fn pack_symmetric_square_transposed<T: Element>(
    m: &[T],
    rows: usize,
    dim: usize,
    columns: &mut [T],
    out: &mut [T],
) {
    let columns = &mut columns[..dim * rows];
    for (r, row) in m[..rows * dim].chunks_exact(dim).enumerate() {
        for (i, &x) in row.iter().enumerate() {
            columns[i * rows + r] = x;
        }
    }
    let sqrt2 = T::from_f64(std::f64::consts::SQRT_2);
    let mut features = out.chunks_exact_mut(rows);
    for i in 0..dim {
        let ci = &columns[i * rows..(i + 1) * rows];
        for j in i..dim {
            let cj = &columns[j * rows..(j + 1) * rows];
            let scale = if i == j { T::ONE } else { sqrt2 };
            let f = features.next().expect("dim(dim+1)/2 feature rows");
            for ((o, &a), &b) in f.iter_mut().zip(ci).zip(cj) {
                *o = scale * a * b;
            }
        }
    }
}
