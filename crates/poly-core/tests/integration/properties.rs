//! Exact properties of the engine: thread-count independence, outputs into caller buffers, causal
//! no-leak, scale invariance of `Sum`, the even-degree/softmax identity, and the golden vectors of
//! the KMZ23 JAX code.

use crate::common::{
    Data, SHARED_TILE_DIM, bits_equal, head_rows, random_tensor, relative_error, rng,
    shared_tile_problem,
};
use poly_core::{
    AttentionConfig, Error, Kernel, Mask, Normalization, Tensor, TensorName, Threads, attention,
    attention_into, reference_attention,
};
use std::num::NonZeroUsize;

fn threads(n: usize) -> Threads {
    Threads::Exact(NonZeroUsize::new(n).unwrap())
}

fn configs() -> Vec<AttentionConfig> {
    let mut out = Vec::new();
    for mask in [Mask::None, Mask::Causal] {
        out.push(AttentionConfig::polynomial(4).with_mask(mask));
        out.push(
            AttentionConfig::polynomial(2)
                .with_mask(mask)
                .with_normalization(Normalization::OnePlusSum(1.0))
                .with_layernorm(true),
        );
        out.push(AttentionConfig::softmax().with_mask(mask));
    }
    out
}

#[test]
fn results_are_bit_identical_across_thread_counts() {
    let mut r = rng(11);
    // 3 heads × 1300 queries: many tasks, several key tiles, ragged last tiles.
    let q = random_tensor::<f32>(&mut r, [1, 3, 1300, 24], Data::Signed);
    let k = random_tensor::<f32>(&mut r, [1, 3, 1300, 24], Data::Signed);
    let v = random_tensor::<f32>(&mut r, [1, 3, 1300, 10], Data::Signed);
    for cfg in configs() {
        let one = attention(q.view(), k.view(), v.view(), &cfg.with_threads(threads(1))).unwrap();
        for n in [2, 3] {
            let many =
                attention(q.view(), k.view(), v.view(), &cfg.with_threads(threads(n))).unwrap();
            assert!(
                bits_equal(one.as_slice(), many.as_slice()),
                "{cfg:?} with {n} threads"
            );
        }
    }
}

#[test]
fn wide_causal_tiles_are_bit_identical_across_thread_counts() {
    // Causal with ≥ 4096 keys takes 128-row query tiles; 4200 rows end in a ragged tile.
    let mut r = rng(13);
    let q = random_tensor::<f32>(&mut r, [1, 2, 4200, 8], Data::Signed);
    let k = random_tensor::<f32>(&mut r, [1, 2, 4200, 8], Data::Signed);
    let v = random_tensor::<f32>(&mut r, [1, 2, 4200, 5], Data::Signed);
    for cfg in configs().into_iter().filter(|c| c.mask == Mask::Causal) {
        let one = attention(q.view(), k.view(), v.view(), &cfg.with_threads(threads(1))).unwrap();
        let two = attention(q.view(), k.view(), v.view(), &cfg.with_threads(threads(2))).unwrap();
        assert!(bits_equal(one.as_slice(), two.as_slice()), "{cfg:?}");
    }
}

#[test]
fn warm_up_changes_no_result_and_refuses_impossible_thread_counts() {
    let mut r = rng(14);
    let q = random_tensor::<f32>(&mut r, [1, 2, 300, 16], Data::Signed);
    let k = random_tensor::<f32>(&mut r, [1, 2, 900, 16], Data::Signed);
    let v = random_tensor::<f32>(&mut r, [1, 2, 900, 8], Data::Signed);
    let cfg = AttentionConfig::softmax().with_threads(threads(2));
    let before = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
    // The warm-up leaves nonzero scores in the workers' score tiles, which the engine reuses.
    poly_core::warm_up(threads(2)).unwrap();
    poly_core::warm_up(Threads::Global).unwrap();
    let after = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
    assert!(bits_equal(before.as_slice(), after.as_slice()));
    let too_many = poly_core::max_threads() + 1;
    assert!(matches!(
        poly_core::warm_up(threads(too_many)),
        Err(Error::InvalidParameter {
            name: "threads",
            ..
        })
    ));
}

