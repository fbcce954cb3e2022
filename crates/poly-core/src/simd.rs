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

    /// `2^n` for lanes holding `n + EXP_MAGIC` (the result of the magic-number rounding in `exp`).
    fn v_exp2_of_rounded<S: Simd>(s: S, t: Self::Lanes<S>) -> Self::Lanes<S>;

    /// `exp` clamps its argument here: `(MIN_EXP − 2)·ln 2`, where the power of two it builds
    /// has a zero exponent field, i.e. is exactly 0 — so arguments whose `2^n` would fall below
    /// the normal range give 0 (the true value is subnormal or smaller) without a compare and
    /// select per lane.
    const EXP_MIN_ARG: Self;
    const LOG2E: Self;
    /// `−ln 2 = NEG_LN2_HI + NEG_LN2_LO` with the high part exact in few bits (Cody–Waite).
    const NEG_LN2_HI: Self;
    const NEG_LN2_LO: Self;
    /// `1.5 · 2^mantissa_bits`: adding it rounds to an integer held in the low mantissa bits.
    const EXP_MAGIC: Self;
    /// Coefficients (highest degree first) of `P` in `e^r ≈ 1 + r + r²·P(r)` on `|r| ≤ ln2/2`.
    const EXP_POLY: &'static [Self];
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
            const EXP_MAGIC: Self = 1.5 * (1u64 << <$t>::MANTISSA_DIGITS - 1) as $t;
            const EXP_MIN_ARG: Self = (<$t>::MIN_EXP - 2) as $t * std::f64::consts::LN_2 as $t;
            const EXP_POLY: &'static [Self] = <$t as ExpConstants>::POLY;
            const NEG_LN2_HI: Self = -<$t as ExpConstants>::LN2_HI;
            const NEG_LN2_LO: Self = -<$t as ExpConstants>::LN2_LO;
        }
    };
}

/// The per-type constants of the exp polynomial (the only part that differs between f32 and f64).
trait ExpConstants: Sized + 'static {
    const POLY: &'static [Self];
    const LN2_HI: Self;
    const LN2_LO: Self;
}

impl ExpConstants for f32 {
    // Cephes expf minimax coefficients: ≤ 1 ulp on |r| ≤ ln2/2.
    const POLY: &'static [f32] = &[
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
}

impl ExpConstants for f64 {
    // Taylor coefficients 1/13! … 1/2!: truncation error r^14/14! < 5e-18 on |r| ≤ ln2/2.
    const POLY: &'static [f64] = &[
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        1.0 / 2.0,
    ];
    const LN2_HI: f64 = 6.931_457_519_531_25e-1;
    const LN2_LO: f64 = 1.428_606_820_309_417_3e-6;
}

/// Builds `2^n` from `t = n + EXP_MAGIC` by moving the integer from the low mantissa bits into the
/// exponent field: `bits(2^n) = (bits(t) − bits(MAGIC) + bias) · 2^(mantissa bits)`.
trait ExpBits: SimdFloat {
    fn exp2_bits<S: Simd>(s: S, t: Self::Lanes<S>) -> Self::Lanes<S>;
}

impl ExpBits for f32 {
    #[inline(always)]
    fn exp2_bits<S: Simd>(s: S, t: S::f32s) -> S::f32s {
        let offset = Self::EXP_MAGIC.to_bits().wrapping_sub(127);
        let biased = s.sub_u32s(s.transmute_u32s_f32s(t), s.splat_u32s(offset));
        s.transmute_f32s_u32s(s.mul_u32s(biased, s.splat_u32s(1 << 23)))
    }
}

impl ExpBits for f64 {
    #[inline(always)]
    fn exp2_bits<S: Simd>(s: S, t: S::f64s) -> S::f64s {
        let offset = Self::EXP_MAGIC.to_bits().wrapping_sub(1023);
        let biased = s.sub_u64s(s.transmute_u64s_f64s(t), s.splat_u64s(offset));
        s.transmute_f64s_u64s(s.mul_u64s(biased, s.splat_u64s(1 << 52)))
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

/// Vectorized `e^x` for `x ≤ 0` (softmax arguments after subtracting the row maximum) (Cody–Waite range reduction + polynomial):
/// ≤ 2 ulp for f32, a few ulp for f64 where the result is normal; exactly 0 where `x·log2(e)`
/// rounds to the exponent below the normal range, subnormal (correctly scaled) just above it.
#[inline(always)]
pub fn exp<S: Simd, T: SimdFloat>(s: S, x: T::Lanes<S>) -> T::Lanes<S> {
    let min_arg = T::v_splat(s, T::EXP_MIN_ARG);
    // x second: on x86 `max` returns its second operand when either is NaN, so NaN propagates.
    let clamped = T::v_max(s, min_arg, x);
    let magic = T::v_splat(s, T::EXP_MAGIC);
    let t = T::v_mul_add(s, clamped, T::v_splat(s, T::LOG2E), magic);
    let n = T::v_sub(s, t, magic);
    // r = x − n·ln2, in two steps so that n·LN2_HI is exact.
    let r = T::v_mul_add(s, n, T::v_splat(s, T::NEG_LN2_HI), clamped);
    let r = T::v_mul_add(s, n, T::v_splat(s, T::NEG_LN2_LO), r);
    let mut p = T::v_splat(s, T::EXP_POLY[0]);
    for &c in &T::EXP_POLY[1..] {
        p = T::v_mul_add(s, p, r, T::v_splat(s, c));
    }
    // 1 + r + r²·P = 1 + r·(1 + r·P): two more Horner steps, one operation fewer than forming r²
    // (the FMA units bound this loop).
    let one = T::v_splat(s, T::ONE);
    let e_r = T::v_mul_add(s, T::v_mul_add(s, p, r, one), r, one);
    // At the clamp, n = MIN_EXP − 2 and 2^n is built as +0.0, so far-negative x give exactly 0.
    T::v_mul(s, e_r, T::v_exp2_of_rounded(s, t))
}
