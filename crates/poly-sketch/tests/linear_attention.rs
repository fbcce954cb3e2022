//! The linear-attention engine: exact against the dense masked product of the same features, for
//! every block size; equal to exact degree-2 attention with exact features; no leaks; errors.

use poly_core::{AttentionConfig, Element, Error, Mask, Normalization, Tensor, Threads, attention};
use poly_sketch::{
    ExactDegree2, FeatureMap, LinearAttentionConfig, PolySketch, SketchScale, linear_attention,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::num::NonZeroUsize;

fn random<T: Element>(seed: u64, shape: [usize; 4]) -> Tensor<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..shape.iter().product())
        .map(|_| T::from_f64(rng.random_range(-1.0..1.0)))
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

/// The dense computation from the same features: W = φ(Q) φ(K)ᵀ (masked), O = W V / (c + W 1).
/// Returns the outputs and, per output row, its magnitude `(c + Σ_j Σ_l |a_il f_jl|)·(max|v| +
/// |o_i|) / |c + Σ w|`: the first-order bound of rounding errors in the numerator and the
/// denominator for any summation order (large where signed feature products cancel).
fn dense<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    map: &dyn FeatureMap<T>,
    mask: Mask,
    c: f64,
) -> (Vec<f64>, Vec<f64>) {
    let [b, h, n_q, d] = q.shape();
    let (n_k, d_v) = (k.shape()[2], v.shape()[3]);
    let m = map.feature_dim();
    let (mut out, mut magnitudes) = (Vec::new(), Vec::new());
    for bh in 0..b * h {
        let a = map
            .map_rows(&q.as_slice()[bh * n_q * d..(bh + 1) * n_q * d])
            .unwrap();
        let f = map
            .map_rows(&k.as_slice()[bh * n_k * d..(bh + 1) * n_k * d])
            .unwrap();
        let vs = &v.as_slice()[bh * n_k * d_v..(bh + 1) * n_k * d_v];
        let v_max = vs.iter().fold(0.0f64, |m, x| m.max(x.to_f64().abs()));
        for i in 0..n_q {
            let visible = if mask == Mask::Causal { i + 1 } else { n_k };
            let mut num = vec![0.0; d_v];
            let (mut den, mut abs_den) = (c, c);
            for j in 0..visible {
                let w: f64 = (0..m)
                    .map(|l| a[i * m + l].to_f64() * f[j * m + l].to_f64())
                    .sum();
                den += w;
                abs_den += w.abs();
                for (o, x) in num.iter_mut().zip(&vs[j * d_v..(j + 1) * d_v]) {
                    *o += w * x.to_f64();
                }
            }
            let row: Vec<f64> = num.iter().map(|x| x / den).collect();
            let out_max = row.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            magnitudes.push(abs_den * (v_max + out_max) / den.abs());
            out.extend(row);
        }
    }
    (out, magnitudes)
}

/// Largest error of a row's outputs divided by the row's magnitude.
fn max_relative_by_row<T: Element>(got: &Tensor<T>, want: &[f64], magnitudes: &[f64]) -> f64 {
    let d_v = got.shape()[3];
    got.as_slice()
        .chunks_exact(d_v)
        .zip(want.chunks_exact(d_v))
        .zip(magnitudes)
        .map(|((g, w), mag)| {
            g.iter()
                .zip(w)
                .map(|(g, w)| (g.to_f64() - w).abs())
                .fold(0.0, f64::max)
                / mag
        })
        .fold(0.0, f64::max)
}

fn max_relative<T: Element>(got: &Tensor<T>, want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    got.as_slice()
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g.to_f64() - w).abs()))
        / scale
}

