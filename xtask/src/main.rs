//! `cargo xtask <command>`: the project's automation, one subcommand per task.
//! Results go under `target/polyattn/`. The measuring subcommands build and run the release
//! `poly-bench` binary (crates/poly-bench), so that nothing is timed in a debug build.

mod bench_binary;
mod ci;
mod memory;
mod profile;
mod shell;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "polyattn project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: quick scaling sweep, thread scaling, quick reproduction and the sketch
    /// accuracy study in target/polyattn/report/ (report.md + SVGs); under 10 minutes on 2 cores.
    Report {
        /// Add candle's CPU attention as peers (builds candle; off by default).
        #[arg(long)]
        candle: bool,
    },
    /// Time vs n (256 → 65536, doubling) for exact β = 4, softmax and sketched PolySketch, causal
    /// and not, with fitted log-log slopes and % of the GEMM rate.
    Scaling {
        /// The report's quick sweep (n ≤ 16384, batch×heads 4, 20 s per series).
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 65536)]
        max_n: usize,
        /// Seconds one series may spend before its sweep stops.
        #[arg(long, default_value_t = 90.0)]
        budget_s: f64,
        /// Add candle's CPU attention as peers.
        #[arg(long)]
        candle: bool,
    },
    /// Speedup from one thread to all of them.
    Threads,
    /// The sketch accuracy study (relative error vs sketch size, each family).
    Accuracy {
        #[arg(long)]
        quick: bool,
    },
    /// valgrind callgrind instruction counts of one scenario (poly4, softmax, polysketch, …).
    Profile {
        method: String,
        #[arg(long, default_value_t = 2048)]
        n: usize,
        #[arg(long)]
        causal: bool,
    },
    /// fmt --check, clippy -D warnings, every test (benches once in test mode), doc tests.
    Ci,
    /// The criterion benches (kernels vs the GEMM rate, power kernel vs memcpy, feature maps,
    /// decoding).
    Bench {
        /// Criterion's quick mode: fewer samples, a fast indicative pass.
        #[arg(long)]
        quick: bool,
    },
    /// Peak memory (max RSS) of exact attention as n grows, to show it has no n² term.
    Memory {
        /// Largest sequence length (a power of two ≥ 8192).
        #[arg(long, default_value_t = 65536)]
        max_n: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report { candle } => bench_binary::run(candle, &["report"], "report"),
        Command::Scaling {
            quick,
            max_n,
            budget_s,
            candle,
        } => {
            let (max_n, budget_s) = (max_n.to_string(), budget_s.to_string());
            let mut args = vec!["scaling", "--max-n", &max_n, "--budget-s", &budget_s];
            if quick {
                args.push("--quick");
            }
            bench_binary::run(candle, &args, "scaling")
        }
        Command::Threads => bench_binary::run(false, &["threads"], "threads"),
        Command::Accuracy { quick } => {
            let args: &[&str] = if quick {
                &["accuracy", "--quick"]
            } else {
                &["accuracy"]
            };
            bench_binary::run(false, args, "accuracy")
        }
        Command::Profile { method, n, causal } => profile::run(&method, n, causal),
        Command::Ci => ci::run(),
        Command::Bench { quick } => {
            let mut args = vec!["bench", "--bench", "attention", "--bench", "kernels", "--"];
            if quick {
                args.push("--quick");
            }
            shell::cargo(&args)
        }
        Command::Memory { max_n } => memory::run(max_n),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
