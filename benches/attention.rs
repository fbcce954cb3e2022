//! Exact attention against faer's GEMM rate, measured in the same run.
//!
//! Workload of the foundation issue: f32, batch × heads = 8, d = d_v = 64, n ∈ {1024, 4096}; the
//! polynomial (β = 4) kernel causal and not, softmax, on all threads of the current rayon pool
//! (`RAYON_NUM_THREADS`) and on one thread. After criterion's own report, a summary table gives
//! each kernel as a percentage of the faer f32 GEMM rate (2048³) and the thread speedup.
//!
//! `cargo bench --bench attention` (add `-- --quick` for a fast pass).

use criterion::{Criterion, Throughput};
use poly_bench::criterion_results::{criterion_dir, median_seconds};
use poly_bench::machine::MachineInfo;
use poly_bench::roofline::{gemm_flops, gemm_into, gemm_par};
use poly_core::{
    AttentionConfig, Mask, Tensor, Threads, attention, check_inputs, exact_attention_flops,
};
use poly_data::synthetic::uniform;
use poly_sketch::{
    DecodingState, FeatureMap, LinearAttentionConfig, PolySketch, SelfTensoredSketch, SketchScale,
};
use std::num::NonZeroUsize;
use std::time::Duration;

const HEADS: usize = 8;
const DIM: usize = 64;
const GEMM_N: usize = 2048;

fn random_tensor(n: usize, seed: u64) -> Tensor<f32> {
    uniform([1, HEADS, n, DIM], -1.0, 1.0, seed).unwrap()
}

fn kernels() -> [(&'static str, AttentionConfig); 3] {
    [
        ("poly4", AttentionConfig::polynomial(4)),
        (
            "poly4_causal",
            AttentionConfig::polynomial(4).with_mask(Mask::Causal),
        ),
        ("softmax", AttentionConfig::softmax()),
    ]
}

fn threads(n: usize) -> Threads {
    Threads::Exact(NonZeroUsize::new(n).unwrap())
}

fn bench(c: &mut Criterion, all_threads: usize) {
    let mut group = c.benchmark_group("gemm");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(gemm_flops(GEMM_N) as u64));
    let a = faer::Mat::<f32>::from_fn(GEMM_N, GEMM_N, |i, j| ((i + 3 * j) % 7) as f32 - 3.0);
    let mut out = faer::Mat::<f32>::zeros(GEMM_N, GEMM_N);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(all_threads)
        .build()
        .unwrap();
    group.bench_function(format!("f32_{GEMM_N}_t{all_threads}"), |b| {
        b.iter(|| pool.install(|| gemm_into(&mut out, &a, &a, gemm_par(all_threads))))
    });
    group.finish();

    for n in [1024, 4096] {
        let (q, k, v) = (
            random_tensor(n, 1),
            random_tensor(n, 2),
            random_tensor(n, 3),
        );
        let mut group = c.benchmark_group(format!("exact_n{n}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(if n > 2048 { 6 } else { 3 }));
        for (name, cfg) in kernels() {
            let dims = check_inputs(&q.view(), &k.view(), &v.view(), &cfg).unwrap();
            group.throughput(Throughput::Elements(
                exact_attention_flops(&dims, cfg.mask) as u64
            ));
            let mut thread_counts = vec![all_threads];
            if name == "poly4" && all_threads > 1 {
                thread_counts.push(1);
            }
            for t in thread_counts {
                let cfg = cfg.with_threads(threads(t));
                group.bench_function(format!("{name}_t{t}"), |b| {
                    b.iter(|| attention(q.view(), k.view(), v.view(), &cfg).unwrap())
                });
            }
        }
        group.finish();
    }
}

/// One decoding step (one token of one head, one thread) after a 4096-token prompt: r = 32,
/// d = d_v = 64, degree 4, for the self-tensored sketch (m = 528) and the plain tree (m = 32).
fn bench_decoding(c: &mut Criterion) {
    let (d, prompt) = (DIM, 4096);
    let x = uniform::<f32>([1, 1, prompt + 1, d], -1.0, 1.0, 9).unwrap();
    let (prompt_rows, token) = x.as_slice().split_at(prompt * d);
    let tensored = SelfTensoredSketch::<f32>::new(d, 4, 32, 1, SketchScale::Unbiased).unwrap();
    let plain = PolySketch::<f32>::new(d, 4, 32, 1, SketchScale::Unbiased).unwrap();
    let maps: [(&str, &dyn FeatureMap<f32>); 2] =
        [("self_tensored_r32", &tensored), ("polysketch_r32", &plain)];
    let mut group = c.benchmark_group("decode");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    for (name, map) in maps {
        let cfg = LinearAttentionConfig::default().with_mask(Mask::Causal);
        let mut state = DecodingState::new(map, d, &cfg).unwrap();
        state.prefill(prompt_rows, prompt_rows).unwrap();
        // Steady decoding: one state steps token after token (the cost does not grow with t).
        let mut out = vec![0.0f32; d];
        group.bench_function(name, |b| {
            b.iter(|| state.step_into(token, token, token, &mut out).unwrap())
        });
    }
    group.finish();
}

/// The ratios of the issue, from the medians criterion just saved.
fn summary(all_threads: usize) {
    let dir = criterion_dir();
    let Some(gemm) = median_seconds(&dir, "gemm", &format!("f32_{GEMM_N}_t{all_threads}")) else {
        return;
    };
    let gemm_rate = gemm_flops(GEMM_N) / gemm / 1e9;
    println!("\n== polyattn exact attention: % of faer f32 GEMM rate ({GEMM_N}³, same run) ==");
    println!("{}", MachineInfo::collect(all_threads).json_line());
    println!("gemm {GEMM_N}³ f32, {all_threads} threads: {gemm_rate:.1} GFLOP/s");
    println!(
        "{:<10} {:<14} {:>8} {:>10} {:>10} {:>9}",
        "n", "kernel", "threads", "median ms", "GFLOP/s", "% GEMM"
    );
    for n in [1024, 4096] {
        let group = format!("exact_n{n}");
        for (name, cfg) in kernels() {
            let dims = poly_core::Dims::new(1, HEADS, n, n, DIM, DIM);
            let flops = exact_attention_flops(&dims, cfg.mask);
            for t in [all_threads, 1] {
                if let Some(sec) = median_seconds(&dir, &group, &format!("{name}_t{t}")) {
                    let rate = flops / sec / 1e9;
                    // Only runs on the GEMM's thread count are comparable to its rate.
                    let share = if t == all_threads {
                        format!("{:.1}%", 100.0 * rate / gemm_rate)
                    } else {
                        "–".to_owned()
                    };
                    println!(
                        "{n:<10} {name:<14} {t:>8} {:>10.2} {rate:>10.1} {share:>9}",
                        sec * 1e3
                    );
                }
            }
        }
        if all_threads > 1 {
            let one = median_seconds(&dir, &group, "poly4_t1");
            let all = median_seconds(&dir, &group, &format!("poly4_t{all_threads}"));
            if let (Some(one), Some(all)) = (one, all) {
                println!(
                    "{n:<10} poly4 speedup 1 → {all_threads} threads: {:.2}×",
                    one / all
                );
            }
        }
    }
}

fn main() {
    let all_threads = rayon::current_num_threads();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, all_threads);
    bench_decoding(&mut c);
    c.final_summary();
    // In `cargo test` mode criterion runs each benchmark once and saves nothing new.
    if std::env::args().any(|a| a == "--bench") {
        summary(all_threads);
    }
}
