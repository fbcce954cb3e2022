//! Symmetric-square packing: the degree-2 tensor `x ⊗ x` of a row of `dim` numbers without its
//! duplicate entries — `x_i²` and `√2·x_i·x_j` for each pair `i ≠ j` once — so that
//! `⟨pack(x), pack(y)⟩ = (x·y)²`. The sketched engine packs every block of queries and keys this
//! way (docs/math.md §3.6), 528 features from 32 numbers per row.
//!
//! **Feature order: by cyclic diagonal.** Block `δ = 0` holds `x_k²` for `k = 0 … dim−1`; block
//! `δ = 1 … ⌊dim/2⌋` holds `√2·x_k·x_{(k+δ) mod dim}` for `k = 0 … dim−1` — except, for even
//! `dim`, the last block `δ = dim/2`, whose second half would repeat its first, so it keeps
//! `k < dim/2` only. Every block is then one element-wise product of the row with a rotation of
//! itself, whole SIMD registers at a time; the row-by-row order `(0,0), (0,1), …` would have
//! `dim` runs of lengths `dim … 1`, and its per-run overhead and masked tails made packing 256
//! rows of 32 take 45.6 µs, longer than the two GEMMs of the inner sketch that produce them (one
//! core of the Zen 3 VM). Only inner products of packed vectors have meaning, so any fixed order
//! serves, as long as queries, keys, states and gradients share it — all of them come from here.
//!
//! Every feature is `(s·x_a)·x_b` with the same `a`, `b` and order of operations in both layouts,
//! so they agree bit for bit.

use crate::element::Element;
use pulp::{Arch, Simd, WithSimd};

/// The cyclic diagonals of the order above: `(δ, number of features in block δ)`.
fn diagonals(dim: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..=dim / 2).map(move |delta| {
        let len = if delta > 0 && 2 * delta == dim {
            dim / 2
        } else {
            dim
        };
        (delta, len)
    })
}

/// The pairs `(a, b)` of every packed feature, in order (`a = b` on the diagonal).
fn packed_pairs(dim: usize) -> impl Iterator<Item = (usize, usize)> {
    diagonals(dim).flat_map(move |(delta, len)| (0..len).map(move |k| (k, (k + delta) % dim)))
}

/// `pack(x ⊗ x)` of each row of `x` (`rows × dim`, row-major) into `out` (`rows × dim(dim+1)/2`).
/// With `projection = Some((z, dots))`, also `dots[r] += ⟨packed row r, z⟩` while the row is in
/// registers: the sketched engine's normalizer read-out `A·z` at no extra pass over `A`.
///
/// # Panics
/// If `x.len()` is not a multiple of `dim`, `out` is not `rows · dim(dim+1)/2` long, or a
/// projection's `z` is not `dim(dim+1)/2` long or its `dots` not `rows`.
pub fn pack_symmetric_square<T: Element>(
    x: &[T],
    dim: usize,
    out: &mut [T],
    projection: Option<(&[T], &mut [T])>,
) {
    let m = dim * (dim + 1) / 2;
    let rows = x.len().checked_div(dim).unwrap_or(0);
    assert!(
        rows * dim == x.len() && out.len() == rows * m,
        "pack_symmetric_square: {} inputs of width {dim} do not fill {} outputs of width {m}",
        x.len(),
        out.len()
    );
    if let Some((z, dots)) = &projection {
        assert!(
            z.len() == m && dots.len() == rows,
            "pack_symmetric_square: a projection needs {m} weights and {rows} dots"
        );
    }
    struct Op<'a, 'p, T> {
        x: &'a [T],
        dim: usize,
        out: &'a mut [T],
        projection: Option<(&'p [T], &'p mut [T])>,
    }
    impl<T: Element> WithSimd for Op<'_, '_, T> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let Op {
                x,
                dim,
                out,
                mut projection,
            } = self;
            let m = dim * (dim + 1) / 2;
            let sqrt2 = T::from_f64(std::f64::consts::SQRT_2);
            // The row twice over, so that every rotation is a plain slice, and √2 times the row.
            let mut twice = vec![T::ZERO; 2 * dim];
            let mut scaled = vec![T::ZERO; dim];
            for (r, (row, features)) in x.chunks_exact(dim).zip(out.chunks_exact_mut(m)).enumerate()
            {
                twice[..dim].copy_from_slice(row);
                twice[dim..].copy_from_slice(row);
                scaled
                    .iter_mut()
                    .zip(row)
                    .for_each(|(s, &x)| *s = sqrt2 * x);
                let mut rest = features;
                let mut at = 0;
                let mut dot = T::ZERO;
                for (delta, len) in diagonals(dim) {
                    let (block, after) = rest.split_at_mut(len);
                    let first = if delta == 0 { row } else { &scaled[..len] };
                    let weights = match &projection {
                        Some((z, _)) => Weights::Of(&z[at..at + len]),
                        None => Weights::Nothing,
                    };
                    dot += product_in(s, block, first, &twice[delta..delta + len], None, weights);
                    rest = after;
                    at += len;
                }
                if let Some((_, dots)) = &mut projection {
                    dots[r] += dot;
                }
            }
        }
    }
    if m > 0 {
        Arch::new().dispatch(Op {
            x,
            dim,
            out,
            projection,
        });
    }
}

