//! The `polyattn` command: attention on your own `.npy` / `.safetensors` tensors.
//!
//! Exit codes: 0 success, 2 bad input or usage (`error: ...` on stderr; usage errors add clap's
//! usage lines), 1 internal failure.

use clap::Parser;
use polyattn_cli::cli;

fn main() {
    // A panic is an internal failure: one line, exit code 1, no backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal failure: {info}");
        std::process::exit(1);
    }));
    // clap's whole message: `error: ...`, then what was missing, the valid values or a "did you
    // mean", and the usage line; exit code 2 (0 for --help and --version).
    let args = cli::Cli::try_parse().unwrap_or_else(|e| e.exit());
    if let Err(e) = cli::run(args) {
        if e.reported_here() {
            eprintln!("error: {e}");
        }
        std::process::exit(e.exit_code());
    }
}
