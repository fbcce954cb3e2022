//! The linear-attention engine: exact against the dense masked product of the same features for
//! every map family and block size (the mixed variant likewise); equal to exact degree-2 attention
//! with exact features; no leaks; bit-identical across thread counts; errors.

use crate::common::{every_map, random};
use poly_core::{
    AttentionConfig, Element, Error, Mask, Normalization, Tensor, TensorName, Threads, attention,
};
use poly_sketch::{
    ExactDegree2, Favor, FeatureMap, LinearAttentionConfig, PolySketch, SketchScale,
    linear_attention,
};
use std::num::NonZeroUsize;

/// The dense computation from the same features the engine uses: `W = φ_q(Q) φ_k(K)ᵀ` (masked;
/// with `local = Some((p, b))`, exact `(q·k)^p` inside the diagonal blocks of size `b`),
/// `O = W V / (c + W 1)`. Returns the outputs and, per output row, its magnitude
/// `(c + Σ_j |w_ij|)·(max|v| + |o_i|) / |c + Σ w|` (products summed in absolute value): the
/// first-order bound of rounding errors for any summation order.
fn dense<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    map: &dyn FeatureMap<T>,
    mask: Mask,
    bias: Option<f64>,
    local: Option<(u32, usize)>,
) -> (Vec<f64>, Vec<f64>) {
    let [b, h, n_q, d] = q.shape();
    let (n_k, d_v) = (k.shape()[2], v.shape()[3]);
    let m = map.feature_dim();
    let (mut out, mut magnitudes) = (Vec::new(), Vec::new());
    for bh in 0..b * h {
        let qs = &q.as_slice()[bh * n_q * d..(bh + 1) * n_q * d];
        let ks = &k.as_slice()[bh * n_k * d..(bh + 1) * n_k * d];
        let mut a = vec![T::ZERO; n_q * m];
        let mut f = vec![T::ZERO; n_k * m];
        map.map_queries_into(qs, &mut a);
        map.map_keys_into(ks, &mut f);
        let vs = &v.as_slice()[bh * n_k * d_v..(bh + 1) * n_k * d_v];
        let v_max = vs.iter().fold(0.0f64, |m, x| m.max(x.to_f64().abs()));
        for i in 0..n_q {
            let visible = if mask == Mask::Causal { i + 1 } else { n_k };
            let mut num = vec![0.0; d_v];
            let c = bias.unwrap_or(0.0);
            let (mut den, mut abs_den) = (c, c);
            for j in 0..visible {
                let (w, abs_w) = match local {
                    Some((p, block)) if i / block == j / block => {
                        let s: f64 = (0..d)
                            .map(|l| qs[i * d + l].to_f64() * ks[j * d + l].to_f64())
                            .sum();
                        let abs: f64 = (0..d)
                            .map(|l| (qs[i * d + l].to_f64() * ks[j * d + l].to_f64()).abs())
                            .sum();
                        (s.powi(p as i32), abs.powi(p as i32) * p as f64)
                    }
                    _ => (0..m)
                        .map(|l| a[i * m + l].to_f64() * f[j * m + l].to_f64())
                        .fold((0.0, 0.0), |(s, abs), x| (s + x, abs + x.abs())),
                };
                den += w;
                abs_den += abs_w;
                for (o, x) in num.iter_mut().zip(&vs[j * d_v..(j + 1) * d_v]) {
                    *o += w * x.to_f64();
                }
            }
            if bias.is_none() {
                // Normalization::None: the sums themselves, on the scale of Σ|w|·|v|.
                magnitudes.push(abs_den * v_max);
                out.extend(num);
                continue;
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

const BLOCKS: [usize; 7] = [1, 2, 7, 64, 256, 300, 1000];

/// The constant added to the normalizer; `None` for `Normalization::None` (no division).
fn bias(normalization: Normalization) -> Option<f64> {
    match normalization {
        Normalization::OnePlusSum(c) => Some(c),
        Normalization::None => None,
        _ => Some(0.0),
    }
}

fn check_blocks<T: poly_sketch::SketchElement>(tol: f64) {
    let (n, d, d_v) = (300, 6, 5);
    let (q, k, v) = (
        random::<T>(1, [2, 2, n, d]),
        random::<T>(2, [2, 2, n, d]),
        random::<T>(3, [2, 2, n, d_v]),
    );
    for t in every_map::<T>(d) {
        let map = t.map.as_ref();
        let c = bias(t.normalization);
        for mask in [Mask::None, Mask::Causal] {
            let (want, magnitudes) = dense(&q, &k, &v, map, mask, c, None);
            for block in BLOCKS {
                let cfg = LinearAttentionConfig::default()
                    .with_mask(mask)
                    .with_block(block)
                    .with_normalization(t.normalization);
                let got = linear_attention(q.view(), k.view(), v.view(), map, &cfg)
                    .unwrap_or_else(|e| panic!("{:?} {e:?}", t.kind));
                let err = max_relative_by_row(&got, &want, &magnitudes);
                assert!(
                    err <= tol,
                    "{} {:?} {mask:?} block {block}: relative error {err:.2e}",
                    T::NAME,
                    t.kind
                );
            }
        }
        let Some(degree) = map.polynomial_degree() else {
            continue;
        };
        for block in BLOCKS {
            let (want, magnitudes) = dense(&q, &k, &v, map, Mask::Causal, c, Some((degree, block)));
            let cfg = LinearAttentionConfig::default()
                .with_mask(Mask::Causal)
                .with_block(block)
                .with_normalization(t.normalization)
                .with_local_exact(true);
            let got = linear_attention(q.view(), k.view(), v.view(), map, &cfg)
                .unwrap_or_else(|e| panic!("{:?} {e:?}", t.kind));
            let err = max_relative_by_row(&got, &want, &magnitudes);
            assert!(
                err <= tol,
                "{} {:?} mixed, block {block}: relative error {err:.2e}",
                T::NAME,
                t.kind
            );
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
    let map = ExactDegree2::new(5).unwrap();
    for mask in [Mask::None, Mask::Causal] {
        for normalization in [
            Normalization::Sum,
            Normalization::OnePlusSum(1.0),
            Normalization::None,
        ] {
            let cfg = LinearAttentionConfig::default()
                .with_mask(mask)
                .with_block(16)
                .with_normalization(normalization);
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

#[test]
fn mixed_variant_with_one_block_is_exact_attention() {
    // A block covering the whole sequence leaves no sketched part: exact degree-p attention.
    let (q, k, v) = (
        random::<f64>(30, [1, 2, 50, 4]),
        random::<f64>(31, [1, 2, 50, 4]),
        random::<f64>(32, [1, 2, 50, 3]),
    );
    let map = PolySketch::<f64>::new(4, 3, 8, 1, SketchScale::Unbiased).unwrap();
    let cfg = LinearAttentionConfig::default()
        .with_mask(Mask::Causal)
        .with_block(64)
        .with_local_exact(true)
        .with_layernorm(true)
        .with_scale(0.5);
    let mixed = linear_attention(q.view(), k.view(), v.view(), &map, &cfg).unwrap();
    let exact_cfg = AttentionConfig::polynomial(3)
        .with_mask(Mask::Causal)
        .with_normalization(Normalization::OnePlusSum(1.0))
        .with_scale(0.5)
        .with_layernorm(true);
    let exact = attention(q.view(), k.view(), v.view(), &exact_cfg).unwrap();
    assert!(max_relative(&mixed, exact.as_slice()) < 1e-10);
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.as_slice().iter().map(|x| x.to_bits()).collect()
}

/// `t` with every token after `keep` replaced, in every head.
fn perturb_after(t: &Tensor<f32>, keep: usize, seed: u64) -> Tensor<f32> {
    let [b, h, n, d] = t.shape();
    let fresh = random::<f32>(seed, t.shape());
    let mut data = t.as_slice().to_vec();
    for bh in 0..b * h {
        let range = (bh * n + keep) * d..(bh + 1) * n * d;
        data[range.clone()].copy_from_slice(&fresh.as_slice()[range]);
    }
    Tensor::from_vec(t.shape(), data).unwrap()
}

#[test]
fn causal_outputs_ignore_the_future_and_threads_for_every_map() {
    let (n, d, keep) = (200, 8, 101);
    for heads in [1, 4] {
        let (q, k, v) = (
            random::<f32>(9, [1, heads, n, d]),
            random::<f32>(10, [1, heads, n, d]),
            random::<f32>(11, [1, heads, n, d]),
        );
        let (q2, k2, v2) = (
            perturb_after(&q, keep, 20),
            perturb_after(&k, keep, 21),
            perturb_after(&v, keep, 22),
        );
        for t in every_map::<f32>(d) {
            let map = t.map.as_ref();
            for (block, local_exact) in [(1, false), (7, false), (64, false), (7, true), (64, true)]
            {
                if local_exact && map.polynomial_degree().is_none() {
                    continue;
                }
                let cfg = LinearAttentionConfig::default()
                    .with_mask(Mask::Causal)
                    .with_block(block)
                    .with_normalization(t.normalization)
                    .with_local_exact(local_exact)
                    .with_threads(Threads::Exact(NonZeroUsize::new(1).unwrap()));
                let label = format!(
                    "{:?} block {block} mixed {local_exact} heads {heads}",
                    t.kind
                );
                let base = linear_attention(q.view(), k.view(), v.view(), map, &cfg).unwrap();
                let changed = linear_attention(q2.view(), k2.view(), v2.view(), map, &cfg).unwrap();
                for bh in 0..heads {
                    let prefix = bh * n * d..(bh * n + keep) * d;
                    assert_eq!(
                        bits(&base)[prefix.clone()],
                        bits(&changed)[prefix],
                        "future leaked: {label}"
                    );
                }
                // 2 and 3 threads: with 1 head both split the blocks (two-pass scan).
                for threads in [2, 3] {
                    let cfg = cfg.with_threads(Threads::Exact(NonZeroUsize::new(threads).unwrap()));
                    let again = linear_attention(q.view(), k.view(), v.view(), map, &cfg).unwrap();
                    assert_eq!(bits(&again), bits(&base), "{threads} threads: {label}");
                }
            }
        }
    }
}

#[test]
fn non_causal_results_do_not_depend_on_threads() {
    let (q, k, v) = (
        random::<f32>(40, [1, 1, 333, 8]),
        random::<f32>(41, [1, 1, 500, 8]),
        random::<f32>(42, [1, 1, 500, 8]),
    );
    for t in every_map::<f32>(8) {
        let run = |threads| {
            let cfg = LinearAttentionConfig::default()
                .with_block(16)
                .with_normalization(t.normalization)
                .with_threads(Threads::Exact(NonZeroUsize::new(threads).unwrap()));
            bits(&linear_attention(q.view(), k.view(), v.view(), t.map.as_ref(), &cfg).unwrap())
        };
        assert_eq!(run(1), run(3), "{:?}", t.kind);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let (q, k, v) = (
        random::<f64>(12, [1, 1, 10, 4]),
        random::<f64>(13, [1, 1, 12, 4]),
        random::<f64>(14, [1, 1, 12, 2]),
    );
    let map = ExactDegree2::new(4).unwrap();
    let causal = LinearAttentionConfig::default().with_mask(Mask::Causal);
    assert!(matches!(
        linear_attention(q.view(), k.view(), v.view(), &map, &causal),
        Err(Error::InvalidParameter { name: "mask", .. })
    ));
    let zero_block = LinearAttentionConfig::default().with_block(0);
    assert!(matches!(
        linear_attention(q.view(), k.view(), v.view(), &map, &zero_block),
        Err(Error::InvalidParameter { name: "block", .. })
    ));
    let wrong = ExactDegree2::new(3).unwrap();
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
    let sum = LinearAttentionConfig::default().with_normalization(Normalization::Sum);
    assert!(matches!(
        linear_attention(zeros.view(), k.view(), v.view(), &map, &sum),
        Err(Error::AllScoresZero { .. })
    ));
    // The mixed variant needs a causal mask and a polynomial map.
    let mixed = LinearAttentionConfig::default().with_local_exact(true);
    assert!(matches!(
        linear_attention(q.view(), k.view(), v.view(), &map, &mixed),
        Err(Error::InvalidParameter {
            name: "local-exact",
            ..
        })
    ));
    let favor = Favor::<f64>::new(4, 8, 0).unwrap();
    let (k12, v12) = (
        random::<f64>(16, [1, 1, 10, 4]),
        random::<f64>(17, [1, 1, 10, 2]),
    );
    let mixed_causal = mixed
        .with_mask(Mask::Causal)
        .with_normalization(Normalization::Sum);
    assert!(matches!(
        linear_attention(q.view(), k12.view(), v12.view(), &favor, &mixed_causal),
        Err(Error::InvalidParameter {
            name: "local-exact",
            ..
        })
    ));
    // FAVOR+ rescales query rows: only Sum normalization cancels that.
    assert!(matches!(
        linear_attention(
            q.view(),
            k.view(),
            v.view(),
            &favor,
            &LinearAttentionConfig::default()
        ),
        Err(Error::InvalidParameter {
            name: "normalization",
            ..
        })
    ));
    // Features beyond the memory budget are refused before anything is allocated: exact degree-2
    // features of d = 70 000 would take 2.45e9 values per row.
    let d = 70_000;
    let wide = ExactDegree2::new(d).unwrap();
    let row = random::<f64>(18, [1, 1, 1, d]);
    let value = random::<f64>(19, [1, 1, 1, 2]);
    assert!(matches!(
        linear_attention(
            row.view(),
            row.view(),
            value.view(),
            &wide,
            &LinearAttentionConfig::default()
        ),
        Err(Error::ResourceLimit {
            what: "block features",
            ..
        })
    ));
    assert!(matches!(
        FeatureMap::<f64>::map_rows(&wide, row.as_slice()),
        Err(Error::ResourceLimit {
            what: "feature matrix",
            ..
        })
    ));
}

/// The value scan runs in blocks on the call's threads; the error is still the first bad index of
/// the first tensor holding one.
#[test]
fn non_finite_inputs_name_the_first_index_at_every_thread_count() {
    // 2 · 1100 · 64 = 140 800 values per tensor: three of the scan's blocks.
    let shape = [1, 2, 1100, 64];
    let (q, mut k, mut v) = (
        random::<f64>(20, shape),
        random::<f64>(21, shape),
        random::<f64>(22, shape),
    );
    k.as_mut_slice()[70_000] = f64::NEG_INFINITY;
    k.as_mut_slice()[140_000] = f64::NAN;
    v.as_mut_slice()[0] = f64::NAN;
    let map = ExactDegree2::new(64).unwrap();
    for threads in [1, 2, 3] {
        let cfg = LinearAttentionConfig::default()
            .with_mask(Mask::Causal)
            .with_threads(Threads::Exact(NonZeroUsize::new(threads).unwrap()));
        match linear_attention(q.view(), k.view(), v.view(), &map, &cfg) {
            Err(Error::NonFinite {
                tensor: TensorName::Key,
                index: [0, 0, 1093, 48],
                value,
            }) if value == f64::NEG_INFINITY => {}
            other => panic!("{threads} threads: {other:?}"),
        }
    }
}

#[test]
fn scale_and_layernorm_match_the_exact_engine() {
    let (q, k, v) = (
        random::<f64>(16, [2, 1, 70, 4]),
        random::<f64>(17, [2, 1, 70, 4]),
        random::<f64>(18, [2, 1, 70, 3]),
    );
    let map = ExactDegree2::new(4).unwrap();
    for mask in [Mask::None, Mask::Causal] {
        let cfg = LinearAttentionConfig::default()
            .with_mask(mask)
            .with_block(9)
            .with_scale(0.3)
            .with_layernorm(true);
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
