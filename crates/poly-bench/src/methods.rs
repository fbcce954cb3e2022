//! The methods the sweeps know by name (command-line spellings).

use crate::peers::Peer;
use crate::scenario::Method;
use poly_core::Kernel;
use poly_sketch::{MapKind, MapSpec};

/// A named method: exact kernels, the sketch families at their benchmark sizes, and peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodName {
    /// Exact polynomial attention, β = 4.
    Poly4,
    /// Exact softmax attention.
    Softmax,
    /// Self-tensored PolySketch, p = 4, r = 32 (m = 528 packed features).
    Polysketch,
    /// The same with exact diagonal blocks (the mixed variant).
    PolysketchLocal,
    /// TensorSketch, p = 4, D = 528.
    Tensorsketch,
    /// Random Maclaurin, p = 4, D = 528.
    Maclaurin,
    /// FAVOR+ (softmax), m = 528.
    Favor,
    /// candle's CPU flash attention (softmax), `--features candle`.
    CandleFlash,
    /// candle op-by-op polynomial attention (β = 4), `--features candle`.
    CandlePoly,
}

/// Feature count of the non-PolySketch families: the self-tensored sketch's `r(r+1)/2` at r = 32,
/// so that every family carries the same state size.
pub const FEATURES: usize = 528;

impl MethodName {
    /// The method this name stands for.
    pub fn method(self) -> Method {
        let sketch = |kind, degree, sketch_dim| Method::Sketched {
            map: MapSpec::new(kind, degree, sketch_dim, 0),
            local_exact: false,
        };
        match self {
            MethodName::Poly4 => Method::Exact(Kernel::Polynomial { degree: 4 }),
            MethodName::Softmax => Method::Exact(Kernel::Softmax),
            MethodName::Polysketch => Method::POLYSKETCH_4,
            MethodName::PolysketchLocal => Method::Sketched {
                map: Method::POLYSKETCH_4_MAP,
                local_exact: true,
            },
            MethodName::Tensorsketch => sketch(MapKind::TensorSketch, 4, FEATURES),
            MethodName::Maclaurin => sketch(MapKind::RandomMaclaurin, 4, FEATURES),
            MethodName::Favor => sketch(MapKind::Favor, 1, FEATURES),
            MethodName::CandleFlash => Method::Peer(Peer::CandleFlashSoftmax),
            MethodName::CandlePoly => Method::Peer(Peer::CandlePolynomial { degree: 4 }),
        }
    }
}
