//! Ill-conditioned normalizers: the linear engine and decoding refuse a `Sum`/`OnePlusSum`
//! normalizer whose terms cancel, by the exact engine's rule applied to the feature products they
//! add (docs/math.md §4.5), and never refuse maps whose weights cannot be negative.

use crate::common::random;
use poly_core::{AttentionConfig, Element, Error, Mask, Normalization, Tensor, attention};
use poly_sketch::{
    DecodingState, FeatureMap, LinearAttentionConfig, MapKind, MapSpec, SketchElement,
    linear_attention,
};

/// The signed families at an odd degree: `φ(−x) = −φ(x)`, so the keys `x, −x` cancel exactly.
const SIGNED: [MapKind; 3] = [
    MapKind::PolySketchTree,
    MapKind::TensorSketch,
    MapKind::RandomMaclaurin,
];

fn negated<T: Element>(x: &Tensor<T>) -> Vec<T> {
    x.as_slice().iter().map(|&v| T::ZERO - v).collect()
}

fn cancelling_keys_are_refused<T: SketchElement>() {
    let d = 5;
    let q = random::<T>(1, [1, 1, 4, d]);
    let x = random::<T>(2, [1, 1, 1, d]);
    let mut keys = x.as_slice().to_vec();
    keys.extend(negated(&x));
    let k = Tensor::from_vec([1, 1, 2, d], keys).unwrap();
    let v = random::<T>(3, [1, 1, 2, 3]);
    let exact = AttentionConfig::polynomial(3);
    let err = attention(q.view(), k.view(), v.view(), &exact).unwrap_err();
    assert!(
        matches!(err, Error::IllConditionedNormalizer { .. }),
        "exact: {err:?}"
    );
    for kind in SIGNED {
        let map = MapSpec::new(kind, 3, 16, 7).build::<T>(d).unwrap();
        for normalization in [Normalization::Sum, Normalization::OnePlusSum(0.0)] {
            let cfg = LinearAttentionConfig::default().with_normalization(normalization);
            let err = linear_attention(q.view(), k.view(), v.view(), map.as_ref(), &cfg)
                .expect_err("cancelling keys");
            match err {
                Error::IllConditionedNormalizer { at, ratio, .. } => {
                    assert_eq!(at.row, 0, "{kind:?}");
                    assert!(ratio <= T::NORMALIZER_TOLERANCE, "{kind:?}: {ratio}");
                }
                other => panic!("{} {kind:?} {normalization:?}: {other:?}", T::NAME),
            }
            // `None` divides by nothing, so it has nothing to refuse.
            let none = cfg.with_normalization(Normalization::None);
            linear_attention(q.view(), k.view(), v.view(), map.as_ref(), &none).unwrap();
            // Decoding: the step that brings −x is refused and leaves the state as it was.
            let mut state = DecodingState::new(map.as_ref(), 3, &cfg).unwrap();
            state.prefill(x.as_slice(), &v.as_slice()[..3]).unwrap();
            let minus_x = negated(&x);
            let step = state.step(&q.as_slice()[..d], &minus_x, &v.as_slice()[3..]);
            assert!(
                matches!(step, Err(Error::IllConditionedNormalizer { .. })),
                "decoding {kind:?}: {step:?}"
            );
            assert_eq!(state.len(), 1);
        }
    }
}

#[test]
fn signed_weights_that_cancel_are_refused_f32() {
    cancelling_keys_are_refused::<f32>();
}

#[test]
fn signed_weights_that_cancel_are_refused_f64() {
    cancelling_keys_are_refused::<f64>();
}

