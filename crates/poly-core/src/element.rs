//! The element types the engine computes in: `f32` (fast path) and `f64` (accuracy path).

use crate::config::AttentionConfig;
use crate::error::Result;
use crate::sequences::Layout;
use crate::simd::SimdFloat;
use crate::tensor::{Tensor, TensorRef};

/// A floating-point element type of attention tensors.
///
/// Implemented for `f32` and `f64`. Bundles what the engine needs: faer GEMMs
/// (`faer::traits::ComplexField`), pulp SIMD lanes ([`SimdFloat`]) and conversions through `f64`.
pub trait Element:
    faer::traits::RealField
    + SimdFloat
    + Copy
    + Default
    + PartialOrd
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + 'static
{
    /// `"f32"` or `"f64"`, as used by the CLI and records.
    const NAME: &'static str;
    /// Rows whose normalizer satisfies `|Σ w| ≤ tol · Σ |w|` are rejected as ill-conditioned: the
    /// output's relative error would exceed roughly `ε · √n / tol`, i.e. it would be mostly noise.
    const NORMALIZER_TOLERANCE: f64;

    /// The nearest value of this type.
    fn from_f64(x: f64) -> Self;
    /// The exact value as f64.
    fn to_f64(self) -> f64;

    /// [`crate::attention`] for this type, compiled once in poly-core (call `attention` instead).
    #[doc(hidden)]
    fn attention_compiled(
        q: TensorRef<'_, Self>,
        k: TensorRef<'_, Self>,
        v: TensorRef<'_, Self>,
        cfg: &AttentionConfig,
        layout: Layout<'_>,
    ) -> Result<Tensor<Self>>;

    /// [`crate::attention_into`] for this type, compiled once in poly-core.
    #[doc(hidden)]
    fn attention_into_compiled(
        q: TensorRef<'_, Self>,
        k: TensorRef<'_, Self>,
        v: TensorRef<'_, Self>,
        cfg: &AttentionConfig,
        layout: Layout<'_>,
        out: &mut [Self],
    ) -> Result<()>;
}

/// The monomorphic entry points of one element type: non-generic functions of this crate, which
/// downstream crates link to instead of compiling the engine again.
macro_rules! compiled_entry_points {
    ($t:ty) => {
        fn attention_compiled(
            q: TensorRef<'_, $t>,
            k: TensorRef<'_, $t>,
            v: TensorRef<'_, $t>,
            cfg: &AttentionConfig,
            layout: Layout<'_>,
        ) -> Result<Tensor<$t>> {
            crate::engine::attention_generic(q, k, v, cfg, layout)
        }
        fn attention_into_compiled(
            q: TensorRef<'_, $t>,
            k: TensorRef<'_, $t>,
            v: TensorRef<'_, $t>,
            cfg: &AttentionConfig,
            layout: Layout<'_>,
            out: &mut [$t],
        ) -> Result<()> {
            crate::engine::attention_into_generic(q, k, v, cfg, layout, out)
        }
    };
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    const NORMALIZER_TOLERANCE: f64 = 1e-3;

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    compiled_entry_points!(f32);
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    const NORMALIZER_TOLERANCE: f64 = 1e-8;

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    compiled_entry_points!(f64);
}
