//! The model-shaped variants against the yardsticks of the same run: sliding windows (linear in
//! n, share of the GEMM rate counting only in-band pairs), grouped-query attention (against as
//! many query heads with their own k/v heads) and the KV-cache decode step (1 → 2 threads, and
//! bytes of K and V read per second against this machine's memory-copy rate). Exact calls write
//! into one reused output buffer (`attention_into`), as a model layer does; one row per kernel
//! shows the same call with a fresh output per call. The cases a ratio compares (the window's
//! lengths, the two head groupings, the two thread counts) are timed interleaved, round by round.

use crate::machine::load_average;
use crate::roofline::{GEMM_PROBE_N, GEMM_PROBE_RUNS, gemm_rate_gflops};
use crate::timing::{Timing, time_each};
use poly_core::{
    AttentionConfig, Dims, Error, Kernel, KvCache, Mask, Tensor, Threads, attention,
    attention_into, exact_attention_flops_in_window, run_with_threads,
};
use serde::Serialize;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Instant;

/// d = d_v of every measurement.
const D: usize = 64;
/// Decode steps per timed run: its min, median and max are those of bursts, per step.
const DECODE_BURST: usize = 20;

/// One measured configuration.
#[derive(Clone, Debug, Serialize)]
pub struct VariantRow {
    /// `window`, `gqa` or `decode`.
    pub study: &'static str,
    /// What was run (kernel, mask, shape).
    pub case: String,
    /// `poly4` or `softmax`.
    pub kernel: &'static str,
    /// Sequence length (decode: the cached context).
    pub n: usize,
    /// k/v heads (8 query heads; decode: 1 and 1).
    pub kv_heads: usize,
    /// Threads of the measurement.
    pub threads: usize,
    /// Fastest, median and slowest timed run, seconds.
    pub seconds_min: f64,
    /// See `seconds_min`.
    pub seconds_median: f64,
    /// See `seconds_min`.
    pub seconds_max: f64,
    /// Model GFLOP (exact: 2·(d + d_v) per visible pair).
    pub gflop: f64,
    /// Model GFLOP/s at the median over the GEMM rate measured before the sweep.
    pub share_of_gemm: f64,
    /// Decode only: bytes of K and V read per step over the median time, in GB/s.
    pub kv_read_gbs: Option<f64>,
}

/// The whole run, with the yardsticks it is judged by.
#[derive(Clone, Debug, Serialize)]
pub struct VariantsRun {
    /// Threads of the sweep (the decode study also runs on 1).
    pub threads: usize,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run began.
    pub load_average_before: String,
    /// faer's f32 GEMM rate (2048³) before the studies, GFLOP/s: the yardstick of every share.
    pub gemm_gflops_before: f64,
    /// The same after them: a drift over 10% marks the run noisy.
    pub gemm_gflops_after: f64,
    /// Bytes copied per second by a parallel `memcpy` of 512 MiB (each byte read once, written
    /// once), in GB/s.
    pub copy_gbs: f64,
    /// Every measurement, in the order run.
    pub rows: Vec<VariantRow>,
}

fn pool(threads: usize) -> Threads {
    Threads::Exact(NonZeroUsize::new(threads.max(1)).expect("≥ 1"))
}

fn inputs(shape: [usize; 4], seed: u64) -> Tensor<f32> {
    poly_data::synthetic::uniform(shape, -1.0, 1.0, seed).expect("a benchmark shape")
}

/// Bytes copied per second by `threads` threads copying 512 MiB in 1 MiB pieces: the median of
/// [`GEMM_PROBE_RUNS`] copies after one that faults the destination's pages in (the same rule as
/// the GEMM probe's).
pub fn copy_rate_gbs(threads: usize) -> f64 {
    use rayon::prelude::*;
    let len = 512 << 20;
    let src = vec![1u8; len];
    let mut dst = vec![0u8; len];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .expect("rayon pool");
    let mut copy = || {
        let start = Instant::now();
        pool.install(|| {
            dst.par_chunks_mut(1 << 20)
                .zip(src.par_chunks(1 << 20))
                .for_each(|(d, s)| d.copy_from_slice(s));
        });
        start.elapsed().as_secs_f64()
    };
    copy();
    let median = Timing::from_seconds((0..GEMM_PROBE_RUNS).map(|_| copy()).collect()).median;
    std::hint::black_box(&dst);
    len as f64 / median / 1e9
}

