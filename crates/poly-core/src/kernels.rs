//! Element-wise SIMD kernels of the streaming engine. Each function dispatches once with pulp
//! (AVX-512 where available) and loops over whole registers, with masked tails. They are total:
//! any row length and degree is accepted; only mismatched matrix shapes panic (`# Panics`).
//!
//! NaN handling: a row maximum may skip a NaN, but the power and exp passes propagate it into the
//! weights and row sums, so a score that overflowed always reaches the output, where the engine
//! reports it as an error instead of returning it.

use crate::element::Element;
use crate::simd::{SimdFloat, exp};
use pulp::{Arch, Simd, WithSimd};

/// Largest `|x|` of a row (0 for an empty row).
pub fn abs_max<T: Element>(row: &[T]) -> T {
    struct Op<'a, T>(&'a [T]);
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = T;
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> T {
            abs_max_in(s, self.0)
        }
    }
    Arch::new().dispatch(Op(row))
}

/// [`abs_max`] inside a dispatched kernel.
#[inline(always)]
pub(crate) fn abs_max_in<S: Simd, T: Element>(s: S, row: &[T]) -> T {
    reduce_pairs::<S, T>(
        s,
        row,
        T::ZERO,
        |a, x| T::v_max(s, a, T::v_abs(s, x)),
        |v| T::v_reduce_max(s, v),
    )
}

/// Largest `x` of a row (−∞ for an empty row, the identity of `max`).
pub fn row_max<T: Element>(row: &[T]) -> T {
    struct Op<'a, T>(&'a [T]);
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = T;
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> T {
            row_max_in(s, self.0)
        }
    }
    Arch::new().dispatch(Op(row))
}

/// [`row_max`] inside a dispatched kernel.
#[inline(always)]
pub(crate) fn row_max_in<S: Simd, T: Element>(s: S, row: &[T]) -> T {
    let Some(&seed) = row.first() else {
        return T::from_f64(f64::NEG_INFINITY);
    };
    // The first element seeds every lane, so zero-filled tail lanes cannot win.
    let (head, tail) = T::v_as_simd::<S>(row);
    let mut acc = T::v_splat(s, seed);
    for &x in head {
        acc = T::v_max(s, acc, x);
    }
    let mut best = T::v_reduce_max(s, acc);
    for &x in tail {
        if x > best {
            best = x;
        }
    }
    best
}

/// Folds a row two registers at a time (two accumulators hide the latency of the fold), the tail
/// through a zero-padded partial load; `finish` reduces one register to a scalar.
#[inline(always)]
fn reduce_pairs<S: Simd, T: Element>(
    s: S,
    row: &[T],
    init: T,
    fold: impl Fn(T::Lanes<S>, T::Lanes<S>) -> T::Lanes<S>,
    finish: impl Fn(T::Lanes<S>) -> T,
) -> T {
    let (head, tail) = T::v_as_simd::<S>(row);
    let mut a0 = T::v_splat(s, init);
    let mut a1 = a0;
    let mut pairs = head.chunks_exact(2);
    for pair in &mut pairs {
        a0 = fold(a0, pair[0]);
        a1 = fold(a1, pair[1]);
    }
    for &x in pairs.remainder() {
        a0 = fold(a0, x);
    }
    if !tail.is_empty() {
        a1 = fold(a1, T::v_partial_load(s, tail));
    }
    // Combine the two accumulators with the same fold so that max and sum both work.
    finish(fold(a0, a1))
}

/// `x^degree` by binary exponentiation; fully unrolled when `degree` is a constant.
/// `degree` ≥ 1 ([`power_in_place`] handles 0).
#[inline(always)]
fn pow<S: Simd, T: SimdFloat>(s: S, x: T::Lanes<S>, degree: u32) -> T::Lanes<S> {
    debug_assert!(degree >= 1);
    let mut base = x;
    let mut e = degree;
    while e & 1 == 0 {
        base = T::v_mul(s, base, base);
        e >>= 1;
    }
    let mut result = base;
    e >>= 1;
    while e != 0 {
        base = T::v_mul(s, base, base);
        if e & 1 == 1 {
            result = T::v_mul(s, result, base);
        }
        e >>= 1;
    }
    result
}

