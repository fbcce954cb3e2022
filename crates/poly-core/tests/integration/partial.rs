//! `PartialAttention`: queries at arbitrary global rows, keys folded in as blocks in any order,
//! equal the engine on the whole sequence — the single-process core of ring attention.

use crate::common::{Data, random_tensor, relative_error, rng};
use poly_core::{
    AttentionConfig, Error, KvCache, Mask, Normalization, PartialAttention, Tensor, attention,
};
use std::ops::Range;

/// Rows `segments` of every head of `t`, concatenated.
fn take<T: Copy + Default>(t: &Tensor<T>, segments: &[Range<usize>]) -> Tensor<T> {
    let [b, h, n, w] = t.shape();
    let rows: usize = segments.iter().map(|s| s.len()).sum();
    let mut out = Vec::new();
    for head in t.as_slice().chunks_exact(n * w) {
        for s in segments {
            out.extend_from_slice(&head[s.start * w..s.end * w]);
        }
    }
    Tensor::from_vec([b, h, rows, w], out).unwrap()
}

#[test]
fn blocks_in_any_order_equal_the_engine() {
    let mut r = rng(808);
    let n = 200;
    let k = random_tensor::<f64>(&mut r, [2, 2, n, 8], Data::Signed);
    let v = random_tensor::<f64>(&mut r, [2, 2, n, 5], Data::Signed);
    let q = random_tensor::<f64>(&mut r, [2, 4, n, 8], Data::Signed);
    // Query shards of one, two (zig-zag-like) and three segments; key blocks in scrambled order.
    let query_shards: [Vec<Range<usize>>; 3] = [
        vec![0..200],
        vec![10..75, 190..200],
        vec![199..200, 0..1, 64..129],
    ];
    let key_blocks: Vec<Vec<Range<usize>>> = vec![vec![130..200], vec![0..1], vec![65..130, 1..65]];
    let cfgs = [
        AttentionConfig::polynomial(4).with_mask(Mask::Causal),
        AttentionConfig::polynomial(2)
            .with_normalization(Normalization::OnePlusSum(0.5))
            .with_layernorm(true),
        AttentionConfig::polynomial(5)
            .with_normalization(Normalization::None)
            .with_window(17),
        AttentionConfig::softmax()
            .with_mask(Mask::Causal)
            .with_window(40),
        AttentionConfig::softmax().with_scale(0.7),
    ];
    for cfg in &cfgs {
        let whole = attention(q.view(), k.view(), v.view(), cfg).unwrap();
        for segs in &query_shards {
            let mut p =
                PartialAttention::new(take(&q, segs).view(), segs, n, n, 2, 5, cfg).unwrap();
            for block in &key_blocks {
                let (kb, vb) = (take(&k, block), take(&v, block));
                let keys = p.prepare_keys(kb.view(), vb.view(), block).unwrap();
                p.accumulate(&keys, vb.as_slice(), block).unwrap();
            }
            let out = p.finish().unwrap();
            let err = relative_error(&out, &take(&whole, segs));
            assert!(err < 1e-12, "{cfg:?} {segs:?}: {err:e}");
        }
    }
}

#[test]
fn future_blocks_are_skipped_and_bad_blocks_are_errors() {
    let mut r = rng(809);
    let n = 64;
    let x = random_tensor::<f32>(&mut r, [1, 1, n, 4], Data::Positive);
    let cfg = AttentionConfig::polynomial(2).with_mask(Mask::Causal);
    let segs = [0..16];
    let p = PartialAttention::new(take(&x, &segs).view(), &segs, n, n, 1, 4, &cfg).unwrap();
    assert!(p.sees(&[0..1]) && p.sees(&[15..40]) && !p.sees(&[16..64]));
    // Keys with a NaN are named by their global row.
    let mut bad = take(&x, &[32..48]);
    bad.as_mut_slice()[4 * 3 + 1] = f32::NAN;
    let e = p
        .prepare_keys(bad.view(), bad.view(), &[32..48])
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                index: [0, 0, 35, 1],
                ..
            }
        ),
        "{e:?}"
    );
    // Segments that do not describe the block, or the queries.
    let block = take(&x, &[0..8]);
    assert!(p.prepare_keys(block.view(), block.view(), &[0..9]).is_err());
    assert!(PartialAttention::new(take(&x, &segs).view(), &[0..15], n, n, 1, 4, &cfg).is_err());
    assert!(PartialAttention::new(take(&x, &segs).view(), &[60..76], n, n, 1, 4, &cfg).is_err());
}

#[test]
fn kv_cache_snapshots_rebuild_the_same_cache() {
    let mut r = rng(810);
    let (kv_heads, d, d_v, n) = (2, 6, 3, 40);
    let k = random_tensor::<f64>(&mut r, [1, kv_heads, n, d], Data::Signed);
    let v = random_tensor::<f64>(&mut r, [1, kv_heads, n, d_v], Data::Signed);
    let q = random_tensor::<f64>(&mut r, [1, 4, 1, d], Data::Signed);
    let cfg = AttentionConfig::polynomial(4).with_layernorm(true);
    let mut cache = KvCache::new(&cfg, kv_heads, d, d_v).unwrap();
    cache.append(k.as_slice(), v.as_slice()).unwrap();
    let snapshot = cache.snapshot();
    let rebuilt = KvCache::from_snapshot(&cfg, &snapshot).unwrap();
    // Keys are stored LayerNormed once: the rebuilt cache attends exactly as the original.
    assert_eq!(
        rebuilt.attend(q.as_slice(), 4).unwrap(),
        cache.attend(q.as_slice(), 4).unwrap()
    );
    let mut short = snapshot.clone();
    short.keys.pop();
    assert!(KvCache::from_snapshot(&cfg, &short).is_err());
    let mut nan = snapshot;
    nan.values[7] = f64::NAN;
    assert!(matches!(
        KvCache::from_snapshot(&cfg, &nan),
        Err(Error::NonFinite { .. })
    ));
}