/// Where a timed call writes its output.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    /// `attention_into` one buffer kept across calls (a model layer's steady state).
    Reused,
    /// `attention`: a fresh allocation per call, page faults included.
    Fresh,
}

/// Exact attention over `[1, heads, n, D]` queries and `[1, kv_heads, n, D]` keys and values,
/// ready to be called again and again.
struct ExactCall {
    cfg: AttentionConfig,
    q: Tensor<f32>,
    k: Tensor<f32>,
    v: Tensor<f32>,
    buffer: Vec<f32>,
    output: Output,
    /// The model FLOPs of one call, counting only visible (in-band) pairs.
    flops: f64,
}

impl ExactCall {
    fn new(
        cfg: &AttentionConfig,
        (heads, kv_heads, n): (usize, usize, usize),
        output: Output,
    ) -> Self {
        let dims = Dims::new(1, heads, n, n, D, D).with_kv_heads(kv_heads);
        ExactCall {
            cfg: *cfg,
            q: inputs([1, heads, n, D], 1),
            k: inputs([1, kv_heads, n, D], 2),
            v: inputs([1, kv_heads, n, D], 3),
            buffer: vec![0.0f32; heads * n * D],
            output,
            flops: exact_attention_flops_in_window(&dims, cfg.mask, cfg.window),
        }
    }

    fn call(&mut self) -> Result<(), Error> {
        let (q, k, v) = (self.q.view(), self.k.view(), self.v.view());
        match self.output {
            Output::Reused => attention_into(q, k, v, &self.cfg, &mut self.buffer),
            Output::Fresh => attention(q, k, v, &self.cfg).map(drop),
        }
    }
}

/// Times `calls` interleaved (see [`crate::timing::time_interleaved`]): each one's timing and
/// model FLOPs.
fn time_exact(calls: &mut [ExactCall], repeat: usize) -> Result<Vec<(Timing, f64)>, Error> {
    let flops: Vec<f64> = calls.iter().map(|c| c.flops).collect();
    let timings = time_each(calls, repeat, ExactCall::call)?;
    Ok(timings.into_iter().zip(flops).collect())
}

/// What one row measured, before its numbers.
struct Case {
    study: &'static str,
    kernel: &'static str,
    n: usize,
    kv_heads: usize,
    case: String,
}

fn row(c: Case, threads: usize, (timing, flops): (Timing, f64), gemm: f64) -> VariantRow {
    VariantRow {
        study: c.study,
        case: c.case,
        kernel: c.kernel,
        n: c.n,
        kv_heads: c.kv_heads,
        threads,
        seconds_min: timing.min,
        seconds_median: timing.median,
        seconds_max: timing.max,
        gflop: flops / 1e9,
        share_of_gemm: flops / timing.median / 1e9 / gemm,
        kv_read_gbs: None,
    }
}

/// A KV cache of one head holding `context` tokens, and one new query to attend with. The cache
/// runs on the pool it is called from, so that every thread count reads the same K and V (two
/// copies of a 16.8 MB cache, interleaved, would not fit the 32 MB L3 together).
struct DecodeCall {
    cache: KvCache<f32>,
    q: Tensor<f32>,
}

impl DecodeCall {
    fn new(kernel: Kernel, context: usize) -> Result<Self, Error> {
        let cfg = AttentionConfig::new(kernel)
            .with_mask(Mask::Causal)
            .with_threads(Threads::Global);
        let mut cache = KvCache::<f32>::new(&cfg, 1, D, D)?;
        let (k, v) = (inputs([1, 1, context, D], 2), inputs([1, 1, context, D], 3));
        cache.append(k.as_slice(), v.as_slice())?;
        Ok(DecodeCall {
            cache,
            q: inputs([1, 1, 1, D], 1),
        })
    }

    /// One decode step on `threads` threads.
    fn call(&self, threads: usize) -> Result<(), Error> {
        run_with_threads(pool(threads), || {
            self.cache.attend(self.q.as_slice(), 1).map(drop)
        })?
    }
}