/// `x^degree` for a scalar, by the same binary exponentiation (exact for integer degrees up to
/// rounding of each product).
pub fn powi<T: Element>(x: T, degree: u32) -> T {
    let mut base = x;
    let mut result = T::ONE;
    let mut e = degree;
    while e != 0 {
        if e & 1 == 1 {
            result *= base;
        }
        base *= base;
        e >>= 1;
    }
    result
}

/// Sums produced by [`power_in_place`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WeightSums<T> {
    /// `Σ w`.
    pub sum: T,
    /// `Σ |w|` (equal to `sum` for even degrees, where it is not computed separately).
    pub abs_sum: T,
}

/// Replaces each `x` of `row` by `w = (x · inv_max)^degree` and returns `Σ w` and `Σ |w|`.
///
/// With `inv_max = 1 / max|x|` every weight lies in `[−1, 1]`, so no degree can overflow.
/// Degree 0 gives `w = 1` everywhere (`x⁰ = 1`, as [`powi`] has it).
pub fn power_in_place<T: Element>(row: &mut [T], inv_max: T, degree: u32) -> WeightSums<T> {
    struct Op<'a, T> {
        row: &'a mut [T],
        inv: T,
        degree: u32,
    }
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = WeightSums<T>;
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> WeightSums<T> {
            power_in(s, self.row, self.inv, self.degree)
        }
    }
    Arch::new().dispatch(Op {
        row,
        inv: inv_max,
        degree,
    })
}

/// [`power_in_place`] inside a dispatched kernel.
#[inline(always)]
pub(crate) fn power_in<S: Simd, T: Element>(
    s: S,
    row: &mut [T],
    inv: T,
    degree: u32,
) -> WeightSums<T> {
    // Constant degrees get a fully unrolled power; the rest share one generic loop.
    match degree {
        0 => {
            row.fill(T::ONE);
            let n = T::from_f64(row.len() as f64);
            WeightSums { sum: n, abs_sum: n }
        }
        1 => power_sums::<S, T, false>(s, row, inv, |x| x),
        2 => power_sums::<S, T, true>(s, row, inv, |x| pow::<S, T>(s, x, 2)),
        3 => power_sums::<S, T, false>(s, row, inv, |x| pow::<S, T>(s, x, 3)),
        4 => power_sums::<S, T, true>(s, row, inv, |x| pow::<S, T>(s, x, 4)),
        5 => power_sums::<S, T, false>(s, row, inv, |x| pow::<S, T>(s, x, 5)),
        6 => power_sums::<S, T, true>(s, row, inv, |x| pow::<S, T>(s, x, 6)),
        7 => power_sums::<S, T, false>(s, row, inv, |x| pow::<S, T>(s, x, 7)),
        8 => power_sums::<S, T, true>(s, row, inv, |x| pow::<S, T>(s, x, 8)),
        d if d % 2 == 0 => power_sums::<S, T, true>(s, row, inv, |x| pow::<S, T>(s, x, d)),
        d => power_sums::<S, T, false>(s, row, inv, |x| pow::<S, T>(s, x, d)),
    }
}

