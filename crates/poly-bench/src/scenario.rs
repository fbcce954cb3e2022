//! A benchmark scenario — kernel × mask × n × d × batch·heads × threads × sketch parameters — and
//! its FLOP model and in-process timing.

use crate::timing::{Timing, time_each, time_runs};
use poly_core::{
    AttentionConfig, Dims, Error, Kernel, Mask, Normalization, Tensor, Threads, attention,
    exact_attention_flops,
};
use poly_sketch::{
    LinearAttentionConfig, MapKind, MapSpec, linear_attention, linear_attention_flops,
};
use std::num::NonZeroUsize;

/// What computes the attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// polyattn's exact engine.
    Exact(Kernel),
    /// polyattn's linear engine with a feature map (`local_exact`: the mixed variant).
    Sketched {
        /// The feature map.
        map: MapSpec,
        /// Exact weights inside the diagonal blocks.
        local_exact: bool,
    },
    /// A peer library's implementation (only with the matching cargo feature).
    Peer(crate::peers::Peer),
}

impl Method {
    /// PolySketchFormer's map: self-tensored PolySketch of degree 4, r = 32.
    pub const POLYSKETCH_4_MAP: MapSpec = MapSpec::new(MapKind::PolySketch, 4, 32, 0);

    /// PolySketchFormer's setting: that map with sketched blocks below the diagonal.
    pub const POLYSKETCH_4: Method = Method::Sketched {
        map: Self::POLYSKETCH_4_MAP,
        local_exact: false,
    };

    /// A short name for tables and CSV files.
    pub fn label(&self) -> String {
        match self {
            Method::Exact(Kernel::Polynomial { degree }) => format!("poly{degree}"),
            Method::Exact(Kernel::Softmax) => "softmax".into(),
            Method::Exact(other) => format!("{other:?}"),
            Method::Sketched { map, local_exact } => {
                let mixed = if *local_exact { "+local" } else { "" };
                match map.kind {
                    MapKind::Favor => format!("favor_m{}{mixed}", map.sketch_dim),
                    MapKind::Exact2 => format!("exact2{mixed}"),
                    kind => format!("{}{}_r{}{mixed}", kind.name(), map.degree, map.sketch_dim),
                }
            }
            Method::Peer(peer) => peer.label().into(),
        }
    }

    /// Whether the method's cost is linear in n.
    pub fn is_linear(&self) -> bool {
        matches!(self, Method::Sketched { .. })
    }
}

/// One measured configuration. Inputs are f32 uniform in [−1, 1] with q and k LayerNormed by the
/// kernels that PolySketchFormer normalizes (sketched ones), `d_v = d`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scenario {
    /// What is timed.
    pub method: Method,
    /// Whether the causal mask is applied.
    pub causal: bool,
    /// Sequence length (n_q = n_k).
    pub n: usize,
    /// Head dimension (d = d_v).
    pub d: usize,
    /// Number of (batch, head) pairs.
    pub batch_heads: usize,
    /// Threads of the run.
    pub threads: usize,
    /// Block size of the block-causal algorithm (sketched kernels).
    pub block: usize,
}

impl Scenario {
    /// The problem's dimensions.
    pub fn dims(&self) -> Dims {
        Dims::new(1, self.batch_heads, self.n, self.n, self.d, self.d)
    }

    /// The mask of `causal`.
    pub fn mask(&self) -> Mask {
        if self.causal {
            Mask::Causal
        } else {
            Mask::None
        }
    }

    /// The exact engine's configuration for `kernel`.
    pub fn exact_config(&self, kernel: Kernel) -> AttentionConfig {
        AttentionConfig::new(kernel)
            .with_mask(self.mask())
            .with_threads(self.thread_setting())
    }

    /// The linear engine's configuration for `map` (LayerNorm on). `Sum` normalization for maps
    /// whose weights cannot be negative; the signed sketches are timed without a normalizer,
    /// because on random inputs their `Sum` normalizers cancel and are refused (docs/math.md
    /// §4.5) — the work differs only by the normalizer's division.
    pub fn linear_config<T: poly_core::Element>(
        &self,
        map: &dyn poly_sketch::FeatureMap<T>,
        local_exact: bool,
    ) -> LinearAttentionConfig {
        let normalization = if map.nonnegative_weights() {
            Normalization::Sum
        } else {
            Normalization::None
        };
        LinearAttentionConfig::default()
            .with_mask(self.mask())
            .with_block(self.block)
            .with_normalization(normalization)
            .with_layernorm(true)
            .with_local_exact(local_exact)
            .with_threads(self.thread_setting())
    }

    fn thread_setting(&self) -> Threads {
        Threads::Exact(NonZeroUsize::new(self.threads.max(1)).expect("≥ 1"))
    }

    /// Model FLOPs (docs/math.md §2.2 for exact kernels, §4 for sketched ones).
    pub fn flops(&self) -> f64 {
        let dims = self.dims();
        match self.method {
            Method::Exact(_) | Method::Peer(_) => exact_attention_flops(&dims, self.mask()),
            Method::Sketched { map, local_exact } => match map.build::<f32>(self.d) {
                Ok(m) => linear_attention_flops(
                    &dims,
                    m.as_ref(),
                    &self.linear_config(m.as_ref(), local_exact),
                ),
                Err(_) => f64::NAN,
            },
        }
    }

