//! Peer implementations run in the same process with the same thread count, behind cargo
//! features (off by default): `candle` adds candle's CPU flash attention (softmax) and the obvious
//! candle op-by-op polynomial attention (matmul, powf, normalize, matmul).

use crate::scenario::Scenario;
use crate::timing::Timing;
use poly_core::{Error, Tensor};

#[cfg(feature = "candle")]
mod candle;

/// A peer's attention kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `candle_nn::attention::flash_attn` (softmax, scale 1).
    CandleFlashSoftmax,
    /// candle tensors: `(Q Kᵀ)^β`, masked, divided by its row sums, times V.
    CandlePolynomial {
        /// The polynomial degree.
        degree: u32,
    },
}

impl Peer {
    /// The label of tables and plots.
    pub fn label(&self) -> &'static str {
        match self {
            Peer::CandleFlashSoftmax => "candle_flash_softmax",
            Peer::CandlePolynomial { .. } => "candle_poly4_ops",
        }
    }

    /// The peers compiled into this build.
    pub fn available() -> Vec<Peer> {
        if cfg!(feature = "candle") {
            vec![
                Peer::CandleFlashSoftmax,
                Peer::CandlePolynomial { degree: 4 },
            ]
        } else {
            Vec::new()
        }
    }

    /// Times the peer on the scenario's inputs.
    ///
    /// # Errors
    /// The peer's own error, or [`Error::InvalidParameter`] when it is not compiled in.
    pub fn time(
        &self,
        scenario: &Scenario,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        repeat: usize,
    ) -> Result<Timing, Error> {
        #[cfg(feature = "candle")]
        {
            candle::time(*self, scenario, q, k, v, repeat)
        }
        #[cfg(not(feature = "candle"))]
        {
            let _ = (scenario, q, k, v, repeat);
            Err(Error::InvalidParameter {
                name: "peer",
                value: self.label().into(),
                expected: "a build with --features candle",
            })
        }
    }
}