/// The loop of [`power_in_place`]; `EVEN` skips the `Σ |w|` accumulation (weights are ≥ 0).
#[inline(always)]
fn power_sums<S: Simd, T: Element, const EVEN: bool>(
    s: S,
    row: &mut [T],
    inv: T,
    power: impl Fn(T::Lanes<S>) -> T::Lanes<S>,
) -> WeightSums<T> {
    let inv = T::v_splat(s, inv);
    let zero = T::v_splat(s, T::ZERO);
    let (mut sum0, mut sum1, mut abs0, mut abs1) = (zero, zero, zero, zero);
    let (head, tail) = T::v_as_mut_simd::<S>(row);
    let mut pairs = head.chunks_exact_mut(2);
    for pair in &mut pairs {
        let w0 = power(T::v_mul(s, pair[0], inv));
        let w1 = power(T::v_mul(s, pair[1], inv));
        pair[0] = w0;
        pair[1] = w1;
        sum0 = T::v_add(s, sum0, w0);
        sum1 = T::v_add(s, sum1, w1);
        if !EVEN {
            abs0 = T::v_add(s, abs0, T::v_abs(s, w0));
            abs1 = T::v_add(s, abs1, T::v_abs(s, w1));
        }
    }
    for x in pairs.into_remainder() {
        let w = power(T::v_mul(s, *x, inv));
        *x = w;
        sum0 = T::v_add(s, sum0, w);
        if !EVEN {
            abs0 = T::v_add(s, abs0, T::v_abs(s, w));
        }
    }
    if !tail.is_empty() {
        // Zero-padded lanes give 0^degree = 0, which adds nothing.
        let w = power(T::v_mul(s, T::v_partial_load(s, tail), inv));
        T::v_partial_store(s, tail, w);
        sum1 = T::v_add(s, sum1, w);
        if !EVEN {
            abs1 = T::v_add(s, abs1, T::v_abs(s, w));
        }
    }
    let sum = T::v_reduce_sum(s, T::v_add(s, sum0, sum1));
    let abs_sum = if EVEN {
        sum
    } else {
        T::v_reduce_sum(s, T::v_add(s, abs0, abs1))
    };
    WeightSums { sum, abs_sum }
}

/// Replaces each `x` of `row` by `exp(x − shift)` and returns the sum. Softmax passes its row
/// maximum (`x − shift ≤ 0`); the error bound, `(2 + |x − shift|)·ε` relative, and the range
/// where it holds (results that fit the type) are those of docs/math.md §2.4.
pub fn exp_in_place<T: Element>(row: &mut [T], shift: T) -> T {
    struct Op<'a, T> {
        row: &'a mut [T],
        shift: T,
    }
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = T;
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> T {
            exp_in(s, self.row, self.shift)
        }
    }
    Arch::new().dispatch(Op { row, shift })
}

/// [`exp_in_place`] inside a dispatched kernel.
#[inline(always)]
pub(crate) fn exp_in<S: Simd, T: Element>(s: S, row: &mut [T], shift: T) -> T {
    let shift_lanes = T::v_splat(s, shift);
    let zero = T::v_splat(s, T::ZERO);
    let (mut sum0, mut sum1) = (zero, zero);
    let (head, tail) = T::v_as_mut_simd::<S>(row);
    let mut pairs = head.chunks_exact_mut(2);
    for pair in &mut pairs {
        let w0 = exp::<S, T>(s, T::v_sub(s, pair[0], shift_lanes));
        let w1 = exp::<S, T>(s, T::v_sub(s, pair[1], shift_lanes));
        pair[0] = w0;
        pair[1] = w1;
        sum0 = T::v_add(s, sum0, w0);
        sum1 = T::v_add(s, sum1, w1);
    }
    for x in pairs.into_remainder() {
        let w = exp::<S, T>(s, T::v_sub(s, *x, shift_lanes));
        *x = w;
        sum0 = T::v_add(s, sum0, w);
    }
    let mut sum = T::v_reduce_sum(s, T::v_add(s, sum0, sum1));
    if !tail.is_empty() {
        // One zero-padded register: only the tail's lanes are stored and summed (a padded lane
        // holds exp(0 − shift), which is no weight). A scalar libm exp per element cost a causal
        // diagonal row 5–6 ns per tail element, up to 7 per row.
        let w = exp::<S, T>(s, T::v_sub(s, T::v_partial_load(s, tail), shift_lanes));
        T::v_partial_store(s, tail, w);
        for &w in tail.iter() {
            sum += w;
        }
    }
    sum
}

