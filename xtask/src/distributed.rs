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

fn measure(bench: &std::path::Path, ranks: usize, args: &[String]) -> Result<Value, String> {
    let out = mpirun(ranks)
        .arg(bench)
        .args(args)
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
    let ranks: Vec<usize> = vec![1, 2, 4];
    let (exact_n, sketch_n) = if quick { (4096, 16384) } else { (8192, 65536) };
    let mut runs = Vec::new();
    let strong: Vec<(&'static str, Vec<String>)> = vec![
        (
            "ring poly4 causal (zig-zag)",
            args(&["--engine", "ring", "--causal", "--n", &exact_n.to_string()]),
        ),
        (
            "ring softmax",
            args(&["--engine", "ring-softmax", "--n", &exact_n.to_string()]),
        ),
        (
            "sketched causal, ordered scan",
            args(&[
                "--engine",
                "sketched",
                "--causal",
                "--n",
                &sketch_n.to_string(),
            ]),
        ),
        (
            "sketched causal, tree scan",
            args(&[
                "--engine",
                "sketched",
                "--causal",
                "--scan",
                "tree",
                "--n",
                &sketch_n.to_string(),
            ]),
        ),
    ];
    for (label, a) in &strong {
        for &p in &ranks {
            eprintln!("distributed: strong {label}, {p} ranks");
            let record = measure(&bench, p, a)?;
            runs.push(Run {
                label,
                args: a.clone(),
                ranks: p,
                record,
            });
        }
    }
    // Weak scaling: the work per rank fixed. Quadratic exact attention: n = n0·√P; linear: n0·P.
    let mut weak = Vec::new();
    for &p in &ranks {
        let n = ((exact_n as f64 / 2.0) * (p as f64).sqrt() / 64.0).round() as usize * 64;
        let a = args(&["--engine", "ring", "--causal", "--n", &n.to_string()]);
        eprintln!("distributed: weak ring n = {n}, {p} ranks");
        weak.push(("ring poly4 causal, n = n0·√P", p, measure(&bench, p, &a)?));
        let n = sketch_n / 4 * p;
        let a = args(&["--engine", "sketched", "--causal", "--n", &n.to_string()]);
        eprintln!("distributed: weak sketched n = {n}, {p} ranks");
        weak.push(("sketched causal, n = n0·P", p, measure(&bench, p, &a)?));
    }
    let dir = results_dir()?.join("distributed");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut jsonl = String::new();
    for r in &runs {
        writeln!(jsonl, "{}", r.record).ok();
    }
    for (_, _, r) in &weak {
        writeln!(jsonl, "{r}").ok();
    }
    std::fs::write(dir.join("distributed.jsonl"), jsonl).map_err(|e| e.to_string())?;
    let report = render(&runs, &weak, cores);
    std::fs::write(dir.join("distributed.md"), &report).map_err(|e| e.to_string())?;
    print!("{report}");
    eprintln!(
        "distributed: wrote {}",
        dir.join("distributed.md").display()
    );
    Ok(())
}

