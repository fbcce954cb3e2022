//! `poly-bench`: the measuring binary behind `cargo xtask scaling | threads | accuracy | report |
//! profile`. Built in release mode by xtask; every subcommand writes CSV/JSON/SVG/markdown into
//! its `--out` directory.

use clap::{Parser, Subcommand};
use poly_bench::methods::MethodName;
use poly_bench::scenario::Scenario;

#[derive(Parser)]
#[command(name = "poly-bench", about = "polyattn measurements")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time one scenario and print one JSON line (also what `xtask profile` runs under valgrind).
    Time {
        #[arg(long, value_enum)]
        method: MethodName,
        #[arg(long, default_value_t = 4096)]
        n: usize,
        #[arg(long, default_value_t = 64)]
        d: usize,
        #[arg(long, default_value_t = 8)]
        batch_heads: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 256)]
        block: usize,
        #[arg(long)]
        causal: bool,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let result: Result<(), String> = match cli.command {
        Command::Time {
            method,
            n,
            d,
            batch_heads,
            threads,
            block,
            causal,
            repeat,
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
            scenario.time(repeat).map_err(|e| e.to_string()).map(|t| {
                let gflop = scenario.flops() / 1e9;
                println!(
                    "{}",
                    serde_json::json!({
                        "method": scenario.method.label(),
                        "causal": causal, "n": n, "d": d, "batch_heads": batch_heads,
                        "threads": threads, "block": block,
                        "seconds_median": t.median, "seconds_min": t.min, "spread": t.spread(),
                        "gflop": gflop, "gflops": gflop / t.median,
                    })
                );
            })
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