/// Multiplies every element of `row` by `factor`.
pub fn scale_in_place<T: Element>(row: &mut [T], factor: T) {
    struct Op<'a, T>(&'a mut [T], T);
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            scale_in(s, self.0, self.1)
        }
    }
    Arch::new().dispatch(Op(row, factor))
}

/// [`scale_in_place`] inside a dispatched kernel.
#[inline(always)]
pub(crate) fn scale_in<S: Simd, T: Element>(s: S, row: &mut [T], factor: T) {
    let f = T::v_splat(s, factor);
    let (head, tail) = T::v_as_mut_simd::<S>(row);
    for x in head {
        *x = T::v_mul(s, *x, f);
    }
    for x in tail {
        *x *= factor;
    }
}

/// `state_l += f_l · c` for every row `l` of the row-major `f.len() × c.len()` matrix `state`: one
/// token's rank-1 update of a decoding state, in one dispatch.
///
/// # Panics
/// If `state.len() != f.len() · c.len()`.
pub fn rank_one_update<T: Element>(state: &mut [T], f: &[T], c: &[T]) {
    assert_eq!(
        state.len(),
        f.len() * c.len(),
        "rank_one_update: state must be f.len() × c.len()"
    );
    struct Op<'a, T>(&'a mut [T], &'a [T], &'a [T]);
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let Op(state, f, c) = self;
            let (c_head, c_tail) = T::v_as_simd::<S>(c);
            for (row, &fl) in state.chunks_exact_mut(c.len()).zip(f) {
                let scale = T::v_splat(s, fl);
                let (head, tail) = T::v_as_mut_simd::<S>(row);
                for (x, &y) in head.iter_mut().zip(c_head) {
                    *x = T::v_mul_add(s, scale, y, *x);
                }
                for (x, &y) in tail.iter_mut().zip(c_tail) {
                    *x += fl * y;
                }
            }
        }
    }
    Arch::new().dispatch(Op(state, f, c))
}

/// `y = Σ_l f_l · rows_l` over the rows of the row-major `f.len() × y.len()` matrix `rows`: one row
/// times a matrix (a decoding readout, or a one-row GEMM) in one dispatch.
///
/// # Panics
/// If `rows.len() != f.len() · y.len()`.
pub fn weighted_row_sum<T: Element>(y: &mut [T], f: &[T], rows: &[T]) {
    assert_eq!(
        rows.len(),
        f.len() * y.len(),
        "weighted_row_sum: rows must be f.len() × y.len()"
    );
    struct Op<'a, T>(&'a mut [T], &'a [T], &'a [T]);
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let Op(y, f, rows) = self;
            y.fill(T::ZERO);
            let width = y.len();
            let (y_head, y_tail) = T::v_as_mut_simd::<S>(y);
            for (row, &fl) in rows.chunks_exact(width).zip(f) {
                let scale = T::v_splat(s, fl);
                let (head, tail) = T::v_as_simd::<S>(row);
                for (acc, &x) in y_head.iter_mut().zip(head) {
                    *acc = T::v_mul_add(s, scale, x, *acc);
                }
                for (acc, &x) in y_tail.iter_mut().zip(tail) {
                    *acc += fl * x;
                }
            }
        }
    }
    Arch::new().dispatch(Op(y, f, rows))
}

