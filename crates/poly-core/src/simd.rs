//! Lane-wise SIMD operations for `f32` and `f64` behind one trait, so that every kernel is written
//! once. The lane type is a generic associated type of the pulp instruction set `S`, which lets a
//! kernel generic over the element be called from `WithSimd::with_simd<S>`.

use pulp::Simd;

/// SIMD lanes of one floating-point element type for any pulp instruction set.
pub trait SimdFloat: Copy + Send + Sync + 'static {
    /// A register of lanes of `Self` under instruction set `S`.
    type Lanes<S: Simd>: Copy;

    fn v_splat<S: Simd>(s: S, x: Self) -> Self::Lanes<S>;
    fn v_add<S: Simd>(s: S, a: Self::Lanes<S>, b: Self::Lanes<S>) -> Self::Lanes<S>;
    fn v_sub<S: Simd>(s: S, a: Self::Lanes<S>, b: Self::Lanes<S>) -> Self::Lanes<S>;
    fn v_mul<S: Simd>(s: S, a: Self::Lanes<S>, b: Self::Lanes<S>) -> Self::Lanes<S>;
    /// `a * b + c`, fused where the hardware has FMA.
    fn v_mul_add<S: Simd>(
        s: S,
        a: Self::Lanes<S>,
        b: Self::Lanes<S>,
        c: Self::Lanes<S>,
    ) -> Self::Lanes<S>;
    fn v_max<S: Simd>(s: S, a: Self::Lanes<S>, b: Self::Lanes<S>) -> Self::Lanes<S>;
    fn v_abs<S: Simd>(s: S, a: Self::Lanes<S>) -> Self::Lanes<S>;
    fn v_reduce_sum<S: Simd>(s: S, a: Self::Lanes<S>) -> Self;
    fn v_reduce_max<S: Simd>(s: S, a: Self::Lanes<S>) -> Self;
    fn v_as_simd<S: Simd>(slice: &[Self]) -> (&[Self::Lanes<S>], &[Self]);
    fn v_as_mut_simd<S: Simd>(slice: &mut [Self]) -> (&mut [Self::Lanes<S>], &mut [Self]);
    /// Loads a tail shorter than one register; missing lanes are zero.
    fn v_partial_load<S: Simd>(s: S, slice: &[Self]) -> Self::Lanes<S>;
    fn v_partial_store<S: Simd>(s: S, slice: &mut [Self], v: Self::Lanes<S>);

    /// `2^n` for lanes holding `n + EXP2_MAGIC` (the result of the magic-number rounding in `exp`).
    fn v_exp2_of_rounded<S: Simd>(s: S, t: Self::Lanes<S>) -> Self::Lanes<S>;

    /// `exp` clamps its base-2 exponent here: `MIN_EXP − 2`, where the power of two it builds has a
    /// zero exponent field, i.e. is exactly 0 — so arguments whose `2^n` would fall below the
    /// normal range give 0 (the true value is subnormal or smaller) without a compare and select
    /// per lane.
    const EXP2_MIN_ARG: Self;
    const LOG2E: Self;
    /// `1.5 · 2^mantissa_bits + exponent bias`: adding it rounds to an integer `n` and leaves
    /// `n + bias` in the low mantissa bits, which a shift moves into the exponent field.
    const EXP2_MAGIC: Self;
    /// Coefficients `c_k`, highest degree first, of `2^f ≈ 1 + f·(c_1 + f·(c_2 + …))` on
    /// `|f| ≤ 1/2`.
    const EXP2_POLY: &'static [Self];
    const ZERO: Self;
    const ONE: Self;
}

