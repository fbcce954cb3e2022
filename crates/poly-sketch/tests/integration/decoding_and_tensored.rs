//! Decoding equals the block-causal engine at every position, for every map family and the mixed
//! variant, with grouped heads and packed sequences too; self-tensored weights are ≥ 0.

use crate::common::{dot, every_map, random_vec};
use poly_core::{Mask, Normalization, Tensor};
use poly_sketch::{
    DecodingState, FeatureMap, LinearAttentionConfig, PolySketch, SelfTensoredSketch, SketchScale,
    linear_attention,
};

#[test]
fn self_tensored_weights_are_squares_of_the_inner_sketch() {
    let d = 8;
    let map = SelfTensoredSketch::<f64>::new(d, 4, 12, 9, SketchScale::Unbiased).unwrap();
    assert_eq!(map.feature_dim(), 12 * 13 / 2);
    for seed in 0..50 {
        // Large and adversarial inputs too: the weight is a square, whatever the input.
        let scale = 10f64.powi(seed as i32 % 7 - 3);
        let x: Vec<f64> = random_vec(seed, d).iter().map(|v| v * scale).collect();
        let y: Vec<f64> = if seed % 5 == 0 {
            x.iter().map(|v| -v).collect()
        } else {
            random_vec(seed + 1000, d)
        };
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
fn decoding_matches_the_engine_at_every_position() {
    let (n, d, d_v) = (150, 6, 4);
    let (q, k, v) = (
        random_vec(1, n * d),
        random_vec(2, n * d),
        random_vec(3, n * d_v),
    );
    let tensor = |data: &[f64], dim| Tensor::from_vec([1, 1, n, dim], data.to_vec()).unwrap();
    for t in every_map::<f64>(d) {
        let map = t.map.as_ref();
        let normalizations = if t.normalization == Normalization::Sum {
            vec![Normalization::Sum]
        } else {
            vec![Normalization::OnePlusSum(1.0), Normalization::None]
        };
        for normalization in normalizations {
            for (local_exact, layernorm) in
                [(false, false), (true, false), (true, true), (false, true)]
            {
                if local_exact && map.polynomial_degree().is_none() {
                    continue;
                }
                let cfg = LinearAttentionConfig::default()
                    .with_mask(Mask::Causal)
                    .with_block(32)
                    .with_normalization(normalization)
                    .with_local_exact(local_exact)
                    .with_layernorm(layernorm)
                    .with_scale(0.7);
                let engine = linear_attention(
                    tensor(&q, d).view(),
                    tensor(&k, d).view(),
                    tensor(&v, d_v).view(),
                    map,
                    &cfg,
                )
                .unwrap();
                // Prefill the first 39 tokens in one call (a partial block), then decode.
                let mut state = DecodingState::new(map, d_v, &cfg).unwrap();
                state.prefill(&k[..39 * d], &v[..39 * d_v]).unwrap();
                for i in 39..n {
                    let out = state
                        .step(
                            &q[i * d..(i + 1) * d],
                            &k[i * d..(i + 1) * d],
                            &v[i * d_v..(i + 1) * d_v],
                        )
                        .unwrap();
                    let want = &engine.as_slice()[i * d_v..(i + 1) * d_v];
                    let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                    for (o, w) in out.iter().zip(want) {
                        assert!(
                            (o - w).abs() <= 1e-9 * scale,
                            "{:?} {normalization:?} mixed {local_exact} ln {layernorm}, token {i}: {o} vs {w}",
                            t.kind
                        );
                    }
                }
                assert_eq!(state.len(), n);
            }
        }
    }
}

#[test]
fn decoding_rejects_wrong_lengths_and_bad_configurations() {
    let map = PolySketch::<f64>::new(4, 2, 8, 1, SketchScale::Unbiased).unwrap();
    let cfg = LinearAttentionConfig::default().with_normalization(Normalization::Sum);
    let mut state = DecodingState::new(&map, 3, &cfg).unwrap();
    assert!(state.is_empty());
    assert!(state.prefill(&[0.0; 5], &[0.0; 3]).is_err());
    assert!(state.step(&[0.0; 3], &[0.0; 4], &[0.0; 3]).is_err());
    assert!(state.step(&[0.0; 4], &[0.0; 4], &[0.0; 2]).is_err());
    assert!(DecodingState::new(&map, 0, &cfg).is_err());
    let favor = poly_sketch::Favor::<f64>::new(4, 8, 0).unwrap();
    let mixed = cfg.with_local_exact(true);
    assert!(DecodingState::new(&favor, 3, &mixed).is_err());
    assert!(DecodingState::new(&favor, 3, &LinearAttentionConfig::default()).is_err());
}

#[test]
fn non_finite_inputs_are_errors_not_nan_features() {
    let map = PolySketch::<f64>::new(4, 2, 8, 1, SketchScale::Unbiased).unwrap();
    let mut x = random_vec(3, 12);
    x[6] = f64::NAN;
    let err = map.map_rows(&x).unwrap_err();
    assert!(err.to_string().contains("row 1, column 2"), "{err}");
    let mut state = DecodingState::new(&map, 2, &LinearAttentionConfig::default()).unwrap();
    let k = random_vec(4, 4);
    assert!(state.prefill(&k, &[1.0, f64::INFINITY]).is_err());
    assert!(state.is_empty());
    assert!(
        state
            .step(&k, &[f64::NAN, 0.0, 0.0, 0.0], &[1.0, 2.0])
            .is_err()
    );
    assert!(
        state
            .step(&[f64::NAN, 0.0, 0.0, 0.0], &k, &[1.0, 2.0])
            .is_err()
    );
    assert!(state.is_empty());
}

/// A step that fails leaves the state exactly as it was: the next steps give bit for bit what a
/// state that never saw the failed token gives. Both the plain and the mixed variant.
#[test]
fn a_failed_step_absorbs_nothing() {
    let d = 2;
    let map = poly_sketch::ExactDegree2::new(d).unwrap();
    for local_exact in [false, true] {
        let cfg = LinearAttentionConfig::default()
            .with_mask(Mask::Causal)
            .with_block(3)
            .with_local_exact(local_exact)
            .with_normalization(Normalization::None);
        let mut state = DecodingState::<f32>::new(&map, 1, &cfg).unwrap();
        let prompt: Vec<f32> = random_vec(3, 4 * d).iter().map(|&x| x as f32).collect();
        state.prefill(&prompt, &[0.5, -1.0, 2.0, 0.25]).unwrap();
        let mut untouched = state.clone();
        // (q·k)² with q = k = 1e19·(1, 1) is ~1e77: the output overflows f32.
        let huge = [1e19f32, 1e19];
        assert!(state.step(&huge, &huge, &[1.0]).is_err());
        assert_eq!(state.len(), untouched.len());
        // A grouped step whose second query row overflows absorbs nothing either.
        let grouped = [0.5f32, -0.25, 1e30, 1e30];
        assert!(state.step(&grouped, &[0.5, 0.5], &[1.0]).is_err());
        assert_eq!(state.len(), untouched.len());
        for t in 0..5 {
            let x: Vec<f32> = random_vec(10 + t, d).iter().map(|&x| x as f32).collect();
            let (a, b) = (
                state.step(&x, &x, &[t as f32]),
                untouched.step(&x, &x, &[t as f32]),
            );
            assert_eq!(
                a.unwrap()[0].to_bits(),
                b.unwrap()[0].to_bits(),
                "{local_exact} {t}"
            );
        }
    }
}

#[test]
fn sizes_beyond_the_machine_are_errors_not_aborts() {
    let map = PolySketch::<f32>::new(4, 2, 8, 0, SketchScale::Unbiased).unwrap();
    let cfg = LinearAttentionConfig::default();
    assert!(matches!(
        DecodingState::new(&map, usize::MAX, &cfg),
        Err(poly_core::Error::ResourceLimit {
            what: "decoding state",
            ..
        })
    ));
    assert!(matches!(
        DecodingState::new(&map, 1 << 50, &cfg),
        Err(poly_core::Error::ResourceLimit { .. })
    ));
    for degree in [3_000_000_001u32, u32::MAX] {
        assert!(PolySketch::<f32>::new(4, degree, 8, 0, SketchScale::Unbiased).is_err());
    }
    assert!(matches!(
        PolySketch::<f32>::new(64, 4, 1_000_000_000, 0, SketchScale::Unbiased),
        Err(poly_core::Error::ResourceLimit {
            what: "PolySketch matrices",
            ..
        })
    ));
    assert!(poly_sketch::TensorSketch::<f32>::new(64, 1_000_000_000, 8, 0).is_err());
    assert!(poly_sketch::RandomMaclaurin::<f32>::new(64, 1_000_000, 256, 0).is_err());
    assert!(poly_sketch::Favor::<f32>::new(64, 1 << 40, 0).is_err());
    assert!(poly_sketch::ExactDegree2::new(0).is_err());
    assert!(poly_sketch::ExactDegree2::new(usize::MAX).is_err());
}

#[test]
fn a_state_that_shares_its_map_decodes_like_one_that_borrows_it() {
    let (d, d_v) = (5, 3);
    let map: std::sync::Arc<dyn FeatureMap<f32>> = std::sync::Arc::new(
        SelfTensoredSketch::<f32>::new(d, 4, 8, 1, SketchScale::Unbiased).unwrap(),
    );
    let cfg = LinearAttentionConfig::default().with_normalization(Normalization::Sum);
    let mut borrowed = DecodingState::new(map.as_ref(), d_v, &cfg).unwrap();
    let mut shared = DecodingState::new_shared(map.clone(), d_v, &cfg).unwrap();
    let data: Vec<f32> = random_vec(4, 20 * d).iter().map(|&x| x as f32).collect();
    for row in data.chunks_exact(d) {
        let (a, b) = (
            borrowed.step(row, row, &row[..d_v]).unwrap(),
            shared.step(row, row, &row[..d_v]).unwrap(),
        );
        assert_eq!(
            a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }
    assert_eq!(shared.len(), 20);
}

/// Grouped heads and packed sequences: one state per k/v head, stepped with the queries of its
/// whole group and reset at each sequence boundary, reproduces the packed, grouped engine at
/// every position (both masks' causal rows, mixed or not).
#[test]
fn grouped_packed_decoding_matches_the_packed_engine() {
    let (heads, kv_heads, d, d_v) = (4, 2, 5, 3);
    let group = heads / kv_heads;
    let lengths = [1, 9, 17, 33];
    let n: usize = lengths.iter().sum();
    let sequences = poly_core::Sequences::from_lengths(&lengths).unwrap();
    let q = Tensor::from_vec([1, heads, n, d], random_vec(4, heads * n * d)).unwrap();
    let k = Tensor::from_vec([1, kv_heads, n, d], random_vec(5, kv_heads * n * d)).unwrap();
    let v = Tensor::from_vec([1, kv_heads, n, d_v], random_vec(6, kv_heads * n * d_v)).unwrap();
    let map = PolySketch::<f64>::new(d, 4, 8, 3, SketchScale::Unbiased).unwrap();
    for local_exact in [false, true] {
        let cfg = LinearAttentionConfig::default()
            .with_mask(Mask::Causal)
            .with_block(8)
            .with_local_exact(local_exact)
            .with_normalization(Normalization::OnePlusSum(1.0));
        let engine = poly_sketch::linear_attention_packed(
            q.view(),
            k.view(),
            v.view(),
            &map,
            &cfg,
            &sequences,
        )
        .unwrap();
        let (qs, ks, vs, es) = (q.as_slice(), k.as_slice(), v.as_slice(), engine.as_slice());
        for kv in 0..kv_heads {
            let mut state = DecodingState::new(&map, d_v, &cfg).unwrap();
            let mut start = 0;
            for len in lengths {
                state.reset();
                for i in start..start + len {
                    // The group's query rows of token i, one after another.
                    let group_q: Vec<f64> = (0..group)
                        .flat_map(|h| {
                            let at = ((kv * group + h) * n + i) * d;
                            qs[at..at + d].to_vec()
                        })
                        .collect();
                    let out = state
                        .step(
                            &group_q,
                            &ks[(kv * n + i) * d..(kv * n + i + 1) * d],
                            &vs[(kv * n + i) * d_v..(kv * n + i + 1) * d_v],
                        )
                        .unwrap();
                    for h in 0..group {
                        let at = ((kv * group + h) * n + i) * d_v;
                        for (o, w) in out[h * d_v..(h + 1) * d_v].iter().zip(&es[at..at + d_v]) {
                            assert!(
                                (o - w).abs() <= 1e-9 * (1.0 + w.abs()),
                                "mixed {local_exact} kv {kv} head {h} token {i}: {o} vs {w}"
                            );
                        }
                    }
                }
                assert_eq!(state.len(), len);
                start += len;
            }
        }
    }
}
