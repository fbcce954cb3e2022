//! The exact KV cache equals the tiled engine on the same keys (queries = the newest tokens),
//! whatever the chunking, thread count or append pattern; bad tokens never enter it.

use crate::common::{Data, bits_equal, random_tensor, relative_error, rng};
use poly_core::{
    AttentionConfig, DECODE_CHUNK, Error, Kernel, KvCache, Mask, Normalization, Tensor, Threads,
    attention, reference_attention,
};
use std::num::NonZeroUsize;

/// Rows `rows` of `[1, h, n, d]` as `[h, rows, d]` data.
fn rows(x: &Tensor<f32>, rows: std::ops::Range<usize>) -> Vec<f32> {
    x.view().rows(rows).unwrap().into_vec()
}

#[test]
fn the_cache_equals_attention_over_the_same_keys() {
    let mut r = rng(61);
    let (heads, kv_heads, d, d_v) = (4, 2, 8, 5);
    let n = 2 * DECODE_CHUNK + 153; // three chunks, the last partial
    let k = random_tensor::<f32>(&mut r, [1, kv_heads, n, d], Data::Positive);
    let v = random_tensor::<f32>(&mut r, [1, kv_heads, n, d_v], Data::Signed);
    let q_all = random_tensor::<f32>(&mut r, [1, heads, n, d], Data::Positive);
    for kernel in [
        Kernel::Polynomial { degree: 4 },
        Kernel::Polynomial { degree: 3 },
        Kernel::Softmax,
    ] {
        for mask in [Mask::Causal, Mask::None] {
            for normalization in [
                Normalization::Sum,
                Normalization::OnePlusSum(1.0),
                Normalization::None,
            ] {
                let mut cfg = AttentionConfig::new(kernel)
                    .with_mask(mask)
                    .with_normalization(normalization)
                    .with_layernorm(kernel == Kernel::Softmax);
                // Windows across a chunk boundary, and ones that leave the first chunk(s) out.
                cfg.window = match (mask, normalization) {
                    (Mask::Causal, Normalization::Sum) => Some(1500),
                    (Mask::Causal, Normalization::OnePlusSum(_)) => Some(300),
                    (Mask::None, Normalization::Sum) => Some(600),
                    _ => None,
                };
                let mut cache = KvCache::<f32>::new(&cfg, kv_heads, d, d_v).unwrap();
                // Appends of 1, 700 and the rest cross the chunk boundaries.
                for piece in [0..1, 1..701, 701..n] {
                    cache
                        .append(&rows(&k, piece.clone()), &rows(&v, piece))
                        .unwrap();
                }
                assert_eq!(cache.len(), n);
                for t in [1, 3] {
                    let q = q_all.view().rows(n - t..n).unwrap();
                    let got = cache.attend(q.as_slice(), heads).unwrap();
                    let label = format!("{kernel:?} {mask:?} {normalization:?} t {t}");
                    let engine = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
                    let want = reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
                    assert!(relative_error(&got, &want) < 1e-4, "{label}");
                    assert!(relative_error(&engine, &want) < 1e-4, "{label}");
                    // Chunks are fixed by the length: any thread count gives the same bits.
                    let on = |threads: usize| {
                        let pool = Threads::Exact(NonZeroUsize::new(threads).unwrap());
                        let mut c =
                            KvCache::new(&cfg.with_threads(pool), kv_heads, d, d_v).unwrap();
                        c.append(&rows(&k, 0..n), &rows(&v, 0..n)).unwrap();
                        c.attend(q.as_slice(), heads).unwrap()
                    };
                    let (a, b) = (on(1), on(3));
                    assert!(bits_equal(a.as_slice(), b.as_slice()), "{label}");
                }
            }
        }
    }
}

#[test]
fn bad_tokens_never_enter_the_cache() {
    let cfg = AttentionConfig::polynomial(2).with_mask(Mask::Causal);
    let mut cache = KvCache::<f64>::new(&cfg, 1, 2, 1).unwrap();
    cache.append(&[1.0, 0.5], &[2.0]).unwrap();
    let err = cache
        .append(&[1.0, 0.5, f64::NAN, 1.0], &[1.0, 1.0])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFinite {
                index: [0, 0, 2, 0],
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(cache.len(), 1);
    assert!(cache.append(&[1.0], &[1.0]).is_err());
    // Two queries over one cached token cannot both be "the newest" under the causal mask.
    assert!(cache.attend(&[1.0, 1.0, 1.0, 1.0], 1).is_err());
    // Two values cannot be [3 heads, t, d = 2].
    assert!(cache.attend(&[1.0, 1.0], 3).is_err());
    let out = cache.attend(&[1.0, 1.0], 1).unwrap();
    assert!((out.as_slice()[0] - 2.0).abs() < 1e-12);
    assert!(KvCache::<f64>::new(&cfg, 1, 0, 1).is_err());
}

/// Token by token across a chunk boundary: after each append, attending the newest token equals
/// the engine's causal row at that position (grouped heads, a window that starts skipping chunks).
#[test]
fn decoding_equals_the_engine_at_every_position() {
    let mut r = rng(62);
    let (heads, kv_heads, d, d_v) = (4, 2, 8, 3);
    let n = DECODE_CHUNK + 90;
    let q = random_tensor::<f64>(&mut r, [1, heads, n, d], Data::Positive);
    let k = random_tensor::<f64>(&mut r, [1, kv_heads, n, d], Data::Positive);
    let v = random_tensor::<f64>(&mut r, [1, kv_heads, n, d_v], Data::Signed);
    let head_rows = |x: &Tensor<f64>, range: std::ops::Range<usize>| -> Vec<f64> {
        x.view().rows(range).unwrap().into_vec()
    };
    for (kernel, window) in [
        (Kernel::Polynomial { degree: 4 }, None),
        (Kernel::Softmax, Some(1000)),
    ] {
        let mut cfg = AttentionConfig::new(kernel).with_mask(Mask::Causal);
        cfg.window = window;
        let engine = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        let mut cache = KvCache::<f64>::new(&cfg, kv_heads, d, d_v).unwrap();
        cache.reserve(n).unwrap();
        for i in 0..n {
            cache
                .append(&head_rows(&k, i..i + 1), &head_rows(&v, i..i + 1))
                .unwrap();
            let got = cache.attend(&head_rows(&q, i..i + 1), heads).unwrap();
            let want = head_rows(&engine, i..i + 1);
            for (a, b) in got.as_slice().iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                    "{kernel:?} {window:?} token {i}: {a} vs {b}"
                );
            }
        }
    }
}
