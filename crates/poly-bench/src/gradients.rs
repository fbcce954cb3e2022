//! The exact backward pass against the forward and the GEMM rate of the same run: causal β = 4
//! and softmax at batch × heads = 8, d = 64, by the backward FLOP model of docs/math.md §2.5
//! (`2·(3d + 2d_v)` per visible pair, five GEMM-shaped products) and as backward / forward time.

use crate::roofline::{GEMM_PROBE_N, GEMM_PROBE_RUNS, gemm_rate_gflops};
use crate::timing::time_runs;
use poly_core::{
    AttentionConfig, DQ_PARTIALS, Dims, Error, Kernel, Mask, Threads, attention_backward,
    attention_forward, visible_pairs,
};
use std::num::NonZeroUsize;

/// d = d_v.
const D: usize = 64;

/// One measured configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GradientRow {
    /// `poly4` or `softmax`, causal.
    pub kernel: &'static str,
    /// Sequence length.
    pub n: usize,
    /// Median seconds of `attention_forward` (with its row statistics).
    pub forward_s: f64,
    /// Median seconds of `attention_backward`.
    pub backward_s: f64,
    /// Backward model GFLOP/s over the GEMM rate.
    pub backward_share: f64,
    /// Forward model GFLOP/s over the GEMM rate.
    pub forward_share: f64,
}

/// One sketched measurement: causal self-tensored PolySketch (p = 4, r = 32, block 256), one
/// head, against n.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SketchedRow {
    /// Sequence length.
    pub n: usize,
    /// Median seconds of `linear_attention`.
    pub forward_s: f64,
    /// Median seconds of `linear_attention_backward` (which runs the forward too).
    pub backward_s: f64,
}

/// The run, with its yardsticks.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GradientsRun {
    /// Threads of every measurement.
    pub threads: usize,
    /// faer f32 GEMM 2048³ before and after, GFLOP/s.
    pub gemm_gflops: [f64; 2],
    /// Every exact measurement.
    pub rows: Vec<GradientRow>,
    /// The sketched backward against n.
    pub sketched: Vec<SketchedRow>,
}

/// Times forward and backward at each n (batch × heads = 8).
///
/// # Errors
/// An engine error.
pub fn run(threads: usize, ns: &[usize], sketched_ns: &[usize]) -> Result<GradientsRun, Error> {
    let gemm = gemm_rate_gflops(GEMM_PROBE_N, threads, GEMM_PROBE_RUNS);
    let pool = Threads::Exact(NonZeroUsize::new(threads.max(1)).expect("≥ 1"));
    let mut rows = Vec::new();
    for (name, kernel) in [
        ("poly4", Kernel::Polynomial { degree: 4 }),
        ("softmax", Kernel::Softmax),
    ] {
        let cfg = AttentionConfig::new(kernel)
            .with_mask(Mask::Causal)
            .with_threads(pool);
        for &n in ns {
            let shape = [1, 8, n, D];
            let [q, k, v, g]: [poly_core::Tensor<f32>; 4] = [1, 2, 3, 4]
                .map(|seed| poly_data::synthetic::uniform(shape, -1.0, 1.0, seed).expect("shape"));
            let forward = time_runs(3, || {
                attention_forward(q.view(), k.view(), v.view(), &cfg).map(drop)
            })?;
            let kept = attention_forward(q.view(), k.view(), v.view(), &cfg)?;
            let backward = time_runs(3, || {
                attention_backward(q.view(), k.view(), v.view(), &kept, g.view()).map(drop)
            })?;
            let pairs = 8.0 * visible_pairs(&Dims::new(1, 8, n, n, D, D), Mask::Causal) as f64;
            let (forward_flops, backward_flops) =
                (pairs * 2.0 * (2 * D) as f64, pairs * 2.0 * (5 * D) as f64);
            rows.push(GradientRow {
                kernel: name,
                n,
                forward_s: forward.median,
                backward_s: backward.median,
                backward_share: backward_flops / backward.median / 1e9 / gemm,
                forward_share: forward_flops / forward.median / 1e9 / gemm,
            });
        }
    }
    let map = poly_sketch::SelfTensoredSketch::<f32>::new(
        D,
        4,
        32,
        0,
        poly_sketch::SketchScale::Unbiased,
    )?;
    let linear = poly_sketch::LinearAttentionConfig::default()
        .with_mask(Mask::Causal)
        .with_block(256)
        .with_normalization(poly_core::Normalization::Sum)
        .with_threads(pool);
    let mut sketched = Vec::new();
    for &n in sketched_ns {
        let shape = [1, 1, n, D];
        let [q, k, v, g]: [poly_core::Tensor<f32>; 4] = [1, 2, 3, 4]
            .map(|seed| poly_data::synthetic::uniform(shape, -1.0, 1.0, seed).expect("shape"));
        let forward = time_runs(3, || {
            poly_sketch::linear_attention(q.view(), k.view(), v.view(), &map, &linear).map(drop)
        })?;
        let backward = time_runs(3, || {
            poly_sketch::linear_attention_backward(
                q.view(),
                k.view(),
                v.view(),
                g.view(),
                &map,
                &linear,
            )
            .map(drop)
        })?;
        sketched.push(SketchedRow {
            n,
            forward_s: forward.median,
            backward_s: backward.median,
        });
    }
    let after = gemm_rate_gflops(GEMM_PROBE_N, threads, GEMM_PROBE_RUNS);
    Ok(GradientsRun {
        threads,
        gemm_gflops: [gemm, after],
        rows,
        sketched,
    })
}