/// `|Σ_j w_ij| / Σ_f |a_if| Σ_j |b_jf|` for every row, in f64 from the map's own features.
fn dense_ratios<T: Element>(q: &[T], k: &[T], map: &dyn FeatureMap<T>, mask: Mask) -> Vec<f64> {
    let (d, m) = (map.input_dim(), map.feature_dim());
    let (n_q, n_k) = (q.len() / d, k.len() / d);
    let (a, b) = (map.map_rows(q).unwrap(), map.map_rows(k).unwrap());
    (0..n_q)
        .map(|i| {
            let visible = if mask == Mask::Causal { i + 1 } else { n_k };
            let (mut sum, mut magnitude) = (0.0, 0.0);
            for j in 0..visible {
                for f in 0..m {
                    let term = a[i * m + f].to_f64() * b[j * m + f].to_f64();
                    sum += term;
                    magnitude += term.abs();
                }
            }
            sum.abs() / magnitude
        })
        .collect()
}

/// On random data the engine refuses exactly the rows the rule names: the first refused row is
/// ill-conditioned (within a factor 2 of the tolerance, for rounding), the rows before it are
/// not, and an accepted run has no clearly ill-conditioned row.
fn refusals_follow_the_rule<T: SketchElement>() -> (usize, usize) {
    let (n, d) = (48, 4);
    let tol = T::NORMALIZER_TOLERANCE;
    let (mut accepted, mut refused) = (0, 0);
    for seed in 0..12 {
        let q = random::<T>(100 + seed, [1, 1, n, d]);
        let k = random::<T>(200 + seed, [1, 1, n, d]);
        let v = random::<T>(300 + seed, [1, 1, n, 2]);
        for kind in SIGNED {
            let map = MapSpec::new(kind, 3, 8, seed).build::<T>(d).unwrap();
            for mask in [Mask::None, Mask::Causal] {
                let ratios = dense_ratios(q.as_slice(), k.as_slice(), map.as_ref(), mask);
                let cfg = LinearAttentionConfig::default()
                    .with_mask(mask)
                    .with_block(7)
                    .with_normalization(Normalization::Sum);
                let label = format!("{} {kind:?} {mask:?} seed {seed}", T::NAME);
                match linear_attention(q.view(), k.view(), v.view(), map.as_ref(), &cfg) {
                    Ok(_) => {
                        accepted += 1;
                        let worst = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                        assert!(worst > tol / 2.0, "{label}: accepted a row at {worst:.3e}");
                    }
                    Err(Error::IllConditionedNormalizer { at, .. }) => {
                        refused += 1;
                        assert!(ratios[at.row] <= 2.0 * tol, "{label}: row {}", at.row);
                        let before = &ratios[..at.row];
                        assert!(before.iter().all(|&r| r > tol / 2.0), "{label}: {before:?}");
                    }
                    Err(other) => panic!("{label}: {other:?}"),
                }
            }
        }
    }
    (accepted, refused)
}

#[test]
fn refusals_follow_the_rule_f32() {
    let (accepted, refused) = refusals_follow_the_rule::<f32>();
    // Both outcomes occur with these sizes, so both branches above were checked.
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn refusals_follow_the_rule_f64() {
    let (accepted, _) = refusals_follow_the_rule::<f64>();
    assert!(accepted > 0);
}

/// Maps whose weights cannot be negative are judged by `|Σ w|` alone: never refused for
/// cancellation, even where their features are signed.
#[test]
fn nonnegative_maps_are_never_refused() {
    let (n, d) = (300, 16);
    for kind in [MapKind::PolySketch, MapKind::Exact2, MapKind::Favor] {
        let degree = if kind == MapKind::Favor { 1 } else { 2 };
        let map = MapSpec::new(kind, degree, 8, 3).build::<f32>(d).unwrap();
        assert!(map.nonnegative_weights(), "{kind:?}");
        for seed in 0..4 {
            let q = random::<f32>(400 + seed, [1, 2, n, d]);
            let k = random::<f32>(500 + seed, [1, 2, n, d]);
            let v = random::<f32>(600 + seed, [1, 2, n, 3]);
            for mask in [Mask::None, Mask::Causal] {
                let cfg = LinearAttentionConfig::default()
                    .with_mask(mask)
                    .with_normalization(Normalization::Sum);
                linear_attention(q.view(), k.view(), v.view(), map.as_ref(), &cfg)
                    .unwrap_or_else(|e| panic!("{kind:?} {mask:?} seed {seed}: {e}"));
            }
        }
    }
}