/// `out_i += ⟨row i of matrix, x⟩` for the row-major `out.len() × x.len()` matrix: a matrix times
/// a vector in one dispatch (the sketched engine's normalizer column, `A·z`, without a GEMM whose
/// one extra column would cost a whole panel).
///
/// # Panics
/// If `matrix.len() != out.len() · x.len()`.
pub fn add_row_dots<T: Element>(out: &mut [T], matrix: &[T], x: &[T]) {
    assert_eq!(
        matrix.len(),
        out.len() * x.len(),
        "add_row_dots: matrix must be out.len() × x.len()"
    );
    struct Op<'a, T>(&'a mut [T], &'a [T], &'a [T]);
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            let Op(out, matrix, x) = self;
            let (x_head, x_tail) = T::v_as_simd::<S>(x);
            let zero = T::v_splat(s, T::ZERO);
            for (o, row) in out.iter_mut().zip(matrix.chunks_exact(x.len())) {
                let (head, tail) = T::v_as_simd::<S>(row);
                // Two accumulators hide the FMA latency.
                let (mut a0, mut a1) = (zero, zero);
                let mut pairs = head.chunks_exact(2).zip(x_head.chunks_exact(2));
                for (r, y) in &mut pairs {
                    a0 = T::v_mul_add(s, r[0], y[0], a0);
                    a1 = T::v_mul_add(s, r[1], y[1], a1);
                }
                if head.len() % 2 == 1 {
                    let last = head.len() - 1;
                    a0 = T::v_mul_add(s, head[last], x_head[last], a0);
                }
                let mut sum = T::v_reduce_sum(s, T::v_add(s, a0, a1));
                for (&r, &y) in tail.iter().zip(x_tail) {
                    sum += r * y;
                }
                *o += sum;
            }
        }
    }
    if !x.is_empty() {
        Arch::new().dispatch(Op(out, matrix, x));
    }
}

