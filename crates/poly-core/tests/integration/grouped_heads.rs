//! Grouped-query and multi-query attention: k and v with `H_kv` heads serve `H = g·H_kv` query
//! heads. Each query head must give exactly what ordinary attention gives with its group's k/v
//! head repeated — bit for bit in the engine, and in the f64 reference.

use crate::common::{Data, bits_equal, random_tensor, relative_error, rng};
use poly_core::{
    AttentionConfig, Error, Kernel, Mask, Normalization, Tensor, attention, reference_attention,
};

/// `x` (`[b, kv, n, d]`) with every head repeated `group` times: `[b, kv·group, n, d]`.
fn repeat_heads(x: &Tensor<f32>, group: usize) -> Tensor<f32> {
    let [b, kv, n, d] = x.shape();
    let mut data = Vec::with_capacity(b * kv * group * n * d);
    for head in x.as_slice().chunks_exact(n * d) {
        for _ in 0..group {
            data.extend_from_slice(head);
        }
    }
    Tensor::from_vec([b, kv * group, n, d], data).unwrap()
}

#[test]
fn each_query_head_reads_its_groups_key_value_head() {
    let mut r = rng(31);
    let heads = 6;
    for (kv_heads, n_q, n_k) in [(6, 40, 40), (3, 65, 65), (2, 17, 70), (1, 33, 70)] {
        let group = heads / kv_heads;
        let q = random_tensor::<f32>(&mut r, [2, heads, n_q, 8], Data::Positive);
        let k = random_tensor::<f32>(&mut r, [2, kv_heads, n_k, 8], Data::Positive);
        let v = random_tensor::<f32>(&mut r, [2, kv_heads, n_k, 5], Data::Signed);
        let (k_rep, v_rep) = (repeat_heads(&k, group), repeat_heads(&v, group));
        for kernel in [Kernel::Polynomial { degree: 3 }, Kernel::Softmax] {
            for mask in [Mask::None, Mask::Causal] {
                for normalization in [
                    Normalization::Sum,
                    Normalization::OnePlusSum(0.5),
                    Normalization::None,
                ] {
                    let cfg = AttentionConfig::new(kernel)
                        .with_mask(mask)
                        .with_normalization(normalization)
                        .with_layernorm(kv_heads == 2);
                    let label = format!("kv {kv_heads} {kernel:?} {mask:?} {normalization:?}");
                    let grouped = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
                    let repeated = attention(q.view(), k_rep.view(), v_rep.view(), &cfg).unwrap();
                    assert!(
                        bits_equal(grouped.as_slice(), repeated.as_slice()),
                        "{label}"
                    );
                    let want = reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
                    let want_rep =
                        reference_attention(q.view(), k_rep.view(), v_rep.view(), &cfg).unwrap();
                    assert_eq!(want.as_slice(), want_rep.as_slice(), "{label}");
                    assert!(relative_error(&grouped, &want) < 1e-4, "{label}");
                }
            }
        }
    }
}

#[test]
fn head_counts_that_do_not_group_are_errors() {
    let mut r = rng(32);
    let q = random_tensor::<f32>(&mut r, [1, 4, 5, 3], Data::Signed);
    let k3 = random_tensor::<f32>(&mut r, [1, 3, 5, 3], Data::Signed);
    let k2 = random_tensor::<f32>(&mut r, [1, 2, 5, 3], Data::Signed);
    let v1 = random_tensor::<f32>(&mut r, [1, 1, 5, 3], Data::Signed);
    let cfg = AttentionConfig::polynomial(2);
    let err = attention(q.view(), k3.view(), k3.view(), &cfg).unwrap_err();
    assert_eq!(
        err,
        Error::HeadGroups {
            heads: 4,
            kv_heads: 3
        }
    );
    assert!(
        err.to_string()
            .contains("3 heads do not divide q's 4 heads")
    );
    // v must have k's head count.
    let err = attention(q.view(), k2.view(), v1.view(), &cfg).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                axis: "heads",
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{err:?}"
    );
    // More k/v heads than query heads do not divide them either.
    let q1 = random_tensor::<f32>(&mut r, [1, 1, 5, 3], Data::Signed);
    let err = attention(q1.view(), k2.view(), k2.view(), &cfg).unwrap_err();
    assert_eq!(
        err,
        Error::HeadGroups {
            heads: 1,
            kv_heads: 2
        }
    );
}
