//! `cargo xtask distributed`: strong and weak scaling of the distributed engines on this machine
//! under `mpirun`, the bytes each rank sent against the model, and the cost model's prediction
//! for P = 8 … 1024 ranks (docs/distributed.md). Results: `<target>/polyattn/distributed/`.
//!
//! Every rank runs one thread (`RAYON_NUM_THREADS=1`), so P ranks use P cores: up to this
//! machine's core count the speedup is a parallel speedup, beyond it the ranks share cores
//! (oversubscribed) and the ideal stays at the core count.

use crate::mpi::mpirun;
use crate::shell::{build_release_binary, results_dir};
use serde_json::Value;
use std::fmt::Write as _;

/// The network the cost model assumes between ranks.
const LINK_BYTES_PER_SECOND: f64 = 25e9;
const LINK_LATENCY_SECONDS: f64 = 2e-6;

/// One measured configuration.
struct Run {
    label: &'static str,
    args: Vec<String>,
    ranks: usize,
    record: Value,
}

/// A series of ranks for one configuration, with the one-rank baseline measured before and after
/// the others, so that a machine whose speed drifted during the series is caught.
struct Series {
    runs: Vec<Run>,
    /// The one-rank time after the series.
    baseline_after: f64,
}

/// A baseline that drifted more than this between before and after marks the series noisy.
const NOISY_DRIFT: f64 = 0.10;

impl Series {
    fn baseline_before(&self) -> f64 {
        f(&self.runs[0].record, "seconds_median")
    }

    /// The mean of the two one-rank times.
    fn baseline(&self) -> f64 {
        0.5 * (self.baseline_before() + self.baseline_after)
    }

    fn drift(&self) -> f64 {
        (self.baseline_after - self.baseline_before()).abs() / self.baseline_before()
    }
}