fn check_blocks<T: Element>(tol: f64) {
    let (n, d, d_v) = (300, 6, 5);
    let (q, k, v) = (
        random::<T>(1, [2, 2, n, d]),
        random::<T>(2, [2, 2, n, d]),
        random::<T>(3, [2, 2, n, d_v]),
    );
    // Positive weights keep the normalizer away from zero: exact degree-2 features, and an
    // even-degree PolySketch on correlated-enough inputs with OnePlusSum's bias.
    let exact = ExactDegree2::new(d);
    let sketch = PolySketch::<T>::new(d, 4, 16, 5, SketchScale::Unbiased).unwrap();
    let maps: [&dyn FeatureMap<T>; 2] = [&exact, &sketch];
    for map in maps {
        for mask in [Mask::None, Mask::Causal] {
            let (want, magnitudes) = dense(&q, &k, &v, map, mask, 1.0);
            for block in [1, 2, 7, 64, 256, 300, 1000] {
                let cfg = LinearAttentionConfig {
                    mask,
                    block,
                    ..Default::default()
                };
                let got = linear_attention(q.view(), k.view(), v.view(), map, &cfg).unwrap();
                let err = max_relative_by_row(&got, &want, &magnitudes);
                assert!(
                    err <= tol,
                    "{} m={} {mask:?} block {block}: relative error {err:.2e}",
                    T::NAME,
                    map.feature_dim()
                );
            }
        }
    }
}

#[test]
fn block_algorithm_equals_the_dense_masked_product_f64() {
    check_blocks::<f64>(1e-10);
}

#[test]
fn block_algorithm_equals_the_dense_masked_product_f32() {
    check_blocks::<f32>(1e-4);
}

#[test]
fn exact_degree2_features_give_exact_degree2_attention() {
    let (q, k, v) = (
        random::<f64>(4, [1, 3, 90, 5]),
        random::<f64>(5, [1, 3, 90, 5]),
        random::<f64>(6, [1, 3, 90, 4]),
    );
    let map = ExactDegree2::new(5);
    for mask in [Mask::None, Mask::Causal] {
        for normalization in [
            Normalization::Sum,
            Normalization::OnePlusSum(1.0),
            Normalization::None,
        ] {
            let cfg = LinearAttentionConfig {
                mask,
                block: 16,
                normalization,
                ..Default::default()
            };
            let linear = linear_attention(q.view(), k.view(), v.view(), &map, &cfg).unwrap();
            let exact_cfg = AttentionConfig::polynomial(2)
                .with_mask(mask)
                .with_normalization(normalization);
            let exact = attention(q.view(), k.view(), v.view(), &exact_cfg).unwrap();
            assert!(
                max_relative(&linear, exact.as_slice()) < 1e-10,
                "{mask:?} {normalization:?}"
            );
        }
    }
    // Cross-attention (n_q ≠ n_k) without a mask.
    let k2 = random::<f64>(7, [1, 3, 40, 5]);
    let v2 = random::<f64>(8, [1, 3, 40, 4]);
    let linear = linear_attention(
        q.view(),
        k2.view(),
        v2.view(),
        &map,
        &LinearAttentionConfig::default(),
    )
    .unwrap();
    let exact_cfg =
        AttentionConfig::polynomial(2).with_normalization(Normalization::OnePlusSum(1.0));
    let exact = attention(q.view(), k2.view(), v2.view(), &exact_cfg).unwrap();
    assert!(max_relative(&linear, exact.as_slice()) < 1e-10);
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.as_slice().iter().map(|x| x.to_bits()).collect()
}