macro_rules! impl_simd_float {
    ($t:ty, $lanes:ident, $splat:ident, $add:ident, $sub:ident, $mul:ident, $mul_add:ident,
     $max:ident, $abs:ident, $rsum:ident, $rmax:ident, $as_simd:ident,
     $as_mut_simd:ident, $pload:ident, $pstore:ident) => {
        impl SimdFloat for $t {
            type Lanes<S: Simd> = S::$lanes;

            #[inline(always)]
            fn v_splat<S: Simd>(s: S, x: Self) -> S::$lanes {
                s.$splat(x)
            }
            #[inline(always)]
            fn v_add<S: Simd>(s: S, a: S::$lanes, b: S::$lanes) -> S::$lanes {
                s.$add(a, b)
            }
            #[inline(always)]
            fn v_sub<S: Simd>(s: S, a: S::$lanes, b: S::$lanes) -> S::$lanes {
                s.$sub(a, b)
            }
            #[inline(always)]
            fn v_mul<S: Simd>(s: S, a: S::$lanes, b: S::$lanes) -> S::$lanes {
                s.$mul(a, b)
            }
            #[inline(always)]
            fn v_mul_add<S: Simd>(s: S, a: S::$lanes, b: S::$lanes, c: S::$lanes) -> S::$lanes {
                s.$mul_add(a, b, c)
            }
            #[inline(always)]
            fn v_max<S: Simd>(s: S, a: S::$lanes, b: S::$lanes) -> S::$lanes {
                s.$max(a, b)
            }
            #[inline(always)]
            fn v_abs<S: Simd>(s: S, a: S::$lanes) -> S::$lanes {
                s.$abs(a)
            }
            #[inline(always)]
            fn v_reduce_sum<S: Simd>(s: S, a: S::$lanes) -> Self {
                s.$rsum(a)
            }
            #[inline(always)]
            fn v_reduce_max<S: Simd>(s: S, a: S::$lanes) -> Self {
                s.$rmax(a)
            }
            #[inline(always)]
            fn v_as_simd<S: Simd>(slice: &[Self]) -> (&[S::$lanes], &[Self]) {
                S::$as_simd(slice)
            }
            #[inline(always)]
            fn v_as_mut_simd<S: Simd>(slice: &mut [Self]) -> (&mut [S::$lanes], &mut [Self]) {
                S::$as_mut_simd(slice)
            }
            #[inline(always)]
            fn v_partial_load<S: Simd>(s: S, slice: &[Self]) -> S::$lanes {
                s.$pload(slice)
            }
            #[inline(always)]
            fn v_partial_store<S: Simd>(s: S, slice: &mut [Self], v: S::$lanes) {
                s.$pstore(slice, v)
            }
            #[inline(always)]
            fn v_exp2_of_rounded<S: Simd>(s: S, t: S::$lanes) -> S::$lanes {
                <$t as ExpBits>::exp2_bits(s, t)
            }

            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const LOG2E: Self = std::f64::consts::LOG2_E as $t;
            const EXP2_MAGIC: Self =
                1.5 * (1u64 << <$t>::MANTISSA_DIGITS - 1) as $t + (<$t>::MAX_EXP - 1) as $t;
            const EXP2_MIN_ARG: Self = (<$t>::MIN_EXP - 2) as $t;
            const EXP2_POLY: &'static [Self] = <$t as ExpConstants>::POLY;
        }
    };
}

/// The per-type constants of the exp polynomial (the only part that differs between f32 and f64).
trait ExpConstants: Sized + 'static {
    const POLY: &'static [Self];
}

impl ExpConstants for f32 {
    // Minimax for relative error (Lawson's iteration on 20 001 Chebyshev nodes): 0.77·2⁻²³ on
    // |f| ≤ 1/2, ≤ 2 ulp with f32 FMA rounding. The linear coefficient is 3 ulp below ln 2 on
    // purpose (the minimax trade-off), not an approximation of it.
    #[allow(clippy::approx_constant)]
    const POLY: &'static [f32] = &[
        1.326_472_7e-3,
        9.671_513e-3,
        5.550_733_6e-2,
        2.402_224_2e-1,
        6.931_47e-1,
    ];
}

impl ExpConstants for f64 {
    // Taylor coefficients (ln 2)^k / k!, k = 13 … 1: truncation error < 5e-18 on |f| ≤ 1/2.
    const POLY: &'static [f64] = &taylor_exp2::<13>();
}

/// `(ln 2)^k / k!` for `k = N … 1` (highest degree first).
const fn taylor_exp2<const N: usize>() -> [f64; N] {
    let mut c = [0.0; N];
    let mut term = 1.0;
    let mut k = 1;
    while k <= N {
        term = term * std::f64::consts::LN_2 / k as f64;
        c[N - k] = term;
        k += 1;
    }
    c
}

