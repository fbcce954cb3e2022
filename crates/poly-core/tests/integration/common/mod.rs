//! Helpers shared by the poly-core integration tests.
#![allow(dead_code)]

use poly_core::{Element, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How test inputs are drawn.
#[derive(Clone, Copy, Debug)]
pub enum Data {
    /// Uniform in [−1, 1]: signed scores.
    Signed,
    /// Uniform in [0.1, 1]: every score positive, so odd degrees have well-posed normalizers.
    Positive,
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn random_tensor<T: Element>(rng: &mut StdRng, shape: Shape, data: Data) -> Tensor<T> {
    let len = shape.iter().product();
    let values = (0..len)
        .map(|_| {
            let x: f64 = match data {
                Data::Signed => rng.random_range(-1.0..1.0),
                Data::Positive => rng.random_range(0.1..1.0),
            };
            T::from_f64(x)
        })
        .collect();
    Tensor::from_vec(shape, values).unwrap()
}

/// Largest |a − b| divided by the largest |b|, where `b` (an f64 reference) is first rounded to
/// `T`: values `T` cannot represent (1e-64 in f32) are not an error of the engine. Differences
/// below `T`'s smallest normal number count as zero.
pub fn relative_error<T: Element>(a: &Tensor<T>, b: &Tensor<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let rounded: Vec<f64> = b
        .as_slice()
        .iter()
        .map(|&y| T::from_f64(y).to_f64())
        .collect();
    let tiny = if T::NAME == "f32" {
        f32::MIN_POSITIVE as f64
    } else {
        f64::MIN_POSITIVE
    };
    let scale = rounded.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(tiny);
    let diff = a
        .as_slice()
        .iter()
        .zip(&rounded)
        .map(|(x, y)| (x.to_f64() - y).abs())
        .filter(|d| *d >= tiny)
        .fold(0.0f64, f64::max);
    diff / scale
}

/// Bitwise equality of two float tensors (so that -0.0 ≠ 0.0 and NaN == NaN by bits).
pub fn bits_equal<T: Element>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits())
}

/// Attention in f64 with a dense visibility rule spelled out by the caller (`visible(batch, i, j)`:
/// whether query row i of batch entry `batch` sees key j), independent of the engine's ranges:
/// each visible weight, then the normalization. Query head h reads k/v head h / (H / H_kv).
pub fn dense_attention(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    cfg: &poly_core::AttentionConfig,
    visible: impl Fn(usize, usize, usize) -> bool,
) -> Tensor<f64> {
    use poly_core::{Kernel, Normalization};
    let [b, h, n_q, d] = q.shape();
    let [_, h_kv, n_k, d_v] = v.shape();
    let scale = cfg.effective_scale(d);
    let mut out = Vec::new();
    for bh in 0..b * h {
        let (batch, kv) = (bh / h, (bh % h) / (h / h_kv));
        let qs = &q.as_slice()[bh * n_q * d..];
        let ks = &k.as_slice()[(batch * h_kv + kv) * n_k * d..];
        let vs = &v.as_slice()[(batch * h_kv + kv) * n_k * d_v..];
        for i in 0..n_q {
            let (mut num, mut den) = (vec![0.0; d_v], 0.0);
            for j in (0..n_k).filter(|&j| visible(batch, i, j)) {
                let s: f64 = (0..d).map(|l| qs[i * d + l] * ks[j * d + l]).sum::<f64>() * scale;
                let wt = match cfg.kernel {
                    Kernel::Polynomial { degree } => s.powi(degree as i32),
                    _ => s.exp(),
                };
                den += wt;
                for c in 0..d_v {
                    num[c] += wt * vs[j * d_v + c];
                }
            }
            let den = match cfg.normalization {
                Normalization::Sum => den,
                Normalization::OnePlusSum(c) => c + den,
                _ => 1.0,
            };
            out.extend(num.iter().map(|x| x / den));
        }
    }
    Tensor::from_vec([b, h, n_q, d_v], out).unwrap()
}

/// Query rows, keys and values of one head, `[1, 1, n, 200]` each, with 600 query rows and 2700
/// keys: 4.3 MB of f32 keys and values, past the size from which rows that all see every key go
/// several query tiles to a task (engine.rs, `SHARED_TILE_KV_BYTES`; its unit test checks that
/// this shape does), giving one task of four 128-row tiles and a ragged one of 88 rows. The
/// last of the four tensors is a gradient of the output's shape.
pub fn shared_tile_problem(seed: u64) -> [Tensor<f32>; 4] {
    let mut r = rng(seed);
    [600, 2700, 2700, 600]
        .map(|n| random_tensor::<f32>(&mut r, [1, 1, n, SHARED_TILE_DIM], Data::Signed))
}

/// The head dimension (and value width) of [`shared_tile_problem`].
pub const SHARED_TILE_DIM: usize = 200;

/// Rows `start .. start + rows` of a one-head tensor, as a tensor of their own.
pub fn head_rows<T: Element>(t: &Tensor<T>, start: usize, rows: usize) -> Tensor<T> {
    let [_, _, _, d] = t.shape();
    Tensor::from_vec(
        [1, 1, rows, d],
        t.as_slice()[start * d..(start + rows) * d].to_vec(),
    )
    .unwrap()
}
