//! Attention configuration as data: kernel, mask, normalization, score scale, LayerNorm, threads.
//! A configuration is validated once, up front, by [`AttentionConfig::validate`].

use crate::error::{Error, Result};
use std::num::NonZeroUsize;

/// The weight function applied to each score `s = scale · q·k`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Kernel {
    /// `w = s^degree`, any integer degree ≥ 1 (evaluated overflow-free, see docs/math.md §2.3).
    Polynomial {
        /// The degree β ≥ 1.
        degree: u32,
    },
    /// `w = exp(s)` (evaluated relative to the running row maximum).
    Softmax,
}

/// Which keys each query sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mask {
    /// Every query sees every key.
    None,
    /// Query `i` sees key `j` iff `j ≤ i + (n_k − n_q)`: queries are aligned to the last keys.
    Causal,
}

/// How the weighted sum of values is normalized.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Normalization {
    /// `o = Σ w v / Σ w` (the D⁻¹ of Song, Xu, Yin).
    ///
    /// Rows whose normalizer is zero or ill-conditioned are rejected with an error: with `tol`
    /// = [`Element::NORMALIZER_TOLERANCE`](crate::Element::NORMALIZER_TOLERANCE) (1e-3 for f32,
    /// 1e-8 for f64), a row fails when `|Σ w| ≤ tol · Σ |w|`. Even degrees and softmax only fail
    /// when every visible score is zero.
    Sum,
    /// `o = Σ w v / (c + Σ w)` (PolySketchFormer's form, usually `c = 1`). Same tolerance as `Sum`.
    OnePlusSum(f64),
    /// `o = Σ w v`; an error if the result overflows the element type.
    None,
}

/// How many threads the engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Threads {
    /// The current rayon pool (`RAYON_NUM_THREADS` or the caller's `ThreadPool::install`).
    #[default]
    Global,
    /// A dedicated pool of exactly this many threads.
    Exact(NonZeroUsize),
}

/// Everything that defines one attention computation besides its tensors.
///
/// # Example
/// ```
/// use poly_core::{AttentionConfig, Mask, Normalization};
/// let cfg = AttentionConfig::polynomial(4)
///     .with_mask(Mask::Causal)
///     .with_normalization(Normalization::OnePlusSum(1.0));
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct AttentionConfig {
    /// The weight function.
    pub kernel: Kernel,
    /// Which keys each query sees.
    pub mask: Mask,
    /// How the weighted sum of values is normalized.
    pub normalization: Normalization,
    /// Multiplies `q·k`. `None` means the kernel's default: 1 for polynomials, `1/√d` for softmax.
    pub scale: Option<f64>,
    /// LayerNorm each q and k row over the head dimension (mean 0, variance 1, eps 1e-5, no affine)
    /// before scoring, as PolySketchFormer does.
    pub layernorm: bool,
    /// How many threads run the engine.
    pub threads: Threads,
    /// Sliding-window (local) attention: query i, aligned to key position i' = i + n_k − n_q,
    /// sees keys j with i' − w < j ≤ i' (causal) or |i' − j| < w (no mask). `None`: no window.
    pub window: Option<usize>,
}

/// LayerNorm epsilon (docs/math.md §1).
pub const LAYERNORM_EPS: f64 = 1e-5;

impl AttentionConfig {
    /// Attention with `kernel`, non-causal, `Sum` normalization, the kernel's default scale, no
    /// LayerNorm, the global rayon pool.
    pub fn new(kernel: Kernel) -> Self {
        AttentionConfig {
            kernel,
            mask: Mask::None,
            normalization: Normalization::Sum,
            scale: None,
            layernorm: false,
            threads: Threads::Global,
            window: None,
        }
    }

    /// Polynomial attention of `degree`, non-causal, `Sum` normalization, scale 1.
    pub fn polynomial(degree: u32) -> Self {
        Self::new(Kernel::Polynomial { degree })
    }

    /// Softmax attention, non-causal, scale `1/√d`.
    pub fn softmax() -> Self {
        Self::new(Kernel::Softmax)
    }

    /// The same configuration with another mask.
    pub fn with_mask(self, mask: Mask) -> Self {
        AttentionConfig { mask, ..self }
    }
    /// The same configuration with another normalization.
    pub fn with_normalization(self, normalization: Normalization) -> Self {
        AttentionConfig {
            normalization,
            ..self
        }
    }
    /// The same configuration with `q·k` multiplied by `scale`.
    pub fn with_scale(self, scale: f64) -> Self {
        AttentionConfig {
            scale: Some(scale),
            ..self
        }
    }
    /// The same configuration with LayerNorm of q and k on or off.
    pub fn with_layernorm(self, layernorm: bool) -> Self {
        AttentionConfig { layernorm, ..self }
    }
    /// The same configuration on another thread count.
    pub fn with_threads(self, threads: Threads) -> Self {
        AttentionConfig { threads, ..self }
    }
    /// The same configuration with a sliding window of `window` keys (see [`Self::window`]).
    pub fn with_window(self, window: usize) -> Self {
        AttentionConfig {
            window: Some(window),
            ..self
        }
    }

    /// The scale actually applied to `q·k` for head dimension `dim`.
    pub fn effective_scale(&self, dim: usize) -> f64 {
        self.scale.unwrap_or(match self.kernel {
            Kernel::Polynomial { .. } => 1.0,
            Kernel::Softmax => 1.0 / (dim as f64).sqrt(),
        })
    }

    /// Checks every parameter's domain.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for degree 0, a non-finite or zero scale, or a negative or
    /// non-finite `OnePlusSum` constant.
    pub fn validate(&self) -> Result<()> {
        if let Kernel::Polynomial { degree: 0 } = self.kernel {
            return Err(Error::InvalidParameter {
                name: "degree",
                value: "0".into(),
                expected: "an integer ≥ 1",
            });
        }
        if let Some(scale) = self.scale
            && !(scale.is_finite() && scale != 0.0)
        {
            return Err(Error::InvalidParameter {
                name: "scale",
                value: scale.to_string(),
                expected: "a finite, non-zero number",
            });
        }
        if let Normalization::OnePlusSum(c) = self.normalization
            && !(c.is_finite() && c >= 0.0)
        {
            return Err(Error::InvalidParameter {
                name: "norm-bias",
                value: c.to_string(),
                expected: "a finite number ≥ 0",
            });
        }
        if self.window == Some(0) {
            return Err(Error::InvalidParameter {
                name: "window",
                value: "0".into(),
                expected: "a window of ≥ 1 keys",
            });
        }
        Ok(())
    }
}