/// Bytes the backward allocates beyond inputs, outputs and gradients for one head of length n
/// (f32, d = d_v = 64): the dQ partials, the dK/dV tiles before they are placed, two f64 row
/// statistics and one δ per row, and two score tiles per task.
pub fn backward_extra_bytes(n: usize) -> usize {
    let f32s = DQ_PARTIALS * n * D + n * 2 * D + n + 2 * DQ_PARTIALS * 64 * 256;
    4 * f32s + 16 * n
}

/// The table and ratios as markdown.
pub fn markdown(run: &GradientsRun) -> String {
    let mut md = format!(
        "# Exact backward\n\nThreads {}; faer f32 GEMM {:.0} → {:.0} GFLOP/s; batch × heads = 8, \
         d = d_v = 64, f32, causal. Backward FLOP model 2·(3d + 2d_v) per visible pair (five \
         products), forward 2·(d + d_v).\n\n| kernel | n | forward ms | backward ms | backward / \
         forward | forward % of GEMM | backward % of GEMM |\n|---|---|---|---|---|---|---|\n",
        run.threads, run.gemm_gflops[0], run.gemm_gflops[1]
    );
    for r in &run.rows {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.2} | {:.0}% | {:.0}% |\n",
            r.kernel,
            r.n,
            r.forward_s * 1e3,
            r.backward_s * 1e3,
            r.backward_s / r.forward_s,
            100.0 * r.forward_share,
            100.0 * r.backward_share
        ));
    }
    md.push_str(&format!(
        "\nMemory beyond inputs, outputs and gradients, one head, n = 65536: {:.1} MiB (O(n)).\n",
        backward_extra_bytes(65536) as f64 / (1 << 20) as f64
    ));
    if !run.sketched.is_empty() {
        md.push_str(
            "\n## Sketched backward\n\nCausal self-tensored PolySketch (p = 4, r = 32, m = 528), \
             block 256, one head, d = 64, f32. The backward runs the forward first.\n\n| n | \
             forward ms | backward ms | backward / forward |\n|---|---|---|---|\n",
        );
        for r in &run.sketched {
            md.push_str(&format!(
                "| {} | {:.1} | {:.1} | {:.2} |\n",
                r.n,
                r.forward_s * 1e3,
                r.backward_s * 1e3,
                r.backward_s / r.forward_s
            ));
        }
        if let (Some(a), Some(b)) = (run.sketched.first(), run.sketched.last()) {
            md.push_str(&format!(
                "\nt_backward({})/t_backward({}) = {:.2} (linear: {:.0}).\n",
                b.n,
                a.n,
                b.backward_s / a.backward_s,
                b.n as f64 / a.n as f64
            ));
        }
    }
    md
}
