//! The streaming engine against the plain f64 reference over awkward shapes, every degree class,
//! both masks, all normalizations, scale and LayerNorm options, in f32 and f64.

use crate::common::{Data, random_tensor, relative_error, rng};
use poly_core::{
    AttentionConfig, Element, Error, Kernel, Mask, Normalization, attention, reference_attention,
};
use std::mem::discriminant;

/// (batch, heads, n_q, n_k, d, d_v): n = 1, d = 1, d_v ≠ d, n_q ≠ n_k both ways, tails of the
/// 64- and 128-row query tiles, key counts above the single-tile limit (768) so that the streaming
/// rescaling across key tiles (≤ 512, evened out) is exercised, causal 128-row tiles whose diagonal
/// splits into 64-row groups (65, 70 and 129 rows: a group of one row, a split below a multiple of
/// 16, a tile and one row), and a causal problem with 4163 keys.
const SHAPES: &[(usize, usize, usize, usize, usize, usize)] = &[
    (1, 1, 1, 1, 1, 1),
    (1, 1, 1, 5, 3, 2),
    (2, 3, 17, 17, 5, 7),
    (1, 2, 65, 65, 8, 8),
    (1, 1, 70, 130, 16, 3),
    (1, 1, 130, 65, 4, 4),
    (1, 1, 100, 1500, 8, 4),
    (2, 1, 129, 1100, 16, 16),
    (1, 1, 300, 4163, 4, 3),
];

const DEGREES: &[u32] = &[1, 2, 3, 4, 5, 6, 7, 8, 16, 33, 64];

const NORMALIZATIONS: &[Normalization] = &[
    Normalization::Sum,
    Normalization::OnePlusSum(1.0),
    Normalization::None,
];

/// Accuracy bound relative to the largest reference output. f32 scores carry ~ε·√d relative
/// error, which a degree-β power amplifies β-fold; f64 is held to 1e-11 for the same reason.
fn tolerance<T: Element>(kernel: Kernel) -> f64 {
    let amplification = match kernel {
        Kernel::Polynomial { degree } => degree.max(4) as f64,
        _ => 8.0,
    };
    let unit = if T::NAME == "f32" { 3e-6 } else { 1e-14 };
    unit * amplification * 10.0
}

fn check_case<T: Element>(shape_index: usize, cfg: &AttentionConfig, data: Data, seed: u64) {
    let (b, h, n_q, n_k, d, d_v) = SHAPES[shape_index];
    let mut r = rng(seed);
    let q = random_tensor::<T>(&mut r, [b, h, n_q, d], data);
    let k = random_tensor::<T>(&mut r, [b, h, n_k, d], data);
    let v = random_tensor::<T>(&mut r, [b, h, n_k, d_v], Data::Signed);
    let fast = attention(q.view(), k.view(), v.view(), cfg);
    let slow = reference_attention(q.view(), k.view(), v.view(), cfg);
    match (fast, slow) {
        (Ok(fast), Ok(slow)) => {
            let err = relative_error(&fast, &slow);
            let tol = tolerance::<T>(cfg.kernel);
            assert!(
                err <= tol,
                "{} shape {:?} {cfg:?}: relative error {err:.3e} > {tol:.1e}",
                T::NAME,
                SHAPES[shape_index]
            );
        }
        (Err(a), Err(b)) => assert_eq!(discriminant(&a), discriminant(&b), "{a} vs {b}"),
        (fast, slow) => panic!(
            "{} shape {:?} {cfg:?}: engine {:?} but reference {:?}",
            T::NAME,
            SHAPES[shape_index],
            fast.err(),
            slow.err()
        ),
    }
}

fn sweep<T: Element>(kernels: &[Kernel], extra: impl Fn(AttentionConfig) -> AttentionConfig) {
    let mut seed = 0;
    for shape in 0..SHAPES.len() {
        for &kernel in kernels {
            for mask in [Mask::None, Mask::Causal] {
                for &normalization in NORMALIZATIONS {
                    seed += 1;
                    let cfg = extra(
                        AttentionConfig::new(kernel)
                            .with_mask(mask)
                            .with_normalization(normalization),
                    );
                    let odd = matches!(kernel, Kernel::Polynomial { degree } if degree % 2 == 1);
                    let data = if odd { Data::Positive } else { Data::Signed };
                    check_case::<T>(shape, &cfg, data, seed);
                }
            }
        }
    }
}

fn polynomial_kernels() -> Vec<Kernel> {
    DEGREES
        .iter()
        .map(|&degree| Kernel::Polynomial { degree })
        .collect()
}

#[test]
fn polynomial_f32_matches_reference() {
    sweep::<f32>(&polynomial_kernels(), |c| c);
}

#[test]
fn polynomial_f64_matches_reference() {
    sweep::<f64>(&polynomial_kernels(), |c| c);
}

#[test]
fn softmax_matches_reference() {
    sweep::<f32>(&[Kernel::Softmax], |c| c);
    sweep::<f64>(&[Kernel::Softmax], |c| c);
}

#[test]
fn scale_and_layernorm_options_match_reference() {
    let kernels = [
        Kernel::Polynomial { degree: 2 },
        Kernel::Polynomial { degree: 7 },
        Kernel::Softmax,
    ];
    sweep::<f64>(&kernels, |c| c.with_scale(-2.5));
    sweep::<f32>(&kernels, |c| c.with_scale(0.37));
    // LayerNorm makes scores signed, so odd degrees would cancel: even degrees and softmax only.
    let even = [
        Kernel::Polynomial { degree: 2 },
        Kernel::Polynomial { degree: 6 },
        Kernel::Softmax,
    ];
    sweep::<f32>(&even, |c| c.with_scale(0.37).with_layernorm(true));
    sweep::<f64>(&even, |c| c.with_layernorm(true));
}

#[test]
fn causal_rows_without_keys_are_rejected_under_sum_only() {
    // n_q > n_k: the first n_q − n_k queries see no key.
    let mut r = rng(7);
    let q = random_tensor::<f32>(&mut r, [1, 1, 6, 3], Data::Signed);
    let k = random_tensor::<f32>(&mut r, [1, 1, 4, 3], Data::Signed);
    let v = random_tensor::<f32>(&mut r, [1, 1, 4, 2], Data::Signed);
    let cfg = AttentionConfig::polynomial(2).with_mask(Mask::Causal);
    let err = attention(q.view(), k.view(), v.view(), &cfg).unwrap_err();
    assert!(matches!(err, Error::NoVisibleKeys { .. }), "{err}");
    for normalization in [Normalization::OnePlusSum(1.0), Normalization::None] {
        for cfg in [cfg, AttentionConfig::softmax().with_mask(Mask::Causal)] {
            let cfg = cfg.with_normalization(normalization);
            let out = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
            // Rows 0 and 1 see nothing: their output is exactly 0.
            assert!(out.as_slice()[..4].iter().all(|&x| x == 0.0));
            let slow = reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
            assert!(relative_error(&out, &slow) < 1e-5);
        }
    }
}
