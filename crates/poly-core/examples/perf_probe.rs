use poly_core::*;
use std::time::Instant;
use faer::{Mat, Par, Accum};

fn gemm_rate(threads: usize) -> f64 {
    let n = 2048;
    let a = Mat::<f32>::from_fn(n, n, |i, j| ((i * 7 + j) % 13) as f32 * 0.1);
    let b = a.clone();
    let mut c = Mat::<f32>::zeros(n, n);
    let par = if threads == 1 { Par::Seq } else { Par::rayon(threads) };
    let mut best = f64::MAX;
    for _ in 0..4 {
        let t = Instant::now();
        faer::linalg::matmul::matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), 1.0, par);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(2);
    let n: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(4096);
    let bh = 8;
    let d = 64;
    let rate = gemm_rate(threads);
    println!("gemm 2048^3 f32 {threads} threads: {rate:.1} GFLOP/s");
    let data: Vec<f32> = (0..bh * n * d).map(|i| (((i * 2654435761usize) % 1000) as f32 / 1000.0 - 0.5)).collect();
    let q = TensorRef::new(TensorName::Query, [1, bh, n, d], &data).unwrap();
    for (name, cfg) in [
        ("poly4", AttentionConfig::polynomial(4)),
        ("poly4 causal", AttentionConfig::polynomial(4).with_mask(Mask::Causal)),
        ("softmax", AttentionConfig::softmax()),
    ] {
        let cfg = cfg.with_threads(Threads::Exact(threads.try_into().unwrap()));
        let dims = check_inputs(&q, &q, &q, &cfg).unwrap();
        let flops = exact_attention_flops(&dims, cfg.mask);
        let _ = attention(q, q, q, &cfg).unwrap();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let _ = attention(q, q, q, &cfg).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        let g = flops / best / 1e9;
        println!("{name}: {:.1} ms, {g:.1} GFLOP/s = {:.1}% of gemm", best * 1e3, 100.0 * g / rate);
    }
}
