//! The GEMM shapes of the attention engines, as faer views around row-major slices. All are
//! sequential (`Par::Seq`): the engines parallelize across tiles and heads, never inside a GEMM.
//!
//! # Panics
//! Every function panics when a slice is shorter than the `m`, `n`, `k` it is given say (the
//! slices may be longer; only their leading elements are used).

use crate::element::Element;
use faer::{Accum, MatMut, MatRef, Par};

/// `dst (m×n) = alpha · a (m×k) · bᵀ` where `b` is `n×k`: scores of a query tile against a key tile.
pub fn gemm_abt<T: Element>(
    dst: &mut [T],
    a: &[T],
    b: &[T],
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
) {
    faer::linalg::matmul::matmul(
        MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n),
        Accum::Replace,
        MatRef::from_row_major_slice(&a[..m * k], m, k),
        MatRef::from_row_major_slice(&b[..n * k], n, k).transpose(),
        alpha,
        Par::Seq,
    );
}

/// `dst (m×n) += a (m×k) · b (k×n)`: weights of a tile times its values.
pub fn gemm_add_ab<T: Element>(dst: &mut [T], a: &[T], b: &[T], m: usize, n: usize, k: usize) {
    faer::linalg::matmul::matmul(
        MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n),
        Accum::Add,
        MatRef::from_row_major_slice(&a[..m * k], m, k),
        MatRef::from_row_major_slice(&b[..k * n], k, n),
        T::ONE,
        Par::Seq,
    );
}

/// `dst (m×n) += aᵀ · b` where `a` is `k×m` and `b` is `k×n`: e.g. a block's state `φ(K)ᵀ [V | 1]`.
pub fn gemm_add_atb<T: Element>(dst: &mut [T], a: &[T], b: &[T], m: usize, n: usize, k: usize) {
    faer::linalg::matmul::matmul(
        MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n),
        Accum::Add,
        MatRef::from_row_major_slice(&a[..k * m], k, m).transpose(),
        MatRef::from_row_major_slice(&b[..k * n], k, n),
        T::ONE,
        Par::Seq,
    );
}

/// `dst (m×n) = a (m×k) · b (k×n)`. A single row (decoding) skips faer's setup: a row of
/// `a` times `b` is `k` SIMD AXPYs.
pub fn gemm_ab<T: Element>(dst: &mut [T], a: &[T], b: &[T], m: usize, n: usize, k: usize) {
    if m == 1 {
        crate::kernels::weighted_row_sum(&mut dst[..n], &a[..k], &b[..k * n]);
        return;
    }
    faer::linalg::matmul::matmul(
        MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n),
        Accum::Replace,
        MatRef::from_row_major_slice(&a[..m * k], m, k),
        MatRef::from_row_major_slice(&b[..k * n], k, n),
        T::ONE,
        Par::Seq,
    );
}