#[test]
fn causal_outputs_ignore_the_future_and_threads() {
    let (n, d) = (200, 8);
    let (q, k, v) = (
        random::<f32>(9, [1, 4, n, d]),
        random::<f32>(10, [1, 4, n, d]),
        random::<f32>(11, [1, 4, n, d]),
    );
    let map = PolySketch::<f32>::new(d, 4, 16, 3, SketchScale::Unbiased).unwrap();
    for block in [1, 7, 64] {
        let cfg = LinearAttentionConfig {
            mask: Mask::Causal,
            block,
            ..Default::default()
        };
        let base = linear_attention(q.view(), k.view(), v.view(), &map, &cfg).unwrap();
        // Change every token after position 100 in every head.
        let perturb = |t: &Tensor<f32>, seed| {
            let fresh = random::<f32>(seed, t.shape());
            let mut data = t.as_slice().to_vec();
            for bh in 0..4 {
                let range = (bh * n + 101) * d..(bh + 1) * n * d;
                data[range.clone()].copy_from_slice(&fresh.as_slice()[range]);
            }
            Tensor::from_vec(t.shape(), data).unwrap()
        };
        let out = linear_attention(
            perturb(&q, 20).view(),
            perturb(&k, 21).view(),
            perturb(&v, 22).view(),
            &map,
            &cfg,
        )
        .unwrap();
        for bh in 0..4 {
            let prefix = bh * n * d..(bh * n + 101) * d;
            assert_eq!(
                bits(&base)[prefix.clone()],
                bits(&out)[prefix],
                "block {block}"
            );
        }
        for threads in [1, 3] {
            let cfg = LinearAttentionConfig {
                threads: Threads::Exact(NonZeroUsize::new(threads).unwrap()),
                ..cfg
            };
            let again = linear_attention(q.view(), k.view(), v.view(), &map, &cfg).unwrap();
            assert_eq!(bits(&again), bits(&base));
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let (q, k, v) = (
        random::<f64>(12, [1, 1, 10, 4]),
        random::<f64>(13, [1, 1, 12, 4]),
        random::<f64>(14, [1, 1, 12, 2]),
    );
    let map = ExactDegree2::new(4);
    let causal = LinearAttentionConfig {
        mask: Mask::Causal,
        ..Default::default()
    };
    assert!(matches!(
        linear_attention(q.view(), k.view(), v.view(), &map, &causal),
        Err(Error::InvalidParameter { name: "mask", .. })
    ));
    let zero_block = LinearAttentionConfig {
        block: 0,
        ..Default::default()
    };
    assert!(matches!(
        linear_attention(q.view(), k.view(), v.view(), &map, &zero_block),
        Err(Error::InvalidParameter { name: "block", .. })
    ));
    let wrong = ExactDegree2::new(3);
    assert!(
        linear_attention(
            q.view(),
            k.view(),
            v.view(),
            &wrong,
            &LinearAttentionConfig::default()
        )
        .is_err()
    );
    let v_bad = random::<f64>(15, [1, 1, 11, 2]);
    assert!(matches!(
        linear_attention(
            q.view(),
            k.view(),
            v_bad.view(),
            &map,
            &LinearAttentionConfig::default()
        ),
        Err(Error::ShapeMismatch { .. })
    ));
    // All-zero queries under Sum: the normalizer is zero.
    let zeros = Tensor::from_vec([1, 1, 10, 4], vec![0.0; 40]).unwrap();
    let sum = LinearAttentionConfig {
        normalization: Normalization::Sum,
        ..Default::default()
    };
    assert!(matches!(
        linear_attention(zeros.view(), k.view(), v.view(), &map, &sum),
        Err(Error::AllScoresZero { .. })
    ));
}

#[test]
fn scale_and_layernorm_match_the_exact_engine() {
    let (q, k, v) = (
        random::<f64>(16, [2, 1, 70, 4]),
        random::<f64>(17, [2, 1, 70, 4]),
        random::<f64>(18, [2, 1, 70, 3]),
    );
    let map = ExactDegree2::new(4);
    for mask in [Mask::None, Mask::Causal] {
        let cfg = LinearAttentionConfig {
            mask,
            block: 9,
            scale: Some(0.3),
            layernorm: true,
            ..Default::default()
        };
        let linear = linear_attention(q.view(), k.view(), v.view(), &map, &cfg).unwrap();
        let exact_cfg = AttentionConfig::polynomial(2)
            .with_mask(mask)
            .with_normalization(Normalization::OnePlusSum(1.0))
            .with_scale(0.3)
            .with_layernorm(true);
        let exact = attention(q.view(), k.view(), v.view(), &exact_cfg).unwrap();
        assert!(max_relative(&linear, exact.as_slice()) < 1e-10, "{mask:?}");
    }
}