fn measure(bench: &std::path::Path, ranks: usize, args: &[String]) -> Result<Value, String> {
    let out = mpirun(ranks)
        .arg(bench)
        .args(args)
        .args(["--repeat", "5"])
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .map_err(|e| format!("cannot run mpirun: {e} (cargo xtask mpi-check)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "poly-dist-bench {args:?} on {ranks} ranks failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or("no JSON line")?;
    serde_json::from_str(line).map_err(|e| format!("bad JSON {line}: {e}"))
}

/// Measures `label` on every rank count, then one rank again.
fn series(
    bench: &std::path::Path,
    label: &'static str,
    ranks: &[usize],
    args_for: impl Fn(usize) -> Vec<String>,
) -> Result<Series, String> {
    let mut runs = Vec::new();
    for &p in ranks {
        eprintln!("distributed: {label}, {p} ranks");
        let args = args_for(p);
        let record = measure(bench, p, &args)?;
        runs.push(Run {
            label,
            args,
            ranks: p,
            record,
        });
    }
    eprintln!("distributed: {label}, 1 rank again");
    let after = measure(bench, 1, &args_for(1))?;
    Ok(Series {
        runs,
        baseline_after: f(&after, "seconds_median"),
    })
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Model FLOPs of exact attention as poly-core counts them: 2·(d + d_v) per visible pair.
fn exact_flops(n: f64, heads: f64, d: f64, causal: bool) -> f64 {
    let pairs = if causal { n * (n + 1.0) / 2.0 } else { n * n };
    2.0 * (2.0 * d) * pairs * heads
}

/// Runs the sweep and writes distributed.md and distributed.jsonl.
pub fn run(forwarded: &[String]) -> Result<(), String> {
    let quick = forwarded.iter().any(|a| a == "--quick");
    crate::mpi::check()?;
    let bench = build_release_binary(
        &["-p", "poly-dist", "--bin", "poly-dist-bench"],
        "poly-dist-bench",
    )?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ranks = [1, 2, 4];
    let (exact_n, sketch_n) = if quick { (4096, 16384) } else { (8192, 65536) };
    let fixed = |list: &'static [&'static str], n: usize| {
        move |_: usize| {
            let mut a = args(list);
            a.extend(["--n".to_owned(), n.to_string()]);
            a
        }
    };
    let strong = vec![
        series(
            &bench,
            "ring poly4 causal (zig-zag)",
            &ranks,
            fixed(&["--engine", "ring", "--causal"], exact_n),
        )?,
        series(
            &bench,
            "ring softmax",
            &ranks,
            fixed(&["--engine", "ring-softmax"], exact_n),
        )?,
        series(
            &bench,
            "sketched causal, ordered scan",
            &ranks,
            fixed(&["--engine", "sketched", "--causal"], sketch_n),
        )?,
        series(
            &bench,
            "sketched causal, tree scan",
            &ranks,
            fixed(
                &["--engine", "sketched", "--causal", "--scan", "tree"],
                sketch_n,
            ),
        )?,
    ];
    // Weak scaling: the work per rank fixed. Quadratic exact attention: n = n0·√P; linear: n0·P.
    let ring_n = move |p: usize| {
        let n = ((exact_n as f64 / 2.0) * (p as f64).sqrt() / 64.0).round() as usize * 64;
        args(&["--engine", "ring", "--causal", "--n", &n.to_string()])
    };
    let sketch_weak = move |p: usize| {
        args(&[
            "--engine",
            "sketched",
            "--causal",
            "--n",
            &(sketch_n / 4 * p).to_string(),
        ])
    };
    let weak = vec![
        series(&bench, "ring poly4 causal, n = n0·√P", &ranks, ring_n)?,
        series(&bench, "sketched causal, n = n0·P", &ranks, sketch_weak)?,
    ];
    let dir = results_dir()?.join("distributed");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut jsonl = String::new();
    for r in strong.iter().chain(&weak).flat_map(|s| &s.runs) {
        writeln!(jsonl, "{}", r.record).ok();
    }
    std::fs::write(dir.join("distributed.jsonl"), jsonl).map_err(|e| e.to_string())?;
    let report = render(&strong, &weak, cores);
    std::fs::write(dir.join("distributed.md"), &report).map_err(|e| e.to_string())?;
    print!("{report}");
    eprintln!(
        "distributed: wrote {}",
        dir.join("distributed.md").display()
    );
    Ok(())
}

/// "noisy" when the baseline drifted or a share of the ideal exceeds 100%.
fn noise_mark(series: &Series, share: f64) -> String {
    if series.drift() > NOISY_DRIFT || share > 1.0 + NOISY_DRIFT {
        format!(
            " noisy (1-rank baseline {:.3} → {:.3} s): rerun",
            series.baseline_before(),
            series.baseline_after
        )
    } else {
        String::new()
    }
}

/// The bytes the model says all ranks send: ring, every rank its K and V shard on P − 1 steps;
/// ordered scan, P − 1 states one hop each; tree, ⌈log2 P⌉ rounds of one state per rank (the
/// recursive-doubling model poly-dist counts).
fn model_bytes(r: &Run) -> f64 {
    let v = &r.record;
    let (n, p, heads, d) = (f(v, "n"), r.ranks as f64, f(v, "heads"), f(v, "d"));
    let state = heads * f(v, "feature_dim") * (d + 2.0) * 4.0;
    if r.args.iter().any(|a| a == "sketched") {
        if r.args.iter().any(|a| a == "tree") {
            p * p.log2().ceil() * state
        } else {
            (p - 1.0) * state
        }
    } else {
        (p - 1.0) * n * heads * 2.0 * d * 4.0
    }
}

fn render(strong: &[Series], weak: &[Series], cores: usize) -> String {
    let mut md = String::new();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    writeln!(md, "# Distributed attention on one machine\n").ok();
    writeln!(
        md,
        "{cores} cores; one thread per rank (`RAYON_NUM_THREADS=1`), so ranks beyond {cores} share \
         cores (oversubscribed: the ideal speedup stays {cores}×). f32, d = d_v = 64, 4 heads. \
         Time: the slowest rank, median of 5 calls after a warm-up. Each series measures one rank \
         before and after the others; the speedups are against the mean of the two, and a series \
         whose baseline drifted more than {:.0}% (or whose share of the ideal exceeds 100%) is \
         marked noisy. Load average at the end: {}.\n",
        NOISY_DRIFT * 100.0,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
    .ok();
    writeln!(md, "## Strong scaling (fixed n)\n").ok();
    writeln!(
        md,
        "| engine | n | ranks | seconds (min–max) | speedup | of ideal min(P, cores) | bytes sent (all ranks) | model bytes | compute / wait (slowest rank, s) |"
    )
    .ok();
    writeln!(md, "|---|---|---|---|---|---|---|---|---|").ok();
    for s in strong {
        for r in &s.runs {
            let v = &r.record;
            let speedup = s.baseline() / f(v, "seconds_median");
            let share = speedup / r.ranks.min(cores) as f64;
            writeln!(
                md,
                "| {} | {} | {} | {:.4} ({:.4}–{:.4}) | {:.2}× | {:.0}%{} | {} | {} | {:.4} / {:.4} |",
                r.label,
                f(v, "n"),
                r.ranks,
                f(v, "seconds_median"),
                f(v, "seconds_min"),
                f(v, "seconds_max"),
                speedup,
                100.0 * share,
                noise_mark(s, share),
                f(v, "bytes_sent_total"),
                model_bytes(r),
                f(v, "compute_seconds_max_rank"),
                f(v, "wait_seconds_max_rank"),
            )
            .ok();
        }
    }
    writeln!(md, "\n## Weak scaling (fixed work per rank)\n").ok();
    writeln!(
        md,
        "| engine | ranks | n | seconds | t(1)/t(P) | of ideal (t(P) = t(1)·P/min(P, cores)) |"
    )
    .ok();
    writeln!(md, "|---|---|---|---|---|---|").ok();
    for s in weak {
        for r in &s.runs {
            let v = &r.record;
            let ideal = r.ranks as f64 / r.ranks.min(cores) as f64;
            let share = s.baseline() * ideal / f(v, "seconds_median");
            writeln!(
                md,
                "| {} | {} | {} | {:.4} | {:.2} | {:.0}%{} |",
                r.label,
                r.ranks,
                f(v, "n"),
                f(v, "seconds_median"),
                s.baseline() / f(v, "seconds_median"),
                100.0 * share,
                noise_mark(s, share)
            )
            .ok();
        }
    }
    let runs: Vec<&Run> = strong.iter().flat_map(|s| &s.runs).collect();
    md.push_str(&predictions(&runs));
    md
}

/// The cost model of docs/distributed.md with this machine's one-rank rates.
fn predictions(runs: &[&Run]) -> String {
    let mut md = String::new();
    let one = |label: &str| {
        runs.iter()
            .find(|r| r.label == label && r.ranks == 1)
            .map(|r| &r.record)
    };
    let (Some(ring), Some(sketch)) = (
        one("ring poly4 causal (zig-zag)"),
        one("sketched causal, ordered scan"),
    ) else {
        return md;
    };
    let rate =
        exact_flops(f(ring, "n"), f(ring, "heads"), f(ring, "d"), true) / f(ring, "seconds_median");
    let sketch_per_row = f(sketch, "seconds_median") / f(sketch, "n");
    // The ordered scan's second pass recomputes the key features: the extra work per rank, as
    // measured on 2 ranks (each with its own core) against 1.
    let two = runs
        .iter()
        .find(|r| r.label == "sketched causal, ordered scan" && r.ranks == 2)
        .map_or(f64::NAN, |r| f(&r.record, "seconds_median"));
    let overhead = (2.0 * two / f(sketch, "seconds_median") - 1.0).max(0.0);
    let (n, heads, d) = (1048576.0f64, 32.0, 64.0);
    let m = f(sketch, "feature_dim");
    writeln!(
        md,
        "\n## Predicted speedup at P ranks (cost model, docs/distributed.md)\n\n\
         A rank computes at this machine's one-thread rates measured above: exact {:.1} GFLOP/s, \
         sketched {:.2} µs per row of 4 heads. Links: {:.0} GB/s, {:.0} µs latency. Problem: causal, \
         n = 2^20, 32 heads, d = d_v = 64, f32. Ring: T(P) = c + (P − 1)·max(c, α + s/B) with \
         c = F/(P²·rate) and s = 2·(n/P)·heads·d·4 bytes per step. Scan: T(P) = T(1)/P + h·(α + S/B) \
         with S = heads·m·(d_v + 2)·4 bytes, h = P − 1 (ordered) or ⌈log2 P⌉ (tree), and T(1) \
         the one-rank time times (1 + {:.2}): the extra work of the two-pass shard measured at \
         P = 2. \"node\": a rank 32 times as fast (a 32-core node), so communication weighs 32× \
         more.\n",
        rate / 1e9,
        sketch_per_row * 1e6,
        LINK_BYTES_PER_SECOND / 1e9,
        LINK_LATENCY_SECONDS * 1e6,
        overhead
    )
    .ok();
    writeln!(md, "| P | ring speedup (core / node) | ring comm/compute per step (core / node) | scan ordered (core / node) | scan tree (core / node) |").ok();
    writeln!(md, "|---|---|---|---|---|").ok();
    let flops = exact_flops(n, heads, d, true);
    let t1 = flops / rate;
    let sketch_t1 = sketch_per_row * n * heads / f(sketch, "heads");
    let state = heads * m * (d + 2.0) * 4.0;
    for p in [8.0f64, 32.0, 128.0, 512.0, 1024.0] {
        let mut cells = Vec::new();
        for speed in [1.0, 32.0] {
            let (t1, sketch_t1) = (t1 / speed, sketch_t1 / speed);
            let c = flops / (p * p * rate * speed);
            let comm =
                LINK_LATENCY_SECONDS + 2.0 * (n / p) * heads * d * 4.0 / LINK_BYTES_PER_SECOND;
            let ring = c + (p - 1.0) * c.max(comm);
            let hop = LINK_LATENCY_SECONDS + state / LINK_BYTES_PER_SECOND;
            let local = sketch_t1 * (1.0 + overhead) / p;
            let ordered = local + (p - 1.0) * hop;
            let tree = local + p.log2().ceil() * hop;
            cells.push([t1 / ring, comm / c, sketch_t1 / ordered, sketch_t1 / tree]);
        }
        let [a, b] = [cells[0], cells[1]];
        writeln!(
            md,
            "| {p} | {:.0}× / {:.0}× | {:.3} / {:.3} | {:.0}× / {:.0}× | {:.0}× / {:.0}× |",
            a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3]
        )
        .ok();
    }
    md
}
