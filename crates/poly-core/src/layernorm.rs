//! Row-wise LayerNorm without affine parameters (PolySketchFormer normalizes q and k this way).

use crate::config::LAYERNORM_EPS;
use crate::element::Element;

/// Normalizes every row of length `dim` to mean 0 and variance 1 (biased variance, eps 1e-5),
/// accumulating in f64 so that f32 rows with large means lose no precision.
pub fn layernorm_rows<T: Element>(data: &[T], dim: usize) -> Vec<T> {
    let mut out = data.to_vec();
    layernorm_in_place(&mut out, dim);
    out
}

/// [`layernorm_rows`] without the copy, for engines that normalize one block at a time.
pub fn layernorm_in_place<T: Element>(data: &mut [T], dim: usize) {
    for row in data.chunks_exact_mut(dim) {
        let mean = row.iter().map(|x| x.to_f64()).sum::<f64>() / dim as f64;
        let var = row.iter().map(|x| (x.to_f64() - mean).powi(2)).sum::<f64>() / dim as f64;
        let inv_std = 1.0 / (var + LAYERNORM_EPS).sqrt();
        for x in row.iter_mut() {
            *x = T::from_f64((x.to_f64() - mean) * inv_std);
        }
    }
}