/// Runs the three studies on `threads` threads (quick: shorter sequences and fewer repeats).
///
/// # Errors
/// An engine error (none is expected for these shapes).
pub fn run(threads: usize, quick: bool) -> Result<VariantsRun, Error> {
    let load_average_before = load_average();
    let gemm = gemm_rate_gflops(GEMM_PROBE_N, threads, GEMM_PROBE_RUNS);
    let copy_gbs = copy_rate_gbs(threads);
    let mut rows = Vec::new();
    let poly4 = Kernel::Polynomial { degree: 4 };
    // Sliding window w = 512, causal, 8 heads: time against n, share counting in-band pairs.
    let window_ns: &[usize] = if quick {
        &[8192, 16384]
    } else {
        &[8192, 16384, 32768, 65536]
    };
    for (name, kernel) in [("poly4", poly4), ("softmax", Kernel::Softmax)] {
        let cfg = AttentionConfig::new(kernel)
            .with_mask(Mask::Causal)
            .with_window(512)
            .with_threads(pool(threads));
        // The lengths interleaved, so that a drift of the machine does not bend the line.
        let mut calls: Vec<ExactCall> = window_ns
            .iter()
            .map(|&n| ExactCall::new(&cfg, (8, 8, n), Output::Reused))
            .collect();
        for (&n, measured) in window_ns.iter().zip(time_exact(&mut calls, 3)?) {
            let case = Case {
                study: "window",
                kernel: name,
                n,
                kv_heads: 8,
                case: format!("{name} causal w=512 n={n} heads=8"),
            };
            rows.push(row(case, threads, measured, gemm));
        }
        drop(calls);
        // The same call with a fresh output per call: what page faults add.
        let n = *window_ns.last().expect("lengths");
        let mut fresh = [ExactCall::new(&cfg, (8, 8, n), Output::Fresh)];
        let measured = time_exact(&mut fresh, 3)?[0];
        let case = Case {
            study: "window-fresh-output",
            kernel: name,
            n,
            kv_heads: 8,
            case: format!("{name} causal w=512 n={n} heads=8, fresh output per call"),
        };
        rows.push(row(case, threads, measured, gemm));
    }
    // Grouped-query attention: 8 query heads on 2 k/v heads (g = 4) against 8 on 8.
    let n = if quick { 2048 } else { 4096 };
    for (name, kernel) in [("poly4", poly4), ("softmax", Kernel::Softmax)] {
        let cfg = AttentionConfig::new(kernel)
            .with_mask(Mask::Causal)
            .with_threads(pool(threads));
        // H_kv = H and g = 4 interleaved: their ratio is the study's figure.
        let groupings = [8, 2];
        let mut calls: Vec<ExactCall> = groupings
            .iter()
            .map(|&kv_heads| ExactCall::new(&cfg, (8, kv_heads, n), Output::Reused))
            .collect();
        for (&kv_heads, measured) in groupings.iter().zip(time_exact(&mut calls, 5)?) {
            let case = Case {
                study: "gqa",
                kernel: name,
                n,
                kv_heads,
                case: format!("{name} causal n={n} heads=8 kv_heads={kv_heads}"),
            };
            rows.push(row(case, threads, measured, gemm));
        }
    }
    // The decode step: one head, one new query; in cache (32768) and beyond it (262144).
    let contexts: &[usize] = if quick { &[32768] } else { &[32768, 262144] };
    for &context in contexts {
        // 1 and `threads` threads interleaved (burst by burst): their ratio is the study's figure.
        let mut thread_counts: Vec<usize> = [1, threads.max(1)]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let decode = DecodeCall::new(poly4, context)?;
        // A timed run is a burst of DECODE_BURST steps, as a generating model takes them back
        // to back: alone, a step would also time waking the other pool's sleeping workers.
        let bursts = if quick { 4 } else { 12 };
        let timings = time_each(&mut thread_counts, bursts, |&mut t| {
            (0..DECODE_BURST).try_for_each(|_| decode.call(t))
        })?;
        for (&t, burst) in thread_counts.iter().zip(timings) {
            let per_step = |s: f64| s / DECODE_BURST as f64;
            let timing = Timing {
                median: per_step(burst.median),
                min: per_step(burst.min),
                max: per_step(burst.max),
                runs: burst.runs,
            };
            let flops = exact_attention_flops_in_window(
                &Dims::new(1, 1, 1, context, D, D),
                Mask::Causal,
                None,
            );
            let bytes = (context * 2 * D * size_of::<f32>()) as f64;
            let case = Case {
                study: "decode",
                kernel: "poly4",
                n: context,
                kv_heads: 1,
                case: format!("poly4 decode step context={context} heads=1"),
            };
            let mut r = row(case, t, (timing, flops), gemm);
            r.kv_read_gbs = Some(bytes / timing.median / 1e9);
            rows.push(r);
        }
    }
    let gemm_after = gemm_rate_gflops(GEMM_PROBE_N, threads, GEMM_PROBE_RUNS);
    Ok(VariantsRun {
        threads,
        load_average_before,
        gemm_gflops_before: gemm,
        gemm_gflops_after: gemm_after,
        copy_gbs,
        rows,
    })
}