    /// The inputs q, k, v of this scenario (fixed seeds).
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] when the shape exceeds the memory budget.
    pub fn inputs(&self) -> Result<[Tensor<f32>; 3], Error> {
        let shape = [1, self.batch_heads, self.n, self.d];
        // The budget is checked here, where the typed error can be returned; with the shape
        // within it, the generator's only other refusal (a bad range) cannot happen.
        poly_core::check_elements("scenario inputs", &shape, size_of::<f32>())?;
        Ok([1, 2, 3].map(|seed| {
            poly_data::synthetic::uniform(shape, -1.0, 1.0, seed)
                .expect("checked shape, fixed range")
        }))
    }

    /// Times `repeat` runs after a warm-up (maps are drawn once, outside the timing).
    ///
    /// # Errors
    /// The kernel's error, or a peer that is not compiled in.
    pub fn time(&self, repeat: usize) -> Result<Timing, Error> {
        match self.prepare()? {
            Prepared::Own(call) => time_runs(repeat, call),
            Prepared::Peer(peer, [q, k, v]) => peer.time(self, &q, &k, &v, repeat),
        }
    }

    /// Times `scenarios` against each other, interleaved round by round
    /// ([`crate::timing::time_interleaved`]), so that their ratios (one thread count against
    /// another) do not depend on which of them a drift of the machine hit. Peers, which time
    /// themselves, make the scenarios run one after the other.
    ///
    /// # Errors
    /// As [`Scenario::time`].
    pub fn time_interleaved(scenarios: &[Scenario], repeat: usize) -> Result<Vec<Timing>, Error> {
        let one_by_one = || scenarios.iter().map(|s| s.time(repeat)).collect();
        // Checked before anything is prepared, so no inputs are drawn twice.
        if scenarios
            .iter()
            .any(|s| matches!(s.method, Method::Peer(_)))
        {
            return one_by_one();
        }
        let mut own = Vec::with_capacity(scenarios.len());
        for s in scenarios {
            match s.prepare()? {
                Prepared::Own(call) => own.push(call),
                Prepared::Peer(..) => return one_by_one(),
            }
        }
        time_each(&mut own, repeat, |call| call())
    }

    /// This scenario's inputs (and map) drawn, ready to be called.
    fn prepare(&self) -> Result<Prepared, Error> {
        let [q, k, v] = self.inputs()?;
        Ok(match self.method {
            Method::Exact(kernel) => {
                let cfg = self.exact_config(kernel);
                Prepared::Own(Box::new(move || {
                    attention(q.view(), k.view(), v.view(), &cfg).map(drop)
                }))
            }
            Method::Sketched { map, local_exact } => {
                let map = map.build::<f32>(self.d)?;
                let cfg = self.linear_config(map.as_ref(), local_exact);
                Prepared::Own(Box::new(move || {
                    linear_attention(q.view(), k.view(), v.view(), map.as_ref(), &cfg).map(drop)
                }))
            }
            Method::Peer(peer) => Prepared::Peer(peer, [q, k, v]),
        })
    }
}

/// A scenario ready to run: polyattn's own engines as a call; a peer, which times itself, with
/// its inputs.
enum Prepared {
    Own(Box<dyn FnMut() -> Result<(), Error>>),
    Peer(crate::peers::Peer, [Tensor<f32>; 3]),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_models_follow_the_kernels() {
        let exact = Scenario {
            method: Method::Exact(Kernel::Polynomial { degree: 4 }),
            causal: false,
            n: 1024,
            d: 64,
            batch_heads: 2,
            threads: 1,
            block: 256,
        };
        // 2·(d + d_v) per query–key pair.
        assert_eq!(exact.flops(), 2.0 * 1024.0 * 1024.0 * 256.0);
        let causal = Scenario {
            causal: true,
            ..exact
        };
        assert!(causal.flops() < 0.51 * exact.flops() && causal.flops() > 0.49 * exact.flops());
        // docs/math.md §4.2: n = 32768, r = 32, d = d_v = 64, b = 256 is about 10.8 GFLOP per head.
        let sketch = Scenario {
            method: Method::POLYSKETCH_4,
            causal: true,
            n: 32768,
            batch_heads: 1,
            ..exact
        };
        assert!(
            (sketch.flops() / 1e9 - 10.8).abs() < 0.2,
            "{}",
            sketch.flops() / 1e9
        );
        // Linear in n.
        let half = Scenario { n: 16384, ..sketch };
        assert!((sketch.flops() / half.flops() - 2.0).abs() < 1e-9);
        assert_eq!(Method::POLYSKETCH_4.label(), "polysketch4_r32");
    }

    #[test]
    fn timing_a_scenario_runs_it() {
        let s = Scenario {
            method: Method::POLYSKETCH_4,
            causal: true,
            n: 300,
            d: 16,
            batch_heads: 1,
            threads: 1,
            block: 64,
        };
        let t = s.time(2).unwrap();
        assert_eq!(t.runs, 2);
        assert!(t.min > 0.0 && t.min <= t.median);
        let peer = Scenario {
            method: Method::Peer(crate::peers::Peer::CandleFlashSoftmax),
            ..s
        };
        // Without the `candle` feature the peer is an error, not a silent zero.
        assert_eq!(peer.time(1).is_err(), !cfg!(feature = "candle"));
        // Interleaved: one timing per scenario, in their order, each of `repeat` runs; a peer
        // among them sends every scenario through its own timing (an error without candle).
        let exact = Scenario {
            method: Method::Exact(Kernel::Softmax),
            ..s
        };
        let both = Scenario::time_interleaved(&[s, exact], 3).unwrap();
        assert_eq!(both.iter().map(|t| t.runs).collect::<Vec<_>>(), [3, 3]);
        assert!(both.iter().all(|t| t.min > 0.0 && t.min <= t.median));
        let with_peer = Scenario::time_interleaved(&[s, peer], 1);
        assert_eq!(with_peer.is_err(), !cfg!(feature = "candle"));
    }
}
