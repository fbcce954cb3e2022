//! Gradients of exact attention: against central finite differences of the f64 reference, against
//! a dense f64 backward written out here (over awkward shapes, grouped heads, windows, high
//! degrees), bit-identical across thread counts, and causal: early queries' gradients never see
//! later tokens.

use crate::common::{
    Data, SHARED_TILE_DIM, bits_equal, head_rows, random_tensor, rng, shared_tile_problem,
};
use poly_core::{
    AttentionConfig, Error, Kernel, Mask, Normalization, Tensor, TensorName, Threads,
    attention_backward, attention_forward, attention_gradients, reference_attention,
};
use std::num::NonZeroUsize;

/// `Σ grad_out ⊙ reference(q, k, v)`: the loss whose gradients are checked.
fn loss(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    g: &Tensor<f64>,
    cfg: &AttentionConfig,
) -> f64 {
    let out = reference_attention(q.view(), k.view(), v.view(), cfg).unwrap();
    out.as_slice()
        .iter()
        .zip(g.as_slice())
        .map(|(a, b)| a * b)
        .sum()
}

/// Central differences of [`loss`] with respect to every element of `which` (0 = q, 1 = k, 2 = v).
fn finite_differences(
    inputs: &[Tensor<f64>; 3],
    g: &Tensor<f64>,
    cfg: &AttentionConfig,
    which: usize,
) -> Vec<f64> {
    let mut x = inputs.clone();
    (0..inputs[which].as_slice().len())
        .map(|i| {
            let at = inputs[which].as_slice()[i];
            let h = 1e-6 * at.abs().max(1.0);
            let mut eval = |value: f64| {
                let mut data = inputs[which].as_slice().to_vec();
                data[i] = value;
                x[which] = Tensor::from_vec(inputs[which].shape(), data).unwrap();
                loss(&x[0], &x[1], &x[2], g, cfg)
            };
            (eval(at + h) - eval(at - h)) / (2.0 * h)
        })
        .collect()
}