/// Index of the first NaN or infinity in `data`, if any.
///
/// Scans blocks with `Σ x·0`, which is NaN exactly when the block holds a non-finite value, and
/// only searches a block element by element when it does.
pub fn first_non_finite<T: Element>(data: &[T]) -> Option<usize> {
    struct Op<'a, T>(&'a [T]);
    impl<T: Element> WithSimd for Op<'_, T> {
        type Output = bool;
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) -> bool {
            let zero = T::v_splat(s, T::ZERO);
            let probe = reduce_pairs::<S, T>(
                s,
                self.0,
                T::ZERO,
                |a, x| T::v_mul_add(s, x, zero, a),
                |v| T::v_reduce_sum(s, v),
            );
            probe == T::ZERO
        }
    }
    const BLOCK: usize = 4096;
    data.chunks(BLOCK).enumerate().find_map(|(b, block)| {
        if Arch::new().dispatch(Op(block)) {
            None
        } else {
            block
                .iter()
                .position(|x| !x.to_f64().is_finite())
                .map(|i| b * BLOCK + i)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64, n: usize) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn power_matches_powi_for_every_length_and_degree() {
        for len in [0, 1, 3, 15, 16, 17, 31, 32, 33, 100] {
            for degree in [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 33, 64] {
                let x = lcg(len as u64 * 31 + degree as u64, len);
                let mut row = x.clone();
                let sums = power_in_place(&mut row, 0.5, degree);
                let mut sum = 0.0;
                let mut abs_sum = 0.0;
                for (w, x) in row.iter().zip(&x) {
                    let expected = (x * 0.5).powi(degree as i32);
                    assert!((w - expected).abs() <= 1e-15 * expected.abs().max(1e-300));
                    sum += expected;
                    abs_sum += expected.abs();
                }
                assert!((sums.sum - sum).abs() <= 1e-13, "len {len} degree {degree}");
                assert!((sums.abs_sum - abs_sum).abs() <= 1e-13);
            }
        }
    }

    /// A row's last, partial register: every element within the bound, and the padded lanes'
    /// values never in the returned sum.
    #[test]
    fn exp_tails_stay_within_the_bound_and_out_of_the_sum_of_padding() {
        fn check<T: Element>(eps: f64) {
            for len in 1..=19 {
                for shift in [0.0, 3.7, -2.5] {
                    let xs: Vec<T> = (0..len)
                        .map(|i| T::from_f64(shift - 0.37 * i as f64))
                        .collect();
                    let mut row = xs.clone();
                    let sum = exp_in_place(&mut row, T::from_f64(shift)).to_f64();
                    let mut stored = 0.0;
                    for (x, y) in xs.iter().zip(&row) {
                        let (x, y) = (x.to_f64() - shift, y.to_f64());
                        let exact = x.exp();
                        assert!(
                            (y - exact).abs() <= exact * eps * (2.0 + x.abs()),
                            "len {len}, shift {shift}: exp({x}) = {y}, not {exact}"
                        );
                        stored += y;
                    }
                    // A padded lane would add exp(−shift): e^2.5 here, far beyond rounding.
                    assert!(
                        (sum - stored).abs() <= 4.0 * eps * stored,
                        "len {len}, shift {shift}: sum {sum} of {stored}"
                    );
                }
            }
        }
        check::<f32>(f32::EPSILON.into());
        check::<f64>(f64::EPSILON);
    }

    /// The contract of `simd::exp`: relative error ≤ (2 + |x|)·ε where the result is normal
    /// (the `|x|·ε` from rounding `x·log2 e`), so absolute error ≤ (2 + 1/e)·ε for weights ≤ 1.
    #[test]
    fn exp_is_within_its_error_bound_in_f32_and_f64() {
        fn worst<T: Element>(step: f64, count: usize, eps: f64, min_positive: f64) -> (f64, f64) {
            let xs: Vec<T> = (0..count)
                .map(|i| T::from_f64(-(i as f64) * step))
                .collect();
            let mut row = xs.clone();
            exp_in_place(&mut row, T::ZERO);
            let (mut relative, mut absolute) = (0.0f64, 0.0f64);
            for (x, y) in xs.iter().zip(&row) {
                let (x, y) = (x.to_f64(), y.to_f64());
                let exact = x.exp();
                absolute = absolute.max((y - exact).abs() / eps);
                if exact < min_positive {
                    assert!(y <= min_positive, "x = {x}: {y}");
                    continue;
                }
                relative = relative.max((y - exact).abs() / (exact * eps * (2.0 + x.abs())));
            }
            (relative, absolute)
        }
        // Positive arguments (FAVOR+ keys reach e^40) keep the relative bound up to f32's range.
        let (positive, _) =
            worst::<f32>(-0.004, 20000, f32::EPSILON.into(), f32::MIN_POSITIVE.into());
        assert!(
            positive <= 1.0,
            "f32 exp of x in [0, 80]: {positive} of its relative bound"
        );
        let (relative, absolute) =
            worst::<f32>(0.0044, 20000, f32::EPSILON.into(), f32::MIN_POSITIVE.into());
        assert!(relative <= 1.0, "f32 exp: {relative} of its relative bound");
        assert!(
            absolute <= 2.0 + 1.0 / std::f64::consts::E,
            "f32 exp: {absolute} ε"
        );
        // Where |x| < 1/2 the exponent rounds to 0 and only the polynomial's error is left.
        let (near_zero, _) =
            worst::<f32>(1e-5, 30000, f32::EPSILON.into(), f32::MIN_POSITIVE.into());
        assert!(near_zero <= 1.0, "f32 exp near 0: {near_zero}");
        let (relative, absolute) = worst::<f64>(0.035, 20000, f64::EPSILON, f64::MIN_POSITIVE);
        assert!(relative <= 1.0, "f64 exp: {relative} of its relative bound");
        assert!(
            absolute <= 2.0 + 1.0 / std::f64::consts::E,
            "f64 exp: {absolute} ε"
        );
    }

    #[test]
    fn exp_flushes_far_negative_arguments_to_zero_and_propagates_nan() {
        let mut row = vec![-1e4f32; 40];
        row[3] = f32::NAN;
        let sum = exp_in_place(&mut row, 0.0);
        assert!(sum.is_nan());
        assert_eq!(row[0], 0.0);
        assert!(row[3].is_nan());
    }

    #[test]
    fn degree_zero_and_empty_rows_are_total() {
        // x⁰ = 1 for every x, as powi has it; this used to loop forever.
        let mut row = vec![0.5f64, -2.0, 0.0, 7.0, 1e-300];
        let sums = power_in_place(&mut row, 1.0, 0);
        assert!(row.iter().all(|&w| w == 1.0));
        assert_eq!((sums.sum, sums.abs_sum), (5.0, 5.0));
        assert_eq!(powi(3.0f64, 0), 1.0);
        assert_eq!(row_max::<f32>(&[]), f32::NEG_INFINITY);
        assert_eq!(power_in_place::<f32>(&mut [], 1.0, 0).sum, 0.0);
    }

    #[test]
    #[should_panic(expected = "rank_one_update")]
    fn rank_one_update_rejects_a_state_of_the_wrong_size() {
        rank_one_update(&mut [0.0f64; 5], &[1.0, 2.0], &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn maxima_and_scaling() {
        for len in [1, 7, 16, 17, 50] {
            let x = lcg(len as u64, len);
            let expected_abs = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let expected_max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            assert_eq!(abs_max(&x), expected_abs);
            assert_eq!(row_max(&x), expected_max);
            let mut y = x.clone();
            scale_in_place(&mut y, 3.0);
            assert!(y.iter().zip(&x).all(|(a, b)| *a == 3.0 * b));
        }
        assert_eq!(abs_max::<f32>(&[]), 0.0);
    }

    #[test]
    fn row_dots_match_a_plain_loop_at_awkward_widths() {
        for (rows, width) in [(1, 1), (3, 7), (4, 16), (5, 17), (2, 33), (6, 528)] {
            let m = lcg(rows as u64 * 7 + width as u64, rows * width);
            let x = lcg(width as u64 + 3, width);
            let mut out = vec![0.5; rows];
            add_row_dots(&mut out, &m, &x);
            for (i, o) in out.iter().enumerate() {
                let want: f64 = 0.5 + (0..width).map(|j| m[i * width + j] * x[j]).sum::<f64>();
                assert!((o - want).abs() < 1e-12, "{rows}×{width}");
            }
        }
        // An empty vector adds nothing.
        let mut out = vec![1.0f32; 3];
        add_row_dots(&mut out, &[], &[]);
        assert_eq!(out, [1.0; 3]);
    }

    #[test]
    fn non_finite_scan_finds_the_first_bad_index() {
        let mut x = vec![1.0f32; 10_000];
        assert_eq!(first_non_finite(&x), None);
        x[9_000] = f32::INFINITY;
        x[5_123] = f32::NAN;
        assert_eq!(first_non_finite(&x), Some(5_123));
        let y = [0.0f64, f64::NEG_INFINITY];
        assert_eq!(first_non_finite(&y), Some(1));
    }

    #[test]
    fn rank_one_update_and_weighted_row_sum_match_plain_loops() {
        for (rows, width) in [(1, 1), (3, 7), (5, 8), (17, 65), (4, 130)] {
            let f = lcg(rows as u64, rows);
            let c = lcg(width as u64 + 100, width);
            let start = lcg(7, rows * width);
            // f64 and f32 against an f64 loop.
            let mut state = start.clone();
            rank_one_update(&mut state, &f, &c);
            let mut state32: Vec<f32> = start.iter().map(|&x| x as f32).collect();
            let f32s: Vec<f32> = f.iter().map(|&x| x as f32).collect();
            let c32: Vec<f32> = c.iter().map(|&x| x as f32).collect();
            rank_one_update(&mut state32, &f32s, &c32);
            for l in 0..rows {
                for j in 0..width {
                    let want = start[l * width + j] + f[l] * c[j];
                    assert!((state[l * width + j] - want).abs() < 1e-14);
                    assert!((state32[l * width + j] as f64 - want).abs() < 1e-6);
                }
            }
            let mut y = vec![9.0; width];
            weighted_row_sum(&mut y, &f, &start);
            let mut y32 = vec![9.0f32; width];
            let start32: Vec<f32> = start.iter().map(|&x| x as f32).collect();
            weighted_row_sum(&mut y32, &f32s, &start32);
            for j in 0..width {
                let want: f64 = (0..rows).map(|l| f[l] * start[l * width + j]).sum();
                assert!((y[j] - want).abs() < 1e-13, "{rows}×{width}");
                assert!((y32[j] as f64 - want).abs() < 1e-5, "{rows}×{width}");
            }
        }
    }
}