fn render(runs: &[Run], weak: &[(&str, usize, Value)], cores: usize) -> String {
    let mut md = String::new();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    writeln!(md, "# Distributed attention on one machine\n").ok();
    writeln!(
        md,
        "{cores} cores; one thread per rank (`RAYON_NUM_THREADS=1`), so ranks beyond {cores} share \
         cores (oversubscribed: the ideal speedup stays {cores}×). f32, d = d_v = 64, 4 heads. Time: \
         the slowest rank, median of 3 calls after a warm-up. Load average at the end: {}.\n",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
    .ok();
    writeln!(md, "## Strong scaling (fixed n)\n").ok();
    writeln!(md, "| engine | n | ranks | seconds (min–max) | speedup | bytes sent (all ranks) | model bytes | compute / wait (slowest rank, s) |").ok();
    writeln!(md, "|---|---|---|---|---|---|---|---|").ok();
    for r in runs {
        let base = runs
            .iter()
            .find(|b| b.label == r.label && b.ranks == 1)
            .map_or(f64::NAN, |b| f(&b.record, "seconds_median"));
        let v = &r.record;
        let n = f(v, "n");
        let p = r.ranks as f64;
        let heads = f(v, "heads");
        let d = f(v, "d");
        // Ring: every rank sends its K and V shard on P − 1 steps. Ordered scan: P − 1 states
        // hop once each (causal); tree: ⌈log2 P⌉ rounds of one state per rank (the recursive-
        // doubling model poly-dist counts).
        let state = heads * f(v, "feature_dim") * (d + 2.0) * 4.0;
        let model = if r.args.contains(&"sketched".to_string()) {
            if r.args.contains(&"tree".to_string()) {
                p * p.log2().ceil() * state
            } else {
                (p - 1.0) * state
            }
        } else {
            (p - 1.0) * n * heads * 2.0 * d * 4.0
        };
        writeln!(
            md,
            "| {} | {} | {} | {:.4} ({:.4}–{:.4}) | {:.2}× | {} | {} | {:.4} / {:.4} |",
            r.label,
            n,
            r.ranks,
            f(v, "seconds_median"),
            f(v, "seconds_min"),
            f(v, "seconds_max"),
            base / f(v, "seconds_median"),
            f(v, "bytes_sent_total"),
            model,
            f(v, "compute_seconds_max_rank"),
            f(v, "wait_seconds_max_rank"),
        )
        .ok();
    }
    writeln!(
        md,
        "\n## Weak scaling (fixed work per rank; ideal: constant time)\n"
    )
    .ok();
    writeln!(
        md,
        "| engine | ranks | n | seconds | efficiency t(1)/t(P) |"
    )
    .ok();
    writeln!(md, "|---|---|---|---|---|").ok();
    for (label, p, v) in weak {
        let base = weak
            .iter()
            .find(|(l, q, _)| l == label && *q == 1)
            .map_or(f64::NAN, |(_, _, b)| f(b, "seconds_median"));
        writeln!(
            md,
            "| {label} | {p} | {} | {:.4} | {:.2} |",
            f(v, "n"),
            f(v, "seconds_median"),
            base / f(v, "seconds_median")
        )
        .ok();
    }
    md.push_str(&predictions(runs));
    md
}

/// The cost model of docs/distributed.md with this machine's one-rank rates.
fn predictions(runs: &[Run]) -> String {
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
    let (n, heads, d) = (1048576.0f64, 32.0, 64.0);
    let m = f(sketch, "feature_dim");
    writeln!(
        md,
        "\n## Predicted speedup at P ranks (cost model, docs/distributed.md)\n\n\
         A rank computes at this machine's one-thread rates measured above: exact {:.1} GFLOP/s, \
         sketched {:.2} µs per row of 4 heads. Links: {:.0} GB/s, {:.0} µs latency. Problem: causal, \
         n = 2^20, 32 heads, d = d_v = 64, f32. Ring: T(P) = c + (P − 1)·max(c, α + s/B) with \
         c = F/(P²·rate) and s = 2·(n/P)·heads·d·4 bytes per step. Scan: T(P) = T(1)/P + h·(α + S/B) \
         with S = heads·m·(d_v + 2)·4 bytes, h = P − 1 (ordered) or ⌈log2 P⌉ (tree).\n",
        rate / 1e9,
        sketch_per_row * 1e6,
        LINK_BYTES_PER_SECOND / 1e9,
        LINK_LATENCY_SECONDS * 1e6
    )
    .ok();
    writeln!(md, "| P | ring speedup | ring comm/compute per step | scan ordered speedup | scan tree speedup |").ok();
    writeln!(md, "|---|---|---|---|---|").ok();
    let flops = exact_flops(n, heads, d, true);
    let t1 = flops / rate;
    let sketch_t1 = sketch_per_row * n * heads / f(sketch, "heads");
    let state = heads * m * (d + 2.0) * 4.0;
    for p in [8.0f64, 32.0, 128.0, 512.0, 1024.0] {
        let c = flops / (p * p * rate);
        let comm = LINK_LATENCY_SECONDS + 2.0 * (n / p) * heads * d * 4.0 / LINK_BYTES_PER_SECOND;
        let ring = c + (p - 1.0) * c.max(comm);
        let hop = LINK_LATENCY_SECONDS + state / LINK_BYTES_PER_SECOND;
        let ordered = sketch_t1 / p + (p - 1.0) * hop;
        let tree = sketch_t1 / p + p.log2().ceil() * hop;
        writeln!(
            md,
            "| {p} | {:.0}× | {:.3} | {:.0}× | {:.0}× |",
            t1 / ring,
            comm / c,
            sketch_t1 / ordered,
            sketch_t1 / tree
        )
        .ok();
    }
    md
}