/// Largest |a − b| over the largest |b|.
fn gap(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn configs(mask: Mask) -> Vec<AttentionConfig> {
    let mut out = Vec::new();
    for normalization in [
        Normalization::Sum,
        Normalization::OnePlusSum(0.5),
        Normalization::None,
    ] {
        for degree in [1, 2, 3, 4, 7] {
            out.push(
                AttentionConfig::polynomial(degree)
                    .with_mask(mask)
                    .with_normalization(normalization),
            );
        }
        out.push(
            AttentionConfig::softmax()
                .with_mask(mask)
                .with_normalization(normalization),
        );
    }
    // LayerNorm and a scale, a window, together.
    out.push(
        AttentionConfig::polynomial(4)
            .with_mask(mask)
            .with_layernorm(true)
            .with_scale(0.7)
            .with_window(3),
    );
    out.push(
        AttentionConfig::softmax()
            .with_mask(mask)
            .with_layernorm(true)
            .with_window(2),
    );
    out
}

#[test]
fn gradients_equal_finite_differences_of_the_reference() {
    let mut r = rng(81);
    // Two query heads on one k/v head, n_q ≠ n_k, d_v ≠ d.
    let q = random_tensor::<f64>(&mut r, [1, 2, 5, 3], Data::Positive);
    let k = random_tensor::<f64>(&mut r, [1, 1, 7, 3], Data::Positive);
    let v = random_tensor::<f64>(&mut r, [1, 1, 7, 2], Data::Signed);
    let g = random_tensor::<f64>(&mut r, [1, 2, 5, 2], Data::Signed);
    let inputs = [q, k, v];
    for mask in [Mask::None, Mask::Causal] {
        for cfg in configs(mask) {
            let (_, grads) = attention_gradients(
                inputs[0].view(),
                inputs[1].view(),
                inputs[2].view(),
                g.view(),
                &cfg,
            )
            .unwrap();
            for (which, analytic) in [&grads.dq, &grads.dk, &grads.dv].into_iter().enumerate() {
                let numeric = finite_differences(&inputs, &g, &cfg, which);
                let err = gap(analytic.as_slice(), &numeric);
                assert!(err <= 1e-6, "{cfg:?} d{}: {err:e}", ["q", "k", "v"][which]);
            }
        }
    }
}

/// The backward pass written out densely in f64: weights, normalizer, output, then the
/// gradients by the formulas of docs/math.md §2.6, for any mask and window (no LayerNorm).
fn dense_backward(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    g: &Tensor<f64>,
    cfg: &AttentionConfig,
) -> [Vec<f64>; 3] {
    let [b, h, n_q, d] = q.shape();
    let [_, h_kv, n_k, d_v] = v.shape();
    let group = h / h_kv;
    let scale = cfg.effective_scale(d);
    let (mut dq, mut dk, mut dv) = (
        vec![0.0; b * h * n_q * d],
        vec![0.0; b * h_kv * n_k * d],
        vec![0.0; b * h_kv * n_k * d_v],
    );
    let dims = poly_core::Dims::new(b, h, n_q, n_k, d, d_v).with_kv_heads(h_kv);
    for bh in 0..b * h {
        let kvh = (bh / h) * h_kv + (bh % h) / group;
        let (qs, ks, vs) = (
            &q.as_slice()[bh * n_q * d..],
            &k.as_slice()[kvh * n_k * d..],
            &v.as_slice()[kvh * n_k * d_v..],
        );
        let gs = &g.as_slice()[bh * n_q * d_v..];
        for i in 0..n_q {
            let visible = dims.key_range(cfg.mask, cfg.window, i);
            let score =
                |j: usize| scale * (0..d).map(|l| qs[i * d + l] * ks[j * d + l]).sum::<f64>();
            let (w, slope): (Vec<f64>, Vec<f64>) = visible
                .clone()
                .map(|j| {
                    let s = score(j);
                    match cfg.kernel {
                        Kernel::Polynomial { degree } => (
                            s.powi(degree as i32),
                            f64::from(degree) * s.powi(degree as i32 - 1),
                        ),
                        _ => (s.exp(), s.exp()),
                    }
                })
                .unzip();
            let den = match cfg.normalization {
                Normalization::Sum => w.iter().sum::<f64>(),
                Normalization::OnePlusSum(c) => c + w.iter().sum::<f64>(),
                _ => 1.0,
            };
            let out: Vec<f64> = (0..d_v)
                .map(|c| {
                    visible
                        .clone()
                        .zip(&w)
                        .map(|(j, wj)| wj * vs[j * d_v + c])
                        .sum::<f64>()
                        / den
                })
                .collect();
            let go = &gs[i * d_v..(i + 1) * d_v];
            let delta = match cfg.normalization {
                Normalization::None => 0.0,
                _ => go.iter().zip(&out).map(|(a, b)| a * b).sum(),
            };
            for ((j, wj), sj) in visible.zip(&w).zip(&slope) {
                let dp: f64 = (0..d_v).map(|c| go[c] * vs[j * d_v + c]).sum();
                let ds = (dp - delta) / den * sj;
                for l in 0..d {
                    dq[(bh * n_q + i) * d + l] += scale * ds * ks[j * d + l];
                    dk[(kvh * n_k + j) * d + l] += scale * ds * qs[i * d + l];
                }
                for c in 0..d_v {
                    dv[(kvh * n_k + j) * d_v + c] += wj / den * go[c];
                }
            }
        }
    }
    [dq, dk, dv]
}

fn threads(n: usize) -> Threads {
    Threads::Exact(NonZeroUsize::new(n).unwrap())
}

#[test]
fn tiled_gradients_equal_the_dense_backward() {
    let mut r = rng(82);
    // 1, tile ± 1 of the 64-row query and 256-key tiles, and a few tiles of each.
    for (n_q, n_k, heads, kv_heads) in [
        (1, 1, 1, 1),
        (63, 65, 2, 2),
        (65, 257, 4, 2),
        (130, 300, 2, 1),
    ] {
        let q = random_tensor::<f64>(&mut r, [1, heads, n_q, 8], Data::Positive);
        let k = random_tensor::<f64>(&mut r, [1, kv_heads, n_k, 8], Data::Positive);
        let v = random_tensor::<f64>(&mut r, [1, kv_heads, n_k, 5], Data::Signed);
        let g = random_tensor::<f64>(&mut r, [1, heads, n_q, 5], Data::Signed);
        let f32s = |t: &Tensor<f64>| t.map(|&x| x as f32);
        let (q32, k32, v32, g32) = (f32s(&q), f32s(&k), f32s(&v), f32s(&g));
        for mask in [Mask::None, Mask::Causal] {
            for window in [None, Some(70)] {
                for (kernel, normalization) in [
                    (Kernel::Polynomial { degree: 2 }, Normalization::Sum),
                    (
                        Kernel::Polynomial { degree: 3 },
                        Normalization::OnePlusSum(1.0),
                    ),
                    (Kernel::Polynomial { degree: 64 }, Normalization::Sum),
                    (Kernel::Polynomial { degree: 4 }, Normalization::None),
                    (Kernel::Softmax, Normalization::Sum),
                    (Kernel::Softmax, Normalization::OnePlusSum(1.0)),
                ] {
                    let mut cfg = AttentionConfig::new(kernel)
                        .with_mask(mask)
                        .with_normalization(normalization);
                    cfg.window = window;
                    let label = format!("{n_q}×{n_k} {heads}/{kv_heads} {cfg:?}");
                    let want = dense_backward(&q, &k, &v, &g, &cfg);
                    let (_, got) =
                        attention_gradients(q.view(), k.view(), v.view(), g.view(), &cfg).unwrap();
                    let (_, got32) =
                        attention_gradients(q32.view(), k32.view(), v32.view(), g32.view(), &cfg)
                            .unwrap();
                    // Relative to the largest gradient of all three: dq and dk are exactly 0
                    // for one visible key under Sum, and only rounding remains there.
                    let floor = want.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
                    for (i, want) in want.iter().enumerate() {
                        let (a, b) = (
                            [&got.dq, &got.dk, &got.dv][i],
                            [&got32.dq, &got32.dk, &got32.dv][i],
                        );
                        let err = |x: Vec<f64>| {
                            x.iter()
                                .zip(want)
                                .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
                                / floor
                        };
                        let e64 = err(a.as_slice().to_vec());
                        let e32 = err(b.as_slice().iter().map(|&x| f64::from(x)).collect());
                        assert!(e64 < 1e-10, "f64 d{} {label}: {e64:e}", ["q", "k", "v"][i]);
                        assert!(e32 < 1e-4, "f32 d{} {label}: {e32:e}", ["q", "k", "v"][i]);
                    }
                    // The same bits on any thread count.
                    let on = |n| {
                        attention_gradients(
                            q32.view(),
                            k32.view(),
                            v32.view(),
                            g32.view(),
                            &cfg.with_threads(threads(n)),
                        )
                        .unwrap()
                        .1
                    };
                    let (one, three) = (on(1), on(3));
                    for (a, b) in [
                        (&one.dq, &three.dq),
                        (&one.dk, &three.dk),
                        (&one.dv, &three.dv),
                    ] {
                        assert!(bits_equal(a.as_slice(), b.as_slice()), "threads {label}");
                    }
                }
            }
        }
    }
}

#[test]
fn early_query_gradients_never_see_later_tokens() {
    let mut r = rng(83);
    let n = 600;
    let t = 333;
    let draw = |r: &mut _, width, data| random_tensor::<f32>(r, [1, 2, n, width], data);
    let (q, k, v, g) = (
        draw(&mut r, 16, Data::Signed),
        draw(&mut r, 16, Data::Signed),
        draw(&mut r, 8, Data::Signed),
        draw(&mut r, 8, Data::Signed),
    );
    // Everything from token t on replaced.
    let later = |x: &Tensor<f32>, seed| {
        let other = random_tensor::<f32>(&mut rng(seed), x.shape(), Data::Signed);
        let width = x.shape()[3];
        let data = x
            .as_slice()
            .chunks_exact(width)
            .zip(other.as_slice().chunks_exact(width))
            .enumerate()
            .flat_map(|(row, (a, b))| if row % n >= t { b.to_vec() } else { a.to_vec() })
            .collect();
        Tensor::from_vec(x.shape(), data).unwrap()
    };
    let (q2, k2, v2, g2) = (later(&q, 1), later(&k, 2), later(&v, 3), later(&g, 4));
    for cfg in [
        AttentionConfig::polynomial(4).with_mask(Mask::Causal),
        AttentionConfig::softmax()
            .with_mask(Mask::Causal)
            .with_layernorm(true),
    ] {
        let (_, a) = attention_gradients(q.view(), k.view(), v.view(), g.view(), &cfg).unwrap();
        let (_, b) = attention_gradients(q2.view(), k2.view(), v2.view(), g2.view(), &cfg).unwrap();
        let early = |x: &Tensor<f32>| -> Vec<f32> {
            x.as_slice()
                .chunks_exact(16)
                .enumerate()
                .filter(|(row, _)| row % n < t)
                .flat_map(|(_, r)| r.to_vec())
                .collect()
        };
        assert!(bits_equal(&early(&a.dq), &early(&b.dq)), "{cfg:?}");
        assert!(!bits_equal(a.dq.as_slice(), b.dq.as_slice()), "{cfg:?}");
    }
}

#[test]
fn bad_gradients_and_rejected_rows_are_errors() {
    let mut r = rng(84);
    let q = random_tensor::<f32>(&mut r, [1, 1, 9, 4], Data::Signed);
    let cfg = AttentionConfig::polynomial(2);
    let forward = attention_forward(q.view(), q.view(), q.view(), &cfg).unwrap();
    let short = random_tensor::<f32>(&mut r, [1, 1, 8, 4], Data::Signed);
    let err = attention_backward(q.view(), q.view(), q.view(), &forward, short.view()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                tensor: TensorName::Output,
                axis: "n_q",
                expected: 9,
                found: 8
            }
        ),
        "{err:?}"
    );
    let mut bad = q.as_slice().to_vec();
    bad[13] = f32::INFINITY;
    let bad = Tensor::from_vec([1, 1, 9, 4], bad).unwrap();
    let err = attention_backward(q.view(), q.view(), q.view(), &forward, bad.view()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFinite {
                tensor: TensorName::Output,
                index: [0, 0, 3, 1],
                ..
            }
        ),
        "{err:?}"
    );
    // Other inputs than the forward's.
    let other = random_tensor::<f32>(&mut r, [1, 1, 10, 4], Data::Signed);
    assert!(attention_backward(other.view(), q.view(), q.view(), &forward, q.view()).is_err());
    // Rows the forward rejects (odd degree, keys x and −x cancel) are rejected here too.
    let keys = Tensor::from_vec([1, 1, 2, 2], vec![1.0f32, 0.5, -1.0, -0.5]).unwrap();
    let one = Tensor::from_vec([1, 1, 1, 2], vec![0.3f32, 0.2]).unwrap();
    let cfg = AttentionConfig::polynomial(3);
    let err =
        attention_gradients(one.view(), keys.view(), keys.view(), one.view(), &cfg).unwrap_err();
    assert!(
        matches!(err, Error::IllConditionedNormalizer { .. }),
        "{err:?}"
    );
}

