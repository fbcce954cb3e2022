//! Gradients of linear attention against central finite differences of the forward (f64), for
//! every differentiable map, non-causal, block-causal and mixed, every normalization, grouped
//! heads, LayerNorm and scale; bit-identical across thread counts.

use poly_core::{Mask, Normalization, Tensor, Threads};
use poly_sketch::{
    ExactDegree2, Favor, FeatureMap, LinearAttentionConfig, PolySketch, RandomMaclaurin,
    SelfTensoredSketch, SketchScale, TensorSketch, linear_attention, linear_attention_backward,
};
use std::num::NonZeroUsize;

fn tensor(seed: u64, shape: [usize; 4], low: f64) -> Tensor<f64> {
    let len = shape.iter().product();
    let data = crate::common::random_vec(seed, len)
        .into_iter()
        .map(|x| low + (1.0 - low) * (x + 1.0) / 2.0)
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

/// `Σ g ⊙ linear_attention(q, k, v)`.
fn loss(
    x: &[Tensor<f64>; 3],
    g: &Tensor<f64>,
    map: &dyn FeatureMap<f64>,
    cfg: &LinearAttentionConfig,
) -> f64 {
    let out = linear_attention(x[0].view(), x[1].view(), x[2].view(), map, cfg).unwrap();
    out.as_slice()
        .iter()
        .zip(g.as_slice())
        .map(|(a, b)| a * b)
        .sum()
}

fn numeric(
    x: &[Tensor<f64>; 3],
    g: &Tensor<f64>,
    map: &dyn FeatureMap<f64>,
    cfg: &LinearAttentionConfig,
    which: usize,
) -> Vec<f64> {
    let mut y = x.clone();
    (0..x[which].as_slice().len())
        .map(|i| {
            let at = x[which].as_slice()[i];
            let h = 1e-6 * at.abs().max(1.0);
            let mut eval = |value: f64| {
                let mut data = x[which].as_slice().to_vec();
                data[i] = value;
                y[which] = Tensor::from_vec(x[which].shape(), data).unwrap();
                loss(&y, g, map, cfg)
            };
            (eval(at + h) - eval(at - h)) / (2.0 * h)
        })
        .collect()
}

/// A map under test, with the normalizations it is checked with.
type MapCase = (&'static str, Box<dyn FeatureMap<f64>>, Vec<Normalization>);

fn gap(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn gradients_equal_finite_differences_for_every_differentiable_map() {
    let d = 3;
    let maps: Vec<MapCase> = vec![
        (
            "exact2",
            Box::new(ExactDegree2::new(d).unwrap()),
            vec![Normalization::Sum, Normalization::None],
        ),
        (
            "polysketch p=3",
            Box::new(PolySketch::new(d, 3, 5, 1, SketchScale::Unbiased).unwrap()),
            vec![Normalization::OnePlusSum(5.0), Normalization::None],
        ),
        (
            "polysketch p=4",
            Box::new(PolySketch::new(d, 4, 4, 2, SketchScale::Unbiased).unwrap()),
            vec![Normalization::None],
        ),
        (
            "self-tensored p=4",
            Box::new(SelfTensoredSketch::new(d, 4, 3, 3, SketchScale::Unbiased).unwrap()),
            vec![Normalization::Sum, Normalization::OnePlusSum(0.5)],
        ),
        (
            "maclaurin p=2",
            Box::new(RandomMaclaurin::new(d, 2, 6, 4).unwrap()),
            vec![Normalization::None, Normalization::OnePlusSum(5.0)],
        ),
        (
            "favor",
            Box::new(Favor::new(d, 6, 5).unwrap()),
            vec![Normalization::Sum],
        ),
        (
            "tensorsketch p=3",
            Box::new(TensorSketch::new(d, 3, 8, 6).unwrap()),
            vec![Normalization::None, Normalization::OnePlusSum(5.0)],
        ),
        (
            "tensorsketch p=2 odd size",
            Box::new(TensorSketch::new(d, 2, 7, 7).unwrap()),
            vec![Normalization::None],
        ),
    ];
    // Two query heads on one k/v head; 7 tokens in blocks of 3 (a partial last block).
    let q = tensor(1, [1, 2, 7, d], 0.1);
    let k = tensor(2, [1, 1, 7, d], 0.1);
    let v = tensor(3, [1, 1, 7, 2], -1.0);
    let g = tensor(4, [1, 2, 7, 2], -1.0);
    let x = [q, k, v];
    let mut checked = 0;
    for (name, map, normalizations) in &maps {
        for &normalization in normalizations {
            for (mask, local_exact, layernorm) in [
                (Mask::None, false, false),
                (Mask::Causal, false, false),
                (Mask::Causal, true, false),
                (Mask::Causal, false, true),
            ] {
                if local_exact && map.polynomial_degree().is_none() {
                    continue;
                }
                let mut cfg = LinearAttentionConfig::default()
                    .with_mask(mask)
                    .with_block(3)
                    .with_local_exact(local_exact)
                    .with_normalization(normalization)
                    .with_layernorm(layernorm);
                if layernorm {
                    cfg = cfg.with_scale(0.6);
                }
                let (out, grads) = linear_attention_backward(
                    x[0].view(),
                    x[1].view(),
                    x[2].view(),
                    g.view(),
                    map.as_ref(),
                    &cfg,
                )
                .unwrap();
                let forward =
                    linear_attention(x[0].view(), x[1].view(), x[2].view(), map.as_ref(), &cfg)
                        .unwrap();
                assert_eq!(out.as_slice(), forward.as_slice());
                for (which, analytic) in [&grads.dq, &grads.dk, &grads.dv].into_iter().enumerate() {
                    let err = gap(
                        analytic.as_slice(),
                        &numeric(&x, &g, map.as_ref(), &cfg, which),
                    );
                    assert!(
                        err <= 1e-6,
                        "{name} {normalization:?} {mask:?} mixed {local_exact} ln {layernorm} d{}: {err:e}",
                        ["q", "k", "v"][which]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked}");
}

#[test]
fn gradients_do_not_depend_on_threads() {
    let map = SelfTensoredSketch::<f32>::new(8, 4, 8, 1, SketchScale::Unbiased).unwrap();
    let q = tensor(5, [2, 4, 300, 8], 0.1).map(|&x| x as f32);
    let k = tensor(6, [2, 2, 300, 8], 0.1).map(|&x| x as f32);
    let v = tensor(7, [2, 2, 300, 5], -1.0).map(|&x| x as f32);
    let g = tensor(8, [2, 4, 300, 5], -1.0).map(|&x| x as f32);
    let cfg = LinearAttentionConfig::default()
        .with_mask(Mask::Causal)
        .with_block(64);
    let on = |n: usize| {
        let cfg = cfg.with_threads(Threads::Exact(NonZeroUsize::new(n).unwrap()));
        linear_attention_backward(q.view(), k.view(), v.view(), g.view(), &map, &cfg)
            .unwrap()
            .1
    };
    let (one, three) = (on(1), on(3));
    for (a, b) in [
        (&one.dq, &three.dq),
        (&one.dk, &three.dk),
        (&one.dv, &three.dv),
    ] {
        let bits = |t: &Tensor<f32>| t.as_slice().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b));
    }
}

#[test]
fn non_causal_gradients_with_more_keys_than_queries() {
    let map = ExactDegree2::new(3).unwrap();
    let x = [
        tensor(9, [1, 2, 5, 3], 0.1),
        tensor(10, [1, 2, 9, 3], 0.1),
        tensor(11, [1, 2, 9, 4], -1.0),
    ];
    let g = tensor(12, [1, 2, 5, 4], -1.0);
    let cfg = LinearAttentionConfig::default().with_block(2);
    let (_, grads) =
        linear_attention_backward(x[0].view(), x[1].view(), x[2].view(), g.view(), &map, &cfg)
            .unwrap();
    for (which, analytic) in [&grads.dq, &grads.dk, &grads.dv].into_iter().enumerate() {
        let err = gap(analytic.as_slice(), &numeric(&x, &g, &map, &cfg, which));
        assert!(err <= 1e-6, "d{}: {err:e}", ["q", "k", "v"][which]);
    }
}