/// [`pack_symmetric_square`] of `rows` rows of `x` (`rows × dim`) written transposed: `out` is
/// `dim(dim+1)/2 × rows`, feature-major in the same feature order, so each feature is one
/// contiguous product of two columns of `x` (transposed into `columns`, `dim × rows`, first).
/// The √2 is applied on the fly: a second, scaled copy of the columns pushed the two out of a
/// 32 KiB L1 at 256 rows of 32 and made this 60% slower. With `feature_sums`, also
/// `feature_sums[f] += Σ_r out[f][r]` (the sketched engine's `z += Bᵀ1`) as each feature is made.
///
/// # Panics
/// If `x`, `columns` or `out` are shorter than the shapes say, or `feature_sums` is not
/// `dim(dim+1)/2` long.
pub fn pack_symmetric_square_transposed<T: Element>(
    x: &[T],
    rows: usize,
    dim: usize,
    columns: &mut [T],
    out: &mut [T],
    feature_sums: Option<&mut [T]>,
) {
    let m = dim * (dim + 1) / 2;
    assert!(
        x.len() >= rows * dim && columns.len() >= rows * dim && out.len() >= rows * m,
        "pack_symmetric_square_transposed: buffers shorter than rows = {rows}, dim = {dim}"
    );
    if let Some(sums) = &feature_sums {
        assert_eq!(
            sums.len(),
            m,
            "pack_symmetric_square_transposed: feature sums"
        );
    }
    let columns = &mut columns[..dim * rows];
    for (r, row) in x[..rows * dim].chunks_exact(dim).enumerate() {
        for (i, &value) in row.iter().enumerate() {
            columns[i * rows + r] = value;
        }
    }
    struct Op<'a, T> {
        columns: &'a [T],
        rows: usize,
        dim: usize,
        out: &'a mut [T],
        feature_sums: Option<&'a mut [T]>,
    }
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let Op {
                columns,
                rows,
                dim,
                out,
                mut feature_sums,
            } = self;
            let sqrt2 = T::v_splat(s, T::from_f64(std::f64::consts::SQRT_2));
            let column = |i: usize| &columns[i * rows..(i + 1) * rows];
            let weights = if feature_sums.is_some() {
                Weights::Ones
            } else {
                Weights::Nothing
            };
            let features = packed_pairs(dim).zip(out.chunks_exact_mut(rows));
            for (f, ((a, b), feature)) in features.enumerate() {
                let scale = (a != b).then_some(sqrt2);
                let sum = product_in(s, feature, column(a), column(b), scale, weights);
                if let Some(sums) = &mut feature_sums {
                    sums[f] += sum;
                }
            }
        }
    }
    if m > 0 && rows > 0 {
        Arch::new().dispatch(Op {
            columns,
            rows,
            dim,
            out: &mut out[..m * rows],
            feature_sums,
        });
    }
}

/// The backward of [`pack_symmetric_square`]: `grad_x += Jᵀ grad` for the features `x_a²` and
/// `√2·x_a·x_b` (`a ≠ b`), row by row (`x`: `rows × dim`, `grad`: `rows × dim(dim+1)/2`).
///
/// # Panics
/// If the three slices disagree on `rows`.
pub fn pack_symmetric_square_backward<T: Element>(
    x: &[T],
    dim: usize,
    grad: &[T],
    grad_x: &mut [T],
) {
    let m = dim * (dim + 1) / 2;
    let rows = x.len().checked_div(dim).unwrap_or(0);
    assert!(
        grad.len() == rows * m && grad_x.len() == rows * dim,
        "pack_symmetric_square_backward: {} gradients for {} inputs of width {dim}",
        grad.len(),
        x.len()
    );
    let sqrt2 = T::from_f64(std::f64::consts::SQRT_2);
    let two = T::from_f64(2.0);
    for ((row, g), dx) in x
        .chunks_exact(dim)
        .zip(grad.chunks_exact(m))
        .zip(grad_x.chunks_exact_mut(dim))
    {
        for ((a, b), &g) in packed_pairs(dim).zip(g) {
            if a == b {
                dx[a] += two * row[a] * g;
            } else {
                let g = sqrt2 * g;
                dx[a] += g * row[b];
                dx[b] += g * row[a];
            }
        }
    }
}

