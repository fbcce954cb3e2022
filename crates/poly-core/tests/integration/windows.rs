//! Sliding-window attention against a dense mask spelled out here, independently of
//! `Dims::key_range`: the engine and the reference must both equal attention restricted to it.

use crate::common::{Data, dense_attention, random_tensor, relative_error, rng};
use poly_core::{
    AttentionConfig, Dims, Kernel, Mask, Normalization, Tensor, attention, reference_attention,
    visible_pairs_in_window,
};

/// Whether query `i` sees key `j` (positions aligned to the last keys).
fn visible(i: usize, j: usize, n_q: usize, n_k: usize, mask: Mask, w: usize) -> bool {
    let at = i as i64 + n_k as i64 - n_q as i64;
    let j = j as i64;
    match mask {
        Mask::Causal => j <= at && j > at - w as i64,
        _ => (at - j).abs() < w as i64,
    }
}

#[test]
fn windows_equal_the_dense_mask() {
    let mut r = rng(41);
    for (n_q, n_k) in [(70, 70), (65, 65), (20, 90), (1, 40)] {
        let q = random_tensor::<f64>(&mut r, [1, 2, n_q, 6], Data::Positive);
        let k = random_tensor::<f64>(&mut r, [1, 2, n_k, 6], Data::Positive);
        let v = random_tensor::<f64>(&mut r, [1, 2, n_k, 3], Data::Signed);
        let (q32, k32, v32) = (
            q.map(|&x| x as f32),
            k.map(|&x| x as f32),
            v.map(|&x| x as f32),
        );
        for kernel in [Kernel::Polynomial { degree: 3 }, Kernel::Softmax] {
            for mask in [Mask::None, Mask::Causal] {
                for normalization in [
                    Normalization::Sum,
                    Normalization::OnePlusSum(1.0),
                    Normalization::None,
                ] {
                    for w in [1, 2, 7, 64, 65, 200] {
                        let cfg = AttentionConfig::new(kernel)
                            .with_mask(mask)
                            .with_normalization(normalization)
                            .with_window(w);
                        let label =
                            format!("{n_q}×{n_k} {kernel:?} {mask:?} {normalization:?} w {w}");
                        let want = dense_attention(&q, &k, &v, &cfg, |_, i, j| {
                            visible(i, j, n_q, n_k, mask, w)
                        });
                        let reference =
                            reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
                        assert!(
                            relative_error(&reference, &want) < 1e-12,
                            "reference {label}"
                        );
                        let engine = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
                        assert!(relative_error(&engine, &want) < 1e-12, "f64 {label}");
                        let engine32 = attention(q32.view(), k32.view(), v32.view(), &cfg).unwrap();
                        assert!(relative_error(&engine32, &want) < 1e-4, "f32 {label}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_window_costs_n_times_w_and_zero_is_refused() {
    let dims = Dims::new(1, 1, 1000, 1000, 8, 8);
    let w = 32;
    // Causal: row i sees min(i + 1, w) keys.
    let want: u64 = (0..1000u64).map(|i| (i + 1).min(w)).sum();
    assert_eq!(
        visible_pairs_in_window(&dims, Mask::Causal, Some(w as usize)),
        want
    );
    // Two-sided: at most 2w − 1 keys per row.
    assert!(visible_pairs_in_window(&dims, Mask::None, Some(w as usize)) <= 1000 * (2 * w - 1));
    let x = Tensor::from_vec([1, 1, 2, 1], vec![1.0f32, 2.0]).unwrap();
    let err = attention(
        x.view(),
        x.view(),
        x.view(),
        &AttentionConfig::polynomial(2).with_window(0),
    );
    assert!(err.unwrap_err().to_string().contains("window"));
}
