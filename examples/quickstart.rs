//! Quickstart: exact polynomial and softmax attention on random Q/K/V, with timings, the GEMM rate
//! they are measured against, and the error against the plain f64 reference.
//!
//! `cargo run --release --example quickstart`

use poly_bench::roofline::gemm_rate_gflops;
use poly_bench::timing::time_runs;
use polyattn::core::{check_inputs, exact_attention_flops};
use polyattn::data::synthetic::uniform;
use polyattn::{AttentionConfig, Mask, Tensor, attention, reference_attention};

const HEADS: usize = 8;
const N: usize = 2048;
const D: usize = 64;

fn random(seed: u64, heads: usize) -> Tensor<f32> {
    uniform([1, heads, N, D], -1.0, 1.0, seed).expect("a valid range and a small shape")
}

/// The first head of a `[1, heads, n, d]` tensor, as its own tensor.
fn first_head(t: &Tensor<f32>) -> Tensor<f32> {
    let [_, _, n, d] = t.shape();
    Tensor::from_vec([1, 1, n, d], t.as_slice()[..n * d].to_vec()).expect("one head")
}

fn main() -> Result<(), polyattn::Error> {
    let threads = rayon::current_num_threads();
    let (q, k, v) = (random(1, HEADS), random(2, HEADS), random(3, HEADS));
    println!(
        "polyattn quickstart: batch × heads = {HEADS}, n = {N}, d = {D}, f32, {threads} threads"
    );
    let gemm = gemm_rate_gflops(2048, threads, 3);
    println!("faer f32 GEMM (2048³): {gemm:.1} GFLOP/s — the yardstick below\n");
    println!(
        "{:<28} {:>10} {:>9} {:>8} {:>22}",
        "kernel", "median ms", "GFLOP/s", "% GEMM", "max rel. err vs f64 ref"
    );
    let kernels = [
        ("polynomial β=4", AttentionConfig::polynomial(4)),
        (
            "polynomial β=4, causal",
            AttentionConfig::polynomial(4).with_mask(Mask::Causal),
        ),
        (
            "polynomial β=64 (no overflow)",
            AttentionConfig::polynomial(64),
        ),
        ("softmax", AttentionConfig::softmax()),
        (
            "softmax, causal",
            AttentionConfig::softmax().with_mask(Mask::Causal),
        ),
    ];
    for (name, cfg) in kernels {
        let dims = check_inputs(&q.view(), &k.view(), &v.view(), &cfg)?;
        let mut out = None;
        let timing = time_runs(3, || {
            out = Some(attention(q.view(), k.view(), v.view(), &cfg)?);
            Ok::<(), polyattn::Error>(())
        })?;
        let rate = exact_attention_flops(&dims, cfg.mask) / timing.median / 1e9;
        // The reference is plain f64 loops: check the first head only.
        let out = out.expect("computed");
        let (q0, k0, v0) = (first_head(&q), first_head(&k), first_head(&v));
        let reference = reference_attention(q0.view(), k0.view(), v0.view(), &cfg)?;
        let scale = reference
            .as_slice()
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()));
        let err = out.as_slice()[..N * D]
            .iter()
            .zip(reference.as_slice())
            .fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()))
            / scale;
        println!(
            "{name:<28} {:>10.1} {rate:>9.1} {:>7.1}% {err:>22.2e}",
            timing.median * 1e3,
            100.0 * rate / gemm
        );
    }
    Ok(())
}
