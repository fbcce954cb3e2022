//! The single-layer attention network of Song, Xu, Yin: `C = D⁻¹ (A1 X A2ᵀ)^{∘β} A3 Y`, readout
//! `T = Σ_{j,i} C_{j,i}`, classifier `1[T > τ]` (docs/math.md §5.1), computed by poly-core's exact
//! engine in f64 (overflow-proof for any degree).

use poly_core::{AttentionConfig, Error, Tensor, attention};
use poly_data::datasets::Sample;

/// The weight function of the network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NetworkKernel {
    /// `(score)^β`.
    Polynomial(u32),
    /// `exp(scale · score)`.
    Softmax {
        /// Multiplies the score.
        scale: f64,
    },
    /// `score` itself: the degree-1 twin.
    Linear,
}

impl NetworkKernel {
    /// A short label for tables and file names: `poly8`, `softmax1`, `linear`.
    pub fn label(&self) -> String {
        match self {
            NetworkKernel::Polynomial(beta) => format!("poly{beta}"),
            NetworkKernel::Softmax { scale } => format!("softmax{scale}"),
            NetworkKernel::Linear => "linear".into(),
        }
    }

    /// The polynomial degree, if any (linear is degree 1).
    pub fn degree(&self) -> Option<u32> {
        match self {
            NetworkKernel::Polynomial(beta) => Some(*beta),
            NetworkKernel::Linear => Some(1),
            NetworkKernel::Softmax { .. } => None,
        }
    }

    fn config(&self) -> AttentionConfig {
        match self {
            NetworkKernel::Polynomial(beta) => AttentionConfig::polynomial(*beta),
            NetworkKernel::Linear => AttentionConfig::polynomial(1),
            NetworkKernel::Softmax { scale } => AttentionConfig::softmax().with_scale(*scale),
        }
    }
}

/// The network's weights `X` and `Y` (`d × d`, row-major); `None` is the identity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkWeights {
    /// X (`d × d`, row-major), identity when `None`.
    pub x: Option<Vec<f64>>,
    /// Y (`d × d`, row-major), identity when `None`.
    pub y: Option<Vec<f64>>,
}

/// What one forward pass reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Readout {
    /// `T = Σ C`.
    pub t: f64,
    /// For D1 samples: the mean attention weight that rows `j ≠ k*` put on the planted token `k*`.
    pub planted_weight: Option<f64>,
}

/// `a (n×d) · m (d×d)`, row-major.
fn times(a: &[f64], m: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; a.len()];
    for (row, out_row) in a.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        for (l, &x) in row.iter().enumerate() {
            for (o, &w) in out_row.iter_mut().zip(&m[l * d..(l + 1) * d]) {
                *o += x * w;
            }
        }
    }
    out
}

/// Runs the network on one `n × d` sample.
///
/// The weight on the planted token is read off the same engine call: `V` gets one extra column,
/// the indicator of token `k*`, whose output is exactly each row's weight on `k*`.
///
/// # Errors
/// poly-core's errors: an ill-conditioned or zero normalizer (odd degrees), or wrong sizes.
pub fn forward(
    sample: &Sample,
    n: usize,
    d: usize,
    kernel: NetworkKernel,
    weights: &NetworkWeights,
) -> Result<Readout, Error> {
    let q = match &weights.x {
        Some(x) => times(&sample.a1, x, d),
        None => sample.a1.clone(),
    };
    let values = match &weights.y {
        Some(y) => times(&sample.a3, y, d),
        None => sample.a3.clone(),
    };
    let d_v = d + 1;
    let mut v = Vec::with_capacity(n * d_v);
    for (k, row) in values.chunks_exact(d).enumerate() {
        v.extend_from_slice(row);
        v.push(if sample.planted.is_some_and(|(kp, _)| kp == k) {
            1.0
        } else {
            0.0
        });
    }
    let q = Tensor::from_vec([1, 1, n, d], q)?;
    let k = Tensor::from_vec([1, 1, n, d], sample.a2.clone())?;
    let v = Tensor::from_vec([1, 1, n, d_v], v)?;
    let c = attention(q.view(), k.view(), v.view(), &kernel.config())?;
    let mut t = 0.0;
    let mut planted_total = 0.0;
    for (j, row) in c.as_slice().chunks_exact(d_v).enumerate() {
        t += row[..d].iter().sum::<f64>();
        if sample.planted.is_some_and(|(kp, _)| kp != j) {
            planted_total += row[d];
        }
    }
    Ok(Readout {
        t,
        planted_weight: sample.planted.map(|_| planted_total / (n - 1) as f64),
    })
}