/// What [`product_in`] sums of the products it writes.
#[derive(Clone, Copy)]
enum Weights<'a, T> {
    Nothing,
    Ones,
    Of(&'a [T]),
}

/// `dst = (scale · a) · b` element-wise (equal lengths; `a · b` without a scale), whole
/// registers then one masked tail; returns `Σ dst` (`Ones`), `Σ dst · w` (`Of(w)`) or 0.
#[inline(always)]
fn product_in<S: Simd, T: Element>(
    s: S,
    dst: &mut [T],
    a: &[T],
    b: &[T],
    scale: Option<T::Lanes<S>>,
    weights: Weights<'_, T>,
) -> T {
    let times = |x| scale.map_or(x, |c| T::v_mul(s, c, x));
    let (dst_head, dst_tail) = T::v_as_mut_simd::<S>(dst);
    let (a_head, a_tail) = T::v_as_simd::<S>(a);
    let (b_head, b_tail) = T::v_as_simd::<S>(b);
    let mut acc = T::v_splat(s, T::ZERO);
    match weights {
        Weights::Nothing => {
            for ((d, &x), &y) in dst_head.iter_mut().zip(a_head).zip(b_head) {
                *d = T::v_mul(s, times(x), y);
            }
        }
        Weights::Ones => {
            for ((d, &x), &y) in dst_head.iter_mut().zip(a_head).zip(b_head) {
                *d = T::v_mul(s, times(x), y);
                acc = T::v_add(s, acc, *d);
            }
        }
        Weights::Of(w) => {
            let (w_head, _) = T::v_as_simd::<S>(w);
            for (((d, &x), &y), &w) in dst_head.iter_mut().zip(a_head).zip(b_head).zip(w_head) {
                *d = T::v_mul(s, times(x), y);
                acc = T::v_mul_add(s, *d, w, acc);
            }
        }
    }
    if !a_tail.is_empty() {
        let x = T::v_partial_load(s, a_tail);
        let y = T::v_partial_load(s, b_tail);
        let p = T::v_mul(s, times(x), y);
        T::v_partial_store(s, dst_tail, p);
        // Padded lanes are 0 in `p`, so they add nothing.
        acc = match weights {
            Weights::Nothing => acc,
            Weights::Ones => T::v_add(s, acc, p),
            Weights::Of(w) => {
                let w_tail = T::v_as_simd::<S>(w).1;
                T::v_mul_add(s, p, T::v_partial_load(s, w_tail), acc)
            }
        };
    }
    T::v_reduce_sum(s, acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output at a time, in the order of [`packed_pairs`].
    fn packed_by_definition(x: &[f64], dim: usize) -> Vec<f64> {
        let mut out = Vec::new();
        for row in x.chunks_exact(dim) {
            for (a, b) in packed_pairs(dim) {
                let scale = if a == b {
                    1.0
                } else {
                    std::f64::consts::SQRT_2
                };
                out.push(scale * row[a] * row[b]);
            }
        }
        out
    }

    #[test]
    fn every_unordered_pair_appears_exactly_once() {
        for dim in [1, 2, 3, 4, 7, 8, 32, 33] {
            let mut seen = vec![0; dim * dim];
            for (a, b) in packed_pairs(dim) {
                seen[a.min(b) * dim + a.max(b)] += 1;
            }
            for a in 0..dim {
                for b in 0..dim {
                    assert_eq!(
                        seen[a * dim + b],
                        usize::from(a <= b),
                        "dim {dim}: ({a}, {b})"
                    );
                }
            }
        }
    }

    #[test]
    fn both_layouts_match_the_definition_bit_for_bit_at_awkward_sizes() {
        for (rows, dim) in [(1, 1), (3, 2), (5, 7), (17, 8), (9, 9), (33, 32), (2, 45)] {
            let x: Vec<f64> = (0..rows * dim)
                .map(|i| ((i * 7919 + 13) % 1009) as f64 / 97.0 - 5.0)
                .collect();
            let m = dim * (dim + 1) / 2;
            let want = packed_by_definition(&x, dim);
            let mut packed = vec![f64::NAN; rows * m];
            pack_symmetric_square(&x, dim, &mut packed, None);
            assert_eq!(packed, want, "rows {rows}, dim {dim}");
            let mut columns = vec![0.0; rows * dim];
            let mut transposed = vec![f64::NAN; m * rows];
            pack_symmetric_square_transposed(&x, rows, dim, &mut columns, &mut transposed, None);
            for f in 0..m {
                for r in 0..rows {
                    assert_eq!(
                        transposed[f * rows + r],
                        want[r * m + f],
                        "rows {rows}, dim {dim}"
                    );
                }
            }
            // f32 through the same code: both layouts agree with each other exactly.
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let mut packed32 = vec![f32::NAN; rows * m];
            pack_symmetric_square(&x32, dim, &mut packed32, None);
            let mut columns32 = vec![0.0f32; rows * dim];
            let mut transposed32 = vec![f32::NAN; m * rows];
            pack_symmetric_square_transposed(
                &x32,
                rows,
                dim,
                &mut columns32,
                &mut transposed32,
                None,
            );
            for f in 0..m {
                for r in 0..rows {
                    assert_eq!(transposed32[f * rows + r], packed32[r * m + f]);
                }
            }
        }
    }

    /// `⟨pack(x), pack(y)⟩ = (x·y)²`, and the backward is the gradient of `⟨pack(x), g⟩`.
    #[test]
    fn packing_squares_inner_products_and_its_backward_is_the_gradient() {
        for dim in [1, 2, 5, 6, 32] {
            let x: Vec<f64> = (0..dim).map(|i| (i as f64 * 0.37).sin()).collect();
            let y: Vec<f64> = (0..dim).map(|i| (i as f64 * 0.91 + 0.2).cos()).collect();
            let m = dim * (dim + 1) / 2;
            let (mut px, mut py) = (vec![0.0; m], vec![0.0; m]);
            pack_symmetric_square(&x, dim, &mut px, None);
            pack_symmetric_square(&y, dim, &mut py, None);
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
            assert!(
                (dot(&px, &py) - dot(&x, &y).powi(2)).abs() < 1e-12,
                "dim {dim}"
            );
            // ⟨pack(x), g⟩ with g = pack(y) has gradient 2(x·y)·y.
            let mut grad = vec![0.0; dim];
            pack_symmetric_square_backward(&x, dim, &py, &mut grad);
            for (g, yi) in grad.iter().zip(&y) {
                assert!((g - 2.0 * dot(&x, &y) * yi).abs() < 1e-12, "dim {dim}");
            }
        }
    }

    /// The fused projection and feature sums equal the plain products over the packed features.
    #[test]
    fn projections_and_feature_sums_match_the_packed_features() {
        for (rows, dim) in [(1, 1), (3, 2), (5, 7), (17, 8), (33, 32), (2, 45)] {
            let x: Vec<f64> = (0..rows * dim)
                .map(|i| ((i * 6007 + 5) % 997) as f64 / 101.0 - 4.5)
                .collect();
            let m = dim * (dim + 1) / 2;
            let z: Vec<f64> = (0..m).map(|f| (f as f64 * 0.61).cos()).collect();
            let mut packed = vec![0.0; rows * m];
            let mut dots = vec![0.25; rows];
            pack_symmetric_square(&x, dim, &mut packed, Some((&z, &mut dots)));
            for (r, features) in packed.chunks_exact(m).enumerate() {
                let want = 0.25 + features.iter().zip(&z).map(|(a, b)| a * b).sum::<f64>();
                assert!(
                    (dots[r] - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "{rows}×{dim}"
                );
            }
            let (mut columns, mut transposed) = (vec![0.0; rows * dim], vec![0.0; m * rows]);
            let mut sums = vec![-1.0; m];
            let out = &mut transposed;
            pack_symmetric_square_transposed(&x, rows, dim, &mut columns, out, Some(&mut sums));
            for (f, feature) in transposed.chunks_exact(rows).enumerate() {
                let want = -1.0 + feature.iter().sum::<f64>();
                assert!(
                    (sums[f] - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "{rows}×{dim}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "pack_symmetric_square")]
    fn a_short_output_is_refused() {
        pack_symmetric_square(&[1.0f32; 8], 4, &mut [0.0; 19], None);
    }
}
