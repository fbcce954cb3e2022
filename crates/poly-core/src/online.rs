//! The online step of the streaming engines (docs/math.md §2.3–2.4): folding one key tile's scores
//! into each query row's running maximum, weight sums and accumulator `Σ w' v`.
//!
//! A whole tile is one SIMD dispatch, with the row kernels inlined into its loop, instead of two or
//! three dispatches per row. The operations and their order are those of the per-row kernels, so
//! results are bit-identical to theirs; the time saved was within this project's VM noise
//! (n = 4096, β = 4: 0.216–0.225 s before, 0.218–0.223 s after, medians of four alternated
//! `poly-bench time` runs each).

use crate::config::Kernel;
use crate::element::Element;
use crate::kernels::{abs_max_in, exp_in, power_in, powi, row_max_in, scale_in};
use pulp::{Arch, Simd, WithSimd};
use std::ops::Range;

/// The running statistics of a query tile's rows and their accumulators `Σ w' v` (`rows × d_v`).
pub(crate) struct TileStats<'a, T> {
    pub max: &'a mut [T],
    pub sum: &'a mut [T],
    pub abs_sum: &'a mut [T],
    pub acc: &'a mut [T],
}

impl<T: Element> TileStats<'_, T> {
    /// The online step for every row of one key tile starting at key `tile_start`: `scores` is
    /// `rows × cols` (as many rows as `self.max`), and row `r` sees the keys `visible(r)`. Scores
    /// outside them become 0 (so the tile's `W·V` GEMM ignores them); the visible ones become the
    /// scale-free weights `w'` and update the row's statistics.
    pub fn update(
        &mut self,
        scores: &mut [T],
        tile_start: usize,
        visible: &dyn Fn(usize) -> Range<usize>,
        kernel: Kernel,
    ) {
        struct Op<'s, 'a, T> {
            stats: &'s mut TileStats<'a, T>,
            scores: &'s mut [T],
            tile_start: usize,
            visible: &'s dyn Fn(usize) -> Range<usize>,
            kernel: Kernel,
        }
        impl<T: Element> WithSimd for Op<'_, '_, T> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: Simd>(self, s: S) {
                let Op {
                    stats,
                    scores,
                    tile_start,
                    visible,
                    kernel,
                } = self;
                let rows = stats.max.len();
                if rows == 0 || scores.is_empty() {
                    return;
                }
                let cols = scores.len() / rows;
                let d_v = stats.acc.len() / rows;
                for (r, row) in scores.chunks_exact_mut(cols).enumerate() {
                    let stats = RowStats {
                        max: &mut stats.max[r],
                        sum: &mut stats.sum[r],
                        abs_sum: &mut stats.abs_sum[r],
                        acc: &mut stats.acc[r * d_v..(r + 1) * d_v],
                    };
                    update_row(s, row, tile_start, visible(r), kernel, stats);
                }
            }
        }
        Arch::new().dispatch(Op {
            stats: self,
            scores,
            tile_start,
            visible,
            kernel,
        });
    }
}

/// One row's running statistics and accumulator `Σ w' v`.
struct RowStats<'a, T> {
    max: &'a mut T,
    sum: &'a mut T,
    abs_sum: &'a mut T,
    acc: &'a mut [T],
}

/// The online step for one row of one key tile starting at key `tile_start` (see
/// [`TileStats::update`]).
#[inline(always)]
fn update_row<S: Simd, T: Element>(
    s: S,
    row: &mut [T],
    tile_start: usize,
    visible: Range<usize>,
    kernel: Kernel,
    stats: RowStats<'_, T>,
) {
    let cols = row.len();
    let end = visible.end.saturating_sub(tile_start).min(cols);
    let start = visible.start.saturating_sub(tile_start).min(end);
    let (before, rest) = row.split_at_mut(start);
    let (vis, after) = rest.split_at_mut(end - start);
    before.fill(T::ZERO);
    after.fill(T::ZERO);
    if vis.is_empty() {
        return;
    }
    match kernel {
        Kernel::Polynomial { degree } => update_polynomial_row(s, vis, degree, stats),
        Kernel::Softmax => update_softmax_row(s, vis, stats),
    }
}

/// Online step of polynomial attention for one row of one key tile (docs/math.md §2.3).
#[inline(always)]
fn update_polynomial_row<S: Simd, T: Element>(
    s: S,
    scores: &mut [T],
    degree: u32,
    stats: RowStats<'_, T>,
) {
    let RowStats {
        max: m,
        sum,
        abs_sum,
        acc,
    } = stats;
    let tile_max = abs_max_in(s, scores);
    if tile_max > *m {
        if *m > T::ZERO {
            // Exact for integer degrees; underflows to 0 only when the old terms are negligible.
            let factor = powi(*m / tile_max, degree);
            scale_in(s, acc, factor);
            *sum *= factor;
            *abs_sum *= factor;
        }
        *m = tile_max;
    }
    let inv = if *m > T::ZERO { T::ONE / *m } else { T::ONE };
    let sums = if inv.to_f64().is_finite() {
        power_in(s, scores, inv, degree)
    } else {
        // `m` is subnormal: 1/m overflows, so divide instead (a rare, slow path).
        let m = *m;
        scores.iter_mut().for_each(|x| *x /= m);
        power_in(s, scores, T::ONE, degree)
    };
    *sum += sums.sum;
    *abs_sum += sums.abs_sum;
}

/// Online step of softmax attention for one row of one key tile (docs/math.md §2.4).
#[inline(always)]
fn update_softmax_row<S: Simd, T: Element>(s: S, scores: &mut [T], stats: RowStats<'_, T>) {
    let RowStats {
        max: m, sum, acc, ..
    } = stats;
    let tile_max = row_max_in(s, scores);
    if tile_max > *m {
        if m.to_f64() > f64::NEG_INFINITY {
            let factor = T::from_f64((m.to_f64() - tile_max.to_f64()).exp());
            scale_in(s, acc, factor);
            *sum *= factor;
        }
        *m = tile_max;
    }
    *sum += exp_in(s, scores, *m);
}
