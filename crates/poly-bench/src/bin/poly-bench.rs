//! `poly-bench`: the measuring binary behind `cargo xtask report | scaling | threads | accuracy |
//! profile`. xtask builds it in release mode; each subcommand writes CSV/JSON/SVG/markdown into
//! its `--out` directory and prints a summary.

use clap::{Parser, Subcommand};
use poly_bench::accuracy::{self, AccuracyPlan};
use poly_bench::machine::load_average;
use poly_bench::methods::MethodName;
use poly_bench::records::{Surroundings, TimeLine};
use poly_bench::report;
use poly_bench::roofline::{GEMM_PROBE_N, GEMM_PROBE_RUNS, gemm_probe};
use poly_bench::scenario::{Method, Scenario};
use poly_bench::sweeps::{self, ScalingPlan};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "poly-bench", about = "polyattn measurements")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn all_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Subcommand)]
enum Command {
    /// Time one scenario and print one JSON line (what `xtask profile` runs under valgrind).
    Time {
        #[arg(long, value_enum)]
        method: MethodName,
        #[arg(long, default_value_t = 4096)]
        n: usize,
        #[arg(long, default_value_t = 64)]
        d: usize,
        #[arg(long, default_value_t = 8)]
        batch_heads: usize,
        #[arg(long, default_value_t = all_threads())]
        threads: usize,
        #[arg(long, default_value_t = 256)]
        block: usize,
        #[arg(long)]
        causal: bool,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Also measure faer's f32 GEMM rate (2048³) on the same threads before and after the
        /// runs: `percent_of_gemm` is the median run against the mean of the two probes' median
        /// rates, `percent_of_gemm_best` the fastest run against the fastest probe run (off by
        /// default: `xtask profile` runs this under valgrind).
        #[arg(long)]
        gemm: bool,
    },
    /// Time vs n (doubling), every method causal and not, with slopes and % of the GEMM rate.
    Scaling {
        /// n up to 16384, batch×heads 4, 20 s per series (else up to --max-n, batch×heads 8).
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 65536)]
        max_n: usize,
        /// Seconds one series may spend before its sweep stops.
        #[arg(long, default_value_t = 90.0)]
        budget_s: f64,
        #[arg(long, default_value_t = all_threads())]
        threads: usize,
        /// Methods to sweep (default: poly4, softmax, polysketch and every compiled-in peer).
        #[arg(long, value_enum, value_delimiter = ',')]
        methods: Vec<MethodName>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Speedup from 1 to --max-threads threads at n = 4096, batch×heads = 8.
    Threads {
        #[arg(long, default_value_t = all_threads())]
        max_threads: usize,
        #[arg(long, default_value_t = 4096)]
        n: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Relative error of sketched vs exact attention as the sketch grows (16 … 256).
    Accuracy {
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// Peak memory (max RSS) of `polyattn attend` for n = 8192 … --max-n (doubling).
    Memory {
        /// The `polyattn` executable to measure.
        #[arg(long)]
        polyattn: PathBuf,
        /// Largest sequence length (a power of two ≥ 8192).
        #[arg(long, default_value_t = 65536)]
        max_n: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Sliding window w = 512 against n, GQA g = 4 against H_kv = H, and the KV-cache decode
    /// step on 1 and --threads threads (with K+V bytes read per second against memcpy).
    Variants {
        /// Shorter sequences and fewer repeats (about 10 s instead of about 30 s).
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = all_threads())]
        threads: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// The exact backward: causal β = 4 and softmax, batch×heads = 8, against the forward and the
    /// GEMM rate.
    Gradients {
        /// Sequence lengths.
        #[arg(long, value_delimiter = ',', default_value = "1024,4096")]
        n: Vec<usize>,
        /// Sequence lengths of the sketched backward (one head).
        #[arg(long, value_delimiter = ',', default_value = "8192,16384,32768,65536")]
        sketched_n: Vec<usize>,
        #[arg(long, default_value_t = all_threads())]
        threads: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// The main job: quick scaling, threads, quick reproduction, accuracy → report.md + SVGs.
    Report {
        #[arg(long, default_value_t = all_threads())]
        threads: usize,
        #[arg(long)]
        out: PathBuf,
    },
}

fn create(dir: &PathBuf) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Time {
            method,
            n,
            d,
            batch_heads,
            threads,
            block,
            causal,
            repeat,
            gemm,
        } => {
            let scenario = Scenario {
                method: method.method(),
                causal,
                n,
                d,
                batch_heads,
                threads,
                block,
            };
            let probe = || gemm.then(|| gemm_probe(GEMM_PROBE_N, threads, GEMM_PROBE_RUNS));
            let load_before = load_average();
            let before = probe();
            let timing = scenario.time(repeat).map_err(|e| e.to_string())?;
            let after = probe();
            let around = Surroundings {
                probes: before.zip(after),
                load_before,
                load_after: load_average(),
            };
            let line = TimeLine::new(scenario, timing, around);
            if let Some((before, after)) = before.zip(after) {
                eprintln!(
                    "faer GEMM {:.0} → {:.0} GFLOP/s around the runs",
                    before.median_gflops(),
                    after.median_gflops()
                );
            }
            println!("{}", line.json());
            Ok(())
        }
        Command::Scaling {
            quick,
            max_n,
            budget_s,
            threads,
            methods,
            out,
        } => {
            create(&out)?;
            let mut plan = if quick {
                report::quick_scaling(threads)
            } else {
                ScalingPlan {
                    n_max: max_n,
                    batch_heads: 8,
                    repeat: 3,
                    budget_s,
                    ..report::quick_scaling(threads)
                }
            };
            if !methods.is_empty() {
                plan.series = methods
                    .iter()
                    .flat_map(|m| [(m.method(), false), (m.method(), true)])
                    .collect::<Vec<(Method, bool)>>();
            }
            let sweep = sweeps::scaling(&plan)?;
            sweeps::write_scaling(&sweep, &out)?;
            println!("{}", sweeps::scaling_markdown(&sweep));
            println!("wrote {}/scaling.{{csv,json,md,svg}}", out.display());
            Ok(())
        }
        Command::Threads {
            max_threads,
            n,
            out,
        } => {
            create(&out)?;
            let series = vec![
                (MethodName::Poly4.method(), true),
                (MethodName::Softmax.method(), false),
                (MethodName::Polysketch.method(), true),
            ];
            let sweep = sweeps::threads(&series, n, 8, max_threads, 3)?;
            sweeps::write_threads(&sweep, &out)?;
            println!("{}", sweeps::threads_markdown(&sweep));
            println!("wrote {}/threads.{{csv,json,md,svg}}", out.display());
            Ok(())
        }
        Command::Accuracy { quick, out } => {
            create(&out)?;
            let plan = if quick {
                AccuracyPlan::quick()
            } else {
                AccuracyPlan::full()
            };
            let cells = accuracy::run(&plan)?;
            accuracy::write(&cells, &plan, &out)?;
            println!("{}", accuracy::markdown(&cells, &plan));
            println!("wrote {}/accuracy.{{csv,md}} and SVGs", out.display());
            Ok(())
        }
        Command::Memory {
            polyattn,
            max_n,
            out,
        } => poly_bench::memory::run(&polyattn, max_n, &out),
        Command::Variants {
            quick,
            threads,
            out,
        } => {
            create(&out)?;
            let run = poly_bench::variants::run(threads, quick).map_err(|e| e.to_string())?;
            poly_bench::variants::write(&run, &out)?;
            println!("{}", poly_bench::variants::markdown(&run));
            println!("wrote {}/variants.{{json,md}}", out.display());
            Ok(())
        }
        Command::Gradients {
            n,
            sketched_n,
            threads,
            out,
        } => {
            create(&out)?;
            let run =
                poly_bench::gradients::run(threads, &n, &sketched_n).map_err(|e| e.to_string())?;
            let md = poly_bench::gradients::markdown(&run);
            let json = serde_json::to_string_pretty(&run).expect("a run serializes");
            for (name, text) in [("gradients.md", md.clone()), ("gradients.json", json)] {
                let path = out.join(name);
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            println!("{md}");
            println!("wrote {}/gradients.{{json,md}}", out.display());
            Ok(())
        }
        Command::Report { threads, out } => {
            let summary = report::run(&out, threads)?;
            println!("{summary}");
            Ok(())
        }
    }
}

fn main() {
    if let Err(e) = run(Cli::parse().command) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
