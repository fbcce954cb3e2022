//! candle on the CPU: the peer an ML-systems engineer in Rust would otherwise reach for.

use super::Peer;
use crate::scenario::Scenario;
use crate::timing::{Timing, time_runs};
use candle_core::{Device, Tensor as CTensor};
use candle_nn::attention::{AttnMask, flash_attn};
use poly_core::{Error, Tensor};

fn peer_error(e: candle_core::Error) -> Error {
    Error::InvalidParameter {
        name: "candle",
        value: e.to_string(),
        expected: "candle to run the scenario",
    }
}

fn to_candle(t: &Tensor<f32>) -> Result<CTensor, candle_core::Error> {
    CTensor::from_slice(t.as_slice(), t.shape().to_vec(), &Device::Cpu)
}

pub fn time(
    peer: Peer,
    scenario: &Scenario,
    q: &Tensor<f32>,
    k: &Tensor<f32>,
    v: &Tensor<f32>,
    repeat: usize,
) -> Result<Timing, Error> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(scenario.threads.max(1))
        .build()
        .map_err(|e| Error::InvalidParameter {
            name: "threads",
            value: e.to_string(),
            expected: "a rayon pool",
        })?;
    pool.install(|| run(peer, scenario, q, k, v, repeat).map_err(peer_error))
}

fn run(
    peer: Peer,
    scenario: &Scenario,
    q: &Tensor<f32>,
    k: &Tensor<f32>,
    v: &Tensor<f32>,
    repeat: usize,
) -> Result<Timing, candle_core::Error> {
    let (q, k, v) = (to_candle(q)?, to_candle(k)?, to_candle(v)?);
    match peer {
        Peer::CandleFlashSoftmax => {
            // flash_attn takes (B, S, H, D); the layout change happens before the timing.
            let [q, k, v] = [&q, &k, &v].map(|t| t.transpose(1, 2).and_then(|t| t.contiguous()));
            let (q, k, v) = (q?, k?, v?);
            let mask = if scenario.causal {
                AttnMask::causal()
            } else {
                AttnMask::None
            };
            time_candle(repeat, || {
                flash_attn::<f32>(&q, &k, &v, 1.0, mask.clone(), None, None)
            })
        }
        Peer::CandlePolynomial { degree } => {
            let n = scenario.n;
            let mask = if scenario.causal {
                let ones: Vec<f32> = (0..n * n)
                    .map(|i| if i % n <= i / n { 1.0 } else { 0.0 })
                    .collect();
                Some(CTensor::from_vec(ones, (n, n), &Device::Cpu)?)
            } else {
                None
            };
            let kt = k.transpose(2, 3)?.contiguous()?;
            let step = || -> Result<CTensor, candle_core::Error> {
                let mut w = q.matmul(&kt)?.powf(degree as f64)?;
                if let Some(mask) = &mask {
                    w = w.broadcast_mul(mask)?;
                }
                let sums = w.sum_keepdim(3)?;
                w.broadcast_div(&sums)?.matmul(&v)
            };
            time_candle(repeat, step)
        }
    }
}

/// [`time_runs`] of a candle computation, its output dropped.
fn time_candle(
    repeat: usize,
    mut f: impl FnMut() -> Result<CTensor, candle_core::Error>,
) -> Result<Timing, candle_core::Error> {
    time_runs(repeat, || f().map(drop))
}