/// Gradients of packed sequences are each sequence's own; a padded batch's valid rows are the
/// cut entry's, and padding gets zero gradients.
#[test]
fn packed_and_padded_gradients_are_those_of_the_pieces() {
    use poly_core::{Sequences, attention_forward_packed, attention_forward_padded};
    let mut r = rng(85);
    let lengths = [1, 63, 70];
    let n: usize = lengths.iter().sum();
    let draw = |r: &mut _, heads, width, data| random_tensor::<f64>(r, [1, heads, n, width], data);
    let (q, k, v, g) = (
        draw(&mut r, 2, 6, Data::Positive),
        draw(&mut r, 1, 6, Data::Positive),
        draw(&mut r, 1, 4, Data::Signed),
        draw(&mut r, 2, 4, Data::Signed),
    );
    let rows = |x: &Tensor<f64>, range: std::ops::Range<usize>| x.view().rows(range).unwrap();
    let close = |a: &[f64], b: &[f64]| {
        // A floor for pieces whose exact gradient is 0 (one key under Sum): rounding remains.
        let scale = b.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-10 * scale)
    };
    for cfg in [
        AttentionConfig::polynomial(4)
            .with_mask(Mask::Causal)
            .with_window(20),
        AttentionConfig::softmax(),
    ] {
        let sequences = Sequences::from_lengths(&lengths).unwrap();
        let forward =
            attention_forward_packed(q.view(), k.view(), v.view(), &cfg, &sequences).unwrap();
        let grads = attention_backward(q.view(), k.view(), v.view(), &forward, g.view()).unwrap();
        let mut start = 0;
        for len in lengths {
            let range = start..start + len;
            let (_, alone) = attention_gradients(
                rows(&q, range.clone()).view(),
                rows(&k, range.clone()).view(),
                rows(&v, range.clone()).view(),
                rows(&g, range.clone()).view(),
                &cfg,
            )
            .unwrap();
            for (mine, theirs) in [
                (&grads.dq, &alone.dq),
                (&grads.dk, &alone.dk),
                (&grads.dv, &alone.dv),
            ] {
                assert!(
                    close(rows(mine, range.clone()).as_slice(), theirs.as_slice()),
                    "{cfg:?} at {start}"
                );
            }
            start += len;
        }
        // One entry padded to n with 90 valid keys.
        let valid = 90;
        let forward =
            attention_forward_padded(q.view(), k.view(), v.view(), &cfg, &[valid]).unwrap();
        let grads = attention_backward(q.view(), k.view(), v.view(), &forward, g.view()).unwrap();
        let (_, cut) = attention_gradients(
            rows(&q, 0..valid).view(),
            rows(&k, 0..valid).view(),
            rows(&v, 0..valid).view(),
            rows(&g, 0..valid).view(),
            &cfg,
        )
        .unwrap();
        for (mine, theirs) in [
            (&grads.dq, &cut.dq),
            (&grads.dk, &cut.dk),
            (&grads.dv, &cut.dv),
        ] {
            assert!(
                close(rows(mine, 0..valid).as_slice(), theirs.as_slice()),
                "{cfg:?} padded"
            );
            assert!(
                rows(mine, valid..n).as_slice().iter().all(|&x| x == 0.0),
                "{cfg:?} padding"
            );
        }
    }
}

