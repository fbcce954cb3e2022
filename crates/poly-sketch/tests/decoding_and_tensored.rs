//! Decoding equals the block-causal prefill at every position; self-tensored weights are ≥ 0.

use poly_core::{Mask, Normalization, Tensor};
use poly_sketch::{
    DecodingState, FeatureMap, LinearAttentionConfig, PolySketch, SelfTensoredSketch, SketchScale,
    linear_attention,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn random(seed: u64, len: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn self_tensored_weights_are_squares_of_the_inner_sketch() {
    let d = 8;
    let map = SelfTensoredSketch::<f64>::new(d, 4, 12, 9, SketchScale::Unbiased).unwrap();
    assert_eq!(map.feature_dim(), 12 * 13 / 2);
    for seed in 0..50 {
        let (x, y) = (random(seed, d), random(seed + 1000, d));
        let w = dot(&map.map_rows(&x).unwrap(), &map.map_rows(&y).unwrap());
        let inner = dot(
            &map.inner().map_rows(&x).unwrap(),
            &map.inner().map_rows(&y).unwrap(),
        );
        assert!(w >= 0.0, "weight {w}");
        assert!((w - inner * inner).abs() <= 1e-12 * (1.0 + inner * inner));
    }
    assert!(SelfTensoredSketch::<f64>::new(d, 3, 12, 9, SketchScale::Unbiased).is_err());
}

#[test]
fn decoding_matches_prefill_at_every_position() {
    let (n, d, d_v) = (150, 6, 4);
    let (q, k, v) = (random(1, n * d), random(2, n * d), random(3, n * d_v));
    let sketch = SelfTensoredSketch::<f64>::new(d, 4, 8, 4, SketchScale::Unbiased).unwrap();
    let plain = PolySketch::<f64>::new(d, 3, 16, 4, SketchScale::Unbiased).unwrap();
    let maps: [&dyn FeatureMap<f64>; 2] = [&sketch, &plain];
    for map in maps {
        for normalization in [Normalization::OnePlusSum(1.0), Normalization::None] {
            let cfg = LinearAttentionConfig {
                mask: Mask::Causal,
                block: 32,
                normalization,
                ..Default::default()
            };
            let tensor =
                |data: &[f64], dim| Tensor::from_vec([1, 1, n, dim], data.to_vec()).unwrap();
            let prefill = linear_attention(
                tensor(&q, d).view(),
                tensor(&k, d).view(),
                tensor(&v, d_v).view(),
                map,
                &cfg,
            )
            .unwrap();
            // Prefill the first 40 tokens in one call, then decode the rest one by one.
            let mut state = DecodingState::new(map, d_v, normalization);
            state.prefill(map, &k[..39 * d], &v[..39 * d_v]).unwrap();
            for t in 39..n {
                let out = state
                    .step(
                        map,
                        &q[t * d..(t + 1) * d],
                        &k[t * d..(t + 1) * d],
                        &v[t * d_v..(t + 1) * d_v],
                    )
                    .unwrap();
                let want = &prefill.as_slice()[t * d_v..(t + 1) * d_v];
                let scale = want.iter().fold(1e-300f64, |m, x| m.max(x.abs()));
                for (o, w) in out.iter().zip(want) {
                    assert!(
                        (o - w).abs() <= 1e-9 * scale.max(1.0),
                        "token {t}: {o} vs {w}"
                    );
                }
            }
            assert_eq!(state.len(), n);
        }
    }
}

#[test]
fn decoding_rejects_wrong_lengths() {
    let map = PolySketch::<f64>::new(4, 2, 8, 1, SketchScale::Unbiased).unwrap();
    let mut state = DecodingState::new(&map, 3, Normalization::Sum);
    assert!(state.is_empty());
    assert!(state.prefill(&map, &[0.0; 5], &[0.0; 3]).is_err());
    assert!(state.step(&map, &[0.0; 3], &[0.0; 4], &[0.0; 3]).is_err());
    assert!(state.step(&map, &[0.0; 4], &[0.0; 4], &[0.0; 2]).is_err());
}

#[test]
fn non_finite_inputs_are_errors_not_nan_features() {
    let map = PolySketch::<f64>::new(4, 2, 8, 1, SketchScale::Unbiased).unwrap();
    let mut x = random(3, 12);
    x[6] = f64::NAN;
    let err = map.map_rows(&x).unwrap_err();
    assert!(err.to_string().contains("row 1, column 2"), "{err}");
    let mut state = DecodingState::new(&map, 2, Normalization::OnePlusSum(1.0));
    let k = random(4, 4);
    assert!(state.prefill(&map, &k, &[1.0, f64::INFINITY]).is_err());
    assert!(state.is_empty());
    assert!(
        state
            .step(&map, &k, &[f64::NAN, 0.0, 0.0, 0.0], &[1.0, 2.0])
            .is_err()
    );
}