/// The ratios the variants are judged by, as markdown.
pub fn markdown(run: &VariantsRun) -> String {
    let mut md = String::new();
    let drift = (run.gemm_gflops_after / run.gemm_gflops_before - 1.0).abs();
    md.push_str(&format!(
        "# Variants: windows, grouped heads, decoding\n\nThreads {}; load average before {}; faer \
         f32 GEMM 2048³ {:.0} GFLOP/s before, {:.0} after{}; parallel memcpy of 512 MiB {:.1} GB/s \
         copied. Exact rows write into a reused output buffer (`attention_into`) unless marked \
         \"fresh output\". Decode rows time bursts of {DECODE_BURST} steps and give them per step; \
         the cases each ratio compares ran interleaved.\n\n",
        run.threads,
        run.load_average_before,
        run.gemm_gflops_before,
        run.gemm_gflops_after,
        if drift > 0.1 {
            " (**noisy**: the GEMM rate drifted more than 10%; rerun)"
        } else {
            ""
        },
        run.copy_gbs
    ));
    md.push_str("| study | case | threads | min ms | median ms | max ms | GFLOP | % of GEMM | K+V GB/s |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in &run.rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0}%{} | {} |\n",
            r.study,
            r.case,
            r.threads,
            r.seconds_min * 1e3,
            r.seconds_median * 1e3,
            r.seconds_max * 1e3,
            r.gflop,
            100.0 * r.share_of_gemm,
            if r.share_of_gemm > 1.0 {
                " (noisy)"
            } else {
                ""
            },
            r.kv_read_gbs.map_or("".into(), |g| format!(
                "{g:.1} ({:.0}% of the memcpy rate; {:.0}% of its read + write traffic)",
                100.0 * g / run.copy_gbs,
                50.0 * g / run.copy_gbs
            )),
        ));
    }
    md.push_str("\n## Ratios\n\n");
    let t = run.threads;
    let median = |study: &str, kernel: &str, n: usize, kv_heads: usize, threads: usize| {
        run.rows
            .iter()
            .find(|r| {
                (r.study, r.kernel, r.n, r.kv_heads, r.threads)
                    == (study, kernel, n, kv_heads, threads)
            })
            .map(|r| r.seconds_median)
    };
    let lengths = |study: &str| {
        let mut ns: Vec<usize> = run
            .rows
            .iter()
            .filter(|r| r.study == study)
            .map(|r| r.n)
            .collect();
        ns.sort_unstable();
        ns.dedup();
        ns
    };
    for kernel in ["poly4", "softmax"] {
        let ns = lengths("window");
        if let (Some(&first), Some(&last)) = (ns.first(), ns.last())
            && let (Some(a), Some(b)) = (
                median("window", kernel, first, 8, t),
                median("window", kernel, last, 8, t),
            )
        {
            md.push_str(&format!(
                "- window w=512, {kernel}: t({last})/t({first}) = {:.2} (linear: {:.0})\n",
                b / a,
                last as f64 / first as f64
            ));
        }
        for n in lengths("gqa") {
            if let (Some(mha), Some(gqa)) = (
                median("gqa", kernel, n, 8, t),
                median("gqa", kernel, n, 2, t),
            ) {
                md.push_str(&format!(
                    "- GQA g=4 vs H_kv=H, {kernel} n={n}: t(gqa)/t(mha) = {:.3}\n",
                    gqa / mha
                ));
            }
        }
    }
    for context in lengths("decode") {
        if let (true, Some(one), Some(all)) = (
            t > 1,
            median("decode", "poly4", context, 1, 1),
            median("decode", "poly4", context, 1, t),
        ) {
            md.push_str(&format!(
                "- decode step, context {context}: 1 → {t} threads {:.2}×\n",
                one / all
            ));
        }
    }
    md
}

/// Writes `variants.json` and `variants.md` into `dir`.
///
/// # Errors
/// A file that cannot be written.
pub fn write(run: &VariantsRun, dir: &Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(run).expect("a run serializes");
    for (name, text) in [("variants.json", json), ("variants.md", markdown(run))] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
