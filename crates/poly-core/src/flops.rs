//! FLOP model of exact attention (docs/math.md §2.2): the two GEMMs, `2·(d + d_v)` per visible
//! (query, key) pair. The power/exp work is not counted, so "% of the GEMM rate" is honest.

use crate::config::Mask;
use crate::validate::Dims;

/// Number of (query, key) pairs visible under `mask`, per head.
pub fn visible_pairs(dims: &Dims, mask: Mask) -> u64 {
    visible_pairs_in_window(dims, mask, None)
}

/// Number of (query, key) pairs visible under `mask` and a sliding `window`, per head: about
/// `n·w` for a window of `w`, the work the engine does.
pub fn visible_pairs_in_window(dims: &Dims, mask: Mask, window: Option<usize>) -> u64 {
    (0..dims.n_q)
        .map(|i| dims.key_range(mask, window, i).len() as u64)
        .sum()
}

/// FLOPs of exact attention over all batch × heads.
pub fn exact_attention_flops(dims: &Dims, mask: Mask) -> f64 {
    exact_attention_flops_in_window(dims, mask, None)
}

/// FLOPs of exact attention with a sliding `window`, over all batch × heads.
pub fn exact_attention_flops_in_window(dims: &Dims, mask: Mask, window: Option<usize>) -> f64 {
    dims.batch_heads() as f64
        * visible_pairs_in_window(dims, mask, window) as f64
        * 2.0
        * (dims.d + dims.d_v) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_counts_the_lower_triangle() {
        let dims = Dims::new(2, 4, 4096, 4096, 64, 64);
        let full = exact_attention_flops(&dims, Mask::None);
        assert_eq!(full, 8.0 * 4.0 * 4096.0 * 4096.0 * 64.0);
        let causal = exact_attention_flops(&dims, Mask::Causal);
        assert_eq!(causal, full * (4097.0 / 2.0) / 4096.0);
        let cross = Dims {
            n_q: 3,
            n_k: 5,
            ..dims
        };
        assert_eq!(visible_pairs(&cross, Mask::Causal), 3 + 4 + 5);
    }
}