#[test]
fn attention_into_a_used_buffer_equals_attention() {
    let mut r = rng(12);
    let q = random_tensor::<f32>(&mut r, [2, 2, 130, 16], Data::Signed);
    let k = random_tensor::<f32>(&mut r, [2, 1, 900, 16], Data::Signed);
    let v = random_tensor::<f32>(&mut r, [2, 1, 900, 7], Data::Signed);
    // A buffer full of the previous call's output (and garbage before that).
    let mut buffer = vec![f32::NAN; 2 * 2 * 130 * 7];
    for cfg in configs() {
        let cfg = cfg.with_window(300);
        let want = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        attention_into(q.view(), k.view(), v.view(), &cfg, &mut buffer).unwrap();
        assert!(bits_equal(want.as_slice(), &buffer), "{cfg:?}");
    }
    let mut short = vec![0.0f32; buffer.len() - 1];
    let err = attention_into(q.view(), k.view(), v.view(), &configs()[0], &mut short).unwrap_err();
    assert_eq!(
        err,
        Error::BufferLength {
            tensor: TensorName::Output,
            expected: buffer.len(),
            found: buffer.len() - 1
        }
    );
}

/// Replaces everything after position `from` of a `[1, 1, n, dim]` tensor with fresh values.
fn perturb_future(t: &Tensor<f32>, from: usize, seed: u64) -> Tensor<f32> {
    let [_, _, n, dim] = t.shape();
    let fresh = random_tensor::<f32>(&mut rng(seed), t.shape(), Data::Signed);
    let mut data = t.as_slice().to_vec();
    data[(from + 1) * dim..n * dim].copy_from_slice(&fresh.as_slice()[(from + 1) * dim..]);
    Tensor::from_vec(t.shape(), data).unwrap()
}

#[test]
fn causal_outputs_do_not_see_future_tokens() {
    let mut r = rng(12);
    let n = 1100;
    let q = random_tensor::<f32>(&mut r, [1, 1, n, 16], Data::Signed);
    let k = random_tensor::<f32>(&mut r, [1, 1, n, 16], Data::Signed);
    let v = random_tensor::<f32>(&mut r, [1, 1, n, 8], Data::Signed);
    for cfg in configs().into_iter().filter(|c| c.mask == Mask::Causal) {
        let base = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        for (i, position) in [0usize, 63, 64, 511, 700, n - 2].into_iter().enumerate() {
            let k2 = perturb_future(&k, position, 100 + i as u64);
            let v2 = perturb_future(&v, position, 200 + i as u64);
            let q2 = perturb_future(&q, position, 300 + i as u64);
            let out = attention(q2.view(), k2.view(), v2.view(), &cfg).unwrap();
            let prefix = (position + 1) * 8;
            assert!(
                bits_equal(&base.as_slice()[..prefix], &out.as_slice()[..prefix]),
                "{cfg:?}: output up to {position} changed"
            );
        }
    }
}

#[test]
fn sum_normalization_is_scale_invariant_and_others_are_not() {
    let mut r = rng(13);
    let q = random_tensor::<f64>(&mut r, [2, 2, 40, 6], Data::Signed);
    let k = random_tensor::<f64>(&mut r, [2, 2, 50, 6], Data::Signed);
    let v = random_tensor::<f64>(&mut r, [2, 2, 50, 3], Data::Signed);
    for degree in [2, 4, 9] {
        let cfg = AttentionConfig::polynomial(degree);
        let data = if degree % 2 == 1 {
            Data::Positive
        } else {
            Data::Signed
        };
        let (q, k) = match data {
            Data::Signed => (q.clone(), k.clone()),
            Data::Positive => (
                random_tensor::<f64>(&mut r, [2, 2, 40, 6], data),
                random_tensor::<f64>(&mut r, [2, 2, 50, 6], data),
            ),
        };
        let base = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        for scale in [1e-3, 17.0, -3.0] {
            let scaled = attention(q.view(), k.view(), v.view(), &cfg.with_scale(scale)).unwrap();
            assert!(
                relative_error(&scaled, &base) < 1e-12,
                "degree {degree} scale {scale}"
            );
        }
        let bias = cfg.with_normalization(Normalization::OnePlusSum(1.0));
        let a = attention(q.view(), k.view(), v.view(), &bias).unwrap();
        let b = attention(q.view(), k.view(), v.view(), &bias.with_scale(0.5)).unwrap();
        assert!(
            relative_error(&a, &b) > 1e-3,
            "OnePlusSum must depend on the scale"
        );
    }
}

