//! Grouped-query attention in the linear engine: k/v heads shared by groups of query heads give
//! exactly the outputs of the k/v heads repeated, on every scan path (sequential per head, and
//! two-pass across chunks when there are fewer heads than threads).

use crate::common::random;
use poly_core::{Error, Mask, Normalization, Tensor, Threads};
use poly_sketch::{LinearAttentionConfig, MapKind, MapSpec, linear_attention};
use std::num::NonZeroUsize;

fn repeat_heads(x: &Tensor<f32>, group: usize) -> Tensor<f32> {
    let [b, kv, n, d] = x.shape();
    let mut data = Vec::new();
    for head in x.as_slice().chunks_exact(n * d) {
        for _ in 0..group {
            data.extend_from_slice(head);
        }
    }
    Tensor::from_vec([b, kv * group, n, d], data).unwrap()
}

#[test]
fn shared_key_value_heads_equal_repeated_ones() {
    let (n, d, d_v, heads) = (90, 6, 4, 4);
    let map = MapSpec::new(MapKind::PolySketch, 4, 8, 3)
        .build::<f32>(d)
        .unwrap();
    for kv_heads in [4, 2, 1] {
        let group = heads / kv_heads;
        let q = random::<f32>(1, [1, heads, n, d]);
        let k = random::<f32>(2, [1, kv_heads, n, d]);
        let v = random::<f32>(3, [1, kv_heads, n, d_v]);
        let (k_rep, v_rep) = (repeat_heads(&k, group), repeat_heads(&v, group));
        for (mask, local_exact) in [
            (Mask::None, false),
            (Mask::Causal, false),
            (Mask::Causal, true),
        ] {
            // 5 threads for 4 heads: the two-pass scan.
            for threads in [1, 5] {
                let cfg = LinearAttentionConfig::default()
                    .with_mask(mask)
                    .with_block(16)
                    .with_local_exact(local_exact)
                    .with_normalization(Normalization::Sum)
                    .with_threads(Threads::Exact(NonZeroUsize::new(threads).unwrap()));
                let grouped =
                    linear_attention(q.view(), k.view(), v.view(), map.as_ref(), &cfg).unwrap();
                let repeated =
                    linear_attention(q.view(), k_rep.view(), v_rep.view(), map.as_ref(), &cfg)
                        .unwrap();
                let bits =
                    |t: &Tensor<f32>| t.as_slice().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&grouped),
                    bits(&repeated),
                    "kv {kv_heads} {mask:?} mixed {local_exact} threads {threads}"
                );
            }
        }
    }
}

#[test]
fn head_counts_that_do_not_group_are_errors() {
    let map = MapSpec::new(MapKind::Exact2, 2, 0, 0)
        .build::<f32>(3)
        .unwrap();
    let q = random::<f32>(1, [1, 4, 5, 3]);
    let k = random::<f32>(2, [1, 3, 5, 3]);
    let cfg = LinearAttentionConfig::default();
    let err = linear_attention(q.view(), k.view(), k.view(), map.as_ref(), &cfg).unwrap_err();
    assert_eq!(
        err,
        Error::HeadGroups {
            heads: 4,
            kv_heads: 3
        }
    );
}