/// Builds `2^n` from `t = n + EXP2_MAGIC`: the low mantissa bits of `t` hold `n + bias`, and
/// the bits above them shift out, so `bits(2^n) = bits(t) · 2^(mantissa bits)`.
trait ExpBits: SimdFloat {
    fn exp2_bits<S: Simd>(s: S, t: Self::Lanes<S>) -> Self::Lanes<S>;
}

impl ExpBits for f32 {
    #[inline(always)]
    fn exp2_bits<S: Simd>(s: S, t: S::f32s) -> S::f32s {
        // `1.5·2²³` has its low 9 bits clear, so only `n + 127` survives the shift.
        const _: () = assert!((1.5f32 * (1u32 << 23) as f32).to_bits() << 23 == 0);
        let bits = s.transmute_u32s_f32s(t);
        s.transmute_f32s_u32s(s.mul_u32s(bits, s.splat_u32s(1 << 23)))
    }
}

impl ExpBits for f64 {
    #[inline(always)]
    fn exp2_bits<S: Simd>(s: S, t: S::f64s) -> S::f64s {
        const _: () = assert!((1.5f64 * (1u64 << 52) as f64).to_bits() << 52 == 0);
        let bits = s.transmute_u64s_f64s(t);
        s.transmute_f64s_u64s(s.mul_u64s(bits, s.splat_u64s(1 << 52)))
    }
}

impl_simd_float!(
    f32,
    f32s,
    splat_f32s,
    add_f32s,
    sub_f32s,
    mul_f32s,
    mul_add_f32s,
    max_f32s,
    abs_f32s,
    reduce_sum_f32s,
    reduce_max_f32s,
    as_simd_f32s,
    as_mut_simd_f32s,
    partial_load_f32s,
    partial_store_f32s
);
impl_simd_float!(
    f64,
    f64s,
    splat_f64s,
    add_f64s,
    sub_f64s,
    mul_f64s,
    mul_add_f64s,
    max_f64s,
    abs_f64s,
    reduce_sum_f64s,
    reduce_max_f64s,
    as_simd_f64s,
    as_mut_simd_f64s,
    partial_load_f64s,
    partial_store_f64s
);

/// Vectorized `e^x` (softmax's arguments after subtracting the row maximum, so `x ≤ 0`), as
/// `2^(x·log2 e)`: the exponent rounds to `n + f` with `|f| ≤ 1/2`, a degree-5 (f32) or 13 (f64)
/// polynomial gives `2^f`, and `n` goes into the exponent field.
///
/// Rounding `x·log2 e` costs a relative error of up to `|x|·ε` (so `(2 + |x|)·ε` in all, and at
/// most `(2 + 1/e)·ε` absolute, the weights being ≤ 1) — against a two-step Cody–Waite reduction
/// this saves two FMAs per register, which bound this loop. Exactly 0 where the exponent rounds
/// below the normal range, subnormal (correctly scaled) just above it; NaN stays NaN. Positive `x`
/// keep the same bound while the result is finite (x < 88 in f32); beyond, the result is
/// meaningless (no caller goes there: softmax passes `x ≤ 0`, FAVOR+ `x ≤ 40`).
#[inline(always)]
pub fn exp<S: Simd, T: SimdFloat>(s: S, x: T::Lanes<S>) -> T::Lanes<S> {
    let y = T::v_mul(s, x, T::v_splat(s, T::LOG2E));
    // y second: on x86 `max` returns its second operand when either is NaN, so NaN propagates.
    let clamped = T::v_max(s, T::v_splat(s, T::EXP2_MIN_ARG), y);
    let magic = T::v_splat(s, T::EXP2_MAGIC);
    let t = T::v_add(s, clamped, magic);
    let n = T::v_sub(s, t, magic);
    let f = T::v_sub(s, clamped, n);
    let mut p = T::v_splat(s, T::EXP2_POLY[0]);
    for &c in &T::EXP2_POLY[1..] {
        p = T::v_mul_add(s, p, f, T::v_splat(s, c));
    }
    let two_f = T::v_mul_add(s, p, f, T::v_splat(s, T::ONE));
    // At the clamp, n = MIN_EXP − 2 and 2^n is built as +0.0, so far-negative x give exactly 0.
    T::v_mul(s, two_f, T::v_exp2_of_rounded(s, t))
}