#[test]
fn gradients_through_tasks_of_several_query_tiles_are_those_of_the_tiles() {
    // The forward's row statistics from tasks of several query tiles (common.rs,
    // `shared_tile_problem`): the gradients of the whole problem equal the tiles' own, dq row by
    // row and dk, dv summed over the tiles.
    let [q, k, v, g] = shared_tile_problem(84);
    let (n_q, n_k, d) = (q.shape()[2], k.shape()[2], SHARED_TILE_DIM);
    for cfg in [AttentionConfig::polynomial(4), AttentionConfig::softmax()] {
        let (out, whole) =
            attention_gradients(q.view(), k.view(), v.view(), g.view(), &cfg).unwrap();
        let (mut dk, mut dv) = (vec![0.0f64; n_k * d], vec![0.0f64; n_k * d]);
        let gap = |a: &[f32], b: &[f64]| {
            let top = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            a.iter()
                .zip(b)
                .fold(0.0f64, |m, (x, y)| m.max((f64::from(*x) - y).abs()))
                / top
        };
        for start in (0..n_q).step_by(128) {
            let rows = (start + 128).min(n_q) - start;
            let (q_t, g_t) = (head_rows(&q, start, rows), head_rows(&g, start, rows));
            let (out_t, tile) =
                attention_gradients(q_t.view(), k.view(), v.view(), g_t.view(), &cfg).unwrap();
            let range = start * d..(start + rows) * d;
            assert!(
                bits_equal(out_t.as_slice(), &out.as_slice()[range.clone()]),
                "{cfg:?}"
            );
            let dq_t: Vec<f64> = tile.dq.as_slice().iter().map(|&x| f64::from(x)).collect();
            let err = gap(&whole.dq.as_slice()[range], &dq_t);
            assert!(err < 1e-5, "{cfg:?} dq rows {start}..: {err:e}");
            for (acc, x) in [(&mut dk, &tile.dk), (&mut dv, &tile.dv)] {
                acc.iter_mut()
                    .zip(x.as_slice())
                    .for_each(|(a, &b)| *a += f64::from(b));
            }
        }
        for (name, got, want) in [("dk", &whole.dk, &dk), ("dv", &whole.dv, &dv)] {
            let err = gap(got.as_slice(), want);
            assert!(err < 1e-5, "{cfg:?} {name}: {err:e}");
        }
    }
}
