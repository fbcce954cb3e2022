//! `cargo xtask <command>`: the project's automation, one subcommand per task.
//! Results go under `target/polyattn/`.

mod ci;
mod memory;
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
    /// fmt --check, clippy -D warnings, every test (benches once in test mode), doc tests.
    Ci,
    /// The criterion benches (exact attention vs the GEMM rate, thread speedup).
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
        Command::Ci => ci::run(),
        Command::Bench { quick } => {
            let mut args = vec!["bench", "--bench", "attention", "--"];
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