#[test]
fn even_degree_sum_equals_softmax_of_degree_times_log_magnitude() {
    // docs/math.md §2.1: Sum attention of even degree β = softmax over β·ln|s|.
    let mut r = rng(14);
    let q = random_tensor::<f64>(&mut r, [1, 1, 30, 5], Data::Signed);
    let k = random_tensor::<f64>(&mut r, [1, 1, 30, 5], Data::Signed);
    let v = random_tensor::<f64>(&mut r, [1, 1, 30, 4], Data::Signed);
    let beta = 6;
    let out = attention(
        q.view(),
        k.view(),
        v.view(),
        &AttentionConfig::polynomial(beta),
    )
    .unwrap();
    for i in 0..30 {
        let qi = &q.as_slice()[i * 5..(i + 1) * 5];
        let logits: Vec<f64> = (0..30)
            .map(|j| {
                let s: f64 = qi
                    .iter()
                    .zip(&k.as_slice()[j * 5..(j + 1) * 5])
                    .map(|(a, b)| a * b)
                    .sum();
                beta as f64 * s.abs().ln()
            })
            .collect();
        let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
        let total: f64 = w.iter().sum();
        for c in 0..4 {
            let expected: f64 =
                (0..30).map(|j| w[j] * v.as_slice()[j * 4 + c]).sum::<f64>() / total;
            assert!((out.as_slice()[i * 4 + c] - expected).abs() < 1e-12);
        }
    }
}

fn json_tensor(value: &serde_json::Value) -> Vec<f64> {
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
        match v {
            serde_json::Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().expect("number")),
        }
    }
    walk(value, &mut out);
    out
}

/// A golden file vendored in `tests/golden/` (vectors produced by the PolySketchFormer JAX code).
fn golden_text(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn golden_vectors_of_the_kmz23_jax_implementation() {
    let text = golden_text("kmz23_polynomial_attention.json");
    let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
    let degree = golden["degree"].as_u64().unwrap() as u32;
    let bias = golden["normalization_bias"].as_f64().unwrap();
    let rtol = golden["rtol"].as_f64().unwrap();
    let atol = golden["atol"].as_f64().unwrap();
    // [batch = 2, seq = 3, head_dim = 3] → [batch, heads = 1, seq, dim].
    let tensor = |key: &str| Tensor::from_vec([2, 1, 3, 3], json_tensor(&golden[key])).unwrap();
    let (q, k, v) = (tensor("query"), tensor("key"), tensor("value"));
    for (mask, key) in [
        (Mask::Causal, "expected_causal"),
        (Mask::None, "expected_non_causal"),
    ] {
        let expected = json_tensor(&golden[key]);
        let cfg = AttentionConfig::polynomial(degree)
            .with_mask(mask)
            .with_normalization(Normalization::OnePlusSum(bias));
        assert_eq!(cfg.kernel, Kernel::Polynomial { degree: 4 });
        let f64_out = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        let q32 = q.map(|&x| x as f32);
        let k32 = k.map(|&x| x as f32);
        let v32 = v.map(|&x| x as f32);
        let f32_out = attention(q32.view(), k32.view(), v32.view(), &cfg).unwrap();
        let reference = reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        for (i, &e) in expected.iter().enumerate() {
            for got in [
                f64_out.as_slice()[i],
                f32_out.as_slice()[i] as f64,
                reference.as_slice()[i],
            ] {
                assert!(
                    (got - e).abs() <= atol + rtol * e.abs(),
                    "{key}[{i}]: {got} vs {e}"
                );
            }
        }
    }
}

#[test]
fn tasks_of_several_query_tiles_give_each_row_the_bits_of_a_tile_alone() {
    let [q, k, v, _] = shared_tile_problem(15);
    let (n_q, d) = (q.shape()[2], SHARED_TILE_DIM);
    for cfg in [AttentionConfig::polynomial(4), AttentionConfig::softmax()] {
        let whole = attention(q.view(), k.view(), v.view(), &cfg.with_threads(threads(2))).unwrap();
        let reference = reference_attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        let err = relative_error(&whole, &reference);
        assert!(err < 2.5e-4, "{cfg:?}: relative error {err:.3e}");
        for n in [1, 3] {
            let other =
                attention(q.view(), k.view(), v.view(), &cfg.with_threads(threads(n))).unwrap();
            assert!(
                bits_equal(whole.as_slice(), other.as_slice()),
                "{cfg:?}, {n} threads"
            );
        }
        // Each 128-row tile on its own is a problem of one tile per task.
        for start in (0..n_q).step_by(128) {
            let rows = (start + 128).min(n_q) - start;
            let alone = head_rows(&q, start, rows);
            let out = attention(alone.view(), k.view(), v.view(), &cfg).unwrap();
            assert!(
                bits_equal(
                    out.as_slice(),
                    &whole.as_slice()[start * d..(start + rows) * d]
                ),
                "{cfg:?}: rows {start}.."
            );
        }
    }
}
