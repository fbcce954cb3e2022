//! Huge degrees and huge or tiny scores: the running-maximum evaluation must neither overflow nor
//! underflow to 0/0 (docs/math.md §2.3), in f32 as in f64.

use crate::common::{Data, random_tensor, relative_error, rng};
use poly_core::{
    AttentionConfig, Error, Mask, Normalization, Tensor, attention, reference_attention,
};

fn scaled(t: &Tensor<f32>, factor: f32) -> Tensor<f32> {
    t.map(|&x| x * factor)
}

#[test]
fn degree_64_with_scores_near_1e3_is_right_in_f32() {
    let mut r = rng(21);
    // Entries ~±8 with d = 32 give |q·k| up to ~1e3; (1e3)^64 = 1e192 would overflow f32 naively.
    let q = scaled(
        &random_tensor::<f32>(&mut r, [1, 2, 150, 32], Data::Signed),
        8.0,
    );
    let k = scaled(
        &random_tensor::<f32>(&mut r, [1, 2, 1200, 32], Data::Signed),
        8.0,
    );
    let v = random_tensor::<f32>(&mut r, [1, 2, 1200, 16], Data::Signed);
    for mask in [Mask::None, Mask::Causal] {
        let cfg = AttentionConfig::polynomial(64).with_mask(mask);
        let out = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        assert!(out.as_slice().iter().all(|x| x.is_finite()));
        let reference = reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        let err = relative_error(&out, &reference);
        assert!(err < 2e-3, "{mask:?}: relative error {err}");
    }
}

#[test]
fn tiny_scores_do_not_underflow_to_nan() {
    let mut r = rng(22);
    // |q·k| ~ 1e-26: s^8 = 1e-208 underflows f32 (and s^16 even f64) if evaluated directly.
    let q = scaled(
        &random_tensor::<f32>(&mut r, [1, 1, 70, 8], Data::Signed),
        1e-13,
    );
    let k = scaled(
        &random_tensor::<f32>(&mut r, [1, 1, 900, 8], Data::Signed),
        1e-13,
    );
    let v = random_tensor::<f32>(&mut r, [1, 1, 900, 4], Data::Signed);
    for degree in [8, 16] {
        let cfg = AttentionConfig::polynomial(degree);
        let out = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        let reference = reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        assert!(relative_error(&out, &reference) < 1e-3);
        // OnePlusSum: c·m^(−β) overflows to +∞ and the true output is 0 — both limits hold.
        let cfg = cfg.with_normalization(Normalization::OnePlusSum(1.0));
        let out = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        assert!(out.as_slice().iter().all(|&x| x == 0.0));
    }
}

#[test]
fn degree_1024_in_both_precisions() {
    let mut r = rng(23);
    let q = random_tensor::<f64>(&mut r, [1, 1, 40, 4], Data::Signed).map(|x| x * 30.0);
    let k = random_tensor::<f64>(&mut r, [1, 1, 900, 4], Data::Signed).map(|x| x * 30.0);
    let v = random_tensor::<f64>(&mut r, [1, 1, 900, 3], Data::Signed);
    let cfg = AttentionConfig::polynomial(1024).with_mask(Mask::Causal);
    let out64 = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
    let reference = reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
    assert!(relative_error(&out64, &reference) < 1e-9);
    let (q32, k32, v32) = (
        q.map(|&x| x as f32),
        k.map(|&x| x as f32),
        v.map(|&x| x as f32),
    );
    let out32 = attention(q32.view(), k32.view(), v32.view(), &cfg).unwrap();
    assert!(out32.as_slice().iter().all(|x| x.is_finite()));
    // Degree 1024 is close to hard attention on the largest |score|: f32 rounding of the scores
    // can move weight between near-ties, so compare coarsely.
    assert!(relative_error(&out32, &reference) < 0.2);
}

#[test]
fn none_normalization_reports_overflow_instead_of_infinity() {
    let mut r = rng(24);
    let q = random_tensor::<f32>(&mut r, [1, 1, 3, 4], Data::Positive).map(|x| x * 10.0);
    let k = random_tensor::<f32>(&mut r, [1, 1, 5, 4], Data::Positive).map(|x| x * 10.0);
    let v = random_tensor::<f32>(&mut r, [1, 1, 5, 2], Data::Signed);
    let cfg = AttentionConfig::polynomial(40).with_normalization(Normalization::None);
    let err = attention(q.view(), k.view(), v.view(), &cfg).unwrap_err();
    assert!(
        matches!(err, Error::Overflow { at, .. } if at.row == 0),
        "{err}"
    );
    // Softmax without normalization overflows for large scores too.
    let cfg = AttentionConfig::softmax()
        .with_scale(10.0)
        .with_normalization(Normalization::None);
    assert!(matches!(
        attention(q.view(), k.view(), v.view(), &cfg),
        Err(Error::Overflow { .. })
    ));
    // f64 holds the same result.
    let (q, k, v) = (
        q.map(|&x| x as f64),
        k.map(|&x| x as f64),
        v.map(|&x| x as f64),
    );
    let cfg = AttentionConfig::polynomial(40).with_normalization(Normalization::None);
    let out = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
    let reference = reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
    assert!(relative_error(&out, &reference) < 1e-12);
}

#[test]
fn scores_overflowing_f32_are_an_error_not_nan() {
    // Finite inputs whose products overflow f32: q·k = 1e40.
    let q = Tensor::from_vec([1, 1, 2, 2], vec![1e20f32, 1e20, 1.0, 1.0]).unwrap();
    let k = Tensor::from_vec([1, 1, 2, 2], vec![1e20f32, 1e20, 1.0, -1.0]).unwrap();
    let v = Tensor::from_vec([1, 1, 2, 1], vec![1.0f32, 2.0]).unwrap();
    for cfg in [AttentionConfig::polynomial(2), AttentionConfig::softmax()] {
        let err = attention(q.view(), k.view(), v.view(), &cfg).unwrap_err();
        assert!(
            matches!(err, Error::Overflow { at, .. } if at.row == 0),
            "{cfg:?}: {err}"
        );
    }
}
